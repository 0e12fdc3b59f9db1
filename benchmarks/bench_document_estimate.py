"""How steady the document-level explanation's time estimate (core.explain.document_progress) is and
how well it agrees with the bar, on the demo model (zero-shot contract_clauses, IG auto and
leave-one-out over a text read in windows of WINDOW_SIZE), measured in one run.

At every progress message of the explanation it prints the time elapsed, the bar, the time left the
run's estimator says (exact, before rounding for the message) and the ratio (elapsed + estimated left)
/ the time the explanation then took in all, which is 1.00 for a perfect estimate. In the same run it
recomputes, from the bar's own counters, the former estimator (one pace over the whole run: seconds
so far per window forward done x window forwards left) and the former bar (each step's share
proportional to its planned forwards), so both are compared on the same work: the max and min of the
ratio over the run, the largest step of the ratio from one message to the next, and the largest gap
between the bar and the share of time spent. Torch runs one thread (on this shared 2-core machine two
threads spin against other processes).
Usage: .venv/bin/python benchmarks/bench_document_estimate.py [WINDOW_SIZE] [REPEATS] [--threads N] [--quiet]
(--threads 2: as the window's model process and the command line run, where a row in a batch costs
about half of one alone)."""

from __future__ import annotations

import re
import sys
import time

import attn_desktop  # noqa: F401  (offline mode first)

UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def seconds(said: str) -> float:
    """'about 2 min left' / 'estimated about 1.5 min more' -> seconds."""
    m = re.search(r"about (\d+(?:\.\d+)?) (s|min|h)\b", said)
    return float(m.group(1)) * UNITS[m.group(2)]


class Recorder:
    """Wraps DocumentProgress.at: after every report, the new estimate and bar and the former ones."""

    def __init__(self, dp) -> None:
        self.rows: list[dict] = []
        self.old_shown = 0.0
        original = dp.DocumentProgress.at
        recorder = self

        def at(bar, name, fraction, message, *, units_done=None):
            original(bar, name, fraction, message, units_done=units_done)
            recorder.record(bar, name, fraction)

        self.original, self.patched = original, at
        dp.DocumentProgress.at = at
        self.dp = dp

    def restore(self) -> None:
        self.dp.DocumentProgress.at = self.original

    def record(self, bar, name: str, fraction: float) -> None:
        now = bar.clock() - bar.started
        done, known = bar.done_units, bar.total + bar.extra
        # the former single pace, without the calibration's time (the former code did not measure one)
        spent = bar.calibration.spent if bar.calibration is not None else 0.0
        old_left = (now - spent) / done * max(0.0, known - done) if done > 0 else None
        base = sum(bar.units[s] for s in bar.order[:bar.order.index(name)])
        old_bar = max(self.old_shown, (base + max(0.0, min(1.0, fraction)) * bar.units[name]) / bar.total)
        if name == bar.order[-1] and fraction >= 1.0:
            old_bar = 1.0
        self.old_shown = old_bar
        self.rows.append({"t": now, "step": name, "bar": bar.shown, "old_bar": old_bar,
                          "left": bar.seconds_left(), "old_left": old_left})


def summary(rows: list[dict], total: float, key: str, bar_key: str, name: str) -> None:
    said = [(r["t"], r[key]) for r in rows if r[key] is not None and r["step"] != "target" and r["t"] < total]
    ratios = [(t + left) / total for t, left in said]
    steps = [b / a for a, b in zip(ratios, ratios[1:], strict=False)]
    gap = max(abs(r[bar_key] - r["t"] / total) for r in rows)
    print(f"  {name}: (elapsed + left) / total over {len(ratios)} messages: max {max(ratios):.2f}, "
          f"min {min(ratios):.2f}; largest step between messages x{max(max(steps), 1 / min(steps)):.2f}; "
          f"bar vs time spent: largest gap {gap:.2f}")


def main(size: int = 128, repeats: int = 3, quiet: bool = False, threads: int = 1) -> None:
    import torch
    from bench_document_explain import SAMPLE

    from attn_desktop.core.explain import document_progress as dp
    from attn_desktop.core.explain.labels import read_labels
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze

    torch.set_num_threads(threads)
    loaded = load_model("demo")
    text = " ".join([SAMPLE] * repeats)
    seen: list[tuple[float, float, str]] = []
    recorder = Recorder(dp)
    try:
        t0 = time.perf_counter()
        an = analyze(loaded, text, windows={"size": size}, methods=["ig", "loo"],
                     target={"labels": read_labels("contract_clauses")},
                     progress=lambda f, m: seen.append((time.perf_counter() - t0, f, m)))
    finally:
        recorder.restore()
    rows = recorder.rows
    total = rows[-1]["t"]  # the explanation's time, from its bar's start to its last report
    doc = an.manifest["explain"]["document"]
    steps = [t["steps"] for t in an.manifest["explain"]["methods"]["integrated_gradients"]["tried"]]
    said = next(m for _, _, m in seen if m.startswith(dp.ESTIMATE_PREFIX))
    first = next(r for r in rows if r["step"] != "target")  # the estimate's moment: no work since
    print(f"demo model, {doc['windows']} windows of at most {size}, {doc['document_tokens']} document tokens, "
          f"IG rounds {steps}, {threads} torch thread(s); the explanation took {total:.1f} s")
    print(f"estimate before the methods: {said}")
    print(f"  estimated {first['left']:.1f} s (said {seconds(said):.0f} s), took {total - first['t']:.1f} s: ratio "
          f"{first['left'] / (total - first['t']):.2f} (former estimator: "
          f"{first['old_left'] / (total - first['t']):.2f})")
    if not quiet:
        print("   elapsed  step       bar  time   left  ratio | former: bar   left  ratio")
        for r in rows:
            if r["left"] is None:
                continue
            old = r["old_left"] if r["old_left"] is not None else float("nan")
            print(f"  {r['t']:7.1f}s  {r['step']:<9} {r['bar']:4.0%} {r['t'] / total:4.0%} {r['left']:6.1f}s "
                  f"{(r['t'] + r['left']) / total:5.2f} |  {r['old_bar']:4.0%} {old:6.1f}s {(r['t'] + old) / total:5.2f}")
    summary(rows, total, "left", "bar", "now   ")
    summary(rows, total, "old_left", "old_bar", "former")
    whole = seen[-1][0]
    at, f, _ = [x for x in seen if x[2].startswith("window ")][-1]
    print(f"  the whole run ({whole:.1f} s): the windows' capture ends at {f:.1%} of the bar after {at / whole:.1%} "
          f"of the time (former: 30% of the bar); the largest gap between the whole bar and the time spent "
          f"{max(abs(fr - t / whole) for t, fr, _ in seen):.2f}")
    for q in (0.5, 0.66, 0.83):
        r = next(r for r in rows if r["t"] >= q * total and r["left"] is not None)
        print(f"  at {q:.0%} of the time ({r['step']}, bar {r['bar']:.0%}): said {r['left']:.1f} s left, took "
              f"{total - r['t']:.1f} s: ratio {r['left'] / max(total - r['t'], 1e-9):.2f} (former "
              f"{r['old_left'] / max(total - r['t'], 1e-9):.2f})")


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    argv = sys.argv[1:]
    threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1
    args = [a for i, a in enumerate(argv) if not a.startswith("--") and (i == 0 or argv[i - 1] != "--threads")]
    main(*(int(a) for a in args[:2]), quiet="--quiet" in argv, threads=threads)
