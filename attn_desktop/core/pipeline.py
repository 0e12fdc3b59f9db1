"""analyze(): text in, an Analysis with every layer's and head's attention out."""

from __future__ import annotations

import datetime as _dt
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_desktop import __version__
from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.model.loading import CAPTURE_EAGER, LoadedModel
from attn_desktop.core.tokens import build_tokens, readable_pieces

DEFAULT_SEQ2SEQ_TOKENS = 20
Progress = Callable[[float, str], None]


def check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise UserError("the text is empty: there is nothing to analyse")
    if "\x00" in text:
        raise UserError("the text contains NUL characters; it looks like binary data, not text")
    return text


@dataclass
class _Sequence:
    """Token ids with what build_tokens needs to turn them into Tokens of `text`."""

    text: str
    ids: list[int]
    pieces: list[str]
    offsets: list[tuple[int, int]]
    special: list[bool]
    generated: list[bool]
    unk_id: int | None = None  # the tokenizer's unknown-token id: marks text the model never saw

    def tokens(self):
        unknown = [self.unk_id is not None and i == self.unk_id for i in self.ids]
        return build_tokens(self.text, self.pieces, self.offsets, self.special, self.generated, unknown)

    def extended(self, tail: _Sequence) -> _Sequence:
        """This sequence followed by `tail`, whose offsets move behind this text."""
        base = len(self.text)
        return _Sequence(
            self.text + tail.text, self.ids + tail.ids, self.pieces + tail.pieces,
            self.offsets + [(base + s, base + e) for s, e in tail.offsets],
            self.special + tail.special, self.generated + tail.generated, self.unk_id,
        )


def _encode(loaded: LoadedModel, text: str, reserve: int, truncate: bool,
            truncate_hint: str = "--truncate", windows_hint: str = "--windows") -> tuple[_Sequence, dict]:
    tok = loaded.tokenizer
    kwargs = dict(return_offsets_mapping=True, return_special_tokens_mask=True, add_special_tokens=True)
    enc = tok(text, **kwargs)
    n = len(enc["input_ids"])
    limit = loaded.max_positions
    info = {"tokens_before_truncation": n, "truncated": False}
    if limit is not None and n + reserve > limit:
        room = limit - reserve
        if room < 2:
            raise UserError(f"{reserve} output tokens leave no room for the text in {limit} positions")
        what = f"{n} tokens" + (f" + {reserve} output tokens" if reserve else "")
        if not truncate:
            from attn_desktop.core.windows import WINDOW_KINDS

            windows = f"analyse it in overlapping windows ({windows_hint}), " if (
                not reserve and loaded.kind in WINDOW_KINDS) else ""
            raise UserError(
                f"the text is {what}, but {loaded.name} accepts at most {limit} positions; "
                f"shorten it, {windows}or allow truncation ({truncate_hint})"
            )
        enc = tok(text, truncation=True, max_length=room, **kwargs)
        info["truncated"] = True
    ids = list(enc["input_ids"])
    seq = _Sequence(
        text, ids, readable_pieces(tok, tok.convert_ids_to_tokens(ids)), [tuple(o) for o in enc["offset_mapping"]],
        [bool(s) for s in enc["special_tokens_mask"]], [False] * len(ids), tok.unk_token_id,
    )
    if info["truncated"]:
        spans = [e for (s, e), sp in zip(seq.offsets, seq.special, strict=True) if e > s and not sp]
        info["analysed_chars"] = max(spans, default=0)  # the text from here on is outside the analysis
    return seq, info


def _decoded(tokenizer, ids: list[int], generated: bool) -> _Sequence:
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
    flags = [generated and not s for s in special]
    return _Sequence(text, list(ids), readable_pieces(tokenizer, tokenizer.convert_ids_to_tokens(ids)), spans, special, flags,
                     tokenizer.unk_token_id)


def _as_tensor(ids, device):
    import torch

    return torch.tensor([list(ids)], dtype=torch.long, device=device)


