"""Which checks a validation runs: the Validate dock's "Checks" menu of boxes, remembered in QSettings,
turned into the method list that engine.analyze passes to core.explain. All are ticked until the
user unticks one; attention, rollout and flow of the row the output reads are always computed
(they are what the checks compare attention with)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from ..core.explain.run import ALL, EXPLANATION, PROPAGATION

CHECKS_OFF_KEY = "validate/checks_off"  # the unticked checks: a check added later starts ticked
NONE_CHOSEN = "Tick at least one check to run."
NONE_FOR_DOCUMENT = ("A document read in windows is checked with Gradients, Integrated Gradients or "
                     "Leave-one-out: tick at least one of them.")
# key, box label, core method names, tooltip
CHECKS = (
    ("gradients", "Gradients", ("saliency", "grad_input"),
     "Saliency and gradient × input: one backward pass of the target"),
    ("ig", "Integrated Gradients", ("ig",),
     "Integrated Gradients: many forward and backward passes, more on long texts"),
    ("loo", "Leave-one-out", ("loo",),
     "Leave-one-out: one forward pass per token (per token of the document when read in windows)"),
    ("grad_rollout", "Gradient rollout", ("grad_rollout",),
     "Gradient-weighted rollout (not computed for a document read in windows)"),
    ("perturbation", "Perturbation, faithfulness", ("interventions", "faithfulness"),
     "Changed attention (uniform and permuted) and comprehensiveness/sufficiency of every ranking "
     "computed, attention's included (neither is computed for a document read in windows)"),
    ("agreement", "Agreement", ("agreement",),
     "Kendall τ, Spearman ρ and top-k overlap between every ranking computed, attention's included"),
)
SHORT = {"gradients": "gradients", "ig": "IG", "loo": "leave-one-out", "grad_rollout": "gradient rollout",
         "perturbation": "perturbation", "agreement": "agreement"}
LONG = {"saliency": "saliency", "grad_input": "gradient × input", "ig": "Integrated Gradients",
        "grad_rollout": "gradient rollout", "loo": "leave-one-out", "interventions": "changed attention",
        "faithfulness": "faithfulness", "agreement": "agreement"}


def _settings():
    from .settings import settings

    return settings()


def methods_for(keys) -> list[str]:
    """The method list for engine.analyze: attention, rollout and flow, then the chosen checks' methods."""
    chosen = {m for key, _label, methods, _tip in CHECKS if key in keys for m in methods}
    return [m for m in ALL if m in PROPAGATION or m in chosen]


def refusal(keys, windowed: bool) -> str | None:
    """One line when the chosen checks cannot run: none chosen, or none that a document read in
    windows computes (core.explain.document.wanted; core refuses the same request)."""
    from ..core.explain.document import wanted

    if not keys:
        return NONE_CHOSEN
    run, _skipped = wanted(methods_for(keys))
    if windowed and (not run or run == ["agreement"]):
        return NONE_FOR_DOCUMENT
    return None


def summary(keys) -> str:
    """The Checks button's text: "all 6", "none ticked" or e.g. "4 of 6 (no leave-one-out, IG)"."""
    if not keys:
        return "none ticked"
    if len(keys) == len(CHECKS):
        return f"all {len(CHECKS)}"
    return f"{len(keys)} of {len(CHECKS)} (no {', '.join(SHORT[k] for k, *_ in CHECKS if k not in keys)})"


def not_asked(section: dict) -> list[str]:
    """The explanation methods a shown validation did not ask for (names for people), [] for 'all'."""
    requested = section.get("methods_requested")
    if not isinstance(requested, list) or "all" in requested:
        return []
    return [LONG[m] for m in EXPLANATION if m not in requested]


class ChecksRow(QWidget):
    """One line: "Checks:" and a button whose menu holds the boxes (it stays open while ticking)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        title = QLabel("Checks:")
        self.button = QToolButton()
        self.button.setPopupMode(QToolButton.InstantPopup)
        self.button.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        title.setBuddy(self.button)
        row.addWidget(title)
        row.addWidget(self.button, 1)
        menu = QMenu(self.button)
        holder = QWidget(menu)
        column = QVBoxLayout(holder)
        column.setContentsMargins(8, 4, 8, 4)
        off = self._remembered_off()
        self.boxes: dict[str, QCheckBox] = {}
        for key, label, _methods, tip in CHECKS:
            box = QCheckBox(label)
            box.setToolTip(tip)
            box.setChecked(key not in off)
            box.toggled.connect(self._on_toggled)
            column.addWidget(box)
            self.boxes[key] = box
        action = QWidgetAction(menu)
        action.setDefaultWidget(holder)
        menu.addAction(action)
        self.button.setMenu(menu)
        self._show_choice()

    @staticmethod
    def _remembered_off() -> set[str]:
        value = _settings().value(CHECKS_OFF_KEY, "")
        parts = value if isinstance(value, list) else str(value or "").split(",")
        return {p.strip() for p in parts if str(p).strip()}

    def chosen(self) -> list[str]:
        return [key for key, box in self.boxes.items() if box.isChecked()]

    def methods(self) -> list[str]:
        return methods_for(self.chosen())

    def _on_toggled(self, _on: bool) -> None:
        off = [key for key, box in self.boxes.items() if not box.isChecked()]
        _settings().setValue(CHECKS_OFF_KEY, ",".join(off))
        self._show_choice()

    def _show_choice(self) -> None:
        self.button.setText(summary(self.chosen()))
        self.button.setToolTip("What Run validation computes (click to tick or untick):\n" + "\n".join(
            f"{'☑' if box.isChecked() else '☐'} {box.text()}" for box in self.boxes.values()))
