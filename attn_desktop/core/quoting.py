"""Names and texts from outside (paths, file names, member names) shown inside one-line messages.

A path may hold a newline, a terminal escape, a right-to-left override or bytes that are not
UTF-8 (surrogate-escaped by Python); shown raw, any of these splits or spoofs a message line.
"""

from __future__ import annotations

import os

MAX_SHOWN = 200


def quote(name: str | os.PathLike | bytes, limit: int = MAX_SHOWN) -> str:
    """`name` in single quotes, every character that is not printable escaped; long names are
    shortened in the middle."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "surrogateescape")
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in "'\\":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    shown = "".join(out)
    if len(shown) > limit:
        half = (limit - 1) // 2
        shown = shown[:half] + "…" + shown[-half:]
    return f"'{shown}'"


def shown(name: str | os.PathLike | bytes) -> str:
    """`name` as it is when every character is printable and unambiguous, else quote(name)."""
    text = os.fsdecode(name) if isinstance(name, bytes) else os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    if text and text.strip() == text and len(text) <= MAX_SHOWN and text.isprintable() and not any(
            c in text for c in "'\"\\") and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return quote(text)
