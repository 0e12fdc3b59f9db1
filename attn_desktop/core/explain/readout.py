"""The row of attention the output reads, and the attention, rollout and flow vectors of it.

A [CLS]-pooled classifier reads the first token's row, mean pooling (the demo's zero-shot and
reference targets) the mean over rows, a causal model (LM or last-token classifier) the last
row, a masked LM the mask position's row, and an encoder-decoder's output token the
cross-attention row of the decoder position that predicts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ReadRow:
    rule: str  # cls | mean | last | mask | cross
    index: int | None
    why: str
    info: dict[str, Any] = field(default_factory=dict)

    def read(self, matrix: np.ndarray) -> np.ndarray:
        """The read row of a square [n, n] matrix (rows are queries)."""
        if self.rule == "mean":
            return np.asarray(matrix, dtype=np.float32).mean(axis=0)
        return np.asarray(matrix[self.index], dtype=np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "index": self.index, "why": self.why, **self.info}


def is_causal(attention: np.ndarray) -> bool:
    """True when no query attends to a later key in any layer or head ([L, H, n, n])."""
    n = attention.shape[-1]
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    return bool(n > 1 and not np.any(attention[..., upper]))


def read_row(target, attention: np.ndarray) -> ReadRow:
    kind, n = target.kind, attention.shape[-1]
    if kind in ("zero-shot", "reference"):
        return ReadRow("mean", None, "the target mean-pools the last hidden states over all tokens")
    if kind == "next-token":
        return ReadRow("last", n - 1, "a causal LM predicts the next token from the last position")
    if kind == "masked-token":
        return ReadRow("mask", target.definition["position"], "a masked LM predicts at the mask position")
    if kind == "seq2seq-token":
        pos = target.definition["position"] - 1
        return ReadRow("cross", pos, "the decoder position before the output token reads the encoder "
                       "through cross-attention")
    if is_causal(attention):
        return ReadRow("last", n - 1, "a causal classifier pools the last token")
    return ReadRow("cls", 0, "a [CLS]-pooled classifier reads the first token's final state")


def attention_vectors(analysis_arrays: dict[str, np.ndarray], row: ReadRow, methods: set[str],
                      alpha: float = 0.5, fusion: str | int = "mean", cancel=None) -> tuple[dict, dict, dict]:
    """(vectors, manifest info, skipped reasons) for attention / rollout / flow of the read row."""
    from attn_desktop.core.propagate import rollout as ro

    vectors: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    info: dict[str, Any] = {"alpha": float(alpha), "head_fusion": fusion, "heads": "mean"}
    if row.rule == "cross":
        cross = analysis_arrays["cross_attentions"]
        info["attention_layer"] = int(cross.shape[0] - 1)
        info["attention_set"] = "cross"
        vectors["attention_importance"] = cross[-1, :, row.index].astype(np.float32).mean(0)
        if "rollout" in methods:
            out = ro.rollout_encoder_decoder(
                analysis_arrays["encoder_attentions"], analysis_arrays["decoder_attentions"], cross,
                alpha, fusion, cancel=cancel)
            vectors["rollout_importance"] = out["decoder_to_source"][-1][row.index].astype(np.float32)
            info["rollout"] = "decoder_source_rollout after the last decoder layer"
        if "flow" in methods:
            skipped["flow_importance"] = "attention flow is defined over one self-attention stack; " \
                                         "an encoder-decoder's output reads the source through cross-attention"
        return vectors, info, skipped
    att = analysis_arrays.get("attentions")
    if att is None:
        att = analysis_arrays["encoder_attentions"]
    info["attention_layer"] = int(att.shape[0] - 1)
    info["attention_set"] = "self"
    last = att[-1].astype(np.float32).mean(0)
    vectors["attention_importance"] = row.read(last)
    if "rollout" in methods or "flow" in methods:
        hat = ro.fused_hat(att, alpha, fusion)
        if "rollout" in methods:
            if row.rule == "mean":
                vectors["rollout_importance"] = ro.cumulative_rollout(hat, cancel=cancel)[-1].mean(0)
            else:
                vectors["rollout_importance"] = ro.rollout_row(hat, row.index, cancel=cancel)[-1]
            info["rollout"] = "final rollout (after the last layer)"
        if "flow" in methods:
            from attn_desktop.core.propagate.flow import attention_flow

            if row.rule == "mean":
                result = attention_flow(pooled_layer(hat), [0], cancel=cancel)
                how = ("flow of a pooled node that reads every final token with capacity 1/n (an extra "
                       "uniform layer on top); flow is not linear, so this is not the mean of n per-row flows")
            else:
                result = attention_flow(hat, [row.index], cancel=cancel)
                how = "flow of the read row"
            vectors["flow_importance"] = result.flow[0].astype(np.float32)
            info["flow"] = {"rule": how, "normalisation": "divided by its sum",
                            "max_abs_error_bound": float(result.max_abs_error_bound)}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in vectors.items()}, info, skipped


def pooled_layer(hat: np.ndarray) -> np.ndarray:
    """`hat` [L, n, n] with one more layer on top whose row 0 reads every token with weight 1/n."""
    n = hat.shape[-1]
    top = np.zeros((1, n, n), dtype=hat.dtype)
    top[0, 0, :] = 1.0 / n
    return np.concatenate([hat, top])
