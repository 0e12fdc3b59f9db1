"""Words from word pieces (core.views.words) on the demo model's real tokenizer, checked against the
tokenizer's own word ids and against explicit loops."""

from __future__ import annotations

import numpy as np
import pytest

from attn_desktop.core.analysis import Token
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.views import words

# no apostrophe or hyphen: here the tokenizer's own pre-tokenizer words are exactly ours
TEXT = ("The Tenant shall indemnify the Landlord against unforeseeable liabilities, "
        "réévaluer CHF 😷 in 2026.")


@pytest.fixture(scope="module")
def contract(demo_model):
    return analyze(demo_model, TEXT)


def loop_groups(analysis):
    """Units by an independent route: the fast tokenizer's word_ids (specials: None)."""
    from transformers import AutoTokenizer

    from attn_desktop.core.model.demo import demo_model_path

    tok = AutoTokenizer.from_pretrained(str(demo_model_path()), local_files_only=True)
    ids = tok(TEXT).word_ids()
    assert len(ids) == len(analysis.tokens)
    groups: list[list[int]] = []
    for i, w in enumerate(ids):
        if i > 0 and w is not None and ids[i - 1] == w:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def test_words_match_the_tokenizers_words(contract):
    units = words.group_words(contract.text, contract.tokens)
    expected = loop_groups(contract)
    assert [units.tokens(u) for u in range(len(units))] == expected
    labels = {label: u for u, label in enumerate(units.labels)}
    indemnify = units.tokens(labels["indemnify"])
    assert len(indemnify) > 1  # several pieces: "ind ##em ##ni ##fy"
    assert [contract.tokens[i].text for i in indemnify] != ["indemnify"]
    assert len(units.tokens(labels["réévaluer"])) > 1
    # specials stay single units, with their own label
    assert units.labels[0] == "[CLS]" and units.tokens(0) == [0]
    assert units.labels[-1] == "[SEP]" and units.tokens(len(units) - 1) == [len(contract.tokens) - 1]
    assert "," in units.labels and "." in units.labels  # punctuation is its own unit


def test_apostrophes_and_hyphens_stay_inside_words(demo_model):
    an = analyze(demo_model, "Each party's non-compete ends.")
    units = words.group_words(an.text, an.tokens)
    assert "party's" in units.labels and "non-compete" in units.labels
    assert "ends" in units.labels and "." in units.labels


def test_unit_matrix_equals_explicit_loops_and_rows_sum_to_one(contract):
    att = contract.arrays["attentions"][2, 5].astype(np.float64)  # one layer, one head
    units = words.group_words(contract.text, contract.tokens)
    got, which = words.unit_matrix(att, np.arange(len(contract.tokens)), units, units)
    groups = loop_groups(contract)
    assert list(which) == list(range(len(groups)))
    expected = np.zeros((len(groups), len(groups)))
    for a, qs in enumerate(groups):
        for b, ks in enumerate(groups):
            total = 0.0
            for q in qs:
                for k in ks:
                    total += att[q, k]
            expected[a, b] = total / len(qs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-3)  # stored as float16


def test_rows_of_a_subset_only_for_complete_words(contract):
    att = contract.arrays["attentions"][0, 0].astype(np.float32)
    units = words.group_words(contract.text, contract.tokens)
    word = units.labels.index("indemnify")
    pieces = units.tokens(word)
    rows = np.array([0] + pieces[:-1])  # [CLS] and all but the last piece of "indemnify"
    got, which = words.mean_rows(att[rows], rows, units)
    assert list(which) == [0]
    rows = np.array(pieces + [0])  # unsorted, complete
    got, which = words.mean_rows(att[rows], rows, units)
    assert list(which) == [0, word]
    np.testing.assert_allclose(got[1], att[pieces].mean(axis=0), rtol=1e-6)


def test_selection_row_is_mean_of_piece_rows_with_summed_columns(contract):
    att = contract.arrays["attentions"][3].astype(np.float64).mean(axis=0)
    units = words.group_words(contract.text, contract.tokens)
    chosen = units.expand([units.starts[units.labels.index(w)] for w in ("Tenant", "indemnify")])
    got = words.selection_row(lambda q: att[q], chosen, units)
    mean = np.zeros(len(contract.tokens))
    for q in chosen:
        mean += att[q] / len(chosen)
    expected = [sum(mean[k] for k in units.tokens(u)) for u in range(len(units))]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert got.sum() == pytest.approx(1.0, abs=1e-3)
    # pieces mode: the same mean over rows, columns untouched
    got = words.selection_row(lambda q: att[q], chosen, words.pieces(contract.tokens))
    np.testing.assert_allclose(got, mean, rtol=1e-5, atol=1e-7)
    assert words.selection_row(lambda q: None if q == chosen[-1] else att[q], chosen, units) is None


