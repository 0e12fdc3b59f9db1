"""Where models run: in a child process (the window's choice) or in this process.

The window's process never imports torch or transformers: their one-time import holds Python's
global lock inside C code for up to ~200 ms at a time, long enough to freeze the window. A child
process holds the loaded model and answers `load` and `analyze` over a pipe; the caller waits
in a worker thread with the lock released, forwards progress and passes cancellation through an
event the child checks at every layer. A crash of the child (a native library fault, the
out-of-memory killer) becomes a one-line error; the next request starts a fresh child, and an
analysis reloads the model the child held first.

The child never outlives its parent: a "lifeline" pipe whose writing end only the parent holds
reaches end-of-file when the parent dies however it dies (SIGKILL included), and a watchdog
thread in the child exits at once then, whatever the main thread is doing (loading, analysing,
idle). PR_SET_PDEATHSIG is not used: on Linux it fires when the parent *thread* that started the
child ends, and the window starts the child from a short-lived worker thread.

Large arrays come back as .npy files in the child's own temporary folder, named after its pid
(`attn-desktop-model-PID-*`), so the folders of model processes that were killed are recognised
and removed when the next one starts; the caller reads and deletes only files inside that folder.
The attention of long texts (`on_disk="auto"`, core.model.mapped.on_disk) is written to float16
files in a `mapped-*` folder there; the caller maps those read-only instead of reading them, and
each file is removed when the last array viewing it goes.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import re
import select
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from attn_desktop.core.child import ChildProcess, start_child
from attn_desktop.core.errors import Cancelled, UserError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None
FOLDER_PREFIX = "attn-desktop-model-"
_FOLDER_NAME = re.compile(re.escape(FOLDER_PREFIX) + r"(\d+)-[A-Za-z0-9_]+")
_MODULE = "attn_desktop.core.model.engine"


def _summary(loaded):
    """A LoadedModel without the model and tokenizer objects, safe to send between processes."""
    return dataclasses.replace(loaded, model=None, tokenizer=None)


def _available_devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


class InProcessEngine:
    """Runs models in the calling process (command line, tests that patch the pipeline)."""

    def __init__(self) -> None:
        self.loaded = None
        self.pruned = None  # the last pruned copy, kept until saved or replaced

    def load(self, path: str, device: str = "cpu", progress: Progress = None, cancel: Cancel = None):
        from attn_desktop.core.model.loading import load_model

        self.loaded = self.pruned = None
        self.loaded = load_model(path, device=device, progress=progress, cancel=cancel)
        return self.loaded, _available_devices()

    def prune(self, model, progress: Progress = None, cancel: Cancel = None, **options):
        """Heads pruning (docs/heads.md): options {"texts", "heads", "target", "repeats"} compare a
        pruned copy with `model` and keep it; {"save": folder} writes the kept copy."""
        from attn_desktop.core.explain.prune_compare import prune_and_compare
        from attn_desktop.core.model.prune import save_pruned

        if "save" in options:
            if self.pruned is None or self.pruned[0] != str(model.path):
                raise UserError("there is no pruned model to save; run Prune again")
            return save_pruned(self.pruned[1], model.path, options["save"])
        self.pruned = None
        result, pruned = prune_and_compare(
            model, options["texts"], options["heads"], options.get("target"),
            repeats=int(options.get("repeats", 3)), progress=progress, cancel=cancel)
        self.pruned = (str(model.path), pruned)
        return result

    def analyze(self, model, text: str, progress: Progress = None, cancel: Cancel = None, **options):
        from attn_desktop.core.pipeline import analyze

        folder = None
        if _wants_disk(model, options):
            folder = tempfile.mkdtemp(prefix="attn-desktop-in-process-")
            options.update(_on_disk_options(folder))
        try:
            result = analyze(model, text, progress=progress, cancel=cancel, **options)
        except BaseException:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if folder is not None:
            for name, array in list(result.arrays.items()):
                path = getattr(array, "filename", None)
                if path is not None and os.path.dirname(os.path.abspath(path)) == folder:
                    result.arrays[name] = map_owned(path)  # the file goes with the last view of it
            _remove_if_empty(folder)
        return result

    def close(self) -> None:
        self.loaded = None


# analysis option: "auto" keeps the attention of long texts on disk (core.model.mapped.on_disk's
# rule), in files of the model process that the caller maps read-only instead of copying
ON_DISK = "on_disk"
_MAPPED_PREFIX = "mapped-"


def _wants_disk(loaded, options: dict) -> bool:
    """Takes ON_DISK out of `options`; True when it asks for "auto" and the model's longest input
    would go to disk (core.model.mapped.on_disk): shorter ones never do, whatever the text."""
    if options.pop(ON_DISK, None) != "auto":
        return False
    from attn_desktop.core.model.mapped import on_disk

    return on_disk(loaded, loaded.max_positions or 1 << 20)


def _on_disk_options(folder: str) -> dict:
    from attn_desktop.core.model import mapped

    return {"mapped": folder, "mapped_from": mapped.on_disk_from()}


def _remove_if_empty(folder: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def _remove_mapped(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
    _remove_if_empty(os.path.dirname(path))


def map_owned(path: str):
    """The .npy file at `path` mapped read-only; the file is removed when the array (and every view
    of it) is gone. Pages already mapped stay readable after the name is removed."""
    import weakref

    import numpy as np

    array = np.load(path, mmap_mode="r", allow_pickle=False)
    weakref.finalize(array, _remove_mapped, path)
    return array


_BIG = 1 << 20  # arrays from this size travel as .npy files: the pipe's unpickling holds the GIL


@dataclasses.dataclass(frozen=True)
class _ArrayFile:
    path: str


@dataclasses.dataclass(frozen=True)
class _MappedFile:
    """A float16 .npy file the on-disk capture wrote in a `mapped-*` folder inside the child's
    folder: the caller maps it instead of reading it."""

    path: str


def _send_arrays_as_files(analysis, folder: str) -> None:
    import numpy as np

    for name, array in list(analysis.arrays.items()):
        path = getattr(array, "filename", None) if isinstance(array, np.memmap) else None
        if path is not None and _inside_mapped(os.path.abspath(path), folder):
            analysis.arrays[name] = _MappedFile(os.path.abspath(path))
        elif array.nbytes >= _BIG:
            fd, path = tempfile.mkstemp(dir=folder, suffix=".npy")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
            analysis.arrays[name] = _ArrayFile(path)


def _take_arrays_from_files(analysis, folder: str | None) -> None:
    """Read the arrays the child left as files, accepting only regular `.npy` files directly
    inside its own folder; any other path it names is refused and left untouched."""
    import numpy as np

    refused = []
    for name, array in list(analysis.arrays.items()):
        if isinstance(array, _MappedFile):
            if _inside_mapped(array.path, folder):
                analysis.arrays[name] = map_owned(array.path)
            else:
                refused.append(array.path)
            continue
        if not isinstance(array, _ArrayFile):
            continue
        path = array.path
        if not _inside(path, folder):
            refused.append(path)
            continue
        try:
            analysis.arrays[name] = np.load(path, allow_pickle=False)
        finally:
            os.unlink(path)
    if refused:
        raise UserError(f"the model process named a file outside its own folder ({refused[0]!r}); "
                        "it was not read")


def _inside(path, folder: str | None) -> bool:
    if folder is None or not isinstance(path, str):
        return False
    name = os.path.basename(path)
    if os.path.dirname(path) != folder or not name.endswith(".npy") or name.startswith("."):
        return False
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)  # a symlink is refused, whatever it points to
    except OSError:
        return False


def _inside_mapped(path, folder: str | None) -> bool:
    """A regular `.npy` file (not a link) in a `mapped-*` folder (not a link) directly inside `folder`."""
    if folder is None or not isinstance(path, str):
        return False
    sub = os.path.dirname(path)
    if os.path.dirname(sub) != folder or not os.path.basename(sub).startswith(_MAPPED_PREFIX):
        return False
    try:
        if not stat.S_ISDIR(os.lstat(sub).st_mode):
            return False
    except OSError:
        return False
    return _inside(path, sub)


def clean_stale_folders(root: str | None = None) -> list[str]:
    """Remove the temporary folders of model processes that no longer run (killed ones never
    removed theirs). Only this user's folders whose name carries a pid are considered."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        m = _FOLDER_NAME.fullmatch(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or _is_model_process(int(m.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def _is_model_process(pid: int) -> bool:
    """Whether `pid` runs a model process now (a reused pid that runs something else does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: not ours to judge
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return _MODULE.encode() in fh.read()  # a zombie's is empty
    except FileNotFoundError:
        return not os.path.isdir("/proc/self")  # no /proc here: assume it is
    except OSError:
        return True


def _serve(conn: Connection, cancel_fd: int, folder: str, gone: Callable[[], None]) -> None:
    """The child's loop: one request at a time, answered by progress messages then one outcome.
    A byte on `cancel_fd` asks the running request to stop; end-of-file there (or on `conn`)
    means the parent is gone, and `gone()` ends the process."""
    import attn_desktop  # noqa: F401  (offline mode before anything imports transformers)

    engine = InProcessEngine()
    stop = [False]

    def send(message) -> None:
        try:
            conn.send(message)
        except OSError:  # the parent closed its end
            gone()

    def progress(fraction: float, message: str) -> None:
        send(("progress", (fraction, message)))

    def cancelled() -> bool:
        if not stop[0] and select.select([cancel_fd], [], [], 0)[0]:
            if not os.read(cancel_fd, 4096):
                gone()
            stop[0] = True
        return stop[0]

    while True:
        try:
            op, args = conn.recv()
        except (EOFError, OSError):
            gone()
            return
        while select.select([cancel_fd], [], [], 0)[0]:  # a stop asked for after the previous request ended
            if not os.read(cancel_fd, 4096):
                gone()
        stop[0] = False
        if op == "quit":
            return
        send(("started", None))  # from here on a byte on cancel_fd is meant for this request
        try:
            if op == "load":
                loaded, devices = engine.load(args["path"], args["device"], progress, cancelled)
                result: Any = (_summary(loaded), devices)
            elif op == "analyze":
                if engine.loaded is None:
                    raise UserError("no model is loaded in the model process (it may have stopped); "
                                    "load the model again")
                if str(engine.loaded.path) != args["model"]:
                    raise UserError("the model changed while the analysis waited; analyse again")
                options = dict(args["options"])
                sub = None
                if _wants_disk(engine.loaded, options):
                    sub = tempfile.mkdtemp(prefix=_MAPPED_PREFIX, dir=folder)
                    options.update(_on_disk_options(sub))
                try:
                    result = engine.analyze(engine.loaded, args["text"], progress, cancelled, **options)
                except BaseException:
                    if sub is not None:
                        shutil.rmtree(sub, ignore_errors=True)
                    raise
                _send_arrays_as_files(result, folder)
                if sub is not None:
                    _remove_if_empty(sub)  # nothing went to disk: the text was short
            elif op == "prune":
                if engine.loaded is None or str(engine.loaded.path) != args["model"]:
                    raise UserError("the model process does not hold this model any more; load it again")
                result = engine.prune(engine.loaded, progress, cancelled, **args["options"])
            else:
                raise RuntimeError(f"unknown request {op!r}")
            send(("result", result))
        except UserError as exc:
            send(("user-error", str(exc)))
        except Cancelled:
            send(("cancelled", None))
        except Exception as exc:  # reported to the caller as one line; the child stays up
            lines = str(exc).strip().splitlines()
            send(("error", f"{exc.__class__.__name__}: {lines[0] if lines else ''}"))


def _child_main(argv: list[str]) -> None:
    clean_stale_folders()
    conn, cancel_fd, folder, gone = start_child(argv, FOLDER_PREFIX)
    try:
        conn.send(("ready", folder))
    except OSError:
        gone()
    _serve(conn, cancel_fd, folder, gone)


class ProcessEngine(ChildProcess):
    """Runs models in one long-lived child process, started on first use.

    The child is a fresh interpreter (`python -m attn_desktop.core.model.engine`), not a fork of this
    Qt process and not multiprocessing's spawn, which would re-import the caller's __main__."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._folder: str | None = None  # the child's temporary folder, once it said which
        self._held: dict | None = None  # the last load request that succeeded
        self._child_model: str | None = None  # the folder of the model the running child holds
        self.restarts = 0  # transparent restarts after the child had stopped

    def _start(self) -> None:
        self._spawn(_MODULE)
        self._folder = None
        self._child_model = None

    def _accept_folder(self, folder) -> None:
        """The child names its temporary folder; it must be the one named after its pid, in the
        temporary directory, a real folder of this user."""
        expected = os.path.join(tempfile.gettempdir(), f"{FOLDER_PREFIX}{self._proc.pid}-")
        ok = (isinstance(folder, str) and folder.startswith(expected)
              and _FOLDER_NAME.fullmatch(os.path.basename(folder)) is not None)
        if ok:
            try:
                st = os.lstat(folder)
                ok = stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            except OSError:
                ok = False
        self._folder = folder if ok else None

    def _call(self, op: str, args: dict, progress: Progress, cancel: Cancel):
        with self._lock:
            return self._request(op, args, progress, cancel)

    def _request(self, op: str, args: dict, progress: Progress, cancel: Cancel):
        if not self._alive():
            self._start()
        if op == "load":
            self._child_model = None  # the child lets go of its model before loading another
        try:
            self._conn.send((op, args))
        except OSError:
            return self._died()
        for kind, payload in self._replies(cancel, lambda conn: conn.recv()):
            if kind == "ready":
                self._accept_folder(payload)
            elif kind == "progress":
                if progress is not None:
                    progress(*payload)
            elif kind == "result":
                if op == "analyze":
                    _take_arrays_from_files(payload, self._folder)
                elif op == "load":
                    self._child_model = str(payload[0].path)
                    self._held = {**args, "path": self._child_model}
                return payload
            elif kind == "user-error":
                raise UserError(payload)
            elif kind == "cancelled":
                raise Cancelled()
            else:
                raise RuntimeError(payload)

    def _died(self):
        code = self._proc.wait() if self._proc is not None else None
        self._proc = None
        self._close_pipes()
        if self._folder is not None:  # a killed child cannot remove its own
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._child_model = None
        raise UserError(
            f"the model process stopped unexpectedly (exit code {code}); try again to restart it"
        )

    def load(self, path: str, device: str = "cpu", progress: Progress = None, cancel: Cancel = None):
        return self._call("load", {"path": str(path), "device": device}, progress, cancel)

    def analyze(self, model, text: str, progress: Progress = None, cancel: Cancel = None, **options):
        """Analyse with the model the child holds. If the child stopped since that model was
        loaded (killed, crashed), a fresh child reloads it first and the result says so."""
        args = {"model": str(model.path), "text": text, "options": options}
        with self._lock:
            held = self._held
            holds = self._alive() and self._child_model == args["model"]
            if holds or held is None or held["path"] != args["model"]:
                return self._request("analyze", args, progress, cancel)
            say = progress or (lambda f, m: None)
            name = Path(held["path"]).name
            restart = not self._alive()
            say(0.0, (f"the model process had stopped; restarting it and reloading {name}" if restart
                      else f"reloading {name}"))
            try:
                self._request("load", held, lambda f, m: say(0.0, f"reloading {name}: {m}"), cancel)
            except UserError as exc:
                self._held = None
                raise UserError(f"the model process had stopped and reloading {name} failed: {exc}") from None
            self.restarts += restart
            result = self._request("analyze", args, progress, cancel)
        note = (f"The model process had stopped; it was restarted and {name} reloaded." if restart
                else f"{name} was reloaded in the model process.")
        result.extras.setdefault("gui_warnings", []).append(note)
        return result

    def prune(self, model, progress: Progress = None, cancel: Cancel = None, **options):
        """Heads pruning in the child (see InProcessEngine.prune)."""
        return self._call("prune", {"model": str(model.path), "options": options}, progress, cancel)

    def close(self) -> None:
        with self._lock:
            self._stop(lambda: self._conn.send(("quit", None)))
            if self._folder is not None:  # the child removes it on a clean exit, not when killed
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None
            self._child_model = None


_shared: ProcessEngine | None = None


def shared_engine() -> ProcessEngine:
    """The process-wide model process (one child however many windows)."""
    global _shared
    if _shared is None:
        _shared = ProcessEngine()
        atexit.register(_shared.close)
    return _shared


if __name__ == "__main__":
    # Serve from the imported module, not __main__, so pickled classes name their real module.
    from attn_desktop.core.model import engine as _engine

    _engine._child_main(sys.argv[1:])
