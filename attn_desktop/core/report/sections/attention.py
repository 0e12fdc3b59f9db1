"""The selected attention heatmap (layer, head or aggregate over heads) with its axes."""

from __future__ import annotations

from .. import svg
from ..markup import esc, how_to_read
from . import Section

HOWTO = ("Each row is one token of the text (the 'query'); each column is a token it can look at "
         "(the 'key'). The colour of a cell is how much weight the model's attention in this layer "
         "and head gives from the row token to the column token; each row's weights add up to 1. The "
         "colour bar on the right gives the scale. The boxed row is the focus token. Attention weights "
         "describe one internal step of the model; they are a clue to what the model combines, not proof "
         "of what caused its output.")
SET_NAMES = {"self": "self-attention", "encoder": "encoder self-attention",
             "decoder": "decoder self-attention", "cross": "cross-attention (decoder → input)"}


def render(ctx) -> Section:
    layer = ctx.layer()
    values = ctx.attention_matrix(layer)
    title = f"Attention · {SET_NAMES.get(ctx.set_name, ctx.set_name)} · layer {layer} · {ctx.head_label()}"
    if ctx.options.words:
        title += " · by words"
    values, rows, cols, focus_row = ctx.shown(values)
    fig = svg.heatmap(values, rows, cols, colormap=ctx.options.colormap,
                      scale=ctx.options.scale, value_name="attention weight", focus_row=focus_row, title=title)
    body = how_to_read(HOWTO) + f"<figure>{fig}<figcaption>{esc(title)}</figcaption></figure>"
    return Section("attention", "Attention heatmap", body)

