"""Offline mode for the Hugging Face libraries, which read it once, when they are imported."""

from __future__ import annotations

import os
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def ensure_offline() -> None:
    """Set offline mode; it must run before transformers or huggingface_hub is imported."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None and not getattr(hub, "HF_HUB_OFFLINE", False):
        # Imported before us by someone else: make the constant agree rather than go online.
        hub.HF_HUB_OFFLINE = True


def import_transformers():
    """Import transformers with offline mode already in force and return the module."""
    ensure_offline()
    import transformers
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        raise RuntimeError("huggingface_hub is not in offline mode; refusing to continue")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers
