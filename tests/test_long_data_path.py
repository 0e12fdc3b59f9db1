"""The data path of long inputs to the window: the views' arrays the on-disk capture makes
(core.model.mapped.HeadViews) equal what the window computes from the whole stack; the window's
rule for going to disk; the engines hand mapped files over (the caller maps them, nothing is
copied, the files go with the arrays); per-layer reads of mapped arrays leave no pages resident;
rollout of mapped attention in the compute process is written to a file and equals core's."""

from __future__ import annotations

import gc
import os
import re

import numpy as np
import pytest

from attn_desktop.core.model import mapped
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.propagate.heads import aggregate_heads, head_diagnostics
from attn_desktop.core.views.mapped_arrays import (
    file_region,
    is_mapped,
    layer_aggregate,
    resident_copy,
)

TEXT = "The tenant shall pay the rent on the first day of each month; late payment incurs a fee."


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_views_made_during_capture_equal_those_of_the_whole_stack(loaded_models, tmp_path, kind):
    from attn_desktop.gui.measures import thumbnails

    loaded = loaded_models(kind)
    an = analyze(loaded, TEXT, mapped=str(tmp_path / "m"))
    att = np.asarray(an.arrays["attentions"])
    assert set(mapped.VIEW_ARRAYS) <= set(an.arrays)
    mean = an.arrays["head_mean"]
    assert isinstance(mean, np.memmap) and mean.dtype == np.float16
    np.testing.assert_allclose(mean.astype(np.float32), aggregate_heads(att, "mean"), atol=1e-3)
    expected = head_diagnostics(att)
    np.testing.assert_allclose(an.arrays["head_row_entropy"], expected.entropy, atol=1e-4)
    np.testing.assert_allclose(an.arrays["head_top_share"], expected.top_share, atol=1e-4)
    np.testing.assert_array_equal(an.arrays["head_top_position"], expected.top_position)
    thumbs = thumbnails(att)
    assert an.arrays["head_thumbnails"].shape == thumbs.shape
    assert np.abs(an.arrays["head_thumbnails"].astype(int) - thumbs.astype(int)).max() <= 1


def test_the_window_rule_for_going_to_disk(loaded_models, monkeypatch):
    bert, t5 = loaded_models("bert"), loaded_models("t5")
    layers, heads = bert.num_layers, bert.num_heads
    n = 64
    size = layers * heads * n * n * 2
    assert mapped.on_disk(bert, n, size) and not mapped.on_disk(bert, n, size + 1)
    assert not mapped.on_disk(t5, 10_000, 1)  # encoder-decoders never
    assert mapped.ON_DISK_FROM == 256 << 20
    monkeypatch.setenv("ATTN_DESKTOP_ON_DISK_FROM", str(size))
    assert mapped.on_disk(bert, n) and not mapped.on_disk(bert, n - 1)
    an = analyze(bert, "short text", mapped="/nonexistent/never-made", mapped_from=size)
    assert not is_mapped(an.arrays["attentions"])  # a few tokens stay in memory
    assert "storage" not in an.manifest["capture"]


def _count_files(prefix: str) -> list[str]:
    import tempfile

    root = tempfile.gettempdir()
    return [os.path.join(root, e) for e in os.listdir(root) if e.startswith(prefix)]


@pytest.mark.parametrize("engine_kind", ["in-process", "process"])
def test_engines_hand_mapped_files_over_and_they_go_with_the_arrays(loaded_models, tiny_model_paths, monkeypatch,
                                                                    engine_kind):
    from attn_desktop.core.model import engine as eng

    loaded = loaded_models("bert")
    monkeypatch.setenv("ATTN_DESKTOP_ON_DISK_FROM", "1")  # every text goes to disk (the child reads it too)
    if engine_kind == "process":
        engine = eng.ProcessEngine()
        loaded, _ = engine.load(str(tiny_model_paths["bert"]))
    else:
        engine = eng.InProcessEngine()
    try:
        an = engine.analyze(loaded, TEXT, **{eng.ON_DISK: "auto"})
        att = an.arrays["attentions"]
        assert is_mapped(att) and att.dtype == np.float16 and not att.flags.writeable
        assert is_mapped(an.arrays["head_mean"])
        path = att.filename
        assert os.path.exists(path)
        plain = analyze(loaded_models("bert"), TEXT)
        np.testing.assert_allclose(np.asarray(att, np.float32), plain.arrays["attentions"].astype(np.float32),
                                   atol=2e-3)
        short = engine.analyze(loaded, TEXT)  # without the option: in memory, as always
        assert not is_mapped(short.arrays["attentions"])
        del an, att
        gc.collect()
        assert not os.path.exists(path)  # removed with the last view of it
        assert not os.path.exists(os.path.dirname(path))
    finally:
        engine.close()


def _resident_kb(path: str) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                inside = len(head) >= 6 and head[5] == path
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


