"""Physical head pruning: a model copy whose attention layers no longer hold the removed heads.

The removed heads' rows go from the query, key and value projections and their columns from the
output projection, as transformers' `prune_heads` did up to 4.x (transformers 5 removed
`prune_heads`, `find_pruneable_heads_and_indices` and the config's `pruned_heads`; only
`prune_linear_layer` remains). The pruned model computes what the original computes with those
heads masked (their attention output zero before the output projection).

Supported attention modules: BERT-like (query / key / value + the parent's output.dense: BERT,
RoBERTa, ELECTRA, ...), GPT-2-like (one Conv1D c_attn + c_proj) and projection-style
(q_proj / k_proj / v_proj + out_proj or o_proj with as many key/value heads as query heads:
BART-like; tested on BERT, GPT-2 and BART; grouped key/value heads are refused).

The config records the layout under PRUNED_KEY: {set: {layer: [removed original heads]}}.
transformers 5 cannot build such a model from its config alone (every layer gets
num_attention_heads heads), so loading goes through `pruned_class`, which shrinks the layers
right after the model is built and before from_pretrained reads the weights.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable
from pathlib import Path

from attn_desktop.core.errors import UserError
from attn_desktop.core.model.capture import FULL_HEADS, KEPT_HEADS, Site, site_namer

PRUNED_KEY = "attn_desktop_pruned_heads"
HEADS_KEY = "attn_desktop_heads_per_layer"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
    "source.spm", "target.spm", "chat_template.jinja",
)


def _family(module) -> str | None:
    import torch

    linear = torch.nn.Linear
    if all(isinstance(getattr(module, n, None), linear) for n in ("query", "key", "value")) and hasattr(
        module, "attention_head_size"
    ):
        return "bert"
    if hasattr(module, "c_attn") and hasattr(module, "c_proj") and hasattr(module, "split_size"):
        return "gpt2"
    if all(isinstance(getattr(module, n, None), linear) for n in ("q_proj", "k_proj", "v_proj")) and hasattr(
        module, "head_dim") and (
        isinstance(getattr(module, "out_proj", None), linear) or isinstance(getattr(module, "o_proj", None), linear)
    ):
        return "proj"
    return None


def attention_modules(model, encoder_decoder: bool) -> dict[Site, tuple[str, object, object]]:
    """Site -> (family, attention module, module holding its output projection)."""
    names = dict(model.named_modules())
    site_of = site_namer(model, encoder_decoder)
    found: dict[Site, tuple[str, object, object]] = {}
    for name, module in names.items():
        family = _family(module)
        if family is None:
            continue
        owner = module
        if family == "bert":
            parent = names.get(name.rsplit(".", 1)[0]) if "." in name else None
            dense = getattr(getattr(parent, "output", None), "dense", None)
            if dense is None:
                continue
            owner = parent.output
        site = site_of(module)
        if site in found:
            raise UserError(f"two attention modules claim {site.set} layer {site.layer}; cannot prune this model")
        found[site] = (family, module, owner)
    return found


def _head_count(family: str, module) -> int:
    if family == "bert":
        return int(module.num_attention_heads)
    if family == "gpt2":
        return int(module.num_heads)
    return int(module.q_proj.out_features // module.head_dim)


def _head_dim(family: str, module) -> int:
    return int(module.attention_head_size if family == "bert" else module.head_dim)


def _keep_rows(param, index, dim):
    import torch

    return torch.nn.Parameter(param.detach().index_select(dim, index).clone(), requires_grad=param.requires_grad)


def _cut(layer, index, dim: int, transposed: bool = False) -> None:
    """Keep `index` along the output (dim 0) or input (dim 1) features of a Linear, or of a Conv1D
    (transposed=True: its weight is [in, out])."""
    wdim = (1 - dim) if transposed else dim
    layer.weight = _keep_rows(layer.weight, index, wdim)
    out_side = dim == 0
    if out_side and layer.bias is not None:
        layer.bias = _keep_rows(layer.bias, index, 0)
    size = int(index.numel())
    if transposed:
        if out_side:
            layer.nf = size
        else:
            layer.nx = size
    elif out_side:
        layer.out_features = size
    else:
        layer.in_features = size


def _remove(family: str, module, owner, heads: set[int]) -> None:
    """Remove the original heads `heads` (some may be gone already) from one attention module."""
    import torch

    full = getattr(module, FULL_HEADS, None) or _head_count(family, module)
    kept_before = list(getattr(module, KEPT_HEADS, None) or range(full))
    kept_after = [h for h in kept_before if h not in heads]
    if kept_after == kept_before:
        return
    if not kept_after:
        raise UserError("a layer must keep at least one head")
    d = _head_dim(family, module)
    device = (module.c_attn if family == "gpt2" else owner.dense if family == "bert" else
              (module.out_proj if hasattr(module, "out_proj") else module.o_proj)).weight.device
    local = [kept_before.index(h) for h in kept_after]
    index = torch.cat([torch.arange(p * d, (p + 1) * d, device=device) for p in local])
    if family == "bert":
        for name in ("query", "key", "value"):
            _cut(getattr(module, name), index, 0)
        _cut(owner.dense, index, 1)
        module.num_attention_heads = len(kept_after)
        module.all_head_size = len(kept_after) * d
    elif family == "gpt2":
        if getattr(module, "is_cross_attention", False):
            raise UserError("pruning GPT-2 cross-attention is not supported")
        split = module.split_size
        qkv = torch.cat([index + i * split for i in range(3)])
        _cut(module.c_attn, qkv, 0, transposed=True)
        _cut(module.c_proj, index, 1, transposed=True)
        module.num_heads = len(kept_after)
        module.split_size = len(kept_after) * d
    else:
        if module.k_proj.out_features != module.q_proj.out_features:
            raise UserError("this model shares key/value heads between query heads (grouped attention); "
                            "pruning single heads is not supported for it")
        for name in ("q_proj", "k_proj", "v_proj"):
            _cut(getattr(module, name), index, 0)
        _cut(module.out_proj if hasattr(module, "out_proj") else module.o_proj, index, 1)
        if hasattr(module, "num_heads"):
            module.num_heads = len(kept_after)
    setattr(module, KEPT_HEADS, tuple(kept_after))
    setattr(module, FULL_HEADS, full)


def prune_heads(model, remove: dict[Site, Iterable[int]], encoder_decoder: bool) -> None:
    """Remove heads in place and record the layout in model.config (merged with an earlier one)."""
    modules = attention_modules(model, encoder_decoder)
    layout = {s: {int(k): list(v) for k, v in layers.items()} for s, layers in (pruned_layout(model.config) or {}).items()}
    for site, heads in sorted(remove.items(), key=lambda kv: (kv[0].set, kv[0].layer)):
        heads = sorted({int(h) for h in heads})
        if not heads:
            continue
        if site not in modules:
            raise UserError(f"no prunable attention module at {site.set} layer {site.layer} "
                            f"(supported: BERT-like, GPT-2-like, q/k/v_proj models)")
        family, module, owner = modules[site]
        full = getattr(module, FULL_HEADS, None) or _head_count(family, module)
        bad = [h for h in heads if not 0 <= h < full]
        if bad:
            raise UserError(f"{site.set} layer {site.layer} has heads 0..{full - 1}; there is no head {bad[0]}")
        _remove(family, module, owner, set(heads))
        before = layout.setdefault(site.set, {}).get(site.layer, [])
        layout[site.set][site.layer] = sorted(set(before) | set(heads))
    setattr(model.config, PRUNED_KEY, {s: {str(k): v for k, v in sorted(layers.items())} for s, layers in layout.items()})
    counts: dict[str, list[int]] = {}
    for site in sorted(modules, key=lambda s: (s.set, s.layer)):
        family, module, _ = modules[site]
        counts.setdefault(site.set, []).append(_head_count(family, module))
    setattr(model.config, HEADS_KEY, counts)  # for readers: heads left per layer (loading uses PRUNED_KEY)


def pruned_copy(model, remove: dict[Site, Iterable[int]], encoder_decoder: bool):
    """A deep copy of `model` with the heads removed; the original is left as it was."""
    clone = copy.deepcopy(model)
    prune_heads(clone, remove, encoder_decoder)
    return clone


def pruned_layout(config) -> dict[str, dict[str, list[int]]] | None:
    """The recorded layout of a pruned model's config, None for an unpruned one; a malformed
    record is refused in one line."""
    layout = getattr(config, PRUNED_KEY, None)
    if not layout:
        return None
    ok = isinstance(layout, dict) and all(
        s in ("self", "encoder", "decoder", "cross") and isinstance(layers, dict) and all(
            isinstance(k, str) and k.isdigit() and isinstance(v, list) and all(type(h) is int and h >= 0 for h in v)
            for k, v in layers.items())
        for s, layers in layout.items())
    if not ok:
        raise UserError(f"the config's {PRUNED_KEY} is not a map of attention sets to "
                        '{"layer": [head, ...]}; the folder was not written by attn-desktop prune')
    return layout


def layout_sites(layout: dict) -> dict[Site, list[int]]:
    return {Site(s, int(layer)): list(heads) for s, layers in layout.items() for layer, heads in layers.items()}


def pruned_class(model_class: type, layout: dict, encoder_decoder: bool) -> type:
    """A subclass of `model_class` that removes `layout`'s heads as soon as it is built, so that
    `from_pretrained` finds layers of the shapes the saved weights have."""

    def __init__(self, config, *args, **kwargs):
        model_class.__init__(self, config, *args, **kwargs)
        prune_heads(self, layout_sites(layout), encoder_decoder)

    return type(model_class.__name__, (model_class,), {"__init__": __init__, "__module__": model_class.__module__})


def parameter_count(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def save_pruned(model, source_folder: Path, out: Path) -> Path:
    """Write the pruned model as a safetensors model folder with the source's tokenizer files.
    `out` must not exist or be empty; the folder appears complete or not at all."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; choose a new folder")
    if not out.parent.is_dir():
        raise UserError(f"the folder {out.parent} does not exist")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging, safe_serialization=True)
        for name in TOKENIZER_FILES:
            src = Path(source_folder) / name
            if src.is_file():
                shutil.copy2(src, staging / name)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"could not write the pruned model to {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
