"""`analyze` on a terminal shows one self-overwriting progress line on stderr while it runs (an
explained run takes minutes and printed nothing until the end) and wipes it before the summary;
piped, stderr stays empty."""

from __future__ import annotations

import io
import sys

from attn_desktop.cli import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(tiny_model_paths, tmp_path, labels):
    return main(["analyze", "--text", "The tenant shall pay the rent.", "--model", str(tiny_model_paths["bert"]),
                 "--methods", "ig,loo", "--labels", str(labels), "--seeds", "2", "--out", str(tmp_path / "z.attn")])


def test_progress_line_on_a_terminal_only(tiny_model_paths, tmp_path, capsys, monkeypatch):
    labels = tmp_path / "labels.txt"
    labels.write_text("rent payment\nmedical note\n", encoding="utf-8")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _run(tiny_model_paths, tmp_path, labels) == 0
    written = terminal.getvalue()
    shown = [part.strip() for part in written.split("\r") if part.strip()]
    assert any("Integrated Gradients" in part for part in shown) and all("%" in part for part in shown)
    assert written.endswith("\r") and written.rsplit("\r", 2)[-2].strip() == ""  # the line wiped at the end
    monkeypatch.undo()
    capsys.readouterr()
    assert _run(tiny_model_paths, tmp_path, labels) == 0
    assert capsys.readouterr().err == ""
