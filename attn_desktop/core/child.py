"""A child interpreter that the window's process drives over pipes: the parent's side (start,
pipes, liveness) and the child's lifeline (a pipe the parent never writes: its end of file, or a
new parent pid, ends the child). Shared by the model process and the compute processes."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

WATCH_S = 0.5  # the child also checks this often that its parent is still its parent
POLL_S = 0.02  # how often the parent checks that the child is alive and whether to cancel


class Duplex:
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


def watch_parent(lifeline_fd: int, parent: int, gone: Callable[[], None]) -> None:
    """Watchdog loop (run it in a daemon thread): call `gone` as soon as the parent is gone."""
    while True:
        try:
            ready = select.select([lifeline_fd], [], [], WATCH_S)[0]
        except OSError:
            ready = True
        if ready or os.getppid() != parent:
            gone()


def start_watchdog(lifeline_fd: int, parent: int, gone: Callable[[], None]) -> None:
    threading.Thread(target=watch_parent, args=(lifeline_fd, parent, gone), daemon=True,
                     name="parent-watch").start()


def child_channel(in_fd: int, out_fd: int) -> Duplex:
    """The child's end of the two message pipes."""
    return Duplex(Connection(in_fd, writable=False), Connection(out_fd, readable=False))


def start_child(argv: list[str], folder_prefix: str) -> tuple[Duplex, int, str, Callable[..., None]]:
    """The child's start: ignore Ctrl+C (it is for the window), make its own folder (named after its
    pid), removed at exit, on SIGTERM and when the watchdog finds the parent gone.
    Returns (message channel, cancel fd, folder, gone) where gone() removes the folder and exits."""
    import atexit
    import shutil
    import signal
    import tempfile

    in_fd, out_fd, cancel_fd, lifeline_fd, parent = (int(a) for a in argv[:5])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    folder = tempfile.mkdtemp(prefix=f"{folder_prefix}{os.getpid()}-")

    def remove_folder() -> None:
        shutil.rmtree(folder, ignore_errors=True)

    def gone(*_signal) -> None:
        remove_folder()
        os._exit(0)

    atexit.register(remove_folder)
    signal.signal(signal.SIGTERM, gone)
    start_watchdog(lifeline_fd, parent, gone)
    return child_channel(in_fd, out_fd), cancel_fd, folder, gone


class ChildProcess:
    """The parent's side: a fresh interpreter (`python -m MODULE in out cancel lifeline parent`),
    never a fork of the Qt process, with its message pipes, cancel pipe and lifeline."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._conn: Duplex | None = None
        self._cancel_w: int | None = None
        self._lifeline_w: int | None = None

    def _spawn(self, module: str, prepare: Callable[[int], None] | None = None) -> None:
        """Start the child; `prepare` is applied to both message pipes' write ends first."""
        self._close_pipes()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        cancel_r, cancel_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()  # never written: its end-of-file tells the child we are gone
        if prepare is not None:
            for fd in (to_child_w, from_child_w):
                prepare(fd)
        fds = (to_child_r, from_child_w, cancel_r, lifeline_r)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", module, *map(str, fds), str(os.getpid())],
                pass_fds=fds, stdin=subprocess.DEVNULL, close_fds=True,
            )
        except BaseException:
            for fd in (*fds, to_child_w, from_child_r, cancel_w, lifeline_w):
                os.close(fd)
            raise
        for fd in fds:
            os.close(fd)
        self._conn = Duplex(Connection(from_child_r), Connection(to_child_w, readable=False))
        self._cancel_w, self._lifeline_w = cancel_w, lifeline_w

    def _close_pipes(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        for name in ("_cancel_w", "_lifeline_w"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._alive() else None

    def _replies(self, cancel: Callable[[], bool] | None, recv: Callable[[Duplex], tuple]):
        """The child's replies to the request just sent, one (kind, payload) at a time, but for
        "started": once the child has said it, a True cancel() is passed on once through the cancel pipe; a
        child that dies meanwhile ends in the subclass's _died(), which cleans up and raises."""
        started = asked = False
        while True:
            if started and not asked and cancel is not None and cancel():
                os.write(self._cancel_w, b"x")
                asked = True
            if not self._conn.poll(POLL_S):
                if not self._alive():
                    self._died()
                continue
            try:
                kind, payload = recv(self._conn)
            except (EOFError, OSError):
                self._died()
            if kind == "started":  # from here on, a cancel is meant for this request
                started = True
                continue
            yield kind, payload

    def _stop(self, send_quit: Callable[[], None]) -> None:
        """Ask the child to quit (kill it after 5 s) and close the pipes."""
        if self._alive():
            try:
                send_quit()
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        self._close_pipes()
