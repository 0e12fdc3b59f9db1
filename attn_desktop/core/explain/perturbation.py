"""Changing the input or the attention and measuring the target: token replacement (shared by
leave-one-out and faithfulness), uniform attention (Wiegreffe & Pinter 2019) and permuted
attention (Jain & Wallace 2019) through the capture engine's plan edits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_desktop.core.errors import Cancelled, UserError

REPLACEMENTS = ("auto", "mask", "unk", "delete")


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


@dataclass(frozen=True)
class Replacement:
    how: str  # mask | unk | delete
    token_id: int | None
    token: str | None

    def to_json(self) -> dict[str, Any]:
        return {"replacement": self.how, "token": self.token, "token_id": self.token_id}


def choose_replacement(loaded, requested: str = "auto") -> Replacement:
    tok = loaded.tokenizer
    if requested not in REPLACEMENTS:
        raise UserError(f"unknown replacement {requested!r}: choose from {', '.join(REPLACEMENTS)}")
    order = ["mask", "unk", "delete"] if requested == "auto" else [requested]
    for how in order:
        if how == "delete":
            return Replacement("delete", None, None)
        token_id = tok.mask_token_id if how == "mask" else tok.unk_token_id
        if token_id is not None:
            return Replacement(how, int(token_id), tok.convert_ids_to_tokens([token_id])[0])
    raise UserError(f"{loaded.name}'s tokenizer has no {requested} token: use another replacement")


def evaluate_removals(loaded, target, removals: Sequence[Sequence[int]], replacement: Replacement,
                      batch_size: int = 32, cancel=None, progress: Callable[[int, int], None] | None = None,
                      cache: dict[tuple[int, ...], float] | None = None) -> np.ndarray:
    """The target with each set of token positions replaced (or deleted): float64 [len(removals)].
    Identical sets are evaluated once; `cache` (set -> value, for this target and replacement)
    carries values between calls."""
    import torch

    base = list(target.input_ids)
    unique: dict[tuple[int, ...], int] = {}
    keys = []
    for r in removals:
        key = tuple(sorted(set(int(i) for i in r)))
        if any(target.special[i] for i in key):
            raise ValueError("special tokens are never removed")
        keys.append(unique.setdefault(key, len(unique)))
    sets = list(unique)
    values = np.empty(len(sets), dtype=np.float64)
    cache = {} if cache is None else cache
    # deletion changes lengths: rows of one batch share a length
    by_length: dict[int, list[int]] = {}
    for j, key in enumerate(sets):
        if key in cache:
            values[j] = cache[key]
            continue
        length = len(base) - (len(key) if replacement.how == "delete" else 0)
        by_length.setdefault(length, []).append(j)
    done, todo = 0, sum(len(m) for m in by_length.values())
    mask_pos = target.definition.get("position") if target.kind == "masked-token" else None
    for members in by_length.values():
        for start in range(0, len(members), batch_size):
            _check(cancel)
            chunk = members[start:start + batch_size]
            rows, positions = [], []
            for j in chunk:
                key = set(sets[j])
                if replacement.how == "delete":
                    rows.append([t for i, t in enumerate(base) if i not in key])
                    if mask_pos is not None:
                        positions.append(mask_pos - sum(1 for i in key if i < mask_pos))
                else:
                    rows.append([replacement.token_id if i in key else t for i, t in enumerate(base)])
            ids = torch.tensor(rows, dtype=torch.long, device=loaded.device)
            pos = torch.tensor(positions, device=loaded.device) if positions else None
            with torch.no_grad():
                out = target.evaluate(loaded, ids, positions=pos)
            values[chunk] = out.double().cpu().numpy()
            for j in chunk:
                cache[sets[j]] = float(values[j])
            done += len(chunk)
            if progress is not None:
                progress(done, todo)
    return values[keys]


def leave_one_out(loaded, target, replacement: Replacement, batch_size: int = 32, cancel=None,
                  progress=None, cache=None) -> np.ndarray:
    """f(x) − f(x with token i replaced) for each non-special token; 0 for specials. float32 [n]."""
    idx = [i for i, s in enumerate(target.special) if not s]
    out = np.zeros(len(target.input_ids), dtype=np.float32)
    if idx:
        values = evaluate_removals(loaded, target, [[i] for i in idx], replacement, batch_size, cancel, progress,
                                   cache)
        out[idx] = (target.value - values).astype(np.float32)
    return out


# -- changed attention -------------------------------------------------------------------------

def _allowed(weights_shape, causal: bool, device):
    import torch

    q, k = weights_shape[-2], weights_shape[-1]
    allowed = torch.ones((q, k), dtype=torch.bool, device=device)
    if causal:
        allowed = torch.tril(allowed, diagonal=k - q)
    return allowed


def uniform_weights(weights, causal: bool):
    """Every row uniform over the keys it may see (all keys, or the causal prefix)."""
    allowed = _allowed(weights.shape, causal, weights.device).to(weights.dtype)
    return (allowed / allowed.sum(-1, keepdim=True)).expand_as(weights).clone()


def permuted_weights(weights, causal: bool, generator):
    """Each head's row permuted at random over the keys it may see."""
    import torch

    allowed = _allowed(weights.shape, causal, weights.device)
    k = weights.shape[-1]
    noise = torch.rand(weights.shape, generator=generator).to(weights.device)
    after = 2.0 + torch.arange(k, device=weights.device, dtype=noise.dtype)
    order = torch.where(allowed, noise, after).argsort(dim=-1)
    return weights.gather(-1, order)


