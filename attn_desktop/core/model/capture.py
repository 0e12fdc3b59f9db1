"""The capture engine: the one place that touches a model's attention weights.

One attention implementation is registered with transformers' AttentionInterface. It runs the
model family's own eager attention (so every family's quirks, such as T5's position bias, GPT-2's
upcast or GQA's shared key/value heads, stay exactly as the authors wrote them), then, when a
CapturePlan is active for the current thread, it can change the weights (head masks, edits),
keep them in the autograd graph, and record them. When the weights were changed or must carry
gradients, the output is recomputed from them so the change reaches the rest of the network.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from attn_desktop.core.errors import Cancelled

IMPL_NAME = "attn_desktop_capture"
KEPT_HEADS = "attn_desktop_kept_heads"  # set on an attention module by core.model.prune
FULL_HEADS = "attn_desktop_full_heads"
_CROSS_PARTS = {"encoder_attn", "encdecattention", "crossattention", "cross_attn", "cross_attention"}


@dataclass(frozen=True)
class Site:
    """Where an attention call sits: its set and layer."""

    set: str
    layer: int


@dataclass
class CapturePlan:
    """What to do in one forward pass. Set it with `active(plan)`; the function stays stateless."""

    sites: Callable[[torch.nn.Module], Site]
    record: bool = True
    dtype: torch.dtype = torch.float16
    head_mask: dict[Site, torch.Tensor] = field(default_factory=dict)  # multipliers [H] or [batch, H]
    edit: Callable[[Site, torch.Tensor], torch.Tensor] | None = None
    keep_grad: bool = False
    cancel: Callable[[], bool] | None = None
    on_layer: Callable[[Site], None] | None = None
    layers: dict[str, int] = field(default_factory=dict)  # per set; lets records go into one buffer
    # long inputs (core.model.mapped): heads computed `head_chunk` at a time, each slice's weights
    # handed to sink(site, weights [batch, heads of the slice, q, k], first head) and not kept
    head_chunk: int | None = None
    sink: Callable[[Site, torch.Tensor, int], None] | None = None
    records: dict[Site, torch.Tensor] = field(default_factory=dict)
    graph_weights: dict[Site, torch.Tensor] = field(default_factory=dict)
    _buffers: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def store(self, site: Site, weights: torch.Tensor) -> None:
        """Record one layer's weights, straight into a [layers, ...] buffer when the count is known."""
        count = self.layers.get(site.set)
        if count is None or site.layer >= count:
            self.records[site] = weights.detach().to(self.dtype)
            return
        buf = self._buffers.get(site.set)
        if buf is None or buf.shape[1:] != weights.shape:
            buf = torch.empty((count, *weights.shape), dtype=self.dtype, device=weights.device)
            self._buffers[site.set] = buf
        buf[site.layer].copy_(weights.detach())
        self.records[site] = buf[site.layer]

    def stacked(self, set_name: str) -> torch.Tensor:
        """Recorded weights of one set as [layers, batch, heads, q, k]."""
        layers = sorted(s.layer for s in self.records if s.set == set_name)
        if layers != list(range(len(layers))):
            raise RuntimeError(f"captured {set_name} layers are not contiguous: {layers}")
        buf = self._buffers.get(set_name)
        if buf is not None and len(layers) == buf.shape[0]:
            return buf
        return torch.stack([self.records[Site(set_name, i)] for i in layers])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for site in self.records:
            out[site.set] = out.get(site.set, 0) + 1
        return out


_ACTIVE: contextvars.ContextVar[CapturePlan | None] = contextvars.ContextVar("attn_plan", default=None)


@contextlib.contextmanager
def active(plan: CapturePlan) -> Iterator[CapturePlan]:
    token = _ACTIVE.set(plan)
    try:
        yield plan
    finally:
        _ACTIVE.reset(token)


def site_namer(model: torch.nn.Module, encoder_decoder: bool) -> Callable[[torch.nn.Module], Site]:
    """Map an attention module to its Site from its place in the model's module tree."""
    names = {id(m): n for n, m in model.named_modules()}
    cache: dict[int, Site] = {}

    def site_of(module: torch.nn.Module) -> Site:
        key = id(module)
        if key not in cache:
            name = names.get(key)
            if name is None:
                raise RuntimeError(f"attention module {type(module).__name__} is not part of the model")
            parts = name.lower().split(".")
            if _CROSS_PARTS.intersection(parts):
                set_name = "cross"
            elif not encoder_decoder:
                set_name = "self"
            elif "decoder" in parts:
                set_name = "decoder"
            else:
                set_name = "encoder"
            layer = getattr(module, "layer_idx", None)
            if not isinstance(layer, int):
                numbers = [int(p) for p in parts if p.isdigit()]
                if not numbers:
                    raise RuntimeError(f"cannot tell the layer of attention module {name}")
                layer = numbers[0]
            cache[key] = Site(set_name, layer)
        return cache[key]

    return site_of


