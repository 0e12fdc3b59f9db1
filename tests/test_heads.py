"""core.propagate.heads against an independent, loop-based numpy computation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_desktop.core.propagate import heads


def random_attention(rng, layers, nheads, n, causal=False, keys=None):
    keys = n if keys is None else keys
    logits = rng.normal(size=(layers, nheads, n, keys)) * rng.uniform(0.1, 4.0)
    if causal:
        logits = np.where(np.tril(np.ones((n, n), bool)), logits, -np.inf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float16)


def reference(att, causal):
    att = att.astype(np.float64)
    layers, nheads, q, k = att.shape
    entropy = np.zeros((layers, nheads))
    share = np.zeros((layers, nheads))
    top = np.zeros((layers, nheads), int)
    for li in range(layers):
        for h in range(nheads):
            ents, cols, count = [], np.zeros(k), 0
            for i in range(q):
                support = i + 1 if causal else k
                if support < 2:
                    continue
                row = att[li, h, i]
                ents.append(-sum(p * math.log(p) for p in row if p > 0) / math.log(support))
                cols += row
                count += 1
            entropy[li, h] = min(max(np.mean(ents), 0.0), 1.0)
            cols /= count
            top[li, h] = int(np.argmax(cols))
            share[li, h] = cols[top[li, h]]
    return entropy, top, share


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    layers=st.integers(1, 3),
    nheads=st.integers(1, 4),
    n=st.integers(2, 24),
    causal=st.booleans(),
)
def test_diagnostics_match_reference(seed, layers, nheads, n, causal):
    att = random_attention(np.random.default_rng(seed), layers, nheads, n, causal)
    d = heads.head_diagnostics(att, causal=causal, chunk=5)
    entropy, top, share = reference(att, causal)
    np.testing.assert_allclose(d.entropy, entropy, atol=1e-9)
    np.testing.assert_allclose(d.top_share, share, atol=1e-9)
    # float16 ties make argmax ambiguous: the chosen position must carry the reference share
    rows = att.astype(np.float64)[:, :, 1:] if causal else att.astype(np.float64)
    chosen = np.take_along_axis(rows.mean(2), d.top_position[..., None], -1)[..., 0]
    np.testing.assert_allclose(chosen, share, atol=1e-9)
    assert top.shape == d.top_position.shape


def test_causal_is_detected():
    rng = np.random.default_rng(5)
    assert heads.is_causal(random_attention(rng, 1, 2, 6, causal=True))
    assert not heads.is_causal(random_attention(rng, 1, 2, 6, causal=False))
    assert heads.head_diagnostics(random_attention(rng, 1, 2, 6, causal=True)).causal


def test_rectangular_attention_is_not_causal():
    att = random_attention(np.random.default_rng(0), 2, 3, 4, keys=7)
    d = heads.head_diagnostics(att)
    entropy, _, share = reference(att, causal=False)
    assert not d.causal
    np.testing.assert_allclose(d.entropy, entropy, atol=1e-9)
    np.testing.assert_allclose(d.top_share, share, atol=1e-9)


def test_flags_uniform_and_single_position_heads():
    n = 10
    att = random_attention(np.random.default_rng(1), 1, 3, n)
    att[0, 0] = 1.0 / n  # uniform
    att[0, 1] = 0.0
    att[0, 1, :, 0] = 1.0  # everything on position 0 ([CLS])
    d = heads.head_diagnostics(att)
    assert d.diffuse[0].tolist() == [True, False, False]
    assert d.single_position[0].tolist() == [False, True, False]
    assert d.top_position[0, 1] == 0
    assert d.entropy[0, 0] == pytest.approx(1.0, abs=1e-3)
    assert d.entropy[0, 1] == pytest.approx(0.0)


def test_causal_uniform_head_is_diffuse():
    n = 12
    tril = np.tril(np.ones((n, n)))
    att = (tril / tril.sum(1, keepdims=True))[None, None].astype(np.float32)
    d = heads.head_diagnostics(att)
    assert d.causal
    assert d.entropy[0, 0] == pytest.approx(1.0, abs=1e-3)
    assert d.diffuse[0, 0]


def test_row_entropy_matches_reference():
    att = random_attention(np.random.default_rng(2), 1, 2, 9, causal=True)
    h = heads.row_entropy(att)
    assert np.isnan(h[..., 0]).all()
    p = att.astype(np.float64)[0, 1, 5, :6]
    expected = -(p[p > 0] * np.log(p[p > 0])).sum() / np.log(6)
    assert h[0, 1, 5] == pytest.approx(expected)


@pytest.mark.parametrize("how,fn", [("mean", np.mean), ("max", np.max), ("min", np.min)])
def test_aggregate_heads_matches_numpy(how, fn):
    att = random_attention(np.random.default_rng(3), 2, 5, 8)
    got = heads.aggregate_heads(att[1], how)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, fn(att[1].astype(np.float32), axis=0), rtol=1e-6)
    np.testing.assert_allclose(heads.aggregate_row(att[1], 3, how), got[3], rtol=1e-6)


def test_aggregate_rejects_unknown():
    with pytest.raises(ValueError):
        heads.aggregate_heads(np.zeros((2, 3, 3)), "median")
