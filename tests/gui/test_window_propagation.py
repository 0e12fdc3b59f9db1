"""Rollout and attention flow in the real window: computed by core.propagate.propagation in workers,
shown under exactly the parameters they were computed with, flow rows per row with cancel,
kept in sessions."""

from __future__ import annotations

import os
import threading

import numpy as np
from PySide6.QtCore import Qt

from attn_desktop.core.analysis import Analysis
from attn_desktop.core.propagate import propagation
from attn_desktop.core.propagate.compute_process import ComputeProcess
from attn_desktop.gui.measures import MEASURES, FlowRows, file_flow

TIMEOUT = 60_000
TEXT = "The bank approved the loan after the river bank flooded."


def bare(an: Analysis) -> Analysis:
    """The analysis with its attention only: what core computes from, for reference values."""
    keep = ("attentions", "encoder_attentions", "decoder_attentions", "cross_attentions")
    return Analysis(text=an.text, tokens=an.tokens, arrays={k: v for k, v in an.arrays.items() if k in keep},
                    manifest={"model": dict(an.manifest.get("model", {}))},
                    decoder_text=an.decoder_text, decoder_tokens=an.decoder_tokens)


def core_rollout(an, alpha=0.5, fusion="mean", start=0) -> dict:
    ref = bare(an)
    propagation.add_rollout(ref, alpha, fusion, start)
    return ref.arrays


def choose(qtbot, window, box, data, signal=None):
    """Pick an item of a toolbar combo box like a user; wait for `signal` when given."""
    i = box.findData(data)
    assert i >= 0, data
    if signal is None:
        box.setCurrentIndex(i)
        return
    with qtbot.waitSignal(signal, timeout=TIMEOUT):
        box.setCurrentIndex(i)


def click_token(qtbot, editor, i):
    rect = editor.token_rects(i)[0]
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=rect.center().toPoint())


