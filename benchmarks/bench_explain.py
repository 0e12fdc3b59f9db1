"""Cost of the explanation stage on the demo model at 128 tokens, as ratios to one forward pass
measured in the same run (the forward is re-timed around every step; its median is the unit).

Targets (issue 8): IG (adaptive) within 40x one forward when the delta allows, never over 100x
at 50 steps; leave-one-out batched within 0.3x of n separate forward passes; the whole validate
run (methods all) within 300x one forward, with the share of each step printed.
Every ratio is given in wall time and in this process's CPU time (time.process_time): on a
shared machine other processes stretch wall times unevenly (a single forward more than a batch),
CPU time much less.
Usage: .venv/bin/python benchmarks/bench_explain.py [N_TOKENS]
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


def text_of(tokenizer, n_tokens: int) -> str:
    words = (SAMPLE + " ") * 4
    words = words.split()
    lo, hi = 1, len(words)
    while lo < hi:  # the longest prefix of words with at most n_tokens tokens
        mid = (lo + hi + 1) // 2
        if len(tokenizer(" ".join(words[:mid]))["input_ids"]) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def main(n_tokens: int = 128) -> None:
    import torch

    from attn_desktop.core.explain import gradients as grd
    from attn_desktop.core.explain import perturbation as prt
    from attn_desktop.core.explain.labels import read_labels
    from attn_desktop.core.explain.targets import resolve_target
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze

    torch.set_num_threads(2)
    loaded = load_model("demo")
    text = text_of(loaded.tokenizer, n_tokens)
    ids = loaded.tokenizer(text)["input_ids"]
    n = len(ids)
    spec = {"labels": read_labels("contract_clauses")}
    target = resolve_target(loaded, ids, spec)
    x = torch.tensor([ids])
    forwards: list[tuple[float, float]] = []

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def since(t0: tuple[float, float]) -> tuple[float, float]:
        t1 = clock()
        return t1[0] - t0[0], t1[1] - t0[1]

    def forward(times: int = 5) -> None:
        for _ in range(times):
            t0 = clock()
            with torch.no_grad():
                loaded.model(input_ids=x, attention_mask=torch.ones_like(x))
            forwards.append(since(t0))

    def timed(fn):
        forward()
        t0 = clock()
        out = fn()
        seconds = since(t0)
        forward()
        return out, seconds

    def ratio(a, b) -> str:
        return f"{a[0] / b[0]:.2f}x wall, {a[1] / b[1]:.2f}x CPU"

    # warm-up: imports (captum) and first-call costs, on a short text
    analyze(loaded, "The rent is due.", methods=["all"], target=spec, explain_options={"seeds": 2})
    forward(10)

    ig, t_ig = timed(lambda: grd.integrated_gradients(loaded, target))
    ig50, t_ig50 = timed(lambda: grd.integrated_gradients(loaded, target, steps=50))
    rep = prt.choose_replacement(loaded)
    _, t_loo = timed(lambda: prt.leave_one_out(loaded, target, rep))

    def separate():
        for i in range(n):
            if target.special[i]:
                continue
            changed = list(ids)
            changed[i] = rep.token_id
            with torch.no_grad():
                target.evaluate(loaded, torch.tensor([changed]))

    _, t_sep = timed(separate)
    whole, t_all = timed(lambda: analyze(loaded, text, methods=["all"], target=spec))
    unit = (statistics.median(f[0] for f in forwards), statistics.median(f[1] for f in forwards))

    rec = ig.record
    print(f"demo model, {n} tokens, target: zero-shot over {len(spec['labels'])} contract clause labels; "
          f"one forward {unit[0] * 1000:.1f} ms wall, {unit[1] * 1000:.1f} ms CPU (medians of {len(forwards)})")
    print(f"IG adaptive: {ratio(t_ig, unit)} one forward (target <= 40x); steps {rec['steps']}, delta "
          f"{rec['delta']:.2e} ({(rec['relative_delta'] or 0):.1%} of f(x) - f(b)), tried "
          f"{[t['steps'] for t in rec['tried']]}, converged {rec['converged']}")
    print(f"IG 50 steps: {ratio(t_ig50, unit)} one forward (limit 100x); delta {ig50.record['delta']:.2e}")
    print(f"LOO batched: {ratio(t_loo, t_sep)} of {n - sum(target.special)} separate forwards "
          f"({t_loo[0]:.2f} s vs {t_sep[0]:.2f} s wall; target <= 0.3x)")
    timings = whole.manifest["explain"]["timings"]
    print(f"whole validate run (analyze with methods all): {ratio(t_all, unit)} one forward (target <= 300x), "
          f"{t_all[0]:.1f} s wall; share of each step (wall):")
    for step, seconds in sorted(timings.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<14} {seconds:7.2f} s  {seconds / t_all[0]:6.1%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 128)
