"""Progress and time estimate of a document-level explanation (core.explain.document).

Work is counted in window forwards (one row through one window): the target is one per window, a
gradient pass about three (forward and backward), Integrated Gradients two (batched rows; three when
the windows do not fit one graph) per step and window, leave-one-out one per (window, document token it holds).
The bar gives each step a share proportional to its planned forwards and never goes back: adaptive
Integrated Gradients rounds get fixed shares of IG's part (the first two rounds, the ones planned,
90% in proportion to their steps; later rounds split the last 10% in proportion to theirs). The time
left is measured pace (seconds per forward so far) x forwards left, including rounds added on the way."""

from __future__ import annotations

import time
from collections.abc import Callable

ESTIMATE_PREFIX = "estimated about "  # the one message that says the estimate before the methods run
PLANNED_ROUNDS = 2
PLANNED_SHARE = 0.9
STEP_NAMES = {"target": "the document target", "attention": "attention", "saliency": "gradients",
              "grad_input": "gradients", "ig": "Integrated Gradients", "loo": "leave-one-out",
              "agreement": "agreement", "verdict": "verdict"}


def ig_rounds(steps, start_steps: int, max_steps: int) -> list[int]:
    """The steps of every round Integrated Gradients may run (adaptive: doubling up to max_steps)."""
    if steps != "auto":
        return [int(steps)]
    rounds = [int(start_steps)]
    while rounds[-1] < max_steps:
        rounds.append(min(2 * rounds[-1], int(max_steps)))
    return rounds


def round_shares(rounds: list[int]) -> list[tuple[float, float]]:
    """(start, end) of each round within IG's share of the bar, increasing and ending at most at 1."""
    planned, later = rounds[:PLANNED_ROUNDS], rounds[PLANNED_ROUNDS:]
    head = PLANNED_SHARE if later else 1.0
    out, at = [], 0.0
    for group, share in ((planned, head), (later, 1.0 - head)):
        total = sum(group)
        for steps in group:
            out.append((at, at + share * steps / total))
            at += share * steps / total
    return out


def plan(run: list[str], windows: int, ig_steps_planned: int, ig_per_step: float, loo_rows: int) -> dict:
    """Planned window forwards of each step of the run."""
    units = {"target": float(windows), "attention": 0.05 * windows, "saliency": 0.0, "grad_input": 0.0,
             "ig": 0.0, "loo": 0.0, "agreement": 0.01 * windows, "verdict": 0.001 * windows}
    if "saliency" in run or "grad_input" in run:
        units["saliency" if "saliency" in run else "grad_input"] = 3.0 * windows
    if "ig" in run:
        units["ig"] = 2.0 * windows + ig_steps_planned * ig_per_step
    if "loo" in run:
        units["loo"] = float(loo_rows)
    return units


class DocumentProgress:
    """report(fraction, message) of the whole run from each step's fraction done; adds the time left."""

    def __init__(self, report: Callable[[float, str], None], clock=time.perf_counter) -> None:
        self.report, self.clock = report, clock
        self.units: dict[str, float] = {}
        self.order: list[str] = []
        self.extra = 0.0  # forwards added on the way (IG rounds beyond the plan)
        self.done_units = 0.0
        self.shown = 0.0
        self.started = clock()
        self.step: str | None = None

    def set_plan(self, units: dict[str, float], order: list[str]) -> None:
        self.units, self.order = units, order

    @property
    def total(self) -> float:
        return sum(self.units[s] for s in self.order) or 1.0

    def _base(self, name: str) -> float:
        return sum(self.units[s] for s in self.order[:self.order.index(name)])

    def pace(self) -> float | None:
        """Seconds per window forward so far (None before any forward is done)."""
        if self.done_units <= 0:
            return None
        return (self.clock() - self.started) / self.done_units

    def seconds_left(self) -> float | None:
        pace = self.pace()
        return None if pace is None else pace * max(0.0, self.total + self.extra - self.done_units)

    def at(self, name: str, fraction: float, message: str, *, units_done: float | None = None) -> None:
        """Step `name` is `fraction` (0..1) of its share through; `units_done`: forwards done in it."""
        self.step = name
        fraction = max(0.0, min(1.0, fraction))
        base = self._base(name)
        self.done_units = base + (units_done if units_done is not None else fraction * self.units[name])
        value = max(self.shown, (base + fraction * self.units[name]) / self.total)
        if name == self.order[-1] and fraction >= 1.0:
            value = 1.0
        self.shown = value
        left = self.seconds_left()
        if left is not None and name != "target" and self.total + self.extra - self.done_units >= 0.5:
            from attn_desktop.core.propagate.flow_cost import duration

            message = f"{message} · about {duration(left)} left"
        self.report(value, message)

    def estimate(self, detail: str) -> float:
        """Says the estimate (pace of the target's forwards x the forwards planned) once; returns it."""
        left = self.seconds_left() or 0.0
        from attn_desktop.core.propagate.flow_cost import duration

        self.report(self.shown, f"{ESTIMATE_PREFIX}{duration(left)} more: {detail}")
        return left
