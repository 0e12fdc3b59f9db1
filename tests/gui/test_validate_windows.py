"""Validate on a document read in windows, in the real window with the real model process: Run and
Cancel, one document-level result whose values every window shows for its own tokens (a token in
two windows has the same value in both), the panel says what the target was computed from, and a
saved session shows the results again."""

from __future__ import annotations

import numpy as np
from lease_text import DOCUMENT
from PySide6.QtCore import QPoint, Qt

from attn_desktop.core import windows as core_windows
from attn_desktop.core.store.session import load_session

TIMEOUT = 180_000
LABELS = ["rent and payment", "ending the lease"]


def char_point(editor, k: int) -> QPoint:
    cursor = editor.textCursor()
    cursor.setPosition(k)
    editor.setTextCursor(cursor)
    editor.ensureCursorVisible()
    a, b = editor._rect_at(k), editor._rect_at(k + 1)
    return QPoint((a.left() + b.left()) // 2, a.center().y())


def expected_view(an, k: int, name: str) -> np.ndarray:
    """Window k's share of the document vector `name`, from the arrays, written here."""
    n = an.manifest["windows"]["windows"][k]["tokens"]
    index = an.arrays["window_document_index"][k, :n]
    doc = an.arrays[f"document_{name}"]
    return np.array([doc[i] if i >= 0 else 0.0 for i in index], np.float32)


def test_validate_a_windowed_document(window, load, qtbot, tiny_model_paths, tmp_path):
    w = window
    load(w, tiny_model_paths["bert"])
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    assert core_windows.is_windowed(w.state.analysis)
    count = core_windows.window_count(w.state.analysis)
    assert count >= 3
    panel = w.validate_panel
    panel.chooser.mode.setCurrentIndex(panel.chooser.mode.findData("zero-shot"))
    panel.chooser.labels_edit.setPlainText("\n".join(LABELS))

    # Cancel while it runs: nothing is filed
    with qtbot.waitSignal(panel.runner.progressed, timeout=TIMEOUT):
        panel.run_button.click()
    with qtbot.waitSignal(panel.validation_cancelled, timeout=TIMEOUT):
        panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    assert "explain" not in w.state.analysis.manifest and panel.shown is None

    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    an = blocker.args[0]
    section = an.manifest["explain"]
    assert core_windows.is_windowed(an) and section["document"]["windows"] == count
    assert panel.headline.text().startswith("For this document (read in windows), attention ")
    details = panel.details.toPlainText()
    assert "Document target over" in details and "Attention does not cross windows" in details
    assert "interventions" in section["skipped"] and "explains" not in panel.headline.text()
    # the tabs of what a document does not compute say so with the run's reason, not "run Validate"
    for tab, key in ((panel.faithfulness, "faithfulness"), (panel.interventions, "interventions")):
        assert section["skipped"][key].rstrip(".") in tab.caption.text() and "run Validate" not in tab.caption.text()

    # the editor shows IG of the whole document for the tokens of the window on screen
    w.state.update(measure="integrated_gradients", words=False)
    k0 = core_windows.shown_window(an)
    np.testing.assert_allclose(w.document.editor.values, expected_view(an, k0, "integrated_gradients"))

    # the text outside the window is shaded too, every word on one scale for the whole document
    from attn_desktop.core.explain.document import document_token_list
    from attn_desktop.gui import colormaps
    from attn_desktop.gui.signed_colors import SignedTokenColors

    doc_ig = an.arrays["document_integrated_gradients"].astype(np.float64)
    top = float(np.abs(doc_ig).max())
    pal = w.document.editor.palette()
    lut = colormaps.lut(colormaps.diverging(w.state.sel.colormap))
    colours = SignedTokenColors(0.5 + doc_ig / (2 * top), lut, pal.color(pal.ColorRole.Base),
                                pal.color(pal.ColorRole.Text))
    tokens = document_token_list(an)
    index = an.arrays["window_document_index"][k0, :len(an.tokens)]
    outside = [i for i in range(len(doc_ig)) if i not in set(index.tolist()) and colours.shown[i]]
    shade = panel.document_shade
    assert outside and sorted(shade.colours) == sorted((tokens[i].start, tokens[i].end) for i in outside)
    for i in outside:
        assert shade.colours[(tokens[i].start, tokens[i].end)] == colours.color(i)
    assert f"{top:.3g} in the document (the scale)" in w.document.legend.text()
    inside = max((j for j, i in enumerate(index) if i >= 0), key=lambda j: abs(doc_ig[index[j]]))
    assert w.document.editor.colors.color(inside) == colours.color(int(index[inside]))

    # a click in a later window shows that window, with the same document-level values
    info = an.manifest["windows"]
    char = DOCUMENT.rindex("notice") + 1
    editor = w.document.editor
    with qtbot.waitSignal(w.state.analysis_changed, timeout=TIMEOUT):
        qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=char_point(editor, char))
    now = w.state.analysis
    k = core_windows.shown_window(now)
    assert k != k0 and now.manifest["explain"] is section and panel.shown is now
    qtbot.waitUntil(lambda: editor.values is not None and len(editor.values) == len(now.tokens), timeout=TIMEOUT)
    np.testing.assert_allclose(editor.values, expected_view(an, k, "integrated_gradients"))
    # a token in the overlap of two windows has one value, whichever window shows it
    shared = [(j, t) for j, t in enumerate(info["tokens"][k]) if not t["special"]
              and any(u["start"] == t["start"] for u in info["tokens"][k - 1] if not u["special"])]
    assert shared
    j, t = shared[0]
    j0 = next(q for q, u in enumerate(info["tokens"][k - 1]) if u["start"] == t["start"])
    assert expected_view(an, k, "loo")[j] == expected_view(an, k - 1, "loo")[j0]

    # saved and reopened: the document's results are shown again
    path = tmp_path / "lease.attn"
    with qtbot.waitSignal(w.session_saved, timeout=TIMEOUT):
        w.save_session(str(path))
    saved = load_session(path)
    np.testing.assert_array_equal(saved.arrays["document_integrated_gradients"],
                                  an.arrays["document_integrated_gradients"])
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT):
        w.open_session(str(path))
    assert panel.headline.text() == section["verdict"]["headline"]


def test_a_next_token_target_on_a_windowed_document_is_one_line(window, load, qtbot, tiny_model_paths):
    w = window
    load(w, tiny_model_paths["gpt2"])
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    analysed = w.state.analysis
    assert core_windows.is_windowed(analysed)
    panel = w.validate_panel
    with qtbot.waitSignal(panel.validation_failed, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    message = blocker.args[0]
    assert message.startswith("a document read in windows has a document-level target only") and "\n" not in message
    assert panel.status.text() == message
    assert "explain" not in analysed.manifest and panel.shown is None and w.state.analysis is analysed
