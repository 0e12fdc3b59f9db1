"""Rollout and flow as stages of a real analysis: against independent computations on the demo
model's attention, stored in the session, driven from the command line."""

import networkx as nx
import numpy as np
import pytest

from attn_desktop.cli import main
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.propagate.propagation import add_flow, add_rollout, default_focus, parse_rows
from attn_desktop.core.store.session import load_session, save_session

SENTENCE = "I sat by the river bank."


@pytest.fixture
def demo_analysis(demo_model):
    return analyze(demo_model, SENTENCE)


def numpy_rollout(att, alpha, fusion):
    """Written from the paper's formula, independent of core.propagate.rollout."""
    att = att.astype(np.float64)
    fused = {"mean": att.mean(1), "max": att.max(1), "min": att.min(1)}[fusion]
    n = fused.shape[-1]
    out, r = [], np.eye(n)
    for a in fused:
        a_hat = alpha * a + (1 - alpha) * np.eye(n)
        a_hat /= a_hat.sum(-1, keepdims=True)
        r = a_hat @ r
        out.append(r)
    return np.stack(out)


@pytest.mark.parametrize("alpha,fusion", [(0.5, "mean"), (0.9, "max"), (0.3, "min")])
def test_rollout_on_real_attention_matches_numpy_loop(demo_analysis, alpha, fusion):
    add_rollout(demo_analysis, alpha, fusion)
    got = demo_analysis.arrays["rollout"]
    assert got.dtype == np.float32 and got.shape == (6, 9, 9)
    np.testing.assert_allclose(got, numpy_rollout(demo_analysis.arrays["attentions"], alpha, fusion), atol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    assert demo_analysis.manifest["methods"]["rollout"]["head_fusion"] == fusion


def networkx_flow_row(att, row, alpha=0.5):
    """The paper's construction with float capacities and networkx's max flow, one pair at a time."""
    fused = att.astype(np.float64).mean(1)
    layers, n = fused.shape[0], fused.shape[-1]
    g = nx.DiGraph()
    for layer in range(1, layers + 1):
        a_hat = alpha * fused[layer - 1] + (1 - alpha) * np.eye(n)
        a_hat /= a_hat.sum(-1, keepdims=True)
        for i in range(n):
            for j in range(n):
                g.add_edge((layer, i), (layer - 1, j), capacity=float(a_hat[i, j]))
    values = np.array([nx.maximum_flow_value(g, (layers, row), (0, j)) for j in range(n)])
    return values / values.sum()


def test_flow_on_a_real_sentence_matches_networkx(demo_model):
    analysis = analyze(demo_model, "The bank closed.")
    add_flow(analysis, [0, 2])
    att = analysis.arrays["attentions"]
    for k, row in enumerate(analysis.arrays["flow_rows"]):
        np.testing.assert_allclose(analysis.arrays["flow"][k], networkx_flow_row(att, int(row)), atol=1e-6)
    assert analysis.manifest["methods"]["flow"]["exact"] is True


def test_flow_rows_merge_and_are_not_recomputed(demo_analysis):
    assert add_flow(demo_analysis, [3]) == [3]
    first = demo_analysis.arrays["flow"][0].copy()
    assert add_flow(demo_analysis, [0, 3, 5]) == [0, 5]
    assert list(demo_analysis.arrays["flow_rows"]) == [0, 3, 5]
    np.testing.assert_array_equal(demo_analysis.arrays["flow"][1], first)
    np.testing.assert_allclose(demo_analysis.arrays["flow"].sum(-1), 1.0, atol=1e-5)
    # other parameters start afresh
    assert add_flow(demo_analysis, [3], alpha=0.8) == [3]
    assert list(demo_analysis.arrays["flow_rows"]) == [3]
    assert demo_analysis.manifest["methods"]["flow"]["alpha"] == 0.8


def test_cancel_keeps_finished_rows(demo_analysis):
    done = []

    def progress(k, total):
        done.append((k, total))

    with pytest.raises(Cancelled):
        add_flow(demo_analysis, [1, 2, 3, 4], progress=progress, cancel=lambda: len(done) >= 2)
    assert list(demo_analysis.arrays["flow_rows"]) == [1, 2]
    assert done == [(1, 4), (2, 4)]
    assert demo_analysis.manifest["methods"]["flow"]["rows"] == [1, 2]


def test_propagation_survives_the_session(demo_analysis, tmp_path):
    add_rollout(demo_analysis)
    add_flow(demo_analysis, [0, 4])
    back = load_session(save_session(demo_analysis, tmp_path / "p.attn"))
    for key in ("rollout", "flow", "flow_rows"):
        np.testing.assert_array_equal(back.arrays[key], demo_analysis.arrays[key])
    assert back.manifest["methods"] == demo_analysis.manifest["methods"]


def test_encoder_decoder_rollout_arrays(loaded_models):
    analysis = analyze(loaded_models("bart"), SENTENCE, target_text="the bank")
    add_rollout(analysis, 0.5, "max")
    s, t = len(analysis.tokens), len(analysis.decoder_tokens)
    assert analysis.arrays["rollout"].shape == (2, s, s)
    assert analysis.arrays["decoder_rollout"].shape == (2, t, t)
    assert analysis.arrays["decoder_source_rollout"].shape == (2, t, s)
    both = np.concatenate([analysis.arrays["decoder_rollout"], analysis.arrays["decoder_source_rollout"]], -1)
    np.testing.assert_allclose(both.sum(-1), 1.0, atol=1e-5)


def test_causal_focus_is_the_last_token_and_rows_parse(loaded_models):
    analysis = analyze(loaded_models("gpt2"), SENTENCE)
    n = len(analysis.tokens)
    assert default_focus(analysis) == n - 1
    assert parse_rows("focus", analysis) == [n - 1]
    assert parse_rows("all", analysis) == list(range(n))
    assert parse_rows("2,0,-1", analysis) == [0, 2, n - 1]
    with pytest.raises(UserError, match="does not exist"):
        parse_rows(str(n), analysis)
    with pytest.raises(UserError, match="token indices"):
        parse_rows("first", analysis)
    add_flow(analysis, [n - 1])
    flow = analysis.arrays["flow"][0]
    assert flow.sum() == pytest.approx(1.0, abs=1e-5) and np.all(flow >= 0)


@pytest.mark.parametrize("bad,match", [
    (["--alpha", "1.5"], "alpha must be"), (["--head-fusion", "median"], "head fusion"),
    (["--head-fusion", "12"], "head 12 does not exist"), (["--start-layer", "6"], "start layer 6"),
    (["--flow-rows", "99"], "flow row 99"),
])
def test_cli_refuses_bad_parameters_and_writes_nothing(tmp_path, capsys, bad, match):
    out = tmp_path / "x.attn"
    code = main(["analyze", "--text", SENTENCE, "--methods", "rollout,flow", "--out", str(out), *bad])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_methods_write_rollout_and_flow(tmp_path, capsys):
    out = tmp_path / "m.attn"
    code = main(["analyze", "--text", SENTENCE, "--methods", "attention,rollout,flow", "--flow-rows", "all",
                 "--alpha", "0.6", "--head-fusion", "max", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "flow 9 row(s) exact" in stdout
    analysis = load_session(out)
    assert analysis.arrays["rollout"].shape == (6, 9, 9)
    assert analysis.arrays["flow"].shape == (9, 9) and list(analysis.arrays["flow_rows"]) == list(range(9))
    np.testing.assert_allclose(analysis.arrays["rollout"], numpy_rollout(analysis.arrays["attentions"], 0.6, "max"), atol=1e-5)
    methods = analysis.manifest["methods"]
    assert methods["rollout"]["alpha"] == 0.6 and methods["flow"]["head_fusion"] == "max"


def test_flow_accepts_kept_matrices_and_records_both_bounds(demo_analysis):
    from attn_desktop.core.propagate.rollout import fused_hat

    hat = fused_hat(demo_analysis.arrays["attentions"], 0.5, "mean")
    add_flow(demo_analysis, [2], hat=hat)
    reference = analyze_flow_copy(demo_analysis, 2)
    np.testing.assert_array_equal(demo_analysis.arrays["flow"][0], reference)
    flow = demo_analysis.manifest["methods"]["flow"]
    assert 0 <= flow["max_abs_error_bound"] <= 1e-6
    assert 0 <= flow["max_abs_error_bound_normalised"] <= 1e-5


def analyze_flow_copy(analysis, row):
    from attn_desktop.core.analysis import Analysis

    twin = Analysis(text=analysis.text, tokens=analysis.tokens,
                    arrays={"attentions": analysis.arrays["attentions"]}, manifest={"model": {}})
    add_flow(twin, [row])
    return twin.arrays["flow"][0]
