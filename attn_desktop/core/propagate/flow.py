"""Exact attention flow (Abnar & Zuidema 2020) on the layered attention graph.

The graph has ``(L+1)·n`` nodes; node ``a`` of layer ``l`` has an arc to node ``b`` of layer
``l−1`` with capacity ``Â_l[a, b]`` (``hat[l−1]``, see :func:`rollout.fused_hat`). The flow of
output token ``i`` to input token ``j`` is the maximum flow from ``(L, i)`` to ``(0, j)``;
each output row is then normalised to sum to 1, as in the paper's code.

Exactness. Every solve (:func:`maxflow.max_flow`, Dinic's algorithm compiled by numba) works
on int64 capacities: the real ones scaled by ``S = 2^50 / (largest arc or out-capacity)`` and
rounded *down*. Each value carries a certificate:

- ``lower``: the value of a flow of the solves. Rounding down keeps it within the real
  capacities, so the flow is feasible and ``lower ≤ true``;
- ``upper``: the real (float64) capacity of an s–t cut of the full graph, so ``true ≤ upper``.

The reported value is ``upper`` with ``error_bound = upper − lower``; a sink is finished when
``error_bound ≤ tol`` (default 5e-7, under the 1e-6 promised for exact results). Rounding
costs a cut at most one unit, 1/S ≈ 1e-15, per arc, so the gap is the candidate graph's
shortfall, not rounding. Scaled capacities stay below 2^50, so sums over the 2^13 arcs of a
node stay far below 2^63.

Speed. Most arcs never matter. The first solve of a sink runs on candidate arcs only: the
whole first and last layer, row i and column j of every middle layer (with dense attention
the flow leaves token i and reaches token j through many small arcs) and the largest arcs of
every row and column. Its flow is feasible in the full graph. When it stops short of the
cheap upper bound ``min(source out-capacity, sink in-capacity)``, the minimum cut of the
candidate graph is priced in the full graph, the largest full-graph arcs that cross it join
the candidates (for all later sinks too) and the next solve starts from the flow so far.
The part of the first-solve graph that does not depend on the sink is built once per row.
Nodes the source cannot reach are left out, so causal models get smaller graphs. With
``workers > 1`` rows and sinks are spread over spawned worker processes (spawned, not forked:
safe to start from threaded GUI code).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import Cancelled
from .flow_pool import FlowPool
from .maxflow import first_solves, max_flow

EXACT_TOL = 1e-6  # a result is labelled exact when every flow is certified within this
DEFAULT_TOL = 5e-7
_CAP_LIMIT = 2.0**50
_SEED_ARCS = 8  # largest arcs per row and per column of each middle layer to start with
_GROWTH = 32.0  # arcs added to a cut: enough to lift it this many times over the shortfall
_MAX_ROUNDS = 100
_TASK_SINKS = 32  # sinks per task handed to a worker process

Progress = Callable[[int, int], object]
Cancel = Callable[[], bool]


@dataclass(frozen=True)
class FlowResult:
    """Attention flow of some output rows to every input token.

    ``flow``: float32 [len(rows), n], each row normalised to sum to 1 (an all-zero row stays 0).
    ``raw``: float64 [len(rows), n], the maximum flows before normalisation.
    ``error_bound``: float64 [len(rows), n], certified bound on ``|raw − true maximum flow|``.
    ``max_abs_error_bound``: largest ``error_bound``; ``max_abs_error_bound_normalised``
    bounds the error of ``flow`` likewise. ``exact``: every raw value certified within 1e-6.
    ``seconds``: wall time. ``solves``: calls of :func:`maxflow.max_flow`.
    """

    flow: np.ndarray
    raw: np.ndarray
    error_bound: np.ndarray
    rows: tuple[int, ...]
    max_abs_error_bound: float
    max_abs_error_bound_normalised: float
    exact: bool
    seconds: float
    solves: int


class _Network:
    """The layered graph of one ``hat``, and the candidate arcs of its middle layers:
    ``candidates[k]`` marks arcs of ``hat[k]`` (layer k+1 → layer k), k = 1..L−2."""

    def __init__(self, hat: np.ndarray, seed_arcs: int | None = None):
        # float32 capacities are kept as they are (no float64 copy: half the memory at long
        # lengths); every sum over them is taken in float64.
        self.hat = np.ascontiguousarray(hat, dtype=hat.dtype if hat.dtype == np.float32 else np.float64)
        self.layers, self.n = self.hat.shape[0], self.hat.shape[1]
        self.dense = bool((self.hat > 0).all())
        # which arcs exist, for reachability; not needed when every arc exists
        self.support = None if self.dense else self.hat > 0
        # Every arc, and the source's total out-capacity (which bounds any flow), ≤ 2^50.
        biggest = max(1.0, float(self.hat.max()), float(self.hat[-1].sum(axis=1, dtype=np.float64).max()))
        self.scale = _CAP_LIMIT / biggest
        seed = _SEED_ARCS if seed_arcs is None else seed_arcs
        self.candidates = {k: _largest_arcs(self.hat[k], seed) for k in range(1, self.layers - 1)}
        self.version = 0  # bumped whenever candidates grow

    def add_candidates(self, k: int, rows: np.ndarray, cols: np.ndarray) -> None:
        self.candidates[k][rows, cols] = True
        self.version += 1

    def reach_from(self, i: int) -> list[np.ndarray]:
        """reach[k]: nodes of layer k reachable from output node i (k = 0..L−1)."""
        reach = [np.ones(self.n, bool) for _ in range(self.layers)]
        if self.dense:
            return reach
        reach[-1] = self.hat[-1][i] > 0
        for k in range(self.layers - 1, 0, -1):
            reach[k - 1] = self.support[k - 1][reach[k]].any(axis=0)
        return reach

    def coreach_to(self, j: int) -> list[np.ndarray]:
        """co[k]: nodes of layer k that reach input node j (k = 0..L−1)."""
        co = [np.ones(self.n, bool) for _ in range(self.layers)]
        co[0] = np.arange(self.n) == j
        if self.dense:
            return co
        for k in range(1, self.layers):
            co[k] = self.support[k - 1][:, co[k - 1]].any(axis=1)
        return co


def _largest_arcs(matrix: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` largest arcs of every row and of every column."""
    mask = np.zeros(matrix.shape, bool)
    if count >= matrix.shape[0]:
        mask[:] = True
    else:
        np.put_along_axis(mask, np.argpartition(-matrix, count, axis=1)[:, :count], True, 1)
        np.put_along_axis(mask, np.argpartition(-matrix, count, axis=0)[:count, :], True, 0)
    return mask & (matrix > 0)


