"""Session files (.attn): a zip that numpy.load opens, holding manifest.json and one .npy per array.

See docs/session-format.md. Written atomically; read with every shape checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from attn_desktop.core.analysis import Analysis, Token
from attn_desktop.core.errors import UserError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_writable(path: str | Path) -> Path:
    path = Path(path).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"cannot write the session: {path} is a folder")
    if not parent.is_dir():
        raise UserError(f"cannot write the session: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write the session: {path} is not writable")
    return path


def save_session(analysis: Analysis, path: str | Path) -> Path:
    path = check_writable(path)
    manifest = dict(analysis.manifest)
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["text"] = analysis.text
    manifest["tokens"] = [t.to_json() for t in analysis.tokens]
    manifest["decoder_text"] = analysis.decoder_text
    manifest["decoder_tokens"] = (
        None if analysis.decoder_tokens is None else [t.to_json() for t in analysis.decoder_tokens]
    )
    manifest["arrays"] = {
        name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in analysis.arrays.items()
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False, default=_json_default))
            for name, array in analysis.arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_session(path: str | Path) -> Analysis:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"session file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if MANIFEST not in names:
                raise UserError(f"{path.name} is not an attn-desktop session (no manifest.json)")
            manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
            version = manifest.get("schema_version") if isinstance(manifest, dict) else None
            if version != SCHEMA_VERSION:
                raise UserError(
                    f"{path.name}: session schema version {version!r} is not supported "
                    f"(this version reads {SCHEMA_VERSION})"
                )
            arrays = {}
            for member in sorted(n for n in names if n.endswith(".npy")):
                with zf.open(member) as fh:
                    arrays[member[:-4]] = np.lib.format.read_array(io.BufferedReader(fh), allow_pickle=False)
    except UserError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise UserError(f"{path.name} is damaged or not a session file ({exc.__class__.__name__}: {exc})") from None
    return _validated(path.name, manifest, arrays)


def _tokens(name: str, raw) -> list[Token]:
    try:
        return [Token.from_json(t) for t in raw]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{name}: the token list in the manifest is damaged") from None


def _validated(name: str, manifest: dict, arrays: dict[str, np.ndarray]) -> Analysis:
    text = manifest.get("text")
    if not isinstance(text, str) or not isinstance(manifest.get("tokens"), list):
        raise UserError(f"{name}: the manifest lacks the text or the tokens")
    tokens = _tokens(name, manifest["tokens"])
    decoder_tokens = None
    if manifest.get("decoder_tokens") is not None:
        decoder_tokens = _tokens(name, manifest["decoder_tokens"])
    model = manifest.get("model") or {}
    n, m = len(tokens), len(decoder_tokens or [])
    heads = model.get("heads")
    expect: dict[str, tuple] = {}
    if decoder_tokens is None:
        expect["attentions"] = (model.get("layers"), heads, n, n)
    else:
        dec_layers = model.get("decoder_layers") or model.get("layers")
        expect["encoder_attentions"] = (model.get("layers"), heads, n, n)
        expect["decoder_attentions"] = (dec_layers, heads, m, m)
        expect["cross_attentions"] = (dec_layers, heads, m, n)
    for key, shape in expect.items():
        if key not in arrays:
            raise UserError(f"{name}: the session lacks the array '{key}'")
        got = arrays[key].shape
        if len(got) != 4 or any(e is not None and e != g for e, g in zip(shape, got, strict=True)):
            raise UserError(f"{name}: array '{key}' has shape {list(got)}, expected {list(shape)}")
    _check_known(name, arrays, n)
    for t in tokens:
        if not (0 <= t.start <= t.end <= len(text)):
            raise UserError(f"{name}: a token span lies outside the text")
    return Analysis(
        text=text, tokens=tokens, arrays=arrays, manifest=manifest,
        decoder_text=manifest.get("decoder_text"), decoder_tokens=decoder_tokens,
    )


def _check_known(name: str, arrays: dict[str, np.ndarray], n: int) -> None:
    """Shapes of the arrays later stages add; arrays this version does not know are kept unchecked."""
    if "rollout" in arrays and (arrays["rollout"].ndim != 3 or arrays["rollout"].shape[1:] != (n, n)):
        raise UserError(f"{name}: array 'rollout' has shape {list(arrays['rollout'].shape)}, expected [layers, {n}, {n}]")
    if "flow" in arrays:
        flow, rows = arrays["flow"], arrays.get("flow_rows")
        if rows is None or flow.ndim != 2 or flow.shape != (len(rows), n):
            raise UserError(f"{name}: arrays 'flow' and 'flow_rows' do not match")
