"""Settings written to disk off the GUI thread, without holding Python's lock.

A QSettings object writes its file when the event loop next runs after a change, on the thread
the object lives in, and the write ends with fdatasync. On a busy disk one such write took
100-250 ms on the GUI thread: after a model loaded, the next turn of the event loop (often the
whole of the next, quick load) froze the window. Calling `sync()` from a Python thread does not
help: PySide holds the GIL through the call, so the GUI thread waits all the same.

`BackgroundSettings` keeps what this process sets in memory, so reads see it at once, and passes
each change by a queued signal to a writer object in its own QThread. There the change is applied
to a plain QSettings object on the same file, whose own deferred write then runs from that
thread's C++ event loop with the GIL released. `sync()` waits until the file is written (closing
the window); pending changes are also written at exit.
"""

from __future__ import annotations

import atexit
import threading

from PySide6.QtCore import QObject, QSettings, QThread, Signal, Slot

_REMOVED = "\0attn-desktop-removed\0"
WAIT_S = 10.0


class _Writer(QObject):
    """Lives in the writer thread; one QSettings object per file, created there."""

    apply = Signal(str, object, str, object)  # file name, format, key, value (or _REMOVED)
    flush = Signal(object)  # a threading.Event set once every file is written

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[tuple, QSettings] = {}
        self.apply.connect(self._apply)
        self.flush.connect(self._flush)

    @Slot(str, object, str, object)
    def _apply(self, file_name: str, fmt, key: str, value) -> None:
        s = self.files.get((file_name, fmt))
        if s is None:
            s = self.files[(file_name, fmt)] = QSettings(file_name, fmt)
        if isinstance(value, str) and value == _REMOVED:
            s.remove(key)
        else:
            s.setValue(key, value)  # written by the object's own deferred update, GIL released

    @Slot(object)
    def _flush(self, done: threading.Event) -> None:
        for s in self.files.values():
            s.sync()
        done.set()


_thread: QThread | None = None
_writer: _Writer | None = None


def _get_writer() -> _Writer:
    global _thread, _writer
    if _writer is None:
        _thread = QThread()
        _thread.setObjectName("settings-writer")
        _writer = _Writer()
        _writer.moveToThread(_thread)
        _thread.start()
        atexit.register(_stop)
    return _writer


def wait_written(timeout: float = WAIT_S) -> bool:
    """Block until every settings change made so far is on disk."""
    if _writer is None:
        return True
    done = threading.Event()
    _writer.flush.emit(done)
    return done.wait(timeout)


def _stop() -> None:
    wait_written()
    if _thread is not None:
        _thread.quit()
        _thread.wait(int(WAIT_S * 1000))


class BackgroundSettings(QSettings):
    """A QSettings that reads its file once, when made, keeps every change in memory and hands
    it to the background writer. Later reads never wait for the file (QSettings' own reads
    wait while the writer holds the file's lock, up to a whole fdatasync); changes that other
    objects make after this one was made are not seen by it."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._set: dict[str, object] = {k: super(BackgroundSettings, self).value(k) for k in super().allKeys()}

    def setValue(self, key: str, value) -> None:  # noqa: N802 (Qt's name)
        if key in self._set and _same(self._set[key], value):
            return  # writing an unchanged value would still rewrite the file
        self._set[key] = value
        _get_writer().apply.emit(self.fileName(), self.format(), key, value)

    def remove(self, key: str) -> None:
        self._set.pop(key, None)
        _get_writer().apply.emit(self.fileName(), self.format(), key, _REMOVED)

    def value(self, key: str, defaultValue=None, type=None):  # noqa: A002,N803 (Qt's names)
        if key not in self._set:
            return defaultValue
        v = self._set[key]
        return v if type is None or isinstance(v, type) else _convert(v, type)

    def contains(self, key: str) -> bool:
        return key in self._set

    def allKeys(self) -> list[str]:  # noqa: N802
        return sorted(self._set)

    def sync(self) -> None:
        wait_written()

    def beginGroup(self, prefix: str) -> None:  # noqa: N802
        raise NotImplementedError("BackgroundSettings keys are full paths ('group/key'), not groups")


def _same(a, b) -> bool:
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:  # values that cannot be compared are written
        return False


def _convert(v, kind):
    if kind is bool:
        return v in (True, 1, "true", "1")
    if kind is list:
        return [v] if isinstance(v, str) else list(v)
    return kind(v)
