"""The Validate panel's plots and tables, each drawn from manifest["explain"] (docs/explain.md):
the agreement matrix with its values in the cells, the faithfulness curves with the random
band, and the changed-attention results."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import colormaps
from .importance import method_label

# Okabe-Ito: distinguishable with the common forms of colour blindness; the yellow is
# replaced by a darker gold so that it reads on a light page.
LINE_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#B8A000", "#7f7f7f")
LINE_STYLES = (Qt.SolidLine, Qt.SolidLine, Qt.SolidLine, Qt.SolidLine, Qt.DashLine, Qt.DashLine,
               Qt.DashLine, Qt.DashLine)
P_LEVEL = 0.05


def plain_label(text: str = "", wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.PlainText)
    label.setWordWrap(wrap)
    return label


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}g}"


def compact_rows(table: QTableWidget) -> None:
    """Rows one line of text high, so a table of eight methods fits the dock."""
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 6)


def _plot_widget(**kwargs) -> pg.PlotWidget:
    w = pg.PlotWidget(**kwargs)
    w.setMenuEnabled(False)
    w.hideButtons()
    return w


def _style_plot(w: pg.PlotWidget, pal: QPalette) -> None:
    w.setBackground(pal.color(QPalette.Base))
    fg = pal.color(QPalette.Text)
    for name in ("left", "bottom"):
        axis = w.getPlotItem().getAxis(name)
        axis.setPen(fg)
        axis.setTextPen(fg)
        axis.enableAutoSIPrefix(False)  # "800 (x0.001)" for 0.8 reads as a different number


# -- agreement --------------------------------------------------------------------------------

METRICS = (  # combo text, value key, p-value key, levels
    ("Kendall τ-b", "kendall_tau", "kendall_p", (-1.0, 1.0)),
    ("Spearman ρ", "spearman", "spearman_p", (-1.0, 1.0)),
)


class AgreementView(QWidget):
    """Method x method matrix of one agreement measure, its value written in every cell."""

    pair_clicked = Signal(str, str)  # the two methods of a clicked cell (core's names)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.section: dict | None = None
        self.names: list[str] = []
        self.values: np.ndarray | None = None
        self.pvalues: np.ndarray | None = None
        self.colormap = colormaps.DEFAULT_COLORMAP
        self.metric = QComboBox()
        self.metric.setToolTip("Which agreement measure the matrix shows (absolute values, special "
                               "tokens excluded)")
        self.metric.currentIndexChanged.connect(lambda _i: self._draw())
        self.plot = _plot_widget()
        self.left = self.plot.getPlotItem().getAxis("left")
        self.bottom = self.plot.getPlotItem().getAxis("bottom")
        for axis in (self.left, self.bottom):
            axis.setStyle(tickLength=0, hideOverlappingLabels=False)
        self.view = self.plot.getViewBox()
        self.view.invertY(True)
        self.view.setMouseEnabled(False, False)
        self.view.setDefaultPadding(0.0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.texts: list[pg.TextItem] = []
        self.readout = plain_label(" ", wrap=False)  # the cell under the mouse
        self.readout.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.caption = plain_label("", wrap=True)
        self.caption.setEnabled(False)
        self.cell_font = QFont(self.font())
        self.cell_font.setPointSizeF(max(self.cell_font.pointSizeF() * 0.85, 7.0))
        top = QHBoxLayout()
        top.addWidget(QLabel("Agreement"))
        top.addWidget(self.metric)
        top.addWidget(self.readout, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        _style_plot(self.plot, self.palette())

    def set_section(self, agreement: dict | None, colormap: str) -> None:
        self.section = agreement if isinstance(agreement, dict) and agreement.get("methods") else None
        self.colormap = colormap
        current = self.metric.currentData()
        self.metric.blockSignals(True)
        self.metric.clear()
        if self.section is not None:
            for text, key, pkey, lv in METRICS:
                if self.section.get(key) is not None:
                    self.metric.addItem(text, (key, pkey, lv, None))
            topk = self.section.get("topk") or {}
            labels = topk.get("labels") or []
            for q, k in enumerate(topk.get("k") or []):
                text = f"top-k overlap, {labels[q]}" if q < len(labels) else f"top-{k} overlap"
                self.metric.addItem(text, ("topk", None, (0.0, 1.0), q))
            i = self.metric.findData(current)
            self.metric.setCurrentIndex(max(i, 0))
        self.metric.blockSignals(False)
        self._draw()

    def _matrix(self) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float]]:
        data = self.metric.currentData()
        if self.section is None or data is None:
            return None, None, (0.0, 1.0)
        key, pkey, lv, q = data
        if key == "topk":
            raw = self.section["topk"]["overlap"][q]
            pvals = None
        else:
            raw = self.section[key]
            pvals = self.section.get(pkey)
        values = np.array([[np.nan if v is None else float(v) for v in row] for row in raw], np.float64)
        p = None if pvals is None else np.array(
            [[np.nan if v is None else float(v) for v in row] for row in pvals], np.float64)
        return values, p, lv

    def _draw(self) -> None:
        for t in self.texts:
            self.plot.removeItem(t)
        self.texts = []
        self.values, self.pvalues, lv = self._matrix()
        if self.values is None:
            self.image.clear()
            self.names = []
            self._set_labels([])
            self.caption.setText("")
            self.readout.setText("No agreement matrix: run Validate.")
            return
        self.names = list(self.section["methods"])
        self._set_labels([method_label(n) for n in self.names])
        signed = lv[0] < 0
        cmap = colormaps.diverging(self.colormap) if signed else self.colormap
        lut = colormaps.lut(cmap)
        lo, hi = lv
        shown = np.nan_to_num(self.values, nan=0.0 if signed else lo)
        idx = np.clip(np.rint((shown - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
        self.image.setImage(np.ascontiguousarray(idx), autoLevels=False, levels=(0, 255), lut=lut)
        m = len(self.names)
        self.image.setRect(QRectF(0, 0, m, m))
        self.view.setRange(xRange=(0, m), yRange=(0, m), padding=0)
        for i in range(m):
            for j in range(m):
                v = self.values[i, j]
                colour = lut[int(idx[i, j])]
                lum = 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2]
                ink = QColor(0, 0, 0) if lum > 140 else QColor(255, 255, 255)
                faint = self.pvalues is not None and i != j and not (self.pvalues[i, j] < P_LEVEL)
                text = "—" if not np.isfinite(v) else f"{v:.2f}"
                item = pg.TextItem(text + ("*" if faint and np.isfinite(v) else ""), color=ink,
                                   anchor=(0.5, 0.5))
                item.setFont(self.cell_font)
                item.setPos(j + 0.5, i + 0.5)
                self.plot.addItem(item)
                self.texts.append(item)
        tokens = self.section.get("tokens")
        notes = [f"over {tokens} non-special tokens" if tokens is not None else "",
                 "* p ≥ 0.05: no evidence of association" if self.pvalues is not None else "",
                 "— not defined (a constant vector)" if np.isnan(self.values).any() else "",
                 "click a cell to compare the two methods in the text"]
        self.caption.setText(" · ".join(n for n in notes if n))
        self.readout.setText(" ")

    def _set_labels(self, labels: list[str]) -> None:
        ticks = [[(i + 0.5, text) for i, text in enumerate(labels)]]
        self.left.setTicks(ticks)
        self.bottom.setTicks(ticks)

    def cell_at(self, scene_pos) -> tuple[int, int]:
        if self.values is None or not self.plot.getPlotItem().sceneBoundingRect().contains(scene_pos):
            return -1, -1
        p = self.view.mapSceneToView(scene_pos)
        i, j = math.floor(p.y()), math.floor(p.x())
        m = len(self.names)
        return (i, j) if 0 <= i < m and 0 <= j < m else (-1, -1)

    def describe(self, i: int, j: int) -> str:
        text = f"{method_label(self.names[i], False)} vs {method_label(self.names[j], False)}: " \
               f"{self.metric.currentText()} = {fmt(self.values[i, j])}"
        if self.pvalues is not None and i != j:
            text += f" (p = {fmt(self.pvalues[i, j], 2)})"
        return text

    def _on_move(self, pos) -> None:
        i, j = self.cell_at(pos)
        self.readout.setText(self.describe(i, j) if i >= 0 else " ")

    def _on_click(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        i, j = self.cell_at(event.scenePos())
        if i >= 0:
            self.pair_clicked.emit(self.names[i], self.names[j])


# -- faithfulness -----------------------------------------------------------------------------


class FaithfulnessView(QWidget):
    """Comprehensiveness and sufficiency against the share of tokens removed, one line per
    method, with the 5-95 % band and mean of random rankings; AOPC table beneath."""

    method_chosen = Signal(str)  # core's name of a method picked in the table

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.section: dict | None = None
        self.plots: dict[str, pg.PlotWidget] = {}
        self.curves: dict[str, dict[str, pg.PlotDataItem]] = {}
        self.bands: dict[str, pg.FillBetweenItem] = {}
        row = QHBoxLayout()
        for key, title, tip in (
                ("comprehensiveness", "Comprehensiveness ↑",
                 "f(x) − f(x without its top-ranked tokens): higher means the ranking found tokens the output needs"),
                ("sufficiency", "Sufficiency ↓",
                 "f(x) − f(only its top-ranked tokens): lower means those tokens alone keep the output")):
            w = _plot_widget()
            w.setTitle(title, size="9pt")
            w.setToolTip(tip)
            w.setLabel("bottom", "top-ranked tokens removed" if key == "comprehensiveness"
                       else "top-ranked tokens kept")
            w.setLabel("left", "change of the target")
            w.showGrid(x=False, y=True, alpha=0.25)
            w.setMouseEnabled(False, False)
            _style_plot(w, self.palette())
            self.plots[key] = w
            row.addWidget(w, 1)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["method", "AOPC comp. ↑", "vs random", "AOPC suff. ↓",
                                              "vs random"])
        self.table.verticalHeader().hide()
        compact_rows(self.table)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)
        self.table.setToolTip("Double-click a method to show it in the editor")
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.caption = plain_label("")
        self.caption.setEnabled(False)
        row.addWidget(self.table, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row, 1)
        layout.addWidget(self.caption)

    def set_section(self, faith: dict | None, absent: str | None = None) -> None:
        """`absent`: why shown validation results have no curves (None: no results are shown)."""
        self.section = faith if isinstance(faith, dict) and faith.get("per_method") else None
        for w in self.plots.values():
            w.clear()
        self.curves, self.bands = {}, {}
        self.table.setRowCount(0)
        if self.section is None:
            self.caption.setText(absent or "No faithfulness curves: run Validate.")
            return
        fractions = [float(f) for f in self.section.get("fractions") or []]
        x = np.arange(len(fractions), dtype=np.float64)
        ticks = [[(i, f"{100 * f:g} %") for i, f in enumerate(fractions)]]
        rnd = self.section.get("random") or {}
        for key, w in self.plots.items():
            w.getPlotItem().getAxis("bottom").setTicks(ticks)
            band = rnd.get(f"{key}_band")
            if band and len(band) == 2:
                lo = pg.PlotDataItem(x, _floats(band[0]), pen=pg.mkPen(None))
                hi = pg.PlotDataItem(x, _floats(band[1]), pen=pg.mkPen(None))
                fill = pg.FillBetweenItem(lo, hi, brush=pg.mkBrush(128, 128, 128, 70))
                w.addItem(lo)
                w.addItem(hi)
                w.addItem(fill)
                self.bands[key] = fill
            mean = rnd.get(f"{key}_mean")
            if mean:
                w.plot(x, _floats(mean), pen=pg.mkPen((128, 128, 128), width=1.5, style=Qt.DotLine))
        methods = list(self.section["per_method"].items())
        self.table.setRowCount(len(methods))
        for r, (name, entry) in enumerate(methods):
            colour = QColor(LINE_COLOURS[r % len(LINE_COLOURS)])
            pen = pg.mkPen(colour, width=2, style=LINE_STYLES[r % len(LINE_STYLES)])
            self.curves[name] = {}
            for key, w in self.plots.items():
                y = entry.get(key)
                if y:
                    item = w.plot(x, _floats(y), pen=pen, symbol="o", symbolSize=5,
                                  symbolBrush=colour, symbolPen=pg.mkPen(None))
                    self.curves[name][key] = item
            cells = [method_label(name, False), fmt(entry.get("aopc_comp")),
                     _share(entry.get("beats_random_comp")), fmt(entry.get("aopc_suff")),
                     _share(entry.get("beats_random_suff"))]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.UserRole, name)
                if c == 0:
                    item.setForeground(QBrush(colour))
                else:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
        chance = (f"grey: {rnd.get('rankings', '?')} random rankings (dotted mean, 5–95 % band); chance AOPC "
                  f"comp. {fmt(rnd.get('aopc_comp_mean'))}, suff. {fmt(rnd.get('aopc_suff_mean'))}" if rnd else "")
        counts = self.section.get("counts")
        parts = [chance,
                 f"tokens per step: {', '.join(str(c) for c in counts)} of {self.section.get('non_special')}"
                 if counts else "",
                 f"replacement: {self.section.get('replacement')}" if self.section.get("replacement") else "",
                 "vs random: share of the random rankings the method does better than",
                 "double-click a method to colour the text with it"]
        self.caption.setText(" · ".join(p for p in parts if p))

    def _on_double_click(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.method_chosen.emit(str(item.data(Qt.UserRole)))


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], np.float64)


def _share(value) -> str:
    return "—" if value is None else f"{100 * float(value):.0f} %"


# -- changed attention ------------------------------------------------------------------------


class InterventionTable(QWidget):
    """What the output does when the attention weights are replaced."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["attention replaced by", "target change",
                                              "output TVD", "prediction flips", "prediction"])
        self.table.verticalHeader().hide()
        compact_rows(self.table)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.caption = plain_label("")
        self.caption.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.caption)

    def set_section(self, interventions: dict | None, target: dict | None = None, namer=None,
                    absent: str | None = None) -> None:
        """`namer(index)`: the name of an output index of the target's distribution; `absent`: why
        shown validation results have none (None: no results are shown)."""
        self.table.setRowCount(0)

        def predicted(entry: dict) -> str:
            index = entry.get("predicted_index")
            if index is None:
                return "—"
            return namer(int(index)) if namer is not None else f"#{index}"

        if not isinstance(interventions, dict) or not interventions:
            self.caption.setText(absent or "No changed-attention results: run Validate.")
            return
        rows: list[list[str]] = []
        u = interventions.get("uniform_all")
        if isinstance(u, dict):
            rows.append(["uniform, all layers", _signed(u.get("change")), fmt(u.get("tvd")),
                         fmt(u.get("flip")), predicted(u)])
        p = interventions.get("permuted")
        if isinstance(p, dict):
            seeds = p.get("seeds")
            flips = p.get("flips")
            rows.append([f"permuted, all layers ({seeds} seeds)",
                         f"median |Δ| {fmt(p.get('abs_change_median'))}, max {fmt(p.get('abs_change_max'))}",
                         f"median {fmt(p.get('tvd_median'))}, max {fmt(p.get('tvd_max'))}"
                         if p.get("tvd_median") is not None else "—",
                         f"{flips} of {seeds}" if flips is not None else "—", "—"])
        for entry in interventions.get("uniform_layer") or []:
            where = f"{entry.get('set')} " if entry.get("set") not in (None, "self") else ""
            rows.append([f"uniform, {where}layer {entry.get('layer')} alone", _signed(entry.get("change")),
                         fmt(entry.get("tvd")), fmt(entry.get("flip")), predicted(entry)])
        self.table.setRowCount(len(rows))
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c in (1, 2, 3):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
        value = (target or {}).get("value")
        parts = [f"target on the unchanged input: {fmt(value)}" if value is not None else "",
                 f"predicted: {(target or {}).get('predicted')}" if (target or {}).get("predicted") else "",
                 "TVD: total variation distance between the output distributions (0 same, 1 disjoint)",
                 str(interventions.get("allowed_keys") or "")]
        self.caption.setText(" · ".join(x for x in parts if x))


def _signed(value) -> str:
    if value is None:
        return "—"
    return f"{float(value):+.3g}"

