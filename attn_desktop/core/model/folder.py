"""What a model folder holds, read from its files alone: no torch, no model code, no network.

Every way a folder can be unusable ends here in a UserError with one line saying why.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from attn_desktop.core import bounded_json
from attn_desktop.core.errors import UserError
from attn_desktop.core.quoting import quote, shown

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = (
    "tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model",
)
MAX_ENTRIES = 10_000
MAX_LAYERS = 4096
JSON_LIMIT = 16 << 20  # config.json, the shard index
HEADER_LIMIT = 64 << 20  # a safetensors header
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
    tensor_shapes: dict[str, list[int]] = field(default_factory=dict, repr=False)
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
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not text.startswith((".", "/")):
            raise UserError(
                f"'{text}' looks like a hub id, and no such folder exists: models must be local folders"
            ) from None
        raise UserError(f"model folder not found: {quote(path)} (models must be local folders; "
                        "nothing is downloaded)") from None
    except OSError as exc:
        raise UserError(f"cannot open the model folder {quote(path)}: {_reason(exc)}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UserError(f"{quote(path)} is a file; a model is a folder with config.json and safetensors weights")
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot open the model folder {quote(path)}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP or isinstance(exc, RuntimeError):
        return "a symbolic link loop"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
          (stat.S_ISSOCK, "a socket"))


def folder_files(folder: Path) -> dict[str, os.stat_result]:
    """The folder's regular files by name, seen without opening any of them. A FIFO, device,
    socket or symbolic-link loop among them, or a file that links outside the folder, makes the
    folder unusable: loaders would block on it or read what the folder does not hold."""
    try:
        entries = list(itertools.islice(os.scandir(folder), MAX_ENTRIES + 1))
    except OSError as exc:
        raise UserError(f"{shown(folder.name)}: the folder cannot be listed ({_reason(exc)})") from None
    if len(entries) > MAX_ENTRIES:
        raise UserError(f"{shown(folder.name)}: the folder holds more than {MAX_ENTRIES} entries; it is not a model folder")
    files: dict[str, os.stat_result] = {}
    root = os.path.realpath(folder)
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=True)
        except FileNotFoundError:
            continue  # a dangling link: no loader opens it
        except OSError as exc:
            raise UserError(f"{shown(folder.name)}: {quote(entry.name)} cannot be read ({_reason(exc)})") from None
        for test, kind in _KINDS:
            if test(info.st_mode):
                raise UserError(f"{shown(folder.name)}: {quote(entry.name)} is {kind}, not a regular file; "
                                "a model folder holds regular files only")
        if not stat.S_ISREG(info.st_mode):
            continue
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if os.path.commonpath([root, target]) != root:
                raise UserError(f"{shown(folder.name)}: {quote(entry.name)} links outside the model folder "
                                f"(to {quote(target)}); a model folder must hold its own files: copy them in")
        files[entry.name] = info
    return files


def _read_small(folder: Path, name: str, limit: int) -> bytes:
    """A regular file of the folder read with a size cap, never blocking."""
    path = folder / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"{shown(folder.name)}: {name} cannot be read ({_reason(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{shown(folder.name)}: {name} is not a regular file")
        if info.st_size > limit:
            raise UserError(f"{shown(folder.name)}: {name} is {info.st_size / 1e6:.0f} MB (at most {limit / 1e6:.0f} MB)")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{shown(folder.name)}: {name} cannot be read ({_reason(exc)})") from None
    finally:
        os.close(fd)


def read_config(folder: Path, files: dict | None = None) -> dict:
    files = folder_files(folder) if files is None else files
    if "config.json" not in files:
        raise UserError(f"{shown(folder.name)}: no config.json in the folder; it is not a Hugging Face model folder")
    raw = _read_small(folder, "config.json", JSON_LIMIT)
    config = bounded_json.loads(raw, f"{shown(folder.name)}: config.json", max_bytes=JSON_LIMIT, allow_nan=True)
    if not isinstance(config, dict):
        raise UserError(f"{shown(folder.name)}: config.json does not hold a JSON object")
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise UserError(
            f"{shown(folder.name)}: config.json asks for custom model code (auto_map); "
            "attn-desktop never runs code from a model folder"
        )
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise UserError(f"{shown(folder.name)}: config.json has no model_type")
    return config


# bytes per element of each safetensors dtype
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
               "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


def safetensors_header(path: Path) -> dict:
    """Parse and check a safetensors header: every entry's dtype, shape and offsets agree, and the
    declared tensors exactly fill the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UserError(f"{shown(path.name)}: weights file cannot be read ({_reason(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{shown(path.name)}: weights file is not a regular file")
        size = info.st_size
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise UserError(f"{shown(path.name)}: weights file is corrupt or truncated (shorter than a header)")
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > size - 8 or header_len > HEADER_LIMIT:
                raise UserError(f"{shown(path.name)}: weights file is corrupt or truncated "
                                "(header length beyond the end of the file)")
            data = fh.read(header_len)
    except OSError as exc:
        raise UserError(f"{shown(path.name)}: weights file cannot be read ({_reason(exc)})") from None
    finally:
        os.close(fd)
    try:
        header = bounded_json.loads(data, f"{shown(path.name)}: the weights header", max_bytes=HEADER_LIMIT)
    except UserError as exc:
        raise UserError(f"{exc} (weights file is corrupt)") from None
    if not isinstance(header, dict):
        raise UserError(f"{shown(path.name)}: weights file is corrupt (header is not an object)")
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        stop = _checked_entry(meta)
        if stop is None:
            raise UserError(f"{shown(path.name)}: weights file is corrupt (bad entry for {quote(name)})")
        end = max(end, stop)
    if 8 + header_len + end != size:
        raise UserError(
            f"{shown(path.name)}: weights file is truncated or corrupt "
            f"(header declares {8 + header_len + end} bytes, file has {size})"
        )
    return {k: v for k, v in header.items() if k != "__metadata__"}


