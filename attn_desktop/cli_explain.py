"""Command-line options of the explanation stage (attn-desktop analyze; docs/explain.md)."""

from __future__ import annotations

import argparse

from attn_desktop.core.errors import UserError

EXPLAIN_METHODS = ("saliency", "grad_input", "ig", "grad_rollout", "loo", "interventions", "faithfulness",
                   "agreement", "all")


def add_explain_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "checking attention against the output (methods saliency, grad_input, ig, grad_rollout, loo, "
        "interventions, faithfulness, agreement, all)")
    g.add_argument("--target-class", metavar="C", help="classifier: the class explained (index or label; default: predicted)")
    g.add_argument("--target-token", metavar="TOKEN",
                   help="LM / masked LM / encoder-decoder: the token explained (one token or its id; default: predicted)")
    g.add_argument("--labels", metavar="FILE", help="base encoder: zero-shot label file, one label per line, "
                   "or a shipped set (contract_clauses, clinical_specialties, clinical_findings)")
    g.add_argument("--target-label", metavar="LABEL", help="zero-shot: the label explained (default: predicted)")
    g.add_argument("--reference", metavar="TEXT", help="base encoder: explain the cosine similarity to this text")
    g.add_argument("--temperature", type=float, default=None, help="zero-shot softmax temperature (default 0.05)")
    g.add_argument("--ig-steps", default="auto", metavar="auto|N", help="Integrated Gradients steps (default: auto)")
    g.add_argument("--ig-baseline", default="pad", choices=("pad", "mask", "zero"), help="IG baseline (default pad)")
    g.add_argument("--replacement", default="auto", choices=("auto", "mask", "unk", "delete"),
                   help="leave-one-out / faithfulness replacement (default: mask, else unk, else delete)")
    g.add_argument("--seeds", type=int, default=10, help="permuted attention: seeds (default 10)")


def target_spec(args: argparse.Namespace) -> dict:
    from attn_desktop.core.explain.labels import read_labels

    if args.labels and args.reference is not None:
        raise UserError("give either --labels or --reference, not both")
    if args.target_label is not None and not args.labels:
        raise UserError("--target-label needs --labels FILE")
    return {
        "kind": "auto", "class": args.target_class, "token": args.target_token,
        "labels": read_labels(args.labels) if args.labels else None, "label": args.target_label,
        "reference": args.reference, "temperature": args.temperature,
    }


def explain_options(args: argparse.Namespace) -> dict:
    steps = args.ig_steps
    if steps != "auto":
        try:
            steps = int(steps)
        except ValueError:
            raise UserError(f"--ig-steps must be auto or a number, got {steps!r}") from None
    return {"ig_steps": steps, "baseline": args.ig_baseline, "replacement": args.replacement, "seeds": args.seeds}


def target_phrase(target: dict) -> str:
    """What was explained, in words: "P(label 'x') = 0.31 (the predicted label of 8)"."""
    kind, value = target.get("kind"), target.get("value")
    shown = f"{value:.3f}" if isinstance(value, (int, float)) else "?"
    chosen = target.get("chosen", "")
    if kind == "zero-shot":
        return (f"P(label {target.get('label')!r}) = {shown} "
                f"({chosen} label of {len(target.get('labels') or [])}, temperature {target.get('temperature')})")
    if kind == "reference":
        return f"cosine similarity to the reference text = {shown}"
    if kind == "class":
        name = target.get("class_label")
        what = f"class {target.get('class')}" + (f" {name!r}" if name not in (None, "") else "")
        return f"P({what}) = {shown} ({chosen})"
    if target.get("token") is not None:
        return f"log P(token {target.get('token')!r}) = {shown} ({chosen}, {kind})"
    return f"{kind} = {shown}"


def verdict_headline(analysis) -> str | None:
    section = analysis.manifest.get("explain")
    if not section:
        return None
    target = section.get("target") or {}
    document = section.get("document")
    if isinstance(document, dict):
        count = document.get("windows")
        return (f"Document target ({count} window{'s' if count != 1 else ''}; attention does not cross windows): "
                f"{target_phrase(target)}. {section['verdict']['headline']}")
    return f"Target: {target_phrase(target)}. {section['verdict']['headline']}"
