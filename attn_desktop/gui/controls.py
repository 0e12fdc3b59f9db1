"""The selection toolbar: attention set, measure, layer, head or aggregate, colormap, scale.
Bound both ways to the shared ViewState."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox, QToolBar, QWidget

from ..core.heads import AGGREGATES
from . import colormaps
from .measures import MEASURES
from .state import ViewState

SET_LABELS = {
    "self": "self-attention",
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
}


class SelectionBar(QToolBar):
    measure_requested = Signal(str)  # a measure that must be computed before it can be shown

    def __init__(self, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__("Selection", parent)
        self.setObjectName("SelectionBar")
        self.state = state

        self.set_box = QComboBox()
        self.set_box.setToolTip("Which attention of an encoder-decoder model to show; in cross-attention "
                                "the rows (queries) are decoder tokens and the columns (keys) encoder tokens")
        self.measure_box = QComboBox()
        self.measure_box.setToolTip("What the views show")
        for m in MEASURES.values():
            self.measure_box.addItem(m.label, m.key)
        self.layer_box = QSpinBox()
        self.layer_box.setToolTip("Layer (Alt+Up / Alt+Down)")
        self.layer_box.setPrefix("layer ")
        self.head_box = QComboBox()
        self.head_box.setToolTip("One head, or an aggregate over heads (Alt+Left / Alt+Right; Alt+A cycles mean, max, min)")
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(list(colormaps.COLORMAPS))
        self.cmap_box.setToolTip("Colormap")
        self.scale_box = QComboBox()
        self.scale_box.addItems(list(colormaps.SCALES))
        self.scale_box.setToolTip("Colour scale")

        self.set_label = QLabel(" Attention ")
        self.set_label_action = self.addWidget(self.set_label)
        self.set_action = self.addWidget(self.set_box)
        self.addWidget(QLabel(" Show "))
        self.addWidget(self.measure_box)
        self.addSeparator()
        self.addWidget(self.layer_box)
        self.addWidget(self.head_box)
        self.addSeparator()
        self.addWidget(QLabel(" Colours "))
        self.addWidget(self.cmap_box)
        self.addWidget(self.scale_box)

        self.set_box.currentIndexChanged.connect(
            lambda _i: self._push(set_name=self.set_box.currentData()))
        self.measure_box.currentIndexChanged.connect(lambda _i: self._on_measure())
        self.layer_box.valueChanged.connect(lambda v: self._push(layer=v))
        self.head_box.currentIndexChanged.connect(
            lambda _i: self._push(head=self.head_box.currentData()))
        self.cmap_box.currentTextChanged.connect(lambda t: self._push(colormap=t))
        self.scale_box.currentTextChanged.connect(lambda t: self._push(scale=t))
        state.changed.connect(self.sync)
        state.analysis_changed.connect(self._rebuild)
        self._rebuild()

    def _on_measure(self) -> None:
        key = self.measure_box.currentData()
        an = self.state.analysis
        if an is not None and MEASURES[key].unavailable(an, self.state.sel.set_name):
            self.sync()  # stays on the current measure until the missing one is computed
            self.measure_requested.emit(key)
            return
        self._push(measure=key)

    def _push(self, **fields) -> None:
        if any(v is None for v in fields.values()):
            return
        self.state.update(**fields)

    def _rebuild(self) -> None:
        an = self.state.analysis
        with QSignalBlocker(self.set_box):
            self.set_box.clear()
            names = an.attention_set_names() if an is not None else []
            for name in names:
                self.set_box.addItem(SET_LABELS.get(name, name), name)
        multi = len(names) > 1
        self.set_action.setVisible(multi)
        self.set_label_action.setVisible(multi)
        self._fill_heads()
        self.sync(frozenset())

    def _fill_heads(self) -> None:
        with QSignalBlocker(self.head_box):
            self.head_box.clear()
            for agg in AGGREGATES:
                self.head_box.addItem(f"{agg} of heads", agg)
            for h in range(self.state.num_heads()):
                self.head_box.addItem(f"head {h}", h)

    def sync(self, _fields=frozenset()) -> None:
        s = self.state.sel
        an = self.state.analysis
        blockers = [QSignalBlocker(w) for w in (self.set_box, self.measure_box, self.layer_box,
                                                 self.head_box, self.cmap_box, self.scale_box)]
        if self.head_box.count() != len(AGGREGATES) + self.state.num_heads():
            self._fill_heads()
        i = self.set_box.findData(s.set_name)
        if i >= 0:
            self.set_box.setCurrentIndex(i)
        model = self.measure_box.model()
        for row in range(self.measure_box.count()):
            key = self.measure_box.itemData(row)
            reason = MEASURES[key].unavailable(an, s.set_name) if an is not None else "no analysis"
            item = model.item(row)
            item.setEnabled(reason is None or MEASURES[key].computable(an, s.set_name))
            item.setToolTip(reason or MEASURES[key].label)
        self.measure_box.setCurrentIndex(max(self.measure_box.findData(s.measure), 0))
        measure = MEASURES[s.measure]
        layers = self.state.num_layers()
        self.layer_box.setRange(0, max(layers - 1, 0))
        self.layer_box.setSuffix(f"  (of 0–{layers - 1})" if layers else "")
        self.layer_box.setValue(s.layer)
        self.layer_box.setEnabled(an is not None and measure.uses_layers)
        i = self.head_box.findData(s.head)
        if i >= 0:
            self.head_box.setCurrentIndex(i)
        self.head_box.setEnabled(an is not None and measure.uses_heads)
        self.cmap_box.setCurrentText(s.colormap)
        self.scale_box.setCurrentText(s.scale)
        del blockers
