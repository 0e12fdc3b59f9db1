"""Progress and time estimate of a document-level explanation (core.explain.document).

Work is counted in window forwards (one row through one window): the target is one per window, a
gradient pass about three (forward and backward), Integrated Gradients two (batched rows; three when
the windows do not fit one graph) per step and window plus f(input) and f(baseline), leave-one-out
one per (window, document token it holds). A forward is not a unit of time: a row with gradients
costs about twice one without, and the steps' units are of different kinds. So every part of the run
(the target, gradients, IG's f(input) and f(baseline), IG's steps, leave-one-out, ...) has its own
pace, seconds per forward:

- predicted, before the part has run, from a calibration measured on the run's own model and
  windows after the target (`measure`: the longest window through the model, one row alone and a
  few rows in a batch without gradients, a few rows with gradients) and the part's cost in such
  rows (`Plan.predicted`);
- then measured from the part's own work: observed seconds over observed forwards, each observation
  forgotten exponentially as later work is observed (MEMORY_SECONDS), the prediction counting as
  PRIOR_SECONDS of observation, so one short unit does not swing the estimate and a change of the
  machine's load is followed within about half a minute;
- and a part not yet run: its prediction x the speed (observed over predicted seconds of the
  SPEED_PARTS run so far), so the machine's present load is followed before the part starts.

The time left is the sum over parts of pace x forwards left (IG rounds beyond the plan included),
said only once the calibration is measured. The bar moves by time: each report advances it by the
work done since the last one (forwards x pace) over that work plus the time left, so its remaining
share always matches the estimate, a step's share is its predicted time, and it never goes back.
Adaptive Integrated Gradients rounds get fixed shares of IG's fraction (round_shares), which the
run's callers use to say where IG is."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

ESTIMATE_PREFIX = "estimated about "  # the one message that says the estimate before the methods run
PLANNED_ROUNDS = 2
PLANNED_SHARE = 0.9
PROBE_ROWS = 8  # the most rows the calibration times at once (a row in a batch of 8 costs as in 32)
PRIOR_SECONDS = 2.0  # a predicted pace weighs as much as this many seconds of observed work
MEMORY_SECONDS = 30.0  # an observation's weight falls by e for every such span of later observed work
STEP_NAMES = {"target": "the document target", "attention": "attention", "saliency": "gradients",
              "grad_input": "gradients", "ig": "Integrated Gradients", "loo": "leave-one-out",
              "agreement": "agreement", "verdict": "verdict"}
IG_ENDS = "ig:ends"  # IG's f(input) and f(baseline): forwards without gradients, before its steps
# the parts whose time is their rows' (the others' holds set-up the calibration does not see: the
# labels' embeddings, IG's first import and baseline): only they tell how fast the machine runs now
SPEED_PARTS = ("saliency", "grad_input", "ig", "loo")


def ig_rounds(steps, start_steps: int, max_steps: int) -> list[int]:
    """The steps of every round Integrated Gradients may run (adaptive: doubling up to max_steps)."""
    if steps != "auto":
        return [int(steps)]
    rounds = [int(start_steps)]
    while rounds[-1] < max_steps:
        rounds.append(min(2 * rounds[-1], int(max_steps)))
    return rounds


def round_shares(rounds: list[int]) -> list[tuple[float, float]]:
    """(start, end) of each round within IG's fraction, increasing and ending at most at 1."""
    planned, later = rounds[:PLANNED_ROUNDS], rounds[PLANNED_ROUNDS:]
    head = PLANNED_SHARE if later else 1.0
    out, at = [], 0.0
    for group, share in ((planned, head), (later, 1.0 - head)):
        total = sum(group)
        for steps in group:
            out.append((at, at + share * steps / total))
            at += share * steps / total
    return out


@dataclass(frozen=True)
class Calibration:
    """Seconds a row of the longest window takes through the model: alone without gradients
    (`forward`), per row in a batch of `rows` without gradients (`batched`) and with gradients
    (`gradient`; None when the run computes none); `spent`: seconds the measurement took."""

    forward: float
    batched: float | None = None  # None: as `forward`
    gradient: float | None = None
    rows: int = 1
    spent: float = 0.0

    @property
    def row(self) -> float:
        return self.batched if self.batched is not None else self.forward


