"""Qt user interface. Imports nothing heavy (torch, transformers) at import time."""

from ._none_refcount import protect_none

protect_none()
