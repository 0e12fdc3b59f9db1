"""What a view can show: measures over an Analysis, and what workers derive before showing it.

A measure turns (analysis, selection) into a matrix [rows, keys] whose rows are query tokens.
Adding one is a class with `unavailable`, `layer_range`, `ready`, `matrix`, `row`, `title` and
optionally `prepare` (run in a worker thread, never on the GUI thread), then `register(...)`.
Qt-free, so workers and tests can use it directly. The science (rollout, flow) is in
core.propagate.propagation; this module only files its results by their parameters.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.propagate.heads import HeadDiagnostics, aggregate_heads, aggregate_row, head_diagnostics
from ..core.views.mapped_arrays import is_mapped, layer_aggregate, resident_copy

if TYPE_CHECKING:
    from ..core.analysis import Analysis

THUMB = 48  # thumbnails are at most THUMB x THUMB cells


class Measure(ABC):
    key = ""
    label = ""
    uses_heads = True  # the head selector applies (an aggregate, or the head fusion)
    uses_layers = True
    value_name = "weight"
    # Words mode (gui.units): True when row r is query token row_queries[r]'s own row, so a word's
    # row is the mean of its pieces' rows; False when rows stand for the whole text (kept as they
    # are). Columns are summed over each word's pieces either way.
    rows_by_query = True

    def unavailable(self, analysis: Analysis | None, set_name: str) -> str | None:
        """None when this measure can be shown for the set, else why not (one line)."""
        return None

    def prepare(self, analysis: Analysis) -> None:  # noqa: B027 (optional hook: most need nothing)
        """Compute or index what views need into the analysis. Runs in a worker thread."""

    def layer_range(self, analysis: Analysis, sel) -> tuple[int, int]:
        """(first layer, number of layers) the layer selector offers."""
        return 0, int(analysis.attention(sel.set_name).shape[0])

    def ready(self, analysis: Analysis, sel) -> bool:
        """False while what the selection asks for is still being computed (or never was)."""
        return True

    def view_key(self, sel) -> tuple:
        """Everything in the selection the matrix depends on (for the matrix cache)."""
        return (sel.set_name, sel.layer if self.uses_layers else 0, sel.head if self.uses_heads else None)

    def row_queries(self, analysis: Analysis, sel) -> np.ndarray:
        """The query index of each matrix row."""
        return np.arange(len(analysis.axis_tokens(sel.set_name)[0]))

    @abstractmethod
    def matrix(self, analysis: Analysis, sel) -> np.ndarray:
        """[rows, keys] for the selection; rows are the queries of `row_queries`."""

    def row(self, analysis: Analysis, sel, query: int) -> np.ndarray | None:
        """Values over the keys for one query, or None when the measure has no such row."""
        if not self.ready(analysis, sel):
            return None
        rows = self.row_queries(analysis, sel)
        hit = np.flatnonzero(rows == query)
        return None if hit.size == 0 else self.matrix(analysis, sel)[hit[0]]

    def title(self, analysis: Analysis | None, sel) -> str:
        return self.label

    def legend(self, analysis: Analysis, sel, who: str) -> str:
        """What the editor highlight shows, for the focus token `who` (already quoted)."""
        return f"{self.value_name} from {who}"

    def title_tip(self, analysis: Analysis | None, sel) -> str:
        """Details for the heatmap title's tooltip (the title itself stays one short line)."""
        return ""

    def style(self, sel) -> tuple[str, str]:
        """(colormap, scale) the views draw this measure with."""
        return sel.colormap, sel.scale

    def row_labels(self, analysis: Analysis, sel, rows: np.ndarray) -> list[str]:
        """The heatmap's label of each matrix row."""
        queries = analysis.axis_tokens(sel.set_name)[0]
        return [queries[i].text for i in rows]


def head_label(head) -> str:
    return f"head {head}" if isinstance(head, int) else f"{head} of heads"