def measure(loaded, target, *, batch_rows: int, gradient_rows: int = 0, tries: int = 2) -> Calibration:
    """Times the run's longest window through `target`'s model (core.explain.document's
    DocumentTarget): one row without gradients (the least of `tries`, the first warms up), then
    min(batch_rows, PROBE_ROWS) rows without gradients and, with `gradient_rows`, min(gradient_rows,
    PROBE_ROWS) rows with the gradient of their output with respect to the input embeddings (after
    one row to warm up), both per row. Batches matter: with two threads or on a GPU a row in a batch
    costs half of one alone or less."""
    import torch

    started = time.perf_counter()
    k = max(range(len(target.windows)), key=lambda w: len(target.windows[w]))
    cuda = str(loaded.device).startswith("cuda")

    def timed(work, rows: int) -> float:
        t0 = time.perf_counter()
        work(rows)
        if cuda:
            torch.cuda.synchronize(loaded.device)
        return (time.perf_counter() - t0) / rows

    def forward(rows: int) -> None:
        with torch.no_grad():
            target.output(loaded, k, target.ids(k, rows, loaded.device))

    def gradient(rows: int) -> None:
        with torch.enable_grad():
            e = target.embed(loaded, k, rows).detach().requires_grad_(True)
            torch.autograd.grad(target.output(loaded, k, target.ids(k, rows, loaded.device), e).sum(), e)

    fwd = min(timed(forward, 1) for _ in range(max(1, tries)))
    rows = max(1, min(int(batch_rows), PROBE_ROWS))
    batched = timed(forward, rows) if rows > 1 else fwd
    grad = None
    if gradient_rows:
        g_rows = max(1, min(int(gradient_rows), PROBE_ROWS))
        warm = timed(gradient, 1)
        grad = min(warm, timed(gradient, 1)) if g_rows == 1 else timed(gradient, g_rows)
    return Calibration(max(fwd, 1e-9), max(batched, 1e-9), None if grad is None else max(grad, 1e-9), rows,
                       time.perf_counter() - started)


@dataclass
class Plan:
    """Window forwards planned for each step (`units`), and how each step's forwards split into
    parts of one kind (`parts`: IG's f(input) and f(baseline) first, then its steps). `window_scale`:
    the mean window's tokens over the longest's; `loo_scale`: the same for leave-one-out's rows."""

    units: dict[str, float]
    parts: dict[str, list[tuple[str, float]]]
    windows: int
    ig_per_step: float
    saliency_joint: bool = True
    window_scale: float = 1.0
    loo_scale: float = 1.0

    def predicted(self, cal: Calibration) -> dict[str, float]:
        """Seconds per forward of each part from the calibration, a row of another window than the
        longest in proportion to its tokens: one row alone without gradients (the target, IG's
        f(input) and f(baseline)) cal.forward; leave-one-out's batched rows, and the forward IG
        adds window by window, cal.row; a row with gradients (IG's batched steps; saliency's one
        row is taken as one of them) cal.gradient. A part's own measurement corrects what differs."""
        w, fwd, row = self.windows, cal.forward * self.window_scale, cal.row * self.window_scale
        paces = {part: fwd for parts in self.parts.values() for part, _ in parts}
        paces["loo"] = cal.row * self.loo_scale
        gradients = self.units.get("saliency") or self.units.get("grad_input") or self.units.get("ig")
        if not gradients:
            return paces
        if cal.gradient is None:
            raise ValueError("the run computes gradients: measure the calibration with gradient_rows")
        grad = cal.gradient * self.window_scale
        if self.units.get("saliency") or self.units.get("grad_input"):
            name = "saliency" if self.units.get("saliency") else "grad_input"
            paces[name] = w * (grad + (0.0 if self.saliency_joint else row)) / self.units[name]
        if self.units.get("ig"):
            joint = self.ig_per_step <= 2.0 * w
            paces["ig"] = w * (grad + (0.0 if joint else row)) / self.ig_per_step  # one IG step per window
        return paces


def plan(run: list[str], windows: int, ig_steps_planned: int, ig_per_step: float, loo_rows: int, *,
         saliency_joint: bool = True, lengths: list[int] | None = None,
         loo_rows_per_window: list[int] | None = None) -> Plan:
    """Planned window forwards of each step of the run (and of each part of IG); `lengths`: each
    window's tokens, `loo_rows_per_window`: leave-one-out's rows in each (both for the predicted paces)."""
    units = {"target": float(windows), "attention": 0.05 * windows, "saliency": 0.0, "grad_input": 0.0,
             "ig": 0.0, "loo": 0.0, "agreement": 0.01 * windows, "verdict": 0.001 * windows}
    if "saliency" in run or "grad_input" in run:
        units["saliency" if "saliency" in run else "grad_input"] = 3.0 * windows
    if "ig" in run:
        units["ig"] = 2.0 * windows + ig_steps_planned * ig_per_step
    if "loo" in run:
        units["loo"] = float(loo_rows)
    parts = {name: [(name, n)] for name, n in units.items()}
    parts["ig"] = [(IG_ENDS, 2.0 * windows if units["ig"] else 0.0), ("ig", max(0.0, units["ig"] - 2.0 * windows))]
    window_scale = loo_scale = 1.0
    if lengths:
        longest = max(lengths)
        window_scale = sum(lengths) / (len(lengths) * longest)
        if loo_rows_per_window and sum(loo_rows_per_window):
            loo_scale = (sum(r * n for r, n in zip(loo_rows_per_window, lengths, strict=True))
                         / (sum(loo_rows_per_window) * longest))
    return Plan(units, parts, windows, float(ig_per_step), saliency_joint, window_scale, loo_scale)


