"""Arrays mapped from files (np.memmap) read without keeping them resident: the pages a pass has
read are handed back to the kernel (they are read from the file again when touched), so checking
or saving a multi-gigabyte array costs a few megabytes of the process's memory, not its size."""

from __future__ import annotations

import mmap

import numpy as np

CHUNK = 1 << 22  # elements per pass


def release(part: np.ndarray) -> None:
    """Drop the resident pages under `part` when it is a view of a read-only file mapping."""
    mm = getattr(part, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or part.nbytes == 0 or not part.flags.c_contiguous:
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        return
    lo = part.ctypes.data - base.ctypes.data
    size = base.size
    del base
    if not 0 <= lo < size:
        return
    start = lo - lo % mmap.PAGESIZE
    end = min(size, lo + part.nbytes)
    mm.madvise(mmap.MADV_DONTNEED, start, end - start)


def chunks(values: np.ndarray, step: int = CHUNK):
    """The array's elements `step` at a time (flat, C order); pages of a mapping released after each."""
    flat = values.reshape(-1)
    for at in range(0, flat.size, step):
        part = flat[at:at + step]
        yield part
        release(part)


def write_npy(fh, array: np.ndarray) -> None:
    """np.save's format (version 1.0) into a file object, the data streamed in chunks."""
    header = np.lib.format.header_data_from_array_1_0(array)
    np.lib.format.write_array_header_1_0(fh, header)
    for part in chunks(array):
        fh.write(memoryview(np.ascontiguousarray(part)).cast("B"))
