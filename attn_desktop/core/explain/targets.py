"""What is being explained: one scalar the model outputs for a text (the target).

A target spec is a plain JSON dict (see docs/explain.md); `resolve_target` turns it into a
`Target` for one input, fixing everything that must stay fixed while the input or the
attention is changed (the class, token, label or position read, the label embeddings).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from attn_desktop.core.errors import UserError

KINDS = ("auto", "class", "next-token", "seq2seq-token", "masked-token", "zero-shot", "reference")
DEFAULT_TEMPERATURE = 0.05
_FOR_MODEL = {
    "sequence-classification": ("class",),
    "causal-lm": ("next-token",),
    "encoder-decoder": ("seq2seq-token",),
    "masked-lm": ("masked-token",),
    "encoder": ("zero-shot", "reference"),
}


def normalise_spec(spec: dict | None) -> dict[str, Any]:
    """The spec with every key present; raises UserError for a malformed one."""
    spec = dict(spec or {})
    unknown = set(spec) - {"kind", "class", "token", "labels", "label", "reference", "temperature", "position"}
    if unknown:
        raise UserError(f"unknown target option {sorted(unknown)[0]!r}")
    out = {"kind": spec.get("kind") or "auto", "class": spec.get("class"), "token": spec.get("token"),
           "labels": spec.get("labels"), "label": spec.get("label"), "reference": spec.get("reference"),
           "temperature": spec.get("temperature"), "position": spec.get("position")}
    if out["kind"] not in KINDS:
        raise UserError(f"unknown target kind {out['kind']!r}: choose from {', '.join(KINDS)}")
    if out["temperature"] is None:
        out["temperature"] = DEFAULT_TEMPERATURE
    try:
        out["temperature"] = float(out["temperature"])
    except (TypeError, ValueError):
        raise UserError(f"the temperature must be a number, got {out['temperature']!r}") from None
    if not out["temperature"] > 0:
        raise UserError("the temperature must be positive")
    if out["labels"] is not None:
        labels = [str(x).strip() for x in out["labels"] if str(x).strip()]
        if len(labels) < 2:
            raise UserError("zero-shot needs at least two labels")
        if len({x.lower() for x in labels}) != len(labels):
            raise UserError("the labels contain the same text twice")
        out["labels"] = labels
    if out["reference"] is not None and not str(out["reference"]).strip():
        raise UserError("the reference text is empty")
    return out


def _auto_kind(loaded, spec: dict) -> str:
    kind = loaded.kind
    if kind == "encoder":
        if spec["labels"] is not None and spec["reference"] is not None:
            raise UserError("give either labels or a reference text, not both")
        if spec["labels"] is not None:
            return "zero-shot"
        if spec["reference"] is not None:
            return "reference"
        raise UserError(
            f"{loaded.name} has no task head: give labels (--labels FILE) or a reference text "
            "(--reference TEXT) to say what to explain"
        )
    return _FOR_MODEL[kind][0]


_OPTION_KINDS = {
    "class": ("class",), "token": ("next-token", "seq2seq-token", "masked-token"),
    "labels": ("zero-shot",), "label": ("zero-shot",), "reference": ("reference",), "position": ("seq2seq-token",),
}
_OPTION_NAMES = {"class": "a target class", "token": "a target token", "labels": "labels", "label": "a target label",
                 "reference": "a reference text", "position": "a decoder position"}


def check_fits(loaded, spec: dict) -> str:
    """The target kind for this model and spec; refuses options that the kind would ignore."""
    kind = spec["kind"] if spec["kind"] != "auto" else _auto_kind(loaded, spec)
    if kind not in _FOR_MODEL[loaded.kind]:
        allowed = " or ".join(_FOR_MODEL[loaded.kind])
        raise UserError(f"a {kind} target does not apply to {loaded.name}, a {loaded.kind} model (use {allowed})")
    for option, kinds in _OPTION_KINDS.items():
        if spec.get(option) is not None and kind not in kinds:
            raise UserError(f"{_OPTION_NAMES[option]} does not apply to a {kind} target ({loaded.name} is a "
                            f"{loaded.kind} model)")
    return kind


@dataclass
class Target:
    """One scalar output of the model for one input; see docs/explain.md for the calls."""

    kind: str
    definition: dict[str, Any]
    input_ids: list[int]
    special: list[bool]
    embedding_layer: str
    value: float = float("nan")
    predicted: str | None = None
    has_distribution: bool = True
    _index: int | None = None  # class / token id / label index read
    _position: int | None = None  # masked-LM mask position; seq2seq decoder position
    _decoder_ids: list[int] | None = None
    _anchors: Any = field(default=None, repr=False)  # label or reference embeddings [K, d], unit norm

    # -- running the model ----------------------------------------------------------------

    def _inputs(self, loaded, ids, mask=None) -> dict[str, Any]:
        import torch

        if mask is None:
            mask = torch.ones(ids.shape[:2], dtype=torch.long, device=ids.device)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if loaded.kind == "causal-lm" or loaded.is_encoder_decoder:
            inputs["use_cache"] = False
        if loaded.is_encoder_decoder:
            dec = torch.tensor([self._decoder_ids[: self._position]], device=ids.device)
            inputs["decoder_input_ids"] = dec.expand(ids.shape[0], -1)
        return inputs

    def _run(self, loaded, plan, **inputs):
        from attn_desktop.core.model import capture

        ctx = capture.active(plan) if plan is not None else contextlib.nullcontext()
        batched = self.kind == "class" and inputs["input_ids"].shape[0] > 1
        with ctx, _unpadded_batches(loaded.model, batched):
            return loaded.model(**inputs)

    def _read(self, out, mask, positions=None):
        """(value [B], distribution [B, K] or None) from model outputs."""
        import torch

        k = self.kind
        if k == "class":
            logits = out.logits.float()
            if not self.has_distribution:
                return logits[:, 0], None
            probs = torch.softmax(logits, dim=-1)
            return probs[:, self._index], probs
        if k in ("next-token", "seq2seq-token"):
            logits = out.logits[:, -1].float()
            logp = torch.log_softmax(logits, dim=-1)
            return logp[:, self._index], logp.exp()
        if k == "masked-token":
            rows = torch.arange(out.logits.shape[0], device=out.logits.device)
            pos = positions if positions is not None else torch.full_like(rows, self._position)
            probs = torch.softmax(out.logits[rows, pos].float(), dim=-1)
            return probs[:, self._index], probs
        pooled = _mean_pool(out.last_hidden_state.float(), mask)
        cos = torch.nn.functional.normalize(pooled, dim=-1) @ self._anchors.T
        if k == "reference":
            return cos[:, 0], None
        probs = torch.softmax(cos / self.definition["temperature"], dim=-1)
        return probs[:, self._index], probs

    def both(self, loaded, ids, attention_mask=None, plan=None, positions=None):
        """(target [B], distribution [B, K] or None) in one forward pass over token ids."""
        inputs = self._inputs(loaded, ids=ids, mask=attention_mask)
        return self._read(self._run(loaded, plan, **inputs), inputs["attention_mask"], positions)

    def evaluate(self, loaded, ids, attention_mask=None, plan=None, positions=None):
        """The target for every row of `ids` [B, n]: Tensor [B]."""
        return self.both(loaded, ids, attention_mask, plan, positions)[0]

    def distribution(self, loaded, ids, attention_mask=None, plan=None, positions=None):
        """The output distribution (classes, labels or vocabulary) per row, or None."""
        return self.both(loaded, ids, attention_mask, plan, positions)[1]

    def embedding_module(self, loaded):
        model = loaded.model
        if loaded.is_encoder_decoder:
            return model.get_encoder().get_input_embeddings()
        return model.get_input_embeddings()

    def embed(self, loaded, ids):
        """Input embeddings (the output of `embedding_layer`) for ids [B, n]."""
        return self.embedding_module(loaded)(ids)

    def evaluate_embeds(self, loaded, embeds, attention_mask=None, plan=None):
        """The target with the input-embedding layer's output replaced by `embeds` [B, n, d] for this
        input's n tokens (gradients flow back to them). The model runs on its token ids as usual,
        so whatever it does after that layer (scaling, positions) stays as its authors wrote it;
        passing inputs_embeds instead would skip, e.g., Marian's sqrt(d) scale."""
        import torch

        if embeds.shape[1] != len(self.input_ids):
            raise ValueError(f"embeddings for {embeds.shape[1]} tokens, the input has {len(self.input_ids)}")
        ids = torch.tensor([self.input_ids], device=embeds.device).expand(embeds.shape[0], -1)
        with _replaced_output(self.embedding_module(loaded), embeds):
            return self.evaluate(loaded, ids, attention_mask, plan)

    def ids_tensor(self, loaded, rows: int = 1):
        import torch

        return torch.tensor([self.input_ids] * rows, dtype=torch.long, device=loaded.device)