def test_uniform_expected_and_spans():
    text = "ab cd"
    toks = [Token("[CLS]", 0, 0, special=True), Token("a", 0, 1), Token("b", 1, 2), Token("cd", 3, 5),
            Token("[SEP]", 5, 5, special=True)]
    units = words.group_words(text, toks)
    assert units.labels == ("[CLS]", "ab", "cd", "[SEP]")
    np.testing.assert_allclose(words.uniform_expected(units), [0.2, 0.4, 0.2, 0.2])
    assert words.tokens_in_span(toks, 1, 4) == [2, 3]
    assert units.expand([2]) == [1, 2]
    assert list(units.of_token) == [0, 1, 1, 2, 3]


def test_overlapping_pieces_share_a_unit():
    text = "a 😷"
    toks = [Token("a", 0, 1), Token("\ufffd", 2, 3), Token("\ufffd", 2, 3)]  # byte pieces of one emoji
    assert words.group_words(text, toks).labels == ("a", "😷")


@pytest.mark.parametrize("kind, options", [("bart", {"target_text": "the loan was approved"}),
                                           ("gpt2", {"generate": 3})])
def test_every_attention_set_by_words(loaded_models, kind, options):
    """Encoder-decoder (decoder tokens index the decoder text) and a causal LM with generated
    tokens: every set aggregates by words, and self-attention rows still sum to 1."""
    an = analyze(loaded_models(kind), "The bank approved unbelievably large loans.", **options)
    for name in an.attention_set_names():
        queries, keys = an.axis_tokens(name)
        text_q = an.text if queries is an.tokens else an.decoder_text
        text_k = an.text if keys is an.tokens else an.decoder_text
        qu, ku = words.group_words(text_q, queries), words.group_words(text_k, keys)
        att = an.attention(name)[0, 0].astype(np.float64)
        got, which = words.unit_matrix(att, np.arange(len(queries)), qu, ku)
        assert got.shape == (len(qu), len(ku)) and list(which) == list(range(len(qu)))
        for a in range(len(qu)):
            for b in range(len(ku)):
                ref = sum(att[q, k] for q in qu.tokens(a) for k in ku.tokens(b)) / len(qu.tokens(a))
                assert got[a, b] == pytest.approx(ref, rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(got.sum(axis=1), att.sum(axis=1)[qu.starts], atol=2e-3)


def random_units(rng, n: int) -> words.Units:
    """Words of 1 to 5 pieces (most of one), single [CLS] and [SEP]."""
    sizes = [1]
    while sum(sizes) < n - 1:
        sizes.append(min(int(rng.choice([1, 1, 1, 2, 3, 5])), n - 1 - sum(sizes)))
    sizes.append(1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return words.Units(starts, n, tuple(f"u{k}" for k in range(len(starts))))


@pytest.mark.parametrize("block, side", [(2, "words"), (7, "words"), (words.ROW_BLOCK, "words"),
                                         (5, "piece rows"), (5, "piece columns")])
def test_unit_matrix_of_mapped_float16_in_blocks(tmp_path, monkeypatch, block, side):
    """Every row of a memory-mapped float16 matrix (how long captures are stored), rows and
    columns grouped differently (or one axis by pieces), read in blocks of whole query words
    (block 2: words longer than a block): equal to a float64 sum over each word pair's pieces."""
    monkeypatch.setattr(words, "ROW_BLOCK", block)
    rng = np.random.default_rng(block)
    n_q, n_k = 300, 260
    qu, ku = random_units(rng, n_q), random_units(rng, n_k)
    if side == "piece rows":
        qu = words.Units(np.arange(n_q), n_q, tuple(map(str, range(n_q))))
    elif side == "piece columns":
        ku = words.Units(np.arange(n_k), n_k, tuple(map(str, range(n_k))))
    values = rng.random((n_q, n_k)) ** 4
    values /= values.sum(axis=1, keepdims=True)
    mapped = np.lib.format.open_memmap(tmp_path / "att.npy", mode="w+", dtype=np.float16, shape=(n_q, n_k))
    mapped[:] = values
    mapped.flush()
    mapped = np.load(tmp_path / "att.npy", mmap_mode="r")
    got, which = words.unit_matrix(mapped, np.arange(n_q), qu, ku)
    exact = np.asarray(mapped, dtype=np.float64)
    expected = np.zeros((len(qu), len(ku)))
    for a in range(len(qu)):
        for b in range(len(ku)):
            expected[a, b] = exact[np.ix_(qu.tokens(a), ku.tokens(b))].sum() / len(qu.tokens(a))
    assert got.dtype == np.float32 and list(which) == list(range(len(qu)))
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-9)
    # float32 and float64 input take the same path and give the same sums
    same, _ = words.unit_matrix(exact.astype(np.float32), np.arange(n_q), qu, ku)
    np.testing.assert_array_equal(same, got)
