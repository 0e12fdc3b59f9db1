"""Attention of long inputs (4096 positions and more) kept on disk, not in memory.

`capture(loaded, ids, folder)` runs the model once with the capture plan set to compute each
layer's attention a few heads at a time (the model family's own eager attention, on head slices of
its queries, keys and values) and to write every slice as float16 straight into a memory-mapped
`.npy` file [L, H, n, n] in `folder`. One layer's transient memory is then that of `head_chunk`
heads (scores and weights of [chunk, n, n] float32), never [H, n, n], and the whole stack is never
in memory. `rollout(attentions, ...)` computes the cumulative rollout layer by layer from such a
file into another (float16 [L - start, n, n]): one fused [n, n] float32 layer and the running
product at a time, never a float32 [L, n, n] stack.

Both files are ordinary numpy arrays (np.memmap) to the rest of the program: a session saves them
in chunks (numpy's buffered writer) and checks them in slices.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attn_desktop.core.errors import Cancelled, UserError

DEFAULT_HEAD_CHUNK = 1
# keyword arguments that carry one value per head: a head slice would need its own slice of them
_PER_HEAD_KWARGS = ("position_bias", "alibi", "sinks", "s_aux", "head_mask")


# The window's rule: a text's attention goes to disk when its float16 stack [L, H, n, n] would take
# this much or more (the size from which sessions map stored arrays, core.store.archive.MAP_FROM);
# ATTN_DESKTOP_ON_DISK_FROM (bytes) overrides it
ON_DISK_FROM = 256 << 20
STORAGE = "on disk: float16 [L, H, n, n] file written a head at a time, views' arrays made during capture"


def on_disk_from() -> int:
    """ON_DISK_FROM, or the bytes the environment variable ATTN_DESKTOP_ON_DISK_FROM names (a
    machine with little memory may send smaller texts to disk)."""
    value = os.environ.get("ATTN_DESKTOP_ON_DISK_FROM", "").strip()
    return int(value) if value.isdigit() else ON_DISK_FROM


def on_disk(loaded, n: int, from_bytes: int | None = None) -> bool:
    """Whether the attention of `n` tokens goes to disk under the window's rule: the model runs
    through transformers' attention interface, is not an encoder-decoder, and the float16 stack
    would take `from_bytes` (default ON_DISK_FROM) or more."""
    from attn_desktop.core.model.loading import CAPTURE_EAGER

    from_bytes = on_disk_from() if from_bytes is None else from_bytes
    if loaded.is_encoder_decoder or loaded.capture_mode == CAPTURE_EAGER:
        return False
    layers = loaded.expected_layers().get("self", 0)
    return layers * loaded.num_heads * n * n * 2 >= from_bytes


def chunkable(plan, module, kwargs: dict) -> bool:
    """Whether this call may run a few heads at a time: nothing changes or keeps the weights."""
    from attn_desktop.core.model.capture import KEPT_HEADS

    return (plan.head_chunk is not None and plan.sink is not None and not plan.head_mask
            and plan.edit is None and not plan.keep_grad and getattr(module, KEPT_HEADS, None) is None
            and not any(kwargs.get(k) is not None for k in _PER_HEAD_KWARGS))


def chunked_attention(plan, site, eager, module, query, key, value, attention_mask, scaling, dropout, kwargs):
    """The family's eager attention over slices of heads; each slice's weights go to plan.sink."""
    import torch

    heads, kv_heads = query.shape[1], key.shape[1]
    group = heads // kv_heads
    step = max(group, plan.head_chunk // group * group)
    outs = []
    for h0 in range(0, heads, step):
        if plan.cancel is not None and plan.cancel():
            raise Cancelled()
        h1 = min(heads, h0 + step)
        out, weights = eager(module, query[:, h0:h1], key[:, h0 // group:h1 // group],
                             value[:, h0 // group:h1 // group], attention_mask, scaling=scaling,
                             dropout=dropout, **kwargs)
        plan.sink(site, weights, h0)
        del weights
        outs.append(out)  # [batch, query, heads of the slice, dim]
    return torch.cat(outs, dim=2)


class NpyFile:
    """A float16 `.npy` file of a given shape, written block by block with pwrite (no mapping, so the
    pages written are page cache, not this process's memory) and read back one [n, n] at a time."""

    def __init__(self, path: Path, shape: tuple[int, ...], create: bool = True) -> None:
        self.path, self.shape = Path(path), tuple(shape)
        if create:
            made = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float16, shape=self.shape)
            del made  # the header and a file of the full size (sparse until written)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape_read, fortran, dtype = read_header(fh)
            if shape_read != self.shape or fortran or dtype != np.float16:
                raise ValueError(f"{self.path.name} holds {shape_read} {dtype}, not {self.shape} float16")
            self.offset = fh.tell()

    def write(self, index: tuple[int, ...], block: np.ndarray) -> None:
        """Write `block` (C order, float16) at the leading index `index`."""
        start = int(np.ravel_multi_index(tuple(index) + (0,) * (len(self.shape) - len(index)), self.shape))
        data = np.ascontiguousarray(block, dtype=np.float16)
        with open(self.path, "r+b") as fh:
            os.pwrite(fh.fileno(), memoryview(data).cast("B"), self.offset + 2 * start)

    def read(self, index: tuple[int, ...]) -> np.ndarray:
        """The float16 block at a leading index (a private copy, freed with it)."""
        count = int(np.prod(self.shape[len(index):]))
        start = int(np.ravel_multi_index(tuple(index) + (0,) * (len(self.shape) - len(index)), self.shape))
        out = np.fromfile(self.path, dtype=np.float16, count=count, offset=self.offset + 2 * start)
        return out.reshape(self.shape[len(index):])

    def mapped(self) -> np.memmap:
        """The whole array, read-only and mapped: pages are read when touched."""
        return np.load(self.path, mmap_mode="r")


