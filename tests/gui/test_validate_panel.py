"""The Validate panel in the real window with the real model process: target chooser, Run with
progress and Cancel, results filed against the text they were computed for, importance vectors
as measures (signed ones on a diverging map centred at zero), side-by-side comparison, sessions
keep the results."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt

from attn_desktop.core.store.session import load_session
from attn_desktop.gui import colormaps
from attn_desktop.gui.importance import IMPORTANCE_KEYS

TIMEOUT = 180_000
TEXT = "The bank approved the loan after the river flooded."
LABELS = ["banking and loans", "rivers and floods"]


def set_labels(panel, labels):
    panel.chooser.mode.setCurrentIndex(panel.chooser.mode.findData("zero-shot"))
    panel.chooser.labels_edit.setPlainText("\n".join(labels))


def run_validation(qtbot, panel):
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def spanned(editor, n):
    return [i for i in range(n) if editor.has_span(i)]


def test_demo_model_run_cancel_rerun_results_shown_and_saved(window, load, analyse, demo_path, qtbot, tmp_path):
    w = window
    load(w, demo_path)
    panel = w.validate_panel
    chooser = panel.chooser
    assert chooser.stack.currentWidget() is chooser.pages["encoder"]
    assert chooser.label_set.count() >= 2, "the shipped label sets are offered"
    assert chooser.labels() == [] and chooser.label_set.currentIndex() == -1, "no set is guessed for the user"
    analysed = analyse(w, "The river flooded the bank.", type_it=False).analysis
    set_labels(panel, LABELS)
    chooser.target_label.setCurrentIndex(chooser.target_label.findData(LABELS[1]))

    # run, then cancel while it runs: nothing is filed, the window keeps working
    with qtbot.waitSignal(panel.runner.progressed, timeout=TIMEOUT):
        panel.run_button.click()
    assert panel.cancel_button.isEnabled()
    with qtbot.waitSignal(panel.validation_cancelled, timeout=TIMEOUT):
        panel.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    assert "explain" not in analysed.manifest and not set(IMPORTANCE_KEYS) & set(analysed.arrays)
    assert panel.shown is None and "cancelled" in panel.status.text()

    # run, and edit the text while it runs: the run stops, nothing is filed for either text
    with qtbot.waitSignal(panel.runner.progressed, timeout=TIMEOUT):
        panel.run_button.click()
    with qtbot.waitSignals([panel.validation_cancelled, w.analysis_shown], timeout=TIMEOUT):
        w.document.editor.setPlainText("The river flooded the bank again.")
    qtbot.waitUntil(lambda: not panel.runner.busy, timeout=TIMEOUT)
    analysed = w.state.analysis
    assert analysed.text == "The river flooded the bank again." and "explain" not in analysed.manifest
    assert panel.shown is None and panel.progress.format() == "not run for this text"

    # run again, from the menu with the Heads tab in front: the Validate tab comes forward
    w.heads_dock.raise_()
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT) as blocker:
        w.act_validate.trigger()
    an = blocker.args[0]
    assert not w.validate_dock.visibleRegion().isEmpty()
    assert an is w.state.analysis is analysed
    explain = an.manifest["explain"]
    target = explain["target"]
    assert target["kind"] == "zero-shot" and target["labels"] == LABELS and target["label"] == LABELS[1]
    assert target["chosen"] == "given"
    n = len(an.tokens)
    for key in IMPORTANCE_KEYS:
        assert an.arrays[key].shape == (n,) and an.arrays[key].dtype == np.float32

    headline = panel.headline.text()
    assert headline == explain["verdict"]["headline"] and headline
    assert "explains" not in (headline + panel.details.toPlainText()).lower()
    assert LABELS[1] in panel.details.toPlainText()
    assert panel.right.currentWidget() is panel.results

    # the agreement matrix shows core's numbers, written in the cells
    agreement = explain["agreement"]
    m = len(agreement["methods"])
    np.testing.assert_allclose(panel.agreement.values, np.array(agreement["kendall_tau"], float))
    assert len(panel.agreement.texts) == m * m
    i, j = 0, m - 1
    assert panel.agreement.texts[i * m + j].toPlainText().startswith(f"{agreement['kendall_tau'][i][j]:.2f}")

    # faithfulness: one line per method in each plot, plus the random band
    faith = explain["faithfulness"]
    assert set(panel.faithfulness.curves) == set(faith["per_method"])
    for name, curves in panel.faithfulness.curves.items():
        np.testing.assert_allclose(curves["comprehensiveness"].yData, faith["per_method"][name]["comprehensiveness"])
    assert set(panel.faithfulness.bands) == {"comprehensiveness", "sufficiency"}
    assert panel.faithfulness.table.rowCount() == len(faith["per_method"])

    # changed attention: all layers uniform, permuted, and each layer alone
    layers = an.attention("self").shape[0]
    assert panel.interventions.table.rowCount() == 2 + layers
    change = explain["interventions"]["uniform_all"]["change"]
    assert panel.interventions.table.item(0, 1).text() == f"{change:+.3g}"

    # a saved session keeps the results; reopened, the panel shows them again
    path = tmp_path / "validated.attn"
    with qtbot.waitSignal(w.session_saved, timeout=TIMEOUT):
        w.save_session(str(path))
    saved = load_session(path)
    assert saved.manifest["explain"]["verdict"]["headline"] == headline
    np.testing.assert_array_equal(saved.arrays["integrated_gradients"], an.arrays["integrated_gradients"])
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT):
        w.open_session(str(path))
    assert panel.headline.text() == headline


def test_vectors_are_measures_compared_side_by_side_and_cleared_on_edit(window, load, analyse, tiny_model_paths,
                                                                         qtbot):
    w = window
    load(w, tiny_model_paths["bert"])
    panel = w.validate_panel
    analysed = analyse(w, TEXT, type_it=False).analysis
    box = w.selection_bar.measure_box
    assert not box.model().item(box.findData("integrated_gradients")).isEnabled()

    # a bad label list is one line, nothing runs
    set_labels(panel, ["only one label"])
    panel.run_button.click()
    assert "two labels" in panel.status.text() and not panel.runner.busy

    set_labels(panel, LABELS)
    an = run_validation(qtbot, panel)
    assert an is analysed
    assert box.model().item(box.findData("integrated_gradients")).isEnabled()

    # a signed vector colours the editor on a diverging map centred at zero
    w.state.update(measure="integrated_gradients")
    editor = w.document.editor
    ig = an.arrays["integrated_gradients"]
    np.testing.assert_allclose(editor.values, ig)
    assert w.heatmap.values.shape == (1, len(ig))
    top = float(np.abs(ig).max())
    assert w.heatmap.levels == (-top, top)
    assert w.heatmap.colormap == colormaps.diverging(w.state.sel.colormap)
    words = spanned(editor, len(ig))
    strongest = max(words, key=lambda i: abs(ig[i]))
    weakest = min(words, key=lambda i: abs(ig[i]))
    assert editor.colors.shown[strongest]
    lut = colormaps.lut(colormaps.diverging(w.state.sel.colormap))
    end = lut[255] if ig[strongest] > 0 else lut[0]
    page = editor.palette().color(editor.viewport().backgroundRole())
    base = np.array([page.red(), page.green(), page.blue()], float)
    # the strongest token is drawn towards its end of the map, the weakest stays nearer the page
    assert np.linalg.norm(editor.colors.rgb[strongest] - end) < np.linalg.norm(base - end)
    assert (np.linalg.norm(editor.colors.rgb[weakest] - base)
            <= np.linalg.norm(editor.colors.rgb[strongest] - base))
    assert "raises the target" in w.document.legend.text()
    assert not w.selection_bar.scale_box.isEnabled(), "a signed vector has its own scale"

    # double-clicking a method in the faithfulness table colours the text with it
    table = panel.faithfulness.table
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).data(Qt.UserRole) == "saliency")
    panel.tabs.setCurrentWidget(panel.faithfulness)
    table.scrollToItem(table.item(row, 0))
    cell = table.visualItemRect(table.item(row, 0)).center()
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=cell)  # QTest's double click needs a click first
    qtbot.mouseDClick(table.viewport(), Qt.LeftButton, pos=cell)
    assert w.state.sel.measure == "saliency" and box.currentData() == "saliency"

    # an unsigned vector keeps the user's map and a scale from 0
    assert w.heatmap.colormap == w.state.sel.colormap and w.heatmap.levels[0] == 0.0
    assert w.selection_bar.scale_box.isEnabled()
    np.testing.assert_allclose(editor.values, an.arrays["saliency"])

    # clicking an agreement cell compares the two methods side by side
    agreement = an.manifest["explain"]["agreement"]
    names = agreement["methods"]
    a, b = names.index("saliency"), names.index("loo")
    panel.tabs.setCurrentWidget(panel.agreement)
    panel.agreement.metric.setCurrentIndex(0)
    view = panel.agreement.view
    scene_point = view.mapViewToScene(QPointF(b + 0.5, a + 0.5))
    graphics = panel.agreement.plot
    with qtbot.waitSignal(panel.agreement.pair_clicked, timeout=TIMEOUT):
        qtbot.mouseClick(graphics.viewport(), Qt.LeftButton, pos=graphics.mapFromScene(scene_point))
    compare = panel.compare
    assert panel.tabs.currentWidget() is compare and compare.pair() == ("saliency", "loo")
    left, right = compare.editors
    np.testing.assert_allclose(left.values, an.arrays["saliency"])
    np.testing.assert_allclose(right.values, an.arrays["loo"])
    assert left.toPlainText() == right.toPlainText() == TEXT
    assert f"{agreement['kendall_tau'][a][b]:.3g}" in compare.agreement.text()

    # the same input analysed again keeps its results
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.request_analysis()
    again = w.state.analysis
    assert again is not an and again.manifest["explain"] is an.manifest["explain"]
    assert panel.shown is again

    # editing the text clears them at once; the next analysis has none
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        editor.setPlainText(TEXT + " Then it rained.")
        assert panel.shown is None and panel.headline.text() == ""
        assert "changed" in panel.status.text()
        assert panel.right.currentWidget() is panel.intro
        assert compare.editors[0].toPlainText() == ""
    assert "explain" not in w.state.analysis.manifest
    assert panel.shown is None
    assert not box.model().item(box.findData("integrated_gradients")).isEnabled()


def test_target_chooser_follows_the_model_kind(window, load, tiny_model_paths, qtbot):
    w = window
    chooser = w.validate_panel.chooser
    load(w, tiny_model_paths["bert-cls"])
    assert chooser.stack.currentWidget() is chooser.pages["sequence-classification"]
    classes = w.loaded.info.config["num_labels"] if "num_labels" in w.loaded.info.config else \
        len(w.loaded.info.config["id2label"])
    assert chooser.class_box.count() == 1 + classes
    assert chooser.spec() == ({"kind": "class", "class": None}, None)
    chooser.class_box.setCurrentIndex(2)
    assert chooser.spec() == ({"kind": "class", "class": 1}, None)

    load(w, tiny_model_paths["gpt2"])
    assert chooser.stack.currentWidget() is chooser.pages["token"]
    assert chooser.token_label.text() == "Next token"
    assert chooser.spec() == ({"kind": "next-token", "token": None}, None)
    chooser.token.setText(" the")
    assert chooser.spec() == ({"kind": "next-token", "token": " the"}, None)


def test_other_model_kinds_run_or_refuse_in_one_line(window, load, analyse, tiny_model_paths, qtbot):
    w = window
    panel = w.validate_panel
    # a masked LM needs a mask token in the text: one line, nothing filed, the window goes on
    load(w, tiny_model_paths["bert-mlm"])
    analysed = analyse(w, "the bank approved the loan", type_it=False).analysis
    with qtbot.waitSignal(panel.validation_failed, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    assert "[MASK]" in blocker.args[0] and "\n" not in blocker.args[0]
    assert panel.status.text() == blocker.args[0]
    assert "explain" not in analysed.manifest and panel.shown is None

    # a base encoder against a reference text: no output distribution, so no TVD or flips
    load(w, tiny_model_paths["bert"])
    analyse(w, "the bank approved the loan", type_it=False)
    chooser = panel.chooser
    chooser.mode.setCurrentIndex(chooser.mode.findData("reference"))
    assert chooser.reference.isVisible() and not chooser.labels_edit.isVisible()
    chooser.reference.setText("a loan from a bank")
    an = run_validation(qtbot, panel)
    target = an.manifest["explain"]["target"]
    assert target["kind"] == "reference" and target["reference"] == "a loan from a bank"
    table = panel.interventions.table
    assert table.item(0, 2).text() == "—" and table.item(0, 4).text() == "—"
    assert f"{an.manifest['explain']['interventions']['uniform_all']['change']:+.3g}" == table.item(0, 1).text()

    # a causal LM: the predicted next token
    load(w, tiny_model_paths["gpt2"])
    analyse(w, "the bank approved the loan", type_it=False)
    an = run_validation(qtbot, panel)
    target = an.manifest["explain"]["target"]
    assert target["kind"] == "next-token" and target["chosen"] == "predicted"
    assert target["token"] == target["predicted"]
    assert f"“{target['token']}”" in w.validate_panel.details.toPlainText()

    # an encoder-decoder: what could not be computed is said, not hidden
    load(w, tiny_model_paths["bart"])
    w.generate_box.setValue(2)
    analyse(w, "the bank approved the loan", type_it=False)
    an = run_validation(qtbot, panel)
    skipped = an.manifest["explain"]["skipped"]
    assert "flow_importance" in skipped and "flow_importance" not in an.arrays
    details = panel.details.toPlainText()
    assert "Not computed:" in details and skipped["flow_importance"] in details
    box = w.selection_bar.measure_box
    assert not box.model().item(box.findData("flow_importance")).isEnabled()
    assert box.model().item(box.findData("integrated_gradients")).isEnabled()


def test_a_session_with_damaged_results_is_one_line_not_a_crash(window, load, analyse, tiny_model_paths, qtbot,
                                                                tmp_path):
    from dataclasses import replace

    from attn_desktop.core.store.session import save_session

    w = window
    load(w, tiny_model_paths["bert"])
    an = analyse(w, TEXT, type_it=False).analysis
    broken = replace(an, manifest={**an.manifest, "explain": {
        "agreement": {"methods": ["saliency", "loo"], "kendall_tau": [[1.0]]},
        "verdict": {"headline": "damaged"}}}, extras={})
    path = save_session(broken, tmp_path / "damaged.attn")
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.open_session(str(path))
    panel = w.validate_panel
    assert panel.shown is None and panel.right.currentWidget() is panel.intro
    assert panel.status.text().startswith("The validation results saved with this analysis cannot be shown")
    assert "\n" not in panel.status.text() and panel.headline.text() == ""


def test_own_label_file_through_open_and_a_bad_one_in_one_line(window, load, tiny_model_paths, qtbot, tmp_path,
                                                              monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    w = window
    load(w, tiny_model_paths["bert"])
    panel = w.validate_panel
    chooser = panel.chooser
    good = tmp_path / "my_labels.txt"
    good.write_text("# my own set\nweather\nfinance\n\nsport\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01binary")
    picked = iter([str(good), str(bad)])
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (next(picked), ""))

    qtbot.mouseClick(chooser.open_labels, Qt.LeftButton)
    assert chooser.labels() == ["weather", "finance", "sport"]
    assert chooser.label_set.currentText() == "my_labels.txt"
    assert [chooser.target_label.itemText(i) for i in range(chooser.target_label.count())][1:] == \
        ["weather", "finance", "sport"]
    chooser.target_label.setCurrentIndex(chooser.target_label.findData("finance"))
    spec, error = chooser.spec()
    assert error is None and spec["labels"] == ["weather", "finance", "sport"] and spec["label"] == "finance"

    with qtbot.waitSignal(chooser.problem, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(chooser.open_labels, Qt.LeftButton)
    assert "binary" in blocker.args[0] and panel.status.text() == blocker.args[0]
    assert chooser.labels() == ["weather", "finance", "sport"], "a bad file leaves the labels as they were"

    # editing the list by hand makes it the user's own labels
    chooser.labels_edit.setPlainText("weather\nfinance")
    assert chooser.label_set.currentData() == "__own__"
    assert chooser.spec()[0]["labels"] == ["weather", "finance"]


def test_the_chosen_label_set_is_offered_again(qtbot):
    """No shipped set is right for every text: the set the user chose last is offered at the next
    start."""
    from attn_desktop.gui.validate_target import TargetChooser

    first = TargetChooser()
    qtbot.addWidget(first)
    contract = first.label_set.findText("contract clauses")
    assert contract > 0 and first.label_set.currentIndex() != contract
    first.label_set.setCurrentIndex(contract)
    first.label_set.activated.emit(contract)
    assert any("indemn" in label.lower() or "terminat" in label.lower() for label in first.labels())

    from attn_desktop.gui.settings_sync import wait_written

    assert wait_written()  # settings reach the file off the GUI thread; the next start reads the file
    again = TargetChooser()
    qtbot.addWidget(again)
    assert again.label_set.currentText() == "contract clauses"
    assert again.labels() == first.labels()
