"""Dinic's maximum flow on int64 capacities, compiled by numba.

The graph is CSR: arc ``e`` runs from its row to ``indices[e]`` with capacity ``caps[e]``.
Residual arcs are not stored: an arc with room is walked forwards, an arc carrying flow is
walked backwards from its head (through the arcs grouped by head, built once per call), so a
solve never doubles the graph and can start from any feasible flow. Integer capacities make
every solve exact: the returned value is the value of the returned flow.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_UNBOUNDED = np.int64(2**62)  # above any capacity: callers keep capacities below 2^62


@njit(cache=True, nogil=True)
def max_flow(indptr, indices, caps, flow, source, sink):
    """Raise ``flow`` (int64 per arc; feasible: 0 ≤ flow ≤ caps, conserved away from the
    source and sink; zeros to start from nothing) in place to a maximum flow from ``source``
    to ``sink``. Returns its value and, per node, whether the source reaches it in the final
    residual graph: the source side of a minimum cut."""
    size = indptr.size - 1
    arcs = indices.size
    tail_of = np.empty(arcs, np.int64)
    for u in range(size):
        for e in range(indptr[u], indptr[u + 1]):
            tail_of[e] = u
    in_ptr = np.zeros(size + 1, np.int64)
    for e in range(arcs):
        in_ptr[indices[e] + 1] += 1
    for v in range(size):
        in_ptr[v + 1] += in_ptr[v]
    in_arcs = np.empty(arcs, np.int64)
    fill = in_ptr[:-1].copy()
    for e in range(arcs):
        v = indices[e]
        in_arcs[fill[v]] = e
        fill[v] += 1
    level = np.empty(size, np.int64)
    queue = np.empty(size, np.int64)
    cursor = np.empty(size, np.int64)
    path_node = np.empty(size + 1, np.int64)
    path_arc = np.empty(size + 1, np.int64)  # e ≥ 0: arc e forwards; −e−1: arc e backwards
    value = 0
    for e in range(indptr[source], indptr[source + 1]):
        value += flow[e]
    for k in range(in_ptr[source], in_ptr[source + 1]):
        value -= flow[in_arcs[k]]
    # A node's incoming arcs are walked (backwards) only while one of them carries flow: a
    # search from no flow skips every list of incoming arcs, about half the work of a phase.
    carrying = np.zeros(size, np.int64)  # incoming arcs with flow, per node
    for e in range(arcs):
        if flow[e] > 0:
            carrying[indices[e]] += 1
    while True:
        level[:] = -1
        level[source] = 0
        queue[0] = source
        head, tail = 0, 1
        while head < tail:
            u = queue[head]
            head += 1
            if level[sink] >= 0 and level[u] + 1 >= level[sink]:
                break  # the sink's level is known: deeper nodes lead nowhere this phase
            for e in range(indptr[u], indptr[u + 1]):
                v = indices[e]
                if level[v] < 0 and caps[e] > flow[e]:
                    level[v] = level[u] + 1
                    queue[tail] = v
                    tail += 1
            for k in range(in_ptr[u], in_ptr[u + 1] if carrying[u] > 0 else in_ptr[u]):
                e = in_arcs[k]
                v = tail_of[e]
                if level[v] < 0 and flow[e] > 0:
                    level[v] = level[u] + 1
                    queue[tail] = v
                    tail += 1
        if level[sink] < 0:
            break
        cursor[:] = 0
        depth = 0
        path_node[0] = source
        while True:
            u = path_node[depth]
            if u == sink:
                best = _UNBOUNDED
                for d in range(depth):
                    a = path_arc[d]
                    room = caps[a] - flow[a] if a >= 0 else flow[-a - 1]
                    if room < best:
                        best = room
                back_to = -1
                for d in range(depth):
                    a = path_arc[d]
                    if a >= 0:
                        if flow[a] == 0:
                            carrying[indices[a]] += 1
                        flow[a] += best
                        room = caps[a] - flow[a]
                    else:
                        flow[-a - 1] -= best
                        room = flow[-a - 1]
                        if room == 0:
                            carrying[indices[-a - 1]] -= 1
                    if room == 0 and back_to < 0:
                        back_to = d
                value += best
                depth = back_to
                continue
            out_degree = indptr[u + 1] - indptr[u]
            # (arcs that gain flow in this phase lead a level back: never on a path of it)
            degree = out_degree + (in_ptr[u + 1] - in_ptr[u] if carrying[u] > 0 else 0)
            found = False
            v = -1
            while cursor[u] < degree:
                k = cursor[u]
                if k < out_degree:
                    e = indptr[u] + k
                    v = indices[e]
                    if level[v] == level[u] + 1 and caps[e] > flow[e]:
                        path_arc[depth] = e
                        found = True
                        break
                else:
                    e = in_arcs[in_ptr[u] + k - out_degree]
                    v = tail_of[e]
                    if level[v] == level[u] + 1 and flow[e] > 0:
                        path_arc[depth] = -e - 1
                        found = True
                        break
                cursor[u] += 1
            if found:
                depth += 1
                path_node[depth] = v
            else:
                level[u] = -1  # a dead end for the rest of this phase
                if depth == 0:
                    break
                depth -= 1
                cursor[path_node[depth]] += 1
    return value, level >= 0


@njit(cache=True, nogil=True)
def first_solves(hat, scale, r_indices, r_caps, r_start, idx, idx_start, offset, local, sink_node, sinks):
    """The first solves for one output row, one input of ``sinks`` after another, on the
    reversed candidate graph (see ``flow._Row``), each stopped at the cheap bound (which then
    proves it maximal). Returns their values, and stops after the first solve that falls
    short of its bound (the caller grows the candidates, then asks for the rest): the values
    returned are those of ``sinks[:len(values)]``.

    The sink-independent arcs are the CSR segments ``r_start`` of ``r_indices`` / ``r_caps``;
    for input j, the node of token j in each layer k−1 (the source ``sink_node`` for k = 1)
    has instead its arcs of ``hat[k−1][:, j]`` to the reachable nodes
    ``idx[idx_start[k]:idx_start[k+1]]`` of layer k, numbered from ``offset[k]``; capacities
    are ``floor(real · scale)``. The shared arcs and the lists of arcs into each node are laid
    out once; per input only token j's arcs are written, and the shared arcs they replace are
    skipped, so a solve costs its search, not a copy of the graph. The search is
    :func:`max_flow`'s, on this layout (kept as its own loop: a shared one copied the graph per
    input and was 1.3x slower), with two more steps: the first phase takes the layers as its
    levels (every arc runs from a layer to the next, and there is no flow yet), and each solve
    stops as soon as its value reaches the cheap bound min(capacity out of the input, capacity
    into the output), the cut that proves it maximal."""
    size = r_start.size - 1
    top = offset.size - 1
    shared = r_indices.size
    arcs = shared + idx_start[top + 1]
    head = np.empty(arcs, np.int64)
    tail = np.empty(arcs, np.int64)
    caps = np.zeros(arcs, np.int64)
    flow = np.zeros(arcs, np.int64)
    for u in range(size):
        for e in range(r_start[u], r_start[u + 1]):
            tail[e] = u
            head[e] = r_indices[e]
            caps[e] = r_caps[e]
    in_ptr = np.zeros(size + 1, np.int64)
    for e in range(shared):
        in_ptr[head[e] + 1] += 1
    for v in range(size):
        in_ptr[v + 1] += in_ptr[v]
    in_arcs = np.empty(shared, np.int64)
    fill = in_ptr[:-1].copy()
    for e in range(shared):
        in_arcs[fill[head[e]]] = e
        fill[head[e]] += 1
    in_cap = 0  # into the row's output node 0: the same for every input
    for k in range(in_ptr[0], in_ptr[1]):
        in_cap += caps[in_arcs[k]]
    layers = np.empty(size, np.int64)  # reversed, the input is layer 0 and the output top + 1
    layers[0] = top + 1
    layers[sink_node] = 0
    for k in range(1, top + 1):
        layers[offset[k] : offset[k] + idx_start[k + 1] - idx_start[k]] = k
    out_start = r_start[:-1].copy()  # each node's out-arcs for the current input
    out_end = r_start[1:].copy()
    special = np.zeros(size, np.bool_)  # token j's nodes: their shared out-arcs are absent
    extra_in = np.full(size, -1, np.int64)  # the one arc from a token-j node into a node
    carrying = np.zeros(size, np.int64)  # incoming arcs with flow, per node
    touched = np.empty(arcs, np.int64)  # arcs given flow, to reset
    level = np.empty(size, np.int64)
    queue = np.empty(size, np.int64)
    cursor = np.empty(size, np.int64)
    path_node = np.empty(size + 1, np.int64)
    path_arc = np.empty(size + 1, np.int64)  # e ≥ 0: arc e forwards; −e−1: arc e backwards
    values = np.zeros(sinks.size, np.int64)
    for pos in range(sinks.size):
        j = sinks[pos]
        e = shared
        for k in range(1, top + 1):
            if k > 1 and local[k - 1, j] < 0:
                continue
            node = sink_node if k == 1 else offset[k - 1] + local[k - 1, j]
            special[node] = True
            out_start[node] = e
            for r in range(idx_start[k + 1] - idx_start[k]):
                c = np.int64(np.floor(hat[k - 1, idx[idx_start[k] + r], j] * scale))
                if c > 0:
                    head[e] = offset[k] + r
                    tail[e] = node
                    caps[e] = c
                    flow[e] = 0
                    extra_in[offset[k] + r] = e
                    e += 1
            out_end[node] = e
        used = e
        out_cap = 0
        for e in range(out_start[sink_node], out_end[sink_node]):
            out_cap += caps[e]
        enough = min(out_cap, in_cap)
        value, n_touched, first_phase = 0, 0, True
        while value < enough:
            if first_phase:
                first_phase = False
                level[:] = layers
            else:
                level[:] = -1
                level[sink_node] = 0
                queue[0] = sink_node
                first, last = 0, 1
                while first < last:
                    u = queue[first]
                    first += 1
                    if level[0] >= 0 and level[u] + 1 >= level[0]:
                        break  # the output's level is known: deeper nodes lead nowhere this phase
                    for e in range(out_start[u], out_end[u]):
                        v = head[e]
                        if level[v] < 0 and caps[e] > flow[e]:
                            level[v] = level[u] + 1
                            queue[last] = v
                            last += 1
                    if carrying[u] == 0:
                        continue
                    for k in range(in_ptr[u], in_ptr[u + 1] + 1):
                        e = in_arcs[k] if k < in_ptr[u + 1] else extra_in[u]
                        if e < 0 or (e < shared and special[tail[e]]):
                            continue
                        v = tail[e]
                        if level[v] < 0 and flow[e] > 0:
                            level[v] = level[u] + 1
                            queue[last] = v
                            last += 1
                if level[0] < 0:
                    break
            cursor[:] = 0
            depth = 0
            path_node[0] = sink_node
            while True:
                u = path_node[depth]
                if u == 0:
                    best = _UNBOUNDED
                    for d in range(depth):
                        a = path_arc[d]
                        room = caps[a] - flow[a] if a >= 0 else flow[-a - 1]
                        if room < best:
                            best = room
                    back_to = -1
                    for d in range(depth):
                        a = path_arc[d]
                        if a >= 0:
                            if flow[a] == 0:
                                carrying[head[a]] += 1
                                touched[n_touched] = a
                                n_touched += 1
                            flow[a] += best
                            room = caps[a] - flow[a]
                        else:
                            flow[-a - 1] -= best
                            room = flow[-a - 1]
                            if room == 0:
                                carrying[head[-a - 1]] -= 1
                        if room == 0 and back_to < 0:
                            back_to = d
                    value += best
                    if value >= enough:
                        break
                    depth = back_to
                    continue
                out_degree = out_end[u] - out_start[u]
                # (arcs that gain flow in this phase lead a level back: never on a path of it)
                degree = out_degree + (in_ptr[u + 1] - in_ptr[u] + 1 if carrying[u] > 0 else 0)
                found = False
                v = -1
                while cursor[u] < degree:
                    k = cursor[u]
                    if k < out_degree:
                        e = out_start[u] + k
                        v = head[e]
                        if level[v] == level[u] + 1 and caps[e] > flow[e]:
                            path_arc[depth] = e
                            found = True
                            break
                    else:
                        k -= out_degree
                        e = in_arcs[in_ptr[u] + k] if k < in_ptr[u + 1] - in_ptr[u] else extra_in[u]
                        if e >= 0 and not (e < shared and special[tail[e]]):
                            v = tail[e]
                            if level[v] == level[u] + 1 and flow[e] > 0:
                                path_arc[depth] = -e - 1
                                found = True
                                break
                    cursor[u] += 1
                if found:
                    depth += 1
                    path_node[depth] = v
                else:
                    level[u] = -1  # a dead end for the rest of this phase
                    if depth == 0:
                        break
                    depth -= 1
                    cursor[path_node[depth]] += 1
        values[pos] = value
        for t in range(n_touched):
            a = touched[t]
            if flow[a] > 0:
                carrying[head[a]] -= 1
            flow[a] = 0
        for e in range(shared, used):
            extra_in[head[e]] = -1
        for u in range(size):
            if special[u]:
                special[u] = False
                out_start[u] = r_start[u]
                out_end[u] = r_start[u + 1]
        if value < enough:
            return values[: pos + 1]
    return values
