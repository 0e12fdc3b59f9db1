"""The "heads" stage of analyze(): which heads the target needs, and how alike the layers make
the tokens. Adds arrays (see docs/heads.md) and manifest["heads"] to an Analysis."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from attn_desktop.core.errors import UserError
from attn_desktop.core.explain import head_importance as hi

DEFAULT_THRESHOLD = 0.01
SETS_IN_ORDER = ("self", "encoder", "decoder", "cross")
_ATTENTION_KEY = {"self": "attentions", "encoder": "encoder_attentions",
                  "decoder": "decoder_attentions", "cross": "cross_attentions"}
ABLATION_DEFINITION = ("target with the head's attention output set to zero before the output "
                       "projection, minus the target of the unchanged input (same batch)")
GRADIENT_DEFINITION = "|dTarget/dxi| at xi = 1, xi multiplying the head's attention output (Michel et al. 2019)"
SMOOTHING_DEFINITION = ("mean cosine similarity over all pairs of distinct tokens of the token states "
                        "after each layer (index 0: the embeddings); specials included")


def prefix(set_name: str) -> str:
    """Array-name prefix of an attention set: "" for a single stack, "encoder_" and so on."""
    return "" if set_name == "self" else f"{set_name}_"


def head_shapes(analysis) -> dict[str, tuple[int, int]]:
    """{set: (layers, heads)} from the analysis' attention arrays."""
    out = {}
    for s in SETS_IN_ORDER:
        key = _ATTENTION_KEY[s]
        if key in analysis.arrays:
            L, H = analysis.arrays[key].shape[:2]
            out[s] = (int(L), int(H))
    return out


def parse_options(options: dict | None) -> dict:
    opts = dict(options or {})
    unknown = set(opts) - {"threshold", "batch_size", "gradient"}
    if unknown:
        raise UserError(f"unknown heads option {sorted(unknown)[0]!r}: use threshold, batch_size, gradient")
    threshold = opts.get("threshold", DEFAULT_THRESHOLD)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise UserError(f"the no-effect threshold must be a number, not {threshold!r}") from None
    if not threshold >= 0:
        raise UserError("the no-effect threshold must be zero or positive")
    batch = opts.get("batch_size")
    if batch is not None and (not isinstance(batch, int) or batch < 2):
        raise UserError("the heads batch size must be an integer of at least 2")
    return {"threshold": threshold, "batch_size": batch, "gradient": bool(opts.get("gradient", True))}


