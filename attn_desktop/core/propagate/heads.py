"""Head aggregation and head diagnostics over attention arrays [layers, heads, queries, keys].

Pure numpy. Rows of an attention matrix are probability distributions over keys. For causal
(decoder self) attention, row i can only reach keys 0..i, so entropies are normalised by the
size of the reachable set, not by the number of keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import entr

AGGREGATES = ("mean", "max", "min")

DIFFUSE_THRESHOLD = 0.9  # mean normalised entropy at or above this: near-uniform head
SINGLE_POSITION_THRESHOLD = 0.8  # mean share of attention on one key at or above this


def aggregate_heads(att: np.ndarray, how: str) -> np.ndarray:
    """Mean, max or min over the head axis of [heads, queries, keys] (or [..., heads, q, k]),
    as float32."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; expected one of {', '.join(AGGREGATES)}")
    if how == "mean":
        return np.mean(att, axis=-3, dtype=np.float32)
    reduce = np.max if how == "max" else np.min
    if att.dtype == np.float16 and att.size:
        # float16 max/min are slow in numpy; for non-negative finite values the bit patterns,
        # read as uint16, sort like the values (checked, else the plain path below).
        bits = np.ascontiguousarray(att).view(np.uint16)
        if bits.max() < 0x7C00:
            return reduce(bits, axis=-3).view(np.float16).astype(np.float32)
    return reduce(att, axis=-3).astype(np.float32, copy=False)


def aggregate_row(att: np.ndarray, query: int, how: str) -> np.ndarray:
    """One query row [keys] of `aggregate_heads(att, how)` without aggregating the whole matrix."""
    return aggregate_heads(att[..., query : query + 1, :], how)[..., 0, :]


def is_causal(att: np.ndarray, tol: float = 1e-6) -> bool:
    """True when every matrix is square and has no weight above the diagonal."""
    q, k = att.shape[-2:]
    if q != k or q < 2:
        return False
    for row in range(q - 1):  # softmax without a mask is never exactly 0: non-causal fails at once
        if np.abs(att[..., row, row + 1 :]).max() > tol:
            return False
    return True


def support_sizes(num_queries: int, num_keys: int, causal: bool) -> np.ndarray:
    """How many keys each query row can reach."""
    if causal:
        return np.arange(1, num_queries + 1)
    return np.full(num_queries, num_keys)


def row_entropy(att: np.ndarray, causal: bool | None = None) -> np.ndarray:
    """Normalised entropy in [0, 1] of every row: [..., queries]. NaN for rows that reach a
    single key (their entropy is 0 by construction and says nothing about the head)."""
    p = np.asarray(att, dtype=np.float64)
    if causal is None:
        causal = is_causal(p)
    q, k = p.shape[-2:]
    sizes = support_sizes(q, k, causal)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        h = -plogp.sum(axis=-1) / np.log(sizes)
    h[..., sizes < 2] = np.nan
    return np.clip(h, 0.0, 1.0)


@dataclass(frozen=True)
class HeadDiagnostics:
    entropy: np.ndarray  # [L, H] mean normalised entropy of the rows
    top_position: np.ndarray  # [L, H] key index receiving the largest mean share
    top_share: np.ndarray  # [L, H] that mean share, in [0, 1]
    diffuse: np.ndarray  # [L, H] bool: near-uniform head
    single_position: np.ndarray  # [L, H] bool: almost all weight on one key position
    causal: bool


def head_diagnostics(
    att: np.ndarray,
    *,
    causal: bool | None = None,
    diffuse_threshold: float = DIFFUSE_THRESHOLD,
    single_threshold: float = SINGLE_POSITION_THRESHOLD,
    chunk: int = 256,
) -> HeadDiagnostics:
    """Diagnostics for every head of att [L, H, q, k]. Rows that reach a single key (row 0 of
    causal attention) are left out of both means."""
    if att.ndim != 4:
        raise ValueError(f"expected [layers, heads, queries, keys], got shape {att.shape}")
    layers, heads, q, k = att.shape
    if causal is None:
        causal = is_causal(att)
    sizes = support_sizes(q, k, causal)
    rows = np.flatnonzero(sizes >= 2)
    entropy_sum = np.zeros((layers, heads))
    column_sum = np.zeros((layers, heads, k))
    # Chunk over query rows so the float32 temporaries stay small for long inputs.
    for lo in range(0, len(rows), chunk):
        idx = rows[lo : lo + chunk]
        block = np.asarray(att[:, :, idx, :], dtype=np.float32)
        row_h = entr(block).sum(axis=-1, dtype=np.float64)
        entropy_sum += (row_h / np.log(sizes[idx])).sum(axis=-1)
        column_sum += block.sum(axis=2, dtype=np.float64)
    n = max(len(rows), 1)
    entropy = np.clip(entropy_sum / n, 0.0, 1.0)
    if len(rows) == 0:
        entropy[:] = np.nan
    column_mean = column_sum / n
    top_position = column_mean.argmax(axis=-1)
    top_share = np.take_along_axis(column_mean, top_position[..., None], axis=-1)[..., 0]
    return HeadDiagnostics(
        entropy=entropy,
        top_position=top_position,
        top_share=top_share,
        diffuse=entropy >= diffuse_threshold,
        single_position=top_share >= single_threshold,
        causal=causal,
    )
