"""Head importance and pruning on the demo model at n=128, ratios measured in one run.

Targets (issue 9): the full [L, H] ablation grid in at most 0.5x the time of L x H separate
masked forward passes; gradient importance within 3x one forward pass; the pruned model's
forward time against the original when half the heads go (printed, no target).
The target is the cosine similarity to a reference text (the demo model has no task head).

    .venv/bin/python benchmarks/bench_heads.py [--repeats N] [--threads T] [--batch B]
"""

from __future__ import annotations

import argparse
import statistics
import time

import attn_desktop  # noqa: F401  (offline mode first)

WORDS = ("the tenant shall pay the rent on the first day of each month and the landlord "
         "shall keep the premises in good repair while the bank holds the deposit").split()


def ids_of(tokenizer, n_tokens: int) -> list[int]:
    words = []
    while len(tokenizer(" ".join(words))["input_ids"]) < n_tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    ids = tokenizer(" ".join(words))["input_ids"]
    return ids[: n_tokens - 1] + ids[-1:]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="rows per batched pass (default: the stage's)")
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args()

    import torch

    from attn_desktop.core.explain import head_importance as hi
    from attn_desktop.core.explain.targets import resolve_target
    from attn_desktop.core.model import capture, prune
    from attn_desktop.core.model.loading import load_model

    torch.set_num_threads(args.threads)
    loaded = load_model("demo")
    ids = ids_of(loaded.tokenizer, args.n)
    L, H = loaded.num_layers, loaded.num_heads
    shapes = {"self": (L, H)}
    target = resolve_target(loaded, ids, {"kind": "reference", "reference": "A lease agreement about rent."})
    score = hi.target_scorer(loaded, target)
    batch = torch.tensor([ids])
    am = torch.ones_like(batch)
    batch_size = args.batch or hi.default_batch_size(len(ids))

    def one_forward():
        with torch.no_grad():
            score(batch, am, None)

    def separate():
        for layer in range(L):
            for head in range(H):
                m = torch.ones(H)
                m[head] = 0
                plan = capture.CapturePlan(sites=loaded.site_of, record=False,
                                           head_mask={capture.Site("self", layer): m})
                with torch.no_grad():
                    score(batch, am, plan)

    def grid():
        hi.ablation_grids(loaded, score, ids, shapes, batch_size=batch_size, layers=False)

    def gradient():
        hi.gradient_importance(loaded, score, ids, shapes)

    for f in (one_forward, grid, gradient):
        f()
    t_sep, t_grid, t_fwd, t_grad, grid_ratio, grad_ratio = [], [], [], [], [], []
    for _ in range(args.repeats):  # interleaved: load drift hits every variant alike
        a, b = timed(separate), timed(grid)
        c, d = timed(one_forward), timed(gradient)
        t_sep.append(a), t_grid.append(b), t_fwd.append(c), t_grad.append(d)
        grid_ratio.append(b / a)
        grad_ratio.append(d / c)
    print(f"demo model {L}x{H}, n={len(ids)}, {args.threads} threads, {args.repeats} interleaved repeats")
    print(f"ablation grid [{L},{H}]: batched ({batch_size} rows per pass) {statistics.median(t_grid):.3f} s vs "
          f"{L * H} separate masked forwards {statistics.median(t_sep):.3f} s = "
          f"{statistics.median(grid_ratio):.3f}x (target <= 0.5x)")
    print(f"gradient importance {statistics.median(t_grad) * 1000:.1f} ms vs one forward "
          f"{statistics.median(t_fwd) * 1000:.1f} ms = {statistics.median(grad_ratio):.2f}x (target <= 3x)")

    grads = hi.gradient_importance(loaded, score, ids, shapes)[1]["self"]
    grids = hi.ablation_grids(loaded, score, ids, shapes, batch_size=batch_size, layers=False)
    agree = hi.rank_agreement(abs(grids.head_change["self"]), grads)
    print(f"gradient vs |ablation| on this text: Spearman {agree['spearman']:.3f}, Kendall tau {agree['kendall_tau']:.3f}")

    half = hi.least_important(abs(grids.head_change["self"]), L * H // 2)
    remove: dict = {}
    for layer, head in half:
        remove.setdefault(capture.Site("self", layer), []).append(head)
    pruned_model = prune.pruned_copy(loaded.model, remove, False)

    for bs in (1, 16):
        inputs = {"input_ids": batch.expand(bs, -1), "attention_mask": am.expand(bs, -1)}

        def run_orig(inputs=inputs):
            with torch.no_grad():
                loaded.model(**inputs)

        def run_pruned(inputs=inputs):
            with torch.no_grad():
                pruned_model(**inputs)

        run_orig(), run_pruned()
        ratios, to, tp = [], [], []
        for _ in range(max(5, args.repeats * 3)):
            a, b = timed(run_orig), timed(run_pruned)
            to.append(a), tp.append(b), ratios.append(b / a)
        print(f"pruned ({len(half)} of {L * H} heads removed, least |ablation|), batch {bs}: "
              f"{statistics.median(tp) * 1000:.1f} ms vs {statistics.median(to) * 1000:.1f} ms = "
              f"{statistics.median(ratios):.3f}x forward time; parameters "
              f"{prune.parameter_count(pruned_model) / prune.parameter_count(loaded.model):.3f}x")


if __name__ == "__main__":
    main()
