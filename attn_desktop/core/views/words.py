"""Words from word pieces, and attention at the level of words.

A word is a run of consecutive tokens whose spans touch inside one run of word characters of
the text (letters, digits, combining marks, with an apostrophe or hyphen between two of them:
"indemnify" = ind ##em ##ni ##fy, "party's" = party ' s); tokens whose spans overlap (several
byte-level pieces of one emoji) also share a unit. Tokens without a span (specials, [CLS],
[SEP]) stay single units.

Word-level attention follows Clark et al. 2019 ("What does BERT look at?"): a word as a query is
the mean of its pieces' rows, a word as a key is the sum of its pieces' columns. Each piece row
sums to 1, so each word row still does. A selection of several words (or pieces) is one query
unit the same way: the mean of the rows of all its pieces, columns summed per key unit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..analysis import Token

JOINERS = frozenset("'’-‐")


def is_word_char(ch: str) -> bool:
    return ch == "_" or unicodedata.category(ch)[0] in "LMN"


def word_runs(text: str) -> np.ndarray:
    """[len(text)] int: the index of the word run each character is in, -1 outside any."""
    run = np.full(len(text), -1, dtype=np.int64)
    current = -1
    inside = False
    for k, ch in enumerate(text):
        if is_word_char(ch):
            if not inside:
                current += 1
                inside = True
            run[k] = current
        elif (inside and ch in JOINERS and k + 1 < len(text) and is_word_char(text[k + 1])):
            run[k] = current  # "party's", "non-compete": the joiner stays inside the word
        else:
            inside = False
    return run


@dataclass(frozen=True)
class Units:
    """A partition of a token axis into consecutive runs (words, or one token each)."""

    starts: np.ndarray  # [U] int64, index of each unit's first token; starts[0] == 0
    n_tokens: int
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(np.append(self.starts, self.n_tokens))

    @property
    def of_token(self) -> np.ndarray:
        """[n_tokens] unit index of each token."""
        return np.repeat(np.arange(len(self.starts)), self.sizes)

    def tokens(self, unit: int) -> list[int]:
        end = int(self.starts[unit + 1]) if unit + 1 < len(self.starts) else self.n_tokens
        return list(range(int(self.starts[unit]), end))

    def units_of(self, tokens: Iterable[int]) -> list[int]:
        """Sorted distinct units of the given tokens."""
        of = self.of_token
        return sorted({int(of[t]) for t in tokens if 0 <= t < self.n_tokens})

    def expand(self, tokens: Iterable[int]) -> list[int]:
        """Every token of every unit the given tokens belong to, sorted."""
        return [t for u in self.units_of(tokens) for t in self.tokens(u)]

    @property
    def identity(self) -> bool:
        return len(self.starts) == self.n_tokens


def pieces(tokens: Sequence[Token]) -> Units:
    """One unit per token."""
    return Units(np.arange(len(tokens), dtype=np.int64), len(tokens), tuple(t.text for t in tokens))


def _spanned(t: Token, n: int) -> bool:
    return not t.special and t.start < t.end <= n


def group_words(text: str, tokens: Sequence[Token]) -> Units:
    """Words from the tokens' character spans into `text` (see the module doc)."""
    runs = word_runs(text)
    n = len(text)
    starts: list[int] = []
    for j, t in enumerate(tokens):
        if j > 0 and _joins(tokens[j - 1], t, runs, n):
            continue
        starts.append(j)
    starts_arr = np.array(starts, dtype=np.int64)
    labels = []
    for u, first in enumerate(starts):
        last = (starts[u + 1] if u + 1 < len(starts) else len(tokens)) - 1
        a, b = tokens[first], tokens[last]
        labels.append(text[a.start:max(b.end, a.end)] if last > first else a.text)
    return Units(starts_arr, len(tokens), tuple(labels))


