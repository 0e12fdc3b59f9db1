"""Reading a long session whose large members are mapped (core.store.archive): the one pass that
computes each mapped member's CRC-32 and checks its values, now against the previous reader (a
16 MB buffer and a value check by minimum and maximum), alternating the two in one run on the same
file, with the file in the page cache. Also printed: reading the file's bytes alone into a buffer
(the floor of any pass that checks every byte).

    python benchmarks/bench_session_reopen.py                  # a synthetic 6 x 12 x 2048 session (620 MB)
    python benchmarks/bench_session_reopen.py --session PATH   # e.g. the 5.4 GB one bench_long_window.py
                                                               # keeps with BENCH_KEEP=PATH
    --rounds N (default 5)   --cold: drop the page cache before each load (needs root; says if refused)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hostile import manifest, tokens  # noqa: E402

from attn_desktop.core.analysis import Analysis, Token  # noqa: E402
from attn_desktop.core.store import archive, schema  # noqa: E402
from attn_desktop.core.store.session import load_session, save_session  # noqa: E402

PREVIOUS_BUFFER = 16 << 20


def previous_plainly_fine(part: np.ndarray, kind: str) -> bool:
    """schema._plainly_fine before this change: probabilities by a minimum and a maximum."""
    if part.dtype.kind != "f" or part.dtype.itemsize not in schema._INT_OF or not part.dtype.isnative:
        return False
    bits = part.view(schema._INT_OF[part.dtype.itemsize])
    if kind == "probability":
        limit = np.array(1 + schema.PROBABILITY_SLACK, dtype=part.dtype).view(bits.dtype)
        return bool(bits.min() >= 0 and bits.max() <= limit)
    magnitude_mask = np.iinfo(bits.dtype).max
    infinity = np.array(np.inf, dtype=part.dtype).view(bits.dtype)
    return bool(np.bitwise_and(bits, magnitude_mask).max() < infinity)


def synthetic(path: Path, n: int = 2048, layers: int = 6, heads: int = 12) -> None:
    """A session whose attention (float16, 604 MB) is over archive.MAP_FROM, so it is mapped."""
    rng = np.random.default_rng(0)
    att = np.empty((layers, heads, n, n), np.float16)
    for layer in range(layers):
        x = rng.random((heads, n, n), dtype=np.float32)
        x /= x.sum(-1, keepdims=True)
        att[layer] = x
    text = "x " * n
    arrays = {"attentions": att}
    man = manifest(arrays, layers=layers, heads=heads)
    man["tokens"] = tokens([(2 * i, 2 * i + 1) for i in range(n)], text)
    man["text"] = text
    save_session(Analysis(text=text, tokens=[Token.from_json(t) for t in man["tokens"]], arrays=arrays,
                          manifest=man), path)


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("1\n")
        return True
    except OSError:
        return False


def read_bytes(path: Path) -> None:
    buf = memoryview(bytearray(16 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        at = 0
        while got := os.preadv(fd, [buf], at):
            at += got
    finally:
        os.close(fd)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--session")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cold", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.session) if args.session else Path(tmp) / "synthetic.attn"
        if not args.session:
            synthetic(path)
        an = load_session(path)  # warms the cache and the imports
        mapped = [k for k, v in an.arrays.items() if isinstance(v, np.memmap)]
        del an
        now = (archive._READ_CHUNK, schema._plainly_fine)

        def load(buffer, check):
            archive._READ_CHUNK, schema._plainly_fine = buffer, check
            try:
                if args.cold and not drop_caches():
                    raise SystemExit("--cold: the page cache cannot be dropped here (needs root)")
                return timed(lambda: load_session(path))
            finally:
                archive._READ_CHUNK, schema._plainly_fine = now

        before, after, floor = [], [], []
        for k in range(args.rounds):  # alternating, the order swapped every round
            pair = [("before", PREVIOUS_BUFFER, previous_plainly_fine), ("now", *now)]
            for name, buffer, check in pair if k % 2 == 0 else pair[::-1]:
                (before if name == "before" else after).append(load(buffer, check))
            if not args.cold:
                floor.append(timed(lambda: read_bytes(path)))
        size = path.stat().st_size / 2**20
    where = "after dropping the page cache" if args.cold else "in the page cache"
    print(f"session {size:.0f} MB, mapped members: {', '.join(mapped)}; load_session {where}, "
          f"{args.rounds} alternating rounds")
    print(f"  before (16 MB buffer, min and max)   median {statistics.median(before):.3f} s  "
          f"(min {min(before):.3f})")
    print(f"  now ({now[0] >> 20} MB buffer, unsigned max)       median {statistics.median(after):.3f} s  "
          f"(min {min(after):.3f})  ratio now/before {statistics.median(after) / statistics.median(before):.2f}")
    if floor:
        print(f"  reading the file's bytes alone      median {statistics.median(floor):.3f} s")


if __name__ == "__main__":
    main()
