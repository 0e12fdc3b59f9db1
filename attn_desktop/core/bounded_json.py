"""JSON from untrusted files, parsed only after its size, nesting depth and number of containers
are known to be sane: a manifest nested 100 000 deep or a header of millions of objects is refused
in one line instead of raising RecursionError or taking gigabytes. NaN and Infinity are refused unless asked for."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from attn_desktop.core.errors import UserError

MAX_DEPTH = 64
MAX_CONTAINERS = 2_000_000
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_CHUNK = 1 << 20


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def structure(data: bytes) -> tuple[int, int]:
    """(deepest nesting, number of objects and arrays) of JSON text, without parsing it."""
    bare = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    depth = deepest = containers = 0
    for at in range(0, len(bare), _CHUNK):
        chunk = bare[at:at + _CHUNK]
        opens = (chunk == ord("[")) | (chunk == ord("{"))
        closes = (chunk == ord("]")) | (chunk == ord("}"))
        if not opens.any() and not closes.any():
            continue
        levels = np.cumsum(opens.astype(np.int64) - closes, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
        containers += int(opens.sum())
    return deepest, containers


def loads(data: bytes, what: str, *, max_bytes: int, max_depth: int = MAX_DEPTH,
          max_containers: int = MAX_CONTAINERS, allow_nan: bool = False) -> Any:
    """Parse UTF-8 JSON bytes, or raise UserError naming `what` and the reason. With allow_nan,
    NaN and Infinity are read as Python floats (the caller checks finiteness where it matters)."""
    if len(data) > max_bytes:
        raise UserError(f"{what} is larger than {max_bytes / 1e6:.0f} MB")
    deepest, containers = structure(data)
    if deepest > max_depth:
        raise UserError(f"{what} is nested {deepest} levels deep (at most {max_depth} are read)")
    if containers > max_containers:
        raise UserError(f"{what} holds {containers} objects and arrays (at most {max_containers} are read)")
    try:
        text = data.decode("utf-8")
        return json.loads(text) if allow_nan else json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} is not UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{what} is not valid JSON ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]
