"""Writing output files atomically: to a temporary file in the destination folder, synced, then
renamed over the destination. A failed write (a full disk, a quota, a name too long, an
append-only folder, a signal) leaves the destination as it was and no partial file; a temporary
file left by a killed writer is removed at the next write to that folder.

Temporary names are `.NAME.PID-RANDOM.tmp`, NAME cut to fit the file system's name limit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from attn_desktop.core.errors import UserError
from attn_desktop.core.quoting import quote

_TMP = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-[a-z0-9_]{8}\.tmp$")
# older writers (and other writers of this app that use mkstemp alone): .NAME.RANDOM.tmp
_LEGACY_TMP = re.compile(r"^\.(?P<stem>.+\.(?:attn|html|png|svg|csv|npy|json|txt))\.[a-z0-9_]{8}\.tmp$")
LEGACY_STALE_SECONDS = 3600
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20
REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.EFBIG: "the file is too large for this file system",
    errno.EIO: "an input/output error",
}


def reason(exc: OSError) -> str:
    return REASONS.get(exc.errno, exc.strerror or type(exc).__name__)


def name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def check_writable(path: str | os.PathLike, what: str = "file") -> Path:
    """The destination as a Path, or a UserError saying why it cannot be written."""
    path = Path(path).expanduser()
    shown = quote(path)
    if not path.name or path.name in (".", ".."):
        raise UserError(f"cannot write the {what}: {shown} names a folder, not a file")
    parent = path.parent
    try:
        parent_info = os.stat(parent)
    except FileNotFoundError:
        raise UserError(f"cannot write the {what}: folder {quote(parent)} does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot write the {what} to {quote(parent)}: {reason(exc)}") from None
    if not stat.S_ISDIR(parent_info.st_mode):
        raise UserError(f"cannot write the {what}: {quote(parent)} is not a folder")
    limit = name_max(parent)
    size = len(os.fsencode(path.name))
    if size > limit:
        raise UserError(f"cannot write the {what}: the file name is {size} bytes; this file system allows {limit}")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UserError(f"cannot write the {what} {shown}: {reason(exc)}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"cannot write the {what}: {shown} is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"cannot write the {what}: {shown} exists and is not a regular file")
        if not os.access(path, os.W_OK):
            raise UserError(f"cannot write the {what}: {shown} is not writable")
        if _flags(path) & (_FS_APPEND_FL | _FS_IMMUTABLE_FL):
            raise UserError(f"cannot write the {what}: {shown} is append-only or immutable")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the {what}: folder {quote(parent)} is not writable")
    flags = _flags(parent)
    if flags & _FS_APPEND_FL:
        raise UserError(f"cannot write the {what}: folder {quote(parent)} is append-only "
                        "(files there can be created but never replaced)")
    if flags & _FS_IMMUTABLE_FL:
        raise UserError(f"cannot write the {what}: folder {quote(parent)} is immutable")
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], what: str = "file",
                 mode: int = 0o600) -> Path:
    """Write `path` with write(binary_file); on any failure nothing is left and an existing file
    of that name is untouched. OSErrors become one UserError line."""
    path = check_writable(path, what)
    remove_stale_temporaries(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{_stem(path)}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write the {what} {quote(path)}: {reason(exc)}; nothing was written") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write the {what} {quote(path)}: {reason(exc)}; nothing was written"
                            + (" and the existing file is unchanged" if path.exists() else "")) from None
        raise
    _sync_folder(path.parent)
    return path


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files that a killed writer left in `folder`: ours whose process is gone,
    and older-style ones an hour old. Only regular files of this user are touched."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.endswith(".tmp") or not entry.name.startswith("."):
            continue
        match = _TMP.match(entry.name)
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            continue
        if match:
            pid = int(match["pid"])
            if pid == os.getpid() or _alive(pid):
                continue
        elif not (_LEGACY_TMP.match(entry.name) and now - info.st_mtime > LEGACY_STALE_SECONDS):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _stem(path: Path) -> str:
    """The destination's name cut so that the temporary name fits the file system's limit."""
    room = name_max(path.parent) - len(f"..{os.getpid()}-12345678.tmp")
    raw = os.fsencode(path.name)[:max(room, 1)]
    return os.fsdecode(raw).encode("utf-8", "surrogateescape").decode("utf-8", "ignore") or "x"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _flags(path: Path) -> int:
    """The inode flags (append-only, immutable) where the platform tells them, else 0."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return 0
    try:
        raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 8)
        return int.from_bytes(raw[:4], sys.byteorder)
    except OSError:
        return 0
    finally:
        os.close(fd)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        return
    except OSError:  # the folder forbids removal: at least keep no partial data
        with contextlib.suppress(OSError):
            os.truncate(tmp, 0)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
