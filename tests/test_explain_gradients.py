"""Gradient attributions: a hand-built model whose answer is known, IG completeness on every kind,
saliency and gradient x input against autograd written here."""

import numpy as np
import pytest
import torch

from attn_desktop.core.explain import gradients as grd
from attn_desktop.core.explain.faithfulness import faithfulness
from attn_desktop.core.explain.perturbation import choose_replacement, leave_one_out
from attn_desktop.core.explain.targets import resolve_target
from attn_desktop.core.pipeline import _greedy

TEXT = "the tenant shall pay the rent on the first day of each month"


@pytest.fixture(scope="module")
def one_token_model(tmp_path_factory):
    """A BERT classifier in which only the word 'rent' has a non-zero word embedding (positions
    stay random, so LayerNorm never sees an all-zero input): only 'rent' can move the output."""
    import tiny_models
    import transformers as tf

    from attn_desktop.core.model.loading import load_model

    torch.manual_seed(3)
    tok = tiny_models._wordpiece_tokenizer()
    rent = tok.convert_tokens_to_ids("rent")
    assert rent != tok.unk_token_id
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2, initializer_range=0.5)
    model = tf.BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        emb = model.bert.embeddings.word_embeddings.weight
        keep = emb[rent].clone()
        emb.zero_()
        emb[rent] = keep
        model.bert.embeddings.token_type_embeddings.weight.zero_()
    folder = tmp_path_factory.mktemp("one_token")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = load_model(folder)
    ids = loaded.tokenizer(TEXT)["input_ids"]
    # explain the class that 'rent' pushes up, so signed rankings put it first
    position = ids.index(rent)
    masked = list(ids)
    masked[position] = loaded.tokenizer.mask_token_id
    with torch.no_grad():
        p = torch.softmax(loaded.model(input_ids=torch.tensor([ids, masked])).logits, -1)
    cls = int((p[0] - p[1]).argmax())
    assert abs(float(p[0, cls] - p[1, cls])) > 1e-3
    return loaded, ids, position, cls


def test_ig_grad_input_and_loo_rank_the_only_token_first(one_token_model):
    loaded, ids, position, cls = one_token_model
    target = resolve_target(loaded, ids, {"class": cls})
    ig = grd.integrated_gradients(loaded, target).attributions
    _, gxi = grd.saliency_and_grad_input(loaded, target)
    loo = leave_one_out(loaded, target, choose_replacement(loaded))
    for name, vec in {"ig": ig, "grad_input": gxi, "loo": loo}.items():
        assert int(np.argmax(vec)) == position, name
        others = np.delete(vec, position)
        assert np.all(np.abs(others) <= 1e-6 * max(1.0, abs(vec[position]))), name
        assert vec[position] > 0, name


def test_faithfulness_rewards_the_methods_that_find_it(one_token_model):
    loaded, ids, position, cls = one_token_model
    target = resolve_target(loaded, ids, {"class": cls})
    rep = choose_replacement(loaded)
    vectors = {"integrated_gradients": grd.integrated_gradients(loaded, target).attributions,
               "loo": leave_one_out(loaded, target, rep)}
    res = faithfulness(loaded, target, vectors, rep, random_rankings=20)
    rnd = res["random"]
    with torch.no_grad():
        drop = target.value - float(target.evaluate(loaded, torch.tensor([
            [rep.token_id if i == position else t for i, t in enumerate(ids)]]))[0])
    for name in vectors:
        m = res["per_method"][name]
        assert m["comprehensiveness"] == pytest.approx([drop] * 5, abs=1e-6)  # 'rent' is always removed first
        assert m["sufficiency"] == pytest.approx([0.0] * 5, abs=1e-6)  # keeping 'rent' keeps everything
        assert m["aopc_comp"] > rnd["aopc_comp_mean"] and m["aopc_suff"] < rnd["aopc_suff_mean"]
        assert m["beats_random_comp"] >= 0.5 and m["beats_random_suff"] >= 0.5
    assert res["counts"][0] == 1 and res["counts"][-1] == round(0.5 * res["non_special"])


def test_saliency_and_grad_input_match_autograd(loaded_models):
    loaded = loaded_models("bert-cls")
    ids = loaded.tokenizer("The rent is due.")["input_ids"]
    target = resolve_target(loaded, ids, {"class": 1})
    sal, gxi = grd.saliency_and_grad_input(loaded, target)
    emb = loaded.model.bert.embeddings.word_embeddings(torch.tensor([ids])).detach().requires_grad_(True)
    prob = torch.softmax(loaded.model(inputs_embeds=emb).logits, -1)[0, 1]
    (g,) = torch.autograd.grad(prob, emb)
    assert np.allclose(sal, g[0].norm(dim=-1).numpy(), atol=1e-7)
    assert np.allclose(gxi, (g[0] * emb[0].detach()).sum(-1).numpy(), atol=1e-7)


