"""Tokens for reading: display text without tokenizer markers, exact character spans."""

from __future__ import annotations

from collections.abc import Sequence

from attn_desktop.core.analysis import Token

_MARKERS = ("##", "Ġ", "▁", "Ċ", "</w>")


def clean_piece(piece: str) -> str:
    """A raw vocabulary piece made readable: no word-piece or byte-level markers."""
    text = piece
    for marker in _MARKERS:
        text = text.replace(marker, " " if marker in ("Ġ", "▁") else "")
    text = text.strip()
    return text or ("␣" if piece else "")


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode: the printable stand-in character of each byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_BYTE_DECODER = _byte_decoder()


def byte_level_piece(piece: str) -> str:
    """A byte-level BPE piece (GPT-2, RoBERTa, BART: bytes written as printable stand-ins, "Ã©" for
    é) as the text its bytes encode; bytes that are only part of a character read <C3>."""
    if any(ch not in _BYTE_DECODER for ch in piece):
        return piece
    data = bytes(_BYTE_DECODER[ch] for ch in piece)
    out, i = [], 0
    while i < len(data):
        for j in range(min(len(data), i + 4), i, -1):
            try:
                out.append(data[i:j].decode("utf-8"))
            except UnicodeDecodeError:
                continue
            i = j
            break
        else:
            out.append(f"<{data[i]:02X}>")
            i += 1
    return "".join(out)


def readable_pieces(tokenizer, pieces: Sequence[str]) -> list[str]:
    """The tokenizer's pieces as a reader can compare them with the text: byte-level pieces decoded
    (see byte_level_piece); word-piece and sentence-piece markers (##, ▁) kept, they show the split."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if type(decoder).__name__ != "ByteLevel":
        return list(pieces)
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    return [p if p in special else byte_level_piece(p) for p in pieces]


def build_tokens(
    text: str,
    pieces: Sequence[str],
    offsets: Sequence[tuple[int, int]],
    special: Sequence[bool],
    generated: Sequence[bool] | None = None,
    unknown: Sequence[bool] | None = None,
) -> list[Token]:
    """One Token per id; spans are trimmed of surrounding whitespace so highlights sit on the word.
    Each Token keeps its raw vocabulary piece; `unknown` flags ids that are the tokenizer's unknown token."""
    tokens = []
    for i, (piece, (start, end), is_special) in enumerate(zip(pieces, offsets, special, strict=True)):
        start, end = int(start), int(end)
        if is_special or end <= start or clean_piece(piece) == "␣":
            display = piece if is_special else clean_piece(piece)
            start = end = min(start, len(text))
        else:
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            display = text[start:end] if end > start else clean_piece(piece)
        tokens.append(
            Token(
                text=display, start=start, end=end, special=bool(is_special),
                generated=bool(generated[i]) if generated is not None else False,
                piece=str(piece), unknown=bool(unknown[i]) and not is_special if unknown is not None else False,
            )
        )
    return tokens


def seen_differently(token: Token, ignore_case: bool = False) -> bool:
    """True when the model's piece says something other than the text shown: accents stripped,
    case folded (unless `ignore_case`), characters unknown to the vocabulary. Word-piece markers
    alone do not count."""
    if token.piece is None or token.special:
        return False
    if token.unknown:
        return True
    piece = clean_piece(token.piece)
    return piece.casefold() != token.text.casefold() if ignore_case else piece != token.text


def model_pieces(tokens: Sequence[Token], ignore_case: bool = False) -> str | None:
    """The model's pieces for `tokens` ("re ##eva ##lu ##er", "[UNK]"), or None when the pieces
    read as the text does (or were not recorded, as in sessions from older versions)."""
    if not any(seen_differently(t, ignore_case) for t in tokens):
        return None
    return " ".join(t.piece.strip() or "␣" for t in tokens if t.piece is not None)


def count_unknown(tokens: Sequence[Token] | None) -> int:
    return sum(1 for t in tokens or () if t.unknown)
