"""What the model saw: each token keeps its vocabulary piece and an unknown flag, sessions keep
them (and older sessions without them still open), truncation records where the text was cut."""

from __future__ import annotations

import pytest

from attn_desktop.core.analysis import Token
from attn_desktop.core.errors import UserError
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.tokens import count_unknown, model_pieces

NOTE = "Patient to réévaluer CHF 😷 tomorrow."


def test_demo_pieces_accents_case_and_unknown(demo_model):
    an = analyze(demo_model, NOTE)
    tok = demo_model.tokenizer
    ids = an.manifest["input_ids"]
    assert [t.piece for t in an.tokens] == tok.convert_ids_to_tokens(ids)
    assert [t.unknown for t in an.tokens] == [i == tok.unk_token_id for i in ids]
    word = [t for t in an.tokens if 11 <= t.start < 20]
    assert "".join(t.text for t in word) == "réévaluer"
    assert model_pieces(word) == "re ##eva ##lu ##er"
    emoji = next(t for t in an.tokens if t.text == "😷")
    assert emoji.unknown and emoji.piece == "[UNK]" and model_pieces([emoji]) == "[UNK]"
    assert count_unknown(an.tokens) == 1
    assert model_pieces([t for t in an.tokens if t.text == "tomorrow"]) is None
    assert demo_model.name == "all-MiniLM-L6-v2"


def test_demo_folder_by_path_keeps_its_name(demo_path):
    from attn_desktop.core.model.demo import DEMO_NAME, demo_label

    assert demo_label(demo_path) == DEMO_NAME
    assert demo_label(demo_path.parent) is None


def test_pieces_survive_a_session_and_old_tokens_still_read(demo_model, tmp_path):
    from attn_desktop.core.store.session import load_session, save_session

    an = analyze(demo_model, NOTE)
    back = load_session(save_session(an, tmp_path / "a.attn"))
    assert back.tokens == an.tokens
    old = Token.from_json({"text": "CH", "start": 0, "end": 2, "special": False, "generated": False})
    assert old.piece is None and not old.unknown and model_pieces([old]) is None
    assert "piece" not in old.to_json()


def test_truncation_records_the_cut_and_names_the_callers_setting(loaded_models):
    model = loaded_models("bert")
    text = "The tenant shall pay the rent. " * 20
    with pytest.raises(UserError, match=r"allow truncation \(Analysis menu\)"):
        analyze(model, text, truncate_hint="Analysis menu")
    with pytest.raises(UserError, match=r"\(--truncate\)"):
        analyze(model, text)
    an = analyze(model, text, truncate=True)
    info = an.manifest["truncation"]
    assert info["truncated"] and info["tokens_before_truncation"] > len(an.tokens)
    cut = info["analysed_chars"]
    assert 0 < cut < len(text)
    assert cut == max(t.end for t in an.tokens if not t.special)


def test_cli_summary_counts_unknown_tokens(tmp_path, capsys):
    from attn_desktop import cli

    out = tmp_path / "s.attn"
    assert cli.main(["analyze", "--text", NOTE, "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "1 unknown token (not in the vocabulary)" in line
    assert line.startswith("all-MiniLM-L6-v2 ")


def test_byte_level_pieces_read_as_the_bytes_they_encode(loaded_models):
    from attn_desktop.core.tokens import byte_level_piece

    assert byte_level_piece("Ġcaf") == " caf"
    assert byte_level_piece("Ã©") == "é"
    assert byte_level_piece("Ã") == "<C3>"
    assert byte_level_piece("ðŁĺ·") == "😷"
    an = analyze(loaded_models("gpt2"), "The café 😷")
    by_text = {}
    for t in an.tokens:
        by_text.setdefault(t.text, []).append(t)
    assert model_pieces(by_text["The"]) is None
    assert count_unknown(an.tokens) == 0  # bytes: nothing is unknown to a byte-level model
    e = by_text["é"]  # the tiny vocabulary splits é into its two bytes
    pieces = model_pieces(e)
    assert pieces is not None and "Ã" not in pieces
    assert all(t.piece in ("é", "<C3>", "<A9>") for t in e)