def _joins(prev: Token, t: Token, runs: np.ndarray, n: int) -> bool:
    if not (_spanned(prev, n) and _spanned(t, n)):
        return False
    if t.start < prev.end and t.end > prev.start:
        return True  # overlapping spans: pieces of one character (bytes of an emoji)
    if t.start != prev.end:
        return False
    left, right = runs[prev.end - 1], runs[t.start]
    return bool(left >= 0 and left == right)


# -- aggregation -------------------------------------------------------------------------------

_HALF_TO_SINGLE: np.ndarray | None = None


def as_float32(values) -> np.ndarray:
    """float32 values; float16 through a table of all 65536 bit patterns (exactly numpy's cast,
    several times faster than astype on CPUs whose numpy has no vector half-precision cast)."""
    values = np.asarray(values)
    if values.dtype != np.float16:
        return values.astype(np.float32, copy=False)
    return _half_table().take(np.ascontiguousarray(values).view(np.uint16))


def _half_table() -> np.ndarray:
    """[65536] float32: the value of each float16 bit pattern."""
    global _HALF_TO_SINGLE
    if _HALF_TO_SINGLE is None:
        _HALF_TO_SINGLE = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    return _HALF_TO_SINGLE


def sum_columns(values: np.ndarray, units: Units) -> np.ndarray:
    """[..., n] -> [..., U]: each key unit gets the sum of its pieces' columns (float32)."""
    values = np.asarray(values)
    if values.shape[-1] != units.n_tokens:
        raise ValueError(f"{values.shape[-1]} columns for {units.n_tokens} tokens")
    if units.identity:
        return values.astype(np.float32, copy=False)
    if units.n_tokens == 0:
        return np.zeros(values.shape[:-1] + (0,), np.float32)
    return np.add.reduceat(values, units.starts, axis=-1, dtype=np.float64).astype(np.float32)


def mean_rows(matrix: np.ndarray, row_queries: np.ndarray, units: Units) -> tuple[np.ndarray, np.ndarray]:
    """Rows of query units: the mean of their pieces' rows. `row_queries[r]` is the query token of
    `matrix[r]`; a unit gets a row only when every one of its pieces has one.
    Returns ([U', n] float32, [U'] the unit of each row, ascending)."""
    matrix = np.asarray(matrix)
    row_queries = np.asarray(row_queries, dtype=np.int64)
    if units.identity:
        order = np.argsort(row_queries, kind="stable")
        return matrix[order].astype(np.float32, copy=False), row_queries[order]
    where = np.full(units.n_tokens, -1, dtype=np.int64)
    where[row_queries] = np.arange(len(row_queries))
    sizes = units.sizes
    of = units.of_token
    present = np.bincount(of[row_queries], minlength=len(units)) if len(row_queries) else np.zeros(len(units), int)
    complete = np.flatnonzero(present == sizes)
    if len(complete) == len(units) and np.array_equal(row_queries, np.arange(units.n_tokens)):
        out = np.add.reduceat(matrix, units.starts, axis=0, dtype=np.float64) / sizes[:, None]
        return out.astype(np.float32), complete
    out = np.empty((len(complete), matrix.shape[-1]), np.float32)
    for k, u in enumerate(complete):
        out[k] = matrix[where[units.tokens(int(u))]].mean(axis=0, dtype=np.float64)
    return out, complete


def unit_matrix(matrix: np.ndarray, row_queries: np.ndarray, row_units: Units,
                col_units: Units) -> tuple[np.ndarray, np.ndarray]:
    """Word-level matrix: rows = mean over a query unit's pieces, columns = sum over a key unit's
    pieces. Returns ([U_rows', U_cols] float32, the query unit of each row)."""
    row_queries = np.asarray(row_queries, dtype=np.int64)
    if (not (row_units.identity and col_units.identity) and matrix.shape[0] == row_units.n_tokens
            and np.array_equal(row_queries, np.arange(row_units.n_tokens))):
        return _every_row(matrix, row_units, col_units), np.arange(len(row_units))
    rows, which = mean_rows(matrix, row_queries, row_units)
    return sum_columns(rows, col_units), which


ROW_BLOCK = 64  # rows read, converted and reduced together (a block stays in the CPU cache)


