"""The heatmap at thousands of tokens: a max-pooled overview keeps isolated peaks, zooming shows
exact cells, tooltips say what a pixel stands for, the keyboard zooms and pans, and in the real
window a click focuses the right token (the editor scrolls to it) and a focus from the editor pans
the heatmap to it. Matrices are float16 memory-mapped files, as long analyses are stored."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from attn_desktop.gui import colormaps
from attn_desktop.gui.heatmap import Heatmap

N_ROWS, N_COLS = 2051, 1999  # divisible by no block factor the view picks
PEAK = (1234, 1777)


def memmapped(tmp_path, values: np.ndarray, name: str = "m.npy") -> np.ndarray:
    path = tmp_path / name
    np.save(path, values)
    return np.load(path, mmap_mode="r")


def sparse(rng) -> np.ndarray:
    """Tiny values everywhere and one isolated peak."""
    values = (rng.random((N_ROWS, N_COLS), dtype=np.float32) * 1e-3).astype(np.float16)
    values[PEAK] = 0.75
    return values


def block_max(values: np.ndarray, fr: int, fc: int, reduce=np.max) -> np.ndarray:
    """Independent block reduction: pad with NaN to whole blocks, then nan-reduce each block."""
    rows, cols = values.shape
    nr, nc = -(-rows // fr), -(-cols // fc)
    padded = np.full((nr * fr, nc * fc), np.nan)
    padded[:rows, :cols] = values
    nan_reduce = {np.max: np.nanmax, np.min: np.nanmin}[reduce]
    return nan_reduce(padded.reshape(nr, fr, nc, fc), axis=(1, 3))


@pytest.fixture
def heatmap(qtbot):
    h = Heatmap()
    qtbot.addWidget(h)
    h.resize(760, 640)
    h.show()
    qtbot.waitExposed(h)
    qtbot.waitUntil(lambda: h.view.height() > 300)
    return h


def labels(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_overview_keeps_an_isolated_peak_as_a_block_max(heatmap, tmp_path, qtbot):
    values = memmapped(tmp_path, sparse(np.random.default_rng(0)))
    heatmap.set_matrix(values, labels(N_ROWS, "q"), labels(N_COLS, "k"), title="attention")
    fr, fc = heatmap.pool_factors
    ph, pw = heatmap._pixels()
    assert fr > 1 and fc > 1 and N_ROWS / fr <= ph and N_COLS / fc <= pw  # pooled to the pixels
    assert "max of" in heatmap.zoom_label.text() and f"{fr}×{fc}" in heatmap.zoom_label.text()

    blocks = block_max(values, fr, fc)
    image = heatmap.image.image
    assert image.shape == blocks.shape
    assert heatmap.levels == (0.0, float(np.float16(0.75)))
    np.testing.assert_array_equal(image, colormaps.quantise_at(blocks.astype(np.float32), "linear", heatmap.levels))
    # the peak is the brightest pixel, in its block; striding (one cell of each block) loses it
    assert image[PEAK[0] // fr, PEAK[1] // fc] == 255 and (image == 255).sum() == 1
    assert values[::fr, ::fc].max() < 0.01
    # ... and on screen: the widget as drawn has the map's top colour where the peak lies
    shot = heatmap.graphics.grab().toImage()
    at = heatmap.graphics.mapFromScene(heatmap.view.mapViewToScene(QPointF(PEAK[1] + 0.5, PEAK[0] + 0.5)))
    top = heatmap._lut()[255].astype(int)
    near = [shot.pixelColor(at.x() + dx, at.y() + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    assert any(np.abs(np.array([q.red(), q.green(), q.blue()]) - top).max() <= 8 for q in near)

    # the tooltip of the peak's pixel names the block and the cell that gives it its colour
    heatmap._on_move(heatmap.view.mapViewToScene(QPointF(PEAK[1] + 0.5, PEAK[0] + 0.5)))
    r0, c0 = PEAK[0] // fr * fr, PEAK[1] // fc * fc
    text = heatmap.hover_text
    assert f"max over queries #{r0}–{r0 + fr - 1} × keys #{c0}–{c0 + fc - 1}" in text
    assert f"weight {float(values[PEAK]):.4f} at query “q{PEAK[0]}” #{PEAK[0]}, key “k{PEAK[1]}” #{PEAK[1]}" in text
    # clicking that pixel (the middle of the block) focuses the peak's query
    with qtbot.waitSignal(heatmap.cell_clicked) as clicked:
        click_cell(qtbot, heatmap, r0 + fr / 2 - 0.5, c0 + fc / 2 - 0.5)
    assert clicked.args == [PEAK[0], PEAK[1]]


def click_cell(qtbot, heatmap, r: float, c: float) -> None:
    scene = heatmap.view.mapViewToScene(QPointF(c + 0.5, r + 0.5))
    qtbot.mouseClick(heatmap.graphics.viewport(), Qt.LeftButton, pos=heatmap.graphics.mapFromScene(scene))


def expected_part(values, r0, r1, c0, c1) -> np.ndarray:
    """The whole matrix quantised over its own levels, then cut: what a zoomed view must show."""
    return colormaps.quantise(values.astype(np.float32), "linear")[0][r0:r1, c0:c1]


def test_zooming_in_shows_every_cell_exactly(heatmap, tmp_path, qtbot):
    rng = np.random.default_rng(1)
    values = memmapped(tmp_path, rng.random((N_ROWS, N_COLS), dtype=np.float32).astype(np.float16))
    heatmap.set_matrix(values, labels(N_ROWS, "q"), labels(N_COLS, "k"))
    overview_levels = heatmap.levels
    heatmap.show_cells((1200, 1240), (1750, 1790))
    qtbot.waitUntil(lambda: heatmap.pool_factors == (1, 1))
    region = heatmap.region
    (r0, r1), (c0, c1) = region.rows, region.cols
    assert r0 <= 1200 and 1240 <= r1 and c0 <= 1750 and 1790 <= c1
    assert (r1 - r0) * (c1 - c0) < N_ROWS * N_COLS / 20  # only around what is visible
    assert heatmap.levels == overview_levels  # colours of the whole matrix
    np.testing.assert_array_equal(heatmap.image.image, expected_part(values, r0, r1, c0, c1))
    assert heatmap.image.mapRectToParent(heatmap.image.boundingRect()).topLeft() == QPointF(c0, r0)
    r, c = 1221, 1760
    heatmap._on_move(heatmap.view.mapViewToScene(QPointF(c + 0.5, r + 0.5)))
    assert heatmap.hover_text.startswith(f"query “q{r}” #{r}\nkey “k{c}” #{c}\nweight {float(values[r, c]):.4f}")
    # labels for the rows in view only, as many as fit without overlapping
    height = heatmap.left.geometry().height()
    shown = heatmap.left.visible_ticks(*sorted(heatmap.view.viewRange()[1]), height)
    step = int(np.ceil(heatmap.left._line / (height / 40)))
    assert shown == list(range(1200, 1240, step)) and step <= 2
    with qtbot.waitSignal(heatmap.cell_clicked) as clicked:
        click_cell(qtbot, heatmap, r, c)
    assert clicked.args == [r, c]
    # panning right past the part drawn draws the new part
    heatmap.show_cells((1200, 1240), (1900, 1940))
    qtbot.waitUntil(lambda: heatmap.region.cols[1] >= 1940)
    (r0, r1), (c0, c1) = heatmap.region.rows, heatmap.region.cols
    np.testing.assert_array_equal(heatmap.image.image, expected_part(values, r0, r1, c0, c1))
    heatmap.fit()
    qtbot.waitUntil(lambda: heatmap.pool_factors != (1, 1))
    assert heatmap.image.image.shape == block_max(values, *heatmap.pool_factors).shape


@pytest.mark.parametrize("scale", [colormaps.SIGNED, colormaps.RATIO, "min–max", "log"])
def test_pooling_follows_the_scale(heatmap, tmp_path, qtbot, scale):
    """Signed values: the value of largest magnitude per block (a negative peak stays visible);
    × uniform: the largest ratio to each column's uniform share; the levels are the whole matrix's."""
    rng = np.random.default_rng(2)
    values = rng.random((N_ROWS, N_COLS), dtype=np.float32) * 1e-3
    if scale == colormaps.SIGNED:
        values -= 5e-4
        values[PEAK] = -0.6
    else:
        values[PEAK] = 0.6
    values = memmapped(tmp_path, values.astype(np.float16))
    expected = rng.random(N_COLS) + 0.5
    expected /= expected.sum()
    heatmap.set_style(colormaps.DEFAULT_COLORMAP, scale)
    heatmap.set_matrix(values, labels(N_ROWS, "q"), labels(N_COLS, "k"), expected=expected)
    fr, fc = heatmap.pool_factors
    assert fr > 1 and fc > 1
    full = values.astype(np.float64)
    want_levels = colormaps.levels(full, scale, expected)
    assert heatmap.levels == pytest.approx(want_levels, rel=1e-6)
    if scale == colormaps.SIGNED:
        hi, lo = block_max(full, fr, fc), block_max(full, fr, fc, np.min)
        shown = np.where(np.abs(hi) >= np.abs(lo), hi, lo)
        ones = None
    elif scale == colormaps.RATIO:
        shown = block_max(full / expected, fr, fc)
        ones = np.ones(shown.shape[1])
    else:
        shown = block_max(full, fr, fc)
        ones = None
    want = colormaps.quantise_at(shown.astype(np.float32), scale, heatmap.levels, ones)
    np.testing.assert_array_equal(heatmap.image.image, want)
    peak_pixel = heatmap.image.image[PEAK[0] // fr, PEAK[1] // fc]
    assert peak_pixel == (0 if scale == colormaps.SIGNED else 255)
    # zoomed in: each cell as the whole matrix quantised on this scale would draw it
    heatmap.show_cells((PEAK[0] - 20, PEAK[0] + 20), (PEAK[1] - 20, PEAK[1] + 20))
    qtbot.waitUntil(lambda: heatmap.pool_factors == (1, 1))
    (r0, r1), (c0, c1) = heatmap.region.rows, heatmap.region.cols
    whole = colormaps.quantise(values.astype(np.float32), scale, expected)[0]
    np.testing.assert_array_equal(heatmap.image.image, whole[r0:r1, c0:c1])


def test_keyboard_zooms_pans_and_fits(heatmap, tmp_path, qtbot):
    values = memmapped(tmp_path, sparse(np.random.default_rng(3)))
    heatmap.set_matrix(values, labels(N_ROWS, "q"), labels(N_COLS, "k"))
    heatmap.set_focus_rows([PEAK[0]], [PEAK[0]])
    heatmap.graphics.setFocus()

    def span():
        (x0, x1), (y0, y1) = heatmap.view.viewRange()
        return x1 - x0, y1 - y0

    assert span() == pytest.approx((N_COLS, N_ROWS))
    qtbot.keyClick(heatmap.graphics, Qt.Key_Plus)
    assert span() == pytest.approx((N_COLS / 2, N_ROWS / 2))
    (x0, _), _ = heatmap.view.viewRange()
    qtbot.keyClick(heatmap.graphics, Qt.Key_Right)
    assert heatmap.view.viewRange()[0][0] == pytest.approx(x0 + 0.15 * N_COLS / 2)
    qtbot.keyClick(heatmap.graphics, Qt.Key_F)  # zoom to the focus: every row label readable
    (x0, x1), (y0, y1) = heatmap.view.viewRange()
    assert y0 < PEAK[0] < y1 and x0 < PEAK[0] < x1
    assert heatmap.view.height() / (y1 - y0) >= heatmap.left._line
    qtbot.waitUntil(lambda: heatmap.pool_factors == (1, 1))
    assert "every cell shown" in heatmap.zoom_label.text() and heatmap.fit_button.isEnabled()
    qtbot.keyClick(heatmap.graphics, Qt.Key_0)
    assert span() == pytest.approx((N_COLS, N_ROWS))
    qtbot.waitUntil(lambda: heatmap.pool_factors != (1, 1))
    assert not heatmap.fit_button.isEnabled()
    # the mouse wheel zooms about the cursor, and smaller blocks follow
    before = heatmap.pool_factors
    viewport = heatmap.graphics.viewport()
    at = QPointF(heatmap.graphics.mapFromScene(heatmap.view.sceneBoundingRect().center()))
    for _ in range(6):
        wheel = QWheelEvent(at, QPointF(viewport.mapToGlobal(at.toPoint())), QPoint(0, 0), QPoint(0, 120),
                            Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
        QApplication.sendEvent(viewport, wheel)
    assert span()[0] < N_COLS / 2 and span()[1] < N_ROWS / 2
    qtbot.waitUntil(lambda: heatmap.pool_factors[0] < before[0] and heatmap.pool_factors[1] < before[1])


def test_focus_elsewhere_pans_to_it(heatmap, tmp_path, qtbot):
    values = memmapped(tmp_path, sparse(np.random.default_rng(4)))
    heatmap.set_matrix(values, labels(N_ROWS, "q"), labels(N_COLS, "k"))
    heatmap.show_cells((0, 50), (0, 60))
    heatmap.set_focus_rows([1800], [])  # no focus column (keys of another text): x stays
    (x0, x1), (y0, y1) = heatmap.view.viewRange()
    assert y0 <= 1800 < y1 and y1 - y0 == pytest.approx(50)  # the zoom is kept
    assert (x0, x1) == pytest.approx((0, 60))
    qtbot.waitUntil(lambda: heatmap.region.rows[0] <= 1800 < heatmap.region.rows[1])
    heatmap.set_focus_rows([900], [900])  # with its column: centred on the cell (900, 900)
    (x0, x1), (y0, y1) = heatmap.view.viewRange()
    assert (y0 + y1) / 2 == pytest.approx(900.5) and (x0 + x1) / 2 == pytest.approx(900.5)
    assert (y1 - y0, x1 - x0) == pytest.approx((50, 60))
    # a focus already on screen does not move the view
    heatmap.set_focus_rows([int(y0) + 1], [])
    assert heatmap.view.viewRange()[1] == pytest.approx([y0, y1])


def test_a_small_matrix_is_drawn_whole_as_before(heatmap, qtbot):
    rng = np.random.default_rng(5)
    values = rng.random((200, 180)).astype(np.float32)
    heatmap.set_matrix(values, labels(200, "q"), labels(180, "k"))
    assert heatmap.region is None and heatmap.pool_factors == (1, 1)
    np.testing.assert_array_equal(heatmap.image.image, colormaps.quantise(values, "linear")[0])
    assert not heatmap.fit_button.isEnabled() and heatmap.zoom_label.text() == "every cell shown"
    heatmap.show_cells((10, 30), (10, 30))
    qtbot.waitUntil(heatmap.fit_button.isEnabled)
    assert heatmap.region is None  # no redrawing while zooming a matrix that fits
    assert "rows 10–29, columns 10–29 of 200 × 180" in heatmap.zoom_label.text()


LONG = ("The supplier shall automatically indemnify the purchaser against every claim arising from "
        "the goods, including indemnification of reasonable legal costs. ")


def on_screen(editor, token: int) -> bool:
    view = editor.viewport().rect()
    return any(view.intersects(r.toRect()) for r in editor.token_rects(token))


def test_window_heatmap_and_editor_stay_linked(window, load, analyse, demo_path, qtbot):
    """The demo model on a text of about 480 pieces in a small window: the overview is pooled;
    a click on a zoomed-in cell or on a row label focuses that token and scrolls the editor to it;
    a token clicked in the editor pans the zoomed heatmap to its row."""
    load(window, demo_path)
    window.resize(1000, 640)
    window.state.update(words=False)  # rows are tokens
    an = analyse(window, LONG * 20, type_it=False).analysis
    heatmap, editor = window.heatmap, window.document.editor
    n = len(an.tokens)
    assert 400 < n <= 512
    qtbot.waitUntil(lambda: heatmap.pool_factors[0] > 1)
    fr, fc = heatmap.pool_factors
    values = np.asarray(heatmap.values, np.float32)
    np.testing.assert_array_equal(heatmap.image.image, colormaps.quantise_at(
        block_max(values, fr, fc).astype(np.float32), heatmap.scale, heatmap.levels))

    editor.verticalScrollBar().setValue(0)
    target = n // 2
    assert not on_screen(editor, target)
    heatmap.show_cells((target - 6, target + 6), (0, 40))
    qtbot.waitUntil(lambda: heatmap.pool_factors == (1, 1))
    click_cell(qtbot, heatmap, target, 10)
    assert window.state.sel.focus == target
    qtbot.waitUntil(lambda: on_screen(editor, target))
    assert heatmap._focus_rows == [target]

    # a row label: the label drawn for row target + 3
    editor.verticalScrollBar().setValue(0)
    (y0, y1), height = sorted(heatmap.view.viewRange()[1]), heatmap.left.geometry().height()
    row = next(i for i in heatmap.left.visible_ticks(y0, y1, height) if i > target)
    scene = heatmap.view.mapViewToScene(QPointF(0, row + 0.5))
    scene.setX(heatmap.left.sceneBoundingRect().center().x())
    qtbot.mouseClick(heatmap.graphics.viewport(), Qt.LeftButton, pos=heatmap.graphics.mapFromScene(scene))
    assert window.state.sel.focus == row
    qtbot.waitUntil(lambda: on_screen(editor, row))
    # a column label: the token that column stands for
    (x0, x1), width = sorted(heatmap.view.viewRange()[0]), heatmap.bottom.geometry().width()
    col = next(i for i in heatmap.bottom.visible_ticks(x0, x1, width) if i not in (row, target))
    scene = heatmap.view.mapViewToScene(QPointF(col + 0.5, 0))
    scene.setY(heatmap.bottom.sceneBoundingRect().center().y())
    qtbot.mouseClick(heatmap.graphics.viewport(), Qt.LeftButton, pos=heatmap.graphics.mapFromScene(scene))
    assert window.state.sel.focus == col

    # a token clicked in the editor: the heatmap pans to its row, keeping the zoom
    far = n - 20
    heatmap.show_cells((0, 12), (0, 40))
    from attn_desktop.gui.heatmap_link import reveal_token

    reveal_token(editor, far)
    rect = editor.token_rects(far)[0]
    qtbot.mouseClick(editor.viewport(), Qt.LeftButton, pos=rect.center().toPoint())
    assert window.state.sel.focus == far
    (y0, y1) = sorted(heatmap.view.viewRange()[1])
    assert y0 <= far < y1 and y1 - y0 == pytest.approx(12)


def test_an_image_of_the_heatmap_has_no_buttons(heatmap, tmp_path):
    values = memmapped(tmp_path, sparse(np.random.default_rng(6)))
    heatmap.set_matrix(values, labels(N_ROWS, "q"), labels(N_COLS, "k"))
    heatmap.show_cells((0, 100), (0, 100))
    plot_before = heatmap.graphics.geometry()
    shot = heatmap.grab().toImage()
    assert heatmap.fit_button.isVisible() and heatmap.graphics.geometry() == plot_before
    area = heatmap.fit_button.geometry().united(heatmap.focus_button.geometry())
    colours = {shot.pixel(x, y) for x in range(area.left(), area.right()) for y in range(area.top(), area.bottom())}
    assert len(colours) == 1  # only the background where the buttons are on screen
