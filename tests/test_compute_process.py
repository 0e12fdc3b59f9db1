"""The compute process (core.propagate.compute_process): rollout and flow computed there equal the
same core functions run in this process, bit for bit; a cancel keeps the finished rows; errors
come back as one line; the process never outlives its parent and leaves no file behind."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.propagate import propagation
from attn_desktop.core.propagate.compute_process import ComputeProcess

TEXT = "The bank approved the loan after the river bank flooded."
LONG = ("The lessee shall indemnify the lessor against every claim arising from the use of the "
        "premises, save for claims caused by the lessor's own negligence.")


@pytest.fixture(scope="module")
def compute():
    process = ComputeProcess()
    yield process
    process.close()


def bare(an: Analysis) -> Analysis:
    """The analysis with its attention only, as a worker's copy starts."""
    keep = ("attentions", "encoder_attentions", "decoder_attentions", "cross_attentions")
    return Analysis(text=an.text, tokens=an.tokens, arrays={k: v for k, v in an.arrays.items() if k in keep},
                    manifest={"model": dict(an.manifest.get("model", {}))},
                    decoder_text=an.decoder_text, decoder_tokens=an.decoder_tokens)


def timeless(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "seconds"}


def assert_same_flow(got: Analysis, want: Analysis) -> None:
    np.testing.assert_array_equal(got.arrays["flow_rows"], want.arrays["flow_rows"])
    np.testing.assert_array_equal(got.arrays["flow"], want.arrays["flow"])
    assert got.arrays["flow"].dtype == np.float32 and got.arrays["flow_rows"].dtype == np.int64
    assert timeless(got.manifest["methods"]["flow"]) == timeless(want.manifest["methods"]["flow"])


@pytest.mark.parametrize("kind,alpha,fusion,start", [
    ("bert", 0.5, "mean", 0), ("bert", 0.3, "max", 1), ("bert", 0.9, 1, 0),
    ("gpt2", 0.5, "min", 0), ("bart", 0.5, "mean", 0),
])
def test_rollout_equals_in_process(loaded_models, compute, kind, alpha, fusion, start):
    options = {"target_text": "the loan"} if kind == "bart" else {}
    an = analyze(loaded_models(kind), TEXT, **options)
    got, want = bare(an), bare(an)
    steps, core_steps = [], []
    compute.add_rollout(got, alpha, fusion, start, progress=lambda done, total: steps.append((done, total)))
    propagation.add_rollout(want, alpha, fusion, start, progress=lambda done, total: core_steps.append((done, total)))
    entry = want.manifest["methods"]["rollout"]
    assert timeless(got.manifest["methods"]["rollout"]) == timeless(entry)
    for name in entry["arrays"]:
        assert got.arrays[name].dtype == np.float32
        np.testing.assert_array_equal(got.arrays[name], want.arrays[name])
    assert steps == core_steps  # progress came through, step by step


def test_flow_rows_equal_in_process_one_by_one_together_and_seeded(loaded_models, compute):
    an = analyze(loaded_models("bert"), TEXT)
    n = len(an.tokens)
    want = bare(an)
    propagation.add_flow(want, range(n), 0.5, "mean")

    one_by_one = bare(an)
    order = [3, 0, n - 1, 5, 1]
    for r in order:
        assert compute.add_flow(one_by_one, [r], 0.5, "mean") == [r]
    ref = bare(an)
    propagation.add_flow(ref, order, 0.5, "mean")
    assert_same_flow(one_by_one, ref)
    assert compute.add_flow(one_by_one, [3], 0.5, "mean") == []  # a row already there is kept

    together = bare(an)
    seen = []
    compute.add_flow(together, range(n), 0.5, "mean", progress=lambda done, total: seen.append((done, total)))
    assert_same_flow(together, want)
    assert seen == [(k, n) for k in range(1, n + 1)]

    # rows from elsewhere (a session): the process continues from what the analysis holds
    seeded = bare(an)
    propagation.add_flow(seeded, [0, 2], 0.5, "mean")
    compute.add_flow(seeded, [1, 4], 0.5, "mean")
    ref = bare(an)
    propagation.add_flow(ref, [0, 2], 0.5, "mean")
    propagation.add_flow(ref, [1, 4], 0.5, "mean")
    assert_same_flow(seeded, ref)

    # other parameters start afresh, as in core
    compute.add_flow(seeded, [2], 0.7, 1)
    ref = bare(an)
    propagation.add_flow(ref, [2], 0.7, 1)
    assert_same_flow(seeded, ref)


def test_each_analysis_gets_its_own_attention(loaded_models, compute):
    """Requests for two analyses in turn: the process never answers one with the other's."""
    first, second = analyze(loaded_models("bert"), TEXT), analyze(loaded_models("bert"), "The loan was approved.")
    for an in (first, second, first):
        got, want = bare(an), bare(an)
        compute.add_flow(got, [1], 0.5, "mean")
        propagation.add_flow(want, [1], 0.5, "mean")
        assert_same_flow(got, want)
        compute.add_rollout(got, 0.5, "mean")
        propagation.add_rollout(want, 0.5, "mean")
        np.testing.assert_array_equal(got.arrays["rollout"], want.arrays["rollout"])