def _checked_entry(meta) -> int | None:
    """The end offset of a well-formed header entry, else None."""
    if not isinstance(meta, dict):
        return None
    shape, offsets, dtype = meta.get("shape"), meta.get("data_offsets"), meta.get("dtype")
    if not isinstance(shape, list) or len(shape) > 16 or not all(type(d) is int and d >= 0 for d in shape):
        return None
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets):
        return None
    begin, stop = offsets
    if not 0 <= begin <= stop or not isinstance(dtype, str):
        return None
    if dtype in DTYPE_SIZES and stop - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
        return None
    return stop


def weight_files(folder: Path, files: dict | None = None) -> list[Path]:
    files = folder_files(folder) if files is None else files
    index = "model.safetensors.index.json"
    if index in files:
        raw = _read_small(folder, index, JSON_LIMIT)
        content = bounded_json.loads(raw, f"{shown(folder.name)}: {index}", max_bytes=JSON_LIMIT)
        weight_map = content.get("weight_map") if isinstance(content, dict) else None
        if not isinstance(weight_map, dict) or not weight_map or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise UserError(f"{shown(folder.name)}: {index} is not valid")
        names = sorted(set(weight_map.values()))
        outside = [n for n in names if n in ("", ".", "..") or "/" in n or "\\" in n or os.path.isabs(n)]
        if outside:
            raise UserError(f"{shown(folder.name)}: {index} names a weight file outside the folder "
                            f"({quote(outside[0])}); a model folder must hold its own files")
        missing = [n for n in names if n not in files]
        if missing:
            raise UserError(f"{shown(folder.name)}: weight shard missing: {quote(missing[0])} (of {len(names)})")
        return [folder / n for n in names]
    found = sorted(folder / n for n in files if n.endswith(".safetensors"))
    if found:
        return found
    pickles = sorted(n for n in files if Path(n).suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UserError(
            f"{shown(folder.name)}: weights are only in pickle format ({pickles[0]}), which can run code when "
            f"loaded and is refused; {CONVERT_HINT}"
        )
    raise UserError(f"{shown(folder.name)}: no weights file (model.safetensors) in the folder")


def architecture(config: dict) -> str:
    archs = config.get("architectures")
    return archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""


def detect_kind(config: dict) -> str:
    arch = architecture(config)
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
        if type(value) is int and value > 0:
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
    files = folder_files(folder)
    config = read_config(folder, files)
    kind = detect_kind(config)
    layers, heads, positions = config_shape(config)
    weights = weight_files(folder, files)
    n_params = 0
    shapes: dict[str, list[int]] = {}
    for f in weights:
        for name, meta in safetensors_header(f).items():
            shapes[name] = meta["shape"]
            n_params += math.prod(meta["shape"])
    if not shapes:
        raise UserError(f"{shown(folder.name)}: the weights file holds no tensors")
    from attn_desktop.core.model.consistency import check_config_against_weights

    check_config_against_weights(shown(folder.name), config, kind, shapes)
    if layers > MAX_LAYERS or heads > MAX_LAYERS:
        raise UserError(f"{shown(folder.name)}: config.json declares {layers} layers and {heads} heads, "
                        f"more than attn-desktop shows (at most {MAX_LAYERS} each)")
    if check_tokenizer and not any(n in files for n in TOKENIZER_FILES):
        raise UserError(f"{shown(folder.name)}: no tokenizer files (tokenizer.json or a vocabulary) in the folder")
    return FolderInfo(
        path=folder, config=config, kind=kind, model_type=config["model_type"],
        architecture=architecture(config) or config["model_type"],
        num_layers=layers, num_heads=heads, max_positions=positions, weight_files=weights,
        num_parameters=n_params, size_bytes=sum(info.st_size for info in files.values()),
        tensor_names=set(shapes), label=label, tensor_shapes=shapes,
    )
