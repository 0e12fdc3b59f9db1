"""The Analysis object: tokens, named arrays and a manifest saying how each array was made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Token:
    text: str  # display text, tokenizer markers (##, Ġ, ▁) removed
    start: int  # character offsets into the text the token came from; start == end: no span
    end: int
    special: bool = False
    generated: bool = False  # appended by greedy generation, not part of the user's text
    piece: str | None = None  # the model's own vocabulary piece (e.g. "##eva", "[UNK]"); None: not recorded
    unknown: bool = False  # the tokenizer mapped this text to its unknown token

    def to_json(self) -> dict[str, Any]:
        d = {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "special": self.special,
            "generated": self.generated,
        }
        if self.piece is not None:
            d["piece"] = self.piece
            d["unknown"] = self.unknown
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Token:
        return cls(
            text=str(d["text"]),
            start=int(d["start"]),
            end=int(d["end"]),
            special=bool(d.get("special", False)),
            generated=bool(d.get("generated", False)),
            piece=None if d.get("piece") is None else str(d["piece"]),
            unknown=bool(d.get("unknown", False)),
        )


# Attention sets: the name shown to the user, the array key, and which token list
# labels the query rows and the key columns.
ATTENTION_SETS: dict[str, tuple[str, str, str]] = {
    "self": ("attentions", "tokens", "tokens"),
    "encoder": ("encoder_attentions", "tokens", "tokens"),
    "decoder": ("decoder_attentions", "decoder_tokens", "decoder_tokens"),
    "cross": ("cross_attentions", "decoder_tokens", "tokens"),
}


@dataclass
class Analysis:
    text: str
    tokens: list[Token]
    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any]
    decoder_text: str | None = None
    decoder_tokens: list[Token] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def is_encoder_decoder(self) -> bool:
        return "encoder_attentions" in self.arrays

    def attention_set_names(self) -> list[str]:
        return [name for name, (key, _, _) in ATTENTION_SETS.items() if key in self.arrays]

    def attention(self, set_name: str = "self") -> np.ndarray:
        """[layers, heads, queries, keys] for one attention set."""
        if set_name == "self" and self.is_encoder_decoder:
            set_name = "encoder"
        return self.arrays[ATTENTION_SETS[set_name][0]]

    def axis_tokens(self, set_name: str = "self") -> tuple[list[Token], list[Token]]:
        """(query tokens, key tokens) that label the rows and columns of `attention(set_name)`."""
        if set_name == "self" and self.is_encoder_decoder:
            set_name = "encoder"
        _, q, k = ATTENTION_SETS[set_name]
        pick = {"tokens": self.tokens, "decoder_tokens": self.decoder_tokens or []}
        return pick[q], pick[k]

    @property
    def num_layers(self) -> int:
        return int(self.attention(self.attention_set_names()[0]).shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.attention(self.attention_set_names()[0]).shape[1])
