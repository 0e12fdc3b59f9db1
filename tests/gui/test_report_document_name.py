"""The window's report and captions name the text file the analysis came from, also after the
analysis was saved as a session (the window title then names the session) and after that session
is opened again; a sample text names nothing, a session without a source names itself."""

from __future__ import annotations

import re

from attn_desktop.core.store.session import load_session

TIMEOUT = 60_000
TEXT = "The tenant shall pay the rent on the first day of each month."


def _cover(page: str) -> tuple[str, str]:
    return re.search(r"<title>(.*?)</title>", page).group(1), re.search(r"<p class='sub'>(.*?)</p>", page).group(1)


def _report(w, qtbot, path) -> tuple[str, str]:
    with qtbot.waitSignal(w.exports.report_written, timeout=TIMEOUT):
        assert w.exports.export_report(str(path)) is not None
    return _cover(path.read_text(encoding="utf-8"))


def test_report_names_the_text_file_after_save_and_reopen(window, load, tiny_model_paths, qtbot, tmp_path):
    w = window
    load(w, tiny_model_paths["bert"])
    doc = tmp_path / "lease.txt"
    doc.write_text(TEXT, encoding="utf-8")
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.open_text_file(str(doc))
    saved = tmp_path / "analysis.attn"
    with qtbot.waitSignal(w.session_saved, timeout=TIMEOUT):
        w.save_session(str(saved))
    assert "analysis.attn" in w.windowTitle()  # the window names the session it is saved in
    assert load_session(saved).manifest["source_name"] == "lease.txt"
    title, sub = _report(w, qtbot, tmp_path / "first.html")
    assert title.endswith("· lease.txt") and "document lease.txt" in sub
    assert load_session(tmp_path / "first.attn").manifest["source_name"] == "lease.txt"
    assert w.exports.caption()["document"] == "lease.txt"

    # a sample text: no file of the user's; then the session again: its source comes back
    sample = tmp_path / "sample.txt"
    sample.write_text("Another text.", encoding="utf-8")
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.open_text_file(str(sample), remember=False)
    w.set_document_name(None)  # as the start does with the shipped sample
    assert w.document_title() is None
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.open_session(str(saved))
    title, sub = _report(w, qtbot, tmp_path / "again.html")
    assert title.endswith("· lease.txt") and "analysis.attn" not in title + sub


def test_a_session_without_a_source_is_named_by_itself(window, qtbot, tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent.parent / "fixtures" / "v1-bert.attn"
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT):
        window.open_session(str(fixture))
    assert "source_name" not in window.state.analysis.manifest
    title, sub = _report(window, qtbot, tmp_path / "r.html")
    assert title.endswith("· v1-bert.attn") and "document v1-bert.attn" in sub
