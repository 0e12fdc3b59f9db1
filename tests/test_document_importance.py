"""Document-level importance on a text read in windows (core.explain.document): a hand-built
classifier in which only 'rent' carries signal, on a document of several windows with 'rent' in one
window only and in an overlap; IG completeness, leave-one-out and the gradients checked against
plain forwards of each window written here; the session round trip; the refusals."""

import numpy as np
import pytest
import torch

from attn_desktop.core import windows
from attn_desktop.core.errors import UserError
from attn_desktop.core.explain import document
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.store.session import load_session, save_session

FILLER = ["The patient reports chest pain and shortness of breath since Monday.",
          "A quick brown fox jumps over the lazy dog, twice.",
          "Attention is a clue, not an explanation.",
          "Hello world! Numbers like 42 and 3.14 appear too."]
RENT = "The tenant shall pay the rent on the first day of each month."
SIZE = 24  # positions per window, [CLS] and [SEP] included
LABELS = ["rent and payment", "medical complaint", "animals"]


def _text(rent_at: int, sentences: int = 9) -> str:
    parts = [FILLER[k % len(FILLER)] for k in range(sentences)]
    parts.insert(rent_at, RENT)
    return " ".join(parts)


def _windows_of(an):
    """(ids per window, document token per window position) from the map, by the rule that a BERT
    window's content tokens are the document tokens token_start..token_end-1 in order."""
    ids, where = [], []
    for e in an.manifest["windows"]["windows"]:
        a, b = e["token_start"], e["token_end"]
        assert len(e["input_ids"]) == b - a + 2  # [CLS] pieces [SEP]
        ids.append(list(e["input_ids"]))
        where.append([-1] + list(range(a, b)) + [-1])
    return ids, where


def _doc_count(an) -> int:
    return an.manifest["windows"]["document_tokens"]


def _classify(model, rows_per_window, cls):
    """Mean over windows of softmax(logits)[cls], for batches of rows per window."""
    with torch.no_grad():
        probs = [torch.softmax(model(input_ids=torch.tensor(rows)).logits.double(), -1) for rows in rows_per_window]
    return torch.stack(probs).mean(0)[:, cls].numpy()


@pytest.fixture(scope="module")
def one_token_model(tmp_path_factory):
    """A BERT classifier in which only the word 'rent' has a non-zero word embedding."""
    import tiny_models
    import transformers as tf

    from attn_desktop.core.model.loading import load_model

    torch.manual_seed(3)
    tok = tiny_models._wordpiece_tokenizer()
    rent = tok.convert_tokens_to_ids("rent")
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2, initializer_range=0.5)
    model = tf.BertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        emb = model.bert.embeddings.word_embeddings.weight
        keep = emb[rent].clone()
        emb.zero_()
        emb[rent] = keep
        model.bert.embeddings.token_type_embeddings.weight.zero_()
    folder = tmp_path_factory.mktemp("one_token_doc")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return load_model(folder), rent


def _placed(loaded, rent_id, occurrences: str):
    """A text and its windowed analysis with 'rent' in one window only, or in two or more."""
    for at in range(10):
        text = _text(at)
        an = analyze(loaded, text, windows={"size": SIZE})
        ids, _ = _windows_of(an)
        hits = sum(rent_id in w for w in ids)
        if (hits == 1) == (occurrences == "one"):
            return text, an, hits
    raise AssertionError(f"no placement puts 'rent' in {occurrences} window(s)")


