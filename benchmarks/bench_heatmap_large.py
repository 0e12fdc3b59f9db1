"""The heatmap at n=4096: layer/head switch time on the real heatmap widget (offscreen), in one run.

Attention is a float16 memory-mapped file [layers, heads, 4096, 4096], laid out as a long capture
stores it (core.model.mapped), read once beforehand so it sits in the page cache. Each timed switch
is set_matrix with another layer/head slice, then Qt's pending repaint (paints are counted, so every
switch really reached the screen). Measured in the same run:

- overview: the whole matrix max-pooled to the view's pixels (core.views.pooling);
- zoomed: the view on about 60 x 60 cells, drawn at full cell resolution;
- pan: one arrow-key step while zoomed in halfway (redraws when leaving the part drawn);
- the head mean as float32 (what an aggregate over heads hands the heatmap), overview;
- baseline: the whole 4096 x 4096 image at full resolution (quantised to uint8 through the same
  fast lookup table, then setImage), i.e. the heatmap before the overview existed.

What reaches the screen, in the same run: a matrix with 200 isolated peaks (value 1, the rest
below 1e-3), drawn as the overview and as the baseline; the widget is grabbed and a peak counts as
visible when a pixel within 1 pixel of where it lies has the colour map's top colour.

Then the same attention in the real main window (a synthetic 4096-token analysis, words of 1 to 4
pieces, WORD_PIECES): a layer/head switch through the selection, by pieces and by words, which adds
what the window does around the heatmap (the matrix by words, the focus row, the editor's colours);
by words also with the previous core.views.words.unit_matrix (whole matrix to float32, then reduceat).

Budget: a layer/head switch <= 100 ms at n=4096 with the data in the page cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp())

import numpy as np  # noqa: E402
from PySide6.QtCore import QRectF  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from attn_desktop.gui import colormaps  # noqa: E402
from attn_desktop.gui.heatmap import Heatmap  # noqa: E402

BUDGET_MS = 100.0
WORD_PIECES = (1, 1, 2, 1, 3, 1, 1, 2, 4, 1)  # pieces per word, in turn: 60% of words one piece


def attention_file(folder: Path, layers: int, heads: int, n: int, seed: int = 0) -> np.ndarray:
    """Softmax-like rows: a small background, a few strong keys per row (sparse peaks)."""
    path = folder / "attentions.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(layers, heads, n, n))
    rng = np.random.default_rng(seed)
    for layer in range(layers):
        for head in range(heads):
            for start in range(0, n, 512):
                block = rng.random((min(512, n - start), n), dtype=np.float32) ** 12
                block[np.arange(len(block)), rng.integers(0, n, len(block))] += 5.0
                block /= block.sum(axis=1, keepdims=True)
                out[layer, head, start: start + len(block)] = block
    out.flush()
    del out
    mapped = np.load(path, mmap_mode="r")
    for layer in range(layers):  # into the page cache
        np.asarray(mapped[layer]).view(np.uint16).max()
    return mapped


class PaintCounter:
    def __init__(self, item) -> None:
        self.count = 0
        original = item.paint

        def paint(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        item.paint = paint


def timed(app: QApplication, heatmap: Heatmap, painted: PaintCounter, matrices, labels) -> list[float]:
    out = []
    for values in matrices:
        before = painted.count
        t0 = time.perf_counter()
        heatmap.set_matrix(values, labels, labels, title="attention")
        app.processEvents()
        out.append((time.perf_counter() - t0) * 1000)
        assert painted.count > before, "the switch did not repaint the heatmap"
    return out


def naive_render(heatmap: Heatmap) -> None:
    """The heatmap before the overview: the whole matrix at full resolution."""
    data, heatmap.levels = colormaps.quantise(heatmap.values, heatmap.scale, heatmap._expected())
    heatmap.region = None
    heatmap.image.setImage(data, autoLevels=False, levels=(0, 255), lut=heatmap._lut())
    rows, cols = heatmap.values.shape
    heatmap.image.setRect(QRectF(0, 0, cols, rows))


def window_switches(att: np.ndarray, app: QApplication, switches: int) -> list[tuple[str, list[float]]]:
    from attn_desktop.core.analysis import Analysis, Token
    from attn_desktop.core.views import words as core_words
    from attn_desktop.gui.main_window import MainWindow
    from attn_desktop.gui.measures import prepare

    n = att.shape[-1]
    pieces: list[list[str]] = []
    count, i = 0, 0
    while count < n - 2:
        size = min(WORD_PIECES[i % len(WORD_PIECES)], n - 2 - count)
        pieces.append([f"w{i}"] + ["x"] * (size - 1))
        count += size
        i += 1
    text = " ".join("".join(p) for p in pieces)
    tokens, pos = [Token("[CLS]", 0, 0, special=True)], 0
    for word in pieces:
        for piece in word:
            tokens.append(Token(piece, pos, pos + len(piece)))
            pos += len(piece)
        pos += 1
    tokens.append(Token("[SEP]", len(text), len(text), special=True))
    analysis = Analysis(text=text, tokens=tokens, arrays={"attentions": att}, manifest={"model": {}})
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    window.document.set_text(text)
    window.show_prepared(prepare(analysis))
    app.processEvents()
    layers, heads = att.shape[:2]
    steps = [{"layer": k % layers, "head": (k // layers) % heads} for k in range(switches)]
    out = []
    current = core_words.unit_matrix
    for words, unit_matrix in ((False, current), (True, current), (True, previous_unit_matrix)):
        core_words.unit_matrix = unit_matrix
        window.cache.clear()
        window.state.update(words=words)
        app.processEvents()
        times = []
        for fields in steps[:3] + steps:
            t0 = time.perf_counter()
            window.state.update(**fields)
            app.processEvents()
            times.append((time.perf_counter() - t0) * 1000)
        core_words.unit_matrix = current
        shape = window.heatmap.values.shape
        mode = "pieces" if not words else "words" if unit_matrix is current else "words, previous path"
        out.append((f"window, {mode} ({shape[0]} x {shape[1]}, max of {window.heatmap.pool_factors})",
                    times[3:]))
    window.close()
    return out


def previous_unit_matrix(matrix, row_queries, row_units, col_units):
    """core.views.words.unit_matrix before blocks of gathered columns (for the ratio): the whole matrix
    converted to float32, columns by np.add.reduceat, then the rows of each word."""
    from attn_desktop.core.views import words as core_words

    cols = np.add.reduceat(core_words.as_float32(matrix), col_units.starts, axis=1)
    starts, sizes = row_units.starts, row_units.sizes
    rows = cols[starts]
    for k in range(1, int(sizes.max())):
        longer = np.flatnonzero(sizes > k)
        rows[longer] += cols[starts[longer] + k]
    return (rows / sizes[:, None]).astype(np.float32), np.arange(len(row_units))


def visible_peaks(app: QApplication, heatmap: Heatmap, peaks: np.ndarray) -> int:
    from PySide6.QtCore import QPointF

    app.processEvents()
    image = heatmap.graphics.grab().toImage()
    top = heatmap._lut()[255].astype(int)
    seen = 0
    for r, c in peaks:
        at = heatmap.graphics.mapFromScene(heatmap.view.mapViewToScene(QPointF(c + 0.5, r + 0.5)))
        found = False
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                colour = image.pixelColor(at.x() + dx, at.y() + dy)
                rgb = np.array([colour.red(), colour.green(), colour.blue()])
                found |= bool(np.abs(rgb - top).max() <= 8)
        seen += found
    return seen


def peaks_on_screen(app: QApplication, heatmap: Heatmap, n: int) -> tuple[int, int, int]:
    """(peaks, visible in the overview, visible in the full-resolution baseline)."""
    rng = np.random.default_rng(7)
    values = (rng.random((n, n), dtype=np.float32) * 1e-3).astype(np.float16)
    peaks = np.stack([rng.integers(0, n, 200), rng.integers(0, n, 200)], axis=1)
    values[peaks[:, 0], peaks[:, 1]] = 1.0
    labels = [f"tok{i}" for i in range(n)]
    heatmap.set_matrix(values, labels, labels)
    heatmap.fit()
    pooled = visible_peaks(app, heatmap, peaks)
    naive_render(heatmap)
    naive = visible_peaks(app, heatmap, peaks)
    heatmap.clear()
    return len(peaks), pooled, naive


def summary(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"median {statistics.median(ms):7.1f} ms  p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--switches", type=int, default=24)
    args = parser.parse_args()
    n = args.n
    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        att = attention_file(Path(tmp), args.layers, args.heads, n)
        print(f"attention [{args.layers}, {args.heads}, {n}, {n}] float16, memory-mapped "
              f"({att.nbytes / 2**20:.0f} MB, written and cached in {time.perf_counter() - t0:.1f} s)")
        heatmap = Heatmap()
        heatmap.resize(900, 820)
        heatmap.show()
        app.processEvents()
        painted = PaintCounter(heatmap.image)
        labels = [f"tok{i}" for i in range(n)]
        slices = [att[k % args.layers, (k // args.layers) % args.heads] for k in range(args.switches)]
        t0 = time.perf_counter()
        heatmap.set_matrix(slices[0], labels, labels, title="attention")
        app.processEvents()
        first = (time.perf_counter() - t0) * 1000
        fr, fc = heatmap.pool_factors
        ph, pw = heatmap._pixels()
        print(f"view {pw:.0f} x {ph:.0f} px, platform {app.platformName()}; first show with {n} new labels "
              f"{first:.0f} ms")
        print(f"overview: each pixel the max of {fr} x {fc} cells, image {heatmap.image.image.shape}")

        timed(app, heatmap, painted, slices[:3], labels)  # warm-up
        overview = timed(app, heatmap, painted, slices, labels)

        heatmap.show_cells((2000, 2060), (2000, 2060))
        app.processEvents()
        assert heatmap.pool_factors == (1, 1), heatmap.pool_factors
        zoomed = timed(app, heatmap, painted, slices, labels)
        region = heatmap.region
        print(f"zoomed: every cell, region drawn {region.rows} x {region.cols}")

        heatmap.show_cells((1024, 3072), (1024, 3072))
        app.processEvents()
        pans = []
        for k in range(args.switches):
            t0 = time.perf_counter()
            heatmap.pan(0.15 if k % 8 < 4 else -0.15, 0.0)
            app.processEvents()
            pans.append((time.perf_counter() - t0) * 1000)
        print(f"pan at half zoom: each pixel the max of {heatmap.pool_factors} cells")

        heatmap.fit()
        app.processEvents()
        means = [np.mean(att[k % args.layers], axis=0, dtype=np.float32) for k in range(3)]
        mean = timed(app, heatmap, painted, means * max(1, args.switches // 3), labels)

        fast_render = heatmap._render
        heatmap._render = lambda: naive_render(heatmap)
        try:
            timed(app, heatmap, painted, slices[:2], labels)
            naive = timed(app, heatmap, painted, slices, labels)
        finally:
            heatmap._render = fast_render
        n_peaks, pooled_peaks, naive_peaks = peaks_on_screen(app, heatmap, n)
        heatmap.close()
        in_window = window_switches(att, app, args.switches)

    def row(name: str, ms: list[float]) -> None:
        print(f"{name:44s} {summary(ms)}  ({statistics.median(naive) / statistics.median(ms):5.1f}x the baseline)")

    print(f"\nlayer/head switch at n={n} (set_matrix + repaint), {len(overview)} switches each:")
    row("overview, max-pooled float16 slice", overview)
    row("zoomed in, every cell", zoomed)
    row("pan step at half zoom", pans)
    row("overview of a float32 head mean", mean)
    print(f"{'baseline: full-resolution 4096x4096 setImage':44s} {summary(naive)}")
    print(f"\nisolated peaks visible on screen: overview {pooled_peaks}/{n_peaks}, "
          f"full-resolution baseline {naive_peaks}/{n_peaks}")
    print("\nthe same switch in the main window (selection -> every view updated and repainted):")
    for name, ms in in_window:
        print(f"{name:44s} {summary(ms)}")
    p95 = sorted(overview)[int(0.95 * (len(overview) - 1))]
    met = p95 <= BUDGET_MS and sorted(zoomed)[int(0.95 * (len(zoomed) - 1))] <= BUDGET_MS
    print(f"budget {BUDGET_MS:.0f} ms per switch (p95, overview and zoomed): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
