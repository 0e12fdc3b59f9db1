"""Qt user interface. Imports nothing heavy (torch, transformers) at import time."""
