"""Rollout and flow as stages of an Analysis: computed from its attention, stored in its arrays,
recorded in its manifest (`manifest["methods"]`), shared by the command line and the window."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import Cancelled, UserError

FUSIONS = ("mean", "max", "min")
Cancel = Callable[[], bool]


def check_params(analysis: Analysis, alpha: float, fusion: str | int, start_layer: int = 0) -> None:
    if not 0.0 < float(alpha) <= 1.0:
        raise UserError(f"alpha must be in (0, 1], got {alpha}")
    heads = min(analysis.attention(name).shape[1] for name in analysis.attention_set_names())
    if isinstance(fusion, int) and not isinstance(fusion, bool):
        if not 0 <= fusion < heads:
            raise UserError(f"head {fusion} does not exist: the model has heads 0 to {heads - 1}")
    elif fusion not in FUSIONS:
        raise UserError(f"head fusion must be mean, max, min or a head number, got {fusion!r}")
    layers = analysis.num_layers
    if not 0 <= start_layer < layers:
        raise UserError(f"start layer {start_layer} does not exist: the model has layers 0 to {layers - 1}")


def parse_fusion(text: str) -> str | int:
    return int(text) if text.strip().lstrip("-").isdigit() else text.strip()


def self_attention(analysis: Analysis) -> np.ndarray:
    return analysis.attention("encoder" if analysis.is_encoder_decoder else "self")


def default_focus(analysis: Analysis) -> int:
    """The token whose row summarises the input: the first ([CLS]-like) one, or for a causal LM
    the last, the only token that sees the whole text."""
    kind = analysis.manifest.get("model", {}).get("kind")
    return len(analysis.tokens) - 1 if kind == "causal-lm" else 0


def parse_rows(spec: str, analysis: Analysis, focus: int | None = None) -> list[int]:
    n = len(analysis.tokens)
    spec = spec.strip()
    if spec == "focus":
        return [default_focus(analysis) if focus is None else focus]
    if spec == "all":
        return list(range(n))
    rows = []
    for part in spec.split(","):
        try:
            r = int(part)
        except ValueError:
            raise UserError(f"flow rows must be focus, all or token indices like 0,3,7; got {spec!r}") from None
        if not -n <= r < n:
            raise UserError(f"flow row {r} does not exist: the text has tokens 0 to {n - 1}")
        rows.append(r % n)
    return sorted(set(rows))


def add_rollout(
    analysis: Analysis,
    alpha: float = 0.5,
    fusion: str | int = "mean",
    start_layer: int = 0,
    *,
    progress: Callable[[int, int], object] | None = None,
    cancel: Cancel | None = None,
) -> None:
    """arrays['rollout'] [L − start, n, n], cumulative after each layer; for encoder-decoder
    models also 'decoder_rollout' [Ld, t, t] and 'decoder_source_rollout' [Ld, t, s]."""
    from attn_desktop.core.propagate import rollout as ro

    check_params(analysis, alpha, fusion, start_layer)
    started = time.perf_counter()
    if analysis.is_encoder_decoder:
        if start_layer:
            raise UserError("a start layer applies to self-attention models only")
        out = ro.rollout_encoder_decoder(
            analysis.arrays["encoder_attentions"], analysis.arrays["decoder_attentions"],
            analysis.arrays["cross_attentions"], alpha, fusion, progress=progress, cancel=cancel,
        )
        new = {"rollout": out["encoder"], "decoder_rollout": out["decoder"],
               "decoder_source_rollout": out["decoder_to_source"]}
    else:
        new = {"rollout": ro.rollout(self_attention(analysis), alpha, fusion, start_layer,
                                     progress=progress, cancel=cancel)}
    analysis.arrays.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in new.items()})
    analysis.manifest.setdefault("methods", {})["rollout"] = {
        "alpha": float(alpha), "head_fusion": fusion, "start_layer": int(start_layer),
        "arrays": sorted(new), "seconds": round(time.perf_counter() - started, 6),
        "definition": "Abnar & Zuidema 2020: A_hat = rownorm(alpha*A + (1-alpha)*I), R_l = A_hat_l R_(l-1)",
    }


def flow_params(analysis: Analysis) -> dict | None:
    return analysis.manifest.get("methods", {}).get("flow")


def add_flow(
    analysis: Analysis,
    rows: Sequence[int],
    alpha: float = 0.5,
    fusion: str | int = "mean",
    *,
    progress: Callable[[int, int], object] | None = None,
    cancel: Cancel | None = None,
    hat: np.ndarray | None = None,
    parallel: bool = False,
) -> list[int]:
    """Exact attention flow of `rows` to every input token, merged into arrays['flow'] [r, n] and
    arrays['flow_rows'] [r]. Rows already there with the same alpha and fusion are kept, not
    recomputed; other parameters start afresh. Rows finish one at a time, so a cancel keeps
    the finished ones. progress(done_rows, total_rows). `hat`: the fused, residual-normalised
    matrices for these alpha and fusion, when the caller keeps them between calls. `parallel`:
    split each row's input tokens over this process's kept flow worker processes
    (core.propagate.flow_pool, one per core) where the text is long enough for that to pay. A job
    that would not fit (core.propagate.flow_cost: memory, or many rows for many hours) is refused
    with a UserError before anything is computed; nothing is ever approximated. Returns the
    rows computed now."""
    from attn_desktop.core.propagate.flow import EXACT_TOL, attention_flow
    from attn_desktop.core.propagate.flow_cost import plan
    from attn_desktop.core.propagate.flow_pool import default_workers, shared_pool, worth_a_pool
    from attn_desktop.core.propagate.rollout import fused_hat

    check_params(analysis, alpha, fusion)
    n = len(analysis.tokens)
    asked = len(dict.fromkeys(int(r) for r in rows))
    cost = plan(self_attention(analysis).shape[0], n, asked, default_workers() if parallel else 1)
    if asked and cost.refusal:  # before anything changes
        raise UserError(cost.refusal)
    previous = flow_params(analysis)
    if previous is None or previous["alpha"] != float(alpha) or previous["head_fusion"] != fusion:
        analysis.arrays.pop("flow", None)
        analysis.arrays.pop("flow_rows", None)
        previous = None
    have = set(int(r) for r in analysis.arrays.get("flow_rows", np.zeros(0, np.int64)))
    todo = [int(r) for r in dict.fromkeys(rows) if int(r) not in have]
    for r in todo:
        if not 0 <= r < n:
            raise UserError(f"flow row {r} does not exist: the text has tokens 0 to {n - 1}")
    if hat is None:
        hat = fused_hat(self_attention(analysis), alpha, fusion)
    seconds = previous["seconds"] if previous else 0.0
    bound = previous["max_abs_error_bound"] if previous else 0.0
    bound_normalised = previous.get("max_abs_error_bound_normalised", 0.0) if previous else 0.0
    pool = shared_pool() if todo and parallel and worth_a_pool(hat.shape[0], n, default_workers()) else None
    done: list[int] = []
    try:
        for k, r in enumerate(todo):
            if cancel is not None and cancel():
                raise Cancelled()
            result = attention_flow(hat, [r], cancel=cancel, pool=pool)
            _merge_row(analysis, r, result.flow[0])
            seconds += result.seconds
            bound = max(bound, float(result.max_abs_error_bound))
            bound_normalised = max(bound_normalised, float(result.max_abs_error_bound_normalised))
            done.append(r)
            if progress is not None:
                progress(k + 1, len(todo))
    finally:
        if done or previous:
            analysis.manifest.setdefault("methods", {})["flow"] = {
                "alpha": float(alpha), "head_fusion": fusion,
                "rows": [int(r) for r in analysis.arrays["flow_rows"]],
                "exact": bound <= EXACT_TOL, "max_abs_error_bound": bound,
                "max_abs_error_bound_normalised": bound_normalised,
                "error_bound_meaning": "certified bounds on each max-flow value, before and after "
                                       "the row normalisation",
                "normalisation": "each row divided by its sum", "seconds": round(seconds, 6),
                "definition": "Abnar & Zuidema 2020: max flow from (layer L, row i) to (layer 0, j) "
                              "on capacities A_hat_l",
            }
    return done


def _merge_row(analysis: Analysis, row: int, values: np.ndarray) -> None:
    rows = analysis.arrays.get("flow_rows", np.zeros(0, np.int64))
    flow = analysis.arrays.get("flow", np.zeros((0, len(analysis.tokens)), np.float32))
    at = int(np.searchsorted(rows, row))
    analysis.arrays["flow_rows"] = np.insert(rows, at, row).astype(np.int64)
    analysis.arrays["flow"] = np.insert(flow, at, values.astype(np.float32), axis=0)
