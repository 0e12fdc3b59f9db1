"""Worker processes for attention flow that are kept between calls.

Flow is computed one input token (sink) at a time, and a row's sinks are independent, so a
row's sinks are split into chunks that run in several processes at once (the pricing of cuts
between solves holds Python's lock: threads would not overlap). Starting a worker costs far more than one row, so a
`FlowPool` keeps its workers: they are spawned on first use (fresh interpreters, not forks:
safe from threaded code) and keep the layered network of the last matrices they were sent, so
"flow for every row", computed a row per call, pays for the start and for the network once.

The matrices travel once per `hat` and worker: one loading task per worker, each waiting at a
barrier until every worker has one, so that no worker takes two. A worker ends when the
process that started it is gone (it watches its parent), so a killed compute process leaves
none behind; nothing is written to disk.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np

from ..errors import Cancelled
from .flow_cost import network_bytes

POOL_BYTES = 2**30  # workers are used while their networks together stay under this
MIN_TOKENS = 96  # below this a row takes milliseconds: the pool's messages would dominate
_LOAD_WAIT_S = 120.0
_DRAIN_S = 10.0

_WORKER: dict = {}  # in a worker: {"key", "net", "row"}


def worth_a_pool(layers: int, n: int, workers: int) -> bool:
    """Whether splitting rows over `workers` processes is expected to pay for itself."""
    return workers > 1 and layers >= 3 and n >= MIN_TOKENS and workers * network_bytes(layers, n) <= POOL_BYTES


def default_workers() -> int:
    """One worker per core, at most 4 (the window's process and the compute process wait)."""
    return max(1, min(4, os.cpu_count() or 1))


def _start_worker(parent: int, barrier) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is for the parent to act on
    _WORKER["barrier"] = barrier

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="flow-pool-parent-watch", daemon=True).start()


def _load(key: int, hat: np.ndarray) -> None:
    from .flow import _Network

    for name in ("key", "net", "row"):  # the old network goes before the new one is built
        _WORKER.pop(name, None)
    _WORKER.update(key=key, net=_Network(hat), row=None)
    _WORKER["barrier"].wait(_LOAD_WAIT_S)


def _task(key: int, i: int, sinks: np.ndarray, tol: float):
    from .flow import _row_flows, _row_for

    if _WORKER.get("key") != key:
        raise RuntimeError("a flow worker holds other matrices than the task's")
    _WORKER["row"] = _row_for(_WORKER["net"], i, _WORKER["row"])
    return _row_flows(_WORKER["net"], i, sinks, tol, row=_WORKER["row"])


class FlowPool:
    """Worker processes that compute chunks of flow rows (see the module docstring)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self._executor: ProcessPoolExecutor | None = None
        self._hat: np.ndarray | None = None
        self._key = 0
        self._keys = itertools.count(1)
        self._lock = threading.Lock()

    def _prepare(self, hat: np.ndarray) -> None:
        import multiprocessing

        if self._executor is None:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_start_worker,
                initargs=(os.getpid(), context.Barrier(self.workers)),
            )
            self._hat = None
        if hat is self._hat:  # the same array object: its network is in the workers already
            return
        self._hat, self._key = None, next(self._keys)
        values = np.ascontiguousarray(hat, dtype=hat.dtype if hat.dtype == np.float32 else np.float64)
        loads = [self._executor.submit(_load, self._key, values) for _ in range(self.workers)]
        for future in loads:
            future.result()
        self._hat = hat

    def run(self, hat: np.ndarray, tasks, tol: float, record: Callable, cancel: Callable[[], bool] | None) -> None:
        """Run `tasks` ((position, row, sinks) each) and call `record(task, outcome)` in this
        thread as each finishes; `cancel()` returning True stops with Cancelled (running chunks
        finish first, queued ones are dropped)."""
        with self._lock:
            try:
                self._prepare(hat)
                self._run(tasks, tol, record, cancel)
            except BaseException as exc:
                if not isinstance(exc, Cancelled):
                    self._close(kill=True)  # a worker died or failed, or Ctrl+C: start afresh next time
                raise

    def _run(self, tasks, tol, record, cancel) -> None:
        executor, key = self._executor, self._key
        queue = list(tasks)[::-1]
        pending: dict = {}
        try:
            while queue or pending:
                while queue and len(pending) < 2 * self.workers:  # rows finish in order
                    task = queue.pop()
                    pending[executor.submit(_task, key, task[1], task[2], tol)] = task
                finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                if cancel is not None and cancel():
                    raise Cancelled("attention flow cancelled")
                for future in finished:
                    record(pending.pop(future), future.result())
        except Cancelled:
            for future in pending:
                future.cancel()
            _, stuck = wait(pending, timeout=_DRAIN_S)  # running chunks take well under a second
            if stuck:
                self._close(kill=True)
            raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self, kill: bool = False) -> None:
        executor, self._executor, self._hat = self._executor, None, None
        if executor is None:
            return
        if kill:  # nothing in a worker needs a clean end: its network is only memory
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                process.kill()
        executor.shutdown(wait=not kill, cancel_futures=True)


_shared: list[FlowPool] = []


def shared_pool() -> FlowPool:
    """This process's pool, started on first use and closed when the process exits."""
    if not _shared:
        _shared.append(FlowPool())
        atexit.register(_shared[0]._close, kill=True)  # at exit nothing waits for a worker
    return _shared[0]