def fusion_label(fusion) -> str:
    return f"head {fusion} alone" if isinstance(fusion, int) else f"heads fused by {fusion}"


def alpha_label(alpha: float) -> str:
    return f"α={float(alpha):g}"


class AttentionMeasure(Measure):
    key = "attention"
    label = "Attention"

    def matrix(self, analysis, sel):
        """float16 for a single head (as stored: quantised straight from it), float32 for
        aggregates; the mean comes precomputed from the worker when available. Attention mapped
        from a file (a long input) is read one layer, one head at a time into private memory:
        the mean from the float16 head means made during capture (array 'head_mean')."""
        whole = analysis.attention(sel.set_name)
        if is_mapped(whole):
            if isinstance(sel.head, int):
                return resident_copy(whole[sel.layer, sel.head])
            means = analysis.arrays.get("head_mean") if sel.set_name == "self" else None
            if sel.head == "mean" and means is not None and means.shape == (whole.shape[0], *whole.shape[2:]):
                return resident_copy(means[sel.layer])
            return layer_aggregate(whole, sel.layer, sel.head)
        att = whole[sel.layer]
        if isinstance(sel.head, int):
            return att[sel.head]
        if sel.head == "mean":
            means = analysis.extras.get("head_mean", {}).get(sel.set_name)
            if means is not None:
                return means[sel.layer]
        return aggregate_heads(att, sel.head)

    def prepare(self, analysis):
        means = analysis.extras.setdefault("head_mean", {})
        for name in analysis.attention_set_names():
            if name not in means and not is_mapped(analysis.attention(name)):  # mapped: per layer, on demand
                means[name] = aggregate_heads(analysis.attention(name), "mean")

    def row(self, analysis, sel, query):
        att = analysis.attention(sel.set_name)[sel.layer]
        if not 0 <= query < att.shape[-2]:
            return None
        if isinstance(sel.head, int):
            return np.asarray(att[sel.head, query], dtype=np.float32)
        return aggregate_row(att, query, sel.head)

    def title(self, analysis, sel):
        return f"Attention · layer {sel.layer} · {head_label(sel.head)}"


# -- rollout and flow: computed by core.propagate.propagation, kept per parameter set -------------------
#
# The window computes them in workers on a copy of the analysis (`work_copy`) and files the
# results here on the GUI thread, keyed by their parameters. A view looks its data up by the
# parameters of the current selection, so a result is only ever shown under its own labels.
# The parameters last filed (or chosen) are also put in analysis.arrays and
# manifest["methods"], which is what Save session writes.

ROLLOUT_KEEP = 4
# longer texts get their rollout from its own job (progress per layer, its own Cancel) after the
# analysis shows: 3.4 s at n=2048 with 6 layers here
ROLLOUT_WITH_ANALYSIS_MAX = 1024


@dataclass
class RolloutResult:
    arrays: dict[str, np.ndarray]  # as core.propagate.propagation made them
    shown: dict[str, np.ndarray]  # attention set -> [layers, queries, keys] as the views show it
    entry: dict  # manifest["methods"]["rollout"]


@dataclass
class FlowRows:
    flow: np.ndarray  # [r, n] float32, rows normalised
    rows: np.ndarray  # [r] int64, sorted
    entry: dict  # manifest["methods"]["flow"]: alpha, head_fusion, exact, max_abs_error_bound...


def store(analysis: Analysis) -> dict[str, dict]:
    return analysis.extras.setdefault("propagation", {"rollout": {}, "flow": {}})


def normalise_fusion(fusion):
    if isinstance(fusion, str) and fusion.strip().lstrip("-").isdigit():
        return int(fusion)
    if isinstance(fusion, (np.integer,)):
        return int(fusion)
    return fusion


