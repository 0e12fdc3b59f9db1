"""Windowed analysis (core.windows): a document of about three windows on a 64-position tiny BERT
and GPT-2, checked against plain analyses of each window's own text; the session round trip."""

import copy

import numpy as np
import pytest

from attn_desktop.core import windows
from attn_desktop.core.errors import UserError
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.store.session import load_session, save_session

SENTENCES = [
    "The tenant shall pay the rent on the first day of each month.",
    "Late payment incurs a fee of five percent, payable with the next rent.",
    "The landlord keeps the deposit until the keys are returned; damage is deducted.",
    "Either party may end this lease with two months of written notice.",
    "Pets are not allowed, except small birds or fish kept in the flat.",
    "Repairs under one hundred pounds are the tenant's to make and pay for.",
]

def _doc_spans(loaded, text):
    spans, _ = windows.document_tokens(loaded, text)
    return spans


def _document(loaded, windows_long=3.0):
    """Sentences (a paragraph break half way) until the text is about `windows_long` windows."""
    parts, k = [], 0
    while len(_doc_spans(loaded, " ".join(parts))) < windows_long * loaded.max_positions:
        parts.append(SENTENCES[k % len(SENTENCES)] + ("\n\n" if k == 3 else ""))
        k += 1
    return " ".join(parts)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_windows_cover_the_document_and_match_plain_analyses(loaded_models, kind):
    loaded = loaded_models(kind)
    limit = loaded.max_positions
    DOCUMENT = _document(loaded)
    spans = _doc_spans(loaded, DOCUMENT)
    assert 3 * limit <= len(spans) <= 3.7 * limit  # about three windows' worth
    with pytest.raises(UserError, match="accepts at most"):
        analyze(loaded, DOCUMENT)
    an = analyze(loaded, DOCUMENT, windows={})
    info = an.manifest["windows"]
    entries = info["windows"]
    assert info["size"] == limit and info["document_tokens"] == len(spans)
    assert len(entries) >= 4 and info["rule"].startswith("Attention does not cross windows")
    covered = np.zeros(len(spans), dtype=int)
    for k, entry in enumerate(entries):
        a, b = entry["token_start"], entry["token_end"]
        covered[a:b] += 1
        assert entry["char_end"] == spans[b - 1][1]
        assert DOCUMENT[entry["char_start"]:spans[a][0]] in ("", " ")  # byte-level BPE reads the space
        assert entry["tokens"] <= limit
        view = windows.window_view(an, k)
        assert view.text == DOCUMENT
        # the window's content tokens are the document tokens a..b-1, at the same offsets
        content = [(t.start, t.end) for t in view.tokens if t.end > t.start]
        assert content == spans[a:b]
        # a plain analysis of the window's text gives the same attention and tokens
        lo, hi = entry["char_start"], entry["char_end"]
        plain = analyze(loaded, DOCUMENT[lo:hi])
        assert [t.text for t in plain.tokens] == [t.text for t in view.tokens]
        assert [(t.start + lo, t.end + lo) for t in plain.tokens] == [(t.start, t.end) for t in view.tokens]
        assert view.manifest["input_ids"] == plain.manifest["input_ids"]
        np.testing.assert_array_equal(view.arrays["attentions"], plain.arrays["attentions"])
        n = entry["tokens"]
        assert not an.arrays["window_attentions"][k, :, :, n:, :].any()  # padding stays zero
    assert covered.min() >= 1  # every document token sits in a window
    starts = [e["token_start"] for e in entries]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def test_cuts_prefer_sentence_ends(loaded_models):
    loaded = loaded_models("bert")
    short = " ".join(["Rent is due monthly.", "Fees apply, at five percent.", "The deposit is kept."] * 12)
    an = analyze(loaded, short, windows={})  # 64 positions, sentences of about 16 tokens
    entries = an.manifest["windows"]["windows"]
    assert len(entries) >= 4
    for e in entries:  # every window ends at a sentence end and starts at a sentence start
        assert short[e["char_end"] - 1] == "."
        assert e["char_start"] == 0 or short[e["char_start"] - 1:e["char_start"] + 1] == ". "



