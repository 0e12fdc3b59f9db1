"""The name of the text file an analysis was made from (manifest['source_name'], optional): what
reports and image captions call the document. Only the file's name is kept, never its folder.
Read from a session it is untrusted: a short single-line name with no path separators and no
control or format characters (bidirectional overrides could disguise it), else the session is
refused."""

from __future__ import annotations

import unicodedata
from pathlib import PurePath

KEY = "source_name"
MAX_CHARS = 255


def _problem(name) -> str | None:
    if not isinstance(name, str):
        return "is not text"
    if not name.strip() or len(name) > MAX_CHARS:
        return f"must be 1 to {MAX_CHARS} characters"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "must be a file name, not a path"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "holds control or format characters"
    return None


def of_path(path: str | PurePath | None) -> str | None:
    """The name a text file's path gives (None for standard input, or a name that would be refused)."""
    if path is None or str(path) in ("", "-"):
        return None
    name = PurePath(str(path)).name
    return name if _problem(name) is None else None


def stamp(manifest: dict, name: str | None) -> None:
    """Record `name` in a manifest about to be saved; None leaves what the manifest holds."""
    if name is not None and _problem(name) is None:
        manifest[KEY] = name


def check(label: str, value, _dims=None) -> None:
    """schema.SECTION_CHECKS entry: absent or null is fine; anything else must be a plain file name."""
    if value is None:
        return
    problem = _problem(value)
    if problem is not None:
        from attn_desktop.core.store.schema import fail

        raise fail(label, f"the manifest's {KEY!r} {problem}")


def document_name(manifest: dict, fallback: str | None = None) -> str | None:
    """What a report calls the document: the source file's name when known, else `fallback`
    (e.g. the session's name)."""
    name = manifest.get(KEY)
    return name if name is not None and _problem(name) is None else fallback
