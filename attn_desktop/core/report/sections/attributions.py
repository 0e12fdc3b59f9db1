"""Per-token importance from every method the analysis holds, side by side."""

from __future__ import annotations

import numpy as np

from ..context import VECTOR_NAMES
from ..markup import esc, how_to_read, number
from . import Section
from .text import NEG, POS, shade

HOWTO = ("Each column is a different way of scoring how important every token is for the model's "
         "output (the target named in the provenance). Attention, rollout and flow read the model's "
         "internal weighting; saliency, gradient × input and Integrated Gradients measure how sensitive "
         "the output is to each token; leave-one-out measures how much the output changes when the token "
         "is replaced. Shading is per column, relative to that column's largest absolute value; blue cells "
         "are negative (the token pushes the output down). Where the columns disagree, no single one of "
         "them should be trusted on its own.")
MAX_ROWS = 400


def render(ctx):
    vectors = ctx.vectors()
    if not vectors:
        return None
    labels = ctx.view.labels()
    names = list(vectors)
    peaks = {k: float(np.abs(v).max()) or 1.0 for k, v in vectors.items()}
    head = "".join(f"<th scope='col'>{esc(VECTOR_NAMES[k])}</th>" for k in names)
    rows = []
    n = len(labels)
    for i in range(min(n, MAX_ROWS)):
        cells = []
        for k in names:
            x = float(vectors[k][i])
            colour = shade(abs(x) / peaks[k], NEG if x < 0 else POS)
            cells.append(f"<td class='num' style='background:{colour}'>{number(x, 3)}</td>")
        special = " class='special'" if ctx.analysis.tokens[i].special else ""
        rows.append(f"<tr{special}><td class='num'>{i}</td><td class='tokcell'>{esc(labels[i])}</td>{''.join(cells)}</tr>")
    table = (f"<table class='attr'><thead><tr><th scope='col'>#</th><th scope='col'>Token</th>{head}</tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    parts = [how_to_read(HOWTO)]
    if n > MAX_ROWS:
        parts.append(f"<p class='note'>The first {MAX_ROWS} of {n} tokens are listed; the session holds all.</p>")
    explain = ctx.explain()
    read_row = explain.get("read_row") or {}
    if read_row:
        parts.append(f"<p class='note'>Attention-based columns use the row the output reads: rule "
                     f"“{esc(read_row.get('rule', '?'))}”"
                     + (f", token #{int(read_row['index'])}" if isinstance(read_row.get("index"), int) else "")
                     + (f" ({esc(read_row['why'])})" if read_row.get("why") and not ctx.view.redacted else "")
                     + ". Special tokens (grey index) are left out of agreement and faithfulness.</p>")
    skipped = explain.get("skipped") or {}
    for name, why in skipped.items():
        parts.append(f"<p class='note'>Not computed: {esc(name)}: {esc(why)}</p>")
    parts.append(table)
    return Section("attributions", "Token importance by method", "".join(parts))
