"""Leave-one-out and changed attention against plain forward passes written here (a BERT forward by
hand, with the attention weights replaced between softmax and values)."""

import math

import numpy as np
import pytest
import torch

from attn_desktop.core.explain import perturbation as prt
from attn_desktop.core.explain.targets import resolve_target
from attn_desktop.core.model import capture
from attn_desktop.core.model.capture import Site

TEXT = "The tenant shall pay the rent."


def bert_by_hand(model, ids, change=lambda layer, probs: probs):
    """BertForSequenceClassification's logits for one sequence, attention changed by `change`."""
    bert, n = model.bert, len(ids)
    e = bert.embeddings
    ids_t = torch.tensor(ids)
    x = e.word_embeddings(ids_t) + e.position_embeddings(torch.arange(n)) + e.token_type_embeddings(torch.zeros(n, dtype=torch.long))
    x = e.LayerNorm(x)
    heads = model.config.num_attention_heads
    d = x.shape[-1] // heads
    for layer_index, layer in enumerate(bert.encoder.layer):
        att = layer.attention.self

        def split(t):
            return t.view(n, heads, d).transpose(0, 1)

        q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        probs = change(layer_index, probs)
        ctx = (probs @ v).transpose(0, 1).reshape(n, heads * d)
        x = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + x)
        inner = torch.nn.functional.gelu(layer.intermediate.dense(x))
        x = layer.output.LayerNorm(layer.output.dense(inner) + x)
    pooled = torch.tanh(bert.pooler.dense(x[0]))
    return model.classifier(pooled)


@pytest.fixture(scope="module")
def cls_case(loaded_models):
    loaded = loaded_models("bert-cls")
    ids = loaded.tokenizer(TEXT)["input_ids"]
    return loaded, ids, resolve_target(loaded, ids, {})


def test_hand_written_bert_matches_the_model(cls_case):
    loaded, ids, target = cls_case
    with torch.no_grad():
        assert torch.allclose(bert_by_hand(loaded.model, ids), loaded.model(input_ids=torch.tensor([ids])).logits[0],
                              atol=1e-5)


def test_a_plan_that_changes_nothing_reproduces_the_plain_forward(cls_case):
    loaded, ids, target = cls_case
    x = torch.tensor([ids])
    with torch.no_grad():
        plain = loaded.model(input_ids=x).logits
        with capture.active(capture.CapturePlan(sites=loaded.site_of)):
            recorded = loaded.model(input_ids=x).logits
        with capture.active(capture.CapturePlan(sites=loaded.site_of, record=False, edit=lambda s, w: w)):
            recomputed = loaded.model(input_ids=x).logits
    assert torch.equal(plain, recorded)
    assert torch.allclose(plain, recomputed, atol=1e-6)
    values, _ = prt.run_edited(loaded, target, [lambda s, w: None])
    assert values[0] == pytest.approx(target.value, abs=1e-7)


def test_leave_one_out_against_plain_forwards(cls_case):
    loaded, ids, target = cls_case
    rep = prt.choose_replacement(loaded)
    assert rep.how == "mask" and rep.token == "[MASK]"
    loo = prt.leave_one_out(loaded, target, rep, batch_size=3)
    cls = target.definition["class"]
    for i in range(len(ids)):
        if target.special[i]:
            assert loo[i] == 0
            continue
        changed = list(ids)
        changed[i] = rep.token_id
        with torch.no_grad():
            p = torch.softmax(loaded.model(input_ids=torch.tensor([changed])).logits[0], -1)[cls]
        assert loo[i] == pytest.approx(target.value - float(p), abs=1e-6)


def test_deletion_keeps_the_mask_position(loaded_models):
    loaded = loaded_models("bert-mlm")
    ids = loaded.tokenizer("The tenant shall [MASK] the rent.")["input_ids"]
    target = resolve_target(loaded, ids, {})
    pos, tok = target.definition["position"], target.definition["token_id"]
    rep = prt.choose_replacement(loaded, "delete")
    loo = prt.leave_one_out(loaded, target, rep)
    for i in range(len(ids)):
        if target.special[i]:
            continue
        kept = [t for j, t in enumerate(ids) if j != i]
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([kept])).logits[0]
        p = torch.softmax(logits[pos - (1 if i < pos else 0)], -1)[tok]
        assert loo[i] == pytest.approx(target.value - float(p), abs=1e-6)
    assert target.special[pos]  # the mask itself is never removed


