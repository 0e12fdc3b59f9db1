"""Rollout and attention flow in a child process, so that the window's own process never runs them.

Flow's pricing of cuts between solves holds Python's global lock, and so do stretches of numpy;
run in a thread of the window's process they stop its event loop meanwhile (over 100 ms
per gap with attention flow, benchmarks/bench_gui_responsiveness.py). A compute process takes
that work: a fresh interpreter (`python -m attn_desktop.core.propagate.compute_process`), started
on first use and kept, as the model process (core.model.engine) is; not a fork of the Qt
process and not multiprocessing's spawn, which would re-import the caller's __main__. It never
outlives its parent: a lifeline pipe and a watchdog thread (those of core.model.engine) end it
however the parent ends, SIGKILL included.

It runs the very functions the window ran in its threads, core.propagate.propagation's
add_rollout and add_flow, on a copy of the analysis's attention, so the numbers are the same.
`ComputeProcess.add_rollout` and `ComputeProcess.add_flow` take the same arguments and leave the
same arrays and manifest entries in the caller's analysis. Flow rows come back one at a time and
are merged into the caller's analysis as each finishes, so a cancel keeps the finished ones.

Arrays travel through the pipes as raw bytes read straight into their numpy buffers, a chunk at
a time: no temporary file, and no pickling of large arrays (unpickling one holds the lock for
the whole copy). The calling thread waits with the lock released. One request at a time; the
caller's `cancel()` reaches the child through a cancel pipe it checks whenever core asks (each
layer of rollout, each input token of a flow row).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import itertools
import os
import select
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from attn_desktop.core.analysis import ATTENTION_SETS, Analysis
from attn_desktop.core.child import ChildProcess, Duplex, start_child
from attn_desktop.core.errors import Cancelled, UserError

Progress = Callable[[int, int], object] | None
Cancel = Callable[[], bool] | None
_MODULE = "attn_desktop.core.propagate.compute_process"
FOLDER_PREFIX = "attn-desktop-compute-"  # the child's folder for rollout files, named after its pid
_ATTENTION_KEYS = tuple(key for key, _, _ in ATTENTION_SETS.values())
_RAW_MIN = 1 << 16  # arrays from this size travel as raw bytes after their message
_CHUNK = 1 << 20
_PIPE_SIZE = 1 << 20


# -- messages: small pickled tuples; large arrays follow them as raw bytes -----------------------

@dataclasses.dataclass(frozen=True)
class _Raw:
    """Stands in a message for an array whose bytes follow the message on the same pipe."""

    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Region:
    """Stands in a message for an array mapped from a file (core.views.mapped_arrays.file_region): the
    other side maps the same bytes read-only instead of receiving a copy."""

    path: str
    offset: int
    device: int
    inode: int
    dtype: str
    shape: tuple[int, ...]

    def mapped(self) -> np.ndarray:
        """The same bytes mapped here, once the name still leads to the same file."""
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if (st.st_dev, st.st_ino) != (self.device, self.inode):
                raise UserError(f"{os.path.basename(self.path)} was replaced on disk since it was opened; "
                                "open it again")
            return np.memmap(fh, dtype=np.dtype(self.dtype), mode="r", offset=self.offset, shape=self.shape)


@dataclasses.dataclass(frozen=True)
class _OutFile:
    """A .npy file the child wrote in its own folder; the parent maps it and removes its name."""

    path: str


def _strip(value, arrays: list[np.ndarray]):
    if isinstance(value, np.memmap):
        from attn_desktop.core.views.mapped_arrays import file_region

        region = file_region(value)
        if region is not None:
            return _Region(*region, value.dtype.str, tuple(value.shape))
    if isinstance(value, np.ndarray) and value.nbytes >= _RAW_MIN and value.dtype != object:
        array = np.ascontiguousarray(value)
        arrays.append(array)
        return _Raw(array.dtype.str, tuple(array.shape))
    if isinstance(value, dict):
        return {k: _strip(v, arrays) for k, v in value.items()}
    return value


def _fill(value, fd: int):
    if isinstance(value, _Raw):
        return _read_array(fd, value)
    if isinstance(value, dict):
        return {k: _fill(v, fd) for k, v in value.items()}
    return value


def send_message(conn: Duplex, kind: str, payload: Any = None) -> None:
    arrays: list[np.ndarray] = []
    conn.send((kind, _strip(payload, arrays)))
    for array in arrays:
        _write_array(conn.writer.fileno(), array)


def recv_message(conn: Duplex) -> tuple[str, Any]:
    kind, payload = conn.recv()
    return kind, _fill(payload, conn.reader.fileno())


def _write_array(fd: int, array: np.ndarray) -> None:
    view = memoryview(array.reshape(-1)).cast("B")
    pos = 0
    while pos < len(view):
        pos += os.write(fd, view[pos : pos + _CHUNK])  # the lock is released while it waits


def _read_array(fd: int, raw: _Raw) -> np.ndarray:
    array = np.empty(raw.shape, np.dtype(raw.dtype))
    view = memoryview(array.reshape(-1)).cast("B")
    pos = 0
    while pos < len(view):
        got = os.readv(fd, [view[pos : pos + _CHUNK]])
        if not got:
            raise EOFError("the other end closed the pipe in the middle of an array")
        pos += got
    return array


def _widen(fd: int) -> None:
    """Fewer, larger reads and writes for big arrays (Linux; elsewhere the default stays)."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


