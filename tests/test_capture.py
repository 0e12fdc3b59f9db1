"""Captured attention against transformers' own eager output_attentions, an independent path."""

import numpy as np
import pytest
import torch

from attn_desktop.core.model import capture
from attn_desktop.core.model.loading import AUTO_CLASSES
from attn_desktop.core.pipeline import analyze

TEXT = "The bank approved the loan after the river bank flooded."
FP16_ATOL = 2e-3


def eager_reference(loaded, analysis):
    """Reload the same folder with transformers' eager attention and ask for output_attentions."""
    import transformers

    auto = getattr(transformers, AUTO_CLASSES[loaded.kind])
    model = auto.from_pretrained(loaded.path, attn_implementation="eager", local_files_only=True).eval()
    ids = torch.tensor([analysis.manifest["input_ids"]])
    kwargs = {}
    if "decoder_input_ids" in analysis.manifest:
        kwargs["decoder_input_ids"] = torch.tensor([analysis.manifest["decoder_input_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True, **kwargs)
    if loaded.is_encoder_decoder:
        return {
            "encoder_attentions": out.encoder_attentions,
            "decoder_attentions": out.decoder_attentions,
            "cross_attentions": out.cross_attentions,
        }
    return {"attentions": out.attentions}


def check_against(loaded, analysis):
    ref = eager_reference(loaded, analysis)
    assert set(ref) == set(analysis.arrays)
    for name, layers in ref.items():
        expected = torch.stack([a[0] for a in layers]).numpy()
        got = analysis.arrays[name]
        assert got.dtype == np.float16
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.astype(np.float32), expected, atol=FP16_ATOL, rtol=0)


def test_demo_matches_eager_output_attentions(demo_model):
    analysis = analyze(demo_model, TEXT)
    assert analysis.arrays["attentions"].shape == (6, 12, len(analysis.tokens), len(analysis.tokens))
    check_against(demo_model, analysis)
    rows = analysis.arrays["attentions"].astype(np.float32).sum(-1)
    np.testing.assert_allclose(rows, 1.0, atol=5e-3)


@pytest.mark.parametrize("kind", ["bert", "bert-cls", "bert-mlm", "gpt2", "llama", "bart", "t5"])
def test_every_kind_matches_eager(loaded_models, kind):
    loaded = loaded_models(kind)
    assert loaded.capture_mode == "attention-interface"
    analysis = analyze(loaded, TEXT)
    check_against(loaded, analysis)
    for name, att in analysis.arrays.items():
        np.testing.assert_allclose(att.astype(np.float32).sum(-1), 1.0, atol=5e-3, err_msg=name)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_future_positions_are_exactly_zero(loaded_models, kind):
    att = analyze(loaded_models(kind), TEXT).arrays["attentions"]
    n = att.shape[-1]
    upper = np.triu(np.ones((n, n), bool), k=1)
    assert np.all(att[..., upper] == 0)
    assert np.all(att[..., ~upper] > 0)


def test_decoder_self_attention_is_causal(loaded_models):
    analysis = analyze(loaded_models("bart"), TEXT, target_text="the bank flooded")
    dec = analysis.arrays["decoder_attentions"]
    m = dec.shape[-1]
    assert m == len(analysis.decoder_tokens)
    assert np.all(dec[..., np.triu(np.ones((m, m), bool), k=1)] == 0)


def test_padding_keys_get_zero_weight(demo_model):
    """A padded batch through the capture engine: padded key columns are zero, rows still sum to 1."""
    tok = demo_model.tokenizer
    batch = tok(["A short one.", "A much longer sentence about the river bank and the loan."],
                padding=True, return_tensors="pt")
    plan = capture.CapturePlan(sites=capture.site_namer(demo_model.model, False))
    with torch.no_grad(), capture.active(plan):
        demo_model.model(**batch)
    att = plan.stacked("self").float()  # [L, B, H, q, k]
    short = int(batch["attention_mask"][0].sum())
    assert short < att.shape[-1]
    assert torch.all(att[:, 0, :, :, short:] == 0)
    torch.testing.assert_close(att[:, 0, :, :short].sum(-1), torch.ones_like(att[:, 0, :, :short, 0]), atol=5e-3, rtol=0)


def test_gqa_records_one_map_per_query_head(loaded_models):
    loaded = loaded_models("llama")
    assert loaded.model.config.num_key_value_heads < loaded.model.config.num_attention_heads
    att = analyze(loaded, TEXT).arrays["attentions"]
    assert att.shape[1] == loaded.model.config.num_attention_heads
    # heads sharing one key/value head still have different queries, so different maps
    assert not np.allclose(att[0, 0], att[0, 1])


def test_head_mask_zeroes_a_head_and_changes_the_output(demo_model):
    tok = demo_model.tokenizer
    inputs = tok(TEXT, return_tensors="pt")
    sites = capture.site_namer(demo_model.model, False)
    base = capture.CapturePlan(sites=sites)
    with torch.no_grad(), capture.active(base):
        h0 = demo_model.model(**inputs).last_hidden_state
    mask = torch.ones(12)
    mask[3] = 0
    masked = capture.CapturePlan(sites=sites, head_mask={capture.Site("self", 2): mask})
    with torch.no_grad(), capture.active(masked):
        h1 = demo_model.model(**inputs).last_hidden_state
    assert torch.all(masked.records[capture.Site("self", 2)][0, 3] == 0)
    torch.testing.assert_close(masked.records[capture.Site("self", 1)], base.records[capture.Site("self", 1)])
    assert (h0 - h1).abs().max() > 1e-4
    # without a plan the registered function is the model's own eager attention: same output
    with torch.no_grad():
        h2 = demo_model.model(**inputs).last_hidden_state
    torch.testing.assert_close(h0, h2)


def test_kept_gradients_reach_the_weights(demo_model):
    tok = demo_model.tokenizer
    inputs = tok(TEXT, return_tensors="pt")
    plan = capture.CapturePlan(sites=capture.site_namer(demo_model.model, False), keep_grad=True, record=False)
    with torch.enable_grad(), capture.active(plan):
        out = demo_model.model(**inputs).last_hidden_state[0, 0].sum()
        out.backward()
    assert len(plan.graph_weights) == 6
    grads = [w.grad for w in plan.graph_weights.values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    demo_model.model.zero_grad(set_to_none=True)


def test_cancel_stops_between_layers(demo_model):
    from attn_desktop.core.errors import Cancelled

    seen = []

    def cancel():
        seen.append(1)
        return len(seen) > 2

    with pytest.raises(Cancelled):
        analyze(demo_model, TEXT, cancel=cancel)


def test_layer_count_mismatch_raises(demo_model, monkeypatch):
    from attn_desktop.core import pipeline

    monkeypatch.setattr(type(demo_model), "expected_layers", lambda self: {"self": 7})
    with pytest.raises(RuntimeError, match="differ from the config"):
        pipeline.analyze(demo_model, TEXT)


def test_family_outside_the_interface_falls_back_to_eager_and_says_so(loaded_models):
    loaded = loaded_models("mpnet")
    assert loaded.capture_mode == "eager-output-attentions"
    analysis = analyze(loaded, TEXT)
    assert analysis.manifest["capture"]["recording_only"] is True
    check_against(loaded, analysis)