def rollout_params(analysis: Analysis, alpha: float, fusion, start_layer: int) -> tuple:
    """The key of a rollout: (alpha, fusion, start layer); encoder-decoder models start at 0."""
    start = 0 if analysis.is_encoder_decoder else int(start_layer)
    return round(float(alpha), 4), normalise_fusion(fusion), start


def flow_params(alpha: float, fusion) -> tuple:
    return round(float(alpha), 4), normalise_fusion(fusion)


def work_copy(analysis: Analysis) -> Analysis:
    """A copy a worker may change: its own arrays dict and manifest (the arrays themselves are
    shared and never written in place). Make it on the GUI thread."""
    from ..core.analysis import Analysis as _Analysis

    manifest = dict(analysis.manifest)
    manifest["methods"] = {k: dict(v) if isinstance(v, dict) else v
                           for k, v in (analysis.manifest.get("methods") or {}).items()}
    return _Analysis(text=analysis.text, tokens=analysis.tokens, arrays=dict(analysis.arrays),
                     manifest=manifest, decoder_text=analysis.decoder_text,
                     decoder_tokens=analysis.decoder_tokens)


def _rownorm(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=-1, keepdims=True, dtype=np.float64)
    out = np.zeros(m.shape, np.float32)
    np.divide(m, sums, out=out, where=sums > 0, casting="unsafe")
    return out


def rollout_result(arrays: dict[str, np.ndarray], entry: dict) -> RolloutResult:
    if "decoder_rollout" in arrays:
        # Each decoder row's target part sums to (1-α)^l and its source part to 1-(1-α)^l by
        # construction (docs/propagation.md): show how each part is distributed, not its total.
        shown = {"encoder": arrays["rollout"], "decoder": _rownorm(arrays["decoder_rollout"]),
                 "cross": _rownorm(arrays["decoder_source_rollout"])}
    else:
        shown = {"self": arrays["rollout"]}
    return RolloutResult(arrays=arrays, shown=shown, entry=entry)


def compute_rollout(copy: Analysis, params: tuple, progress=None, cancel=None, compute=None) -> RolloutResult:
    """Runs in a worker, on a `work_copy`; in the compute process `compute`
    (core.propagate.compute_process) when given, else in this process."""
    from ..core.propagate import propagation

    alpha, fusion, start = params
    (compute or propagation).add_rollout(copy, alpha, fusion, start, progress=progress, cancel=cancel)
    entry = copy.manifest["methods"]["rollout"]
    return rollout_result({k: copy.arrays[k] for k in entry["arrays"]}, entry)


def file_rollout(analysis: Analysis, params: tuple, result: RolloutResult) -> None:
    """Keeps the ROLLOUT_KEEP parameter sets used last: each is [layers, n, n] float32 (800 MB
    at n=4096, 12 layers), and stepping α through its box makes a new one per step."""
    kept = store(analysis)["rollout"]
    kept[params] = result
    adopt_rollout(analysis, params)
    while len(kept) > ROLLOUT_KEEP:
        kept.pop(next(iter(kept)))


def adopt_rollout(analysis: Analysis, params: tuple) -> None:
    """Make the rollout of `params` the one the analysis carries (and a session saves)."""
    kept = store(analysis)["rollout"]
    result = kept.pop(params, None)
    if result is not None:
        kept[params] = result  # most recently used last
        analysis.arrays.update(result.arrays)
        analysis.manifest.setdefault("methods", {})["rollout"] = result.entry


def file_flow(analysis: Analysis, params: tuple, rows: FlowRows) -> None:
    store(analysis)["flow"][params] = rows
    adopt_flow(analysis, params)


def adopt_flow(analysis: Analysis, params: tuple) -> None:
    rows = store(analysis)["flow"].get(params)
    if rows is not None:
        analysis.arrays["flow_rows"] = rows.rows
        analysis.arrays["flow"] = rows.flow
        analysis.manifest.setdefault("methods", {})["flow"] = rows.entry


