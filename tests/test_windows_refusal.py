"""The refusal of explanations on a text read in windows names what is refused and what to do,
whatever the method list (the window sends "all", which the message once echoed as "all is not
available with windows")."""

from __future__ import annotations

import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.pipeline import analyze


@pytest.mark.parametrize("methods", [["all"], ["attention", "loo"], ["heads"]])
def test_refusal_says_what_and_what_to_do(loaded_models, methods):
    loaded = loaded_models("bert")
    long_text = " ".join(f"The tenant shall pay rent number {i} on time." for i in range(3 * loaded.max_positions))
    with pytest.raises(UserError) as caught:
        analyze(loaded, long_text, windows={}, methods=methods)
    message = str(caught.value)
    assert message.startswith("explanations and head tests are not available with windows")
    assert f"({loaded.max_positions} positions)" in message and "truncation" in message
    assert not message.startswith(methods[0])
