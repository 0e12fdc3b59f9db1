"""Windowed analyses: where each window lies in the document, which one the report shows, and
that attention does not cross windows."""

from __future__ import annotations

from ..markup import esc, how_to_read, note, table
from . import Section

HOWTO = ("The document was longer than the model accepts, so it was read in overlapping windows, each "
         "on its own: a token's attention reaches only the tokens of its own window, never text in another "
         "window. The figures and tables of this report show the window marked below; tokens outside it "
         "carry no values here. Token numbers count the document's tokens from 1.")


def render(ctx):
    from attn_desktop.core import windows

    an = ctx.analysis
    if not windows.is_windowed(an):
        return None
    info = an.manifest["windows"]
    shown = windows.shown_window(an)
    rows = []
    for k, e in enumerate(info["windows"]):
        mark = "<strong>shown</strong>" if k == shown else ""
        rows.append([str(k + 1), f"{e['token_start'] + 1}–{e['token_end']}", str(e["tokens"]),
                     f"{e['char_start']}–{e['char_end']}", mark])
    parts = [how_to_read(HOWTO), note(info.get("rule") or windows.RULE, "warn"),
             f"<p>{esc(windows.summary(an, rule=False))}. This report shows {esc(windows.place(an))}.</p>",
             table(["Window", "Document tokens", "Model positions", "Characters", ""], rows, cls="narrow",
                   caption=esc(f"Windows of at most {info['size']} positions, starting about {info['stride']} "
                               f"tokens apart, cut at {info.get('cuts', 'token boundaries')}."))]
    return Section("windows", "Windows", "".join(parts))
