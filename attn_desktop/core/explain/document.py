"""Document-level explanations of a text read in windows (core.windows): one target computed from
every window jointly, and saliency, gradient x input, Integrated Gradients and leave-one-out as one
vector over the document's tokens (docs/windows.md, "Document-level importance").

The target: for a base encoder, the zero-shot label (softmax over labels of the cosine of the MEAN
of the windows' pooled embeddings to each label's, over a temperature) or the cosine of that mean to
a reference text; for a classifier, the mean of the windows' class probabilities. A document token
sits in one or more windows; the target depends on all of them, so its attribution is the SUM over
its occurrences (the gradient with respect to the token's embedding when the windows share it), and
leave-one-out replaces it in every window that holds it."""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attn_desktop.core.errors import Cancelled, UserError

KINDS = ("zero-shot", "reference", "class")
METHODS = ("saliency", "grad_input", "ig", "loo", "agreement")
NOT_AT_DOCUMENT = {
    "grad_rollout": "gradient-weighted rollout follows attention, which does not cross windows",
    "interventions": "changed attention is a test of one window's attention, not of the document",
    "faithfulness": "comprehensiveness and sufficiency are not computed for a document read in windows",
    "flow_importance": "flow is computed per window in the window (Show ▸ Flow), not for the document",
}
REFUSED = ("a document read in windows has a document-level target only for labels or a reference text "
           "(base encoder) or a class (classifier); a {kind} target reads one position of one text: shorten "
           "the text or cut it at the model's length (truncation)")
TARGET_RULE = {
    "zero-shot": "softmax over labels of cos(mean over windows of mean_pool(window), mean_pool(label)) / temperature",
    "reference": "cos(mean over windows of mean_pool(window), mean_pool(reference))",
    "class": "mean over windows of the window's softmax class probability",
}
TOKEN_RULE = ("a document token's value is the sum of its values over every window that holds it (saliency: "
              "the L2 norm of the summed gradient); the windows' special tokens are not document tokens")
ATTENTION_RULE = ("per window, the last layer's attention (mean over heads) or final rollout of the row the "
                  "output reads; a document token's value is the mean over the windows that hold it. "
                  "Attention does not cross windows.")
DELTA_FLOOR = 1e-7  # an IG completeness gap this small is converged whatever the tolerance
JOINT_BUDGET = 4096  # rows x tokens of all windows held in one autograd graph (as per-text IG's batches)
ARRAY_PREFIX = "document_"
INDEX_ARRAY = "window_document_index"


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def wanted(methods) -> tuple[list[str], dict[str, str]]:
    """(document-level methods to run, {method: why not}) for an expanded method list."""
    from attn_desktop.core.explain.run import EXPLANATION

    run = [m for m in METHODS if m in methods]
    skipped = {m: NOT_AT_DOCUMENT[m] for m in EXPLANATION if m in methods and m in NOT_AT_DOCUMENT}
    if "flow" in methods:
        skipped["flow_importance"] = NOT_AT_DOCUMENT["flow_importance"]
    return run, skipped


def check_request(loaded, methods, spec: dict | None, options: dict | None) -> str:
    """The target kind; refuses (one line) what a windowed document cannot explain."""
    from attn_desktop.core.explain.run import check_options
    from attn_desktop.core.explain.targets import check_fits, normalise_spec

    kind = check_fits(loaded, normalise_spec(spec))
    if kind not in KINDS:
        raise UserError(REFUSED.format(kind=kind))
    run, skipped = wanted(methods)
    if not run or run == ["agreement"]:
        raise UserError("on a document read in windows the explanation methods are saliency, grad_input, ig and "
                        f"loo (with agreement); {', '.join(sorted(skipped)) or 'these'} are not computed there")
    check_options(options)
    return kind


# -- the map from window tokens to document tokens --------------------------------------------------
def token_index(text: str, spans: list[tuple[int, int]], info: dict) -> np.ndarray:
    """[W, S] int32: the document token of every window token (-1: a special token, padding, or a
    piece whose text starts in no document token)."""
    starts = [s for s, _ in spans]
    lists = info["tokens"]
    out = np.full((len(lists), max(len(t) for t in lists)), -1, dtype=np.int32)
    for k, raw in enumerate(lists):
        for j, t in enumerate(raw):
            s, e = int(t["start"]), int(t["end"])
            if t.get("special") or e <= s:
                continue
            while s < e and text[s].isspace():
                s += 1
            i = bisect.bisect_right(starts, s) - 1
            if s < e and i >= 0 and spans[i][0] <= s < spans[i][1]:
                out[k, j] = i
    return out


