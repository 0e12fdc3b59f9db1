"""Memory-mapped capture of long inputs (core.model.mapped): equal to the ordinary capture on tiny
BERT and Llama (grouped key/value heads) for several head chunks, rollout layer by layer equal to
core.propagate.rollout; and a 4096-token analysis with rollout on a tiny long-context BERT under an
address-space limit that the ordinary in-memory path breaks, whose session reopens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from attn_desktop.core.model import mapped
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.propagate.rollout import rollout

TEXT = "The tenant shall pay the rent on the first day of each month; late payment incurs a fee."


@pytest.mark.parametrize("kind, chunk", [("bert", 1), ("bert", 3), ("llama", 1), ("llama", 4), ("gpt2", 2)])
def test_mapped_capture_equals_the_ordinary_capture(loaded_models, tmp_path, kind, chunk, monkeypatch):
    loaded = loaded_models(kind)
    plain = analyze(loaded, TEXT)
    monkeypatch.setattr(mapped, "DEFAULT_HEAD_CHUNK", chunk)
    calls = []
    real = mapped.chunked_attention

    def counting(plan, *args, **kwargs):
        calls.append(plan.head_chunk)
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(mapped, "chunked_attention", counting)
    an = analyze(loaded, TEXT, mapped=str(tmp_path / "m"))
    att = an.arrays["attentions"]
    assert isinstance(att, np.memmap) and att.dtype == np.float16
    assert Path(att.filename).parent == tmp_path / "m"
    assert len(calls) == loaded.num_layers  # every layer ran a few heads at a time
    np.testing.assert_allclose(att.astype(np.float32), plain.arrays["attentions"].astype(np.float32), atol=2e-3)


@pytest.mark.parametrize("fusion, start", [("mean", 0), ("max", 1), (2, 0)])
def test_layer_by_layer_rollout_equals_rollout(loaded_models, tmp_path, fusion, start):
    loaded = loaded_models("bert")
    an = analyze(loaded, TEXT, mapped=str(tmp_path / "m"))
    out, entry = mapped.rollout(an.arrays["attentions"], tmp_path / "rollout.npy", 0.5, fusion, start)
    expected = rollout(np.asarray(an.arrays["attentions"]), 0.5, fusion, start)
    assert out.shape == expected.shape and entry["start_layer"] == start
    np.testing.assert_allclose(out.astype(np.float32), expected, atol=2e-3)


CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    mode, folder, out = sys.argv[1], sys.argv[2], sys.argv[3]
    import torch
    torch.set_num_threads(1)
    import attn_desktop
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.store.session import load_session, save_session
    loaded = load_model(folder)
    text = open(os.path.join(folder, "long.txt"), encoding="utf-8").read()
    analyze(loaded, "warm up the model.")
    def vm():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    budget = int(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_AS, (vm() + budget, resource.RLIM_INFINITY))
    result = {"mode": mode}
    try:
        if mode == "naive":
            an = analyze(loaded, text)
            from attn_desktop.core.propagate.propagation import add_rollout
            add_rollout(an, 0.5, "mean", 1)
            save_session(an, out)
        else:
            from attn_desktop.core.model import mapped
            work = out + ".d"
            an = analyze(loaded, text, mapped=work)
            # from layer 1: one fused layer, not a 4096^3 product (that one is in the benchmark)
            r, entry = mapped.rollout(an.arrays["attentions"], os.path.join(work, "rollout.npy"), start_layer=1)
            an.arrays["rollout"] = r
            an.manifest.setdefault("methods", {})["rollout"] = entry
            save_session(an, out)
            del an, r
            back = load_session(out)
            result["reopened_tokens"] = len(back.tokens)
            import numpy
            result["attention_mapped"] = isinstance(back.arrays["attentions"], numpy.memmap)
            result["rollout_shape"] = list(back.arrays["rollout"].shape)
            result["row_sum"] = float(back.arrays["rollout"][-1, 0].astype("float64").sum())
        result["ok"] = True
    except (MemoryError, RuntimeError) as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    result["tokens"] = 4096
    print(json.dumps(result))
""")


