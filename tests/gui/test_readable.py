"""Readable at a glance, in the real window: the focus row and column always labelled, long
labels whole, a tooltip for the cell under the mouse (no readout line), colour bar ticks that
never repeat, the × uniform scale for rollout and flow, WCAG AA contrast for the text the window
draws, and a flow title and progress line that agree."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QToolTip, QWidget

from attn_desktop.gui import colormaps
from attn_desktop.gui import propagation as gui_propagation
from attn_desktop.gui.contrast import AA_TEXT, contrast_ratio
from attn_desktop.gui.editor import TokenColors
from attn_desktop.gui.heatmap import bar_ticks, tick_labels
from attn_desktop.gui.signed_colors import SignedTokenColors

TIMEOUT = 60_000
LONG = ("The supplier shall automatically indemnify the purchaser against every claim arising from "
        "the goods, including indemnification of reasonable legal costs. ")


def drawn_labels(axis) -> list[tuple[float, str, bool]]:
    """What the axis draws now: (position, text, bold)."""
    image = QImage(10, 10, QImage.Format_ARGB32)
    p = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [] if specs is None else list(specs[2])


@pytest.fixture
def demo(window, load, demo_path):
    load(window, demo_path)
    return window


def test_focus_row_and_column_always_labelled_and_long_labels_whole(demo, analyse, qtbot):
    window = demo
    window.resize(1100, 700)
    an = analyse(window, LONG * 4, type_it=False).analysis
    heatmap = window.heatmap
    rows = len(heatmap.row_labels)
    assert rows > 60  # crowded: labels are thinned
    qtbot.waitUntil(lambda: heatmap.left.geometry().height() > 50)
    for row in (rows // 2 + 1, rows // 3 + 1, rows - 2):
        heatmap.cell_clicked.emit(row, 0)
        assert heatmap._focus_rows == [row]
        left, bottom = drawn_labels(heatmap.left), drawn_labels(heatmap.bottom)
        assert len(left) < rows  # still thinned ...
        assert (heatmap.row_labels[row], True) in [(t, b) for _, t, b in left]  # ... but the focus is there
        assert (heatmap.col_labels[row], True) in [(t, b) for _, t, b in bottom]
        positions = sorted(pos for pos, _, _ in left)
        gaps = [b - a for a, b in itertools.pairwise(positions)]
        assert min(gaps) >= heatmap.left._line - 1e-6, (gaps, heatmap.left._line, len(left), rows)  # no overlap

    # long labels are never cut: not elided, and the axis is wide enough for the bold text
    assert "automatically" in heatmap.row_labels and "indemnification" in heatmap.row_labels
    from PySide6.QtGui import QFontMetricsF

    fm = QFontMetricsF(heatmap.left.bold_font)
    widest = max(fm.horizontalAdvance(t) for t in heatmap.row_labels)
    qtbot.waitUntil(lambda: heatmap.left.geometry().width() >= widest + 6, timeout=3000)
    qtbot.waitUntil(lambda: heatmap.bottom.geometry().height() >= widest + 6, timeout=3000)
    # [CLS] at the very top is drawn inside the axis, not half above it
    heatmap.cell_clicked.emit(0, 0)
    top = next(pos for pos, text, _ in drawn_labels(heatmap.left) if text == "[CLS]")
    bounds = heatmap.left.mapRectFromParent(heatmap.left.geometry())
    assert top - heatmap.left._line / 2 >= bounds.top() - 1e-6
    assert an.tokens[0].text == "[CLS]"


def test_hover_shows_a_tooltip_not_a_readout_line(demo, analyse, qtbot):
    window = demo
    analyse(window, "The tenant shall pay the rent.", type_it=False)
    heatmap = window.heatmap
    assert not hasattr(heatmap, "readout")  # the line that resized the plot and went stale is gone
    qtbot.waitUntil(lambda: heatmap.plot.sceneBoundingRect().height() > 50)
    r, c = 2, 3
    pos = heatmap.view.mapViewToScene(QPointF(c + 0.5, r + 0.5))
    heatmap.graphics.scene().sigMouseMoved.emit(pos)
    text = heatmap.hover_text
    value = float(heatmap.values[r, c])
    assert f"query “{heatmap.row_labels[r]}” #{r}" in text and f"key “{heatmap.col_labels[c]}” #{c}" in text
    assert f"{value:.4f}" in text
    assert QToolTip.text() == text
    # another document: nothing about the old one stays on screen
    analyse(window, "A different clause about deposits.", type_it=False)
    assert heatmap.hover_text == "" and not QToolTip.isVisible()


@pytest.mark.parametrize("scale", list(colormaps.SCALES))
def test_colour_bar_ticks_never_repeat(window, qtbot, scale):
    """A flow-like row set at 512 tokens (values near 1/512): every scale, real colour bar."""
    rng = np.random.default_rng(0)
    n = 512
    values = rng.gamma(2.0, 1.0, size=(40, n)).astype(np.float32)
    values /= values.sum(axis=1, keepdims=True)
    heatmap = window.heatmap
    heatmap.set_style(colormaps.DEFAULT_COLORMAP, scale)
    heatmap.set_matrix(values, [f"r{i}" for i in range(40)], [f"c{i}" for i in range(n)], title="flow")
    qtbot.waitUntil(lambda: heatmap.bar_axis.geometry().height() > 100)
    lo, hi = heatmap.levels
    size = heatmap.bar_axis.geometry().height()
    (_, ticks), = heatmap.bar_axis.tickValues(lo, hi, size)
    labels = heatmap.bar_axis.tickStrings(ticks, 1.0, 1.0)
    assert len(ticks) >= 3 and len(set(labels)) == len(labels), labels
    assert all(lo - 1e-9 <= t <= hi + 1e-9 for t in ticks)
    caption = heatmap.bar_axis.labelText
    assert {"linear": "linear from 0", "log": "log scale", "min–max": "smallest to largest",
            colormaps.RATIO: "uniform"}[scale] in caption


def test_tick_labels_distinct_over_many_ranges():
    for scale in ("linear", "min–max"):
        for hi in (1e-4, 2.3e-3, 0.0025, 0.011, 0.37, 1.0, 3.7, 140.0):
            for lo in (0.0, hi * 0.3, hi * 0.9):
                ticks = bar_ticks(lo, hi, scale, 8)
                labels = tick_labels(ticks, scale)
                assert len(ticks) >= 2 and len(set(labels)) == len(labels), (lo, hi, labels)
                for t, s in zip(ticks, labels, strict=True):
                    assert float(s) == pytest.approx(t, rel=0.02, abs=1e-12)
    log = bar_ticks(-4.0, np.log10(0.37), "log", 8)
    assert tick_labels(log, "log")[:4] == ["1e-4", "1e-3", "0.01", "0.1"]
    ratio = bar_ticks(-3.0, 3.0, colormaps.RATIO, 8)
    assert tick_labels(ratio, colormaps.RATIO) == ["×1/8", "×1/4", "×1/2", "×1", "×2", "×4", "×8"]


def test_rollout_and_flow_default_to_times_uniform(demo, analyse, qtbot):
    window = demo
    an = analyse(window, "The tenant shall pay the rent.", type_it=False).analysis
    state, heatmap = window.state, window.heatmap
    assert state.sel.scale == "linear"
    with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
        state.update(measure="rollout")
    assert state.sel.scale == colormaps.RATIO == heatmap.scale
    assert window.selection_bar.scale_box.currentText() == colormaps.RATIO
    assert "× uniform (×1 = 1/n)" in heatmap.bar_axis.labelText
    # a value at exactly the uniform share maps to the middle of the diverging map
    n = heatmap.values.shape[1]
    expected = np.asarray(heatmap.expected, np.float64)
    q, _ = colormaps.quantise(np.asarray(expected[None, :], np.float32), colormaps.RATIO, expected)
    assert np.all(np.abs(q.astype(int) - 127.5) <= 1)
    shown, _ = colormaps.quantise(heatmap.values, colormaps.RATIO, expected)
    np.testing.assert_array_equal(heatmap.image.image, shown)
    assert heatmap._lut().tolist() == colormaps.lut(colormaps.diverging(state.sel.colormap)).tolist()
    assert len(expected) == n and expected.sum() == pytest.approx(1.0)
    # the user's choice is kept per measure
    state.update(scale="log")
    state.update(measure="attention")
    assert state.sel.scale == "linear"
    with qtbot.waitSignal(window.propagation.filed, timeout=TIMEOUT):
        state.update(measure="flow")
    assert state.sel.scale == colormaps.RATIO
    state.update(measure="rollout")
    assert state.sel.scale == "log"
    assert an is state.analysis


def test_text_meets_wcag_aa(demo, analyse, qtbot):
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio((255, 255, 255), "#ffffff") == pytest.approx(1.0)

    window = demo
    analyse(window, "The tenant shall pay the rent.", type_it=False)
    legend = window.document.legend
    assert legend.text().startswith("Highlight:") and legend.isEnabled()
    pairs = []
    for widget in window.findChildren(QWidget):
        if not widget.isVisible():
            continue
        pal = widget.palette()
        group = QPalette.Active if widget.isEnabled() else QPalette.Disabled  # greyed-out hints too
        if isinstance(widget, QLabel) and widget.text().strip():
            pairs.append((widget.text()[:30], pal.color(group, QPalette.WindowText), pal.color(group, QPalette.Window)))
        elif isinstance(widget, (QAbstractButton, QComboBox)):
            pairs.append((f"button {widget.objectName() or type(widget).__name__}",
                          pal.color(group, QPalette.ButtonText), pal.color(group, QPalette.Button)))
    ed = window.document.editor.palette()
    pairs.append(("editor", ed.color(QPalette.Text), ed.color(QPalette.Base)))
    pairs.append(("tooltip", QToolTip.palette().color(QPalette.ToolTipText), QToolTip.palette().color(QPalette.ToolTipBase)))
    axis = window.heatmap.left
    pairs.append(("heatmap axis", axis.textPen().color(), window.heatmap.graphics.backgroundBrush().color()))
    library = window.model_panel.library
    for row in range(library.count()):
        brush = library.item(row).foreground()
        if brush.style() != Qt.NoBrush:
            pairs.append(("library entry", brush.color(), library.palette().color(QPalette.Base)))
    bad = [(name, fg.name(), bg.name(), round(contrast_ratio(fg, bg), 2))
           for name, fg, bg in pairs if contrast_ratio(fg, bg) < AA_TEXT]
    assert not bad, bad
    assert any(name.startswith("Highlight") for name, _, _ in pairs)

    # token backgrounds: the text drawn on them, over every colour of every map the editor uses
    base, text = ed.color(QPalette.Base), ed.color(QPalette.Text)
    f = np.linspace(0, 1, 101)
    for name in colormaps.COLORMAPS:
        for make, lut in ((TokenColors, colormaps.lut(name)),
                          (SignedTokenColors, colormaps.lut(colormaps.diverging(name)))):
            colors = make(f, lut, base, text)
            for i in np.flatnonzero(colors.shown):
                bg = QColor(*map(int, colors.rgb[i]))
                fg = colors.text_color(int(i)) if colors.recolour[i] else text
                assert contrast_ratio(fg, bg) >= AA_TEXT, (name, f[i])


def test_flow_title_says_exact_and_progress_agrees(demo, analyse, qtbot, monkeypatch):
    window = demo
    an = analyse(window, "The tenant shall pay the rent on time.", type_it=False).analysis
    n = len(an.tokens)
    heatmap = window.heatmap
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        window.state.update(measure="flow")
    title = heatmap.title.text()
    assert title.endswith("· exact") and "certified" not in title
    assert "certified within 1e-6" in heatmap.title.toolTip()

    # a long run: the clock says every row takes 30 s, so the line gives a time estimate
    clock = itertools.count(0.0, 30.0)
    monkeypatch.setattr(gui_propagation.time, "perf_counter", lambda: next(clock))
    seen = []

    def on_progress(_gen, _fraction, message):
        seen.append((message, window.analysis_progress.width(),
                     window.analysis_progress.fontMetrics().horizontalAdvance(message + " 100%")))
        count = message.split(": ", 1)[1].split(" token rows")[0]  # "k of n"
        k = int(count.split(" of ")[0])
        shown = heatmap.title.text()
        # the same rows, the same total as the title shows at that moment
        assert (f"· {count} token rows" in shown) or (k == n and "· all token rows" in shown), (message, shown)

    window.flow_runner.progressed.connect(on_progress)
    with qtbot.waitSignal(window.flow_runner.idle, timeout=TIMEOUT):
        window.compute_flow_all()
    assert len(seen) >= n - 1 and all(f" of {n} token rows" in m for m, _, _ in seen)
    assert any("min left" in m for m, _, _ in seen)
    assert all(width >= advance for _, width, advance in seen)  # never cut
    assert heatmap.title.text().startswith("Attention flow · all token rows")


def test_time_left_wording():
    assert gui_propagation.time_left(12) == "about 10 s left"
    assert gui_propagation.time_left(100) == "about 2 min left"
    assert gui_propagation.time_left(3900) == "about 1 h 5 min left"


def test_scales_remembered_per_measure_across_sessions(window, qtbot):
    from attn_desktop.gui.main_window import MainWindow

    state = window.state
    state.update(scale="log")
    state.update(measure="rollout")
    assert state.sel.scale == colormaps.RATIO
    state.update(scale="min–max")
    window.save_settings()  # quitting while rollout is shown
    again = MainWindow(engine=window.engine)
    qtbot.addWidget(again)
    try:
        assert again.state.sel.measure == "attention" and again.state.sel.scale == "log"
        again.state.update(measure="rollout")
        assert again.state.sel.scale == "min–max"
        again.state.update(measure="flow")
        assert again.state.sel.scale == colormaps.RATIO
    finally:
        again.close()
