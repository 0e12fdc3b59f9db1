"""The document editor: tokens highlighted in place by the value of the chosen measure, a frame
around the focus token and the token under the mouse, and a strip for tokens with no text span."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, Qt, Signal
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
from ..core.tokens import model_pieces
from .heatmap import elide
from .plain import plain_labels, plain_tip

MAX_ALPHA = 0.85


def luminance(c: QColor) -> float:
    return float(_luminance(np.array([[c.red(), c.green(), c.blue()]], np.float64))[0])


def _luminance(rgb: np.ndarray) -> np.ndarray:
    v = rgb / 255.0
    v = np.where(v <= 0.03928, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return v @ np.array([0.2126, 0.7152, 0.0722])


def contrast(a: QColor, b: QColor) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def readable_on(bg: QColor, preferred: QColor) -> QColor:
    if contrast(bg, preferred) >= 4.5:
        return preferred
    black, white = QColor(0, 0, 0), QColor(255, 255, 255)
    return black if contrast(bg, black) >= contrast(bg, white) else white


class TokenColors:
    """Background per token: the colormap colour at the value, faded into the page by the value,
    so weak tokens stay page-coloured and strong ones carry the heatmap's colour. Vectorised;
    QColors are made only for the tokens that get painted."""

    def __init__(self, fractions: np.ndarray, lut: np.ndarray, base: QColor, text: QColor) -> None:
        f = np.nan_to_num(np.asarray(fractions, dtype=np.float64), nan=0.0)
        self.shown = f >= 0.02
        alpha = (MAX_ALPHA * f)[:, None]
        page = np.array([base.red(), base.green(), base.blue()], np.float64)
        mapped = lut[np.clip(np.rint(f * 255), 0, 255).astype(np.intp)].astype(np.float64)
        self.rgb = np.rint(page * (1 - alpha) + mapped * alpha).astype(np.uint8)
        lum = _luminance(self.rgb.astype(np.float64))
        text_lum = luminance(text)
        hi, lo = np.maximum(lum, text_lum), np.minimum(lum, text_lum)
        self.recolour = self.shown & ((hi + 0.05) / (lo + 0.05) < 4.5)  # text needs another colour
        self.dark_text = lum > 0.179  # black reads better than white above this luminance

    def __len__(self) -> int:
        return len(self.shown)

    def color(self, i: int) -> QColor | None:
        if not 0 <= i < len(self.shown) or not self.shown[i]:
            return None
        return QColor(*map(int, self.rgb[i]))

    def text_color(self, i: int) -> QColor:
        return QColor(0, 0, 0) if self.dark_text[i] else QColor(255, 255, 255)


class TokenEditor(QPlainTextEdit):
    token_clicked = Signal(int)
    token_toggled = Signal(int)  # Ctrl+click: add the word to the selection, or take it out
    span_selected = Signal(int, int)  # a drag selected the characters [start, end)
    user_edited = Signal()
    files_dropped = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setPlaceholderText("Paste or type a document here, or drop a text file.")
        self.setLineWrapMode(QPlainTextEdit.WidgetWidth)
        self.tokens: list[Token] = []
        self.values: np.ndarray | None = None  # per token (analysis order); NaN: no value
        self.colors: TokenColors | None = None
        self._order = np.zeros(0, dtype=np.intp)  # spanned tokens sorted by start
        self._starts = np.zeros(0, dtype=np.int64)
        self.focus: int | None = None
        self.hover: int | None = None
        self.units = None  # core.views.words.Units when the highlight is by words, else None (pieces)
        self.marked: list[int] = []  # tokens of the focus word or of the selection: framed
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
        spanned = []
        for i, t in enumerate(self.tokens):
            if t.end > t.start and t.end <= n:
                self._char_token[t.start : t.end] = i
                spanned.append(i)
        starts = np.array([self.tokens[i].start for i in spanned], dtype=np.int64)
        order = np.argsort(starts, kind="stable")
        self._order = np.array(spanned, dtype=np.intp)[order]
        self._starts = starts[order]
        self.values, self.colors, self.focus, self.hover = None, None, None, None
        self.units, self.marked = None, []
        self.setExtraSelections([])
        self.viewport().update()

    def clear_tokens(self) -> None:
        if self.tokens or self.values is not None:
            self.set_tokens([])

    def has_span(self, i: int) -> bool:
        t = self.tokens[i]
        return t.end > t.start and t.end <= len(self._char_token)

    def set_highlight(self, values: np.ndarray | None, colors: TokenColors | None,
                      focus: int | None, value_name: str = "weight") -> None:
        """Backgrounds are painted under the text (paintEvent), only for tokens on screen; extra
        selections are used only to recolour text that would not be readable on its background."""
        self.values = None if values is None else np.asarray(values, dtype=np.float64)
        self.colors = colors
        self.focus = focus
        self.value_name = value_name
        selections = []
        if colors is not None:
            doc = self.document()
            for i in np.flatnonzero(colors.recolour[: len(self.tokens)]):
                if not self.has_span(int(i)):
                    continue
                t = self.tokens[int(i)]
                sel = QTextEdit.ExtraSelection()
                cursor = QTextCursor(doc)
                cursor.setPosition(t.start)
                cursor.setPosition(t.end, QTextCursor.KeepAnchor)
                sel.cursor = cursor
                fmt = QTextCharFormat()
                fmt.setForeground(colors.text_color(int(i)))
                sel.format = fmt
                selections.append(sel)
        self.setExtraSelections(selections)
        self.viewport().update()

    def set_units(self, units, marked) -> None:
        """Words (core.views.words.Units over this editor's tokens) or None for pieces; `marked`: the
        tokens framed as the focus (a whole word, or every word of a selection)."""
        self.units = units if units is not None and units.n_tokens == len(self.tokens) else None
        self.marked = [int(t) for t in marked if 0 <= t < len(self.tokens)]
        self.viewport().update()

    def unit_tokens(self, i: int) -> list[int]:
        """The tokens shown together with token i: its word, or itself."""
        return self.units.expand([i]) if self.units is not None else [i]

    def token_background(self, i: int) -> QColor | None:
        return None if self.colors is None else self.colors.color(i)

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

    def token_rects(self, i: int) -> list[QRectF]:
        """One rectangle per line the token occupies, in viewport coordinates."""
        t = self.tokens[i]
        block = self.document().findBlock(t.start)
        if not block.isValid():
            return []
        origin = self.blockBoundingGeometry(block).translated(self.contentOffset()).topLeft()
        return self._span_rects(block, origin, t.start, t.end)

    @staticmethod
    def _span_rects(block, origin: QPointF, start: int, end: int) -> list[QRectF]:
        layout = block.layout()
        a = start - block.position()
        b = min(end, block.position() + block.length() - 1) - block.position()
        first, last = layout.lineForTextPosition(a), layout.lineForTextPosition(b)
        if not first.isValid():
            return []
        last_no = last.lineNumber() if last.isValid() else first.lineNumber()
        rects = []
        for n in range(first.lineNumber(), last_no + 1):
            line = layout.lineAt(n)
            lo = max(a, line.textStart())
            hi = min(b, line.textStart() + line.textLength())
            x1, _ = line.cursorToX(lo)
            x2, _ = line.cursorToX(hi)
            if x2 > x1:
                rects.append(QRectF(origin.x() + x1, origin.y() + line.y(), x2 - x1, line.height()))
        return rects

    def visible_token_rects(self, clip: QRect):
        """(token index, rectangle) for every coloured token in the visible blocks."""
        if self.colors is None or not len(self._order):
            return
        offset = self.contentOffset()
        block = self.firstVisibleBlock()
        shown = self.colors.shown
        while block.isValid():
            geo = self.blockBoundingGeometry(block).translated(offset)
            if geo.top() > clip.bottom():
                break
            if block.isVisible() and geo.bottom() >= clip.top():
                first_char, end_char = self._chars_in(block, geo.top(), clip)
                lo = int(np.searchsorted(self._starts, block.position(), "left"))
                lo = max(lo, int(np.searchsorted(self._starts, first_char, "right")) - 1)  # one may start above
                hi = int(np.searchsorted(self._starts, end_char, "left"))
                for i in self._order[lo:hi]:
                    if i < len(shown) and shown[i]:
                        t = self.tokens[i]
                        for r in self._span_rects(block, geo.topLeft(), t.start, t.end):
                            yield int(i), r
            block = block.next()

    @staticmethod
    def _chars_in(block, top: float, clip: QRect) -> tuple[int, int]:
        """The document positions of the block's lines that reach into `clip` (a long paragraph
        holds thousands of tokens; only those on its visible lines are drawn)."""
        layout = block.layout()
        first = last = None
        for n in range(layout.lineCount()):
            line = layout.lineAt(n)
            y = top + line.y()
            if y > clip.bottom():
                break
            if y + line.height() >= clip.top():
                first = line if first is None else first
                last = line
        if first is None:
            return block.position(), block.position()
        return (block.position() + first.textStart(),
                block.position() + last.textStart() + last.textLength() + 1)

    def describe(self, i: int) -> str:
        t = self.tokens[i]
        if self.units is not None and len(self.unit_tokens(i)) > 1:
            group = self.unit_tokens(i)
            word = self.units.labels[int(self.units.of_token[i])]
            pieces = " ".join(self.tokens[k].text for k in group)
            parts = [f"“{word}”", f"word of tokens {group[0]}–{group[-1]} ({pieces})"]
        else:
            parts = [f"“{t.text}”", f"token {i}"]
        seen = model_pieces([self.tokens[k] for k in self.unit_tokens(i)])
        if seen:
            parts.append(f"the model saw: {seen}")
        if t.special:
            parts.append("special")
        if self.values is not None and i < len(self.values) and np.isfinite(self.values[i]):
            parts.append(f"{self.value_name} {self.values[i]:.4f}")
        if i == self.focus or i in self.marked:
            parts.append("focus" if len(self.marked) <= len(self.unit_tokens(i)) else "selected")
        return " · ".join(parts)

    def frame_rects(self, tokens) -> list[QRectF]:
        """Rectangles around the given tokens, one per run on a line (a word gets one frame)."""
        rects = sorted((r for i in tokens if 0 <= i < len(self.tokens) and self.has_span(i)
                        for r in self.token_rects(i)), key=lambda r: (r.top(), r.left()))
        merged: list[QRectF] = []
        space = self.fontMetrics().horizontalAdvance(" ") + 1
        for r in rects:
            last = merged[-1] if merged else None
            if (last is not None and abs(last.top() - r.top()) < 1 and r.left() - last.right() <= space):
                merged[-1] = last.united(r)
            else:
                merged.append(QRectF(r))
        return merged

    # -- events -----------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        if self.colors is not None and self.tokens:
            p = QPainter(self.viewport())
            rgb = self.colors.rgb
            for i, rect in self.visible_token_rects(event.rect()):
                p.fillRect(rect, QColor(int(rgb[i, 0]), int(rgb[i, 1]), int(rgb[i, 2])))
            p.end()
        super().paintEvent(event)
        if not self.tokens:
            return
        p = QPainter(self.viewport())
        accent = self.palette().color(QPalette.Highlight)
        focus = self.marked or ([] if self.focus is None else self.unit_tokens(self.focus))
        hover = [] if self.hover is None else self.unit_tokens(self.hover)
        for tokens, pen in ((focus, QPen(accent, 2, Qt.SolidLine)),
                            (hover, QPen(self.palette().color(QPalette.Text), 1, Qt.DashLine))):
            p.setPen(pen)
            for r in self.frame_rects(tokens):
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
            QToolTip.showText(event.globalPosition().toPoint(), plain_tip(self.describe(hover)), self.viewport())

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
        if event.button() == Qt.LeftButton and self._press is not None:
            cursor = self.textCursor()
            if (pos - self._press).manhattanLength() < 4 and not cursor.hasSelection():
                i = self.token_at(pos)
                if i >= 0:
                    if event.modifiers() & Qt.ControlModifier:
                        self.token_toggled.emit(i)
                    else:
                        self.token_clicked.emit(i)
            elif cursor.hasSelection() and self.tokens:
                self.span_selected.emit(cursor.selectionStart(), cursor.selectionEnd())
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
        self.caption = plain_labels(QLabel())
        self.row.addWidget(self.caption)
        self.row.addStretch(1)
        self.setWidget(inner)
        self.chips: dict[int, QToolButton] = {}
        self.setFixedHeight(self.caption.sizeHint().height() + 12)

    def set_tokens(self, caption: str, tokens: list[tuple[int, Token]]) -> None:
        for chip in self.chips.values():
            self.row.removeWidget(chip)
            chip.hide()  # deleteLater waits for the event loop; never show a stale chip meanwhile
            chip.setParent(None)
            chip.deleteLater()
        self.chips = {}
        self.caption.setText(caption)
        for pos, (i, t) in enumerate(tokens):
            chip = QToolButton()
            chip.setText(elide(t.text, 18))
            chip.base_tip = f"“{t.text}” · token {i}"
            chip.setToolTip(plain_tip(chip.base_tip))
            chip.setAutoRaise(False)
            chip.clicked.connect(lambda _=False, i=i: self.token_clicked.emit(i))
            self.row.insertWidget(1 + pos, chip)
            self.chips[i] = chip
        self.setVisible(bool(tokens) or bool(caption))

    def set_highlight(self, values: np.ndarray | None, colors: TokenColors | None,
                      focus: int | None, value_name: str) -> None:
        text = self.palette().color(QPalette.ButtonText)
        accent = self.palette().color(QPalette.Highlight)
        for i, chip in self.chips.items():
            color = None if colors is None else colors.color(i)
            style = []
            if color is not None:
                style.append(f"background-color: {color.name()}; color: {readable_on(color, text).name()};")
            border = f"2px solid {accent.name()}" if i == focus else "1px solid palette(mid)"
            style.append(f"border: {border}; border-radius: 3px; padding: 1px 4px;")
            chip.setStyleSheet("QToolButton {" + " ".join(style) + "}")
            tip = [chip.base_tip]
            if values is not None and i < len(values) and np.isfinite(values[i]):
                tip.append(f"{value_name} {values[i]:.4f}")
            chip.setToolTip(plain_tip(" · ".join(tip)))
