"""How far the importance vectors agree: rank correlations and top-k overlap."""

from __future__ import annotations

import numpy as np

from ..context import SHORT_NAMES, VECTOR_NAMES
from ..grids import grid_table
from ..markup import esc, how_to_read, note
from . import Section

HOWTO = ("Each cell compares two methods' token rankings. A Kendall τ or Spearman ρ of 1 means the "
         "two methods rank the tokens in the same order, 0 means their orders are unrelated, and −1 means "
         "opposite orders (red: agreement, blue: disagreement). The p-value below each matrix says how "
         "likely a correlation at least this strong would be by chance alone; with few tokens, even "
         "sizeable correlations can be chance. Top-k overlap is the share of the k most important tokens "
         "that two methods have in common. Agreement between methods supports a reading; it does not "
         "prove it.")


def render(ctx):
    agr = ctx.explain().get("agreement")
    if not isinstance(agr, dict) or not agr.get("methods"):
        return None
    methods = list(agr["methods"])
    names = [SHORT_NAMES.get(m, m) for m in methods]
    parts = [how_to_read(HOWTO)]
    parts.append("<p class='note'>" + "; ".join(f"<strong>{esc(SHORT_NAMES.get(m, m))}</strong> = "
                                                 f"{esc(VECTOR_NAMES.get(m, m))}" for m in methods) + ".</p>")
    if agr.get("tokens") is not None:
        convention = str(agr.get("convention") or "")
        convention = convention[:1].upper() + convention[1:]  # a sentence of its own in the page
        parts.append(note(f"Computed over {agr['tokens']} tokens. {convention}"))
    for key, p_key, title in (("kendall_tau", "kendall_p", "Kendall τ-b"), ("spearman", "spearman_p", "Spearman ρ")):
        m = _matrix(agr.get(key), len(methods))
        if m is None:
            continue
        parts.append(f"<h3>{esc(title)}</h3>" + grid_table(m, names, names, signed=True, caption=title))
        p = _matrix(agr.get(p_key), len(methods))
        if p is not None:
            parts.append(grid_table(p, names, names, digits=3, plain_below=0.05,
                                    caption=f"p-values of {title} (bold: below 0.05, unlikely by chance alone)"))
    topk = agr.get("topk") or {}
    for k, overlap in zip(topk.get("k") or [], topk.get("overlap") or [], strict=False):
        m = _matrix(overlap, len(methods))
        if m is not None:
            parts.append(f"<h3>Top-{int(k)} overlap</h3>"
                         + grid_table(m, names, names, colormap="viridis", value_range=(0.0, 1.0),
                                        caption=f"share of the top {int(k)} tokens in common"))
    return Section("agreement", "Agreement between methods", "".join(parts))


def _matrix(raw, n):
    if raw is None:
        return None
    try:
        m = np.array([[np.nan if x is None else float(x) for x in row] for row in raw], np.float64)
    except (TypeError, ValueError):
        return None
    return m if m.shape == (n, n) else None