def add_heads(
    loaded,
    analysis,
    target,
    options: dict | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Head ablation grids, gradient importance, entropy, no-effect heads and over-smoothing for
    the `target` (a resolved core.explain.targets Target) of `analysis`."""
    from attn_desktop.core.model.loading import CAPTURE_EAGER
    from attn_desktop.core.propagate.heads import head_diagnostics
    from attn_desktop.core.propagate.smoothing import hidden_states, layer_smoothing

    opts = parse_options(options)
    report = progress or (lambda f, m: None)
    shapes = head_shapes(analysis)
    timings: dict[str, float] = {}
    ids = list(target.input_ids)
    section: dict = {
        "target": {**target.definition, "value": target.value, "predicted": target.predicted},
        "sets": {s: {"layers": L, "heads": H, "prefix": prefix(s)} for s, (L, H) in shapes.items()},
        "threshold": opts["threshold"],
        "skipped": {},
    }
    arrays = analysis.arrays
    n_tokens = len(analysis.tokens)

    t0 = time.perf_counter()
    for s in shapes:
        att = arrays[_ATTENTION_KEY[s]]
        if min(att.shape[-2:]) < 2 and s != "cross":
            section["skipped"][f"{prefix(s)}head_entropy"] = "fewer than 2 tokens"
            continue
        diag = head_diagnostics(att, causal=None)
        entropy = np.nan_to_num(diag.entropy, nan=0.0).astype(np.float32)
        arrays[f"{prefix(s)}head_entropy"] = entropy
        section["sets"][s]["single_position"] = _pairs(diag.single_position)
        section["sets"][s]["diffuse"] = _pairs(diag.diffuse)
    timings["entropy"] = time.perf_counter() - t0

    score = hi.target_scorer(loaded, target)
    if loaded.capture_mode == CAPTURE_EAGER:
        why = "this model family bypasses the capture engine (recording only): heads cannot be masked"
        section["skipped"]["head_importance"] = why
        section["skipped"]["head_importance_grad"] = why
    else:
        t0 = time.perf_counter()
        batch = opts["batch_size"] or hi.default_batch_size(len(ids))

        def grid_progress(f, m):
            report(0.1 + 0.6 * f, "head ablation")

        grids = hi.ablation_grids(loaded, score, ids, shapes, batch_size=batch,
                                  progress=grid_progress, cancel=cancel)
        timings["ablation"] = time.perf_counter() - t0
        section["ablation"] = {
            "definition": ABLATION_DEFINITION, "baseline": grids.value, "rows": grids.rows,
            "forwards": grids.forwards, "batch_size": batch,
            "layer_definition": "the same with every head of the layer masked",
        }
        for s in shapes:
            arrays[f"{prefix(s)}head_importance"] = grids.head_change[s]
            arrays[f"{prefix(s)}layer_importance"] = grids.layer_change[s]
            dead = hi.no_effect(grids.head_change[s], opts["threshold"])
            section["sets"][s]["no_effect"] = _pairs(dead)
        if opts["gradient"]:
            report(0.72, "gradient head importance")
            t0 = time.perf_counter()
            _, grads = hi.gradient_importance(loaded, score, ids, shapes, cancel=cancel)
            timings["gradient"] = time.perf_counter() - t0
            section["gradient"] = {"definition": GRADIENT_DEFINITION, "passes": "one forward, one backward"}
            for s in shapes:
                arrays[f"{prefix(s)}head_importance_grad"] = grads[s].astype(np.float32)
                section["sets"][s]["gradient_vs_ablation"] = hi.rank_agreement(
                    np.abs(grids.head_change[s]), grads[s])
            everything = hi.rank_agreement(
                np.concatenate([np.abs(grids.head_change[s]).ravel() for s in shapes]),
                np.concatenate([grads[s].ravel() for s in shapes]))
            section["gradient_vs_ablation"] = {**everything, "compared": "|ablation change| vs gradient, all heads"}

    report(0.85, "over-smoothing")
    t0 = time.perf_counter()
    decoder_ids = analysis.manifest.get("decoder_input_ids")
    if n_tokens >= 2:
        states = hidden_states(loaded, analysis.manifest["input_ids"], decoder_ids)
        section["smoothing"] = {"definition": SMOOTHING_DEFINITION}
        for stack, hs in states.items():
            if hs.shape[1] < 2:
                section["skipped"][f"{prefix(stack)}layer_smoothing"] = "fewer than 2 tokens"
                continue
            curve = layer_smoothing(hs)
            arrays[f"{prefix(stack)}layer_smoothing"] = curve
            section["smoothing"][stack] = {"steepest_rise_at": hi.steepest_rise(curve)}
    else:
        section["skipped"]["layer_smoothing"] = "fewer than 2 tokens"
    timings["smoothing"] = time.perf_counter() - t0
    section["timings"] = {k: round(v, 6) for k, v in timings.items()}
    analysis.manifest["heads"] = section
    report(1.0, "heads done")


def _pairs(flags: np.ndarray) -> list[list[int]]:
    return [[int(layer), int(head)] for layer, head in zip(*np.nonzero(flags), strict=True)]


def wants_heads(methods) -> bool:
    return "heads" in (methods or [])


def run(loaded, analysis, spec: dict | None, options: dict | None = None,
        progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None) -> None:
    """The pipeline's entry: resolve the target on the analysed ids (as the explanation stage
    does) and add the heads results."""
    from attn_desktop.core.explain.targets import resolve_target

    parse_options(options)
    target = resolve_target(loaded, list(analysis.manifest["input_ids"]), spec,
                            decoder_ids=analysis.manifest.get("decoder_input_ids"),
                            special=[t.special for t in analysis.tokens])
    add_heads(loaded, analysis, target, options, progress=progress, cancel=cancel)


def check_section(label: str, section, dims) -> None:
    """Refuse a saved manifest["heads"] the window could not show safely (a session from elsewhere)."""
    from attn_desktop.core.store.schema import fail

    def bad(why: str):
        return fail(label, f"the manifest's 'heads' section {why}")

    def number(v) -> bool:
        return v is None or (type(v) in (int, float) and np.isfinite(v))

    if not isinstance(section, dict):
        raise bad("is not an object")
    sets = section.get("sets", {})
    if not isinstance(sets, dict) or not set(sets) <= set(SETS_IN_ORDER):
        raise bad("names unknown attention sets")
    for name, info in sets.items():
        layers = dims.L if name in ("self", "encoder") else dims.Ld
        if not isinstance(info, dict) or info.get("layers") != layers or info.get("heads") != dims.H:
            raise bad(f"gives {name} a shape other than the session's")
        for key in ("no_effect", "single_position", "diffuse"):
            pairs = info.get(key, [])
            if not isinstance(pairs, list) or not all(
                    isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p)
                    and 0 <= p[0] < layers and 0 <= p[1] < dims.H for p in pairs):
                raise bad(f"lists {name} heads outside the model")
        agree = info.get("gradient_vs_ablation", {})
        if not isinstance(agree, dict) or not all(number(v) for v in agree.values()):
            raise bad("holds a correlation that is not a number")
    if not number(section.get("threshold")) or (section.get("threshold") or 0) < 0:
        raise bad("has no valid threshold")
    for key in ("target", "skipped", "smoothing", "ablation", "gradient", "gradient_vs_ablation", "timings"):
        if not isinstance(section.get(key, {}), dict):
            raise bad(f"has a {key!r} that is not an object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in section.get("skipped", {}).items()):
        raise bad("gives a reason that is not text")
    for stack, info in section.get("smoothing", {}).items():
        if stack == "definition":
            continue
        layers = dims.L if stack in ("self", "encoder") else dims.Ld
        at = info.get("steepest_rise_at") if isinstance(info, dict) else "?"
        if stack not in ("self", "encoder", "decoder") or not (at is None or (type(at) is int and 1 <= at <= layers)):
            raise bad("marks a layer the model does not have")
