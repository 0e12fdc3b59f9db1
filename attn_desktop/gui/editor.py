"""The document editor: tokens highlighted in place by the value of the chosen measure, a frame
around the focus token and the token under the mouse, and a strip for tokens with no text span."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette, QPen, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSizePolicy,
    QTextEdit,
    QToolButton,
    QToolTip,
    QWidget,
)

from ..core.analysis import Token
from .heatmap import elide

MAX_ALPHA = 0.85


def luminance(c: QColor) -> float:
    def lin(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(c.redF()) + 0.7152 * lin(c.greenF()) + 0.0722 * lin(c.blueF())


def contrast(a: QColor, b: QColor) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def blend(base: QColor, color, alpha: float) -> QColor:
    r, g, b = (int(round(base_c * (1 - alpha) + c * alpha))
               for base_c, c in zip((base.red(), base.green(), base.blue()), color))
    return QColor(r, g, b)


def readable_on(bg: QColor, preferred: QColor) -> QColor:
    if contrast(bg, preferred) >= 4.5:
        return preferred
    black, white = QColor(0, 0, 0), QColor(255, 255, 255)
    return black if contrast(bg, black) >= contrast(bg, white) else white


def token_colors(fractions: np.ndarray, lut: np.ndarray, base: QColor) -> list[QColor | None]:
    """Background per token: the colormap colour at the value, faded into the page by the value,
    so weak tokens stay page-coloured and the strong ones carry the heatmap's colour."""
    out: list[QColor | None] = []
    for f in fractions:
        if not np.isfinite(f) or f < 0.02:
            out.append(None)
            continue
        out.append(blend(base, lut[int(round(f * 255))], MAX_ALPHA * float(f)))
    return out


class TokenEditor(QPlainTextEdit):
    token_clicked = Signal(int)
    user_edited = Signal()
    files_dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setPlaceholderText("Paste or type a document here, or drop a text file.")
        self.setLineWrapMode(QPlainTextEdit.WidgetWidth)
        self.tokens: list[Token] = []
        self.token_indices: list[int] = []  # token index of each entry in `tokens`' span map
        self.values: np.ndarray | None = None  # per token (analysis order); NaN: no value
        self.colors: list[QColor | None] = []
        self.focus: int | None = None
        self.hover: int | None = None
        self.value_name = "weight"
        self._char_token = np.full(0, -1, dtype=np.int32)
        self._programmatic = False
        self._press: QPoint | None = None
        self.textChanged.connect(self._on_text_changed)

    # -- content ----------------------------------------------------------------------------
    def set_text(self, text: str) -> None:
        """Replace the document without counting as a user edit."""
        self._programmatic = True
        try:
            self.setPlainText(text)
        finally:
            self._programmatic = False

    def _on_text_changed(self) -> None:
        if self._programmatic:
            return
        self.clear_tokens()
        self.user_edited.emit()

    def set_tokens(self, tokens: list[Token]) -> None:
        """Tokens whose spans index this editor's current text."""
        self.tokens = list(tokens)
        n = len(self.toPlainText())
        self._char_token = np.full(n, -1, dtype=np.int32)
        for i, t in enumerate(self.tokens):
            if t.end > t.start and t.end <= n:
                self._char_token[t.start : t.end] = i
        self.values, self.colors, self.focus, self.hover = None, [], None, None
        self.setExtraSelections([])

    def clear_tokens(self) -> None:
        if self.tokens or self.values is not None:
            self.set_tokens([])

    def has_span(self, i: int) -> bool:
        t = self.tokens[i]
        return t.end > t.start and t.end <= len(self._char_token)

    def set_highlight(self, values: np.ndarray | None, fractions: np.ndarray | None,
                      lut: np.ndarray | None, focus: int | None, value_name: str = "weight") -> None:
        self.values = None if values is None else np.asarray(values, dtype=np.float64)
        self.focus = focus
        self.value_name = value_name
        base = self.palette().color(QPalette.Base)
        text = self.palette().color(QPalette.Text)
        self.colors = [] if fractions is None else token_colors(fractions, lut, base)
        selections = []
        doc = self.document()
        for i, color in enumerate(self.colors):
            if color is None or not self.has_span(i):
                continue
            t = self.tokens[i]
            sel = QTextEdit.ExtraSelection()
            cursor = QTextCursor(doc)
            cursor.setPosition(t.start)
            cursor.setPosition(t.end, QTextCursor.KeepAnchor)
            sel.cursor = cursor
            fmt = QTextCharFormat()
            fmt.setBackground(color)
            fmt.setForeground(readable_on(color, text))
            sel.format = fmt
            selections.append(sel)
        self.setExtraSelections(selections)
        self.viewport().update()

    def token_background(self, i: int) -> QColor | None:
        return self.colors[i] if i < len(self.colors) else None

    # -- geometry ---------------------------------------------------------------------------
    def char_at(self, point: QPoint) -> int:
        """Index of the character drawn under `point` (viewport coordinates), or -1."""
        cursor = self.cursorForPosition(point)
        pos = cursor.position()
        n = len(self._char_token)
        for k in (pos, pos - 1):
            if not 0 <= k < n:
                continue
            a = self._rect_at(k)
            b = self._rect_at(k + 1)
            if a.top() == b.top() and a.left() <= point.x() < b.left() and a.top() <= point.y() <= a.bottom():
                return k
        return -1

    def token_at(self, point: QPoint) -> int:
        k = self.char_at(point)
        return int(self._char_token[k]) if k >= 0 else -1

    def _rect_at(self, pos: int) -> QRect:
        c = QTextCursor(self.document())
        c.setPosition(pos)
        return self.cursorRect(c)

    def token_rects(self, i: int) -> list[QRect]:
        """One rectangle per line the token occupies, in viewport coordinates."""
        t = self.tokens[i]
        rects: list[QRect] = []
        start = self._rect_at(t.start)
        prev = start
        for k in range(t.start + 1, t.end + 1):
            r = self._rect_at(k)
            if r.top() != prev.top() or k == t.end:
                right = r.left() if r.top() == start.top() else prev.right()
                rects.append(QRect(start.left(), start.top(), max(right - start.left(), 2), start.height()))
                start = r
            prev = r
        return rects

    def describe(self, i: int) -> str:
        t = self.tokens[i]
        parts = [f"“{t.text}”", f"token {i}"]
        if t.special:
            parts.append("special")
        if self.values is not None and i < len(self.values) and np.isfinite(self.values[i]):
            parts.append(f"{self.value_name} {self.values[i]:.4f}")
        if i == self.focus:
            parts.append("focus")
        return " · ".join(parts)

    # -- events -----------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if not self.tokens:
            return
        p = QPainter(self.viewport())
        accent = self.palette().color(QPalette.Highlight)
        for i, width, style in ((self.focus, 2, Qt.SolidLine), (self.hover, 1, Qt.DashLine)):
            if i is None or not 0 <= i < len(self.tokens) or not self.has_span(i):
                continue
            pen = QPen(accent if i == self.focus else self.palette().color(QPalette.Text), width, style)
            p.setPen(pen)
            for r in self.token_rects(i):
                p.drawRect(r.adjusted(0, 0, -1, -1))
        p.end()

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)
        i = self.token_at(event.position().toPoint()) if self.tokens else -1
        hover = i if i >= 0 else None
        if hover != self.hover:
            self.hover = hover
            self.viewport().update()
        if hover is None:
            QToolTip.hideText()
        else:
            QToolTip.showText(event.globalPosition().toPoint(), self.describe(hover), self.viewport())

    def leaveEvent(self, event) -> None:
        if self.hover is not None:
            self.hover = None
            self.viewport().update()
        super().leaveEvent(event)

    def mousePressEvent(self, event) -> None:
        self._press = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        super().mouseReleaseEvent(event)
        pos = event.position().toPoint()
        if (event.button() == Qt.LeftButton and self._press is not None
                and (pos - self._press).manhattanLength() < 4 and not self.textCursor().hasSelection()):
            i = self.token_at(pos)
            if i >= 0:
                self.token_clicked.emit(i)
        self._press = None

    def canInsertFromMimeData(self, source) -> bool:
        if source.hasUrls() and any(u.isLocalFile() for u in source.urls()):
            return True
        return super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source) -> None:
        paths = [u.toLocalFile() for u in source.urls() if u.isLocalFile()] if source.hasUrls() else []
        if paths:
            self.files_dropped.emit(paths)
            return
        super().insertFromMimeData(source)


