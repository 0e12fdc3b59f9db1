"""What a report shows: the analysis, the view choices (measure, focus, layer, head), the
redaction, and the values of the chosen measure, computed here once for every section."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import UserError
from attn_desktop.core.propagate.heads import AGGREGATES, aggregate_heads

from .redact import DocumentView, Redaction

# one value per input token (contract of the explanation work, docs/explain.md)
VECTOR_NAMES = {
    "attention_importance": "Attention (row the output reads)",
    "rollout_importance": "Rollout (row the output reads)",
    "flow_importance": "Flow (row the output reads)",
    "saliency": "Saliency (gradient norm)",
    "grad_input": "Gradient × input",
    "integrated_gradients": "Integrated Gradients",
    "grad_rollout": "Gradient-weighted rollout",
    "loo": "Leave-one-out",
}
SHORT_NAMES = {
    "attention_importance": "Attn", "rollout_importance": "Rollout", "flow_importance": "Flow",
    "saliency": "Sal", "grad_input": "G×I", "integrated_gradients": "IG", "grad_rollout": "GradRoll",
    "loo": "LOO",
}


@dataclass(frozen=True)
class ReportOptions:
    measure: str = "attention"  # attention, rollout, flow, or a per-token vector (VECTOR_NAMES)
    set_name: str = "self"
    layer: int | None = None  # None: the last layer
    head: int | str = "mean"  # a head index or mean/max/min (the fusion for rollout and flow)
    focus: tuple[int, ...] | None = None  # query tokens whose row is shown; None: the default
    colormap: str = "viridis"
    scale: str = "linear"
    words: bool = False  # rows, columns and the text by words (core.views.words), not word pieces
    redaction: Redaction = field(default_factory=Redaction)
    session_path: str | None = None  # the session file the analysis is saved in (hashed)
    document_name: str | None = None
    title: str = "Attention analysis report"


@dataclass
class Highlight:
    """Values over the input tokens that the text section shades."""

    values: np.ndarray  # [n] float32
    label: str  # what the values are, in words
    signed: bool = False


class ReportContext:
    def __init__(self, analysis: Analysis, options: ReportOptions, created: _dt.datetime | None = None) -> None:
        self.analysis = analysis
        self.options = options
        self.view = DocumentView(analysis, options.redaction)
        self.manifest: dict[str, Any] = analysis.manifest
        self.created = created or _dt.datetime.now(_dt.timezone.utc)
        self.set_name = self._set_name()
        self.focus = self._focus()
        self.notes: list[str] = []
        self.summary: str | None = None  # the verdict's headline, when the analysis has one

    # -- choices, checked ---------------------------------------------------------------------
    def _set_name(self) -> str:
        names = self.analysis.attention_set_names()
        name = self.options.set_name
        if name == "self" and self.analysis.is_encoder_decoder:
            name = "encoder"
        if name not in names:
            raise UserError(f"this analysis has no '{name}' attention; it has {', '.join(names)}")
        return name

    def _axis(self, k: int) -> str:
        from attn_desktop.core.analysis import ATTENTION_SETS

        return ATTENTION_SETS[self.set_name][k]

    def query_labels(self) -> list[str]:
        return self.view.axis_labels(self._axis(1))

    def key_labels(self) -> list[str]:
        return self.view.axis_labels(self._axis(2))

    # -- words (core.views.words): units of the token axes ----------------------------------------------
    def units(self, axis: str):
        from attn_desktop.core.views import words

        tokens = self.analysis.tokens if axis == "tokens" else (self.analysis.decoder_tokens or [])
        if not self.options.words:
            return words.pieces(tokens)
        text = self.analysis.text if axis == "tokens" else (self.analysis.decoder_text or "")
        return words.group_words(text, tokens)

    def unit_labels(self, axis: str) -> list[str]:
        """A word's text, or when any of its pieces is redacted, the indices of its pieces."""
        units = self.units(axis)
        side = self.view.input if axis == "tokens" else self.view.decoder
        labels = self.view.axis_labels(axis)
        out = []
        for u in range(len(units)):
            toks = units.tokens(u)
            if len(toks) == 1:
                out.append(labels[toks[0]])
            elif any(t in side.hidden_tokens for t in toks):
                out.append(f"{side.prefix}{toks[0]}–{toks[-1]}")
            else:
                out.append(units.labels[u])
        return out

    def shown(self, matrix: np.ndarray, row_queries=None):
        """What a heatmap shows of a [rows, keys] matrix of the current set: (values, row labels,
        column labels, focus row or None); by words when the view is by words (rows: the mean of a
        word's pieces, columns: the sum, Clark et al. 2019, as the window shows them)."""
        from attn_desktop.core.views import words

        qa, ka = self._axis(1), self._axis(2)
        rows = np.arange(matrix.shape[0]) if row_queries is None else np.asarray(row_queries, np.int64)
        ru, cu = self.units(qa), self.units(ka)
        values, which = words.unit_matrix(np.asarray(matrix, np.float32), rows, ru, cu)
        qlabels = self.unit_labels(qa)
        focus_units = ru.units_of(self.focus)
        hit = [k for k, u in enumerate(which) if int(u) in focus_units]
        return values, [qlabels[int(u)] for u in which], self.unit_labels(ka), (hit[0] if len(focus_units) == 1 and hit else None)

    def _focus(self) -> tuple[int, ...]:
        queries = self.analysis.axis_tokens(self.set_name)[0]
        if self.options.focus:
            bad = [i for i in self.options.focus if not 0 <= int(i) < len(queries)]
            if bad:
                raise UserError(f"focus token {bad[0]} does not exist (the text has {len(queries)} tokens)")
            focus = sorted({int(i) for i in self.options.focus})
            return tuple(self.units(self._axis(1)).expand(focus)) if self.options.words else tuple(focus)
        if self.set_name in ("self", "encoder"):
            from attn_desktop.core.propagate.propagation import default_focus

            return (default_focus(self.analysis),)  # the row that summarises the input, as the CLI's flow uses
        return (len(queries) - 1,)

    def focus_label(self) -> str:
        axis = self._axis(1)
        units, labels = self.units(axis), self.unit_labels(axis)
        chosen = units.units_of(self.focus)
        shown = ", ".join(f"“{labels[u]}” (#{'–'.join(str(t) for t in (units.tokens(u)[0], units.tokens(u)[-1])) if len(units.tokens(u)) > 1 else units.tokens(u)[0]})"
                          for u in chosen[:6])
        if len(chosen) > 6:
            shown += f", … {len(chosen)} {'words' if self.options.words else 'tokens'}"
        return shown + (" (rows of its pieces averaged)" if len(self.focus) > 1 else "")

    def layers(self) -> int:
        return int(self.analysis.attention(self.set_name).shape[0])

    def layer(self) -> int:
        n = self.layers()
        layer = n - 1 if self.options.layer is None else int(self.options.layer)
        if not 0 <= layer < n:
            raise UserError(f"layer {layer} does not exist: the model has layers 0 to {n - 1}")
        return layer

    def head(self) -> int | str:
        head = self.options.head
        heads = int(self.analysis.attention(self.set_name).shape[1])
        if isinstance(head, str) and head.strip().lstrip("-").isdigit():
            head = int(head)
        if isinstance(head, int) and not 0 <= head < heads:
            raise UserError(f"head {head} does not exist: the model has heads 0 to {heads - 1}")
        if isinstance(head, str) and head not in AGGREGATES:
            raise UserError(f"unknown head choice {head!r}: a head index or one of {', '.join(AGGREGATES)}")
        return head

    def head_label(self) -> str:
        head = self.head()
        return f"head {head}" if isinstance(head, int) else f"{head} over heads"

    # -- values -------------------------------------------------------------------------------
    def attention_matrix(self, layer: int | None = None) -> np.ndarray:
        att = self.analysis.attention(self.set_name)[self.layer() if layer is None else layer]
        head = self.head()
        return np.asarray(att[head], np.float32) if isinstance(head, int) else aggregate_heads(att, head)

    def rollout_layers(self) -> np.ndarray | None:
        """[layers − start, queries, keys] of the set shown, or None when the analysis has no rollout."""
        arrays = self.analysis.arrays
        key = {"self": "rollout", "encoder": "rollout", "decoder": "decoder_rollout",
               "cross": "decoder_source_rollout"}[self.set_name]
        if key not in arrays:
            return None
        m = np.asarray(arrays[key], np.float32)
        if key != "rollout":  # each part shown as a distribution, as the window does
            sums = m.sum(axis=-1, keepdims=True)
            m = np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)
        return m

    def rollout_start(self) -> int:
        entry = (self.manifest.get("methods") or {}).get("rollout") or {}
        return int(entry.get("start_layer", 0) or 0)

    def flow(self) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = self.analysis.arrays
        if "flow" not in arrays or "flow_rows" not in arrays or self.set_name not in ("self", "encoder"):
            return None
        return np.asarray(arrays["flow"], np.float32), np.asarray(arrays["flow_rows"], np.int64)

    def vectors(self) -> dict[str, np.ndarray]:
        n = len(self.analysis.tokens)
        out = {}
        for name in VECTOR_NAMES:
            a = self.analysis.arrays.get(name)
            if a is not None and a.ndim == 1 and a.shape[0] == n:
                out[name] = np.asarray(a, np.float32)
        return out

    def highlight(self) -> Highlight | None:
        """The chosen measure over the input tokens for the focus, or None (and a note) when
        the analysis does not hold it."""
        m = self.options.measure
        if m in VECTOR_NAMES:
            vec = self.vectors().get(m)
            if vec is None:
                self.notes.append(f"The analysis holds no {VECTOR_NAMES[m]} values.")
                return None
            target = (self.explain().get("target") or {}).get("kind")
            what = f"{VECTOR_NAMES[m]}, for the target ({target})" if target else VECTOR_NAMES[m]
            return Highlight(vec, what, signed=bool((vec < 0).any()))
        if self.set_name not in ("self", "encoder"):
            keys = "decoder" if self.set_name == "decoder" else "input"
            label_set = f"{self.set_name} attention (keys: {keys} tokens)"
        else:
            label_set = "attention"
        if m == "attention":
            rows = self.attention_matrix()[list(self.focus)]
            return Highlight(rows.mean(axis=0), f"{label_set}, layer {self.layer()}, {self.head_label()}, "
                             f"from {self.focus_label()}")
        if m == "rollout":
            r = self.rollout_layers()
            if r is None:
                self.notes.append("The analysis holds no rollout; the text shows attention instead.")
                return self._fallback()
            start = self.rollout_start() if self.set_name in ("self", "encoder") else 0
            layer = max(self.layer(), start)
            rows = r[layer - start][list(self.focus)]
            return Highlight(rows.mean(axis=0), f"rollout through layer {layer}, from {self.focus_label()}")
        if m == "flow":
            f = self.flow()
            if f is None:
                self.notes.append("The analysis holds no attention flow; the text shows attention instead.")
                return self._fallback()
            flow, rows = f
            hit = [int(np.flatnonzero(rows == q)[0]) for q in self.focus if (rows == q).any()]
            if not hit:
                self.notes.append("Attention flow was not computed for the focus token; the text shows attention instead.")
                return self._fallback()
            return Highlight(flow[hit].mean(axis=0), f"attention flow from {self.focus_label()}")
        raise UserError(f"unknown measure {m!r}: choose attention, rollout, flow or one of {', '.join(VECTOR_NAMES)}")

    def _fallback(self) -> Highlight:
        rows = self.attention_matrix()[list(self.focus)]
        return Highlight(rows.mean(axis=0), f"attention, layer {self.layer()}, {self.head_label()}, from {self.focus_label()}")

    def highlights_input(self) -> bool:
        """Whether highlight values run over the input tokens (not decoder tokens)."""
        return self.options.measure in VECTOR_NAMES or self.set_name in ("self", "encoder", "cross")

    def explain(self) -> dict[str, Any]:
        e = self.manifest.get("explain")
        return e if isinstance(e, dict) else {}
