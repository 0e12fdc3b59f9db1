"""Text shown in the window is never markup: a model folder name, a file name, the document, a
session's token texts and model name that look like HTML are shown literally in every label,
tooltip and title, and nothing is rendered (an <img src="/dev/zero"> label would read /dev/zero
until memory runs out)."""

import dataclasses
import shutil

from conftest import ANALYSIS_TIMEOUT, LOAD_TIMEOUT
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QTextDocument
from PySide6.QtGui import Qt as GuiQt
from PySide6.QtWidgets import QAbstractItemView, QApplication, QLabel, QWidget

IMG = '<img src="/dev/zero">'
BOLD = "<b>x</b>"
FONT = "<font size=100>"
MARKUP = (IMG, BOLD, FONT, "<img src=")
TEXT = f"The rent {BOLD} is due {IMG} on {FONT}Monday."


def rendered_as_markup(text: str, fmt=Qt.AutoText) -> bool:
    return fmt == Qt.RichText or (fmt == Qt.AutoText and GuiQt.mightBeRichText(text))


def shown(text: str, fmt=Qt.AutoText) -> str:
    """What the user reads (only for text already known to hold no raw markup when rich)."""
    if not rendered_as_markup(text, fmt):
        return text
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


def literal(text: str, needle: str) -> bool:
    """`needle` is what the user reads in `text`, not markup (raw markup is never rendered here)."""
    if rendered_as_markup(text) and any(m in text for m in MARKUP):
        return False
    return needle in shown(text)


def markup_rendered(window) -> list[str]:
    """Every label, tooltip and item tooltip of the window that would render one of MARKUP."""
    found = []
    for label in window.findChildren(QLabel):
        if any(m in label.text() for m in MARKUP) and rendered_as_markup(label.text(), label.textFormat()):
            found.append(f"label {label.objectName() or label.text()[:40]!r}")
    for widget in [window, *window.findChildren(QWidget)]:
        tip = widget.toolTip()
        if any(m in tip for m in MARKUP) and rendered_as_markup(tip):
            found.append(f"tooltip of {type(widget).__name__}: {tip[:40]!r}")
    for view in window.findChildren(QAbstractItemView):
        model = view.model()
        if model is None:
            continue
        for r in range(model.rowCount()):
            for c in range(model.columnCount()):
                tip = model.data(model.index(r, c), Qt.ToolTipRole)
                if isinstance(tip, str) and any(m in tip for m in MARKUP) and rendered_as_markup(tip):
                    found.append(f"item tooltip in {type(view).__name__}: {tip[:40]!r}")
    return found


def test_markup_from_every_source_is_shown_literally(in_process_window, tiny_model_paths, qtbot,
                                                     tmp_path, monkeypatch):
    w = in_process_window
    # a model whose folder name is markup
    folder = tmp_path / f"{FONT}model"
    shutil.copytree(tiny_model_paths["bert"], folder)
    with qtbot.waitSignal(w.model_loaded, timeout=LOAD_TIMEOUT):
        w.load_model(str(folder), "cpu")
    assert shown(w.model_panel.card_title.text()) == f"{FONT}model"
    assert FONT in w.status_model.text() and w.status_model.textFormat() == Qt.PlainText
    assert markup_rendered(w) == []

    # a text file whose name and content are markup
    doc = tmp_path / f"{IMG.replace('/', '')}{BOLD.replace('/', '')}.txt"
    doc.write_text(TEXT, encoding="utf-8")
    with qtbot.waitSignal(w.analysis_shown, timeout=ANALYSIS_TIMEOUT):
        assert w.open_text_file(str(doc))
    assert w.document.text() == TEXT
    assert doc.name in w.windowTitle()
    assert markup_rendered(w) == []
    w.grab()  # paints every widget

    # a session whose tokens and model name are markup, in a file whose name is markup
    from attn_desktop.core.store.session import save_session

    an = w.state.analysis
    tokens = list(an.tokens)
    assert tokens[0].start == tokens[0].end  # [CLS]: shown as a chip in the strip
    for i, text in enumerate((IMG, IMG, BOLD, FONT)):
        tokens[i] = dataclasses.replace(tokens[i], text=text)
    model = {**an.manifest["model"], "name": FONT + "name"}
    hostile = dataclasses.replace(an, tokens=tokens, manifest={**an.manifest, "model": model})
    path = tmp_path / f"{FONT}session.attn"
    save_session(hostile, path)
    with qtbot.waitSignal(w.analysis_shown, timeout=ANALYSIS_TIMEOUT):
        w.open_session(str(path))
    w.state.update(focus=1)
    legend = w.document.legend
    assert IMG in legend.text() and legend.textFormat() == Qt.PlainText
    assert any(path.name in m and FONT + "name" in m for _, m in w.messages.history)
    assert w.messages.text.textFormat() == Qt.PlainText
    chip = w.document.strip.chips[0]
    assert literal(chip.toolTip(), f"“{IMG}”")
    assert markup_rendered(w) == []
    w.grab()

    # hover tooltips drawn by hand: the editor's token under the mouse and the heatmap's cell
    tips = []
    monkeypatch.setattr("attn_desktop.gui.editor.QToolTip.showText", lambda _pos, text, *a: tips.append(text))
    editor = w.document.editor
    centre = editor.token_rects(2)[0].center().toPoint()
    move = QMouseEvent(QEvent.MouseMove, QPointF(centre), QPointF(editor.viewport().mapToGlobal(centre)),
                       Qt.NoButton, Qt.NoButton, Qt.NoModifier)
    QApplication.sendEvent(editor.viewport(), move)
    assert tips and literal(tips[-1], f"“{BOLD}”")
    heatmap = w.heatmap
    cell = heatmap.view.mapViewToScene(QPointF(1.5, 1.5))
    assert heatmap.cell_at(cell) == (1, 1)
    heatmap._on_move(cell)
    assert IMG in heatmap.hover_text and literal(tips[-1], IMG)
