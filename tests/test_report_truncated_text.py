"""A report of a truncated text says so above the text and greys the part after the cut (it showed
that part in plain black, as if the model had read it)."""

from __future__ import annotations

import html
import re

from attn_desktop.cli import main
from attn_desktop.core.store.session import load_session

SENTENCE = "The tenant shall pay the rent on the first day of each month. "
TAIL = "Pets are not allowed in the flat."


def test_text_after_the_cut_is_greyed_and_named(tiny_model_paths, tmp_path, capsys):
    doc, out, report = tmp_path / "lease.txt", tmp_path / "lease.attn", tmp_path / "lease.html"
    doc.write_text(SENTENCE * 12 + TAIL, encoding="utf-8")
    assert main(["analyze", "--text-file", str(doc), "--model", str(tiny_model_paths["bert"]), "--truncate",
                 "--out", str(out), "--report", str(report)]) == 0
    an = load_session(out)
    trunc = an.manifest["truncation"]
    assert trunc["truncated"] and trunc["analysed_chars"] < len(an.text) - len(TAIL)
    page = report.read_text(encoding="utf-8")
    text_section = page[page.index("<section id='text'>"):]
    text_section = text_section[:text_section.index("</section>")]
    assert "The text was cut at the model's length" in html.unescape(text_section)
    document = text_section[text_section.index("<div class='document'>"):]
    greyed = "".join(html.unescape(m) for m in re.findall(r"<span class='muted'>(.*?)</span>", document, re.S))
    assert greyed.endswith(TAIL) and greyed.strip() == an.text[trunc["analysed_chars"]:].strip()
