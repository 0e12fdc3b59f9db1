"""A short plain-language verdict for one input. It says whether attention agrees with or diverges
from the gradient and ablation evidence, by how much, and whether the output depends on where
attention goes. It never says that attention explains the output."""

from __future__ import annotations

from typing import Any

ATTENTION = {"attention_importance": "attention", "rollout_importance": "rollout", "flow_importance": "flow"}
EVIDENCE = {"integrated_gradients": "IG", "grad_input": "gradient x input", "loo": "leave-one-out",
            "saliency": "saliency"}
THRESHOLDS = {
    "agrees": 0.4, "agrees_weakly": 0.2,  # mean Kendall tau of raw attention vs the evidence
    "depends_tvd": 0.05,  # median TVD under permuted attention, or TVD under uniform attention
    "depends_change": 0.05,  # |target change| when the target has no distribution (reference)
}


def _tau(value: float) -> str:
    """Two decimals, without the minus of a value that rounds to zero ("-0.00")."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _agreement_phrase(tau: float) -> str:
    if tau >= THRESHOLDS["agrees"]:
        return "agrees with"
    if tau >= THRESHOLDS["agrees_weakly"]:
        return "agrees weakly with"
    if tau > 0:
        return "agrees only slightly (close to chance) with"
    if tau > -THRESHOLDS["agrees_weakly"]:
        return "diverges from (no better than chance)"
    return "diverges from (ranks tokens against)"


_ROWS = {"cls": "the first token's row", "mean": "the mean over rows", "last": "the last token's row",
         "mask": "the mask token's row", "cross": "the output token's cross-attention row"}


def _which_attention(read_row: dict | None) -> str:
    """Which attention was compared: its layer, head fusion and the row the output reads."""
    if not read_row:
        return ""
    layer = read_row.get("attention_layer")
    where = f"layer {layer}" if isinstance(layer, int) else "the last layer"
    return (f"Attention compared: {where} (the last), mean over heads, "
            f"{_ROWS.get(read_row.get('rule'), 'the row the output reads')} (the row the output reads).")


def _mean_tau(agreement: dict, name: str, evidence: list[str]) -> float | None:
    names = agreement["methods"]
    i = names.index(name)
    taus = [agreement["kendall_tau"][i][names.index(e)] for e in evidence]
    taus = [t for t in taus if t is not None]
    return sum(taus) / len(taus) if taus else None


def _depends(interventions: dict) -> tuple[bool, str]:
    uni, perm = interventions["uniform_all"], interventions["permuted"]
    if uni.get("tvd") is not None:
        depends = (uni["tvd"] >= THRESHOLDS["depends_tvd"]
                   or (perm["tvd_median"] or 0) >= THRESHOLDS["depends_tvd"] or bool(perm["flips"]))
        text = f"uniform attention: TVD {uni['tvd']:.2f}"
        if perm["tvd_median"] is not None:
            text += (f"; permuted: median TVD {perm['tvd_median']:.2f} (max {perm['tvd_max']:.2f}), "
                     f"prediction flips in {perm['flips']}/{perm['seeds']} seeds")
        return depends, text
    change = abs(uni["change"])
    depends = change >= THRESHOLDS["depends_change"] or (perm["abs_change_median"] or 0) >= THRESHOLDS["depends_change"]
    text = f"uniform attention changes the target by {uni['change']:+.3f}"
    if perm["abs_change_median"] is not None:
        text += f"; permuted: median |change| {perm['abs_change_median']:.3f} over {perm['seeds']} seeds"
    return depends, text


def verdict(section: dict[str, Any]) -> dict[str, Any]:
    """Headline, details and caveats from a filled manifest["explain"] section."""
    parts, details, caveats = [], [], []
    agreement = section.get("agreement")
    if agreement and "attention_importance" in agreement["methods"]:
        evidence = [e for e in EVIDENCE if e in agreement["methods"] and e != "saliency"]
        evidence = evidence or [e for e in EVIDENCE if e in agreement["methods"]]
        if evidence:
            taus = {a: _mean_tau(agreement, a, evidence) for a in ATTENTION if a in agreement["methods"]}
            raw = taus.get("attention_importance")
            others = ", ".join(f"{ATTENTION[a]} {_tau(t)}" for a, t in taus.items()
                               if a != "attention_importance" and t is not None)
            against = ", ".join(EVIDENCE[e] for e in evidence)
            if raw is not None:
                parts.append(f"attention {_agreement_phrase(raw)} the gradient and ablation evidence "
                             f"(mean Kendall tau {_tau(raw)} against {against}"
                             + (f"; {others}" if others else "") + "; chance 0)")
            elif agreement["tokens"] < 2:
                parts.append(f"{agreement['tokens']} token(s) besides the special ones: too few to compare rankings")
            else:
                parts.append("attention or the evidence is constant over the tokens, so their agreement is not defined")
            names = agreement["methods"]
            for a in taus:
                i = names.index(a)
                for e in evidence:
                    j = names.index(e)
                    tau, p = agreement["kendall_tau"][i][j], agreement["kendall_p"][i][j]
                    if tau is not None:
                        shown_p = "n/a" if p is None else f"{p:.2g}"
                        details.append(f"{ATTENTION[a]} vs {EVIDENCE[e]}: Kendall tau {_tau(tau)} (p = {shown_p}), "
                                       f"top-{agreement['topk']['k'][0]} overlap "
                                       f"{agreement['topk']['overlap'][0][i][j]:.0%}")
    interventions = section.get("interventions")
    if interventions:
        depends, text = _depends(interventions)
        verb = "depends on" if depends else "barely depends on"
        parts.append(f"the output {verb} where attention goes ({text})")
        worst = max(interventions["uniform_layer"], key=lambda r: abs(r["change"]), default=None)
        if worst is not None:
            details.append(f"uniform attention in {worst['set']} layer {worst['layer']} alone moves the target most: "
                           f"{worst['change']:+.3f}")
    faith = section.get("faithfulness")
    if faith and faith.get("per_method"):
        rnd = faith["random"]
        for name, res in faith["per_method"].items():
            label = ATTENTION.get(name) or EVIDENCE.get(name) or name.replace("_", " ")
            details.append(
                f"{label}: AOPC comprehensiveness {res['aopc_comp']:.3f} (chance {rnd['aopc_comp_mean']:.3f}, beats "
                f"{res['beats_random_comp']:.0%} of {rnd['rankings']} random rankings), sufficiency "
                f"{res['aopc_suff']:.3f} (chance {rnd['aopc_suff_mean']:.3f}, beats {res['beats_random_suff']:.0%})")
    ig = section.get("methods", {}).get("integrated_gradients")
    if ig is not None and not ig.get("converged", True):
        rel = ig.get("relative_delta")
        caveats.append(f"Integrated Gradients did not converge within {ig['steps']} steps "
                       f"(delta {ig['delta']:.2g}" + (f", {rel:.0%} of f(x) - f(baseline)" if rel is not None else "") + ")")
    for name, why in section.get("skipped", {}).items():
        caveats.append(f"{name} not computed: {why}")
    caveats.append("one input and one target: this is evidence about this text, not about the model in general")
    caveats.append("agreement between two methods does not show that either reflects what the model computes")
    which = _which_attention(section.get("read_row"))
    if which:
        details.insert(0, which)
    if parts:
        headline = "For this input, " + "; ".join(parts) + "."
    else:
        headline = "For this input, no agreement or changed-attention test was run."
    return {"headline": headline, "details": details, "caveats": caveats, "thresholds": dict(THRESHOLDS)}
