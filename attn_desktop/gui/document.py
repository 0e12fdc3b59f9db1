"""The document panel: token strip + editor, kept in step with the shared selection."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from . import colormaps
from .editor import TokenColors, TokenEditor, TokenStrip
from .measures import MEASURES
from .signed_colors import SignedTokenColors
from .plain import plain_labels
from .state import ViewState


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
        self.legend.setEnabled(False)  # drawn in the muted text colour
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

        self.editor.user_edited.connect(self._on_edit)
        self.editor.files_dropped.connect(self.files_dropped)
        self.editor.token_clicked.connect(self._on_editor_click)
        self.strip.token_clicked.connect(self._on_strip_click)
        state.analysis_changed.connect(self._on_analysis)
        state.changed.connect(self._on_selection)

    def text(self) -> str:
        return self.editor.toPlainText()

    def set_text(self, text: str) -> None:
        self.editor.set_text(text)
        self.synced = None
        self._strip_key = None
        self.refresh()

    def _on_edit(self) -> None:
        self.synced = None
        self._strip_key = None
        self.refresh()
        self.edited.emit()

    def _on_analysis(self) -> None:
        an = self.state.analysis
        self.synced = None
        self._strip_key = None
        if an is not None and input_text(an) == self.text():
            self.editor.set_tokens(an.tokens)
            self.synced = an
        else:
            self.editor.clear_tokens()

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
            self.state.update(focus=i)
        else:
            self.note.setText("In cross-attention the query is a decoder token: pick one in the "
                              "strip above or in the heatmap rows.")
            self.note.show()

    def _on_strip_click(self, i: int) -> None:
        if self.synced is not None:
            self.state.update(focus=i)

    # -- painting -------------------------------------------------------------------------
    def refresh(self) -> None:
        an = self.state.analysis
        if an is None or self.synced is not an:
            self.editor.set_highlight(None, None, None)
            self.strip.set_tokens("", [])
            self.legend.setText("")
            self.note.setVisible(an is not None and self.synced is None and bool(self.text()))
            if an is not None:
                self.note.setText("The text has changed since the analysis shown; highlights return "
                                  "when the new analysis is ready.")
            return
        self.note.hide()
        sel = self.state.sel
        measure = MEASURES[sel.measure]
        queries, keys = an.axis_tokens(sel.set_name)
        self._update_strip(an, sel.set_name)
        row = measure.row(an, sel, sel.focus)
        cmap, scale = measure.style(sel)
        signed = scale == colormaps.SIGNED
        lut = colormaps.lut(cmap)
        on_editor = keys is an.tokens
        if row is None:
            values = None
            colors = None
            self.legend.setText("")
        else:
            # Scale to the strongest token in the text: [CLS]/[SEP] often take most of the weight
            # and would leave the words pale. Chips beyond the scale are shown at full strength.
            in_text = [i for i in range(len(row)) if self.editor.has_span(i)] if on_editor else []
            basis = row[in_text] if in_text else row
            lv = colormaps.levels(basis, scale)
            hi = float(np.abs(basis).max() if signed else basis.max()) if basis.size else 0.0
            who = queries[sel.focus].text if 0 <= sel.focus < len(queries) else "?"
            self.legend.setText(
                f"Highlight: {measure.legend(an, sel, f'“{who}” (#{sel.focus})')} · "
                f"{'largest |value|' if signed else 'strongest word'} = "
                f"{hi:.3g}" + (" · log scale" if scale == "log" else "")
                + (f" · colours from {lv[0]:.3g}" if scale == "min–max" and lv[0] > 0 else ""))
            fractions = colormaps.fraction(row, scale, lv)
            values = row
            pal = self.editor.palette()
            make = SignedTokenColors if signed else TokenColors
            colors = make(fractions, lut, pal.color(QPalette.Base), pal.color(QPalette.Text))
        focus_in_editor = sel.focus if queries is an.tokens else None
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


def input_text(analysis) -> str:
    """The text the user typed: for a causal LM that generated, the analysis text also holds the
    continuation."""
    gen = analysis.manifest.get("generation") or {}
    if "input_chars" in gen and analysis.decoder_tokens is None:
        return analysis.text[: int(gen["input_chars"])]
    return analysis.text
