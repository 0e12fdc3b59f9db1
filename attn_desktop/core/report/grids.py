"""Small matrices as HTML tables with coloured cells and the number in each cell (head grids,
agreement matrices): exact values stay readable in print and to screen readers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import colours
from .markup import esc, number


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def ink(background: str) -> str:
    r, g, b = _rgb(background)
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


def diverging(value: float) -> str:
    """-1 blue, 0 white, +1 red (for correlations)."""
    v = min(max(float(value), -1.0), 1.0)
    target = (178, 24, 43) if v > 0 else (33, 102, 172)
    f = abs(v)
    r, g, b = (round(255 + (c - 255) * f) for c in target)
    return f"#{r:02x}{g:02x}{b:02x}"


def grid_table(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
               corner: str = "", colormap: str = "viridis", signed: bool = False,
               marks: dict[tuple[int, int], str] | None = None, digits: int = 2,
               caption: str = "", value_range: tuple[float, float] | None = None,
               plain_below: float | None = None) -> str:
    """values [r, c]; NaN cells are left blank. `signed` uses the blue–white–red scale over
    [-1, 1] (correlations), otherwise the colour map over the finite range of the values.
    `plain_below`: no colours; values below it in bold (p-values under a significance level)."""
    v = np.asarray(values, np.float64)
    finite = v[np.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if value_range is not None:
        lo, hi = value_range
    head = "".join(f"<th scope='col'>{esc(c)}</th>" for c in col_labels)
    rows = []
    for i, label in enumerate(row_labels):
        cells = []
        for j in range(v.shape[1]):
            x = v[i, j]
            mark = (marks or {}).get((i, j), "")
            if not np.isfinite(x):
                cells.append(f"<td class='cell'>{esc(mark)}</td>")
                continue
            if plain_below is not None:
                text = f"{x:.{digits}f}"
                cells.append(f"<td class='cell'>{'<strong>' + esc(text) + '</strong>' if x < plain_below else esc(text)}</td>")
                continue
            bg = diverging(x) if signed else colours.hex_colour(colormap, (x - lo) / (hi - lo) if hi > lo else 1.0)
            text = f"{x:.{digits}f}" if abs(x) < 1000 else number(x)
            cells.append(f"<td class='cell' style='background:{bg};color:{ink(bg)}'>{esc(text)}{esc(mark)}</td>")
        rows.append(f"<tr><th scope='row'>{esc(label)}</th>{''.join(cells)}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f"<table class='grid'>{cap}<thead><tr><th>{esc(corner)}</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
