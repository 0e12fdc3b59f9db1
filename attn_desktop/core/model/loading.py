"""Loading a local model folder: offline, safetensors only, never remote code."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.model.folder import FolderInfo, inspect_folder
from attn_desktop.core.model.hashing import weights_sha256
from attn_desktop.core.model.offline import import_transformers

AUTO_CLASSES = {
    "encoder": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "masked-lm": "AutoModelForMaskedLM",
    "causal-lm": "AutoModelForCausalLM",
    "encoder-decoder": "AutoModelForSeq2SeqLM",
}
CAPTURE_INTERFACE = "attention-interface"
CAPTURE_EAGER = "eager-output-attentions"
Progress = Callable[[float, str], None]


@dataclass
class LoadedModel:
    info: FolderInfo
    model: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    device: str
    capture_mode: str
    weights_sha256: dict[str, str]
    load_seconds: float
    num_layers: int
    num_decoder_layers: int | None
    num_heads: int

    path = property(lambda self: self.info.path)
    name = property(lambda self: self.info.name)
    kind = property(lambda self: self.info.kind)
    model_type = property(lambda self: self.info.model_type)
    architecture = property(lambda self: self.info.architecture)
    num_parameters = property(lambda self: self.info.num_parameters)

    @property
    def is_encoder_decoder(self) -> bool:
        return self.info.kind == "encoder-decoder"

    @property
    def max_positions(self) -> int | None:
        return self.info.max_positions

    @functools.cached_property
    def site_of(self):
        """Maps an attention module of this model to its capture Site."""
        from attn_desktop.core.model.capture import site_namer

        return site_namer(self.model, self.is_encoder_decoder)

    def expected_layers(self) -> dict[str, int]:
        if self.is_encoder_decoder:
            return {"encoder": self.num_layers, "decoder": self.num_decoder_layers, "cross": self.num_decoder_layers}
        return {"self": self.num_layers}

    def describe(self) -> dict[str, Any]:
        """The model as the session manifest records it."""
        return {
            "folder": str(self.path),
            "name": self.name,
            "kind": self.kind,
            "model_type": self.model_type,
            "architecture": self.architecture,
            "layers": self.num_layers,
            "decoder_layers": self.num_decoder_layers,
            "heads": self.num_heads,
            "max_positions": self.max_positions,
            "parameters": self.num_parameters,
            "weights_sha256": dict(self.weights_sha256),
        }

    def card(self) -> list[tuple[str, str]]:
        layers = str(self.num_layers)
        if self.is_encoder_decoder:
            layers = f"{self.num_layers} encoder + {self.num_decoder_layers} decoder"
        sha = ", ".join(f"{name}: {digest[:16]}…" for name, digest in self.weights_sha256.items())
        return [
            ("Model", self.name),
            ("Architecture", self.architecture),
            ("Kind", self.kind),
            ("Layers", layers),
            ("Heads", str(self.num_heads)),
            ("Parameters", f"{self.num_parameters / 1e6:.1f} M"),
            ("Max positions", str(self.max_positions or "unlimited")),
            ("Device", self.device),
            ("Attention capture", self.capture_mode),
            ("Weights sha256", sha),
            ("Load time", f"{self.load_seconds:.2f} s"),
        ]


def resolve_device(device: str) -> str:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device '{device}': choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was asked for, but no CUDA device is available; use --device cpu")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(
    spec: str | Path,
    device: str = "cpu",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> LoadedModel:
    """Load a local model folder ("demo" means the bundled all-MiniLM-L6-v2)."""
    started = time.perf_counter()
    report = progress or (lambda f, m: None)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise Cancelled()

    label = None
    if str(spec) == "demo":
        from attn_desktop.core.model.demo import DEMO_NAME, demo_model_path

        spec, label = demo_model_path(), DEMO_NAME
    else:
        from attn_desktop.core.model.demo import demo_label

        label = demo_label(spec)  # the demo's folder opened by its path keeps its real name
    report(0.0, "reading the model folder")
    info = inspect_folder(spec, label=label)
    tf = import_transformers()
    from attn_desktop.core.model import capture

    capture.register()
    check_cancel()
    if info.model_type not in tf.CONFIG_MAPPING:
        raise UserError(f"{info.name}: unknown model type '{info.model_type}' for transformers {tf.__version__}")
    torch_device = resolve_device(device)
    report(0.1, "hashing the weights")
    hashes = {}
    for i, f in enumerate(info.weight_files):
        check_cancel()
        hashes[f.name] = weights_sha256(f, cancel=cancel)
        report(0.1 + 0.3 * (i + 1) / len(info.weight_files), "hashing the weights")

    report(0.4, "reading the tokenizer")
    tokenizer = _load_tokenizer(tf, info)
    check_cancel()
    report(0.5, "loading the weights")
    auto = getattr(tf, AUTO_CLASSES[info.kind])
    config = tf.AutoConfig.from_pretrained(info.path, local_files_only=True, trust_remote_code=False)
    try:
        model_class = auto._model_mapping[type(config)]
    except KeyError:
        raise UserError(f"{info.name}: {info.model_type} has no {info.kind} model class in transformers") from None
    interface = capture.dispatches_through_interface(model_class)
    impl = capture.IMPL_NAME if interface else "eager"
    from attn_desktop.core.model.prune import pruned_class, pruned_layout

    if pruned_layout(config):  # a folder written by `attn-desktop prune`: layers hold fewer heads
        model_class = pruned_class(model_class, pruned_layout(config), info.kind == "encoder-decoder")
    if not pruned_layout(config):
        from attn_desktop.core.model.consistency import check_shapes_on_meta

        check_shapes_on_meta(info.name, model_class, config, info.tensor_shapes)
    try:
        model, loading_info = model_class.from_pretrained(
            info.path, config=config, local_files_only=True, trust_remote_code=False,
            use_safetensors=True, attn_implementation=impl, output_loading_info=True,
        )
    except UserError:
        raise
    except Exception as exc:  # transformers raises many types for a damaged folder
        raise UserError(f"{info.name}: the weights could not be loaded ({_one_line(exc)})") from None
    missing = [k for k in loading_info.get("missing_keys", []) if "pooler" not in k]
    if missing:
        raise UserError(
            f"{info.name}: the weights lack {len(missing)} tensor(s) the {model_class.__name__} needs "
            f"(first: {sorted(missing)[0]})"
        )
    model.eval().to(torch_device)
    config = model.config
    layers, dec_layers = _layer_counts(config, info)
    report(1.0, "loaded")
    return LoadedModel(
        info=info, model=model, tokenizer=tokenizer, device=torch_device,
        capture_mode=CAPTURE_INTERFACE if interface else CAPTURE_EAGER, weights_sha256=hashes,
        load_seconds=time.perf_counter() - started, num_layers=layers, num_decoder_layers=dec_layers,
        num_heads=int(getattr(config, "num_attention_heads", info.num_heads)),
    )


def _layer_counts(config, info: FolderInfo) -> tuple[int, int | None]:
    if info.kind != "encoder-decoder":
        return int(getattr(config, "num_hidden_layers", info.num_layers)), None
    enc = getattr(config, "encoder_layers", None) or getattr(config, "num_layers", None)
    dec = getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None) or enc
    return int(enc), int(dec)


def _load_tokenizer(tf, info: FolderInfo):
    try:
        tokenizer = tf.AutoTokenizer.from_pretrained(info.path, local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise UserError(f"{info.name}: the tokenizer could not be loaded ({_one_line(exc)})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(
            f"{info.name}: only a slow tokenizer is available; attn-desktop needs tokenizer.json "
            "(a fast tokenizer) for character offsets"
        )
    return tokenizer


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:300]
