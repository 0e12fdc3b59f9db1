"""The heatmap: one [queries x keys] matrix as a pyqtgraph ImageItem with token-labelled axes,
a colour bar, a hover readout and click-to-focus."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFontMetricsF, QPalette, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from . import colormaps

LABEL_CHARS = 14  # token labels longer than this are elided on the axes (the readout has all)


def elide(text: str, n: int = LABEL_CHARS) -> str:
    text = text.replace("\n", "⏎").replace("\t", "⇥") or "␣"
    return text if len(text) <= n else text[: n - 1] + "…"


class TokenAxis(pg.AxisItem):
    """Category axis: one label per cell centre (i + 0.5), thinned to whatever fits without
    overlapping; every label shows once zoomed in far enough. Bottom labels are rotated."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self.labels: list[str] = []
        self.setStyle(showValues=False, tickLength=3, hideOverlappingLabels=False)
        self._line = 12.0
        self._extent = 20.0

    def set_labels(self, labels: list[str]) -> None:
        self.labels = [elide(s) for s in labels]
        fm = QFontMetricsF(self.font())
        self._line = fm.height() + 1
        widest = max((fm.horizontalAdvance(s) for s in self.labels), default=10.0)
        self._extent = min(widest, fm.horizontalAdvance("M" * LABEL_CHARS)) + 8
        if self.orientation in ("left", "right"):
            self.setWidth(int(self._extent))
        else:
            self.setHeight(int(self._extent))
        self.picture = None
        self.update()

    def visible_ticks(self, lo: float, hi: float, pixels: float) -> list[int]:
        n = len(self.labels)
        if n == 0 or hi <= lo or pixels <= 0:
            return []
        per_cell = pixels / (hi - lo)
        step = max(1, math.ceil(self._line / per_cell))
        first = max(0, math.ceil(lo - 0.5))
        last = min(n - 1, math.floor(hi - 0.5))
        first += (-first) % step  # multiples of step: labels stay put while panning
        return list(range(first, last + 1, step))

    def tickValues(self, minVal, maxVal, size):
        lo, hi = sorted((minVal, maxVal))
        return [(1.0, [i + 0.5 for i in self.visible_ticks(lo, hi, size)])]

    def generateDrawSpecs(self, p):
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        axis_spec, tick_specs, _ = specs
        bounds = self.mapRectFromParent(self.geometry())
        lo, hi = self.range
        vertical = self.orientation in ("left", "right")
        length = bounds.height() if vertical else bounds.width()
        if hi == lo or length <= 0:
            return axis_spec, tick_specs, []
        pixels = abs(length)
        ticks = self.visible_ticks(min(lo, hi), max(lo, hi), pixels)
        texts = []
        for i in ticks:
            frac = (i + 0.5 - lo) / (hi - lo)
            pos = (bounds.bottom() - frac * bounds.height()) if vertical else (bounds.left() + frac * bounds.width())
            texts.append((pos, self.labels[i]))
        return axis_spec, tick_specs, texts

    def drawPicture(self, p, axisSpec, tickSpecs, textSpecs):
        super().drawPicture(p, axisSpec, tickSpecs, [])
        p.setPen(self.textPen())
        bounds = self.mapRectFromParent(self.geometry())
        gap = 3 + 3
        h = self._line
        for pos, text in textSpecs:
            if self.orientation == "left":
                rect = QRectF(bounds.left(), pos - h / 2, bounds.width() - gap, h)
                p.drawText(rect, int(Qt.AlignRight | Qt.AlignVCenter), text)
            else:
                p.save()
                p.translate(pos, bounds.top() + gap)
                p.rotate(-90)
                p.drawText(QRectF(-bounds.height(), -h / 2, bounds.height() - gap + 3, h),
                           int(Qt.AlignRight | Qt.AlignVCenter), text)
                p.restore()


class ValueAxis(pg.AxisItem):
    """Colour bar axis; in log mode the values are log10 and labels show the weight."""

    log = False

    def tickStrings(self, values, scale, spacing):
        return [short_number(10 ** v if self.log else v) for v in values]


def short_number(x: float) -> str:
    """At most five characters, so colour bar labels never get dropped for lack of room."""
    if x == 0:
        return "0"
    if abs(x) >= 0.01:
        return f"{x:.2g}"
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


