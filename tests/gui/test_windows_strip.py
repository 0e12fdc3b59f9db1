"""A document about three windows long on a 64-position tiny BERT in the real window: it is
analysed in windows; clicking a token of a later window shows the window in which that token sits
most centrally (found here by a loop over the map), with its place in the heatmap title and the
strip; the map picks another window; with windows off the too-long message offers them."""

from __future__ import annotations

import numpy as np
from lease_text import DOCUMENT, SENTENCES
from PySide6.QtCore import QPoint, Qt

from attn_desktop.gui.measures import MEASURES

TIMEOUT = 60_000


def char_point(editor, k: int) -> QPoint:
    cursor = editor.textCursor()
    cursor.setPosition(k)
    editor.setTextCursor(cursor)
    editor.ensureCursorVisible()
    cursor.clearSelection()
    a, b = editor._rect_at(k), editor._rect_at(k + 1)
    return QPoint((a.left() + b.left()) // 2, a.center().y())


def most_central(info, char: int) -> tuple[int, int]:
    best = None
    for k, tokens in enumerate(info["tokens"]):
        for j, t in enumerate(tokens):
            if t["start"] <= char < t["end"]:
                d = min(j, len(tokens) - 1 - j)
                if best is None or d > best[2]:
                    best = (k, j, d)
    return best[0], best[1]


def test_click_in_a_later_window_shows_it(window, load, qtbot, tiny_model_paths):
    load(window, tiny_model_paths["bert"])
    assert window.act_windows.isChecked()  # windows are the default for long texts
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT) as shown:
        window.document.editor.setPlainText(DOCUMENT)
    an = shown.args[0].analysis
    info = an.manifest["windows"]
    count = len(info["windows"])
    assert count >= 4 and info["size"] == 64
    strip = window.windows_strip
    assert strip.isVisible() and strip.label.text().startswith(f"window 1 of {count}, tokens 1-")
    assert "attention does not cross windows" in strip.label.text()
    assert strip.label.toolTip().lower().count("attention does not cross windows") == 1
    assert "attention does not cross windows" in window.status_tokens.text()
    assert "window 1 of" in window.heatmap.title.text()

    # a word late in the document, outside window 1: the click shows its most central window
    char = DOCUMENT.rindex("fee") + 1
    assert char >= info["windows"][0]["char_end"]
    k, j = most_central(info, char)
    assert k > 0
    editor = window.document.editor
    with qtbot.waitSignal(window.state.analysis_changed, timeout=TIMEOUT):
        qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=char_point(editor, char))
    now = window.state.analysis
    entry = info["windows"][k]
    assert now.manifest["windows"]["shown"] == k and window.state.sel.focus == j
    assert now.tokens[j].start <= char < now.tokens[j].end
    place = f"window {k + 1} of {count}, tokens {entry['token_start'] + 1}-{entry['token_end']}"
    assert place in window.heatmap.title.text() and strip.label.text().startswith(place)
    assert strip.map.shown == k
    n = entry["tokens"]
    sel = window.state.sel
    window.state.update(measure="attention", head=0, words=False)
    expected = an.arrays["window_attentions"][k, sel.layer, 0, :n, :n].astype(np.float32)
    np.testing.assert_allclose(window.heatmap.values, expected, atol=1e-6)
    # the editor highlights the focus token's row of that window over the window's tokens
    row = MEASURES["attention"].row(now, window.state.sel, j)
    np.testing.assert_allclose(row, expected[j], atol=1e-6)

    # the map picks another window; the click on a token it holds keeps it (the user chose it)
    other = 0 if k != 0 else 1
    with qtbot.waitSignal(window.state.analysis_changed, timeout=TIMEOUT):
        qtbot.mouseClick(strip.map, Qt.LeftButton, pos=strip.map.bar_rect(other).center().toPoint())
    assert window.state.analysis.manifest["windows"]["shown"] == other
    with qtbot.waitSignal(window.state.analysis_changed, timeout=TIMEOUT):
        strip.next.click()
    assert window.state.analysis.manifest["windows"]["shown"] == other + 1


def test_too_long_with_windows_off_offers_them(window, load, qtbot, tiny_model_paths):
    load(window, tiny_model_paths["bert"])
    window.act_windows.setChecked(False)
    with qtbot.waitSignal(window.analysis_failed, timeout=TIMEOUT) as failed:
        window.document.editor.setPlainText(DOCUMENT)
    assert "overlapping windows (Analysis ▸ Analyse long texts in overlapping windows)" in failed.args[0]
    assert window.state.analysis is None or "windows" not in window.state.analysis.manifest
    assert window.document.text() == DOCUMENT  # the text is kept


