"""The verdict of the explanation stage, with its caveats, in its own words."""

from __future__ import annotations

import re

from ..markup import esc, how_to_read
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
    scrub = _scrubber(ctx.view) if ctx.view.redacted else (lambda s: s)
    parts = [how_to_read(HOWTO), f"<p class='headline'>{esc(scrub(str(v['headline'])))}</p>"]
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


def _scrubber(view):
    """The verdict is free text that may quote tokens: in a redacted report every hidden token's
    text (as a whole word, any case) is replaced."""
    words = sorted({w for w in view.hidden_strings() if len(w.strip()) >= 2}, key=len, reverse=True)
    if not words:
        return lambda s: s
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words), re.IGNORECASE)
    return lambda s: pattern.sub("[redacted]", s)