class _Row:
    """What the solves from output node i share. Local node numbering: source 0, then the
    reachable nodes of layer L−1, …, layer 1 (layer k starts at ``offset[k]``), sink last."""

    def __init__(self, net: _Network, i: int):
        self.net, self.i = net, i
        top = net.layers - 1
        self.reach = net.reach_from(i)
        self.idx = {k: np.flatnonzero(self.reach[k]) for k in range(1, top + 1)}
        self.local = {}
        for k, nodes in self.idx.items():
            self.local[k] = np.full(net.n, -1)
            self.local[k][nodes] = np.arange(nodes.size)
        self.everywhere = all(nodes.size == net.n for nodes in self.idx.values())
        self.offset = {top: 1}
        for k in range(top, 1, -1):
            self.offset[k - 1] = self.offset[k] + self.idx[k].size
        self.sink = self.offset[1] + self.idx[1].size
        self.size = self.sink + 1
        self.p = net.hat[top][i, self.idx[top]].astype(np.float64)
        self.cap = {k: self.block(net.hat[k - 1], k) for k in range(top, 1, -1)}
        self._version = -1
        self._reversed_version = -1
        self.p_total = float(self.p.sum())
        self.q_total = net.hat[0][self.idx[1]].sum(axis=0, dtype=np.float64)
        # the reachable nodes and their local numbers, as maxflow.first_solves reads them
        local = np.full((top + 1, net.n), -1, np.int64)
        for k in range(1, top):
            local[k] = self.local[k]
        sizes = [self.idx[k].size for k in range(1, top + 1)]
        self.layout = (
            np.concatenate([self.idx[k] for k in range(1, top + 1)]).astype(np.int64),
            np.concatenate([[0, 0], np.cumsum(sizes)]).astype(np.int64),
            np.array([0] + [self.offset[k] for k in range(1, top + 1)], np.int64),
            local,
        )

    def block(self, matrix: np.ndarray, k: int) -> np.ndarray:
        """The reachable block of a layer-k → layer-(k−1) matrix."""
        if self.everywhere:
            return matrix
        return matrix[np.ix_(self.idx[k], self.idx[k - 1])]

    def _refresh(self) -> None:
        """Candidate blocks (with row i) and the sorted sink-independent arcs."""
        if self._version == self.net.version:
            return
        self._version = self.net.version
        top = self.net.layers - 1
        self.cand = {}
        heads = [np.zeros(self.p.size, np.intp)]
        tails = [self.offset[top] + np.arange(self.p.size)]
        caps = [self.p]
        for k, cap in self.cap.items():
            mask = self.block(self.net.candidates[k - 1], k).copy()
            own = self.local[k][self.i]
            if own >= 0:
                mask[own] = cap[own] > 0
            self.cand[k] = mask
            a, b = np.nonzero(mask)
            heads.append(self.offset[k] + a)
            tails.append(self.offset[k - 1] + b)
            caps.append(cap[a, b].astype(np.float64))
        self.heads, self.tails, self.caps = (np.concatenate(x) for x in (heads, tails, caps))
        self.keys = self.heads * self.size + self.tails

    def _refresh_reversed(self) -> None:
        """The sink-independent first-solve arcs reversed (tail → head), as CSR segments, with
        their capacities scaled and rounded down."""
        self._refresh()
        if self._reversed_version == self._version:
            return
        self._reversed_version = self._version
        order = np.argsort(self.tails * self.size + self.heads, kind="stable")
        self.r_indices = self.heads[order]
        self.r_caps = np.floor(self.caps[order] * self.net.scale).astype(np.int64)
        self.r_start = np.zeros(self.size + 1, np.intp)
        np.cumsum(np.bincount(self.tails, minlength=self.size), out=self.r_start[1:])

    def first_solves(self, sinks: np.ndarray) -> np.ndarray:
        """Certified lower bounds on the flows to the first inputs of ``sinks`` (the first
        solve of each, on the reversed first-solve graph, in compiled code), up to and
        including the first that falls short of its cheap bound."""
        self._refresh_reversed()
        values = first_solves(
            self.net.hat, self.net.scale, self.r_indices, self.r_caps, self.r_start,
            *self.layout, self.sink, np.asarray(sinks, np.int64),
        )
        return values / self.net.scale

    def candidates(self, k: int, j: int) -> np.ndarray:
        """Candidate arcs of middle layer k (local block) for a solve to input j."""
        self._refresh()
        mask = self.cand[k].copy()
        col = self.local[k - 1][j]
        if col >= 0:
            mask[:, col] = self.cap[k][:, col] > 0
        return mask

    def arcs_to(self, j: int, q: np.ndarray):
        """Heads, tails and capacities of the first-solve arcs to input j, sorted by (head,
        tail): the shared arcs with column j merged in, then the sink arcs ``q``."""
        self._refresh()
        heads, tails, caps = [np.zeros(0, np.intp)], [np.zeros(0, np.intp)], [np.zeros(0)]
        for k, cap in self.cap.items():
            col = self.local[k - 1][j]
            if col < 0:
                continue
            a = np.flatnonzero((cap[:, col] > 0) & ~self.cand[k][:, col])
            heads.append(self.offset[k] + a)
            tails.append(np.full(a.size, self.offset[k - 1] + col))
            caps.append(cap[a, col].astype(np.float64))
        new_heads, new_tails, new_caps = (np.concatenate(x) for x in (heads, tails, caps))
        at = np.searchsorted(self.keys, new_heads * self.size + new_tails)
        bottom = np.flatnonzero(q > 0)
        return (
            np.concatenate([np.insert(self.heads, at, new_heads), self.offset[1] + bottom]),
            np.concatenate([np.insert(self.tails, at, new_tails), np.full(bottom.size, self.sink)]),
            np.concatenate([np.insert(self.caps, at, new_caps), q[bottom]]),
        )


