"""Attention rollout (Abnar & Zuidema 2020) and its encoder-decoder extension. Pure numpy.

Attention arrays are ``[layers, heads, queries, keys]``; rows are queries and sum to 1.
Per layer ``Â = rownorm(α·A + (1−α)·I)`` of the head-fused matrix ``A``; the cumulative
rollout after layer ``l`` is ``R_l = Â_l · R_{l−1}`` with ``R_1 = Â_1``, so row ``i`` of
``R_l`` says how much each input token reaches token ``i`` at layer ``l``.

``progress(done, total)`` is called after each step; ``cancel()`` returning True stops the
computation with :class:`~attn_desktop.core.errors.Cancelled`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import Cancelled
from .heads import AGGREGATES, aggregate_heads

Progress = Callable[[int, int], object]
Cancel = Callable[[], bool]


def fuse_heads(att: np.ndarray, fusion: str | int = "mean") -> np.ndarray:
    """Fuse the head axis of ``[L, H, q, k]``: "mean", "max", "min" or one head by index."""
    att = np.asarray(att)
    if att.ndim != 4:
        raise ValueError(
            f"expected attention [layers, heads, queries, keys], got shape {att.shape}"
        )
    if isinstance(fusion, (int, np.integer)) and not isinstance(fusion, bool):
        heads = att.shape[1]
        if not -heads <= fusion < heads:
            raise ValueError(f"head {fusion} out of range for {heads} heads")
        return np.array(att[:, fusion], dtype=np.float32)
    if fusion not in AGGREGATES:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {AGGREGATES} or a head index")
    return aggregate_heads(att, fusion)


def residual_normalise(fused: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``Â = rownorm(α·A + (1−α)·I)`` per layer of square ``[L, n, n]`` (rows summing to 0 stay 0)."""
    fused = np.asarray(fused, dtype=np.float32)
    if fused.ndim != 3 or fused.shape[1] != fused.shape[2]:
        raise ValueError(f"expected square [layers, n, n], got shape {fused.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    hat = fused * np.float32(alpha)
    diag = np.arange(fused.shape[1])
    hat[:, diag, diag] += np.float32(1.0 - alpha)
    sums = hat.sum(axis=-1, keepdims=True)
    np.divide(hat, sums, out=hat, where=sums > 0)
    return hat


def fused_hat(att: np.ndarray, alpha: float = 0.5, fusion: str | int = "mean") -> np.ndarray:
    """``residual_normalise(fuse_heads(att, fusion), alpha)``: the per-layer matrices that
    rollout and flow propagate through. Compute once and reuse for many rows."""
    return residual_normalise(fuse_heads(att, fusion), alpha)


def _check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("rollout cancelled")


def _as_hat(att_or_hat: np.ndarray, alpha: float, fusion: str | int) -> np.ndarray:
    arr = np.asarray(att_or_hat)
    if arr.ndim == 4:
        return fused_hat(arr, alpha, fusion)
    if arr.ndim == 3 and arr.shape[1] == arr.shape[2]:
        return np.asarray(arr, dtype=np.float32)
    raise ValueError(
        f"expected [L, H, n, n] attention or [L, n, n] fused matrices, got {arr.shape}"
    )


def cumulative_rollout(
    hat: np.ndarray,
    start_layer: int = 0,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> np.ndarray:
    """Cumulative rollout of residual-normalised matrices ``hat`` [L, n, n] from layer
    ``start_layer`` on: float32 ``[L − start_layer, n, n]``, entry ``l`` after layer
    ``start_layer + l``."""
    hat = np.asarray(hat, dtype=np.float32)
    layers = hat.shape[0]
    if not 0 <= start_layer < layers:
        raise ValueError(f"start_layer {start_layer} out of range for {layers} layers")
    out = np.empty((layers - start_layer,) + hat.shape[1:], dtype=np.float32)
    out[0] = hat[start_layer]
    total = layers - start_layer
    for k in range(1, total):
        _check(cancel)
        np.matmul(hat[start_layer + k], out[k - 1], out=out[k])
        if progress is not None:
            progress(k + 1, total)
    return out


def rollout(
    att: np.ndarray,
    alpha: float = 0.5,
    fusion: str | int = "mean",
    start_layer: int = 0,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> np.ndarray:
    """Cumulative rollout of self-attention ``att`` [L, H, n, n]: float32 [L − start_layer, n, n].
    The last entry is the final rollout ``R_L``."""
    return cumulative_rollout(
        fused_hat(att, alpha, fusion), start_layer, progress=progress, cancel=cancel
    )


def rollout_row(
    att_or_hat: np.ndarray,
    row: int,
    alpha: float = 0.5,
    fusion: str | int = "mean",
    start_layer: int = 0,
    *,
    cancel: Cancel | None = None,
) -> np.ndarray:
    """Row ``row`` of every cumulative rollout matrix: float32 [L − start_layer, n].

    ``att_or_hat`` is attention [L, H, n, n] (fused and normalised here with ``alpha`` and
    ``fusion``) or already residual-normalised matrices [L, n, n] (``fused_hat``; ``alpha`` and
    ``fusion`` are then not used).

    Row ``row`` after layer ``l`` is ``e_row^T Â_l ⋯ Â_1``: one chain of row-vector products
    per layer. All chains end with the same matrices, so they are advanced together from the
    top layer down: each matrix is read once, in one product with a stack of at most L row
    vectors, instead of L(L+1)/2 separate vector-matrix products. Columns that are zero in
    every chain (keys after ``row`` in a causal model) are skipped.
    """
    hat = _as_hat(att_or_hat, alpha, fusion)[start_layer:]
    layers, n = hat.shape[0], hat.shape[-1]
    if layers == 0:
        raise ValueError(f"start_layer {start_layer} leaves no layer")
    if not 0 <= row < n:
        raise ValueError(f"row {row} out of range for {n} tokens")
    # chains[m] holds the chain that started at layer (layers - 1 - m); rows past the chains
    # started so far stay zero.
    chains = np.zeros((max(layers, _GEMM_ROWS), n), dtype=np.float32)
    spare = np.zeros_like(chains)
    chains[0] = hat[-1][row]
    width = _support_width(chains[:1])
    for k in range(layers - 2, -1, -1):
        _check(cancel)
        started = layers - 1 - k
        _advance(chains, started, hat[k], width, spare)
        spare[started] = hat[k][row]
        chains, spare = spare, chains
        width = _support_width(chains[: started + 1])
    return chains[:layers][::-1].copy()


# OpenBLAS sgemm multiplies a stack of 8 rows faster than one of 3 to 7 (measured with
# benchmarks/bench_rollout.py), so short stacks are padded with zero rows to 8; one or two
# rows go through matrix-vector products instead.
_GEMM_ROWS = 8


def _advance(
    chains: np.ndarray, count: int, matrix: np.ndarray, width: int, out: np.ndarray
) -> None:
    """out[:count] = chains[:count] @ matrix, reading only the first ``width`` columns of the
    chains (the others are zero)."""
    if count <= 2:
        for r in range(count):
            np.matmul(chains[r, :width], matrix[:width], out=out[r])
        return
    rows = max(count, _GEMM_ROWS)
    np.matmul(chains[:rows, :width], matrix[:width], out=out[:rows])


def _support_width(vectors: np.ndarray) -> int:
    """One past the last column that is non-zero in any of ``vectors``."""
    nonzero = np.flatnonzero(vectors.reshape(-1, vectors.shape[-1]).any(axis=0))
    return int(nonzero[-1]) + 1 if nonzero.size else 1


def rollout_encoder_decoder(
    enc: np.ndarray,
    dec: np.ndarray,
    cross: np.ndarray,
    alpha: float = 0.5,
    fusion: str | int = "mean",
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> dict[str, np.ndarray]:
    """Rollout through an encoder-decoder: encoder self-attention ``enc`` [Le, H, s, s],
    decoder self-attention ``dec`` [Ld, H, t, t], cross-attention ``cross`` [Ld, H, t, s].

    Every token carries a distribution over the inputs it is made of: source tokens for
    encoder tokens, target-prefix tokens and source tokens for decoder tokens. The encoder is
    plain rollout, ``R_ee = Â_enc,Le ⋯ Â_enc,1``. Each decoder layer has two residual
    sub-layers and both are rolled out with the same residual weight α:

    - self-attention: ``[R_dd | R_ds] ← Â_dec,l · [R_dd | R_ds]``;
    - cross-attention (queries: decoder tokens, keys: final encoder outputs):
      ``R_dd ← (1−α)·R_dd`` and ``R_ds ← (1−α)·R_ds + α·C_l · R_ee``,
      with ``C_l`` the head-fused cross-attention, rows renormalised to sum to 1.

    starting from ``R_dd = I``, ``R_ds = 0``. Every entry is non-negative and every row of
    ``[R_dd | R_ds]`` sums to 1, so ``R_ds.sum(1)`` is the share of a decoder token that comes
    from the source. Returned float32 arrays, cumulative per layer:
    ``encoder`` [Le, s, s], ``decoder`` (R_dd) [Ld, t, t], ``decoder_to_source`` (R_ds)
    [Ld, t, s], and ``source_share`` [Ld, t].
    """
    enc_rollout = rollout(enc, alpha, fusion, cancel=cancel)
    r_ee = enc_rollout[-1]
    dec_hat = fused_hat(dec, alpha, fusion)
    cross_fused = fuse_heads(cross, fusion)
    layers, t = dec_hat.shape[:2]
    if cross_fused.shape[0] != layers or cross_fused.shape[1:] != (t, r_ee.shape[0]):
        raise ValueError(
            f"cross-attention {cross_fused.shape} does not match decoder {dec_hat.shape} "
            f"and encoder {r_ee.shape}"
        )
    cross_sums = cross_fused.sum(axis=-1, keepdims=True)
    np.divide(cross_fused, cross_sums, out=cross_fused, where=cross_sums > 0)
    keep = np.float32(1.0 - alpha)
    r_dd = np.eye(t, dtype=np.float32)
    r_ds = np.zeros((t, r_ee.shape[0]), dtype=np.float32)
    out_dd = np.empty((layers, t, t), dtype=np.float32)
    out_ds = np.empty((layers, t, r_ee.shape[0]), dtype=np.float32)
    for layer in range(layers):
        _check(cancel)
        r_dd = dec_hat[layer] @ r_dd
        r_ds = dec_hat[layer] @ r_ds
        r_dd *= keep
        r_ds = keep * r_ds + np.float32(alpha) * (cross_fused[layer] @ r_ee)
        out_dd[layer], out_ds[layer] = r_dd, r_ds
        if progress is not None:
            progress(layer + 1, layers)
    return {
        "encoder": enc_rollout,
        "decoder": out_dd,
        "decoder_to_source": out_ds,
        "source_share": out_ds.sum(axis=-1),
    }
