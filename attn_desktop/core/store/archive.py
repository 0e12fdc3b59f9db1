"""Reading a session archive (a zip) from an untrusted file with every size known before anything
is inflated or allocated: member count, declared and compressed sizes, compression ratio and
method, encryption, member names, the manifest's size, and each .npy header's dtype and shape."""

from __future__ import annotations

import math
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_desktop.core.errors import UserError
from attn_desktop.core.quoting import quote

try:  # ISA-L's CRC-32, the same checksum about 8x faster (a pyproject dependency)
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover (an install without it still reads sessions)
    from zlib import crc32

MANIFEST = "manifest.json"
ARRAY_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_MEMBERS = 4096
MAX_CENTRAL_DIRECTORY = 4 << 20
MANIFEST_LIMIT = 32 << 20
RATIO_FREE = 1 << 20  # members up to this size inflate at any ratio
MAX_RATIO = 50
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_READ_CHUNK = 2 << 20  # a buffer that the checksum and the value check find still in the CPU's cache
MAP_FROM = 256 << 20  # stored arrays from this size are mapped from the file, not read


def memory_budget() -> int:
    """Bytes of arrays one session may hold: half the machine's memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError, AttributeError):
        return 8 << 30


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class SessionArchive:
    """Open with `with SessionArchive(path) as archive:`; `archive.arrays` names the .npy members."""

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label
        self._fh = _open_regular(path, label)
        try:
            self._check_directory()
            self.zip = zipfile.ZipFile(self._fh)
            self.members = self._check_members()
        except BaseException:
            self._fh.close()
            raise

    def __enter__(self) -> SessionArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()
        self._fh.close()

    @property
    def arrays(self) -> list[str]:
        return sorted(name[:-4] for name in self.members if name != MANIFEST)

    def _fail(self, why: str) -> UserError:
        return UserError(f"{self.label}: {why}")

    def _check_directory(self) -> None:
        """The member count and directory size from the end record, before zipfile reads the
        directory into memory (a private helper of zipfile; skipped where it is missing)."""
        read_end = getattr(zipfile, "_EndRecData", None)
        if read_end is None:
            return
        end = read_end(self._fh)
        if end is None:
            raise self._fail("is damaged or not a session file (no zip directory)")
        if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:
            raise self._fail(f"the archive lists {end[zipfile._ECD_ENTRIES_TOTAL]} members (at most {MAX_MEMBERS})")
        if end[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY:
            raise self._fail("the archive's directory is implausibly large")
        self._fh.seek(0)

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise self._fail(f"the archive holds {len(infos)} members (at most {MAX_MEMBERS})")
        members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        size = os.fstat(self._fh.fileno()).st_size
        for info in infos:
            name = info.filename
            if name in members:
                raise self._fail(f"the member {quote(name)} appears twice")
            if name != MANIFEST and not (name.endswith(".npy") and ARRAY_NAME.fullmatch(name[:-4])):
                raise self._fail(f"unexpected member {quote(name)} (array names use only letters, digits and _)")
            if info.flag_bits & 0x1:
                raise self._fail(f"the member {quote(name)} is encrypted")
            if info.compress_type not in METHODS:
                raise self._fail(f"the member {quote(name)} uses an unsupported compression (method {info.compress_type})")
            if info.file_size > RATIO_FREE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise self._fail(f"the member {quote(name)} would inflate {info.compress_size} bytes to "
                                 f"{info.file_size} (a zip bomb?)")
            if info.header_offset + info.compress_size > size:
                raise self._fail(f"the member {quote(name)} claims more bytes than the file holds")
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                raise self._fail(f"the member {quote(name)} has inconsistent sizes")
            total += info.file_size
            members[name] = info
        if MANIFEST not in members:
            raise self._fail("is not an attn-desktop session (no manifest.json)")
        if members[MANIFEST].file_size > MANIFEST_LIMIT:
            raise self._fail(f"the manifest is {members[MANIFEST].file_size / 1e6:.0f} MB "
                             f"(at most {MANIFEST_LIMIT / 1e6:.0f} MB)")
        budget = memory_budget()
        if total > budget:
            raise self._fail(f"the session needs {total / 1e9:.1f} GB of memory; "
                             f"this machine allows {budget / 1e9:.1f} GB for one")
        return members

    def read_manifest(self) -> bytes:
        with self.zip.open(MANIFEST) as fh:
            data = fh.read(MANIFEST_LIMIT + 1)
        if len(data) > MANIFEST_LIMIT:
            raise self._fail("the manifest is larger than it declares")
        return data

    def npy_header(self, array: str) -> NpyHeader:
        member = f"{array}.npy"
        with self.zip.open(member) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, EOFError) as exc:
                raise self._fail(f"array {quote(array)} has a damaged header ({_first_line(exc)})") from None
            offset = fh.tell()
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise self._fail(f"array {quote(array)} has a structured or object dtype, which is never read")
        if not all(isinstance(d, int) and 0 <= d < 1 << 40 for d in shape):
            raise self._fail(f"array {quote(array)} declares an impossible shape")
        header = NpyHeader(tuple(shape), dtype, bool(fortran), offset)
        if header.offset + header.nbytes != self.members[member].file_size:
            raise self._fail(f"array {quote(array)} declares shape {list(shape)} of {dtype}, which does not "
                             f"match its {self.members[member].file_size} bytes")
        return header

    def _mapped_npy(self, array: str, header: NpyHeader, check=None) -> np.ndarray | None:
        """A large stored (uncompressed) member in native C order, mapped read-only from the file
        instead of read (its CRC checked first, reading the file into a reused buffer, and `check`
        given the values of each buffer in the same pass); None for anything else. The mapping
        lives as long as the array, whatever happens to the file's name."""
        info = self.members[f"{array}.npy"]
        if (info.compress_type != zipfile.ZIP_STORED or header.nbytes < MAP_FROM or header.fortran_order
                or header.dtype.byteorder not in ("=", "|", _NATIVE)):
            return None
        self._fh.seek(info.header_offset)
        local = self._fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise self._fail(f"array {quote(array)} has a damaged local header")
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        if start + info.compress_size > os.fstat(self._fh.fileno()).st_size or header.offset + header.nbytes > info.file_size:
            raise self._fail(f"array {quote(array)} claims more bytes than the file holds")
        raw = np.memmap(self._fh, dtype=np.uint8, mode="r", offset=start, shape=(info.file_size,))
        itemsize = header.dtype.itemsize
        in_pass = check is not None and header.offset % itemsize == 0
        values = (header.offset, header.offset + header.nbytes, header.dtype) if in_pass else None
        crc, refused = self._crc_read(start, info.file_size, check if in_pass else None, values)
        if crc != info.CRC:  # damage is named as such, even when it also made a value impossible
            raise self._fail(f"array {quote(array)} is damaged (its checksum does not match)")
        if refused is not None:
            raise refused
        mapped = raw[header.offset:header.offset + header.nbytes].view(header.dtype).reshape(header.shape)
        if check is not None and not in_pass:
            check(mapped)
        return mapped

    def _crc_read(self, start: int, size: int, check=None, values=None) -> tuple[int, UserError | None]:
        """CRC-32 of `size` bytes from `start`, read into one reused buffer (no mapping: touching a
        mapping's pages one fault at a time took longer than the checksum, 1.7 s for 5.6 GB).
        `check(part)`, when given, sees the values (bytes `values[0]` to `values[1]` of dtype
        `values[2]`) of each buffer as they pass, so they are read once for both; its first refusal
        is returned with the checksum, which is computed to the end."""
        buf = memoryview(bytearray(min(size, _READ_CHUNK)))
        crc, done, fd = 0, 0, self._fh.fileno()
        carry, refused = b"", None  # carry: the bytes of a value cut by the buffer's end
        while done < size:
            got = os.preadv(fd, [buf[:min(len(buf), size - done)]], start + done)
            if got <= 0:
                raise self._fail("the file ends before its members do")
            crc = crc32(buf[:got], crc)
            if check is not None:
                lo, hi = max(done, values[0]), min(done + got, values[1])
                if lo < hi:
                    part = carry + bytes(buf[lo - done:hi - done]) if carry else buf[lo - done:hi - done]
                    whole = len(part) - len(part) % values[2].itemsize
                    carry = bytes(part[whole:])
                    if whole and refused is None:
                        try:
                            check(np.frombuffer(part, dtype=values[2], count=whole // values[2].itemsize))
                        except UserError as exc:
                            refused = exc
            done += got
        return crc, refused

    def read_npy(self, array: str, header: NpyHeader, check=None) -> np.ndarray:
        """The member's values; `check(values)` (raising to refuse) sees all of them, a part at a time
        for a mapped member, in the pass that computes its checksum."""
        mapped = self._mapped_npy(array, header, check)
        if mapped is not None:
            return mapped
        raw = np.empty(header.nbytes, dtype=np.uint8)
        view = memoryview(raw)
        with self.zip.open(f"{array}.npy") as fh:
            fh.seek(header.offset)
            done = 0
            while done < header.nbytes:
                chunk = fh.read(min(_READ_CHUNK, header.nbytes - done))
                if not chunk:
                    raise self._fail(f"array {quote(array)} is truncated")
                view[done:done + len(chunk)] = chunk
                done += len(chunk)
        values = raw.view(header.dtype)
        if header.fortran_order:
            values = np.ascontiguousarray(values.reshape(header.shape[::-1]).transpose())
        else:
            values = values.reshape(header.shape)
        if header.dtype.byteorder not in ("=", "|") and header.dtype.byteorder != _NATIVE:
            values = values.astype(header.dtype.newbyteorder("="))
        if check is not None:
            check(values)
        return values


_NATIVE = "<" if np.little_endian else ">"


def _open_regular(path: Path, label: str):
    """Open only a regular file, never blocking on a FIFO or a device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"session file not found: {quote(path)}") from None
    except OSError as exc:
        raise UserError(f"cannot read {label}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{label} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