RowEdit = Callable[[Any, Any], Any]  # (site, weights of one batch row [H, q, k]) -> new weights or None


def run_edited(loaded, target, rows: Sequence[RowEdit], batch_size: int = 32, cancel=None,
               on_chunk: Callable[[Sequence[int]], None] | None = None):
    """The target and distribution with one attention edit per batch row.
    Returns (values float64 [R], distributions [R, K] float32 numpy or None)."""
    import torch

    from attn_desktop.core.model import capture

    values, dists = [], []
    for start in range(0, len(rows), batch_size):
        _check(cancel)
        chunk = list(rows[start:start + batch_size])
        if on_chunk is not None:
            on_chunk(range(start, start + len(chunk)))

        def edit(site, weights, chunk=chunk):
            out = []
            for b, fn in enumerate(chunk):
                new = fn(site, weights[b])
                out.append(weights[b] if new is None else new.to(weights.dtype))
            return torch.stack(out)

        plan = capture.CapturePlan(sites=loaded.site_of, record=False, edit=edit, cancel=cancel)
        with torch.no_grad():
            value, dist = target.both(loaded, target.ids_tensor(loaded, len(chunk)), plan=plan)
        values.append(value.double().cpu().numpy())
        if dist is not None:
            dists.append(dist.float().cpu().numpy())
    return np.concatenate(values), (np.concatenate(dists) if dists else None)


def _tvd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(p - q).sum(-1)


def interventions(loaded, target, sites: Sequence[Any], causal_sets: set[str], *, seeds: int = 10,
                  batch_size: int = 32, cancel=None, progress=None) -> dict[str, Any]:
    """Uniform attention in all layers and in each layer alone; permuted attention over `seeds`
    seeds. `sites`: every attention call of one forward (capture Sites); `causal_sets`: the sets
    whose keys are a causal prefix. Returns the manifest section."""
    import torch

    with torch.no_grad():
        value0, dist0 = target.both(loaded, target.ids_tensor(loaded))
    value0 = float(value0[0])
    dist0 = None if dist0 is None else dist0[0].float().cpu().numpy()
    pred0 = None if dist0 is None else int(dist0.argmax())

    def uniform_at(chosen):
        def fn(site, w):
            return uniform_weights(w, site.set in causal_sets) if site in chosen else None
        return fn

    def permuted(seed):
        gen = torch.Generator().manual_seed(seed)

        def fn(site, w):
            return permuted_weights(w, site.set in causal_sets, gen)
        return fn

    all_sites = set(sites)
    rows: list[RowEdit] = [uniform_at(all_sites)] + [uniform_at({s}) for s in sites]
    rows += [permuted(seed) for seed in range(seeds)]
    total = len(rows)

    def on_chunk(indices):
        if progress is not None:
            progress(indices[0], total)

    values, dists = run_edited(loaded, target, rows, batch_size, cancel, on_chunk)

    def outcome(i):
        res = {"value": float(values[i]), "change": float(values[i] - value0), "tvd": None, "flip": None,
               "predicted_index": None}
        if dists is not None:
            res["tvd"] = float(_tvd(dists[i], dist0))
            res["flip"] = bool(int(dists[i].argmax()) != pred0)
            res["predicted_index"] = int(dists[i].argmax())
        return res

    uniform_layer = []
    for j, s in enumerate(sites):
        uniform_layer.append({"set": s.set, "layer": int(s.layer), **outcome(1 + j)})
    perm = [outcome(1 + len(sites) + s) for s in range(seeds)]
    changes = np.array([p["change"] for p in perm])
    section = {
        "allowed_keys": "uniform / permuted over the keys each query may see: the causal prefix in "
                        f"{sorted(causal_sets) or 'no'} sets, every key otherwise",
        "value": value0,
        "uniform_all": outcome(0),
        "uniform_layer": uniform_layer,
        "permuted": {
            "seeds": int(seeds),
            "generator": "torch.Generator().manual_seed(s) for seed s, one draw per attention call in forward order",
            "values": [p["value"] for p in perm], "changes": changes.tolist(),
            "abs_change_median": float(np.median(np.abs(changes))) if seeds else None,
            "abs_change_max": float(np.max(np.abs(changes))) if seeds else None,
            "tvds": None, "tvd_median": None, "tvd_max": None, "flips": None,
        },
    }
    if dists is not None and seeds:
        tvds = np.array([p["tvd"] for p in perm])
        section["permuted"].update(tvds=tvds.tolist(), tvd_median=float(np.median(tvds)),
                                   tvd_max=float(tvds.max()), flips=int(sum(p["flip"] for p in perm)))
    return section
