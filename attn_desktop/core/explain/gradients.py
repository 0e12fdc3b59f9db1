"""Gradient attributions of a Target: saliency, gradient x input, Integrated Gradients (Captum)
and gradient-weighted attention rollout (Chefer, Gur & Wolf 2021). One float32 value per token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn_desktop.core.errors import Cancelled, UserError

BASELINES = ("pad", "mask", "zero")
SALIENCY = "L2 norm over d of df/de_(i,d), e = output of the input-embedding layer"
GRAD_INPUT = "sum over d of e_(i,d) * df/de_(i,d) (signed)"
GRAD_ROLLOUT = ("Chefer et al. 2021: A_bar_l = mean_h((dF/dA_l * A_l)+), R = I, R <- R + A_bar_l R per layer "
                "(no row normalisation); the read row of R with its own entry set to 0")


def _check(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def saliency_and_grad_input(loaded, target) -> tuple[np.ndarray, np.ndarray]:
    """One forward and backward pass: (saliency [n], grad_input [n])."""
    import torch

    ids = target.ids_tensor(loaded)
    with torch.enable_grad():
        embeds = target.embed(loaded, ids).detach().requires_grad_(True)
        value = target.evaluate_embeds(loaded, embeds)
        (grad,) = torch.autograd.grad(value.sum(), embeds)
    grad, embeds = grad[0].float(), embeds[0].detach().float()
    return (grad.norm(dim=-1).cpu().numpy().astype(np.float32),
            (grad * embeds).sum(-1).cpu().numpy().astype(np.float32))


@dataclass
class IGResult:
    attributions: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


def _baseline_ids(loaded, target, baseline: str):
    import torch

    tok = loaded.tokenizer
    token_id = tok.pad_token_id if baseline == "pad" else tok.mask_token_id
    if token_id is None:
        return None, None
    special = torch.tensor(target.special, device=loaded.device)
    ids = target.ids_tensor(loaded)
    return torch.where(special, ids, torch.full_like(ids, token_id)), tok.convert_ids_to_tokens([token_id])[0]


def integrated_gradients(
    loaded, target, *, baseline: str = "pad", steps: int | str = "auto", start_steps: int = 16,
    max_steps: int = 256, tolerance: float = 0.05, method: str = "gausslegendre",
    internal_batch_size: int | None = None, cancel: Callable[[], bool] | None = None,
) -> IGResult:
    """Integrated Gradients of the target on the input-embedding layer, summed over the embedding
    dimension. Baseline: special tokens kept, the others replaced by pad or mask (ids, through
    Captum's LayerIntegratedGradients) or by a zero embedding (Captum's IntegratedGradients on the
    same layer's output). steps="auto": start_steps, doubled up to max_steps until
    |delta| <= tolerance * |f(x) - f(b)|; the run with the smallest |delta| is kept."""
    import os

    import torch

    os.environ.setdefault("MPLBACKEND", "Agg")  # captum imports matplotlib.pyplot; never a GUI backend here
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    if baseline not in BASELINES:
        raise UserError(f"unknown IG baseline {baseline!r}: choose from {', '.join(BASELINES)}")
    adaptive = steps == "auto"
    if not adaptive:
        try:
            steps = int(steps)
        except (TypeError, ValueError):
            raise UserError(f"IG steps must be 'auto' or a number, got {steps!r}") from None
        if steps < 2:
            raise UserError("IG needs at least 2 steps")
    requested = baseline
    ids = target.ids_tensor(loaded)
    n = ids.shape[1]
    if internal_batch_size is None:
        internal_batch_size = max(1, min(32, 4096 // max(n, 1)))
    base_ids, base_token = (None, None) if baseline == "zero" else _baseline_ids(loaded, target, baseline)
    if base_ids is None and baseline == "mask":
        raise UserError(f"{loaded.name}'s tokenizer has no mask token: use the pad or zero baseline")
    if base_ids is None:
        baseline = "zero"  # no pad token either (GPT-2): the zero embedding is the remaining choice
    module = target.embedding_module(loaded)

    with torch.no_grad():
        f_x = float(target.evaluate(loaded, ids)[0])
        if baseline == "zero":
            embeds = target.embed(loaded, ids).detach()
            keep = torch.tensor(target.special, device=embeds.device).view(1, -1, 1)
            base_embeds = torch.where(keep, embeds, torch.zeros_like(embeds))
            f_b = float(target.evaluate_embeds(loaded, base_embeds)[0])
        else:
            f_b = float(target.evaluate(loaded, base_ids)[0])
    gap = abs(f_x - f_b)

    def checked(value):
        _check(cancel)  # every internal batch of every round: a long IG run stops on request
        return value

    if baseline == "zero":
        ig = IntegratedGradients(lambda e: checked(target.evaluate_embeds(loaded, e)))

        def attribute(k):
            return ig.attribute(embeds, baselines=base_embeds, n_steps=k, method=method,
                                internal_batch_size=internal_batch_size)
        implementation = "captum.attr.IntegratedGradients on the output of the input-embedding layer"
    else:
        lig = LayerIntegratedGradients(lambda x: checked(target.evaluate(loaded, x)), module)

        def attribute(k):
            return lig.attribute(ids, baselines=base_ids, n_steps=k, method=method,
                                 internal_batch_size=internal_batch_size)
        implementation = "captum.attr.LayerIntegratedGradients on the input-embedding layer"

    tried: list[dict[str, Any]] = []
    best = None
    k = start_steps if adaptive else steps
    while True:
        _check(cancel)
        with torch.enable_grad():
            attr = attribute(k)
        vector = attr[0].float().sum(-1).detach().cpu().numpy().astype(np.float32)
        # Captum's convergence delta, from f(x) and f(b) computed once above (Captum would rerun both)
        delta = float(attr[0].double().sum()) - (f_x - f_b)
        tried.append({"steps": int(k), "delta": delta})
        if best is None or abs(delta) < abs(best[1]):
            best = (vector, delta, k)
        converged = abs(delta) <= tolerance * gap or abs(delta) < 1e-7
        if not adaptive or converged or k >= max_steps:
            break
        k = min(2 * k, max_steps)
    vector, delta, k = best
    relative = abs(delta) / gap if gap > 0 else None
    record = {
        "steps": int(k), "delta": delta, "relative_delta": relative, "f_input": f_x, "f_baseline": f_b,
        "baseline": baseline, "baseline_requested": requested, "baseline_token": base_token,
        "baseline_rule": "special tokens kept, every other token replaced",
        "layer": target.embedding_layer, "method": method, "adaptive": adaptive,
        "tolerance": tolerance if adaptive else None, "max_steps": max_steps if adaptive else None,
        "tried": tried, "converged": abs(delta) <= tolerance * gap or abs(delta) < 1e-7,
        "internal_batch_size": internal_batch_size, "implementation": implementation,
        "definition": "sum over d of IG attributions on the input-embedding layer; "
                      "completeness: sum(attr) = f(x) - f(baseline) + delta",
    }
    return IGResult(vector, record)


def gradient_rollout(loaded, target, read: Callable[[np.ndarray], np.ndarray],
                     set_name: str = "self") -> tuple[np.ndarray, dict[str, Any]]:
    """Chefer et al. 2021 over the self-attention layers, via the capture engine's keep_grad.
    `read(R)` turns the [n, n] relevance matrix (own entries zeroed) into the read row."""
    import torch

    from attn_desktop.core.model import capture

    plan = capture.CapturePlan(sites=loaded.site_of, record=False, keep_grad=True)
    ids = target.ids_tensor(loaded)
    with torch.enable_grad():
        value = target.evaluate(loaded, ids, plan=plan)
        sites = sorted((s for s in plan.graph_weights if s.set == set_name), key=lambda s: s.layer)
        if not sites:
            raise RuntimeError("the capture engine kept no attention weights in the graph")
        weights = [plan.graph_weights[s] for s in sites]
        grads = torch.autograd.grad(value.sum(), weights, allow_unused=True)
    n = ids.shape[1]
    relevance = torch.eye(n, dtype=torch.float32)
    for a, g in zip(weights, grads, strict=True):
        a = a[0].detach().float().cpu()
        g = torch.zeros_like(a) if g is None else g[0].float().cpu()
        a_bar = (g * a).clamp(min=0).mean(0)
        relevance = relevance + a_bar @ relevance
    matrix = relevance.numpy()
    np.fill_diagonal(matrix, 0.0)
    return read(matrix).astype(np.float32), {"definition": GRAD_ROLLOUT, "layers": len(sites), "set": set_name}


GRAD_ROLLOUT_SEQ2SEQ = (
    "Chefer et al. 2021, encoder-decoder rules (eqs. 6-11 and their reference code): R_ss = I, "
    "R_ss <- R_ss + A_bar R_ss per encoder layer; R_tt = I, R_ts = 0; per decoder layer, self-attention "
    "R_tt <- R_tt + A_bar R_tt, R_ts <- R_ts + A_bar R_ts, then cross-attention R_ts <- R_ts + "
    "Rn_tt^T A_bar Rn_ss with Rn = rownorm(R - I) + I; A_bar = mean_h((dF/dA * A)+); the read row of R_ts")


def _residual_normalised(r):
    import torch

    eye = torch.eye(r.shape[-1], dtype=r.dtype)
    off = r - eye
    sums = off.sum(-1, keepdim=True)
    return torch.where(sums > 0, off / sums.clamp(min=1e-30), off) + eye


def gradient_rollout_seq2seq(loaded, target, row: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Gradient-weighted relevance of the source tokens for decoder position `row` (the position
    whose logits give the target), through encoder, decoder and cross-attention."""
    import torch

    from attn_desktop.core.model import capture

    plan = capture.CapturePlan(sites=loaded.site_of, record=False, keep_grad=True)
    with torch.enable_grad():
        value = target.evaluate(loaded, target.ids_tensor(loaded), plan=plan)
        sites = {name: sorted((s for s in plan.graph_weights if s.set == name), key=lambda s: s.layer)
                 for name in ("encoder", "decoder", "cross")}
        if not all(sites.values()):
            raise RuntimeError("the capture engine kept no encoder, decoder or cross-attention weights")
        order = sites["encoder"] + sites["decoder"] + sites["cross"]
        weights = [plan.graph_weights[s] for s in order]
        grads = torch.autograd.grad(value.sum(), weights, allow_unused=True)
    a_bar = {}
    for site, a, g in zip(order, weights, grads, strict=True):
        a = a[0].detach().float().cpu()
        g = torch.zeros_like(a) if g is None else g[0].float().cpu()
        a_bar[site] = (g * a).clamp(min=0).mean(0)
    n = a_bar[sites["encoder"][0]].shape[-1]
    m = a_bar[sites["decoder"][0]].shape[-1]
    r_ss = torch.eye(n)
    for s in sites["encoder"]:
        r_ss = r_ss + a_bar[s] @ r_ss
    r_tt, r_ts = torch.eye(m), torch.zeros(m, n)
    norm_ss = _residual_normalised(r_ss)
    for self_site, cross_site in zip(sites["decoder"], sites["cross"], strict=True):
        a = a_bar[self_site]
        r_tt, r_ts = r_tt + a @ r_tt, r_ts + a @ r_ts
        r_ts = r_ts + _residual_normalised(r_tt).T @ a_bar[cross_site] @ norm_ss
    info = {"definition": GRAD_ROLLOUT_SEQ2SEQ, "layers": len(sites["encoder"]),
            "decoder_layers": len(sites["decoder"]), "set": "encoder-decoder", "row": int(row)}
    return r_ts[row].numpy().astype(np.float32), info
