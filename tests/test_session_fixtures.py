"""Session files written by earlier versions stay readable: they are kept here as fixtures, and a
format change that breaks one of them breaks this test (as glue does for its session files)."""

from pathlib import Path

import numpy as np
import pytest

from attn_desktop.core.store.session import load_session

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["v1-bert.attn", "v1-bart.attn"])
def test_schema_1_fixtures_still_load(name):
    analysis = load_session(FIXTURES / name)
    assert analysis.manifest["schema_version"] == 1
    assert analysis.text == "The tenant shall pay the rent."
    for set_name in analysis.attention_set_names():
        att = analysis.attention(set_name).astype(np.float32)
        q, k = analysis.axis_tokens(set_name)
        assert att.shape[2:] == (len(q), len(k))
        np.testing.assert_allclose(att.sum(-1), 1.0, atol=5e-3)
    assert analysis.arrays["rollout"].shape[1:] == (len(analysis.tokens),) * 2
    for t in analysis.tokens:
        assert t.special or analysis.text[t.start:t.end] == t.text


def test_schema_1_fixture_with_flow_rows():
    analysis = load_session(FIXTURES / "v1-bert.attn")
    assert list(analysis.arrays["flow_rows"]) == [0, 3]
    np.testing.assert_allclose(analysis.arrays["flow"].sum(-1), 1.0, atol=1e-5)
    assert analysis.manifest["methods"]["flow"]["exact"] is True


def test_schema_2_fixture_opens_with_its_view():
    analysis = load_session(FIXTURES / "v2-bert.attn")
    assert analysis.manifest["schema_version"] == 2
    assert analysis.text == "The tenant shall pay the rent."
    assert analysis.manifest["view"] == {"measure": "rollout", "layer": 1, "head": "mean", "focus": 3,
                                         "attention_set": "self", "alpha": 0.5, "start_layer": 0,
                                         "scroll": {"x": 0, "y": 0}}
    att = analysis.attention("self").astype(np.float32)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=5e-3)
    assert list(analysis.arrays["flow_rows"]) == [0, 3]
    assert analysis.arrays["rollout"].shape == (2, len(analysis.tokens), len(analysis.tokens))
    assert all(t.piece is not None for t in analysis.tokens)


PER_TOKEN = ("saliency", "grad_input", "integrated_gradients", "grad_rollout", "loo",
             "attention_importance", "rollout_importance", "flow_importance")


def test_schema_2_fixture_with_explanations_and_heads():
    """Written by the explanation and heads stages of this version (tiny GPT-2, 2 generated tokens)."""
    analysis = load_session(FIXTURES / "v2-gpt2-explain.attn")
    n, (layers, heads) = len(analysis.tokens), analysis.attention("self").shape[:2]
    for name in PER_TOKEN:
        assert analysis.arrays[name].shape == (n,), name
    for name in ("head_importance", "head_importance_grad", "head_entropy"):
        assert analysis.arrays[name].shape == (layers, heads), name
    assert analysis.arrays["layer_importance"].shape == (layers,)
    assert analysis.arrays["layer_smoothing"].shape == (layers + 1,)
    assert {"target", "verdict", "agreement"} <= set(analysis.manifest["explain"])
    assert "sets" in analysis.manifest["heads"]
    assert sum(t.generated for t in analysis.tokens) == 2


def test_schema_2_fixture_of_an_encoder_decoder_with_heads():
    analysis = load_session(FIXTURES / "v2-bart-heads.attn")
    layers, heads = analysis.attention("encoder").shape[:2]
    dec_layers = analysis.attention("decoder").shape[0]
    for prefix, depth in (("encoder_", layers), ("decoder_", dec_layers), ("cross_", dec_layers)):
        assert analysis.arrays[prefix + "head_importance"].shape == (depth, heads)
        assert analysis.arrays[prefix + "layer_importance"].shape == (depth,)
    assert analysis.arrays["decoder_layer_smoothing"].shape == (dec_layers + 1,)
    assert analysis.manifest["view"]["set_name"] == "cross"
