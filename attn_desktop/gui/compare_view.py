"""Two importance vectors on the same text, side by side: two read-only copies of the document,
each highlighted by its own measure, scrolled together, with how far the two agree."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QWidget

from . import colormaps
from .document import input_text
from .editor import TokenColors, TokenEditor
from .importance import IMPORTANCE_MEASURES, ImportanceMeasure, importance_measure, method_measure
from .signed_colors import SignedTokenColors
from .validate_plots import fmt, plain_label


def highlight(editor: TokenEditor, measure: ImportanceMeasure, values: np.ndarray, sel) -> str:
    """Colour `editor` by `values` as the main editor would; returns the legend's scale part."""
    cmap, scale = measure.style(sel)
    signed = scale == colormaps.SIGNED
    in_text = [i for i in range(len(values)) if editor.has_span(i)]
    basis = values[in_text] if in_text else values
    lv = colormaps.levels(basis, scale)
    fractions = colormaps.fraction(values, scale, lv)
    pal = editor.palette()
    make = SignedTokenColors if signed else TokenColors
    colors = make(fractions, colormaps.lut(cmap), pal.color(QPalette.Base), pal.color(QPalette.Text))
    editor.set_highlight(values, colors, None, measure.value_name)
    top = float(np.abs(basis).max() if signed else basis.max()) if basis.size else 0.0
    return f"{'largest |value|' if signed else 'strongest word'} {top:.3g}"


class CompareView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.analysis = None
        self.sel = None
        self.boxes: list[QComboBox] = []
        self.editors: list[TokenEditor] = []
        self.legends: list[QLabel] = []
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(2)
        for side in range(2):
            box = QComboBox()
            box.setToolTip("The measure this side of the text is highlighted by")
            for m in IMPORTANCE_MEASURES:
                box.addItem(m.label, m.key)
            box.currentIndexChanged.connect(lambda _i: self._draw())
            editor = TokenEditor()
            editor.setReadOnly(True)
            editor.setPlaceholderText("Run Validate to compare two measures on the text.")
            editor.setTextInteractionFlags(Qt.TextSelectableByMouse)
            legend = plain_label("")
            legend.setEnabled(False)
            grid.addWidget(box, 0, side)
            grid.addWidget(legend, 1, side)
            grid.addWidget(editor, 2, side)
            self.boxes.append(box)
            self.editors.append(editor)
            self.legends.append(legend)
        self.agreement = plain_label("")
        grid.addWidget(self.agreement, 3, 0, 1, 2)
        grid.setRowStretch(2, 1)
        a, b = (e.verticalScrollBar() for e in self.editors)
        a.valueChanged.connect(b.setValue)
        b.valueChanged.connect(a.setValue)
        self.set_pair("attention_importance", "integrated_gradients")

    def set_pair(self, first: str, second: str) -> None:
        """Show these two methods (array names or core's method names)."""
        for box, name in zip(self.boxes, (first, second), strict=True):
            m = method_measure(name)
            i = box.findData(m.key) if m is not None else -1
            if i >= 0:
                with QSignalBlocker(box):
                    box.setCurrentIndex(i)
        self._draw()

    def pair(self) -> tuple[str, str]:
        return self.boxes[0].currentData(), self.boxes[1].currentData()

    def set_analysis(self, analysis, sel) -> None:
        """`analysis` whose input text is the document's, or None to clear."""
        self.analysis, self.sel = analysis, sel
        for editor in self.editors:
            if analysis is None:
                editor.set_text("")
                editor.clear_tokens()
            elif editor.toPlainText() != input_text(analysis) or editor.tokens != analysis.tokens:
                editor.set_text(input_text(analysis))
                editor.set_tokens(analysis.tokens)
        self._draw()

    def _draw(self) -> None:
        an = self.analysis
        for box in self.boxes:
            model = box.model()
            for row in range(box.count()):
                m = importance_measure(box.itemData(row))
                reason = m.unavailable(an, "self") if an is not None else "no analysis"
                model.item(row).setEnabled(reason is None)
                model.item(row).setToolTip(reason or m.what)
        if an is None:
            for legend in self.legends:
                legend.setText("")
            self.agreement.setText("")
            return
        for box, editor, legend in zip(self.boxes, self.editors, self.legends, strict=True):
            m = importance_measure(box.currentData())
            values = m.vector(an)
            if values is None:
                editor.set_highlight(None, None, None)
                legend.setText(m.unavailable(an, "self") or "")
                continue
            scale = highlight(editor, m, values, self.sel)
            legend.setText(f"{m.what} · {scale}")
        self.agreement.setText(self.pair_agreement())

    def pair_agreement(self) -> str:
        from .importance import explain_section

        section = explain_section(self.analysis).get("agreement") or {}
        names = [getattr(method_measure(n), "key", n) for n in section.get("methods") or []]
        a, b = self.pair()
        if a == b:
            return "The same measure on both sides."
        if a not in names or b not in names:
            return "No agreement figures for this pair."
        i, j = names.index(a), names.index(b)
        parts = []
        for text, key, pkey in (("Kendall τ-b", "kendall_tau", "kendall_p"), ("Spearman ρ", "spearman", "spearman_p")):
            matrix = section.get(key)
            if matrix:
                p = (section.get(pkey) or [[None]])[i][j] if section.get(pkey) else None
                parts.append(f"{text} {fmt(matrix[i][j])}" + (f" (p = {fmt(p, 2)})" if p is not None else ""))
        topk = section.get("topk") or {}
        labels = topk.get("labels") or []
        for q, k in enumerate(topk.get("k") or []):
            parts.append(f"top-k overlap ({labels[q] if q < len(labels) else f'k={k}'}) {fmt(topk['overlap'][q][i][j])}")
        la, lb = importance_measure(a).label, importance_measure(b).label
        return f"{la} vs {lb}, on absolute values without special tokens: " + " · ".join(parts)