def test_rollout_follows_fusion_alpha_start_and_layer_slider(window, load, analyse, tiny_model_paths, qtbot,
                                                             tmp_path):
    load(window, tiny_model_paths["bert"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    an = analyse(window, TEXT, type_it=False).analysis
    bar, heatmap, editor = window.selection_bar, window.heatmap, window.document.editor
    att = an.arrays["attentions"]
    layers, n = att.shape[0], att.shape[-1]
    choose(qtbot, window, bar.measure_box, "rollout", window.propagation.filed)
    assert bar.head_box.isEnabled() and bar.alpha_action.isVisible() and bar.slider_action.isVisible()

    bar.layer_slider.setValue(layers - 1)
    sel = window.state.sel
    assert sel.layer == layers - 1 and bar.layer_box.value() == layers - 1
    expected = core_rollout(an)["rollout"]
    np.testing.assert_allclose(heatmap.values, expected[layers - 1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(editor.values, expected[layers - 1, sel.focus], rtol=1e-6, atol=1e-7)
    assert heatmap.title.text() == f"Rollout · through layer {layers - 1} · heads fused by mean · α=0.5"
    assert heatmap.row_labels == heatmap.col_labels == [t.text for t in an.tokens]
    assert "rollout of “" in window.document.legend.text()

    # the keyboard still steps layers; the slider follows
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key_Up, Qt.AltModifier)
    assert window.state.sel.layer == layers - 2 and bar.layer_slider.value() == layers - 2
    np.testing.assert_allclose(heatmap.values, expected[layers - 2], rtol=1e-6, atol=1e-7)
    bar.layer_slider.setValue(layers - 1)

    # head fusion from the head selector: recomputed in a worker
    choose(qtbot, window, bar.head_box, "max", window.propagation.filed)
    np.testing.assert_allclose(heatmap.values, core_rollout(an, 0.5, "max")["rollout"][layers - 1],
                               rtol=1e-6, atol=1e-7)
    assert "heads fused by max · α=0.5" in heatmap.title.text()

    # α from the toolbar; checked against a plain numpy loop on the analysis arrays
    with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
        bar.alpha_box.setValue(0.3)
    fused = att.astype(np.float64).max(axis=1)
    cumulative, r = [], np.eye(n)
    for layer in range(layers):
        hat = 0.3 * fused[layer] + 0.7 * np.eye(n)
        hat /= hat.sum(axis=1, keepdims=True)
        r = hat @ r
        cumulative.append(r)
    np.testing.assert_allclose(heatmap.values, cumulative[-1], atol=2e-6)
    assert heatmap.title.text() == f"Rollout · through layer {layers - 1} · heads fused by max · α=0.3"
    assert an.manifest["methods"]["rollout"]["alpha"] == 0.3  # what Save session would write

    # one head alone, and a start layer
    choose(qtbot, window, bar.head_box, 1, window.propagation.filed)
    np.testing.assert_allclose(heatmap.values, core_rollout(an, 0.3, 1)["rollout"][layers - 1],
                               rtol=1e-6, atol=1e-7)
    assert "head 1 alone" in heatmap.title.text()
    with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
        bar.start_box.setValue(1)
    assert (bar.layer_slider.minimum(), bar.layer_slider.maximum()) == (1, layers - 1)
    np.testing.assert_allclose(heatmap.values, core_rollout(an, 0.3, 1, 1)["rollout"][layers - 2],
                               rtol=1e-6, atol=1e-7)
    assert heatmap.title.text().endswith("· from layer 1")

    # back to parameters computed before: shown at once, no worker
    with qtbot.assertNotEmitted(window.rollout_runner.started):
        bar.start_box.setValue(0)
        choose(qtbot, window, bar.head_box, "max")
    np.testing.assert_allclose(heatmap.values, cumulative[-1], atol=2e-6)
    window.save_settings()
    assert float(window.settings.value("alpha")) == 0.3

    # a session keeps the rollout shown and its parameters: reopened, it shows without a worker
    path = tmp_path / "rollout.attn"
    with qtbot.waitSignal(window.session_saved, timeout=TIMEOUT):
        window.save_session(str(path))
    window.state.update(measure="attention", head="mean", alpha=0.5)
    with qtbot.assertNotEmitted(window.rollout_runner.started):
        with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT):
            window.open_session(str(path))
        window.state.update(measure="rollout")
    sel = window.state.sel
    assert (sel.head, sel.alpha, sel.start_layer) == ("max", 0.3, 0)
    np.testing.assert_allclose(heatmap.values, cumulative[sel.layer], atol=2e-6)


def test_rollout_for_new_parameters_never_shows_old_values(window, load, analyse, tiny_model_paths,
                                                          qtbot, monkeypatch):
    load(window, tiny_model_paths["bert"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    an = analyse(window, TEXT, type_it=False).analysis
    bar = window.selection_bar
    choose(qtbot, window, bar.measure_box, "rollout", window.propagation.filed)
    assert window.heatmap.values is not None

    real, gate, entered = ComputeProcess.add_rollout, threading.Event(), threading.Event()

    def gated(*args, **kw):
        entered.set()
        gate.wait(30)
        return real(*args, **kw)

    monkeypatch.setattr(ComputeProcess, "add_rollout", gated)
    try:
        bar.alpha_box.setValue(0.8)
        qtbot.waitUntil(entered.is_set)
        # while it computes, nothing is shown under the new label; both views say why
        assert window.heatmap.values is None
        assert "α=0.8" in window.heatmap.title.text() and "computing the rollout" in window.heatmap.title.text()
        assert window.document.editor.values is None
        assert "computing the rollout" in window.document.note.text()
        assert window.analysis_progress.isVisible()
        with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
            gate.set()
    finally:
        gate.set()
    layer = window.state.sel.layer
    np.testing.assert_allclose(window.heatmap.values, core_rollout(an, 0.8)["rollout"][layer], rtol=1e-6, atol=1e-7)
    assert not window.document.note.isVisible()

    # a new text while rollout is shown: the rollout comes with the analysis, no separate job
    with qtbot.assertNotEmitted(window.rollout_runner.started):
        again = analyse(window, "The loan was approved.", type_it=False).analysis
        assert window.heatmap.values is not None
    layer = window.state.sel.layer
    np.testing.assert_allclose(window.heatmap.values, core_rollout(again, 0.8)["rollout"][layer],
                               rtol=1e-6, atol=1e-7)


def test_flow_rows_progress_cancel_and_session(window, load, analyse, tiny_model_paths, qtbot,
                                               monkeypatch, tmp_path):
    load(window, tiny_model_paths["bert"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    an = analyse(window, TEXT, type_it=False).analysis
    n = len(an.tokens)
    reference = bare(an)
    propagation.add_flow(reference, range(n), 0.5, "mean")
    ref_flow = reference.arrays["flow"]
    bar, heatmap, doc = window.selection_bar, window.heatmap, window.document

    # the focus token's row on demand
    focus = window.state.sel.focus
    choose(qtbot, window, bar.measure_box, "flow", window.propagation.filed)
    qtbot.waitUntil(lambda: not window.flow_runner.busy)
    assert heatmap.row_labels == [an.tokens[focus].text]
    np.testing.assert_allclose(heatmap.values, ref_flow[[focus]], atol=1e-6)
    np.testing.assert_allclose(doc.editor.values, ref_flow[focus], atol=1e-6)
    assert heatmap.title.text().endswith("· exact")  # the bound is in the title's tooltip
    assert "exact (certified within 1e-6; bound" in heatmap.title.toolTip()
    assert "· exact" in doc.legend.text() and "exact (certified within 1e-6" in doc.legend.toolTip()
    assert an.manifest["methods"]["flow"]["rows"] == [focus]

    # all tokens in the background: per-row progress, a token clicked meanwhile says it waits,
    # Cancel keeps the finished rows
    real, release, blocked = ComputeProcess.add_flow, threading.Event(), threading.Event()
    calls = []

    def counted(compute, analysis, rows, *args, **kw):
        calls.append(list(rows))
        if len(calls) == 4:
            blocked.set()
            release.wait(30)
        return real(compute, analysis, rows, *args, **kw)

    monkeypatch.setattr(ComputeProcess, "add_flow", counted)
    messages = []
    window.flow_runner.progressed.connect(lambda _g, _f, m: messages.append(m))
    try:
        qtbot.mouseClick(bar.flow_all_button, Qt.LeftButton)
        qtbot.waitUntil(blocked.is_set)
        done = sorted({focus} | {r for c in calls[:3] for r in c})
        qtbot.waitUntil(lambda: heatmap.values is not None and heatmap.values.shape[0] == len(done))
        assert heatmap.row_labels == [an.tokens[r].text for r in done]
        waiting = next(i for i in range(n) if i not in done and i not in calls[3] and doc.editor.has_span(i))
        click_token(qtbot, doc.editor, waiting)
        who = f"“{an.tokens[waiting].text}” (#{waiting})"
        assert f"No flow row for {who} yet: computing it…" in heatmap.title.text()
        assert doc.note.isVisible() and "computing it" in doc.note.text()
        assert window.analysis_cancel.isVisible()
        with qtbot.waitSignal(window.flow_runner.cancelled, timeout=TIMEOUT):
            qtbot.mouseClick(window.analysis_cancel, Qt.LeftButton)
            release.set()
    finally:
        release.set()
    qtbot.waitUntil(lambda: not window.flow_runner.busy)
    # counted as the title counts them: rows that exist, of every token's
    shown = list(dict.fromkeys(m for m in messages if m.endswith("rows")))
    assert shown == [f"attention flow: {k} of {n} token rows" for k in (1, 2, 3, 4)]
    assert an.arrays["flow_rows"].tolist() == done
    np.testing.assert_allclose(heatmap.values, ref_flow[done], atol=1e-6)
    assert "flow cancelled" in doc.note.text() and "Ctrl+Shift+F" in doc.note.text()
    assert "kept" in window.messages.text.text()
    monkeypatch.setattr(ComputeProcess, "add_flow", real)

    # the session keeps the rows and their parameters; reopened, they show without recomputing
    path = tmp_path / "flow.attn"
    with qtbot.waitSignal(window.session_saved, timeout=TIMEOUT):
        window.save_session(str(path))
    window.state.update(alpha=0.7)
    with qtbot.assertNotEmitted(window.flow_runner.started):
        with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT) as shown:
            window.open_session(str(path))
        assert window.state.sel.measure == "flow" and window.state.sel.alpha == 0.5
    again = shown.args[0].analysis
    assert again is not an and again.arrays["flow_rows"].tolist() == done
    assert heatmap.row_labels == [an.tokens[r].text for r in done]
    np.testing.assert_allclose(heatmap.values, ref_flow[done], atol=1e-6)
    assert "exact (certified within 1e-6" in heatmap.title.toolTip()

    # then every row: only the missing ones are computed, one progress step each
    messages.clear()
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        window.act_flow_all.trigger()
    shown = list(dict.fromkeys(m for m in messages if m.endswith("rows")))
    assert shown == [f"attention flow: {k} of {n} token rows" for k in range(len(done), n + 1)]
    assert heatmap.row_labels == [t.text for t in an.tokens]
    np.testing.assert_allclose(heatmap.values, ref_flow, atol=1e-6)
    assert heatmap.title.text().startswith("Attention flow · all token rows · heads fused by mean · α=0.5 · exact")
    assert not bar.flow_all_button.isEnabled()  # nothing left to compute


def test_flow_labelled_approximate_wherever_shown(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    an = analyse(window, TEXT, type_it=False).analysis
    focus = window.state.sel.focus
    params = MEASURES["flow"].params(window.state.sel)
    values = np.full((1, len(an.tokens)), 1 / len(an.tokens), np.float32)
    entry = {"alpha": 0.5, "head_fusion": "mean", "rows": [focus], "exact": False, "max_abs_error_bound": 3e-5}
    file_flow(an, params, FlowRows(values, np.array([focus]), entry))
    window.state.update(measure="flow")
    window.propagation.filed.emit(an, "flow", params)
    assert "approximate (error ≤ 3e-05)" in window.heatmap.title.text()
    assert "approximate (error bound 3.0e-05)" in window.heatmap.title.toolTip()
    assert "approximate (error ≤ 3e-05)" in window.document.legend.text()
    assert "approximate (error bound 3.0e-05)" in window.document.legend.toolTip()
    assert window.messages.level == "warning" and "approximate" in window.messages.text.text()


def test_encoder_decoder_rollout_parts_and_axes(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bart"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    window.target_edit.setText("the loan")
    an = analyse(window, TEXT, type_it=False).analysis
    bar, heatmap = window.selection_bar, window.heatmap
    choose(qtbot, window, bar.measure_box, "rollout", window.propagation.filed)
    assert not bar.start_action.isVisible()
    expected = core_rollout(an)
    src, tgt = [t.text for t in an.tokens], [t.text for t in an.decoder_tokens]

    layer = window.state.sel.layer
    assert window.state.sel.set_name == "encoder"
    np.testing.assert_allclose(heatmap.values, expected["rollout"][layer], rtol=1e-6, atol=1e-7)
    assert heatmap.row_labels == heatmap.col_labels == src
    assert heatmap.title.text().startswith(f"Rollout · encoder · through layer {layer}")

    with qtbot.assertNotEmitted(window.rollout_runner.started):  # one computation has all three
        choose(qtbot, window, bar.set_box, "decoder")
        dd = expected["decoder_rollout"][layer]
        np.testing.assert_allclose(heatmap.values, dd / dd.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
        assert heatmap.row_labels == heatmap.col_labels == tgt
        assert bar.set_box.currentText() == "decoder → target prefix"

        choose(qtbot, window, bar.set_box, "cross")
        ds = expected["decoder_source_rollout"][layer]
        np.testing.assert_allclose(heatmap.values, ds / ds.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(heatmap.values.sum(1), 1.0, atol=1e-5)
        assert heatmap.row_labels == tgt and heatmap.col_labels == src
        assert heatmap.title.text().startswith(f"Rollout · decoder → source · through decoder layer {layer}")
        assert "rows normalised" in heatmap.title.text()
        assert bar.set_box.currentText() == "decoder → source"
        # flow is defined on the encoder self-attention only
        flow_item = bar.measure_box.model().item(bar.measure_box.findData("flow"))
        assert not flow_item.isEnabled()

    # focus on a decoder token: its row over the source tokens highlights the editor
    window.state.update(focus=1)
    np.testing.assert_allclose(window.document.editor.values, heatmap.values[1], rtol=1e-6, atol=1e-7)


def test_causal_rollout_matches_core(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["gpt2"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    an = analyse(window, TEXT, type_it=False).analysis
    choose(qtbot, window, window.selection_bar.measure_box, "rollout", window.propagation.filed)
    layer = window.state.sel.layer
    expected = core_rollout(an)["rollout"][layer]
    np.testing.assert_allclose(window.heatmap.values, expected, rtol=1e-6, atol=1e-7)
    assert np.all(np.triu(window.heatmap.values, 1) == 0)


def test_the_window_process_never_computes_flow_or_rollout_itself(window, load, analyse, tiny_model_paths,
                                                                  qtbot, monkeypatch):
    """scipy's max flow holds Python's lock and would freeze the window: rows and rollouts come
    from the compute processes (core.propagate.compute_process), with the same numbers."""
    load(window, tiny_model_paths["bert"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    an = analyse(window, TEXT, type_it=False).analysis
    n = len(an.tokens)
    reference = bare(an)
    propagation.add_flow(reference, range(n), 0.5, "max")
    expected_rollout = core_rollout(an, 0.6, "max")["rollout"]

    def not_here(*_args, **_kw):
        raise AssertionError("computed in the window's process")

    monkeypatch.setattr(propagation, "add_flow", not_here)
    monkeypatch.setattr(propagation, "add_rollout", not_here)
    bar = window.selection_bar
    choose(qtbot, window, bar.head_box, "max")
    bar.alpha_box.setValue(0.6)
    assert window.state.sel.measure == "attention"  # nothing to compute yet
    choose(qtbot, window, bar.measure_box, "rollout", window.propagation.filed)
    np.testing.assert_array_equal(window.heatmap.values, expected_rollout[window.state.sel.layer])
    assert window.propagation.compute["rollout"].pid not in (None, os.getpid())

    with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
        bar.alpha_box.setValue(0.5)
    choose(qtbot, window, bar.measure_box, "flow")
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        window.act_flow_all.trigger()
    np.testing.assert_array_equal(window.heatmap.values, reference.arrays["flow"])
    assert window.heatmap.title.text().startswith("Attention flow · all token rows · heads fused by max · α=0.5 · exact")
    assert window.propagation.compute["flow"].pid not in (None, os.getpid())