def _column_plan(units: Units) -> tuple[np.ndarray, list[int], np.ndarray]:
    """How to gather columns so that every sum over a unit's pieces is a plain slice addition.
    Units are taken by size, largest first; `index` lists their first pieces, then the second
    pieces of the `counts[1]` units with more than one, and so on (`counts[k]`: units with more
    than k pieces). `inverse` puts the units back in their order."""
    sizes = units.sizes
    order = np.argsort(-sizes, kind="stable")
    firsts = units.starts[order]
    ordered = sizes[order]
    counts = [int(np.count_nonzero(ordered > k)) for k in range(int(sizes.max(initial=1)))]
    index = np.concatenate([firsts[:c] + k for k, c in enumerate(counts)])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return index, counts, inverse


def _every_row(matrix, row_units: Units, col_units: Units) -> np.ndarray:
    """unit_matrix over every row of `matrix` ([n, n], float16 possibly memory-mapped, or float).
    Block by block of whole query words: float16 bit patterns are gathered by column (the order of
    _column_plan) and converted through the table of as_float32, each cell once; a key word's
    pieces are added in piece order, then a query word's rows, then divided by its number of pieces:
    the same float32 operations, in the same order, as reduceat along each axis."""
    half = np.asarray(matrix[:0]).dtype == np.float16
    table = _half_table() if half else None
    index, counts, inverse = _column_plan(col_units)
    n_cols = counts[0]
    starts, sizes = row_units.starts, row_units.sizes
    out = np.empty((len(row_units), len(col_units)), np.float32)
    u0, n_units = 0, len(row_units)
    while u0 < n_units:
        u1 = max(int(np.searchsorted(starts, starts[u0] + ROW_BLOCK, "left")), u0 + 1)
        r0 = int(starts[u0])
        r1 = int(starts[u1]) if u1 < n_units else row_units.n_tokens
        block = np.asarray(matrix[r0:r1])
        if half:
            gathered = table.take(np.ascontiguousarray(block).view(np.uint16).take(index, axis=1))
        else:
            gathered = block.take(index, axis=1).astype(np.float32, copy=False)
        cols, at = gathered[:, :n_cols], n_cols
        for c in counts[1:]:
            cols[:, :c] += gathered[:, at:at + c]
            at += c
        local, block_sizes = starts[u0:u1] - r0, sizes[u0:u1]
        rows = cols.take(local, axis=0)
        for k in range(1, int(block_sizes.max())):
            longer = np.flatnonzero(block_sizes > k)
            rows[longer] += cols[local[longer] + k]
        multi = np.flatnonzero(block_sizes > 1)
        if len(multi):
            rows[multi] = (rows[multi] / block_sizes[multi, None]).astype(np.float32)
        np.take(rows, inverse, axis=1, out=out[u0:u1])
        u0 = u1
    return out


def selection_row(row_of, query_tokens: Sequence[int], col_units: Units) -> np.ndarray | None:
    """The row of a query selection: the mean of the rows of `query_tokens` (one query unit),
    columns summed per key unit. `row_of(q)` gives token q's row over the key tokens, or None;
    the selection has no row unless every query token has one."""
    if not query_tokens:
        return None
    total = None
    for q in query_tokens:
        row = row_of(int(q))
        if row is None:
            return None
        row = np.asarray(row, dtype=np.float64)
        total = row.copy() if total is None else total + row
    return sum_columns(total / len(query_tokens), col_units)


def uniform_expected(col_units: Units) -> np.ndarray:
    """[U] the value each key unit gets from a query that attends uniformly to every token:
    its number of pieces over the number of tokens (1/n for single tokens)."""
    n = max(col_units.n_tokens, 1)
    return (col_units.sizes / n).astype(np.float32)


def tokens_in_span(tokens: Sequence[Token], start: int, end: int) -> list[int]:
    """Tokens with a span overlapping the characters [start, end)."""
    return [i for i, t in enumerate(tokens) if t.end > t.start and t.start < end and t.end > start]
