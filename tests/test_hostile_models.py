"""Hostile model folders (issue 13, "Model folders"): refused in one line before anything is
built, never blocking on a file, and one bad folder never breaks the library listing."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.model import folder as folder_module
from attn_desktop.core.model.folder import inspect_folder
from attn_desktop.core.store.library import list_models


@pytest.fixture
def copy_of(tiny_model_paths, tmp_path):
    def make(kind="bert", name=None):
        dest = tmp_path / (name or f"copy-{kind}")
        shutil.copytree(tiny_model_paths[kind], dest)
        return dest

    return make


def refused(folder, match: str) -> str:
    with pytest.raises(UserError, match=match) as info:
        inspect_folder(folder)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def write_header(path, header: dict, payload: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)


def test_deeply_nested_config(copy_of):
    folder = copy_of()
    (folder / "config.json").write_text('{"model_type": "bert", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(folder, "config.json is nested 100001 levels deep")


def test_deeply_nested_safetensors_header(copy_of):
    folder = copy_of()
    raw = b'{"w": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    refused(folder, "nested 200001 levels deep .*corrupt")


@pytest.mark.parametrize("entry", [
    {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]},
    {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [1], "data_offsets": [0, "4"]},
    ["not", "an", "object"],
])
def test_bad_tensor_entries(copy_of, entry):
    folder = copy_of()
    write_header(folder / "model.safetensors", {"w": entry}, b"\0" * 4)
    refused(folder, "corrupt \\(bad entry for 'w'\\)")


def test_symlink_loops(copy_of, tmp_path):
    folder = copy_of()
    (folder / "config.json").unlink()
    os.symlink("config.json", folder / "config.json")
    refused(folder, "'config.json' cannot be read \\(a symbolic link loop\\)")
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    refused(loop, "symbolic link loop")


def test_unreadable_config(copy_of, monkeypatch):
    folder = copy_of()
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if str(path).endswith("config.json"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(folder_module.os, "open", deny)
    refused(folder, "config.json cannot be read \\(Permission denied\\)")


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json"])
def test_fifo_in_the_folder_is_refused_without_opening_it(copy_of, name):
    folder = copy_of()
    (folder / name).unlink()
    os.mkfifo(folder / name)
    refused(folder, f"'{name}' is a FIFO, not a regular file")


def test_fifo_does_not_hang_the_models_command(copy_of, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    good = copy_of("gpt2", "library/good")
    bad = copy_of("bert", "library/fifo")
    (bad / "model.safetensors").unlink()
    os.mkfifo(bad / "model.safetensors")
    os.mkfifo(library / "stray-fifo")
    run = subprocess.run([sys.executable, "-m", "attn_desktop", "models", "--library", str(library)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = {line.split()[0]: line for line in run.stdout.splitlines()[2:]}
    assert lines["good"].endswith("ok") and "is a FIFO" in lines["fifo"]
    assert good.is_dir()


def test_one_bad_folder_never_breaks_the_listing(copy_of, tmp_path, monkeypatch):
    library = tmp_path / "library"
    library.mkdir()
    copy_of("gpt2", "library/good")
    deep = copy_of("bert", "library/deep")
    (deep / "config.json").write_text("[" * 50_000 + "]" * 50_000)
    loop = library / "loop"
    os.symlink(loop, loop)

    def boom(*args, **kwargs):
        raise TypeError("an unforeseen failure")

    entries = {e.name: e for e in list_models(library, include_demo=False)}
    assert entries["good"].error is None and "nested" in entries["deep"].error
    monkeypatch.setattr("attn_desktop.core.store.library.inspect_folder", boom)
    entries = {e.name: e for e in list_models(library, include_demo=False)}
    assert "TypeError: an unforeseen failure" in entries["good"].error


@pytest.mark.parametrize("kind,changes,match", [
    ("bert", {"num_hidden_layers": 100000}, "num_hidden_layers = 100000, but the weights hold 2 layers"),
    ("bert", {"hidden_size": 4096}, "hidden_size = 4096, but the weights' token embeddings are"),
    ("bert", {"vocab_size": 10 ** 9}, "vocab_size = 1000000000, but the weights embed"),
    ("bert", {"max_position_embeddings": 10 ** 9}, "max_position_embeddings = 1000000000, but the weights hold 64"),
    ("gpt2", {"n_layer": 7}, "n_layer = 7, but the weights hold 2 layers"),
    ("bart", {"decoder_layers": 9}, "decoder_layers = 9, but the weights hold 2 decoder layers"),
    ("t5", {"num_layers": 5}, "num_layers = 5, but the weights hold 2 encoder layers"),
    ("bert", {"num_hidden_layers": "2"}, "does not say how many layers"),
])
def test_config_checked_against_the_weights(copy_of, kind, changes, match):
    folder = copy_of(kind)
    edit_config(folder, **changes)
    refused(folder, match)


def test_hundred_thousand_layers_refused_at_once_in_bounded_memory(copy_of, tmp_path):
    folder = copy_of()
    edit_config(folder, num_hidden_layers=100_000)
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1500 << 20, 1500 << 20))
        from attn_desktop.cli import main
        sys.exit(main(["analyze", "--text", "The bank.", "--model", sys.argv[1], "--out", sys.argv[2]]))
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "s.attn")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2, run.stderr
    assert "num_hidden_layers = 100000, but the weights hold 2 layers" in run.stderr
    assert not (tmp_path / "s.attn").exists()


def test_weights_through_a_symlink_outside_the_folder(copy_of, tmp_path):
    folder = copy_of()
    outside = tmp_path / "elsewhere.safetensors"
    (folder / "model.safetensors").rename(outside)
    os.symlink(outside, folder / "model.safetensors")
    refused(folder, "'model.safetensors' links outside the model folder")
    inside = folder / "blobs"
    inside.mkdir()
    outside.rename(inside / "w.safetensors")
    (folder / "model.safetensors").unlink()
    os.symlink("blobs/w.safetensors", folder / "model.safetensors")
    assert inspect_folder(folder).num_layers == 2


@pytest.mark.parametrize("target", ["/etc/passwd.safetensors", "../x.safetensors", "sub/x.safetensors"])
def test_index_naming_a_file_outside_the_folder(copy_of, target):
    folder = copy_of()
    index = {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": target}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(folder, "names a weight file outside the folder")


def test_odd_types_in_the_config_do_not_escape(copy_of):
    folder = copy_of()
    edit_config(folder, architectures={"not": "a list"})
    assert inspect_folder(folder).architecture == "bert"
    (folder / "config.json").write_text('{"model_type": "bert", "num_hidden_layers": Infinity}')
    refused(folder, "does not say how many layers")


def test_implausible_head_count_without_weights_to_compare(copy_of):
    folder = copy_of()
    edit_config(folder, num_attention_heads=10 ** 6)
    refused(folder, "declares 2 layers and 1000000 heads, more than attn-desktop shows")


def test_sizes_that_differ_from_the_weights_are_refused_before_allocating(copy_of, tmp_path):
    """An intermediate size of 10^8 would make transformers allocate tens of gigabytes before it
    compares shapes; the model built on the meta device is compared with the headers first."""
    folder = copy_of()
    edit_config(folder, intermediate_size=10 ** 8)
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3000 << 20, 3000 << 20))
        from attn_desktop.core.errors import UserError
        from attn_desktop.core.model.loading import load_model
        try:
            load_model(sys.argv[1])
        except UserError as exc:
            print("REFUSED", exc)
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert "REFUSED" in run.stdout, run.stderr[-2000:]
    assert "describes encoder.layer.0.intermediate.dense" in run.stdout and "[100000000" in run.stdout
