"""Rollout and attention flow in the window. core.propagate.propagation computes them in compute
processes (core.propagate.compute_process), never in the window's own process: scipy's max flow
and stretches of numpy hold Python's global lock, which would stop the event loop. Workers here
only wait for them, on a copy of the analysis (measures.work_copy); results are filed on the GUI
thread under their parameters (measures.file_rollout / file_flow), so a view only ever shows a
result under the parameters it was computed with. Rollout and flow have a process each, so a long
flow job never holds up a rollout.

Flow rows are computed one at a time (core.propagate.propagation.add_flow in the compute process):
each finished row reaches the window at once (a queued signal), so the heatmap fills in row by row,
the progress bar moves per row, and a cancel keeps every finished row. A running job takes more
rows (a token clicked meanwhile) and computes the focus token's row next.
"""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, Signal

from ..core.errors import Cancelled
from ..core.propagate.compute_process import ComputeProcess, shared_compute
from ..core.propagate.flow_cost import plan as flow_plan
from ..core.propagate.flow_pool import default_workers
from .measures import (
    MEASURES,
    FlowRows,
    adopt_flow,
    adopt_rollout,
    compute_rollout,
    file_flow,
    file_rollout,
    flow_rows_of,
    seed_flow,
    store,
    work_copy,
)
from .state import ViewState
from .window_results import WindowStores, window_of
from .workers import LatestOnly


def time_left(seconds: float) -> str:
    """'about 40 s left', 'about 2 min left', 'about 1 h 5 min left'."""
    if seconds < 60:
        return f"about {max(5, int(round(seconds / 5.0)) * 5)} s left"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60} min left"


ESTIMATE_AFTER_S = 10.0  # runs expected to take longer than this say how long
PACE_AFTER_ROWS = 2  # rows finished after a job's first before their pace replaces the estimate


def clock() -> float:
    """What a flow job's pace is measured with (tests give it a fake clock)."""
    return time.perf_counter()


class RowPace:
    """The pace of a flow job's rows, measured from the end of its first row: that row also pays
    the job's one-off start (the compute process and its workers, the attention sent to them),
    so dividing the whole time by the rows done overstates what is left by that start."""

    def __init__(self) -> None:
        self.first_end: float | None = None
        self.last_end: float | None = None
        self.after_first = 0  # rows finished after the first

    def row_done(self, now: float) -> None:
        if self.first_end is None:
            self.first_end = now
        else:
            self.after_first += 1
        self.last_end = now

    def seconds_per_row(self) -> float | None:
        """Measured seconds per row, or None before PACE_AFTER_ROWS rows after the first."""
        if self.after_first < PACE_AFTER_ROWS:
            return None
        return (self.last_end - self.first_end) / self.after_first


def flow_progress(have: int, n: int, left: int, pace: float | None = None,
                  row_seconds: float | None = None, starting: bool = False) -> str:
    """The progress line of a flow job: the rows that exist out of n (as the title counts them),
    whether the flow processes are starting, and, for long runs, the time left at the measured
    `pace` (seconds per row, RowPace); until there is one, the estimate `row_seconds` per row
    (core.propagate.flow_cost), labelled as one."""
    text = f"attention flow: {have} of {n} token rows"
    if starting:
        text += " · starting the flow processes…"
    if left > 0 and pace is not None:
        if pace * left >= ESTIMATE_AFTER_S:
            text += f" · {time_left(pace * left)}"
    elif left > 0 and row_seconds is not None and row_seconds * left >= ESTIMATE_AFTER_S:
        text += f" · {time_left(row_seconds * left)} (estimated)"
    return text


