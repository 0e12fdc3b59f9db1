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

    from attn_desktop.core.loading import load_model
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.session import save_session

    session = tmp_path / "s.attn"
    save_session(analyze(load_model(tiny_model_paths["bert"]), "The bank approved the loan."), session)
    out, marks = launch(tmp_path, session=session)
    assert out.returncode == 0, out.stderr[-3000:]
    assert marks == ["start", "window", "first-heatmap"]
