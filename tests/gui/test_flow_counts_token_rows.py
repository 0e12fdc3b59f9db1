"""Attention flow is computed per token row. With the words view on, the heatmap shows word rows,
so the counts in the progress line and the title say what they count: token rows, out of every
token of the text (not out of the words on screen)."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from test_words import TEXT, piece_point, words_by_loops

TIMEOUT = 60_000


def test_flow_counts_say_token_rows_in_the_words_view(window, load, analyse, demo_path, qtbot):
    load(window, demo_path)
    an = analyse(window, TEXT, type_it=False).analysis
    n = len(an.tokens)
    word = next(toks for label, toks in words_by_loops(an) if label == "indemnify")
    assert len(word) > 1
    editor = window.document.editor
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, word[0]))
    assert window.state.sel.words

    messages = []
    window.flow_runner.progressed.connect(lambda _g, _f, m: messages.append(m))
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        window.state.update(measure="flow")
    qtbot.waitUntil(lambda: window.heatmap.values is not None)

    have = sorted(int(r) for r in an.arrays["flow_rows"])
    assert set(word) <= set(have)
    assert window.heatmap.row_labels == ["indemnify"], "one word row on screen"
    title = window.heatmap.title.text()
    assert f"Attention flow · {len(have)} of {n} token rows ·" in title, title
    counts = [re.fullmatch(r"attention flow: (\d+) of (\d+) token rows( · .*)?", m) for m in messages]
    assert messages and all(counts), messages
    assert {int(c.group(2)) for c in counts} == {n} and max(int(c.group(1)) for c in counts) == len(have)
