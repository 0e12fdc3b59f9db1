"""The window tells the truth (issue 12): what the model saw, no result for older text beside newer
text, truncation marked and said, the model's real name, one focus rule, messages that fit."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from attn_desktop.core.store.session import load_session

ANALYSIS_TIMEOUT = 60_000
TEXT_A = "The bank approved the loan."
TEXT_B = "The patient reports chest pain since Monday."
EMOJI_TEXT = "The patient 😷 reports pain."


def _shown(window, qtbot, action):
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT) as blocker:
        action()
    return blocker.args[0].analysis


def _views_empty(window):
    grid = window.model_view.grid
    return (window.heatmap.values is None and window.heatmap.row_labels == []
            and grid.thumbs is None and window.document.editor.tokens == []
            and window.document.strip.chips == {} and window.document.editor.values is None)


def test_opening_another_document_clears_every_view_of_the_first(window, load, analyse, tiny_model_paths,
                                                                 tmp_path, qtbot):
    load(window, tiny_model_paths["bert"])
    a = analyse(window, TEXT_A, type_it=False).analysis
    assert window.heatmap.values is not None and window.model_view.grid.thumbs is not None
    b_file = tmp_path / "b.txt"
    b_file.write_text(TEXT_B, encoding="utf-8")
    with qtbot.waitSignal(window.text_reader.succeeded, timeout=ANALYSIS_TIMEOUT):
        window.open_text_file(str(b_file))
    # at once, before B's analysis arrives: nothing of A anywhere
    assert window.document.text() == TEXT_B
    assert _views_empty(window)
    assert f"{len(a.tokens)} tokens" not in window.status_tokens.text()
    assert window.status_focus.text() == ""
    b = _shown(window, qtbot, lambda: None) if window.state.analysis is a else window.state.analysis
    assert b.text == TEXT_B
    assert window.heatmap.values is not None
    assert window.document.editor.tokens == b.tokens

    # typing: the views of the older text go at the keystroke, not when the new analysis arrives
    qtbot.keyClicks(window.document.editor, "x")
    assert _views_empty(window)
    assert "changed" in window.document.note.text()
    window.debounce.stop()
    window.analyzer.invalidate()


def test_unknown_tokens_marked_in_the_editor_and_counted(window, load, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    window.document.set_text(EMOJI_TEXT)
    an = _shown(window, qtbot, window.request_analysis)
    emoji = [i for i, t in enumerate(an.tokens) if t.unknown]
    assert [an.tokens[i].text for i in emoji] == ["😷"]
    assert an.tokens[emoji[0]].piece == "[UNK]"
    marks = window.document.marks
    assert marks.unknown.spans == [(an.tokens[emoji[0]].start, an.tokens[emoji[0]].end)]
    assert "1 unknown" in window.status_tokens.text()
    # visibly: red dots under the emoji, none under a known word
    editor = window.document.editor
    qtbot.waitUntil(lambda: editor.token_rects(emoji[0]) != [])
    image = editor.viewport().grab().toImage()

    def red_below(i):
        r = editor.token_rects(i)[0]
        y = int(r.bottom()) - 1
        return sum(1 for x in range(int(r.left()), int(r.right()))
                   if _is_red(QColor(image.pixel(x, y))))

    known = next(i for i, t in enumerate(an.tokens) if t.text == "patient")
    assert red_below(emoji[0]) > 0
    assert red_below(known) == 0
    # the tooltip says what the model received
    assert "[UNK]" in editor.describe(emoji[0])


def _is_red(c: QColor) -> bool:
    return c.red() > 150 and c.green() < 90 and c.blue() < 90


def test_truncation_names_the_window_setting_is_marked_and_saved(window, load, tiny_model_paths, tmp_path, qtbot):
    load(window, tiny_model_paths["bert"])
    window.act_truncate.setChecked(False)
    window.act_windows.setChecked(False)  # on, a long text is analysed in windows (test_windows_strip)
    text = "The tenant shall pay the rent on the first day of each month. " * 8
    with qtbot.waitSignal(window.analysis_failed, timeout=ANALYSIS_TIMEOUT) as failed:
        window.document.set_text(text)
        window.request_analysis()
    assert "--truncate" not in failed.args[0]
    assert "Analysis ▸ Truncate texts longer than the model accepts" in failed.args[0]
    assert window.messages.level == "error" and window.messages.isVisible()

    an = _shown(window, qtbot, lambda: window.act_truncate.setChecked(True))
    assert not window.messages.isVisible()  # the red banner went with the success
    cut = an.manifest["truncation"]["analysed_chars"]
    assert 0 < cut < len(text)
    assert window.document.marks.cut == cut
    assert "truncated" in window.status_tokens.text()
    assert str(cut) in window.status_tokens.toolTip()
    # greyed: a character after the cut is drawn paler than the same word before it
    editor = window.document.editor
    cursor = editor.textCursor()
    cursor.setPosition(cut)
    editor.setTextCursor(cursor)
    editor.centerCursor()  # scrolled: the marks stay over the text they mark
    qtbot.waitUntil(lambda: len(_char_rects(editor, cut - 4, cut + 4)) == 8)
    assert window.document.marks.geometry() == editor.viewport().rect()
    image = editor.viewport().grab().toImage()
    letters = [k for k in range(cut - 12, cut + 12) if text[k].isalpha()]
    before = max(_ink(editor, image, k, k + 1) for k in letters if k < cut)
    after = max(_ink(editor, image, k, k + 1) for k in letters if k >= cut)
    assert after < 0.7 * before
    with qtbot.waitSignal(window.session_saved, timeout=ANALYSIS_TIMEOUT):
        window.save_session(str(tmp_path / "t.attn"))
    saved = load_session(tmp_path / "t.attn")
    assert saved.manifest["truncation"]["truncated"] is True
    assert saved.manifest["truncation"]["analysed_chars"] == cut


def _char_rects(editor, start, end):
    from PySide6.QtGui import QTextCursor

    rects = []
    for pos in range(start, end):
        c = QTextCursor(editor.document())
        c.setPosition(pos)
        r = editor.cursorRect(c)
        if editor.viewport().rect().contains(r):
            rects.append(r)
    return rects


def _ink(editor, image, start, end) -> float:
    """Darkest pixel (0 = black) across the characters' boxes."""
    darkest = 255.0
    for pos in range(start, end):
        from PySide6.QtGui import QTextCursor

        c = QTextCursor(editor.document())
        c.setPosition(pos)
        r = editor.cursorRect(c)
        for x in range(r.left(), r.left() + 8):
            for y in range(r.top(), r.bottom()):
                if 0 <= x < image.width() and 0 <= y < image.height():
                    darkest = min(darkest, QColor(image.pixel(x, y)).lightness())
    return 255.0 - darkest