def flow_rows_of(copy: Analysis) -> FlowRows | None:
    """What a worker's copy holds after core.propagate.propagation.add_flow."""
    entry = copy.manifest.get("methods", {}).get("flow")
    if entry is None or "flow" not in copy.arrays:
        return None
    return FlowRows(flow=copy.arrays["flow"], rows=copy.arrays["flow_rows"], entry=entry)


def seed_flow(copy: Analysis, rows: FlowRows | None) -> None:
    """Put rows already computed into a worker's copy, so add_flow keeps them."""
    copy.arrays.pop("flow", None)
    copy.arrays.pop("flow_rows", None)
    copy.manifest.setdefault("methods", {}).pop("flow", None)
    if rows is not None:
        copy.arrays["flow"], copy.arrays["flow_rows"] = rows.flow, rows.rows
        copy.manifest["methods"]["flow"] = dict(rows.entry)


def index_saved(analysis: Analysis) -> None:
    """File the rollout and flow a session (or the command line) stored, under the parameters
    its manifest records. Arrays whose parameters cannot be read are left out with a warning
    the window shows; rollout is then computed again on request, flow rows for a click."""
    methods = analysis.manifest.get("methods") or {}
    n = len(analysis.tokens)
    warnings = analysis.extras.setdefault("gui_warnings", [])
    entry = methods.get("rollout")
    if "rollout" in analysis.arrays:
        try:
            params = rollout_params(analysis, entry["alpha"], entry["head_fusion"], entry.get("start_layer", 0))
            arrays = {k: analysis.arrays[k] for k in entry.get("arrays") or ["rollout"]}
            layers = analysis.attention("encoder" if analysis.is_encoder_decoder else "self").shape[0]
            if arrays["rollout"].shape != (layers - params[2], n, n):
                raise ValueError("its shape does not match its start layer")
            store(analysis)["rollout"][params] = rollout_result(arrays, entry)
        except (KeyError, TypeError, ValueError) as exc:
            warnings.append(f"The saved rollout was not used (its parameters are unreadable: {exc!r}).")
    entry = methods.get("flow")
    if "flow" in analysis.arrays and "flow_rows" in analysis.arrays:
        try:
            params = flow_params(entry["alpha"], entry["head_fusion"])
            rows = np.asarray(analysis.arrays["flow_rows"], np.int64)
            order = np.argsort(rows, kind="stable")
            flow = np.asarray(analysis.arrays["flow"], np.float32)
            store(analysis)["flow"][params] = FlowRows(flow[order], rows[order], entry)
        except (KeyError, TypeError, ValueError) as exc:
            warnings.append(f"The saved flow rows were not used (their parameters are unreadable: {exc!r}).")


def saved_params(analysis: Analysis) -> dict:
    """Selection fields that show what a session holds: its rollout's parameters, else its flow's."""
    methods = analysis.manifest.get("methods") or {}
    for name in ("rollout", "flow"):
        entry = methods.get(name)
        if isinstance(entry, dict) and "alpha" in entry and "head_fusion" in entry:
            fields = {"alpha": round(float(entry["alpha"]), 4), "head": normalise_fusion(entry["head_fusion"])}
            if name == "rollout" and not analysis.is_encoder_decoder:
                fields["start_layer"] = int(entry.get("start_layer", 0))
            return fields
    return {}


def exactness_label(entry: dict) -> str:
    """How exact the flow values are, with the certified bound, for every place flow shows."""
    bound = float(entry.get("max_abs_error_bound", 0.0))
    shown = entry.get("max_abs_error_bound_normalised")
    after = "" if shown is None else f", {float(shown):.1e} on the normalised values shown"
    if entry.get("exact", False):
        return f"exact (certified within 1e-6; bound {bound:.1e}{after})"
    return f"approximate (error bound {bound:.1e}{after})"


def short_exactness(entry: dict) -> str:
    """One word for titles; the bound goes in their tooltip (exactness_label)."""
    if entry.get("exact", False):
        return "exact"
    return f"approximate (error ≤ {float(entry.get('max_abs_error_bound', 0.0)):.0e})"


