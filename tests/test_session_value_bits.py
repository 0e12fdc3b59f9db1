"""The fast value check of session arrays (core.store.schema: one unsigned maximum over the IEEE bit
patterns of probabilities) against the rule written plainly: every value finite and within
[0, 1 + slack]. Every float16 bit pattern, and the edges of float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.store import schema
from attn_desktop.core.store.schema import PROBABILITY_SLACK, Dims


def allowed(value) -> bool:
    return bool(np.isfinite(value) and 0 <= value <= value.dtype.type(1 + PROBABILITY_SLACK))


def refused(values: np.ndarray) -> bool:
    try:
        schema.check_array_values("s.attn", "attentions", values, Dims(n=2, m=None, L=1, Ld=None, H=1))
    except UserError:
        return True
    return False


def test_every_float16_pattern():
    patterns = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    fast = [schema._plainly_fine(patterns[i:i + 1], "probability") for i in range(patterns.size)]
    for value, quick in zip(patterns, fast, strict=True):
        if quick:  # "plainly fine" must never pass a value the rule refuses
            assert allowed(value), value
        elif allowed(value):  # what it sends for a closer look must be only -0.0
            assert value == 0 and np.signbit(value), value
    assert sum(fast) == sum(allowed(v) for v in patterns) - 1  # all allowed but -0.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_edges_in_whole_arrays(dtype):
    info = np.finfo(dtype)
    limit = dtype(1 + PROBABILITY_SLACK)
    edges = [0.0, -0.0, info.smallest_subnormal, 0.5, 1.0, limit, np.nextafter(limit, dtype(2)),
             -info.smallest_subnormal, -1.0, 2.0, np.inf, -np.inf, np.nan, info.max]
    fine = np.full(64, 0.25, dtype)
    assert not refused(fine)
    for edge in edges:
        values = fine.copy()
        values[37] = edge
        assert refused(values) == (not allowed(values[37])), (dtype, edge)
    for bits in (0x7FF, 0x7FFF, 0x8000, 0xFFFF):  # NaN payloads and sign patterns made of bits
        values = fine.copy()
        view = values.view(schema._UINT_OF[values.itemsize])
        view[5] = bits << (8 * values.itemsize - 16)
        assert refused(values) == (not allowed(values[5])), (dtype, hex(bits))
