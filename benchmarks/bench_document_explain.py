"""Cost of document-level importance (core.explain.document) on the demo model, on a text read in
three windows, as ratios measured in one run:

- each document-level method against the SUM of the same method run on every window alone
  (core.explain.gradients / perturbation with each window's own per-text target, same IG steps):
  the price of one target over all windows instead of one per window;
- each against one plain forward pass of every window (the unit: the sum over the windows of the
  median forward time).

Document IG holds every window in one graph when rows x tokens fit core.explain.document.JOINT_BUDGET
(fewer rows per pass than per-window IG); a longer document goes window by window, with two forward
passes and one backward pass per window and step (every window's output is needed before any window's
gradient); per-window IG does one forward and one backward. Both paths are timed. Leave-one-out: one forward per (window, token) either way, plus the
document combination, which is cheap.
Every ratio is in wall time and in this process's CPU time (time.process_time); torch runs one thread
(on this shared 2-core machine two threads spin against other processes and a forward varies 5-25x).
Usage: .venv/bin/python benchmarks/bench_document_explain.py [WINDOW_SIZE] [IG_STEPS]
"""

from __future__ import annotations

import statistics
import sys
import time

import attn_desktop  # noqa: F401  (offline mode first)

SAMPLE = ("7.2 Limitation of Liability. Except for breaches of Section 9 (Confidentiality), neither party "
          "shall be liable to the other for any indirect, incidental or consequential damages arising out of "
          "this Agreement, even if advised of the possibility of such damages. Each party's total liability "
          "under this Agreement shall not exceed the fees paid by the Customer in the twelve (12) months "
          "preceding the claim. The Customer shall pay all invoices within thirty days of receipt, and either "
          "party may terminate this Agreement on ninety days' written notice to the other party.")


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(size: int = 128, ig_steps: int = 32) -> None:
    import numpy as np
    import torch

    from attn_desktop.core import windows as windowing
    from attn_desktop.core.explain import document
    from attn_desktop.core.explain import gradients as grd
    from attn_desktop.core.explain import perturbation as prt
    from attn_desktop.core.explain.labels import read_labels
    from attn_desktop.core.explain.targets import resolve_target
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze

    torch.set_num_threads(1)  # on the shared 2-core machine two threads spin against other processes
    loaded = load_model("demo")
    spec = {"labels": read_labels("contract_clauses")}
    words = ((SAMPLE + " ") * 8).split()
    text = ""
    for k in range(8, len(words), 6):  # the longest text read in three windows (of these lengths)
        longer = " ".join(words[:k])
        if len(windowing.document_tokens(loaded, longer)[0]) <= size:
            continue
        plan = windowing.plan_windows(windowing.cut_scores(longer, windowing.document_tokens(loaded, longer)[0]),
                                      size - 2, (size - 2) // 2)
        if len(plan) > 3:
            break
        text = longer
    an = analyze(loaded, text, windows={"size": size})
    info = an.manifest["windows"]
    windows_ids = [list(e["input_ids"]) for e in info["windows"]]
    spans, _ = windowing.document_tokens(loaded, text)
    count = len(spans)
    index_array = document.token_index(text, spans, info)
    index = [index_array[k, :len(ids)] for k, ids in enumerate(windows_ids)]
    print(f"demo model, {len(windows_ids)} windows of at most {size} positions (stride {info['stride']}), "
          f"{count} document tokens, IG {ig_steps} steps")

    def forward_all():
        with torch.no_grad():
            for ids in windows_ids:
                loaded.model(input_ids=torch.tensor([ids]))

    forward_all()
    runs = [timed(forward_all) for _ in range(7)]
    unit_w = statistics.median(r[1] for r in runs)
    unit_c = statistics.median(r[2] for r in runs)
    print(f"unit: one forward of every window, {unit_w * 1000:.1f} ms wall, {unit_c * 1000:.1f} ms CPU")

    target, tw, tc = timed(lambda: document.resolve(loaded, windows_ids, index, spec))
    per_targets = [resolve_target(loaded, ids, spec) for ids in windows_ids]
    rep = prt.choose_replacement(loaded)
    batch = max(1, min(32, 8192 // size))
    rows = []

    def both(name, doc_fn, per_fn):
        _, dw, dc = timed(doc_fn)
        sums = [timed(lambda t=t: per_fn(t)) for t in per_targets]
        pw, pc = sum(s[1] for s in sums), sum(s[2] for s in sums)
        rows.append((name, dw, dc, pw, pc))

    both("saliency + grad x input",
         lambda: document.saliency_and_grad_input(loaded, target, count),
         lambda t: grd.saliency_and_grad_input(loaded, t))
    both(f"Integrated Gradients ({ig_steps} steps)",
         lambda: document.integrated_gradients(loaded, target, count, steps=ig_steps),
         lambda t: grd.integrated_gradients(loaded, t, steps=ig_steps))
    budget = document.JOINT_BUDGET
    document.JOINT_BUDGET = 0  # the path of long documents: window by window, one more forward each
    both("  the same, window by window",
         lambda: document.integrated_gradients(loaded, target, count, steps=ig_steps),
         lambda t: grd.integrated_gradients(loaded, t, steps=ig_steps))
    document.JOINT_BUDGET = budget
    both("leave-one-out",
         lambda: document.leave_one_out(loaded, target, count, rep, batch),
         lambda t: prt.leave_one_out(loaded, t, rep, batch))
    print(f"document target: {tw * 1000:.0f} ms wall ({tw / unit_w:.1f}x the unit), {tc / unit_c:.1f}x in CPU")
    print(f"{'method':32s} {'doc/sum of windows':>22s} {'doc/unit':>20s}")
    for name, dw, dc, pw, pc in rows:
        print(f"{name:32s} {dw / pw:7.2f} wall {dc / pc:6.2f} CPU {dw / unit_w:7.1f} wall {dc / unit_c:6.1f} CPU"
              f"   ({dw:.2f} s vs {pw:.2f} s)")
    (an2, ww, wc) = timed(lambda: analyze(loaded, text, windows={"size": size}, target=spec,
                                          methods=["saliency", "grad_input", "ig", "loo", "agreement"],
                                          explain_options={"ig_steps": "auto"}))
    ig = an2.manifest["explain"]["methods"]["integrated_gradients"]
    print(f"whole run (windows, target, saliency, grad x input, IG auto ({ig['steps']} steps, relative delta "
          f"{ig['relative_delta']:.3g}), LOO, agreement): {ww:.1f} s wall = {ww / unit_w:.0f}x the unit "
          f"({wc / unit_c:.0f}x in CPU)")
    total = float(np.sum(an2.arrays["document_integrated_gradients"], dtype=np.float64))
    print(f"IG completeness: sum {total:.4f} vs f(x) - f(b) {ig['f_input'] - ig['f_baseline']:.4f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
