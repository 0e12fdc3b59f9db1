""""Flow for all tokens" in the real window: the time left is measured from the rows after the
first (whose time includes starting the flow processes), the estimate stays, labelled, until two
such rows have finished; an edit stops the job at once without naming a window of the old text;
and the status bar never shows a stopped job's progress."""

from __future__ import annotations

import threading

from lease_text import DOCUMENT
from PySide6.QtCore import Qt

from attn_desktop.core import windows as core_windows
from attn_desktop.core.propagate import flow_cost
from attn_desktop.core.propagate.compute_process import ComputeProcess
from attn_desktop.gui import propagation as gui_propagation
from attn_desktop.gui.measures import MEASURES, store

TIMEOUT = 120_000
TEXT = "The tenant shall pay the rent on the first day of each month."
START_S, ROW_S, PAIR_S = 600.0, 36.0, 2.0  # fake clock: first row (start-up included), each later row


def minutes_left(seconds: float) -> str:
    assert 60 <= seconds < 3600 and (seconds / 60) % 1 != 0.5  # the range this test's figures lie in
    return f"about {int(seconds / 60 + 0.5)} min left"


def test_time_left_excludes_the_start_up(window, load, analyse, tiny_model_paths, qtbot, monkeypatch):
    w = window
    load(w, tiny_model_paths["bert"])
    n = len(analyse(w, TEXT, type_it=False).analysis.tokens)
    assert 6 <= n < 96  # one process (no pool): the estimate is n pairs per row
    w.propagation.compute["flow"].close()  # the job starts the compute process, as for a new user

    now = [1000.0]
    real = ComputeProcess.add_flow
    calls = []

    def timed(compute, analysis, rows, *args, **kw):
        calls.append(list(rows))
        out = real(compute, analysis, rows, *args, **kw)
        now[0] += START_S if len(calls) == 1 else ROW_S
        return out

    monkeypatch.setattr(ComputeProcess, "add_flow", timed)
    monkeypatch.setattr(gui_propagation, "clock", lambda: now[0])
    monkeypatch.setattr(flow_cost, "pair_seconds", lambda layers, tokens: PAIR_S)
    messages = []
    w.flow_runner.progressed.connect(lambda _g, _f, m: messages.append(m))
    with qtbot.waitSignal(w.flow_runner.idle, timeout=TIMEOUT):
        w.act_flow_all.trigger()
    assert len(calls) == n and w.propagation.compute["flow"].pid is not None

    estimate = n * PAIR_S  # seconds per row before any is measured
    assert messages[0] == (f"attention flow: 0 of {n} token rows · starting the flow processes… · "
                           f"{minutes_left(estimate * n)} (estimated)")
    for have in range(1, n - 1):
        left = n - have
        said = [m for m in messages if m.startswith(f"attention flow: {have} of {n} token rows")]
        assert said, have
        if have < 3:  # the first row and one after it: no measured pace yet
            expected = f" · {minutes_left(estimate * left)} (estimated)"
        else:  # rows 2..have took ROW_S each on the fake clock; the start-up is not counted
            expected = f" · {minutes_left(ROW_S * left)}"
            whole = (START_S + ROW_S * (have - 1)) / have * left  # the pace the start-up would distort
            assert minutes_left(whole) != minutes_left(ROW_S * left)
        assert all(m == f"attention flow: {have} of {n} token rows{expected}" for m in said), (have, said)
    assert not any("starting the flow processes" in m for m in messages[1:])


def show_window(w, qtbot, k):
    with qtbot.waitSignal(w.state.analysis_changed, timeout=TIMEOUT):
        assert w.windows_strip.show_window(k, pinned=True)
    assert core_windows.shown_window(w.state.analysis) == k


def flow_rows(an, sel):
    rows = store(an)["flow"].get(MEASURES["flow"].params(sel))
    return [] if rows is None else [int(r) for r in rows.rows]


