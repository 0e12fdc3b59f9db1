"""The status bar's focus on a window of a long document says the document token number, counted as
the strip counts (from 1), next to the window's own (#j as in the views); checked against the
tokenizer's offsets over the whole document."""

from __future__ import annotations

from lease_text import DOCUMENT
from transformers import AutoTokenizer

from attn_desktop.core import windows as core_windows

TIMEOUT = 120_000


def test_focus_status_gives_the_document_token(window, load, qtbot, tiny_model_paths):
    w = window
    load(w, tiny_model_paths["bert"])
    w.state.update(words=False)
    with qtbot.waitSignal(w.analysis_shown, timeout=TIMEOUT):
        w.document.editor.setPlainText(DOCUMENT)
    with qtbot.waitSignal(w.state.analysis_changed, timeout=TIMEOUT):
        assert w.windows_strip.show_window(2, pinned=True)
    an = w.state.analysis
    j = max(i for i, t in enumerate(an.tokens) if not t.special)  # the window's last text token
    w.state.update(focus=j)

    enc = AutoTokenizer.from_pretrained(tiny_model_paths["bert"])(DOCUMENT, add_special_tokens=False,
                                                                   return_offsets_mapping=True)
    starts = [s for s, e in enc["offset_mapping"]]
    number = starts.index(an.tokens[j].start) + 1
    total = an.manifest["windows"]["document_tokens"]
    assert total == len(starts)
    text = w.status_focus.text()
    assert f"(#{j}) in window 3, document token {number} of {total}" in text, text
    entry = an.manifest["windows"]["windows"][2]
    assert entry["token_start"] + 1 <= number <= entry["token_end"]
    assert f"tokens {entry['token_start'] + 1}-{entry['token_end']} of {total}" in core_windows.place(an)

    w.state.update(focus=0)  # [CLS]: no document token
    assert "document token" not in w.status_focus.text() and "(#0)" in w.status_focus.text()
