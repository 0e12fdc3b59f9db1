"""The model process never outlives the process that started it: a parent script starts a
ProcessEngine, reaches a state (loading, analysing, idle) and is then killed (SIGKILL, SIGTERM) or
crashes (abort); the model process and its temporary folder must be gone within seconds."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

PARENT = r"""
import os, resource, sys, time
from attn_desktop.core.model.engine import ProcessEngine

state, how, model = sys.argv[1:4]
engine = ProcessEngine()

def ready():
    print(f"CHILD {engine.pid} {engine._folder}", flush=True)
    if how == "abort":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.abort()

told = []
def at_first(fraction, message):
    if not told:
        told.append(1)
        ready()

if state == "load":
    engine.load(model, progress=at_first)
else:
    loaded, _ = engine.load(model)
    if state == "analysis":
        engine.analyze(loaded, " ".join(["The lessee shall indemnify the lessor."] * 40), progress=at_first)
    else:
        engine.analyze(loaded, "The tenant pays.")
        ready()
time.sleep(120)  # killed before this ends
"""

GONE_S = 10


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


CASES = [("load", "SIGKILL"), ("load", "SIGTERM"), ("load", "abort"),  # killed in its first second
         ("analysis", "SIGKILL"), ("analysis", "SIGTERM"), ("idle", "SIGKILL"), ("idle", "abort")]


@pytest.mark.parametrize("state,how", CASES)
def test_the_model_process_ends_with_its_parent(tmp_path, tiny_model_paths, demo_path, state, how):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    model = str(demo_path if state == "analysis" else tiny_model_paths["bert"])
    parent = subprocess.Popen([sys.executable, str(script), state, how, model],
                              stdout=subprocess.PIPE, text=True)
    child = None
    try:
        line = parent.stdout.readline()
        assert line.startswith("CHILD "), f"parent said {line!r}, exit {parent.poll()}"
        _, pid, folder = line.split()
        child = int(pid)
        if how != "abort":  # (an aborting parent may be gone already)
            assert psutil.Process(child).ppid() == parent.pid
            parent.send_signal(getattr(signal, how))
        parent.wait(GONE_S)
        assert _wait_gone(child, GONE_S), f"model process {child} outlived its parent ({state}, {how})"
        assert not os.path.exists(folder)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_the_model_process_ends_when_the_window_is_killed(tmp_path, tiny_model_paths):
    """The real window (offscreen) loading a model, killed with SIGKILL."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "ATTN_DESKTOP_MODELS": str(tmp_path / "library")}
    window = subprocess.Popen([sys.executable, "-m", "attn_desktop", "--model", str(tiny_model_paths["bert"])],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = None
    try:
        deadline = time.monotonic() + 120
        while child is None and time.monotonic() < deadline and window.poll() is None:
            for p in psutil.Process(window.pid).children():
                try:
                    if "attn_desktop.core.model.engine" in " ".join(p.cmdline()):
                        child = p.pid
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.05)
        assert child is not None, f"no model process appeared (window exit {window.poll()})"
        window.kill()
        window.wait(GONE_S)
        assert _wait_gone(child, GONE_S), f"model process {child} outlived the killed window"
    finally:
        if window.poll() is None:
            window.kill()
            window.wait()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
