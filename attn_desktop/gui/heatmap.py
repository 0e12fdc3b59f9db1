"""The heatmap: one [queries x keys] matrix as a pyqtgraph ImageItem with token-labelled axes
(the focus row and column always labelled), a colour bar with distinct tick labels and a caption
saying what the scale means, a tooltip for the cell under the mouse, and click-to-focus.

A matrix larger than the view's pixels (thousands of tokens) is drawn as an overview in which each
pixel is the largest value of a block of cells (core.views.pooling), so isolated peaks stay visible;
zooming (wheel, drag, +/-, arrows, Fit, Zoom to focus) redraws the visible part with smaller
blocks, down to every cell. The colours always use the levels of the whole matrix."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPalette, QPen
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from ..core.views import pooling
from . import colormaps
from .plain import plain_tip

LABEL_CHARS = 28  # labels longer than this are elided on the axes (the tooltip has them all)
UNLAID_PIXELS = 1024.0  # the view's size in pixels assumed before it is laid out
EMPTY_TEXT = "Analyse a text to see attention"


def elide(text: str, n: int = LABEL_CHARS) -> str:
    text = text.replace("\n", "⏎").replace("\t", "⇥") or "␣"
    return text if len(text) <= n else text[: n - 1] + "…"


class TokenAxis(pg.AxisItem):
    """Category axis: one label per cell centre (i + 0.5), thinned to whatever fits without
    overlapping; every label shows once zoomed in far enough. The pinned labels (the focus row
    or column) always show, in bold. Bottom labels are rotated."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self.labels: list[str] = []
        self.pinned: list[int] = []
        self.label_font = QFont(self.font())
        self.bold_font = QFont(self.label_font)
        self.bold_font.setBold(True)
        self.setStyle(showValues=False, tickLength=3, hideOverlappingLabels=False, tickFont=self.label_font)
        self._line = 12.0
        self._extent = 20.0

    def set_labels(self, labels: list[str]) -> None:
        self.labels = [elide(s) for s in labels]
        fm = QFontMetricsF(self.bold_font)  # the widest a label can be drawn
        self._line = fm.height() + 1
        widest = max((fm.horizontalAdvance(s) for s in self.labels), default=10.0)
        self._extent = min(widest, fm.horizontalAdvance("m" * LABEL_CHARS)) + 10
        if self.orientation in ("left", "right"):
            self.setWidth(int(math.ceil(self._extent)))
        else:
            self.setHeight(int(math.ceil(self._extent)))
        self.picture = None
        self.update()

    def set_pinned(self, indices) -> None:
        pinned = sorted({int(i) for i in indices})
        if pinned != self.pinned:
            self.pinned = pinned
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
        kept: list[int] = []
        for p in self.pinned:  # the first pinned always; others where they do not overlap it
            if first <= p <= last and (not kept or p - kept[-1] >= step):
                kept.append(p)
        first += (-first) % step  # multiples of step: labels stay put while panning
        regular = [i for i in range(first, last + 1, step) if all(abs(i - p) >= step for p in kept)]
        return sorted(regular + kept)

    def tickValues(self, minVal, maxVal, size):
        lo, hi = sorted((minVal, maxVal))
        return [(1.0, [i + 0.5 for i in self.visible_ticks(lo, hi, size)])]

    def label_at(self, value: float) -> int | None:
        """The labelled cell nearest to `value` (view coordinates), if its label is under it."""
        lo, hi = sorted(self.range)
        rect = self.geometry()
        pixels = rect.height() if self.orientation in ("left", "right") else rect.width()
        ticks = self.visible_ticks(lo, hi, pixels)
        if not ticks or hi <= lo:
            return None
        best = min(ticks, key=lambda i: abs(i + 0.5 - value))
        return best if abs(best + 0.5 - value) * pixels / (hi - lo) <= self._line / 2 + 1 else None

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
        pinned = set(self.pinned)
        half = self._line / 2
        texts = []
        for i in ticks:
            frac = (i + 0.5 - lo) / (hi - lo)
            if vertical:
                pos = bounds.bottom() - frac * bounds.height()
                pos = min(max(pos, bounds.top() + half), bounds.bottom() - half)  # never cut at the ends
            else:
                pos = bounds.left() + frac * bounds.width()
                pos = min(max(pos, bounds.left() + half), bounds.right() - half)
            texts.append((pos, self.labels[i], i in pinned))
        return axis_spec, tick_specs, self._apart(texts)

    def _apart(self, texts):
        """Drop unpinned labels that would touch another (kept at the ends of the axis)."""
        line = self._line - 1e-6
        fixed = [pos for pos, _, bold in texts if bold]
        kept, last = [], None
        for pos, text, bold in sorted(texts, key=lambda t: t[0]):
            if not bold and (any(abs(pos - f) < line for f in fixed) or (last is not None and pos - last < line)):
                continue
            kept.append((pos, text, bold))
            if not bold:
                last = pos
        return kept

    def drawPicture(self, p, axisSpec, tickSpecs, textSpecs):
        super().drawPicture(p, axisSpec, tickSpecs, [])
        p.setPen(self.textPen())
        bounds = self.mapRectFromParent(self.geometry())
        gap = 3 + 3
        h = self._line
        flags = int(Qt.AlignRight | Qt.AlignVCenter | Qt.TextDontClip)
        for pos, text, bold in textSpecs:
            p.setFont(self.bold_font if bold else self.label_font)
            if self.orientation == "left":
                p.drawText(QRectF(bounds.left(), pos - h / 2, bounds.width() - gap, h), flags, text)
            else:
                p.save()
                p.translate(pos, bounds.top() + gap)
                p.rotate(-90)
                p.drawText(QRectF(-bounds.height(), -h / 2, bounds.height() - gap + 3, h), flags, text)
                p.restore()