def test_window_settings_and_session_reopen_at_the_window_shown(window, load, qtbot, tiny_model_paths, tmp_path):
    from attn_desktop.gui.windows_strip import WindowSettings

    load(window, tiny_model_paths["bert"])
    dialog = WindowSettings(window)
    dialog.size_box.setValue(48)
    dialog.stride_box.setValue(600)  # a stride longer than the window would skip text: said, not kept
    dialog.accept()
    assert "smaller than the window (48 tokens)" in dialog.problem.text() and dialog.result() == 0
    assert window.settings.value("windows/stride") in (None, 0, "0")
    dialog.stride_box.setValue(20)
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT) as shown:
        window.document.editor.setPlainText(DOCUMENT)
        dialog.accept()
    info = shown.args[0].analysis.manifest["windows"]
    assert (info["size"], info["stride"]) == (48, 20)
    assert window.settings.value("windows/size") in (48, "48")
    count = len(info["windows"])
    strip = window.windows_strip
    with qtbot.waitSignal(window.state.analysis_changed, timeout=TIMEOUT):
        qtbot.mouseClick(strip.map, Qt.LeftButton, pos=strip.map.bar_rect(2).center().toPoint())
    focus = window.state.analysis.tokens[5]
    window.state.update(focus=5)
    path = tmp_path / "lease.attn"
    with qtbot.waitSignal(window.session_saved, timeout=TIMEOUT):
        window.save_session(str(path))
    window.document.editor.setPlainText("other text")
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT) as reopened:
        window.open_session(str(path))
    an = reopened.args[0].analysis
    assert window.document.text() == DOCUMENT
    assert an.manifest["windows"]["shown"] == 2 and len(an.manifest["windows"]["windows"]) == count
    assert strip.isVisible() and strip.label.text().startswith(f"window 3 of {count}")
    assert an.tokens[window.state.sel.focus].start == focus.start  # the focus as saved


def test_an_edit_keeps_the_window_of_the_focus_word(window, load, qtbot, tiny_model_paths):
    load(window, tiny_model_paths["bert"])
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT):
        window.document.editor.setPlainText(DOCUMENT)
    char = DOCUMENT.rindex("fee") + 1
    editor = window.document.editor
    with qtbot.waitSignal(window.state.analysis_changed, timeout=TIMEOUT):
        qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=char_point(editor, char))
    k = window.state.analysis.manifest["windows"]["shown"]
    assert k > 0
    start = window.state.analysis.tokens[window.state.sel.focus].start
    # type at the start of the text: the focus word moves right by what was typed
    cursor = editor.textCursor()
    cursor.setPosition(0)
    editor.setTextCursor(cursor)
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT):
        qtbot.keyClicks(editor, "Now ")
    qtbot.waitUntil(lambda: window.state.analysis.manifest["windows"]["shown"] > 0, timeout=TIMEOUT)
    an = window.state.analysis
    assert an.tokens[window.state.sel.focus].start == start + 4
    best, j = most_central(an.manifest["windows"], start + 4)
    assert an.manifest["windows"]["shown"] == best and window.state.sel.focus == j


def test_arrows_bring_the_windows_text_into_view(window, load, qtbot, tiny_model_paths):
    """Stepping to a window whose text is out of sight scrolls the editor to it (its shading was
    drawn off screen while the visible text stayed unshaded); the caret does not move."""
    load(window, tiny_model_paths["bert"])
    editor = window.document.editor
    editor.resize(editor.width(), 120)
    document = "\n\n".join(" ".join(SENTENCES) for _ in range(4))
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT) as shown:
        editor.setPlainText(document)
    info = shown.args[0].analysis.manifest["windows"]
    caret = editor.textCursor().position()
    strip = window.windows_strip

    def on_screen(entry) -> bool:
        view = editor.viewport().rect()
        first = editor.cursorForPosition(view.topLeft()).position()
        last = editor.cursorForPosition(view.bottomRight()).position()
        return entry["char_end"] > first and entry["char_start"] < last

    last = len(info["windows"]) - 1
    assert not on_screen(info["windows"][last])
    while window.state.analysis.manifest["windows"]["shown"] < last:
        with qtbot.waitSignal(window.state.analysis_changed, timeout=TIMEOUT):
            strip.next.click()
        assert on_screen(info["windows"][window.state.analysis.manifest["windows"]["shown"]])
    assert editor.textCursor().position() == caret
