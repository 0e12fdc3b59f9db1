"""Inline SVG figures for the report, drawn without Qt: heatmaps (cells as an embedded PNG,
labels as SVG text), colour bars and line charts. Labels are escaped; images hold no text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import colours, png
from .markup import esc

FONT = 11.0
CHAR_W = 6.4  # rough advance of one character at FONT px, for laying out labels
LOG_FLOOR = 1e-4
MIN_HEIGHT = 120.0  # a heatmap of a few rows is drawn at least this tall (cells stretched)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
           "#7f7f7f", "#bcbd22")


def short(label: str, n: int = 14) -> str:
    label = label.replace("\n", "⏎").replace("\t", "⇥") or "␣"
    return label if len(label) <= n else label[: n - 1] + "…"


@dataclass(frozen=True)
class Scale:
    """How values map to colours: linear (0..max), log (1e-4..max) or min–max."""

    kind: str
    lo: float
    hi: float

    @classmethod
    def fit(cls, values: np.ndarray, kind: str = "linear") -> Scale:
        finite = values[np.isfinite(values)] if values.size else values
        hi = float(finite.max()) if finite.size else 1.0
        lo_val = float(finite.min()) if finite.size else 0.0
        if kind == "log":
            return cls("log", math.log10(LOG_FLOOR), math.log10(max(hi, LOG_FLOOR * 10)))
        if kind in ("min–max", "min-max") and finite.size and lo_val < hi:
            return cls("min–max", lo_val, hi)
        if hi <= 0:
            hi = 1.0
        return cls("linear", min(0.0, lo_val) if lo_val < 0 else 0.0, hi)

    def fraction(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, np.float64)
        if self.kind == "log":
            v = np.log10(np.maximum(v, LOG_FLOOR))
        span = self.hi - self.lo or 1.0
        return np.clip(np.nan_to_num((v - self.lo) / span, nan=0.0), 0.0, 1.0)

    def value_at(self, f: float) -> float:
        v = self.lo + f * (self.hi - self.lo)
        return 10 ** v if self.kind == "log" else v


def cells_png(values: np.ndarray, colormap: str, scale: Scale, cell: int = 1, text: dict | None = None) -> bytes:
    idx = np.round(scale.fraction(values) * 255).astype(np.uint8)
    rgb = colours.table(colormap)[idx]
    if cell > 1:
        rgb = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)
    return png.encode_png(rgb, text)


def bar_png(colormap: str, height: int = 256) -> bytes:
    ramp = np.linspace(255, 0, height).round().astype(np.uint8)[:, None].repeat(12, axis=1)
    return png.encode_png(colours.table(colormap)[ramp])


def _ticks(n: int, pixels: float, line: float = FONT + 1) -> list[int]:
    if n == 0:
        return []
    step = max(1, math.ceil(line / max(pixels / n, 1e-9)))
    return list(range(0, n, step))


def tick_label(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 0.001:
        return f"{x:.2g}"
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[tuple[float, str]]:
    """Round tick values (1, 2 or 5 times a power of ten) inside [lo, hi], labelled with the
    digits their spacing needs, so that neighbouring labels always differ."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [(lo, tick_label(lo))]
    e = math.floor(math.log10((hi - lo) / max(count - 1, 1)))

    def ticks(step: float) -> list[float]:
        first = math.ceil(lo / step - 1e-9) * step
        return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]

    steps = [m * 10.0 ** k for k in (e - 1, e, e + 1) for m in (1, 2, 5)]
    step = min(steps, key=lambda st: (abs(len(ticks(st)) - count), -len(ticks(st))))
    values = ticks(step)
    exponent = math.floor(math.log10(step))
    out = []
    for v in values:
        v = 0.0 if abs(v) < step * 1e-9 else v
        if -3 <= exponent < 5:
            out.append((v, f"{v:.{max(0, -exponent)}f}"))
        else:
            scale = 10 ** math.floor(math.log10(max(abs(lo), abs(hi))))
            digits = max(0, int(math.log10(scale) - exponent))
            out.append((v, "0" if v == 0 else f"{v / scale:.{digits}f}e{int(math.log10(scale))}"))
    return out


