"""Where models run: in a child process (the window's choice) or in this process.

The window's process never imports torch or transformers: their one-time import holds Python's
global lock inside C code for up to ~200 ms at a time, long enough to freeze the window. A child
process holds the loaded model and answers `load` and `analyze` over a pipe; the caller waits
in a worker thread with the lock released, forwards progress and passes cancellation through an
event the child checks at every layer. A crash of the child (a native library fault, the
out-of-memory killer) becomes a one-line error, and the next load starts a fresh child.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from attn_desktop.core.errors import Cancelled, UserError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None
POLL_S = 0.02


def _summary(loaded):
    """A LoadedModel without the model and tokenizer objects, safe to send between processes."""
    return dataclasses.replace(loaded, model=None, tokenizer=None)


def _available_devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


class InProcessEngine:
    """Runs models in the calling process (command line, tests that patch the pipeline)."""

    def __init__(self) -> None:
        self.loaded = None

    def load(self, path: str, device: str = "cpu", progress: Progress = None, cancel: Cancel = None):
        from attn_desktop.core.model.loading import load_model

        self.loaded = load_model(path, device=device, progress=progress, cancel=cancel)
        return self.loaded, _available_devices()

    def analyze(self, model, text: str, progress: Progress = None, cancel: Cancel = None, **options):
        from attn_desktop.core.pipeline import analyze

        return analyze(model, text, progress=progress, cancel=cancel, **options)

    def close(self) -> None:
        self.loaded = None


_BIG = 1 << 20  # arrays from this size travel as .npy files: the pipe's unpickling holds the GIL


def _send_arrays_as_files(analysis, folder: str) -> None:
    import numpy as np

    for name, array in list(analysis.arrays.items()):
        if array.nbytes >= _BIG:
            fd, path = tempfile.mkstemp(dir=folder, suffix=".npy")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            analysis.arrays[name] = _ArrayFile(path)


def _take_arrays_from_files(analysis) -> None:
    import numpy as np

    for name, array in list(analysis.arrays.items()):
        if isinstance(array, _ArrayFile):
            try:
                analysis.arrays[name] = np.load(array.path, allow_pickle=False)
            finally:
                os.unlink(array.path)


@dataclasses.dataclass(frozen=True)
class _ArrayFile:
    path: str


def _serve(conn: Connection, cancel_fd: int) -> None:
    """The child's loop: one request at a time, answered by progress messages then one outcome.
    A byte on `cancel_fd` asks the running request to stop."""
    import attn_desktop  # noqa: F401  (offline mode before anything imports transformers)

    engine = InProcessEngine()
    folder = tempfile.mkdtemp(prefix="attn-desktop-model-")
    atexit.register(shutil.rmtree, folder, True)

    def progress(fraction: float, message: str) -> None:
        conn.send(("progress", (fraction, message)))

    def cancelled() -> bool:
        return bool(select.select([cancel_fd], [], [], 0)[0])

    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            return
        while cancelled():  # a stop asked for after the previous request had finished
            os.read(cancel_fd, 4096)
        if op == "quit":
            return
        conn.send(("started", None))  # from here on a byte on cancel_fd is meant for this request
        try:
            if op == "load":
                loaded, devices = engine.load(args["path"], args["device"], progress, cancelled)
                result: Any = (_summary(loaded), devices)
            elif op == "analyze":
                if engine.loaded is None:
                    raise UserError("no model is loaded in the model process (it may have stopped); "
                                    "load the model again")
                if str(engine.loaded.path) != args["model"]:
                    raise UserError("the model changed while the analysis waited; analyse again")
                result = engine.analyze(engine.loaded, args["text"], progress, cancelled, **args["options"])
                _send_arrays_as_files(result, folder)
            else:
                raise RuntimeError(f"unknown request {op!r}")
            conn.send(("result", result))
        except UserError as exc:
            conn.send(("user-error", str(exc)))
        except Cancelled:
            conn.send(("cancelled", None))
        except Exception as exc:  # reported to the caller as one line; the child stays up
            lines = str(exc).strip().splitlines()
            conn.send(("error", f"{exc.__class__.__name__}: {lines[0] if lines else ''}"))


class ProcessEngine:
    """Runs models in one long-lived child process, started on first use.

    The child is a fresh interpreter (`python -m attn_desktop.core.model.engine`), not a fork of this
    Qt process and not multiprocessing's spawn, which would re-import the caller's __main__."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._cancel_w: int | None = None

    def _start(self) -> None:
        self._close_pipes()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        cancel_r, cancel_w = os.pipe()
        fds = (to_child_r, from_child_w, cancel_r)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "attn_desktop.core.model.engine", *map(str, fds)],
            pass_fds=fds, stdin=subprocess.DEVNULL, close_fds=True,
        )
        for fd in fds:
            os.close(fd)
        self._conn = _Duplex(Connection(from_child_r), Connection(to_child_w, readable=False))
        self._cancel_w = cancel_w

    def _close_pipes(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._cancel_w is not None:
            os.close(self._cancel_w)
            self._cancel_w = None

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _call(self, op: str, args: dict, progress: Progress, cancel: Cancel):
        with self._lock:
            if not self._alive():
                self._start()
            try:
                self._conn.send((op, args))
            except OSError:
                return self._died()
            started = asked = False
            while True:
                if started and not asked and cancel is not None and cancel():
                    os.write(self._cancel_w, b"x")
                    asked = True
                if not self._conn.poll(POLL_S):
                    if not self._alive():
                        return self._died()
                    continue
                try:
                    kind, payload = self._conn.recv()
                except (EOFError, OSError):
                    return self._died()
                if kind == "started":
                    started = True
                elif kind == "progress":
                    if progress is not None:
                        progress(*payload)
                elif kind == "result":
                    if op == "analyze":
                        _take_arrays_from_files(payload)
                    return payload
                elif kind == "user-error":
                    raise UserError(payload)
                elif kind == "cancelled":
                    raise Cancelled()
                else:
                    raise RuntimeError(payload)

    def _died(self):
        code = self._proc.wait() if self._proc is not None else None
        self._proc = None
        self._close_pipes()
        raise UserError(
            f"the model process stopped unexpectedly (exit code {code}); load the model again"
        )

    def load(self, path: str, device: str = "cpu", progress: Progress = None, cancel: Cancel = None):
        return self._call("load", {"path": str(path), "device": device}, progress, cancel)

    def analyze(self, model, text: str, progress: Progress = None, cancel: Cancel = None, **options):
        args = {"model": str(model.path), "text": text, "options": options}
        return self._call("analyze", args, progress, cancel)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._alive() else None

    def close(self) -> None:
        with self._lock:
            if self._alive():
                try:
                    self._conn.send(("quit", None))
                    self._proc.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
            self._close_pipes()


class _Duplex:
    """One reading and one writing Connection used as a single two-way channel."""

    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader, self.writer = reader, writer

    def send(self, obj) -> None:
        self.writer.send(obj)

    def recv(self):
        return self.reader.recv()

    def poll(self, timeout: float) -> bool:
        return self.reader.poll(timeout)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


_shared: ProcessEngine | None = None


def shared_engine() -> ProcessEngine:
    """The process-wide model process (one child however many windows)."""
    global _shared
    if _shared is None:
        import atexit

        _shared = ProcessEngine()
        atexit.register(_shared.close)
    return _shared


if __name__ == "__main__":
    # Serve from the imported module, not __main__, so pickled classes name their real module.
    from attn_desktop.core.model import engine as _engine

    _in, _out, _cancel = (int(a) for a in sys.argv[1:4])
    _engine._serve(
        _engine._Duplex(Connection(_in, writable=False), Connection(_out, readable=False)), _cancel
    )