class Heatmap(QWidget):
    """Shows a matrix; says which cell is under the mouse and which was clicked."""

    cell_clicked = Signal(int, int)  # row, column
    cell_hovered = Signal(int, int)  # -1, -1 when outside

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: np.ndarray | None = None  # [rows, cols] as shown, float16 or float32
        self.levels = (0.0, 1.0)
        self.scale = "linear"
        self.colormap = colormaps.DEFAULT_COLORMAP
        self.row_labels: list[str] = []
        self.col_labels: list[str] = []
        self.value_name = "weight"
        self._focus_row: int | None = None

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.left = TokenAxis("left")
        self.bottom = TokenAxis("bottom")
        self.plot = self.graphics.addPlot(row=0, col=0, axisItems={"left": self.left, "bottom": self.bottom})
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.view = self.plot.getViewBox()
        self.view.invertY(True)
        self.view.setDefaultPadding(0.0)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.focus_box = pg.QtWidgets.QGraphicsRectItem()
        self.focus_box.setZValue(10)
        self.plot.addItem(self.focus_box)
        self.focus_box.hide()

        self.bar_axis = ValueAxis("right")
        self.bar = self.graphics.addPlot(row=0, col=1, axisItems={"right": self.bar_axis})
        self.bar.hideAxis("left")
        self.bar.hideAxis("bottom")
        self.bar.showAxis("right")
        self.bar.setMenuEnabled(False)
        self.bar.hideButtons()
        self.bar.setMouseEnabled(False, False)
        self.bar.setFixedWidth(66)
        self.bar_image = pg.ImageItem(np.arange(256, dtype=np.uint8)[:, None], axisOrder="row-major")
        self.bar.addItem(self.bar_image)
        self.graphics.ci.layout.setColumnStretchFactor(0, 1)

        self.title = QLabel()  # a QLabel, not the plot title: a long title must not widen the plot
        self.title.setAlignment(Qt.AlignCenter)
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title.setFont(font)
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.readout = QLabel(" ")
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.readout.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)

        scene = self.graphics.scene()
        scene.sigMouseMoved.connect(self._on_move)
        scene.sigMouseClicked.connect(self._on_click)
        self.apply_palette()
        self._apply_lut()

    # -- data -----------------------------------------------------------------------------
    def set_matrix(self, values: np.ndarray, row_labels: list[str], col_labels: list[str],
                   *, title: str = "", value_name: str = "weight") -> None:
        if values.dtype not in (np.float16, np.float32):
            values = values.astype(np.float32)
        values = np.ascontiguousarray(values)
        new_shape = self.values is None or values.shape != self.values.shape
        self.values = values
        self.value_name = value_name
        if row_labels != self.row_labels:
            self.row_labels = list(row_labels)
            self.left.set_labels(self.row_labels)
        if col_labels != self.col_labels:
            self.col_labels = list(col_labels)
            self.bottom.set_labels(self.col_labels)
        self._render()
        rows, cols = values.shape
        if new_shape:
            self.image.setRect(QRectF(0, 0, cols, rows))
            self.view.setLimits(xMin=0, xMax=cols, yMin=0, yMax=rows,
                                minXRange=min(cols, 2), minYRange=min(rows, 2))
            self.view.setRange(xRange=(0, cols), yRange=(0, rows), padding=0)
        self.title.setText(title)
        self._place_focus()

    def clear(self, message: str = "") -> None:
        self.values = None
        self.image.clear()
        self.focus_box.hide()
        self.row_labels, self.col_labels = [], []
        self.left.set_labels([])
        self.bottom.set_labels([])
        self.title.setText(message)
        self.readout.setText(" ")

    def set_style(self, colormap: str, scale: str) -> None:
        changed = (colormap, scale) != (self.colormap, self.scale)
        self.colormap, self.scale = colormap, scale
        self._apply_lut()
        if changed and self.values is not None:
            self._render()

    def set_focus_row(self, row: int | None) -> None:
        self._focus_row = row
        self._place_focus()

    def _render(self) -> None:
        data, self.levels = colormaps.quantise(self.values, self.scale)
        self.image.setImage(data, autoLevels=False, levels=(0, 255), lut=colormaps.lut(self.colormap))
        lo, hi = self.levels
        self.bar_axis.log = self.scale == "log"
        self.bar_image.setRect(QRectF(0, lo, 1, hi - lo))
        self.bar.setYRange(lo, hi, padding=0)
        self.bar.setXRange(0, 1, padding=0)
        self.bar_axis.picture = None
        self.bar_axis.update()

    def _apply_lut(self) -> None:
        table = colormaps.lut(self.colormap)
        self.bar_image.setLookupTable(table)
        self.bar_image.setLevels((0, 255))
        if self.image.image is not None:
            self.image.setLookupTable(table)

    def _place_focus(self) -> None:
        if self.values is None or self._focus_row is None or not 0 <= self._focus_row < self.values.shape[0]:
            self.focus_box.hide()
            return
        self.focus_box.setRect(QRectF(0, self._focus_row, self.values.shape[1], 1))
        self.focus_box.show()

    def apply_palette(self) -> None:
        pal = self.palette()
        bg = pal.color(QPalette.Base)
        fg = pal.color(QPalette.Text)
        self.graphics.setBackground(bg)
        for axis in (self.left, self.bottom, self.bar_axis):
            axis.setPen(fg)
            axis.setTextPen(fg)
        accent = pal.color(QPalette.Highlight)
        if accent.lightnessF() < 0.35 or accent.saturationF() < 0.2:
            accent = QColor("#ff4081")
        pen = QPen(accent, 2)
        pen.setCosmetic(True)
        self.focus_box.setPen(pen)

    def changeEvent(self, event) -> None:
        if event.type() in (event.Type.PaletteChange, event.Type.StyleChange):
            self.apply_palette()
        super().changeEvent(event)

    # -- mouse ------------------------------------------------------------------------------
    def cell_at(self, scene_pos: QPointF) -> tuple[int, int]:
        if self.values is None or not self.plot.sceneBoundingRect().contains(scene_pos):
            return -1, -1
        p = self.view.mapSceneToView(scene_pos)
        rows, cols = self.values.shape
        r, c = math.floor(p.y()), math.floor(p.x())
        if 0 <= r < rows and 0 <= c < cols:
            return r, c
        return -1, -1

    def describe_cell(self, r: int, c: int) -> str:
        row = self.row_labels[r] if r < len(self.row_labels) else str(r)
        col = self.col_labels[c] if c < len(self.col_labels) else str(c)
        return (f"query “{row}” #{r}  →  key “{col}” #{c}   "
                f"{self.value_name} {float(self.values[r, c]):.4f}")

    def _on_move(self, pos: QPointF) -> None:
        r, c = self.cell_at(pos)
        self.readout.setText(self.describe_cell(r, c) if r >= 0 else " ")
        self.cell_hovered.emit(r, c)

    def _on_click(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        r, c = self.cell_at(event.scenePos())
        if r >= 0:
            self.cell_clicked.emit(r, c)

    def export_png(self, path: str) -> bool:
        return self.graphics.grab().save(path, "PNG")
