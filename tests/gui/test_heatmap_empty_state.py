"""Before the first analysis the heatmap says what to do instead of drawing an empty plot beside
a colour bar with made-up levels (pyqtgraph's 0-255); the real levels appear with the data, and a
matrix that is only being computed shows no colour bar either."""

from __future__ import annotations

import numpy as np

from attn_desktop.gui.heatmap import EMPTY_TEXT, Heatmap


def test_empty_then_data_then_waiting(qtbot):
    hm = Heatmap()
    qtbot.addWidget(hm)
    hm.resize(500, 400)
    hm.show()
    qtbot.waitExposed(hm)
    assert hm.placeholder.isVisible() and hm.placeholder.text() == EMPTY_TEXT
    assert not hm.graphics.isVisible() and not hm.bar.isVisible()

    values = np.array([[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.5, 0.25, 0.25]], np.float32)
    hm.set_matrix(values, ["a", "b", "c"], ["a", "b", "c"], title="Attention")
    assert hm.graphics.isVisible() and hm.bar.isVisible() and not hm.placeholder.isVisible()
    lo, hi = hm.bar.getViewBox().viewRange()[1]
    assert (lo, hi) == (0.0, float(values.max())), "the bar spans the data's own levels (linear: 0 to the peak)"

    hm.clear("Rollout · computing it…")  # a measure still being computed: the title says so
    assert hm.title.text() == "Rollout · computing it…"
    assert hm.graphics.isVisible() and not hm.placeholder.isVisible() and not hm.bar.isVisible()

    hm.clear(placeholder=EMPTY_TEXT)
    assert hm.placeholder.isVisible() and not hm.bar.isVisible()


def test_window_before_and_after_the_first_analysis(window, load, analyse, tiny_model_paths, qtbot):
    hm = window.heatmap
    assert hm.placeholder.isVisible() and "Open a model folder" in hm.placeholder.text()  # none loaded
    assert not hm.bar.isVisible()
    load(window, tiny_model_paths["bert"])
    assert hm.placeholder.text() == EMPTY_TEXT
    said = []
    window.analyzer.started.connect(lambda _g: said.append(hm.placeholder.text()))
    analyse(window, "The tenant pays the rent.", type_it=False)
    assert said == ["Analysing the text…"]  # not "Analyse a text" while it is being analysed
    assert hm.values is not None and hm.bar.isVisible() and not hm.placeholder.isVisible()
    lo, hi = hm.bar.getViewBox().viewRange()[1]
    assert (lo, hi) == hm.levels and hi == float(np.max(hm.values.astype(np.float32)))
