"""Rollout and flow computed for each window of a windowed document, kept while the document is
shown: every switch of window builds a new Analysis for it, so without this a window shown again
would start with no rows. Keyed by the document's stack of window attentions (by identity) and the
window's number, so rows are never handed to another document or another window."""

from __future__ import annotations

from ..core import windows as core_windows
from .measures import MEASURES, adopt_flow, adopt_rollout, store


def window_of(analysis) -> tuple[object, int] | None:
    """(the document's stack, window number) of a windowed analysis, else None."""
    if not core_windows.is_windowed(analysis):
        return None
    return analysis.arrays["window_attentions"], core_windows.shown_window(analysis)


class WindowStores:
    def __init__(self) -> None:
        self._stack = None
        self._stores: dict[int, dict] = {}

    def remember(self, analysis) -> None:
        """Keep `analysis`'s rollout and flow for its window (its store itself: rows filed into it
        later are kept too)."""
        where = window_of(analysis)
        if where is None:  # one text shown: the document's windows (and its attention stack) go
            self._stack, self._stores = None, {}
            return
        stack, k = where
        if stack is not self._stack:
            self._stack, self._stores = stack, {}
        self._stores[k] = store(analysis)

    def restore(self, analysis, sel) -> dict | None:
        """Give a freshly built window view the rollout and flow kept for its window (the kept ones
        win over any it has), adopting those the selection shows; returns the store it now has."""
        where = window_of(analysis)
        if where is None or where[0] is not self._stack or where[1] not in self._stores:
            self.remember(analysis)
            return None
        kept, fresh = self._stores[where[1]], store(analysis)
        for kind in ("rollout", "flow"):
            kept[kind] = {**fresh.get(kind, {}), **kept.get(kind, {})}
        analysis.extras["propagation"] = kept
        adopt_rollout(analysis, MEASURES["rollout"].params(analysis, sel))
        adopt_flow(analysis, MEASURES["flow"].params(sel))
        return kept
