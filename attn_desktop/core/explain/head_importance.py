"""Which heads the output needs: head ablation grids and gradient head importance.

Ablation (Michel, Levy & Neubig 2019, section 3): the change of a scalar target when one head,
or one layer's heads, are masked, i.e. their attention output set to zero before the output
projection. Many masks run in one batched forward pass: batch row r carries its own mask
(CapturePlan.head_mask values of shape [B, H]) and row 0 is always the unmasked input, so
every change is taken against a baseline computed in the same batch.

Gradient importance (the same paper, eq. 2): |dTarget/dxi_h| at xi = 1 for a head-mask variable
xi multiplying each head's output, from one backward pass. It is a first-order approximation
of the ablation change; `rank_agreement` says how good it is for a given input.

A score function `score(ids [B, n], attention_mask [B, n], plan) -> Tensor[B]` stands for the
target; `target_scorer` adapts a core.explain.targets Target to it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_desktop.core.errors import Cancelled

Score = Callable[..., Any]  # (ids [B, n], attention_mask [B, n], plan) -> torch.Tensor [B]
Progress = Callable[[float, str], None]
TOKENS_PER_BATCH = 4096  # rows per batched pass = this // sequence length (at least 1)


def target_scorer(loaded, target) -> Score:
    """A Target (core.explain.targets) as a score function over batches."""

    def score(ids, attention_mask, plan=None):
        return target.evaluate(loaded, ids, attention_mask, plan=plan)

    return score


def default_batch_size(n_tokens: int) -> int:
    return max(1, TOKENS_PER_BATCH // max(1, n_tokens))


@dataclass(frozen=True)
class Ablation:
    """One mask: heads `heads` of layer `layer` in attention set `set` switched off."""

    set: str
    layer: int
    heads: tuple[int, ...]


@dataclass
class AblationGrids:
    value: float  # the target on the unchanged input
    head_change: dict[str, np.ndarray]  # set -> [L, H]: target with that head masked minus value
    layer_change: dict[str, np.ndarray]  # set -> [L]: target with every head of the layer masked minus value
    forwards: int  # batched forward passes run
    rows: int  # masked rows evaluated


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def evaluate_masks(
    loaded,
    score: Score,
    ids: list[int],
    ablations: list[Ablation],
    shapes: dict[str, tuple[int, int]],
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Target change for each ablation, [len(ablations)], the baseline value of each batch, and the
    number of forward passes. Row 0 of every batch is the unmasked input."""
    import torch

    from attn_desktop.core.model import capture

    n = len(ids)
    per_batch = max(1, (batch_size or default_batch_size(n)) - 1)
    device = loaded.device
    changes = np.zeros(len(ablations), dtype=np.float64)
    bases = []
    forwards = 0
    for lo in range(0, len(ablations), per_batch):
        _check(cancel)
        chunk = ablations[lo : lo + per_batch]
        rows = len(chunk) + 1
        masks: dict = {}
        for r, ab in enumerate(chunk, start=1):
            site = capture.Site(ab.set, ab.layer)
            if site not in masks:
                masks[site] = torch.ones(rows, shapes[ab.set][1], device=device)
            masks[site][r, list(ab.heads)] = 0.0
        batch = torch.tensor([ids], dtype=torch.long, device=device).expand(rows, n)
        plan = capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=masks, cancel=cancel)
        with torch.no_grad():
            values = score(batch, torch.ones_like(batch), plan).detach().double().cpu().numpy()
        forwards += 1
        bases.append(values[0])
        changes[lo : lo + len(chunk)] = values[1:] - values[0]
        if progress is not None:
            progress(min(1.0, (lo + len(chunk)) / len(ablations)), "head ablation")
    return changes, np.asarray(bases), forwards


