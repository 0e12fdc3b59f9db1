"""Help ▸ Reading the views covers long documents (windows: attention does not cross them) and the
Validate and Heads panels (agreement is not proof), not only the attention views."""

from __future__ import annotations

from attn_desktop.gui.help import guide_html


def test_guide_covers_windows_and_validation():
    page = guide_html()
    assert "<h3>Long documents</h3>" in page and "never cross windows" in page
    assert "<h3>Validate and Heads</h3>" in page and "choose one that fits your text" in page
    assert "agree or diverge" in page and "explains" not in page
