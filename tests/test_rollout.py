"""Rollout against plain numpy loops written here, and its encoder-decoder properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_desktop.core.errors import Cancelled
from attn_desktop.core.propagate.rollout import (
    cumulative_rollout,
    fuse_heads,
    fused_hat,
    residual_normalise,
    rollout,
    rollout_encoder_decoder,
    rollout_row,
)


def attention(seed, layers, heads, queries, keys=None, causal=False, temperature=2.0):
    rng = np.random.default_rng(seed)
    keys = queries if keys is None else keys
    logits = rng.normal(size=(layers, heads, queries, keys)) * temperature
    if causal:
        logits = np.where(np.tril(np.ones((queries, keys), bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def plain_rollout(att, alpha, fusion, start_layer=0):
    """Abnar & Zuidema's recipe, one step at a time, in float64."""
    att = att.astype(np.float64)
    if fusion == "mean":
        fused = att.mean(axis=1)
    elif fusion == "max":
        fused = att.max(axis=1)
    elif fusion == "min":
        fused = att.min(axis=1)
    else:
        fused = att[:, fusion]
    n = fused.shape[-1]
    results, joint = [], None
    for layer in range(start_layer, fused.shape[0]):
        a = alpha * fused[layer] + (1 - alpha) * np.eye(n)
        a = a / a.sum(axis=-1, keepdims=True)
        joint = a if joint is None else a @ joint
        results.append(joint)
    return np.stack(results)


shapes = st.tuples(
    st.integers(0, 10_000),  # seed
    st.integers(1, 5),  # layers
    st.integers(1, 4),  # heads
    st.integers(1, 12),  # tokens
    st.booleans(),  # causal
)


@settings(max_examples=60, deadline=None)
@given(shapes, st.floats(0.0, 1.0), st.sampled_from(["mean", "max", "min", 0]), st.data())
def test_rollout_matches_plain_loop_and_rows_sum_to_one(shape, alpha, fusion, data):
    seed, layers, heads, n, causal = shape
    att = attention(seed, layers, heads, n, causal=causal)
    start = data.draw(st.integers(0, layers - 1))
    got = rollout(att, alpha, fusion, start_layer=start)
    assert got.dtype == np.float32 and got.shape == (layers - start, n, n)
    np.testing.assert_allclose(got, plain_rollout(att, alpha, fusion, start), atol=2e-6)
    np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=2e-6)
    assert (got >= 0).all()
    if causal:
        assert np.allclose(np.triu(got, 1), 0)


@settings(max_examples=40, deadline=None)
@given(shapes, st.floats(0.05, 1.0), st.data())
def test_rollout_row_is_a_row_of_the_cumulative_rollout(shape, alpha, data):
    seed, layers, heads, n, causal = shape
    att = attention(seed, layers, heads, n, causal=causal)
    row = data.draw(st.integers(0, n - 1))
    start = data.draw(st.integers(0, layers - 1))
    full = rollout(att, alpha, "mean", start_layer=start)
    np.testing.assert_allclose(rollout_row(att, row, alpha, "mean", start), full[:, row], atol=2e-6)
    hat = fused_hat(att, alpha, "mean")
    np.testing.assert_allclose(rollout_row(hat, row, start_layer=start), full[:, row], atol=2e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_rollout_row_with_long_stacks(causal):
    # 12 layers stack up to 11 chains: covers the vector, padded and plain product paths
    att = attention(3, 12, 2, 40, causal=causal)
    full = rollout(att)
    for row in (0, 17, 39):
        np.testing.assert_allclose(rollout_row(att, row), full[:, row], atol=2e-6)


def test_float16_input_and_one_layer_is_hat():
    att = attention(1, 1, 3, 9).astype(np.float16)
    got = rollout(att, 0.5, "max")
    np.testing.assert_allclose(got[0], residual_normalise(fuse_heads(att, "max"))[0], atol=0)
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-6)


def test_fuse_heads_choices():
    att = attention(2, 2, 4, 5)
    np.testing.assert_allclose(fuse_heads(att, "mean"), att.mean(1), atol=1e-7)
    np.testing.assert_array_equal(fuse_heads(att, "max"), att.max(1))
    np.testing.assert_array_equal(fuse_heads(att, "min"), att.min(1))
    np.testing.assert_array_equal(fuse_heads(att, 2), att[:, 2])
    np.testing.assert_array_equal(fuse_heads(att, -1), att[:, 3])
    with pytest.raises(ValueError):
        fuse_heads(att, 4)
    with pytest.raises(ValueError):
        fuse_heads(att, "median")
    with pytest.raises(ValueError):
        fuse_heads(att[0], "mean")


