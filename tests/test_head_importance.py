"""Head ablation grids and gradient head importance, checked against independent computations:
forward hooks that zero (or scale) one head's slice of the context before the output projection,
without the capture engine."""

import numpy as np
import pytest
import torch

from attn_desktop.core.explain import head_importance as hi
from attn_desktop.core.explain.targets import resolve_target
from attn_desktop.core.model import capture
from attn_desktop.core.propagate.smoothing import layer_smoothing, mean_pairwise_cosine

TEXT = "The bank approved the loan after the river bank flooded."


def _setup(loaded, spec=None, decoder=None):
    ids = loaded.tokenizer(TEXT)["input_ids"]
    target = resolve_target(loaded, ids, spec or {"kind": "auto"}, decoder_ids=decoder)
    return ids, target, hi.target_scorer(loaded, target)


def _shapes(loaded):
    if loaded.is_encoder_decoder:
        return {"encoder": (loaded.num_layers, loaded.num_heads), "decoder": (loaded.num_decoder_layers, loaded.num_heads),
                "cross": (loaded.num_decoder_layers, loaded.num_heads)}
    return {"self": (loaded.num_layers, loaded.num_heads)}


def _output_projection(loaded, set_name, layer):
    """The module that receives the concatenated head outputs, and the head size."""
    m = loaded.model
    if m.config.model_type == "bert":
        att = (m.bert if hasattr(m, "bert") else m).encoder.layer[layer].attention
        return att.output.dense, att.self.attention_head_size
    if m.config.model_type == "gpt2":
        attn = m.transformer.h[layer].attn
        return attn.c_proj, attn.head_dim
    if m.config.model_type == "bart":
        stack = m.model.encoder if set_name == "encoder" else m.model.decoder
        lay = stack.layers[layer]
        att = lay.encoder_attn if set_name == "cross" else lay.self_attn
        return att.out_proj, att.head_dim
    raise AssertionError(m.config.model_type)


def _hooked_value(loaded, target, ids, set_name, layer, head, factor):
    """The target with one head's slice of the output projection's input multiplied by `factor`."""
    proj, d = _output_projection(loaded, set_name, layer)

    def pre(module, args):
        x = args[0].clone()
        x[..., head * d : (head + 1) * d] *= factor
        return (x,)

    handle = proj.register_forward_pre_hook(pre)
    try:
        batch = torch.tensor([ids])
        with torch.no_grad():
            return float(target.evaluate(loaded, batch, torch.ones_like(batch)))
    finally:
        handle.remove()


@pytest.mark.parametrize("kind", ["bert-cls", "gpt2"])
def test_grid_matches_hooks_and_single_forwards(loaded_models, kind):
    loaded = loaded_models(kind)
    ids, target, score = _setup(loaded)
    shapes = _shapes(loaded)
    grids = hi.ablation_grids(loaded, score, ids, shapes, batch_size=4)  # several batches
    L, H = shapes["self"]
    assert grids.head_change["self"].shape == (L, H) and grids.layer_change["self"].shape == (L,)
    assert grids.forwards == int(np.ceil((L * H + L) / 3))
    base = _hooked_value(loaded, target, ids, "self", 0, 0, 1.0)
    assert grids.value == pytest.approx(base, abs=1e-6)
    grid = grids.head_change["self"]
    assert np.abs(grid).max() > 1e-5  # the check below must be able to fail
    batch = torch.tensor([ids])
    for layer in range(L):
        for head in range(H):
            independent = _hooked_value(loaded, target, ids, "self", layer, head, 0.0) - base
            assert grid[layer, head] == pytest.approx(independent, abs=2e-6, rel=1e-4), (layer, head)
            mask = torch.ones(H)
            mask[head] = 0
            plan = capture.CapturePlan(sites=loaded.site_of, record=False,
                                       head_mask={capture.Site("self", layer): mask})
            with torch.no_grad():
                single = float(score(batch, torch.ones_like(batch), plan)) - base
            assert grid[layer, head] == pytest.approx(single, abs=2e-6, rel=1e-4)
    # a whole layer masked: every head's slice zeroed
    proj, d = _output_projection(loaded, "self", 1)
    handle = proj.register_forward_pre_hook(lambda m, a: (torch.zeros_like(a[0]),))
    try:
        with torch.no_grad():
            zeroed = float(target.evaluate(loaded, batch, torch.ones_like(batch))) - base
    finally:
        handle.remove()
    assert grids.layer_change["self"][1] == pytest.approx(zeroed, abs=2e-6, rel=1e-4)


def test_masking_nothing_reproduces_the_plain_forward_exactly(demo_model):
    loaded = demo_model
    ids, target, score = _setup(loaded, {"kind": "reference", "reference": "A flood at the river."})
    batch = torch.tensor([ids] * 3)
    am = torch.ones_like(batch)
    with torch.no_grad():
        plain = score(batch, am, None)
        ones = {capture.Site("self", layer): torch.ones(3, loaded.num_heads) for layer in range(loaded.num_layers)}
        masked = score(batch, am, capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=ones))
        single = {capture.Site("self", layer): torch.ones(loaded.num_heads) for layer in range(loaded.num_layers)}
        masked1 = score(batch[:1], am[:1], capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=single))
        plain1 = score(batch[:1], am[:1], None)
    assert torch.equal(plain, masked)
    assert torch.equal(plain1, masked1)


