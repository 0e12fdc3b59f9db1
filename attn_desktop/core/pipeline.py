"""analyze(): text in, an Analysis with every layer's and head's attention out."""

from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from attn_desktop import __version__
from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.loading import CAPTURE_EAGER, LoadedModel
from attn_desktop.core.tokens import build_tokens

DEFAULT_SEQ2SEQ_TOKENS = 20
Progress = Callable[[float, str], None]


def check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise UserError("the text is empty: there is nothing to analyse")
    if "\x00" in text:
        raise UserError("the text contains NUL characters; it looks like binary data, not text")
    return text


def _encode(loaded: LoadedModel, text: str, reserve: int, truncate: bool) -> tuple[dict, dict]:
    tok = loaded.tokenizer
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True, add_special_tokens=True)
    enc = tok(text, **kwargs)
    n = len(enc["input_ids"])
    limit = loaded.max_positions
    info = {"tokens_before_truncation": n, "truncated": False}
    if limit is not None and n + reserve > limit:
        room = limit - reserve
        if room < 2:
            raise UserError(f"--generate {reserve} leaves no room for the text in {limit} positions")
        what = f"{n} tokens" + (f" + {reserve} to generate" if reserve else "")
        if not truncate:
            raise UserError(
                f"the text is {what}, but {loaded.name} accepts at most {limit} positions; "
                "shorten it or use --truncate"
            )
        enc = tok(text, truncation=True, max_length=room, **kwargs)
        info["truncated"] = True
    return enc, info