@pytest.mark.parametrize("occurrences", ["one", "overlap"])
def test_only_the_word_with_signal_gets_importance(one_token_model, occurrences):
    loaded, rent_id = one_token_model
    text, plain, hits = _placed(loaded, rent_id, occurrences)
    assert len(plain.manifest["windows"]["windows"]) >= 3
    ids, where = _windows_of(plain)
    position = next(i for w, d in zip(ids, where, strict=True) for t, i in zip(w, d, strict=True) if t == rent_id)
    # explain the class that 'rent' raises, so signed rankings put it first
    masked = [[loaded.tokenizer.mask_token_id if t == rent_id else t for t in w] for w in ids]
    up = [float(_classify(loaded.model, [[w] for w in ids], c)[0] - _classify(loaded.model, [[w] for w in masked], c)[0])
          for c in (0, 1)]
    cls = int(np.argmax(up))
    assert up[cls] > 1e-4

    an = analyze(loaded, text, windows={"size": SIZE}, methods=["saliency", "grad_input", "ig", "loo", "agreement"],
                 target={"class": cls}, explain_options={"ig_steps": 32})
    section = an.manifest["explain"]
    assert section["document"]["windows"] == len(ids) and section["target"]["class"] == cls
    assert section["document"]["attention_crosses_windows"] is False
    count = _doc_count(an)
    for name in ("grad_input", "integrated_gradients", "loo"):
        vec = an.arrays[f"document_{name}"]
        assert vec.shape == (count,)
        assert int(np.argmax(np.abs(vec))) == position, name
        if name != "grad_input":  # a local gradient may point against a finite change
            assert vec[position] > 0, name
        others = np.delete(vec, position)
        assert np.all(np.abs(others) <= 1e-6 * max(1.0, abs(vec[position]))), name
        assert abs(vec[position]) > 1e-4, name
    # pad and mask both have a zero embedding here: IG's baseline is the document without 'rent', as in LOO
    ig = section["methods"]["integrated_gradients"]
    assert an.arrays["document_integrated_gradients"][position] == pytest.approx(
        an.arrays["document_loo"][position], abs=abs(ig["delta"]) + 1e-5)
    # the window shown carries its share of the document vectors, 0 on its special tokens
    view = windows.window_view(an, 0)
    assert view.arrays["loo"][0] == 0.0 and view.manifest["explain"] is section
    # leave-one-out of 'rent' against plain forwards: replaced in every window that holds it
    drop = _classify(loaded.model, [[w] for w in ids], cls)[0] - _classify(loaded.model, [[w] for w in masked], cls)[0]
    assert an.arrays["document_loo"][position] == pytest.approx(drop, rel=1e-4, abs=1e-6)
    assert hits == sum(1 for w in ids if rent_id in w)