def test_sessions_name_the_model_by_its_real_name(window, load, demo_path, tmp_path, qtbot):
    load(window, demo_path)
    _shown(window, qtbot, lambda: (window.document.set_text(TEXT_A), window.request_analysis()))
    with qtbot.waitSignal(window.session_saved, timeout=ANALYSIS_TIMEOUT):
        window.save_session(str(tmp_path / "d.attn"))
    assert load_session(tmp_path / "d.attn").manifest["model"]["name"] == "all-MiniLM-L6-v2"
    _shown(window, qtbot, lambda: window.open_session(str(tmp_path / "d.attn")))
    assert "(model all-MiniLM-L6-v2)" in window.messages.text.text()


def test_default_focus_is_the_command_lines_rule(window, load, analyse, tiny_model_paths):
    from attn_desktop.core.propagate.propagation import default_focus

    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT_A, type_it=False).analysis
    assert window.state.sel.focus == default_focus(an) == 0  # [CLS] for an encoder
    assert window.status_focus.text() == "focus “[CLS]” (#0), the default"
    assert "first token" in window.status_focus.toolTip()
    load(window, tiny_model_paths["gpt2"])
    window.generate_box.setValue(0)
    an = analyse(window, TEXT_A, type_it=False).analysis
    assert window.state.sel.focus == default_focus(an) == len(an.tokens) - 1  # last for a causal LM
    assert window.status_focus.text().endswith(", the default")
    assert "last token" in window.status_focus.toolTip()