class ValueAxis(pg.AxisItem):
    """Colour bar axis. Values arrive in display units: log10 of the weight (log), log2 of the
    ratio to uniform (× uniform), the weight itself otherwise; labels always show the weight
    (or the ratio), each label different from its neighbours."""

    value_scale = "linear"  # (AxisItem.scale is pyqtgraph's own number)

    @property
    def log(self) -> bool:
        return self.value_scale == "log"

    def tickValues(self, minVal, maxVal, size):
        lo, hi = sorted((float(minVal), float(maxVal)))
        return [(1.0, bar_ticks(lo, hi, self.value_scale, max(2, int(size // 38))))]

    def tickStrings(self, values, scale, spacing):
        return tick_labels(values, self.value_scale)


def nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * power >= raw:
            return m * power
    return 10.0 * power


def bar_ticks(lo: float, hi: float, scale: str, count: int) -> list[float]:
    """Tick positions (display units) for the colour bar: at most about `count`, never two with
    the same label."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    if scale == "log":  # decades, or 1-2-5 within a narrow range
        decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
        if len(decades) >= 3:
            every = max(1, math.ceil(len(decades) / count))
            return [float(d) for d in decades if d % every == 0]
        out = []
        for d in range(math.floor(lo) - 1, math.ceil(hi) + 1):
            for m in (1, 2, 5):
                v = d + math.log10(m)
                if lo - 1e-9 <= v <= hi + 1e-9:
                    out.append(v)
        return out if len(out) >= 2 else [lo, hi]
    if scale == colormaps.RATIO:  # log2: whole powers of two
        every = max(1, math.ceil((hi - lo) / count))
        return [float(k) for k in range(math.ceil(lo), math.floor(hi) + 1) if k % every == 0]
    step = nice_step(hi - lo, count)
    start = math.ceil(lo / step - 1e-9)
    ticks = []
    k = start
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    return ticks


def tick_labels(values, scale: str) -> list[str]:
    """Short labels for colour bar ticks, with as many digits as it takes to tell them apart."""
    values = [float(v) for v in values]
    if scale == "log":
        values = [10.0 ** v for v in values]
    if scale == colormaps.RATIO:
        out = []
        for v in values:
            k = round(v)
            if abs(v - k) < 1e-9:
                out.append(f"×{2 ** k}" if k >= 0 else f"×1/{2 ** -k}")
            else:
                out.append(f"×{2 ** v:.2g}")
        return out
    gaps = [abs(b - a) for a, b in itertools.pairwise(values) if b != a]
    spacing = min(gaps) if gaps else max(abs(v) for v in values) if values else 1.0
    labels: list[str] = []
    for digits in range(1, 7):  # the fewest digits that tell the ticks apart and say them exactly
        labels = [short_number(v, digits) for v in values]
        exact = all(abs(float(label) - v) <= 1e-3 * spacing for label, v in zip(labels, values, strict=True))
        if exact and len(set(labels)) == len(labels):
            return labels
    return labels


def short_number(x: float, digits: int = 2) -> str:
    """A compact label: 0.25, 1.5e-3, 12; `digits` significant digits at most."""
    if x == 0:
        return "0"
    if 0.01 <= abs(x) < 10 ** digits or digits < 1:
        text = f"{x:.{digits}g}"
        return text if "e" not in text else f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{max(digits - 1, 0)}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def scale_caption(scale: str, value_name: str) -> str:
    """What the colour bar's scale means, in words (its axis label)."""
    if scale == "log":
        return f"{value_name} · log scale from 1e-4"
    if scale == "min–max":
        return f"{value_name} · smallest to largest shown"
    if scale == colormaps.RATIO:
        return f"{value_name} × uniform (×1 = 1/n)"
    if scale == colormaps.SIGNED:
        return f"{value_name} · signed, 0 in the middle"
    return f"{value_name} · linear from 0"


class Heatmap(QWidget):
    """Shows a matrix; says which cell is under the mouse (a tooltip) and which was clicked."""

    cell_clicked = Signal(int, int)  # row, column (a row label: column -1)
    cell_hovered = Signal(int, int)  # -1, -1 when outside
    key_clicked = Signal(int)  # a column label

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: np.ndarray | None = None  # [rows, cols] as shown, float16 or float32
        self.expected: np.ndarray | None = None  # [cols] a uniform row's value per column (× uniform)
        self.levels = (0.0, 1.0)
        self.scale = "linear"
        self.colormap = colormaps.DEFAULT_COLORMAP
        self.row_labels: list[str] = []
        self.col_labels: list[str] = []
        self.row_numbers: list[str] | None = None
        self.col_numbers: list[str] | None = None
        self.value_name = "weight"
        self.hover_text = ""  # what the tooltip says about the cell under the mouse
        self._focus_row: int | None = None
        self._focus_rows: list[int] = []
        self._focus_boxes: list = []
        self.region: pooling.Region | None = None  # what the image shows; None: every cell of the matrix
        self._levels_of: tuple = ()  # (values, scale, expected) the levels were computed for
        self._redraw = QTimer(self)  # pans and zooms redraw once per turn of the event loop
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(0)
        self._redraw.timeout.connect(self._follow_view)

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
        self.focus_box = self._new_box()  # the first focus run (the focus row itself)

        self.bar_axis = ValueAxis("right")
        self.bar_axis.enableAutoSIPrefix(False)  # the tick labels carry their own magnitude
        self.bar = self.graphics.addPlot(row=0, col=1, axisItems={"right": self.bar_axis})
        self.bar.hideAxis("left")
        self.bar.hideAxis("bottom")
        self.bar.showAxis("right")
        self.bar.setMenuEnabled(False)
        self.bar.hideButtons()
        self.bar.setMouseEnabled(False, False)
        self.bar.setFixedWidth(92)
        self.bar_image = pg.ImageItem(np.arange(256, dtype=np.uint8)[:, None], axisOrder="row-major")
        self.bar.addItem(self.bar_image)
        self.graphics.ci.layout.setColumnStretchFactor(0, 1)

        self.title = QLabel()  # a QLabel, not the plot title: a long title must not widen the plot
        self.title.setTextFormat(Qt.PlainText)
        self.title.setAlignment(Qt.AlignCenter)
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title.setFont(font)
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.zoom_label = QLabel()  # what one pixel stands for (a block of cells, or one cell)
        self.zoom_label.setTextFormat(Qt.PlainText)
        self.zoom_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Show the whole matrix (0 or Home). Wheel or +/−: zoom; drag or arrows: pan")
        self.fit_button.clicked.connect(self.fit)
        self.focus_button = QToolButton()
        self.focus_button.setText("Zoom to focus")
        self.focus_button.setToolTip("Zoom in on the focus row until every label can be read (F)")
        self.focus_button.clicked.connect(self.zoom_to_focus)
        for button in (self.fit_button, self.focus_button):
            button.setEnabled(False)
            policy = button.sizePolicy()
            policy.setRetainSizeWhenHidden(True)  # hidden for a grab without moving anything
            button.setSizePolicy(policy)
        zoom_row = QHBoxLayout()
        zoom_row.setContentsMargins(4, 0, 4, 0)
        zoom_row.addWidget(self.zoom_label, 1)
        zoom_row.addWidget(self.fit_button)
        zoom_row.addWidget(self.focus_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addLayout(zoom_row)
        # with nothing to show yet, a line saying so in place of an empty plot and a made-up colour scale
        self.placeholder = QLabel(EMPTY_TEXT)
        self.placeholder.setTextFormat(Qt.PlainText)
        self.placeholder.setAlignment(Qt.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setAutoFillBackground(True)
        self.placeholder.setBackgroundRole(QPalette.Base)  # the plot's own background
        self.placeholder.setForegroundRole(QPalette.PlaceholderText)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.graphics)
        self.stack.addWidget(self.placeholder)
        self.stack.setCurrentWidget(self.placeholder)
        self.bar.hide()
        layout.addWidget(self.stack, 1)

        scene = self.graphics.scene()
        scene.sigMouseMoved.connect(self._on_move)
        scene.sigMouseClicked.connect(self._on_click)
        self.view.sigRangeChanged.connect(lambda *_: self._redraw.start())
        self.view.sigResized.connect(lambda *_: self._redraw.start())
        self.graphics.setFocusPolicy(Qt.StrongFocus)
        self.graphics.installEventFilter(self)
        self.apply_palette()
        self._apply_lut()

    def _new_box(self):
        box = pg.QtWidgets.QGraphicsRectItem()
        box.setZValue(10)
        self.plot.addItem(box)
        box.hide()
        if hasattr(self, "focus_box"):
            box.setPen(self.focus_box.pen())
        return box

    # -- data -----------------------------------------------------------------------------
    def set_matrix(self, values: np.ndarray, row_labels: list[str], col_labels: list[str],
                   *, title: str = "", value_name: str = "weight", expected=None,
                   row_numbers: list[str] | None = None, col_numbers: list[str] | None = None) -> None:
        """`expected`: what a uniform row gives each column (default 1/columns), for × uniform.
        `row_numbers` / `col_numbers`: how tooltips number each row and column ("#200", or
        "#200–201" for a word of two pieces: token positions, as the status bar numbers them);
        by default the position in the matrix."""
        self.row_numbers, self.col_numbers = row_numbers, col_numbers
        if values.ndim != 2 or 0 in values.shape:
            self.clear(title)  # no row yet (a word whose pieces' rows are still being computed)
            return
        if values.dtype not in (np.float16, np.float32):
            values = values.astype(np.float32)
        values = np.ascontiguousarray(values)
        new_shape = self.values is None or values.shape != self.values.shape
        self.values = values
        self.expected = None if expected is None else np.asarray(expected, np.float64)
        self.value_name = value_name
        self._hide_tip()
        if row_labels != self.row_labels:
            self.row_labels = list(row_labels)
            self.left.set_labels(self.row_labels)
        if col_labels != self.col_labels:
            self.col_labels = list(col_labels)
            self.bottom.set_labels(self.col_labels)
        rows, cols = values.shape
        if new_shape:
            self.view.setLimits(xMin=0, xMax=cols, yMin=0, yMax=rows,
                                minXRange=min(cols, 2), minYRange=min(rows, 2))
            self.view.setRange(xRange=(0, cols), yRange=(0, rows), padding=0)
        self._render()
        self.title.setText(title)
        self._place_focus()

    def clear(self, message: str = "", placeholder: str = "") -> None:
        """No matrix: `message` in the title; `placeholder` (if any) in place of the plot. The
        colour bar hides: it has no levels without values."""
        self.values = None
        self.bar.hide()
        self.placeholder.setText(placeholder)
        self.stack.setCurrentWidget(self.placeholder if placeholder else self.graphics)
        self.expected = None
        self.region = None
        self._levels_of = ()
        self.image.clear()
        self.zoom_label.setText("")
        self.fit_button.setEnabled(False)
        self.focus_button.setEnabled(False)
        for box in self._focus_boxes + [self.focus_box]:
            box.hide()
        self.row_labels, self.col_labels = [], []
        self.left.set_labels([])
        self.bottom.set_labels([])
        self.left.set_pinned([])
        self.bottom.set_pinned([])
        self.title.setText(message)
        self.title.setToolTip("")
        self._hide_tip()

    def set_style(self, colormap: str, scale: str) -> None:
        changed = (colormap, scale) != (self.colormap, self.scale)
        self.colormap, self.scale = colormap, scale
        self._apply_lut()
        if changed and self.values is not None:
            self._render()

    def set_focus_row(self, row: int | None) -> None:
        self.set_focus_rows([] if row is None else [row])

    def set_focus_rows(self, rows, cols=()) -> None:
        """Frame the focus rows (a word, or a selection of words) and always label them and the
        focus columns."""
        new = sorted({int(r) for r in rows})
        moved = new != self._focus_rows
        self._focus_rows = new
        self._focus_row = self._focus_rows[0] if self._focus_rows else None
        self.left.set_pinned(self._focus_rows)
        self.bottom.set_pinned(cols)
        self._place_focus()
        if moved:
            self.reveal_focus()
        self.focus_button.setEnabled(self._focus_row is not None and self.values is not None)

    def _lut(self) -> np.ndarray:
        return colormaps.lut(colormaps.map_for(self.colormap, self.scale))

    def _expected(self) -> np.ndarray | None:
        expected = self.expected
        if expected is not None and expected.shape[-1] != self.values.shape[-1]:
            return None
        return expected

    def _pixels(self) -> tuple[float, float]:
        """(height, width) of the plot area in device pixels."""
        ratio = self.graphics.devicePixelRatioF()
        h, w = self.view.height() * ratio, self.view.width() * ratio
        return (h if h >= 8 else UNLAID_PIXELS, w if w >= 8 else UNLAID_PIXELS)

    def _visible(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(rows, columns) of the view range, as floats."""
        (x0, x1), (y0, y1) = self.view.viewRange()
        return (min(y0, y1), max(y0, y1)), (min(x0, x1), max(x0, x1))

    def _fits(self) -> bool:
        rows, cols = self.values.shape
        ph, pw = self._pixels()
        return rows <= ph and cols <= pw

    @property
    def pool_factors(self) -> tuple[int, int]:
        """(rows, columns) of cells per image pixel now: (1, 1) when every cell is drawn."""
        return (1, 1) if self.region is None else self.region.factors

    def _signed(self) -> bool:
        return self.scale == colormaps.SIGNED

    def _divisor(self) -> np.ndarray | None:
        """What each column's values are divided by before pooling (× uniform), else None."""
        if self.scale != colormaps.RATIO:
            return None
        expected = self._expected()
        cols = self.values.shape[1]
        return np.full(cols, 1.0 / max(cols, 1)) if expected is None else expected

    def _whole_levels(self) -> tuple[float, float]:
        """Levels of the whole matrix, from its largest and smallest value (one pass, no copy)."""
        key = (self.values, self.scale, self.expected)
        if len(self._levels_of) == 4 and all(a is b for a, b in zip(self._levels_of[:3], key, strict=True)):
            return self._levels_of[3]
        low = self.scale not in ("linear", "log")  # those two need only the largest value
        blocks = pooling.block_extremes(self.values, pooling.whole(self.values.shape), low=low,
                                        divisor=self._divisor())
        high = blocks.high[0, 0]
        pair = np.array([[blocks.low[0, 0] if low else high, high]], np.float32)
        lv = colormaps.levels(pair, self.scale, np.ones(2) if self.scale == colormaps.RATIO else None)
        self._levels_of = (*key, lv)
        return lv

    def _draw(self, region: pooling.Region) -> np.ndarray:
        """uint8 image of a region of the matrix in the levels of the whole matrix."""
        (r0, r1), (c0, c1) = region.rows, region.cols
        if region.factors == (1, 1):
            expected = self._divisor()
            return colormaps.quantise_at(self.values[r0:r1, c0:c1], self.scale, self.levels,
                                         None if expected is None else expected[c0:c1])
        blocks = pooling.block_extremes(self.values, region, low=self._signed(), divisor=self._divisor())
        shown = blocks.extreme() if self._signed() else blocks.high
        ones = np.ones(shown.shape[1]) if self.scale == colormaps.RATIO else None
        return colormaps.quantise_at(shown, self.scale, self.levels, ones)

    def _render(self) -> None:
        rows, cols = self.values.shape
        if self._fits():
            data, self.levels = colormaps.quantise(self.values, self.scale, self._expected())
            self.region, rect = None, QRectF(0, 0, cols, rows)
        else:
            self.levels = self._whole_levels()
            self.region = pooling.plan((rows, cols), *self._visible(), self._pixels())
            data = self._draw(self.region)
            rect = self._rect(self.region)
        self.image.setImage(data, autoLevels=False, levels=(0, 255), lut=self._lut())
        self.image.setRect(rect)
        self.stack.setCurrentWidget(self.graphics)
        self.bar.show()
        self._say_zoom()
        lo, hi = self.levels
        self.bar_axis.value_scale = self.scale
        self.bar_axis.setLabel(scale_caption(self.scale, self.value_name))
        self.bar_image.setRect(QRectF(0, lo, 1, hi - lo))
        self.bar.setYRange(lo, hi, padding=0)
        self.bar.setXRange(0, 1, padding=0)
        self.bar_axis.picture = None
        self.bar_axis.update()

    @staticmethod
    def _rect(region: pooling.Region) -> QRectF:
        """Where a region's image lies in cell coordinates (its last blocks may reach past the
        matrix; the view never shows beyond it)."""
        (r0, _), (c0, _), (fr, fc) = region.rows, region.cols, region.factors
        n_rows, n_cols = region.shape
        return QRectF(c0, r0, n_cols * fc, n_rows * fr)

    def _follow_view(self) -> None:
        """After a pan, zoom or resize: draw again when the blocks no longer fit the pixels or the
        view left the part drawn."""
        if self.values is None:
            return
        if self._fits():
            if self.region is not None:
                self._render()
            self._say_zoom()
            return
        if self.region is None:
            self._render()
            return
        rows, cols = self._visible()
        wanted = pooling.plan(self.values.shape, rows, cols, self._pixels())
        shape = self.values.shape
        rows = (max(0.0, rows[0]), min(float(shape[0]), rows[1]))
        cols = (max(0.0, cols[0]), min(float(shape[1]), cols[1]))
        if wanted.factors == self.region.factors and self.region.covers(rows, cols):
            self._say_zoom()
            return
        self.region = wanted
        self.image.setImage(self._draw(wanted), autoLevels=False, levels=(0, 255), lut=self._lut())
        self.image.setRect(self._rect(wanted))
        self._say_zoom()

    def _pooled_what(self) -> str:
        if self._signed():
            return "largest magnitude"
        return "max × uniform" if self.scale == colormaps.RATIO else "max"

    def _say_zoom(self) -> None:
        if self.values is None:
            self.zoom_label.setText("")
            return
        n_rows, n_cols = self.values.shape
        (y0, y1), (x0, x1) = self._visible()
        zoomed = y1 - y0 < n_rows - 1e-6 or x1 - x0 < n_cols - 1e-6
        fr, fc = self.pool_factors
        if (fr, fc) != (1, 1):
            text = f"each pixel: {self._pooled_what()} of {fr}×{fc} cells"
        else:
            text = "every cell shown"
        if zoomed:
            r0, r1 = max(0, math.floor(y0)), min(n_rows, math.ceil(y1))
            c0, c1 = max(0, math.floor(x0)), min(n_cols, math.ceil(x1))
            text += f" · rows {r0}–{r1 - 1}, columns {c0}–{c1 - 1} of {n_rows} × {n_cols}"
        self.zoom_label.setText(text)
        self.fit_button.setEnabled(zoomed)
        self.focus_button.setEnabled(self._focus_row is not None)

    # -- zoom and pan -------------------------------------------------------------------------
    def fit(self) -> None:
        """Show the whole matrix."""
        if self.values is not None:
            rows, cols = self.values.shape
            self.view.setRange(xRange=(0, cols), yRange=(0, rows), padding=0)

    def zoom(self, scale: float) -> None:
        """Zoom about the centre of the view (scale < 1: in)."""
        if self.values is not None:
            (y0, y1), (x0, x1) = self._visible()
            self.view.scaleBy((scale, scale), center=QPointF((x0 + x1) / 2, (y0 + y1) / 2))

    def pan(self, dx: float, dy: float) -> None:
        """Move the view by fractions of its width and height."""
        if self.values is not None:
            (y0, y1), (x0, x1) = self._visible()
            self.view.translateBy(x=dx * (x1 - x0), y=dy * (y1 - y0))

    def show_cells(self, rows: tuple[float, float], cols: tuple[float, float]) -> None:
        """Set the view to rows x columns (cells), kept inside the matrix."""
        n_rows, n_cols = self.values.shape
        ranges = []
        for (lo, hi), n in ((rows, n_rows), (cols, n_cols)):
            span = min(max(hi - lo, min(n, 2)), n)
            lo = min(max(lo, 0.0), n - span)
            ranges.append((lo, lo + span))
        self.view.setRange(yRange=ranges[0], xRange=ranges[1], padding=0)

    def zoom_to_focus(self) -> None:
        """Zoom in on the focus row (and column) until cells are tall enough for every label."""
        if self.values is None or self._focus_row is None:
            return
        ph, pw = self._pixels()
        ratio = self.graphics.devicePixelRatioF()
        cell = (self.left._line + 2) * ratio
        rows_shown, cols_shown = max(ph / cell, 4.0), max(pw / cell, 4.0)
        r = (self._focus_rows[0] + self._focus_rows[-1] + 1) / 2
        pinned = self.bottom.pinned
        if pinned:
            c = (pinned[0] + pinned[-1] + 1) / 2
        else:
            _, (x0, x1) = self._visible()
            c = (x0 + x1) / 2
        self.show_cells((r - rows_shown / 2, r + rows_shown / 2), (c - cols_shown / 2, c + cols_shown / 2))

    def reveal_focus(self) -> None:
        """Pan (keeping the zoom) so that the focus rows are on screen, when they are not; the
        focus column too then, if it is off screen (a focus picked in the heatmap is on screen
        already, so the view never jumps away from where the user clicked)."""
        if self.values is None or not self._focus_rows:
            return
        (y0, y1), (x0, x1) = self._visible()
        first, last = self._focus_rows[0], self._focus_rows[-1] + 1
        if first >= y0 and last <= y1 or y1 - y0 >= self.values.shape[0] - 1e-6:
            return
        cols = (x0, x1)
        pinned = self.bottom.pinned
        if pinned and not (pinned[0] >= x0 and pinned[-1] + 1 <= x1):
            middle = (pinned[0] + pinned[-1] + 1) / 2
            cols = (middle - (x1 - x0) / 2, middle + (x1 - x0) / 2)
        span = y1 - y0
        middle = (first + last) / 2 if last - first <= span else first + span / 2
        self.show_cells((middle - span / 2, middle + span / 2), cols)

    def eventFilter(self, obj, event) -> bool:
        if obj is self.graphics and event.type() == QEvent.KeyPress and self.values is not None:
            if event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier):
                return False
            key = event.key()
            step = 0.5 if event.modifiers() & Qt.ShiftModifier else 0.15
            actions = {
                Qt.Key_Plus: lambda: self.zoom(0.5), Qt.Key_Equal: lambda: self.zoom(0.5),
                Qt.Key_Minus: lambda: self.zoom(2.0), Qt.Key_Underscore: lambda: self.zoom(2.0),
                Qt.Key_0: self.fit, Qt.Key_Home: self.fit, Qt.Key_F: self.zoom_to_focus,
                Qt.Key_Left: lambda: self.pan(-step, 0), Qt.Key_Right: lambda: self.pan(step, 0),
                Qt.Key_Up: lambda: self.pan(0, -step), Qt.Key_Down: lambda: self.pan(0, step),
            }
            action = actions.get(key)
            if action is not None:
                action()
                return True
        return super().eventFilter(obj, event)

    def _apply_lut(self) -> None:
        table = self._lut()
        self.bar_image.setLookupTable(table)
        self.bar_image.setLevels((0, 255))
        if self.image.image is not None:
            self.image.setLookupTable(table)

    def _place_focus(self) -> None:
        runs: list[list[int]] = []
        if self.values is not None:
            for r in self._focus_rows:
                if not 0 <= r < self.values.shape[0]:
                    continue
                if runs and r == runs[-1][1]:
                    runs[-1][1] = r + 1
                else:
                    runs.append([r, r + 1])
        boxes = [self.focus_box] + self._focus_boxes
        while len(boxes) < len(runs):
            self._focus_boxes.append(self._new_box())
            boxes = [self.focus_box] + self._focus_boxes
        for k, box in enumerate(boxes):
            if k < len(runs):
                a, b = runs[k]
                box.setRect(QRectF(0, a, self.values.shape[1], b - a))
                box.show()
            else:
                box.hide()

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
        for box in [self.focus_box] + self._focus_boxes:
            box.setPen(pen)

    def changeEvent(self, event) -> None:
        if event.type() in (event.Type.PaletteChange, event.Type.StyleChange):
            self.apply_palette()
        super().changeEvent(event)

    # -- mouse ------------------------------------------------------------------------------
    def cell_at(self, scene_pos: QPointF) -> tuple[int, int]:
        if self.values is None or not self.view.sceneBoundingRect().contains(scene_pos):
            return -1, -1  # (zoomed in, a point on an axis maps to a cell outside the view)
        p = self.view.mapSceneToView(scene_pos)
        rows, cols = self.values.shape
        r, c = math.floor(p.y()), math.floor(p.x())
        if 0 <= r < rows and 0 <= c < cols:
            return r, c
        return -1, -1

    def peak_cell(self, r: int, c: int) -> tuple[int, int]:
        """The cell that gives the pixel under (r, c) its colour: itself when every cell is drawn,
        else the block's peak."""
        if self.pool_factors == (1, 1):
            return r, c
        block = self.region.block_of(r, c)
        pr, pc, _ = pooling.block_peak(self.values, block, signed=self._signed(), divisor=self._divisor())
        return pr, pc

    def _label(self, labels: list[str], i: int) -> str:
        return labels[i] if i < len(labels) else str(i)

    @staticmethod
    def _number(numbers: list[str] | None, i: int) -> str:
        return numbers[i] if numbers is not None and i < len(numbers) else f"#{i}"

    @classmethod
    def _span(cls, numbers: list[str] | None, first: int, last: int) -> str:
        """'#12–40': from the first token of row (column) `first` to the last of `last`."""
        return f"{cls._number(numbers, first).split('–')[0]}–{cls._number(numbers, last).split('–')[-1].lstrip('#')}"

    @staticmethod
    def _value(value: float) -> str:
        """Four decimals, or three significant digits below 0.1 (flow near 1/n: 0.00236)."""
        return f"{value:.4f}" if value == 0 or abs(value) >= 0.1 else f"{value:.3g}"

    def describe_cell(self, r: int, c: int) -> str:
        if self.pool_factors != (1, 1):
            return self.describe_block(r, c)
        row = self.row_labels[r] if r < len(self.row_labels) else str(r)
        col = self.col_labels[c] if c < len(self.col_labels) else str(c)
        value = float(self.values[r, c])
        text = (f"query “{row}” {self._number(self.row_numbers, r)}\n"
                f"key “{col}” {self._number(self.col_numbers, c)}\n{self.value_name} {self._value(value)}")
        if self.scale == colormaps.RATIO:
            n = self.values.shape[-1]
            e = float(self.expected[c]) if self.expected is not None and len(self.expected) == n else 1.0 / max(n, 1)
            if e > 0:
                text += f" = {value / e:.2f} × uniform"
        return text

    def describe_block(self, r: int, c: int) -> str:
        """The pooled pixel under cell (r, c): which cells it stands for and the value it shows."""
        r0, r1, c0, c1 = self.region.block_of(r, c)
        pr, pc = self.peak_cell(r, c)
        value = float(self.values[pr, pc])
        what = "largest magnitude" if self._signed() else "max"
        text = (f"{what} over queries {self._span(self.row_numbers, r0, r1 - 1)} × "
                f"keys {self._span(self.col_numbers, c0, c1 - 1)}\n{self.value_name} {self._value(value)}")
        divisor = self._divisor()
        if divisor is not None and divisor[pc] > 0:
            text += f" = {value / float(divisor[pc]):.2f} × uniform"
        text += (f" at query “{self._label(self.row_labels, pr)}” {self._number(self.row_numbers, pr)},"
                 f" key “{self._label(self.col_labels, pc)}” {self._number(self.col_numbers, pc)}"
                 "\nclick: focus that query · zoom in to see each cell")
        return text

    def _hide_tip(self) -> None:
        if self.hover_text:
            self.hover_text = ""
            QToolTip.hideText()

    def _on_move(self, pos: QPointF) -> None:
        r, c = self.cell_at(pos)
        if r >= 0:
            self.hover_text = self.describe_cell(r, c)
            QToolTip.showText(self.graphics.mapToGlobal(self.graphics.mapFromScene(pos)),
                              plain_tip(self.hover_text), self.graphics)
        else:
            self._hide_tip()
        self.cell_hovered.emit(r, c)

    def leaveEvent(self, event) -> None:
        self._hide_tip()
        super().leaveEvent(event)

    def _on_click(self, event) -> None:
        if event.button() != Qt.LeftButton or self.values is None:
            return
        pos = event.scenePos()
        r, c = self.cell_at(pos)
        if r >= 0:
            self.cell_clicked.emit(*self.peak_cell(r, c))
            return
        p = self.view.mapSceneToView(pos)
        if self.left.sceneBoundingRect().contains(pos):
            row = self.left.label_at(p.y())
            if row is not None:
                self.cell_clicked.emit(row, -1)  # a row label
        elif self.bottom.sceneBoundingRect().contains(pos):
            col = self.bottom.label_at(p.x())
            if col is not None:
                self.key_clicked.emit(col)  # a column label

    def grab(self, *args):
        """The heatmap as an image (exports, the clipboard): without the zoom buttons; the line
        saying what a pixel stands for stays."""
        shown = [b for b in (self.fit_button, self.focus_button) if b.isVisible()]
        for button in shown:
            button.hide()
        try:
            return super().grab(*args)
        finally:
            for button in shown:
                button.show()

    def export_png(self, path: str) -> bool:
        return self.graphics.grab().save(path, "PNG")
