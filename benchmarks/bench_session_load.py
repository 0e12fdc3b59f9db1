"""What checking an untrusted session costs: load_session (container, manifest, every .npy header
and every value checked) against a bare numpy.load of the same file, and save_session (which
checks the analysis as a reader would, then writes atomically with fsync) against a bare
numpy.savez. Sizes of the demo model at 512 tokens (6 x 12 x 512 x 512 float16 attention plus a
float32 rollout). Ratios of medians measured in one run."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hostile import manifest, tokens  # noqa: E402

from attn_desktop.core.analysis import Analysis, Token  # noqa: E402
from attn_desktop.core.store.session import load_session, save_session  # noqa: E402


def analysis(n: int = 512, layers: int = 6, heads: int = 12) -> Analysis:
    rng = np.random.default_rng(0)
    att = rng.random((layers, heads, n, n), dtype=np.float32)
    att /= att.sum(-1, keepdims=True)
    rollout = rng.random((layers, n, n), dtype=np.float32)
    rollout /= rollout.sum(-1, keepdims=True)
    text = "x " * n
    spans = [(2 * i, 2 * i + 1) for i in range(n)]
    arrays = {"attentions": att.astype(np.float16), "rollout": rollout}
    man = manifest(arrays, layers=layers, heads=heads)
    man["tokens"] = tokens(spans, text)
    man["text"] = text
    man["methods"] = {"rollout": {"alpha": 0.5, "head_fusion": "mean", "start_layer": 0}}
    return Analysis(text=text, tokens=[Token.from_json(t) for t in man["tokens"]], arrays=arrays, manifest=man)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(repeats: int = 7) -> None:
    an = analysis()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.attn"
        bare_path = Path(tmp) / "bare.npz"
        save = median_time(lambda: save_session(an, path), repeats)
        bare_save = median_time(lambda: np.savez(bare_path, **an.arrays), repeats)

        def bare_load():
            with np.load(path) as z:
                return {k: z[k] for k in z.files if k != "manifest.json"}

        load = median_time(lambda: load_session(path), repeats)
        bare = median_time(bare_load, repeats)
        size = path.stat().st_size / 1e6
    print(f"session of {size:.0f} MB (6x12x512x512 float16 attention + float32 rollout)")
    print(f"load_session {load * 1000:.0f} ms vs numpy.load {bare * 1000:.0f} ms: ratio {load / bare:.2f}")
    print(f"save_session {save * 1000:.0f} ms vs numpy.savez {bare_save * 1000:.0f} ms: ratio {save / bare_save:.2f}")


if __name__ == "__main__":
    main()
