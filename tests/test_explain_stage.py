"""Agreement, faithfulness bookkeeping, the verdict, and the whole stage through analyze(), the
session file and the command line."""

import json

import numpy as np
import pytest
from scipy import stats

from attn_desktop.cli import main
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.explain.agreement import agreement
from attn_desktop.core.explain.faithfulness import counts_for, curves, ranking
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.store.session import load_session, save_session

VECTORS = ("attention_importance", "rollout_importance", "flow_importance", "saliency", "grad_input",
           "integrated_gradients", "grad_rollout", "loo")


def test_agreement_with_itself_is_one_and_with_its_reverse_minus_one():
    v = np.array([9.0, 0.1, 0.5, 0.9, 0.3, 0.7, 0.2, 9.0])
    special = [True, False, False, False, False, False, False, True]
    rev = v.copy()
    inner = v[1:7]
    rev[1:7] = np.sort(inner)[np.argsort(np.argsort(-inner))]  # the same values, ranks reversed
    res = agreement({"a": v, "b": v.copy(), "r": rev, "neg": -v}, special)
    names = res["methods"]
    ia, ib, ir, ineg = (names.index(x) for x in ("a", "b", "r", "neg"))
    assert res["tokens"] == 6
    assert res["kendall_tau"][ia][ib] == pytest.approx(1.0) and res["spearman"][ia][ib] == pytest.approx(1.0)
    assert res["kendall_tau"][ia][ir] == pytest.approx(-1.0) and res["spearman"][ia][ir] == pytest.approx(-1.0)
    assert res["kendall_tau"][ia][ineg] == pytest.approx(1.0)  # absolute values
    assert res["topk"]["k"] == [5, 1]
    assert res["topk"]["overlap"][0][ia][ib] == 1.0 and res["topk"]["overlap"][1][ia][ir] == 0.0
    t = stats.kendalltau(inner, np.abs(rev[1:7]))
    assert res["kendall_p"][ia][ir] == pytest.approx(t.pvalue)
    const = agreement({"a": v, "c": np.ones(8)}, special)
    assert const["kendall_tau"][0][1] is None and const["topk"]["overlap"][0][0][1] is not None


def test_faithfulness_sets_follow_eraser():
    assert counts_for([0.01, 0.05, 0.1, 0.2, 0.5], 30) == [1, 2, 3, 6, 15]
    assert counts_for([0.01, 0.5], 1) == [1, 1]
    free = np.array([1, 2, 3, 4])
    order = ranking(np.array([0, -2.0, 5.0, 1.0, 3.0, 9.0]), free)
    assert order.tolist() == [2, 4, 3, 1]  # signed: most positive first; specials 0 and 5 never ranked
    comp, suff = curves(order, free, [1, 2])
    assert comp == [[2], [2, 4]] and suff == [[4, 3, 1], [3, 1]]


def _progress_log():
    log = []
    return log, lambda f, m: log.append((f, m))


def test_the_whole_stage_on_a_classifier(loaded_models, tmp_path):
    loaded = loaded_models("bert-cls")
    log, progress = _progress_log()
    a = analyze(loaded, "The tenant shall pay the rent on time.", methods=["all"], target={"class": 2},
                explain_options={"seeds": 3, "random_rankings": 20}, progress=progress)
    e = a.manifest["explain"]
    n = len(a.tokens)
    assert e["arrays"] == list(VECTORS)
    for name in VECTORS:
        assert a.arrays[name].shape == (n,) and a.arrays[name].dtype == np.float32
    assert e["target"]["class"] == 2 and e["target"]["kind"] == "class"
    assert e["read_row"]["rule"] == "cls" and e["read_row"]["index"] == 0
    assert e["methods"]["loo"]["replacement"] == "mask"
    assert set(e["faithfulness"]["per_method"]) == set(VECTORS)
    free = [i for i, t in enumerate(a.tokens) if not t.special]
    top_loo = float(a.arrays["loo"][free].max())  # removing LOO's top token first costs exactly that
    assert e["faithfulness"]["per_method"]["loo"]["comprehensiveness"][0] == pytest.approx(top_loo, abs=1e-6)
    assert e["agreement"]["methods"] == list(VECTORS)
    assert len(e["interventions"]["uniform_layer"]) == 2 and e["interventions"]["permuted"]["seeds"] == 3
    assert set(e["timings"]) >= {"target", "attention", "ig", "loo", "interventions", "faithfulness", "agreement"}
    headline = e["verdict"]["headline"]
    assert ("agrees" in headline or "diverges" in headline) and "explain" not in headline.lower()
    assert "depends on where attention goes" in headline
    json.dumps(e, allow_nan=False)
    fractions = [f for f, _ in log]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    saved = load_session(save_session(a, tmp_path / "x.attn"))
    assert saved.manifest["explain"]["verdict"] == e["verdict"]
    for name in VECTORS:
        assert np.array_equal(saved.arrays[name], a.arrays[name])


