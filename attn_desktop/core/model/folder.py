"""What a model folder holds, read from its files alone: no torch, no model code, no network.

Every way a folder can be unusable ends here in a UserError with one line saying why.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from attn_desktop.core.errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model",
)
CONVERT_HINT = (
    "convert them on a trusted machine with "
    "`AutoModel.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)`"
)


@dataclass
class FolderInfo:
    path: Path
    config: dict
    kind: str
    model_type: str
    architecture: str
    num_layers: int
    num_heads: int
    max_positions: int | None
    weight_files: list[Path]
    num_parameters: int
    size_bytes: int
    tensor_names: set[str] = field(default_factory=set, repr=False)
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.path.name


def looks_remote(spec: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", spec, re.I)) or spec.startswith(("hf://", "www."))


def resolve_folder(spec: str | Path) -> Path:
    text = str(spec)
    if looks_remote(text):
        raise UserError(f"'{text}' is a URL: models must be local folders (nothing is downloaded)")
    path = Path(text).expanduser()
    if not path.exists():
        if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
            raise UserError(
                f"'{text}' looks like a hub id, and no such folder exists: models must be local folders"
            )
        raise UserError(f"model folder not found: {path} (models must be local folders; nothing is downloaded)")
    if not path.is_dir():
        raise UserError(f"{path} is a file; a model is a folder with config.json and safetensors weights")
    return path.resolve()


def read_config(folder: Path) -> dict:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{folder.name}: no config.json in the folder; it is not a Hugging Face model folder")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{folder.name}: config.json is not valid JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{folder.name}: config.json does not hold a JSON object")
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise UserError(
            f"{folder.name}: config.json asks for custom model code (auto_map); "
            "attn-desktop never runs code from a model folder"
        )
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise UserError(f"{folder.name}: config.json has no model_type")
    return config


def safetensors_header(path: Path) -> dict:
    """Parse and check a safetensors header: the declared tensors must exactly fill the file."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a header")
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > size - 8 or header_len > 100_000_000:
                raise ValueError("header length beyond the end of the file")
            header = json.loads(fh.read(header_len).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path.name}: weights file is corrupt or truncated ({exc})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path.name}: weights file is corrupt (header is not an object)")
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = meta["data_offsets"]
            if not isinstance(meta["shape"], list) or int(begin) > int(stop):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path.name}: weights file is corrupt (bad entry for {name})") from None
        end = max(end, int(stop))
    if 8 + header_len + end != size:
        raise UserError(
            f"{path.name}: weights file is truncated or corrupt "
            f"(header declares {8 + header_len + end} bytes, file has {size})"
        )
    return {k: v for k, v in header.items() if k != "__metadata__"}


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{folder.name}: model.safetensors.index.json is not valid") from None
        files = sorted({folder / f for f in weight_map.values()})
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise UserError(f"{folder.name}: weight shard missing: {missing[0]} (of {len(files)})")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UserError(
            f"{folder.name}: weights are only in pickle format ({pickles[0]}), which can run code when "
            f"loaded and is refused; {CONVERT_HINT}"
        )
    raise UserError(f"{folder.name}: no weights file (model.safetensors) in the folder")


def detect_kind(config: dict) -> str:
    archs = config.get("architectures") or []
    arch = archs[0] if archs and isinstance(archs[0], str) else ""
    if config.get("is_encoder_decoder") or arch.endswith(("ForConditionalGeneration", "ForSeq2SeqLM")):
        return "encoder-decoder"
    if arch.endswith("ForSequenceClassification"):
        return "sequence-classification"
    if arch.endswith(("ForMaskedLM", "ForPreTraining")):
        return "masked-lm"
    if arch.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal-lm"
    if arch and not arch.endswith("Model"):
        raise UserError(
            f"architecture {arch} is not supported; supported heads: base model, sequence classification, "
            "masked LM, causal LM, encoder-decoder"
        )
    if config.get("is_decoder"):
        return "causal-lm"
    return "encoder"


def _first_int(config: dict, *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def config_shape(config: dict) -> tuple[int, int, int | None]:
    layers = _first_int(config, "num_hidden_layers", "n_layer", "num_layers", "encoder_layers", "n_layers")
    heads = _first_int(
        config, "num_attention_heads", "n_head", "num_heads", "encoder_attention_heads", "n_heads"
    )
    if layers is None or heads is None:
        raise UserError("config.json does not say how many layers and attention heads the model has")
    positions = _first_int(config, "max_position_embeddings", "n_positions", "n_ctx", "max_seq_len")
    return layers, heads, positions


def inspect_folder(spec: str | Path, *, check_tokenizer: bool = True, label: str | None = None) -> FolderInfo:
    folder = resolve_folder(spec)
    config = read_config(folder)
    kind = detect_kind(config)
    layers, heads, positions = config_shape(config)
    files = weight_files(folder)
    n_params = 0
    names: set[str] = set()
    for f in files:
        for name, meta in safetensors_header(f).items():
            names.add(name)
            n_params += math.prod(meta["shape"])
    if not names:
        raise UserError(f"{folder.name}: the weights file holds no tensors")
    if check_tokenizer and not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise UserError(f"{folder.name}: no tokenizer files (tokenizer.json or a vocabulary) in the folder")
    archs = config.get("architectures") or [""]
    return FolderInfo(
        path=folder, config=config, kind=kind, model_type=config["model_type"],
        architecture=archs[0] or config["model_type"], num_layers=layers, num_heads=heads,
        max_positions=positions, weight_files=files, num_parameters=n_params,
        size_bytes=sum(p.stat().st_size for p in folder.iterdir() if p.is_file()), tensor_names=names, label=label,
    )
