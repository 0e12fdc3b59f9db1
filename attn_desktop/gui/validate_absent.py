"""Why a Validate tab is empty when the validation results it belongs to are shown: never "run
Validate" after a run that did not (or could not) compute that part. The reason is the run's own
(manifest["explain"]["skipped"]), else core's list of what a document read in windows does not compute.

Qt-free: the panel (validate_panel.py) passes these lines to the tabs (validate_plots.py)."""

from __future__ import annotations

from ..core.explain.document import NOT_AT_DOCUMENT, is_document

NO_RESULTS = {"faithfulness": "No faithfulness curves", "interventions": "No changed-attention results"}
ASK_AGAIN = {"faithfulness": "faithfulness", "interventions": "interventions (changed attention)"}
VERDICT = "the Verdict tab lists what was and was not computed"


def absent_reason(section: dict, key: str) -> str:
    """The caption of the `key` tab ('faithfulness' or 'interventions') for results that lack it."""
    head = NO_RESULTS[key]
    why = str((section.get("skipped") or {}).get(key) or "")
    if is_document(section):
        why = why or NOT_AT_DOCUMENT[key]
        return f"{head}: {_sentence(why)} Validating again does not add them; {VERDICT}."
    if why:
        return f"{head}: {_sentence(why)} {VERDICT[0].upper()}{VERDICT[1:]}."
    requested = section.get("methods_requested")
    if isinstance(requested, list) and key not in requested and "all" not in requested:
        return (f"{head}: this validation did not ask for {ASK_AGAIN[key]} "
                f"(asked for: {', '.join(map(str, requested)) or 'nothing'}).")
    return f"{head} in these results; {VERDICT}."


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return f"{text}." if text else ""