class RolloutMeasure(Measure):
    """Attention rollout (Abnar & Zuidema 2020), cumulative per layer, from core.propagate.propagation.
    The head selector chooses the head fusion; α and the start layer come from the selection.
    Encoder-decoder models: the encoder, the decoder (target part) and decoder → source."""

    key = "rollout"
    label = "Rollout"
    value_name = "rollout"

    def unavailable(self, analysis, set_name):
        return "no analysis" if analysis is None else None

    def params(self, analysis, sel) -> tuple:
        return rollout_params(analysis, sel.alpha, sel.head, sel.start_layer)

    def result(self, analysis, sel) -> RolloutResult | None:
        return store(analysis)["rollout"].get(self.params(analysis, sel))

    def layer_range(self, analysis, sel):
        layers = int(analysis.attention(sel.set_name).shape[0])
        start = self.params(analysis, sel)[2]
        return start, layers - start

    def ready(self, analysis, sel):
        return self.result(analysis, sel) is not None

    def view_key(self, sel):
        return (sel.set_name, sel.layer, sel.head, sel.alpha, sel.start_layer)

    def matrix(self, analysis, sel):
        first, _ = self.layer_range(analysis, sel)
        layer = self.result(analysis, sel).shown[sel.set_name][sel.layer - first]
        return resident_copy(layer) if is_mapped(layer) else layer  # rollout on disk: one layer read

    def row(self, analysis, sel, query):
        result = self.result(analysis, sel)
        if result is None:
            return None
        m = result.shown[sel.set_name]
        first, _ = self.layer_range(analysis, sel)
        return np.asarray(m[sel.layer - first, query], np.float32) if 0 <= query < m.shape[1] else None

    def part(self, analysis, sel) -> str:
        if analysis is None or not analysis.is_encoder_decoder:
            return ""
        return {"encoder": "encoder · ", "decoder": "decoder → target prefix · ",
                "cross": "decoder → source · "}.get(sel.set_name, "")

    def title(self, analysis, sel):
        decoder = analysis is not None and analysis.is_encoder_decoder and sel.set_name in ("decoder", "cross")
        start = 0 if analysis is None else self.params(analysis, sel)[2]
        text = (f"Rollout · {self.part(analysis, sel)}through {'decoder ' if decoder else ''}layer {sel.layer}"
                f" · {fusion_label(sel.head)} · {alpha_label(sel.alpha)}")
        if start:
            text += f" · from layer {start}"
        if decoder:
            text += " · rows normalised"
        return text

    def legend(self, analysis, sel, who):
        where = "decoder layer" if analysis.is_encoder_decoder and sel.set_name != "encoder" else "layer"
        return f"rollout of {who} through {where} {sel.layer}"