def _long_model(folder: Path) -> Path:
    import tiny_models
    import torch
    import transformers as tf

    torch.manual_seed(0)
    tok = tiny_models._wordpiece_tokenizer()
    tok.model_max_length = 4096
    cfg = tf.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=4096)
    tf.BertModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    words = ["pay", "the", "rent", "."]  # one piece each in this vocabulary
    text = " ".join(words[k % 4] for k in range(4094))
    assert len(tok(text)["input_ids"]) == 4096
    (folder / "long.txt").write_text(text, encoding="utf-8")
    return folder


def test_4096_tokens_under_a_memory_limit_the_in_memory_path_breaks(tmp_path):
    folder = _long_model(tmp_path / "long-bert")
    # attention [2, 4, 4096, 4096] float16 is 268 MB; the in-memory path holds it, float32 weights of
    # a whole layer (4 heads: 268 MB each for scores and weights) and a float32 rollout [2, n, n]
    budget = 700 * 2**20
    env = dict(os.environ, MALLOC_ARENA_MAX="1", OMP_NUM_THREADS="1")
    results = {}
    for mode in ("naive", "mapped"):
        out = str(tmp_path / f"{mode}.attn")
        proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(folder), out, str(budget)],
                              capture_output=True, text=True, env=env, timeout=600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        assert lines, proc.stderr[-2000:]
        results[mode] = json.loads(lines[-1])
    assert results["naive"]["ok"] is False, results
    assert not (tmp_path / "naive.attn").exists()
    mapped_result = results["mapped"]
    assert mapped_result["ok"] is True, mapped_result
    assert mapped_result["reopened_tokens"] == 4096 and mapped_result["rollout_shape"] == [1, 4096, 4096]
    assert mapped_result["row_sum"] == pytest.approx(1.0, abs=0.05)
    assert mapped_result["attention_mapped"] is True  # reopened by mapping the stored member

    from attn_desktop.core.errors import UserError
    from attn_desktop.core.store.session import load_session

    back = load_session(tmp_path / "mapped.attn")  # here too, without a limit
    assert isinstance(back.arrays["attentions"], np.memmap) and back.arrays["attentions"].shape == (2, 4, 4096, 4096)
    np.testing.assert_allclose(back.arrays["attentions"][1, 2, 7].astype(np.float64).sum(), 1.0, atol=2e-3)
    del back
    with open(tmp_path / "mapped.attn", "r+b") as fh:
        fh.seek(200 << 20)
        byte = fh.read(1)
        fh.seek(200 << 20)
        fh.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(UserError, match="checksum"):
        load_session(tmp_path / "mapped.attn")


def test_pages_of_a_mapped_array_are_released_and_saved_exactly(tmp_path):
    from attn_desktop.core import pages

    data = np.random.default_rng(0).random((3, 1000, 700)).astype(np.float16)
    np.save(tmp_path / "a.npy", data)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    seen = sum(float(part.astype(np.float64).sum()) for part in pages.chunks(mm, 100_000))
    assert seen == pytest.approx(float(data.astype(np.float64).sum()), rel=1e-9)
    with open(tmp_path / "b.npy", "wb") as fh:
        pages.write_npy(fh, mm)
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), data)
    pages.release(mm[1:2])  # a release never changes what is read
    np.testing.assert_array_equal(mm, data)


def test_cli_on_disk_equals_the_in_memory_analysis(tiny_model_paths, tmp_path, capsys):
    from attn_desktop.cli import main
    from attn_desktop.core.store.session import load_session

    model = str(tiny_model_paths["bert"])
    args = ["analyze", "--text", TEXT, "--model", model, "--methods", "rollout", "--alpha", "0.6"]
    assert main([*args, "--out", str(tmp_path / "memory.attn")]) == 0
    assert main([*args, "--on-disk", "--out", str(tmp_path / "disk.attn")]) == 0
    assert "rollout" in capsys.readouterr().out
    memory, disk = load_session(tmp_path / "memory.attn"), load_session(tmp_path / "disk.attn")
    for name in ("attentions", "rollout"):
        np.testing.assert_allclose(disk.arrays[name].astype(np.float32), memory.arrays[name].astype(np.float32),
                                   atol=2e-3)
    assert disk.manifest["methods"]["rollout"]["alpha"] == 0.6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.attn", "memory.attn"]  # work files removed
    assert main(["analyze", "--text", TEXT, "--model", model, "--on-disk", "--windows",
                 "--out", str(tmp_path / "x.attn")]) == 2
    assert "--on-disk takes attention and rollout only" in capsys.readouterr().err
