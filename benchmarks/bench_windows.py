"""Windowed analysis of a long legal text on the demo model (512 positions), in one run.

Prints: the document's tokens and windows; the windowed analysis' time against plain analyses of
the same windows' texts one by one (the cost of planning, tokenizing the document and assembling,
as a ratio); the size of the session against the naive alternative (one [L, H, N, N] float16
attention over the whole document, which the model cannot even compute); save and reopen times;
and the time to build one window's view (what a window switch costs before the views redraw).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from attn_desktop.core import windows
from attn_desktop.core.model.loading import load_model
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.store.session import load_session, save_session

CLAUSES = [
    "The Tenant shall pay the Rent in advance on the first day of each month, without deduction or set-off.",
    "If any Rent remains unpaid fourteen days after it falls due, interest accrues at four percent above base rate.",
    "The Landlord shall keep the structure and exterior of the Property in good repair; the Tenant shall keep "
    "the interior clean and in good decorative order.",
    "The Tenant shall not assign, underlet or part with possession of the whole or any part of the Property "
    "without the prior written consent of the Landlord, such consent not to be unreasonably withheld.",
    "Either party may terminate this Lease by giving not less than three months' written notice to the other, "
    "expiring on the last day of a rental period.",
    "The Deposit is held under an authorised scheme and returned within ten days of the end of the tenancy, "
    "less any sums properly deducted for damage, unpaid Rent or cleaning.",
]


def document(loaded, windows_long: float = 3.0) -> str:
    parts, k = [], 0
    while len(windows.document_tokens(loaded, " ".join(parts))[0]) < windows_long * loaded.max_positions:
        parts.append(f"{k + 1}. " + CLAUSES[k % len(CLAUSES)] + ("\n\n" if k % 4 == 3 else ""))
        k += 1
    return " ".join(parts)


def main() -> None:
    loaded = load_model("demo")
    text = document(loaded)
    an = analyze(loaded, text, windows={})  # warm-up: the first 512-position runs are slower
    info = an.manifest["windows"]
    texts = [text[e["char_start"]:e["char_end"]] for e in info["windows"]]
    windowed, plain = [], []
    for _ in range(3):  # alternated, medians: the machine is shared
        t0 = time.perf_counter()
        an = analyze(loaded, text, windows={})
        windowed.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for part in texts:
            analyze(loaded, part)
        plain.append(time.perf_counter() - t0)
    windowed, plain = statistics.median(windowed), statistics.median(plain)
    n_doc, count = info["document_tokens"], len(info["windows"])
    L, H = an.num_layers, an.num_heads
    print(f"document: {len(text)} characters, {n_doc} tokens; {count} windows of at most {info['size']} "
          f"positions, stride {info['stride']}")
    print(f"windowed analysis {windowed:.2f} s; plain analyses of the same window texts {plain:.2f} s; "
          f"ratio {windowed / plain:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lease.attn"
        t0 = time.perf_counter()
        save_session(an, path)
        saved = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = load_session(path)
        opened = time.perf_counter() - t0
        size = path.stat().st_size
    naive = L * H * (n_doc + 2) ** 2 * 2
    print(f"session {size / 1e6:.1f} MB (window_attentions {an.arrays['window_attentions'].nbytes / 1e6:.1f} MB); "
          f"one whole-document [L, H, N, N] float16 array would be {naive / 1e6:.1f} MB "
          f"(ratio {size / naive:.2f}); save {saved:.2f} s, reopen {opened:.2f} s")
    t0 = time.perf_counter()
    for k in range(count):
        windows.window_view(back, k)
    print(f"window view: {(time.perf_counter() - t0) / count * 1000:.2f} ms per window")


if __name__ == "__main__":
    main()