def test_per_row_masks_touch_only_their_row(demo_model):
    loaded = demo_model
    ids = loaded.tokenizer(TEXT, return_tensors="pt")["input_ids"]
    batch = ids.expand(2, -1)
    mask = torch.ones(2, loaded.num_heads)
    mask[1, 5] = 0
    plan = capture.CapturePlan(sites=loaded.site_of, head_mask={capture.Site("self", 3): mask})
    with torch.no_grad(), capture.active(plan):
        out = loaded.model(input_ids=batch).last_hidden_state
    rec = plan.records[capture.Site("self", 3)]
    assert torch.all(rec[1, 5] == 0) and torch.all(rec[0, 5] > 0)
    with torch.no_grad():
        plain = loaded.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(out[0:1], plain, atol=1e-5, rtol=0)
    assert (out[1] - plain[0]).abs().max() > 1e-4
    bad = capture.CapturePlan(sites=loaded.site_of, head_mask={capture.Site("self", 0): torch.ones(3, loaded.num_heads)})
    with pytest.raises(ValueError, match="batch of 2"), torch.no_grad(), capture.active(bad):
        loaded.model(input_ids=batch)


@pytest.mark.parametrize("kind", ["bert-cls", "gpt2"])
def test_gradient_matches_a_central_difference_through_hooks(loaded_models, kind):
    loaded = loaded_models(kind)
    ids, target, score = _setup(loaded)
    shapes = _shapes(loaded)
    value, grads = hi.gradient_importance(loaded, score, ids, shapes)
    assert value == pytest.approx(target.value, abs=1e-6)
    g = grads["self"]
    assert g.shape == shapes["self"] and g.max() > 0
    eps = 0.1  # float32 targets: a smaller step drowns the difference in rounding
    for layer, head in [(0, 1), (1, 2)]:
        up = _hooked_value(loaded, target, ids, "self", layer, head, 1 + eps)
        down = _hooked_value(loaded, target, ids, "self", layer, head, 1 - eps)
        assert g[layer, head] == pytest.approx(abs(up - down) / (2 * eps), rel=2e-2, abs=1e-6)
    assert all(p.requires_grad for p in loaded.model.parameters())  # restored
    assert all(p.grad is None for p in loaded.model.parameters())


def test_encoder_decoder_grids_for_each_set(loaded_models):
    loaded = loaded_models("bart")
    dec = [loaded.model.config.decoder_start_token_id] + loaded.tokenizer(text_target="the bank flooded")["input_ids"]
    ids, target, score = _setup(loaded, {"kind": "seq2seq-token", "position": 2}, decoder=dec)
    shapes = _shapes(loaded)
    grids = hi.ablation_grids(loaded, score, ids, shapes)
    assert set(grids.head_change) == {"encoder", "decoder", "cross"}
    base = grids.value
    for set_name, (layer, head) in [("encoder", (1, 2)), ("decoder", (0, 1)), ("cross", (1, 3))]:
        independent = _hooked_value(loaded, target, ids, set_name, layer, head, 0.0) - base
        assert grids.head_change[set_name][layer, head] == pytest.approx(independent, abs=2e-6, rel=1e-4)
    _, grads = hi.gradient_importance(loaded, score, ids, shapes)
    assert set(grads) == {"encoder", "decoder", "cross"}
    assert grads["cross"].max() > 0


def test_rank_agreement_and_selection_helpers():
    a = np.array([[0.1, 0.5], [0.3, 0.9]])
    r = hi.rank_agreement(a, a * 2 + 1)
    assert r["spearman"] == pytest.approx(1.0) and r["kendall_tau"] == pytest.approx(1.0)
    r = hi.rank_agreement(a, -a)
    assert r["spearman"] == pytest.approx(-1.0)
    assert hi.rank_agreement(a, np.ones_like(a))["spearman"] is None
    grids = [np.array([[0.001, -0.5], [0.02, 0.0]]), np.array([[-0.004, 0.1], [0.0, 0.002]])]
    assert hi.no_effect(grids, 0.01).tolist() == [[True, False], [False, True]]
    imp = np.array([[0.0, 0.1, 0.2], [0.05, 0.06, 0.9]])
    assert hi.least_important(imp, 3) == [(0, 0), (1, 0), (1, 1)]
    # never a layer's last head
    assert hi.least_important(np.array([[0.0, 0.01], [0.5, 0.6]]), 2) == [(0, 0), (1, 0)]
    assert hi.steepest_rise(np.array([0.1, 0.2, 0.6, 0.65])) == 2
    assert hi.steepest_rise(np.array([0.3])) is None


def test_smoothing_against_explicit_pairs():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(3, 5, 7))
    states[2] = states[2] * 0.1 + 1.0  # the last layer: every token near one direction
    expected = []
    for s in states:
        sims = [s[i] @ s[j] / np.linalg.norm(s[i]) / np.linalg.norm(s[j])
                for i in range(5) for j in range(5) if i != j]
        expected.append(np.mean(sims))
    curve = layer_smoothing(states)
    assert curve.dtype == np.float32
    np.testing.assert_allclose(curve, expected, atol=1e-6)
    assert hi.steepest_rise(curve) == 2
    assert np.isnan(mean_pairwise_cosine(np.ones((1, 4))))
