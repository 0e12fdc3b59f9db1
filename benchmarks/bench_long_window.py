"""A 4096-token analysis with rollout in the real window (offscreen), on a BERT config with 12 layers,
12 heads and 4096 positions (random weights, hidden size 48), in one run.

The window runs as for the user: the model in the model process, rollout in the compute process.
Above the window's size rule the model process writes the attention a head at a time to float16
files and the window maps them (core.model.mapped, docs/long-inputs.md). Printed:
- peak resident memory (VmHWM: anonymous and file-backed pages) of the window's process, the model
  process and the rollout compute process after each step, with the ratio to the naive float32
  footprint of the attention [L, H, n, n] and a float32 rollout [L, n, n] (9984 MB);
- layer switch with the data in the page cache: the time from the selection's change to the heatmap
  holding the new layer (head mean, one head, rollout), median and p95, and how much of it is the
  data (reading the layer) rather than the drawing;
- saving the session from the window, and reopening it in a fresh window process (time from the
  request to the analysis shown, and that process's peak resident memory).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("XDG_CONFIG_HOME", tempfile.mkdtemp())  # the window's settings, not the user's

import bench_long_capture  # noqa: E402

LAYERS, HEADS, N = bench_long_capture.LAYERS, bench_long_capture.HEADS, bench_long_capture.N
if os.environ.get("BENCH_LAYERS_HEADS"):  # a quicker check of the script itself, e.g. "2x4"
    LAYERS, HEADS = (int(x) for x in os.environ["BENCH_LAYERS_HEADS"].split("x"))
    bench_long_capture.LAYERS, bench_long_capture.HEADS = LAYERS, HEADS
NAIVE_MB = (LAYERS * HEADS * N * N * 4 + LAYERS * N * N * 4) / 2**20
TIMEOUT_MS = 1_800_000


def peak_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait(app, signal, start, timeout_ms=TIMEOUT_MS):
    """Run `start()` and spin the event loop until `signal` fires; returns its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    got: list = []
    loop = QEventLoop()

    def done(*args):
        got.append(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(timeout_ms, loop.quit)
    start()
    if not got:
        loop.exec()
    signal.disconnect(done)
    if not got:
        raise SystemExit(f"timed out waiting for {signal}")
    return got[0]


def make_window():
    from attn_desktop.gui.app import make_app
    from attn_desktop.gui.main_window import MainWindow

    app = make_app()
    w = MainWindow()
    w.resize(1400, 900)
    w.show()
    app.processEvents()
    return app, w


def timed_switches(app, w, field_values, passes=3):
    """(total ms per switch, data ms per switch) changing the selection through `field_values`."""
    from attn_desktop.gui.measures import MEASURES

    totals, data = [], []
    for _ in range(passes):
        for fields in field_values:
            t0 = time.perf_counter()
            w.state.update(**fields)
            app.processEvents()
            totals.append((time.perf_counter() - t0) * 1000)
            an, sel = w.state.analysis, w.state.sel
            t0 = time.perf_counter()
            MEASURES[sel.measure].matrix(an, sel)
            data.append((time.perf_counter() - t0) * 1000)
    return totals, data


def p95(values):
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def reopen_child(path: str) -> None:  # also: python bench_long_window.py --reopen SESSION
    """In a fresh process: open the session in a new window, time it to shown, print JSON."""
    app, w = make_window()
    t0 = time.perf_counter()
    args = wait(app, w.analysis_shown, lambda: w.open_session(path))
    seconds = time.perf_counter() - t0
    att = args[0].analysis.arrays["attentions"]
    from attn_desktop.core.views.mapped_arrays import is_mapped

    totals, data = timed_switches(app, w, [{"layer": k} for k in range(LAYERS)], passes=2)
    print(json.dumps({"seconds": seconds, "read_s": args[0].seconds, "peak_mb": peak_mb(os.getpid()),
                      "mapped": is_mapped(att),
                      "measure": w.state.sel.measure, "switch_ms": statistics.median(totals)}))
    w.close()
    from attn_desktop.core.model.engine import shared_engine

    shared_engine().close()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--reopen":
        reopen_child(sys.argv[2])
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp) / "long-bert"
        bench_long_capture.build(folder)
        text = (folder / "long.txt").read_text(encoding="utf-8")
        app, w = make_window()
        engine = w.engine
        steps = []

        def step(name: str, seconds: float) -> None:
            compute = w.propagation.compute.get("rollout")
            steps.append((name, seconds, peak_mb(os.getpid()),
                          peak_mb(engine._proc.pid if engine._proc is not None else None),
                          peak_mb(compute._proc.pid if compute is not None and compute._proc is not None else None)))

        t0 = time.perf_counter()
        wait(app, w.model_loaded, lambda: w.load_model(str(folder), "cpu"))
        step("load the model", time.perf_counter() - t0)
        w.state.update(words=False, measure="attention", head="mean", layer=0)
        t0 = time.perf_counter()
        (prepared,) = wait(app, w.analysis_shown, lambda: w.document.editor.setPlainText(text))
        step(f"analysis of {len(prepared.analysis.tokens)} tokens shown", time.perf_counter() - t0)
        t0 = time.perf_counter()
        wait(app, w.propagation.filed, lambda: w.state.update(measure="rollout"))
        step("rollout shown", time.perf_counter() - t0)
        an = prepared.analysis
        from attn_desktop.core.views.mapped_arrays import is_mapped

        kinds = {k: ("mapped float16" if is_mapped(v) else str(v.dtype)) for k, v in an.arrays.items()
                 if v.nbytes > 16 << 20}

        switches = {}
        for name, fields in (("rollout, layer", {"measure": "rollout", "head": "mean"}),
                             ("attention head mean, layer", {"measure": "attention", "head": "mean"}),
                             ("attention head 3, layer", {"measure": "attention", "head": 3})):
            w.state.update(**fields)
            first = w.state.sel.layer
            order = [{"layer": k} for k in range(first, LAYERS)] + [{"layer": k} for k in range(first)]
            switches[name] = timed_switches(app, w, order)
        step("layer switches", 0.0)
        path = str(Path(tmp) / "long.attn")
        t0 = time.perf_counter()
        wait(app, w.session_saved, lambda: w.save_session(path))
        step("session saved", time.perf_counter() - t0)
        w.close()
        from attn_desktop.core.model.engine import shared_engine

        shared_engine().close()
        for compute in w.propagation.compute.values():
            compute.close()
        reopens = []
        for _ in range(2):  # right after saving, and again
            proc = subprocess.run([sys.executable, __file__, "--reopen", path], capture_output=True, text=True,
                                  env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            reopens.append(json.loads(lines[-1]) if lines else None)
        size = os.path.getsize(path) / 2**20
        if os.environ.get("BENCH_KEEP"):  # keep the session for a closer look
            os.replace(path, os.environ["BENCH_KEEP"])

    print(f"{LAYERS} layers x {HEADS} heads, {N} positions; naive float32 attention + rollout {NAIVE_MB:.0f} MB; "
          f"session {size:.0f} MB")
    print("arrays over 16 MB in the window: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    print(f"  {'step':<34} {'seconds':>8}  peak RSS MB (ratio to naive): window / model process / compute process")

    def fmt(mb):
        return "   -   " if mb is None else f"{mb:6.0f} ({mb / NAIVE_MB:.3f})"

    for name, seconds, win, model, comp in steps:
        print(f"  {name:<34} {seconds:8.1f}  {fmt(win)} / {fmt(model)} / {fmt(comp)}")
    for name, (totals, data) in switches.items():
        print(f"  switch {name:<27} median {statistics.median(totals):6.1f} ms, p95 {p95(totals):6.1f} ms "
              f"(reading the layer: median {statistics.median(data):6.1f} ms) over {len(totals)} switches")
    for reopen in reopens:
        if reopen is None:
            print("  reopen failed: " + proc.stderr[-2000:])
            continue
        print(f"  reopen in a fresh window process: {reopen['seconds']:.2f} s to shown ({reopen['measure']} as saved; "
              f"reading and preparing the session {reopen['read_s']:.2f} s of it), "
              f"peak RSS {reopen['peak_mb']:.0f} MB ({reopen['peak_mb'] / NAIVE_MB:.3f}), attention mapped: "
              f"{reopen['mapped']}, then layer switch median {reopen['switch_ms']:.1f} ms")


if __name__ == "__main__":
    main()
