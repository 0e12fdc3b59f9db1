"""Attention rollout and attention flow (Abnar & Zuidema 2020), as the analysis holds them."""

from __future__ import annotations

from .. import svg
from ..markup import esc, flatten, how_to_read, kv_table, note
from . import Section

ROLLOUT_HOWTO = ("A model passes information through many layers. Rollout follows the attention "
                 "weights through all layers up to the one named, multiplying them layer by layer, to "
                 "estimate how much each input token (column) contributes to each token's representation "
                 "at that depth (row). Each row adds up to 1. It is an approximation built from attention "
                 "alone: it ignores everything else the model computes between layers.")
FLOW_HOWTO = ("Attention flow treats the layers as a network of pipes whose widths are the attention "
              "weights and asks how much can flow from each input token (column) to the token of each "
              "row through all layers. Rows add up to 1. Like rollout, it is computed from attention "
              "alone; it tends to spread credit more evenly than rollout. The values are exact to the "
              "bound stated below.")


def render_rollout(ctx):
    layers = ctx.rollout_layers()
    if layers is None:
        return None
    entry = (ctx.manifest.get("methods") or {}).get("rollout") or {}
    start = ctx.rollout_start() if ctx.set_name in ("self", "encoder") else 0
    last = start + layers.shape[0] - 1
    title = (f"Rollout through layer {last} · heads fused by {entry.get('head_fusion', '?')} · "
             f"α={entry.get('alpha', '?')}" + (f" · from layer {start}" if start else ""))
    values, rows, cols, focus_row = ctx.shown(layers[-1])
    fig = svg.heatmap(values, rows, cols, colormap=ctx.options.colormap,
                      scale=ctx.options.scale, value_name="rollout", title=title, focus_row=focus_row)
    parts = [how_to_read(ROLLOUT_HOWTO), f"<figure>{fig}<figcaption>{esc(title)}</figcaption></figure>"]
    params = [(k, v) for k, v in flatten(entry) if k not in ("arrays",)]
    if params:
        parts.append(kv_table(params))
    return Section("rollout", "Attention rollout", "".join(parts))


def render_flow(ctx):
    f = ctx.flow()
    if f is None:
        return None
    flow, rows = f
    entry = (ctx.manifest.get("methods") or {}).get("flow") or {}
    n = len(ctx.query_labels())
    exact = "exact (certified within 1e-6)" if entry.get("exact") else "approximate"
    bound = entry.get("max_abs_error_bound")
    title = (f"Attention flow · {len(rows)} of {n} token rows · heads fused by "
             f"{entry.get('head_fusion', '?')} · α={entry.get('alpha', '?')} · {exact}")
    values, row_labels, cols, focus_row = ctx.shown(flow, rows)
    if not len(values):
        return Section("flow", "Attention flow", how_to_read(FLOW_HOWTO) + note(
            "Flow rows were computed for some pieces of words but no whole word; show the report by pieces."))
    fig = svg.heatmap(values, row_labels, cols, colormap=ctx.options.colormap,
                      scale=ctx.options.scale, value_name="flow", title=title, focus_row=focus_row,
                      row_title="output token (row)", col_title="input token (column)")
    parts = [how_to_read(FLOW_HOWTO), f"<figure>{fig}<figcaption>{esc(title)}</figcaption></figure>"]
    if bound is not None:
        parts.append(note(f"Largest possible error of any value: {float(bound):.1e}."))
    params = [(k, v) for k, v in flatten(entry) if k not in ("rows",)]
    params.append(("rows computed", ", ".join(str(int(r)) for r in rows[:40]) + (" …" if len(rows) > 40 else "")))
    parts.append(kv_table(params))
    return Section("flow", "Attention flow", "".join(parts))