def _check_request(loaded: LoadedModel, text: str, generate: int | None, target_text: str | None) -> int | None:
    """Validate the request; returns how many tokens to generate (encoder-decoders default to some)."""
    check_text(text)
    if generate is not None and generate < 1:
        raise UserError("--generate needs a positive number of tokens")
    if generate and target_text is not None:
        raise UserError("give either --generate or --target-text, not both")
    if (generate or target_text is not None) and loaded.kind not in ("causal-lm", "encoder-decoder"):
        raise UserError(f"{loaded.name} is a {loaded.kind} model: generation needs a causal LM or encoder-decoder")
    if target_text is not None and not target_text.strip():
        raise UserError("the target text is empty")
    if loaded.is_encoder_decoder and not generate and target_text is None:
        return DEFAULT_SEQ2SEQ_TOKENS
    return generate


def _decoder_sequence(loaded: LoadedModel, source_ids, generate, target_text) -> _Sequence:
    model, tok = loaded.model, loaded.tokenizer
    if target_text is not None:
        start_id = model.config.decoder_start_token_id
        if start_id is None:
            start_id = getattr(model.generation_config, "decoder_start_token_id", None)
        target = tok(text_target=target_text, add_special_tokens=True)
        seq = _decoded(tok, [start_id] + list(target["input_ids"]), generated=False)
    else:
        seq = _decoded(tok, _greedy(model, tok, source_ids, generate, loaded.device, encoder_decoder=True), True)
    limit = loaded.max_positions
    if limit is not None and len(seq.ids) > limit:
        raise UserError(f"the decoder output is {len(seq.ids)} tokens; {loaded.name} accepts {limit}")
    return seq


