"""The model library as the model panel lists it: core.library when present, else the demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    name: str
    path: Path
    kind: str | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    num_parameters: int | None = None
    max_positions: int | None = None
    size_bytes: int | None = None
    error: str | None = None


def list_library_entries() -> tuple[str, list]:
    try:
        from ..core import library
    except ImportError:
        return "", _demo_only()
    folder = library.default_library_dir()
    return str(folder), list(library.list_models(folder))


def _demo_only() -> list[Entry]:
    from ..core.demo import demo_model_path
    from ..core.errors import UserError
    from ..core.model_folder import inspect_folder

    try:
        path = demo_model_path()
    except UserError as exc:
        return [Entry(name="demo", path=Path("demo"), error=str(exc))]
    try:
        info = inspect_folder(path)
    except UserError as exc:
        return [Entry(name="demo: all-MiniLM-L6-v2", path=path, error=str(exc))]
    return [Entry(name="demo: all-MiniLM-L6-v2", path=path, kind=info.kind, num_layers=info.num_layers,
                  num_heads=info.num_heads, num_parameters=info.num_parameters,
                  max_positions=info.max_positions, size_bytes=info.size_bytes)]