def window_vectors(arrays: dict[str, np.ndarray], k: int, n: int) -> dict[str, np.ndarray]:
    """Window k's share of every document vector in `arrays`: per window token, its document token's
    value (0 for special tokens), under the per-text name (e.g. 'integrated_gradients')."""
    index = arrays.get(INDEX_ARRAY)
    if index is None or not 0 <= k < index.shape[0]:
        return {}
    idx = index[k, :n].astype(np.int64)
    out = {}
    for name, doc in arrays.items():
        if name.startswith(ARRAY_PREFIX) and doc.ndim == 1:
            picked = np.where(idx >= 0, doc[np.clip(idx, 0, max(len(doc) - 1, 0))], 0.0) if len(doc) else idx * 0.0
            out[name[len(ARRAY_PREFIX):]] = np.ascontiguousarray(picked, dtype=np.float32)
    return out


def document_token_list(analysis) -> list:
    """The document's tokens (core.analysis.Token, offsets into the whole text), each taken from the
    first window that holds it; a token in no window gets an empty span."""
    from attn_desktop.core.analysis import Token

    info = analysis.manifest["windows"]
    index = analysis.arrays[INDEX_ARRAY]
    count = int(info["document_tokens"])
    out: list = [None] * count
    for k, raw in enumerate(info["tokens"]):
        for j, t in enumerate(raw[:index.shape[1]]):
            i = int(index[k, j])
            if 0 <= i < count and out[i] is None:
                out[i] = Token.from_json(t)
    return [t if t is not None else Token("", 0, 0) for t in out]


