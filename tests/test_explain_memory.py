"""Explanations and head tests that cannot fit in memory are refused before the model runs."""

import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.explain import memory
from attn_desktop.core.pipeline import analyze


def test_the_estimate_counts_every_layer_and_head_of_each_attention_set(loaded_models):
    bert, bart = loaded_models("bert"), loaded_models("bart")
    n = 300
    assert memory.needed_bytes(bert, n) == 4 * 4 * bert.num_heads * bert.num_layers * n * n
    m = 20
    cells = bart.num_layers * n * n + bart.num_decoder_layers * (m * m + m * n)
    assert memory.needed_bytes(bart, n, m) == 4 * 4 * bart.num_heads * cells
    # the 12-layer, 12-head model of 4096 positions needs tens of gigabytes
    big = type("M", (), {"expected_layers": lambda self: {"self": 12}, "num_heads": 12})()
    assert memory.needed_bytes(big, 4096) / 2**30 == pytest.approx(36.0)


def test_a_request_that_does_not_fit_is_refused_before_the_model_runs(loaded_models, monkeypatch):
    bert = loaded_models("bert-cls")
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    ran = []
    import attn_desktop.core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_capture", lambda *a, **k: ran.append(1))
    for methods in (["ig"], ["heads"]):
        with pytest.raises(UserError) as err:
            analyze(bert, "The tenant shall pay the rent.", methods=methods, windows_hint="Analysis ▸ Windows")
        message = str(err.value)
        assert "\n" not in message and "GB of memory" in message and "Analysis ▸ Windows" in message
    assert not ran
    monkeypatch.undo()
    assert analyze(bert, "The tenant shall pay the rent.", methods=["attention"]).arrays["attentions"].shape[0] == 2


def test_available_memory_is_read(monkeypatch):
    have = memory.available_bytes()
    assert have is None or have > 0