class FlowMeasure(Measure):
    """Attention flow (Abnar & Zuidema 2020), exact, from core.propagate.propagation: the rows computed so
    far for the selection's α and head fusion, labelled by their query tokens."""

    key = "flow"
    label = "Flow"
    uses_layers = False
    value_name = "flow"

    def unavailable(self, analysis, set_name):
        if analysis is None:
            return "no analysis"
        if set_name not in ("self", "encoder"):
            return "attention flow is defined on the encoder self-attention"
        return None

    def params(self, sel) -> tuple:
        return flow_params(sel.alpha, sel.head)

    def rows(self, analysis, sel) -> FlowRows | None:
        return store(analysis)["flow"].get(self.params(sel))

    def layer_range(self, analysis, sel):
        return 0, 1

    def ready(self, analysis, sel):
        rows = self.rows(analysis, sel)
        return rows is not None and len(rows.rows) > 0

    def view_key(self, sel):
        return (sel.set_name, sel.head, sel.alpha)

    def row_queries(self, analysis, sel):
        rows = self.rows(analysis, sel)
        return np.zeros(0, np.int64) if rows is None else rows.rows

    def matrix(self, analysis, sel):
        return self.rows(analysis, sel).flow

    def title(self, analysis, sel):
        text = "Attention flow"
        rows = None if analysis is None else self.rows(analysis, sel)
        if analysis is not None:
            n = len(analysis.tokens)
            done = 0 if rows is None else len(rows.rows)
            text += f" · {done} of {n} token rows" if done < n else " · all token rows"  # words view too: flow is per token
        text += f" · {fusion_label(sel.head)} · {alpha_label(sel.alpha)}"
        if rows is not None and len(rows.rows):
            text += f" · {short_exactness(rows.entry)}"
        return text

    def title_tip(self, analysis, sel):
        rows = None if analysis is None else self.rows(analysis, sel)
        if rows is None or not len(rows.rows):
            return ""
        return (f"Attention flow (Abnar & Zuidema 2020), each row normalised to sum to 1: "
                f"{exactness_label(rows.entry)}.")

    def legend(self, analysis, sel, who):
        rows = self.rows(analysis, sel)
        exact = f" · {short_exactness(rows.entry)}" if rows is not None else ""
        return f"flow of {who}{exact}"


MEASURES: dict[str, Measure] = {}


def register(measure: Measure) -> None:
    MEASURES[measure.key] = measure


for _m in (AttentionMeasure(), RolloutMeasure(), FlowMeasure()):
    register(_m)

from . import importance  # noqa: E402,F401  (registers the importance-vector measures)


class MatrixCache:
    """The last few matrices shown, so stepping back and forth costs nothing; at most `size` of
    them and, beyond the latest, at most `budget` bytes (a 4096 x 4096 float32 matrix is 64 MB)."""

    def __init__(self, size: int = 6, budget: int = 128 << 20) -> None:
        self.size, self.budget = size, budget
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, make):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > 1 and (len(self._items) > self.size or self._bytes() > self.budget):
            self._items.popitem(last=False)
        return value

    def _bytes(self) -> int:
        return sum(getattr(getattr(v, "values", v), "nbytes", 0) for v in self._items.values())

    def clear(self) -> None:
        self._items.clear()


# -- derived data, computed in workers --------------------------------------------------------


@dataclass
class Prepared:
    """An analysis plus what views need from it that is too slow for the GUI thread."""

    analysis: Analysis
    diagnostics: dict[str, HeadDiagnostics] = field(default_factory=dict)
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)  # set -> [L, H, t, tk] uint8
    source: str = ""  # "analysis" or the session file it came from
    seconds: float = 0.0


