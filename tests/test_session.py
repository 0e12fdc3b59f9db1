"""Session files: round trip, numpy.load compatibility, and clear refusals of damaged files."""

import json
import os
import zipfile

import numpy as np
import pytest

from attn_desktop.core.errors import UserError
from attn_desktop.core.pipeline import analyze
from attn_desktop.core.store.session import load_session, save_session

TEXT = "The tenant shall pay the rent on the first day of each month."


@pytest.fixture(scope="module")
def bert_analysis(loaded_models):
    return analyze(loaded_models("bert"), TEXT)


@pytest.fixture(scope="module")
def bart_analysis(loaded_models):
    return analyze(loaded_models("bart"), TEXT, target_text="the rent")


def test_round_trip_and_numpy_load(bert_analysis, tmp_path):
    path = save_session(bert_analysis, tmp_path / "s.attn")
    with np.load(path) as z:
        assert set(z.files) == {"manifest.json", "attentions"}
        np.testing.assert_array_equal(z["attentions"], bert_analysis.arrays["attentions"])
    back = load_session(path)
    assert back.text == TEXT and back.tokens == bert_analysis.tokens
    manifest = back.manifest
    assert manifest["schema_version"] == 2
    assert manifest["model"]["kind"] == "encoder" and len(manifest["model"]["weights_sha256"]) == 1
    assert {"tokenize", "forward", "total"} <= set(manifest["timings"])
    assert {"torch", "transformers", "numpy", "attn_desktop"} <= set(manifest["versions"])
    assert manifest["arrays"]["attentions"]["dtype"] == "float16"


def test_encoder_decoder_round_trip(bart_analysis, tmp_path):
    path = save_session(bart_analysis, tmp_path / "s.attn")
    back = load_session(path)
    assert back.is_encoder_decoder
    assert back.decoder_tokens == bart_analysis.decoder_tokens
    assert set(back.arrays) == {"encoder_attentions", "decoder_attentions", "cross_attentions"}
    q, k = back.axis_tokens("cross")
    assert back.attention("cross").shape[2:] == (len(q), len(k))


def test_unknown_arrays_are_kept_and_ignored(bert_analysis, tmp_path):
    bert_analysis.arrays["future_thing"] = np.arange(3)
    try:
        back = load_session(save_session(bert_analysis, tmp_path / "s.attn"))
    finally:
        del bert_analysis.arrays["future_thing"]
    np.testing.assert_array_equal(back.arrays["future_thing"], np.arange(3))


def rewrite(path, manifest=None, arrays=None):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    if manifest is not None:
        members["manifest.json"] = json.dumps(manifest).encode()
    for name, array in (arrays or {}).items():
        import io

        buf = io.BytesIO()
        np.save(buf, array)
        members[f"{name}.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def test_wrong_schema_version_is_refused(bert_analysis, tmp_path):
    path = save_session(bert_analysis, tmp_path / "s.attn")
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    manifest["schema_version"] = 99
    rewrite(path, manifest=manifest)
    with pytest.raises(UserError, match="schema version 99"):
        load_session(path)


def test_wrong_shape_is_refused(bert_analysis, tmp_path):
    path = save_session(bert_analysis, tmp_path / "s.attn")
    rewrite(path, arrays={"attentions": np.zeros((2, 4, 3, 3), np.float16)})
    with pytest.raises(UserError, match="shape"):
        load_session(path)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage"])
def test_damaged_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.attn"
    path.write_bytes(content)
    with pytest.raises(UserError, match="damaged or not a session"):
        load_session(path)


def test_foreign_zip_is_refused(tmp_path):
    path = tmp_path / "foreign.attn"
    np.savez(path.with_suffix(".npz"), a=np.zeros(3))
    path.with_suffix(".npz").rename(path)
    with pytest.raises(UserError, match="not an attn-desktop session"):
        load_session(path)


def test_truncated_session_is_refused(bert_analysis, tmp_path):
    path = save_session(bert_analysis, tmp_path / "s.attn")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError):
        load_session(path)


def test_failed_save_leaves_the_old_file_and_no_temporary(bert_analysis, tmp_path):
    path = save_session(bert_analysis, tmp_path / "s.attn")
    before = path.read_bytes()
    bert_analysis.arrays["broken"] = np.array([object()], dtype=object)
    try:
        with pytest.raises(UserError, match="not numeric"):
            save_session(bert_analysis, path)
    finally:
        del bert_analysis.arrays["broken"]
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.attn"]


def test_unwritable_destination_is_refused(bert_analysis, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        save_session(bert_analysis, tmp_path / "no" / "such" / "s.attn")
    with pytest.raises(UserError, match="is a folder"):
        save_session(bert_analysis, tmp_path)
