"""The report's flow figure counts what the window's title counts: token rows of every token."""

from __future__ import annotations

import re
from pathlib import Path

from attn_desktop.core.report import ReportOptions, build_report
from attn_desktop.core.store.session import load_session


def test_report_flow_title_counts_token_rows():
    fixture = Path(__file__).parent / "fixtures" / "v1-bert.attn"
    an = load_session(fixture)
    rows, n = len(an.arrays["flow_rows"]), len(an.tokens)
    page = build_report(an, ReportOptions(session_path=str(fixture), measure="flow"))
    assert re.search(rf"Attention flow · {rows} of {n} token rows · heads fused by", page)
