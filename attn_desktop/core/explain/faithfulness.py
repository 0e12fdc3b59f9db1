"""Faithfulness of importance vectors (DeYoung et al. 2020, ERASER), with a random baseline.

Comprehensiveness at fraction q: f(x) − f(x without the top-k tokens); sufficiency:
f(x) − f(x with only the top-k tokens kept), k = max(1, round(q · N)) of the N non-special
tokens; AOPC = mean over the fractions (no k = 0 term, as ERASER's scorer). Removed tokens get
the same replacement as leave-one-out; special tokens are never removed. Random rankings give
the chance level every method is read against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)
MIN_RANDOM = 20
SIGNED = {"grad_input", "integrated_gradients", "loo"}
CONVENTION = ("ERASER (DeYoung et al. 2020): comprehensiveness f(x) - f(x without top-k), sufficiency "
              "f(x) - f(top-k only), k = max(1, round(fraction * N)) of the N non-special tokens, AOPC = mean "
              "over the fractions without a k=0 term; tokens replaced as in leave-one-out (not deleted and "
              "re-tokenised as in ferret), specials never removed; signed vectors ranked by their signed "
              "value (tokens that push the target up first), non-negative ones by value")


def counts_for(fractions, n_free: int) -> list[int]:
    return [min(n_free, max(1, int(round(q * n_free)))) for q in fractions]


def ranking(vector: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Non-special token indices, most important first (stable for ties)."""
    return free[np.argsort(-vector[free], kind="stable")]


def curves(order: np.ndarray, free: np.ndarray, counts: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    """Removal sets for comprehensiveness (top-k removed) and sufficiency (all but top-k removed)."""
    comp = [order[:k].tolist() for k in counts]
    suff = [order[k:].tolist() for k in counts]
    return comp, suff


def faithfulness(loaded, target, vectors: dict[str, np.ndarray], replacement, *,
                 fractions=DEFAULT_FRACTIONS, random_rankings: int = MIN_RANDOM, seed: int = 0,
                 batch_size: int = 32, cancel=None, progress: Callable[[int, int], None] | None = None,
                 cache: dict | None = None) -> dict[str, Any]:
    from attn_desktop.core.explain.perturbation import evaluate_removals

    random_rankings = max(MIN_RANDOM, int(random_rankings))
    free = np.array([i for i, s in enumerate(target.special) if not s], dtype=np.int64)
    n_free = len(free)
    fractions = [float(q) for q in fractions]
    section: dict[str, Any] = {"fractions": fractions, "non_special": n_free, "convention": CONVENTION,
                               "replacement": replacement.how, "target_value": target.value}
    if n_free == 0:
        section.update(counts=[], per_method={}, random=None, note="no non-special tokens to remove")
        return section
    counts = counts_for(fractions, n_free)
    section["counts"] = counts
    rng = np.random.default_rng(seed)
    orders = {name: ranking(np.asarray(v, dtype=np.float64), free) for name, v in vectors.items()}
    randoms = [rng.permutation(free) for _ in range(random_rankings)]
    removals: list[list[int]] = []
    spans = []
    for order in list(orders.values()) + randoms:
        comp, suff = curves(order, free, counts)
        spans.append(len(removals))
        removals += comp + suff
    values = evaluate_removals(loaded, target, removals, replacement, batch_size, cancel, progress, cache)
    drop = target.value - values
    m = len(counts)

    def unpack(j):
        start = spans[j]
        return drop[start:start + m], drop[start + m:start + 2 * m]

    per_method = {}
    rand_comp = np.array([unpack(len(orders) + r)[0] for r in range(random_rankings)])
    rand_suff = np.array([unpack(len(orders) + r)[1] for r in range(random_rankings)])
    rand_aopc_comp, rand_aopc_suff = rand_comp.mean(1), rand_suff.mean(1)
    for j, name in enumerate(orders):
        comp, suff = unpack(j)
        aopc_comp, aopc_suff = float(comp.mean()), float(suff.mean())
        per_method[name] = {
            "comprehensiveness": comp.tolist(), "sufficiency": suff.tolist(),
            "aopc_comp": aopc_comp, "aopc_suff": aopc_suff,
            "ranking": "signed" if name in SIGNED else "non-negative values",
            "beats_random_comp": float(np.mean(rand_aopc_comp < aopc_comp)),
            "beats_random_suff": float(np.mean(rand_aopc_suff > aopc_suff)),
        }
    section["per_method"] = per_method
    section["random"] = {
        "rankings": random_rankings, "seed": seed, "generator": "numpy.random.default_rng(seed).permutation",
        "aopc_comp_mean": float(rand_aopc_comp.mean()), "aopc_suff_mean": float(rand_aopc_suff.mean()),
        "aopc_comp_band": np.percentile(rand_aopc_comp, [5, 95]).tolist(),
        "aopc_suff_band": np.percentile(rand_aopc_suff, [5, 95]).tolist(),
        "comprehensiveness_mean": rand_comp.mean(0).tolist(),
        "sufficiency_mean": rand_suff.mean(0).tolist(),
        "comprehensiveness_band": np.percentile(rand_comp, [5, 95], axis=0).tolist(),
        "sufficiency_band": np.percentile(rand_suff, [5, 95], axis=0).tolist(),
        "band": "5th and 95th percentiles over the random rankings",
    }
    return section
