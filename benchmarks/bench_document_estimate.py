"""How close the document-level explanation's estimate (core.explain.document_progress) comes to the
time it then takes, on the demo model (zero-shot contract_clauses, IG auto and leave-one-out over a
text read in windows of WINDOW_SIZE), measured in one run; also the time left said at 25%, 50% and 75%
of the run against the time it then took. Torch runs one thread (on this shared 2-core machine two
threads spin against other processes).
Usage: .venv/bin/python benchmarks/bench_document_estimate.py [WINDOW_SIZE] [REPEATS]"""

from __future__ import annotations

import re
import sys
import time

import attn_desktop  # noqa: F401  (offline mode first)

UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def seconds(said: str) -> float:
    """'about 2 min left' / 'estimated about 51 s more' -> seconds."""
    m = re.search(r"about (\d+(?:\.\d+)?) (s|min|h)\b", said)
    return float(m.group(1)) * UNITS[m.group(2)]


def main(size: int = 128, repeats: int = 3) -> None:
    import torch
    from bench_document_explain import SAMPLE

    from attn_desktop.core.explain.document_progress import ESTIMATE_PREFIX
    from attn_desktop.core.explain.labels import read_labels
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze

    torch.set_num_threads(1)
    loaded = load_model("demo")
    text = " ".join([SAMPLE] * repeats)
    seen: list[tuple[float, float, str]] = []
    t0 = time.perf_counter()
    an = analyze(loaded, text, windows={"size": size}, methods=["ig", "loo"],
                 target={"labels": read_labels("contract_clauses")},
                 progress=lambda f, m: seen.append((time.perf_counter() - t0, f, m)))
    end = time.perf_counter() - t0
    doc = an.manifest["explain"]["document"]
    steps = [t["steps"] for t in an.manifest["explain"]["methods"]["integrated_gradients"]["tried"]]
    said_at, _, said = next(s for s in seen if s[2].startswith(ESTIMATE_PREFIX))
    print(f"demo model, {doc['windows']} windows of at most {size}, {doc['document_tokens']} document tokens, "
          f"IG rounds {steps}")
    print(f"estimate before the methods: {said}")
    print(f"  estimated {seconds(said):.1f} s, took {end - said_at:.1f} s: ratio {seconds(said) / (end - said_at):.2f}")
    for q in (0.25, 0.5, 0.75):
        at, f, m = next(s for s in seen if s[1] >= 0.3 + 0.7 * q and " left" in s[2])
        print(f"  at {f:.0%} ({m.split(' · ')[0]}): said {seconds(m):.1f} s left, took {end - at:.1f} s: "
              f"ratio {seconds(m) / (end - at):.2f}")


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    main(*(int(a) for a in sys.argv[1:3]))
