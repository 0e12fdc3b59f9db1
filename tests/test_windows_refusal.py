"""What windows refuse names what is refused and what to do, whatever the method list (the window
sends "all", which the message once echoed as "all is not available with windows"): head tests in
any case, and explanations whose target has no document-level form (core.explain.document)."""

from __future__ import annotations

import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.pipeline import analyze


@pytest.mark.parametrize("methods", [["heads"], ["attention", "loo", "heads"]])
def test_refusal_says_what_and_what_to_do(loaded_models, methods):
    loaded = loaded_models("bert")
    long_text = " ".join(f"The tenant shall pay rent number {i} on time." for i in range(3 * loaded.max_positions))
    with pytest.raises(UserError) as caught:
        analyze(loaded, long_text, windows={}, methods=methods, target={"labels": ["rent", "other"]})
    message = str(caught.value)
    assert message.startswith("head tests are not available with windows")
    assert f"({loaded.max_positions} positions)" in message and "truncation" in message
    assert not message.startswith(methods[0])


@pytest.mark.parametrize("methods", [["all"], ["attention", "loo"]])
def test_a_next_token_target_has_no_document_form(loaded_models, methods):
    loaded = loaded_models("gpt2")
    long_text = " ".join(f"The tenant shall pay rent number {i} on time." for i in range(3 * loaded.max_positions))
    with pytest.raises(UserError) as caught:
        analyze(loaded, long_text, windows={}, methods=methods)
    message = str(caught.value)
    assert message.startswith("a document read in windows has a document-level target only")
    assert "next-token" in message and "truncation" in message and "all" not in message.split(":")[0]
