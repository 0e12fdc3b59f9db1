"""Which document an analysis on screen belongs to, by identity: a windowed document's windows are
separate Analysis objects that share the one stack of window attentions, so two of them are the
same document; anything else (a session opened, a new analysis) is another one, even for the same
text. Long runs keep the analysis they started for and drop their result when it is not shown."""

from __future__ import annotations


def same_document(a, b) -> bool:
    if a is None or b is None:
        return False
    if a is b:
        return True
    stack_a, stack_b = a.arrays.get("window_attentions"), b.arrays.get("window_attentions")
    return stack_a is not None and stack_a is stack_b
