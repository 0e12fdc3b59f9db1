"""Layer/head switch: time from changing the selection to the repainted window, at n=512 and
n=2048, on the real main window with synthetic attention [6 layers, 12 heads, n, n] (float16).
Every third word of the synthetic text is two word pieces, so the words view (the default) really
aggregates pieces into words; each size is timed by words and by pieces.

Baseline in the same run: pyqtgraph's general path (float32 image, auto levels, the default
512-entry lookup table), i.e. what the heatmap would cost without quantising to uint8.
Prints per-switch median and 95th percentile; the budget is 16 ms at n=512, 33 ms at n=2048.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp())

import numpy as np  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from attn_desktop.core.analysis import Analysis, Token  # noqa: E402
from attn_desktop.gui.app import make_app  # noqa: E402
from attn_desktop.gui.main_window import MainWindow  # noqa: E402
from attn_desktop.gui.measures import prepare  # noqa: E402

LAYERS, HEADS = 6, 12


def synthetic(n: int, seed: int = 0) -> Analysis:
    """n tokens: [CLS], words of one piece and (every third) of two pieces ("w3" + "x"), [SEP]."""
    rng = np.random.default_rng(seed)
    pieces: list[list[str]] = []
    count, i = 0, 0
    while count < n - 2:
        two = i % 3 == 0 and count + 2 <= n - 2
        pieces.append([f"w{i}", "x"] if two else [f"w{i}"])
        count += len(pieces[-1])
        i += 1
    text = " ".join("".join(p) for p in pieces)
    tokens, pos = [Token("[CLS]", 0, 0, special=True)], 0
    for word in pieces:
        for piece in word:
            tokens.append(Token(piece, pos, pos + len(piece)))
            pos += len(piece)
        pos += 1
    tokens.append(Token("[SEP]", len(text), len(text), special=True))
    att = np.empty((LAYERS, HEADS, n, n), dtype=np.float16)
    for layer in range(LAYERS):
        logits = rng.standard_normal((HEADS, n, n), dtype=np.float32) * 3
        e = np.exp(logits - logits.max(-1, keepdims=True))
        att[layer] = e / e.sum(-1, keepdims=True)
    return Analysis(text=text, tokens=tokens, arrays={"attentions": att}, manifest={"model": {}})


class PaintCounter:
    """Counts heatmap image paints, to show each timed switch really reached the screen."""

    def __init__(self, item) -> None:
        self.count = 0
        original = item.paint

        def paint(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        item.paint = paint


def timed_switches(window: MainWindow, app: QApplication, steps: list[dict]) -> list[float]:
    """Selection change -> every view updated -> Qt's pending repaints done (the dirty widgets
    only, as in normal use)."""
    out = []
    for fields in steps:
        t0 = time.perf_counter()
        window.state.update(**fields)
        app.processEvents()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def naive_switches(window: MainWindow, app: QApplication, steps: list[dict]) -> list[float]:
    """The same switches with the heatmap fed the general way: float32, auto levels, the
    default 512-entry lookup table."""
    import pyqtgraph as pg

    heatmap = window.heatmap
    lut = pg.colormap.get("viridis").getLookupTable()

    def general_render() -> None:
        heatmap.image.setImage(heatmap.values.astype(np.float32), autoLevels=True, lut=lut)

    fast_render = heatmap._render
    heatmap._render = general_render
    window.cache.clear()
    try:
        return timed_switches(window, app, steps)
    finally:
        heatmap._render = fast_render
        window.cache.clear()


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"median {statistics.median(ms):6.1f} ms  p95 {ms[int(0.95 * (len(ms) - 1))]:6.1f} ms"


def main() -> int:
    app = make_app()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    print(f"layer/head switch, window {window.width()}x{window.height()}, {LAYERS}x{HEADS} heads, "
          f"platform {app.platformName()}")
    ok = True
    painted = PaintCounter(window.heatmap.image)
    # words mode exists since the words view; older windows show pieces only
    modes = ((True, "words"), (False, "pieces")) if hasattr(window.state.sel, "words") else ((None, "pieces"),)
    for n, budget in ((512, 16.0), (2048, 33.0)):
        analysis = synthetic(n)
        window.document.set_text(analysis.text)
        window.show_prepared(prepare(analysis))
        app.processEvents()
        rng = np.random.default_rng(1)
        steps = [{"layer": int(rng.integers(LAYERS)), "head": int(rng.integers(HEADS))} for _ in range(40)]
        for words, mode in modes:
            if words is not None:
                window.state.update(words=words)
                app.processEvents()
            timed_switches(window, app, steps[:5])  # warm-up
            before = painted.count
            fast = timed_switches(window, app, steps)
            assert painted.count - before >= len(steps) * 0.9, "switches did not repaint the heatmap"
            agg = timed_switches(window, app, [{"head": h} for h in ("mean", "max", "min")] * 3)
            within = sorted(fast)[int(0.95 * (len(fast) - 1))] <= budget
            ok &= within
            print(f"n={n:5d}  {mode:6s} single head, whole window: {summary(fast)}  (budget {budget:.0f} ms: "
                  f"{'met' if within else 'MISSED'})")
            print(f"         {mode:6s} aggregate over heads (mean/max/min): {summary(agg)}")
            if mode == "pieces":
                naive = naive_switches(window, app, steps)
                print(f"         general pyqtgraph path, same switches: {summary(naive)}  "
                      f"-> quantised path {statistics.median(naive) / statistics.median(fast):.1f}x faster")
    window.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