# -- the child ---------------------------------------------------------------------------------

class _Child:
    """What the compute process holds: the attention of one analysis (`doc`), the fused
    matrices of the flow parameters used last, and the copy flow rows are filed into."""

    def __init__(self, folder: str | None = None) -> None:
        self.doc: Analysis | None = None
        self.hats: dict[tuple, np.ndarray] = {}
        self.flow_copy: tuple[int, Analysis] | None = None  # (job number, copy)
        self.folder = folder  # where rollout of attention mapped from a file is written

    def take_doc(self, doc: dict | None) -> Analysis:
        if doc is not None:
            self.doc = None
            arrays = {k: v.mapped() if isinstance(v, _Region) else v for k, v in doc["arrays"].items()}
            self.doc = Analysis(text=doc["text"], tokens=doc["tokens"], arrays=arrays,
                                manifest={"model": doc["model"]}, decoder_text=doc["decoder_text"],
                                decoder_tokens=doc["decoder_tokens"])
            self.hats.clear()
            self.flow_copy = None
        if self.doc is None:
            raise RuntimeError("the compute process holds no analysis")
        return self.doc

    def copy(self) -> Analysis:
        doc = self.doc
        return Analysis(text=doc.text, tokens=doc.tokens, arrays=dict(doc.arrays),
                        manifest={"model": doc.manifest["model"], "methods": {}},
                        decoder_text=doc.decoder_text, decoder_tokens=doc.decoder_tokens)

    def rollout(self, args: dict, progress, cancel) -> dict:
        from attn_desktop.core.propagate import propagation

        doc = self.take_doc(args["doc"])
        copy = self.copy()
        att = copy.arrays.get("attentions")
        if isinstance(att, np.memmap) and self.folder is not None and not doc.is_encoder_decoder:
            return self._rollout_to_file(copy, args, progress, cancel)
        propagation.add_rollout(copy, args["alpha"], args["fusion"], args["start_layer"],
                                progress=progress, cancel=cancel)
        entry = copy.manifest["methods"]["rollout"]
        return {"entry": entry, "arrays": {k: copy.arrays[k] for k in entry["arrays"]}}

    def _rollout_to_file(self, copy: Analysis, args: dict, progress, cancel) -> dict:
        """Attention mapped from a file (a long input): the rollout one layer at a time into a float16
        file (core.model.mapped.rollout), never a float32 [L, n, n] stack; the parent maps it."""
        import tempfile

        from attn_desktop.core.model import mapped
        from attn_desktop.core.propagate import propagation

        propagation.check_params(copy, args["alpha"], args["fusion"], args["start_layer"])
        att = copy.arrays["attentions"]
        total = att.shape[0] - int(args["start_layer"])
        done = [0]

        def step() -> bool:
            if progress is not None and done[0] < total:
                progress(done[0], total)
            done[0] += 1
            return cancel is not None and cancel()

        fd, path = tempfile.mkstemp(dir=self.folder, suffix=".npy")
        os.close(fd)
        try:
            values, entry = mapped.rollout(att, path, args["alpha"], args["fusion"], int(args["start_layer"]),
                                           cancel=step)
        except BaseException:
            os.unlink(path)
            raise
        del values
        entry["definition"] = ("Abnar & Zuidema 2020: A_hat = rownorm(alpha*A + (1-alpha)*I), "
                               "R_l = A_hat_l R_(l-1)")
        return {"entry": entry, "arrays": {"rollout": _OutFile(path)}}

    def flow(self, args: dict, send, cancel) -> None:
        from attn_desktop.core.propagate import propagation
        from attn_desktop.core.propagate.rollout import fused_hat

        doc = self.take_doc(args["doc"])
        seed = args["seed"]
        if seed is not None:
            copy = self.copy()
            if seed["entry"] is not None:
                copy.arrays["flow"], copy.arrays["flow_rows"] = seed["flow"], seed["rows"]
                copy.manifest["methods"]["flow"] = seed["entry"]
            self.flow_copy = (args["job"], copy)
        if self.flow_copy is None or self.flow_copy[0] != args["job"]:
            raise RuntimeError("the compute process lost track of the flow rows")
        copy = self.flow_copy[1]
        alpha, fusion = args["alpha"], args["fusion"]
        propagation.check_params(copy, alpha, fusion)
        key = (float(alpha), fusion)
        hat = self.hats.pop(key, None)
        if hat is None:
            hat = fused_hat(propagation.self_attention(doc), alpha, fusion)
        self.hats[key] = hat
        while len(self.hats) > 2:
            self.hats.pop(next(iter(self.hats)))
        for row in args["rows"]:
            before = copy.arrays.get("flow_rows")
            try:
                done = propagation.add_flow(copy, [row], alpha, fusion, cancel=cancel, hat=hat, parallel=True)
            except BaseException:
                self.flow_copy = None  # the caller starts its next request from what it has
                if copy.arrays.get("flow_rows") is not before:  # core dropped rows, then stopped
                    send("flow", {"rows": copy.arrays.get("flow_rows")})
                raise
            if done:
                rows = copy.arrays["flow_rows"]
                send("flow", {"rows": rows, "row": int(row), "values": copy.arrays["flow"][np.searchsorted(rows, row)],
                              "entry": copy.manifest["methods"]["flow"]})


