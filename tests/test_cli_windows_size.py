"""`analyze --windows SIZE` with SIZE above the model's maximum does what the window's dialog does:
it uses the model's maximum, and says so in one line on stderr. Sizes that fit pass unchanged."""

from test_windows import _document

from attn_desktop.cli import main
from attn_desktop.core.store.session import load_session


def test_window_size_above_the_model_is_clamped_with_a_note(tiny_model_paths, loaded_models, tmp_path, capsys):
    loaded = loaded_models("bert")
    limit = loaded.max_positions
    doc = tmp_path / "lease.txt"
    doc.write_text(_document(loaded, 2.0), encoding="utf-8")
    out = tmp_path / "lease.attn"
    model = str(tiny_model_paths["bert"])
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--windows", "4096",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    note = f"window size 4096 is more than the model's {limit} positions: using {limit}"
    assert [line for line in captured.err.splitlines() if "window size" in line] == [note]
    info = load_session(out).manifest["windows"]
    assert info["size"] == limit and info["stride"] == (limit - 2) // 2  # [CLS] and [SEP] in each window
    assert f"windows of at most {limit} tokens" in captured.out

    # a size that fits is used as given, with no note
    assert main(["analyze", "--text-file", str(doc), "--model", model, "--windows", "48:24",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "window size" not in captured.err
    assert load_session(out).manifest["windows"]["size"] == 48


def test_a_stride_given_for_the_larger_window_becomes_half_a_window(tiny_model_paths, loaded_models, tmp_path, capsys):
    loaded = loaded_models("bert")
    limit = loaded.max_positions
    doc = tmp_path / "lease.txt"
    doc.write_text(_document(loaded, 2.0), encoding="utf-8")
    out = tmp_path / "lease.attn"
    assert main(["analyze", "--text-file", str(doc), "--model", str(tiny_model_paths["bert"]),
                 "--windows", "4096:2048", "--out", str(out)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("window")]
    assert err == [f"window size 4096 is more than the model's {limit} positions: using {limit}",
                   f"window stride 2048 does not fit a window of {limit}: using half a window"]
    info = load_session(out).manifest["windows"]
    assert info["size"] == limit and info["stride"] == (limit - 2) // 2