@pytest.mark.parametrize("kind,text", [("gpt2", "The tenant shall pay"), ("bart", "The tenant shall pay.")])
def test_the_stage_on_other_kinds(loaded_models, kind, text):
    loaded = loaded_models(kind)
    a = analyze(loaded, text, methods=["ig", "loo", "grad_rollout", "rollout", "flow", "interventions", "agreement"],
                explain_options={"seeds": 2})
    e = a.manifest["explain"]
    if kind == "gpt2":
        assert e["read_row"]["rule"] == "last" and "flow_importance" in e["arrays"]
        assert e["interventions"]["allowed_keys"].startswith("uniform / permuted over the keys") and "self" in e["interventions"]["allowed_keys"]
    else:
        assert e["read_row"]["rule"] == "cross" and "flow_importance" in e["skipped"]
        assert a.arrays["integrated_gradients"].shape == (len(a.tokens),)
        assert a.arrays["grad_rollout"].shape == (len(a.tokens),)
        assert e["methods"]["grad_rollout"]["set"] == "encoder-decoder"
    assert e["agreement"]["methods"][0] == "attention_importance"


def test_the_stage_can_be_cancelled(loaded_models):
    loaded = loaded_models("bert-cls")
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 8

    with pytest.raises(Cancelled):
        analyze(loaded, "The tenant shall pay the rent.", methods=["loo", "faithfulness"], cancel=cancel,
                explain_options={"batch_size": 2})


def test_bad_requests_are_refused_before_the_model_runs(loaded_models, demo_model):
    with pytest.raises(UserError, match="unknown method 'sparkle'"):
        analyze(loaded_models("bert-cls"), "rent", methods=["ig", "sparkle"])
    with pytest.raises(UserError, match="no task head"):
        analyze(demo_model, "rent is due", methods=["ig"])
    with pytest.raises(UserError, match="labels does not apply to a class target"):
        analyze(loaded_models("bert-cls"), "rent", methods=["ig"], target={"labels": ["a", "b"]})
    with pytest.raises(UserError, match="a target class does not apply to a next-token target"):
        analyze(loaded_models("gpt2"), "rent", methods=["ig"], target={"class": 1})
    with pytest.raises(UserError, match="IG steps must be"):
        analyze(loaded_models("bert-cls"), "rent", methods=["ig"], explain_options={"ig_steps": 1})
    with pytest.raises(UserError, match="unknown replacement"):
        analyze(loaded_models("bert-cls"), "rent", methods=["loo"], explain_options={"replacement": "blank"})
    with pytest.raises(UserError, match="unknown explanation option"):
        analyze(loaded_models("bert-cls"), "rent", methods=["ig"], explain_options={"stepz": 3})