@pytest.fixture(scope="module")
def loud_models(tiny_model_paths, tmp_path_factory):
    """The tiny models re-initialised with a wider weight spread (T5's default is already wide), so
    their outputs move enough for a 5 % completeness check to mean something; loaded once each."""
    import shutil

    from attn_desktop.core.model.loading import load_model

    cache = {}

    def get(kind):
        if kind not in cache:
            src = tiny_model_paths[kind]
            if kind == "t5":
                cache[kind] = load_model(src)
                return cache[kind]
            plain = load_model(src)
            config = plain.model.config
            config.initializer_range, config.init_std = 0.3, 0.3
            torch.manual_seed(1)
            model = type(plain.model)(config).eval()
            dst = tmp_path_factory.mktemp(f"loud-{kind}")
            shutil.copytree(src, dst, dirs_exist_ok=True)
            model.save_pretrained(dst)
            cache[kind] = load_model(dst)
        return cache[kind]

    return get


def _decoder(loaded, ids):
    return _greedy(loaded.model, loaded.tokenizer, ids, 1, "cpu", encoder_decoder=True) if loaded.is_encoder_decoder else None


@pytest.mark.parametrize("kind,text", [
    ("bert-cls", "The rent is due on the first day."),
    ("gpt2", "The rent is due on the"),
    ("llama", "The rent is due on the"),
    ("bart", "The rent is due on the first day."),
    ("t5", "The rent is due on the first day."),
    ("bert-mlm", "The rent is [MASK] on the first day."),
])
def test_ig_completeness_on_every_kind(loud_models, kind, text):
    loaded = loud_models(kind)
    ids = loaded.tokenizer(text)["input_ids"]
    target = resolve_target(loaded, ids, {}, decoder_ids=_decoder(loaded, ids))
    res = grd.integrated_gradients(loaded, target)
    rec = res.record
    base = [t if s else (loaded.tokenizer.pad_token_id) for t, s in zip(ids, target.special, strict=True)]
    inputs = {"input_ids": torch.tensor([ids, base])}
    if loaded.is_encoder_decoder:
        inputs["decoder_input_ids"] = torch.tensor([target.definition["decoder_prefix_ids"]] * 2)
    with torch.no_grad():
        logits = loaded.model(**inputs).logits.float()
    if kind == "bert-cls":
        f = torch.softmax(logits, -1)[:, target.definition["class"]]
    elif kind == "bert-mlm":
        f = torch.softmax(logits[:, target.definition["position"]], -1)[:, target.definition["token_id"]]
    else:
        f = torch.log_softmax(logits[:, -1], -1)[:, target.definition["token_id"]]
    gap = float(f[0] - f[1])
    assert rec["f_input"] == pytest.approx(float(f[0]), abs=1e-5)
    assert rec["f_baseline"] == pytest.approx(float(f[1]), abs=1e-5)
    assert abs(gap) > 1e-4
    assert abs(float(res.attributions.sum()) - gap) <= 0.05 * abs(gap)
    assert rec["converged"] and rec["steps"] in [t["steps"] for t in rec["tried"]]
    assert rec["layer"] == target.embedding_layer and rec["baseline"] == "pad"


def test_ig_completeness_on_the_demo_model(demo_model):
    text = "The tenant shall pay the rent on the first day of each month."
    ids = demo_model.tokenizer(text)["input_ids"]
    target = resolve_target(demo_model, ids, {"labels": ["rent payment", "a medical note", "termination"]})
    res = grd.integrated_gradients(demo_model, target)
    gap = res.record["f_input"] - res.record["f_baseline"]
    assert abs(gap) > 1e-3
    assert abs(float(res.attributions.sum()) - gap) <= 0.05 * abs(gap)
    assert res.record["layer"] == "embeddings.word_embeddings"


def test_ig_zero_and_mask_baselines_and_fixed_steps(loaded_models):
    loaded = loaded_models("bert-cls")
    ids = loaded.tokenizer("The rent is due.")["input_ids"]
    target = resolve_target(loaded, ids, {})
    zero = grd.integrated_gradients(loaded, target, baseline="zero", steps=32)
    assert zero.record["baseline"] == "zero" and zero.record["steps"] == 32 and not zero.record["adaptive"]
    assert abs(zero.record["delta"] - (zero.attributions.sum() - (zero.record["f_input"] - zero.record["f_baseline"]))) < 1e-4
    mask = grd.integrated_gradients(loaded, target, baseline="mask", steps=16)
    assert mask.record["baseline_token"] == "[MASK]"
    specials = np.array(target.special)
    assert np.all(mask.attributions[specials] == 0)  # specials are kept in the baseline


