"""Text from documents, tokens, files and models is shown as plain text, never as markup.

Qt guesses whether a QLabel's text or a tooltip is rich text from the text itself, so a token
`<img src="/dev/zero">` would be rendered (and read), and `<b>`/`<font>` would restyle the view.
Labels that can show such text get the plain-text format; tooltips, which have no format of
their own, are escaped when Qt would take them for markup.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import Qt as GuiQt


def plain_labels(*labels):
    """Show these labels' text literally, whatever it contains."""
    for label in labels:
        label.setTextFormat(Qt.PlainText)
    return labels[0] if len(labels) == 1 else labels


def plain_tip(text) -> str:
    """A tooltip that shows `text` literally: unchanged when Qt would not take it for markup,
    otherwise escaped inside a paragraph that keeps its spaces and line breaks."""
    text = str(text)
    if not GuiQt.mightBeRichText(text):
        return text
    return f"<p style='white-space:pre-wrap'>{html.escape(text, quote=False)}</p>"
