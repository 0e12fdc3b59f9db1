"""Work around a PySide6 6.12 refcount bug on CPython < 3.12.

Qt methods that return void hand back Py_None without a new reference, and some bool results
(True in particular) lose one the same way; harmless on 3.12+, where these objects are immortal.
On 3.11 each such call lowers the refcount by one: measured on the main window, a layer/head
switch costs None about 255 references and True about 10. None starts near 5,000 and True near
600, so a few dozen repaints end in "Fatal Python error: none_dealloc" (or bool_dealloc).
Raising their refcounts once by 2**40 makes them effectively immortal, as they are on 3.12+;
an excess reference is harmless if a later PySide6 fixes the bug.
"""

from __future__ import annotations

import sys

_BOOST = 1 << 40
_done = False


def protect_singletons() -> None:
    global _done
    if _done or sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return
    import ctypes

    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _BOOST
    _done = True


