"""Persistent settings (QSettings), and where the bundled resources live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QSettings

ORG = "attn-desktop"
APP = "attn-desktop"
MAX_RECENT = 10


def settings() -> QSettings:
    from .settings_sync import BackgroundSettings  # written off the GUI thread

    return BackgroundSettings(QSettings.IniFormat, QSettings.UserScope, ORG, APP)


def recent_files(s: QSettings | None = None) -> list[str]:
    s = s or settings()
    value = s.value("recent_files", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent(path: str, s: QSettings | None = None) -> list[str]:
    s = s or settings()
    path = str(Path(path).resolve())
    items = [path] + [p for p in recent_files(s) if p != path]
    items = items[:MAX_RECENT]
    s.setValue("recent_files", items)
    return items


def resources_dir() -> Path:
    """resources/ of a source checkout or an editable install; ATTN_DESKTOP_RESOURCES overrides."""
    env = os.environ.get("ATTN_DESKTOP_RESOURCES")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[2] / "resources",
        Path(sys.prefix) / "share" / "attn-desktop" / "resources",
    ]
    for c in candidates:
        if (c / "samples").is_dir():
            return c
    return candidates[0]


def sample_files() -> list[Path]:
    folder = resources_dir() / "samples"
    return sorted(folder.glob("*.txt")) if folder.is_dir() else []
