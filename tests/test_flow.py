"""Attention flow against networkx's floating-point maximum flow, and its properties."""

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attn_desktop.core.propagate.flow as flow_module
from attn_desktop.core.errors import Cancelled
from attn_desktop.core.propagate.flow import EXACT_TOL, attention_flow
from attn_desktop.core.propagate.rollout import residual_normalise, rollout


def random_hat(seed, layers, n, causal=False, sparse=False, temperature=2.0, alpha=0.5):
    """Residual-normalised fused attention: softmax of Gaussian logits, optionally causal or
    with exact zeros."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(layers, n, n)) * temperature
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    if causal:
        weights = np.tril(weights)
    if sparse:
        weights[rng.random(weights.shape) < 0.5] = 0
    sums = weights.sum(axis=-1, keepdims=True)
    weights = np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)
    return residual_normalise(weights.astype(np.float32), alpha)


def networkx_graph(hat):
    layers, n, _ = hat.shape
    graph = nx.DiGraph()
    for layer in range(1, layers + 1):
        for a, b in zip(*np.nonzero(hat[layer - 1]), strict=True):
            graph.add_edge((layer, a), (layer - 1, b), capacity=float(hat[layer - 1][a, b]))
    return graph


def networkx_flow(graph, layers, i, j):
    source, sink = (layers, i), (0, j)
    if source not in graph or sink not in graph:
        return 0.0
    return nx.maximum_flow_value(graph, source, sink)


cases = st.tuples(
    st.integers(0, 10_000),  # seed
    st.integers(1, 4),  # layers
    st.integers(1, 12),  # tokens
    st.booleans(),  # causal
    st.booleans(),  # exact zeros
    st.floats(0.3, 6.0),  # logit temperature
    st.floats(0.1, 1.0),  # alpha
)


@settings(max_examples=30, deadline=None)
@given(cases, st.data())
def test_matches_networkx_float_max_flow(case, data):
    seed, layers, n, causal, sparse, temperature, alpha = case
    hat = random_hat(seed, layers, n, causal, sparse, temperature, alpha)
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3, unique=True))
    result = attention_flow(hat, rows)
    graph = networkx_graph(hat.astype(np.float64))
    for pos, i in enumerate(rows):
        expected = np.array([networkx_flow(graph, layers, i, j) for j in range(n)])
        assert np.abs(result.raw[pos] - expected).max() <= 1e-6
        assert (np.abs(result.raw[pos] - expected) <= result.error_bound[pos] + 1e-12).all()
    assert result.exact and result.max_abs_error_bound <= flow_module.DEFAULT_TOL


@settings(max_examples=30, deadline=None)
@given(cases)
def test_rows_sum_to_one_after_normalisation(case):
    seed, layers, n, causal, sparse, temperature, alpha = case
    result = attention_flow(
        random_hat(seed, layers, n, causal, sparse, temperature, alpha), range(n)
    )
    assert result.flow.dtype == np.float32 and result.flow.shape == (n, n)
    sums = result.flow.sum(axis=1)
    # a row is all zero only when its output token reaches no input at all
    np.testing.assert_allclose(sums[result.raw.sum(axis=1) > 0], 1.0, atol=1e-5)
    assert (result.flow >= 0).all()


@settings(max_examples=25, deadline=None)
@given(cases, st.data(), st.floats(0.01, 1.0))
def test_raising_a_capacity_never_lowers_a_flow(case, data, extra):
    seed, layers, n, causal, sparse, temperature, alpha = case
    hat = random_hat(seed, layers, n, causal, sparse, temperature, alpha).astype(np.float64)
    layer = data.draw(st.integers(0, layers - 1))
    a, b = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, n - 1))
    raised = hat.copy()
    raised[layer, a, b] += extra
    before, after = attention_flow(hat, range(n)), attention_flow(raised, range(n))
    # certified: after.raw ≥ true after ≥ true before ≥ before.raw − before.error_bound
    assert (after.raw >= before.raw - before.error_bound - 1e-12).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 12), st.booleans(), st.floats(0.1, 1.0))
def test_one_layer_flow_is_hat_and_rollout(seed, n, causal, alpha):
    hat = random_hat(seed, 1, n, causal=causal, alpha=alpha)
    result = attention_flow(hat, range(n))
    np.testing.assert_array_equal(result.raw, hat[0].astype(np.float64))
    assert result.max_abs_error_bound == 0.0
    rng = np.random.default_rng(seed)
    att = rng.random((1, 2, n, n)).astype(np.float32)
    att /= att.sum(-1, keepdims=True)
    one = rollout(att, alpha)[0]
    from attn_desktop.core.propagate.rollout import fused_hat

    np.testing.assert_allclose(attention_flow(fused_hat(att, alpha), range(n)).flow, one, atol=1e-6)


def test_realistic_size_against_networkx():
    hat = random_hat(7, 6, 48, temperature=2.5)
    result = attention_flow(hat, [5, 30])
    graph = networkx_graph(hat.astype(np.float64))
    for pos, i in enumerate([5, 30]):
        for j in (0, 5, 30, 47):
            assert abs(result.raw[pos, j] - networkx_flow(graph, 6, i, j)) <= 1e-6


def test_cut_growth_and_refinement_rounds(monkeypatch):
    # one seed arc per row and column and a tiny tolerance force candidate growth and
    # solves on the residual graph
    monkeypatch.setattr(flow_module, "_SEED_ARCS", 1)
    hat = random_hat(11, 5, 20, temperature=1.0)
    result = attention_flow(hat, [3], tol=1e-12)
    assert result.solves > 20
    assert result.max_abs_error_bound <= 1e-12
    graph = networkx_graph(hat.astype(np.float64))
    expected = [networkx_flow(graph, 5, 3, j) for j in range(20)]
    np.testing.assert_allclose(result.raw[0], expected, atol=1e-9, rtol=0)


def test_diagonal_heavy_min_fusion_cuts_in_the_middle():
    rng = np.random.default_rng(3)
    weights = rng.random((4, 16, 16)) ** 8  # mostly tiny off-diagonal arcs
    hat = residual_normalise((weights / weights.sum(-1, keepdims=True)).astype(np.float32), 0.1)
    result = attention_flow(hat, [2])
    graph = networkx_graph(hat.astype(np.float64))
    expected = [networkx_flow(graph, 4, 2, j) for j in range(16)]
    np.testing.assert_allclose(result.raw[0], expected, atol=1e-6, rtol=0)


def test_worker_processes_agree_with_one_process():
    hat = random_hat(5, 4, 40)
    one = attention_flow(hat, [0, 9], workers=1)
    two = attention_flow(hat, [0, 9], workers=2)
    np.testing.assert_allclose(two.raw, one.raw, atol=1e-6, rtol=0)
    assert two.exact


def test_progress_and_cancel():
    hat = random_hat(2, 3, 70)
    seen = []
    attention_flow(hat, [1, 2], progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (140, 140) and all(
        a[0] < b[0] for a, b in zip(seen[:-1], seen[1:], strict=True)
    )
    calls = []
    with pytest.raises(Cancelled):
        attention_flow(hat, [1], cancel=lambda: calls.append(1) or len(calls) > 3)


def test_not_exact_label_follows_the_bound():
    result = attention_flow(random_hat(1, 3, 10), [0], tol=0.5)
    assert result.exact == (result.max_abs_error_bound <= EXACT_TOL)


@pytest.mark.parametrize(
    "hat, rows",
    [
        (np.ones((2, 3, 4)), [0]),
        (np.ones((3, 3)), [0]),
        (-np.ones((2, 3, 3)), [0]),
        (np.full((2, 3, 3), np.nan), [0]),
        (np.ones((2, 3, 3)) / 3, [3]),
    ],
)
def test_rejects_bad_input(hat, rows):
    with pytest.raises(ValueError):
        attention_flow(hat, rows)
    with pytest.raises(ValueError):
        attention_flow(np.ones((2, 3, 3)) / 3, [0], tol=0)
