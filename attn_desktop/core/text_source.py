"""Texts from any source (a regular file, a device, a FIFO, standard input, a command-line
argument) read with a size cap and decoded by one rule, shared by the window and the command line.

The rule: UTF-8, with or without a byte-order mark; a NUL byte means a binary file; anything else
is refused in one line saying where the first bad byte is. Never reads more than cap + 1 bytes,
never blocks without polling `cancel`, and never follows a source that is not readable data.
"""

from __future__ import annotations

import codecs
import errno
import os
import select
import stat
import time
from collections.abc import Callable
from pathlib import Path

from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.quoting import quote

TEXT_LIMIT = 5_000_000  # bytes
STDIN = "-"
_CHUNK = 1 << 16
_POLL_MS = 100


def decode_text(data: bytes, label: str) -> str:
    """The one decoding rule for texts."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not data.startswith(codecs.BOM_UTF8):
        raise UserError(f"{label} is UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        raise UserError(f"{label} looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{label} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def text_argument(value: str, option: str = "--text") -> str:
    """A text given on the command line: Python hands bytes that are not UTF-8 over as lone
    surrogates, which reach the tokenizer as a TypeError unless refused here."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        at = len(value[:exc.start].encode("utf-8", "surrogateescape"))
        raise UserError(f"the text given with {option} is not UTF-8 (byte {at})") from None
    return value


def read_text(source: str | os.PathLike, *, limit: int = TEXT_LIMIT,
              cancel: Callable[[], bool] | None = None, idle_timeout: float | None = None) -> str:
    """The text of `source`: a path, or "-" for standard input. `cancel` is polled while a FIFO
    or a terminal has nothing to give; `idle_timeout` seconds without data end the wait."""
    if os.fspath(source) == STDIN:
        label = "standard input"
        data = _read_fd(0, limit, label, cancel, idle_timeout)
        return decode_text(data, label)
    path = Path(source).expanduser()
    label = quote(path.name or str(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"text file not found: {quote(path)}") from None
    except OSError as exc:
        raise UserError(f"cannot read {quote(path)}: {_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{quote(path)} is a folder, not a text file")
    if stat.S_ISREG(info.st_mode) and info.st_size > limit:
        raise UserError(f"{label} is {info.st_size / 1e6:.1f} MB; texts of up to {limit / 1e6:.0f} MB are read")
    if stat.S_ISSOCK(info.st_mode):
        raise UserError(f"{quote(path)} is a socket, not a text file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"cannot read {quote(path)}: {_reason(exc)}") from None
    try:
        if stat.S_ISREG(info.st_mode):
            os.set_blocking(fd, True)
        return decode_text(_read_fd(fd, limit, label, cancel, idle_timeout), label)
    finally:
        os.close(fd)


def _read_fd(fd: int, limit: int, label: str, cancel, idle_timeout) -> bytes:
    try:
        info = os.fstat(fd)
    except OSError as exc:  # standard input closed, for one
        raise UserError(f"cannot read {label}: {_reason(exc)}") from None
    if stat.S_ISREG(info.st_mode) and info.st_size - _position(fd) > limit:
        raise UserError(f"{label} is {info.st_size / 1e6:.1f} MB; texts of up to {limit / 1e6:.0f} MB are read")
    chunks: list[bytes] = []
    size = 0
    regular = stat.S_ISREG(info.st_mode)
    poller = None if regular else select.poll()
    if poller is not None:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    waited_since = time.monotonic()
    while size <= limit:
        if poller is not None:
            events = poller.poll(_POLL_MS)
            if not events:
                if cancel is not None and cancel():
                    raise Cancelled()
                if idle_timeout is not None and time.monotonic() - waited_since > idle_timeout:
                    raise UserError(f"nothing arrived from {label} in {idle_timeout:g} s")
                continue
            if not any(ev & (select.POLLIN | select.POLLPRI) for _, ev in events):
                break  # the writer closed: POLLHUP or POLLERR without data
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
        except BlockingIOError:
            continue
        except OSError as exc:
            raise UserError(f"cannot read {label}: {_reason(exc)}") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        waited_since = time.monotonic()
        if cancel is not None and cancel():
            raise Cancelled()
    if size > limit:
        raise UserError(f"{label} holds more than {limit / 1e6:.0f} MB; texts of up to {limit / 1e6:.0f} MB are read")
    return b"".join(chunks)


def _position(fd: int) -> int:
    try:
        return os.lseek(fd, 0, os.SEEK_CUR)
    except OSError:
        return 0


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    return exc.strerror or type(exc).__name__
