"""The Validate panel's progress bar holds only the percentage; the running step's name, up to
"attention, rollout and flow of the row the output reads", sits in a wrapped line below it (it
was the bar's own text, wrapped over two lines and cut off in the ~190-pixel bar)."""

from __future__ import annotations

from PySide6.QtGui import QFontMetrics

LONGEST = "attention, rollout and flow of the row the output reads"


def test_step_name_beside_a_bar_whose_text_fits(window, qtbot):
    window.resize(1400, 900)
    window.show()
    panel = window.validate_panel
    window.validate_dock.raise_()
    qtbot.waitExposed(window)
    panel._on_started(1)
    panel._on_progress(1, 0.05, LONGEST)
    bar = panel.progress
    assert QFontMetrics(bar.font()).horizontalAdvance(bar.text()) < bar.contentsRect().width() - 8
    assert panel.step.text() == LONGEST and panel.step.isVisible()
    assert panel.step.textFormat().name == "PlainText"
    panel._on_idle()
    assert panel.step.text() == ""