THUMB = 48  # thumbnails are at most THUMB x THUMB cells, as gui.measures.THUMB
VIEW_ARRAYS = ("head_mean", "head_thumbnails", "head_row_entropy", "head_top_position", "head_top_share")


class HeadViews:
    """What the window's views need from every head, computed while the head's weights are in the
    model process's memory anyway, so that neither the window nor a reopened session reads the
    stack for them: each layer's mean over heads (float16 file [L, n, n]); per head the mean
    normalised row entropy, the key with the largest mean share and that share (as
    core.propagate.heads.head_diagnostics computes them); max-pooled uint8 thumbnails (as
    gui.measures.thumbnails). All from the float16 values that are stored."""

    def __init__(self, folder: Path, layers: int, heads: int, n: int) -> None:
        self.heads, self.n = heads, n
        self.mean_file = NpyFile(folder / "head_mean.npy", (layers, n, n))
        self.sums: dict[int, object] = {}  # layer -> float32 [n, n] sum of the heads seen so far
        self.seen = np.zeros((layers, heads), dtype=bool)
        self.entropy = np.zeros((layers, heads))
        self.top_position = np.zeros((layers, heads), dtype=np.int64)
        self.top_share = np.zeros((layers, heads))
        step = -(-n // THUMB) if n > THUMB else 1
        self.step, side = step, -(-n // step)
        self.thumbs = np.zeros((layers, heads, side, side), dtype=np.uint8)
        self.causal: bool | None = None

    def add(self, layer: int, h0: int, weights16) -> None:
        """weights16: torch float16 [chunk, n, n], heads h0.. of `layer`."""
        import torch
        import torch.nn.functional as F

        w = weights16.float()
        n, chunk = self.n, w.shape[0]
        if self.causal is None:
            self.causal = n >= 2 and bool(torch.triu(w[0], 1).abs().max() <= 1e-6)
        first = 1 if self.causal else 0  # rows that reach a single key say nothing about the head
        rows = n - first
        hs = slice(h0, h0 + chunk)
        if rows > 0:
            sizes = (torch.arange(first + 1, n + 1, dtype=torch.float64) if self.causal
                     else torch.full((rows,), float(n), dtype=torch.float64))
            # float32 sums (a float64 sum over [n, n] costs as much again; 4096 terms lose ~1e-6)
            ent = torch.special.entr(w[:, first:]).sum(-1).double() / torch.log(sizes)
            self.entropy[layer, hs] = ent.mean(-1).clamp(0.0, 1.0).numpy()
            columns = w[:, first:].sum(1).double() / rows
            share, position = columns.max(-1)
            self.top_share[layer, hs] = share.numpy()
            self.top_position[layer, hs] = position.numpy()
        else:
            self.entropy[layer, hs] = np.nan
        pooled = F.max_pool2d(w[None], self.step, self.step, ceil_mode=True)[0] if self.step > 1 else w
        peak = pooled.amax(dim=(-2, -1), keepdim=True)
        peak[peak <= 0] = 1.0
        self.thumbs[layer, hs] = torch.round(pooled / peak * 255).to(torch.uint8).numpy()
        if layer in self.sums:
            self.sums[layer].add_(w.sum(0) if chunk > 1 else w[0])
        else:
            self.sums[layer] = w.sum(0) if chunk > 1 else w[0].clone()
        self.seen[layer, hs] = True
        if self.seen[layer].all():
            mean = self.sums.pop(layer) / float(self.heads)
            self.mean_file.write((layer,), mean.to(torch.float16).numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {"head_mean": self.mean_file.mapped(), "head_thumbnails": self.thumbs,
                "head_row_entropy": self.entropy, "head_top_position": self.top_position,
                "head_top_share": self.top_share}


def capture(loaded, ids: list[int], folder: str | Path, *, head_chunk: int = DEFAULT_HEAD_CHUNK,
            progress: Callable[[float, str], None] | None = None,
            cancel: Callable[[], bool] | None = None, with_views: bool = True) -> dict[str, np.ndarray]:
    """{'attentions': float16 memmap [L, H, n, n]} for one sequence, written layer by layer, and
    (`with_views`) the arrays of HeadViews, VIEW_ARRAYS."""
    import torch

    from attn_desktop.core.model import capture as cap
    from attn_desktop.core.model.loading import CAPTURE_EAGER

    if loaded.is_encoder_decoder:
        raise UserError("memory-mapped capture is for encoders and decoder-only models")
    if loaded.capture_mode == CAPTURE_EAGER:
        raise UserError(f"{loaded.name}: memory-mapped capture needs a model family that dispatches through "
                        "transformers' attention interface")
    if head_chunk < 1:
        raise UserError("the head chunk must be at least 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = loaded.expected_layers()["self"]
    n = len(ids)
    store = NpyFile(folder / "attentions.npy", (layers, loaded.num_heads, n, n))
    written = np.zeros((layers, loaded.num_heads), dtype=bool)
    report = progress or (lambda f, m: None)

    views = HeadViews(folder, layers, loaded.num_heads, n) if with_views else None

    def sink(site, weights, h0: int) -> None:
        w16 = weights[0].detach().to(torch.float16).cpu()
        block = w16.numpy()
        store.write((site.layer, h0), block)
        written[site.layer, h0:h0 + block.shape[0]] = True
        if views is not None:
            views.add(site.layer, h0, w16)

    def on_layer(site) -> None:
        report(0.15 + 0.8 * (site.layer + 1) / layers, f"layer {site.layer + 1}")

    plan = cap.CapturePlan(sites=loaded.site_of, record=False, cancel=cancel, on_layer=on_layer,
                           head_chunk=head_chunk, sink=sink)
    inputs = {"input_ids": torch.tensor([list(ids)], dtype=torch.long, device=loaded.device)}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if loaded.kind == "causal-lm":
        inputs["use_cache"] = False
    with torch.no_grad(), cap.active(plan):
        loaded.model(**inputs)
    if not written.all():
        missing = np.argwhere(~written)[0]
        raise RuntimeError(f"memory-mapped capture missed layer {missing[0]} head {missing[1]}")
    return {"attentions": store.mapped(), **(views.arrays() if views is not None else {})}


def _head(att, layer: int, head: int) -> np.ndarray:
    from attn_desktop.core.views.mapped_arrays import resident_copy

    return resident_copy(att[layer, head])  # a mapping's pages are handed back after the copy


def fused_layer(att: np.ndarray, layer: int, fusion: str | int = "mean") -> np.ndarray:
    """One layer's heads fused into [n, n] float32, reading one head at a time."""
    heads = att.shape[1]
    if isinstance(fusion, (int, np.integer)) and not isinstance(fusion, bool):
        return _head(att, layer, int(fusion)).astype(np.float32)
    out = _head(att, layer, 0).astype(np.float32)
    for h in range(1, heads):
        head = _head(att, layer, h).astype(np.float32)
        if fusion == "mean":
            out += head
        elif fusion == "max":
            np.maximum(out, head, out=out)
        elif fusion == "min":
            np.minimum(out, head, out=out)
        else:
            raise ValueError(f"unknown fusion {fusion!r}")
    if fusion == "mean":
        out /= np.float32(heads)
    return out


def rollout(att: np.ndarray, path: str | Path, alpha: float = 0.5, fusion: str | int = "mean",
            start_layer: int = 0, cancel: Callable[[], bool] | None = None) -> tuple[np.memmap, dict]:
    """Cumulative rollout after each layer from `start_layer`, float16 [L - start, n, n] in `path`,
    computed one layer at a time; with the manifest entry core.propagate.propagation writes."""
    started = time.perf_counter()
    layers, n = att.shape[0], att.shape[-1]
    out = NpyFile(Path(path), (layers - start_layer, n, n))
    running = None
    diag = np.arange(n)
    for k, layer in enumerate(range(start_layer, layers)):
        if cancel is not None and cancel():
            raise Cancelled()
        hat = fused_layer(att, layer, fusion)
        hat *= np.float32(alpha)
        hat[diag, diag] += np.float32(1.0 - alpha)
        sums = hat.sum(axis=-1, keepdims=True)
        np.divide(hat, sums, out=hat, where=sums > 0)
        running = hat if running is None else hat @ running
        del hat
        out.write((k,), running)
    entry = {"alpha": float(alpha), "head_fusion": fusion, "start_layer": int(start_layer),
             "arrays": ["rollout"], "seconds": round(time.perf_counter() - started, 6),
             "storage": "float16, computed one layer at a time"}
    return out.mapped(), entry