def _uniform(probs):
    return torch.full_like(probs, 1.0 / probs.shape[-1])


def test_uniform_attention_against_the_hand_written_forward(cls_case):
    loaded, ids, target = cls_case
    sites = [Site("self", 0), Site("self", 1)]
    res = prt.interventions(loaded, target, sites, set(), seeds=3)
    cls = target.definition["class"]
    with torch.no_grad():
        p0 = torch.softmax(bert_by_hand(loaded.model, ids), -1)
        p_all = torch.softmax(bert_by_hand(loaded.model, ids, lambda layer, p: _uniform(p)), -1)
        p_layer = [torch.softmax(bert_by_hand(loaded.model, ids, lambda layer, p, k=k: _uniform(p) if layer == k else p), -1)
                   for k in range(2)]
    assert res["uniform_all"]["value"] == pytest.approx(float(p_all[cls]), abs=1e-5)
    assert res["uniform_all"]["change"] == pytest.approx(float(p_all[cls] - p0[cls]), abs=1e-5)
    assert res["uniform_all"]["tvd"] == pytest.approx(0.5 * float((p_all - p0).abs().sum()), abs=1e-5)
    for k in range(2):
        row = res["uniform_layer"][k]
        assert (row["set"], row["layer"]) == ("self", k)
        assert row["value"] == pytest.approx(float(p_layer[k][cls]), abs=1e-5)


def test_permuted_attention_against_the_hand_written_forward(cls_case):
    loaded, ids, target = cls_case
    seeds = 4
    res = prt.interventions(loaded, target, [Site("self", 0), Site("self", 1)], set(), seeds=seeds)
    cls = target.definition["class"]
    with torch.no_grad():
        p0 = torch.softmax(bert_by_hand(loaded.model, ids), -1)
        values, tvds, flips = [], [], 0
        for s in range(seeds):
            gen = torch.Generator().manual_seed(s)
            p = torch.softmax(bert_by_hand(loaded.model, ids,
                                           lambda layer, w, gen=gen: prt.permuted_weights(w, False, gen)), -1)
            values.append(float(p[cls]))
            tvds.append(0.5 * float((p - p0).abs().sum()))
            flips += int(p.argmax() != p0.argmax())
    perm = res["permuted"]
    assert perm["values"] == pytest.approx(values, abs=1e-5)
    assert perm["tvd_median"] == pytest.approx(float(np.median(tvds)), abs=1e-5)
    assert perm["tvd_max"] == pytest.approx(max(tvds), abs=1e-5)
    assert perm["flips"] == flips
    assert perm["abs_change_max"] == pytest.approx(max(abs(v - float(p0[cls])) for v in values), abs=1e-5)


def test_weight_edits_respect_the_keys_a_query_may_see():
    w = torch.softmax(torch.randn(2, 5, 5), -1)
    causal = torch.tril(w)
    causal = causal / causal.sum(-1, keepdim=True)
    uni = prt.uniform_weights(causal, causal=True)
    assert torch.allclose(uni.sum(-1), torch.ones(2, 5))
    assert torch.all(torch.triu(uni, 1) == 0) and uni[0, 2, 0] == pytest.approx(1 / 3)
    perm = prt.permuted_weights(causal, True, torch.Generator().manual_seed(0))
    assert torch.all(torch.triu(perm, 1) == 0)
    for h in range(2):
        for i in range(5):
            assert torch.equal(perm[h, i, : i + 1].sort().values, causal[h, i, : i + 1].sort().values)
    full = prt.permuted_weights(w, False, torch.Generator().manual_seed(1))
    assert torch.equal(full.sort(-1).values, w.sort(-1).values) and not torch.equal(full, w)


def test_causal_interventions_on_a_causal_lm(loaded_models):
    loaded = loaded_models("gpt2")
    ids = loaded.tokenizer("The tenant shall pay")["input_ids"]
    target = resolve_target(loaded, ids, {})
    seen = []

    def check(site, w):
        seen.append(bool(torch.all(torch.triu(w, 1) == 0)))
        return None

    sites = [Site("self", 0), Site("self", 1)]
    res = prt.interventions(loaded, target, sites, {"self"}, seeds=2)
    prt.run_edited(loaded, target, [lambda s, w: check(s, prt.uniform_weights(w, True))])
    assert seen and all(seen)
    assert all(math.isfinite(r["value"]) for r in res["uniform_layer"])
    assert 0 <= res["permuted"]["tvd_max"] <= 1
