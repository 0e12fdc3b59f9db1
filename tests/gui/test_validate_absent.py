"""A Validate tab whose part the shown results lack says why (the run's own reason, or what a
document read in windows does not compute), never "run Validate" after a run. The windowed run in
the real window is checked in test_validate_windows.py; here: the reasons from core's own lists, and
a saved session opened in the real window (no model needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from attn_desktop.core.explain.document import NOT_AT_DOCUMENT, wanted
from attn_desktop.core.explain.run import expand_methods
from attn_desktop.core.store.session import load_session, save_session
from attn_desktop.gui.validate_absent import absent_reason
from attn_desktop.gui.validate_plots import FaithfulnessView, InterventionTable

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v2-gpt2-explain.attn"
TIMEOUT = 60_000


def test_a_document_section_says_what_windows_do_not_compute(qtbot):
    _run, skipped = wanted(expand_methods(["all"]))  # what the window's Validate (methods 'all') skips
    section = {"document": {"windows": 3}, "skipped": skipped, "methods_requested": expand_methods(["all"])}
    faith, changed = FaithfulnessView(), InterventionTable()
    qtbot.addWidget(faith)
    qtbot.addWidget(changed)
    faith.set_section(section.get("faithfulness"), absent_reason(section, "faithfulness"))
    changed.set_section(section.get("interventions"), None, None, absent_reason(section, "interventions"))
    for widget, key in ((faith, "faithfulness"), (changed, "interventions")):
        text = widget.caption.text()
        assert NOT_AT_DOCUMENT[key].rstrip(".") in text and "Verdict tab" in text
        assert "run Validate" not in text and "Validating again does not add them" in text
    assert changed.table.rowCount() == 0 and faith.table.rowCount() == 0
    # a session from the command line that asked only for IG: core's list still gives the reason
    only_ig = {"document": {}, "skipped": {}, "methods_requested": ["ig"]}
    assert NOT_AT_DOCUMENT["faithfulness"] in absent_reason(only_ig, "faithfulness")
    # no results shown at all: the tabs still ask for a run
    faith.set_section(None)
    changed.set_section(None)
    assert faith.caption.text() == "No faithfulness curves: run Validate."
    assert changed.caption.text() == "No changed-attention results: run Validate."


def test_a_session_without_some_results_says_why_in_the_window(window, qtbot, tmp_path):
    w = window
    an = load_session(FIXTURE)
    section = an.manifest["explain"]
    assert section["faithfulness"]["per_method"] and section["interventions"]
    why = "this model's attention is recorded only (no capture engine)"
    trimmed = {k: v for k, v in section.items() if k not in ("interventions", "faithfulness")}
    trimmed["skipped"] = {**section["skipped"], "interventions": why}
    trimmed["methods_requested"] = [m for m in section["methods_requested"] if m != "faithfulness"]
    path = save_session(replace(an, manifest={**an.manifest, "explain": trimmed}), tmp_path / "trimmed.attn")
    panel = w.validate_panel
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT):
        w.open_session(str(path))
    assert panel.shown is not None and panel.right.currentWidget() is panel.results
    assert panel.interventions.caption.text() == (
        f"No changed-attention results: {why}. The Verdict tab lists what was and was not computed.")
    faith = panel.faithfulness.caption.text()
    assert faith.startswith("No faithfulness curves: this validation did not ask for faithfulness (asked for: ")
    assert "run Validate" not in faith and panel.faithfulness.table.rowCount() == 0

    # the original session: its curves and table are shown, no "No ..." line
    with qtbot.waitSignal(panel.validation_shown, timeout=TIMEOUT):
        w.open_session(str(FIXTURE))
    assert panel.faithfulness.table.rowCount() == len(section["faithfulness"]["per_method"])
    assert not panel.faithfulness.caption.text().startswith("No ")
    assert panel.interventions.table.rowCount() > 0
    assert not panel.interventions.caption.text().startswith("No ")
