"""Output paths and writes (issue 13): a full disk, a name too long, an append-only folder or a
signal leave no partial file and the existing file untouched; stale temporaries are removed at
the next save; names are quoted in messages. Sessions are built by hand (tests/hostile.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hostile import session

from attn_desktop.core.errors import UserError
from attn_desktop.core.store import writes
from attn_desktop.core.store.session import load_session, save_session
from attn_desktop.core.store.writes import atomic_write, remove_stale_temporaries


@pytest.fixture
def analysis(tmp_path_factory):
    return load_session(session(tmp_path_factory.mktemp("src") / "src.attn"))


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_simulated_full_disk_keeps_the_old_file_and_leaves_nothing(analysis, tmp_path, monkeypatch):
    path = save_session(analysis, tmp_path / "s.attn")
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writes.os, "fsync", full)
    with pytest.raises(UserError, match="disk is full; nothing was written and the existing file is unchanged"):
        save_session(analysis, path)
    assert path.read_bytes() == before and listing(tmp_path) == ["s.attn"]


def test_full_disk_while_writing_the_members(tmp_path):
    def write(fh):
        fh.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="out.bin': the disk is full; nothing was written$"):
        atomic_write(tmp_path / "out.bin", write, what="export")
    assert listing(tmp_path) == []


@pytest.fixture
def tiny_filesystem(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tiny file system here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_file_system(analysis, tiny_filesystem):
    small = session(tiny_filesystem / "small.attn")  # a few kB: fits
    before = small.read_bytes()
    big = load_session(session(tiny_filesystem / "tmp.attn"))
    os.unlink(tiny_filesystem / "tmp.attn")
    big.arrays["padding"] = __import__("numpy").zeros(100_000)
    with pytest.raises(UserError, match="disk is full"):
        save_session(big, small)
    assert small.read_bytes() == before and listing(tiny_filesystem) == ["small.attn"]


def test_name_of_255_bytes_is_written_and_256_refused(analysis, tmp_path):
    limit = writes.name_max(tmp_path)
    longest = tmp_path / ("a" * (limit - 5) + ".attn")
    assert load_session(save_session(analysis, longest)).text == analysis.text
    with pytest.raises(UserError, match=f"file name is {limit + 1} bytes; this file system allows {limit}"):
        save_session(analysis, tmp_path / ("b" * (limit - 4) + ".attn"))
    assert listing(tmp_path) == [longest.name]


def chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_append_only_folder_is_refused_before_anything_is_written(analysis, tmp_path):
    folder = tmp_path / "ao"
    folder.mkdir()
    existing = save_session(analysis, folder / "s.attn")
    before = existing.read_bytes()
    if not chattr("+a", folder):
        pytest.skip("chattr +a is not available here")
    try:
        for target in (existing, folder / "new.attn"):
            with pytest.raises(UserError, match="append-only"):
                save_session(analysis, target)
        assert listing(folder) == ["s.attn"] and existing.read_bytes() == before
    finally:
        chattr("-a", folder)


def test_destinations_that_are_not_regular_files(analysis, tmp_path):
    fifo = tmp_path / "pipe.attn"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        save_session(analysis, fifo)
    with pytest.raises(UserError, match="is a folder"):
        save_session(analysis, tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        save_session(analysis, tmp_path / "no" / "s.attn")
    assert listing(tmp_path) == ["pipe.attn"]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_are_removed_at_the_next_save(analysis, tmp_path):
    stale = tmp_path / f".s.attn.{dead_pid()}-abcdefgh.tmp"
    live = tmp_path / f".s.attn.{os.getppid()}-abcdefgh.tmp"
    old_style = tmp_path / ".s.attn.k2j4h5g6.tmp"
    fresh_old_style = tmp_path / ".t.attn.k2j4h5g6.tmp"
    foreign = tmp_path / ".notes.txt.swp.tmp"
    for p in (stale, live, old_style, fresh_old_style, foreign):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 2 * 3600
    os.utime(old_style, (hour_ago, hour_ago))
    save_session(analysis, tmp_path / "other.attn")
    assert sorted(listing(tmp_path)) == sorted([live.name, fresh_old_style.name, foreign.name, "other.attn"])


def test_killed_save_leaves_a_temporary_that_the_next_save_removes(analysis, tmp_path):
    """SIGKILL cannot be caught: the partial file stays until the next save to that folder;
    SIGTERM unwinds the save in the command line and leaves nothing."""
    script = textwrap.dedent("""
        import sys, time
        from attn_desktop.cli import _end_on_sigterm
        from attn_desktop.core.store.writes import atomic_write
        _end_on_sigterm()
        def write(fh):
            fh.write(b"partial")
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)
        try:
            atomic_write(sys.argv[1], write)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    target = tmp_path / "s.attn"
    for sig, left in ((signal.SIGTERM, 0), (signal.SIGKILL, 1)):
        child = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(sig)
        child.wait(timeout=30)
        child.stdout.close()
        assert len([n for n in listing(tmp_path) if n.endswith(".tmp")]) == left, sig
    assert not target.exists()
    save_session(analysis, target)
    assert listing(tmp_path) == ["s.attn"]


def test_remove_stale_temporaries_touches_only_regular_files_of_ours(tmp_path):
    link = tmp_path / f".s.attn.{dead_pid()}-abcdefgh.tmp"
    link.symlink_to(tmp_path / "elsewhere")
    assert remove_stale_temporaries(tmp_path) == [] and link.is_symlink()


# -- the command line --------------------------------------------------------------------------------
def run_cli(capsys, *args):
    from attn_desktop.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_full_disk_is_one_line_status_2(capsys, tmp_path, tiny_model_paths, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writes.os, "fsync", full)
    code, out, err = run_cli(capsys, "analyze", "--text", "The bank.", "--model", str(tiny_model_paths["bert"]),
                             "--out", str(tmp_path / "s.attn"))
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "disk is full" in err
    assert listing(tmp_path) == []


def test_cli_name_with_a_newline_keeps_the_summary_on_one_line(capsys, tmp_path, tiny_model_paths):
    out_path = tmp_path / "two\nlines.attn"
    code, out, err = run_cli(capsys, "analyze", "--text", "The bank.", "--model", str(tiny_model_paths["bert"]),
                             "--out", str(out_path))
    assert code == 0 and len(out.splitlines()) == 1 and "two\\nlines.attn'" in out
    assert out_path.is_file()


def test_cli_refuses_a_device_as_output(capsys, tiny_model_paths):
    code, out, err = run_cli(capsys, "analyze", "--text", "The bank.", "--model", str(tiny_model_paths["bert"]),
                             "--out", "/dev/null")
    assert code == 2 and "not a regular file" in err and len(err.splitlines()) == 1


def test_report_on_a_full_disk_is_one_line_and_leaves_nothing(analysis, tmp_path, monkeypatch):
    from attn_desktop.core.report import write_report

    out = tmp_path / "r.html"
    out.write_text("old", encoding="utf-8")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writes.os, "fsync", full)
    with pytest.raises(UserError, match="cannot write the report 'r.html'|r.html': the disk is full"):
        write_report(analysis, out)
    assert out.read_text(encoding="utf-8") == "old" and listing(tmp_path) == ["r.html"]
    monkeypatch.undo()
    limit = writes.name_max(tmp_path)
    longest = tmp_path / ("a" * (limit - 5) + ".html")
    assert write_report(analysis, longest).read_bytes().startswith(b"<!DOCTYPE html>")
