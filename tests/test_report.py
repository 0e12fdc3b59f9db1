"""The HTML report: self-contained, escaped, redacted without leaks, written atomically."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from attn_desktop.cli import main
from attn_desktop.core.errors import UserError
from attn_desktop.core.report import ReportOptions, build_report, parse_redact, write_report
from attn_desktop.core.report import png as rpng
from attn_desktop.core.report.build import decoded_contents
from attn_desktop.core.store.session import load_session

HOSTILE = '<script>x</script></style>"onerror=y javascript:z<b>b</b>&amp;'
# made-up words that the report's own wording never uses
SECRET = "Zanzibar Quetzal visited Brontosaurus Xylophone on 2024-03-05 paying 250 dollars"
SECRET_WORDS = ["Zanzibar", "Quetzal", "visited", "Brontosaurus", "Xylophone", "paying", "dollars"]

URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "poster", "background", "srcset",
             "data", "ping", "cite", "longdesc", "manifest", "codebase", "lowsrc", "dynsrc"}


class Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.data, self.styles = [], [], [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_style = tag == "style"

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self._in_style = False

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.data).append(data)


def parse(page: str) -> Collect:
    c = Collect()
    c.feed(page)
    c.close()
    return c


@pytest.fixture(scope="module")
def analysis_of(loaded_models):
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.propagate.propagation import add_flow, add_rollout

    def make(text: str, kind: str = "bert"):
        an = analyze(loaded_models(kind), text)
        add_rollout(an, 0.5, "mean", 0)
        if kind.startswith("bert"):
            add_flow(an, [0, 1], 0.5, "mean")
        return an

    return make


def check_self_contained(page: str) -> Collect:
    c = parse(page)
    assert not {"script", "link", "iframe", "object", "embed", "base", "form", "audio", "video"} & set(c.tags)
    for tag, key, value in c.attrs:
        assert not key.startswith("on"), (tag, key)
        if key in URL_ATTRS:
            assert value.startswith("data:") or value.startswith("#"), (tag, key, value[:60])
        if key == "style":
            assert "url(" not in value.lower() and "@import" not in value.lower()
        if tag == "meta" and key == "http-equiv":
            assert value.lower() == "content-security-policy"
    css = "".join(c.styles).lower()
    assert "url(" not in css and "@import" not in css and "expression(" not in css
    # every url( anywhere (inline SVG attributes included) stays inside the file
    for m in re.finditer(r"url\(\s*['\"]?([^)'\"]*)", page, flags=re.IGNORECASE):
        assert m.group(1).startswith("#") or m.group(1).startswith("data:"), m.group(0)
    return c


def test_report_is_self_contained_and_has_its_sections(analysis_of, tmp_path):
    an = analysis_of("The tenant shall pay the rent on time.")
    from attn_desktop.core.store.session import save_session

    session = save_session(an, tmp_path / "s.attn")
    page = build_report(an, ReportOptions(session_path=str(session), document_name="lease.txt"))
    c = check_self_contained(page)
    ids = [v for _t, k, v in c.attrs if k == "id"]
    for section in ("provenance", "text", "attention", "rollout", "flow", "heads", "record"):
        assert section in ids
    assert ids.index("provenance") < ids.index("text") < ids.index("attention")
    import hashlib

    assert hashlib.sha256(session.read_bytes()).hexdigest() in page
    for name, digest in an.manifest["model"]["weights_sha256"].items():
        assert name in page and digest in page
    import zipfile

    with zipfile.ZipFile(session) as z:  # each array's fingerprint: its stored .npy values' bytes
        for name in ("attentions", "rollout"):
            with z.open(f"{name}.npy") as fh:
                assert hashlib.sha256(np.load(fh).tobytes()).hexdigest() in page
    assert ids.index("settings") < ids.index("record")
    assert "How to read this." in page
    text = "".join(c.data)
    assert "lease.txt" in text and "tenant" in text
    assert '"text": "The tenant shall pay the rent on time."' in text  # the record, for checking


def test_every_document_string_is_escaped(analysis_of):
    an = analysis_of(HOSTILE)
    page = build_report(an, ReportOptions(document_name='"><script>x</script>.txt'))
    c = check_self_contained(page)
    assert c.tags.count("style") == 1  # "</style>" in the text did not end the style sheet
    assert "b" not in c.tags and "img" not in c.tags
    text = "".join(c.data)
    for bit in ("<script>", "</style>", '"onerror=', "javascript:", "<b>b</b>", "&amp;"):
        assert bit in text  # shown as text
    assert '"><script>x</script>.txt' in text
    assert not any(v.lower().startswith("javascript:") for _t, _k, v in c.attrs)


def test_png_writer_round_trip_and_text_chunks():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    data = rpng.encode_png(img, {"Title": "Attention · layer 2 · “β”", "Description": "measure=attention"})
    assert np.array_equal(rpng.decode_png(data), img)
    assert rpng.read_text(data) == {"Title": "Attention · layer 2 · “β”", "Description": "measure=attention"}


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def test_heatmap_images_hold_cells_only(analysis_of):
    an = analysis_of("The bank approved the loan.")
    page = build_report(an, ReportOptions())
    n = len(an.tokens)
    sizes = set()
    for data in _pngs(page):
        px = rpng.decode_png(data)
        sizes.add(px.shape[:2])
        assert rpng.read_text(data) == {}
        h, w = px.shape[:2]
        if h % n == 0 and w % n == 0 and h == w:  # an n x n heatmap: every cell one flat colour
            cell = h // n
            blocks = px.reshape(n, cell, n, cell, 3)
            assert (blocks == blocks[:, :1, :, :1]).all()
    assert any(h == w and h % n == 0 for h, w in sizes)


def _assert_no_secret(page: str, words) -> None:
    haystack = "\n".join(decoded_contents(page)).lower()
    for data in _pngs(page):
        haystack += "\n".join(rpng.read_text(data)).lower()
    for word in words:
        assert word.lower() not in haystack, word


def test_redacting_words_leaves_no_word_of_the_text(analysis_of, tmp_path):
    an = analysis_of(SECRET)
    page = build_report(an, ReportOptions(redaction=parse_redact("words"), document_name="Zanzibar.txt",
                                          measure="rollout"))
    check_self_contained(page)
    _assert_no_secret(page, SECRET_WORDS)
    text = "".join(parse(page).data)
    assert "250" in text and "2024" in text  # numbers stay
    assert "Redacted report" in text and "words:" in text
    assert "[redacted]" in page  # the record says what it dropped


def test_redacting_spans_masks_them_everywhere(analysis_of, tmp_path):
    an = analysis_of(SECRET)
    spans = tmp_path / "spans.txt"
    start = SECRET.index("Brontosaurus")
    spans.write_text(f"# who\ntext: zanzibar quetzal\n{start}-{start + len('Brontosaurus')}\n", encoding="utf-8")
    page = build_report(an, ReportOptions(redaction=parse_redact(f"spans:{spans}")))
    check_self_contained(page)
    _assert_no_secret(page, ["Zanzibar", "Quetzal", "Brontosaurus"])
    text = "".join(parse(page).data)
    assert "Xylophone" in text and "visited" in text  # the rest stays readable
    assert "spans.txt" in text


def test_a_forgotten_text_field_fails_closed(analysis_of):
    an = analysis_of(SECRET)
    an.manifest["note_from_elsewhere"] = SECRET  # a field redaction does not know
    with pytest.raises(UserError, match="redaction check failed"):
        build_report(an, ReportOptions(redaction=parse_redact("words")))


def test_bad_spans_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("12 to 30\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1"):
        parse_redact(f"spans:{bad}")
    with pytest.raises(UserError, match="unknown redaction"):
        parse_redact("everything")


def test_write_is_atomic_and_refuses_bad_paths(analysis_of, tmp_path):
    an = analysis_of("The bank approved the loan.")
    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")
    with pytest.raises(UserError):
        write_report(an, out, ReportOptions(layer=99))
    assert out.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(UserError, match="must end in .html"):
        write_report(an, tmp_path / "r.txt")
    write_report(an, out, ReportOptions(head=1, layer=0, focus=(2, 3), scale="log"))
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_encoder_decoder_cross_attention_report(analysis_of):
    an = analysis_of("the bank approved", kind="bart")
    page = build_report(an, ReportOptions(set_name="cross", redaction=parse_redact("words")))
    check_self_contained(page)
    assert "cross-attention" in page


def test_cli_report_and_analyze_report(tiny_model_paths, tmp_path, capsys):
    session, report = tmp_path / "s.attn", tmp_path / "a.html"
    code = main(["analyze", "--text", "The tenant pays.", "--model", str(tiny_model_paths["bert"]),
                 "--methods", "attention,rollout", "--out", str(session), "--report", str(report)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "report ->" in out and report.read_text(encoding="utf-8").count("<section") >= 4
    code = main(["report", str(session), "--out", str(tmp_path / "b.html"), "--redact", "words",
                 "--measure", "rollout", "--head", "mean", "--focus", "1,2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tenant" not in (tmp_path / "b.html").read_text(encoding="utf-8").lower()
    code = main(["report", str(session), "--out", str(tmp_path / "c.html"), "--layer", "7"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "layer 7" in err
    assert not (tmp_path / "c.html").exists()
    code = main(["analyze", "--text", "x", "--model", str(tiny_model_paths["bert"]), "--out",
                 str(tmp_path / "d.attn"), "--report", str(tmp_path / "d.pdf")])
    out, err = capsys.readouterr()
    assert code == 2 and "must end in .html" in err and not (tmp_path / "d.attn").exists()


def test_schema_1_fixture_reports(tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "v1-bert.attn"
    page = build_report(load_session(fixture), ReportOptions(session_path=str(fixture), measure="flow"))
    check_self_contained(page)
    assert "Attention flow" in page


def test_redacted_verdict_keeps_its_wording_but_not_quoted_tokens(analysis_of):
    an = analysis_of(SECRET)
    an.manifest["explain"] = {"verdict": {
        "headline": "For this input, attention diverges from the gradient evidence.",
        "details": ["the top token is “Zanzibar” (IG)", "'Xylophone' ranks second"],
        "caveats": ["one input and one target"]}}
    page = build_report(an, ReportOptions(redaction=parse_redact("words")))
    _assert_no_secret(page, SECRET_WORDS)
    text = "".join(parse(page).data)
    assert "attention diverges from the gradient evidence" in text  # in the summary and the section
    assert "the top token is “[redacted]” (IG)" in text and "one input and one target" in text


def test_heads_section_shows_head_importance_with_no_effect_heads(analysis_of):
    an = analysis_of("The bank approved the loan.")
    layers, heads = an.arrays["attentions"].shape[:2]
    grid = np.linspace(-0.5, 1.0, layers * heads, dtype=np.float32).reshape(layers, heads)
    an.arrays["head_importance"] = grid
    an.arrays["layer_smoothing"] = np.linspace(0.2, 0.9, layers + 1, dtype=np.float32)
    an.manifest["heads"] = {"threshold": 0.01, "sets": {"self": {"no_effect": [[0, 1]]}},
                            "target": {"kind": "reference", "predicted": "approved"}}
    page = build_report(an, ReportOptions())
    section = page[page.index("<section id='heads'"):]
    section = section[: section.index("</section>")]
    assert "Head importance" in section and "○" in section and "Over-smoothing" in section
    # the largest head, scaled to 1, is the reddest cell
    assert "background:#b2182b" in section
    redacted = build_report(an, ReportOptions(redaction=parse_redact("words")))
    assert "approved" not in redacted.lower()


def test_report_by_words(analysis_of):
    from attn_desktop.core.views import words as core_words

    an = analysis_of("Indemnification clauses protect parties.")
    units = core_words.group_words(an.text, an.tokens)
    multi = [u for u in range(len(units)) if len(units.tokens(u)) > 1]
    assert multi, "the tiny tokenizer splits some word into pieces"
    u = multi[0]
    first = units.tokens(u)[0]
    page = build_report(an, ReportOptions(words=True, focus=(first,)))
    check_self_contained(page)
    word = units.labels[u]
    assert f"“{word}” (#{units.tokens(u)[0]}–{units.tokens(u)[-1]})" in page  # the focus is the whole word
    # the attention heatmap has one row and one column per word: its PNG is a square of len(units) cells
    sizes = [rpng.decode_png(d).shape[:2] for d in _pngs(page)]
    cell = max(1, min(24, int(560 // len(units))))  # as svg.heatmap sizes its cells
    assert (len(units) * cell, len(units) * cell) in sizes
    redacted = build_report(an, ReportOptions(words=True, focus=(first,), redaction=parse_redact("words")))
    assert word.lower() not in redacted.lower()
    assert f"#{units.tokens(u)[0]}–{units.tokens(u)[-1]}" in redacted


@pytest.mark.parametrize("kind", ["gpt2", "bart"])
def test_decoder_models_report_every_set_by_words_and_redacted(analysis_of, kind):
    an = analysis_of("Zanzibar Quetzal paid 250.", kind=kind)
    for set_name in an.attention_set_names():
        for measure in ("attention", "rollout"):
            page = build_report(an, ReportOptions(set_name=set_name, measure=measure, words=True,
                                                  redaction=parse_redact("words")))
            check_self_contained(page)
            _assert_no_secret(page, ["Zanzibar", "Quetzal"])


BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if __import__("shutil").which(b)), None)


@pytest.mark.skipif(BROWSER is None or __import__("shutil").which("pdftotext") is None,
                    reason="needs a headless Chromium and poppler's pdftotext/pdfimages")
def test_a_real_browser_prints_every_section_table_and_image(analysis_of, tmp_path):
    """Chromium with networking off prints the report: every section on its own page, its
    tables' text and the heatmap images are in the PDF."""
    import subprocess

    an = analysis_of("The tenant shall pay the rent on time.")
    page = build_report(an, ReportOptions())
    src, pdf = tmp_path / "r.html", tmp_path / "r.pdf"
    src.write_text(page, encoding="utf-8")
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",
                    f"--user-data-dir={tmp_path / 'profile'}", "--no-pdf-header-footer",
                    f"--print-to-pdf={pdf}", src.as_uri()], check=True, capture_output=True, timeout=120)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    titles = re.findall(r"<section id='[a-z]+'><h2>([^<]+)</h2>", page)
    assert len(titles) >= 6
    for title in titles:
        assert title in text
    assert text.count("How to read this.") == len(titles)
    assert "Weight file" in text and "model.safetensors" in text and "tenant" in text
    pages = text.count("\f")
    assert pages >= len(titles)  # one section per page at least
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    n = len(an.tokens)
    sides = [int(line.split()[3]) for line in images.splitlines()[2:] if line.split()[3] == line.split()[4]]
    assert sum(1 for s in sides if s % n == 0) >= 2  # the attention and rollout heatmaps, n x n cells