def start_blocked_flow_all(w, qtbot, monkeypatch, *, finish_blocked_row: bool):
    """Window 2 of a windowed document in flow view, then "flow for all tokens"; the job's 4th row
    waits for `release` (then it is computed, ignoring a cancel when `finish_blocked_row`, as a
    row that cannot stop at once)."""
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    assert core_windows.window_count(w.state.analysis) >= 3
    show_window(w, qtbot, 1)
    with qtbot.waitSignal(w.propagation.filed, timeout=TIMEOUT):
        w.state.update(measure="flow")
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)

    real, release, blocked = ComputeProcess.add_flow, threading.Event(), threading.Event()
    calls = []

    def held(compute, analysis, rows, *args, **kw):
        calls.append(list(rows))
        if len(calls) == 4:
            blocked.set()
            release.wait(30)
            if finish_blocked_row:
                kw["cancel"] = None
        return real(compute, analysis, rows, *args, **kw)

    monkeypatch.setattr(ComputeProcess, "add_flow", held)
    second = w.state.analysis
    qtbot.mouseClick(w.selection_bar.flow_all_button, Qt.LeftButton)
    qtbot.waitUntil(blocked.is_set, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: len(flow_rows(second, w.state.sel)) == 4, timeout=TIMEOUT)  # the focus's + 3
    assert w.analysis_progress.isVisible() and "window 2: attention flow" in w.analysis_progress.format()
    return second, release, calls


def test_an_edit_stops_the_flow_job_without_naming_an_old_window(window, load, tiny_model_paths, qtbot,
                                                                monkeypatch):
    w = window
    load(w, tiny_model_paths["bert"])
    w.state.update(words=False)
    second, release, calls = start_blocked_flow_all(w, qtbot, monkeypatch, finish_blocked_row=True)
    said_before = len(w.messages.history)
    progress = []
    w.flow_runner.progressed.connect(lambda _g, _f, m: progress.append(m))
    try:
        edited = DOCUMENT + " The end."
        with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT) as shown:
            w.document.editor.setPlainText(edited)
            # at once, while the old row is still computing: the job is stopped and off the status bar
            assert w.flow_runner.busy and not w.flow_runner.active and w.propagation.flow_job is None
            assert not w.analysis_progress.isVisible() or "attention flow" not in w.analysis_progress.format()
        assert shown.args[0].analysis.text == edited
    finally:
        release.set()
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)
    assert len(calls) >= 4  # the held row was computed after the edit ...
    assert len(flow_rows(second, w.state.sel)) == 4  # ... and not filed for a text that is gone
    assert not any(m.startswith("window 2:") for m in progress)  # the old job's progress never showed again
    after = [m for _level, m in w.messages.history[said_before:]]
    assert not any("window" in m.lower() or "stopped" in m or "cancelled" in m for m in after), after
    # the new text's flow view computes only its own focus row; nothing of the old job arrives
    assert set(flow_rows(w.state.analysis, w.state.sel)) <= {w.state.sel.focus}
    assert not w.analysis_progress.isVisible()


def test_the_status_bar_drops_a_stopped_job_at_once(window, load, tiny_model_paths, qtbot, monkeypatch):
    w = window
    load(w, tiny_model_paths["bert"])
    w.state.update(words=False)
    _second, release, _calls = start_blocked_flow_all(w, qtbot, monkeypatch, finish_blocked_row=False)
    try:
        # another window shown: the job gives way (rows kept, said so); the bar no longer shows it
        # but the request that waits for it
        show_window(w, qtbot, 2)
        assert "Attention flow for window 2 stopped at 4 of" in w.messages.text.text()
        assert w.flow_runner.busy and w.flow_runner.stopping
        assert w.analysis_progress.isVisible()
        assert w.analysis_progress.format() == "Attention flow: waiting for the stopped job to end…"
    finally:
        release.set()
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)
    assert not w.analysis_progress.isVisible()

    # Esc during a flow job: the bar goes at once, while the row in progress ends
    show_window(w, qtbot, 1)
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)
    release.clear()
    blocked = threading.Event()
    held_calls = []
    patched = ComputeProcess.add_flow

    def held_again(compute, analysis, rows, *args, **kw):
        held_calls.append(list(rows))
        if len(held_calls) == 2:
            blocked.set()
            release.wait(30)
        return patched(compute, analysis, rows, *args, **kw)

    monkeypatch.setattr(ComputeProcess, "add_flow", held_again)
    try:
        qtbot.mouseClick(w.selection_bar.flow_all_button, Qt.LeftButton)
        qtbot.waitUntil(blocked.is_set, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: "attention flow" in w.analysis_progress.format(), timeout=TIMEOUT)
        w.cancel_analysis()
        assert w.flow_runner.busy and not w.analysis_progress.isVisible()
    finally:
        release.set()
    qtbot.waitUntil(lambda: not w.flow_runner.busy, timeout=TIMEOUT)
    assert "Attention flow cancelled; the rows already computed are kept." in w.messages.text.text()
    assert not w.analysis_progress.isVisible()
