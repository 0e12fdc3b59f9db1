"""No shipped label set fits every document (clinical findings for a lease is wrong): with no
choice remembered, the Validate dock asks for one instead of guessing, and a run is refused
with that request until labels are chosen or typed."""

from __future__ import annotations

from attn_desktop.gui.validate_target import CHOOSE_LABELS, LABEL_SET_KEY

TIMEOUT = 120_000
LEASE = "The tenant shall pay the rent on the first day of each month."


def test_no_label_set_is_guessed_the_run_asks_for_one(window, load, analyse, tiny_model_paths, qtbot):
    w = window
    load(w, tiny_model_paths["bert"])
    panel = w.validate_panel
    chooser = panel.chooser
    assert chooser.stack.currentWidget() is chooser.pages["encoder"]
    assert chooser.mode.currentData() == "zero-shot"
    assert chooser.label_set.currentIndex() == -1 and chooser.label_set.currentData() is None
    assert chooser.label_set.placeholderText() == CHOOSE_LABELS
    assert chooser.labels() == [], "no shipped set is filled in unasked"
    assert chooser.spec() == (None, CHOOSE_LABELS)

    analyse(w, LEASE, type_it=False)
    with qtbot.waitSignal(panel.validation_failed, timeout=TIMEOUT) as blocker:
        panel.run_button.click()
    assert blocker.args[0] == "Choose a label set or type labels."
    assert panel.status.text() == blocker.args[0]
    assert not panel.runner.busy

    # typing labels makes them the user's own and the target is ready
    chooser.labels_edit.setPlainText("rent and payment\nending the lease")
    assert chooser.label_set.currentData() == "__own__"
    spec, error = chooser.spec()
    assert error is None and spec["labels"] == ["rent and payment", "ending the lease"]


def test_a_chosen_set_fills_the_labels_and_is_remembered(qtbot):
    from attn_desktop.core.explain.labels import read_labels
    from attn_desktop.gui.settings import settings
    from attn_desktop.gui.settings_sync import wait_written
    from attn_desktop.gui.validate_target import TargetChooser

    chooser = TargetChooser()
    qtbot.addWidget(chooser)
    assert chooser.label_set.currentIndex() == -1 and not settings().value(LABEL_SET_KEY)
    contract = chooser.label_set.findText("contract clauses")
    chooser.label_set.setCurrentIndex(contract)
    chooser.label_set.activated.emit(contract)
    assert chooser.labels() == read_labels("contract_clauses")
    assert wait_written()
    assert settings().value(LABEL_SET_KEY) == chooser.label_set.currentData()

    # a remembered set that is no longer installed is not replaced by a guess either
    settings().setValue(LABEL_SET_KEY, "/nowhere/gone_labels.txt")
    assert wait_written()
    again = TargetChooser()
    qtbot.addWidget(again)
    assert again.label_set.currentIndex() == -1 and again.labels() == []
