"""Qt user interface. Imports nothing heavy (torch, transformers) at import time."""

from ._pyside_refcount import protect_singletons

protect_singletons()
