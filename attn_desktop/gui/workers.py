"""Background work on QThreads: progress, cancel and errors arrive as signals on the GUI thread.

`Job(fn)` runs fn(progress, cancel) in its own thread; fn reports with progress(fraction, message)
and polls cancel() (core raises Cancelled when it sees it). Every job is kept alive in a registry
until its thread has ended, so a finished Python wrapper never outlives its C++ thread or vice
versa; tests use `running_jobs()` to fail when one is left behind.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from ..core.errors import Cancelled, UserError

log = logging.getLogger(__name__)
_live: set[Job] = set()


def running_jobs() -> list[Job]:
    return [j for j in _live if j.isRunning()]


def stop_all(timeout_ms: int = 10000) -> None:
    """Cancel every job and wait for its thread (application exit, test teardown)."""
    for job in list(_live):
        job.cancel()
    for job in list(_live):
        job.wait(timeout_ms)


class Job(QThread):
    progressed = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str)  # one line, for the message area
    cancelled = Signal()
    done = Signal()  # after exactly one of succeeded / failed / cancelled, on the GUI thread

    def __init__(self, fn: Callable[[Callable, Callable], Any], name: str,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fn = fn
        self.name = name
        self.setObjectName(name)
        self._cancel = threading.Event()
        self.seconds = 0.0
        self.finished.connect(self._reap)

    def start(self, *args) -> None:  # type: ignore[override]
        _live.add(self)
        super().start(*args)

    def cancel(self) -> None:
        self._cancel.set()

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _progress(self, fraction: float, message: str = "") -> None:
        self.progressed.emit(float(fraction), str(message))

    def run(self) -> None:
        started = time.perf_counter()
        try:
            result = self.fn(self._progress, self._cancel.is_set)
        except Cancelled:
            self.seconds = time.perf_counter() - started
            self.cancelled.emit()
            return
        except UserError as exc:
            self.seconds = time.perf_counter() - started
            self.failed.emit(str(exc).splitlines()[0] if str(exc) else "failed")
            return
        except MemoryError:
            self.failed.emit(f"{self.name}: out of memory")
            return
        except Exception as exc:  # never let a worker error take the window down
            log.error("%s failed:\n%s", self.name, traceback.format_exc())
            text = str(exc).strip().splitlines()
            self.failed.emit(f"{self.name} failed: {type(exc).__name__}: {text[0] if text else ''}")
            return
        self.seconds = time.perf_counter() - started
        if self._cancel.is_set():
            self.cancelled.emit()
        else:
            self.succeeded.emit(result)

    def _reap(self) -> None:
        self.wait()
        self.done.emit()
        _live.discard(self)


class LatestOnly(QObject):
    """Runs one job at a time; a new request cancels the running one and replaces any waiting
    one. Each request gets a generation number; `current` is the newest, and results carrying an
    older one are dropped rather than shown."""

    started = Signal(int)
    progressed = Signal(int, float, str)
    succeeded = Signal(int, object)
    failed = Signal(int, str)
    cancelled = Signal(int)
    idle = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.current = 0
        self._job: Job | None = None
        self._job_gen = 0
        self._pending: tuple[int, Callable] | None = None

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def active(self) -> bool:
        """A job runs that nobody stopped, or one waits to start (a stopped job's thread may
        still be ending its current step: `busy`, but not `active`)."""
        if self._pending is not None:
            return True
        return self._job is not None and not self._job.cancel_requested()

    @property
    def stopping(self) -> bool:
        """A stopped job's thread is still ending its current step."""
        return self._job is not None and self._job.cancel_requested()

    def request(self, fn: Callable[[Callable, Callable], Any]) -> int:
        self.current += 1
        self._pending = (self.current, fn)
        if self._job is None:
            self._start_pending()
        else:
            self._job.cancel()
        return self.current

    def invalidate(self) -> None:
        """Whatever is running or waiting is out of date: cancel it and drop its result."""
        self.current += 1
        self._pending = None
        if self._job is not None:
            self._job.cancel()

    def cancel(self) -> None:
        """Stop what runs (its cancelled signal keeps its generation: nothing superseded it)."""
        self._pending = None
        if self._job is not None:
            self._job.cancel()

    def _start_pending(self) -> None:
        gen, fn = self._pending
        self._pending = None
        job = Job(fn, self.name, self)
        self._job, self._job_gen = job, gen
        job.progressed.connect(self._on_progress)
        job.succeeded.connect(self._on_success)
        job.failed.connect(self._on_failure)
        job.cancelled.connect(self._on_cancel)
        job.done.connect(self._on_done)
        self.started.emit(gen)
        job.start()

    def _on_progress(self, fraction: float, message: str) -> None:
        # a stopped job's progress is no longer news, even while its thread ends its current step
        if self._job_gen == self.current and self._job is not None and not self._job.cancel_requested():
            self.progressed.emit(self._job_gen, fraction, message)

    def _on_success(self, result: object) -> None:
        if self._job_gen == self.current:
            self.succeeded.emit(self._job_gen, result)

    def _on_failure(self, message: str) -> None:
        if self._job_gen == self.current:
            self.failed.emit(self._job_gen, message)

    def _on_cancel(self) -> None:
        self.cancelled.emit(self._job_gen)

    def _on_done(self) -> None:
        self._job = None
        if self._pending is not None:
            self._start_pending()
        else:
            self.idle.emit()
