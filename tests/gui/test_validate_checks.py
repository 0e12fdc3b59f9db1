"""The Validate dock's Checks: unticked checks are not run (per text and for a document read in
windows, whose estimate then leaves them out), the tabs say they were not asked for, nothing
ticked is refused in one line, and the choice is remembered in a new window (QSettings)."""

from __future__ import annotations

from attn_desktop.core import windows as core_windows
from attn_desktop.core.explain.run import ALL
from attn_desktop.gui.validate_checks import CHECKS, CHECKS_OFF_KEY, NONE_CHOSEN, NONE_FOR_DOCUMENT

TIMEOUT = 180_000
TEXT = "The bank approved the loan after the river flooded."
LABELS = "banking and loans\nrivers and floods"
DOCUMENT = " ".join([
    "The tenant shall pay the rent on the first day of each month.",
    "Late payment incurs a fee of five percent, payable with the next rent.",
    "Either party may end this lease with two months of written notice.",
] * 3)


def zero_shot(panel):
    panel.chooser.mode.setCurrentIndex(panel.chooser.mode.findData("zero-shot"))
    panel.chooser.labels_edit.setPlainText(LABELS)


def untick(panel, *keys):
    for key in keys:
        panel.checks.boxes[key].setChecked(False)


def test_all_checks_ticked_by_default_ask_for_what_all_asked_for(window):
    checks = window.validate_panel.checks
    assert all(box.isChecked() for box in checks.boxes.values())
    assert checks.methods() == list(ALL)  # what methods=["all"] expanded to before the boxes
    assert [key for key, *_ in CHECKS] == list(checks.boxes)
    assert checks.button.text() == "all 6"
    assert all(checks.button.menu().isAncestorOf(box) for box in checks.boxes.values())


def test_unticked_checks_are_not_run_and_the_tabs_say_so(window, load, analyse, tiny_model_paths, qtbot):
    w = window
    load(w, tiny_model_paths["bert"])
    panel = w.validate_panel
    analyse(w, TEXT, type_it=False)
    zero_shot(panel)
    untick(panel, "loo", "perturbation")
    assert panel.checks.button.text() == "4 of 6 (no leave-one-out, perturbation)"
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    an = blocker.args[0]
    explain = an.manifest["explain"]
    requested = explain["methods_requested"]
    assert not {"loo", "interventions", "faithfulness"} & set(requested)
    assert {"saliency", "grad_input", "ig", "grad_rollout", "agreement"} <= set(requested)
    assert "loo" not in explain["methods"] and "loo" not in an.arrays and "loo" not in explain["arrays"]
    assert "faithfulness" not in explain and "interventions" not in explain
    assert "integrated_gradients" in an.arrays and "saliency" in an.arrays
    # agreement compares what was computed, attention's vectors included, leave-one-out not
    names = explain["agreement"]["methods"]
    assert "attention_importance" in names and "saliency" in names and "loo" not in names

    verdict = panel.details.toPlainText()
    assert "This validation did not ask for: leave-one-out, changed attention, faithfulness." in verdict
    assert panel.faithfulness.caption.text().startswith(
        "No faithfulness curves: this validation did not ask for faithfulness (asked for: ")
    assert panel.interventions.caption.text().startswith(
        "No changed-attention results: this validation did not ask for interventions")
    assert panel.faithfulness.table.rowCount() == 0


def test_a_document_without_leave_one_out_neither_runs_nor_estimates_it(window, load, tiny_model_paths, qtbot):
    w = window
    load(w, tiny_model_paths["bert"])
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    assert core_windows.window_count(w.state.analysis) >= 2
    panel = w.validate_panel
    zero_shot(panel)
    # only checks a windowed document does not compute: refused in one line, nothing runs
    untick(panel, "gradients", "ig", "loo")
    with qtbot.waitSignal(panel.validation_failed, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    assert blocker.args[0] == NONE_FOR_DOCUMENT == panel.status.text()
    assert not panel.runner.busy and "explain" not in w.state.analysis.manifest
    panel.checks.boxes["gradients"].setChecked(True)
    steps: list[str] = []
    panel.runner.progressed.connect(lambda _gen, _f, message: steps.append(message))
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    explain = blocker.args[0].manifest["explain"]
    assert explain["document"]["windows"] >= 2
    assert "loo" not in explain["methods_requested"] and "loo" not in explain["methods"]
    assert "integrated_gradients" not in explain["methods"] and "saliency" in explain["methods"]
    estimates = [s for s in steps if s.startswith("estimated about ")]
    assert estimates
    for s in estimates:  # "estimated about 2 s more: saliency, grad_input over 3 windows ..."
        assert s.split(" more: ", 1)[1].split(" over ")[0].split(", ") == ["saliency", "grad_input"]
    assert not any(s.startswith("leave-one-out") or "Integrated Gradients" in s for s in steps)
    assert "did not ask for: Integrated Gradients, leave-one-out" in panel.details.toPlainText()


def test_nothing_ticked_is_refused_and_the_choice_is_remembered(window, load, analyse, tiny_model_paths, qtbot):
    from attn_desktop.gui.app import make_app
    from attn_desktop.gui.main_window import MainWindow
    from attn_desktop.gui.settings import settings
    from attn_desktop.gui.settings_sync import wait_written

    w = window
    load(w, tiny_model_paths["bert"])
    panel = w.validate_panel
    analyse(w, TEXT, type_it=False)
    zero_shot(panel)
    untick(panel, *panel.checks.boxes)
    with qtbot.waitSignal(panel.validation_failed, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    assert blocker.args[0] == NONE_CHOSEN and panel.status.text() == NONE_CHOSEN
    assert panel.checks.button.text() == "none ticked"
    assert not panel.runner.busy and "explain" not in w.state.analysis.manifest

    panel.checks.boxes["gradients"].setChecked(True)
    panel.checks.boxes["agreement"].setChecked(True)
    assert wait_written()
    assert set(str(settings().value(CHECKS_OFF_KEY)).split(",")) == {"ig", "loo", "grad_rollout", "perturbation"}
    make_app()
    again = MainWindow()
    qtbot.addWidget(again)
    try:
        assert again.validate_panel.checks.chosen() == ["gradients", "agreement"]
        assert again.validate_panel.checks.button.text() == "2 of 6 (no IG, leave-one-out, gradient rollout, perturbation)"
        assert again.validate_panel.checks.methods() == [
            "attention", "rollout", "flow", "saliency", "grad_input", "agreement"]
    finally:
        again.close()
