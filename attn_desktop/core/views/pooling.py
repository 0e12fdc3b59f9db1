"""Block extremes of a large matrix, for drawing it at the size of a screen: every block of
fr x fc cells becomes one pixel holding the block's largest value (and, when asked, its smallest),
so an isolated peak stays visible where striding or averaging would lose it.

Works on float16 (how attention is stored, possibly a memory-mapped file) without converting the
matrix: non-negative float16 values order like their bit patterns read as int16, so the reduction
runs on integers and only the small result is converted; a block holding negative values is redone
from float32 chunks of rows. No float32 copy of the whole matrix is made. Qt-free."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHUNK_CELLS = 1 << 22  # cells converted at a time on the float32 path (16 MB)
_HALVES = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)  # bits -> value


def _halves_to_float32(bits: np.ndarray) -> np.ndarray:
    """float16 bit patterns (int16) to float32 by table lookup (numpy's own conversion is slow)."""
    return np.take(_HALVES, bits.view(np.uint16))


@dataclass(frozen=True)
class Region:
    """Cells rows[0]:rows[1] x cols[0]:cols[1] drawn in blocks of factors (rows, columns); block
    (i, j) covers rows rows[0] + i*fr ... (the last block of an axis may be shorter)."""

    rows: tuple[int, int]
    cols: tuple[int, int]
    factors: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        (r0, r1), (c0, c1), (fr, fc) = self.rows, self.cols, self.factors
        return -(-(r1 - r0) // fr), -(-(c1 - c0) // fc)

    def covers(self, rows: tuple[float, float], cols: tuple[float, float]) -> bool:
        return self.rows[0] <= rows[0] and rows[1] <= self.rows[1] and \
            self.cols[0] <= cols[0] and cols[1] <= self.cols[1]

    def block_of(self, r: int, c: int) -> tuple[int, int, int, int]:
        """The cells (r0, r1, c0, c1) of the block that holds cell (r, c)."""
        (a, b), (c_lo, c_hi), (fr, fc) = self.rows, self.cols, self.factors
        r0 = a + (r - a) // fr * fr
        c0 = c_lo + (c - c_lo) // fc * fc
        return r0, min(r0 + fr, b), c0, min(c0 + fc, c_hi)


def factor(cells: float, pixels: float) -> int:
    """Cells per block along one axis so that `cells` fit in `pixels` (1: every cell its own)."""
    if pixels <= 0 or cells <= pixels:
        return 1
    return max(1, math.ceil(cells / pixels - 1e-9))


def plan(shape: tuple[int, int], rows: tuple[float, float], cols: tuple[float, float],
         pixels: tuple[float, float], margin: float = 0.5) -> Region:
    """What to draw for a view of the cells rows x cols (floats, as a view range) on pixels
    (height, width): the blocks that fit the pixels, over the visible cells plus `margin` times
    their span on each side (so a short pan needs no new drawing), aligned to whole blocks."""
    n_rows, n_cols = shape
    out = []
    for (lo, hi), n, px in ((rows, n_rows, pixels[0]), (cols, n_cols, pixels[1])):
        lo, hi = max(0.0, min(lo, hi)), min(float(n), max(lo, hi))
        span = max(hi - lo, 1.0)
        f = factor(span, px)
        a = max(0, math.floor((lo - margin * span) / f) * f)
        b = min(n, math.ceil((hi + margin * span) / f) * f)
        out.append(((a, max(b, min(a + f, n))), f))
    (r, fr), (c, fc) = out
    return Region(r, c, (fr, fc))


def _reduce_rows(a: np.ndarray, f: int, op) -> np.ndarray:
    """[m, k] -> [ceil(m / f), k]: op over each run of f rows (the last run may be shorter)."""
    m = a.shape[0]
    full = m // f
    parts = []
    if full:
        parts.append(op.reduce(a[: full * f].reshape(full, f, a.shape[1]), axis=1))
    if m % f:
        parts.append(op.reduce(a[full * f:], axis=0, keepdims=True))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _reduce_cols(a: np.ndarray, f: int, op) -> np.ndarray:
    """[m, k] -> [m, ceil(k / f)]: op over each run of f columns."""
    if f == 1:
        return a
    k = a.shape[1]
    full = k // f
    parts = []
    if full:
        if f <= 16:  # a few strided passes beat a reduction over a short inner axis
            out = np.array(a[:, 0: full * f: f])
            for j in range(1, f):
                op(out, a[:, j: full * f: f], out=out)
        else:
            out = op.reduce(np.ascontiguousarray(a[:, : full * f]).reshape(a.shape[0], full, f), axis=2)
        parts.append(out)
    if k % f:
        parts.append(op.reduce(a[:, full * f:], axis=1, keepdims=True))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


@dataclass
class Blocks:
    """Per block of a Region: the largest value, and the smallest when asked (float32)."""

    region: Region
    high: np.ndarray
    low: np.ndarray | None

    def extreme(self) -> np.ndarray:
        """The value of largest magnitude of each block, its sign kept (signed data)."""
        if self.low is None:
            return self.high
        return np.where(np.abs(self.high) >= np.abs(self.low), self.high, self.low)


def _divide(a: np.ndarray, divisor: np.ndarray | None) -> np.ndarray:
    if divisor is None:
        return a
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(divisor > 0, a / divisor, np.float32(1.0)).astype(np.float32)


def _int16_path(part: np.ndarray, region: Region, low: bool, divisor):
    """float16 reduced as int16 bit patterns; None when some block holds a negative value that
    the bit order would misplace. Without a divisor the columns are reduced as integers too."""
    fr, fc = region.factors
    bits = part.view(np.int16)
    hi = _reduce_rows(bits, fr, np.maximum)
    lo = _reduce_rows(bits, fr, np.minimum) if low else None
    if (hi < 0).any() or (lo is not None and (lo < 0).any()):
        return None
    if divisor is None:
        hi = _reduce_cols(hi, fc, np.maximum)
        lo = None if lo is None else _reduce_cols(lo, fc, np.minimum)
    as_float = [None if x is None else _halves_to_float32(x) for x in (hi, lo)]
    return [None if x is None else _divide(x, divisor) for x in as_float], divisor is None


def _float_path(part: np.ndarray, region: Region, low: bool, divisor):
    fr = region.factors[0]
    rows_per = max(fr, CHUNK_CELLS // max(part.shape[1], 1) // fr * fr)
    if part.dtype == np.float16:
        rows_per = max(fr, rows_per // 4 // fr * fr)  # the int16 bits and the float32 values
    highs, lows = [], []
    for start in range(0, part.shape[0], rows_per):
        rows = part[start: start + rows_per]
        if rows.dtype == np.float16:
            chunk = _halves_to_float32(np.ascontiguousarray(rows).view(np.int16))
        else:
            chunk = np.asarray(rows, dtype=np.float32)
        highs.append(_reduce_rows(chunk, fr, np.maximum))
        if low:
            lows.append(_reduce_rows(chunk, fr, np.minimum))
    hi = np.concatenate(highs)
    lo = np.concatenate(lows) if low else None
    return _divide(hi, divisor), (None if lo is None else _divide(lo, divisor))


def block_extremes(values: np.ndarray, region: Region, *, low: bool = False,
                   divisor: np.ndarray | None = None) -> Blocks:
    """Largest (and smallest) value of each block of `region` of a 2-D matrix.

    `divisor` [columns of the matrix]: each value is divided by its column's entry first (the
    × uniform scale: value / what a uniform row gives that column; entries <= 0 give 1)."""
    (r0, r1), (c0, c1) = region.rows, region.cols
    part = values[r0:r1, c0:c1]
    div = None if divisor is None else np.asarray(divisor, np.float64)[c0:c1].astype(np.float32)
    out, cols_done = None, False
    if part.dtype == np.float16:
        found = _int16_path(part, region, low, div)
        if found is not None:
            out, cols_done = found
    if out is None:
        out = _float_path(part, region, low, div)
    hi, lo = out
    if not cols_done:
        fc = region.factors[1]
        hi = _reduce_cols(hi, fc, np.maximum)
        lo = None if lo is None else _reduce_cols(lo, fc, np.minimum)
    return Blocks(region, np.ascontiguousarray(hi, np.float32),
                  None if lo is None else np.ascontiguousarray(lo, np.float32))


def whole(shape: tuple[int, int]) -> Region:
    """One block over the whole matrix (its largest and smallest value)."""
    rows, cols = shape
    return Region((0, rows), (0, cols), (max(rows, 1), max(cols, 1)))


def block_peak(values: np.ndarray, cells: tuple[int, int, int, int], *, signed: bool = False,
               divisor: np.ndarray | None = None) -> tuple[int, int, float]:
    """(row, column, value) of the cell that decides a block's colour: its largest value (after
    the divisor), or its value of largest magnitude when signed. The value is the cell's own."""
    r0, r1, c0, c1 = cells
    block = np.asarray(values[r0:r1, c0:c1], dtype=np.float64)
    key = block
    if divisor is not None:
        d = np.asarray(divisor, np.float64)[c0:c1]
        with np.errstate(divide="ignore", invalid="ignore"):
            key = np.where(d > 0, block / d, 1.0)
    if signed:
        key = np.abs(key)
    key = np.where(np.isnan(key), -np.inf, key)
    i, j = np.unravel_index(int(np.argmax(key)), key.shape)
    return r0 + int(i), c0 + int(j), float(block[i, j])
