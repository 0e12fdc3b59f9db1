"""Progress of a document-level explanation (core.explain.document_progress): the bar never goes
back, even when adaptive Integrated Gradients adds rounds beyond the plan, ends at 1, and says an
estimate before the methods run."""

import re

import pytest

from attn_desktop.core.explain import document_progress as dp
from attn_desktop.core.pipeline import analyze

TEXT = " ".join(["The tenant shall pay the rent on the first day of each month.",
                 "A quick brown fox jumps over the lazy dog, twice.",
                 "Attention is a clue, not an explanation.",
                 "The landlord keeps the deposit until the keys are returned."] * 2)


def test_round_shares_fit_in_igs_part_and_never_overlap():
    rounds = dp.ig_rounds("auto", 16, 256)
    assert rounds == [16, 32, 64, 128, 256]
    shares = dp.round_shares(rounds)
    assert shares[0][0] == 0.0 and shares[-1][1] == pytest.approx(1.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(shares, shares[1:], strict=False))
    assert shares[1][1] == pytest.approx(dp.PLANNED_SHARE)  # the two planned rounds, by their steps
    assert (shares[1][1] - shares[1][0]) == pytest.approx(2 * (shares[0][1] - shares[0][0]))
    assert dp.round_shares(dp.ig_rounds(20, 16, 256)) == [(0.0, 1.0)]


def test_document_run_progress_is_monotone_and_says_the_time_left(loaded_models, monkeypatch):
    from attn_desktop.core.explain import document

    monkeypatch.setattr(document, "DELTA_FLOOR", 0.0)  # a 4-step gap can round below the floor: 3 rounds always
    loaded = loaded_models("bert")
    seen: list[tuple[float, str]] = []
    an = analyze(loaded, TEXT, windows={"size": 24}, methods=["ig", "loo"],
                 target={"labels": ["rent and payment", "animals"]},
                 explain_options={"ig_start_steps": 2, "ig_max_steps": 8, "ig_tolerance": 0.0},
                 progress=lambda f, m: seen.append((f, m)))
    section = an.manifest["explain"]
    windows = section["document"]["windows"]
    assert windows >= 2
    # tolerance 0: IG ran 2, 4 and 8 steps; the third round is beyond the two planned
    assert [t["steps"] for t in section["methods"]["integrated_gradients"]["tried"]] == [2, 4, 8]
    values = [f for f, _ in seen]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)), values
    assert values[-1] == 1.0
    assert any("round 3" in m for _, m in seen)
    estimates = [m for _, m in seen if m.startswith(dp.ESTIMATE_PREFIX)]
    assert len(estimates) == 1 and f"over {windows} windows" in estimates[0]
    first_method = next(i for i, (_, m) in enumerate(seen) if m.startswith("Integrated Gradients"))
    assert seen.index(next(s for s in seen if s[1] == estimates[0])) < first_method
    assert any(re.search(r" · (about \d+ (s|min)|under 10 s) left$", m) for _, m in seen[first_method:])
    assert "forward measured at" in estimates[0]
    # each step's share of the bar is its predicted time: tests/test_document_estimate.py (a fake clock)


def _cli(tiny_model_paths, tmp_path, *extra):
    from attn_desktop.cli import main

    doc, labels = tmp_path / "lease.txt", tmp_path / "labels.txt"
    doc.write_text(TEXT, encoding="utf-8")
    labels.write_text("rent payment\nanimals\n", encoding="utf-8")
    return main(["analyze", "--text-file", str(doc), "--model", str(tiny_model_paths["bert"]), "--windows", "24",
                 "--methods", "ig,loo", "--labels", str(labels), "--ig-steps", "4", *extra,
                 "--out", str(tmp_path / "d.attn")])


def test_cli_windowed_explanation_prints_an_estimate_and_progress_lines(tiny_model_paths, tmp_path, capsys):
    assert _cli(tiny_model_paths, tmp_path) == 0
    lines = capsys.readouterr().err.splitlines()  # stderr is not a terminal here: plain lines
    estimate = [i for i, line in enumerate(lines) if line.startswith("attn-desktop: " + dp.ESTIMATE_PREFIX)]
    assert len(estimate) == 1 and "ig, loo over" in lines[estimate[0]] and "windows" in lines[estimate[0]]
    shown = [line for line in lines if "%" in line]
    percents = [int(line.split("%")[0]) for line in shown]
    assert percents == sorted(percents) and percents[-1] == 100 and len(percents) >= 5
    assert any("Integrated Gradients" in line for line in lines[estimate[0]:])
    assert any("leave-one-out" in line and "left" in line for line in lines)


def test_cli_estimate_stays_on_a_terminal(tiny_model_paths, tmp_path, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _cli(tiny_model_paths, tmp_path) == 0
    written = terminal.getvalue()
    kept = written.split("\n")[:-1]  # the self-overwriting line ends without a newline
    assert len(kept) == 1 and kept[0].rsplit("\r", 1)[-1].startswith("attn-desktop: " + dp.ESTIMATE_PREFIX)
    assert written.endswith("\r")