def test_report_starts_from_the_view_saved_with_the_session(analysis_of, tmp_path, capsys):
    from attn_desktop.core.store.session import save_session

    an = analysis_of("The tenant shall pay the rent.")
    an.manifest["view"] = {"measure": "rollout", "set_name": "self", "layer": 0, "head": "max", "focus": 3,
                           "alpha": 0.5, "start_layer": 0}
    session = save_session(an, tmp_path / "v.attn")
    assert main(["report", str(session), "--out", str(tmp_path / "v.html")]) == 0
    page = (tmp_path / "v.html").read_text(encoding="utf-8")
    assert "Shading:</strong> rollout through layer 0, from “shall” (#3)" in page
    assert main(["report", str(session), "--out", str(tmp_path / "w.html"), "--measure", "attention",
                 "--focus", "2"]) == 0
    page = (tmp_path / "w.html").read_text(encoding="utf-8")
    assert "Shading:</strong> attention, layer 0, max over heads, from “tenant” (#2)" in page
    capsys.readouterr()


def test_large_heatmaps_are_max_pooled_and_say_so():
    from attn_desktop.core.report import svg

    m = np.random.default_rng(1).random((7, 5)).astype(np.float32)
    pooled, step = svg.pool_max(m, 3)
    assert step == 3 and pooled.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert pooled[i, j] == m[3 * i: 3 * i + 3, 3 * j: 3 * j + 3].max()
    big = np.random.default_rng(2).random((1100, 1100)).astype(np.float32)
    fig = svg.heatmap(big, [str(i) for i in range(1100)], [str(i) for i in range(1100)])
    assert "the largest of 2 × 2 cells" in fig
    assert [rpng.decode_png(d).shape[:2] for d in _pngs(fig)][0] == (550, 550)


