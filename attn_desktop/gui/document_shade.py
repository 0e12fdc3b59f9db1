"""The rest of a windowed document shaded with its document-level importance (core.explain.document).

The editor shades the tokens of the window on screen; a document-level vector (IG, leave-one-out,
... of one target over the whole document) has a value for every token of the document, so this
layer shades the text outside that window too, with the editor's own colours on one scale for the
whole document (`document_levels`, which the editor uses for such a vector). The colours are
multiplied into the page, so the text stays as it was. The layer never takes the mouse."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor, QPainter, QPalette

from ..core import windows as core_windows
from ..core.explain.document import ARRAY_PREFIX, INDEX_ARRAY, document_token_list, is_document
from ..core.views import words
from . import colormaps
from .editor import TokenColors
from .importance import ImportanceMeasure
from .marks import EditorOverlay, Spans, range_rects
from .measures import MEASURES
from .signed_colors import SignedTokenColors


def _document_vector(analysis, sel):
    """(measure, document vector, document tokens) when `sel.measure` is a document-level vector of
    this windowed analysis, else None."""
    measure = MEASURES.get(sel.measure)
    if not (isinstance(measure, ImportanceMeasure) and core_windows.is_windowed(analysis)
            and is_document(analysis.manifest.get("explain"))):
        return None
    doc = analysis.arrays.get(ARRAY_PREFIX + measure.key)
    if doc is None or INDEX_ARRAY not in analysis.arrays or doc.ndim != 1:
        return None
    tokens = document_token_list(analysis)
    return (measure, np.asarray(doc, np.float64), tokens) if len(tokens) == len(doc) else None


def _document_units(analysis, sel, tokens):
    return words.group_words(analysis.text, tokens) if sel.words else words.pieces(tokens)


def document_levels(analysis, sel, lv: tuple[float, float]) -> tuple[float, float]:
    """The editor's colour range for a document-level vector: the whole document's (every window is
    then drawn on one scale, and the text outside the window by DocumentShade on the same); `lv`
    (the window's) for any other measure and on the × uniform scale, which is relative to a window."""
    found = _document_vector(analysis, sel)
    if found is None:
        return lv
    measure, doc, tokens = found
    _cmap, scale = measure.style(sel)
    if scale == colormaps.RATIO:
        return lv
    return colormaps.levels(words.sum_columns(doc, _document_units(analysis, sel, tokens)), scale)


def outside_colours(analysis, sel, base: QColor, text: QColor) -> list[tuple[int, int, QColor]]:
    """(start, end, colour) of every word (or token) of the document outside the window shown, for
    the document-level measure `sel.measure`; [] when there is nothing to shade."""
    found = _document_vector(analysis, sel)
    if found is None:
        return []
    measure, doc, tokens = found
    index = analysis.arrays[INDEX_ARRAY]
    k = core_windows.shown_window(analysis)
    row = index[k, :len(analysis.tokens)]
    inside = np.zeros(len(doc), dtype=bool)
    inside[row[row >= 0]] = True
    units = _document_units(analysis, sel, tokens)
    values = words.sum_columns(doc, units).astype(np.float64)
    if not len(units):
        return []
    unit_inside = np.add.reduceat(inside.astype(np.int64), units.starts) > 0
    if not unit_inside.any():
        return []
    cmap, scale = measure.style(sel)
    window_tokens = int(inside.sum())
    expected = units.sizes / max(window_tokens, 1)  # × uniform: as a row over the window's tokens
    lv = (colormaps.levels(values[unit_inside], scale, expected[unit_inside]) if scale == colormaps.RATIO
          else colormaps.levels(values, scale))  # the editor's range (document_levels)
    fractions = colormaps.fraction(values, scale, lv, expected)
    make = SignedTokenColors if colormaps.centred(scale) else TokenColors
    colours = make(fractions, colormaps.lut(colormaps.map_for(cmap, scale)), base, text)
    out = []
    for u in np.flatnonzero(~unit_inside):
        first, last = tokens[int(units.starts[u])], tokens[units.tokens(int(u))[-1]]
        colour = colours.color(int(u))
        if colour is not None and last.end > first.start:
            out.append((first.start, last.end, colour))
    return out


class DocumentShade(EditorOverlay):
    """A layer over the editor's viewport that shades the document outside the window shown when a
    document-level importance measure is on screen."""

    def __init__(self, window) -> None:
        editor = window.document.editor
        super().__init__(editor)
        self.window = window
        self.spans = Spans()
        self.colours: dict[tuple[int, int], QColor] = {}
        editor.textChanged.connect(self.clear)
        window.state.analysis_changed.connect(self.refresh)
        window.state.changed.connect(lambda _fields: self.refresh())
        self.start()

    def clear(self) -> None:
        if len(self.spans):
            self.spans, self.colours = Spans(), {}
            self.update()

    def refresh(self) -> None:
        an = self.window.state.analysis
        shaded = []
        if an is not None and an.text == self.editor.toPlainText():
            pal = self.editor.palette()
            shaded = outside_colours(an, self.window.state.sel, pal.color(QPalette.Base), pal.color(QPalette.Text))
        self.spans = Spans((s, e) for s, e, _c in shaded)
        self.colours = {(s, e): c for s, e, c in shaded}
        self.update()

    def paintEvent(self, event) -> None:
        if not len(self.spans):
            return
        ed = self.editor
        p = QPainter(self)
        p.setCompositionMode(QPainter.CompositionMode_Multiply)  # the page takes the colour, text stays
        offset, height = ed.contentOffset(), self.height()
        block = ed.firstVisibleBlock()
        while block.isValid():
            geo = ed.blockBoundingGeometry(block).translated(offset)
            if geo.top() > height:
                break
            if block.isVisible():
                lo, hi = block.position(), block.position() + max(block.length() - 1, 0)
                for _i, s, e in self.spans.within(lo, hi + 1):  # a word never crosses a line break
                    for r in range_rects(block, geo.topLeft(), s, min(e, hi)):
                        p.fillRect(r, self.colours[(s, e)])
            block = block.next()
        p.end()
