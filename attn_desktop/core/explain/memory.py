"""Whether explanations and head tests fit in memory before they start. They keep every layer's
attention in float32 and, for gradients, what the backward pass saves of it, so at thousands of
tokens they need tens of gigabytes; such a request is refused in one line with its figures instead
of ending the model process half-way."""

from __future__ import annotations

import contextlib
import os

from attn_desktop.core.errors import UserError

# float32 copies of one attention matrix alive at the peak of a gradient step: the captured stack,
# the probabilities the backward pass keeps, the pre-softmax scores and the gradient being formed
COPIES = 4


def needed_bytes(loaded, n: int, n_decoder: int = 0) -> int:
    """About the peak memory of explaining or testing the heads of `n` (+ `n_decoder`) tokens."""
    layers = loaded.expected_layers()
    cells = layers.get("self", 0) * n * n + layers.get("encoder", 0) * n * n
    cells += layers.get("decoder", 0) * n_decoder * n_decoder + layers.get("cross", 0) * n_decoder * n
    return COPIES * 4 * loaded.num_heads * cells


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else free physical pages; None when unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(loaded, n: int, n_decoder: int = 0, windows_hint: str = "--windows") -> None:
    need, have = needed_bytes(loaded, n, n_decoder), available_bytes()
    if have is not None and need > have:
        raise UserError(
            f"explanations and head tests of {n} tokens need about {need / 2**30:.1f} GB of memory "
            f"(every layer's attention in float32, kept for the gradients) and {have / 2**30:.1f} GB is "
            f"available: analyse the text in windows ({windows_hint}) or shorten it")
