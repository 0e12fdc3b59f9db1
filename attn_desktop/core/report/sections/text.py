"""The document with every token shaded by the chosen measure for the focus token(s)."""

from __future__ import annotations

import numpy as np

from ..markup import esc, how_to_read, note, number, table
from . import Section

HOWTO = ("The text is shown as the model read it, cut into tokens (words or pieces of words). The "
         "darker a token's shading, the larger the value of the measure named above the text for the "
         "token in the box (the focus). Shading compares tokens within this one text only: a dark token "
         "is large relative to the others here, not large in any absolute sense. Hover over a token (on "
         "screen) to see its index and exact value; the table below lists the largest values. The "
         "shading shows where the model's internal weighting points; it does not by itself show why the "
         "model produced its output.")
VECTOR_HOWTO = ("The text is shown as the model read it, cut into tokens (words or pieces of words). "
                "Each token is shaded by how much it counts for the model's output (the target named in "
                "the provenance) according to the method named above the text: orange tokens push the "
                "output up, blue tokens push it down, and the deeper the colour, the larger the effect, "
                "relative to the other tokens of this text. Hover over a token (on screen) to see its index "
                "and exact value; the table below lists the largest values. One method's scores are an "
                "estimate; compare them with the other methods further on before relying on them.")
TOP = 12
POS = (217, 119, 6)  # amber: positive values
NEG = (37, 99, 235)  # blue: negative values (signed attributions)


def shade(fraction: float, rgb=POS) -> str:
    """A background that stays readable under black text: white blended towards `rgb`."""
    f = 0.08 + 0.77 * min(max(fraction, 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * f) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def render(ctx) -> Section:
    view, an = ctx.view, ctx.analysis
    hl = ctx.highlight()
    from ..context import VECTOR_NAMES

    vector = ctx.options.measure in VECTOR_NAMES
    parts = [how_to_read(VECTOR_HOWTO if vector else HOWTO)]
    for n in ctx.notes:
        parts.append(note(n, "warn"))
    if hl is None:
        parts.append(note("No values to shade the text with."))
        return Section("text", "The text", "".join(parts))
    decoder = not ctx.highlights_input()
    tokens = an.decoder_tokens if decoder else an.tokens
    labels = view.decoder_labels() if decoder else view.labels()
    values = np.nan_to_num(np.asarray(hl.values, np.float64))
    axis = "decoder_tokens" if decoder else "tokens"
    units = ctx.units(axis)
    unit_values = values if units.identity else np.add.reduceat(values, units.starts) if len(values) else values
    values = unit_values[units.of_token] if len(values) else values  # a word: the sum of its pieces
    scale = float(np.abs(values).max()) if len(values) else 1.0
    scale = scale or 1.0
    focus = set(ctx.focus) if not vector and ((ctx.set_name in ("self", "encoder") and not decoder)
                                              or (ctx.set_name == "decoder" and decoder)) else set()

    parts.append(f"<p class='legendline'><strong>Shading:</strong> {esc(hl.label)}. "
                 f"{_legend(hl.signed, scale, boxed=bool(focus))}</p>")
    strip = [i for i, t in enumerate(tokens) if t.end <= t.start]
    if strip:
        chips = "".join(_token(i, labels[i], values[i], scale, hl.signed, i in focus, "chip") for i in strip)
        parts.append(f"<p class='strip'><span class='muted'>Tokens with no place in the text:</span> {chips}</p>")
    body = []
    trunc = an.manifest.get("truncation") or {}
    cut = trunc.get("analysed_chars") if trunc.get("truncated") and not decoder else None
    if isinstance(cut, int) and 0 <= cut < len(an.text):
        parts.append(note(f"The text was cut at the model's length: the part after the cut (greyed below) was "
                          f"not analysed ({trunc.get('tokens_before_truncation', '?')} tokens before the cut, "
                          f"{len(an.tokens)} analysed).", "warn"))
    else:
        cut = None
    at = 0  # character offset of the segment, to grey what follows the cut
    for piece, i in view.segments(decoder=decoder):
        start, at = at, at + len(piece)
        if i is None and cut is not None and at > cut:
            head = max(0, cut - start)
            body.append(esc(piece[:head]) + f"<span class='muted'>{esc(piece[head:])}</span>")
        elif i is None:
            body.append(esc(piece))
        else:
            hidden = view.decoder.hidden_tokens if decoder else view.input.hidden_tokens
            body.append(_token(i, piece, values[i], scale, hl.signed, i in focus, "tok hid" if i in hidden else "tok"))
    parts.append(f"<div class='document'>{''.join(body)}</div>")

    unit_labels = ctx.unit_labels(axis)
    order = np.argsort(-np.abs(unit_values) if hl.signed else -unit_values, kind="stable")[:TOP]
    what = "words" if ctx.options.words else "tokens"

    def index(u):
        toks = units.tokens(int(u))
        return str(toks[0]) if len(toks) == 1 else f"{toks[0]}–{toks[-1]}"

    rows = [(str(k + 1), f"<span class='tokcell'>{esc(unit_labels[u])}</span>", index(u), number(unit_values[u]))
            for k, u in enumerate(order)]
    parts.append(table(["Rank", "Word" if ctx.options.words else "Token", "Index", "Value"], rows, cls="narrow",
                       caption=f"The {min(TOP, len(order))} {what} with the largest "
                       f"{'absolute ' if hl.signed else ''}values"
                       + (" (a word's value is the sum of its pieces')" if ctx.options.words else "")))
    return Section("text", "The text", "".join(parts))


def _legend(signed: bool, scale: float, boxed: bool = True) -> str:
    steps = "".join(f"<span class='sw' style='background:{shade(f)}'></span>" for f in np.linspace(0, 1, 6))
    text = f"<span class='ramp'>0 {steps} {esc(number(scale))}</span>"
    if signed:
        neg = "".join(f"<span class='sw' style='background:{shade(f, NEG)}'></span>" for f in np.linspace(1, 0, 6))
        text = f"<span class='ramp'>{esc(number(-scale))} {neg} 0 {steps} {esc(number(scale))}</span>"
    return text + (" <span class='focusmark'>boxed</span> = focus token." if boxed else "")


def _token(i: int, label: str, value: float, scale: float, signed: bool, focus: bool, cls: str) -> str:
    fraction = abs(value) / scale
    colour = shade(fraction, NEG if signed and value < 0 else POS)
    klass = cls + (" focus" if focus else "")
    tip = f"#{i} “{label}” value {number(value)}"
    return f"<span class='{klass}' style='background:{colour}' title='{esc(tip)}'>{esc(label)}</span>"