def ablation_grids(
    loaded,
    score: Score,
    ids: list[int],
    shapes: dict[str, tuple[int, int]],
    *,
    batch_size: int | None = None,
    layers: bool = True,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> AblationGrids:
    """[L, H] head grid and [L] layer grid for every attention set in `shapes` ({set: (L, H)})."""
    ablations = [Ablation(s, layer, (h,)) for s, (L, H) in shapes.items() for layer in range(L) for h in range(H)]
    if layers:
        ablations += [Ablation(s, layer, tuple(range(H))) for s, (L, H) in shapes.items() for layer in range(L)]
    changes, bases, forwards = evaluate_masks(
        loaded, score, ids, ablations, shapes, batch_size=batch_size, progress=progress, cancel=cancel
    )
    head_change, layer_change = {}, {}
    at = 0
    for s, (L, H) in shapes.items():
        head_change[s] = changes[at : at + L * H].reshape(L, H).astype(np.float32)
        at += L * H
    if layers:
        for s, (L, _) in shapes.items():
            layer_change[s] = changes[at : at + L].astype(np.float32)
            at += L
    return AblationGrids(float(bases[0]), head_change, layer_change, forwards, len(ablations))


@contextlib.contextmanager
def frozen_parameters(model) -> Iterator[None]:
    """No parameter gradients during the block (the backward pass then skips the weight gradients)."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def gradient_importance(
    loaded,
    score: Score,
    ids: list[int],
    shapes: dict[str, tuple[int, int]],
    *,
    cancel: Callable[[], bool] | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """|dTarget/dxi| [L, H] per set for head-mask variables xi = 1, from one backward pass."""
    import torch

    from attn_desktop.core.model import capture

    device = loaded.device
    xi = {s: torch.ones(L, H, device=device, requires_grad=True) for s, (L, H) in shapes.items()}
    masks = {capture.Site(s, layer): xi[s][layer] for s, (L, _) in shapes.items() for layer in range(L)}
    plan = capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=masks, cancel=cancel)
    batch = torch.tensor([ids], dtype=torch.long, device=device)
    with torch.enable_grad(), frozen_parameters(loaded.model):
        value = score(batch, torch.ones_like(batch), plan)
        if not value.requires_grad:
            raise RuntimeError("the target does not depend on the head mask: no gradient to take")
        value.sum().backward()
    grads = {}
    for s, v in xi.items():
        g = v.grad if v.grad is not None else torch.zeros_like(v)
        grads[s] = g.detach().abs().float().cpu().numpy()
    return float(value.detach().sum()), grads


def rank_agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """Spearman rho and Kendall tau-b (with p-values) between two importance grids, flattened.
    None where a grid is constant (no ranking to compare)."""
    from scipy import stats

    x, y = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(x.size), "spearman": None, "spearman_p": None, "kendall_tau": None, "kendall_p": None}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out
    rho, rho_p = stats.spearmanr(x, y)
    tau, tau_p = stats.kendalltau(x, y)
    out.update(spearman=_num(rho), spearman_p=_num(rho_p), kendall_tau=_num(tau), kendall_p=_num(tau_p))
    return out


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def no_effect(changes: list[np.ndarray] | np.ndarray, threshold: float) -> np.ndarray:
    """Heads whose masking moves the target by less than `threshold` on every text: bool [L, H].
    `changes` is one [L, H] grid or a list of them (one per text)."""
    grids = [changes] if isinstance(changes, np.ndarray) else list(changes)
    worst = np.max(np.abs(np.stack(grids)), axis=0)
    return worst < threshold


def least_important(importance: np.ndarray, k: int, keep_per_layer: int = 1) -> list[tuple[int, int]]:
    """The k heads (layer, head) of smallest importance, never taking a layer's last
    `keep_per_layer` heads (a layer with no head left cannot run)."""
    L, H = importance.shape
    order = np.argsort(importance, axis=None, kind="stable")
    taken: list[tuple[int, int]] = []
    per_layer = [0] * L
    for flat in order:
        if len(taken) >= k:
            break
        layer, head = divmod(int(flat), H)
        if per_layer[layer] >= H - keep_per_layer:
            continue
        per_layer[layer] += 1
        taken.append((layer, head))
    return sorted(taken)


def steepest_rise(curve: np.ndarray) -> int | None:
    """Index l (1..L) where curve[l] - curve[l-1] is largest; None for fewer than 2 points."""
    c = np.asarray(curve, dtype=np.float64)
    if c.size < 2 or not np.isfinite(c).all():
        return None
    return int(np.argmax(np.diff(c))) + 1
