"""Command-line parts of head importance and pruning (docs/heads.md): the options of
`analyze --methods heads` and the `prune` subcommand."""

from __future__ import annotations

import argparse
import time

from attn_desktop.core.errors import UserError


def add_heads_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("heads that matter (method heads; the target options above say what is measured)")
    g.add_argument("--heads-threshold", type=float, default=None, metavar="T",
                   help="a head whose masking changes the target by less than T has no effect (default 0.01)")
    g.add_argument("--heads-batch", type=int, default=None, metavar="B",
                   help="masked copies of the input per forward pass (default: 4096 tokens' worth)")


def heads_options(args: argparse.Namespace) -> dict:
    opts: dict = {}
    if getattr(args, "heads_threshold", None) is not None:
        opts["threshold"] = args.heads_threshold
    if getattr(args, "heads_batch", None) is not None:
        opts["batch_size"] = args.heads_batch
    return opts


def heads_summary(analysis) -> str | None:
    """One line about the heads stage for the analyze summary, or None when it did not run."""
    section = analysis.manifest.get("heads")
    if not section:
        return None
    parts = []
    total = sum(s["layers"] * s["heads"] for s in section["sets"].values())
    if "ablation" in section:
        dead = sum(len(s.get("no_effect", [])) for s in section["sets"].values())
        parts.append(f"{dead} of {total} heads with no effect (|change| < {section['threshold']:g})")
    agree = section.get("gradient_vs_ablation") or {}
    if agree.get("spearman") is not None:
        parts.append(f"gradient vs ablation Spearman {agree['spearman']:.2f}, Kendall {agree['kendall_tau']:.2f}")
    for stack, info in (section.get("smoothing") or {}).items():
        if isinstance(info, dict) and info.get("steepest_rise_at") is not None:
            name = "" if stack == "self" else f"{stack} "
            parts.append(f"{name}token similarity rises most at layer {info['steepest_rise_at']}")
    parts += [f"{name} skipped: {why}" for name, why in section.get("skipped", {}).items()]
    return "heads: " + "; ".join(parts) if parts else None


def prune_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attn-desktop prune",
        description="Remove attention heads from a model (physically: their rows and columns leave the "
        "query, key, value and output projections), compare the pruned model with the original over "
        "a folder of texts, and save it as a safetensors model folder.",
    )
    p.add_argument("--model", default="demo", help="'demo' or a local model folder (default: demo)")
    p.add_argument("--heads", required=True, metavar="dead|dead:T|least:K|least:K:gradient|L.H,L.H",
                   help="which heads go: those with no effect on any text (|change| < T, default 0.01), "
                   "the K least important by ablation (or gradient) over the texts, or a list of "
                   "0-based LAYER.HEAD (SET:LAYER.HEAD for encoder-decoders: encoder, decoder, cross)")
    p.add_argument("--texts", required=True, metavar="FOLDER", help="folder of .txt files to compare on")
    p.add_argument("--out", required=True, metavar="DIR", help="new (or empty) folder for the pruned model")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes per text and model (default 3)")
    g = p.add_argument_group("what is measured (the target; default: the model's own prediction)")
    g.add_argument("--target-class", metavar="C", help="classifier: the class (index or label)")
    g.add_argument("--target-token", metavar="TOKEN", help="LM / masked LM / encoder-decoder: the token")
    g.add_argument("--labels", metavar="FILE", help="base encoder: zero-shot label file or shipped set")
    g.add_argument("--target-label", metavar="LABEL", help="zero-shot: the label")
    g.add_argument("--reference", metavar="TEXT", help="base encoder: the cosine similarity to this text")
    g.add_argument("--temperature", type=float, default=None, help="zero-shot softmax temperature")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def cmd_prune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from attn_desktop.cli_explain import target_spec
    from attn_desktop.core.explain.prune_compare import (
        parse_selection,
        prune_and_compare,
        read_texts,
    )

    selection = parse_selection(args.heads)
    if args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    out = Path(args.out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; choose a new folder")
    texts = read_texts(args.texts)
    spec = target_spec(args)
    started = time.perf_counter()
    from attn_desktop.core.model.loading import load_model

    loaded = load_model(args.model, device=args.device)
    result, _ = prune_and_compare(loaded, texts, selection, spec, out=out, repeats=args.repeats)
    print(f"{loaded.name}: {len(texts)} text(s), {time.perf_counter() - started:.1f} s")
    print(result.table())
    return 0
