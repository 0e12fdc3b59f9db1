"""Model view: a thumbnail of every layer x head (bertviz's model view without its length limit),
with near-uniform and single-position heads marked. Click selects the head everywhere."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QScrollArea, QToolTip, QWidget

from ..core.propagate.heads import DIFFUSE_THRESHOLD, SINGLE_POSITION_THRESHOLD, HeadDiagnostics
from . import colormaps
from .plain import plain_tip

DIFFUSE_MARK = "≈"
SINGLE_MARK = "▲"


class HeadGrid(QWidget):
    head_clicked = Signal(int, int)  # layer, head

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.thumbs: np.ndarray | None = None  # [L, H, t, tk] uint8
        self.diagnostics: HeadDiagnostics | None = None
        self.key_labels: list[str] = []
        self.images: list[list[QImage]] = []
        self.colormap = colormaps.DEFAULT_COLORMAP
        self.layer = 0
        self.head: int | str = "mean"
        self.cell = 40
        self.gap = 4
        self.margin_left = 30
        self.margin_top = 16
        self.legend_h = 20
        self._pixmap: QPixmap | None = None

    def invalidate(self) -> None:
        self._pixmap = None
        self.update()

    def changeEvent(self, event) -> None:
        if event.type() in (event.Type.PaletteChange, event.Type.StyleChange):
            self.invalidate()
        super().changeEvent(event)

    def set_data(self, thumbs: np.ndarray | None, diagnostics: HeadDiagnostics | None,
                 key_labels: list[str]) -> None:
        self.thumbs = thumbs
        self.diagnostics = diagnostics
        self.key_labels = key_labels
        self._make_images()
        self._relayout()

    def set_colormap(self, name: str) -> None:
        if name != self.colormap:
            self.colormap = name
            self._make_images()
            self.invalidate()

    def set_selection(self, layer: int, head) -> None:
        self.layer, self.head = layer, head
        self.update()

    def _make_images(self) -> None:
        self.images = []
        if self.thumbs is None:
            return
        table = [QColor(*map(int, c)).rgb() for c in colormaps.lut(self.colormap)]
        for layer in self.thumbs:
            row = []
            for t in layer:
                data = np.ascontiguousarray(t)
                img = QImage(data.data, data.shape[1], data.shape[0], data.strides[0], QImage.Format_Indexed8)
                img.setColorTable(table)
                row.append(img.copy())
            self.images.append(row)

    @property
    def shape(self) -> tuple[int, int]:
        return (0, 0) if self.thumbs is None else self.thumbs.shape[:2]

    def _relayout(self) -> None:
        layers, heads = self.shape
        port = self.parentWidget() or self
        width = max(port.width(), 200) - self.margin_left - 8
        height = max(port.height(), 120) - self.margin_top - self.legend_h - 6
        fit = min(width / max(heads, 1), height / max(layers, 1)) - self.gap
        self.cell = int(min(72, max(22, fit)))
        self.setMinimumSize(self.sizeHint())
        self.updateGeometry()
        self.invalidate()

    def sizeHint(self) -> QSize:
        layers, heads = self.shape
        step = self.cell + self.gap
        return QSize(self.margin_left + heads * step + 8, self.margin_top + layers * step + self.legend_h + 6)

    def cell_rect(self, layer: int, head: int) -> QRect:
        step = self.cell + self.gap
        return QRect(self.margin_left + head * step, self.margin_top + layer * step, self.cell, self.cell)

    def cell_at(self, x: int, y: int) -> tuple[int, int]:
        layers, heads = self.shape
        step = self.cell + self.gap
        h = (x - self.margin_left) // step
        layer = (y - self.margin_top) // step
        if 0 <= layer < layers and 0 <= h < heads and self.cell_rect(layer, h).contains(x, y):
            return int(layer), int(h)
        return -1, -1

    def describe(self, layer: int, head: int) -> str:
        text = f"layer {layer} · head {head}"
        d = self.diagnostics
        if d is None:
            return text
        pos = int(d.top_position[layer, head])
        label = self.key_labels[pos] if pos < len(self.key_labels) else str(pos)
        text += (f"\nnormalised entropy {d.entropy[layer, head]:.2f}"
                 f"\n{d.top_share[layer, head]:.0%} of the attention on “{label}” (#{pos})")
        if d.diffuse[layer, head]:
            text += f"\n{DIFFUSE_MARK} near-uniform head"
        if d.single_position[layer, head]:
            text += f"\n{SINGLE_MARK} attends almost only to one position"
        return text

    def paintEvent(self, event) -> None:
        """The grid is drawn once into a pixmap; a selection change repaints only the frame."""
        ratio = self.devicePixelRatioF()
        if self._pixmap is None or self._pixmap.size() != self.size() * ratio:
            self._pixmap = QPixmap(self.size() * ratio)
            self._pixmap.setDevicePixelRatio(ratio)
            self._pixmap.fill(self.palette().color(QPalette.Window))
            painter = QPainter(self._pixmap)
            self._paint_grid(painter)
            painter.end()
        p = QPainter(self)
        p.drawPixmap(0, 0, self._pixmap)
        layers, heads = self.shape
        if layers and 0 <= self.layer < layers:
            p.setPen(QPen(self.palette().color(QPalette.Highlight), 3))
            p.setBrush(Qt.NoBrush)
            if isinstance(self.head, int) and 0 <= self.head < heads:
                p.drawRect(self.cell_rect(self.layer, self.head).adjusted(-2, -2, 1, 1))
            else:
                a, b = self.cell_rect(self.layer, 0), self.cell_rect(self.layer, heads - 1)
                p.drawRect(QRect(a.topLeft(), b.bottomRight()).adjusted(-2, -2, 1, 1))
        p.end()

    def _paint_grid(self, p: QPainter) -> None:
        pal = self.palette()
        fg = pal.color(QPalette.WindowText)
        layers, heads = self.shape
        if not layers:
            p.setPen(fg)
            p.drawText(self.rect(), Qt.AlignCenter, "Heads appear here after an analysis.")
            return
        p.setPen(fg)
        font = p.font()
        for h in range(heads):
            r = self.cell_rect(0, h)
            p.drawText(QRect(r.left(), 0, r.width(), self.margin_top), Qt.AlignCenter, str(h))
        for layer in range(layers):
            r = self.cell_rect(layer, 0)
            p.drawText(QRect(0, r.top(), self.margin_left - 4, r.height()), Qt.AlignRight | Qt.AlignVCenter,
                       f"L{layer}")
        d = self.diagnostics
        badge_font = type(font)(font)
        badge_font.setPixelSize(max(9, self.cell // 4))
        for layer in range(layers):
            for h in range(heads):
                r = self.cell_rect(layer, h)
                p.drawImage(r, self.images[layer][h])
                marks = ""
                if d is not None and d.diffuse[layer, h]:
                    marks += DIFFUSE_MARK
                if d is not None and d.single_position[layer, h]:
                    marks += SINGLE_MARK
                if marks:
                    p.setFont(badge_font)
                    br = p.fontMetrics().boundingRect(marks).adjusted(-2, 0, 2, 0)
                    br.moveTopRight(r.topRight())
                    p.fillRect(br, QColor(255, 255, 255, 220))
                    p.setPen(QColor(0, 0, 0))
                    p.drawText(br, Qt.AlignCenter, marks)
                    p.setFont(font)
        p.setPen(fg)
        legend = QRect(self.margin_left, self.margin_top + layers * (self.cell + self.gap),
                       self.width() - self.margin_left, self.legend_h)
        p.drawText(legend, Qt.AlignLeft | Qt.AlignVCenter,
                   f"{DIFFUSE_MARK} near-uniform (entropy ≥ {DIFFUSE_THRESHOLD:.0%})   "
                   f"{SINGLE_MARK} ≥ {SINGLE_POSITION_THRESHOLD:.0%} on one position")

    def mouseMoveEvent(self, event) -> None:
        pos = event.position().toPoint()
        layer, h = self.cell_at(pos.x(), pos.y())
        if layer >= 0:
            QToolTip.showText(event.globalPosition().toPoint(), plain_tip(self.describe(layer, h)), self)
        else:
            QToolTip.hideText()

    def mousePressEvent(self, event) -> None:
        pos = event.position().toPoint()
        layer, h = self.cell_at(pos.x(), pos.y())
        if layer >= 0 and event.button() == Qt.LeftButton:
            self.head_clicked.emit(layer, h)


class ModelView(QScrollArea):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = HeadGrid()
        self.setWidget(self.grid)
        self.setWidgetResizable(True)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.grid._relayout()
