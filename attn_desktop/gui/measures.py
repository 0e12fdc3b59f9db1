"""What a view can show: measures over an Analysis, and what workers derive before showing it.

A measure turns (analysis, selection) into a matrix [rows, keys] whose rows are query tokens.
Adding one (rollout, flow, ...) is a class with `unavailable`, `num_layers`, `matrix`, `row` and
optionally `prepare` (run in a worker thread, never on the GUI thread), then `register(...)`.
Qt-free, so workers and tests can use it directly.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.heads import HeadDiagnostics, aggregate_heads, aggregate_row, head_diagnostics

if TYPE_CHECKING:
    from ..core.analysis import Analysis

THUMB = 48  # thumbnails are at most THUMB x THUMB cells


class Measure:
    key = ""
    label = ""
    uses_heads = True
    uses_layers = True
    value_name = "weight"

    def unavailable(self, analysis: Analysis | None, set_name: str) -> str | None:
        """None when this measure can be shown for the set, else why not (one line)."""
        return None

    def computable(self, analysis: Analysis | None, set_name: str) -> bool:
        """True when the window can compute what is missing on request (in a worker)."""
        return False

    def prepare(self, analysis: Analysis) -> None:
        """Compute missing arrays into analysis.arrays. Runs in a worker thread."""

    def num_layers(self, analysis: Analysis, set_name: str) -> int:
        return int(analysis.attention(set_name).shape[0])

    def row_queries(self, analysis: Analysis, sel) -> np.ndarray:
        """The query index of each matrix row."""
        return np.arange(len(analysis.axis_tokens(sel.set_name)[0]))

    def matrix(self, analysis: Analysis, sel) -> np.ndarray:
        raise NotImplementedError

    def row(self, analysis: Analysis, sel, query: int) -> np.ndarray | None:
        """Values over the keys for one query, or None when the measure has no such row."""
        rows = self.row_queries(analysis, sel)
        hit = np.flatnonzero(rows == query)
        return None if hit.size == 0 else self.matrix(analysis, sel)[hit[0]]

    def title(self, sel) -> str:
        return self.label


def head_label(head) -> str:
    return f"head {head}" if isinstance(head, int) else f"{head} of heads"


class AttentionMeasure(Measure):
    key = "attention"
    label = "Attention"

    def matrix(self, analysis, sel):
        """float16 for a single head (as stored: quantised straight from it), float32 for
        aggregates; the mean comes precomputed from the worker when available."""
        att = analysis.attention(sel.set_name)[sel.layer]
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
            if name not in means:
                means[name] = aggregate_heads(analysis.attention(name), "mean")

    def row(self, analysis, sel, query):
        att = analysis.attention(sel.set_name)[sel.layer]
        if not 0 <= query < att.shape[-2]:
            return None
        if isinstance(sel.head, int):
            return np.asarray(att[sel.head, query], dtype=np.float32)
        return aggregate_row(att, query, sel.head)

    def title(self, sel):
        return f"Attention · layer {sel.layer} · {head_label(sel.head)}"


class RolloutMeasure(Measure):
    """Attention rollout (Abnar & Zuidema 2020), cumulative per layer: arrays['rollout'] [L, n, n]
    made by core.rollout. Heads are fused inside rollout, so no head choice applies here."""

    key = "rollout"
    label = "Rollout"
    uses_heads = False
    value_name = "rollout"

    def unavailable(self, analysis, set_name):
        if analysis is None:
            return "no analysis"
        if set_name not in ("self", "encoder"):
            return "rollout is defined for self-attention of the input"
        if "rollout" in analysis.arrays or _has_module("attn_desktop.core.rollout"):
            return None
        return "rollout is not available in this build"

    def prepare(self, analysis):
        if "rollout" in analysis.arrays or not _has_module("attn_desktop.core.rollout"):
            return
        mod = importlib.import_module("attn_desktop.core.rollout")
        att = analysis.attention("self")
        analysis.arrays["rollout"] = np.asarray(mod.rollout(att, 0.5, "mean"))

    def num_layers(self, analysis, set_name):
        return int(analysis.arrays["rollout"].shape[0]) if "rollout" in analysis.arrays else 0

    def matrix(self, analysis, sel):
        return np.asarray(analysis.arrays["rollout"][sel.layer], dtype=np.float32)

    def row(self, analysis, sel, query):
        r = analysis.arrays["rollout"]
        return np.asarray(r[sel.layer, query], np.float32) if 0 <= query < r.shape[1] else None

    def title(self, sel):
        return f"Rollout · through layer {sel.layer} · heads fused by mean"


class FlowMeasure(Measure):
    """Attention flow (Abnar & Zuidema 2020): arrays['flow'] [r, n] for the query rows listed
    in arrays['flow_rows']."""

    key = "flow"
    label = "Flow"
    uses_heads = False
    uses_layers = False
    value_name = "flow"

    def unavailable(self, analysis, set_name):
        if analysis is None:
            return "no analysis"
        if set_name not in ("self", "encoder"):
            return "flow is defined for self-attention of the input"
        if "flow" in analysis.arrays:
            return None
        return "flow is computed on request, one focus token at a time (Ctrl+Shift+F)"

    def computable(self, analysis, set_name):
        return (analysis is not None and set_name in ("self", "encoder")
                and _has_module("attn_desktop.core.flow"))

    def num_layers(self, analysis, set_name):
        return 1

    def row_queries(self, analysis, sel):
        rows = analysis.arrays.get("flow_rows")
        n = analysis.arrays["flow"].shape[0]
        return np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)

    def matrix(self, analysis, sel):
        return np.asarray(analysis.arrays["flow"], dtype=np.float32)

    def title(self, sel):
        return "Attention flow · all layers · heads fused by mean"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


MEASURES: dict[str, Measure] = {}


def register(measure: Measure) -> None:
    MEASURES[measure.key] = measure


for _m in (AttentionMeasure(), RolloutMeasure(), FlowMeasure()):
    register(_m)


class MatrixCache:
    """The last few matrices shown, so stepping back and forth costs nothing."""

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, make):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

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


def prepare(analysis: Analysis, cancel=None) -> Prepared:
    """Run in a worker: head diagnostics and thumbnails for every set, missing measure arrays."""
    prepared = Prepared(analysis=analysis)
    for name in analysis.attention_set_names():
        if cancel is not None and cancel():
            from ..core.errors import Cancelled

            raise Cancelled()
        att = analysis.attention(name)
        prepared.diagnostics[name] = head_diagnostics(att)
        prepared.thumbnails[name] = thumbnails(att)
    for measure in MEASURES.values():
        try:
            measure.prepare(analysis)
        except Exception as exc:  # a broken optional measure must not lose the analysis
            analysis.extras.setdefault("gui_warnings", []).append(f"{measure.label}: {exc}")
    return prepared
