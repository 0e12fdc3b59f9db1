"""core.views.pooling: block extremes against a plain loop over blocks, on float16 (memory-mapped, with
and without negative values) and float32, ragged edges, a divisor per column; and the view plan."""

from __future__ import annotations

import numpy as np
import pytest

from attn_desktop.core.views import pooling


def loop_blocks(values, region, reduce, divisor=None) -> np.ndarray:
    (r0, r1), (c0, c1), (fr, fc) = region.rows, region.cols, region.factors
    x = np.asarray(values[r0:r1, c0:c1], np.float64)
    if divisor is not None:
        x = x / np.asarray(divisor)[c0:c1]
    out = []
    for a in range(0, r1 - r0, fr):
        out.append([reduce(x[a: a + fr, b: b + fc]) for b in range(0, c1 - c0, fc)])
    return np.array(out)


REGIONS = [
    pooling.Region((0, 103), (0, 77), (5, 4)),
    pooling.Region((10, 100), (3, 70), (7, 20)),  # a wide factor: the reduction over an inner axis
    pooling.Region((0, 103), (0, 77), (1, 3)),
    pooling.whole((103, 77)),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("region", REGIONS)
def test_block_extremes_match_a_loop(tmp_path, dtype, signed, region):
    rng = np.random.default_rng(0)
    values = rng.random((103, 77)).astype(dtype)
    if signed:
        values = (values - 0.7).astype(dtype)
    np.save(tmp_path / "v.npy", values)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    divisor = rng.random(77) + 0.1
    for d in (None, divisor):
        blocks = pooling.block_extremes(mapped, region, low=True, divisor=d)
        assert blocks.high.shape == blocks.low.shape == region.shape
        np.testing.assert_allclose(blocks.high, loop_blocks(mapped, region, np.max, d), rtol=1e-6)
        np.testing.assert_allclose(blocks.low, loop_blocks(mapped, region, np.min, d), rtol=1e-6)
        hi, lo = blocks.high, blocks.low
        np.testing.assert_array_equal(blocks.extreme(), np.where(np.abs(hi) >= np.abs(lo), hi, lo))


def test_a_block_of_negative_halves_is_not_misread_by_bit_order():
    """Negative float16 values order backwards as integers: a block holding only negatives must
    still give its true largest value (the float path redoes it)."""
    values = np.full((4, 4), 0.5, np.float16)
    values[:2, :2] = [[-0.5, -2.0], [-1.0, -0.25]]
    blocks = pooling.block_extremes(values, pooling.Region((0, 4), (0, 4), (2, 2)), low=True)
    np.testing.assert_array_equal(blocks.high, [[-0.25, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(blocks.low, [[-2.0, 0.5], [0.5, 0.5]])


def test_plan_fits_the_pixels_and_aligns_blocks():
    overview = pooling.plan((4096, 4096), (0, 4096), (0, 4096), (700, 650))
    assert overview.factors == (6, 7) and overview.rows == (0, 4096) and overview.cols == (0, 4096)
    assert overview.shape == (683, 586)
    zoomed = pooling.plan((4096, 4096), (100, 150), (2000, 2060), (700, 650))
    assert zoomed.factors == (1, 1)
    assert zoomed.rows == (75, 175) and zoomed.cols == (1970, 2090)  # half a view's margin each side
    assert zoomed.covers((100, 150), (2000, 2060)) and not zoomed.covers((100, 180), (2000, 2060))
    half = pooling.plan((4096, 4096), (1000, 3000), (1000, 3000), (500, 500))
    assert half.factors == (4, 4) and half.rows[0] % 4 == 0 and half.cols[0] % 4 == 0
    assert pooling.factor(512, 600) == 1 and pooling.factor(601, 600) == 2


def test_block_peak_names_the_cell_that_gives_the_colour():
    values = np.zeros((10, 10), np.float16)
    values[3, 7] = 0.4
    values[2, 6] = -0.9
    assert pooling.block_peak(values, (0, 5, 5, 10)) == (3, 7, pytest.approx(0.4, rel=1e-3))
    assert pooling.block_peak(values, (0, 5, 5, 10), signed=True)[:2] == (2, 6)
    values[4, 5] = 0.1
    divisor = np.ones(10)
    divisor[5] = 0.01  # × uniform: 0.1 is ten times its column's share, 0.4 only 0.4 times
    assert pooling.block_peak(values, (0, 5, 5, 10), divisor=divisor) == (4, 5, pytest.approx(0.1, rel=1e-3))
    region = pooling.Region((0, 10), (0, 10), (4, 4))
    assert region.block_of(9, 9) == (8, 10, 8, 10) and region.block_of(5, 2) == (4, 8, 0, 4)