def _decoded_spans(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]], list[bool]]:
    """Text decoded from ids, with each id's span in it, found by decoding growing prefixes."""
    special_ids = set(tokenizer.all_special_ids)
    text, spans, special = "", [], []
    for k in range(len(ids)):
        current = tokenizer.decode(ids[: k + 1], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        is_special = ids[k] in special_ids
        if current.startswith(text) and not is_special:
            spans.append((len(text), len(current)))
        else:
            spans.append((len(current), len(current)))
        special.append(is_special)
        text = current
    return text, spans, special


def _as_tensor(ids, device):
    import torch

    return torch.tensor([list(ids)], dtype=torch.long, device=device)


def analyze(
    loaded: LoadedModel,
    text: str,
    *,
    truncate: bool = False,
    generate: int | None = None,
    target_text: str | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Analysis:
    """Run the model once over `text` and capture every layer's and head's attention."""

    started = time.perf_counter()
    report = progress or (lambda f, m: None)
    check_text(text)
    if generate is not None and generate < 1:
        raise UserError("--generate needs a positive number of tokens")
    if generate and target_text is not None:
        raise UserError("give either --generate or --target-text, not both")
    generative = loaded.kind in ("causal-lm", "encoder-decoder")
    if (generate or target_text is not None) and not generative:
        raise UserError(f"{loaded.name} is a {loaded.kind} model: generation needs a causal LM or encoder-decoder")
    if target_text is not None and not target_text.strip():
        raise UserError("the target text is empty")
    if loaded.is_encoder_decoder and not generate and target_text is None:
        generate = DEFAULT_SEQ2SEQ_TOKENS

    def check_cancel():
        if cancel is not None and cancel():
            raise Cancelled()

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tok = loaded.tokenizer
    reserve = 0
    target_ids: list[int] = []
    if loaded.kind == "causal-lm":
        if target_text is not None:
            target_ids = tok(target_text, add_special_tokens=False)["input_ids"]
            reserve = len(target_ids)
        elif generate:
            reserve = generate
    enc, trunc_info = _encode(loaded, text, reserve, truncate)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    specials = [bool(s) for s in enc["special_tokens_mask"]]
    pieces = tok.convert_ids_to_tokens(ids)
    timings["tokenize"] = time.perf_counter() - t0
    check_cancel()
    report(0.05, "tokenized")

    device = loaded.device
    model = loaded.model
    manifest_gen: dict[str, Any] = {}
    full_text = text
    generated_flags = [False] * len(ids)
    decoder_text = None
    decoder_ids: list[int] | None = None
    dec_spans: list[tuple[int, int]] = []
    dec_special: list[bool] = []
    dec_generated: list[bool] = []

    t0 = time.perf_counter()
    if loaded.kind == "causal-lm" and (generate or target_ids):
        if generate:
            out_ids = _greedy(model, tok, ids, generate, device)
            source = "greedy"
        else:
            out_ids, source = target_ids, "target-text"
        out_text, spans, out_special = _decoded_spans(tok, out_ids)
        base = len(text)
        full_text = text + out_text
        ids = ids + out_ids
        offsets += [(base + s, base + e) for s, e in spans]
        specials += out_special
        pieces += tok.convert_ids_to_tokens(out_ids)
        generated_flags += [True] * len(out_ids)
        manifest_gen = {"source": source, "output_text": out_text, "output_tokens": len(out_ids),
                        "input_chars": len(text), "requested": generate or None}
    elif loaded.is_encoder_decoder:
        start_id = model.config.decoder_start_token_id
        if start_id is None:
            start_id = getattr(model.generation_config, "decoder_start_token_id", None)
        if target_text is not None:
            target = tok(text_target=target_text, add_special_tokens=True)
            decoder_ids = [start_id] + list(target["input_ids"])
            decoder_text, dec_spans, dec_special = _decoded_spans(tok, decoder_ids)
            dec_generated = [False] * len(decoder_ids)
            source = "target-text"
        else:
            decoder_ids = _greedy(model, tok, ids, generate, device, encoder_decoder=True)
            decoder_text, dec_spans, dec_special = _decoded_spans(tok, decoder_ids)
            dec_generated = [not s for s in dec_special]
            source = "greedy"
        limit = loaded.max_positions
        if limit is not None and len(decoder_ids) > limit:
            raise UserError(f"the decoder output is {len(decoder_ids)} tokens; {loaded.name} accepts {limit}")
        manifest_gen = {"source": source, "output_text": decoder_text, "output_tokens": len(decoder_ids),
                        "requested": generate or None}
    if manifest_gen:
        timings["generate"] = time.perf_counter() - t0
    check_cancel()
    report(0.15, "running the model")

    t0 = time.perf_counter()
    arrays = _capture(loaded, ids, decoder_ids, progress=report, cancel=cancel)
    timings["forward"] = time.perf_counter() - t0

    tokens = build_tokens(full_text, pieces, offsets, specials, generated_flags)
    decoder_tokens = None
    if decoder_ids is not None:
        decoder_tokens = build_tokens(
            decoder_text, tok.convert_ids_to_tokens(decoder_ids), dec_spans, dec_special, dec_generated
        )
    timings["total"] = time.perf_counter() - started
    manifest = build_manifest(loaded, full_text, tokens, decoder_text, decoder_tokens, timings)
    manifest["truncation"] = trunc_info
    manifest["input_ids"] = ids
    if decoder_ids is not None:
        manifest["decoder_input_ids"] = decoder_ids
    if manifest_gen:
        manifest["generation"] = manifest_gen
    report(1.0, "done")
    return Analysis(
        text=full_text, tokens=tokens, arrays=arrays, manifest=manifest,
        decoder_text=decoder_text, decoder_tokens=decoder_tokens,
    )


def _greedy(model, tok, ids, n, device, encoder_decoder=False) -> list[int]:
    import torch

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    inputs = _as_tensor(ids, device)
    with torch.no_grad():
        out = model.generate(
            input_ids=inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=n,
            do_sample=False, num_beams=1, pad_token_id=pad,
        )
    seq = out[0].tolist()
    return seq if encoder_decoder else seq[len(ids):]


def _capture(loaded: LoadedModel, ids, decoder_ids, *, progress, cancel) -> dict[str, np.ndarray]:
    import torch

    from attn_desktop.core import capture

    model = loaded.model
    inputs = {"input_ids": _as_tensor(ids, loaded.device)}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if decoder_ids is not None:
        inputs["decoder_input_ids"] = _as_tensor(decoder_ids, loaded.device)
    if loaded.kind == "causal-lm" or loaded.is_encoder_decoder:
        inputs["use_cache"] = False
    expected = loaded.expected_layers()
    total = sum(expected.values())

    if loaded.capture_mode == CAPTURE_EAGER:
        if cancel is not None and cancel():
            raise Cancelled()
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
        names = {"self": "attentions", "encoder": "encoder_attentions",
                 "decoder": "decoder_attentions", "cross": "cross_attentions"}
        stacks = {}
        for set_name, count in expected.items():
            got = getattr(out, names[set_name], None) or ()
            if len(got) != count:
                raise RuntimeError(f"captured {len(got)} {set_name} attention layers, the config has {count}")
            stacks[set_name] = torch.stack([g[0] for g in got]).to(torch.float16)
    else:
        done = [0]

        def on_layer(site):
            done[0] += 1
            progress(0.15 + 0.8 * done[0] / total, f"{site.set} layer {site.layer + 1}")

        plan = capture.CapturePlan(
            sites=loaded.site_of, cancel=cancel, on_layer=on_layer,
            layers=dict(expected),
        )
        with torch.no_grad(), capture.active(plan):
            model(**inputs)
        counts = plan.counts()
        if counts != expected:
            raise RuntimeError(f"captured attention layers {counts} differ from the config's {expected}")
        stacks = {name: plan.stacked(name)[:, 0] for name in expected}
    key = {"self": "attentions", "encoder": "encoder_attentions",
           "decoder": "decoder_attentions", "cross": "cross_attentions"}
    return {key[name]: np.ascontiguousarray(t.cpu().numpy()) for name, t in stacks.items()}


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    import transformers

    return {
        "attn_desktop": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "numpy": numpy.__version__,
    }


def build_manifest(loaded, text, tokens, decoder_text, decoder_tokens, timings) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "app": "attn-desktop",
        "app_version": __version__,
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": loaded.describe(),
        "device": loaded.device,
        "text": text,
        "tokens": [t.to_json() for t in tokens],
        "decoder_text": decoder_text,
        "decoder_tokens": None if decoder_tokens is None else [t.to_json() for t in decoder_tokens],
        "capture": {
            "method": loaded.capture_mode,
            "dtype": "float16",
            "recording_only": loaded.capture_mode == CAPTURE_EAGER,
            "layout": "[layers, heads, query, key]",
        },
        "timings": {k: round(v, 6) for k, v in timings.items()},
    }