def _serve(conn: Duplex, cancel_fd: int, gone: Callable[[], None], folder: str | None = None) -> None:
    """One request at a time, answered by progress or row messages and then one outcome. A byte
    on `cancel_fd` asks the running request to stop; end-of-file there or on `conn` means the
    parent is gone."""
    child = _Child(folder)
    stop = [False]

    def send(kind: str, payload: Any = None) -> None:
        try:
            send_message(conn, kind, payload)
        except OSError:
            gone()

    def cancelled() -> bool:
        if not stop[0] and select.select([cancel_fd], [], [], 0)[0]:
            if not os.read(cancel_fd, 4096):
                gone()
            stop[0] = True
        return stop[0]

    while True:
        try:
            op, args = recv_message(conn)
        except (EOFError, OSError):
            gone()
            return
        while select.select([cancel_fd], [], [], 0)[0]:  # a stop meant for the previous request
            if not os.read(cancel_fd, 4096):
                gone()
        stop[0] = False
        if op == "quit":
            return
        send("started")
        try:
            if op == "rollout":
                result = child.rollout(args, lambda done, total: send("progress", (done, total)), cancelled)
            elif op == "flow":
                child.flow(args, send, cancelled)
                result = None
            else:
                raise RuntimeError(f"unknown request {op!r}")
            send("result", result)
        except UserError as exc:
            send("user-error", str(exc))
        except Cancelled:
            send("cancelled")
        except Exception as exc:  # reported to the caller as one line; the child stays up
            lines = str(exc).strip().splitlines()
            send("error", f"{exc.__class__.__name__}: {lines[0] if lines else ''}")


def _child_main(argv: list[str]) -> None:
    conn, cancel_fd, folder, gone = start_child(argv, FOLDER_PREFIX)
    _serve(conn, cancel_fd, gone, folder)


# -- the parent --------------------------------------------------------------------------------

def _doc_message(analysis: Analysis) -> dict:
    return {"text": analysis.text, "tokens": list(analysis.tokens),
            "model": dict(analysis.manifest.get("model") or {}),
            "decoder_text": analysis.decoder_text,
            "decoder_tokens": None if analysis.decoder_tokens is None else list(analysis.decoder_tokens),
            "arrays": {k: _as_sent(analysis.arrays[k]) for k in _ATTENTION_KEYS if k in analysis.arrays}}


