"""Faithfulness: does removing the tokens a method ranks highest change the output?"""

from __future__ import annotations

from .. import svg
from ..context import VECTOR_NAMES
from ..markup import esc, how_to_read, note, number, table
from . import Section

HOWTO = ("These curves test each method against the model itself. 'Comprehensiveness': the most "
         "important tokens according to the method are removed (the share on the horizontal axis) and "
         "the drop in the output is measured; a faithful method makes the output drop a lot. "
         "'Sufficiency': only those tokens are kept; a faithful method keeps the output close to the "
         "original, so the drop is small. The grey band shows what randomly chosen tokens do (5th to 95th "
         "percentile); a method whose curve stays inside the band does no better than chance. AOPC is the "
         "average height of a curve.")


def render(ctx):
    f = ctx.explain().get("faithfulness")
    if not isinstance(f, dict) or not f.get("per_method") or not f.get("fractions"):
        return None
    fractions = [float(x) for x in f["fractions"]]
    per = f["per_method"]
    rnd = f.get("random") or {}
    parts = [how_to_read(HOWTO)]
    if f.get("convention"):
        parts.append(note(str(f["convention"])))
    for key, title, band_key, better in (
        ("comprehensiveness", "Comprehensiveness: output drop when the top tokens are removed",
         "comprehensiveness_band", "higher is more faithful"),
        ("sufficiency", "Sufficiency: output drop when only the top tokens are kept",
         "sufficiency_band", "lower is more faithful"),
    ):
        series = [svg.Series(VECTOR_NAMES.get(name, name), fractions, [_num(y) for y in d.get(key) or []])
                  for name, d in per.items() if len(d.get(key) or []) == len(fractions)]
        if not series:
            continue
        band = rnd.get(band_key)
        band_arg = None
        if isinstance(band, list) and len(band) == 2 and all(len(b) == len(fractions) for b in band):
            band_arg = (fractions, [_num(y) for y in band[0]], [_num(y) for y in band[1]])
        if rnd.get(f"{key}_mean") and len(rnd[f"{key}_mean"]) == len(fractions):
            series.append(svg.Series("random rankings (mean)", fractions, [_num(y) for y in rnd[f"{key}_mean"]],
                                     dashed=True, colour="#666666"))
        fig = svg.line_chart(series, x_label="share of tokens removed (comprehensiveness) or kept (sufficiency)",
                             y_label="f(x) − f(changed x)", title=title, band=band_arg,
                             band_label="random rankings, 5th–95th percentile", percent_x=True)
        parts.append(f"<figure>{fig}<figcaption>{esc(title)} ({esc(better)})</figcaption></figure>")
    rows = []
    for name, d in per.items():
        rows.append((esc(VECTOR_NAMES.get(name, name)), number(d.get("aopc_comp")), number(d.get("aopc_suff")),
                     _share(d.get("beats_random_comp")), _share(d.get("beats_random_suff"))))
    if rnd:
        rows.append(("<em>random rankings (mean)</em>", number(rnd.get("aopc_comp_mean")),
                     number(rnd.get("aopc_suff_mean")), "–", "–"))
    parts.append(table(["Method", "AOPC comprehensiveness (higher: better)", "AOPC sufficiency (lower: better)",
                        "Beats random (comp.)", "Beats random (suff.)"], rows, cls="narrow",
                       caption="Area over the perturbation curve, and the share of random rankings each method beats"))
    return Section("faithfulness", "Faithfulness tests", "".join(parts))


def _num(y):
    return None if y is None else float(y)


def _share(x):
    return "–" if x is None else f"{float(x) * 100:.0f}%"