def test_residual_normalise_extremes_and_checks():
    fused = fuse_heads(attention(4, 2, 2, 6), "mean")
    np.testing.assert_allclose(
        residual_normalise(fused, 0.0), np.broadcast_to(np.eye(6), (2, 6, 6))
    )
    np.testing.assert_allclose(
        residual_normalise(fused, 1.0), fused / fused.sum(-1, keepdims=True), atol=1e-7
    )
    zero_row = fused.copy()
    zero_row[0, 2] = 0
    assert (residual_normalise(zero_row, 1.0)[0, 2] == 0).all()
    with pytest.raises(ValueError):
        residual_normalise(fused, 1.5)
    with pytest.raises(ValueError):
        residual_normalise(fused[:, :, :3])


def test_progress_and_cancel():
    att = attention(5, 4, 2, 6)
    seen = []
    rollout(att, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (4, 4)
    with pytest.raises(Cancelled):
        rollout(att, cancel=lambda: True)
    with pytest.raises(Cancelled):
        rollout_row(att, 0, cancel=lambda: True)


def test_cumulative_rollout_checks_start_layer():
    with pytest.raises(ValueError):
        cumulative_rollout(fused_hat(attention(0, 2, 1, 3)), start_layer=2)
    with pytest.raises(ValueError):
        rollout_row(attention(0, 2, 1, 3), row=3)


def block_encoder_decoder(enc, dec, cross, alpha):
    """The same rollout written as products of (t + s) × (t + s) block operators acting on
    the joint state [[R_dd, R_ds], [0, R_ee]] of decoder and (final) encoder tokens."""
    r_ee = plain_rollout(enc, alpha, "mean")[-1]
    t, s = dec.shape[-1], enc.shape[-1]
    fused_cross = cross.astype(np.float64).mean(axis=1)
    state = np.block([[np.eye(t), np.zeros((t, s))], [np.zeros((s, t)), r_ee]])
    outputs = []
    for layer in range(dec.shape[0]):
        a = alpha * dec[layer].astype(np.float64).mean(0) + (1 - alpha) * np.eye(t)
        a /= a.sum(-1, keepdims=True)
        self_op = np.block([[a, np.zeros((t, s))], [np.zeros((s, t)), np.eye(s)]])
        cross_op = np.block(
            [[(1 - alpha) * np.eye(t), alpha * fused_cross[layer]], [np.zeros((s, t)), np.eye(s)]]
        )
        state = cross_op @ self_op @ state
        outputs.append(state[:t].copy())
    return r_ee, outputs


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 7),
    st.integers(1, 7),
    st.floats(0.0, 1.0),
)
def test_encoder_decoder_rollout(seed, enc_layers, dec_layers, s, t, alpha):
    enc = attention(seed, enc_layers, 2, s)
    dec = attention(seed + 1, dec_layers, 2, t, causal=True)
    cross = attention(seed + 2, dec_layers, 2, t, s)
    out = rollout_encoder_decoder(enc, dec, cross, alpha)
    assert out["encoder"].shape == (enc_layers, s, s)
    assert out["decoder"].shape == (dec_layers, t, t)
    assert out["decoder_to_source"].shape == (dec_layers, t, s)
    for key in ("encoder", "decoder", "decoder_to_source", "source_share"):
        assert (out[key] >= 0).all()
    joint = np.concatenate([out["decoder"], out["decoder_to_source"]], axis=-1)
    np.testing.assert_allclose(joint.sum(-1), 1.0, atol=2e-6)
    np.testing.assert_allclose(out["source_share"], out["decoder_to_source"].sum(-1), atol=1e-6)
    np.testing.assert_allclose(out["source_share"][-1], 1 - (1 - alpha) ** dec_layers, atol=2e-6)
    r_ee, blocks = block_encoder_decoder(enc, dec, cross, alpha)
    np.testing.assert_allclose(out["encoder"][-1], r_ee, atol=2e-6)
    for layer, block in enumerate(blocks):
        np.testing.assert_allclose(joint[layer], block, atol=2e-6)
    assert np.allclose(np.triu(out["decoder"], 1), 0)  # causal decoder stays causal


def test_encoder_decoder_without_attention_mixing_keeps_identity():
    enc, dec, cross = (
        attention(0, 2, 2, 4),
        attention(1, 2, 2, 3, causal=True),
        attention(2, 2, 2, 3, 4),
    )
    out = rollout_encoder_decoder(enc, dec, cross, alpha=0.0)
    np.testing.assert_allclose(out["decoder"][-1], np.eye(3))
    np.testing.assert_allclose(out["decoder_to_source"][-1], 0)


def test_encoder_decoder_shape_mismatch():
    with pytest.raises(ValueError):
        rollout_encoder_decoder(
            attention(0, 1, 1, 4), attention(1, 2, 1, 3), attention(2, 1, 1, 3, 4)
        )