MAX_SIDE = 1024  # larger matrices are max-pooled to this many pixels a side (the session holds all)


def pool_max(m: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """m max-pooled in square blocks so that neither side exceeds `side`; (pooled, block size)."""
    rows, cols = m.shape
    step = max(1, -(-max(rows, cols) // side))
    if step == 1:
        return m, 1
    r, c = -(-rows // step), -(-cols // step)
    padded = np.full((r * step, c * step), -np.inf, np.float32)
    padded[:rows, :cols] = m
    return padded.reshape(r, step, c, step).max(axis=(1, 3)), step


def heatmap(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
            colormap: str = "viridis", scale: str = "linear", value_name: str = "weight",
            focus_row: int | None = None, title: str = "", size: float = 560.0,
            row_title: str = "query token (row)", col_title: str = "key token (column)",
            value_range: tuple[float, float] | None = None,
            marks: dict[tuple[int, int], str] | None = None) -> str:
    """An SVG heatmap: cells as one PNG, every label (thinned to what fits) as text, a colour bar.
    `value_range` fixes the colour scale; `marks` puts a short text on cells (row, column)."""
    values = np.asarray(values, np.float32)
    rows, cols = values.shape
    sc = Scale("linear", *value_range) if value_range is not None else Scale.fit(values, scale)
    pooled, step = pool_max(values, MAX_SIDE)
    cell = max(1, min(24, int(size // max(rows, cols, 1))))
    w, h = cols * cell, rows * cell
    if max(w, h) < size * 0.5:  # small matrices: scale the image up, keep crisp cells
        factor = size * 0.5 / max(w, h)
        w, h = w * factor, h * factor
    h = max(h, min(MIN_HEIGHT, rows * 56.0))  # a few rows (flow of one token) stay readable
    row_lab = [short(s) for s in row_labels]
    col_lab = [short(s) for s in col_labels]
    left = min(max((len(s) for s in row_lab), default=1), 14) * CHAR_W + 28
    bottom = min(max((len(s) for s in col_lab), default=1), 14) * CHAR_W + 30
    top, bar_gap, bar_w = 8.0, 18.0, 14.0
    width = left + w + bar_gap + bar_w + 64
    height = top + h + bottom
    image = png.data_uri(cells_png(pooled, colormap, sc, cell))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='fig' role='img' viewBox='0 0 {width:.0f} {height:.0f}' "
             f"width='{width:.0f}' height='{height:.0f}' font-size='{FONT}' font-family='sans-serif'>",
             f"<title>{esc(title)}</title>",
             f"<image x='{left:.1f}' y='{top:.1f}' width='{w:.1f}' height='{h:.1f}' preserveAspectRatio='none' "
             f"style='image-rendering:pixelated' href='{image}'/>",
             f"<rect x='{left:.1f}' y='{top:.1f}' width='{w:.1f}' height='{h:.1f}' fill='none' stroke='#444' stroke-width='0.6'/>"]
    ch, cw = h / rows, w / cols
    for i in _ticks(rows, h):
        y = top + (i + 0.5) * ch
        parts.append(f"<text x='{left - 4:.1f}' y='{y:.1f}' text-anchor='end' dominant-baseline='middle'>{esc(row_lab[i])}</text>")
    for j in _ticks(cols, w):
        x = left + (j + 0.5) * cw
        y = top + h + 4
        parts.append(f"<text transform='translate({x:.1f},{y:.1f}) rotate(-90)' text-anchor='end' "
                     f"dominant-baseline='middle'>{esc(col_lab[j])}</text>")
    for (i, j), mark in (marks or {}).items():
        if mark.strip() and 0 <= i < rows and 0 <= j < cols:
            parts.append(f"<text x='{left + (j + 0.5) * cw:.1f}' y='{top + (i + 0.5) * ch:.1f}' text-anchor='middle' "
                         f"dominant-baseline='middle' class='mark'>{esc(mark.strip())}</text>")
    if focus_row is not None and 0 <= focus_row < rows:
        parts.append(f"<rect x='{left:.1f}' y='{top + focus_row * ch:.1f}' width='{w:.1f}' height='{ch:.1f}' "
                     "fill='none' stroke='#ff1f7a' stroke-width='1.6'/>")
    parts.append(f"<text x='{left + w / 2:.1f}' y='{height - 4:.1f}' text-anchor='middle' class='axis'>{esc(col_title)}</text>")
    if h >= len(row_title) * CHAR_W:  # a short matrix (a few flow rows) has no room for it
        parts.append(f"<text transform='translate(11,{top + h / 2:.1f}) rotate(-90)' text-anchor='middle' "
                     f"class='axis'>{esc(row_title)}</text>")
    parts.append(colour_bar(left + w + bar_gap, top, bar_w, h, colormap, sc, value_name))
    if step > 1:
        parts.append(f"<text x='{left:.1f}' y='{height - 18:.1f}' class='axis'>each pixel: the largest of "
                     f"{step} × {step} cells</text>")
    parts.append("</svg>")
    return "".join(parts)


def colour_bar(x: float, y: float, w: float, h: float, colormap: str, sc: Scale, value_name: str) -> str:
    out = [f"<image x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' preserveAspectRatio='none' "
           f"href='{png.data_uri(bar_png(colormap))}'/>",
           f"<rect x='{x:.1f}' y='{y:.1f}' width='{w:.1f}' height='{h:.1f}' fill='none' stroke='#444' stroke-width='0.6'/>"]
    stops = (0.0, 0.25, 0.5, 0.75, 1.0) if h >= 100 else (0.0, 0.5, 1.0) if h >= 60 else (0.0, 1.0)
    for f in stops:
        ty = y + h - f * h
        out.append(f"<line x1='{x + w:.1f}' x2='{x + w + 3:.1f}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='#444'/>")
        out.append(f"<text x='{x + w + 5:.1f}' y='{ty:.1f}' dominant-baseline='middle'>{esc(tick_label(sc.value_at(f)))}</text>")
    label = f"{value_name} ({sc.kind} scale)"
    if h < len(label) * CHAR_W:
        label = value_name if h >= len(value_name) * CHAR_W else ""
    out.append(f"<text transform='translate({x + w + 50:.1f},{y + h / 2:.1f}) rotate(90)' text-anchor='middle' class='axis'>"
               f"{esc(label)}</text>")
    return "".join(out)


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    dashed: bool = False
    colour: str | None = None


def line_chart(series: Sequence[Series], *, x_label: str, y_label: str, title: str = "",
               band: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
               band_label: str = "", width: float = 560.0, height: float = 300.0,
               y_range: tuple[float, float] | None = None, percent_x: bool = False) -> str:
    """Lines over a shared x axis, an optional shaded band (xs, low, high) and a legend."""
    left, right, top, bottom = 54.0, 12.0, 10.0, 44.0
    legend_rows = len(series) + (1 if band is not None else 0)
    legend_h = 16.0 * math.ceil(legend_rows / 2)
    pw, ph = width - left - right, height - top - bottom
    xs_all = [float(x) for s in series for x in s.xs] + ([float(x) for x in band[0]] if band else [])
    ys_all = [float(y) for s in series for y in s.ys if y is not None and math.isfinite(float(y))]
    if band:
        ys_all += [float(y) for y in list(band[1]) + list(band[2])]
    x0, x1 = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    if x1 == x0:
        x1 = x0 + 1
    if y_range is None:
        y0, y1 = (min(ys_all), max(ys_all)) if ys_all else (0.0, 1.0)
        y0, y1 = min(y0, 0.0), max(y1, 0.0)
        pad = (y1 - y0) * 0.05 or 0.5
        y0, y1 = y0 - (pad if y0 < 0 else 0), y1 + pad
    else:
        y0, y1 = y_range

    def px(x):
        return left + (float(x) - x0) / (x1 - x0) * pw

    def py(y):
        return top + (1 - (float(y) - y0) / (y1 - y0)) * ph

    total_h = height + legend_h
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' class='fig' role='img' viewBox='0 0 {width:.0f} {total_h:.0f}' "
           f"width='{width:.0f}' height='{total_h:.0f}' font-size='{FONT}' font-family='sans-serif'>",
           f"<title>{esc(title)}</title>",
           f"<rect x='{left}' y='{top}' width='{pw:.1f}' height='{ph:.1f}' fill='#fafafa' stroke='#999' stroke-width='0.6'/>"]
    for yv, label in nice_ticks(y0, y1):
        out.append(f"<line x1='{left}' x2='{left + pw:.1f}' y1='{py(yv):.1f}' y2='{py(yv):.1f}' stroke='#e3e3e3'/>")
        out.append(f"<text x='{left - 5}' y='{py(yv):.1f}' text-anchor='end' dominant-baseline='middle'>{esc(label)}</text>")
    xticks = sorted(set(float(x) for s in series for x in s.xs)) or [x0, x1]
    if len(xticks) > 12:
        xticks = [x0 + (x1 - x0) * k / 5 for k in range(6)]
    for xv in xticks:
        lab = f"{xv * 100:.0f}%" if percent_x else tick_label(xv)
        out.append(f"<line x1='{px(xv):.1f}' x2='{px(xv):.1f}' y1='{top + ph:.1f}' y2='{top + ph + 4:.1f}' stroke='#666'/>")
        out.append(f"<text x='{px(xv):.1f}' y='{top + ph + 15:.1f}' text-anchor='middle'>{esc(lab)}</text>")
    if y0 < 0 < y1:
        out.append(f"<line x1='{left}' x2='{left + pw:.1f}' y1='{py(0):.1f}' y2='{py(0):.1f}' stroke='#777' stroke-width='0.8'/>")
    if band is not None:
        bx, lo, hi = band
        pts = [f"{px(x):.1f},{py(y):.1f}" for x, y in zip(bx, hi, strict=True)]
        pts += [f"{px(x):.1f},{py(y):.1f}" for x, y in reversed(list(zip(bx, lo, strict=True)))]
        out.append(f"<polygon points='{' '.join(pts)}' fill='#bbbbbb' fill-opacity='0.45' stroke='none'/>")
    for k, s in enumerate(series):
        colour = s.colour or PALETTE[k % len(PALETTE)]
        pts = [(px(x), py(y)) for x, y in zip(s.xs, s.ys, strict=True) if y is not None and math.isfinite(float(y))]
        dash = " stroke-dasharray='5 3'" if s.dashed else ""
        out.append(f"<polyline points='{' '.join(f'{a:.1f},{b:.1f}' for a, b in pts)}' fill='none' stroke='{colour}' "
                   f"stroke-width='1.8'{dash}/>")
        out += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='2.4' fill='{colour}'/>" for a, b in pts]
    out.append(f"<text x='{left + pw / 2:.1f}' y='{top + ph + 32:.1f}' text-anchor='middle' class='axis'>{esc(x_label)}</text>")
    out.append(f"<text transform='translate(12,{top + ph / 2:.1f}) rotate(-90)' text-anchor='middle' class='axis'>{esc(y_label)}</text>")
    entries = [(s.name, s.colour or PALETTE[k % len(PALETTE)], s.dashed, False) for k, s in enumerate(series)]
    if band is not None:
        entries.append((band_label, "#bbbbbb", False, True))
    for k, (name, colour, dashed, is_band) in enumerate(entries):
        lx = left + (k % 2) * (pw / 2)
        ly = height + 16.0 * (k // 2) + 4
        if is_band:
            out.append(f"<rect x='{lx:.1f}' y='{ly - 5:.1f}' width='22' height='10' fill='{colour}' fill-opacity='0.6'/>")
        else:
            dash = " stroke-dasharray='5 3'" if dashed else ""
            out.append(f"<line x1='{lx:.1f}' x2='{lx + 22:.1f}' y1='{ly:.1f}' y2='{ly:.1f}' stroke='{colour}' stroke-width='2'{dash}/>")
        out.append(f"<text x='{lx + 28:.1f}' y='{ly:.1f}' dominant-baseline='middle'>{esc(short(name, 40))}</text>")
    out.append("</svg>")
    return "".join(out)
