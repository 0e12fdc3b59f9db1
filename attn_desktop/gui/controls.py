"""The selection toolbar: attention set, measure, layer (box and slider), head or head fusion,
rollout/flow parameters, colormap, scale. Bound both ways to the shared ViewState."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QSlider,
    QSpinBox,
    QToolBar,
    QToolButton,
    QWidget,
)

from ..core.propagate.heads import AGGREGATES
from . import colormaps
from . import settings as app_settings
from .measures import MEASURES
from .state import ALPHA_MIN, ViewState

SET_LABELS = {
    "self": "self-attention",
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
}
# what the set box offers while rollout is shown (encoder-decoder models)
ROLLOUT_SET_LABELS = {
    "self": "self-attention",
    "encoder": "encoder",
    "decoder": "decoder → target prefix",
    "cross": "decoder → source",
}
HEAD_TIPS = {
    "attention": "One head, or an aggregate over heads (Alt+Left / Alt+Right; Alt+A cycles mean, max, min)",
    "rollout": "How heads are fused before rollout: mean, max or min over heads, or one head alone",
    "flow": "How heads are fused before attention flow: mean, max or min over heads, or one head alone",
}

UNITS_TIP = ("Words: a word's row is the mean of its pieces' rows and its column the sum of its "
             "pieces' columns (Clark et al. 2019), so rows still sum to 1. Pieces: the model's own "
             "tokens. Ctrl+click words, or drag over the text, to see a selection together.")
FLOW_ALL_TIP = ("Compute the attention flow of every token in the background, Ctrl+Alt+F "
                "(progress and Cancel in the status bar; finished rows are kept)")


class SelectionBar(QToolBar):
    flow_all_requested = Signal()

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
        self.layer_slider = QSlider(Qt.Horizontal)
        self.layer_slider.setObjectName("LayerSlider")
        self.layer_slider.setToolTip("Layer (Alt+Up / Alt+Down); for rollout, the cumulative result "
                                     "through this layer: drag to watch the mixing grow")
        self.layer_slider.setTickPosition(QSlider.TicksBelow)
        self.layer_slider.setTickInterval(1)
        self.layer_slider.setPageStep(1)
        self.layer_slider.setFixedWidth(120)
        self.layer_slider.setFocusPolicy(Qt.NoFocus)  # arrow keys stay with the editor
        self.head_box = QComboBox()
        self.head_box.setToolTip(HEAD_TIPS["attention"])
        self.alpha_box = QDoubleSpinBox()
        self.alpha_box.setRange(ALPHA_MIN, 1.0)
        self.alpha_box.setDecimals(2)
        self.alpha_box.setSingleStep(0.05)
        self.alpha_box.setPrefix("α = ")
        self.alpha_box.setKeyboardTracking(False)  # a typed value counts on Enter, not per key
        self.alpha_box.setToolTip("Residual weight of attention in rollout and flow: each layer is "
                                  "rownorm(α·A + (1−α)·I); 0.5 is the paper's A + I")
        self.start_box = QSpinBox()
        self.start_box.setPrefix("from layer ")
        self.start_box.setToolTip("Rollout starts at this layer (earlier layers are left out)")
        self.flow_all_button = QToolButton()
        self.flow_all_button.setText("Flow for all tokens")
        self.flow_all_button.setToolTip(FLOW_ALL_TIP)
        self.flow_all_button.clicked.connect(self.flow_all_requested)
        self.cmap_box = QComboBox()
        self.cmap_box.addItems(list(colormaps.COLORMAPS))
        self.cmap_box.setToolTip("Colormap")
        self.scale_box = QComboBox()
        self.scale_box.addItems(list(colormaps.SCALES))
        self.scale_box.setToolTip(colormaps.SCALE_TIPS)
        self.words_button = QToolButton()
        self.words_button.setText("Words")
        self.pieces_button = QToolButton()
        self.pieces_button.setText("Pieces")
        self.units_group = QButtonGroup(self)
        for button in (self.words_button, self.pieces_button):
            button.setCheckable(True)
            button.setToolTip(UNITS_TIP)
            self.units_group.addButton(button)
        self.units_group.setExclusive(True)

        self.set_label = QLabel(" Attention ")
        self.set_label_action = self.addWidget(self.set_label)
        self.set_action = self.addWidget(self.set_box)
        self.addWidget(QLabel(" Show "))
        self.addWidget(self.measure_box)
        self.addWidget(self.words_button)
        self.addWidget(self.pieces_button)
        self.addSeparator()
        self.layer_action = self.addWidget(self.layer_box)
        self.slider_action = self.addWidget(self.layer_slider)
        self.addWidget(self.head_box)
        self.alpha_action = self.addWidget(self.alpha_box)
        self.start_action = self.addWidget(self.start_box)
        self.flow_all_action = self.addWidget(self.flow_all_button)
        self.addSeparator()
        self.addWidget(QLabel(" Colours "))
        self.addWidget(self.cmap_box)
        self.addWidget(self.scale_box)

        self.set_box.currentIndexChanged.connect(
            lambda _i: self._push(set_name=self.set_box.currentData()))
        self.measure_box.currentIndexChanged.connect(
            lambda _i: self._push(measure=self.measure_box.currentData()))
        self.layer_box.valueChanged.connect(lambda v: self._push(layer=v))
        self.layer_slider.valueChanged.connect(lambda v: self._push(layer=v))
        self.head_box.currentIndexChanged.connect(
            lambda _i: self._push(head=self.head_box.currentData()))
        self.alpha_box.valueChanged.connect(lambda v: self._push(alpha=round(float(v), 4)))
        self.start_box.valueChanged.connect(lambda v: self._push(start_layer=v))
        self.cmap_box.currentTextChanged.connect(lambda t: self._push(colormap=t))
        self.scale_box.currentTextChanged.connect(lambda t: self._push(scale=t))
        self.words_button.toggled.connect(lambda on: on and self._set_words(True))
        self.pieces_button.toggled.connect(lambda on: on and self._set_words(False))
        saved = app_settings.settings().value("words", "true")
        state.update(words=saved not in (False, "false"))
        state.changed.connect(self.sync)
        state.analysis_changed.connect(self._rebuild)
        self._rebuild()

    def _set_words(self, on: bool) -> None:
        app_settings.settings().setValue("words", on)
        self._push(words=on)

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
        widgets = (self.set_box, self.measure_box, self.layer_box, self.layer_slider, self.head_box,
                   self.alpha_box, self.start_box, self.cmap_box, self.scale_box, self.words_button,
                   self.pieces_button)
        blockers = [QSignalBlocker(w) for w in widgets]
        if self.head_box.count() != len(AGGREGATES) + self.state.num_heads():
            self._fill_heads()
        propagation = s.measure in ("rollout", "flow")
        labels = ROLLOUT_SET_LABELS if s.measure == "rollout" else SET_LABELS
        for row in range(self.set_box.count()):
            name = self.set_box.itemData(row)
            self.set_box.setItemText(row, labels.get(name, name))
        self.set_label.setText(" Part " if s.measure == "rollout" else " Attention ")
        i = self.set_box.findData(s.set_name)
        if i >= 0:
            self.set_box.setCurrentIndex(i)
        model = self.measure_box.model()
        for row in range(self.measure_box.count()):
            key = self.measure_box.itemData(row)
            reason = MEASURES[key].unavailable(an, s.set_name) if an is not None else "no analysis"
            item = model.item(row)
            item.setEnabled(reason is None)
            item.setToolTip(reason or MEASURES[key].label)
        self.measure_box.setCurrentIndex(max(self.measure_box.findData(s.measure), 0))
        measure = MEASURES[s.measure]
        first, layers = self.state.layer_range()
        last = first + max(layers - 1, 0)
        for w in (self.layer_box, self.layer_slider):
            w.setRange(first, last)
            w.setValue(s.layer)
            w.setEnabled(an is not None and measure.uses_layers and layers > 1)
        self.layer_box.setPrefix("through layer " if s.measure == "rollout" else "layer ")
        self.layer_box.setSuffix(f"  (of {first}–{last})" if layers else "")
        self.layer_action.setVisible(measure.uses_layers)
        self.slider_action.setVisible(measure.uses_layers)
        i = self.head_box.findData(s.head)
        if i >= 0:
            self.head_box.setCurrentIndex(i)
        self.head_box.setEnabled(an is not None and measure.uses_heads)
        self.head_box.setToolTip(HEAD_TIPS.get(s.measure, HEAD_TIPS["attention"]))
        self.alpha_box.setValue(s.alpha)
        self.alpha_action.setVisible(propagation)
        total = int(an.attention("self").shape[0]) if an is not None else 1
        self.start_box.setRange(0, max(total - 1, 0))
        self.start_box.setValue(s.start_layer)
        self.start_action.setVisible(s.measure == "rollout" and an is not None and not an.is_encoder_decoder)
        self.flow_all_action.setVisible(s.measure == "flow")
        if s.measure == "flow" and an is not None:
            left = len(an.tokens) - len(MEASURES["flow"].row_queries(an, s))
            self.flow_all_button.setEnabled(left > 0)
            self.flow_all_button.setToolTip(FLOW_ALL_TIP if left else "Every token's flow row is computed "
                                            "for this head fusion and α")
        self.cmap_box.setCurrentText(s.colormap)
        self.scale_box.setCurrentText(s.scale)
        signed = measure.style(s)[1] == colormaps.SIGNED  # signed vectors have their own scale
        self.scale_box.setEnabled(not signed)
        self.scale_box.setToolTip("Signed values: a diverging map from −max |value| to +max |value|, zero in the "
                                  "middle" if signed else colormaps.SCALE_TIPS)
        (self.words_button if s.words else self.pieces_button).setChecked(True)
        del blockers
