"""Flow jobs in the real window say their estimated time before rows finish, and a job that
cannot fit (core.propagate.flow_cost) is refused with its figures before anything starts."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt

from attn_desktop.core.propagate import flow_cost
from attn_desktop.core.propagate.compute_process import ComputeProcess

TIMEOUT = 60_000
TEXT = "The tenant shall pay the rent on the first day of each month."


def test_flow_for_all_tokens_says_its_estimate_or_is_refused(window, load, analyse, tiny_model_paths,
                                                              qtbot, monkeypatch):
    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    n = len(an.tokens)
    calls = []
    real = ComputeProcess.add_flow

    def counted(compute, analysis, rows, *args, **kw):
        calls.append(list(rows))
        return real(compute, analysis, rows, *args, **kw)

    monkeypatch.setattr(ComputeProcess, "add_flow", counted)

    # too long: refused before any row is asked for, and the views say why; the flow view it
    # switches to computes only the focus token's row (one row is never refused for its time)
    monkeypatch.setattr(flow_cost, "LONG_JOB_SECONDS", 0.0)
    window.act_flow_all.trigger()
    qtbot.waitUntil(lambda: not window.flow_runner.busy, timeout=TIMEOUT)
    focus = window.state.sel.focus
    assert calls and all(c == [focus] for c in calls)
    last = n - 1 if focus != n - 1 else 0
    note = window.propagation.flow_note(an, window.state.sel, last, "the last token")
    assert f"attention flow for {n} rows at {n} tokens would take about" in note
    assert "not started" in note
    monkeypatch.setattr(flow_cost, "LONG_JOB_SECONDS", 8 * 3600.0)

    # long enough to be worth saying: the estimate shows until rows give the real pace
    monkeypatch.setattr(flow_cost, "pair_seconds", lambda layers, tokens: 2.0)
    messages = []
    window.flow_runner.progressed.connect(lambda _g, _f, m: messages.append(m))
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        qtbot.mouseClick(window.selection_bar.flow_all_button, Qt.LeftButton)
    assert sorted({r for c in calls for r in c}) == list(range(n))
    assert re.fullmatch(rf"attention flow: 1 of {n} token rows · about \d+ min left \(estimated\)", messages[0])
    assert not any("estimated" in m for m in messages if m.startswith(f"attention flow: {n - 1} of"))