def pool_max(m: np.ndarray, size: int) -> np.ndarray:
    """Max-pool the last two axes down to at most size x size (keeps thin diagonals visible)."""
    for axis in (-2, -1):
        n = m.shape[axis]
        if n > size:
            step = -(-n // size)
            out = -(-n // step)
            widths = [(0, 0)] * m.ndim
            widths[axis] = (0, step * out - n)
            m = np.pad(m, widths)
            if axis == -2:
                m = m.reshape(*m.shape[:-2], out, step, m.shape[-1]).max(axis=-2)
            else:
                m = m.reshape(*m.shape[:-1], out, step).max(axis=-1)
    return m


def thumbnails(att: np.ndarray, size: int = THUMB) -> np.ndarray:
    """[L, H, t, tk] uint8, each head scaled to its own maximum."""
    out = []
    for layer in att:
        pooled = pool_max(np.asarray(layer, dtype=np.float32), size)
        peak = pooled.max(axis=(-2, -1), keepdims=True)
        peak[peak <= 0] = 1.0
        out.append(np.round(pooled / peak * 255).astype(np.uint8))
    return np.ascontiguousarray(np.stack(out))


def mapped_head_views(analysis: Analysis, att: np.ndarray, cancel=None) -> tuple[HeadDiagnostics, np.ndarray]:
    """Head diagnostics and thumbnails of attention mapped from a file: those the on-disk capture
    made (core.model.mapped.HeadViews, saved with the session), else computed one head at a time
    (bounded memory, slow: a session saved without them)."""
    from ..core.errors import Cancelled
    from ..core.propagate.heads import DIFFUSE_THRESHOLD, SINGLE_POSITION_THRESHOLD, is_causal

    layers, heads = att.shape[:2]
    a = analysis.arrays
    causal = is_causal(resident_copy(att[0, 0])[None, None])
    names = ("head_row_entropy", "head_top_position", "head_top_share")
    thumbs = a.get("head_thumbnails")
    if (all(getattr(a.get(k), "shape", None) == (layers, heads) for k in names) and thumbs is not None
            and thumbs.dtype == np.uint8 and thumbs.ndim == 4 and thumbs.shape[:2] == (layers, heads)
            and max(thumbs.shape[2:]) <= THUMB):
        entropy, share = np.asarray(a["head_row_entropy"], np.float64), np.asarray(a["head_top_share"], np.float64)
        diag = HeadDiagnostics(entropy=entropy, top_position=np.asarray(a["head_top_position"], np.int64),
                               top_share=share, diffuse=entropy >= DIFFUSE_THRESHOLD,
                               single_position=share >= SINGLE_POSITION_THRESHOLD, causal=causal)
        return diag, np.ascontiguousarray(thumbs)
    parts, tiles = [], []
    for layer in range(layers):
        for head in range(heads):
            if cancel is not None and cancel():
                raise Cancelled()
            block = resident_copy(att[layer, head])[None, None]
            parts.append(head_diagnostics(block, causal=causal))
            tiles.append(thumbnails(block)[0, 0])
    grid = lambda field: np.array([getattr(d, field)[0, 0] for d in parts]).reshape(layers, heads)  # noqa: E731
    diag = HeadDiagnostics(entropy=grid("entropy"), top_position=grid("top_position"), top_share=grid("top_share"),
                           diffuse=grid("diffuse"), single_position=grid("single_position"), causal=causal)
    return diag, np.stack(tiles).reshape(layers, heads, *tiles[0].shape)


def prepare(analysis: Analysis, cancel=None, rollout: tuple | None = None) -> Prepared:
    """Run in a worker: head diagnostics and thumbnails for every set, what each measure derives,
    the rollout and flow a session holds, and the rollout of `rollout` = (α, fusion, start
    layer) when the window shows rollout (so it appears with the analysis, not after it;
    texts up to ROLLOUT_WITH_ANALYSIS_MAX tokens)."""
    from ..core.errors import Cancelled, UserError

    prepared = Prepared(analysis=analysis)
    for name in analysis.attention_set_names():
        if cancel is not None and cancel():
            raise Cancelled()
        att = analysis.attention(name)
        if is_mapped(att):  # a long input on disk: never the whole stack in memory
            prepared.diagnostics[name], prepared.thumbnails[name] = mapped_head_views(analysis, att, cancel)
            continue
        prepared.diagnostics[name] = head_diagnostics(att)
        prepared.thumbnails[name] = thumbnails(att)
    for measure in MEASURES.values():
        try:
            measure.prepare(analysis)
        except Exception as exc:  # a broken optional measure must not lose the analysis
            analysis.extras.setdefault("gui_warnings", []).append(f"{measure.label}: {exc}")
    index_saved(analysis)
    if rollout is not None and len(analysis.tokens) <= ROLLOUT_WITH_ANALYSIS_MAX:
        params = rollout_params(analysis, *rollout)
        if params not in store(analysis)["rollout"]:
            try:
                file_rollout(analysis, params, compute_rollout(work_copy(analysis), params, cancel=cancel))
            except UserError:
                pass  # parameters that do not fit this model: the window asks again and says why
    return prepared
