"""The verdict of the explanation stage, with its caveats, in its own words."""

from __future__ import annotations

from ..markup import esc, how_to_read
from ..redact import text_scrubber
from . import Section

HOWTO = ("This is a summary written by the software from the numbers above, using fixed rules (the "
         "thresholds are listed). It says whether attention agrees with or diverges from the other "
         "methods and the faithfulness tests for this one text and this one output. It is not a finding "
         "about the model in general, and the caveats belong to it: read them before relying on the "
         "headline.")


def render(ctx):
    v = ctx.explain().get("verdict")
    if not isinstance(v, dict) or not v.get("headline"):
        return None
    scrub = text_scrubber(ctx.view, ctx.explain().get("target")) if ctx.view.redacted else (lambda s: s)
    ctx.summary = scrub(str(v["headline"]))  # also under the report's title
    parts = [how_to_read(HOWTO), f"<p class='headline'>{esc(ctx.summary)}</p>"]
    details = [d for d in v.get("details") or [] if d]
    if details:
        parts.append("<h3>Details</h3><ul>" + "".join(f"<li>{esc(scrub(str(d)))}</li>" for d in details) + "</ul>")
    caveats = [c for c in v.get("caveats") or [] if c]
    if caveats:
        parts.append("<div class='caveats'><h3>Caveats</h3><ul>"
                     + "".join(f"<li>{esc(scrub(str(c)))}</li>" for c in caveats) + "</ul></div>")
    thresholds = v.get("thresholds")
    if isinstance(thresholds, dict) and thresholds:
        from ..markup import flatten, kv_table

        parts.append("<h3>Thresholds used</h3>" + kv_table(flatten(thresholds)))
    return Section("verdict", "Verdict", "".join(parts))
