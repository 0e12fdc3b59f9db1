"""The status bar's progress shows live jobs only. A stopped job (the text edited, Esc, a flow job
giving way to another window's) leaves it at once, although its thread may still be ending its
current step: a flow row can take seconds, and its progress would otherwise stay on screen that
long for a job that no longer counts."""

from __future__ import annotations


def drop_stopped(window) -> None:
    """Hide the status bar's progress when no job is live; while a request waits for a stopped
    job to end, say so instead of the stopped job's progress."""
    runners = (window.analyzer, window.rollout_runner, window.flow_runner)
    if not any(r.active for r in runners):
        window.analysis_progress.hide()
        window.analysis_cancel.hide()
        return
    if any(r.active and not r.stopping for r in runners):
        return  # a live job reports here itself
    waiting = next(r for r in runners if r.active)
    window.analysis_progress.setValue(0)
    window.analysis_progress.setFormat(f"{waiting.name}: waiting for the stopped job to end…")
