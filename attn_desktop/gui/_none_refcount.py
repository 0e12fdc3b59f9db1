"""Work around a PySide6 6.12 refcount bug on CPython < 3.12.

Every Qt method that returns void hands back Py_None without a new reference (harmless on 3.12+,
where None is immortal). On 3.11 each such call (QPainter.drawRect, setPen, QWidget.update, ...)
lowers None's refcount by one; it starts near 5,000, so a few hundred repaints end in
"Fatal Python error: none_dealloc". Measured here: -1 per call, for every void method tried.
Raising None's refcount once by 2**40 makes it effectively immortal, as it is on 3.12+; an
excess reference on None is harmless if a later PySide6 fixes the bug.
"""

from __future__ import annotations

import sys

_BOOST = 1 << 40
_done = False


def protect_none() -> None:
    global _done
    if _done or sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    import ctypes

    ctypes.c_ssize_t.from_address(id(None)).value += _BOOST
    _done = True
