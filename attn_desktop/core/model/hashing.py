"""sha256 of weight files, remembered per (path, size, mtime) so a 10 GB model is hashed once."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CACHE_ENV = "ATTN_DESKTOP_CACHE"


def cache_file() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / "sha256.json"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("attn-desktop", appauthor=False)) / "sha256.json"


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _read() -> dict[str, str]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(entries: dict[str, str]) -> None:
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(entries, fh)
        os.replace(tmp, target)
    except OSError:
        pass  # a read-only home only costs hashing again next time


def sha256_file(path: Path, chunk: int = 1 << 22, cancel=None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            if cancel is not None and cancel():
                from attn_desktop.core.errors import Cancelled

                raise Cancelled()
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path, cancel=None) -> str:
    """The file's sha256, from the cache when its size and modification time are unchanged."""
    entries = _read()
    key = _key(path)
    if key in entries:
        return entries[key]
    digest = sha256_file(path, cancel=cancel)
    entries = {k: v for k, v in _read().items() if Path(k.split("|")[0]).exists()}
    entries[key] = digest
    _write(entries)
    return digest
