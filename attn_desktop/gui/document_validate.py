"""Validate on a document read in windows (core.explain.document): the document's vectors travel
with whichever window the views show, and the panel says what the target was computed from.

Qt-free: the panel (validate_panel.py) calls these."""

from __future__ import annotations

from ..core import windows as core_windows
from ..core.explain.document import ARRAY_PREFIX, INDEX_ARRAY, is_document


def document_arrays(analysis) -> dict:
    """The document-level arrays of a windowed analysis with document results (the vectors over the
    document's tokens and the window -> document map), which every window's view is made from."""
    if analysis is None or not is_document(analysis.manifest.get("explain")):
        return {}
    return {k: v for k, v in analysis.arrays.items() if k.startswith(ARRAY_PREFIX) or k == INDEX_ARRAY}


def shown_window_of(analysis) -> int | None:
    return core_windows.shown_window(analysis) if core_windows.is_windowed(analysis) else None


def same_window(analysis, k: int | None):
    """`analysis` showing window k (the window on screen when the run started), when it is windowed
    and has that window; else as it is."""
    if k is None or not core_windows.is_windowed(analysis) or core_windows.shown_window(analysis) == k:
        return analysis
    if not 0 <= k < core_windows.window_count(analysis):
        return analysis
    return core_windows.window_view(analysis, k)


def document_lines(section: dict) -> list[str]:
    """What a document-level run computed, for the panel's summary (empty for one text)."""
    doc = section.get("document")
    if not isinstance(doc, dict):
        return []
    return [
        f"Document target over {doc.get('windows')} windows ({doc.get('document_tokens')} tokens): "
        f"{doc.get('target_rule')}",
        "Each token's value is for the whole document (summed over the windows that hold it); the text is "
        "shaded over the whole document on one scale, the heatmap shows the window on screen.",
        "Attention does not cross windows: the attention compared is each window's, averaged over the "
        "windows that hold a token.",
    ]
