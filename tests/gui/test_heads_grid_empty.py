"""A heads grid with nothing computed yet shows no axes (it drew pyqtgraph's default range,
'-400 … 400' with a '(x0.001)' prefix, on 'layer' and 'head'); filled, its axes count layers and
heads by index, with no SI prefix."""

from __future__ import annotations

import numpy as np

from attn_desktop.gui.heads_panel import GridPlot


def axes(grid):
    return [grid.plot.getPlotItem().getAxis(name) for name in ("left", "bottom")]


def test_empty_grid_has_no_axes_and_a_filled_one_counts_cells(qtbot):
    grid = GridPlot("Ablation: Δ target", signed=True)
    qtbot.addWidget(grid)
    grid.show()
    assert not any(axis.isVisible() for axis in axes(grid))
    values = np.linspace(-0.002, 0.003, 6 * 12, dtype=np.float32).reshape(6, 12)
    grid.set_grid(values, "viridis")
    assert all(axis.isVisible() for axis in axes(grid))
    assert all(not axis.autoSIPrefix for axis in axes(grid))
    left, bottom = axes(grid)
    assert [label for _, label in left._tickLevels[0]] == [str(i) for i in range(6)]
    assert [label for _, label in bottom._tickLevels[0]] == ["0", "2", "4", "6", "8", "10"]
    grid.set_grid(None, "viridis", "Run the heads analysis to fill this grid.")
    assert not any(axis.isVisible() for axis in axes(grid))
