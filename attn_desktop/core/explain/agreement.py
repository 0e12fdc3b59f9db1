"""How far importance vectors agree: Kendall tau-b, Spearman rho (with p-values, scipy) and top-k
overlap between every pair, on absolute values, special tokens excluded."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CONVENTION = ("absolute values over the non-special tokens; Kendall tau-b and Spearman rho from "
              "scipy.stats (tie-corrected), two-sided p-values; top-k overlap |top_k(a) & top_k(b)| / k "
              "(ties broken by token order); null where a vector is constant")


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def top_k(values: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-values, kind="stable")[:k].tolist())


def pair(a: np.ndarray, b: np.ndarray, ks: list[int]) -> dict[str, Any]:
    """Agreement of two vectors already restricted to the compared tokens (absolute values taken here)."""
    from scipy import stats

    a, b = np.abs(np.asarray(a, dtype=np.float64)), np.abs(np.asarray(b, dtype=np.float64))
    constant = a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0
    if constant:
        tau = tau_p = rho = rho_p = None
    else:
        t = stats.kendalltau(a, b, variant="b")
        r = stats.spearmanr(a, b)
        tau, tau_p = _finite(t.statistic), _finite(t.pvalue)
        rho, rho_p = _finite(r.statistic), _finite(r.pvalue)
    overlap = [len(top_k(a, k) & top_k(b, k)) / k if k else None for k in ks]
    return {"kendall_tau": tau, "kendall_p": tau_p, "spearman": rho, "spearman_p": rho_p, "topk": overlap}


def agreement(vectors: dict[str, np.ndarray], special: list[bool]) -> dict[str, Any]:
    names = list(vectors)
    keep = np.array([not s for s in special], dtype=bool)
    n = int(keep.sum())
    ks = [min(5, n), max(1, int(round(0.10 * n)))] if n else [0, 0]
    size = len(names)
    mats = {key: [[None] * size for _ in range(size)] for key in ("kendall_tau", "kendall_p", "spearman", "spearman_p")}
    overlap = [[[None] * size for _ in range(size)] for _ in ks]
    for i in range(size):
        for j in range(i, size):
            res = pair(vectors[names[i]][keep], vectors[names[j]][keep], ks)
            for key in mats:
                mats[key][i][j] = mats[key][j][i] = res[key]
            for q in range(len(ks)):
                overlap[q][i][j] = overlap[q][j][i] = res["topk"][q]
    return {"methods": names, "tokens": n, **mats,
            "topk": {"k": ks, "labels": ["k=5", "k=10% of tokens"], "overlap": overlap},
            "convention": CONVENTION}