def test_ig_completeness_and_loo_on_a_zero_shot_document(loaded_models):
    """Base encoder, zero-shot labels: f is computed here from plain forwards of each window (mean of
    the windows' mean-pooled states, cosine to the labels' pooled states, softmax over a temperature)."""
    loaded = loaded_models("bert")
    text = _text(4)
    an = analyze(loaded, text, windows={"size": SIZE}, methods=["saliency", "grad_input", "ig", "loo"],
                 target={"labels": LABELS}, explain_options={"baseline": "pad"})
    section = an.manifest["explain"]
    label = section["target"]["label_index"]
    temperature = section["target"]["temperature"]
    ids, where = _windows_of(an)
    count = _doc_count(an)
    model, tok = loaded.model, loaded.tokenizer
    with torch.no_grad():
        enc = tok(LABELS, padding=True, return_tensors="pt")
        hidden = model(**enc).last_hidden_state.double()
        m = enc["attention_mask"].double().unsqueeze(-1)
        anchors = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)

    def f(rows_per_window, embeds=None):
        pooled = []
        for k, rows in enumerate(rows_per_window):
            out = model(input_ids=torch.tensor(rows)) if embeds is None else model(inputs_embeds=embeds[k])
            pooled.append(out.last_hidden_state.double().mean(1))
        mean = torch.stack(pooled).mean(0)
        cos = torch.nn.functional.normalize(mean, dim=-1) @ anchors.T
        return torch.softmax(cos / temperature, -1)[:, label]

    pad = tok.pad_token_id
    with torch.no_grad():
        f_x = float(f([[w] for w in ids])[0])
        f_b = float(f([[[t if i < 0 else pad for t, i in zip(w, d, strict=True)]] for w, d in zip(ids, where, strict=True)])[0])
    assert section["target"]["value"] == pytest.approx(f_x, abs=1e-5)
    ig = section["methods"]["integrated_gradients"]
    assert ig["f_input"] == pytest.approx(f_x, abs=1e-5) and ig["f_baseline"] == pytest.approx(f_b, abs=1e-5)
    total = float(an.arrays["document_integrated_gradients"].astype(np.float64).sum())
    assert abs(total - (f_x - f_b)) <= max(0.05 * abs(f_x - f_b), 1e-6)  # completeness for the document

    # leave-one-out: each document token masked in every window that holds it, by a plain loop
    mask = tok.mask_token_id
    expected = np.zeros(count)
    with torch.no_grad():
        for i in range(count):
            rows = [[[mask if j == i else t for t, j in zip(w, d, strict=True)]] for w, d in zip(ids, where, strict=True)]
            expected[i] = f_x - float(f(rows)[0])
    np.testing.assert_allclose(an.arrays["document_loo"], expected, atol=2e-5)

    # gradients: the gradient of f with respect to ONE embedding per document token shared by the windows
    word = model.get_input_embeddings()
    doc_ids = [0] * count
    for w, d in zip(ids, where, strict=True):
        for t, i in zip(w, d, strict=True):
            if i >= 0:
                doc_ids[i] = t
    shared = word(torch.tensor(doc_ids)).detach().double().requires_grad_(True)
    inputs = []
    for w, d in zip(ids, where, strict=True):
        own = word(torch.tensor(w)).double()
        rows = torch.stack([shared[i] if i >= 0 else own[j] for j, i in enumerate(d)])
        pos = torch.arange(len(w))
        embedded = rows + model.embeddings.position_embeddings(pos).double() \
            + model.embeddings.token_type_embeddings(torch.zeros_like(pos)).double()
        inputs.append(embedded)
    model.double()
    try:
        pooled = []
        for e in inputs:
            x = model.embeddings.dropout(model.embeddings.LayerNorm(e)).unsqueeze(0)
            out = model.encoder(x)
            pooled.append(out.last_hidden_state.mean(1))
        mean = torch.stack(pooled).mean(0)
        cos = torch.nn.functional.normalize(mean, dim=-1) @ anchors.T
        value = torch.softmax(cos / temperature, -1)[0, label]
        (grad,) = torch.autograd.grad(value, shared)
    finally:
        model.float()
    np.testing.assert_allclose(an.arrays["document_saliency"], grad.norm(dim=-1).numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(an.arrays["document_grad_input"], (grad * shared).sum(-1).detach().numpy(),
                               rtol=1e-3, atol=1e-6)


def test_session_keeps_the_document_vectors(loaded_models, tmp_path):
    loaded = loaded_models("bert")
    an = analyze(loaded, _text(2), windows={"size": SIZE}, methods=["grad_input", "loo"],
                 target={"reference": "payment of rent"})
    assert an.manifest["explain"]["target"]["kind"] == "reference"
    path = save_session(an, tmp_path / "doc.attn")
    back = load_session(path)
    np.testing.assert_array_equal(back.arrays["document_loo"], an.arrays["document_loo"])
    np.testing.assert_array_equal(back.arrays["window_document_index"], an.arrays["window_document_index"])
    assert document.is_document(back.manifest["explain"])
    last = windows.window_count(back) - 1
    view = windows.window_view(back, last)
    index = back.arrays["window_document_index"][last, :len(view.tokens)]
    expected = np.where(index >= 0, back.arrays["document_loo"][np.maximum(index, 0)], 0.0)
    np.testing.assert_array_equal(view.arrays["loo"], expected.astype(np.float32))
    assert view.manifest["explain"]["target"]["kind"] == "reference"


def test_refused_in_one_line(loaded_models):
    text = _text(3, sentences=12)
    gpt2 = loaded_models("gpt2")
    with pytest.raises(UserError, match="^a document read in windows has a document-level target only"):
        analyze(gpt2, text, windows={"size": SIZE}, methods=["ig"])
    bert = loaded_models("bert")
    with pytest.raises(UserError, match="^head tests are not available with windows"):
        analyze(bert, text, windows={"size": SIZE}, methods=["heads"])
    with pytest.raises(UserError, match="explanation methods are saliency, grad_input, ig and loo"):
        analyze(bert, text, windows={"size": SIZE}, methods=["interventions"], target={"labels": LABELS})
    with pytest.raises(UserError, match="no task head"):
        analyze(bert, text, windows={"size": SIZE}, methods=["loo"])


def test_one_graph_and_window_by_window_give_the_same_gradients(loaded_models, monkeypatch):
    """Small documents hold every window in one graph; long ones go window by window (chain rule
    through the mean of the windows' outputs): the two agree."""
    loaded = loaded_models("bert")
    kwargs = dict(windows={"size": SIZE}, methods=["saliency", "grad_input", "ig"], target={"labels": LABELS},
                  explain_options={"ig_steps": 8})
    joint = analyze(loaded, _text(5), **kwargs)
    monkeypatch.setattr(document, "JOINT_BUDGET", 0)
    apart = analyze(loaded, _text(5), **kwargs)
    assert "one graph" in joint.manifest["explain"]["methods"]["integrated_gradients"]["implementation"]
    assert "each window in turn" in apart.manifest["explain"]["methods"]["integrated_gradients"]["implementation"]
    for name in ("saliency", "grad_input", "integrated_gradients"):
        np.testing.assert_allclose(apart.arrays[f"document_{name}"], joint.arrays[f"document_{name}"],
                                   rtol=1e-4, atol=1e-7)


def test_deleted_tokens_and_a_zero_baseline(one_token_model):
    """Leave-one-out by deletion removes the token from every window that holds it (checked by a
    plain loop); IG from the zero embedding keeps document-level completeness."""
    loaded, rent_id = one_token_model
    text, plain, _ = _placed(loaded, rent_id, "overlap")
    an = analyze(loaded, text, windows={"size": SIZE}, methods=["ig", "loo"], target={"class": 1},
                 explain_options={"replacement": "delete", "baseline": "zero", "ig_steps": 32})
    section = an.manifest["explain"]
    assert section["methods"]["loo"]["replacement"] == "delete"
    ids, where = _windows_of(an)
    count = _doc_count(an)
    f_x = _classify(loaded.model, [[w] for w in ids], 1)[0]
    rent = next(i for w, d in zip(ids, where, strict=True) for t, i in zip(w, d, strict=True) if t == rent_id)
    some = sorted({rent, 0, count - 1, *range(3, count, 11)})  # the plain loop runs every window per token
    expected = np.array([f_x - _classify(loaded.model, [[[t for t, j in zip(w, d, strict=True) if j != i]]
                                                         for w, d in zip(ids, where, strict=True)], 1)[0]
                         for i in some])
    np.testing.assert_allclose(an.arrays["document_loo"][some], expected, atol=2e-6)
    assert abs(expected[some.index(rent)]) > 1e-4
    ig = section["methods"]["integrated_gradients"]
    assert ig["baseline"] == "zero"
    total = float(an.arrays["document_integrated_gradients"].astype(np.float64).sum())
    assert total == pytest.approx(ig["f_input"] - ig["f_baseline"] + ig["delta"], abs=1e-6)
    assert ig["f_input"] == pytest.approx(f_x, abs=1e-6)


def test_a_damaged_document_map_is_refused(loaded_models, tmp_path):
    from attn_desktop.core.errors import UserError as Refused

    loaded = loaded_models("bert")
    an = analyze(loaded, _text(2), windows={"size": SIZE}, methods=["grad_input"], target={"labels": LABELS})
    count = _doc_count(an)
    bad = an.arrays["window_document_index"].copy()
    bad[0, 1] = count  # a document token that does not exist
    an.arrays["window_document_index"] = bad
    with pytest.raises(Refused, match="document token indices outside -1 to"):
        save_session(an, tmp_path / "bad.attn")  # the schema's checks run on saving too
    assert not (tmp_path / "bad.attn").exists()
    an.arrays["window_document_index"] = bad.clip(-1, count - 1)
    an.arrays["document_grad_input"] = np.zeros(count + 1, np.float32)
    with pytest.raises(Refused, match="document_grad_input"):
        save_session(an, tmp_path / "bad2.attn")


def test_cancel_during_the_document_stage(loaded_models):
    """Cancel is honoured inside the document stage (after every window was analysed), in one step."""
    from attn_desktop.core.errors import Cancelled

    loaded = loaded_models("bert")
    seen = []

    def progress(fraction, message):
        seen.append(message)

    def cancel():
        return any(m.startswith("Integrated Gradients") for m in seen)

    with pytest.raises(Cancelled):
        analyze(loaded, _text(4), windows={"size": SIZE}, methods=["ig", "loo"], target={"labels": LABELS},
                progress=progress, cancel=cancel, explain_options={"ig_steps": 64})
    assert any(m.startswith("window ") for m in seen) and not any(m.startswith("leave-one-out") for m in seen)
