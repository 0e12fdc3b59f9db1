"""Hostile and damaged session files are refused in one line, before memory is spent on them
(issue 13, "Session files"). Every file is built here by hand; no model is needed."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from hostile import TEXT, attention, load_limited, manifest, npy, patch_flags, session, write_zip

from attn_desktop.core.errors import UserError
from attn_desktop.core.store.session import load_session


def refused(path, match: str) -> str:
    with pytest.raises(UserError, match=match) as info:
        load_session(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_hand_built_session_loads(tmp_path):
    """The baseline the hostile variants below depart from."""
    an = load_session(session(tmp_path / "ok.attn"))
    assert an.text == TEXT and an.attention("self").shape == (2, 3, 7, 7)


# -- zip bombs and sizes ----------------------------------------------------------------------------
def bomb(path, member: str, size: int, header: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("manifest.json", json.dumps(manifest({"attentions": attention()})))
        with zf.open(member, "w", force_zip64=True) as fh:
            fh.write(header)
            zero = bytes(1 << 24)
            for _ in range(size >> 24):
                fh.write(zero)


def test_zip_bomb_array_is_refused_before_inflating_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.attn"
    header = npy(np.zeros(0, np.float16))
    bomb(path, "attentions.npy", 256 << 20, header)
    assert path.stat().st_size < 4 << 20
    message = refused(path, "zip bomb")
    assert "attentions.npy" in message
    run = load_limited(path, limit_mb=300)
    assert run.returncode == 2 and "REFUSED" in run.stdout and "zip bomb" in run.stdout, run.stderr


def test_manifest_bomb_is_refused(tmp_path):
    path = tmp_path / "manifest-bomb.attn"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.json", b" " * (64 << 20))
        zf.writestr("attentions.npy", npy(attention()))
    assert path.stat().st_size < 1 << 20
    refused(path, "manifest")


def test_npy_header_declaring_a_trillion_values_is_refused_in_bounded_memory(tmp_path):
    arrays = {"attentions": attention()}
    fake = npy(np.zeros(1, np.float16)).replace(b"(1,)", b"(1000000, 1000000)")
    man = manifest(arrays)
    man["arrays"]["attentions"]["shape"] = [1000000, 1000000]
    path = tmp_path / "huge.attn"
    write_zip(path, {"manifest.json": json.dumps(man).encode(), "attentions.npy": fake})
    refused(path, "does not match its")
    run = load_limited(path, limit_mb=300)
    assert run.returncode == 2 and "does not match its" in run.stdout, run.stderr


def test_array_shape_other_than_the_manifest_says_is_refused(tmp_path):
    arrays = {"attentions": attention()}
    man = manifest(arrays)
    man["arrays"]["attentions"]["shape"] = [2, 3, 7, 8]
    path = session(tmp_path / "s.attn", arrays, man)
    refused(path, "manifest does not list")


def test_array_shape_other_than_the_tokens_require_is_refused(tmp_path):
    path = session(tmp_path / "s.attn", {"attentions": attention(q=6, k=6)})
    refused(path, "expected \\[L x H x n x n\\]")


def test_too_many_members_are_refused(tmp_path):
    path = tmp_path / "many.attn"
    members = {"manifest.json": b"{}"}
    members.update({f"a{i}.npy": b"" for i in range(5000)})
    write_zip(path, members)
    refused(path, "members")


# -- exceptions that used to escape -----------------------------------------------------------------
def test_deeply_nested_manifest(tmp_path):
    path = tmp_path / "deep.attn"
    write_zip(path, {"manifest.json": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                     "attentions.npy": npy(attention())})
    refused(path, "nested 100001 levels")


@pytest.mark.parametrize("field,value,match", [
    ("model", "tiny", "'model' is not an object"),
    ("methods", ["rollout"], "'methods' is not an object"),
    ("tokens", "abc", "tokens are missing"),
    ("text", 7, "lacks the text"),
])
def test_fields_of_the_wrong_type(tmp_path, field, value, match):
    refused(session(tmp_path / "s.attn", **{field: value}), match)


def test_offset_of_infinity(tmp_path):
    path = session(tmp_path / "s.attn")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["manifest.json"] = members["manifest.json"].replace(b'"end": 3', b'"end": Infinity', 1)
    write_zip(path, members)
    refused(path, "span outside the text")


def test_encrypted_member(tmp_path):
    path = session(tmp_path / "s.attn")
    patch_flags(path, "attentions.npy", flag_bits=0x1)
    refused(path, "encrypted")


@pytest.mark.parametrize("method", [99, zipfile.ZIP_LZMA])
def test_unknown_compression(tmp_path, method):
    path = session(tmp_path / "s.attn")
    patch_flags(path, "attentions.npy", method=method)
    refused(path, "unsupported compression")


def test_corrupt_deflate(tmp_path):
    path = tmp_path / "s.attn"
    arrays = {"attentions": attention()}
    write_zip(path, {"manifest.json": json.dumps(manifest(arrays)).encode(),
                     "attentions.npy": npy(arrays["attentions"])}, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("attentions.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 10, start + 40):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    refused(path, "damaged")


@pytest.mark.parametrize("layers,heads,match", [(0, 3, "layer count"), (2, 0, "head count"),
                                                (True, 3, "layer count"), (2.0, 3, "layer count")])
def test_zero_or_odd_sizes(tmp_path, layers, heads, match):
    refused(session(tmp_path / "s.attn", layers=layers, heads=heads), match)


def test_zero_tokens(tmp_path):
    refused(session(tmp_path / "s.attn", tokens=[]), "tokens are missing or empty")


@pytest.mark.parametrize("dtype", ["<U4", "datetime64[s]", "complex64", "bool", "int64"])
def test_attention_of_a_non_float_dtype(tmp_path, dtype):
    values = attention().astype(np.float32)
    odd = values.astype(dtype) if dtype not in ("<U4",) else values.astype(str).astype(dtype)
    refused(session(tmp_path / "s.attn", {"attentions": odd}), "dtype")


@pytest.mark.parametrize("bad,match", [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"),
                                       (-0.25, "outside \\[0, 1\\]"), (1.5, "outside \\[0, 1\\]")])
def test_attention_values_out_of_range(tmp_path, bad, match):
    values = attention()
    values[1, 2, 3, 4] = bad
    refused(session(tmp_path / "s.attn", {"attentions": values}), match)


def test_fp16_rounding_above_one_is_accepted(tmp_path):
    values = attention()
    values[0, 0, 0] = 0
    values[0, 0, 0, 0] = np.float16(1.0009765625)
    assert load_session(session(tmp_path / "s.attn", {"attentions": values})).arrays["attentions"].max() > 1


@pytest.mark.parametrize("version", [True, 1.0, "2", None, 99])
def test_schema_version_must_be_a_known_int(tmp_path, version):
    refused(session(tmp_path / "s.attn", version=version), "schema version")


@pytest.mark.parametrize("params,match", [
    ({"alpha": "0.5", "head_fusion": "mean"}, "alpha"),
    ({"alpha": float("nan"), "head_fusion": "mean"}, "alpha"),
    ({"alpha": 1.5, "head_fusion": "mean"}, "alpha"),
    ({"alpha": 0.5, "head_fusion": "avg"}, "head fusion"),
    ({"alpha": 0.5, "head_fusion": 3}, "head fusion"),
    ({"alpha": 0.5, "head_fusion": "mean", "start_layer": -1}, "start layer"),
    ({"alpha": 0.5, "head_fusion": "mean", "start_layer": "0"}, "start layer"),
])
def test_rollout_parameters(tmp_path, params, match):
    arrays = {"attentions": attention(), "rollout": np.full((2, 7, 7), 1 / 7, np.float32)}
    refused(session(tmp_path / "s.attn", arrays, methods={"rollout": params}), match)


def test_flow_without_rows_and_rows_out_of_range(tmp_path):
    flow = np.full((1, 7), 1 / 7, np.float32)
    refused(session(tmp_path / "a.attn", {"attentions": attention(), "flow": flow}), "come only together")
    arrays = {"attentions": attention(), "flow": flow, "flow_rows": np.array([7])}
    refused(session(tmp_path / "b.attn", arrays), "token indices outside")


@pytest.mark.parametrize("name", ["..", "a/b", "../x", "x y", "ä"])
def test_array_names_outside_the_plain_alphabet(tmp_path, name):
    path = tmp_path / "s.attn"
    arrays = {"attentions": attention()}
    man = manifest(arrays)
    man["arrays"][name] = {"dtype": "float32", "shape": [3]}
    write_zip(path, {"manifest.json": json.dumps(man).encode(), "attentions.npy": npy(arrays["attentions"]),
                     f"{name}.npy": npy(np.zeros(3, np.float32))})
    refused(path, "unexpected member")


def test_duplicate_members(tmp_path):
    path = session(tmp_path / "s.attn")
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning):
        zf.writestr("attentions.npy", npy(attention(seed=1)))
    refused(path, "appears twice")


def test_unknown_arrays_must_be_numeric_finite_and_bounded(tmp_path):
    ok = {"attentions": attention(), "future_thing": np.arange(5)}
    assert "future_thing" in load_session(session(tmp_path / "ok.attn", ok)).arrays
    for i, (value, match) in enumerate([(np.array([1.0, np.nan]), "NaN"), (np.array(["a"]), "not a number type"),
                                        (np.zeros(5_000_000, np.float32), "at most")]):
        refused(session(tmp_path / f"{i}.attn", {"attentions": attention(), "future_thing": value}), match)


@pytest.mark.parametrize("view", [
    [1, 2], {"a": {"b": {"c": 1}}}, {"a": "x" * 5000}, {"a": float("inf")}, {f"k{i}": 1 for i in range(100)},
    {"bad key/": 1},
])
def test_view_must_be_a_bounded_object_of_simple_values(tmp_path, view):
    refused(session(tmp_path / "s.attn", view=view), "'view'")


def test_fifo_and_folder_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.attn"
    os.mkfifo(fifo)
    refused(fifo, "not a regular file")
    refused(tmp_path, "not a regular file")
    with pytest.raises(UserError, match="not found"):
        load_session(tmp_path / "missing.attn")


def test_messages_quote_names_with_newlines(tmp_path):
    path = tmp_path / "two\nlines.attn"
    path.write_bytes(b"not a zip")
    message = refused(path, "damaged")
    assert "'two\\nlines.attn'" in message


def test_negative_zero_and_wider_floats_are_accepted(tmp_path):
    values = attention().astype(np.float32)
    values[0, 0, 0, 0] = -0.0
    an = load_session(session(tmp_path / "a.attn", {"attentions": values}))
    assert np.signbit(an.arrays["attentions"][0, 0, 0, 0])
    wide = {"attentions": attention().astype(np.float64), "saliency": np.linspace(-3, 3, 7)}
    assert load_session(session(tmp_path / "b.attn", wide)).arrays["saliency"].dtype == np.float64


def test_member_claiming_more_bytes_than_the_file_holds(tmp_path):
    """A stored member declaring 4 GB in a file of a few kB: refused before any buffer is made."""
    path = session(tmp_path / "s.attn")
    data = bytearray(path.read_bytes())
    central = data.find(b"attentions.npy", data.find(b"PK\x01\x02")) - 46
    assert data[central:central + 4] == b"PK\x01\x02"
    data[central + 20:central + 28] = (0xFFFFFFF0).to_bytes(4, "little") * 2  # compressed, uncompressed
    path.write_bytes(bytes(data))
    refused(path, "claims more bytes than the file holds")


def test_token_text_of_a_megabyte_is_refused(tmp_path):
    toks = manifest({"attentions": attention()})["tokens"]
    toks[1]["text"] = "x" * 1_000_000
    refused(session(tmp_path / "s.attn", tokens=toks), "token 1 is longer than 1000 characters")


def test_schema_1_reader_drops_a_view_it_never_had(tmp_path):
    an = load_session(session(tmp_path / "s.attn", version=1, view={"layer": 1}))
    assert an.manifest["schema_version"] == 1 and "view" not in an.manifest
    refused(session(tmp_path / "t.attn", version=2, view={"layer": [[[1]]]}), "'view'")


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("bad,match", [(np.nan, "NaN or infinite"), (1.5, "outside \\[0, 1\\]"),
                                       (-0.25, "outside \\[0, 1\\]")])
def test_values_of_a_mapped_member_are_checked_in_the_checksum_pass(tmp_path, monkeypatch, chunk, bad, match):
    """Members mapped from the file (as 256 MB ones are) have their values checked buffer by buffer
    while the checksum is computed, including a value cut by a buffer's end."""
    from attn_desktop.core.store import archive

    monkeypatch.setattr(archive, "MAP_FROM", 1)
    monkeypatch.setattr(archive, "_READ_CHUNK", chunk)
    good = load_session(session(tmp_path / "good.attn"))
    assert isinstance(good.arrays["attentions"], np.memmap)
    for where in ([0, 0, 0, 0], [1, 2, 3, 4], [-1, -1, -1, -1]):
        values = attention()
        values[tuple(where)] = bad
        refused(session(tmp_path / "s.attn", {"attentions": values}), match)