def test_gradient_rollout_follows_chefer(loaded_models):
    """R = I + sum of products of mean_h((dF/dA * A)+), recomputed here from the kept weights."""
    from attn_desktop.core.model import capture

    loaded = loaded_models("bert-cls")
    ids = loaded.tokenizer("The rent is due.")["input_ids"]
    target = resolve_target(loaded, ids, {})
    vec, rec = grd.gradient_rollout(loaded, target, lambda m: m[0])
    plan = capture.CapturePlan(sites=loaded.site_of, record=False, keep_grad=True)
    with torch.enable_grad():
        value = target.evaluate(loaded, target.ids_tensor(loaded), plan=plan)
        value.sum().backward()
    n = len(ids)
    r = np.eye(n)
    for layer in range(2):
        a = plan.graph_weights[capture.Site("self", layer)]
        a_bar = np.clip((a.grad[0] * a[0]).detach().numpy(), 0, None).mean(0)
        r = r + a_bar @ r
    loaded.model.zero_grad(set_to_none=True)
    expected = r[0].copy()
    expected[0] = 0
    assert rec["layers"] == 2
    assert np.allclose(vec, expected, atol=1e-6)


def test_gradient_rollout_of_an_encoder_decoder(loud_models):
    """Chefer's encoder-decoder rules recomputed here from weights kept by a separate pass."""
    from attn_desktop.core.model import capture

    loaded = loud_models("bart")
    ids = loaded.tokenizer("The rent is due on the first day.")["input_ids"]
    dec = _decoder(loaded, ids)
    target = resolve_target(loaded, ids, {}, decoder_ids=dec)
    vec, rec = grd.gradient_rollout_seq2seq(loaded, target, 0)
    plan = capture.CapturePlan(sites=loaded.site_of, record=False, keep_grad=True)
    with torch.enable_grad():
        target.evaluate(loaded, target.ids_tensor(loaded), plan=plan).sum().backward()
    loaded.model.zero_grad(set_to_none=True)

    def bar(name, layer):
        a = plan.graph_weights[capture.Site(name, layer)]
        return np.clip((a.grad[0] * a[0]).detach().numpy().astype(np.float64), 0, None).mean(0)

    def norm(r):
        off = r - np.eye(len(r))
        s = off.sum(-1, keepdims=True)
        return np.divide(off, s, out=off.copy(), where=s > 0) + np.eye(len(r))

    n, m = len(ids), len(target.definition["decoder_prefix_ids"])
    r_ss = np.eye(n)
    for layer in range(2):
        r_ss = r_ss + bar("encoder", layer) @ r_ss
    r_tt, r_ts = np.eye(m), np.zeros((m, n))
    for layer in range(2):
        a = bar("decoder", layer)
        r_tt, r_ts = r_tt + a @ r_tt, r_ts + a @ r_ts
        r_ts = r_ts + norm(r_tt).T @ bar("cross", layer) @ norm(r_ss)
    assert rec["set"] == "encoder-decoder" and rec["decoder_layers"] == 2
    assert vec.shape == (n,) and np.all(vec >= 0) and vec.sum() > 0
    assert np.allclose(vec, r_ts[0], rtol=1e-4, atol=1e-7)


def test_embedding_gradients_keep_what_the_model_does_after_the_layer(tmp_path):
    """Marian scales the embedding layer's output by sqrt(d) only when it gets token ids: the
    gradients replace that layer's output and keep the ids, so the scale stays."""
    import tiny_models
    import transformers as tf

    from attn_desktop.core.model.loading import load_model

    tok = tiny_models._bytelevel_tokenizer()
    cfg = tf.MarianConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                          encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                          eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
                          scale_embedding=True, init_std=0.3)
    torch.manual_seed(0)
    tf.MarianMTModel(cfg).eval().save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    ids = loaded.tokenizer("The rent is due on the first day.")["input_ids"]
    target = resolve_target(loaded, ids, {}, decoder_ids=_decoder(loaded, ids))
    x = target.ids_tensor(loaded)
    with torch.no_grad():
        via_layer = float(target.evaluate_embeds(loaded, target.embed(loaded, x))[0])
        unscaled = loaded.model(inputs_embeds=target.embed(loaded, x),
                                decoder_input_ids=torch.tensor([target.definition["decoder_prefix_ids"]])).logits
    assert via_layer == pytest.approx(target.value, abs=1e-6)
    assert float(unscaled.log_softmax(-1)[0, -1, target.definition["token_id"]]) != pytest.approx(target.value, abs=1e-3)
    res = grd.integrated_gradients(loaded, target, baseline="zero")
    gap = res.record["f_input"] - res.record["f_baseline"]
    assert abs(float(res.attributions.sum()) - gap) <= 0.05 * abs(gap)
