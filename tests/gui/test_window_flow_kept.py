"""Flow rows of a windowed document are kept per window, in the real window: "flow for all tokens"
on one window, then another window shown while it runs: the job gives way with a message saying
the finished rows are kept, the other window never gets them, and back on the first window its rows
are there, equal to core's flow of that window's attention."""

from __future__ import annotations

import threading

import numpy as np
from lease_text import DOCUMENT
from PySide6.QtCore import Qt

from attn_desktop.core import windows as core_windows
from attn_desktop.core.analysis import Analysis
from attn_desktop.core.propagate import propagation
from attn_desktop.core.propagate.compute_process import ComputeProcess
from attn_desktop.gui.measures import MEASURES, store

TIMEOUT = 120_000


def show_window(w, qtbot, k):
    with qtbot.waitSignal(w.state.analysis_changed, timeout=TIMEOUT):
        assert w.windows_strip.show_window(k, pinned=True)
    assert core_windows.shown_window(w.state.analysis) == k


def bare(an) -> Analysis:
    """The window's attention only: what core computes flow from, for reference values."""
    return Analysis(text=an.text, tokens=an.tokens, arrays={"attentions": an.arrays["attentions"]},
                    manifest={"model": dict(an.manifest.get("model", {}))})


def flow_rows(an, sel):
    rows = store(an)["flow"].get(MEASURES["flow"].params(sel))
    return [] if rows is None else [int(r) for r in rows.rows]


def test_flow_rows_are_kept_for_their_window(window, load, qtbot, tiny_model_paths, monkeypatch):
    w = window
    load(w, tiny_model_paths["bert"])
    w.state.update(words=False)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    assert core_windows.window_count(w.state.analysis) >= 3
    show_window(w, qtbot, 1)
    second = w.state.analysis
    with qtbot.waitSignal(w.propagation.filed, timeout=TIMEOUT):
        w.state.update(measure="flow")
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)

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
    w.flow_runner.progressed.connect(lambda _g, _f, m: messages.append(m))
    try:
        qtbot.mouseClick(w.selection_bar.flow_all_button, Qt.LeftButton)
        qtbot.waitUntil(blocked.is_set, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: len(flow_rows(second, w.state.sel)) == 4, timeout=TIMEOUT)  # the focus's + 3
        done = flow_rows(second, w.state.sel)
        assert messages and all(m.startswith("window 2: attention flow: ") for m in messages)  # says whose rows
        show_window(w, qtbot, 2)
        third = w.state.analysis
        assert "Attention flow for window 2 stopped at 4 of" in w.messages.text.text()
        assert "finished rows are kept for window 2" in w.messages.text.text()
    finally:
        release.set()
    monkeypatch.setattr(ComputeProcess, "add_flow", real)
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)
    assert third is not second and not set(flow_rows(third, w.state.sel)) - {w.state.sel.focus}

    show_window(w, qtbot, 1)
    back = w.state.analysis
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)
    kept = flow_rows(back, w.state.sel)
    assert back is not second and set(done) <= set(kept)
    reference = bare(back)
    propagation.add_flow(reference, kept, 0.5, "mean")
    ref = reference.arrays["flow"][np.argsort(reference.arrays["flow_rows"])]
    np.testing.assert_allclose(store(back)["flow"][MEASURES["flow"].params(w.state.sel)].flow, ref, atol=1e-6)
    assert w.heatmap.values.shape[0] == len(kept) and f"{len(kept)} of {len(back.tokens)} token rows" in w.heatmap.title.text()
