"""Targets: each kind's value against a plain forward pass written here, and the one-line refusals."""

import pytest
import torch

from attn_desktop.core.errors import UserError
from attn_desktop.core.explain.labels import label_files, parse_labels, read_labels
from attn_desktop.core.explain.targets import resolve_target
from attn_desktop.core.pipeline import _greedy


def ids_of(loaded, text):
    return loaded.tokenizer(text)["input_ids"]


def test_classifier_predicted_and_given_class(loaded_models):
    loaded = loaded_models("bert-cls")
    ids = ids_of(loaded, "The tenant shall pay the rent.")
    with torch.no_grad():
        probs = torch.softmax(loaded.model(input_ids=torch.tensor([ids])).logits[0], -1)
    t = resolve_target(loaded, ids, {})
    assert t.definition["class"] == int(probs.argmax()) and t.definition["chosen"] == "predicted"
    assert t.value == pytest.approx(float(probs.max()), abs=1e-6)
    t2 = resolve_target(loaded, ids, {"class": 0})
    assert t2.value == pytest.approx(float(probs[0]), abs=1e-6) and t2.definition["chosen"] == "given"
    with pytest.raises(UserError, match="classes 0 to 2"):
        resolve_target(loaded, ids, {"class": 7})
    with pytest.raises(UserError, match="does not apply"):
        resolve_target(loaded, ids, {"kind": "next-token"})


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_next_token_log_probability(loaded_models, kind):
    loaded = loaded_models(kind)
    ids = ids_of(loaded, "The tenant shall pay")
    with torch.no_grad():
        logp = torch.log_softmax(loaded.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
    t = resolve_target(loaded, ids, {})
    assert t.value == pytest.approx(float(logp.max()), abs=1e-5)
    token = loaded.tokenizer.convert_ids_to_tokens([5])[0]
    t2 = resolve_target(loaded, ids, {"token": token})
    assert t2.definition["token_id"] == 5 and t2.value == pytest.approx(float(logp[5]), abs=1e-5)
    with pytest.raises(UserError, match="tokens for this tokenizer"):
        resolve_target(loaded, ids, {"token": "tenant shall pay"})


@pytest.mark.parametrize("kind", ["bart", "t5"])
def test_seq2seq_token_given_prefix(loaded_models, kind):
    loaded = loaded_models(kind)
    ids = ids_of(loaded, "The tenant shall pay.")
    first = _greedy(loaded.model, loaded.tokenizer, ids, 1, "cpu", encoder_decoder=True)
    assert len(first) == 2  # decoder start and the first generated token
    t1 = resolve_target(loaded, ids, {}, decoder_ids=first)
    assert t1.definition["position"] == 1 and t1.definition["token_id"] == first[1]
    dec = first[:1] + ids[1:4]  # a teacher-forced output
    t = resolve_target(loaded, ids, {"position": 2}, decoder_ids=dec)
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids]), decoder_input_ids=torch.tensor([dec[:2]])).logits
    logp = torch.log_softmax(logits[0, -1].float(), -1)
    assert t.definition["decoder_prefix_ids"] == dec[:2]
    assert t.value == pytest.approx(float(logp.max()), abs=1e-5)
    assert t.definition["token_id"] == int(logp.argmax())


def test_masked_lm_first_mask_and_refusal(loaded_models):
    loaded = loaded_models("bert-mlm")
    ids = ids_of(loaded, "The tenant shall [MASK] the [MASK].")
    pos = ids.index(loaded.tokenizer.mask_token_id)
    with torch.no_grad():
        probs = torch.softmax(loaded.model(input_ids=torch.tensor([ids])).logits[0, pos], -1)
    t = resolve_target(loaded, ids, {})
    assert t.definition["position"] == pos and t.value == pytest.approx(float(probs.max()), abs=1e-6)
    with pytest.raises(UserError, match=r"no \[MASK\].*put \[MASK\] where"):
        resolve_target(loaded, ids_of(loaded, "The tenant shall pay."), {})


def _mean_pooled(loaded, text):
    enc = loaded.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        h = loaded.model(**enc).last_hidden_state[0]
    return torch.nn.functional.normalize(h.mean(0), dim=0)


def test_zero_shot_and_reference_on_the_demo(demo_model):
    text = "The tenant shall pay the rent on the first day of each month."
    labels = ["payment of rent", "a medical diagnosis", "termination of the agreement"]
    ids = ids_of(demo_model, text)
    t = resolve_target(demo_model, ids, {"labels": labels, "temperature": 0.1})
    x = _mean_pooled(demo_model, text)
    cos = torch.stack([x @ _mean_pooled(demo_model, label) for label in labels])
    probs = torch.softmax(cos / 0.1, 0)
    assert t.definition["labels"] == labels and t.definition["temperature"] == 0.1
    assert t.predicted == labels[int(probs.argmax())] == "payment of rent"
    assert t.value == pytest.approx(float(probs.max()), abs=1e-5)
    t2 = resolve_target(demo_model, ids, {"labels": labels, "label": "a medical diagnosis", "temperature": 0.1})
    assert t2.value == pytest.approx(float(probs[1]), abs=1e-5)
    ref = resolve_target(demo_model, ids, {"reference": "Rent is due monthly."})
    assert ref.value == pytest.approx(float(x @ _mean_pooled(demo_model, "Rent is due monthly.")), abs=1e-5)
    assert ref.distribution(demo_model, ref.ids_tensor(demo_model)) is None
    with pytest.raises(UserError, match="no task head: give labels"):
        resolve_target(demo_model, ids, {})
    with pytest.raises(UserError, match="is not one of the labels"):
        resolve_target(demo_model, ids, {"labels": labels, "label": "weather"})


def test_evaluate_is_batched_and_matches_embeddings_path(loaded_models):
    loaded = loaded_models("bart")
    ids = ids_of(loaded, "The tenant shall pay.")
    dec = _greedy(loaded.model, loaded.tokenizer, ids, 2, "cpu", encoder_decoder=True)
    t = resolve_target(loaded, ids, {}, decoder_ids=dec)
    batch = t.ids_tensor(loaded, 3)
    batch[1, 1] = loaded.tokenizer.mask_token_id
    with torch.no_grad():
        by_ids = t.evaluate(loaded, batch)
        by_embeds = t.evaluate_embeds(loaded, t.embed(loaded, batch))
    assert by_ids.shape == (3,) and by_ids[0] == pytest.approx(t.value, abs=1e-6)
    assert torch.allclose(by_ids, by_embeds, atol=1e-6)
    assert by_ids[0] == by_ids[2] and by_ids[0] != by_ids[1]


def test_shipped_label_sets_are_found_and_read():
    names = {p.stem for p in label_files()}
    assert {"contract_clauses", "clinical_specialties", "clinical_findings"} <= names
    clauses = read_labels("contract_clauses")
    assert len(clauses) >= 5 and all(not c.startswith("#") for c in clauses)
    with pytest.raises(UserError, match="at least two labels"):
        parse_labels("# only a comment\nsingle label\n")
    with pytest.raises(UserError, match="label file not found"):
        read_labels("/nonexistent/labels.txt")