def test_user_errors_come_back_as_in_core(loaded_models, compute):
    an = bare(analyze(loaded_models("bert"), TEXT))
    with pytest.raises(UserError) as in_core:
        propagation.add_flow(bare(an), [0], 0.5, 99)
    with pytest.raises(UserError) as there:
        compute.add_flow(an, [0], 0.5, 99)
    assert str(there.value) == str(in_core.value)
    with pytest.raises(UserError, match="alpha must be in"):
        compute.add_rollout(an, 1.5, "mean")
    with pytest.raises(UserError, match="does not exist"):
        compute.add_flow(an, [len(an.tokens)], 0.5, "mean")
    assert "flow" not in an.arrays and "rollout" not in an.arrays
    compute.add_flow(an, [0], 0.5, "mean")  # and the process goes on
    assert an.arrays["flow_rows"].tolist() == [0]


def test_cancel_keeps_finished_rows_and_the_process_goes_on(demo_model, compute):
    an = analyze(demo_model, LONG)
    rows = list(range(8))
    stop = threading.Event()
    got = bare(an)
    with pytest.raises(Cancelled):
        compute.add_flow(got, rows, 0.5, "mean", cancel=stop.is_set,
                         progress=lambda done, total: stop.set())
    kept = got.arrays["flow_rows"].tolist()
    assert 1 <= len(kept) < len(rows) and kept == sorted(rows[: len(kept)])
    want = bare(an)
    propagation.add_flow(want, kept, 0.5, "mean")
    assert_same_flow(got, want)

    pid = compute.pid
    compute.add_flow(got, rows, 0.5, "mean")  # the rest, in the same process
    assert compute.pid == pid
    propagation.add_flow(want, rows, 0.5, "mean")
    assert_same_flow(got, want)

    with pytest.raises(Cancelled):  # cancelled before it starts: nothing changes
        compute.add_rollout(got, 0.5, "mean", cancel=lambda: True)
    assert "rollout" not in got.arrays


def test_a_killed_compute_process_is_one_line_then_restarts(loaded_models, demo_model):
    process = ComputeProcess()
    try:
        an = analyze(demo_model, LONG)
        first = []

        def kill_at_first_row(done, total):
            if not first:
                first.append(process.pid)
                os.kill(process.pid, signal.SIGKILL)

        got = bare(an)
        with pytest.raises(UserError, match="compute process stopped unexpectedly"):
            process.add_flow(got, range(6), 0.5, "mean", progress=kill_at_first_row)
        assert got.arrays["flow_rows"].tolist() == [0]  # the row that arrived is kept
        process.add_flow(got, [1], 0.5, "mean")
        assert process.pid not in (None, first[0]) and process.starts == 2
        want = bare(an)
        propagation.add_flow(want, [0, 1], 0.5, "mean")
        assert_same_flow(got, want)
    finally:
        process.close()
    assert process.pid is None


PARENT = r"""
import sys, threading, time
import numpy as np
from attn_desktop.core.analysis import Analysis, Token
from attn_desktop.core.propagate.compute_process import ComputeProcess

state = sys.argv[1]
n = 160
rng = np.random.default_rng(0)
logits = rng.standard_normal((4, 4, n, n)).astype(np.float32) * 3
att = np.exp(logits - logits.max(-1, keepdims=True))
att /= att.sum(-1, keepdims=True)
an = Analysis(text="x" * n, tokens=[Token(f"t{i}", i, i + 1) for i in range(n)],
              arrays={"attentions": att.astype(np.float16)}, manifest={"model": {"kind": "encoder"}})
process = ComputeProcess()
process.add_rollout(an, 0.5, "mean")
if state == "busy":
    threading.Thread(target=process.add_flow, args=(an, range(n)), daemon=True).start()
    time.sleep(0.5)
print(f"CHILD {process.pid}", flush=True)
time.sleep(120)  # killed before this ends
"""

GONE_S = 10


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


@pytest.mark.parametrize("state,how", [("idle", "SIGKILL"), ("busy", "SIGKILL"), ("busy", "SIGTERM")])
def test_the_compute_process_ends_with_its_parent_and_leaves_no_file(tmp_path, state, how):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), state], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "TMPDIR": str(scratch)})
    child = None
    try:
        line = parent.stdout.readline()
        assert line.startswith("CHILD "), f"parent said {line!r}, exit {parent.poll()}"
        child = int(line.split()[1])
        process = psutil.Process(child)
        assert process.ppid() == parent.pid
        assert "attn_desktop.core.propagate.compute_process" in " ".join(process.cmdline())
        parent.send_signal(getattr(signal, how))
        parent.wait(GONE_S)
        assert _wait_gone(child, GONE_S), f"compute process {child} outlived its parent ({state}, {how})"
        assert list(scratch.iterdir()) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
