"""Over-smoothing: how alike the token states become from layer to layer.

For the states after each layer (index 0: the embeddings), the mean cosine similarity over all
pairs of distinct tokens. A curve that climbs towards 1 says the tokens' states collapse onto one
direction, so later attention has little left to tell apart.
"""

from __future__ import annotations

import numpy as np


def mean_pairwise_cosine(states: np.ndarray) -> float:
    """Mean cos(x_i, x_j) over i != j for states [n, d]; NaN for fewer than 2 tokens."""
    x = np.asarray(states, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return float("nan")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1.0)
    total = unit.sum(axis=0)
    # sum over all ordered pairs = |sum of unit vectors|^2, minus the n self-pairs (|u|^2, 1 or 0)
    pair_sum = float(total @ total) - float((unit * unit).sum())
    return pair_sum / (n * (n - 1))


def layer_smoothing(states: np.ndarray) -> np.ndarray:
    """[L+1] mean pairwise cosine similarity for states [L+1, n, d], float32."""
    return np.asarray([mean_pairwise_cosine(s) for s in states], dtype=np.float32)


def hidden_states(loaded, ids: list[int], decoder_ids: list[int] | None = None) -> dict[str, np.ndarray]:
    """Token states after each layer, [L+1, n, d] per stack: "self", or "encoder" and "decoder"."""
    import torch

    device = loaded.device
    inputs = {"input_ids": torch.tensor([ids], dtype=torch.long, device=device)}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if decoder_ids is not None:
        inputs["decoder_input_ids"] = torch.tensor([decoder_ids], dtype=torch.long, device=device)
    if loaded.kind == "causal-lm" or loaded.is_encoder_decoder:
        inputs["use_cache"] = False
    with torch.no_grad():
        out = loaded.model(**inputs, output_hidden_states=True)

    def stack(seq):
        return torch.stack([h[0] for h in seq]).float().cpu().numpy()

    if loaded.is_encoder_decoder:
        return {"encoder": stack(out.encoder_hidden_states), "decoder": stack(out.decoder_hidden_states)}
    return {"self": stack(out.hidden_states)}
