"""The Heads view in the real window with the real model process: run the heads analysis, grids
equal to core's arrays, clicking a cell selects that head everywhere, the no-effect marks follow the
threshold, the over-smoothing curve, Prune with progress and Cancel, the comparison table, Save."""

from __future__ import annotations

import json

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from attn_desktop.core.store.session import load_session

TIMEOUT = 180_000
TEXT = "The bank approved the loan after the river flooded."


def click_cell(qtbot, grid, layer, head, modifier=Qt.NoModifier):
    """A real mouse click on the cell's centre in the grid's plot."""
    view = grid.plot
    centre = QPointF(head + 0.5, layer + 0.5)
    # the plot lays itself out after it is first shown: wait until the cell is where it will be drawn
    qtbot.waitUntil(lambda: grid.image in view.scene().items(grid.image.mapToScene(centre)), timeout=5000)
    pos = view.mapFromScene(grid.image.mapToScene(centre))
    QTest.mouseClick(view.viewport(), Qt.LeftButton, modifier, pos)


def test_heads_view_grids_click_prune_and_save(window, load, analyse, tiny_model_paths, qtbot, tmp_path):
    w = window
    load(w, tiny_model_paths["bert-cls"])
    panel = w.heads_panel
    w.heads_dock.raise_()
    an = analyse(w, TEXT, type_it=False).analysis
    assert panel.shown is None and panel.ablation.values is None

    with qtbot.waitSignal(panel.heads_shown, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    shown = blocker.args[0]
    assert shown is w.state.analysis is an  # filed in the analysis on screen
    section = an.manifest["heads"]
    assert section["target"]["kind"] == "class"
    np.testing.assert_array_equal(panel.ablation.values, an.arrays["head_importance"])
    np.testing.assert_array_equal(panel.gradient.values, an.arrays["head_importance_grad"])
    np.testing.assert_array_equal(panel.entropy.values, an.arrays["head_entropy"])
    assert an.arrays["head_importance"].shape == (2, 4)

    # no-effect marks follow the threshold, from the stored grid
    grid = an.arrays["head_importance"]
    panel.threshold.setValue(1e6)
    assert len(panel.marks_shown()) == 8 and "8 of 8 heads" in panel.summary.text()
    t = float(np.median(np.abs(grid)))
    panel.threshold.setValue(t)
    assert len(panel.marks_shown()) == int((np.abs(grid) < panel.threshold.value()).sum())

    # over-smoothing curve: the stored curve, steepest rise marked
    np.testing.assert_array_equal(panel.smoothing.curves["self"], an.arrays["layer_smoothing"])
    at = section["smoothing"]["self"]["steepest_rise_at"]
    assert panel.smoothing.steepest["self"] == at and f"into layer {at}" in panel.smoothing.note.text()

    # a click on a cell selects that layer and head everywhere
    with qtbot.waitSignal(w.state.changed, timeout=5000):
        click_cell(qtbot, panel.gradient, 1, 2)
    sel = w.state.sel
    assert (sel.measure, sel.layer, sel.head) == ("attention", 1, 2)
    assert panel.ablation.cursor.isVisible() and panel.ablation.cursor.rect().topLeft() == QPointF(2, 1)
    panel.threshold.setValue(1e6)  # every cell marked x: a click still reaches the cell beneath
    with qtbot.waitSignal(w.state.changed, timeout=5000):
        click_cell(qtbot, panel.ablation, 0, 3)
    assert (w.state.sel.layer, w.state.sel.head) == (0, 3)

    # an edit clears the results from view; a saved session keeps them
    path = tmp_path / "heads.attn"
    with qtbot.waitSignal(w.session_saved, timeout=TIMEOUT):
        w.save_session(str(path))
    np.testing.assert_array_equal(load_session(path).arrays["head_importance_grad"], an.arrays["head_importance_grad"])

    # pick heads by hand: Ctrl+click toggles a cell in the prune list
    for grid, layer, head in ((panel.ablation, 0, 1), (panel.entropy, 1, 3), (panel.ablation, 1, 2),
                              (panel.gradient, 1, 3)):  # the last on a marked cell: off again
        click_cell(qtbot, grid, layer, head, Qt.ControlModifier)
    assert panel.rule.currentData() == "explicit" and panel.heads_edit.text() == "0.1, 1.2"
    assert (w.state.sel.layer, w.state.sel.head) == (0, 3)  # a pick does not change the selection
    assert sorted(zip(panel.ablation.picks.data["y"] - 0.5, panel.ablation.picks.data["x"] - 0.5, strict=True)) == [(0, 1), (1, 2)]

    # prune the picked heads on this text: the table, then Save
    with qtbot.waitSignal(panel.prune_done, timeout=TIMEOUT) as blocker:
        panel.prune_button.click()
    result = blocker.args[0]
    assert result.removed == {"self": [[0, 1], [1, 2]]}
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "this text"
    assert panel.table.item(0, 4).text() == f"{result.rows[0]['change']:+.3g}"
    assert "removed 2 of 8 heads" in panel.prune_summary.text()
    assert panel.save_button.isEnabled()
    out = tmp_path / "pruned"
    out.mkdir()
    with qtbot.waitSignal(panel.saved, timeout=TIMEOUT):
        panel.save_to(str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["attn_desktop_pruned_heads"] == {"self": {"0": [1], "1": [2]}}
    assert (out / "tokenizer.json").is_file()
    # saving again into the now full folder: one line, nothing overwritten
    with qtbot.waitSignal(panel.prune_failed, timeout=TIMEOUT) as blocker:
        panel.save_to(str(out))
    assert "not an empty folder" in blocker.args[0]

    # a bad head list is refused in one line before anything runs
    panel.heads_edit.setText("zero")
    with qtbot.waitSignal(panel.prune_failed, timeout=5000):
        panel.prune_button.click()
    assert "cannot read the head" in panel.status.text()

    # the saved session reopened: its heads results come back with it
    with qtbot.waitSignal(panel.heads_shown, timeout=TIMEOUT):
        w.open_session(str(path))
    np.testing.assert_array_equal(panel.ablation.values, an.arrays["head_importance"])
    assert panel.shown is w.state.analysis and panel.shown is not an

    # edit the text: the grids leave the view
    w.document.editor.setPlainText(TEXT + " Again.")
    qtbot.waitUntil(lambda: panel.shown is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not w.analyzer.busy, timeout=TIMEOUT)


def test_prune_over_a_folder_is_cancelled(window, load, tiny_model_paths, qtbot, tmp_path):
    w = window
    load(w, tiny_model_paths["bert-cls"])
    panel = w.heads_panel
    texts = tmp_path / "texts"
    texts.mkdir()
    for i in range(40):
        (texts / f"t{i:02d}.txt").write_text(f"{TEXT} Number {i}.", encoding="utf-8")
    panel.set_texts_folder(str(texts))
    panel.rule.setCurrentIndex(panel.rule.findData("least"))
    panel.k_box.setValue(2)
    with qtbot.waitSignal(panel.pruner.progressed, timeout=TIMEOUT) as progressed:
        panel.prune_button.click()
    assert panel.prune_cancel.isEnabled()
    # the step's name sits beneath the bar, whose own text is only the percentage (it was clipped)
    assert panel.prune_progress.format() == "%p%" and panel.step.text() == progressed.args[2]
    with qtbot.waitSignal(panel.pruner.cancelled, timeout=TIMEOUT):
        panel.prune_cancel.click()
    qtbot.waitUntil(lambda: not panel.pruner.busy, timeout=TIMEOUT)
    assert "cancelled" in panel.status.text() and panel.result is None
    assert not panel.save_button.isEnabled()
