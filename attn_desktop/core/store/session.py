"""Session files (.attn): a zip that numpy.load opens, holding manifest.json and one .npy per array.

See docs/session-format.md. Written atomically (core.store.writes); read through one reader per
schema version, each refusing in one line anything damaged or hostile (core.store.archive for the
container, core.store.schema for the manifest and the arrays).
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from attn_desktop.core import bounded_json
from attn_desktop.core.analysis import Analysis, Token
from attn_desktop.core.errors import UserError
from attn_desktop.core.pages import write_npy
from attn_desktop.core.quoting import quote
from attn_desktop.core.store import schema
from attn_desktop.core.store.archive import ARRAY_NAME, MANIFEST, MANIFEST_LIMIT, SessionArchive
from attn_desktop.core.store.schema import Dims, fail, is_int
from attn_desktop.core.store.writes import atomic_write
from attn_desktop.core.store.writes import check_writable as _check_writable

SCHEMA_VERSION = 2
# exceptions that a damaged archive, manifest or array can raise while it is read
DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, ValueError,
           TypeError, KeyError, AttributeError, IndexError, OverflowError, RuntimeError,
           NotImplementedError, RecursionError, struct.error, UnicodeDecodeError)


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_writable(path: str | Path) -> Path:
    return _check_writable(path, "session")


def session_manifest(analysis: Analysis) -> dict:
    """The manifest a session file of this schema version holds for `analysis`."""
    manifest = dict(analysis.manifest)
    manifest["schema_version"] = SCHEMA_VERSION
    manifest["text"] = analysis.text
    manifest["tokens"] = [t.to_json() for t in analysis.tokens]
    manifest["decoder_text"] = analysis.decoder_text
    manifest["decoder_tokens"] = (
        None if analysis.decoder_tokens is None else [t.to_json() for t in analysis.decoder_tokens]
    )
    manifest["arrays"] = {
        name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in sorted(analysis.arrays.items())
    }
    return json.loads(json.dumps(manifest, ensure_ascii=False, default=_json_default))


def save_session(analysis: Analysis, path: str | Path) -> Path:
    """Write `analysis` to `path` atomically, after checking it as a reader would."""
    path = check_writable(path)
    label = quote(path.name)
    for name, array in analysis.arrays.items():
        if not ARRAY_NAME.fullmatch(name):
            raise UserError(f"{label}: array name {quote(name)} is not allowed (letters, digits and _ only)")
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
            raise UserError(f"{label}: array {quote(name)} is not numeric and cannot be saved")
    try:
        manifest = session_manifest(analysis)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{label}: the manifest cannot be written ({exc})") from None
    _validated(label, manifest, _InMemory(analysis.arrays), view=True)
    try:
        text = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: bytes that were never UTF-8
        raise UserError(f"{label}: the manifest holds text that is not valid Unicode") from None
    if len(text) > MANIFEST_LIMIT:
        raise UserError(f"{label}: the manifest would be {len(text) / 1e6:.0f} MB "
                        f"(sessions hold at most {MANIFEST_LIMIT / 1e6:.0f} MB)")

    def write(fh) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(MANIFEST, text)
            for name, array in sorted(analysis.arrays.items()):
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    if isinstance(array, np.memmap) and array.flags.c_contiguous:
                        write_npy(member, array)  # streamed, its pages released (core.pages)
                    else:
                        np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    return atomic_write(path, write, what="session")


def load_session(path: str | Path) -> Analysis:
    """Read a session file of any supported schema version, or raise UserError with one line."""
    path = Path(path).expanduser()
    label = quote(path.name or str(path))
    try:
        with SessionArchive(path, label) as archive:
            manifest = bounded_json.loads(archive.read_manifest(), f"{label}: the manifest",
                                          max_bytes=MANIFEST_LIMIT, allow_nan=True)
            if not isinstance(manifest, dict):
                raise fail(label, "the manifest is not a JSON object")
            version = manifest.get("schema_version")
            reader = READERS.get(version) if is_int(version) else None
            if reader is None:
                raise fail(label, f"session schema version {version!r} is not supported "
                                  f"(this version reads {', '.join(map(str, READERS))})")
            return reader(label, manifest, archive)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{label}: not enough memory to open this session") from None
    except DAMAGED as exc:
        lines = str(exc).strip().splitlines()
        raise UserError(f"{label} is damaged or not a session file "
                        f"({exc.__class__.__name__}: {(lines[0] if lines else '')[:200]})") from None


# -- one reader per schema version ------------------------------------------------------------------
def _read_v1(label: str, manifest: dict, archive: SessionArchive) -> Analysis:
    """Schema 1: text, tokens, attention, rollout and flow. It had no 'view'."""
    manifest.pop("view", None)
    return _validated(label, manifest, archive, view=False)


def _read_v2(label: str, manifest: dict, archive: SessionArchive) -> Analysis:
    """Schema 2: schema 1 plus the view shown when saved and the arrays of ARRAY_RULES."""
    return _validated(label, manifest, archive, view=True)


READERS: dict[int, Callable[[str, dict, SessionArchive], Analysis]] = {1: _read_v1, 2: _read_v2}


class _InMemory:
    """The arrays of an Analysis seen through the archive's interface, to check before saving."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = arrays
        self.arrays = sorted(arrays)

    def npy_header(self, name: str):
        a = self._arrays[name]
        return _Header(tuple(a.shape), a.dtype)

    def read_npy(self, name: str, header, check=None) -> np.ndarray:
        if check is not None:
            check(self._arrays[name])
        return self._arrays[name]


