"""Schema 2: every array of the validation table and the view survive a save and a reopen bit
for bit, and a second save writes the same bytes (issue 10, "Sessions that keep opening")."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.propagate.propagation import add_flow, add_rollout
from attn_desktop.core.store.schema import ARRAY_RULES, ArrayRule
from attn_desktop.core.store.session import (
    SCHEMA_VERSION,
    load_session,
    save_session,
    session_manifest,
)

TEXT = "The tenant shall pay the rent."
VIEW = {"measure": "rollout", "layer": 1, "head": "mean", "focus": [0, 2], "attention_set": "self",
        "words": [[4, 10], [11, 16]], "scroll": {"x": 0, "y": 12.5}, "alpha": 0.5}


def table_arrays(n: int, layers: int, heads: int, rng) -> dict[str, np.ndarray]:
    sizes = {"n": n, "L": layers, "H": heads, "L+1": layers + 1}
    out = {}
    for name, rule in ARRAY_RULES.items():
        if rule.values == "float" and all(term in sizes for term in rule.shape):
            out[name] = rng.normal(size=[sizes[t] for t in rule.shape]).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def full_analysis(loaded_models):
    an = analyze(loaded_models("bert"), TEXT)
    add_rollout(an, 0.5, "mean")
    add_flow(an, [0, 3], 0.5, "mean")
    an.arrays.update(table_arrays(len(an.tokens), an.num_layers, an.num_heads, np.random.default_rng(0)))
    an.manifest["view"] = VIEW
    return an


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_every_array_and_the_manifest_round_trip_bit_for_bit(full_analysis, tmp_path):
    an = full_analysis
    assert {"saliency", "head_importance", "layer_smoothing", "flow", "rollout"} <= set(an.arrays)
    path = save_session(an, tmp_path / "a.attn")
    back = load_session(path)
    assert set(back.arrays) == set(an.arrays)
    for name, array in an.arrays.items():
        got = back.arrays[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        assert got.tobytes() == np.ascontiguousarray(array).tobytes(), name
    assert back.manifest == session_manifest(an)
    assert back.manifest["schema_version"] == SCHEMA_VERSION == 2
    assert back.manifest["view"] == VIEW
    assert back.tokens == an.tokens and back.text == an.text
    again = save_session(back, tmp_path / "b.attn")
    assert members(again) == members(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_table_shapes_are_enforced(full_analysis, tmp_path):
    an = full_analysis
    saved = an.arrays["layer_smoothing"]
    an.arrays["layer_smoothing"] = saved[:-1]
    try:
        with pytest.raises(UserError, match="layer_smoothing.*expected \\[L\\+1\\]"):
            save_session(an, tmp_path / "c.attn")
    finally:
        an.arrays["layer_smoothing"] = saved
    assert not (tmp_path / "c.attn").exists() and list(tmp_path.iterdir()) == []


def test_the_table_is_extended_by_adding_a_rule(full_analysis, tmp_path, monkeypatch):
    an = full_analysis
    monkeypatch.setitem(ARRAY_RULES, "token_pairs", ArrayRule(("n", "n"), "probability"))
    n = len(an.tokens)
    an.arrays["token_pairs"] = np.full((n, n + 1), 0.5, np.float32)
    try:
        with pytest.raises(UserError, match="token_pairs"):
            save_session(an, tmp_path / "d.attn")
        an.arrays["token_pairs"] = np.full((n, n), 0.5, np.float32)
        back = load_session(save_session(an, tmp_path / "d.attn"))
        np.testing.assert_array_equal(back.arrays["token_pairs"], an.arrays["token_pairs"])
    finally:
        del an.arrays["token_pairs"]


def test_encoder_decoder_round_trip_with_the_view(loaded_models, tmp_path):
    an = analyze(loaded_models("bart"), TEXT, target_text="the rent")
    add_rollout(an, 0.5, "max")
    an.manifest["view"] = {"attention_set": "cross", "layer": 0, "head": 1}
    back = load_session(save_session(an, tmp_path / "e.attn"))
    assert back.decoder_tokens == an.decoder_tokens and back.manifest["view"]["attention_set"] == "cross"
    for name, array in an.arrays.items():
        assert back.arrays[name].tobytes() == array.tobytes(), name


@pytest.mark.parametrize("kind,methods", [("bart", ["heads"]), ("gpt2", ["heads", "saliency", "grad_input", "loo"])])
def test_arrays_the_stages_really_make_fit_the_table(loaded_models, tmp_path, kind, methods):
    """The table agrees with what the explanation and heads stages write (not only with the
    contract): their arrays save, reopen bit for bit and are all known to the table."""
    an = analyze(loaded_models(kind), TEXT, methods=["attention", *methods])
    made = set(an.arrays) - {"attentions", "encoder_attentions", "decoder_attentions", "cross_attentions"}
    assert made and made <= set(ARRAY_RULES), made - set(ARRAY_RULES)
    back = load_session(save_session(an, tmp_path / "f.attn"))
    for name in made:
        assert back.arrays[name].tobytes() == an.arrays[name].tobytes(), name


def test_manifest_text_that_is_not_unicode_is_refused_at_save(full_analysis, tmp_path):
    an = full_analysis
    saved = an.manifest["model"]["folder"]
    an.manifest["model"]["folder"] = "/models/mod\udce9l"
    try:
        with pytest.raises(UserError, match="not valid Unicode"):
            save_session(an, tmp_path / "u.attn")
    finally:
        an.manifest["model"]["folder"] = saved
    assert list(tmp_path.iterdir()) == []
