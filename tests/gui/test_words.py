"""Words, not word pieces, in the real window on the demo model: clicking a piece focuses its
word, the heatmap and the editor show words (query = mean of the pieces' rows, key = sum of the
pieces' columns), pieces are one toggle away (remembered), and several words selected with
Ctrl+click or a drag are shown together. Reference values come from explicit loops here."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextCursor

from attn_desktop.core.propagate import propagation
from attn_desktop.gui.measures import MEASURES

TIMEOUT = 60_000
TEXT = "The Tenant shall indemnify the Landlord against all claims."


def words_by_loops(an):
    """[(label, token indices)]: tokens whose spans touch inside letters form one word."""
    out = []
    for i, t in enumerate(an.tokens):
        prev = an.tokens[i - 1] if i else None
        joins = (prev is not None and not t.special and not prev.special and t.end > t.start
                 and prev.end == t.start and an.text[t.start].isalnum() and an.text[prev.end - 1].isalnum())
        if joins:
            out[-1][1].append(i)
        else:
            out.append([None, [i]])
    for w in out:
        first, last = an.tokens[w[1][0]], an.tokens[w[1][-1]]
        w[0] = an.text[first.start:last.end] if len(w[1]) > 1 else first.text
    return [(label, toks) for label, toks in out]


def word_matrix_by_loops(m, groups):
    g = len(groups)
    out = np.zeros((g, g))
    for a, (_, qs) in enumerate(groups):
        for b, (_, ks) in enumerate(groups):
            out[a, b] = sum(float(m[q, k]) for q in qs for k in ks) / len(qs)
    return out


def selection_row_by_loops(m, query_tokens, groups):
    return np.array([sum(float(m[q, k]) for q in query_tokens for k in ks) / len(query_tokens)
                     for _, ks in groups])


def piece_point(editor, i) -> QPoint:
    return editor.token_rects(i)[0].center().toPoint()


@pytest.fixture
def contract(window, load, analyse, demo_path):
    load(window, demo_path)
    an = analyse(window, TEXT, type_it=False).analysis
    groups = words_by_loops(an)
    word = next(toks for label, toks in groups if label == "indemnify")
    assert len(word) > 1  # several pieces: the point of the test
    return an, groups, word


def test_clicking_a_piece_focuses_its_word(window, qtbot, contract):
    an, groups, word = contract
    editor = window.document.editor
    middle = word[1]  # the piece "em"
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, middle))
    sel = window.state.sel
    assert sel.words and sel.focus == middle

    att = an.arrays["attentions"][sel.layer].astype(np.float64).mean(axis=0)
    expected = word_matrix_by_loops(att, groups)
    heatmap = window.heatmap
    assert heatmap.row_labels == [label for label, _ in groups] == heatmap.col_labels
    np.testing.assert_allclose(heatmap.values, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(heatmap.values.sum(axis=1), 1.0, atol=2e-3)  # rows still sum to 1
    row = [label for label, _ in groups].index("indemnify")
    assert heatmap._focus_rows == [row] and heatmap.left.pinned == [row] and heatmap.bottom.pinned == [row]

    # the editor: the whole word framed, every piece carries its word's value, tooltips say the word
    assert editor.marked == word
    per_word = expected[row]
    for w, (_, toks) in enumerate(groups):
        for t in toks:
            assert editor.values[t] == pytest.approx(per_word[w], rel=1e-4, abs=1e-6)
    assert editor.describe(middle).startswith("“indemnify”")
    assert "“indemnify”" in window.document.legend.text()
    strongest = groups[int(np.argmax([per_word[w] if an.tokens[ks[0]].end > an.tokens[ks[0]].start else -1
                                      for w, (_, ks) in enumerate(groups)]))][0]
    assert f"strongest word “{strongest}”" in window.document.legend.text()


def test_pieces_one_toggle_away_and_remembered(window, qtbot, contract):
    an, groups, word = contract
    bar = window.selection_bar
    assert bar.words_button.isChecked() and not bar.pieces_button.isChecked()
    qtbot.mouseClick(bar.pieces_button, Qt.LeftButton)
    assert not window.state.sel.words
    att = an.arrays["attentions"][window.state.sel.layer].astype(np.float32).mean(axis=0)
    assert window.heatmap.values.shape == (len(an.tokens), len(an.tokens))
    np.testing.assert_allclose(window.heatmap.values, att, rtol=1e-5, atol=1e-6)
    editor = window.document.editor
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, word[1]))
    assert editor.marked == [word[1]] and editor.describe(word[1]).startswith(f"“{an.tokens[word[1]].text}”")
    window.save_settings()

    from attn_desktop.gui.main_window import MainWindow

    again = MainWindow(engine=window.engine)
    qtbot.addWidget(again)
    try:
        assert not again.state.sel.words and again.selection_bar.pieces_button.isChecked()
    finally:
        again.close()


def test_ctrl_click_and_drag_select_several_words(window, qtbot, contract):
    an, groups, word = contract
    editor = window.document.editor
    labels = [label for label, _ in groups]
    tenant = groups[labels.index("Tenant")][1]
    landlord = groups[labels.index("Landlord")][1]
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, tenant[0]))
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, Qt.ControlModifier, piece_point(editor, word[2]))
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, Qt.ControlModifier, piece_point(editor, landlord[0]))
    chosen = sorted(tenant + word + landlord)
    sel = window.state.sel
    assert sorted(sel.picked) == chosen and editor.marked == chosen

    att = an.arrays["attentions"][sel.layer].astype(np.float64).mean(axis=0)
    expected = selection_row_by_loops(att, chosen, groups)
    values = np.array([editor.values[toks[0]] for _, toks in groups])
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)
    assert values.sum() == pytest.approx(1.0, abs=2e-3)
    rows = [labels.index(w) for w in ("Tenant", "indemnify", "Landlord")]
    assert window.heatmap._focus_rows == rows == window.heatmap.left.pinned
    assert "3 words, mean of their rows" in window.document.legend.text()

    # Ctrl+click a selected word again: it leaves the selection
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, Qt.ControlModifier, piece_point(editor, landlord[0]))
    assert sorted(window.state.sel.picked) == sorted(tenant + word)

    # a drag over "shall indemnify" selects both words, whole, whatever piece it ends in
    start = an.text.index("shall")
    end = an.text.index("indemnify") + 4  # inside the word
    cursor = QTextCursor(editor.document())
    a, b = editor.cursorRect(_at(editor, start)).center(), editor.cursorRect(_at(editor, end)).center()
    qtbot.mousePress(editor.viewport(), Qt.LeftButton, pos=a + QPoint(1, 0))
    qtbot.mouseMove(editor.viewport(), pos=b)
    qtbot.mouseRelease(editor.viewport(), Qt.LeftButton, pos=b)
    del cursor
    shall = groups[labels.index("shall")][1]
    assert editor.textCursor().hasSelection()
    assert sorted(window.state.sel.picked) == sorted(shall + word)
    # a plain click goes back to one word
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, tenant[0]))
    assert window.state.sel.picked == () and editor.marked == tenant


def _at(editor, pos):
    c = QTextCursor(editor.document())
    c.setPosition(pos)
    return c


def test_flow_of_a_selection_is_the_mean_of_its_pieces_flow(window, qtbot, contract):
    an, groups, word = contract
    editor = window.document.editor
    labels = [label for label, _ in groups]
    tenant = groups[labels.index("Tenant")][1]
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, word[0]))
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        window.state.update(measure="flow")
    qtbot.waitUntil(lambda: not window.flow_runner.busy)
    have = set(MEASURES["flow"].row_queries(an, window.state.sel).tolist())
    assert set(word) <= have  # every piece of the word got its row
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        qtbot.mouseClick(editor.viewport(), Qt.LeftButton, Qt.ControlModifier, piece_point(editor, tenant[0]))
    qtbot.waitUntil(lambda: editor.values is not None)

    from test_window_propagation import bare

    ref = bare(an)
    chosen = sorted(word + tenant)
    propagation.add_flow(ref, chosen, 0.5, "mean")
    flow = {int(r): ref.arrays["flow"][k] for k, r in enumerate(ref.arrays["flow_rows"])}
    expected = [sum(float(flow[q][k]) for q in chosen for k in ks) / len(chosen) for _, ks in groups]
    values = [editor.values[toks[0]] for _, toks in groups]
    np.testing.assert_allclose(values, expected, atol=1e-5)
    # the heatmap shows the words whose pieces all have a flow row
    assert set(window.heatmap.row_labels) == {"Tenant", "indemnify"}


def test_token_values_export_follows_words_or_pieces(window, qtbot, contract, tmp_path):
    import csv
    import io

    an, groups, word = contract
    editor = window.document.editor
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, word[1]))
    att = an.arrays["attentions"][window.state.sel.layer].astype(np.float64).mean(axis=0)

    def exported():
        out = tmp_path / "v.csv"
        assert window.exports.export_data("vectors", str(out), "csv")
        rows = list(csv.reader(io.StringIO("\n".join(out.read_text(encoding="utf-8").splitlines()[1:]))))
        assert rows[0][:3] == ["index", "token", "attention row of the focus"]
        return [r[1].split(":", 1)[1] for r in rows[1:]], np.array([float(r[2]) for r in rows[1:]])

    labels, values = exported()
    assert labels == [label for label, _ in groups]
    np.testing.assert_allclose(values, selection_row_by_loops(att, word, groups), rtol=1e-4, atol=1e-6)
    qtbot.mouseClick(window.selection_bar.pieces_button, Qt.LeftButton)
    labels, values = exported()
    assert labels == [t.text for t in an.tokens]
    np.testing.assert_allclose(values, att[window.state.sel.focus], rtol=1e-4, atol=1e-6)


def test_status_bar_and_highlight_number_the_focus_word_alike(window, qtbot, contract):
    """Clicking a piece of a word: the status bar and the highlight name the word with the same
    token numbers (they once said “##em” #4 and “indemnify” (#2), a word index)."""
    an, groups, word = contract
    editor = window.document.editor
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, word[1]))
    who = f"“indemnify” (#{word[0]}–{word[-1]})"
    assert window.status_focus.text() == f"focus {who}"
    assert f"from {who}" in window.document.legend.text()
    later = next(toks for label, toks in groups if label.lower() == "landlord")
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=piece_point(editor, later[0]))
    shown = an.text[an.tokens[later[0]].start:an.tokens[later[-1]].end]
    where = f"#{later[0]}" if len(later) == 1 else f"#{later[0]}–{later[-1]}"
    who = f"“{shown}” ({where})"
    assert window.status_focus.text() == f"focus {who}" and f"from {who}" in window.document.legend.text()
