"""Reading arrays mapped from files (np.memmap: the on-disk capture of long inputs, large session
members) a block at a time without keeping their pages in the reader's memory.

A view of a mapping that is read stays resident in the process (its pages count in its resident
memory) until the mapping goes. `resident_copy` copies one block into private memory and hands the
mapping's pages back to the kernel (core.pages), so stepping through the layers of a 4.8 GB
attention stack costs the process one block, not the stack. `layer_aggregate` fuses one layer's
heads one head at a time. `file_region` says where a mapped array's bytes lie in its file, so
another process (the compute process) can map the same bytes instead of receiving a copy.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from attn_desktop.core.pages import release


class Region(tuple):
    """(path, byte offset, device, inode) of a mapped array's first element in its file."""

    path = property(lambda self: self[0])
    offset = property(lambda self: self[1])


def file_region(values: np.ndarray) -> Region | None:
    """Where the bytes of a C-contiguous array that is a view of a file mapping lie: the file
    (as /proc/self/maps names the mapping, so a session file read through a file object counts
    too), the offset, and the file's device and inode (a reader checks them: a name replaced
    since is another file). None for anything else, or where the file has no name any more."""
    if not is_mapped(values) or not values.flags.c_contiguous or values.size == 0:
        return None
    address = values.ctypes.data
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                fields = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                if lo <= address < hi:
                    if len(fields) < 6 or address + values.nbytes > hi or fields[5].rstrip("\n").endswith(" (deleted)"):
                        return None
                    major, minor = (int(x, 16) for x in fields[3].split(":"))
                    return Region((fields[5].rstrip("\n"), int(fields[2], 16) + address - lo,
                                   os.makedev(major, minor), int(fields[4])))
    except (OSError, ValueError):
        return None
    return None


def is_mapped(values) -> bool:
    """Whether `values` is a view of a file mapping (its pages are read when touched)."""
    return isinstance(values, np.memmap) and getattr(values, "_mmap", None) is not None


MARGIN = 1 << 21  # the kernel maps pages around a faulting one too ("fault-around"): hand those back as well


def hand_back(values: np.ndarray, margin: int = MARGIN) -> None:
    """Drop this process's resident pages of the mapping under `values` (C-contiguous), with
    `margin` bytes either side; the data stays in the page cache and is read again when touched."""
    mm = getattr(values, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or values.nbytes == 0 or not values.flags.c_contiguous:
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        return
    lo, size = values.ctypes.data - base.ctypes.data, base.size
    del base
    if not 0 <= lo < size:
        return
    start = max(0, lo - margin)
    start -= start % mmap.PAGESIZE
    end = min(size, lo + values.nbytes + margin)
    mm.madvise(mmap.MADV_DONTNEED, start, end - start)


def resident_copy(values: np.ndarray, dtype=None) -> np.ndarray:
    """A private copy of `values` (in `dtype` if given); when it is a view of a file mapping, the
    pages it read are handed back, so only the copy stays in this process's memory."""
    out = np.array(values, dtype=dtype, copy=True, subok=False)
    if is_mapped(values):
        if values.flags.c_contiguous:
            hand_back(values)
        else:
            release(values)
    return out


def layer_aggregate(att: np.ndarray, layer: int, how: str) -> np.ndarray:
    """Mean, max or min over the heads of att[layer] ([H, q, k]) as float32 [q, k], one head at a
    time: the transient memory is the result and one head as stored, never [H, q, k]."""
    ops = {"mean": np.add, "max": np.maximum, "min": np.minimum}
    if how not in ops:
        raise ValueError(f"unknown aggregate {how!r}")
    heads = att.shape[1]
    out = resident_copy(att[layer, 0], np.float32)
    for h in range(1, heads):
        head = resident_copy(att[layer, h])
        ops[how](out, head, out=out)  # cast a buffer at a time, not a float32 copy of the head
        del head
    if how == "mean":
        out /= np.float32(heads)
    return out
