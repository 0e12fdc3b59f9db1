"""The heads stage through analyze() and the command line (analyze --methods heads, prune)."""

import json

import numpy as np
import pytest

from attn_desktop.cli import main
from attn_desktop.core.errors import UserError
from attn_desktop.core.model.loading import load_model
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.store.session import load_session, save_session

TEXT = "The bank approved the loan after the river bank flooded."


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_encoder_decoder_stage_arrays_and_session(loaded_models, tmp_path):
    loaded = loaded_models("bart")
    progress = []
    analysis = analyze(loaded, TEXT, target_text="the bank flooded", methods=["heads"],
                       target={"kind": "seq2seq-token", "position": 2}, heads_options={"threshold": 1e-4},
                       progress=lambda f, m: progress.append(f))
    a = analysis.arrays
    for s in ("encoder", "decoder", "cross"):
        assert a[f"{s}_head_importance"].shape == (2, 4) and a[f"{s}_head_importance"].dtype == np.float32
        assert a[f"{s}_head_importance_grad"].shape == (2, 4)
        assert a[f"{s}_head_entropy"].shape == (2, 4)
        assert a[f"{s}_layer_importance"].shape == (2,)
    assert a["encoder_layer_smoothing"].shape == (3,) and a["decoder_layer_smoothing"].shape == (3,)
    section = analysis.manifest["heads"]
    assert section["threshold"] == 1e-4
    assert section["target"]["kind"] == "seq2seq-token"
    dead = {tuple(p) for p in section["sets"]["cross"]["no_effect"]}
    assert dead == {tuple(p) for p in zip(*np.nonzero(np.abs(a["cross_head_importance"]) < 1e-4), strict=True)}
    assert progress == sorted(progress) and progress[-1] == 1.0
    path = save_session(analysis, tmp_path / "bart.attn")
    back = load_session(path)
    np.testing.assert_array_equal(back.arrays["cross_head_importance"], a["cross_head_importance"])
    assert back.manifest["heads"]["sets"]["cross"]["gradient_vs_ablation"] == json.loads(
        json.dumps(section["sets"]["cross"]["gradient_vs_ablation"]))


def test_stage_refuses_bad_options_before_running(loaded_models):
    loaded = loaded_models("bert-cls")
    with pytest.raises(UserError, match="threshold"):
        analyze(loaded, TEXT, methods=["heads"], heads_options={"threshold": -1})
    with pytest.raises(UserError, match="unknown heads option"):
        analyze(loaded, TEXT, methods=["heads"], heads_options={"colour": 1})


def test_recording_only_models_skip_ablation_and_say_why(loaded_models):
    analysis = analyze(loaded_models("mpnet"), TEXT, methods=["heads"], target={"kind": "reference", "reference": "a flood"})
    assert "head_importance" not in analysis.arrays and "head_entropy" in analysis.arrays
    assert "recording only" in analysis.manifest["heads"]["skipped"]["head_importance"]


def test_cli_analyze_heads(tiny_model_paths, tmp_path, capsys):
    out = tmp_path / "s.attn"
    code, stdout, err = run(capsys, "analyze", "--text", TEXT, "--model", str(tiny_model_paths["gpt2"]),
                            "--methods", "heads", "--heads-threshold", "0.5", "--out", str(out))
    assert code == 0, err
    assert "heads: 8 of 8 heads with no effect (|change| < 0.5)" in stdout
    arrays = load_session(out).arrays
    assert {"head_importance", "head_importance_grad", "layer_importance", "head_entropy", "layer_smoothing"} <= set(arrays)
    assert arrays["layer_smoothing"].shape == (3,)


def test_cli_prune(tiny_model_paths, tmp_path, capsys):
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "one.txt").write_text(TEXT, encoding="utf-8")
    (texts / "two.txt").write_text("The tenant shall pay the rent.", encoding="utf-8")
    (texts / "README.md").write_text("not read", encoding="utf-8")
    out = tmp_path / "pruned"
    code, stdout, err = run(capsys, "prune", "--model", str(tiny_model_paths["gpt2"]), "--heads", "0.1,1.2,1.3",
                            "--texts", str(texts), "--out", str(out), "--repeats", "1")
    assert code == 0, err
    assert "removed 3 of 8 heads (self:0.1 1.2 1.3)" in stdout
    assert "one.txt" in stdout and "two.txt" in stdout and "README" not in stdout
    assert "forward time pruned / original" in stdout
    pruned = load_model(out)
    assert pruned.num_parameters < load_model(tiny_model_paths["gpt2"]).num_parameters
    # refusals: one line, exit 2, nothing written
    again = run(capsys, "prune", "--model", str(tiny_model_paths["gpt2"]), "--heads", "0.1",
                "--texts", str(texts), "--out", str(out))
    assert again[0] == 2 and "not an empty folder" in again[2]
    bad = run(capsys, "prune", "--model", str(tiny_model_paths["gpt2"]), "--heads", "zero",
              "--texts", str(texts), "--out", str(tmp_path / "new"))
    assert bad[0] == 2 and "cannot read the head" in bad[2] and len(bad[2].strip().splitlines()) == 1
    whole = run(capsys, "prune", "--model", str(tiny_model_paths["gpt2"]), "--heads", "0.0,0.1,0.2,0.3",
                "--texts", str(texts), "--out", str(tmp_path / "new"))
    assert whole[0] == 2 and "at least one head" in whole[2]
    assert not (tmp_path / "new").exists()


def test_saved_heads_sections_are_checked(loaded_models):
    from attn_desktop.core.store.schema import SECTION_CHECKS, Dims

    loaded = loaded_models("bert-cls")
    good = analyze(loaded, TEXT, methods=["heads"], target={"kind": "class"}).manifest["heads"]
    section = json.loads(json.dumps(good))
    dims = Dims(n=14, m=None, L=2, Ld=None, H=4)
    SECTION_CHECKS["heads"]("s.attn", section, dims)
    for path, value in [(("smoothing", "self", "steepest_rise_at"), 99), (("sets", "self", "heads"), 5),
                        (("sets", "self", "no_effect"), [[0, 7]]), (("threshold",), "low"),
                        (("sets", "self", "gradient_vs_ablation", "spearman"), "high"), (("skipped",), [])]:
        bad = json.loads(json.dumps(good))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(UserError, match="'heads' section"):
            SECTION_CHECKS["heads"]("s.attn", bad, dims)


def test_heads_after_an_explanation_method(loaded_models):
    progress = []
    analysis = analyze(loaded_models("bert-cls"), TEXT, methods=["saliency", "heads"], target={"kind": "class", "class": 2},
                       progress=lambda f, m: progress.append(f))
    assert "saliency" in analysis.arrays and "head_importance" in analysis.arrays
    assert analysis.manifest["heads"]["target"]["class"] == analysis.manifest["explain"]["target"]["class"] == 2
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert analysis.manifest["timings"]["heads"] > 0
