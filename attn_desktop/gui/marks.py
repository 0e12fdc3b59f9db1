"""Marks drawn over the editor's text, on a transparent layer above it: tokens the model received
as its unknown token (dotted red underline), the text after a truncation cut (greyed: outside the
analysis), and the matches of Find (boxed). The layer never takes the mouse and never edits text."""

from __future__ import annotations

import bisect

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QPlainTextEdit, QWidget

UNKNOWN_COLOR = QColor(200, 30, 30)
MATCH_COLOR = QColor(255, 200, 0, 110)
CURRENT_MATCH_COLOR = QColor(255, 140, 0, 170)
CUT_VEIL_ALPHA = 175  # the page colour laid over text outside the analysis: reads as greyed


class Spans:
    """Character spans sorted by start, looked up by range."""

    def __init__(self, spans=()) -> None:
        self.spans = sorted((int(s), int(e)) for s, e in spans if e > s)
        self.starts = [s for s, _ in self.spans]

    def __len__(self) -> int:
        return len(self.spans)

    def within(self, lo: int, hi: int):
        """(index, start, end) of the spans that start in [lo, hi)."""
        i = bisect.bisect_left(self.starts, lo)
        while i < len(self.spans) and self.spans[i][0] < hi:
            yield i, *self.spans[i]
            i += 1


def range_rects(block, origin: QPointF, start: int, end: int) -> list[QRectF]:
    """One rectangle per laid-out line that characters [start, end) of `block` occupy; a range that
    runs past a wrapped line's end covers the rest of that line."""
    layout = block.layout()
    a, b = start - block.position(), min(end, block.position() + block.length() - 1) - block.position()
    rects = []
    for n in range(layout.lineCount()):
        line = layout.lineAt(n)
        first, stop = line.textStart(), line.textStart() + line.textLength()
        lo, hi = max(a, first), min(b, stop)
        if lo >= hi:
            continue
        x1 = line.cursorToX(lo)[0]
        x2 = line.cursorToX(hi)[0] if hi < stop else line.x() + line.naturalTextWidth()
        if x2 > x1:
            rects.append(QRectF(origin.x() + x1, origin.y() + line.y(), x2 - x1, line.height()))
    return rects


class EditorOverlay(QWidget):
    """A transparent layer over the editor's whole viewport that never takes the mouse; subclasses
    paint. Call `start()` once their own state is set."""

    def __init__(self, editor: QPlainTextEdit) -> None:
        super().__init__(editor.viewport())
        self.editor = editor
        self.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WA_NoSystemBackground)

    def start(self) -> None:
        self.editor.viewport().installEventFilter(self)
        self.editor.updateRequest.connect(self._follow)
        self.setGeometry(self.editor.viewport().rect())
        self.raise_()
        self.show()

    def _follow(self, _rect=None, _dy: int = 0) -> None:
        """Scrolling moves the viewport's children with its pixels: stay over the whole viewport."""
        if self.geometry() != self.editor.viewport().rect():
            self.setGeometry(self.editor.viewport().rect())
        self.update()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Resize and watched is self.editor.viewport():
            self.setGeometry(self.editor.viewport().rect())
        return False


class EditorMarks(EditorOverlay):
    def __init__(self, editor: QPlainTextEdit) -> None:
        super().__init__(editor)
        self.unknown = Spans()
        self.cut: int | None = None  # characters from here on were not analysed
        self.matches = Spans()
        self.current: int | None = None  # index into matches.spans
        self.start()

    # -- what to mark ---------------------------------------------------------------------
    def set_analysis_marks(self, unknown_spans, cut: int | None) -> None:
        self.unknown = Spans(unknown_spans)
        self.cut = cut
        self.update()

    def clear_analysis_marks(self) -> None:
        if len(self.unknown) or self.cut is not None:
            self.set_analysis_marks((), None)

    def set_matches(self, spans, current: int | None) -> None:
        self.matches = Spans(spans)
        self.current = current
        self.update()

    # -- painting -------------------------------------------------------------------------
    def _visible_blocks(self):
        ed = self.editor
        offset = ed.contentOffset()
        block = ed.firstVisibleBlock()
        height = self.height()
        while block.isValid():
            geo = ed.blockBoundingGeometry(block).translated(offset)
            if geo.top() > height:
                break
            if block.isVisible():
                yield block, geo
            block = block.next()

    def paintEvent(self, event) -> None:
        if not (len(self.unknown) or len(self.matches) or self.cut is not None):
            return
        rects = range_rects
        p = QPainter(self)
        veil = QColor(self.editor.palette().color(QPalette.Base))
        veil.setAlpha(CUT_VEIL_ALPHA)
        dotted = QPen(UNKNOWN_COLOR, 2, Qt.DotLine)
        for block, geo in self._visible_blocks():
            lo, hi = block.position(), block.position() + max(block.length() - 1, 0)
            origin = geo.topLeft()
            if self.cut is not None and hi > self.cut:
                start = max(self.cut, lo)
                for r in rects(block, origin, start, hi):
                    p.fillRect(r, veil)
                if start == self.cut and lo <= self.cut:
                    first = rects(block, origin, start, min(start + 1, hi))
                    if first:
                        r = first[0]
                        p.setPen(QPen(UNKNOWN_COLOR, 2))
                        p.drawLine(r.topLeft(), r.bottomLeft())
            for i, s, e in self.matches.within(lo, hi + 1):
                color = CURRENT_MATCH_COLOR if i == self.current else MATCH_COLOR
                for r in rects(block, origin, s, e):
                    p.fillRect(r, color)
            p.setPen(dotted)
            for _i, s, e in self.unknown.within(lo, hi + 1):
                for r in rects(block, origin, s, e):
                    y = r.bottom() - 1
                    p.drawLine(QPointF(r.left(), y), QPointF(r.right(), y))
        p.end()
