"""The headless command line, run as a user runs it: exit codes, one-line errors, files written or not."""

import os
import subprocess
import sys

import numpy as np

from attn_desktop.cli import main
from attn_desktop.core.store.session import load_session


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_writes_a_session_and_prints_one_line(tiny_model_paths, tmp_path, capsys):
    out = tmp_path / "s.attn"
    code, stdout, err = run(capsys, "analyze", "--text", "The bank approved.", "--model",
                            str(tiny_model_paths["bert"]), "--out", str(out))
    assert code == 0, err
    assert len(stdout.strip().splitlines()) == 1
    assert "2x4 layers x heads" in stdout and "tokens" in stdout
    assert load_session(out).arrays["attentions"].shape[:2] == (2, 4)


def test_analyze_text_file_and_generate(tiny_model_paths, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("The patient reports chest pain", encoding="utf-8")
    out = tmp_path / "g.attn"
    code, stdout, err = run(capsys, "analyze", "--text-file", str(src), "--model",
                            str(tiny_model_paths["gpt2"]), "--out", str(out), "--generate", "4")
    assert code == 0, err
    analysis = load_session(out)
    gen = [t for t in analysis.tokens if t.generated]
    assert 1 <= len(gen) <= 4
    assert analysis.manifest["generation"]["source"] == "greedy"
    assert analysis.text.startswith("The patient reports chest pain")
    n = len(analysis.tokens)
    assert analysis.arrays["attentions"].shape[-2:] == (n, n)


def test_encoder_decoder_generates_by_default(tiny_model_paths, tmp_path, capsys):
    out = tmp_path / "t5.attn"
    code, _, err = run(capsys, "analyze", "--text", "the bank", "--model", str(tiny_model_paths["t5"]),
                       "--out", str(out))
    assert code == 0, err
    analysis = load_session(out)
    assert analysis.manifest["generation"]["source"] == "greedy"
    assert len(analysis.decoder_tokens) >= 2


def test_target_text_is_teacher_forced(tiny_model_paths, tmp_path, capsys):
    out = tmp_path / "tf.attn"
    code, _, err = run(capsys, "analyze", "--text", "The bank", "--model", str(tiny_model_paths["llama"]),
                       "--out", str(out), "--target-text", " approved the loan")
    assert code == 0, err
    analysis = load_session(out)
    gen = [t.text for t in analysis.tokens if t.generated]
    assert "".join(gen).replace("␣", "") == "approvedtheloan"
    assert analysis.text == "The bank approved the loan"


def bad(capsys, tmp_path, *args, match):
    out = tmp_path / "never.attn"
    code, stdout, err = run(capsys, "analyze", *args, "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".attn", ".tmp"))] == []


def test_empty_and_whitespace_text(capsys, tmp_path, tiny_model_paths):
    bad(capsys, tmp_path, "--text", "", "--model", str(tiny_model_paths["bert"]), match="empty")
    bad(capsys, tmp_path, "--text", "  \n\t ", "--model", str(tiny_model_paths["bert"]), match="empty")


def test_binary_and_non_utf8_files(capsys, tmp_path, tiny_model_paths):
    binary = tmp_path / "b.dat"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    latin = tmp_path / "l.txt"
    latin.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    model = str(tiny_model_paths["bert"])
    bad(capsys, tmp_path, "--text-file", str(binary), "--model", model, match="binary")
    bad(capsys, tmp_path, "--text-file", str(latin), "--model", model, match="not UTF-8")
    bad(capsys, tmp_path, "--text-file", str(tmp_path / "missing.txt"), "--model", model, match="not found")


def test_unwritable_output(capsys, tmp_path, tiny_model_paths):
    code, _, err = run(capsys, "analyze", "--text", "x", "--model", str(tiny_model_paths["bert"]),
                       "--out", str(tmp_path / "missing" / "s.attn"))
    assert code == 2 and "does not exist" in err


def test_too_long_text_names_both_numbers(capsys, tmp_path, tiny_model_paths):
    text = " ".join(["bank"] * 100)
    bad(capsys, tmp_path, "--text", text, "--model", str(tiny_model_paths["bert"]), match="102 tokens")
    _, _, err = run(capsys, "analyze", "--text", text, "--model", str(tiny_model_paths["bert"]),
                    "--out", str(tmp_path / "never.attn"))
    assert "at most 64" in err


def test_truncate_is_explicit_and_recorded(capsys, tmp_path, tiny_model_paths):
    out = tmp_path / "t.attn"
    code, stdout, _ = run(capsys, "analyze", "--text", " ".join(["bank"] * 100), "--model",
                          str(tiny_model_paths["bert"]), "--out", str(out), "--truncate")
    assert code == 0 and "truncated from 102" in stdout
    analysis = load_session(out)
    assert len(analysis.tokens) == 64
    # 62 "bank"s fit beside [CLS] and [SEP]: the text from character 62 * 5 - 1 on was not analysed
    assert analysis.manifest["truncation"] == {"tokens_before_truncation": 102, "truncated": True,
                                               "analysed_chars": 309}


def test_model_refusals_reach_the_command_line(capsys, tmp_path, tiny_model_paths):
    bad(capsys, tmp_path, "--text", "x", "--model", "bert-base-uncased/v1", match="local folders")
    bad(capsys, tmp_path, "--text", "x", "--model", str(tmp_path / "nothing"), match="not found")


def test_generate_on_an_encoder_is_refused(capsys, tmp_path, tiny_model_paths):
    bad(capsys, tmp_path, "--text", "x", "--model", str(tiny_model_paths["bert"]), "--generate", "3",
        match="generation needs")


def test_models_lists_the_library(capsys, tmp_path, tiny_model_paths):
    import shutil

    shutil.copytree(tiny_model_paths["bart"], tmp_path / "bart-tiny")
    code, out, _ = run(capsys, "models", "--library", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"library: {tmp_path}"
    row = next(line for line in lines if line.startswith("bart-tiny"))
    assert "encoder-decoder" in row and "2x4" in row and row.rstrip().endswith("ok")
    assert any(line.startswith("demo") for line in lines)


def test_console_entry_point_reads_stdin(tiny_model_paths, tmp_path):
    out = tmp_path / "stdin.attn"
    proc = subprocess.run(
        [sys.executable, "-m", "attn_desktop", "analyze", "-", "--model", str(tiny_model_paths["bert"]),
         "--out", str(out)],
        input=b"The river bank.", capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert load_session(out).text == "The river bank."


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo.attn"
    code, stdout, err = run(capsys, "analyze", "--text", "I sat by the river bank.", "--out", str(out))
    assert code == 0, err
    assert stdout.startswith("all-MiniLM-L6-v2 (encoder), 9 tokens, 6x12")
    att = load_session(out).arrays["attentions"]
    assert att.dtype == np.float16 and att.shape == (6, 12, 9, 9)