class TokenStrip(QScrollArea):
    """Chips for tokens the editor cannot show in place: special tokens without a span,
    generated tokens, decoder tokens."""

    token_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        inner = QWidget()
        self.row = QHBoxLayout(inner)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.setSpacing(3)
        self.caption = QLabel()
        self.row.addWidget(self.caption)
        self.row.addStretch(1)
        self.setWidget(inner)
        self.chips: dict[int, QToolButton] = {}
        self.setFixedHeight(self.caption.sizeHint().height() + 12)

    def set_tokens(self, caption: str, tokens: list[tuple[int, Token]]) -> None:
        for chip in self.chips.values():
            self.row.removeWidget(chip)
            chip.deleteLater()
        self.chips = {}
        self.caption.setText(caption)
        for pos, (i, t) in enumerate(tokens):
            chip = QToolButton()
            chip.setText(elide(t.text, 18))
            chip.setToolTip(f"“{t.text}” · token {i}")
            chip.setAutoRaise(False)
            chip.clicked.connect(lambda _=False, i=i: self.token_clicked.emit(i))
            self.row.insertWidget(1 + pos, chip)
            self.chips[i] = chip
        self.setVisible(bool(tokens) or bool(caption))

    def set_highlight(self, values: np.ndarray | None, colors: list[QColor | None],
                      focus: int | None, value_name: str) -> None:
        text = self.palette().color(QPalette.ButtonText)
        accent = self.palette().color(QPalette.Highlight)
        for i, chip in self.chips.items():
            color = colors[i] if i < len(colors) else None
            style = []
            if color is not None:
                style.append(f"background-color: {color.name()}; color: {readable_on(color, text).name()};")
            border = f"2px solid {accent.name()}" if i == focus else "1px solid palette(mid)"
            style.append(f"border: {border}; border-radius: 3px; padding: 1px 4px;")
            chip.setStyleSheet("QToolButton {" + " ".join(style) + "}")
            tip = chip.toolTip().split(" · ")[:2]
            if values is not None and i < len(values) and np.isfinite(values[i]):
                tip.append(f"{value_name} {values[i]:.4f}")
            chip.setToolTip(" · ".join(tip))
