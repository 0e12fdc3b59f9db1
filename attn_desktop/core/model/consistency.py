"""The configuration checked against the weight files' own tensors (read from the safetensors
headers) before any model is built: a config.json that declares 100 000 layers, a wider hidden
size, a larger vocabulary or more positions than the weights hold is refused at once, instead of
building a model of that size and failing minutes and gigabytes later."""

from __future__ import annotations

import re

from attn_desktop.core.errors import UserError

# "<stack>.<layer|layers|h|block|blocks>.<i>." : the first such part of a tensor name
_LAYER = re.compile(r"^(?:(?P<stack>.*?)\.)??(?:layer|layers|h|block|blocks)\.(?P<index>\d+)\.")
_EMBEDDINGS = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "shared.weight",
               "tok_embeddings.weight")
_POSITIONS = ("position_embeddings.weight", "wpe.weight")
_OFFSET_POSITIONS = ("embed_positions.weight",)  # BART-style: max_position_embeddings + 2 rows


def layer_stacks(shapes: dict[str, list[int]]) -> dict[str, tuple[int, int]]:
    """Stacks of repeated blocks, from tensor names: {"bert.encoder": (layers, tensors), ...}."""
    stacks: dict[str, tuple[int, int]] = {}
    for name in shapes:
        match = _LAYER.match(name)
        if match:
            stack = match["stack"] or ""
            layers, tensors = stacks.get(stack, (0, 0))
            stacks[stack] = (max(layers, int(match["index"]) + 1), tensors + 1)
    return stacks


def _int(config: dict, *keys: str) -> tuple[str, int] | None:
    for key in keys:
        value = config.get(key)
        if type(value) is int:
            return key, value
    return None


def check_config_against_weights(label: str, config: dict, kind: str, shapes: dict[str, list[int]]) -> None:
    stacks = layer_stacks(shapes)
    if kind == "encoder-decoder":
        enc = _int(config, "encoder_layers", "num_layers")
        wanted = [("encoder", enc), ("decoder", _int(config, "decoder_layers", "num_decoder_layers") or enc)]
    else:
        wanted = [("", _int(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers"))]
    for part, declared in wanted:
        if part:
            found = [layers for stack, (layers, _) in stacks.items() if part in stack.split(".")]
        else:  # the stack with the most tensors
            found = [max(stacks.values(), key=lambda v: v[1])[0]] if stacks else []
        if declared is None or not found:
            continue
        key, value = declared
        if value != max(found):
            where = f"{part} " if part else ""
            raise UserError(f"{label}: config.json says {key} = {value}, but the weights hold "
                            f"{max(found)} {where}layers; the configuration does not match the weights")
    embedding = next((shapes[n] for n in sorted(shapes) if n.endswith(_EMBEDDINGS) and len(shapes[n]) == 2), None)
    if embedding is not None:
        width = _int(config, "embedding_size", "hidden_size", "d_model", "n_embd", "dim")
        if width is not None and width[1] != embedding[1]:
            raise UserError(f"{label}: config.json says {width[0]} = {width[1]}, but the weights' token "
                            f"embeddings are {embedding[1]} wide")
        vocab = _int(config, "vocab_size", "n_vocab")
        if vocab is not None and vocab[1] != embedding[0]:
            raise UserError(f"{label}: config.json says {vocab[0]} = {vocab[1]}, but the weights embed "
                            f"{embedding[0]} tokens")
    positions = _int(config, "max_position_embeddings", "n_positions")
    if positions is not None:
        for name in sorted(shapes):
            rows = shapes[name][0] if len(shapes[name]) == 2 else None
            if rows is None:
                continue
            allowed = ({positions[1]} if name.endswith(_POSITIONS) else
                       {positions[1], positions[1] + 2} if name.endswith(_OFFSET_POSITIONS) else None)
            if allowed is not None and rows not in allowed:
                raise UserError(f"{label}: config.json says {positions[0]} = {positions[1]}, but the weights "
                                f"hold {rows} position embeddings")


def check_shapes_on_meta(label: str, model_class, config, shapes: dict[str, list[int]]) -> None:
    """Build the model on PyTorch's meta device (no memory for its weights) and compare the shape
    of every tensor it would load with the weight file's: a config.json whose sizes differ from
    the weights (an intermediate size of 10^8, say) is refused before transformers allocates the
    model it describes. Names may differ by the base model's prefix, as from_pretrained allows."""
    import copy

    import torch

    try:
        with torch.device("meta"):
            probe = model_class(copy.deepcopy(config))
    except Exception:  # a model that cannot be built this way is left to from_pretrained to judge
        return
    expected = {name: tuple(t.shape) for name, t in probe.state_dict().items()}
    prefix = getattr(probe, "base_model_prefix", "") or ""
    del probe
    for name in sorted(shapes):
        candidates = [name]
        if prefix:
            candidates.append(name[len(prefix) + 1:] if name.startswith(prefix + ".") else f"{prefix}.{name}")
        for candidate in candidates:
            if candidate in expected:
                if tuple(shapes[name]) != expected[candidate]:
                    raise UserError(f"{label}: config.json describes {name} as {list(expected[candidate])}, but "
                                    f"the weights hold {list(shapes[name])}; the configuration does not match "
                                    "the weights")
                break
