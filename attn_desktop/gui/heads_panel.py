"""The Heads view: which heads the output needs (ablation and gradient grids next to the entropy
grid), how alike the layers make the tokens (over-smoothing), and pruning.

Everything is computed in the model process: the grids by engine.analyze(methods=["heads"]) (the
core stage of docs/heads.md), the pruned copy and its comparison by engine.prune. Results are filed
in the analysis they were computed for (its arrays and manifest["heads"], so Save session keeps
them) and shown only while the editor holds that analysis' text. Clicking a cell selects that
layer and head everywhere, so the heatmap shows its attention.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from . import colormaps
from .document import input_text
from .measures import prepare
from .plain import plain_labels, plain_tip
from .run_identity import same_document
from .validate_panel import same_input
from .validate_target import TargetChooser
from .workers import LatestOnly

INTRO = ("Heads asks which attention heads the output needs. For the target chosen on the left it "
         "masks each head alone (and each layer's heads together) and measures how the target "
         "changes (ablation), takes |dTarget/dξ| for a mask variable ξ in one backward pass "
         "(gradient importance, Michel et al. 2019; a first-order approximation whose rank agreement "
         "with ablation is reported), shows each head's attention entropy, and how alike the token "
         "states become from layer to layer (over-smoothing). Prune removes heads for real and "
         "compares the smaller model with the original.")
SET_NAMES = {"self": "attention", "encoder": "encoder", "decoder": "decoder", "cross": "cross-attention"}
TABLE_COLUMNS = ("Text", "Tokens", "Original", "Pruned", "Change", "Prediction", "Pruned prediction",
                 "|pruned − masked|")


def heads_section(analysis) -> dict:
    return (analysis.manifest.get("heads") or {}) if analysis is not None else {}


def prefix(set_name: str) -> str:
    return "" if set_name == "self" else f"{set_name}_"


def heads_keys(analysis) -> list[str]:
    """Array names the heads stage filed in `analysis`."""
    sets = heads_section(analysis).get("sets") or {}
    names = []
    for s in list(sets) + ["encoder", "decoder"]:
        p = prefix(s)
        names += [p + k for k in ("head_importance", "head_importance_grad", "head_entropy",
                                  "layer_importance", "layer_smoothing")]
    return [n for n in names if n in analysis.arrays]


def file_heads(into, source) -> None:
    """Copy `source`'s heads arrays and manifest["heads"] into `into` (same input); rebinds the
    dict and manifest so a worker reading the old ones never sees them change."""
    keys = heads_keys(source)
    arrays = {k: v for k, v in into.arrays.items() if k not in keys}
    arrays.update({k: source.arrays[k] for k in keys})
    into.arrays = arrays
    into.manifest = {**into.manifest, "heads": source.manifest["heads"]}


class _ClickableImage(pg.ImageItem):
    clicked = Signal(int, int)  # row, column
    ctrl_clicked = Signal(int, int)
    hovered = Signal(int, int)

    def __init__(self) -> None:
        super().__init__(axisOrder="row-major")
        self.setAcceptHoverEvents(True)

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.LeftButton and self.image is not None and not ev.double():
            col, row = int(np.floor(ev.pos().x())), int(np.floor(ev.pos().y()))
            if 0 <= row < self.image.shape[0] and 0 <= col < self.image.shape[1]:
                ev.accept()
                picked = ev.modifiers() & Qt.ControlModifier
                (self.ctrl_clicked if picked else self.clicked).emit(row, col)

    def hoverEvent(self, ev) -> None:
        if ev.isExit() or self.image is None:
            return
        col, row = int(np.floor(ev.pos().x())), int(np.floor(ev.pos().y()))
        if 0 <= row < self.image.shape[0] and 0 <= col < self.image.shape[1]:
            self.hovered.emit(row, col)


class GridPlot(QWidget):
    """One [layers, heads] grid: a title, the image (layer 0 on top), marks, a value readout."""

    cell_clicked = Signal(int, int)  # layer, head
    cell_picked = Signal(int, int)  # Ctrl+click: add or remove the head from the prune list

    def __init__(self, title: str, signed: bool = False) -> None:
        super().__init__()
        self.signed = signed
        self.values: np.ndarray | None = None
        self.marked: list[tuple[int, int]] = []
        self.title = plain_labels(QLabel(title))
        self.title.setAlignment(Qt.AlignCenter)
        self.readout = plain_labels(QLabel(" "))
        self.readout.setAlignment(Qt.AlignCenter)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.invertY(True)
        self.plot.setLabel("left", "layer")
        self.plot.setLabel("bottom", "head")
        for name in ("left", "bottom"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        self._show_axes(False)  # an empty grid drew pyqtgraph's default "-400 … 400 (x0.001)" axes
        self.image = _ClickableImage()
        self.plot.addItem(self.image)
        self.marks = pg.ScatterPlotItem(symbol="x", size=6, pen=pg.mkPen(60, 60, 60, 200, width=1), brush=None)
        self.plot.addItem(self.marks)
        self.picks = pg.ScatterPlotItem(symbol="s", size=11, pen=pg.mkPen("#ff7f0e", width=2), brush=None)
        self.plot.addItem(self.picks)
        for overlay in (self.marks, self.picks):  # clicks go through to the cell beneath
            overlay.mouseClickEvent = lambda ev: ev.ignore()
        self.cursor = pg.QtWidgets.QGraphicsRectItem(0, 0, 1, 1)
        self.cursor.setPen(pg.mkPen("w", width=2))
        self.cursor.setZValue(10)
        self.cursor.hide()
        self.plot.addItem(self.cursor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.readout)
        self.image.clicked.connect(self.cell_clicked)
        self.image.ctrl_clicked.connect(self.cell_picked)
        self.image.hovered.connect(self._hover)
        self.setMinimumSize(120, 140)

    def set_grid(self, values: np.ndarray | None, colormap: str, note: str = "") -> None:
        self.values = None if values is None else np.asarray(values, dtype=np.float32)
        if self.values is None:
            self.image.clear()
            self.image.image = None
            self.set_marks([])
            self._show_axes(False)
            self.readout.setText(note or " ")
            return
        self._show_axes(True)
        v = np.nan_to_num(self.values)
        if self.signed:
            m = float(np.abs(v).max()) or 1.0
            levels, lut = (-m, m), colormaps.lut(colormaps.diverging(colormap))
        else:
            top = float(v.max()) if v.size else 1.0
            levels, lut = (min(0.0, float(v.min())), top if top > 0 else 1.0), colormaps.lut(colormap)
        self.image.setImage(np.ascontiguousarray(v), levels=levels, lut=lut, autoLevels=False)
        self.image.setRect(0, 0, v.shape[1], v.shape[0])
        for axis, count, most in (("left", v.shape[0], 12), ("bottom", v.shape[1], 6)):
            step = max(1, int(np.ceil(count / most)))  # cell centres, labelled by index
            self.plot.getAxis(axis).setTicks([[(i + 0.5, str(i)) for i in range(0, count, step)], []])
        self.plot.setRange(xRange=(0, v.shape[1]), yRange=(0, v.shape[0]), padding=0.02)
        self.readout.setText(note or f"{v.shape[0]} layers × {v.shape[1]} heads")

    def _show_axes(self, shown: bool) -> None:
        for name in ("left", "bottom"):
            self.plot.showAxis(name, shown)

    def set_marks(self, cells: list[tuple[int, int]]) -> None:
        self.marked = list(cells)
        self.marks.setData([h + 0.5 for _, h in cells], [layer + 0.5 for layer, _ in cells])

    def set_picks(self, cells: list[tuple[int, int]]) -> None:
        self.picks.setData([h + 0.5 for _, h in cells], [layer + 0.5 for layer, _ in cells])

    def set_cursor(self, layer: int | None, head) -> None:
        if self.values is None or layer is None or not isinstance(head, int):
            self.cursor.hide()
            return
        self.cursor.setRect(head, layer, 1, 1)
        self.cursor.show()

    def _hover(self, row: int, col: int) -> None:
        if self.values is not None:
            self.readout.setText(f"layer {row}, head {col}: {self.values[row, col]:.4g}")


class SmoothingPlot(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.title = plain_labels(QLabel("Over-smoothing: mean cosine similarity of token states"))
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "after layer (0: embeddings)")
        self.plot.setLabel("left", "mean pairwise cosine")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.note = plain_labels(QLabel(" "))
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)
        self.curves: dict[str, np.ndarray] = {}
        self.steepest: dict[str, int | None] = {}

    def set_curves(self, curves: dict[str, np.ndarray], steepest: dict[str, int | None]) -> None:
        self.plot.clear()
        self.curves, self.steepest = curves, steepest
        colours = ["#1f77b4", "#d62728"]
        notes = []
        if len(curves) > 1:
            self.plot.addLegend()
        for (stack, curve), colour in zip(curves.items(), colours, strict=False):
            x = np.arange(len(curve))
            name = "tokens" if stack == "self" else stack
            self.plot.plot(x, curve, pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                           symbolBrush=colour, name=name)
            at = steepest.get(stack)
            if at is not None:
                self.plot.addItem(pg.InfiniteLine(pos=at - 0.5, angle=90, pen=pg.mkPen(colour, style=Qt.DashLine)))
                self.plot.plot([at], [curve[at]], pen=None, symbol="star", symbolSize=16, symbolBrush=colour)
                notes.append(f"{name}: steepest rise into layer {at} ({curve[at - 1]:.3f} → {curve[at]:.3f})")
        self.note.setText("; ".join(notes) if notes else "No curve (fewer than 2 tokens)." if not curves else " ")


class HeadsPanel(QWidget):
    heads_shown = Signal(object)  # the Analysis whose heads results the panel now shows
    heads_failed = Signal(str)
    prune_done = Signal(object)  # the PruneResult shown
    prune_failed = Signal(str)
    saved = Signal(str)

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.runner = LatestOnly("Head importance", self)
        self.run_for = None  # the analysis on screen when the running heads analysis started
        self.pruner = LatestOnly("Pruning", self)
        self.saver = LatestOnly("Saving the pruned model", self)
        self.shown = None
        self.last = None
        self.result = None  # the PruneResult on screen
        self.result_model: str | None = None  # model folder the kept pruned copy came from
        self.texts_folder: str | None = None

        self.chooser = TargetChooser()
        self.threshold = QDoubleSpinBox()
        self.threshold.setDecimals(4)
        self.threshold.setRange(0.0, 1e6)
        self.threshold.setSingleStep(0.001)
        self.threshold.setValue(0.01)
        self.threshold.setToolTip("A head whose masking changes the target by less than this has no effect "
                                  "(marked × in the ablation grid; 'dead' in Prune)")
        self.run_button = QPushButton("Run heads analysis")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = _progress_bar()
        self.status = plain_labels(QLabel(""))
        self.status.setWordWrap(True)
        self.step = plain_labels(QLabel(""))  # the running step's name
        self.step.setWordWrap(True)

        form = QGridLayout()
        form.addWidget(QLabel("No effect below"), 0, 0)
        form.addWidget(self.threshold, 0, 1)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)

        # prune controls
        self.rule = QComboBox()
        self.rule.addItem("heads with no effect (dead)", "dead")
        self.rule.addItem("the K least important by ablation", "least")
        self.rule.addItem("the K least important by gradient", "least-gradient")
        self.rule.addItem("these heads (L.H, …)", "explicit")
        self.k_box = QSpinBox()
        self.k_box.setRange(1, 100000)
        self.k_box.setValue(12)
        self.k_box.setPrefix("K = ")
        self.heads_edit = QLineEdit()
        self.heads_edit.setPlaceholderText("e.g. 2.5, 3.0, or Ctrl+click cells of a grid")
        self.heads_edit.setToolTip("0-based layer.head, comma-separated (encoder:1.2, decoder:0.3, cross:1.0 "
                                   "for encoder-decoders); Ctrl+click a cell of a grid to add or remove it")
        self.on_text = QRadioButton("on this text")
        self.on_folder = QRadioButton("on the texts of a folder")
        self.on_text.setChecked(True)
        self.folder_button = QPushButton("Choose folder…")
        self.folder_label = plain_labels(QLabel(""))
        self.prune_button = QPushButton("Prune")
        self.prune_button.setToolTip("Remove the heads from a copy of the model (in the model process) "
                                     "and compare it with the original")
        self.prune_cancel = QPushButton("Cancel")
        self.prune_cancel.setEnabled(False)
        self.prune_progress = _progress_bar()
        self.save_button = QPushButton("Save pruned model…")
        self.save_button.setEnabled(False)

        prune_box = QVBoxLayout()
        prune_box.addWidget(plain_labels(QLabel("Prune: remove")))
        prune_box.addWidget(self.rule)
        rule_row = QHBoxLayout()
        rule_row.addWidget(self.k_box)
        rule_row.addWidget(self.heads_edit, 1)
        prune_box.addLayout(rule_row)
        prune_box.addWidget(self.on_text)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.on_folder)
        folder_row.addWidget(self.folder_button)
        prune_box.addLayout(folder_row)
        prune_box.addWidget(self.folder_label)
        prow = QHBoxLayout()
        prow.addWidget(self.prune_button)
        prow.addWidget(self.prune_cancel)
        prow.addWidget(self.prune_progress, 1)
        prune_box.addLayout(prow)
        prune_box.addWidget(self.save_button)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.chooser)
        lv.addLayout(form)
        lv.addLayout(run_row)
        lv.addWidget(self.step)
        lv.addWidget(self.status)
        lv.addSpacing(8)
        lv.addLayout(prune_box)
        lv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setMinimumWidth(340)
        scroll.setMaximumWidth(480)

        # results
        self.set_box = QComboBox()
        self.ablation = GridPlot("Ablation: Δ target", signed=True)
        self.ablation.setToolTip("Target with the head masked minus the target (blue: the head supports it); "
                                 "× no effect")
        self.gradient = GridPlot("Gradient |∂target/∂ξ|")
        self.entropy = GridPlot("Entropy")
        self.entropy.setToolTip("Mean normalised entropy of the head's attention rows (1: uniform)")
        self.smoothing = SmoothingPlot()
        self.summary = plain_labels(QLabel(""))
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        grids = QWidget()
        gl = QVBoxLayout(grids)
        gl.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(plain_labels(QLabel("Attention set")))
        top.addWidget(self.set_box)
        top.addStretch(1)
        gl.addLayout(top)
        row = QHBoxLayout()
        for g in (self.ablation, self.gradient, self.entropy):
            row.addWidget(g, 1)
        gl.addLayout(row, 1)
        gl.addWidget(self.summary)
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.prune_summary = plain_labels(QLabel("Prune a copy of the model to compare it here."))
        self.prune_summary.setWordWrap(True)
        self.prune_summary.setTextInteractionFlags(Qt.TextSelectableByMouse)
        prune_page = QWidget()
        pv = QVBoxLayout(prune_page)
        pv.setContentsMargins(0, 0, 0, 0)
        pv.addWidget(self.prune_summary)
        pv.addWidget(self.table, 1)
        self.intro = plain_labels(QLabel(INTRO))
        self.intro.setWordWrap(True)
        self.intro.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.tabs = QTabWidget()
        self.tabs.addTab(grids, "Head importance")
        self.tabs.addTab(self.smoothing, "Over-smoothing")
        self.tabs.addTab(prune_page, "Prune comparison")
        self.tabs.addTab(self.intro, "About")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(scroll)
        layout.addWidget(self.tabs, 1)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.chooser.problem.connect(self.status.setText)
        self.threshold.valueChanged.connect(lambda _v: self.refresh())
        self.set_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.rule.currentIndexChanged.connect(self._rule_changed)
        self.folder_button.clicked.connect(self.choose_folder)
        self.prune_button.clicked.connect(self.prune)
        self.prune_cancel.clicked.connect(self.pruner.cancel)
        self.save_button.clicked.connect(self.choose_save_folder)
        for g in (self.ablation, self.gradient, self.entropy):
            g.cell_clicked.connect(self.select_head)
            g.cell_picked.connect(self.toggle_pick)
        self.heads_edit.textChanged.connect(lambda _t: self._show_picks())
        for runner, bar, cancel in ((self.runner, self.progress, self.cancel_button),
                                    (self.pruner, self.prune_progress, self.prune_cancel),
                                    (self.saver, self.prune_progress, self.prune_cancel)):
            runner.started.connect(lambda _g, b=bar, c=cancel: (b.setValue(0), b.setFormat("starting…"), c.setEnabled(True)))
            # the step's name is too long for the bar's own text: it goes beneath (and in the tooltip)
            runner.progressed.connect(lambda _g, f, m, b=bar: (b.setValue(int(f * 1000)), b.setFormat("%p%"),
                                                              b.setToolTip(m), self.step.setText(m)))
            runner.idle.connect(lambda: self.step.setText(""))
            runner.idle.connect(lambda c=cancel: c.setEnabled(False))
        self.runner.succeeded.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(lambda g: self._on_cancelled(g, self.runner, self.progress, "Heads analysis"))
        self.pruner.succeeded.connect(self._on_pruned)
        self.pruner.failed.connect(self._on_prune_failed)
        self.pruner.cancelled.connect(lambda g: self._on_cancelled(g, self.pruner, self.prune_progress, "Pruning"))
        self.saver.succeeded.connect(self._on_saved)
        self.saver.failed.connect(self._on_prune_failed)
        window.model_loaded.connect(self._on_model)
        window.state.analysis_changed.connect(self._on_analysis)
        window.state.changed.connect(self._on_selection)
        window.document.edited.connect(self._on_edit)
        self._rule_changed()
        self.refresh()

    # -- heads analysis -----------------------------------------------------------------------
    def run(self) -> int | None:
        w = self.window
        text = w.document.text()
        if w.loaded is None:
            return self._refuse("Load a model first.")
        if not text.strip():
            return self._refuse("Type or open a text first.")
        spec, error = self.chooser.spec()
        if error:
            return self._refuse(error[0].upper() + error[1:] + ".")
        loaded, options, engine = w.loaded, w.analysis_options(), w.engine
        heads_options = {"threshold": float(self.threshold.value())}

        def work(progress, cancel):
            started = time.perf_counter()
            analysis = engine.analyze(loaded, text, progress=lambda f, m: progress(0.97 * f, m), cancel=cancel,
                                      methods=["heads"], target=spec, heads_options=heads_options, **options)
            progress(0.98, "preparing the views")
            prepared = prepare(analysis, cancel)
            prepared.source = "analysis"
            prepared.seconds = time.perf_counter() - started
            return prepared

        self.status.setText("")
        self.run_for = w.state.analysis  # its result is dropped if another analysis is shown by then
        return self.runner.request(work)

    def _refuse(self, message: str) -> None:
        self.status.setText(message)
        self.heads_failed.emit(message)
        return None

    def _on_done(self, _gen, prepared) -> None:
        w = self.window
        result = prepared.analysis
        self.progress.setValue(1000)
        self.progress.setFormat(f"done in {prepared.seconds:.1f} s")
        if input_text(result) != w.document.text() or not heads_section(result):
            return
        current, started_for = w.state.analysis, self.run_for
        self.run_for = None
        if started_for is not None and not (current is started_for or (same_document(current, started_for)
                                                                        and same_input(current, result))):
            self.status.setText("The heads analysis was for another analysis than the one shown; "
                                "its results were dropped.")
            return
        self.last = result
        if current is not None and same_input(current, result):
            file_heads(current, result)
            self.refresh()
        else:
            w.show_prepared(prepared)

    def _on_failed(self, _gen, message: str) -> None:
        self.progress.setFormat("failed")
        self.status.setText(message)
        self.heads_failed.emit(message)

    def _on_cancelled(self, gen, runner, bar, what: str) -> None:
        if gen == runner.current:
            bar.setValue(0)
            bar.setFormat("cancelled")
            self.status.setText(f"{what} cancelled; nothing was changed.")

    # -- what invalidates results ---------------------------------------------------------------
    def _on_edit(self) -> None:
        self.runner.invalidate()
        self.run_for = None
        self.refresh()

    def _on_model(self, loaded) -> None:
        self.runner.invalidate()
        self.pruner.invalidate()
        self.chooser.set_model(loaded.kind, loaded.info.config)
        self.result = None
        self.save_button.setEnabled(False)
        self.table.setRowCount(0)
        self.prune_summary.setText("Prune a copy of the model to compare it here.")
        self.refresh()

    def _on_analysis(self) -> None:
        an = self.window.state.analysis
        started_for = self.run_for
        if started_for is not None and not same_document(an, started_for):
            self.run_for = None
            if self.runner.busy:
                self.runner.invalidate()  # a session or another analysis is shown: its result would be stale
                self.status.setText("Heads analysis stopped: another analysis or session is shown now; "
                                    "run it again for this one.")
        if (an is not None and not heads_section(an) and self.last is not None and self.last is not an
                and same_input(self.last, an)):
            file_heads(an, self.last)
        self.refresh()

    def _on_selection(self, fields) -> None:
        if fields & {"colormap", "all"}:
            self.refresh()
            return
        if fields & {"layer", "head", "set_name"}:
            self._cursor()

    # -- showing ------------------------------------------------------------------------------
    def current(self):
        an = self.window.state.analysis
        if an is None or not heads_section(an) or input_text(an) != self.window.document.text():
            return None
        return an

    def current_set(self) -> str | None:
        return self.set_box.currentData()

    def refresh(self) -> None:
        an = self.current()
        self.shown = an
        self.run_button.setEnabled(self.window.loaded is not None)
        self.prune_button.setEnabled(self.window.loaded is not None)
        section = heads_section(an)
        sets = list((section.get("sets") or {}).keys())
        if [self.set_box.itemData(i) for i in range(self.set_box.count())] != sets:
            self.set_box.blockSignals(True)
            self.set_box.clear()
            for s in sets:
                self.set_box.addItem(SET_NAMES.get(s, s), s)
            self.set_box.blockSignals(False)
        self.set_box.setVisible(len(sets) > 1)
        colormap = self.window.state.sel.colormap
        s = self.current_set()
        if an is None or s is None:
            for g in (self.ablation, self.gradient, self.entropy):
                g.set_grid(None, colormap, "Run the heads analysis to fill this grid.")
            self.smoothing.set_curves({}, {})
            self.summary.setText("")
            return
        a, p, skipped = an.arrays, prefix(s), section.get("skipped") or {}
        self.ablation.set_grid(a.get(p + "head_importance"), colormap, skipped.get("head_importance", ""))
        self.gradient.set_grid(a.get(p + "head_importance_grad"), colormap, skipped.get("head_importance_grad", ""))
        self.entropy.set_grid(a.get(p + "head_entropy"), colormap, skipped.get(p + "head_entropy", ""))
        dead = self.no_effect(an, s)
        self.ablation.set_marks(dead)
        curves = {stack: a[prefix(stack) + "layer_smoothing"] for stack in ("self", "encoder", "decoder")
                  if prefix(stack) + "layer_smoothing" in a}
        smooth = section.get("smoothing") or {}
        self.smoothing.set_curves(curves, {k: (smooth.get(k) or {}).get("steepest_rise_at") for k in curves})
        self.summary.setText(self.summary_text(an, s, dead))
        self._cursor()
        self._show_picks()
        self.heads_shown.emit(an)

    def marks_shown(self) -> list[tuple[int, int]]:
        """The (layer, head) cells marked as having no effect in the ablation grid."""
        return self.ablation.marked

    def no_effect(self, an, set_name: str) -> list[tuple[int, int]]:
        grid = an.arrays.get(prefix(set_name) + "head_importance")
        if grid is None:
            return []
        t = float(self.threshold.value())
        return [(int(layer), int(h)) for layer, h in zip(*np.nonzero(np.abs(grid) < t), strict=True)]

    def summary_text(self, an, s: str, dead) -> str:
        section = heads_section(an)
        info = (section.get("sets") or {}).get(s) or {}
        L, H = info.get("layers", 0), info.get("heads", 0)
        target = section.get("target") or {}
        lines = [f"Target: {target.get('kind', '?')} = {_num(target.get('value'))}"
                 + (f" · predicted: {target['predicted']}" if target.get("predicted") is not None else "")]
        if "head_importance" not in (section.get("skipped") or {}):
            lines.append(f"No effect (|change| < {self.threshold.value():g}, marked ×): {len(dead)} of {L * H} heads")
            layer = an.arrays.get(prefix(s) + "layer_importance")
            if layer is not None:
                lines.append("Whole layer masked: " + ", ".join(f"{i}: {v:+.3g}" for i, v in enumerate(layer)))
        agree = info.get("gradient_vs_ablation") or {}
        if agree.get("spearman") is not None and agree.get("kendall_tau") is not None:
            lines.append(f"Gradient vs |ablation| over these heads: Spearman ρ = {agree['spearman']:.2f}, "
                         f"Kendall τ = {agree['kendall_tau']:.2f} (the gradient is a first-order estimate)")
        single, diffuse = info.get("single_position") or [], info.get("diffuse") or []
        lines.append(f"Attention alone: {len(single)} heads put most weight on one position, "
                     f"{len(diffuse)} are near-uniform")
        for name, why in (section.get("skipped") or {}).items():
            lines.append(f"Not computed: {name}: {why}")
        return "\n".join(lines)

    def _cursor(self) -> None:
        sel = self.window.state.sel
        here = self.current_set()
        same = here is not None and (sel.set_name == here or (here == "encoder" and sel.set_name == "self"))
        for g in (self.ablation, self.gradient, self.entropy):
            g.set_cursor(sel.layer if same else None, sel.head)

    def select_head(self, layer: int, head: int) -> None:
        """Show that head's attention in the heatmap (the shared selection)."""
        s = self.current_set()
        if s is None:
            return
        self.window.state.update(set_name=s, measure="attention", layer=layer, head=head)

    def picked(self) -> list[tuple[str, int, int]]:
        """The heads named in the prune list that parse, as (set or "", layer, head)."""
        from ..core.explain.prune_compare import parse_selection

        out = []
        for item in self.heads_edit.text().split(","):
            if item.strip():
                try:
                    out += list(parse_selection(item).heads)
                except Exception:  # a half-typed entry: not shown until it parses
                    continue
        return out

    def toggle_pick(self, layer: int, head: int) -> None:
        """Ctrl+click on a cell: add the head to the prune list, or take it out."""
        s = self.current_set()
        if s is None:
            return
        name = f"{layer}.{head}" if s == "self" else f"{s}:{layer}.{head}"
        items = [i.strip() for i in self.heads_edit.text().split(",") if i.strip()]
        items = [i for i in items if i != name] if name in items else items + [name]
        self.rule.setCurrentIndex(self.rule.findData("explicit"))
        self.heads_edit.setText(", ".join(items))

    def _show_picks(self) -> None:
        s = self.current_set()
        cells = [(layer, h) for st, layer, h in self.picked() if (st or "self") == s]
        for g in (self.ablation, self.gradient, self.entropy):
            g.set_picks(cells if g.values is not None else [])

    # -- pruning ----------------------------------------------------------------------------------
    def _rule_changed(self) -> None:
        rule = self.rule.currentData()
        self.k_box.setVisible(rule in ("least", "least-gradient"))
        self.heads_edit.setVisible(rule == "explicit")

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Texts to compare on (.txt files)")
        if folder:
            self.set_texts_folder(folder)

    def set_texts_folder(self, folder: str) -> None:
        self.texts_folder = folder
        self.folder_label.setText(folder)
        self.on_folder.setChecked(True)

    def selection(self) -> str:
        rule = self.rule.currentData()
        if rule == "dead":
            return f"dead:{self.threshold.value()!r}"
        if rule == "least":
            return f"least:{self.k_box.value()}"
        if rule == "least-gradient":
            return f"least:{self.k_box.value()}:gradient"
        return self.heads_edit.text()

    def prune(self) -> int | None:
        w = self.window
        if w.loaded is None:
            return self._prune_refuse("Load a model first.")
        spec, error = self.chooser.spec()
        if error:
            return self._prune_refuse(error[0].upper() + error[1:] + ".")
        from ..core.explain.prune_compare import parse_selection, read_texts

        try:
            selection = self.selection()
            parse_selection(selection)
        except Exception as exc:  # UserError: one line
            return self._prune_refuse(str(exc))
        folder = self.texts_folder if self.on_folder.isChecked() else None
        if self.on_folder.isChecked() and not folder:
            return self._prune_refuse("Choose the folder of texts first.")
        text = w.document.text()
        if folder is None and not text.strip():
            return self._prune_refuse("Type or open a text first, or compare on a folder of texts.")
        loaded, engine = w.loaded, w.engine
        self.save_button.setEnabled(False)

        def work(progress, cancel):
            texts = read_texts(folder) if folder else [("this text", text)]
            return engine.prune(loaded, progress=progress, cancel=cancel, texts=texts, heads=selection,
                                target=spec)

        self.status.setText("")
        return self.pruner.request(work)

    def _prune_refuse(self, message: str) -> None:
        self.status.setText(message)
        self.prune_failed.emit(message)
        return None

    def _on_pruned(self, _gen, result) -> None:
        self.prune_progress.setValue(1000)
        self.prune_progress.setFormat("done")
        self.result = result
        self.result_model = str(self.window.loaded.path) if self.window.loaded is not None else None
        self.show_result(result)
        self.save_button.setEnabled(True)
        self.tabs.setCurrentIndex(2)
        self.prune_done.emit(result)

    def show_result(self, result) -> None:
        rows = result.rows
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            cells = (r["name"], f"{r['tokens']}{' (cut)' if r['truncated'] else ''}", f"{r['value']:.6g}",
                     f"{r['pruned_value']:.6g}", f"{r['change']:+.3g}", _label(r["predicted"]),
                     _label(r["pruned_predicted"]) + (" (changed)" if r["prediction_changed"] else ""),
                     f"{r['pruned_vs_masked']:.1e}")
            for j, c in enumerate(cells):
                item = QTableWidgetItem(c)
                item.setToolTip(plain_tip(c))
                self.table.setItem(i, j, item)
        # the summary lines of the command line's table, same words
        self.prune_summary.setText("\n".join(result.table().split("\n\n", 1)[1].splitlines()))

    def _on_prune_failed(self, _gen, message: str) -> None:
        self.prune_progress.setFormat("failed")
        self.status.setText(message)
        self.prune_failed.emit(message)

    def choose_save_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the pruned model into a new, empty folder")
        if folder:
            self.save_to(folder)

    def save_to(self, folder: str) -> int | None:
        w = self.window
        if self.result is None or w.loaded is None or str(w.loaded.path) != self.result_model:
            return self._prune_refuse("Prune again: the pruned copy belongs to another model.")
        loaded, engine = w.loaded, w.engine

        def work(progress, cancel):
            progress(0.1, "saving the pruned model")
            return str(engine.prune(loaded, progress=progress, cancel=cancel, save=folder))

        return self.saver.request(work)

    def _on_saved(self, _gen, path: str) -> None:
        self.prune_progress.setValue(1000)
        self.prune_progress.setFormat("saved")
        self.status.setText(f"Saved the pruned model to {path}. It opens in attn-desktop and in transformers "
                            "(see docs/heads.md).")
        self.saved.emit(path)


def _progress_bar() -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setTextVisible(True)
    bar.setFormat("")
    return bar


def _label(value) -> str:
    return "-" if value is None else str(value)


def _num(value) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return "?"