class _SinkSolve:
    """The maximum flow from output node i to input node j, with its certificate. The
    candidate arcs and the flow on each (int64, in units of 1/scale) are kept as arrays
    sorted by (head, tail)."""

    def __init__(self, row: _Row, j: int):
        self.row, self.j = row, j
        top = row.net.layers - 1
        co = row.net.coreach_to(j)
        self.co = {k: co[k][row.idx[k]] for k in row.idx}  # local nodes that reach j
        self.q = row.net.hat[0][row.idx[1], j].astype(np.float64)
        self.upper = min(row.p[self.co[top]].sum(), self.q.sum())
        self.heads, self.tails, self.caps = row.arcs_to(j, self.q)
        self.flows = np.zeros(self.caps.size, np.int64)

    def run(self, tol: float) -> tuple[float, float, int]:
        row, scale = self.row, self.row.net.scale
        upper, lower, rounds = self.upper, 0.0, 0
        while upper - lower > tol and upper > 0 and rounds < _MAX_ROUNDS:
            rounds += 1
            indptr = np.zeros(row.size + 1, np.int64)
            np.cumsum(np.bincount(self.heads, minlength=row.size), out=indptr[1:])
            caps = np.floor(self.caps * scale).astype(np.int64)
            value, side = max_flow(indptr, self.tails, caps, self.flows, 0, row.sink)
            lower = float(value) / scale
            if upper - lower <= tol:
                break
            upper = min(upper, self._price_cut_and_grow(side, upper))
        return upper, max(upper - lower, 0.0), rounds

    def _price_cut_and_grow(self, side: np.ndarray, upper: float) -> float:
        """Capacity in the full graph of the cut ``side`` plus the nodes that cannot reach
        the sink. The largest crossing arcs that are not candidates yet become candidates:
        enough to lift the cut's candidate capacity ``_GROWTH`` times over its shortfall."""
        row, top = self.row, self.row.net.layers - 1
        inside = {k: side[row.offset[k] : row.offset[k] + row.idx[k].size] for k in row.idx}
        price = row.p[self.co[top] & ~inside[top]].sum() + self.q[inside[1]].sum()
        missing = []  # (capacity, k, local head, local tail) per crossing non-candidate arc
        for k, cap in row.cap.items():
            rows, cols = np.flatnonzero(inside[k]), np.flatnonzero(self.co[k - 1] & ~inside[k - 1])
            if rows.size == 0 or cols.size == 0:
                continue
            block = np.ix_(rows, cols)
            crossing = cap[block].astype(np.float64)
            price += crossing.sum()
            r, c = np.nonzero((crossing > 0) & ~row.candidates(k, self.j)[block])
            missing.append((crossing[r, c], k, rows[r], cols[c]))
        caps = np.concatenate([m[0] for m in missing]) if missing else np.zeros(0)
        if caps.size:
            shortfall = min(upper, price) - (price - caps.sum())
            order = np.argsort(caps)[::-1]
            count = int(np.searchsorted(np.cumsum(caps[order]), shortfall * _GROWTH)) + 1
            chosen = np.zeros(caps.size, bool)
            chosen[order[:count]] = True
            start = 0
            for values, k, a, b in missing:
                pick = chosen[start : start + values.size]
                start += values.size
                if pick.any():
                    self._add_arcs(
                        row.offset[k] + a[pick], row.offset[k - 1] + b[pick], values[pick]
                    )
                    row.net.add_candidates(k - 1, row.idx[k][a[pick]], row.idx[k - 1][b[pick]])
        return float(price)

    def _add_arcs(self, heads: np.ndarray, tails: np.ndarray, caps: np.ndarray) -> None:
        at = np.searchsorted(self.heads * self.row.size + self.tails, heads * self.row.size + tails)
        self.heads = np.insert(self.heads, at, heads)
        self.tails = np.insert(self.tails, at, tails)
        self.caps = np.insert(self.caps, at, caps)
        self.flows = np.insert(self.flows, at, 0)


