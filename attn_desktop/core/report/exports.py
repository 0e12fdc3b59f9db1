"""Files for exporting one view, without Qt: a heatmap as SVG (one rect per cell, labels,
colour bar, caption in <title>, <desc> and <metadata>), matrices and vectors as CSV with token
labels, and the caption every exported image carries."""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Mapping, Sequence

import numpy as np

from . import colours, png
from .markup import esc
from .svg import CHAR_W, FONT, Scale, short, tick_label

CAPTION_NS = "urn:attn-desktop:caption"
CAPTION_KEYS = ("measure", "layer", "head", "alpha", "model", "document", "date")
# above this many cells the SVG embeds the cells as one PNG instead of one rect each
RECT_LIMIT = 160 * 160


def caption_fields(*, measure: str, layer, head, alpha=None, model: str, document: str | None,
                   date: _dt.datetime | None = None, fusion: bool = False,
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What makes an exported image stand alone as evidence, as ordered text fields. `head`: a
    head index or mean/max/min; `fusion`: it is the head fusion of rollout or flow."""
    when = (date or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    if fusion:
        head_key, head_text = "fusion", f"head {head} alone" if isinstance(head, int) else f"heads fused by {head}"
    else:
        head_key, head_text = "head", str(head) if isinstance(head, int) else f"{head} of heads"
    fields = {"measure": str(measure), "layer": "n/a" if layer is None else str(layer), head_key: head_text,
              "alpha": "n/a" if alpha is None else f"{float(alpha):g}", "model": str(model),
              "document": document or "unsaved document", "date": when}
    fields.update(extra or {})
    return fields


def caption_line(fields: Mapping[str, str]) -> str:
    return " · ".join(f"{k}: {v}" for k, v in fields.items())


def png_text(fields: Mapping[str, str]) -> dict[str, str]:
    """PNG text chunks: the standard Title/Description/Software/Creation Time and one per field."""
    head = fields.get("head", fields.get("fusion", ""))
    out = {"Title": f"{fields.get('measure', '')} · layer {fields.get('layer', '')} · {head}",
           "Description": caption_line(fields), "Software": "attn-desktop",
           "Creation Time": fields.get("date", "")}
    out.update({f"attn-desktop:{k}": v for k, v in fields.items()})
    return out


def _xml(text) -> str:
    return esc(text)


def metadata_xml(fields: Mapping[str, str]) -> str:
    attrs = " ".join(f"{k}='{_xml(v)}'" for k, v in fields.items() if k.replace("_", "").isalnum())
    return f"<metadata><caption xmlns='{CAPTION_NS}' {attrs}/></metadata>"


def heatmap_svg(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
                caption: Mapping[str, str], colormap: str = "viridis", scale: str = "linear",
                value_name: str = "weight", cell: float = 14.0) -> str:
    """A standalone SVG file: one <rect class='cell'> per matrix cell (for matrices up to
    RECT_LIMIT cells; larger ones embed the cells as one PNG), every label, a colour bar and the
    caption as visible text, <title>, <desc> and <metadata>."""
    v = np.asarray(values, np.float32)
    rows, cols = v.shape
    sc = Scale.fit(v, scale)
    idx = np.round(sc.fraction(v) * 255).astype(np.int64)
    table = colours.table(colormap)
    if rows * cols > RECT_LIMIT:
        cell = max(1.0, min(cell, 900.0 / max(rows, cols)))
    left = min(max((len(short(s)) for s in row_labels), default=1), 14) * CHAR_W + 12
    top = 10.0
    w, h = cols * cell, rows * cell
    bottom = min(max((len(short(s)) for s in col_labels), default=1), 14) * CHAR_W + 12
    bar_x = left + w + 16
    width = bar_x + 14 + 60
    cap = caption_line(caption)
    cap_lines = _wrap(cap, int(max(width, 360) / (CHAR_W * 0.95)))
    height = top + h + bottom + 16 * len(cap_lines) + 8
    width = max(width, 360)
    out = ["<?xml version='1.0' encoding='UTF-8'?>",
           f"<svg xmlns='http://www.w3.org/2000/svg' version='1.1' width='{width:.0f}' height='{height:.0f}' "
           f"viewBox='0 0 {width:.0f} {height:.0f}' font-family='sans-serif' font-size='{FONT}'>",
           f"<title>{_xml(cap)}</title>", f"<desc>{_xml(cap)}</desc>", metadata_xml(caption),
           "<rect width='100%' height='100%' fill='#ffffff'/>"]
    if rows * cols <= RECT_LIMIT:
        out.append(f"<g class='cells' transform='translate({left:.1f},{top:.1f})' shape-rendering='crispEdges'>")
        for i in range(rows):
            for j in range(cols):
                r, g, b = table[idx[i, j]]
                out.append(f"<rect class='cell' x='{j * cell:g}' y='{i * cell:g}' width='{cell:g}' height='{cell:g}' "
                           f"fill='#{r:02x}{g:02x}{b:02x}'><title>{_xml(row_labels[i])} → {_xml(col_labels[j])}: "
                           f"{float(v[i, j]):.6g}</title></rect>")
        out.append("</g>")
    else:
        uri = png.data_uri(png.encode_png(table[idx.astype(np.uint8)]))
        out.append(f"<image x='{left:.1f}' y='{top:.1f}' width='{w:.1f}' height='{h:.1f}' "
                   f"preserveAspectRatio='none' style='image-rendering:pixelated' href='{uri}'/>")
    step_r = max(1, int(np.ceil((FONT + 1) / cell)))
    for i in range(0, rows, step_r):
        out.append(f"<text x='{left - 4:.1f}' y='{top + (i + 0.5) * cell:.1f}' text-anchor='end' "
                   f"dominant-baseline='middle'>{_xml(short(row_labels[i]))}</text>")
    for j in range(0, cols, step_r):
        x, y = left + (j + 0.5) * cell, top + h + 4
        out.append(f"<text transform='translate({x:.1f},{y:.1f}) rotate(-90)' text-anchor='end' "
                   f"dominant-baseline='middle'>{_xml(short(col_labels[j]))}</text>")
    ramp = np.linspace(255, 0, 64).round().astype(np.int64)
    seg = h / len(ramp)
    for k, t in enumerate(ramp):
        r, g, b = table[t]
        out.append(f"<rect class='bar' x='{bar_x:.1f}' y='{top + k * seg:.2f}' width='14' height='{seg + 0.3:.2f}' "
                   f"fill='#{r:02x}{g:02x}{b:02x}'/>")
    for f in (0.0, 0.5, 1.0):
        out.append(f"<text x='{bar_x + 18:.1f}' y='{top + h - f * h:.1f}' dominant-baseline='middle'>"
                   f"{_xml(tick_label(sc.value_at(f)))}</text>")
    out.append(f"<text x='{bar_x:.1f}' y='{top + h + 14:.1f}'>{_xml(value_name)}</text>")
    y = top + h + bottom + 12
    for line in cap_lines:
        out.append(f"<text class='caption' x='6' y='{y:.1f}'>{_xml(line)}</text>")
        y += 16
    out.append("</svg>\n")
    return "\n".join(out)


def _wrap(text: str, width: int) -> list[str]:
    lines, current = [], ""
    for part in text.split(" · "):
        candidate = part if not current else f"{current} · {part}"
        if len(candidate) > width and current:
            lines.append(current)
            current = part
        else:
            current = candidate
    return lines + ([current] if current else [])


def _label(i: int, label: str) -> str:
    """`index:token`: unique, and never starting with = + - @ (a spreadsheet would run it)."""
    return f"{i}:{label}"


def matrix_csv(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
               row_index: Sequence[int] | None = None, corner: str = "query \\ key",
               caption: Mapping[str, str] | None = None) -> str:
    v = np.asarray(values)
    rows = list(row_index) if row_index is not None else list(range(v.shape[0]))
    buf = io.StringIO()
    if caption:
        buf.write("# " + caption_line(caption).replace("\n", " ") + "\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([corner] + [_label(j, s) for j, s in enumerate(col_labels)])
    for r, i in enumerate(rows):
        w.writerow([_label(int(i), row_labels[r])] + [format(float(x), ".9g") for x in v[r]])
    return buf.getvalue()


def vectors_csv(columns: Mapping[str, np.ndarray], labels: Sequence[str],
                caption: Mapping[str, str] | None = None) -> str:
    buf = io.StringIO()
    if caption:
        buf.write("# " + caption_line(caption).replace("\n", " ") + "\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "token"] + list(columns))
    for i, label in enumerate(labels):
        w.writerow([i, _label(i, label)] + [format(float(c[i]), ".9g") for c in columns.values()])
    return buf.getvalue()


def array_table(name: str, array: np.ndarray, analysis) -> tuple[np.ndarray, list[str], list[str], str]:
    """A 1-D or 2-D array of an analysis as a labelled table (values [r, c], row labels, column
    labels, corner): token axes get token labels, head grids 'layer i' x 'head j', flow rows the
    tokens of flow_rows; anything else its indices."""
    a = np.asarray(array)
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} has {a.ndim} dimensions; only vectors and matrices go to CSV")
    tokens = [t.text for t in analysis.tokens]
    decoder = [t.text for t in (analysis.decoder_tokens or [])]

    def axis(size: int, prefix: str) -> list[str]:
        if size == len(tokens) and not name.startswith(("decoder_", "cross_")):
            return tokens
        if decoder and size == len(decoder):
            return decoder
        return [f"{prefix} {i}" for i in range(size)]

    if a.ndim == 1:
        if name.endswith("layer_smoothing"):
            cols = ["state 0 (embeddings)"] + [f"state {i}" for i in range(1, a.shape[0])]
        elif "layer" in name:
            cols = [f"layer {i}" for i in range(a.shape[0])]
        else:
            cols = axis(a.shape[0], "value")
        return a[None, :], [name], cols, "array"
    if "head" in name:
        return a, [f"layer {i}" for i in range(a.shape[0])], [f"head {j}" for j in range(a.shape[1])], "layer \\ head"
    rows = axis(a.shape[0], "row")
    if name.endswith("flow") and "flow_rows" in analysis.arrays:
        rows = [tokens[int(r)] if 0 <= int(r) < len(tokens) else f"row {r}" for r in analysis.arrays["flow_rows"]]
    return a, rows, axis(a.shape[1], "column"), "row \\ column"


def exportable_arrays(analysis) -> list[str]:
    """Names of the analysis' vectors and matrices that make sense as a CSV table."""
    return [k for k, v in sorted(analysis.arrays.items()) if v.ndim in (1, 2) and k != "flow_rows"]
