"""Pieces of the window on their own: axis thinning, colour quantisation, the shared state,
the latest-only worker, PySide6's reference to None, the start-up import path."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from attn_desktop.core.analysis import Analysis, Token
from attn_desktop.gui import colormaps
from attn_desktop.gui.heatmap import LABEL_CHARS, Heatmap, TokenAxis, elide
from attn_desktop.gui.measures import pool_max, prepare, thumbnails
from attn_desktop.gui.state import ViewState
from attn_desktop.gui.workers import LatestOnly


def tiny_analysis(n=6, layers=2, heads=3, seed=0) -> Analysis:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n - 2)]
    text = " ".join(words)
    tokens, pos = [Token("[CLS]", 0, 0, special=True)], 0
    for w in words:
        tokens.append(Token(w, pos, pos + len(w)))
        pos += len(w) + 1
    tokens.append(Token("[SEP]", len(text), len(text), special=True))
    e = np.exp(rng.normal(size=(layers, heads, n, n)) * 2)
    att = (e / e.sum(-1, keepdims=True)).astype(np.float16)
    return Analysis(text=text, tokens=tokens, arrays={"attentions": att}, manifest={})


def test_axis_thins_labels_when_crowded_and_shows_all_when_zoomed(qtbot):
    axis = TokenAxis("left")
    axis.set_labels([f"t{i}" for i in range(500)])
    crowded = axis.visible_ticks(0, 500, 400)  # 500 cells in 400 px
    assert 1 < len(crowded) < 500
    step = crowded[1] - crowded[0]
    assert all(b - a == step for a, b in zip(crowded[:-1], crowded[1:], strict=True))
    assert step * 400 / 500 >= axis._line  # labels never closer than one text line
    zoomed = axis.visible_ticks(100, 120, 400)
    assert zoomed == list(range(100, 120))


def test_long_labels_are_elided_and_whitespace_shown():
    assert elide("x" * 40).endswith("…") and len(elide("x" * 40)) == LABEL_CHARS
    assert elide("indemnification") == "indemnification" and elide("automatically") == "automatically"
    assert elide("\n") == "⏎" and elide("") == "␣"


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("scale", ["linear", "log", "min–max"])
def test_quantise_matches_reference(dtype, scale):
    rng = np.random.default_rng(0)
    v = (rng.random((40, 30)) ** 6).astype(dtype)
    q, (lo, hi) = colormaps.quantise(v, scale)
    assert q.dtype == np.uint8 and q.flags.c_contiguous
    shown = np.log10(np.maximum(v.astype(np.float64), colormaps.LOG_FLOOR)) if scale == "log" else v.astype(np.float64)
    expected = np.clip(np.floor((shown - lo) / (hi - lo) * 255 + 0.5), 0, 255)
    assert np.abs(q.astype(int) - expected).max() <= 1
    assert hi == pytest.approx(np.log10(v.max()) if scale == "log" else v.max(), rel=1e-6)
    assert lo == pytest.approx(v.astype(np.float64).min() if scale == "min–max" else lo)
    assert colormaps.lut("cividis").shape == (256, 3)


def test_heatmap_image_is_uint8_with_256_lut_and_row_major(qtbot):
    h = Heatmap()
    qtbot.addWidget(h)
    m = np.zeros((3, 5), np.float32)
    m[0, 4] = 1.0
    h.set_matrix(m, list("abc"), list("vwxyz"))
    img = h.image
    assert img.image.dtype == np.uint8 and img.image.shape == (3, 5)
    assert img.axisOrder == "row-major"
    assert img.lut.shape == (256, 3)
    assert img.image[0, 4] == 255
    assert "query “a” #0" in h.describe_cell(0, 4) and "1.0000" in h.describe_cell(0, 4)


def test_tooltips_number_rows_as_tokens_and_keep_small_values_readable(qtbot):
    from attn_desktop.core.views.words import Units
    from attn_desktop.gui.units import unit_numbers

    class Holder:  # what unit_numbers caches on
        extras: dict = {}

    words = Units(starts=np.array([0, 1, 4]), n_tokens=6, labels=("the", "indemnify", "Tenant"))
    assert unit_numbers(Holder(), words) == ["#0", "#1–3", "#4–5"]
    h = Heatmap()
    qtbot.addWidget(h)
    m = np.array([[0.5, 0.00236, 0.0], [0.25, 0.125, 0.625], [0.1, 0.2, 0.7]], np.float32)
    h.set_matrix(m, ["the", "indemnify", "Tenant"], ["the", "indemnify", "Tenant"],
                 row_numbers=unit_numbers(Holder(), words), col_numbers=unit_numbers(Holder(), words))
    text = h.describe_cell(0, 1)
    assert "query “the” #0" in text and "key “indemnify” #1–3" in text
    assert f"weight {float(m[0, 1]):.3g}" in text and "0.00236" in text  # not "0.0024"
    assert "weight 0.5000" in h.describe_cell(0, 0) and "query “Tenant” #4–5" in h.describe_cell(2, 0)


def test_thumbnails_keep_peaks():
    a = np.zeros((1, 2, 100, 100), np.float16)
    a[0, 0, 57, 3] = 0.5
    t = thumbnails(a, size=20)
    assert t.shape == (1, 2, 20, 20) and t[0, 0].max() == 255
    assert pool_max(np.arange(10.0)[None], 4).tolist() == [[2.0, 5.0, 8.0, 9.0]]


def test_state_clamps_and_steps(qapp):
    an = tiny_analysis()
    state = ViewState()
    state.set_prepared(prepare(an))
    assert state.sel.focus == 0  # [CLS]: the command line's flow focus rule (first token of an encoder)
    seen = []
    state.changed.connect(seen.append)
    state.update(layer=7, head=9)
    assert (state.sel.layer, state.sel.head) == (1, 2)
    state.step_layer(1)
    assert state.sel.layer == 0
    state.update(head="mean")
    state.step_head(1)
    assert state.sel.head == 0
    state.step_head(-1)
    assert state.sel.head == 2
    state.cycle_aggregate()
    assert state.sel.head == "mean"
    assert all(isinstance(s, frozenset) for s in seen)
    state.update(measure="flow")  # computed on request: selectable before any row exists
    assert state.sel.measure == "flow" and state.layer_range() == (0, 1)
    state.update(measure="rollout", start_layer=9, layer=0, alpha=0)
    assert (state.sel.start_layer, state.sel.layer, state.layer_range()) == (1, 1, (1, 1))
    assert state.sel.alpha == 0.01  # α = 0 would leave only the identity
    state.step_layer(1)
    assert state.sel.layer == 1


def test_latest_only_runs_one_job_and_drops_superseded(qtbot):
    runner = LatestOnly("test")
    gate = threading.Event()
    ran = []

    def slow(progress, cancel):
        ran.append("slow")
        gate.wait(10)
        return "slow"

    def fast(progress, cancel):
        ran.append("fast")
        return "fast"

    results = []
    runner.succeeded.connect(lambda gen, r: results.append((gen, r)))
    runner.request(slow)
    qtbot.waitUntil(lambda: ran == ["slow"])
    second = runner.request(fast)
    assert ran == ["slow"]  # the second waits: one job at a time
    with qtbot.waitSignal(runner.idle, timeout=10_000):
        gate.set()
    assert ran == ["slow", "fast"]
    assert results == [(second, "fast")]


def test_installed_pyside_keeps_none_alive_through_void_calls(qtbot):
    """PySide6 6.12.0 dropped a reference to None on every void call (pinned out in pyproject)."""
    from PySide6.QtWidgets import QWidget

    w = QWidget()
    qtbot.addWidget(w)
    before = sys.getrefcount(None)
    for _ in range(2_000):
        w.update()
    assert sys.getrefcount(None) >= before - 10


def test_gui_start_up_path_imports_no_torch():
    code = ("import sys; import attn_desktop.gui.app, attn_desktop.gui.main_window; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "print(bad); raise SystemExit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rollout_results_kept_for_the_last_parameter_sets():
    from attn_desktop.gui.measures import (
        ROLLOUT_KEEP,
        adopt_rollout,
        compute_rollout,
        file_rollout,
        store,
        work_copy,
    )

    an = tiny_analysis()
    params = [(a, "mean", 0) for a in (0.1, 0.2, 0.3, 0.4, 0.5)]
    for p in params[:ROLLOUT_KEEP]:
        file_rollout(an, p, compute_rollout(work_copy(an), p))
    adopt_rollout(an, params[0])  # shown again: used most recently
    file_rollout(an, params[-1], compute_rollout(work_copy(an), params[-1]))
    kept = store(an)["rollout"]
    assert len(kept) == ROLLOUT_KEEP and params[0] in kept and params[1] not in kept
    assert an.manifest["methods"]["rollout"]["alpha"] == 0.5  # the arrays a session would save
    np.testing.assert_array_equal(an.arrays["rollout"], kept[params[-1]].arrays["rollout"])


def test_saved_propagation_with_unreadable_parameters_is_reported_not_dropped_silently():
    from attn_desktop.gui.measures import index_saved, store

    n = 3
    an = Analysis(text="a b c", tokens=[Token(t, i * 2, i * 2 + 1) for i, t in enumerate("abc")],
                  arrays={"attentions": np.full((2, 2, n, n), 1 / n, np.float16),
                          "rollout": np.full((2, n, n), 1 / n, np.float32),
                          "flow": np.full((1, n), 1 / n, np.float32), "flow_rows": np.array([0])},
                  manifest={"methods": {"flow": {"alpha": 0.5}}})
    index_saved(an)
    warnings = an.extras["gui_warnings"]
    assert any("saved rollout was not used" in w for w in warnings)
    assert any("saved flow rows were not used" in w for w in warnings)
    assert not store(an)["rollout"] and not store(an)["flow"]
