"""Label sets for zero-shot targets: plain files in resources/labels/, one label per line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from attn_desktop.core.errors import UserError

MAX_LABELS = 200
MAX_LABEL_CHARS = 500


def labels_dir() -> Path:
    """resources/labels of a source checkout or an editable install, else of a wheel install
    (sys.prefix/share/attn-desktop); ATTN_DESKTOP_RESOURCES overrides, as for the samples."""
    env = os.environ.get("ATTN_DESKTOP_RESOURCES")
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[3] / "resources",
        Path(sys.prefix) / "share" / "attn-desktop" / "resources",
    ]
    for c in candidates:
        if (c / "labels").is_dir():
            return c / "labels"
    return candidates[0] / "labels"


def label_files() -> list[Path]:
    folder = labels_dir()
    return sorted(folder.glob("*.txt")) if folder.is_dir() else []


def parse_labels(text: str, name: str = "the label list") -> list[str]:
    labels = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LABEL_CHARS:
            raise UserError(f"{name}: a label is longer than {MAX_LABEL_CHARS} characters")
        labels.append(line)
    if len(labels) < 2:
        raise UserError(f"{name}: zero-shot needs at least two labels, one per line")
    if len(labels) > MAX_LABELS:
        raise UserError(f"{name}: more than {MAX_LABELS} labels")
    if len({x.lower() for x in labels}) != len(labels):
        raise UserError(f"{name}: the same label appears twice")
    return labels


def read_labels(spec: str | Path) -> list[str]:
    """Labels from a file, or from a shipped set named by its file stem (e.g. contract_clauses)."""
    path = Path(spec).expanduser()
    if not path.is_file():
        shipped = {p.stem: p for p in label_files()}
        if str(spec) in shipped:
            path = shipped[str(spec)]
        else:
            known = ", ".join(sorted(shipped)) or "none installed"
            raise UserError(f"label file not found: {path} (shipped sets: {known})")
    data = path.read_bytes()
    if b"\x00" in data:
        raise UserError(f"{path.name} looks like a binary file, not a label list")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path.name} is not UTF-8 text") from None
    return parse_labels(text, path.name)