def capture_share(methods, options: dict | None, held: list[int], specials: int) -> float:
    """The windows' capture's share of a windowed explanation's bar, said before either runs: their
    forwards (one per window) over those and the explanation's planned forwards (`plan`, where a row
    with gradients counts about two, as it costs). `held`: each window's document tokens."""
    from attn_desktop.core.explain import document
    from attn_desktop.core.explain.run import check_options, expand_methods

    run, _ = document.wanted(expand_methods(methods))
    opts = check_options(options)
    windows = [range(n + specials) for n in held]  # only their lengths count
    per_step = document.ig_forwards_per_step(windows, document.ig_batch(windows))
    units = plan(run, len(held), sum(document.ig_rounds_planned(opts)), per_step, sum(held)).units
    explain = sum(units[step] for step in ("target", "attention", *run, "verdict"))
    return len(held) / (len(held) + explain)


@dataclass
class Pace:
    """Seconds per unit from observations (seconds, units), both sums forgotten by exp(-seconds
    observed since / MEMORY_SECONDS), with a prediction weighing as `prior` seconds of observation at
    the predicted pace (forgotten likewise)."""

    seconds: float = 0.0
    units: float = 0.0
    prior: float = PRIOR_SECONDS

    def observe(self, seconds: float, units: float) -> None:
        keep = math.exp(-seconds / MEMORY_SECONDS)
        self.seconds = self.seconds * keep + seconds
        self.units = self.units * keep + units
        self.prior *= keep

    def value(self, predicted: float) -> float:
        return (self.seconds + self.prior) / (self.units + self.prior / predicted)


@dataclass
class _Step:
    done: float = 0.0  # forwards done
    extra: float = 0.0  # forwards added on the way (IG rounds beyond the plan)
    counted: bool = False  # the step reported its own forwards (units_done)
    finished: bool = False


