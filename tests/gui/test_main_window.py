"""The real window driven like a user, with tiny random models loaded through the real path."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from attn_desktop.core.propagate.heads import aggregate_heads
from attn_desktop.gui import colormaps

ANALYSIS_TIMEOUT = 60_000

TEXT = "The bank approved the loan."


def click_token(qtbot, editor, i):
    rect = editor.token_rects(i)[0]
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=rect.center().toPoint())


def test_type_pick_click_and_views_equal_arrays(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    prepared = analyse(window, TEXT)
    an = prepared.analysis
    assert an.text == TEXT == window.document.text()
    att = an.arrays["attentions"]
    layers, heads = att.shape[:2]

    bar = window.selection_bar
    bar.layer_box.setValue(layers - 1)
    bar.head_box.setCurrentIndex(bar.head_box.findData(heads - 1))
    sel = window.state.sel
    assert (sel.layer, sel.head) == (layers - 1, heads - 1)

    editor = window.document.editor
    word = next(i for i, t in enumerate(an.tokens) if t.text == "loan")
    click_token(qtbot, editor, word)
    assert window.state.sel.focus == word

    expected = att[layers - 1, heads - 1].astype(np.float32)
    np.testing.assert_array_equal(window.heatmap.values, expected)
    quantised, _ = colormaps.quantise(expected, "linear")
    np.testing.assert_array_equal(window.heatmap.image.image, quantised)
    np.testing.assert_array_equal(editor.values, expected[word])
    # the strongest key of the focus row carries the strongest background
    top = int(np.argmax(expected[word]))
    if editor.has_span(top):
        assert editor.token_background(top) is not None
    assert window.heatmap.row_labels == [t.text for t in an.tokens]
    assert window.heatmap._focus_row == word
    assert "“loan”" in editor.describe(word)


@pytest.mark.parametrize("how", ["mean", "max", "min"])
def test_aggregates_match_numpy(window, load, analyse, tiny_model_paths, how):
    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    window.state.update(layer=1, head=how)
    att = an.arrays["attentions"][1].astype(np.float32)
    reference = {"mean": np.mean, "max": np.max, "min": np.min}[how](att, axis=0)
    np.testing.assert_allclose(window.heatmap.values, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(window.document.editor.values, reference[window.state.sel.focus],
                               rtol=1e-6, atol=1e-7)


def test_heatmap_click_and_keyboard_steps(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    heads = an.arrays["attentions"].shape[1]
    window.heatmap.cell_clicked.emit(2, 4)
    assert window.state.sel.focus == 2
    window.state.update(layer=0, head=0)
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key_Down, Qt.AltModifier)
    qtbot.keyClick(window, Qt.Key_Right, Qt.AltModifier)
    assert (window.state.sel.layer, window.state.sel.head) == (1, 1)
    qtbot.keyClick(window, Qt.Key_Left, Qt.AltModifier)
    qtbot.keyClick(window, Qt.Key_Left, Qt.AltModifier)
    assert window.state.sel.head == heads - 1
    for expected in ("mean", "max", "min", heads - 1):
        qtbot.keyClick(window, Qt.Key_A, Qt.AltModifier)
        assert window.state.sel.head == expected


def test_model_view_marks_and_selects_heads(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    prepared = analyse(window, TEXT, type_it=False)
    grid = window.model_view.grid
    layers, heads = prepared.analysis.arrays["attentions"].shape[:2]
    assert grid.shape == (layers, heads)
    assert grid.diagnostics is prepared.diagnostics["self"]
    qtbot.mouseClick(grid, Qt.LeftButton, pos=grid.cell_rect(1, heads - 1).center())
    assert (window.state.sel.layer, window.state.sel.head) == (1, heads - 1)
    assert "normalised entropy" in grid.describe(1, 0)


def test_encoder_decoder_sets_and_labels(window, load, analyse, tiny_model_paths):
    loaded = load(window, tiny_model_paths["bart"])
    assert loaded.is_encoder_decoder
    window.state.update(words=False)  # compared with the arrays piece by piece
    window.target_edit.setText("the loan")
    an = analyse(window, TEXT, type_it=False).analysis
    assert an.attention_set_names() == ["encoder", "decoder", "cross"]
    assert window.selection_bar.set_action.isVisible()
    window.state.update(set_name="cross", layer=0, head=0)
    np.testing.assert_array_equal(window.heatmap.values, an.arrays["cross_attentions"][0, 0].astype(np.float32))
    assert window.heatmap.row_labels == [t.text for t in an.decoder_tokens]
    assert window.heatmap.col_labels == [t.text for t in an.tokens]
    assert window.document.strip.chips  # decoder tokens are the query side: shown as chips
    window.state.update(set_name="decoder", head="max")
    expected = aggregate_heads(an.arrays["decoder_attentions"][0], "max")
    np.testing.assert_array_equal(window.heatmap.values, expected)
    assert window.heatmap.col_labels == [t.text for t in an.decoder_tokens]


def test_causal_lm_with_generation(window, load, analyse, tiny_model_paths):
    load(window, tiny_model_paths["gpt2"])
    window.state.update(words=False)  # compared with the arrays piece by piece
    window.generate_box.setValue(3)
    an = analyse(window, TEXT, type_it=False).analysis
    assert an.text.startswith(TEXT) and len(an.text) >= len(TEXT)
    generated = [i for i, t in enumerate(an.tokens) if t.generated]
    assert generated and set(generated) <= set(window.document.strip.chips)
    att = an.arrays["attentions"]
    np.testing.assert_array_equal(window.heatmap.values, aggregate_heads(att[0], "mean"))


def test_cancel_running_analysis(in_process_window, load, tiny_model_paths, qtbot, monkeypatch):
    window = in_process_window
    load(window, tiny_model_paths["bert"])
    import attn_desktop.core.pipeline as pipeline

    real = pipeline.analyze

    def wait_for_cancel(loaded, text, *, progress=None, cancel=None, **kw):
        progress(0.1, "waiting")
        while not cancel():  # stands in for a long forward pass that polls cancel per layer
            time.sleep(0.005)
        return real(loaded, text, progress=progress, cancel=cancel, **kw)

    monkeypatch.setattr(pipeline, "analyze", wait_for_cancel)
    shown = []
    window.analysis_shown.connect(shown.append)
    with qtbot.waitSignal(window.analyzer.progressed, timeout=ANALYSIS_TIMEOUT):
        window.document.set_text(TEXT)
        window.request_analysis()
    assert window.analysis_cancel.isVisible()
    with qtbot.waitSignal(window.analysis_cancelled, timeout=ANALYSIS_TIMEOUT):
        qtbot.mouseClick(window.analysis_cancel, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.analyzer.busy)
    assert not shown and window.state.analysis is None
    assert window.messages.isVisible() and "cancelled" in window.messages.text.text()


def test_edit_during_analysis_drops_stale_result(in_process_window, load, tiny_model_paths, qtbot, monkeypatch):
    window = in_process_window
    import threading

    load(window, tiny_model_paths["bert"])
    import attn_desktop.core.pipeline as pipeline

    real = pipeline.analyze
    gate = threading.Event()

    def gated(loaded, text, **kw):
        started.set()
        gate.wait(30)
        return real(loaded, text, **{**kw, "cancel": None})  # ignores cancel: result still arrives

    started = threading.Event()
    monkeypatch.setattr(pipeline, "analyze", gated)
    shown = []
    window.analysis_shown.connect(lambda p: shown.append(p.analysis.text))
    window.document.set_text("The bank")
    window.request_analysis()
    try:
        qtbot.waitUntil(started.is_set)
        qtbot.keyClick(window.document.editor, Qt.Key_End, Qt.ControlModifier)
        qtbot.keyClicks(window.document.editor, " approved")  # edit while the old text is analysed
        new_text = window.document.text()
        assert new_text == "The bank approved"
        with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT):
            gate.set()
    finally:
        gate.set()
    assert shown == [new_text]
    assert window.document.synced is window.state.analysis


def test_supersede_only_latest_shown(window, load, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    shown = []
    window.analysis_shown.connect(lambda p: shown.append(p.analysis.text))
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT):
        for text in ("The bank", "The bank approved", "The bank approved the loan."):
            window.document.set_text(text)
            window.request_analysis()
    qtbot.waitUntil(lambda: not window.analyzer.busy)
    assert shown == ["The bank approved the loan."]


def test_save_and_open_session(window, load, analyse, tiny_model_paths, qtbot, tmp_path):
    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    path = tmp_path / "s.attn"
    with qtbot.waitSignal(window.session_saved, timeout=ANALYSIS_TIMEOUT):
        window.save_session(str(path))
    assert path.is_file()
    window.document.set_text("something else entirely")
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT) as blocker:
        window.open_session(str(path))
    again = blocker.args[0].analysis
    assert window.document.text() == TEXT
    np.testing.assert_array_equal(again.arrays["attentions"], an.arrays["attentions"])
    assert window.document.synced is again
    assert str(path.resolve()) in window.settings.value("recent_files")


def test_opened_session_says_whether_the_loaded_model_made_it(window, load, analyse, tiny_model_paths, qtbot, tmp_path):
    load(window, tiny_model_paths["bert"])
    analyse(window, TEXT, type_it=False)
    path = tmp_path / "s.attn"
    with qtbot.waitSignal(window.session_saved, timeout=ANALYSIS_TIMEOUT):
        window.save_session(str(path))

    def reopen():
        qtbot.waitUntil(lambda: not window.analyzer.busy, timeout=ANALYSIS_TIMEOUT)  # a load re-analyses
        seen = len(window.messages.history)
        window.open_session(str(path))
        qtbot.waitUntil(lambda: any(m.startswith("Opened session") for _, m in window.messages.history[seen:]),
                        timeout=ANALYSIS_TIMEOUT)
        return next((level, m) for level, m in window.messages.history[seen:] if m.startswith("Opened session"))

    level, text = reopen()
    assert level == "info" and "same weights" in text
    load(window, tiny_model_paths["bert-cls"])  # other weights
    level, text = reopen()
    assert level == "warning" and "different weights" in text and "not the session's" in text


def test_damaged_session_reports_and_keeps_text(window, qtbot, tmp_path):
    bad = tmp_path / "bad.attn"
    bad.write_bytes(b"not a zip")
    window.document.set_text("keep me")
    with qtbot.waitSignal(window.session_failed, timeout=ANALYSIS_TIMEOUT) as blocker:
        window.open_session(str(bad))
    assert "bad.attn" in blocker.args[0]
    assert window.messages.level == "error" and window.document.text() == "keep me"


def drop(window, paths):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.dropEvent(event)


def test_drop_model_folder_then_text_file(window, tiny_model_paths, qtbot, tmp_path):
    with qtbot.waitSignal(window.model_loaded, timeout=ANALYSIS_TIMEOUT):
        drop(window, [tiny_model_paths["bert"]])
    doc = tmp_path / "note.txt"
    doc.write_text("The patient reports chest pain.", encoding="utf-8")
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT) as blocker:
        drop(window, [doc])
    assert blocker.args[0].analysis.text == "The patient reports chest pain."
    # a drop onto the editor opens the file instead of pasting its path
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(doc))])
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT):
        window.document.editor.setPlainText("x")
        window.document.editor.insertFromMimeData(mime)
    assert window.document.text() == "The patient reports chest pain."


def test_failing_model_shows_reason_and_window_stays_usable(window, load, analyse, tiny_model_paths,
                                                             qtbot, tmp_path, monkeypatch):
    library = tmp_path / "library"
    broken = library / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with qtbot.waitSignal(window.library_listed, timeout=ANALYSIS_TIMEOUT) as listed:
        window.refresh_library()
    names = [e.name for e in listed.args[0]]
    assert "broken" in names
    item = window.model_panel.library.item(names.index("broken"))
    assert "cannot load" in item.text() and "config.json" in item.text()

    window.document.set_text("keep this text")
    with qtbot.waitSignal(window.model_failed, timeout=ANALYSIS_TIMEOUT) as failed:
        window.load_model(str(broken), "cpu")
    assert "config.json" in failed.args[0]
    assert window.messages.isVisible() and window.messages.level == "error"
    assert window.document.text() == "keep this text"
    assert not window.model_panel.progress_row.isVisible()
    load(window, tiny_model_paths["bert"])
    assert analyse(window, TEXT, type_it=False).analysis.text == TEXT


def test_too_long_text_reports_both_numbers(window, load, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    window.act_windows.setChecked(False)  # on, a long text is analysed in windows (test_windows_strip)
    with qtbot.waitSignal(window.analysis_failed, timeout=ANALYSIS_TIMEOUT) as failed:
        window.document.set_text("loan " * 200)
        window.request_analysis()
    assert "64" in failed.args[0]
    assert window.messages.level == "error"


def test_export_png_and_settings_persist(window, load, analyse, tiny_model_paths, tmp_path, qtbot):
    load(window, tiny_model_paths["bert"])
    analyse(window, TEXT, type_it=False)
    out = tmp_path / "h.png"
    assert window.export_heatmap(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    window.selection_bar.cmap_box.setCurrentText("cividis")
    window.selection_bar.scale_box.setCurrentText("log")
    window.close()

    from attn_desktop.gui.main_window import MainWindow

    second = MainWindow()
    qtbot.addWidget(second)
    assert second.state.sel.colormap == "cividis"
    assert second.state.sel.scale == "log"
    assert second.settings.value("last_model") == str(tiny_model_paths["bert"].resolve())
    second.close()


def test_event_loop_keeps_running_during_work(window, load, analyse, tiny_model_paths, qtbot):
    """A 10 ms timer keeps firing while a worker runs (benchmarks/bench_gui_responsiveness.py
    measures the gaps on the demo model)."""
    from PySide6.QtCore import QTimer

    ticks = []
    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(lambda: ticks.append(1))
    probe.start()
    load(window, tiny_model_paths["bert-cls"])
    analyse(window, TEXT * 3, type_it=False)
    probe.stop()
    assert ticks


def test_hover_shows_token_boundary_and_tooltip(window, load, analyse, tiny_model_paths, qtbot):
    from PySide6.QtWidgets import QToolTip

    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    editor = window.document.editor
    word = next(i for i, t in enumerate(an.tokens) if t.text == "approved")
    point = editor.token_rects(word)[0].center().toPoint()
    qtbot.mouseMove(editor.viewport(), point)
    qtbot.waitUntil(lambda: editor.hover == word)
    text = QToolTip.text()
    assert "“approved”" in text and f"token {word}" in text and "weight" in text
    # the special tokens live in the strip; clicking one focuses it
    cls = next(i for i, t in enumerate(an.tokens) if t.special)
    qtbot.mouseClick(window.document.strip.chips[cls], Qt.LeftButton)
    assert window.state.sel.focus == cls
    np.testing.assert_array_equal(editor.values, an.arrays["attentions"][0].astype(np.float32).mean(0)[cls])


def test_cancel_model_loading(in_process_window, tiny_model_paths, qtbot, monkeypatch):
    window = in_process_window
    import attn_desktop.core.model.loading as loading

    real = loading.load_model

    def slow_load(path, device="cpu", progress=None, cancel=None):
        progress(0.05, "waiting")
        while not cancel():
            time.sleep(0.005)
        return real(path, device=device, progress=progress, cancel=cancel)

    monkeypatch.setattr(loading, "load_model", slow_load)
    with qtbot.waitSignal(window.loader.progressed, timeout=ANALYSIS_TIMEOUT):
        window.load_model(str(tiny_model_paths["bert"]), "cpu")
    assert window.model_panel.progress_row.isVisible()
    with qtbot.waitSignal(window.loader.cancelled, timeout=ANALYSIS_TIMEOUT):
        qtbot.mouseClick(window.model_panel.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.loader.busy)
    assert window.loaded is None and not window.model_panel.progress_row.isVisible()


def test_log_scale_colormap_and_recent_menu(window, load, analyse, tiny_model_paths, tmp_path, qtbot):
    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    window.state.update(layer=0, head=1, scale="log", colormap="cividis")
    expected, (lo, hi) = colormaps.quantise(an.arrays["attentions"][0, 1], "log")
    np.testing.assert_array_equal(window.heatmap.image.image, expected)
    assert window.heatmap.bar_axis.log and lo == np.log10(colormaps.LOG_FLOOR)
    np.testing.assert_array_equal(window.heatmap.image.lut, colormaps.lut("cividis"))
    doc = tmp_path / "recent.txt"
    doc.write_text("The loan.", encoding="utf-8")
    with qtbot.waitSignal(window.text_reader.succeeded, timeout=ANALYSIS_TIMEOUT):
        window.open_text_file(str(doc))
    window._fill_recent()
    assert str(doc.resolve()) in [a.text() for a in window.recent_menu.actions()]


def test_about_lists_versions_without_importing_torch():
    import sys

    from attn_desktop.gui.about import versions

    had_torch = "torch" in sys.modules
    v = versions()
    assert {"attn-desktop", "Qt", "PySide6", "torch", "transformers", "pyqtgraph"} <= set(v)
    assert ("torch" in sys.modules) == had_torch