def _row_for(net: _Network, i: int, kept: _Row | None) -> _Row | None:
    """The _Row of output node i: ``kept`` when it is that row's (None below three layers)."""
    if net.layers < 3:
        return None
    return kept if kept is not None and kept.i == i else _Row(net, i)


def _row_flows(
    net: _Network, i: int, sinks: Sequence[int], tol: float, cancel: Cancel | None = None,
    row: _Row | None = None,
):
    """Max flows from output node i to each input node of ``sinks``: (values, bounds, solves).
    ``row``: the _Row of i kept from an earlier call, if any."""
    hat = net.hat
    sinks = np.asarray(sinks, dtype=np.intp)
    if net.layers == 1:
        return hat[0][i, sinks].astype(np.float64), np.zeros(sinks.size), 0
    if net.layers == 2:
        # Disjoint two-arc paths: the flow is a sum of bottlenecks, in closed form.
        paths = np.minimum(hat[1][i][:, None], hat[0][:, sinks])
        return paths.sum(axis=0, dtype=np.float64), np.zeros(sinks.size), 0
    row = _Row(net, i) if row is None else row
    values, bounds = np.zeros(sinks.size), np.zeros(sinks.size)
    if cancel is not None and cancel():
        raise Cancelled("attention flow cancelled")
    # The cheap cut min(all arcs out of the source, all arcs into the sink) is almost always
    # the minimum: one solve on the reversed first-solve graph certifies it.
    upper = np.minimum(row.p_total, row.q_total[sinks])
    pending = np.flatnonzero(row.reach[0][sinks] & (upper > 0))
    solves = 0
    while pending.size:
        lower = row.first_solves(sinks[pending])
        done, pending = pending[: lower.size], pending[lower.size :]
        solves += done.size
        gap = upper[done] - lower
        values[done], bounds[done] = upper[done], np.maximum(gap, 0.0)
        if gap[-1] > tol:  # the last fell short: the general loop, which grows the candidates
            if cancel is not None and cancel():
                raise Cancelled("attention flow cancelled")
            values[done[-1]], bounds[done[-1]], calls = _SinkSolve(row, int(sinks[done[-1]])).run(tol)
            solves += calls
    return values, bounds, solves


