"""The explanation stage of an analysis: resolve the target, compute every requested vector and
test, and file them in the Analysis (arrays and manifest["explain"], see docs/explain.md)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from attn_desktop.core.errors import Cancelled, UserError

PROPAGATION = ("attention", "rollout", "flow")
EXPLANATION = ("saliency", "grad_input", "ig", "grad_rollout", "loo", "interventions", "faithfulness", "agreement")
ALL = PROPAGATION + EXPLANATION
ARRAY_NAME = {"saliency": "saliency", "grad_input": "grad_input", "ig": "integrated_gradients",
              "grad_rollout": "grad_rollout", "loo": "loo"}
VECTOR_ARRAYS = ("attention_importance", "rollout_importance", "flow_importance", "saliency", "grad_input",
                 "integrated_gradients", "grad_rollout", "loo")
DEFAULT_OPTIONS: dict[str, Any] = {
    "ig_steps": "auto", "ig_start_steps": 16, "ig_max_steps": 256, "ig_tolerance": 0.05,
    "ig_method": "gausslegendre", "baseline": "pad", "replacement": "auto", "seeds": 10,
    "random_rankings": 20, "fractions": [0.01, 0.05, 0.10, 0.20, 0.50], "batch_size": 32,
    "alpha": 0.5, "head_fusion": "mean",
}
Progress = Callable[[float, str], None]


def expand_methods(methods) -> list[str]:
    """Known names in order, 'all' expanded; other stages' names (e.g. 'heads') pass through."""
    out: list[str] = []
    for m in methods or []:
        for name in (ALL if m == "all" else (m,)):
            if name not in out:
                out.append(name)
    return out


def wants_explanation(methods) -> bool:
    return any(m in EXPLANATION for m in expand_methods(methods))


OTHER_STAGES = ("heads",)
# rough shares of a run's time (bench_explain on the demo model), so that progress moves evenly
STEP_WEIGHT = {"target": 1, "attention": 1, "saliency": 3, "grad_input": 3, "ig": 30, "grad_rollout": 2,
               "loo": 20, "interventions": 10, "faithfulness": 30, "agreement": 1, "verdict": 0.1}  # issue 9's stage, run by its own code


def check_request(loaded, methods, spec: dict | None, options: dict | None) -> None:
    """Refuse a bad request before the model runs (one line each)."""
    from attn_desktop.core.explain.targets import check_fits, normalise_spec

    unknown = [m for m in expand_methods(methods) if m not in ALL + OTHER_STAGES]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}: choose from {', '.join(ALL + OTHER_STAGES)}, all")
    check_fits(loaded, normalise_spec(spec))
    check_options(options)


def check_options(options: dict | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise UserError(f"unknown explanation option {sorted(unknown)[0]!r}")
    merged = {**DEFAULT_OPTIONS, **options}
    for key in ("seeds", "random_rankings", "batch_size", "ig_start_steps", "ig_max_steps"):
        try:
            merged[key] = int(merged[key])
        except (TypeError, ValueError):
            raise UserError(f"{key} must be a whole number, got {merged[key]!r}") from None
    if merged["seeds"] < 1 or merged["batch_size"] < 1 or merged["ig_start_steps"] < 2:
        raise UserError("seeds, batch size and IG steps must be positive (IG at least 2 steps)")
    if merged["ig_max_steps"] < merged["ig_start_steps"]:
        raise UserError("the IG step cap is below the starting step count")
    steps = merged["ig_steps"]
    if steps != "auto" and not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 2):
        raise UserError(f"IG steps must be 'auto' or a whole number of at least 2, got {steps!r}")
    if merged["baseline"] not in ("pad", "mask", "zero"):
        raise UserError(f"unknown IG baseline {merged['baseline']!r}: choose pad, mask or zero")
    if merged["replacement"] not in ("auto", "mask", "unk", "delete"):
        raise UserError(f"unknown replacement {merged['replacement']!r}: choose auto, mask, unk or delete")
    fractions = merged["fractions"]
    if not fractions or any(not 0 < float(q) <= 1 for q in fractions):
        raise UserError("faithfulness fractions must lie in (0, 1]")
    return merged


