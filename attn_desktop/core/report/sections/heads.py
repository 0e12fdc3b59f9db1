"""Heads: how focused each head's attention is, and (when the analysis holds them) how much
the output depends on each head and layer."""

from __future__ import annotations

import numpy as np

from attn_desktop.core.propagate.heads import head_diagnostics

from .. import svg
from ..grids import grid_table
from ..markup import esc, how_to_read, note
from . import Section

HOWTO = ("A model has several layers, and each layer several 'heads' that attend in different ways. "
         "The first table gives, for each head, how spread out its attention is: near 1 means it looks "
         "at everything almost evenly (marked ≈), near 0 that it looks at very few tokens; ▲ marks heads "
         "that put most of their weight on one position (often a separator token), which usually means "
         "'nothing in particular'. Where the analysis measured it, 'importance' is how much the output "
         "changes when one head is switched off: strong colours, blue or red, mark heads the output depends on.")
GRID_MAX_HEADS = 12  # wider grids would not fit a printed A4 page: drawn as a heatmap instead
# arrays of the heads stage (docs/heads.md): name -> (title, signed). Its head_entropy is the
# normalised entropy the first table shows (core.propagate.heads.head_diagnostics), not repeated.
HEAD_ARRAYS = {
    "head_importance": ("Head importance (output change when the head is switched off)", True),
    "head_importance_grad": ("Head importance, gradient estimate", True),
}
LAYER_ARRAYS = {
    "layer_importance": "Layer importance",
    "layer_smoothing": "Over-smoothing per layer (mean similarity of token states)",
}


def render(ctx):
    an = ctx.analysis
    parts = [how_to_read(HOWTO)]
    att = an.attention(ctx.set_name)
    diag = head_diagnostics(att)
    layers, heads = diag.entropy.shape
    marks = {}
    for i in range(layers):
        for j in range(heads):
            marks[(i, j)] = (" ≈" if diag.diffuse[i, j] else "") + (" ▲" if diag.single_position[i, j] else "")
    parts.append(f"<h3>Spread of attention per head ({esc(ctx.set_name)})</h3>")
    parts.append(_grid(diag.entropy, marks, "normalised entropy (0 focused – 1 uniform)", ctx, value_range=(0.0, 1.0)))
    heads_meta = ctx.manifest.get("heads") if isinstance(ctx.manifest.get("heads"), dict) else {}
    sets_meta = heads_meta.get("sets") if isinstance(heads_meta.get("sets"), dict) else {}
    prefixes = [""] + [p for p in ("encoder_", "decoder_", "cross_") if any(k.startswith(p) for k in an.arrays)]
    threshold = heads_meta.get("threshold")
    for prefix in prefixes:
        set_name = prefix[:-1] if prefix else "self"
        no_effect = {tuple(x) for x in (sets_meta.get(set_name) or {}).get("no_effect") or []
                     if isinstance(x, list) and len(x) == 2}
        for name, (title, signed) in HEAD_ARRAYS.items():
            a = an.arrays.get(prefix + name)
            if a is None or a.ndim != 2:
                continue
            m = np.asarray(a, np.float64)
            if signed and np.nanmax(np.abs(m)) > 0:
                shown = m / np.nanmax(np.abs(m))
                marks = {(int(i), int(j)): " ○" for i, j in no_effect} if name == "head_importance" else {}
                extra = (f" ○ marks heads whose removal changes the output by less than {threshold}."
                         if marks and threshold is not None else "")
                parts.append(f"<h3>{esc(_named(prefix, title))}</h3>"
                             + note(f"Scaled to the largest absolute value, {np.nanmax(np.abs(m)):.3g}. Blue: the "
                                    "output drops when the head is switched off (the head supports it); red: it "
                                    "rises." + extra))
                parts.append(_grid(shown, marks, title, ctx, signed=True))
            else:
                parts.append(f"<h3>{esc(_named(prefix, title))}</h3>" + _grid(m, {}, title, ctx))
        for name, title in LAYER_ARRAYS.items():
            a = an.arrays.get(prefix + name)
            if a is None or a.ndim != 1:
                continue
            xs = list(range(len(a)))
            fig = svg.line_chart([svg.Series(title, xs, [float(x) for x in a])], x_label="layer",
                                 y_label=title.split(" (")[0], title=_named(prefix, title), height=220)
            parts.append(f"<figure>{fig}<figcaption>{esc(_named(prefix, title))}</figcaption></figure>")
    if heads_meta:
        from ..markup import flatten, kv_table
        from ..redact import redact_value

        pairs = [(k, v) for k, v in flatten(heads_meta)
                 if not k.startswith("sets.") and (not isinstance(v, list) or len(v) <= 32)]
        if ctx.view.redacted:
            pairs = [(k, redact_value(k, v)) for k, v in pairs]
        parts.append("<h3>How the head measures were made</h3>" + kv_table(pairs))
    return Section("heads", "Layers and heads", "".join(parts))


def _grid(m, marks, title, ctx, signed=False, value_range=None):
    layers, heads = m.shape
    if heads <= GRID_MAX_HEADS:
        return grid_table(m, [f"layer {i}" for i in range(layers)], [f"h{j}" for j in range(heads)],
                          corner="", colormap=ctx.options.colormap, signed=signed, marks=marks, caption=title,
                          value_range=value_range)
    from .. import colours

    return svg.heatmap(m, [f"layer {i}" for i in range(layers)], [f"head {j}" for j in range(heads)],
                       colormap=colours.DIVERGING if signed else ctx.options.colormap, value_name=title,
                       title=title, row_title="layer", col_title="head", marks=marks,
                       value_range=(-1.0, 1.0) if signed else value_range)


def _named(prefix: str, title: str) -> str:
    """'Encoder: head importance …' for an attention set's arrays, the title alone otherwise."""
    return f"{prefix[:-1].capitalize()}: {title[0].lower()}{title[1:]}" if prefix else title
