"""Attention rollout against naive baselines, each ratio measured in this one run.

1. rollout_row, one query row of every cumulative layer at n=4096, L=12 (target <= 40 ms,
   given the fused per-layer matrices). Baseline: one chain of row-vector × matrix products
   per layer (L(L+1)/2 products).
2. Full cumulative rollout at n=512, L=12 (target <= 50 ms). Baseline: the paper's code
   (``compute_joint_attention``: a float64 loop ``R = Â_l @ R``).

The machine is shared and BLAS timings are noisy: each figure is the best of several runs.

Run: .venv/bin/python benchmarks/bench_rollout.py
"""

from __future__ import annotations

import time

import numpy as np

from attn_desktop.core.propagate.rollout import cumulative_rollout, residual_normalise, rollout_row


def fused_attention(layers: int, n: int, seed: int = 0) -> np.ndarray:
    """Residual-normalised matrices from softmax of Gaussian logits (temperature 2)."""
    rng = np.random.default_rng(seed)
    out = np.empty((layers, n, n), dtype=np.float32)
    for layer in range(layers):
        logits = rng.standard_normal((n, n), dtype=np.float32) * 2.0
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        out[layer] = logits / logits.sum(axis=1, keepdims=True)
    return residual_normalise(out, 0.5)


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def chains_per_layer(hat: np.ndarray, row: int) -> np.ndarray:
    """Baseline: row `row` of R_l = Â_l ⋯ Â_1 computed separately for every l."""
    out = np.empty((hat.shape[0], hat.shape[1]), dtype=np.float32)
    for layer in range(hat.shape[0]):
        vector = hat[layer][row]
        for below in range(layer - 1, -1, -1):
            vector = vector @ hat[below]
        out[layer] = vector
    return out


def joint_attention_float64(hat: np.ndarray) -> np.ndarray:
    """Baseline: the paper's compute_joint_attention loop, in float64."""
    hat64 = hat.astype(np.float64)
    out = np.zeros(hat64.shape)
    out[0] = hat64[0]
    for layer in range(1, hat64.shape[0]):
        out[layer] = hat64[layer] @ out[layer - 1]
    return out


def target_1() -> None:
    hat = fused_attention(12, 4096)
    row = 1000
    ours = best_of(lambda: rollout_row(hat, row), 10)
    naive = best_of(lambda: chains_per_layer(hat, row), 3)
    causal = np.tril(hat)
    causal /= causal.sum(axis=-1, keepdims=True)
    ours_causal = best_of(lambda: rollout_row(causal, row), 10)
    naive_causal = best_of(lambda: chains_per_layer(causal, row), 3)
    diff = np.abs(rollout_row(hat, row) - chains_per_layer(hat, row)).max()
    print("[rollout 1] rollout_row, n=4096 L=12, fused matrices given")
    print(f"  baseline, one vector-matrix chain per layer: {naive * 1e3:.1f} ms")
    print(
        f"  rollout_row: {ours * 1e3:.1f} ms -> {naive / ours:.1f}x faster (target <= 40 ms); "
        f"max |diff| {diff:.1e}"
    )
    print(
        f"  causal, row {row}: baseline {naive_causal * 1e3:.1f} ms, rollout_row "
        f"{ours_causal * 1e3:.1f} ms -> {naive_causal / ours_causal:.1f}x"
    )


def target_2() -> None:
    small = fused_attention(12, 512, seed=1)
    ours = best_of(lambda: cumulative_rollout(small), 10)
    paper = best_of(lambda: joint_attention_float64(small), 5)
    diff = np.abs(cumulative_rollout(small) - joint_attention_float64(small)).max()
    print("[rollout 2] full cumulative rollout, n=512 L=12")
    print(f"  baseline, float64 loop (paper's compute_joint_attention): {paper * 1e3:.1f} ms")
    print(
        f"  cumulative_rollout (float32): {ours * 1e3:.1f} ms -> {paper / ours:.1f}x "
        f"(target <= 50 ms); max |diff| {diff:.1e}"
    )


def main() -> None:
    target_1()
    target_2()


if __name__ == "__main__":
    main()
