"""The report's agreement section writes its convention as a sentence of its own: "Computed over
44 tokens. Absolute values …" (it read "tokens. absolute values")."""

from __future__ import annotations

from attn_desktop.core.explain.agreement import CONVENTION
from attn_desktop.core.report.sections import agreement


class _Context:
    def __init__(self, section):
        self.section = section

    def explain(self):
        return self.section


def test_convention_starts_a_sentence():
    names = ["attention_importance", "loo"]
    section = {"agreement": {"methods": names, "tokens": 44, "convention": CONVENTION,
                             "kendall_tau": [[1.0, 0.2], [0.2, 1.0]], "kendall_p": [[0.0, 0.04], [0.04, 0.0]],
                             "topk": {"k": [5], "overlap": [[[1.0, 0.4], [0.4, 1.0]]]}}}
    page = agreement.render(_Context(section)).body
    assert "Computed over 44 tokens. Absolute values over the non-special tokens" in page
    assert "tokens. absolute" not in page