def by_words(analysis, vectors: dict[str, np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
    """(word labels, each vector summed over its word's pieces) for the document's words (core.views.words)."""
    from attn_desktop.core.views import words

    units = words.group_words(analysis.text, document_token_list(analysis))
    return list(units.labels), {k: words.sum_columns(np.asarray(v, np.float64), units) for k, v in vectors.items()}


# -- the document target -------------------------------------------------------------------------
@dataclass
class DocumentTarget:
    """f(document) from every window's output: the pooled embedding (encoder) or the class
    probabilities (classifier) of each window, averaged over the windows, then read."""

    kind: str
    windows: list[list[int]]  # each window's input ids, special tokens included
    index: list[np.ndarray]  # each window's document token per position (-1: none)
    definition: dict[str, Any]
    has_distribution: bool = True
    value: float = float("nan")
    predicted: str | None = None
    _index: int = 0
    _anchors: Any = field(default=None, repr=False)
    _base: list = field(default_factory=list, repr=False)  # each window's output at the input [1, D]

    def ids(self, k: int, rows: int = 1, device="cpu"):
        import torch

        return torch.tensor([self.windows[k]] * rows, dtype=torch.long, device=device)

    def output(self, loaded, k: int, ids, embeds=None):
        """Window k's output for rows of ids [B, n] (with the input-embedding layer's output replaced
        by `embeds` [B, n, d] when given): [B, D]."""
        import torch

        from attn_desktop.core.explain.targets import (
            _mean_pool,
            _replaced_output,
            _unpadded_batches,
        )

        mask = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if loaded.kind == "causal-lm":
            inputs["use_cache"] = False
        replaced = (_replaced_output(loaded.model.get_input_embeddings(), embeds) if embeds is not None
                    else contextlib.nullcontext())
        with replaced, _unpadded_batches(loaded.model, self.kind == "class" and ids.shape[0] > 1):
            out = loaded.model(**inputs)
        if self.kind != "class":
            return _mean_pool(out.last_hidden_state.float(), mask)
        logits = out.logits.float()
        return torch.softmax(logits, dim=-1) if self.has_distribution else logits[:, :1]

    def combine(self, outputs: list):
        """(target [B], distribution [B, K] or None) from every window's output [B, D]."""
        import torch

        return self.read_mean(torch.stack(outputs).mean(0))

    def read_mean(self, mean):
        """(target [B], distribution [B, K] or None) from the mean over windows of their outputs [B, D]."""
        import torch

        if self.kind == "class":
            if not self.has_distribution:
                return mean[:, 0], None
            return mean[:, self._index], mean
        cos = torch.nn.functional.normalize(mean, dim=-1) @ self._anchors.T
        if self.kind == "reference":
            return cos[:, 0], None
        probs = torch.softmax(cos / self.definition["temperature"], dim=-1)
        return probs[:, self._index], probs

    def embed(self, loaded, k: int, rows: int = 1):
        return loaded.model.get_input_embeddings()(self.ids(k, rows, loaded.device))

    def evaluate_windows(self, loaded, make_embeds: Callable[[int], Any]):
        """The target for B rows, window k's embeddings given by make_embeds(k) [B, n_k, d]."""
        import torch

        outs = []
        with torch.no_grad():
            for k in range(len(self.windows)):
                e = make_embeds(k)
                outs.append(self.output(loaded, k, self.ids(k, e.shape[0], loaded.device), e))
        return self.combine(outs)[0]

    def joint(self, rows: int) -> bool:
        """Whether B rows of every window fit one graph (JOINT_BUDGET rows x tokens)."""
        return rows * sum(len(w) for w in self.windows) <= JOINT_BUDGET

    def gradients(self, loaded, make_embeds: Callable[[int], Any], cancel=None) -> list:
        """d target / d embeddings of every window, for B rows at once: one [B, n_k, d] per window.
        Small enough (`joint`): one graph over every window, one backward pass. Else every window's
        output is computed once without a graph, then each window again with its graph and the
        target's gradient with respect to that output (the chain rule through the mean), so only one
        window's graph is held at a time (one more forward pass per window)."""
        import torch

        if self.joint(make_embeds(0).shape[0]):
            with torch.enable_grad():
                embeds, outs = [], []
                for k in range(len(self.windows)):
                    _check(cancel)
                    e = make_embeds(k).detach().requires_grad_(True)
                    embeds.append(e)
                    outs.append(self.output(loaded, k, self.ids(k, e.shape[0], loaded.device), e))
                value = self.combine(outs)[0]
                return [g.detach() for g in torch.autograd.grad(value.sum(), embeds)]
        with torch.no_grad():
            outs = []
            for k in range(len(self.windows)):
                _check(cancel)
                e = make_embeds(k)
                outs.append(self.output(loaded, k, self.ids(k, e.shape[0], loaded.device), e))
        with torch.enable_grad():
            leaves = [o.detach().requires_grad_(True) for o in outs]
            value = self.combine(leaves)[0]
            d_out = torch.autograd.grad(value.sum(), leaves)
        grads = []
        for k in range(len(self.windows)):
            _check(cancel)
            with torch.enable_grad():
                e = make_embeds(k).detach().requires_grad_(True)
                o = self.output(loaded, k, self.ids(k, e.shape[0], loaded.device), e)
                (g,) = torch.autograd.grad(o, e, grad_outputs=d_out[k])
            grads.append(g.detach())
        return grads


def resolve(loaded, windows: list[list[int]], index: list[np.ndarray], spec: dict | None) -> DocumentTarget:
    """The document target; computes every window's output at the input and f(document) once."""
    import torch

    from attn_desktop.core.explain.targets import (
        Target,
        _chosen_index,
        _embed_texts,
        _name_of,
        check_fits,
        normalise_spec,
    )

    spec = normalise_spec(spec)
    kind = check_fits(loaded, spec)
    if kind not in KINDS:
        raise UserError(REFUSED.format(kind=kind))
    d: dict[str, Any] = {"kind": kind, "document": True, "reads": TARGET_RULE[kind]}
    target = DocumentTarget(kind=kind, windows=windows, index=index, definition=d)
    if kind == "zero-shot":
        if spec["labels"] is None:
            raise UserError("zero-shot needs labels (--labels FILE)")
        anchors = spec["labels"]
        d.update(labels=list(anchors), temperature=spec["temperature"])
    elif kind == "reference":
        if spec["reference"] is None:
            raise UserError("a reference target needs a reference text (--reference TEXT)")
        anchors = [str(spec["reference"])]
        d["reference"] = anchors[0]
    else:
        anchors = None
        labels = getattr(loaded.model.config, "num_labels", 2)
        target.has_distribution = labels > 1
    if anchors is not None:
        d["pooling"] = "mean of each window's last hidden states over all its tokens (specials included)"
        target._anchors = _embed_texts(loaded, anchors)
        target.has_distribution = kind == "zero-shot"
    with torch.no_grad():
        target._base = [target.output(loaded, k, target.ids(k, 1, loaded.device)) for k in range(len(windows))]
        _, dist = target.combine(target._base)
    predicted = int(dist[0].argmax()) if dist is not None else None
    layer = loaded.model.get_input_embeddings()
    like = Target(kind=kind, definition=d, input_ids=[], special=[], embedding_layer="",
                  has_distribution=target.has_distribution)
    target._index = _chosen_index(loaded, like, spec, predicted) or 0
    with torch.no_grad():
        target.value = float(target.combine(target._base)[0][0])
    target.predicted = _name_of(loaded, like, predicted)
    if kind == "class" and target.has_distribution:
        from attn_desktop.core.explain.targets import _class_label

        d.update({"class": target._index, "class_label": _class_label(loaded.model.config, target._index)})
    elif kind == "zero-shot":
        d.update(label_index=target._index, label=d["labels"][target._index])
    given = {"class": "class", "zero-shot": "label"}.get(kind)
    d["chosen"] = ("given" if given and spec.get(given) is not None
                   else ("predicted" if target.has_distribution else "the only output"))
    d["embedding_layer"] = next((n for n, m in loaded.model.named_modules() if m is layer), type(layer).__name__)
    return target


# -- the methods ----------------------------------------------------------------------------------
def _to_document(per_window: list[np.ndarray], index: list[np.ndarray], count: int) -> np.ndarray:
    """Sum over occurrences: per_window[k][j] added to document token index[k][j]."""
    out = np.zeros(count, dtype=np.float64)
    for values, idx in zip(per_window, index, strict=True):
        keep = idx >= 0
        np.add.at(out, idx[keep], np.asarray(values, dtype=np.float64)[keep])
    return out


def saliency_and_grad_input(loaded, target: DocumentTarget, count: int, cancel=None):
    """(saliency [N], grad_input [N]) of the document target, from one pass over the windows."""
    embeds = [target.embed(loaded, k).detach() for k in range(len(target.windows))]
    grads = target.gradients(loaded, lambda k: embeds[k], cancel)
    d = embeds[0].shape[-1]
    summed = np.zeros((count, d), dtype=np.float64)
    gxi = []
    for g, e, idx in zip(grads, embeds, target.index, strict=True):
        g, e = g[0].double().cpu().numpy(), e[0].double().cpu().numpy()
        keep = idx >= 0
        np.add.at(summed, idx[keep], g[keep])
        gxi.append((g * e).sum(-1))
    return np.linalg.norm(summed, axis=-1), _to_document(gxi, target.index, count)


def _baseline_embeds(loaded, target: DocumentTarget, baseline: str):
    """(baseline embeddings per window [1, n_k, d], baseline used, its token): document tokens
    replaced, every other position (special tokens) kept."""
    import torch

    tok = loaded.tokenizer
    token_id = None if baseline == "zero" else (tok.pad_token_id if baseline == "pad" else tok.mask_token_id)
    if token_id is None and baseline == "mask":
        raise UserError(f"{loaded.name}'s tokenizer has no mask token: use the pad or zero baseline")
    used = baseline if token_id is not None else "zero"
    module = loaded.model.get_input_embeddings()
    out = []
    with torch.no_grad():
        for k in range(len(target.windows)):
            ids = target.ids(k, 1, loaded.device)
            keep = torch.tensor(target.index[k] < 0, device=loaded.device).view(1, -1)
            if used == "zero":
                e = module(ids)
                out.append(torch.where(keep.unsqueeze(-1), e, torch.zeros_like(e)))
            else:
                out.append(module(torch.where(keep, ids, torch.full_like(ids, token_id))))
    name = tok.convert_ids_to_tokens([token_id])[0] if token_id is not None else None
    return out, used, name


def integrated_gradients(loaded, target: DocumentTarget, count: int, *, baseline: str = "pad",
                         steps: int | str = "auto", start_steps: int = 16, max_steps: int = 256,
                         tolerance: float = 0.05, method: str = "gausslegendre", cancel=None,
                         progress: Callable[[float, float, float, str], None] | None = None) -> tuple[np.ndarray, dict]:
    """Integrated Gradients of the document target along one path for the whole document: at each
    step every window's embeddings are b + alpha (x - b) with the same alpha, so completeness holds
    for the document: sum(attributions) = f(x) - f(b) + delta. Captum's quadrature (its step sizes
    and alphas); the gradients by DocumentTarget.gradients. progress(fraction of the work by the
    fixed shares of document_progress.round_shares, window forwards done, forwards known so far
    (the rounds up to the current one), message)."""
    import os

    import torch

    from attn_desktop.core.explain.document_progress import ig_rounds, round_shares

    os.environ.setdefault("MPLBACKEND", "Agg")
    from captum.attr._utils.approximation_methods import approximation_parameters

    adaptive = steps == "auto"
    step_sizes, alphas_of = approximation_parameters(method)
    xs = [target.embed(loaded, k).detach() for k in range(len(target.windows))]
    bs, used, base_token = _baseline_embeds(loaded, target, baseline)
    f_x = float(target.evaluate_windows(loaded, lambda k: xs[k])[0])
    f_b = float(target.evaluate_windows(loaded, lambda k: bs[k])[0])
    gap = abs(f_x - f_b)
    batch = ig_batch(target.windows)
    k_steps = start_steps if adaptive else int(steps)
    rounds = ig_rounds(steps, start_steps, max_steps)
    shares = round_shares(rounds)
    windows = len(target.windows)
    per_step = ig_forwards_per_step(target.windows, batch)
    fixed = 2.0 * windows  # f(x) and f(b)
    forwards = fixed
    if progress is not None:
        progress(0.0, forwards, fixed + k_steps * per_step, "Integrated Gradients: f(input) and f(baseline)")
    tried, best = [], None
    while True:
        r = len(tried)
        lo, hi = shares[r] if r < len(shares) else (1.0, 1.0)
        alphas, weights = alphas_of(k_steps), step_sizes(k_steps)
        acc = [torch.zeros_like(x[0], dtype=torch.float64) for x in xs]
        for start in range(0, k_steps, batch):
            _check(cancel)
            a = torch.tensor(alphas[start:start + batch], dtype=xs[0].dtype, device=xs[0].device).view(-1, 1, 1)
            w = torch.tensor(weights[start:start + batch], dtype=torch.float64, device=xs[0].device).view(-1, 1, 1)
            grads = target.gradients(loaded, lambda k, a=a: bs[k] + a * (xs[k] - bs[k]), cancel)
            for q, g in enumerate(grads):
                acc[q] += (g.double() * w).sum(0)
            if progress is not None:
                d = start + len(alphas[start:start + batch])
                progress(lo + (hi - lo) * d / k_steps, forwards + d * per_step, forwards + k_steps * per_step,
                         f"Integrated Gradients {d}/{k_steps} steps" + (f" (round {r + 1})" if r else ""))
        forwards += k_steps * per_step
        per_window = [((acc[q] * (xs[q][0] - bs[q][0]).double()).sum(-1)).cpu().numpy()
                      for q in range(len(xs))]
        vector = _to_document(per_window, target.index, count)
        delta = float(vector.sum()) - (f_x - f_b)
        tried.append({"steps": int(k_steps), "delta": delta})
        if best is None or abs(delta) < abs(best[1]):
            best = (vector, delta, k_steps)
        converged = abs(delta) <= tolerance * gap or abs(delta) < DELTA_FLOOR
        if not adaptive or converged or k_steps >= max_steps:
            break
        k_steps = min(2 * k_steps, max_steps)
    vector, delta, k_steps = best
    record = {
        "steps": int(k_steps), "delta": delta, "relative_delta": abs(delta) / gap if gap > 0 else None,
        "f_input": f_x, "f_baseline": f_b, "baseline": used, "baseline_requested": baseline,
        "baseline_token": base_token,
        "baseline_rule": "every window's document tokens replaced, its special tokens kept",
        "layer": target.definition.get("embedding_layer"), "method": method, "adaptive": adaptive,
        "tolerance": tolerance if adaptive else None, "max_steps": max_steps if adaptive else None,
        "tried": tried, "converged": abs(delta) <= tolerance * gap or abs(delta) < DELTA_FLOOR,
        "internal_batch_size": batch, "path": "one path for the whole document: the same alpha in every window",
        "implementation": "captum's quadrature (step sizes and alphas); gradients of the document target "
                          + ("in one graph over every window" if target.joint(batch) else
                             "through each window in turn (chain rule through the mean over windows)"),
        "definition": "sum over d of IG attributions on the input-embedding layer, summed over a token's "
                      "occurrences; completeness: sum(attr) = f(x) - f(baseline) + delta",
    }
    return vector, record


def ig_forwards_per_step(windows: list[list[int]], batch: int) -> float:
    """Window forwards of one IG step over every window: forward and backward, about 2 (measured on
    the demo model, 5 windows of 128: 0.033 s per such unit in IG's batches of 6 rows, 0.052 s per
    leave-one-out row), one more forward when the windows do not fit one graph (DocumentTarget.joint)."""
    joint = batch * sum(len(w) for w in windows) <= JOINT_BUDGET
    return (2.0 if joint else 3.0) * len(windows)


def ig_batch(windows: list[list[int]]) -> int:
    total = sum(len(w) for w in windows)
    longest = max(len(w) for w in windows)
    return max(1, min(32, JOINT_BUDGET // total if total <= JOINT_BUDGET else 4096 // longest))


def ig_rounds_planned(opts: dict) -> list[int]:
    """The IG rounds the estimate counts: the first two of an adaptive run (document_progress)."""
    from attn_desktop.core.explain.document_progress import PLANNED_ROUNDS, ig_rounds

    return ig_rounds(opts["ig_steps"], opts["ig_start_steps"], opts["ig_max_steps"])[:PLANNED_ROUNDS]


def loo_rows(index: list[np.ndarray]) -> int:
    """Leave-one-out's window forwards: one per (window, document token it holds)."""
    return sum(len(set(idx[idx >= 0].tolist())) for idx in index)


def leave_one_out(loaded, target: DocumentTarget, count: int, replacement, batch_size: int = 32, cancel=None,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """f(x) - f(x with document token i replaced (or deleted) in every window that holds it)."""
    import torch

    per_window: list[dict[int, Any]] = []  # window -> {document token: that window's output without it}
    jobs = loo_rows(target.index)
    done = 0
    for k, idx in enumerate(target.index):
        base = target.windows[k]
        tokens = sorted(set(idx[idx >= 0].tolist()))
        rows = []
        for i in tokens:
            hit = idx == i
            if replacement.how == "delete":
                rows.append([t for t, h in zip(base, hit, strict=True) if not h])
            else:
                rows.append([replacement.token_id if h else t for t, h in zip(base, hit, strict=True)])
        found: dict[int, Any] = {}
        by_length: dict[int, list[int]] = {}
        for r, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(r)
        for members in by_length.values():
            for start in range(0, len(members), batch_size):
                _check(cancel)
                chunk = members[start:start + batch_size]
                ids = torch.tensor([rows[r] for r in chunk], dtype=torch.long, device=loaded.device)
                with torch.no_grad():
                    out = target.output(loaded, k, ids)
                for q, r in enumerate(chunk):
                    found[tokens[r]] = out[q]
                done += len(chunk)
                if progress is not None:
                    progress(done, jobs)
        per_window.append(found)
    # the mean over windows without token i: the input's mean plus (O_k without i - O_k) / W for the
    # windows k that hold it ([N, D], never [W, N, D])
    base = torch.stack(target._base)[:, 0]
    windows = base.shape[0]
    mean = base.mean(0).expand(count, -1).clone()
    for k, found in enumerate(per_window):
        for i, o in found.items():
            mean[i] += (o - base[k]) / windows
    with torch.no_grad():
        values = target.read_mean(mean)[0].double().cpu().numpy()
    return target.value - values


def attention_vectors(arrays: dict[str, np.ndarray], info: dict, index: list[np.ndarray], count: int,
                      kind: str, alpha: float, fusion, want_rollout: bool, cancel=None) -> tuple[dict, dict]:
    """Document vectors of attention (last layer, mean over heads) and final rollout of the row the
    output reads, each window's mapped to document tokens and averaged over the windows that hold them."""
    from attn_desktop.core.explain.readout import ReadRow, is_causal
    from attn_desktop.core.propagate import rollout as ro

    stack = arrays["window_attentions"]
    sums = {"attention_importance": np.zeros(count), "rollout_importance": np.zeros(count)}
    seen = np.zeros(count)
    row = None
    for k, entry in enumerate(info["windows"]):
        _check(cancel)
        n = int(entry["tokens"])
        att = np.asarray(stack[k, :, :, :n, :n], dtype=np.float32)
        if row is None:
            if kind in ("zero-shot", "reference"):
                row = ReadRow("mean", None, "the target mean-pools every window's last hidden states over all tokens")
            elif is_causal(att):
                row = ReadRow("last", None, "a causal classifier pools each window's last token")
            else:
                row = ReadRow("cls", 0, "a [CLS]-pooled classifier reads each window's first token")
        pick = (lambda v, n=n: v.mean(0)) if row.rule == "mean" else (
            (lambda v, n=n: v[n - 1]) if row.rule == "last" else (lambda v: v[0]))
        per = {"attention_importance": pick(att[-1].mean(0))}
        if want_rollout:
            hat = ro.fused_hat(att, alpha, fusion)
            if row.rule == "mean":
                vec = np.full(n, 1.0 / n, dtype=np.float64)
            else:
                vec = np.zeros(n)
                vec[n - 1 if row.rule == "last" else 0] = 1.0
            for layer in range(hat.shape[0] - 1, -1, -1):  # v R_L = v hat_L ... hat_1
                vec = vec @ hat[layer].astype(np.float64)
            per["rollout_importance"] = vec
        idx = index[k][:n]
        keep = idx >= 0
        np.add.at(seen, np.unique(idx[keep]), 1.0)
        for name, v in per.items():
            np.add.at(sums[name], idx[keep], np.asarray(v, dtype=np.float64)[keep])
    out = {name: (s / np.maximum(seen, 1.0)).astype(np.float32) for name, s in sums.items()
           if name == "attention_importance" or want_rollout}
    layers = stack.shape[1]
    read = {**row.to_json(), "index": None if row.rule != "cls" else 0, "attention_layer": int(layers - 1),
            "attention_set": "self", "alpha": float(alpha), "head_fusion": fusion, "heads": "mean",
            "windows": ATTENTION_RULE}
    if want_rollout:
        read["rollout"] = "final rollout (after the last layer) of each window"
    return out, read


# -- the stage ------------------------------------------------------------------------------------
def explain(loaded, analysis, methods, spec: dict | None, options: dict | None = None, *,
            progress=None, cancel=None):
    """Run the document-level methods on a windowed `analysis` (core.windows); returns the Analysis
    of the window it showed, with the document vectors (arrays 'document_*', the map
    'window_document_index') and manifest['explain'] filed."""
    from attn_desktop.core import windows as windowing
    from attn_desktop.core.explain import agreement as agr
    from attn_desktop.core.explain.perturbation import choose_replacement
    from attn_desktop.core.explain.run import VECTOR_ARRAYS, _clean, check_options, expand_methods

    methods = expand_methods(methods)
    opts = check_options(options)
    run, skipped = wanted(methods)
    from attn_desktop.core.explain.document_progress import STEP_NAMES, DocumentProgress
    from attn_desktop.core.explain.document_progress import measure as measure_pace
    from attn_desktop.core.explain.document_progress import plan as plan_work

    steps = ["target", "attention"] + [m for m in METHODS if m in run] + ["verdict"]
    bar = DocumentProgress(progress or (lambda f, m: None))
    timings: dict[str, float] = {}

    def begin(name, message):
        _check(cancel)
        bar.at(name, 0.0, message)
        return time.perf_counter()

    def end(name, t0):
        timings[name] = round(time.perf_counter() - t0, 6)
        bar.at(name, 1.0, f"{STEP_NAMES[name]} done")

    info = analysis.manifest["windows"]
    spans, _ = windowing.document_tokens(loaded, analysis.text)
    count = len(spans)
    if count != int(info["document_tokens"]):
        raise RuntimeError(f"the document has {count} tokens now, the window map {info['document_tokens']}")
    index_array = token_index(analysis.text, spans, info)
    sizes = [int(e["tokens"]) for e in info["windows"]]
    index = [index_array[k, :n] for k, n in enumerate(sizes)]
    windows_ids = [list(e["input_ids"]) for e in info["windows"]]

    ig_planned = sum(ig_rounds_planned(opts))
    bar.set_plan(plan_work(run, len(windows_ids), ig_planned, ig_forwards_per_step(windows_ids, ig_batch(windows_ids)),
                           loo_rows(index), saliency_joint=sum(map(len, windows_ids)) <= JOINT_BUDGET,
                           lengths=list(map(len, windows_ids)), loo_rows_per_window=[loo_rows([i]) for i in index]),
                 steps)
    t0 = begin("target", "resolving the document target")
    target = resolve(loaded, windows_ids, index, spec)
    covered = np.zeros(count, dtype=bool)
    for idx in index:
        covered[idx[idx >= 0]] = True
    section: dict[str, Any] = {
        "target": {**target.definition, "value": target.value, "predicted": target.predicted},
        "methods_requested": methods, "methods": {}, "skipped": dict(skipped), "options": dict(opts),
        "document": {
            "windows": len(sizes), "document_tokens": count, "window_size": info["size"],
            "window_stride": info["stride"], "target_rule": TARGET_RULE[target.kind], "token_rule": TOKEN_RULE,
            "attention_rule": ATTENTION_RULE, "attention_crosses_windows": False,
            "loo_rule": "the token replaced (or deleted) in every window that holds it, the document target "
                        "recomputed",
            "window_tokens_without_document_token": int(sum(
                1 for k, n in enumerate(sizes) for j in range(n)
                if index[k][j] < 0 and not info["tokens"][k][j].get("special"))),
            "document_tokens_in_no_window": int((~covered).sum()),
            "arrays": f"'{ARRAY_PREFIX}<vector>' over document tokens; '{INDEX_ARRAY}' [window, position] "
                      "-> document token (-1: none)",
        },
    }
    end("target", t0)
    loo_batch = max(1, min(opts["batch_size"], 8192 // max(max(sizes), 1)))
    bar.calibrate(measure_pace(loaded, target, batch_rows=loo_batch if "loo" in run else 1, gradient_rows=(
        ig_batch(windows_ids) if "ig" in run else 1 if {"saliency", "grad_input"} & set(run) else 0)))
    if set(run) - {"agreement"}:
        bar.estimate(", ".join(m for m in run if m != "agreement"), len(windows_ids),
                     ig_rounds=ig_rounds_planned(opts) if opts["ig_steps"] == "auto" and "ig" in run else None)

    t0 = begin("attention", "attention and rollout of every window")
    vectors, read = attention_vectors(analysis.arrays, info, index, count, target.kind, opts["alpha"],
                                      opts["head_fusion"], "rollout" in methods, cancel)
    section["read_row"] = read
    end("attention", t0)

    if "saliency" in run or "grad_input" in run:
        name = "saliency" if "saliency" in run else "grad_input"
        t0 = begin(name, "gradients of the document target")
        sal, gxi = saliency_and_grad_input(loaded, target, count, cancel)
        layer = target.definition["embedding_layer"]
        if "saliency" in run:
            vectors["saliency"] = sal
            section["methods"]["saliency"] = {
                "definition": "L2 norm over d of the summed gradient over a token's occurrences", "layer": layer}
        if "grad_input" in run:
            vectors["grad_input"] = gxi
            section["methods"]["grad_input"] = {
                "definition": "sum over d of e_(i,d) * df/de_(i,d), summed over a token's occurrences (signed)",
                "layer": layer}
        end(name, t0)
        if "saliency" in run and "grad_input" in run:
            timings["grad_input"] = 0.0

    def ig_progress(fraction, done, known, message):
        bar.extra = max(0.0, known - bar.units["ig"])  # rounds beyond the plan count in the time left
        bar.at("ig", fraction, message, units_done=done)

    if "ig" in run:
        t0 = begin("ig", "Integrated Gradients over the document")
        vec, record = integrated_gradients(
            loaded, target, count, baseline=opts["baseline"], steps=opts["ig_steps"],
            start_steps=opts["ig_start_steps"], max_steps=opts["ig_max_steps"], tolerance=opts["ig_tolerance"],
            method=opts["ig_method"], cancel=cancel,
            progress=ig_progress)
        vectors["integrated_gradients"] = vec
        section["methods"]["integrated_gradients"] = record
        end("ig", t0)
    if "loo" in run:
        t0 = begin("loo", "leave-one-out over the document")
        replacement = choose_replacement(loaded, opts["replacement"])
        batch = loo_batch
        vectors["loo"] = leave_one_out(loaded, target, count, replacement, batch, cancel,
                                       progress=lambda d, t: bar.at("loo", d / max(t, 1),
                                                                    f"leave-one-out {d}/{t}", units_done=d))
        section["methods"]["loo"] = {**replacement.to_json(), "batch_size": batch,
                                     "definition": "f(x) - f(x with the token replaced in every window that "
                                                   "holds it)"}
        end("loo", t0)
    if "agreement" in run:
        t0 = begin("agreement", "agreement between the vectors")
        section["agreement"] = agr.agreement(vectors, [False] * count)
        end("agreement", t0)

    t0 = begin("verdict", "verdict")
    section["verdict"] = document_verdict(section)
    end("verdict", t0)
    section["timings"] = timings
    section["arrays"] = [name for name in VECTOR_ARRAYS if name in vectors]
    for name, vec in vectors.items():
        analysis.arrays[ARRAY_PREFIX + name] = np.ascontiguousarray(vec, dtype=np.float32)
    analysis.arrays[INDEX_ARRAY] = index_array
    analysis.manifest["explain"] = _clean(section)
    bar.at("verdict", 1.0, "document explanation done")
    return windowing.window_view(analysis, windowing.shown_window(analysis))


def document_verdict(section: dict) -> dict:
    """The per-text verdict, said of the document, with the windows' caveat first."""
    from attn_desktop.core.explain.verdict import verdict

    out = verdict(section)
    out["headline"] = out["headline"].replace("For this input,", "For this document (read in windows),", 1)
    out["caveats"].insert(0, "attention does not cross windows: the document's attention vector is each window's "
                             "attention averaged over the windows that hold the token, while the gradients and "
                             "leave-one-out follow the document target through every window")
    return out


def is_document(section) -> bool:
    return isinstance(section, dict) and isinstance(section.get("document"), dict)
