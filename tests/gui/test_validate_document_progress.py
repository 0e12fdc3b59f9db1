"""Validate on a document read in windows, in the real window with the real model process: the
panel's bar never goes back (it went 73% -> 47% when adaptive Integrated Gradients started a second
round), ends full, and the step line says the time left."""

from __future__ import annotations

from attn_desktop.core import windows as core_windows

TIMEOUT = 180_000
SENTENCES = [
    "The tenant shall pay the rent on the first day of each month.",
    "Late payment incurs a fee of five percent, payable with the next rent.",
    "Either party may end this lease with two months of written notice.",
]
DOCUMENT = " ".join(SENTENCES * 3)


def test_bar_of_a_run_never_goes_back(window):
    panel = window.validate_panel
    panel._on_started(1)
    panel._on_progress(1, 0.73, "Integrated Gradients 16/16 steps")
    panel._on_progress(1, 0.47, "Integrated Gradients 2/32 steps")
    assert panel.progress.value() == 730 and panel.step.text() == "Integrated Gradients 2/32 steps"
    panel._on_started(2)
    panel._on_progress(2, 0.1, "window 1 of 3")
    assert panel.progress.value() == 100  # a new run starts from its own beginning


def test_document_validation_progress_is_monotone(window, load, qtbot, tiny_model_paths):
    w = window
    load(w, tiny_model_paths["bert"])
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    assert core_windows.window_count(w.state.analysis) >= 2
    panel = w.validate_panel
    panel.chooser.mode.setCurrentIndex(panel.chooser.mode.findData("zero-shot"))
    panel.chooser.labels_edit.setPlainText("rent and payment\nending the lease")
    seen: list[tuple[int, str]] = []
    panel.runner.progressed.connect(lambda *_: seen.append((panel.progress.value(), panel.step.text())))
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT):
        panel.run_button.click()
    values = [v for v, _ in seen]
    assert values == sorted(values) and values[-1] >= 970
    assert panel.progress.value() == 1000
    assert any(text.startswith("estimated about ") for _, text in seen)
    assert any("Integrated Gradients" in text and text.endswith(" left") for _, text in seen)
    assert any(text.startswith("leave-one-out ") for _, text in seen)
