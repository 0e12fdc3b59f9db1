"""What an attention-flow job will cost, said before it starts, and the jobs refused outright.

Exact flow solves one maximum flow per (row, input token) pair on a graph that grows with the
number of layers and tokens, so its cost grows faster than n². The figures below are seconds per
pair with one process on the development machine (2 cores), from `benchmarks/bench_flow.py`:
up to 512 tokens the demo model on legal text (6 layers, scaled to 12); above, the 12-layer
synthetic attention of `--long`, times the ratio real/synthetic measured at 512 tokens (2.2), so
long inputs are estimated on the pessimistic side. Time scales with the number of layers (L − 1
arc layers). Another machine differs, so the window replaces the estimate with the pace it
measures as rows finish. No job is ever made cheaper by approximating: a job that would not
fit is refused with its figures, and the user can ask for fewer rows.

Pure Python: the window's process uses it before it asks the compute process for anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (tokens, seconds per (row, input) pair with one process at 12 layers), compiled max-flow kernel
PAIR_SECONDS_12_LAYERS = ((64, 0.45e-3), (256, 0.8e-3), (512, 1.9e-3), (1024, 5.5e-3), (2048, 12.8e-3),
                          (4096, 71e-3))
MEMORY_LIMIT_BYTES = int(1.5 * 2**30)  # one process's flow network may use this much
LONG_JOB_SECONDS = 8 * 3600.0  # jobs estimated longer than this are not started
SAY_ESTIMATE_AFTER_S = 10.0  # jobs estimated longer than this say so before they start


def network_bytes(layers: int, n: int) -> int:
    """Memory of the flow network of one process: the float32 capacities (the fused matrices
    themselves, not a copy), candidate masks and which arcs exist (6 bytes per arc; measured
    by benchmarks/bench_flow.py --long)."""
    return 6 * layers * n * n


def pair_seconds(layers: int, n: int) -> float:
    """Estimated seconds for one (row, input) pair with one process."""
    if layers < 3:
        return 1e-7  # closed forms: one or two layers need no solve
    points = PAIR_SECONDS_12_LAYERS
    if n <= points[0][0]:
        seconds = points[0][1] * n / points[0][0]
    else:
        seconds = None
        for (n0, s0), (n1, s1) in zip(points, points[1:], strict=False):
            if n <= n1:
                t = (math.log(n) - math.log(n0)) / (math.log(n1) - math.log(n0))
                seconds = math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))
                break
        if seconds is None:  # beyond the last measurement: grows as n² per pair
            n1, s1 = points[-1]
            seconds = s1 * (n / n1) ** 2
    return seconds * (layers - 1) / 11


@dataclass(frozen=True)
class FlowPlan:
    """A flow job's estimate: `rows` rows of `n` tokens with `workers` processes."""

    layers: int
    n: int
    rows: int
    workers: int
    row_seconds: float
    seconds: float
    memory_bytes: int

    @property
    def refusal(self) -> str | None:
        """Why the job is not started, in one line, or None."""
        if self.memory_bytes > MEMORY_LIMIT_BYTES:
            return (f"attention flow at {self.n} tokens and {self.layers} layers needs about "
                    f"{_size(self.memory_bytes)} of memory in one process (the limit is "
                    f"{_size(MEMORY_LIMIT_BYTES)}) and about {duration(self.row_seconds)} per row; "
                    "it is not computed (rollout is available at this length)")
        if self.rows > 1 and self.seconds > LONG_JOB_SECONDS:
            return (f"attention flow for {self.rows} rows at {self.n} tokens would take about "
                    f"{duration(self.seconds)} (about {duration(self.row_seconds)} per row, "
                    f"estimated); it is not started: compute the rows you need one at a time")
        return None

    def describe(self) -> str:
        """'attention flow: 512 rows at 512 tokens, estimated about 4 min (about 0.5 s per row)'."""
        rows = f"{self.rows} row" + ("s" if self.rows != 1 else "")
        return (f"attention flow: {rows} at {self.n} tokens, estimated about {duration(self.seconds)} "
                f"(about {duration(self.row_seconds)} per row, {self.workers} process"
                + ("es" if self.workers != 1 else "") + ")")


def plan(layers: int, n: int, rows: int, workers: int = 1) -> FlowPlan:
    """The estimate for `rows` rows of an n-token text with `layers` layers."""
    from .flow_pool import worth_a_pool

    workers = workers if worth_a_pool(layers, n, workers) else 1
    # a row's input tokens split evenly; measured about 1.7x with 2 processes, so count 85%
    speedup = 1.0 if workers == 1 else 0.85 * workers
    row_seconds = n * pair_seconds(layers, n) / speedup
    return FlowPlan(layers, n, rows, workers, row_seconds, rows * row_seconds,
                    network_bytes(layers, n))


def duration(seconds: float) -> str:
    """'0.4 s', '35 s', '4 min', '2 h 10 min', '3 days'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{int(hours)} h {int(minutes % 60)} min"
    return f"{hours / 24:.0f} days"


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MB"
