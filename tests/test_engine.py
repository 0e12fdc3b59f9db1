"""The model process: same results as in-process, errors and cancellation cross the pipe, a
crashed child becomes a one-line error and the next load starts a fresh one."""

import os
import signal

import numpy as np
import pytest

from attn_desktop.core.model.engine import InProcessEngine, ProcessEngine
from attn_desktop.core.errors import Cancelled, UserError

TEXT = "The tenant shall pay the rent on the first day of each month."


@pytest.fixture(scope="module")
def engine():
    e = ProcessEngine()
    yield e
    e.close()


def test_child_results_equal_in_process_results(engine, tiny_model_paths):
    progress = []
    loaded, devices = engine.load(str(tiny_model_paths["gpt2"]), "cpu", progress=lambda f, m: progress.append(m))
    assert loaded.model is None and loaded.kind == "causal-lm" and "cpu" in devices
    assert progress and loaded.card()
    remote = engine.analyze(loaded, TEXT, generate=3)
    local_engine = InProcessEngine()
    local, _ = local_engine.load(str(tiny_model_paths["gpt2"]))
    here = local_engine.analyze(local, TEXT, generate=3)
    assert remote.tokens == here.tokens
    np.testing.assert_array_equal(remote.arrays["attentions"], here.arrays["attentions"])


def test_user_errors_cross_the_pipe_and_the_model_stays(engine, tiny_model_paths, tmp_path):
    loaded, _ = engine.load(str(tiny_model_paths["bert"]))
    with pytest.raises(UserError, match="no config.json"):
        engine.load(str(tmp_path))
    with pytest.raises(UserError, match="empty"):
        engine.analyze(loaded, "   ")
    assert engine.analyze(loaded, TEXT).arrays["attentions"].shape[:2] == (2, 4)


def test_cancel_reaches_the_child(engine, tiny_model_paths):
    loaded, _ = engine.load(str(tiny_model_paths["bert"]))
    with pytest.raises(Cancelled):
        engine.analyze(loaded, TEXT, cancel=lambda: True)
    assert engine.analyze(loaded, TEXT).tokens  # usable afterwards


def test_an_analysis_for_another_model_is_refused(engine, tiny_model_paths):
    first, _ = engine.load(str(tiny_model_paths["bert"]))
    engine.load(str(tiny_model_paths["llama"]))
    with pytest.raises(UserError, match="model changed"):
        engine.analyze(first, TEXT)


def test_a_crashed_child_is_reported_and_replaced(tiny_model_paths):
    engine = ProcessEngine()
    try:
        loaded, _ = engine.load("demo")
        pid = engine.pid

        def kill_on_first_message(fraction, message):
            if engine.pid == pid:
                os.kill(pid, signal.SIGKILL)
                engine._proc.wait()

        with pytest.raises(UserError, match="stopped unexpectedly"):
            engine.analyze(loaded, " ".join(["bank"] * 500), progress=kill_on_first_message)
        with pytest.raises(UserError, match="no model is loaded"):
            engine.analyze(loaded, TEXT)
        loaded, _ = engine.load(str(tiny_model_paths["bert"]))
        assert engine.pid not in (None, pid)
        assert engine.analyze(loaded, TEXT).tokens
    finally:
        engine.close()