class DocumentProgress:
    """report(fraction, message) of the whole run from each step's progress; adds the time left.
    A part that has not run yet is predicted at its calibrated pace x `speed`: how much slower than
    predicted the parts observed so far ran (1 at first; the calibration's ratios between kinds are
    kept, its absolute time follows the machine's load as measured since)."""

    def __init__(self, report: Callable[[float, str], None], clock=time.perf_counter) -> None:
        self.report, self.clock = report, clock
        self.plan: Plan | None = None
        self.order: list[str] = []
        self.steps: dict[str, _Step] = {}
        self.paces: dict[str, Pace] = {}  # part -> its observed pace
        self.predicted: dict[str, float] = {}  # part -> calibrated seconds per forward (1 before)
        self.speed = Pace()  # observed seconds per predicted second
        self.calibration: Calibration | None = None
        self.shown = 0.0
        self.started = clock()
        self.last = self.started
        self.step: str | None = None

    # -- the plan ------------------------------------------------------------------------------
    def set_plan(self, plan_: Plan, order: list[str]) -> None:
        self.plan, self.order = plan_, order
        self.steps = {name: _Step() for name in order}
        parts = [part for name in order for part, _ in plan_.parts[name]]
        self.paces = {part: Pace() for part in parts}
        self.predicted = dict.fromkeys(parts, 1.0)  # before the calibration the bar moves by forwards

    def calibrate(self, cal: Calibration) -> None:
        """Predicted paces of every part from `cal`."""
        self.calibration = cal
        self.predicted.update(self.plan.predicted(cal))

    @property
    def units(self) -> dict[str, float]:
        return self.plan.units

    @property
    def extra(self) -> float:
        return sum(s.extra for s in self.steps.values())

    @extra.setter
    def extra(self, value: float) -> None:
        """Forwards beyond the plan, all Integrated Gradients' (the only step that adds any)."""
        self.steps["ig"].extra = max(0.0, value)

    @property
    def total(self) -> float:
        """Window forwards planned (rounds beyond the plan not included)."""
        return sum(self.plan.units[s] for s in self.order) or 1.0

    @property
    def done_units(self) -> float:
        return sum(self.plan.units[n] + s.extra if s.finished else s.done for n, s in self.steps.items())

    # -- the arithmetic ------------------------------------------------------------------------
    def pace(self, part: str) -> float:
        """Seconds per forward of `part`: its own observations, its prediction x speed as prior."""
        return self.paces[part].value(self.predicted[part] * self.speed.value(1.0))

    def _pieces(self, name: str, start: float, end: float) -> list[tuple[str, float]]:
        """(part, forwards) of step `name`'s forwards from `start` to `end` (beyond the plan: its last part)."""
        out, at = [], 0.0
        parts = self.plan.parts[name]
        for i, (part, n) in enumerate(parts):
            hi = at + n if i < len(parts) - 1 else math.inf
            piece = min(end, hi) - max(start, at)
            if piece > 0:
                out.append((part, piece))
            at += n
        return out

    def _seconds(self, name: str, start: float, end: float) -> float:
        return sum(piece * self.pace(part) for part, piece in self._pieces(name, start, end))

    def seconds_left(self) -> float | None:
        """Sum over steps of pace x forwards left; None before the calibration."""
        if self.calibration is None:
            return None
        return self._left()

    def _left(self) -> float:
        left = 0.0
        for name, step in self.steps.items():
            if not step.finished:
                left += self._seconds(name, step.done, self.plan.units[name] + step.extra)
        return left

    def _observe(self, name: str, start: float, end: float, seconds: float) -> None:
        """Spreads `seconds` over the parts of step `name`'s forwards start..end by their present
        paces; once calibrated, a piece of a SPEED_PARTS part also tells the speed (observed over
        predicted seconds)."""
        pieces = self._pieces(name, start, end)
        weights = [piece * self.pace(part) for part, piece in pieces]
        total = sum(weights)
        for (part, piece), weight in zip(pieces, weights, strict=True):
            spent = seconds * weight / total if total > 0 else 0.0
            self.paces[part].observe(spent, piece)
            if self.calibration is not None and part in SPEED_PARTS:
                self.speed.observe(spent, piece * self.predicted[part])

    # -- the reports ---------------------------------------------------------------------------
    def at(self, name: str, fraction: float, message: str, *, units_done: float | None = None) -> None:
        """Step `name` is `fraction` (0..1) through; `units_done`: window forwards done in it."""
        now = self.clock()
        seconds, self.last = now - self.last, now
        step = self.steps[name]
        fraction = max(0.0, min(1.0, fraction))
        before = step.done
        done = max(before, float(units_done) if units_done is not None else fraction * self.plan.units[name])
        # the time since the step's last report was spent on its forwards since (the step's end
        # after its own counted forwards adds none: work skipped when IG converged early)
        if name == self.step and done > before and not (step.counted and units_done is None):
            self._observe(name, before, done, seconds)
        work = self._seconds(name, before, done)
        step.done = done
        step.counted = step.counted or units_done is not None
        step.finished = step.finished or fraction >= 1.0
        self.step = name
        left = self._left()
        if name == self.order[-1] and step.finished:
            value = 1.0
        elif work + left > 0:
            value = self.shown + (1.0 - self.shown) * work / (work + left)
        else:
            value = self.shown
        self.shown = max(self.shown, min(1.0, value))
        said = self.seconds_left()
        if said is not None and name != "target" and not (name == self.order[-1] and step.finished):
            message = f"{message} · {roughly(said)} left"
        self.report(self.shown, message)

    def estimate(self, methods: str, windows: int, ig_rounds: list[int] | None = None) -> float:
        """Says the estimate (the calibration's paces x the forwards planned) once; returns it.
        `ig_rounds`: the adaptive IG rounds the plan counts."""
        left = self.seconds_left() or 0.0
        cal = self.calibration
        measured = f"a window's forward measured at {cal.forward:.2g} s" + (
            f", {cal.row:.2g} s a row in a batch of {cal.rows}" if cal.rows > 1 else "") + (
            f", {cal.gradient:.2g} s a row with gradients" if cal.gradient is not None else "")
        more = (f"; Integrated Gradients counted at {' + '.join(map(str, ig_rounds))} steps: less if it converges "
                "sooner, more if it needs more steps") if ig_rounds else ""
        self.report(self.shown, f"{ESTIMATE_PREFIX}{rough_duration(left)} more: {methods} over {windows} "
                                f"windows ({measured}{more})")
        return left


def rough_duration(seconds: float) -> str:
    """A duration without more precision than an estimate has: whole seconds under 10 s, then to
    5 s, to half a minute under 10 min, to the minute under 90 min, then hours and tens of minutes."""
    if seconds < 10:
        return f"{max(1.0, seconds):.0f} s"
    if seconds < 90:
        return f"{5 * round(seconds / 5):.0f} s"
    minutes = seconds / 60
    if minutes < 10:
        return f"{round(2 * minutes) / 2:g} min"
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours, rest = divmod(10 * round(minutes / 10), 60)
    return f"{hours:.0f} h" + (f" {rest:.0f} min" if rest else "") if hours < 48 else f"{hours / 24:.0f} days"


def roughly(seconds: float) -> str:
    """'about 40 s', 'about 9 min', or 'under 10 s'."""
    return "under 10 s" if seconds < 10 else f"about {rough_duration(seconds)}"
