"""The document panel: token strip + editor, kept in step with the shared selection."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core.views.words import tokens_in_span
from . import colormaps
from .contrast import make_secondary
from .document_shade import document_levels
from .editor import TokenColors, TokenEditor, TokenStrip
from .marks import EditorMarks
from .measures import MEASURES
from .plain import plain_labels
from .signed_colors import SignedTokenColors
from .state import ViewState
from .units import axis_units, focus_row, query_group, uniform_expected


class DocumentPanel(QWidget):
    edited = Signal()  # the user changed the text: the analysis is stale
    files_dropped = Signal(list)

    def __init__(self, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.editor = TokenEditor()
        self.strip = TokenStrip()
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        make_secondary(self.legend)  # muted, but at WCAG AA contrast (a disabled label's grey is not)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.hide()
        plain_labels(self.legend, self.note)  # they quote token text
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.strip)
        layout.addWidget(self.legend)
        layout.addWidget(self.note)
        layout.addWidget(self.editor, 1)
        self.synced = None  # the Analysis whose token spans index the editor's text
        self._strip_key: tuple | None = None
        # (analysis, selection, measure) -> why there is no row for the focus token; the window
        # sets it (it knows which jobs run)
        self.missing_note = lambda an, sel, measure: f"{measure.label} has no row for token {sel.focus}."
        # () -> what happens to a text the analysis shown no longer matches; the window sets it
        self.stale_note = lambda: ("The text has changed since the analysis shown; highlights return "
                                   "when the new analysis is ready.")
        self.marks = EditorMarks(self.editor)  # unknown tokens, the truncation cut, find matches

        self.editor.user_edited.connect(self._on_edit)
        self.editor.files_dropped.connect(self.files_dropped)
        self.editor.token_clicked.connect(self._on_editor_click)
        self.editor.token_toggled.connect(self._on_editor_toggle)
        self.editor.span_selected.connect(self._on_editor_span)
        self.strip.token_clicked.connect(self._on_strip_click)
        state.analysis_changed.connect(self._on_analysis)
        state.changed.connect(self._on_selection)

    def text(self) -> str:
        return self.editor.toPlainText()

    def set_text(self, text: str) -> None:
        self.editor.set_text(text)
        self.editor.clear_tokens()  # the spans index the old text
        self.synced = None
        self._strip_key = None
        self.marks.clear_analysis_marks()
        self.refresh()

    def _on_edit(self) -> None:
        self.synced = None
        self._strip_key = None
        self.marks.clear_analysis_marks()
        self.refresh()
        self.edited.emit()

    def _on_analysis(self) -> None:
        an = self.state.analysis
        self.synced = None
        self._strip_key = None
        if an is not None and input_text(an) == self.text():
            self.editor.set_tokens(an.tokens)
            self.synced = an
            self.marks.set_analysis_marks([(t.start, t.end) for t in an.tokens if t.unknown], analysed_chars(an))
        else:
            self.editor.clear_tokens()
            self.marks.clear_analysis_marks()

    def _on_selection(self, _fields) -> None:
        self.refresh()

    # -- clicks ---------------------------------------------------------------------------
    def _query_side_is_editor(self) -> bool:
        an = self.state.analysis
        return an is not None and an.axis_tokens(self.state.sel.set_name)[0] is an.tokens

    def _on_editor_click(self, i: int) -> None:
        if self.synced is None:
            return
        if self._query_side_is_editor():
            self.state.update(focus=i, picked=())
        else:
            self.note.setText("In cross-attention the query is a decoder token: pick one in the "
                              "strip above or in the heatmap rows.")
            self.note.show()

    def _on_strip_click(self, i: int) -> None:
        if self.synced is not None:
            self.state.update(focus=i, picked=())

    def _pick(self, tokens: set[int], focus: int) -> None:
        """Make `tokens` (whole words in words mode) the query: one word is just the focus."""
        an, sel = self.state.analysis, self.state.sel
        qu, _ = axis_units(an, sel)
        alone = set(qu.expand([focus]))
        self.state.update(focus=focus, picked=() if tokens == alone else tuple(sorted(tokens)))

    def _on_editor_toggle(self, i: int) -> None:
        """Ctrl+click: the word joins the selection, or leaves it."""
        if self.synced is None or not self._query_side_is_editor():
            return
        an, sel = self.state.analysis, self.state.sel
        qu, _ = axis_units(an, sel)
        current, word = set(query_group(an, sel)), set(qu.expand([i]))
        chosen = current - word if word <= current else current | word
        if not chosen:
            return  # the last word stays: there is always a query
        focus = sel.focus if sel.focus in chosen else (i if i in chosen else min(chosen))
        self._pick(chosen, focus)

    def _on_editor_span(self, start: int, end: int) -> None:
        """A drag over the text: every word (or piece) it touches becomes the query."""
        if self.synced is None or not self._query_side_is_editor():
            return
        an, sel = self.state.analysis, self.state.sel
        qu, _ = axis_units(an, sel)
        touched = [t for t in tokens_in_span(an.tokens, start, end) if self.editor.has_span(t)]
        if touched:
            chosen = set(qu.expand(touched))
            self._pick(chosen, min(chosen))

    # -- painting -------------------------------------------------------------------------
    def refresh(self) -> None:
        an = self.state.analysis
        if an is None or self.synced is not an:
            self.editor.set_highlight(None, None, None)
            self.strip.set_tokens("", [])
            self.legend.setText("")
            self.note.setVisible(an is not None and self.synced is None and bool(self.text()))
            if an is not None:
                self.note.setText(self.stale_note())
            return
        self.note.hide()
        sel = self.state.sel
        measure = MEASURES[sel.measure]
        queries, keys = an.axis_tokens(sel.set_name)
        self._update_strip(an, sel.set_name)
        # words mode: the focus word's (or the selection's) row, by words (gui.units)
        focus_values = focus_row(an, sel, measure)
        row = None if focus_values is None else focus_values.per_token()
        cmap, scale = measure.style(sel)
        signed = scale == colormaps.SIGNED
        lut = colormaps.lut(colormaps.map_for(cmap, scale))
        on_editor = keys is an.tokens
        if row is None:
            values = None
            colors = None
            self.legend.setText("")
        else:
            # Scale to the strongest word in the text: [CLS]/[SEP] often take most of the weight
            # and would leave the words pale. Chips beyond the scale are shown at full strength.
            units, unit_values = focus_values.units, focus_values.values
            expected = uniform_expected(units)
            in_text = ([u for u in range(len(units)) if self.editor.has_span(int(units.starts[u]))]
                       if on_editor else [])
            pick = np.array(in_text if in_text else range(len(units)), dtype=np.intp)
            basis = unit_values[pick]
            lv = colormaps.levels(basis, scale, expected[pick])
            window_lv, lv = lv, document_levels(an, sel, lv)  # a windowed document's vector: one scale
            strength = np.abs(basis) if signed else basis
            if scale == colormaps.RATIO:  # the word most above chance, not the one with most pieces
                strength = basis / np.maximum(expected[pick], 1e-12)
            top = int(pick[int(np.argmax(strength))]) if basis.size else -1
            hi = float(unit_values[top]) if top >= 0 else 0.0
            unit = "word" if sel.words else "token"
            if signed:
                strongest = f"largest |value| = {float(np.abs(basis).max()) if basis.size else 0.0:.3g}"
                if lv != window_lv:
                    strongest += f" in this window, {lv[1]:.3g} in the document (the scale)"
            elif top < 0:
                strongest = ""
            elif scale == colormaps.RATIO:
                strongest = (f"most above uniform: “{units.labels[top]}” = {hi:.3g}, "
                             f"{hi / max(float(expected[top]), 1e-12):.1f}× uniform")
            else:
                strongest = f"strongest {unit} “{units.labels[top]}” = {hi:.3g}"
            self.legend.setText(
                f"Highlight: {measure.legend(an, sel, focus_values.label)} · {strongest}"
                + (" · log scale" if scale == "log" else "")
                + (" · page colour at 1× uniform" if scale == colormaps.RATIO else "")
                + (f" · colours from {lv[0]:.3g}" if scale == "min–max" and lv[0] > 0 else ""))
            self.legend.setToolTip(measure.title_tip(an, sel))
            fractions = colormaps.fraction(unit_values, scale, lv, expected)[units.of_token]
            values = row
            pal = self.editor.palette()
            make = SignedTokenColors if colormaps.centred(scale) else TokenColors
            colors = make(fractions, lut, pal.color(QPalette.Base), pal.color(QPalette.Text))
        focus_in_editor = sel.focus if queries is an.tokens else None
        query_units, key_units = axis_units(an, sel)
        self.editor.set_units(key_units if on_editor and sel.words else None,
                              query_group(an, sel) if queries is an.tokens else [])
        if on_editor:
            self.editor.set_highlight(values, colors, focus_in_editor, measure.value_name)
        else:
            self.editor.set_highlight(None, None, focus_in_editor, measure.value_name)
        strip_tokens = queries if sel.set_name in ("decoder", "cross") else an.tokens
        strip_values = values if keys is strip_tokens else None
        strip_colors = colors if keys is strip_tokens else None
        focus = sel.focus if queries is strip_tokens else None
        self.strip.set_highlight(strip_values, strip_colors, focus, measure.value_name)
        if row is None and measure.key != "attention":
            self.note.setText(self.missing_note(an, sel, measure))
            self.note.show()

    def _update_strip(self, an, set_name: str) -> None:
        key = (id(an), set_name in ("decoder", "cross"))
        if key == self._strip_key:
            return
        self._strip_key = key
        if key[1]:
            tokens = an.decoder_tokens or []
            self.strip.set_tokens("Decoder:", list(enumerate(tokens)))
            return
        n = len(self.text())
        outside = [(i, t) for i, t in enumerate(an.tokens) if not (t.end > t.start and t.end <= n)]
        self.strip.set_tokens("Not in the text:" if outside else "", outside)


def analysed_chars(analysis) -> int | None:
    """Where a truncated analysis cut the text (characters from there on were not analysed), else None."""
    info = analysis.manifest.get("truncation") or {}
    if not info.get("truncated"):
        return None
    cut = info.get("analysed_chars")
    if not isinstance(cut, int):  # sessions written before the cut was recorded
        spans = [t.end for t in analysis.tokens if t.end > t.start and not t.generated]
        cut = max(spans, default=0)
    return cut


def input_text(analysis) -> str:
    """The text the user typed: for a causal LM that generated, the analysis text also holds the
    continuation."""
    gen = analysis.manifest.get("generation") or {}
    if "input_chars" in gen and analysis.decoder_tokens is None:
        return analysis.text[: int(gen["input_chars"])]
    return analysis.text
