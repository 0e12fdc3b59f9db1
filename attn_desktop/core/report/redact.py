"""Redaction for reports that leave the secure room.

Two modes (docs/report.md):
- `words`: every token that contains a letter is shown as its index (#12); tokens made only
  of digits and number punctuation (amounts, doses, dates) keep their text; special tokens
  ([CLS], </s>) are not document text and stay.
- `spans:FILE`: the character spans listed in FILE are masked. Every word a span touches is
  masked whole, and so is every other occurrence of that word in the input and the decoder text
  (a name masked once is masked everywhere); tokens that overlap masked characters are shown as
  their index.

A `DocumentView` is the only way section renderers see the document: its labels and text
segments are already redacted, so no renderer can let the original text through. The manifest
embedded in a redacted report loses every field that carries document text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_desktop.core.analysis import Analysis, Token
from attn_desktop.core.errors import UserError

NUMBER = re.compile(r"^[\d.,:/%+\-−–]+$")
WORD = re.compile(r"\w+")
REDACTED = "[redacted]"
# manifest keys whose values are the document's text, its ids (which a tokenizer turns back
# into text) or text derived from it
DOCUMENT_KEYS = {"text", "tokens", "decoder_text", "decoder_tokens", "input_ids", "decoder_input_ids",
                 "output_text"}
_TEXTY = ("text", "token", "reference", "predicted", "output", "word", "span")


@dataclass(frozen=True)
class Redaction:
    mode: str = "none"  # none | words | spans
    spans: tuple[tuple[int, int], ...] = ()
    literals: tuple[str, ...] = ()
    source: str = ""  # the spans file's name

    @property
    def active(self) -> bool:
        return self.mode != "none"


def parse_redact(arg: str | None) -> Redaction:
    """`words`, `spans:FILE`, or None/'none'."""
    if arg is None or arg in ("", "none"):
        return Redaction()
    if arg == "words":
        return Redaction(mode="words")
    if arg.startswith("spans:"):
        return read_spans_file(arg[len("spans:"):])
    raise UserError(f"unknown redaction {arg!r}: use 'words' or 'spans:FILE'")


def read_spans_file(name: str) -> Redaction:
    """Lines: `START END` or `START-END` (character offsets into the text, end exclusive),
    `text: SOME WORDS` (every occurrence, case-insensitive), blank lines and `#` comments."""
    path = Path(name).expanduser()
    if not path.is_file():
        raise UserError(f"spans file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the spans file {path.name}: {exc}") from None
    spans, literals = [], []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("text:"):
            literal = line[5:].strip()
            if not literal:
                raise UserError(f"{path.name} line {number}: 'text:' needs the words to mask")
            literals.append(literal)
            continue
        m = re.fullmatch(r"(\d+)\s*(?:-|\s)\s*(\d+)", line)
        if not m:
            raise UserError(f"{path.name} line {number}: expected 'START END', 'START-END' or 'text: WORDS'")
        start, end = int(m.group(1)), int(m.group(2))
        if end <= start:
            raise UserError(f"{path.name} line {number}: the end ({end}) must be after the start ({start})")
        spans.append((start, end))
    if not spans and not literals:
        raise UserError(f"{path.name} lists no span to mask")
    return Redaction(mode="spans", spans=tuple(spans), literals=tuple(literals), source=path.name)


def _literal_spans(text: str, literals) -> list[tuple[int, int]]:
    out = []
    for lit in literals:
        for m in re.finditer(re.escape(lit), text, flags=re.IGNORECASE):
            out.append((m.start(), m.end()))
    return out


def _is_word(token: Token) -> bool:
    return not token.special and any(ch.isalpha() for ch in token.text)


def _is_number(token: Token) -> bool:
    return bool(NUMBER.match(token.text))


@dataclass
class _Side:
    """One token sequence (input or decoder) with what of it is hidden."""

    text: str
    tokens: list[Token]
    prefix: str  # '#' for input tokens, 'd#' for decoder tokens
    hidden_tokens: set[int] = field(default_factory=set)
    hidden_chars: list[tuple[int, int]] = field(default_factory=list)

    def label(self, i: int) -> str:
        return f"{self.prefix}{i}" if i in self.hidden_tokens else self.tokens[i].text


class DocumentView:
    """What renderers may show of the document: labels, text segments, names."""

    def __init__(self, analysis: Analysis, redaction: Redaction | None = None) -> None:
        self.redaction = redaction or Redaction()
        self.input = _Side(analysis.text, list(analysis.tokens), "#")
        self.decoder = _Side(analysis.decoder_text or "", list(analysis.decoder_tokens or []), "d#")
        self.kept_numbers = 0
        if self.redaction.mode == "words":
            for side in (self.input, self.decoder):
                for i, t in enumerate(side.tokens):
                    if _is_word(t):
                        side.hidden_tokens.add(i)
                    elif not t.special and t.end > t.start and _is_number(t):
                        self.kept_numbers += 1
        elif self.redaction.mode == "spans":
            self._mask_spans()
        for side in (self.input, self.decoder):
            side.hidden_chars += [(side.tokens[i].start, side.tokens[i].end) for i in side.hidden_tokens]

    def _mask_spans(self) -> None:
        n = len(self.input.text)
        for s, e in self.redaction.spans:
            if s >= n:
                raise UserError(f"span {s}-{e} lies outside the text ({n} characters)")
        spans = [(s, min(e, n)) for s, e in self.redaction.spans]
        spans += _literal_spans(self.input.text, self.redaction.literals)
        decoder_spans = _literal_spans(self.decoder.text, self.redaction.literals)
        # every word a span touches is masked whole, and wherever else it occurs
        words = {m.group().casefold() for m in WORD.finditer(self.input.text)
                 if any(m.start() < e and s < m.end() for s, e in spans)}
        words |= {m.group().casefold() for m in WORD.finditer(self.decoder.text)
                  if any(m.start() < e and s < m.end() for s, e in decoder_spans)}
        for side, own in ((self.input, spans), (self.decoder, decoder_spans)):
            side.hidden_chars = list(own) + [(m.start(), m.end()) for m in WORD.finditer(side.text)
                                             if m.group().casefold() in words]
            for i, t in enumerate(side.tokens):
                if not t.special and t.end > t.start and any(t.start < e and s < t.end for s, e in side.hidden_chars):
                    side.hidden_tokens.add(i)

    # -- what renderers use -----------------------------------------------------------------
    @property
    def redacted(self) -> bool:
        return self.redaction.active

    def labels(self) -> list[str]:
        return [self.input.label(i) for i in range(len(self.input.tokens))]

    def decoder_labels(self) -> list[str]:
        return [self.decoder.label(i) for i in range(len(self.decoder.tokens))]

    def axis_labels(self, which: str) -> list[str]:
        return self.labels() if which == "tokens" else self.decoder_labels()

    def segments(self, decoder: bool = False) -> list[tuple[str, int | None]]:
        """The text as (piece, token index or None); hidden tokens become their labels, hidden
        characters outside tokens a mask, so joining the pieces never yields redacted text."""
        side = self.decoder if decoder else self.input
        text, out, pos = side.text, [], 0
        spanned = sorted((t.start, t.end, i) for i, t in enumerate(side.tokens) if t.end > t.start)
        for start, end, i in spanned:
            if start < pos:
                continue  # overlapping spans (rare byte-level cases): keep the first
            if start > pos:
                out.append((self._gap(side, pos, start), None))
            out.append((side.label(i) if i in side.hidden_tokens else text[start:end], i))
            pos = end
        if pos < len(text):
            out.append((self._gap(side, pos, len(text)), None))
        return out

    def _gap(self, side: _Side, start: int, end: int) -> str:
        gap = side.text[start:end]
        if not self.redacted:
            return gap
        if self.redaction.mode == "words":
            return "".join(ch if ch.isspace() or not ch.isalpha() else "▒" for ch in gap) if gap.strip() else gap
        hidden = any(start < e and s < end for s, e in side.hidden_chars)
        if hidden and gap.strip():
            return "".join(ch if ch.isspace() else "▒" for ch in gap)
        return gap

    def describe(self) -> str:
        r = self.redaction
        if not r.active:
            return "none: the report shows the document's text"
        hidden = len(self.input.hidden_tokens) + len(self.decoder.hidden_tokens)
        if r.mode == "words":
            return (f"words: {hidden} word tokens replaced by their index (#i for the input, d#i for "
                    f"decoder tokens); {self.kept_numbers} number tokens and the special tokens keep "
                    "their text; the embedded record has no text, tokens or token ids")
        return (f"spans: {len(r.spans)} character span(s) and {len(r.literals)} text pattern(s) from "
                f"{r.source} masked; {hidden} tokens that overlap them, or repeat their text, replaced by "
                "their index; the embedded record has no text, tokens or token ids")

    def hidden_strings(self) -> list[str]:
        """The original text of every hidden token and span (for the leak check; never rendered)."""
        out = []
        for side in (self.input, self.decoder):
            out += [side.tokens[i].text for i in side.hidden_tokens]
            out += [side.text[s:e] for s, e in side.hidden_chars]
        return out

    def hidden_words(self) -> set[str]:
        """Every whole word of the texts (casefolded) that a hidden token or span touches."""
        out = set()
        for side in (self.input, self.decoder):
            for m in WORD.finditer(side.text):
                if any(m.start() < e and s < m.end() for s, e in side.hidden_chars):
                    out.add(m.group().casefold())
        return out

    def hidden_runs(self, chars: int = 20) -> list[str]:
        """Stretches of the document of at least `chars` characters and more than one word made
        only of hidden tokens, as they stand in the text: long enough that the report's own wording
        never contains one by chance, so finding one in the report means a leak."""
        out = []
        for side in (self.input, self.decoder):
            idx = sorted(i for i in side.hidden_tokens if side.tokens[i].end > side.tokens[i].start)
            hidden = set(idx)
            for a in idx:
                b = a
                while b + 1 in hidden and side.tokens[b].end - side.tokens[a].start < chars:
                    b += 1
                piece = side.text[side.tokens[a].start : side.tokens[b].end]
                if len(piece) >= chars and any(ch.isspace() for ch in piece):
                    out.append(piece)
        return out


def redact_manifest(manifest: Any) -> Any:
    """A copy without the document: text, tokens and ids dropped, and every string under a key
    that names text (…text…, …token…, reference, predicted, output, word, span) replaced."""
    if isinstance(manifest, dict):
        out = {}
        for k, v in manifest.items():
            key = str(k)
            if key in DOCUMENT_KEYS:
                out[key] = REDACTED
            elif any(w in key.lower() for w in _TEXTY):
                out[key] = _strings_redacted(v)
            else:
                out[key] = redact_manifest(v)
        return out
    if isinstance(manifest, list):
        return [redact_manifest(v) for v in manifest]
    return manifest


def redact_value(dotted_key: str, v: Any) -> Any:
    """The value of a flattened manifest entry (a.b.c) as a redacted report may show it."""
    parts = dotted_key.split(".")
    if any(p in DOCUMENT_KEYS for p in parts):
        return REDACTED
    if any(w in p.lower() for p in parts for w in _TEXTY):
        return _strings_redacted(v)
    return redact_manifest(v)


def _strings_redacted(v: Any) -> Any:
    if isinstance(v, str):
        return REDACTED
    if isinstance(v, list):
        return [_strings_redacted(x) for x in v]
    if isinstance(v, dict):
        return {k: _strings_redacted(x) for k, x in v.items()}
    return v


QUOTED = re.compile(r"([“\"‘'])([^”\"’']{1,120})([”\"’'])")


def text_scrubber(view, target):
    """For free text written from numbers (the verdict): where it quotes something (a token, the
    predicted output) that holds a hidden word, or names the target's text, that is replaced."""
    hidden = {w.casefold() for w in view.hidden_strings() if w.strip()} | view.hidden_words()
    target = target if isinstance(target, dict) else {}
    outputs = [str(target[k]) for k in ("predicted", "token", "reference") if isinstance(target.get(k), str) and target[k].strip()]

    def quoted(m):
        inner = m.group(2)
        words = {w.casefold() for w in re.findall(r"\w+", inner)} | {inner.casefold().strip()}
        return m.group(1) + ("[redacted]" if words & hidden else inner) + m.group(3)

    def scrub(text: str) -> str:
        text = QUOTED.sub(quoted, text)
        for out in sorted(outputs, key=len, reverse=True):
            text = re.sub(rf"(?<!\w){re.escape(out)}(?!\w)", "[redacted]", text, flags=re.IGNORECASE)
        return text

    return scrub


def scrub_strings(value: Any, scrub) -> Any:
    """`scrub` applied to every string inside a JSON value."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [scrub_strings(v, scrub) for v in value]
    if isinstance(value, dict):
        return {k: scrub_strings(v, scrub) for k, v in value.items()}
    return value