def _as_sent(values) -> np.ndarray:
    """Arrays mapped from a file travel as their file region (the child maps them), others as bytes."""
    return values if isinstance(values, np.memmap) else np.asarray(values)


def _keep_rows(analysis: Analysis, rows: np.ndarray | None) -> None:
    """Keep only the flow rows `rows` of those the analysis holds (None: none at all)."""
    have = analysis.arrays.get("flow_rows")
    if have is None or "flow" not in analysis.arrays:
        return
    if rows is None:
        analysis.arrays.pop("flow", None)
        analysis.arrays.pop("flow_rows", None)
        return
    keep = np.isin(have, rows)
    if not keep.all():
        analysis.arrays["flow_rows"], analysis.arrays["flow"] = have[keep], analysis.arrays["flow"][keep]


def _remove_child_folder(pid: int | None) -> None:
    """The rollout folder of a child that has ended (a killed one cannot remove its own)."""
    import glob
    import shutil
    import tempfile

    if pid is not None:
        for folder in glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), f"{FOLDER_PREFIX}{pid}-*")):
            shutil.rmtree(folder, ignore_errors=True)


class ComputeProcess(ChildProcess):
    """Rollout and flow in one long-lived child process, started on first use (see the module
    docstring). Safe to call from several threads: requests run one after another."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._doc: tuple | None = None  # weak references to the attention arrays the child holds
        self._flow: tuple | None = None  # (analysis ref, its flow_rows, its flow entry, job number)
        self._jobs = itertools.count(1)
        self.starts = 0

    # the child's lifetime
    def _start(self) -> None:
        self._spawn(_MODULE, prepare=_widen)
        self._doc = self._flow = None
        self.starts += 1

    def close(self) -> None:
        with self._lock:
            pid = self._proc.pid if self._proc is not None else None
            self._stop(lambda: send_message(self._conn, "quit"))
            self._doc = self._flow = None
            _remove_child_folder(pid)

    def _died(self):
        code = self._proc.wait() if self._proc is not None else None
        _remove_child_folder(self._proc.pid if self._proc is not None else None)
        self._proc = None
        self._close_pipes()
        self._doc = self._flow = None
        raise UserError(f"the compute process stopped unexpectedly (exit code {code}); try again to restart it")

    # requests
    def _doc_for(self, analysis: Analysis) -> dict | None:
        """What the request must carry so that the child holds this analysis's attention."""
        arrays = [analysis.arrays[k] for k in _ATTENTION_KEYS if k in analysis.arrays]
        held = self._doc
        if held is not None and len(held) == len(arrays) and all(r() is a for r, a in zip(held, arrays, strict=True)):
            return None
        return _doc_message(analysis)

    def _request(self, op: str, args: dict, analysis: Analysis, on_message: Callable[[str, Any], None],
                 cancel: Cancel):
        if cancel is not None and cancel():  # as core checks before it starts
            raise Cancelled()
        if not self._alive():
            self._start()
        args = {**args, "doc": self._doc_for(analysis)}
        try:
            send_message(self._conn, op, args)
        except OSError:
            return self._died()
        if args["doc"] is not None:
            self._doc = tuple(weakref.ref(a) for a in (analysis.arrays[k] for k in _ATTENTION_KEYS
                                                       if k in analysis.arrays))
        for kind, payload in self._replies(cancel, recv_message):
            if kind in ("progress", "flow"):
                on_message(kind, payload)
            elif kind == "result":
                return payload
            elif kind == "user-error":
                raise UserError(payload)
            elif kind == "cancelled":
                raise Cancelled()
            else:
                self._doc = self._flow = None  # start afresh next time
                raise RuntimeError(payload)

    def add_rollout(self, analysis: Analysis, alpha: float = 0.5, fusion: str | int = "mean",
                    start_layer: int = 0, *, progress: Progress = None, cancel: Cancel = None) -> None:
        """core.propagate.propagation.add_rollout, computed in the child: the same arrays and
        manifest entry land in `analysis`."""
        def on_message(_kind, payload) -> None:
            if progress is not None:
                progress(*payload)

        with self._lock:
            out = self._request("rollout", {"alpha": alpha, "fusion": fusion, "start_layer": int(start_layer)},
                                analysis, on_message, cancel)
        analysis.arrays.update({k: self._take_file(v) if isinstance(v, _OutFile) else v
                                for k, v in out["arrays"].items()})
        analysis.manifest.setdefault("methods", {})["rollout"] = out["entry"]

    def _take_file(self, out: _OutFile) -> np.ndarray:
        """Map a .npy file the child wrote in its own folder (a regular file directly inside
        `attn-desktop-compute-PID-*` of this child) and remove its name: the mapping keeps the data."""
        import stat
        import tempfile

        path, pid = out.path, self._proc.pid if self._proc is not None else None
        folder = os.path.dirname(path) if isinstance(path, str) else ""
        ok = (pid is not None and os.path.dirname(folder) == tempfile.gettempdir()
              and os.path.basename(folder).startswith(f"{FOLDER_PREFIX}{pid}-") and path.endswith(".npy"))
        try:
            ok = ok and stat.S_ISREG(os.lstat(path).st_mode) and stat.S_ISDIR(os.lstat(folder).st_mode)
        except OSError:
            ok = False
        if not ok:
            raise UserError(f"the compute process named a file outside its own folder ({path!r}); it was not read")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        finally:
            os.unlink(path)

    def add_flow(self, analysis: Analysis, rows: Sequence[int], alpha: float = 0.5, fusion: str | int = "mean",
                 *, progress: Progress = None, cancel: Cancel = None) -> list[int]:
        """core.propagate.propagation.add_flow, computed in the child a row at a time: each
        finished row is merged into `analysis` (arrays 'flow', 'flow_rows', manifest entry) as
        it arrives, so a cancel or an error keeps the rows already done. Returns the rows
        computed now."""
        from attn_desktop.core.propagate import propagation

        rows = [int(r) for r in rows]
        done: list[int] = []

        def on_message(kind, payload) -> None:
            if kind != "flow":
                return
            if "row" not in payload:
                _keep_rows(analysis, payload["rows"])
                return
            # the rows kept from before (core starts afresh for other parameters), then the new one
            _keep_rows(analysis, payload["rows"][payload["rows"] != payload["row"]])
            propagation._merge_row(analysis, payload["row"], payload["values"])
            if not np.array_equal(analysis.arrays["flow_rows"], payload["rows"]):
                raise RuntimeError("the flow rows of the compute process and of the analysis differ")
            analysis.manifest.setdefault("methods", {})["flow"] = payload["entry"]
            self._flow = (weakref.ref(analysis), analysis.arrays["flow_rows"], payload["entry"], job)
            done.append(payload["row"])
            if progress is not None:
                progress(len(done), len(rows))

        with self._lock:
            job, seed = self._flow_job(analysis)
            try:
                self._request("flow", {"job": job, "seed": seed, "rows": rows, "alpha": alpha, "fusion": fusion},
                              analysis, on_message, cancel)
            except BaseException:
                self._flow = None  # the child dropped its copy: the next request seeds it again
                raise
        return done

    def _flow_job(self, analysis: Analysis) -> tuple[int, dict | None]:
        """(job number, seed): the child files rows into a copy of the flow rows `analysis`
        holds; it is seeded again unless it holds exactly what `analysis` holds now."""
        entry = (analysis.manifest.get("methods") or {}).get("flow")
        rows = analysis.arrays.get("flow_rows")
        held = self._flow
        if (held is not None and held[0]() is analysis and held[1] is rows and held[2] is entry
                and self._alive()):
            return held[3], None
        job = next(self._jobs)
        if entry is None or rows is None or "flow" not in analysis.arrays:
            return job, {"entry": None}
        return job, {"entry": entry, "rows": np.asarray(rows), "flow": np.asarray(analysis.arrays["flow"])}


_shared: dict[str, ComputeProcess] = {}


def shared_compute(name: str) -> ComputeProcess:
    """A process-wide compute process per kind of work ("rollout", "flow"), so that a long flow
    job never holds up a rollout; each is closed when this process exits."""
    if name not in _shared:
        _shared[name] = ComputeProcess()
        atexit.register(_shared[name].close)
    return _shared[name]


if __name__ == "__main__":
    # Serve from the imported module, not __main__, so pickled classes name their real module.
    from attn_desktop.core.propagate import compute_process as _module

    _module._child_main(sys.argv[1:])