def test_command_line_with_labels_prints_the_verdict(tiny_model_paths, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("# two labels\nrent payment\nmedical note\n", encoding="utf-8")
    out = tmp_path / "z.attn"
    code = main(["analyze", "--text", "The tenant shall pay the rent.", "--model", str(tiny_model_paths["bert"]),
                 "--methods", "ig,loo,rollout,agreement,interventions", "--labels", str(labels),
                 "--target-label", "medical note", "--seeds", "2", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Target: P(label 'medical note') = ")
    assert "(given label of 2, temperature 0.05). For this input, attention" in lines[1]
    s = load_session(out)
    assert s.manifest["explain"]["target"]["label"] == "medical note"
    assert s.manifest["explain"]["target"]["labels"] == ["rent payment", "medical note"]
    assert s.arrays["loo"].shape == (len(s.tokens),) and "rollout" in s.arrays


def test_command_line_refusals_are_one_line(tiny_model_paths, tmp_path, capsys):
    out = tmp_path / "no.attn"
    code = main(["analyze", "--text", "The tenant shall pay.", "--model", str(tiny_model_paths["bert-mlm"]),
                 "--methods", "all", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "[MASK]" in err
    assert not out.exists()
    code = main(["analyze", "--text", "x", "--model", str(tiny_model_paths["bert"]), "--methods", "ig",
                 "--labels", str(tmp_path / "missing.txt"), "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 2 and "label file not found" in err


def test_the_model_process_runs_the_stage(tiny_model_paths):
    from attn_desktop.core.model.engine import ProcessEngine

    engine = ProcessEngine()
    try:
        loaded, _ = engine.load(str(tiny_model_paths["bert-cls"]), "cpu")
        progress = []
        a = engine.analyze(loaded, "The tenant shall pay the rent.", progress=lambda f, m: progress.append(f),
                           methods=["grad_input", "loo", "agreement"], target={"class": 1})
    finally:
        engine.close()
    e = a.manifest["explain"]
    assert e["target"]["class"] == 1 and e["arrays"] == ["attention_importance", "grad_input", "loo"]
    assert a.arrays["loo"].shape == (len(a.tokens),) and progress and max(progress) == 1.0


def test_integrated_gradients_stops_inside_a_round(loaded_models):
    from attn_desktop.core.explain.gradients import integrated_gradients
    from attn_desktop.core.explain.targets import resolve_target

    loaded = loaded_models("bert-cls")
    ids = loaded.tokenizer("The tenant shall pay the rent.")["input_ids"]
    target = resolve_target(loaded, ids, {})
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        integrated_gradients(loaded, target, steps=64, internal_batch_size=4, cancel=cancel)
    assert calls["n"] == 4  # stopped at the 4th internal batch of the only round, not after 16


def test_a_decoder_only_classifier_without_pad_token(tmp_path):
    """GPT-2 classifiers without a pad token refuse batches; the stage still batches (rows are never
    padded) and reads the last token, equal to one forward per row."""
    import tiny_models
    import torch
    import transformers as tf

    from attn_desktop.core.model.loading import load_model

    torch.manual_seed(0)
    tok = tiny_models._bytelevel_tokenizer(bos="<|endoftext|>", eos="<|endoftext|>", wrap=False)
    cfg = tf.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=64, num_labels=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, initializer_range=0.3)
    cfg.pad_token_id = None
    tf.GPT2ForSequenceClassification(cfg).eval().save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    a = analyze(loaded, "The tenant shall pay the rent.", methods=["loo", "interventions"], target={"class": 1},
                explain_options={"seeds": 2})
    e = a.manifest["explain"]
    assert loaded.model.config.pad_token_id is None
    assert e["read_row"]["rule"] == "last" and "'self'" in e["interventions"]["allowed_keys"]
    ids = a.manifest["input_ids"]
    rep = e["methods"]["loo"]["token_id"]
    for i in range(len(ids)):
        changed = list(ids)
        changed[i] = rep
        with torch.no_grad():
            p = torch.softmax(loaded.model(input_ids=torch.tensor([changed])).logits[0], -1)[1]
        assert a.arrays["loo"][i] == pytest.approx(e["target"]["value"] - float(p), abs=1e-6)


def _section(tau, tvd, flips=0):
    names = ["attention_importance", "integrated_gradients", "loo"]
    m = [[1.0, tau, tau], [tau, 1.0, 0.5], [tau, 0.5, 1.0]]
    p = [[0.0, 0.01, 0.01], [0.01, 0.0, 0.01], [0.01, 0.01, 0.0]]
    return {
        "agreement": {"methods": names, "tokens": 10, "kendall_tau": m, "kendall_p": p,
                      "topk": {"k": [5, 1], "overlap": [m, m]}},
        "interventions": {"uniform_all": {"change": -0.1, "tvd": tvd}, "uniform_layer": [],
                          "permuted": {"tvd_median": tvd / 2, "tvd_max": tvd, "flips": flips, "seeds": 10,
                                       "abs_change_median": 0.05}},
    }


@pytest.mark.parametrize("tau,tvd,flips,phrase,depends", [
    (0.55, 0.20, 0, "attention agrees with", "the output depends on"),
    (0.25, 0.01, 0, "attention agrees weakly with", "the output barely depends on"),
    (0.15, 0.01, 2, "attention agrees only slightly (close to chance) with", "the output depends on"),
    (-0.05, 0.01, 2, "attention diverges from (no better than chance)", "the output depends on"),
    (-0.40, 0.00, 0, "attention diverges from (ranks tokens against)", "the output barely depends on"),
])
def test_verdict_wording(tau, tvd, flips, phrase, depends):
    from attn_desktop.core.explain.verdict import verdict

    v = verdict(_section(tau, tvd, flips))
    assert phrase in v["headline"] and depends in v["headline"]
    assert f"mean Kendall tau {tau:.2f}" in v["headline"] and "chance 0" in v["headline"]
    assert "explain" not in v["headline"].lower()
    assert any("attention vs IG" in d for d in v["details"]) and v["caveats"]


def test_verdict_names_the_attention_it_compared():
    from attn_desktop.core.explain.verdict import verdict

    section = _section(0.3, 0.1)
    section["read_row"] = {"rule": "mean", "attention_layer": 5}
    assert verdict(section)["details"][0] == (
        "Attention compared: layer 5 (the last), mean over heads, the mean over rows (the row the output reads).")
