"""Document-level importance through the command line on the demo model: a text of three windows,
zero-shot labels, the summary lines, the session and the report."""

import numpy as np
import pytest

from attn_desktop.cli import main
from attn_desktop.core.store.session import load_session

LEASE = (
    "The tenant shall pay the rent of nine hundred pounds on the first day of each month. "
    "Late payment incurs a fee of five percent, payable with the next rent.\n\n"
    "Either party may end this lease with two months of written notice. "
    "Pets are not allowed, except small birds or fish kept in the flat."
)


def test_demo_document_importance_end_to_end(tmp_path, capsys):
    doc, out = tmp_path / "lease.txt", tmp_path / "lease.attn"
    labels = tmp_path / "labels.txt"
    doc.write_text(LEASE, encoding="utf-8")
    labels.write_text("rent and payment\nending the lease\npets\n", encoding="utf-8")
    code = main(["analyze", "--text-file", str(doc), "--windows", "32:24", "--methods", "ig,loo,agreement",
                 "--labels", str(labels), "--target-label", "rent and payment", "--ig-steps", "8",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary, headline = captured.out.strip().splitlines()[:2]
    assert "3 windows of at most 32 tokens" in summary and "attention does not cross windows" in summary
    assert headline.startswith("Document target (3 windows; attention does not cross windows): "
                               "P(label 'rent and payment') = ")
    assert "For this document (read in windows), attention" in headline and "explains" not in headline

    an = load_session(out)
    section = an.manifest["explain"]
    count = an.manifest["windows"]["document_tokens"]
    ig = an.arrays["document_integrated_gradients"]
    assert ig.shape == an.arrays["document_loo"].shape == (count,)
    record = section["methods"]["integrated_gradients"]
    assert record["steps"] == 8 and record["baseline_rule"].startswith("every window's document tokens replaced")
    # completeness as recorded: sum(attributions) = f(x) - f(baseline) + delta (8 steps need not converge)
    assert float(ig.astype(np.float64).sum()) == pytest.approx(
        record["f_input"] - record["f_baseline"] + record["delta"], abs=1e-4)
    assert section["target"]["reads"].startswith("softmax over labels of cos(mean over windows")
    assert section["target"]["label"] == "rent and payment" and section["target"]["chosen"] == "given"



def test_windows_with_all_runs_what_applies(tmp_path, capsys, tiny_model_paths):
    """--methods all with --windows: rollout and flow (per-window matrices) are left to the window;
    explicit rollout stays refused in one line."""
    doc, out, report = tmp_path / "lease.txt", tmp_path / "lease.attn", tmp_path / "lease.html"
    doc.write_text(LEASE * 2, encoding="utf-8")
    model = str(tiny_model_paths["bert-cls"])
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--windows", "32", "--methods", "all",
                 "--ig-steps", "8", "--out", str(out), "--report", str(report)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith("Document target (") and "P(class" in lines[1]
    an = load_session(out)
    assert "rollout" not in an.arrays and "document_loo" in an.arrays
    assert set(an.manifest["explain"]["skipped"]) == {"grad_rollout", "interventions", "faithfulness"}
    page = report.read_text(encoding="utf-8")
    assert "Document-level importance" in page and "Attention does not cross windows" in page
    assert "f(document) − f(baseline)" in page and "averaged over the windows" in page
    first = page.index("The 25 document words with the largest |Integrated Gradients|")
    table = page[first:page.index("</table>", first)]
    assert table.count("<tr>") == 26  # the header and 25 words
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--windows", "32", "--methods", "rollout,ig",
                 "--out", str(out)]) == 2
    assert "rollout and flow are not computed with --windows" in capsys.readouterr().err
