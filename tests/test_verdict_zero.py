"""A Kendall tau that rounds to zero is written 0.00, never -0.00, in the verdict's headline and details."""

from __future__ import annotations


def test_tau_rounding_to_zero_has_no_minus():
    from attn_desktop.core.explain.verdict import verdict

    names = ["attention_importance", "rollout_importance", "integrated_gradients", "loo"]
    t = -0.003
    m = [[1.0, 0.5, t, t], [0.5, 1.0, t, t], [t, t, 1.0, 0.5], [t, t, 0.5, 1.0]]
    p = [[0.5] * 4 for _ in range(4)]
    v = verdict({"agreement": {"methods": names, "tokens": 10, "kendall_tau": m, "kendall_p": p,
                               "topk": {"k": [5], "overlap": [m]}}})
    assert "mean Kendall tau 0.00 against" in v["headline"] and "rollout 0.00" in v["headline"]
    assert "attention vs IG: Kendall tau 0.00 (p = 0.5)" in v["details"][0]
    assert "-0.00" not in v["headline"] + " ".join(v["details"])