def _repeat_kv(value: torch.Tensor, n_heads: int) -> torch.Tensor:
    groups = n_heads // value.shape[1]
    return value if groups == 1 else value.repeat_interleave(groups, dim=1)


def _generic_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Used only when a model family's module defines no eager_attention_forward of its own."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    key = _repeat_kv(key, query.shape[1])
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if kwargs.get("position_bias") is not None:
        scores = scores + kwargs["position_bias"]
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    out = torch.matmul(weights, _repeat_kv(value, query.shape[1])).transpose(1, 2).contiguous()
    return out, weights


def _mask_shape(module, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A head mask [H] (all rows) or [B, H] (one per batch row) as [B or 1, heads here, 1, 1].
    Masks index the model's original heads; a pruned module keeps some of them (KEPT_HEADS)."""
    kept = getattr(module, KEPT_HEADS, None)
    if kept is not None:
        mask = mask[..., list(kept)]
    mask = mask.to(device=weights.device, dtype=weights.dtype)
    if mask.dim() == 1:
        return mask.view(1, -1, 1, 1)
    if mask.dim() != 2 or mask.shape[0] not in (1, weights.shape[0]):
        raise ValueError(f"head mask of shape {tuple(mask.shape)} for a batch of {weights.shape[0]}")
    return mask.view(mask.shape[0], -1, 1, 1)


def _all_heads(module, weights: torch.Tensor) -> torch.Tensor:
    """Weights of a pruned module placed at their original head indices; removed heads are zero."""
    kept = getattr(module, KEPT_HEADS, None)
    if kept is None:
        return weights
    full = weights.new_zeros((weights.shape[0], getattr(module, FULL_HEADS), *weights.shape[2:]))
    full[:, list(kept)] = weights
    return full


_EAGER_CACHE: dict[type, Callable] = {}


def eager_for(module: torch.nn.Module) -> Callable:
    cls = type(module)
    if cls not in _EAGER_CACHE:
        home = sys.modules.get(cls.__module__)
        _EAGER_CACHE[cls] = getattr(home, "eager_attention_forward", None) or _generic_eager
    return _EAGER_CACHE[cls]


def capture_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    plan = _ACTIVE.get()
    if plan is not None and plan.head_chunk is not None:
        from attn_desktop.core.model import mapped

        if mapped.chunkable(plan, module, kwargs):
            site = plan.sites(module)
            out = mapped.chunked_attention(plan, site, eager_for(module), module, query, key, value,
                                           attention_mask, scaling, dropout, kwargs)
            if plan.on_layer is not None:
                plan.on_layer(site)
            return out, None
    out, weights = eager_for(module)(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
    )
    if plan is None:
        return out, weights
    site = plan.sites(module)
    if plan.cancel is not None and plan.cancel():
        raise Cancelled()
    changed = False
    mask = plan.head_mask.get(site)
    if mask is not None:
        mask = _mask_shape(module, mask, weights)
        weights = weights * mask
        # out is [batch, query, heads, dim]: scaling it by head equals recomputing from the weights
        b, h, q = weights.shape[:3]
        if plan.edit is None and not plan.keep_grad and out.shape[:3] == (b, q, h):
            out = out * mask.transpose(1, 2).to(out.dtype)
        else:
            changed = True
    if plan.edit is not None:
        weights = plan.edit(site, weights)
        changed = True
    if plan.keep_grad and weights.requires_grad:
        weights.retain_grad()
        plan.graph_weights[site] = weights
        changed = True
    if changed:
        v = _repeat_kv(value, weights.shape[1])
        out = torch.matmul(weights.to(v.dtype), v).transpose(1, 2).contiguous()
    if plan.record:
        plan.store(site, _all_heads(module, weights))
    if plan.sink is not None:
        plan.sink(site, _all_heads(module, weights), 0)
    if plan.on_layer is not None:
        plan.on_layer(site)
    return out, weights


_registered = False


def register() -> None:
    """Register the capture implementation (idempotent). Import transformers offline first."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(IMPL_NAME, capture_attention)
    AttentionMaskInterface.register(IMPL_NAME, eager_mask)
    _registered = True


def dispatches_through_interface(model_class: type) -> bool:
    """True when the model family's code looks its attention up in AttentionInterface."""
    home = sys.modules.get(model_class.__module__)
    path = getattr(home, "__file__", None)
    if not path:
        return False
    try:
        source = open(path, encoding="utf-8").read()
    except OSError:
        return False
    return re.search(r"ALL_ATTENTION_FUNCTIONS", source) is not None
