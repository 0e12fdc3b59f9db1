"""A report of a document read in windows says the token count it gives is the shown window's, with
the document's count (it said 'Tokens 511' for a 1790-token contract)."""

from __future__ import annotations

from attn_desktop.cli import main
from attn_desktop.core import windows
from attn_desktop.core.store.session import load_session

SENTENCE = "The tenant shall pay the rent on the first day of each month. "


def test_provenance_tokens_of_a_windowed_analysis(tiny_model_paths, tmp_path, capsys):
    doc, out, report = tmp_path / "lease.txt", tmp_path / "lease.attn", tmp_path / "lease.html"
    doc.write_text(SENTENCE * 12, encoding="utf-8")
    assert main(["analyze", "--text-file", str(doc), "--model", str(tiny_model_paths["bert"]), "--windows", "48:24",
                 "--out", str(out), "--report", str(report)]) == 0
    an = load_session(out)
    total = an.manifest["windows"]["document_tokens"]
    assert windows.is_windowed(an) and total > len(an.tokens)
    page = report.read_text(encoding="utf-8")
    assert (f"{len(an.tokens)} in the window shown (window 1 of {windows.window_count(an)}, tokens 1-"
            in page) and f"of {total})" in page
