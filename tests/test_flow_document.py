"""Flow at document scale: the int64 max-flow kernel, the kept worker processes
(core.propagate.flow_pool), and the jobs core refuses (core.propagate.flow_cost). Values are
checked against networkx's floating-point maximum flow or a plain scipy loop over the whole
graph, both written here."""

import re
import time

import networkx as nx
import numpy as np
import psutil
import pytest
from scipy import sparse
from scipy.sparse.csgraph import maximum_flow

import attn_desktop.core.propagate.flow as flow_module
from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.propagate import flow_cost
from attn_desktop.core.propagate.flow import attention_flow
from attn_desktop.core.propagate.flow_pool import FlowPool
from attn_desktop.core.propagate.propagation import add_flow
from attn_desktop.core.propagate.rollout import residual_normalise


def random_hat(seed, layers, n, causal=False, sparse_=False, temperature=2.0):
    rng = np.random.default_rng(seed)
    weights = np.exp(rng.normal(size=(layers, n, n)) * temperature)
    if causal:
        weights = np.tril(weights)
    if sparse_:
        weights[rng.random(weights.shape) < 0.5] = 0
    sums = weights.sum(-1, keepdims=True)
    weights = np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)
    return residual_normalise(weights.astype(np.float32), 0.5).astype(np.float64)


def networkx_row(hat, i):
    layers, n, _ = hat.shape
    graph = nx.DiGraph()
    for layer in range(1, layers + 1):
        for a, b in zip(*np.nonzero(hat[layer - 1]), strict=True):
            graph.add_edge((layer, a), (layer - 1, b), capacity=float(hat[layer - 1][a, b]))
    if (layers, i) not in graph:
        return np.zeros(n)
    return np.array([nx.maximum_flow_value(graph, (layers, i), (0, j)) if (0, j) in graph else 0.0
                     for j in range(n)])


def scipy_row(hat, i):
    """A plain loop of scipy Dinic solves over the whole graph (scale 2^30, rounded)."""
    layers, n, _ = hat.shape
    heads, tails, caps = [], [], []
    for layer in range(1, layers + 1):
        a, b = np.nonzero(hat[layer - 1])
        heads.append(layer * n + a)
        tails.append((layer - 1) * n + b)
        caps.append(np.floor(hat[layer - 1][a, b] * 2**30))
    size = (layers + 1) * n
    graph = sparse.csr_matrix((np.concatenate(caps).astype(np.int32),
                               (np.concatenate(heads), np.concatenate(tails))), shape=(size, size))
    return np.array([maximum_flow(graph, layers * n + i, j).flow_value / 2**30 for j in range(n)])


def random_graph(rng, size, arcs):
    """CSR arrays of a random graph with int64 capacities (parallel arcs and self-loops left out)."""
    pairs = {(int(u), int(v)) for u, v in rng.integers(0, size, (arcs, 2)) if u != v}
    heads, tails = (np.array(x, np.int64) for x in zip(*sorted(pairs), strict=True))
    caps = rng.integers(1, 10**12, heads.size).astype(np.int64)
    indptr = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(heads, minlength=size), out=indptr[1:])
    return indptr, heads, tails, caps


