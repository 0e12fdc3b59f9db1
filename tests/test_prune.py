"""Physically pruned models: equal to the original with those heads masked, saved as a folder that
plain transformers (rebuilt here by hand from the config record, without attn-desktop) and
attn-desktop's loader both read back."""

import json

import numpy as np
import pytest
import safetensors.torch
import torch
import transformers

from attn_desktop.core.errors import UserError
from attn_desktop.core.explain import prune_compare as pc
from attn_desktop.core.model import capture, prune
from attn_desktop.core.model.loading import AUTO_CLASSES, load_model
from attn_desktop.core.pipeline import analyze

TEXT = "The tenant shall pay the rent on the first day of each month."
REMOVE = {capture.Site("self", 0): [1, 3], capture.Site("self", 1): [0]}


def _masked_output(loaded, ids, remove):
    masks = {}
    for site, heads in remove.items():
        m = torch.ones(loaded.num_heads)
        m[heads] = 0
        masks[site] = m
    plan = capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=masks)
    with torch.no_grad(), capture.active(plan):
        return loaded.model(input_ids=ids).logits


def _plain_transformers_model(folder, auto_name):
    """Rebuild the pruned model with transformers' public API only, following the config record."""
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    layout = config.attn_desktop_pruned_heads
    model = getattr(transformers, auto_name).from_config(config, attn_implementation="eager").eval()
    for layer, heads in layout["self"].items():
        layer = int(layer)
        if config.model_type == "bert":
            att = model.bert.encoder.layer[layer].attention
            d = att.self.attention_head_size
            keep = [h for h in range(config.num_attention_heads) if h not in heads]
            idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
            for name in ("query", "key", "value"):
                setattr(att.self, name, transformers.pytorch_utils.prune_linear_layer(getattr(att.self, name), idx))
            att.output.dense = transformers.pytorch_utils.prune_linear_layer(att.output.dense, idx, dim=1)
        else:  # GPT-2: Conv1D weights are [in, out]
            attn = model.transformer.h[layer].attn
            d = attn.head_dim
            keep = [h for h in range(config.n_head) if h not in heads]
            idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
            qkv = torch.cat([idx, idx + attn.split_size, idx + 2 * attn.split_size])
            attn.c_attn.weight = torch.nn.Parameter(attn.c_attn.weight[:, qkv].clone())
            attn.c_attn.bias = torch.nn.Parameter(attn.c_attn.bias[qkv].clone())
            attn.c_attn.nf = len(qkv)
            attn.c_proj.weight = torch.nn.Parameter(attn.c_proj.weight[idx].clone())
            attn.split_size = len(idx)
    state = safetensors.torch.load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected
    assert all("lm_head" in k for k in missing), missing  # tied to the input embeddings
    model.tie_weights()
    return model


@pytest.mark.parametrize("kind", ["bert-cls", "gpt2"])
def test_pruned_model_matches_masked_original_and_reloads(loaded_models, tiny_model_paths, tmp_path, kind):
    loaded = loaded_models(kind)
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    masked = _masked_output(loaded, ids, REMOVE)
    with torch.no_grad():
        plain = loaded.model(input_ids=ids).logits
    # The tiny model's heads move its output only a little (how much depends on the trained
    # tokenizer's ids), so the tolerance is a small share of that effect: a wrong pruning shows.
    effect = float((masked - plain).abs().max())
    assert effect > 1e-6
    pruned = prune.pruned_copy(loaded.model, REMOVE, encoder_decoder=False)
    with torch.no_grad():
        torch.testing.assert_close(pruned(input_ids=ids).logits, masked, atol=0.02 * effect, rtol=0)
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, plain, atol=0, rtol=0)  # untouched
    per_head = 4 * (loaded.model.config.hidden_size // 4) * loaded.model.config.hidden_size + 3 * (
        loaded.model.config.hidden_size // 4)  # q, k, v rows + biases and output columns of one head
    assert prune.parameter_count(loaded.model) - prune.parameter_count(pruned) == 3 * per_head

    out = prune.save_pruned(pruned, tiny_model_paths[kind], tmp_path / "pruned")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(out.glob("*.bin"))
    config = json.loads((out / "config.json").read_text())
    assert config[prune.PRUNED_KEY] == {"self": {"0": [1, 3], "1": [0]}}
    assert config[prune.HEADS_KEY] == {"self": [2, 3]}

    rebuilt = _plain_transformers_model(out, AUTO_CLASSES[loaded.kind])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(input_ids=ids).logits, masked, atol=0.02 * effect, rtol=0)

    again = load_model(out)
    assert again.num_parameters == prune.parameter_count(pruned)
    with torch.no_grad():
        torch.testing.assert_close(again.model(input_ids=ids).logits, masked, atol=0.02 * effect, rtol=0)
    att = analyze(again, TEXT).arrays["attentions"]
    assert att.shape[:2] == (2, 4)  # the original head indices, removed heads all zero
    assert np.all(att[0, [1, 3]] == 0) and np.all(att[1, 0] == 0)
    np.testing.assert_allclose(att[0, [0, 2]].astype(np.float32).sum(-1), 1.0, atol=5e-3)

    # pruning the reloaded model again merges the layouts
    twice = prune.pruned_copy(again.model, {capture.Site("self", 1): [2]}, encoder_decoder=False)
    assert getattr(twice.config, prune.PRUNED_KEY) == {"self": {"0": [1, 3], "1": [0, 2]}}
    assert getattr(twice.config, prune.HEADS_KEY) == {"self": [2, 2]}
    more = dict(REMOVE)
    more[capture.Site("self", 1)] = [0, 2]
    with torch.no_grad():
        torch.testing.assert_close(twice(input_ids=ids).logits, _masked_output(loaded, ids, more), atol=1e-5, rtol=1e-5)