def analyze(
    loaded: LoadedModel,
    text: str,
    *,
    truncate: bool = False,
    truncate_hint: str = "--truncate",
    windows_hint: str = "--windows",
    generate: int | None = None,
    target_text: str | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    methods: list[str] | None = None,
    target: dict | None = None,
    explain_options: dict | None = None,
    heads_options: dict | None = None,
    windows: dict | None = None,
    mapped: str | None = None,
    mapped_from: int | None = None,
) -> Analysis:
    """Run the model once over `text` and capture every layer's and head's attention.

    Causal LMs: `generate` appends up to N greedy tokens, `target_text` appends given ones
    (teacher forcing); both become part of `Analysis.text`, flagged `generated`. Encoder-decoders:
    the output is the decoder's sequence (greedy by default, or `target_text`). `truncate_hint` names,
    in the too-long message, where the caller's user allows truncation (a flag, a menu entry).
    `methods` with explanation names (docs/explain.md) adds the explanation stage for `target`.
    `windows` ({'size', 'stride', 'only_if_long'}) analyses the text in overlapping windows
    (core.windows, docs/windows.md). `mapped` (a folder) keeps the attention on disk, computed a few
    heads at a time (core.model.mapped, for inputs of thousands of tokens); with `mapped_from`
    (bytes) only when the rule of core.model.mapped.on_disk holds, else in memory as usual."""
    started = time.perf_counter()
    report = progress or (lambda f, m: None)
    if windows is not None:
        from attn_desktop.core import windows as windowing

        check_text(text)
        windowed = windowing.from_pipeline(
            loaded, text, windows, methods=methods, generating=bool(generate) or target_text is not None,
            progress=progress, cancel=cancel, analyze_one=analyze, target=target, explain_options=explain_options)
        if windowed is not None:
            return windowed
    generate = _check_request(loaded, text, generate, target_text)
    from attn_desktop.core.explain import heads_stage
    from attn_desktop.core.explain import run as explain_run

    explaining = explain_run.wants_explanation(methods)
    heads = heads_stage.wants_heads(methods)
    if explaining or heads:
        explain_run.check_request(loaded, methods, target, explain_options)
        heads_stage.parse_options(heads_options)
        whole = report
        report = lambda f, m: whole(0.3 * f, m)  # noqa: E731  the model run takes the first 30 %
    explain_end = 0.65 if heads and explaining else 1.0  # heads (issue 9) take the rest

    def check_cancel():
        if cancel is not None and cancel():
            raise Cancelled()

    timings: dict[str, float] = {}
    tok = loaded.tokenizer
    target_ids: list[int] = []
    if loaded.kind == "causal-lm" and target_text is not None:
        target_ids = tok(target_text, add_special_tokens=False)["input_ids"]
    reserve = (len(target_ids) or generate or 0) if loaded.kind == "causal-lm" else 0
    t0 = time.perf_counter()
    seq, trunc_info = _encode(loaded, text, reserve, truncate, truncate_hint, windows_hint)
    timings["tokenize"] = time.perf_counter() - t0
    check_cancel()
    report(0.05, "tokenized")

    t0 = time.perf_counter()
    generation: dict[str, Any] = {}
    decoder: _Sequence | None = None
    if loaded.kind == "causal-lm" and reserve:
        out_ids = _greedy(loaded.model, tok, seq.ids, generate, loaded.device) if generate else target_ids
        tail = _decoded(tok, out_ids, generated=True)
        tail.generated = [True] * len(out_ids)
        generation = {"source": "greedy" if generate else "target-text", "output_text": tail.text,
                      "output_tokens": len(out_ids), "input_chars": len(text), "requested": generate}
        seq = seq.extended(tail)
    elif loaded.is_encoder_decoder:
        decoder = _decoder_sequence(loaded, seq.ids, generate, target_text)
        generation = {"source": "target-text" if target_text is not None else "greedy",
                      "output_text": decoder.text, "output_tokens": len(decoder.ids), "requested": generate}
    if generation:
        timings["generate"] = time.perf_counter() - t0
    if explaining or heads:
        from attn_desktop.core.explain import memory

        memory.check_fits(loaded, len(seq.ids), len(decoder.ids) if decoder else 0, windows_hint)
    check_cancel()
    report(0.15, "running the model")

    t0 = time.perf_counter()
    if mapped is not None and mapped_from is not None:
        from attn_desktop.core.model import mapped as mapped_capture

        if decoder is not None or explaining or heads or not mapped_capture.on_disk(loaded, len(seq.ids), mapped_from):
            mapped = None
    if mapped is not None:
        from attn_desktop.core.model import mapped as mapped_capture

        if decoder is not None or explaining or heads:
            raise UserError("memory-mapped capture is for one sequence, without explanations or heads")
        arrays = mapped_capture.capture(loaded, seq.ids, mapped, progress=report, cancel=cancel)
    else:
        arrays = _capture(loaded, seq.ids, decoder.ids if decoder else None, progress=report, cancel=cancel)
    timings["forward"] = time.perf_counter() - t0

    tokens = seq.tokens()
    decoder_tokens = decoder.tokens() if decoder else None
    decoder_text = decoder.text if decoder else None
    timings["total"] = time.perf_counter() - started
    manifest = build_manifest(loaded, seq.text, tokens, decoder_text, decoder_tokens, timings)
    manifest["truncation"] = trunc_info
    if mapped is not None:
        manifest["capture"]["storage"] = mapped_capture.STORAGE
    manifest["input_ids"] = seq.ids
    if decoder is not None:
        manifest["decoder_input_ids"] = decoder.ids
    if generation:
        manifest["generation"] = generation
    analysis = Analysis(
        text=seq.text, tokens=tokens, arrays=arrays, manifest=manifest,
        decoder_text=decoder_text, decoder_tokens=decoder_tokens,
    )
    if explaining:
        t0 = time.perf_counter()
        explain_run.explain(loaded, analysis, methods, target, explain_options,
                            progress=lambda f, m: whole(0.3 + (explain_end - 0.3) * f, m), cancel=cancel)
        timings["explain"] = time.perf_counter() - t0
        manifest["timings"]["explain"] = round(timings["explain"], 6)
        manifest["timings"]["total"] = round(time.perf_counter() - started, 6)
        report = whole
    if heads:
        t0 = time.perf_counter()
        start = explain_end if explaining else 0.3
        heads_stage.run(loaded, analysis, target, heads_options, cancel=cancel,
                        progress=lambda f, m: whole(start + (1.0 - start) * f, m))
        manifest["timings"]["heads"] = round(time.perf_counter() - t0, 6)
        manifest["timings"]["total"] = round(time.perf_counter() - started, 6)
        report = whole
    report(1.0, "done")
    return analysis


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

    from attn_desktop.core.model import capture

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
        "attn_desktop": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
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