def test_export_files_with_hostile_labels_parse_and_never_start_a_formula():
    import csv as _csv
    import io
    import xml.etree.ElementTree as ET

    from attn_desktop.core.report import exports

    labels = ["<script>", "]]>&amp;", "=HYPERLINK(\"x\")", "+1", "a\x01b", "\u202eevil"]
    m = np.arange(36, dtype=np.float32).reshape(6, 6) / 36
    fields = exports.caption_fields(measure="attention", layer=2, head="mean", model="m<1>", document='d"&.txt')
    root = ET.fromstring(exports.heatmap_svg(m, labels, labels, caption=fields).encode("utf-8"))
    ns = "{http://www.w3.org/2000/svg}"
    assert len([r for r in root.iter(f"{ns}rect") if r.get("class") == "cell"]) == 36
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "<script>" in texts and "[U+202E]evil" in texts
    assert root.find(f"{ns}metadata")[0].get("document") == 'd"&.txt'
    rows = list(_csv.reader(io.StringIO(exports.matrix_csv(m, labels, labels))))
    assert rows[0][1:] == [f"{i}:{t}" for i, t in enumerate(labels)]
    assert not any(cell[:1] in "=+-@" for row in rows for cell in row[:1] + rows[0])


def test_importance_vector_shades_the_text_both_ways_without_a_focus(analysis_of):
    from attn_desktop.core.report.sections.text import NEG, POS, shade

    an = analysis_of("The bank approved the loan.")
    n = len(an.tokens)
    ig = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    an.arrays["integrated_gradients"] = ig
    an.manifest["explain"] = {"target": {"kind": "reference"}}
    page = build_report(an, ReportOptions(measure="integrated_gradients"))
    text = page[page.index("<section id='text'"):]
    text = text[: text.index("</section>")]
    assert "Integrated Gradients, for the target (reference)" in text
    assert " focus'" not in text and "largest absolute values" in text
    assert f"background:{shade(1.0, NEG)}" in text and f"background:{shade(1.0, POS)}" in text
    assert "Token importance by method" in page


def test_cli_report_is_by_words_unless_asked_for_pieces(analysis_of, tmp_path, capsys):
    from attn_desktop.core.store.session import save_session
    from attn_desktop.core.views import words as core_words

    an = analysis_of("Indemnification clauses protect parties.")
    units = core_words.group_words(an.text, an.tokens)
    u = next(u for u in range(len(units)) if len(units.tokens(u)) > 1)
    first, last = units.tokens(u)[0], units.tokens(u)[-1]
    session = save_session(an, tmp_path / "s.attn")  # no view saved: the window's default, words
    assert main(["report", str(session), "--out", str(tmp_path / "w.html"), "--focus", str(first)]) == 0
    assert f"“{units.labels[u]}” (#{first}–{last})" in (tmp_path / "w.html").read_text(encoding="utf-8")
    assert main(["report", str(session), "--out", str(tmp_path / "p.html"), "--focus", str(first),
                 "--pieces"]) == 0
    assert f"(#{first}–{last})" not in (tmp_path / "p.html").read_text(encoding="utf-8")
    capsys.readouterr()
