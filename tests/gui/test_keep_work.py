"""The window keeps the user's work and place (issue 12): asking before unsaved text is lost, the
title's modified marker and session name, the view a session was saved with, the focus word
across edits, the layer across measures."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from attn_desktop.core.store.session import load_session
from attn_desktop.gui import keep_work

ANALYSIS_TIMEOUT = 60_000
TEXT = "The bank approved the loan."
REAL_ASK = keep_work.ask_unsaved


def _shown(window, qtbot, action):
    with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT) as blocker:
        action()
    return blocker.args[0].analysis


@pytest.fixture
def answer(monkeypatch):
    """Answer the real Save / Discard / Cancel box with the button given."""
    monkeypatch.setattr(keep_work, "ask_unsaved", REAL_ASK)
    asked = []

    def set_answer(button):
        def exec_(box):
            asked.append(box.text())
            assert box.standardButtons() == QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel
            return int(button.value) if hasattr(button, "value") else int(button)

        monkeypatch.setattr(QMessageBox, "exec", exec_)
        return asked

    return set_answer


def test_quitting_with_edited_text_asks(window, qtbot, answer, tmp_path, monkeypatch):
    qtbot.keyClicks(window.document.editor, "My own notes")
    assert window.isWindowModified()
    assert "[*]" in window.windowTitle()

    asked = answer(QMessageBox.Cancel)
    assert window.close() is False
    assert window.isVisible() and asked and window.document.text() == "My own notes"

    target = tmp_path / "notes.txt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    answer(QMessageBox.Save)
    assert window.close() is True
    assert target.read_text(encoding="utf-8") == "My own notes"


def test_discard_quits_and_unedited_text_does_not_ask(window, qtbot, answer, tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(TEXT, encoding="utf-8")
    asked = answer(QMessageBox.Cancel)
    with qtbot.waitSignal(window.text_reader.succeeded, timeout=ANALYSIS_TIMEOUT):
        window.open_text_file(str(path))
    assert not window.isWindowModified()
    assert window.windowTitle().startswith("a.txt")
    window.debounce.stop()
    assert window.close() is True
    assert asked == []


def test_save_as_names_the_session_in_the_title(window, load, analyse, tiny_model_paths, tmp_path, qtbot):
    load(window, tiny_model_paths["bert"])
    analyse(window, TEXT)
    assert window.isWindowModified()
    with qtbot.waitSignal(window.session_saved, timeout=ANALYSIS_TIMEOUT):
        window.save_session(str(tmp_path / "lease review.attn"))
    assert not window.isWindowModified()
    assert window.windowTitle().startswith("lease review.attn")


def test_reopened_session_restores_layer_head_measure_focus_and_scroll(window, load, analyse,
                                                                       tiny_model_paths, tmp_path, qtbot):
    load(window, tiny_model_paths["bert"])
    text = "\n".join("bank." for _ in range(24))  # 50 tokens: fits the tiny model, scrolls
    an = analyse(window, text, type_it=False).analysis
    window.resize(900, 500)
    editor = window.document.editor
    bar = editor.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 2)
    word = max(i for i, t in enumerate(an.tokens) if t.text == "bank")
    window.state.update(layer=1, head=2, focus=word, words=False)
    bar.setValue(bar.maximum() - 1)
    saved_scroll = bar.value()
    path = tmp_path / "v.attn"
    with qtbot.waitSignal(window.session_saved, timeout=ANALYSIS_TIMEOUT):
        window.save_session(str(path))
    view = load_session(path).manifest["view"]
    assert (view["layer"], view["head"], view["focus"], view["measure"], view["scroll"]) == (
        1, 2, word, "attention", saved_scroll)

    window.state.update(layer=0, head="max", focus=1, words=True)
    bar.setValue(0)
    _shown(window, qtbot, lambda: window.open_session(str(path)))
    sel = window.state.sel
    assert (sel.layer, sel.head, sel.focus, sel.measure, sel.words) == (1, 2, word, "attention", False)
    qtbot.waitUntil(lambda: bar.value() == saved_scroll)


def test_editing_keeps_the_focus_on_the_same_word(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    an = analyse(window, TEXT, type_it=False).analysis
    loan = next(i for i, t in enumerate(an.tokens) if t.text == "loan")
    window.state.update(focus=loan)
    editor = window.document.editor
    cursor = editor.textCursor()
    cursor.setPosition(0)
    editor.setTextCursor(cursor)
    new = _shown(window, qtbot, lambda: qtbot.keyClicks(editor, "Yes. "))
    assert new.text == "Yes. " + TEXT
    assert new.tokens[window.state.sel.focus].text == "loan"
    assert window.state.sel.focus != loan  # the word moved; the focus followed it

    # an edit inside the focus word: the word is gone, the default focus applies
    cursor.setPosition(new.tokens[window.state.sel.focus].start + 2)
    editor.setTextCursor(cursor)
    newer = _shown(window, qtbot, lambda: qtbot.keyClicks(editor, "zz"))
    from attn_desktop.gui.state import default_focus

    assert window.state.sel.focus == default_focus(newer)


def test_switching_to_flow_and_back_keeps_the_layer(window, load, analyse, tiny_model_paths, qtbot):
    load(window, tiny_model_paths["bert"])
    analyse(window, TEXT, type_it=False)
    window.state.update(layer=1)
    window.state.update(measure="flow")
    assert window.state.sel.measure == "flow"
    qtbot.waitUntil(lambda: not window.propagation.busy, timeout=ANALYSIS_TIMEOUT)
    window.state.update(measure="attention")
    assert window.state.sel.layer == 1
    window.state.update(measure="rollout")
    qtbot.waitUntil(lambda: not window.propagation.busy, timeout=ANALYSIS_TIMEOUT)
    assert window.state.sel.layer == 1
    assert window.selection_bar.layer_box.value() == 1


def test_opening_another_document_over_edited_text_asks(window, qtbot, answer, tmp_path):
    qtbot.keyClicks(window.document.editor, "Draft clause")
    other = tmp_path / "other.txt"
    other.write_text("Other text.", encoding="utf-8")
    asked = answer(QMessageBox.Cancel)
    assert window.open_text_file(str(other)) is None
    assert window.open_session(str(tmp_path / "x.attn")) is None
    assert len(asked) == 2 and window.document.text() == "Draft clause"
    answer(QMessageBox.Discard)
    with qtbot.waitSignal(window.text_reader.succeeded, timeout=ANALYSIS_TIMEOUT):
        window.open_text_file(str(other))
    assert window.document.text() == "Other text." and not window.isWindowModified()
