"""Choose heads to prune, build the physically pruned copy, and compare it with the original over
a set of texts: target change, prediction changes, parameter count and forward time (a ratio
measured in the same run, original and pruned passes interleaved)."""

from __future__ import annotations

import dataclasses
import functools
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.explain import head_importance as hi

MAX_TEXTS = 500
TEXT_SUFFIXES = (".txt",)
DEFAULT_DEAD_THRESHOLD = 0.01
Progress = Callable[[float, str], None]


def read_texts(folder: str | Path) -> list[tuple[str, str]]:
    """(file name, text) for every .txt file of a folder, sorted by name."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"texts folder not found: {path}")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise UserError(f"{path} holds no .txt files")
    if len(files) > MAX_TEXTS:
        raise UserError(f"{path} holds {len(files)} texts; at most {MAX_TEXTS} are compared at once")
    out = []
    for f in files:
        data = f.read_bytes()
        if b"\x00" in data:
            raise UserError(f"{f.name} looks like a binary file, not text")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(f"{f.name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
        if text.strip():
            out.append((f.name, text))
    if not out:
        raise UserError(f"every text in {path} is empty")
    return out


@dataclass(frozen=True)
class Selection:
    rule: str  # "dead" | "least" | "explicit"
    threshold: float = DEFAULT_DEAD_THRESHOLD
    k: int = 0
    by: str = "ablation"  # least: "ablation" | "gradient"
    heads: tuple[tuple[str, int, int], ...] = ()  # explicit: (set, layer, head)


_HEAD = re.compile(r"^(?:(self|encoder|decoder|cross):)?(\d+)\.(\d+)$")


def parse_selection(text: str) -> Selection:
    """`dead`, `dead:T`, `least:K`, `least:K:gradient`, or heads `L.H,L.H` (`SET:L.H` for
    encoder-decoders: encoder, decoder, cross)."""
    t = (text or "").strip().lower()
    if t == "dead" or t.startswith("dead:"):
        thr = DEFAULT_DEAD_THRESHOLD
        if t.startswith("dead:"):
            try:
                thr = float(t[5:])
            except ValueError:
                raise UserError(f"dead:T needs a number T, not {t[5:]!r}") from None
            if not thr >= 0:
                raise UserError("the no-effect threshold must be zero or positive")
        return Selection("dead", threshold=thr)
    if t.startswith("least:"):
        parts = t.split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit() or int(parts[1]) < 1:
            raise UserError("least:K needs a positive whole number K (least:K or least:K:gradient)")
        by = parts[2] if len(parts) == 3 else "ablation"
        if by not in ("ablation", "gradient"):
            raise UserError(f"least:K:{by}: rank by ablation or gradient")
        return Selection("least", k=int(parts[1]), by=by)
    heads = []
    for item in t.split(","):
        m = _HEAD.match(item.strip())
        if not m:
            raise UserError(f"cannot read the head {item.strip()!r}: use dead, least:K or LAYER.HEAD,... "
                            "(0-based, e.g. 2.5,3.0)")
        heads.append((m.group(1) or "", int(m.group(2)), int(m.group(3))))
    return Selection("explicit", heads=tuple(heads))


@dataclass
class TextInput:
    name: str
    ids: list[int]
    decoder_ids: list[int] | None
    truncated: bool


def encode_texts(loaded, texts: list[tuple[str, str]]) -> list[TextInput]:
    import torch

    limit = loaded.max_positions
    out = []
    for name, text in texts:
        full = loaded.tokenizer(text)["input_ids"]
        ids = loaded.tokenizer(text, truncation=limit is not None, max_length=limit)["input_ids"] if limit else full
        decoder = None
        if loaded.is_encoder_decoder:
            with torch.no_grad():
                inp = torch.tensor([ids], device=loaded.device)
                gen = loaded.model.generate(input_ids=inp, attention_mask=torch.ones_like(inp),
                                            max_new_tokens=1, do_sample=False, num_beams=1)
            decoder = gen[0].tolist()
        out.append(TextInput(name, list(ids), decoder, len(full) > len(ids)))
    return out


def shapes_of(loaded) -> dict[str, tuple[int, int]]:
    """{set: (layers, heads)} read from one recorded forward pass over two tokens."""
    import torch

    from attn_desktop.core.model import capture

    ids = torch.zeros((1, 2), dtype=torch.long, device=loaded.device)  # id 0 exists in every vocabulary
    kwargs = {"input_ids": ids}
    if loaded.is_encoder_decoder:
        kwargs["decoder_input_ids"] = ids
    plan = capture.CapturePlan(sites=loaded.site_of, layers=loaded.expected_layers())
    with torch.no_grad(), capture.active(plan):
        loaded.model(**kwargs)
    return {s: (int(plan.stacked(s).shape[0]), int(plan.stacked(s).shape[2]))
            for s in ("self", "encoder", "decoder", "cross") if s in plan.counts()}


def _combined(grids: dict[str, np.ndarray], shapes) -> tuple[np.ndarray, list[tuple[str, int]]]:
    rows, index = [], []
    for s, (L, _) in shapes.items():
        rows.append(grids[s])
        index += [(s, layer) for layer in range(L)]
    return np.concatenate(rows, axis=0), index


def choose_heads(loaded, inputs, targets, selection: Selection, shapes, *, batch_size=None,
                 progress: Progress | None = None, cancel=None) -> tuple[dict, dict]:
    """(remove {Site: [heads]}, evidence for the manifest / table)."""
    from attn_desktop.core.model.capture import Site

    report = progress or (lambda f, m: None)
    if selection.rule == "explicit":
        remove: dict = {}
        for set_name, layer, head in selection.heads:
            s = set_name or ("self" if "self" in shapes else "")
            if s not in shapes:
                raise UserError(f"{loaded.name} has the attention sets {', '.join(shapes)}: write SET:L.H")
            L, H = shapes[s]
            if not (0 <= layer < L and 0 <= head < H):
                raise UserError(f"there is no head {layer}.{head} in {s}: layers 0..{L - 1}, heads 0..{H - 1}")
            remove.setdefault(Site(s, layer), set()).add(head)
        return {k: sorted(v) for k, v in remove.items()}, {"rule": "explicit"}
    per_text: list[dict[str, np.ndarray]] = []
    for i, (inp, target) in enumerate(zip(inputs, targets, strict=True)):
        score = hi.target_scorer(loaded, target)

        def step(f, m, i=i):
            report((i + f) / len(inputs), f"ranking heads: text {i + 1} of {len(inputs)}")

        if selection.by == "gradient" and selection.rule == "least":
            _, grads = hi.gradient_importance(loaded, score, inp.ids, shapes, cancel=cancel)
            per_text.append(grads)
            step(1.0, "")
        else:
            grids = hi.ablation_grids(loaded, score, inp.ids, shapes, batch_size=batch_size, layers=False,
                                      progress=step, cancel=cancel)
            per_text.append(grids.head_change)
    evidence: dict = {"rule": selection.rule, "texts": len(inputs)}
    if selection.rule == "dead":
        worst = {s: np.max(np.abs(np.stack([g[s] for g in per_text])), axis=0) for s in shapes}
        importance, index = _combined(worst, shapes)
        dead = importance < selection.threshold
        kept_back = []
        for row in range(dead.shape[0]):
            if dead[row].all():  # a layer cannot lose every head: keep its most affecting one
                h = int(np.argmax(importance[row]))
                dead[row, h] = False
                kept_back.append([index[row][0], index[row][1], h])
        evidence.update(threshold=selection.threshold, measure="largest |ablation change| over the texts",
                        kept_so_a_layer_runs=kept_back)
        pairs = [(r, h) for r, h in zip(*np.nonzero(dead), strict=True)]
    else:
        if selection.by == "gradient":
            summed = {s: np.sum(np.stack([g[s] for g in per_text]), axis=0) for s in shapes}
            evidence["measure"] = "sum over the texts of |dTarget/dxi| (Michel et al. 2019)"
        else:
            summed = {s: np.mean(np.abs(np.stack([g[s] for g in per_text])), axis=0) for s in shapes}
            evidence["measure"] = "mean |ablation change| over the texts"
        importance, index = _combined(summed, shapes)
        evidence.update(k=selection.k, by=selection.by)
        pairs = hi.least_important(importance, selection.k)
        if len(pairs) < selection.k:
            evidence["note"] = f"only {len(pairs)} heads can go while every layer keeps one"
    remove = {}
    for r, h in pairs:
        s, layer = index[int(r)]
        remove.setdefault(Site(s, layer), []).append(int(h))
    return remove, evidence


def _label(loaded, target, index: int | None) -> str | None:
    if index is None:
        return None
    kind = target.kind
    if kind == "class":
        labels = getattr(loaded.model.config, "id2label", {}) or {}
        return str(labels.get(index, labels.get(str(index), f"class {index}")))
    if kind == "zero-shot":
        return target.definition["labels"][index]
    return loaded.tokenizer.convert_ids_to_tokens(index)


@dataclass
class PruneResult:
    removed: dict[str, list[list[int]]]
    selection: dict
    rows: list[dict]
    summary: dict
    target: dict
    saved: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """The comparison as plain text, one line per text and a summary."""
        head = ("TEXT", "TOKENS", "ORIGINAL", "PRUNED", "CHANGE", "PREDICTION", "PRUNED PREDICTION", "|PRUNED-MASKED|")
        lines = [head]
        for r in self.rows:
            lines.append((
                r["name"], str(r["tokens"]) + ("*" if r["truncated"] else ""), f"{r['value']:.6g}",
                f"{r['pruned_value']:.6g}", f"{r['change']:+.3g}", _shown(r["predicted"]),
                _shown(r["pruned_predicted"]) + (" (changed)" if r["prediction_changed"] else ""),
                f"{r['pruned_vs_masked']:.1e}",
            ))
        widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
        out = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in lines]
        s = self.summary
        removed = ", ".join(f"{k}:" + " ".join(f"{layer}.{h}" for layer, h in v) for k, v in self.removed.items())
        out += [
            "",
            f"removed {s['heads_removed']} of {s['heads_total']} heads ({removed})",
            f"parameters {s['parameters'][0]:,} -> {s['parameters'][1]:,} ({s['parameters'][1] / s['parameters'][0]:.3f}x)",
            f"forward time pruned / original: {s['time_ratio']:.3f} (median of {s['time_pairs']} interleaved pairs; "
            f"{s['forward_ms'][0]:.1f} ms -> {s['forward_ms'][1]:.1f} ms per text)",
            f"target change: mean |change| {s['mean_abs_change']:.4g}, largest {s['max_abs_change']:.4g}",
        ]
        if s["prediction_changes"] is not None:
            out.append(f"prediction changed on {s['prediction_changes']} of {len(self.rows)} texts")
        out += [f"pruned vs original with those heads masked: largest difference {s['max_pruned_vs_masked']:.1e}"]
        if any(r["truncated"] for r in self.rows):
            out.append("* truncated to the model's maximum length")
        out += self.notes
        if self.saved:
            out.append(f"saved: {self.saved}")
        return "\n".join(out)


def _shown(label: str | None) -> str:
    return "-" if label is None else label.replace("\n", " ")


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def prune_and_compare(
    loaded,
    texts: list[tuple[str, str]],
    selection: str | Selection,
    spec: dict | None,
    *,
    out: str | Path | None = None,
    repeats: int = 3,
    batch_size: int | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[PruneResult, object]:
    """Choose heads, prune a copy, compare it over `texts`, save it to `out` when given.
    Returns the result and the pruned model."""
    import torch

    from attn_desktop.core.explain.targets import resolve_target
    from attn_desktop.core.model import capture, prune
    from attn_desktop.core.model.loading import CAPTURE_EAGER

    report = progress or (lambda f, m: None)

    def check():
        if cancel is not None and cancel():
            raise Cancelled()

    sel = parse_selection(selection) if isinstance(selection, str) else selection
    if loaded.capture_mode == CAPTURE_EAGER and sel.rule != "explicit":
        raise UserError(f"{loaded.name} bypasses the capture engine: heads cannot be masked to rank them; "
                        "name the heads to remove (L.H,...)")
    if out is not None:
        out = Path(out).expanduser()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"{out} exists and is not an empty folder; choose a new folder")
    if not texts:
        raise UserError("no texts to compare on")
    report(0.0, "reading the texts")
    inputs = encode_texts(loaded, texts)
    targets = [resolve_target(loaded, t.ids, spec, decoder_ids=t.decoder_ids) for t in inputs]
    shapes = shapes_of(loaded)
    check()
    remove, evidence = choose_heads(
        loaded, inputs, targets, sel, shapes, batch_size=batch_size,
        progress=lambda f, m: report(0.05 + 0.55 * f, m), cancel=cancel,
    )
    if not remove:
        raise UserError("no head meets the rule: nothing to prune"
                        + (f" (no head changes the target by less than {sel.threshold:g})" if sel.rule == "dead" else ""))
    check()
    report(0.62, "building the pruned model")
    pruned_model = prune.pruned_copy(loaded.model, remove, loaded.is_encoder_decoder)
    pruned = dataclasses.replace(loaded, model=pruned_model)
    masks = {}
    for site, heads in remove.items():
        m = torch.ones(shapes[site.set][1], device=loaded.device)
        m[heads] = 0.0
        masks[site] = m
    rows, ratios, t_orig, t_pruned = [], [], [], []
    for i, (inp, target) in enumerate(zip(inputs, targets, strict=True)):
        check()
        report(0.65 + 0.3 * i / len(inputs), f"comparing on text {i + 1} of {len(inputs)}")
        ids = torch.tensor([inp.ids], device=loaded.device)
        am = torch.ones_like(ids)
        with torch.no_grad():
            plan = capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=masks)
            masked_value = float(target.evaluate(loaded, ids, am, plan=plan)[0])
            value, dist = target.both(loaded, ids, am)
            pvalue, pdist = target.both(pruned, ids, am)
            for _ in range(repeats):  # interleaved so load drifts hit both alike
                a, _ = _timed(functools.partial(target.evaluate, loaded, ids, am))
                b, _ = _timed(functools.partial(target.evaluate, pruned, ids, am))
                t_orig.append(a)
                t_pruned.append(b)
                ratios.append(b / a)
        pred = int(dist[0].argmax()) if dist is not None else None
        ppred = int(pdist[0].argmax()) if pdist is not None else None
        v, pv = float(value[0]), float(pvalue[0])
        rows.append({
            "name": inp.name, "tokens": len(inp.ids), "truncated": inp.truncated, "value": v,
            "pruned_value": pv, "change": pv - v, "masked_value": masked_value,
            "pruned_vs_masked": abs(pv - masked_value),
            "predicted": _label(loaded, target, pred), "pruned_predicted": _label(loaded, target, ppred),
            "prediction_changed": None if pred is None else pred != ppred,
        })
    changes = np.abs([r["change"] for r in rows])
    flips = [r["prediction_changed"] for r in rows if r["prediction_changed"] is not None]
    total_heads = sum(L * H for L, H in shapes.values())
    removed = {s.set: [] for s in sorted(remove, key=lambda s: (s.set, s.layer))}
    for site in sorted(remove, key=lambda s: (s.set, s.layer)):
        removed[site.set] += [[site.layer, h] for h in remove[site]]
    summary = {
        "heads_removed": sum(len(v) for v in remove.values()), "heads_total": total_heads,
        "parameters": [prune.parameter_count(loaded.model), prune.parameter_count(pruned_model)],
        "time_ratio": float(statistics.median(ratios)), "time_pairs": len(ratios),
        "forward_ms": [1000 * float(np.median(t_orig)), 1000 * float(np.median(t_pruned))],
        "mean_abs_change": float(changes.mean()), "max_abs_change": float(changes.max()),
        "prediction_changes": sum(flips) if flips else None,
        "max_pruned_vs_masked": max(r["pruned_vs_masked"] for r in rows),
    }
    from attn_desktop.core.explain.targets import normalise_spec

    target_info = {"kind": targets[0].kind, "spec": normalise_spec(spec),
                   "reads": targets[0].definition.get("reads"),
                   "chosen": "each text's own prediction unless the spec names a class, token or label"}
    result = PruneResult(removed=removed, selection=evidence, rows=rows, summary=summary, target=target_info)
    if targets[0].kind == "reference":
        result.notes.append("a reference target has no distribution: prediction changes are not defined")
    if out is not None:
        check()
        report(0.96, "saving the pruned model")
        prune.save_pruned(pruned_model, loaded.path, out)
        result.saved = str(out)
    report(1.0, "done")
    return result, pruned_model
