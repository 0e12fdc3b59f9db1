"""The model library: a folder of model folders, listed without loading any of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attn_desktop.core.errors import UserError
from attn_desktop.core.model.folder import inspect_folder

LIBRARY_ENV = "ATTN_DESKTOP_MODELS"


@dataclass
class ModelEntry:
    name: str
    path: Path
    kind: str | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    num_parameters: int | None = None
    max_positions: int | None = None
    size_bytes: int | None = None
    error: str | None = None


def default_library_dir() -> Path:
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("attn-desktop", appauthor=False)) / "models"


def describe_folder(path: Path, name: str | None = None) -> ModelEntry:
    entry = ModelEntry(name=name or path.name, path=path)
    try:
        info = inspect_folder(path)
    except UserError as exc:
        entry.error = str(exc)
        return entry
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # one bad folder never breaks the listing
        lines = str(exc).strip().splitlines()
        entry.error = f"the folder cannot be read ({type(exc).__name__}: {(lines[0] if lines else '')[:200]})"
        return entry
    entry.kind, entry.num_layers, entry.num_heads = info.kind, info.num_layers, info.num_heads
    entry.num_parameters, entry.max_positions, entry.size_bytes = (
        info.num_parameters, info.max_positions, info.size_bytes,
    )
    return entry


def list_models(library_dir: str | Path | None = None, include_demo: bool = True) -> list[ModelEntry]:
    """The demo model first, then every sub-folder of the library, sorted by name."""
    entries = []
    if include_demo:
        from attn_desktop.core.model.demo import DEMO_NAME, demo_model_path

        try:
            entries.append(describe_folder(demo_model_path(), name=f"demo ({DEMO_NAME})"))
        except UserError as exc:
            entries.append(ModelEntry(name="demo", path=Path("demo"), error=str(exc)))
    folder = Path(library_dir).expanduser() if library_dir else default_library_dir()
    if folder.is_dir():
        try:
            subs = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir())
        except OSError as exc:
            entries.append(ModelEntry(name=folder.name, path=folder,
                                      error=f"the library folder cannot be listed ({exc.strerror or exc})"))
            return entries
        for sub in subs:  # is_dir() follows links without opening: a FIFO is never opened
            entries.append(describe_folder(sub))
    return entries


def human_count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