class FlowJob:
    """The rows one flow worker computes. The GUI thread may add rows and set the priority while
    it runs; `lock` makes "add a row" and "the worker found nothing left and stopped" exclusive."""

    def __init__(self, analysis, params: tuple, rows: list[int], priority: int | None) -> None:
        self.analysis = analysis
        self.params = params
        self.wanted = list(rows)
        self.priority = priority
        self.closed = False
        self.dropped = False  # its text was edited: rows still arriving are for a text that is gone
        self.done = 0
        self.lock = threading.Lock()

    def add(self, rows: list[int], priority: int | None) -> bool:
        """False when the worker has already stopped (start a new job instead)."""
        with self.lock:
            if self.closed:
                return False
            self.wanted.extend(r for r in rows if r not in self.wanted)
            if priority is not None:
                self.priority = priority
            return True

    def next_row(self, have: set[int]) -> tuple[int | None, int]:
        """(row to compute next or None when finished, rows left including it)."""
        with self.lock:
            remaining = [r for r in self.wanted if r not in have]
            if not remaining:
                self.closed = True
                return None, 0
            row = self.priority if self.priority in remaining else remaining[0]
            return row, len(remaining)

    def close(self) -> None:
        with self.lock:
            self.closed = True


class Propagation(QObject):
    filed = Signal(object, str, tuple)  # analysis, "rollout" or "flow", parameters: new data
    status_changed = Signal()  # a job started or stopped: the "computing…" notes change
    stopped = Signal(str)  # a flow job for another window gave way to a new one: what was kept
    _flow_row = Signal(object, object)  # (FlowJob, FlowRows), emitted in the worker thread

    def __init__(self, state: ViewState, parent: QObject | None = None,
                 compute: dict[str, ComputeProcess] | None = None) -> None:
        """`compute`: the processes for "rollout" and "flow" (by default the process-wide ones)."""
        super().__init__(parent)
        self.state = state
        self.compute = compute or {kind: shared_compute(kind) for kind in ("rollout", "flow")}
        self.rollout_runner = LatestOnly("Rollout", self)
        self.flow_runner = LatestOnly("Attention flow", self)
        self.flow_job: FlowJob | None = None
        self._rollout_key: tuple | None = None  # (analysis id, params) of the newest request
        self.problems: dict[tuple, str] = {}  # (analysis id, kind, params) -> why it is missing
        self.windows = WindowStores()  # each window's rollout and flow while its document is shown
        self._flow_row.connect(self._on_flow_row)  # queued: the receiver lives in the GUI thread
        self.rollout_runner.succeeded.connect(self._on_rollout)
        self.rollout_runner.failed.connect(self._on_rollout_failed)
        self.rollout_runner.cancelled.connect(self._on_rollout_cancelled)
        self.rollout_runner.idle.connect(self.status_changed)
        self.flow_runner.failed.connect(self._on_flow_failed)
        self.flow_runner.cancelled.connect(self._on_flow_cancelled)
        self.flow_runner.idle.connect(self._on_flow_idle)

    @property
    def busy(self) -> bool:
        return self.rollout_runner.busy or self.flow_runner.busy

    def cancel(self) -> None:
        self.rollout_runner.cancel()
        self.flow_runner.cancel()

    def invalidate(self) -> None:
        """The text was edited: stop rollout and flow for the old one at once, without a message
        (no window of the old text is named), and file none of the rows still arriving."""
        self.rollout_runner.invalidate()
        self.flow_runner.invalidate()
        self._rollout_key = None
        if self.flow_job is not None:
            self.flow_job.dropped = True
            self.flow_job = None
        self.status_changed.emit()

    def forget(self, analysis) -> None:
        """A new analysis is shown: stop work for any other (a flow job for another window of the
        same document goes on in the background, filing its rows for its own window)."""
        self.windows.remember(analysis)
        if self._rollout_key is not None and self._rollout_key[0] != id(analysis):
            self.rollout_runner.cancel()
            self._rollout_key = None
        job = self.flow_job
        if job is not None and job.analysis is not analysis and not self._same_document(job.analysis, analysis):
            self.flow_runner.cancel()
        self.problems = {k: v for k, v in self.problems.items() if k[0] == id(analysis)}

    @staticmethod
    def _same_document(a, b) -> bool:
        wa, wb = window_of(a), window_of(b)
        return wa is not None and wb is not None and wa[0] is wb[0]

    def restore_window(self, analysis) -> None:
        """A window of the document shown is about to be shown again: give it the rows kept for
        it, and the flow job still running for it (its rows land in this view)."""
        kept = self.windows.restore(analysis, self.state.sel)
        job = self.flow_job
        if kept is not None and job is not None and self.flow_runner.busy and store(job.analysis) is kept:
            job.analysis = analysis

    def _say_stopped(self, job: FlowJob) -> None:
        """A running flow job for another window of the document gives way to a new request."""
        where = window_of(job.analysis)
        if where is None or not self.flow_runner.busy:
            return
        have = store(job.analysis)["flow"].get(job.params)
        done, n = (0 if have is None else len(have.rows)), len(job.analysis.tokens)
        self.stopped.emit(f"Attention flow for window {where[1] + 1} stopped at {done} of {n} token rows to compute "
                          f"this window's; the finished rows are kept for window {where[1] + 1} "
                          "(Ctrl+Alt+F there computes the rest).")

    # -- rollout --------------------------------------------------------------------------------
    def request_rollout(self) -> int | None:
        """Compute the rollout the selection asks for, unless it is there or on its way."""
        an, sel = self.state.analysis, self.state.sel
        if an is None:
            return None
        params = MEASURES["rollout"].params(an, sel)
        if params in store(an)["rollout"]:
            adopt_rollout(an, params)
            return None
        key = (id(an), params)
        if key == self._rollout_key and self.rollout_runner.busy:
            return None
        self._rollout_key = key
        self.problems.pop((id(an), "rollout", params), None)
        copy = work_copy(an)
        compute = self.compute["rollout"]

        def work(progress, cancel):
            progress(0.0, "rollout")
            result = compute_rollout(
                copy, params, cancel=cancel, compute=compute,
                progress=lambda done, total: progress(done / max(total, 1), f"rollout: layer {done} of {total}"))
            return an, params, result

        gen = self.rollout_runner.request(work)
        self.status_changed.emit()
        return gen

    def _on_rollout(self, _gen, outcome) -> None:
        an, params, result = outcome
        file_rollout(an, params, result)
        self.filed.emit(an, "rollout", params)

    def _on_rollout_failed(self, _gen, message: str) -> None:
        if self._rollout_key is not None:
            aid, params = self._rollout_key
            self.problems[(aid, "rollout", params)] = message

    def _on_rollout_cancelled(self, gen) -> None:
        if gen == self.rollout_runner.current and self._rollout_key is not None:
            aid, params = self._rollout_key
            self.problems[(aid, "rollout", params)] = "rollout cancelled; change a setting to compute it again"

    # -- flow -----------------------------------------------------------------------------------
    def request_flow(self, rows: list[int] | None = None, *, priority: int | None = None) -> int | None:
        """Compute flow rows (None: every token) for the selection's α and head fusion. Rows
        already there are kept; a running job for the same parameters takes the new rows."""
        an, sel = self.state.analysis, self.state.sel
        if an is None or MEASURES["flow"].unavailable(an, sel.set_name):
            return None
        params = MEASURES["flow"].params(sel)
        have = store(an)["flow"].get(params)
        done = set() if have is None else {int(r) for r in have.rows}
        wanted = list(range(len(an.tokens))) if rows is None else [int(r) for r in rows]
        todo = [r for r in wanted if r not in done]
        if not todo:
            adopt_flow(an, params)
            return None
        job = self.flow_job
        if (job is not None and self.flow_runner.busy and job.analysis is an and job.params == params
                and job.add(todo, priority)):
            self.status_changed.emit()
            return None
        for r in todo:
            self.problems.pop((id(an), "flow", params, r), None)
        cost = flow_plan(an.num_layers, len(an.tokens), len(todo), default_workers())
        if cost.refusal:  # said before anything starts; never approximated
            for r in todo:
                self.problems[(id(an), "flow", params, r)] = cost.refusal
            self.status_changed.emit()
            return None
        if self.flow_job is not None and self.flow_job.analysis is not an:
            self._say_stopped(self.flow_job)
        job = FlowJob(an, params, todo, priority)
        copy = work_copy(an)
        seed_flow(copy, have)
        # rows already there were made with the recorded α and fusion: pass them unchanged, so
        # core keeps the rows rather than starting afresh over a rounding difference
        alpha = have.entry["alpha"] if have is not None else params[0]
        fusion = have.entry["head_fusion"] if have is not None else params[1]
        emit_row = self._flow_row.emit
        n = len(an.tokens)
        compute = self.compute["flow"]
        where = window_of(an)
        said = (lambda m: f"window {where[1] + 1}: {m}") if where is not None else (lambda m: m)  # shown elsewhere too

        def work(progress, cancel):
            pace = RowPace()
            try:
                while True:
                    have_rows = {int(r) for r in copy.arrays.get("flow_rows", ())}
                    row, left = job.next_row(have_rows)
                    if row is None:
                        return job
                    if cancel():
                        raise Cancelled()
                    # counted as the title counts: rows of all n tokens that exist
                    starting = job.done == 0 and compute.pid is None
                    progress(len(have_rows) / n, said(flow_progress(len(have_rows), n, left, pace.seconds_per_row(),
                                                                    cost.row_seconds, starting)))
                    compute.add_flow(copy, [row], alpha, fusion, cancel=cancel)
                    job.done += 1
                    pace.row_done(clock())
                    emit_row(job, flow_rows_of(copy))
                    progress((len(have_rows) + 1) / n,
                             said(flow_progress(len(have_rows) + 1, n, left - 1, pace.seconds_per_row(),
                                                cost.row_seconds)))
            finally:
                job.close()

        self.flow_job = job
        gen = self.flow_runner.request(work)
        self.status_changed.emit()
        return gen

    def _on_flow_row(self, job: FlowJob, rows: FlowRows | None) -> None:
        if rows is None or job.dropped:
            return
        an = job.analysis
        current = (an.manifest.get("methods") or {}).get("flow")
        store(an)["flow"][job.params] = rows
        sel_params = MEASURES["flow"].params(self.state.sel)
        if current is None or job.params == sel_params or self.state.analysis is not an:
            file_flow(an, job.params, rows)
        self.filed.emit(an, "flow", job.params)

    def _on_flow_failed(self, _gen, message: str) -> None:
        job = self.flow_job
        if job is not None:
            for r in job.wanted:
                self.problems[(id(job.analysis), "flow", job.params, r)] = message

    def _on_flow_cancelled(self, gen) -> None:
        job = self.flow_job
        if job is not None and gen == self.flow_runner.current:  # not merely superseded
            have = store(job.analysis)["flow"].get(job.params)
            done = set() if have is None else {int(r) for r in have.rows}
            for r in job.wanted:
                if r not in done:
                    self.problems[(id(job.analysis), "flow", job.params, r)] = "flow cancelled"

    def _on_flow_idle(self) -> None:
        self.status_changed.emit()

    # -- what views say while data is missing -----------------------------------------------------
    def rollout_note(self, an, sel) -> str:
        params = MEASURES["rollout"].params(an, sel)
        problem = self.problems.get((id(an), "rollout", params))
        if problem:
            return problem
        if self.rollout_runner.busy and self._rollout_key == (id(an), params):
            return "computing the rollout…"
        return "rollout not computed yet"

    def flow_note(self, an, sel, query: int, who: str) -> str:
        params = MEASURES["flow"].params(sel)
        job = self.flow_job
        if (job is not None and self.flow_runner.busy and job.analysis is an and job.params == params
                and query in job.wanted):
            return f"No flow row for {who} yet: computing it…"
        problem = self.problems.get((id(an), "flow", params, query))
        tail = "Ctrl+Shift+F computes it; Ctrl+Alt+F computes every token's."
        if problem:
            return f"No flow row for {who}: {problem}. {tail}"
        return f"No flow row for {who} yet. {tail}"
