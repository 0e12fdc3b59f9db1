"""The heatmap and the editor kept together on long documents: a token focused from the heatmap (a
cell, a row label or a column label) is scrolled into view in the editor; the heatmap pans to a
token focused in the editor itself (gui.heatmap.Heatmap.reveal_focus)."""

from __future__ import annotations

from .units import same_axis


def reveal_token(editor, token: int) -> bool:
    """Scroll the editor so that the token's text is on screen, when none of it is; the caret and
    the selection stay where they are. False when the token has no text in this editor."""
    if not 0 <= token < len(editor.tokens) or not editor.has_span(token):
        return False
    t = editor.tokens[token]
    view = editor.viewport().rect()
    first = editor.cursorForPosition(view.topLeft()).position()
    last = editor.cursorForPosition(view.bottomRight()).position()
    if t.end > first and t.start < last:
        return True
    block = editor.document().findBlock(t.start)
    layout = block.layout()
    line = layout.lineForTextPosition(t.start - block.position()).lineNumber() if layout is not None else 0
    rows = max(1, view.height() // max(editor.fontMetrics().lineSpacing(), 1))
    bar = editor.verticalScrollBar()
    bar.setValue(max(0, block.firstLineNumber() + max(line, 0) - rows // 3))  # a third down, with context above
    return True


def key_token(analysis, sel, view, column: int) -> int | None:
    """The query token a heatmap column stands for (the first piece of its word), when the keys
    are the query tokens themselves; else None (cross-attention keys are another text)."""
    if not same_axis(analysis, sel) or not 0 <= column < len(view.col_units):
        return None
    return int(view.col_units.starts[column])
