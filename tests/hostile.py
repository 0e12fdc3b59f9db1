"""Builders of hostile files for the tests on untrusted input: sessions by hand (no model needed),
zips with chosen sizes and flags, and a runner that loads a file under an address-space limit."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np

TEXT = "The rent is due."
SPANS = [(0, 0), (0, 3), (4, 8), (9, 11), (12, 15), (15, 16), (16, 16)]


def tokens(spans=SPANS, text=TEXT):
    return [{"text": text[a:b] or "[S]", "start": a, "end": b, "special": a == b,
             "generated": False} for a, b in spans]


N = len(SPANS)


def attention(layers=2, heads=3, q=N, k=N, seed=0, dtype=np.float16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(layers, heads, q, k))
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(dtype)


def manifest(arrays: dict, version=2, layers=2, heads=3, **extra) -> dict:
    m = {
        "schema_version": version, "app": "attn-desktop", "text": TEXT, "tokens": tokens(),
        "decoder_text": None, "decoder_tokens": None,
        "model": {"name": "tiny", "kind": "encoder", "layers": layers, "decoder_layers": None,
                  "heads": heads, "folder": "/m", "weights_sha256": {}},
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
    }
    m.update(extra)
    return m


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_zip(path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def session(path, arrays=None, man=None, **extra):
    """A session file written by hand: `arrays` (default: one valid attention), `man` the manifest
    (default: a valid one for these arrays, updated with `extra`)."""
    arrays = {"attentions": attention()} if arrays is None else arrays
    man = manifest(arrays, **extra) if man is None else man
    members = {"manifest.json": json.dumps(man).encode()}
    members.update({f"{k}.npy": npy(v) for k, v in arrays.items()})
    write_zip(path, members)
    return path


def patch_flags(path, name: str, *, flag_bits=None, method=None) -> None:
    """Change a member's general-purpose flags or compression method in both its headers."""
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    local = info.header_offset
    central = data.find(b"PK\x01\x02")
    while central != -1:
        n = int.from_bytes(data[central + 28:central + 30], "little")
        if data[central + 46:central + 46 + n] == name.encode():
            break
        central = data.find(b"PK\x01\x02", central + 4)
    for at, flag_at, method_at in ((local, 6, 8), (central, 8, 10)):
        if flag_bits is not None:
            data[at + flag_at:at + flag_at + 2] = flag_bits.to_bytes(2, "little")
        if method is not None:
            data[at + method_at:at + method_at + 2] = method.to_bytes(2, "little")
    open(path, "wb").write(bytes(data))


def load_limited(path, limit_mb: int = 400, timeout: float = 60) -> subprocess.CompletedProcess:
    """Load a session in a child process whose address space is capped at `limit_mb`."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, {limit_mb} << 20))
        from attn_desktop.core.errors import UserError
        from attn_desktop.core.store.session import load_session
        try:
            load_session(sys.argv[1])
        except UserError as exc:
            print("REFUSED", exc)
            sys.exit(2)
        print("LOADED")
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          timeout=timeout, env=env)
