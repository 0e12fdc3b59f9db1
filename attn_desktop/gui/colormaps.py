"""Colormaps as 256-entry uint8 lookup tables, and quantisation of values to uint8 indices."""

from __future__ import annotations

from functools import cache

import numpy as np

# label shown to the user -> pyqtgraph colormap name. All three are perceptually uniform and
# readable with the common forms of colour blindness; CET-CBL2 is designed for it.
COLORMAPS: dict[str, str] = {
    "viridis": "viridis",
    "cividis": "cividis",
    "colour-blind safe (CET-CBL2)": "CET-CBL2",
}
DEFAULT_COLORMAP = "viridis"
RATIO = "× uniform"
SCALES = ("linear", "log", "min–max", RATIO)
SCALE_TIPS = ("Colour scale. linear: 0 to the largest value; log: 1e-4 to the largest value; "
              "min–max: the smallest to the largest value shown, which separates near-uniform "
              "values such as attention flow rows (the colour bar gives the range); "
              "× uniform: each value divided by what a uniform row would give it (1/n per "
              "token), on a log₂ scale with a diverging map: 1× is the page colour, above "
              "chance one colour, below chance the other")
LOG_FLOOR = 1e-4  # smallest value a log scale shows; attention below it is indistinguishable
RATIO_MAX_LOG2 = 6  # × uniform shows 1/64× to 64×; beyond is drawn as the end colours
# Signed values (gradient x input, IG, leave-one-out) are drawn on a diverging map centred at
# zero: levels -m..m with m the largest magnitude. Not a user scale: the measure asks for it.
SIGNED = "signed"


def diverging(name: str) -> str:
    """The diverging map that goes with the user's sequential map: blue-white-red, or
    blue-grey-yellow when the colour-blind-safe map is chosen."""
    return "CET-CBD1" if COLORMAPS.get(name) == "CET-CBL2" else "CET-D1A"


def centred(scale: str) -> bool:
    """Scales drawn on a diverging map around a middle value (0, or 1× uniform)."""
    return scale in (SIGNED, RATIO)


def map_for(colormap: str, scale: str) -> str:
    """The map a scale draws with: × uniform needs a diverging one."""
    return diverging(colormap) if scale == RATIO else colormap


@cache
def lut(name: str) -> np.ndarray:
    """[256, 3] uint8 lookup table."""
    import pyqtgraph as pg

    cmap = pg.colormap.get(COLORMAPS.get(name, name))
    table = cmap.getLookupTable(0.0, 1.0, nPts=256, alpha=False)
    return np.ascontiguousarray(table, dtype=np.uint8)


def peak(values: np.ndarray) -> float:
    if values.size == 0:
        return 1.0
    if values.dtype == np.float16:
        bits = values.view(np.uint16)
        top = bits.max()
        if top < 0x7C00:  # no negative, infinite or NaN value: bit order is value order
            return float(np.array(top, np.uint16).view(np.float16))
    return float(np.max(values))


def levels(values: np.ndarray, scale: str, expected=None) -> tuple[float, float]:
    """Display range (in the units of `display_values`) for a matrix of non-negative values.
    `expected`: what a uniform row gives each column (× uniform only; broadcast over rows)."""
    if scale == RATIO:
        shown = display_values(values, scale, expected)
        top = float(np.max(np.abs(shown))) if shown.size else 1.0
        m = float(min(max(np.ceil(top if np.isfinite(top) else 1.0), 1.0), RATIO_MAX_LOG2))
        return -m, m
    if scale == SIGNED:
        finite = np.abs(values[np.isfinite(values)])
        m = float(finite.max()) if finite.size else 0.0
        m = m if m > 0 else 1.0
        return -m, m
    hi = peak(values)
    if not np.isfinite(hi) or hi <= 0:
        hi = 1.0
    if scale == "log":
        return float(np.log10(LOG_FLOOR)), float(np.log10(max(hi, LOG_FLOOR * 10)))
    if scale == "min–max" and values.size:
        lo = float(np.min(values))
        if np.isfinite(lo) and 0 <= lo < hi * (1 - 1e-3):
            return lo, hi
    return 0.0, hi


def display_values(values: np.ndarray, scale: str, expected=None) -> np.ndarray:
    if scale == "log":
        return np.log10(np.maximum(values, LOG_FLOOR, dtype=np.float32))
    if scale == RATIO:
        v = np.asarray(values, dtype=np.float64)
        e = uniform_of(v) if expected is None else np.asarray(expected, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(e > 0, v / e, 1.0)
        return np.log2(np.maximum(np.nan_to_num(ratio, nan=1.0), 2.0 ** -RATIO_MAX_LOG2)).astype(np.float32)
    return values


def uniform_of(values: np.ndarray) -> float:
    """1/n for rows of n columns: the value of every column in a uniform row."""
    n = values.shape[-1] if values.ndim else 1
    return 1.0 / max(n, 1)


_ALL_HALVES = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


def _quantise_float32(values: np.ndarray, scale: str, lv: tuple[float, float], expected=None) -> np.ndarray:
    lo, hi = lv
    shown = display_values(values, scale, expected)
    out = np.empty(values.shape, dtype=np.float32)
    np.subtract(shown, np.float32(lo - 0.5 * (hi - lo) / 255.0), out=out, dtype=np.float32)
    np.multiply(out, np.float32(255.0 / (hi - lo)), out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def quantise(values: np.ndarray, scale: str, expected=None) -> tuple[np.ndarray, tuple[float, float]]:
    """C-contiguous uint8 image (0..255 over the levels) and the levels, in display units.

    float16 input (how attention is stored) goes through a 65,536-entry table indexed by the
    bit pattern: one gather instead of a slow float16 -> float32 conversion and four passes."""
    lv = levels(values, scale, expected)
    return quantise_at(values, scale, lv, expected), lv


def quantise_at(values: np.ndarray, scale: str, lv: tuple[float, float], expected=None) -> np.ndarray:
    """C-contiguous uint8 image of `values` over given levels (a part of a larger matrix drawn
    with the colours of the whole)."""
    if scale == RATIO:
        return _quantise_float32(values, scale, lv, expected)
    if values.dtype == np.float16:
        with np.errstate(invalid="ignore"):
            table = _quantise_float32(np.nan_to_num(_ALL_HALVES, nan=0.0, posinf=0.0, neginf=0.0), scale, lv)
        return np.take(table, np.ascontiguousarray(values).view(np.uint16))
    return _quantise_float32(values, scale, lv)


def fraction(values: np.ndarray, scale: str, lv: tuple[float, float], expected=None) -> np.ndarray:
    """Position of each value within the levels, in [0, 1] (float64, for highlight alphas)."""
    lo, hi = lv
    shown = np.asarray(display_values(np.asarray(values, dtype=np.float64), scale, expected), np.float64)
    return np.clip((shown - lo) / (hi - lo), 0.0, 1.0)
