"""The report names the document after the text file the analysis came from (recorded in the
session as manifest['source_name']), not after the session file; the session's name only when no
text file is known. The recorded name is untrusted input when read back."""

from __future__ import annotations

import re

import pytest
from hostile import session

from attn_desktop.cli import main
from attn_desktop.core.errors import UserError
from attn_desktop.core.store.session import load_session

TEXT = "The tenant shall pay the rent on the first day of each month."


def _cover(page: str) -> tuple[str, str]:
    """(the page's <title>, the cover's subtitle)."""
    title = re.search(r"<title>(.*?)</title>", page).group(1)
    sub = re.search(r"<p class='sub'>(.*?)</p>", page).group(1)
    return title, sub


def test_report_names_the_text_file_not_the_session(tiny_model_paths, tmp_path, capsys):
    model = str(tiny_model_paths["bert"])
    doc = tmp_path / "lease.txt"
    doc.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "analysis.attn"
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--out", str(out)]) == 0
    assert load_session(out).manifest["source_name"] == "lease.txt"  # the name only, never the folder

    page_path = tmp_path / "r.html"
    assert main(["report", str(out), "--out", str(page_path)]) == 0
    title, sub = _cover(page_path.read_text(encoding="utf-8"))
    assert title.endswith("· lease.txt") and "document lease.txt" in sub and "analysis.attn" not in title + sub

    # typed text: no source file, so the report is named after the session
    typed = tmp_path / "typed.attn"
    assert main(["analyze", "--text", TEXT, "--model", model, "--out", str(typed)]) == 0
    assert "source_name" not in load_session(typed).manifest
    assert main(["report", str(typed), "--out", str(page_path)]) == 0
    title, sub = _cover(page_path.read_text(encoding="utf-8"))
    assert title.endswith("· typed.attn") and "document typed.attn" in sub
    capsys.readouterr()


@pytest.mark.parametrize("bad, why", [
    ("../../etc/passwd", "not a path"), ("C:\\docs\\lease.txt", "not a path"), ("", "1 to 255"),
    ("x" * 256, "1 to 255"), ("lease\u202etxt.exe", "control or format"), ("two\nlines", "control or format"),
    (42, "not text"), (["lease.txt"], "not text"),
])
def test_a_bad_source_name_in_a_session_is_refused_in_one_line(tmp_path, bad, why):
    path = session(tmp_path / "s.attn", source_name=bad)
    with pytest.raises(UserError, match=why) as info:
        load_session(path)
    assert "source_name" in str(info.value) and "\n" not in str(info.value)


def test_sessions_without_or_with_null_source_name_still_load(tmp_path):
    assert "source_name" not in load_session(session(tmp_path / "a.attn")).manifest
    assert load_session(session(tmp_path / "b.attn", source_name=None)).manifest["source_name"] is None
    assert load_session(session(tmp_path / "c.attn", source_name="Lease 2026 (final).txt")).manifest[
        "source_name"] == "Lease 2026 (final).txt"