def test_most_central_window_and_place(loaded_models):
    loaded = loaded_models("bert")
    DOCUMENT = _document(loaded)
    an = analyze(loaded, DOCUMENT, windows={})
    entries = an.manifest["windows"]["windows"]
    spans = _doc_spans(loaded, DOCUMENT)
    for i in (0, len(spans) // 2, len(spans) - 1):
        pos = spans[i][0]
        hits = windows.windows_at(an, pos)
        holding = [k for k, e in enumerate(entries) if e["token_start"] <= i < e["token_end"]]
        assert sorted(h[0] for h in hits) == holding
        best = hits[0]
        for k, j, d in hits:  # the first is the most central: farthest from its window's edges
            tokens = windows.window_view(an, k).tokens
            assert tokens[j].start == pos
            assert d == min(j, len(tokens) - 1 - j) and d <= best[2]
    assert windows.place(an, 1).startswith(f"window 2 of {len(entries)}, tokens {entries[1]['token_start'] + 1}-")


def test_session_round_trip(loaded_models, tmp_path):
    loaded = loaded_models("bert")
    DOCUMENT = _document(loaded)
    an = windows.window_view(analyze(loaded, DOCUMENT, windows={"size": 48}), 2)
    path = save_session(an, tmp_path / "doc.attn")
    back = load_session(path)
    assert windows.is_windowed(back) and windows.shown_window(back) == 2
    assert back.manifest["windows"] == an.manifest["windows"]
    np.testing.assert_array_equal(back.arrays["window_attentions"], an.arrays["window_attentions"])
    np.testing.assert_array_equal(back.arrays["attentions"], an.arrays["attentions"])
    assert [t.to_json() for t in back.tokens] == [t.to_json() for t in an.tokens]
    other = windows.window_view(back, 0)
    np.testing.assert_array_equal(other.arrays["attentions"],
                                  windows.window_view(an, 0).arrays["attentions"])


def test_damaged_window_map_is_refused(loaded_models, tmp_path):
    loaded = loaded_models("bert")
    DOCUMENT = _document(loaded)
    an = analyze(loaded, DOCUMENT, windows={})
    an.manifest["windows"]["windows"][1]["token_start"] += 40  # leaves a gap
    with pytest.raises(UserError, match="in no window"):
        save_session(an, tmp_path / "bad.attn")
    assert not (tmp_path / "bad.attn").exists()


@pytest.mark.parametrize("spec, why", [("8", "too small"), ("100", "longer than"), ("64:70", "stride"),
                                       ("a:b", "SIZE or SIZE:STRIDE")])
def test_bad_settings_are_one_line(loaded_models, spec, why):
    loaded = loaded_models("bert")
    DOCUMENT = _document(loaded)
    with pytest.raises(UserError, match=why):
        analyze(loaded, DOCUMENT, windows=windows.parse_spec(spec))


def test_short_text_is_plain_when_only_if_long(loaded_models):
    loaded = loaded_models("bert")
    an = analyze(loaded, SENTENCES[0], windows={"only_if_long": True})
    assert "windows" not in an.manifest and "window_attentions" not in an.arrays
    with pytest.raises(UserError, match="head tests are not available with windows"):
        analyze(loaded, _document(loaded), windows={}, methods=["attention", "heads"])


def test_cli_windows_summary_session_and_report(tiny_model_paths, loaded_models, tmp_path, capsys):
    from attn_desktop.cli import main

    loaded = loaded_models("bert")
    doc = tmp_path / "lease.txt"
    doc.write_text(_document(loaded), encoding="utf-8")
    out, report = tmp_path / "lease.attn", tmp_path / "lease.html"
    model = str(tiny_model_paths["bert"])
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--out", str(out)]) == 2
    assert "analyse it in overlapping windows (--windows)" in capsys.readouterr().err
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--windows", "48:24",
                 "--out", str(out), "--report", str(report)]) == 0
    line = capsys.readouterr().out
    back = load_session(out)
    count = len(back.manifest["windows"]["windows"])
    assert f"{count} windows of at most 48 tokens, stride 24" in line
    assert "attention does not cross windows" in line
    page = report.read_text(encoding="utf-8")
    assert "<section id='windows'><h2>Windows</h2>" in page
    assert "Attention does not cross windows" in page and f"window 1 of {count}" in page
    section = page.split("<section id='windows'>")[1].split("</section>")[0]
    assert section.lower().count("attention does not cross windows") == 1  # the rule, said once
    for bad, why in ((["--windows", "x"], "SIZE or SIZE:STRIDE"), (["--windows", "--truncate"], "not both"),
                     (["--windows", "--methods", "rollout"], "not computed with --windows")):
        target = tmp_path / "bad.attn"
        assert main(["analyze", "--text-file", str(doc), "--model", model, "--out", str(target), *bad]) == 2
        assert why in capsys.readouterr().err and not target.exists()


def test_one_window_is_said_in_the_singular(loaded_models):
    an = analyze(loaded_models("bert"), SENTENCES[0], windows={})
    assert len(an.manifest["windows"]["windows"]) == 1
    assert windows.summary(an).startswith("1 window of at most ")


def test_only_if_long_leaves_short_texts_to_every_stage(loaded_models):
    loaded = loaded_models("gpt2")
    an = analyze(loaded, SENTENCES[0], windows={"only_if_long": True}, generate=2)
    assert "windows" not in an.manifest and an.manifest["generation"]["output_tokens"] >= 1
    with pytest.raises(UserError, match="generation is not available with windows"):
        analyze(loaded, _document(loaded), windows={"only_if_long": True}, generate=2)


def test_hostile_window_sessions_are_refused(loaded_models, tmp_path):
    loaded = loaded_models("bert")
    good = analyze(loaded, _document(loaded), windows={})
    path = save_session(good, tmp_path / "good.attn")
    assert windows.is_windowed(load_session(path))

    def refused(change, why):
        an = windows.window_view(good, 0)
        an.manifest = copy.deepcopy(an.manifest)
        an.arrays = dict(an.arrays)
        change(an)
        target = tmp_path / "bad.attn"
        with pytest.raises(UserError, match=why):
            save_session(an, target)
        assert not target.exists()

    refused(lambda an: an.arrays.pop("window_attentions"), "come only together")
    refused(lambda an: an.manifest.pop("windows"), "belongs to windowed sessions")
    refused(lambda an: an.manifest["windows"].update(shown=99), "shows a window it does not list")
    refused(lambda an: an.manifest["windows"]["tokens"][1][3].update(start=0, end=2), "damaged token in window 2")
    refused(lambda an: an.manifest["windows"]["windows"][0].update(char_end=10**9), "outside the text")
    refused(lambda an: an.arrays.update(window_attentions=an.arrays["window_attentions"][:-1]),
            "window_attentions")
    with pytest.raises(UserError, match="whole number of tokens"):
        analyze(loaded, _document(loaded), windows={"size": "64"})