def _clean(obj):
    """JSON-safe: NaN and infinities become None, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def explain(loaded, analysis, methods, spec: dict | None, options: dict | None = None, *,
            progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run the requested explanation methods on `analysis` (as made by pipeline.analyze for
    `loaded`); adds arrays and manifest["explain"] and returns that section."""
    from attn_desktop.core.explain import agreement as agr
    from attn_desktop.core.explain import faithfulness as fth
    from attn_desktop.core.explain import gradients as grd
    from attn_desktop.core.explain import perturbation as prt
    from attn_desktop.core.explain import readout
    from attn_desktop.core.explain.targets import resolve_target
    from attn_desktop.core.explain.verdict import verdict
    from attn_desktop.core.model.capture import Site
    from attn_desktop.core.model.loading import CAPTURE_EAGER

    methods = expand_methods(methods)
    opts = check_options(options)
    report = progress or (lambda f, m: None)
    steps = ["target", "attention"] + [m for m in EXPLANATION if m in methods] + ["verdict"]
    total = sum(STEP_WEIGHT[s] for s in steps)
    timings: dict[str, float] = {}
    state = {"done": 0.0, "step": "target"}

    def check_cancel():
        if cancel is not None and cancel():
            raise Cancelled()

    def begin(name: str, message: str) -> float:
        check_cancel()
        state["step"] = name
        report(state["done"] / total, message)
        return time.perf_counter()

    def end(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 6)
        state["done"] += STEP_WEIGHT[name]

    def sub(done: int, count: int, message: str) -> None:
        report((state["done"] + STEP_WEIGHT[state["step"]] * done / max(count, 1)) / total, message)

    t0 = begin("target", "resolving the target")
    input_ids = list(analysis.manifest["input_ids"])
    decoder_ids = analysis.manifest.get("decoder_input_ids")
    special = [t.special for t in analysis.tokens]
    target = resolve_target(loaded, input_ids, spec, decoder_ids=decoder_ids, special=special)
    section: dict[str, Any] = {
        "target": {**target.definition, "value": target.value, "predicted": target.predicted},
        "methods_requested": methods, "methods": {}, "skipped": {}, "options": dict(opts),
    }
    end("target", t0)

    t0 = begin("attention", "attention, rollout and flow of the row the output reads")
    self_att = analysis.arrays.get("attentions", analysis.arrays.get("encoder_attentions"))
    row = readout.read_row(target, self_att)
    vectors, info, skipped = readout.attention_vectors(
        analysis.arrays, row, set(methods), opts["alpha"], opts["head_fusion"], cancel=cancel)
    row.info.update(info)
    section["read_row"] = row.to_json()
    section["skipped"].update(skipped)
    end("attention", t0)

    recording_only = loaded.capture_mode == CAPTURE_EAGER
    causal = readout.is_causal(self_att)
    replacement = prt.choose_replacement(loaded, opts["replacement"])
    n = len(input_ids)
    batch = max(1, min(opts["batch_size"], 8192 // max(n, 1)))  # bounds [batch, heads, n, n] per layer
    removed: dict = {}  # removal set -> target value, shared by leave-one-out and faithfulness

    if "saliency" in methods or "grad_input" in methods:
        name = "saliency" if "saliency" in methods else "grad_input"
        t0 = begin(name, "gradients of the target")
        sal, gxi = grd.saliency_and_grad_input(loaded, target)
        if "saliency" in methods:
            vectors["saliency"] = sal
            section["methods"]["saliency"] = {"definition": grd.SALIENCY, "layer": target.embedding_layer}
        if "grad_input" in methods:
            vectors["grad_input"] = gxi
            section["methods"]["grad_input"] = {"definition": grd.GRAD_INPUT, "layer": target.embedding_layer}
        end(name, t0)
        if "saliency" in methods and "grad_input" in methods:
            timings["grad_input"] = 0.0  # computed with saliency, in one backward pass
            state["done"] += STEP_WEIGHT["grad_input"]
    if "ig" in methods:
        t0 = begin("ig", "Integrated Gradients")
        res = grd.integrated_gradients(
            loaded, target, baseline=opts["baseline"], steps=opts["ig_steps"], start_steps=opts["ig_start_steps"],
            max_steps=opts["ig_max_steps"], tolerance=opts["ig_tolerance"], method=opts["ig_method"], cancel=cancel)
        vectors["integrated_gradients"] = res.attributions
        section["methods"]["integrated_gradients"] = res.record
        end("ig", t0)
    if "grad_rollout" in methods:
        t0 = begin("grad_rollout", "gradient-weighted rollout")
        if recording_only:
            section["skipped"]["grad_rollout"] = "this model's attention is recorded only (no capture engine)"
        elif loaded.is_encoder_decoder:
            vec, rec = grd.gradient_rollout_seq2seq(loaded, target, row.index)
            vectors["grad_rollout"] = vec
            section["methods"]["grad_rollout"] = rec
        else:
            vec, rec = grd.gradient_rollout(loaded, target, row.read)
            vectors["grad_rollout"] = vec
            section["methods"]["grad_rollout"] = rec
        end("grad_rollout", t0)
    if "loo" in methods:
        t0 = begin("loo", "leave-one-out")
        vectors["loo"] = prt.leave_one_out(
            loaded, target, replacement, batch, cancel,
            progress=lambda d, t: sub(d, t, f"leave-one-out {d}/{t}"), cache=removed)
        section["methods"]["loo"] = {**replacement.to_json(),
                                     "definition": "f(x) - f(x with token i replaced); special tokens 0"}
        end("loo", t0)
    if "interventions" in methods:
        t0 = begin("interventions", "uniform and permuted attention")
        if recording_only:
            section["skipped"]["interventions"] = "this model's attention is recorded only (no capture engine)"
        else:
            sites = [Site(s, layer) for s, count in loaded.expected_layers().items() for layer in range(count)]
            causal_sets = {"decoder"} if loaded.is_encoder_decoder else ({"self"} if causal else set())
            section["interventions"] = prt.interventions(
                loaded, target, sites, causal_sets, seeds=opts["seeds"], batch_size=batch, cancel=cancel,
                progress=lambda d, t: sub(d, t, "changed attention"))
        end("interventions", t0)
    if "faithfulness" in methods:
        t0 = begin("faithfulness", "comprehensiveness and sufficiency")
        section["faithfulness"] = fth.faithfulness(
            loaded, target, vectors, replacement, fractions=opts["fractions"],
            random_rankings=opts["random_rankings"], batch_size=batch, cancel=cancel,
            progress=lambda d, t: sub(d, t, f"faithfulness {d}/{t}"), cache=removed)
        end("faithfulness", t0)
    if "agreement" in methods:
        t0 = begin("agreement", "agreement between the vectors")
        section["agreement"] = agr.agreement(vectors, target.special)
        end("agreement", t0)

    t0 = begin("verdict", "verdict")
    section["verdict"] = verdict(section)
    end("verdict", t0)
    section["timings"] = timings
    section["arrays"] = [name for name in VECTOR_ARRAYS if name in vectors]
    for name, vec in vectors.items():
        analysis.arrays[name] = np.ascontiguousarray(vec, dtype=np.float32)
    section = _clean(section)
    analysis.manifest["explain"] = section
    report(1.0, "explanation done")
    return section
