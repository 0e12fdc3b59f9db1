"""Document token numbers of a windowed document's window tokens, for what the window says about a
token: the strip counts document tokens from 1 ("tokens 2114-2467 of 2467"); views and tooltips
number the tokens of the window shown (#183)."""

from __future__ import annotations

from ..core import windows as core_windows


def document_numbers(analysis, positions) -> list[int]:
    """The document token (counted from 1, as the strip counts) of each window token in
    `positions` that is one; special tokens have none. Empty when `analysis` is not windowed or its
    window's tokens do not line up with its document tokens."""
    if not core_windows.is_windowed(analysis):
        return []
    info = analysis.manifest["windows"]
    entry = info["windows"][core_windows.shown_window(analysis)]
    plain = [j for j, t in enumerate(analysis.tokens) if not t.special]
    if len(plain) != int(entry["token_end"]) - int(entry["token_start"]):
        return []
    at = {j: int(entry["token_start"]) + 1 + i for i, j in enumerate(plain)}
    return [at[j] for j in positions if j in at]


def document_place(analysis, positions) -> str:
    """"in window 7, document token 2296 of 2467" (or tokens a–b), or "" for one text."""
    numbers = document_numbers(analysis, positions)
    if not numbers:
        return ""
    k = core_windows.shown_window(analysis) + 1
    total = analysis.manifest["windows"]["document_tokens"]
    lo, hi = min(numbers), max(numbers)
    which = f"document token {lo}" if lo == hi else f"document tokens {lo}–{hi}"
    return f"in window {k}, {which} of {total}"
