"""A validation keeps to the analysis it was started for, in the real window with the real model
process: while it runs the button says so and cannot start another, Esc cancels it; opening a
session while it runs stops it and its late result never lands; switching the window of the same
document while it runs files the result into the window then shown, not the one it started on.

The run is held just before its last step (a gate in the worker) so the order of events is fixed."""

from __future__ import annotations

import threading

from lease_text import DOCUMENT
from PySide6.QtCore import Qt

from attn_desktop.core import windows as core_windows
from attn_desktop.gui import validate_panel as vp

TIMEOUT = 180_000
LABELS = ["rent and payment", "ending the lease"]


def held_run(monkeypatch):
    """Make the panel's runs wait before preparing their views until the gate opens; `reached` is
    set when a run waits there."""
    gate, reached = threading.Event(), threading.Event()
    real = vp.prepare

    def held(analysis, cancel):
        reached.set()
        gate.wait(120)
        return real(analysis, cancel)

    monkeypatch.setattr(vp, "prepare", held)
    return gate, reached


def windowed(w, qtbot, load, path):
    load(w, path)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    assert core_windows.is_windowed(w.state.analysis) and core_windows.window_count(w.state.analysis) >= 3
    panel = w.validate_panel
    panel.chooser.mode.setCurrentIndex(panel.chooser.mode.findData("zero-shot"))
    panel.chooser.labels_edit.setPlainText("\n".join(LABELS))
    return panel


def show_window(w, qtbot, k):
    with qtbot.waitSignal(w.state.analysis_changed, timeout=TIMEOUT):
        assert w.windows_strip.show_window(k, pinned=True)
    assert core_windows.shown_window(w.state.analysis) == k


def test_opening_a_session_while_validating_drops_the_run(window, load, qtbot, tiny_model_paths, tmp_path,
                                                           monkeypatch):
    w = window
    panel = windowed(w, qtbot, load, tiny_model_paths["bert"])
    gate, reached = held_run(monkeypatch)
    panel.run_button.click()
    qtbot.waitUntil(lambda: reached.is_set() or not panel.runner.busy, timeout=TIMEOUT)
    assert reached.is_set(), panel.status.text()
    assert panel.runner.busy and not panel.run_button.isEnabled() and panel.run_button.text() == "Running…"

    show_window(w, qtbot, 2)
    path = tmp_path / "on-window-3.attn"
    with qtbot.waitSignal(w.session_saved, timeout=TIMEOUT):
        w.save_session(str(path))
    with qtbot.waitSignal(panel.validation_cancelled, timeout=TIMEOUT):
        with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
            w.open_session(str(path))
        gate.set()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    qtbot.wait(50)  # any queued late signal of the old run is delivered by now
    an = w.state.analysis
    assert core_windows.shown_window(an) == 2 and "window 3 of" in w.windows_strip.label.text()
    assert w.status_time.text() == "session on-window-3.attn"
    assert "explain" not in an.manifest and panel.shown is None
    assert panel.status.text().startswith("Validation stopped: another analysis or session is shown")
    assert panel.run_button.isEnabled() and panel.run_button.text() == "Run validation"


def test_a_window_switch_while_validating_files_results_in_the_window_shown(window, load, qtbot,
                                                                            tiny_model_paths, monkeypatch):
    w = window
    panel = windowed(w, qtbot, load, tiny_model_paths["bert"])
    gate, reached = held_run(monkeypatch)
    panel.run_button.click()
    qtbot.waitUntil(lambda: reached.is_set() or not panel.runner.busy, timeout=TIMEOUT)
    assert reached.is_set(), panel.status.text()
    show_window(w, qtbot, 1)
    shown, status = w.state.analysis, w.status_time.text()
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT) as blocker:
        gate.set()
    assert blocker.args[0] is shown and w.state.analysis is shown
    assert core_windows.shown_window(shown) == 1 and shown.manifest["explain"]["document"]
    assert w.status_time.text() == status  # the analysis shown, not the validation's run
    assert "window 2 of" in w.windows_strip.label.text()


def test_escape_cancels_a_running_validation(window, load, qtbot, tiny_model_paths, monkeypatch):
    w = window
    panel = windowed(w, qtbot, load, tiny_model_paths["bert"])
    gate, reached = held_run(monkeypatch)
    panel.run_button.click()
    qtbot.waitUntil(lambda: reached.is_set() or not panel.runner.busy, timeout=TIMEOUT)
    assert reached.is_set(), panel.status.text()
    before = w.state.analysis
    with qtbot.waitSignal(panel.validation_cancelled, timeout=TIMEOUT):
        qtbot.keyClick(w, Qt.Key_Escape)
        gate.set()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    assert "explain" not in before.manifest and panel.shown is None
    assert panel.progress.format() == "cancelled"


def test_opening_a_session_while_the_heads_analysis_runs_drops_it(window, load, analyse, qtbot, tiny_model_paths,
                                                                   tmp_path, monkeypatch):
    from attn_desktop.gui import heads_panel as hp

    w = window
    load(w, tiny_model_paths["bert-cls"])
    first = analyse(w, "The bank approved the loan after the river flooded.", type_it=False).analysis
    path = tmp_path / "plain.attn"
    with qtbot.waitSignal(w.session_saved, timeout=TIMEOUT):
        w.save_session(str(path))
    gate, reached = threading.Event(), threading.Event()
    real = hp.prepare

    def held(analysis, cancel):
        reached.set()
        gate.wait(120)
        return real(analysis, cancel)

    monkeypatch.setattr(hp, "prepare", held)
    panel = w.heads_panel
    panel.run_button.click()
    qtbot.waitUntil(lambda: reached.is_set() or not panel.runner.busy, timeout=TIMEOUT)
    assert reached.is_set(), panel.status.text()
    try:
        with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
            w.open_session(str(path))
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    qtbot.wait(50)
    an = w.state.analysis
    assert an is not first and "heads" not in an.manifest and "heads" not in first.manifest
    assert w.status_time.text() == "session plain.attn" and panel.shown is None
    assert panel.status.text().startswith("Heads analysis stopped: another analysis or session is shown")
