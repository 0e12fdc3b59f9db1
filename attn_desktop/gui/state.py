"""The one shared selection: every view reads it and writes to it, and repaints on `changed`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..core.propagate.heads import AGGREGATES
from ..core.propagate.propagation import default_focus as propagation_default_focus
from .colormaps import DEFAULT_COLORMAP
from .measures import MEASURES, Prepared

Head = int | str  # a head index, or one of AGGREGATES


@dataclass(frozen=True)
class Selection:
    set_name: str = "self"
    measure: str = "attention"
    layer: int = 0
    head: Head = "mean"
    focus: int = 0  # query index on the current set's query axis
    colormap: str = DEFAULT_COLORMAP
    scale: str = "linear"
    alpha: float = 0.5  # rollout and flow: residual weight of the attention, Â = rownorm(αA + (1−α)I)
    start_layer: int = 0  # rollout of a self-attention model: first layer multiplied in
    words: bool = True  # rows and columns are words (core.views.words), not word pieces
    picked: tuple[int, ...] = ()  # query tokens selected together (their words in word mode); () = the focus


PROPAGATION_FIELDS = frozenset(("alpha", "start_layer"))
# the colour scale a measure starts with; the user's choice is remembered per measure
DEFAULT_SCALES = {"rollout": "× uniform", "flow": "× uniform"}
ALPHA_MIN = 0.01


class ViewState(QObject):
    """Holds the current analysis (with what the workers derived from it) and the selection."""

    changed = Signal(frozenset)  # names of Selection fields that changed
    analysis_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.sel = Selection()
        self.prepared: Prepared | None = None
        self._last_head = 0
        self._layer_wanted = 0  # the layer last chosen: kept across measures with fewer layers (flow)
        self.scales: dict[str, str] = {}  # measure -> the scale last used with it

    @property
    def analysis(self):
        return self.prepared.analysis if self.prepared else None

    # -- analysis -------------------------------------------------------------------------
    def set_prepared(self, prepared: Prepared | None, **fields: Any) -> None:
        """Show `prepared`; `fields` change the selection at the same time (one repaint). The focus
        goes to the default token unless `fields` name one."""
        self.prepared = prepared
        if prepared is not None:
            sets = prepared.analysis.attention_set_names()
            set_name = self.sel.set_name if self.sel.set_name in sets else sets[0]
            if "focus" in fields and "picked" not in fields:
                fields["picked"] = ()  # a selection of the previous analysis's tokens means nothing here
            self.sel = replace(self.sel, **{"set_name": set_name, **fields})
            self.sel = self._valid(self.sel, keep_focus="focus" in fields)
            if "layer" in fields:
                self._layer_wanted = self.sel.layer
        self.analysis_changed.emit()
        self.changed.emit(frozenset(Selection.__dataclass_fields__))

    # -- selection ------------------------------------------------------------------------
    def update(self, **fields: Any) -> None:
        if "scale" in fields:
            self.scales[fields.get("measure", self.sel.measure)] = fields["scale"]
        elif fields.get("measure", self.sel.measure) != self.sel.measure:
            measure = fields["measure"]
            fields["scale"] = self.scales.get(measure, DEFAULT_SCALES.get(measure, self.scales.get(
                "attention", "linear")))
        if "layer" in fields:
            self._layer_wanted = int(fields["layer"])
        elif fields.get("measure", self.sel.measure) != self.sel.measure:
            fields["layer"] = self._layer_wanted  # switching measure keeps the layer
        new = replace(self.sel, **fields)
        if self.prepared is not None:
            new = self._valid(new, keep_focus=new.set_name == self.sel.set_name
                              or self._same_queries(self.sel.set_name, new.set_name))
        diff = frozenset(k for k in Selection.__dataclass_fields__
                         if getattr(new, k) != getattr(self.sel, k))
        self.sel = new
        if diff:
            self.changed.emit(diff)

    def _same_queries(self, a: str, b: str) -> bool:
        an = self.analysis
        return an.axis_tokens(a)[0] is an.axis_tokens(b)[0]

    def layer_range(self) -> tuple[int, int]:
        """(first layer, number of layers) the current measure offers."""
        if self.prepared is None:
            return 0, 0
        return MEASURES[self.sel.measure].layer_range(self.analysis, self.sel)

    def num_layers(self) -> int:
        return self.layer_range()[1]

    def num_heads(self) -> int:
        if self.prepared is None:
            return 0
        return int(self.analysis.attention(self.sel.set_name).shape[1])

    def query_tokens(self):
        return self.analysis.axis_tokens(self.sel.set_name)[0] if self.prepared else []

    def key_tokens(self):
        return self.analysis.axis_tokens(self.sel.set_name)[1] if self.prepared else []

    def _valid(self, s: Selection, keep_focus: bool) -> Selection:
        an = self.analysis
        measure = MEASURES.get(s.measure)
        if measure is None or measure.unavailable(an, s.set_name):
            s = replace(s, measure="attention")
            measure = MEASURES["attention"]
        total = int(an.attention("self").shape[0])  # the encoder's for encoder-decoder models
        start = 0 if an.is_encoder_decoder else min(max(int(s.start_layer), 0), total - 1)
        alpha = min(max(round(float(s.alpha), 4), ALPHA_MIN), 1.0)
        s = replace(s, start_layer=start, alpha=alpha)
        first, layers = measure.layer_range(an, s)
        heads = int(an.attention(s.set_name).shape[1])
        layer = min(max(s.layer, first), first + max(layers - 1, 0))
        head = s.head
        if isinstance(head, int) and not 0 <= head < heads:
            head = min(max(head, 0), heads - 1)
        queries = an.axis_tokens(s.set_name)[0]
        focus = s.focus
        picked = s.picked
        if not keep_focus or not 0 <= focus < len(queries):
            focus = default_focus(an, s.set_name)
            picked = ()
        picked = tuple(sorted({int(t) for t in picked if 0 <= t < len(queries)}))
        return replace(s, layer=layer, head=head, focus=focus, picked=picked)

    # -- keyboard steps -------------------------------------------------------------------
    def step_layer(self, delta: int) -> None:
        first, n = self.layer_range()
        if n:
            self.update(layer=first + (self.sel.layer - first + delta) % n)

    def step_head(self, delta: int) -> None:
        n = self.num_heads()
        if not n:
            return
        head = self.sel.head
        start = head if isinstance(head, int) else (-1 if delta > 0 else 0)
        self.update(head=(start + delta) % n)

    def cycle_aggregate(self) -> None:
        """head -> mean -> max -> min -> back to the last single head."""
        head = self.sel.head
        if isinstance(head, int):
            self._last_head = head
            self.update(head=AGGREGATES[0])
            return
        i = AGGREGATES.index(head)
        if i + 1 < len(AGGREGATES):
            self.update(head=AGGREGATES[i + 1])
        else:
            self.update(head=self._last_head)


def default_focus(an, set_name: str = "self") -> int:
    """The token whose row summarises the input, by the rule the command line's flow focus follows
    (core.propagate.propagation.default_focus): the first ([CLS]-like) token of an encoder, the last
    of a causal LM; on the decoder side of an encoder-decoder, the last output token."""
    queries = an.axis_tokens(set_name)[0]
    if queries is an.tokens:
        return min(propagation_default_focus(an), max(len(queries) - 1, 0))
    return max(len(queries) - 1, 0)


def focus_rule(an, set_name: str = "self") -> str:
    """The default focus rule in words, for the window to say which token it chose and why."""
    if an.axis_tokens(set_name)[0] is not an.tokens:
        return "the last output token"
    kind = an.manifest.get("model", {}).get("kind")
    if kind == "causal-lm":
        return "the last token, the only one of a causal LM that sees the whole text"
    return "the first token, which summarises the input for an encoder"
