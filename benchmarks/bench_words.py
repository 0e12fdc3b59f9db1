"""Cost of showing words instead of word pieces, on the GUI thread, in one run.

What the window does per heatmap refresh in words mode that it does not do by pieces: aggregate
the shown [n, n] matrix into [words, words] (core.views.words.unit_matrix), and the editor's focus row
into words. Printed as ratios to what every refresh costs anyway: quantising the piece matrix
for the image (colormaps.quantise, float16 as stored), at 512 and 2048 tokens of text with long
words. The word matrix is cached with the view, so it is paid once per layer, head and measure.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from attn_desktop.core.analysis import Token
from attn_desktop.core.views import words
from attn_desktop.gui import colormaps

WORDS = ("the indemnification obligations notwithstanding unforeseeable circumstances shall "
         "automatically survive termination of this agreement").split()


def synthetic(n_tokens: int, rng) -> tuple[str, list[Token], np.ndarray]:
    """Text whose long words are split into 3-character pieces, like word pieces, and attention
    [12 heads, n, n] float16 as the window stores it."""
    tokens = [Token("[CLS]", 0, 0, special=True)]
    text, k = "", 0
    while len(tokens) < n_tokens - 1:
        w = WORDS[k % len(WORDS)]
        k += 1
        start = len(text) + (1 if text else 0)
        text = f"{text} {w}" if text else w
        for a in range(0, len(w), 3):
            if len(tokens) < n_tokens - 1:
                tokens.append(Token(w[a:a + 3], start + a, start + min(a + 3, len(w))))
    tokens.append(Token("[SEP]", len(text), len(text), special=True))
    e = rng.random((12, n_tokens, n_tokens), dtype=np.float32)
    att = (e / e.sum(-1, keepdims=True)).astype(np.float16)
    return text, tokens, att


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    for n, repeats in ((512, 30), (2048, 5)):
        report(n, repeats, *synthetic(n, rng))


def report(n: int, repeats: int, text: str, tokens: list[Token], att: np.ndarray) -> None:
    units = words.group_words(text, tokens)
    rows = np.arange(n)
    head = att[3]
    grouping = best(lambda: words.group_words(text, tokens), repeats)
    piece_view = best(lambda: colormaps.quantise(head, "linear"), repeats)
    word_view = best(lambda: words.unit_matrix(head, rows, units, units), repeats)
    row = best(lambda: words.sum_columns(head[5], units), repeats * 10)
    print(f"n={n}: {len(units)} words; grouping (once per analysis) {grouping * 1e3:.1f} ms; "
          f"word matrix {word_view * 1e3:.1f} ms = {word_view / piece_view:.2f}x quantising the "
          f"piece matrix ({piece_view * 1e3:.1f} ms); focus row by words {row * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
