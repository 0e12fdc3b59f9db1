"""Text sources (issue 13): regular files, devices, FIFOs and standard input read with a size cap
and one UTF-8 rule, in bounded memory, never blocking without a way out."""

from __future__ import annotations

import codecs
import contextlib
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.text_source import TEXT_LIMIT, decode_text, read_text, text_argument


def test_utf8_with_and_without_bom(tmp_path):
    for name, data in (("a.txt", "Zoë pays.".encode()), ("b.txt", codecs.BOM_UTF8 + "Zoë pays.".encode())):
        (tmp_path / name).write_bytes(data)
        assert read_text(tmp_path / name) == "Zoë pays."


@pytest.mark.parametrize("data,match", [
    ("Zoë".encode("latin-1"), "is not UTF-8 text \\(byte 2\\); save it as UTF-8"),
    ("Zoë".encode("utf-16"), "is UTF-16 text"),
    (b"abc\x00def", "looks like a binary file"),
])
def test_one_rule_refuses_the_rest(tmp_path, data, match):
    (tmp_path / "t.txt").write_bytes(data)
    with pytest.raises(UserError, match=match):
        read_text(tmp_path / "t.txt")
    with pytest.raises(UserError, match=match):
        decode_text(data, "x")


def test_folder_missing_and_sparse_files(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        read_text(tmp_path)
    with pytest.raises(UserError, match="text file not found"):
        read_text(tmp_path / "missing.txt")
    sparse = tmp_path / "sparse.txt"
    with open(sparse, "wb") as fh:
        fh.truncate(2 << 30)
    with pytest.raises(UserError, match="2147.5 MB; texts of up to 5 MB are read"):
        read_text(sparse)


def run_limited(code: str, *args, stdin=None, limit_mb: int = 300) -> subprocess.CompletedProcess:
    prelude = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({limit_mb} << 20, {limit_mb} << 20))
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], stdin=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


READ = """
    import sys
    from attn_desktop.core.errors import UserError
    from attn_desktop.core.text_source import read_text
    try:
        read_text(sys.argv[1])
    except UserError as exc:
        print("REFUSED", exc)
"""


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom"])
def test_endless_devices_stop_at_the_cap_in_bounded_memory(source):
    run = run_limited(READ, source)
    assert "REFUSED" in run.stdout and "holds more than 5 MB" in run.stdout, run.stderr


def test_sparse_file_is_refused_without_reading_it(tmp_path):
    sparse = tmp_path / "sparse.txt"
    with open(sparse, "wb") as fh:
        fh.truncate(2 << 30)
    run = run_limited(READ, str(sparse), limit_mb=200)
    assert "REFUSED" in run.stdout and "texts of up to 5 MB" in run.stdout, run.stderr


def test_stdin_from_dev_zero_through_the_command_line():
    with open("/dev/zero", "rb") as zero:
        run = run_limited("""
            import sys
            from attn_desktop.cli import main
            sys.exit(main(["analyze", "-", "--out", "/tmp/never-written.attn"]))
        """, stdin=zero, limit_mb=600)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == ["attn-desktop: error: standard input holds more than 5 MB; "
                                               "texts of up to 5 MB are read"]
    assert not os.path.exists("/tmp/never-written.attn")


def test_fifo_is_read_when_a_writer_comes(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as fh:
            fh.write(b"The tenant pays.")

    thread = threading.Thread(target=writer)
    thread.start()
    assert read_text(fifo) == "The tenant pays."
    thread.join()


def test_fifo_without_a_writer_can_be_cancelled_or_time_out(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Cancelled):
        read_text(fifo, cancel=stop.is_set)
    with pytest.raises(UserError, match="nothing arrived from 'in.fifo' in 0.3 s"):
        read_text(fifo, idle_timeout=0.3)


def test_fifo_over_the_cap(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as fh, contextlib.suppress(BrokenPipeError):  # the reader stops at the cap
            fh.write(b"a" * (TEXT_LIMIT + 10))

    thread = threading.Thread(target=writer)
    thread.start()
    with pytest.raises(UserError, match="holds more than 5 MB"):
        read_text(fifo)
    thread.join()


def test_text_argument_with_bytes_that_are_not_utf8():
    assert text_argument("Zoë") == "Zoë"
    with pytest.raises(UserError, match="--text is not UTF-8 \\(byte 2\\)"):
        text_argument(os.fsdecode(b"Zo\xebe"))


def test_command_line_text_with_non_utf8_bytes_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "attn_desktop", "analyze", "--text", b"caf\xe9 au lait",
                          "--out", str(tmp_path / "s.attn")], capture_output=True, timeout=120)
    assert run.returncode == 2 and run.stdout == b""
    assert run.stderr.splitlines() == [b"attn-desktop: error: the text given with --text is not UTF-8 (byte 3)"]
    assert os.listdir(tmp_path) == []


def test_command_line_reads_a_fifo_and_names_devices_correctly(tmp_path, capsys):
    from attn_desktop.cli import main

    code = main(["analyze", "--text-file", "/dev/zero", "--out", str(tmp_path / "s.attn")])
    err = capsys.readouterr().err
    assert code == 2 and "'zero' holds more than 5 MB" in err and "not found" not in err
    code = main(["analyze", "--text-file", str(tmp_path / "latin1.txt"), "--out", str(tmp_path / "s.attn")])
    assert code == 2 and "text file not found: '" in capsys.readouterr().err


def test_closed_standard_input_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "attn_desktop", "analyze", "-", "--out", str(tmp_path / "s.attn")],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, close_fds=True,
                         preexec_fn=lambda: os.close(0))
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "standard input" in run.stderr