@contextlib.contextmanager
def _replaced_output(module, output):
    """The module's first call returns `output` (the encoder runs before a decoder that might share
    the embedding module)."""
    calls = [0]

    def hook(mod, args, out):
        calls[0] += 1
        return output if calls[0] == 1 else out

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _unpadded_batches(model, batched: bool):
    """Decoder-only classifiers (GPT-2, Llama, ...) without a pad token refuse batches, because they
    could not find each row's last real token. Rows here are never padded, so a pad id that never
    occurs makes them read every row's last position, as a batch of one does."""
    config = model.config
    if not batched or getattr(config, "pad_token_id", 0) is not None:
        yield
        return
    config.pad_token_id = -1
    try:
        yield
    finally:
        config.pad_token_id = None


def _mean_pool(hidden, mask):
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _module_name(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    return type(module).__name__


def _token_id(loaded, token) -> int:
    tok = loaded.tokenizer
    vocab_size = loaded.model.get_output_embeddings().weight.shape[0]
    if isinstance(token, int) or (isinstance(token, str) and token.strip().isdigit() and token not in tok.get_vocab()):
        tid = int(token)
        if not 0 <= tid < vocab_size:
            raise UserError(f"token id {tid} does not exist: the vocabulary has ids 0 to {vocab_size - 1}")
        return tid
    if not isinstance(token, str) or token == "":
        raise UserError("the target token is empty")
    vocab = tok.get_vocab()
    if token in vocab:
        return int(vocab[token])
    ids = tok(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tok.convert_ids_to_tokens(ids)
        raise UserError(
            f"{token!r} is {len(ids)} tokens for this tokenizer ({' '.join(pieces)}); give one token or its id"
        )
    return int(ids[0])


def _token_text(loaded, tid: int) -> str:
    return loaded.tokenizer.convert_ids_to_tokens([tid])[0]


def _embed_texts(loaded, texts: list[str]):
    import torch

    tok, model = loaded.tokenizer, loaded.model
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt").to(loaded.device)
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    pooled = _mean_pool(out.last_hidden_state.float(), enc["attention_mask"])
    return torch.nn.functional.normalize(pooled, dim=-1)


def _pick_label(labels: list[str], label) -> int | None:
    if label is None:
        return None
    if isinstance(label, int) or (isinstance(label, str) and label.strip().isdigit()):
        i = int(label)
        if not 0 <= i < len(labels):
            raise UserError(f"label {i} does not exist: there are labels 0 to {len(labels) - 1}")
        return i
    wanted = str(label).strip().lower()
    for i, text in enumerate(labels):
        if text.lower() == wanted:
            return i
    for i, text in enumerate(labels):  # "cardiology" names "cardiology: heart failure, ..."
        if ":" in text and text.split(":", 1)[0].strip().lower() == wanted:
            return i
    raise UserError(f"{label!r} is not one of the labels ({'; '.join(labels[:5])}{' ...' if len(labels) > 5 else ''})")


def special_flags(loaded, input_ids: list[int], special: list[bool] | None = None) -> list[bool]:
    ids_special = set(loaded.tokenizer.all_special_ids)
    flags = [i in ids_special for i in input_ids]
    if special is not None:
        flags = [a or bool(b) for a, b in zip(flags, special, strict=True)]
    return flags


def resolve_target(loaded, input_ids: list[int], spec: dict | None, decoder_ids: list[int] | None = None,
                   special: list[bool] | None = None) -> Target:
    """A Target for this input; computes f(x) and the prediction once. Raises UserError when the
    spec does not fit the model or the text (one line that says what to do)."""
    import torch

    spec = normalise_spec(spec)
    kind = check_fits(loaded, spec)
    if loaded.is_encoder_decoder and not decoder_ids:
        raise UserError("an encoder-decoder target needs the decoder's output tokens")
    input_ids = [int(i) for i in input_ids]
    target = Target(kind=kind, definition={"kind": kind}, input_ids=input_ids,
                    special=special_flags(loaded, input_ids, special), embedding_layer="")
    target.embedding_layer = _module_name(loaded.model, target.embedding_module(loaded))
    d = target.definition
    config = loaded.model.config
    if kind == "masked-token":
        mask_id = loaded.tokenizer.mask_token_id
        if mask_id is None or mask_id not in input_ids:
            mark = loaded.tokenizer.mask_token or "the mask token"
            raise UserError(f"the text has no {mark}: put {mark} where the word to predict goes, "
                            f"e.g. 'The rent is due on the first {mark} of the month.'")
        target._position = input_ids.index(mask_id)
        d.update(position=target._position, reads="softmax probability at the first mask position")
    elif kind == "seq2seq-token":
        position = int(spec["position"] or 1)
        if not 1 <= position < len(decoder_ids):
            raise UserError(f"decoder position {position} does not exist: the output has positions 1 to {len(decoder_ids) - 1}")
        target._position, target._decoder_ids = position, list(decoder_ids)
        d.update(position=position, decoder_prefix_ids=list(decoder_ids[:position]),
                 decoder_prefix=loaded.tokenizer.convert_ids_to_tokens(decoder_ids[:position]),
                 reads="log-softmax of the token at this decoder position given the prefix")
    elif kind == "next-token":
        d.update(position=len(input_ids) - 1, reads="log-softmax of the next token after the last input token")
    elif kind in ("zero-shot", "reference"):
        if kind == "zero-shot":
            if spec["labels"] is None:
                raise UserError("zero-shot needs labels (--labels FILE)")
            anchors = spec["labels"]
            d.update(labels=list(anchors), temperature=spec["temperature"],
                     reads="softmax over labels of cos(mean_pool(text), mean_pool(label)) / temperature")
        else:
            if spec["reference"] is None:
                raise UserError("a reference target needs a reference text (--reference TEXT)")
            anchors = [str(spec["reference"])]
            d.update(reference=anchors[0], reads="cos(mean_pool(text), mean_pool(reference))")
        d["pooling"] = "mean of the last hidden states over the attention mask (all tokens, specials included)"
        target._anchors = _embed_texts(loaded, anchors)
        target.has_distribution = kind == "zero-shot"
    elif kind == "class":
        labels = getattr(config, "num_labels", 2)
        target.has_distribution = labels > 1
        d["reads"] = "softmax probability of the class" if labels > 1 else "the regression output (one logit)"

    ids = target.ids_tensor(loaded)
    with torch.no_grad():
        out = target._run(loaded, None, **target._inputs(loaded, ids=ids))
        target._index = 0
        dist = target._read(out, torch.ones_like(ids))[1]
        predicted = int(dist[0].argmax()) if dist is not None else None
        chosen = _chosen_index(loaded, target, spec, predicted)
        target._index = chosen
        target.value = float(target._read(out, torch.ones_like(ids))[0][0])
    target.predicted = _name_of(loaded, target, predicted)
    if kind == "class" and target.has_distribution:
        d.update({"class": chosen, "class_label": _class_label(config, chosen)})
    elif kind in ("next-token", "seq2seq-token", "masked-token"):
        d.update(token_id=chosen, token=_token_text(loaded, chosen))
    elif kind == "zero-shot":
        d.update(label_index=chosen, label=d["labels"][chosen])
    d["chosen"] = "given" if _given(spec, kind) else ("predicted" if target.has_distribution else "the only output")
    d["embedding_layer"] = target.embedding_layer
    return target


def _given(spec, kind) -> bool:
    key = {"class": "class", "zero-shot": "label"}.get(kind, "token")
    return kind != "reference" and spec.get(key) is not None


def _chosen_index(loaded, target: Target, spec: dict, predicted: int | None) -> int | None:
    kind = target.kind
    if kind == "reference":
        return 0
    if kind == "class":
        if not target.has_distribution:
            return 0
        labels = loaded.model.config.num_labels
        given = spec["class"]
        if given is None:
            return predicted
        try:
            given = int(given)
        except (TypeError, ValueError):
            names = {str(v).lower(): int(k) for k, v in (loaded.model.config.id2label or {}).items()}
            if str(given).lower() in names:
                return names[str(given).lower()]
            raise UserError(f"class {given!r} is neither a number nor one of {sorted(names)}") from None
        if not 0 <= given < labels:
            raise UserError(f"class {given} does not exist: {loaded.name} has classes 0 to {labels - 1}")
        return given
    if kind == "zero-shot":
        picked = _pick_label(target.definition["labels"], spec["label"])
        return predicted if picked is None else picked
    if spec["token"] is None:
        return predicted
    return _token_id(loaded, spec["token"])


def _class_label(config, index: int) -> str:
    labels = getattr(config, "id2label", None) or {}
    return str(labels.get(index, labels.get(str(index), f"class {index}")))


def _name_of(loaded, target: Target, predicted: int | None) -> str | None:
    if predicted is None:
        return None
    if target.kind == "class":
        return _class_label(loaded.model.config, predicted)
    if target.kind == "zero-shot":
        return target.definition["labels"][predicted]
    return _token_text(loaded, predicted)