def test_messages_fit_the_moment(window, tiny_model_paths, loaded_models, tmp_path, qtbot):
    # a text while the model is still loading: not "load a model"
    window.load_model(str(tiny_model_paths["bert"]), "cpu")
    window.document.set_text(TEXT_A)
    window.request_analysis()
    assert window.messages.isVisible()
    assert "loading" in window.messages.text.text()
    assert "Load a model" not in window.messages.text.text()
    qtbot.waitUntil(lambda: not window.loader.busy, timeout=ANALYSIS_TIMEOUT)
    if window.analyzer.busy:
        qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT).wait()
    qtbot.waitUntil(lambda: not window.analyzer.busy, timeout=ANALYSIS_TIMEOUT)


def test_edited_session_without_a_model_does_not_promise_highlights(window, loaded_models, tmp_path, qtbot):
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.store.session import save_session

    path = save_session(analyze(loaded_models("bert"), TEXT_A), tmp_path / "s.attn")
    _shown(window, qtbot, lambda: window.open_session(str(path)))
    assert window.loaded is None
    qtbot.keyClicks(window.document.editor, "x")
    note = window.document.note.text()
    assert "return when the new analysis is ready" not in note
    assert "load a model" in note
    assert _views_empty(window)


def test_find_bar(window, qtbot):
    window.document.set_text("the loan, the bank, THE end")
    window.activateWindow()
    window.act_find.trigger()
    bar = window.find_bar
    assert bar.isVisible()
    qtbot.keyClicks(bar.field, "the")
    assert bar.matches == [(0, 3), (10, 13), (20, 23)]
    assert window.document.marks.matches.spans == bar.matches
    assert bar.count.text() == "1 of 3"
    qtbot.keyClick(bar.field, Qt.Key_Return)
    cursor = window.document.editor.textCursor()
    assert (cursor.selectionStart(), cursor.selectionEnd()) == (10, 13)
    assert bar.count.text() == "2 of 3"
    qtbot.keyClick(bar.field, Qt.Key_Return, Qt.ShiftModifier)
    assert window.document.editor.textCursor().selectionStart() == 0
    qtbot.keyClick(bar.field, Qt.Key_Escape)
    assert not bar.isVisible()
    assert len(window.document.marks.matches) == 0


def test_help_guide(window, qtbot):
    window.act_guide.trigger()
    from PySide6.QtWidgets import QApplication, QDialog, QTextBrowser

    dialogs = [w for w in QApplication.topLevelWidgets() if isinstance(w, QDialog) and w.isVisible()]
    assert dialogs
    text = dialogs[-1].findChild(QTextBrowser).toPlainText()
    for phrase in ("Row i", "Rollout", "flow", "clue, not proof", "[UNK]"):
        assert phrase in text
    dialogs[-1].close()


def test_model_pieces_in_tooltip_and_heatmap_labels(window, load, demo_path, qtbot):
    load(window, demo_path)
    window.state.update(words=False) if hasattr(window.state.sel, "words") else None
    an = _shown(window, qtbot, lambda: (window.document.set_text("Patient to réévaluer CHF 😷."),
                                        window.request_analysis()))
    if hasattr(window.state.sel, "words"):
        window.state.update(words=False)
    editor = window.document.editor
    eva = next(i for i, t in enumerate(an.tokens) if t.text == "éva")
    assert "##eva" in editor.describe(eva)
    plain = next(i for i, t in enumerate(an.tokens) if t.text == "to")
    assert "model" not in editor.describe(plain)
    labels = window.heatmap.col_labels
    assert any("[UNK]" in label for label in labels)
    assert any("éva" in label and "eva" in label.replace("éva", "") for label in labels)
    assert np.isfinite(window.heatmap.values).all()


def test_old_sessions_without_pieces_open_with_plain_labels(window, qtbot):
    from pathlib import Path

    path = Path(__file__).parents[1] / "fixtures" / "v1-bert.attn"
    an = _shown(window, qtbot, lambda: window.open_session(str(path)))
    assert all(t.piece is None for t in an.tokens)
    assert "‹" not in "".join(window.heatmap.col_labels + window.heatmap.row_labels)
    assert "unknown" not in window.status_tokens.text()
    editor = window.document.editor
    assert all("model saw" not in editor.describe(i) for i in range(len(an.tokens)))