@pytest.mark.parametrize("seed", range(6))
def test_max_flow_kernel_matches_networkx_from_nothing_and_from_a_warm_start(seed):
    from attn_desktop.core.propagate.maxflow import max_flow

    rng = np.random.default_rng(seed)
    size = int(rng.integers(6, 40))
    indptr, heads, tails, caps = random_graph(rng, size, size * int(rng.integers(2, 6)))
    graph = nx.DiGraph()
    graph.add_nodes_from(range(size))
    graph.add_weighted_edges_from(zip(heads.tolist(), tails.tolist(), caps.tolist(), strict=True),
                                  weight="capacity")
    expected = nx.maximum_flow_value(graph, 0, size - 1)
    # A warm start: a maximum flow under halved capacities is feasible under the real ones.
    half = np.zeros(caps.size, np.int64)
    max_flow(indptr, tails, caps // 2, half, 0, size - 1)
    for flow in (np.zeros(caps.size, np.int64), half):
        value, side = max_flow(indptr, tails, caps, flow, 0, size - 1)
        assert value == expected
        assert ((flow >= 0) & (flow <= caps)).all()
        net = np.bincount(heads, flow, size) - np.bincount(tails, flow, size)
        assert (net[1:-1] == 0).all() and net[0] == value
        assert side[0] and not side[-1]
        crossing = side[heads] & ~side[tails]
        assert caps[crossing].sum() == value  # the returned side is a minimum cut


@pytest.mark.parametrize("causal,sparse_", [(False, False), (True, False), (False, True)])
def test_rounding_no_longer_limits_the_certificate(causal, sparse_):
    # int64 capacities at 2^50: the certified error is the candidate graph's, far under the
    # int32 solves' (n · 2^-30 per value, about 1e-6 at n = 2048).
    hat = random_hat(4, 4, 14, causal=causal, sparse_=sparse_, temperature=0.7)
    rows = [13, 6]
    result = attention_flow(hat, rows)
    for pos, i in enumerate(rows):
        expected = networkx_row(hat, i)
        assert np.abs(result.raw[pos] - expected).max() <= 1e-9
        assert (np.abs(result.raw[pos] - expected) <= result.error_bound[pos] + 1e-12).all()
    assert result.exact and result.max_abs_error_bound <= 1e-9


def test_float32_capacities_are_used_as_they_are_and_certified():
    # The compute process passes float32 matrices: the network keeps them (no float64 copy,
    # half the memory at long lengths) and every sum is taken in float64.
    hat32 = random_hat(5, 4, 30, causal=True).astype(np.float32)
    assert flow_module._Network(hat32).hat is hat32
    rows = [29, 4]
    result = attention_flow(hat32, rows)
    for pos, i in enumerate(rows):
        expected = networkx_row(hat32.astype(np.float64), i)
        assert np.abs(result.raw[pos] - expected).max() <= 1e-9
    assert result.exact and result.max_abs_error_bound <= 1e-9


def test_first_solve_alone_certifies_most_sinks_and_matches_a_scipy_loop():
    hat = random_hat(9, 5, 60, temperature=2.5)
    result = attention_flow(hat, [3])
    np.testing.assert_allclose(result.raw[0], scipy_row(hat, 3), atol=60 / 2**30 + 1e-6, rtol=0)
    assert result.exact and result.solves < 1.3 * 60


@pytest.fixture(scope="module")
def pool():
    kept = FlowPool(2)
    yield kept
    kept.close()


def test_pool_equals_one_process_and_reloads_for_other_matrices(pool):
    first, second = random_hat(1, 4, 40), random_hat(2, 4, 40, causal=True)
    for hat in (first, second, first):
        alone = attention_flow(hat, [0, 39])
        shared = attention_flow(hat, [0, 39], pool=pool)
        assert np.abs(shared.raw - alone.raw).max() <= (shared.error_bound + alone.error_bound).max() + 1e-12
        assert shared.exact
    workers = [p for p in psutil.Process().children() if "python" in p.name().lower()]
    assert len(workers) >= 2


def test_pool_cancel_keeps_it_usable(pool):
    hat = random_hat(3, 4, 64)
    calls = []
    with pytest.raises(Cancelled):
        attention_flow(hat, [1, 2, 3], pool=pool, cancel=lambda: calls.append(1) or len(calls) > 1)
    np.testing.assert_allclose(attention_flow(hat, [5], pool=pool).raw, attention_flow(hat, [5]).raw,
                               atol=1e-6, rtol=0)


def test_the_compute_process_splits_rows_over_workers_that_end_with_it(demo_model):
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.propagate.compute_process import ComputeProcess

    text = " ".join(["The lessee shall pay the rent when due and keep the premises in repair."] * 8)
    an = analyze(demo_model, text)
    assert len(an.tokens) >= 96  # long enough for the workers
    here = Analysis(text=an.text, tokens=an.tokens, arrays={"attentions": an.arrays["attentions"]},
                    manifest={"model": dict(an.manifest["model"])})
    add_flow(here, [0, 40])
    compute = ComputeProcess()
    try:
        there = Analysis(text=an.text, tokens=an.tokens, arrays={"attentions": an.arrays["attentions"]},
                         manifest={"model": dict(an.manifest["model"])})
        assert compute.add_flow(there, [0, 40]) == [0, 40]
        workers = psutil.Process(compute.pid).children()
        assert len(workers) >= 2 or psutil.cpu_count() == 1
    finally:
        compute.close()
    np.testing.assert_array_equal(there.arrays["flow_rows"], here.arrays["flow_rows"])
    bound = here.manifest["methods"]["flow"]["max_abs_error_bound_normalised"]
    bound += there.manifest["methods"]["flow"]["max_abs_error_bound_normalised"]
    assert np.abs(there.arrays["flow"] - here.arrays["flow"]).max() <= bound + 1e-6
    deadline = time.monotonic() + 10
    while any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        assert time.monotonic() < deadline, "flow workers outlived the compute process"
        time.sleep(0.1)


def long_analysis(n, layers):
    """An analysis of n tokens whose attention is a broadcast view (no memory behind it)."""
    att = np.broadcast_to(np.full((1, 1, 1, 1), 1.0 / n, np.float32), (layers, 2, n, n))
    return Analysis(text="x " * n, tokens=["x"] * n, arrays={"attentions": att},
                    manifest={"model": {"kind": "encoder"}})


def test_flow_that_cannot_fit_is_refused_before_anything_changes():
    an = long_analysis(8192, 12)
    an.arrays["flow"], an.arrays["flow_rows"] = np.ones((1, 8192), np.float32), np.array([0])
    an.manifest["methods"] = {"flow": {"alpha": 0.5, "head_fusion": "max", "rows": [0]}}
    with pytest.raises(UserError, match="memory"):
        add_flow(an, [5], 0.5, "mean")
    assert an.manifest["methods"]["flow"]["head_fusion"] == "max" and "flow" in an.arrays
    with pytest.raises(UserError, match="not started"):
        add_flow(long_analysis(2048, 12), range(2048))


def test_plan_figures():
    small = flow_cost.plan(6, 512, 1)
    assert small.refusal is None and small.rows == 1 and small.workers == 1
    assert flow_cost.plan(6, 512, 512).seconds == pytest.approx(512 * small.seconds)
    assert flow_cost.plan(12, 2048, 1).refusal is None  # one row is always offered when it fits
    assert flow_cost.plan(12, 4096, 1).refusal is None  # float32 network: 1.1 GB
    big = flow_cost.plan(12, 8192, 1)
    assert big.memory_bytes > flow_cost.MEMORY_LIMIT_BYTES and "GB" in big.refusal
    assert flow_cost.pair_seconds(12, 8192) > flow_cost.pair_seconds(12, 4096) > flow_cost.pair_seconds(12, 512)
    assert flow_cost.duration(5) == "5.0 s" and flow_cost.duration(3 * 3600 + 600) == "3 h 10 min"
    assert "512 rows at 512 tokens" in flow_cost.plan(6, 512, 512, 2).describe()


def test_the_command_line_says_the_estimate_and_ends_at_once_on_ctrl_c(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    clause = (Path(__file__).resolve().parents[1] / "resources/samples/02_contract_clause.txt").read_text()
    text = tmp_path / "contract.txt"
    text.write_text("\n".join([clause.strip()] * 6), encoding="utf-8")
    command = [sys.executable, "-m", "attn_desktop", "analyze", "--model", "demo", "--text-file", str(text),
               "--methods", "attention,flow", "--flow-rows", "all", "--out", str(tmp_path / "out.attn")]
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        line = ""
        while "attention flow:" not in line:
            line = process.stderr.readline()
            assert line, "the command ended before its flow estimate"
        assert re.search(r"attention flow: \d+ rows at \d+ tokens, estimated about \d+ min", line)
        workers = psutil.Process(process.pid).children()
        deadline = time.monotonic() + 30
        while len(psutil.Process(process.pid).children()) < len(workers) + 2:  # the flow workers
            assert time.monotonic() < deadline, "no flow workers started"
            time.sleep(0.1)
        workers = psutil.Process(process.pid).children()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl+C in the terminal reaches the whole group
        assert process.wait(20) == 130
        time.sleep(1.0)
        assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
        assert not (tmp_path / "out.attn").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