def test_bart_encoder_decoder_and_cross_heads(loaded_models, tiny_model_paths, tmp_path):
    loaded = loaded_models("bart")
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    dec = ids[:, :5]
    remove = {capture.Site("encoder", 1): [0], capture.Site("decoder", 0): [2, 3], capture.Site("cross", 1): [1]}
    masks = {s: torch.tensor([0.0 if h in hs else 1.0 for h in range(4)]) for s, hs in remove.items()}
    plan = capture.CapturePlan(sites=loaded.site_of, record=False, head_mask=masks)
    with torch.no_grad(), capture.active(plan):
        masked = loaded.model(input_ids=ids, decoder_input_ids=dec).logits
    pruned = prune.pruned_copy(loaded.model, remove, encoder_decoder=True)
    out = prune.save_pruned(pruned, tiny_model_paths["bart"], tmp_path / "bart")
    again = load_model(out)
    with torch.no_grad():
        torch.testing.assert_close(again.model(input_ids=ids, decoder_input_ids=dec).logits, masked, atol=1e-5, rtol=1e-5)


def test_refusals(loaded_models, tiny_model_paths, tmp_path):
    bert = loaded_models("bert-cls")
    with pytest.raises(UserError, match="at least one head"):
        prune.pruned_copy(bert.model, {capture.Site("self", 0): [0, 1, 2, 3]}, False)
    with pytest.raises(UserError, match="no head 7"):
        prune.pruned_copy(bert.model, {capture.Site("self", 0): [7]}, False)
    with pytest.raises(UserError, match="grouped"):
        prune.pruned_copy(loaded_models("llama").model, {capture.Site("self", 0): [1]}, False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not an empty folder"):
        prune.save_pruned(bert.model, tiny_model_paths["bert-cls"], busy)
    assert (busy / "keep.txt").read_text() == "mine"
    # a folder whose config records a layout that does not fit the model: one line, nothing loaded
    for layout in ({"self": {"0": [9]}}, {"self": {"0": "1"}}, {"other": {}}, ["self"]):
        folder = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        prune.save_pruned(prune.pruned_copy(bert.model, REMOVE, False), tiny_model_paths["bert-cls"], folder)
        config = json.loads((folder / "config.json").read_text())
        config[prune.PRUNED_KEY] = layout
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(UserError, match="no head 9|attn_desktop_pruned_heads"):
            load_model(folder)
    for bad in ("least:0", "least:x", "dead:-1", "1-2", "least:2:magic"):
        with pytest.raises(UserError):
            pc.parse_selection(bad)
    assert pc.parse_selection("2.5, 3.0").heads == (("", 2, 5), ("", 3, 0))
    assert pc.parse_selection("cross:1.2").heads == (("cross", 1, 2),)
    assert pc.parse_selection("least:3:gradient") == pc.Selection("least", k=3, by="gradient")
    assert pc.parse_selection("dead:0.5").threshold == 0.5


def test_prune_and_compare_over_texts(loaded_models, tmp_path):
    loaded = loaded_models("bert-cls")
    texts = [("a.txt", TEXT), ("b.txt", "The river bank flooded after the rain.")]
    result, model = pc.prune_and_compare(loaded, texts, "least:3", {"kind": "class", "class": 1},
                                         out=tmp_path / "out", repeats=2)
    assert result.summary["heads_removed"] == 3
    # the least-important heads by mean |ablation change|: recompute the grids here
    from attn_desktop.core.explain import head_importance as hi
    from attn_desktop.core.explain.targets import resolve_target

    grids = []
    for _, text in texts:
        ids = loaded.tokenizer(text)["input_ids"]
        t = resolve_target(loaded, ids, {"kind": "class", "class": 1})
        grids.append(np.abs(hi.ablation_grids(loaded, hi.target_scorer(loaded, t), ids, {"self": (2, 4)}).head_change["self"]))
    expected = hi.least_important(np.mean(grids, axis=0), 3)
    assert sorted(map(tuple, result.removed["self"])) == expected
    assert len(result.rows) == 2
    for row in result.rows:
        assert row["pruned_vs_masked"] < 1e-5
        assert row["change"] == pytest.approx(row["masked_value"] - row["value"], abs=1e-5)
    assert result.summary["parameters"][1] < result.summary["parameters"][0]
    assert result.summary["time_pairs"] == 4 and result.summary["time_ratio"] > 0
    assert result.saved and load_model(result.saved).num_parameters < loaded.num_parameters
    table = result.table()
    assert "a.txt" in table and "removed 3 of 8 heads" in table and "forward time" in table
    json.dumps(result.to_json())
    # dead heads: a threshold above every change removes all but one head per layer
    dead, _ = pc.prune_and_compare(loaded, texts[:1], "dead:1e9", {"kind": "class"}, repeats=1)
    assert dead.summary["heads_removed"] == 6
    assert len(dead.selection["kept_so_a_layer_runs"]) == 2

