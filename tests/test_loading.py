"""Loading every kind through the real path, and every refusal with its one-line reason."""

import json
import shutil

import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.model.folder import inspect_folder
from attn_desktop.core.model.loading import load_model
from attn_desktop.core.store.library import list_models

EXPECTED_KIND = {
    "bert": "encoder", "bert-cls": "sequence-classification", "bert-mlm": "masked-lm", "mpnet": "encoder",
    "gpt2": "causal-lm", "llama": "causal-lm", "bart": "encoder-decoder", "t5": "encoder-decoder",
}


@pytest.fixture
def copy_of(tiny_model_paths, tmp_path):
    def make(kind="bert"):
        dest = tmp_path / f"copy-{kind}"
        shutil.copytree(tiny_model_paths[kind], dest)
        return dest

    return make


def snapshot(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def refused(folder_or_spec, match):
    before = snapshot(folder_or_spec) if hasattr(folder_or_spec, "rglob") and folder_or_spec.exists() else None
    with pytest.raises(UserError, match=match) as info:
        load_model(folder_or_spec)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    if before is not None:
        assert snapshot(folder_or_spec) == before, "a refused load wrote into the folder"
    return message


@pytest.mark.parametrize("kind", sorted(EXPECTED_KIND))
def test_every_kind_loads_with_its_facts(loaded_models, kind):
    loaded = loaded_models(kind)
    assert loaded.kind == EXPECTED_KIND[kind]
    assert loaded.num_layers == 2 and loaded.num_heads == 4
    assert loaded.device == "cpu"
    assert len(next(iter(loaded.weights_sha256.values()))) == 64
    assert not loaded.model.training
    labels = [label for label, _ in loaded.card()]
    assert {"Architecture", "Layers", "Heads", "Parameters", "Max positions", "Weights sha256"} <= set(labels)


def test_demo_model_facts(demo_model):
    assert (demo_model.kind, demo_model.model_type) == ("encoder", "bert")
    assert (demo_model.num_layers, demo_model.num_heads, demo_model.max_positions) == (6, 12, 512)
    assert 22_000_000 < demo_model.num_parameters < 24_000_000
    assert demo_model.name == "all-MiniLM-L6-v2"


def test_weights_hash_is_the_file_sha256(tiny_model_paths, loaded_models):
    import hashlib

    data = (tiny_model_paths["bert"] / "model.safetensors").read_bytes()
    assert loaded_models("bert").weights_sha256["model.safetensors"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("spec", ["bert-base-uncased/x", "sentence-transformers/all-MiniLM-L6-v2"])
def test_hub_ids_are_refused(spec):
    assert "local folders" in refused(spec, "hub id")


@pytest.mark.parametrize("spec", ["https://huggingface.co/bert-base-uncased", "hf://gpt2"])
def test_urls_are_refused(spec):
    refused(spec, "local folders")


def test_pickle_only_weights_are_refused_with_how_to_convert(copy_of):
    folder = copy_of()
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    message = refused(folder, "pickle")
    assert "safe_serialization=True" in message


def test_remote_code_is_refused(copy_of):
    folder = copy_of()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    refused(folder, "custom model code")


def test_missing_config_is_refused(copy_of):
    folder = copy_of()
    (folder / "config.json").unlink()
    refused(folder, "no config.json")


def test_invalid_config_is_refused(copy_of):
    folder = copy_of()
    (folder / "config.json").write_text("{ not json")
    refused(folder, "not valid JSON")


def test_unknown_model_type_is_refused(copy_of):
    folder = copy_of()
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "frobnicator"
    (folder / "config.json").write_text(json.dumps(cfg))
    refused(folder, "unknown model type 'frobnicator'")


def test_missing_weights_are_refused(copy_of):
    folder = copy_of()
    (folder / "model.safetensors").unlink()
    refused(folder, "no weights file")


def test_truncated_weights_are_refused(copy_of):
    folder = copy_of()
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    refused(folder, "truncated or corrupt")


def test_corrupt_header_is_refused(copy_of):
    folder = copy_of()
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:20] = b"\xff" * 12
    weights.write_bytes(bytes(data))
    refused(folder, "corrupt")


def test_weights_lacking_tensors_are_refused(copy_of):
    from safetensors.numpy import load_file, save_file

    folder = copy_of("bert-cls")
    tensors = load_file(folder / "model.safetensors")
    for name in [k for k in tensors if k.startswith("classifier")]:
        del tensors[name]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    refused(folder, "lack .* tensor")


def test_missing_tokenizer_is_refused(copy_of):
    folder = copy_of()
    (folder / "tokenizer.json").unlink()
    refused(folder, "tokenizer")


def test_folder_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    refused(f, "is a file")


def test_cuda_asked_without_cuda_is_refused(tiny_model_paths):
    import torch

    if torch.cuda.is_available():
        assert load_model(tiny_model_paths["bert"], device="cuda").device == "cuda"
    else:
        with pytest.raises(UserError, match="no CUDA device"):
            load_model(tiny_model_paths["bert"], device="cuda")


def test_library_lists_models_with_reasons(tiny_model_paths, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copytree(tiny_model_paths["gpt2"], lib / "gpt2-tiny")
    broken = lib / "broken"
    shutil.copytree(tiny_model_paths["bert"], broken)
    (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
    monkeypatch.setenv("ATTN_DESKTOP_MODELS", str(lib))
    entries = list_models()
    assert entries[0].name.startswith("demo") and entries[0].error is None
    by_name = {e.name: e for e in entries}
    assert by_name["gpt2-tiny"].kind == "causal-lm"
    assert (by_name["gpt2-tiny"].num_layers, by_name["gpt2-tiny"].num_heads) == (2, 4)
    assert "pickle" in by_name["broken"].error


def test_parameter_count_from_headers_matches_torch(loaded_models):
    loaded = loaded_models("bert-cls")
    assert inspect_folder(loaded.path).num_parameters == sum(p.numel() for p in loaded.model.parameters())


def test_weights_hash_is_cached_and_refreshed_when_the_file_changes(copy_of, monkeypatch):
    import hashlib

    from attn_desktop.core.model import hashing

    folder = copy_of()
    weights = folder / "model.safetensors"
    first = hashing.weights_sha256(weights)
    assert first == hashlib.sha256(weights.read_bytes()).hexdigest()
    calls = []
    monkeypatch.setattr(hashing, "sha256_file", lambda p, **kw: calls.append(p) or "x")
    assert hashing.weights_sha256(weights) == first and calls == []
    weights.write_bytes(weights.read_bytes() + b"")  # same bytes, new mtime
    import os

    os.utime(weights, ns=(0, 10**18))
    assert hashing.weights_sha256(weights) == "x" and calls == [weights]
