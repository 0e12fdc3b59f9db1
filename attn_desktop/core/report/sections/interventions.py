"""Interventions on attention: uniform and permuted weights, and what they do to the output."""

from __future__ import annotations

from ..markup import esc, how_to_read, kv_table, number, table
from . import Section

HOWTO = ("Here the model's attention was deliberately replaced, and the output recomputed. 'Uniform' "
         "spreads every token's attention evenly; 'permuted' shuffles the weights at random (several "
         "times). If the output hardly changes, the particular attention pattern was not needed for this "
         "output, and reading meaning into it is risky. If the output changes a lot, the pattern matters, "
         "though this alone does not show which tokens matter. 'Change' is the difference in the target "
         "value; TVD (0 to 1) is how far the whole output distribution moved; a 'flip' means the "
         "prediction itself changed.")


def render(ctx):
    iv = ctx.explain().get("interventions")
    if not isinstance(iv, dict) or not iv:
        return None
    redact = ctx.view.redacted
    parts = [how_to_read(HOWTO)]
    rows = []
    u = iv.get("uniform_all")
    if isinstance(u, dict):
        rows.append(("uniform, all layers", number(u.get("value")), number(u.get("change")), number(u.get("tvd")),
                     _flip(u.get("flip")), _pred(u.get("predicted"), redact)))
    for entry in iv.get("uniform_layer") or []:
        if isinstance(entry, dict):
            rows.append((esc(f"uniform, {entry.get('set', '')} layer {entry.get('layer', '?')} alone"),
                         number(entry.get("value")), number(entry.get("change")), number(entry.get("tvd")),
                         _flip(entry.get("flip")), _pred(entry.get("predicted"), redact)))
    if rows:
        parts.append(table(["Intervention", "Target value", "Change", "TVD", "Flip", "Prediction"], rows, cls="narrow"))
    p = iv.get("permuted")
    if isinstance(p, dict):
        pairs = [("seeds", p.get("seeds")), ("median |change|", p.get("abs_change_median")),
                 ("max |change|", p.get("abs_change_max")), ("median TVD", p.get("tvd_median")),
                 ("max TVD", p.get("tvd_max")), ("flips", p.get("flips")), ("generator", p.get("generator"))]
        parts.append("<h3>Permuted attention</h3>" + kv_table([(k, v) for k, v in pairs if v is not None]))
    if iv.get("allowed_keys"):
        parts.append(f"<p class='note'>{esc(iv['allowed_keys'])}</p>")
    return Section("interventions", "Changing the attention", "".join(parts))


def _flip(x):
    return "–" if x is None else ("yes" if x else "no")


def _pred(x, redact):
    if x is None:
        return "–"
    return "[redacted]" if redact else esc(x)