def test_layer_reads_of_a_mapped_stack_leave_no_pages_resident(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.random((3, 4, 256, 256)).astype(np.float16)
    path = tmp_path / "att.npy"
    np.save(path, values)
    att = np.load(path, mmap_mode="r")
    st = os.stat(path)
    assert file_region(att) == (str(path), 128, st.st_dev, st.st_ino)
    assert file_region(att[1, 2])[:2] == (str(path), 128 + (1 * 4 + 2) * 256 * 256 * 2)
    assert file_region(np.ascontiguousarray(values)) is None
    for how in ("mean", "max", "min"):
        np.testing.assert_allclose(layer_aggregate(att, 2, how), aggregate_heads(values[2], how), atol=1e-6)
    block = resident_copy(att[1, 3])
    assert not isinstance(block, np.memmap) and block.flags.writeable
    np.testing.assert_array_equal(block, values[1, 3])
    assert _resident_kb(str(path)) <= 8  # the pages read were handed back
    touched = np.asarray(att[0]).sum(dtype=np.float64)  # a plain read keeps them, which is what the window avoids
    assert touched > 0 and _resident_kb(str(path)) >= 256 * 256 * 2 * 4 // 1024 - 8


def test_rollout_of_mapped_attention_in_the_compute_process_goes_to_a_file(loaded_models, tmp_path):
    from attn_desktop.core.propagate.compute_process import ComputeProcess
    from attn_desktop.core.propagate.propagation import add_rollout

    loaded = loaded_models("bert")
    an = analyze(loaded, TEXT, mapped=str(tmp_path / "m"))
    expected = analyze(loaded, TEXT)
    add_rollout(expected, 0.5, "max", 1)
    compute = ComputeProcess()
    try:
        compute.add_rollout(an, 0.5, "max", 1)
    finally:
        compute.close()
    out = an.arrays["rollout"]
    assert is_mapped(out) and out.dtype == np.float16 and not os.path.exists(out.filename)  # name removed
    assert an.manifest["methods"]["rollout"]["start_layer"] == 1
    np.testing.assert_allclose(out.astype(np.float32), expected.arrays["rollout"], atol=2e-3)


def test_rollout_of_a_reopened_mapped_session_maps_the_session_file_and_never_a_replaced_one(
        loaded_models, tmp_path, monkeypatch):
    from attn_desktop.core.propagate.compute_process import ComputeProcess
    from attn_desktop.core.propagate.propagation import add_rollout
    from attn_desktop.core.store import archive
    from attn_desktop.core.store.session import load_session, save_session

    loaded = loaded_models("bert")
    path = tmp_path / "s.attn"
    save_session(analyze(loaded, TEXT, mapped=str(tmp_path / "m")), path)
    monkeypatch.setattr(archive, "MAP_FROM", 1)  # every stored array mapped, as 256 MB ones are
    first, second = load_session(path), load_session(path)
    assert is_mapped(first.arrays["attentions"]) and file_region(first.arrays["attentions"]).path == str(path)
    expected = analyze(loaded, TEXT)
    add_rollout(expected, 0.5, "mean", 0)
    compute = ComputeProcess()
    try:
        compute.add_rollout(first, 0.5, "mean", 0)  # the child maps the session file
        other = "another text entirely"
        save_session(analyze(loaded, other), path)  # replaced by renaming, as the app saves
        assert file_region(second.arrays["attentions"]) is None  # its file has no name any more
        compute.add_rollout(second, 0.5, "mean", 0)  # so its bytes travel: still the text it shows
    finally:
        compute.close()
    for an in (first, second):
        np.testing.assert_allclose(an.arrays["rollout"].astype(np.float32), expected.arrays["rollout"], atol=2e-3)
    assert is_mapped(first.arrays["rollout"])


@pytest.mark.parametrize("stored", [True, False])
def test_the_window_prepares_mapped_attention_from_stored_view_arrays_or_head_by_head(loaded_models, tmp_path,
                                                                                     stored):
    from attn_desktop.gui.measures import prepare, thumbnails

    an = analyze(loaded_models("gpt2"), TEXT, mapped=str(tmp_path / "m"))
    if not stored:  # a session saved without them: computed one head at a time
        for name in mapped.VIEW_ARRAYS:
            del an.arrays[name]
    att = np.asarray(an.arrays["attentions"])
    prepared = prepare(an)
    diag, expected = prepared.diagnostics["self"], head_diagnostics(att)
    assert diag.causal is expected.causal is True
    np.testing.assert_allclose(diag.entropy, expected.entropy, atol=1e-4)
    np.testing.assert_allclose(diag.top_share, expected.top_share, atol=1e-4)
    np.testing.assert_array_equal(diag.diffuse, expected.diffuse)
    np.testing.assert_array_equal(diag.single_position, expected.single_position)
    thumbs = prepared.thumbnails["self"]
    assert thumbs.shape == thumbnails(att).shape
    assert np.abs(thumbs.astype(int) - thumbnails(att).astype(int)).max() <= (1 if stored else 0)
    assert "self" not in an.extras.get("head_mean", {})  # no float32 [L, n, n] means made
