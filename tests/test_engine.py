"""The model process: same results as in-process, errors and cancellation cross the pipe, a
crashed child becomes a one-line error and the next load starts a fresh one."""

import os
import signal

import numpy as np
import pytest

from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.model.engine import InProcessEngine, ProcessEngine

TEXT = "The tenant shall pay the rent on the first day of each month."


class _Unloaded:
    path = "never-loaded"


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


def test_user_errors_cross_the_pipe_and_the_model_stays_usable(engine, tiny_model_paths, tmp_path):
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
        folder = engine._folder
        assert folder is not None and os.path.isdir(folder) and f"-{pid}-" in os.path.basename(folder)

        def kill_on_first_message(fraction, message):
            if engine.pid == pid:
                os.kill(pid, signal.SIGKILL)
                engine._proc.wait()

        with pytest.raises(UserError, match="stopped unexpectedly"):
            engine.analyze(loaded, " ".join(["bank"] * 500), progress=kill_on_first_message)
        assert not os.path.exists(folder)  # the killed child's folder went with it
        loaded, _ = engine.load(str(tiny_model_paths["bert"]))
        assert engine.pid not in (None, pid)
        assert engine.analyze(loaded, TEXT).tokens
    finally:
        engine.close()


def test_a_retry_after_the_child_was_killed_reloads_the_model(tiny_model_paths):
    engine = ProcessEngine()
    try:
        loaded, _ = engine.load(str(tiny_model_paths["bert"]))
        before = engine.analyze(loaded, TEXT)
        assert "gui_warnings" not in before.extras
        pid = engine.pid
        os.kill(pid, signal.SIGKILL)
        engine._proc.wait()
        messages = []
        after = engine.analyze(loaded, TEXT, progress=lambda f, m: messages.append(m))
        assert engine.pid not in (None, pid) and engine.restarts == 1
        assert messages[0].startswith("the model process had stopped; restarting it and reloading")
        assert after.extras["gui_warnings"] == [
            f"The model process had stopped; it was restarted and {tiny_model_paths['bert'].name} reloaded."]
        assert after.tokens == before.tokens
        np.testing.assert_array_equal(after.arrays["attentions"], before.arrays["attentions"])
        # the restarted child holds the model: the next analysis needs no reload
        assert "gui_warnings" not in engine.analyze(loaded, TEXT).extras
    finally:
        engine.close()


def test_a_failed_reload_is_one_line_and_forgets_the_model(tiny_model_paths, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_paths["bert"], folder)
    engine = ProcessEngine()
    try:
        loaded, _ = engine.load(str(folder))
        os.kill(engine.pid, signal.SIGKILL)
        engine._proc.wait()
        shutil.rmtree(folder)
        with pytest.raises(UserError, match="had stopped and reloading copy failed") as info:
            engine.analyze(loaded, TEXT)
        assert "\n" not in str(info.value)
        with pytest.raises(UserError, match="no model is loaded"):
            engine.analyze(loaded, TEXT)
    finally:
        engine.close()


def test_stale_folders_of_dead_model_processes_are_removed(tmp_path):
    import subprocess
    import sys

    from attn_desktop.core.model.engine import FOLDER_PREFIX, clean_stale_folders

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{FOLDER_PREFIX}{dead.pid}-abc_12"
    stale.mkdir()
    (stale / "x.npy").write_bytes(b"0")
    not_a_model = tmp_path / f"{FOLDER_PREFIX}{os.getpid()}-def34"  # this pid runs pytest, not a model
    not_a_model.mkdir()
    live = ProcessEngine()
    try:
        with pytest.raises(UserError, match="no model is loaded"):
            live.analyze(_Unloaded(), TEXT)  # starts a child
        mine = tmp_path / f"{FOLDER_PREFIX}{live.pid}-xyz"
        mine.mkdir()  # named after a running model process
        other = tmp_path / "attn-desktop-model-notapid"
        other.mkdir()
        removed = clean_stale_folders(str(tmp_path))
        assert sorted(removed) == sorted([str(stale), str(not_a_model)])
        assert mine.is_dir() and other.is_dir()
    finally:
        live.close()


def test_a_new_model_process_cleans_stale_folders_at_start():
    import subprocess
    import sys
    import tempfile

    from attn_desktop.core.model.engine import FOLDER_PREFIX

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{dead.pid}-")
    engine = ProcessEngine()
    try:
        with pytest.raises(UserError, match="no model is loaded"):
            engine.analyze(_Unloaded(), TEXT)
        assert not os.path.exists(stale)
        assert os.path.isdir(engine._folder)
    finally:
        engine.close()
    assert not os.path.exists(engine._folder or stale)


@pytest.mark.parametrize("where", ["outside", "parent", "symlink", "not-npy"])
def test_array_files_are_read_only_inside_the_childs_folder(tmp_path, where):
    from attn_desktop.core.model.engine import _ArrayFile, _take_arrays_from_files

    folder = tmp_path / "attn-desktop-model-1-abc"
    folder.mkdir()
    victim = tmp_path / "victim.npy"
    np.save(victim, np.arange(3))
    path = {
        "outside": str(victim),
        "parent": str(folder / ".." / "victim.npy"),
        "symlink": str(folder / "link.npy"),
        "not-npy": str(folder / "data.txt"),
    }[where]
    if where == "symlink":
        os.symlink(victim, path)
    if where == "not-npy":
        np.save(folder / "data.npy", np.arange(3))
        os.rename(folder / "data.npy", path)

    class Result:
        arrays = {"attentions": _ArrayFile(path)}

    with pytest.raises(UserError, match="outside its own folder") as info:
        _take_arrays_from_files(Result, str(folder))
    assert "\n" not in str(info.value)
    assert victim.exists() and os.path.lexists(path)  # nothing deleted
    ok = folder / "ok.npy"
    np.save(ok, np.arange(4))
    Result.arrays = {"attentions": _ArrayFile(str(ok))}
    _take_arrays_from_files(Result, str(folder))
    np.testing.assert_array_equal(Result.arrays["attentions"], np.arange(4))
    assert not ok.exists()
