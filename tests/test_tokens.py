"""Token spans point at the exact characters of the text; display text is clean."""

import pytest

from attn_desktop.core.pipeline import analyze
from attn_desktop.core.tokens import build_tokens, clean_piece

TEXT = "The bank  approved\nthe loan; café crème, 3.14!"


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama", "bart", "t5", "mpnet"])
def test_spans_match_display_text(loaded_models, kind):
    analysis = analyze(loaded_models(kind), TEXT)
    covered = set()
    for t in analysis.tokens:
        assert 0 <= t.start <= t.end <= len(analysis.text)
        if t.end > t.start:
            span = analysis.text[t.start:t.end]
            assert span == t.text
            assert not span[0].isspace() and not span[-1].isspace()
            covered.update(range(t.start, t.end))
        for marker in ("##", "Ġ", "▁"):
            assert marker not in t.text or t.special
    # every visible character belongs to some token
    visible = {i for i, c in enumerate(TEXT) if not c.isspace()}
    assert visible <= covered


def test_special_tokens_are_flagged_without_span(demo_model):
    analysis = analyze(demo_model, "A river bank.")
    first, last = analysis.tokens[0], analysis.tokens[-1]
    assert (first.text, first.special, first.start == first.end) == ("[CLS]", True, True)
    assert (last.text, last.special) == ("[SEP]", True)
    assert not any(t.special for t in analysis.tokens[1:-1])


def test_wordpiece_continuations_read_cleanly(demo_model):
    analysis = analyze(demo_model, "Unbelievably")
    pieces = [t.text for t in analysis.tokens if not t.special]
    assert "".join(pieces).lower() == "unbelievably"


def test_clean_piece():
    assert clean_piece("##ing") == "ing"
    assert clean_piece("Ġbank") == "bank"
    assert clean_piece("▁bank") == "bank"
    assert clean_piece("▁") == "␣"


def test_build_tokens_trims_whitespace():
    tokens = build_tokens("a  b", ["a", "Ġ", "Ġb"], [(0, 1), (1, 2), (2, 4)], [False, False, False])
    assert [(t.text, t.start, t.end) for t in tokens] == [("a", 0, 1), ("␣", 1, 1), ("b", 3, 4)]
