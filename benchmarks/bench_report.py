"""Cost of a report against the analysis it describes, on the demo model, in one run.

Prints, at 128 and 512 tokens: the analysis (capture + rollout + one flow row), the report
(plain and redacted by words, by pieces and by words), each as a ratio of the analysis, and the
report's size. The report should cost a fraction of the analysis and stay a few MB at 512 tokens.
"""

from __future__ import annotations

import statistics
import time

import attn_desktop  # noqa: F401  (offline mode first)

WORDS = ("the tenant shall pay the rent on the first day of each month and the landlord shall keep "
         "the premises in good repair while the bank holds the deposit of 1,250 dollars").split()


def text_of(tokenizer, n_tokens: int) -> str:
    words: list[str] = []
    while len(tokenizer(" ".join(words))["input_ids"]) < n_tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    return " ".join(words[:-1])


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    import torch

    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.propagate.propagation import add_flow, add_rollout
    from attn_desktop.core.report import ReportOptions, build_report, parse_redact

    torch.set_num_threads(2)
    loaded = load_model("demo")
    for n in (128, 512):
        text = text_of(loaded.tokenizer, n)
        holder = {}

        def run_analysis(text=text, holder=holder):
            an = analyze(loaded, text)
            add_rollout(an, 0.5, "mean", 0)
            add_flow(an, [0], 0.5, "mean")
            holder["an"] = an

        t_analysis = best(run_analysis, 3)
        an = holder["an"]
        cases = {"plain": ReportOptions(), "redacted words": ReportOptions(redaction=parse_redact("words")),
                 "by words": ReportOptions(words=True)}
        print(f"{len(an.tokens)} tokens: analysis (capture, rollout, 1 flow row) {t_analysis:.2f} s")
        for name, opts in cases.items():
            size = {}

            def run_report(opts=opts, size=size, an=an):
                size["bytes"] = len(build_report(an, opts).encode("utf-8"))

            t = best(run_report, 3)
            print(f"  report {name:15s} {t:.2f} s = {t / t_analysis:.2f} x the analysis, "
                  f"{size['bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
