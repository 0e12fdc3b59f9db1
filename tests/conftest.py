import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_scratch = Path(__import__("tempfile").mkdtemp(prefix="attn-desktop-tests-"))
os.environ["ATTN_DESKTOP_CACHE"] = str(_scratch / "cache")  # never the user's own cache
sys.path.insert(0, str(Path(__file__).parent))

import attn_desktop  # noqa: E402,F401  (sets offline mode before anything imports transformers)


@pytest.fixture(scope="session")
def tiny_model_paths(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models of every supported kind, saved as real model folders (built once)."""
    import tiny_models

    root = tmp_path_factory.mktemp("tiny_models")
    return {kind: tiny_models.build(kind, root / kind) for kind in tiny_models.KINDS}


@pytest.fixture(scope="session")
def demo_path() -> Path:
    from attn_desktop.core.model.demo import demo_model_path

    return demo_model_path()


@pytest.fixture(scope="session")
def loaded_models(tiny_model_paths):
    """Loaded once per session through the real loading path; do not mutate."""
    from attn_desktop.core.model.loading import load_model

    cache = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = load_model(tiny_model_paths[kind])
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def demo_model():
    from attn_desktop.core.model.loading import load_model

    return load_model("demo")