def attention_flow(
    hat: np.ndarray,
    rows: Sequence[int],
    *,
    tol: float = DEFAULT_TOL,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    workers: int | None = None,
    pool: FlowPool | None = None,
) -> FlowResult:
    """Attention flow of output tokens ``rows`` to every input token.

    ``hat``: residual-normalised fused self-attention [L, n, n] (:func:`rollout.fused_hat`);
    zero entries (causal masks) are missing arcs. ``tol``: certified bound on the absolute
    error of every un-normalised flow (above 1e-6 the result is labelled not exact).
    ``workers``: None or 1 computes in this process; more spreads the rows and sinks over
    that many spawned processes, started for this call (a script calling this with
    workers > 1 needs the usual ``if __name__ == "__main__":`` guard, as for any spawned
    multiprocessing). ``pool``: a :class:`flow_pool.FlowPool` whose workers are kept between
    calls (``workers`` is then ignored).
    ``progress(done, total)`` counts (row, input) pairs; ``cancel()`` returning True stops
    with :class:`Cancelled`.
    """
    started = time.perf_counter()
    hat = np.asarray(hat)
    if hat.ndim != 3 or hat.shape[1] != hat.shape[2] or hat.shape[0] < 1:
        raise ValueError(f"expected square [layers, n, n] matrices, got shape {hat.shape}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if not np.all(np.isfinite(hat)) or hat.min() < 0:
        raise ValueError("capacities must be finite and non-negative")
    n = hat.shape[1]
    rows = tuple(int(r) for r in rows)
    for r in rows:
        if not 0 <= r < n:
            raise ValueError(f"row {r} out of range for {n} tokens")
    tasks = [
        (pos, i, np.arange(start, min(start + _TASK_SINKS, n)))
        for pos, i in enumerate(rows)
        for start in range(0, n, _TASK_SINKS)
    ]
    workers = 1 if workers is None else int(workers)
    raw, bound = np.zeros((len(rows), n)), np.zeros((len(rows), n))
    counts = {"solves": 0, "done": 0}

    def record(task, outcome) -> None:
        pos, _, sinks = task
        raw[pos, sinks], bound[pos, sinks], solves = outcome
        counts["solves"] += solves
        counts["done"] += sinks.size
        if progress is not None:
            progress(counts["done"], len(rows) * n)

    if pool is not None and len(tasks) > 1:
        pool.run(hat, tasks, tol, record, cancel)
    elif workers <= 1 or len(tasks) == 1:
        net = _Network(hat)
        row = None
        for task in tasks:
            row = _row_for(net, task[1], row)
            record(task, _row_flows(net, task[1], task[2], tol, cancel, row=row))
    else:
        own = FlowPool(workers)
        try:
            own.run(hat, tasks, tol, record, cancel)
        finally:
            own.close()
    return _result(raw, bound, rows, time.perf_counter() - started, counts["solves"])


def _result(raw: np.ndarray, bound: np.ndarray, rows, seconds: float, solves: int) -> FlowResult:
    sums = raw.sum(axis=1, keepdims=True)
    flow = np.zeros_like(raw)
    np.divide(raw, sums, out=flow, where=sums > 0)
    total = bound.sum(axis=1, keepdims=True)
    # |v/V − t/T| ≤ (e + (v/V)·E) / (V − E) when |v − t| ≤ e and |V − T| ≤ E
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.where(
            sums > total, (bound + flow * total) / (sums - total), np.where(bound > 0, np.inf, 0.0)
        )
    max_bound = float(bound.max()) if bound.size else 0.0
    return FlowResult(
        flow=flow.astype(np.float32),
        raw=raw,
        error_bound=bound,
        rows=tuple(rows),
        max_abs_error_bound=max_bound,
        max_abs_error_bound_normalised=float(normalised.max()) if normalised.size else 0.0,
        exact=max_bound <= EXACT_TOL,
        seconds=seconds,
        solves=solves,
    )
