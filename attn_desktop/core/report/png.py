"""A small PNG writer and reader (numpy + zlib): heatmaps and colour bars without Qt.

Images written here hold only coloured cells, never text; captions travel in iTXt chunks
(UTF-8) so that an exported image carries what it shows (PNG specification, section 11.3.4).
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _keyword(key: str) -> bytes:
    raw = key.encode("latin-1", "replace")[:79].replace(b"\x00", b" ").strip()
    return raw or b"Comment"


def encode_png(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """pixels: [h, w, 3] (RGB) or [h, w] (grey) uint8. `text`: keyword -> UTF-8 value (iTXt)."""
    img = np.ascontiguousarray(pixels, dtype=np.uint8)
    if img.ndim == 2:
        colour_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] in (3, 4):
        colour_type, channels = (2, 3) if img.shape[2] == 3 else (6, 4)
    else:
        raise ValueError(f"expected [h, w], [h, w, 3] or [h, w, 4] pixels, got {list(img.shape)}")
    h, w = img.shape[:2]
    if h < 1 or w < 1:
        raise ValueError("an image needs at least one pixel")
    rows = img.reshape(h, w * channels)
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = 0  # filter type None on every row
    raw[:, 1:] = rows
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))]
    for key, value in (text or {}).items():
        body = _keyword(key) + b"\x00\x00\x00" + b"\x00" + b"\x00" + str(value).encode("utf-8")
        out.append(_chunk(b"iTXt", body))
    out.append(_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk; raises ValueError on a damaged file."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    pos, out = len(SIGNATURE), []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError("damaged PNG chunk")
        out.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def read_text(data: bytes) -> dict[str, str]:
    """Keyword -> value of every tEXt, zTXt and iTXt chunk."""
    out = {}
    for kind, body in chunks(data):
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\x00")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            compressed, _method = rest[0], rest[1]
            _lang, _, rest = rest[2:].partition(b"\x00")
            _tkey, _, value = rest.partition(b"\x00")
            out[key.decode("latin-1")] = (zlib.decompress(value) if compressed else value).decode("utf-8")
    return out


def decode_png(data: bytes) -> np.ndarray:
    """Pixels of an 8-bit, non-interlaced grey, RGB or RGBA PNG (filters 0-4): what this module
    and Qt write. For tests and checks, not a general decoder."""
    parts = chunks(data)
    w, h, depth, colour_type, _c, _f, interlace = struct.unpack(">IIBBBBB", parts[0][1])
    channels = {0: 1, 2: 3, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace:
        raise ValueError("only 8-bit grey, RGB or RGBA, not interlaced")
    raw = zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT"))
    stride = w * channels
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        ftype, cur = line[0], np.frombuffer(line[1:], np.uint8).astype(np.int32)
        if ftype == 0:
            row = cur
        elif ftype == 2:
            row = (cur + prev) & 255
        else:
            row = np.zeros(stride, np.int32)
            for x in range(stride):
                a = row[x - channels] if x >= channels else 0
                b = prev[x]
                c = prev[x - channels] if x >= channels else 0
                if ftype == 1:
                    pred = a
                elif ftype == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[x] = (cur[x] + pred) & 255
        out[y] = row
        prev = row
    shape = (h, w) if channels == 1 else (h, w, channels)
    return out.astype(np.uint8).reshape(shape)
