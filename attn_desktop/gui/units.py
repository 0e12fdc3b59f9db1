"""What the views show as rows and columns: words (the default) or word pieces, and the query
selection (the focus word, or several words picked in the editor). Qt-free; the arithmetic is
core.views.words (a word as a query: the mean of its pieces' rows; as a key: the sum of its pieces'
columns; a selection: the mean of all its pieces' rows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.views import words as core_words
from ..core.views.words import Units


def token_units(analysis, tokens, by_words: bool) -> Units:
    """Units of one token list of the analysis (cached on it)."""
    cache = analysis.extras.setdefault("units", {})
    key = (id(tokens), bool(by_words))
    hit = cache.get(key)
    if hit is not None and hit[0] is tokens:
        return hit[1]
    if by_words:
        text = analysis.text if tokens is analysis.tokens else (analysis.decoder_text or "")
        units = core_words.group_words(text, tokens)
    else:
        units = core_words.pieces(tokens)
    cache[key] = (tokens, units)
    return units


def axis_units(analysis, sel) -> tuple[Units, Units]:
    """(query units, key units) of the selection's attention set."""
    queries, keys = analysis.axis_tokens(sel.set_name)
    return token_units(analysis, queries, sel.words), token_units(analysis, keys, sel.words)


def query_group(analysis, sel) -> list[int]:
    """The query tokens the views aggregate: every piece of the picked words (or pieces), else of
    the focus word (or the focus piece)."""
    qu, _ = axis_units(analysis, sel)
    picked = [t for t in sel.picked if 0 <= t < qu.n_tokens]
    if picked:
        return qu.expand(picked)
    if not 0 <= sel.focus < qu.n_tokens:
        return []
    return qu.expand([sel.focus])


def unit_numbers(analysis, units: Units) -> list[str]:
    """'#12', or '#12–14' for a word of three pieces: each unit's token positions, as the status
    bar numbers them (cached on the analysis)."""
    cache = analysis.extras.setdefault("unit_numbers", {})
    hit = cache.get(id(units))
    if hit is not None and hit[0] is units:
        return hit[1]
    starts = [int(x) for x in units.starts] + [units.n_tokens]
    numbers = [f"#{a}" if b - a <= 1 else f"#{a}–{b - 1}" for a, b in zip(starts, starts[1:], strict=False)]
    cache[id(units)] = (units, numbers)
    return numbers


def token_numbers(analysis, sel, view) -> dict:
    """The heatmap's row and column numbers for a UnitMatrix (keyword arguments of set_matrix)."""
    queries = unit_numbers(analysis, axis_units(analysis, sel)[0])
    rows = [queries[int(u)] if 0 <= int(u) < len(queries) else f"#{int(u)}" for u in view.row_units]
    return {"row_numbers": rows, "col_numbers": unit_numbers(analysis, view.col_units)}


def same_axis(analysis, sel) -> bool:
    queries, keys = analysis.axis_tokens(sel.set_name)
    return queries is keys


def group_label(analysis, sel, group: list[int]) -> str:
    """“indemnify” (#12), or “Tenant”, “indemnify” (2 words) for a selection."""
    qu, _ = axis_units(analysis, sel)
    units = qu.units_of(group)
    kind = "words" if sel.words else "tokens"
    if not units:
        return "?"
    if len(units) == 1:
        u = units[0]
        toks = qu.tokens(u)  # token positions, as the status bar, tooltips and report number them
        where = f"#{toks[0]}" if len(toks) == 1 else f"#{toks[0]}–{toks[-1]}"
        return f"“{qu.labels[u]}” ({where})"
    names = [f"“{qu.labels[u]}”" for u in units[:3]]
    more = "…" if len(units) > 3 else ""
    return f"{', '.join(names)}{more} ({len(units)} {kind}, mean of their rows)"


@dataclass
class FocusRow:
    """The focus word's (or the selection's) values over the key axis."""

    units: Units  # key units
    values: np.ndarray  # [units] float32
    label: str  # who, quoted

    def per_token(self) -> np.ndarray:
        """Each key token carries its unit's value (the editor paints pieces)."""
        return self.values[self.units.of_token] if len(self.values) else self.values


def focus_row(analysis, sel, measure) -> FocusRow | None:
    """None when the measure has no row for some token of the selection."""
    group = query_group(analysis, sel)
    if not group:
        return None
    qu, ku = axis_units(analysis, sel)
    if len(group) == 1:
        row = measure.row(analysis, sel, group[0])
        if row is None:
            return None
        values = core_words.sum_columns(row, ku) if not ku.identity else np.asarray(row, np.float32)
    else:
        values = core_words.selection_row(lambda q: measure.row(analysis, sel, q), group, ku)
        if values is None:
            return None
    return FocusRow(ku, values, group_label(analysis, sel, group))


@dataclass
class UnitMatrix:
    values: np.ndarray  # [rows, cols] as the heatmap shows them
    row_first: np.ndarray  # [rows] first query token of each row
    row_units: np.ndarray  # [rows] query unit of each row
    row_labels: list[str]
    col_labels: list[str]
    col_units: Units


def _row_labels(measure, analysis, sel, rows: np.ndarray) -> list[str]:
    labels = getattr(measure, "row_labels", None)
    if labels is not None:
        return labels(analysis, sel, rows)
    queries = analysis.axis_tokens(sel.set_name)[0]
    return [queries[i].text for i in rows]


def unit_matrix(analysis, sel, measure, matrix: np.ndarray) -> UnitMatrix:
    """The measure's matrix at the level the selection asks for. Pieces: unchanged. Measures whose
    rows stand for the whole text (rows_by_query False) keep their rows; their columns are summed."""
    qu, ku = axis_units(analysis, sel)
    row_queries = np.asarray(measure.row_queries(analysis, sel), np.int64)
    if qu.identity and ku.identity:
        return UnitMatrix(matrix, row_queries, row_queries, _row_labels(measure, analysis, sel, row_queries),
                          list(ku.labels), ku)
    if not getattr(measure, "rows_by_query", True):
        return UnitMatrix(core_words.sum_columns(matrix, ku), row_queries, qu.of_token[row_queries],
                          _row_labels(measure, analysis, sel, row_queries), list(ku.labels), ku)
    values, which = core_words.unit_matrix(matrix, row_queries, qu, ku)
    return UnitMatrix(values, qu.starts[which], which, [qu.labels[u] for u in which], list(ku.labels), ku)


def focus_rows(analysis, sel, view: UnitMatrix, measure=None) -> list[int]:
    """Heatmap rows of the focus word or of the selection (every row of a measure whose rows
    stand for the whole text)."""
    if measure is not None and not getattr(measure, "rows_by_query", True):
        return list(range(len(view.row_first)))
    qu, _ = axis_units(analysis, sel)
    wanted = set(qu.units_of(query_group(analysis, sel)))
    return [r for r, u in enumerate(view.row_units) if int(u) in wanted]


def focus_cols(analysis, sel) -> list[int]:
    """Columns of the focus word or of the selection, when queries and keys are the same tokens."""
    if not same_axis(analysis, sel):
        return []
    qu, _ = axis_units(analysis, sel)
    return qu.units_of(query_group(analysis, sel))


def uniform_expected(units: Units) -> np.ndarray:
    return core_words.uniform_expected(units)