class _Header:
    def __init__(self, shape, dtype) -> None:
        self.shape, self.dtype = shape, dtype


def _validated(label: str, manifest: dict, source, view: bool) -> Analysis:
    text = manifest.get("text")
    if not isinstance(text, str):
        raise fail(label, "the manifest lacks the text")
    if len(text) > schema.MAX_TEXT:
        raise fail(label, f"the text is {len(text)} characters (at most {schema.MAX_TEXT})")
    tokens = schema.check_tokens(label, manifest.get("tokens"), text, "tokens")
    decoder_text, decoder_tokens = manifest.get("decoder_text"), manifest.get("decoder_tokens")
    if decoder_text is not None and not isinstance(decoder_text, str):
        raise fail(label, "the manifest's decoder text is not text")
    if decoder_tokens is not None:
        decoder_tokens = schema.check_tokens(label, decoder_tokens, decoder_text or "", "decoder tokens")
    layers, decoder_layers, heads = schema.check_model(label, manifest.get("model"))
    encoder_decoder = decoder_tokens is not None
    from attn_desktop.core.windows import check_section as check_windows

    dims = Dims(n=len(tokens), m=len(decoder_tokens) if encoder_decoder else None, L=layers,
                Ld=(decoder_layers or layers) if encoder_decoder else None, H=heads,
                **check_windows(label, manifest.get("windows"), text, heads, layers))
    schema.check_methods(label, manifest.get("methods"), dims)
    schema.check_sections(label, manifest)
    for key, check in schema.SECTION_CHECKS.items():
        if key in manifest:
            check(label, manifest[key], dims)
    if view:
        schema.check_view(label, manifest.get("view"))
    headers = _headers(label, manifest, source, dims)
    arrays = {}
    for name, header in headers.items():
        arrays[name] = source.read_npy(
            name, header, check=lambda part, name=name: schema.check_array_values(label, name, part, dims))
    schema.check_together(label, arrays, manifest, dims, encoder_decoder)
    return Analysis(
        text=text, tokens=[_token(t) for t in tokens], arrays=arrays, manifest=manifest,
        decoder_text=decoder_text,
        decoder_tokens=None if decoder_tokens is None else [_token(t) for t in decoder_tokens],
    )


def _headers(label: str, manifest: dict, source, dims: Dims) -> dict:
    """Every array's header, checked against the manifest's table and the rules, before any data."""
    table = manifest.get("arrays")
    if not isinstance(table, dict):
        raise fail(label, "the manifest lacks its table of arrays")
    listed, present = set(table), set(source.arrays)
    if listed != present:
        odd = sorted(listed ^ present)[0]
        where = "listed in the manifest but missing" if odd in listed else "present but not listed in the manifest"
        raise fail(label, f"array {quote(odd)} is {where}")
    headers = {name: source.npy_header(name) for name in sorted(present)}
    attention = [h for name, h in headers.items() if name in schema.REQUIRED[dims.m is not None]]
    bound = max([schema.UNKNOWN_ARRAY_MIN_ELEMENTS] + [int(np.prod(h.shape)) for h in attention])
    for name, header in headers.items():
        entry = table[name]
        if (not isinstance(entry, dict) or entry.get("shape") != list(header.shape)
                or entry.get("dtype") not in (header.dtype.name, str(header.dtype))):
            raise fail(label, f"array {quote(name)} has shape {list(header.shape)} and dtype "
                              f"{header.dtype}, which the manifest does not list")
        schema.check_array_shape(label, name, header.shape, header.dtype, dims, bound)
    return headers


def _token(raw: dict) -> Token:
    return Token.from_json(raw)  # every field's type checked by schema.check_tokens
