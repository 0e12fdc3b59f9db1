"""attn_desktop.gui.app.run end to end, in a subprocess (its own QApplication and event loop)."""

from __future__ import annotations

import os
import subprocess
import sys

RUN = ("import sys; from attn_desktop.gui.app import run; "
       "raise SystemExit(run(sys.argv[1] or None, sys.argv[2] or None, sys.argv[3] or None, 'cpu'))")


def launch(tmp_path, model="", text="", session=""):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"),
               ATTN_DESKTOP_TIMING="1", ATTN_DESKTOP_EXIT_AFTER_FIRST_HEATMAP="1")
    out = subprocess.run([sys.executable, "-c", RUN, str(model), str(text), str(session)],
                         env=env, capture_output=True, text=True, timeout=240)
    marks = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("attn-desktop-timing")]
    return out, marks


def test_run_with_model_and_text_then_session(tiny_model_paths, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("The tenant shall pay the rent.", encoding="utf-8")
    out, marks = launch(tmp_path, model=tiny_model_paths["bert"], text=doc)
    assert out.returncode == 0, out.stderr[-3000:]
    assert marks == ["start", "window", "first-heatmap"]

    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.store.session import save_session

    session = tmp_path / "s.attn"
    save_session(analyze(load_model(tiny_model_paths["bert"]), "The bank approved the loan."), session)
    out, marks = launch(tmp_path, session=session)
    assert out.returncode == 0, out.stderr[-3000:]
    assert marks == ["start", "window", "first-heatmap"]


WINDOW_SCRIPT = r"""
import sys
from PySide6.QtCore import QEventLoop, QTimer
from attn_desktop.gui.app import make_app
from attn_desktop.gui.main_window import MainWindow

app = make_app()
window = MainWindow()
window.show()

def wait(signal):
    loop = QEventLoop()
    signal.connect(lambda *a: loop.quit())
    QTimer.singleShot(120_000, loop.quit)
    loop.exec()

window.load_model(sys.argv[1], "cpu")
wait(window.model_loaded)
window.document.set_text("The bank approved the loan.")
window.request_analysis()
wait(window.analysis_shown)
assert window.state.analysis is not None and window.state.analysis.arrays["attentions"].shape[:2] == (2, 4)
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
window.close()
window.engine.close()
print("heavy:", heavy, flush=True)
import os
os._exit(1 if heavy else 0)  # this test is about imports; teardown is covered by test_run_...
"""


def test_the_window_process_never_imports_torch(tiny_model_paths, tmp_path):
    """Models run in the model process (core.model.engine): the window's process stays free of torch
    and transformers, whose imports would hold the GIL for hundreds of milliseconds."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", WINDOW_SCRIPT, str(tiny_model_paths["bert"])],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "heavy: []" in out.stdout
