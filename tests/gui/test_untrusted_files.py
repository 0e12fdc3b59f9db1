"""The window and untrusted files (issue 13): texts are read off the GUI thread with the same rule
as the command line, and a session is opened all or nothing."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hostile import session  # noqa: E402

TIMEOUT = 60_000


def recent(window) -> list[str]:
    return list(window.settings.value("recent_files") or [])


@pytest.mark.parametrize("data,match", [("Zoë".encode("latin-1"), "not UTF-8 text (byte 2)"),
                                        (b"a\x00b", "binary file")])
def test_the_window_refuses_what_the_command_line_refuses(window, qtbot, tmp_path, data, match):
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    window.document.set_text("keep me")
    with qtbot.waitSignal(window.text_reader.failed, timeout=TIMEOUT) as failed:
        window.open_text_file(str(path))
    assert match in failed.args[1]
    assert window.document.text() == "keep me" and window.messages.level == "error"
    assert str(path) not in recent(window)


def test_dev_zero_is_refused_at_the_cap(window, qtbot):
    window.document.set_text("keep me")
    with qtbot.waitSignal(window.text_reader.failed, timeout=TIMEOUT) as failed:
        window.open_text_file("/dev/zero")
    assert "holds more than 5 MB" in failed.args[1] and window.document.text() == "keep me"


def test_a_fifo_never_blocks_the_gui_thread(window, qtbot, tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    window.document.set_text("before")
    window.open_text_file(str(fifo))  # returns at once: nobody writes yet
    assert window.document.text() == "before" and window.text_reader.busy
    qtbot.wait(300)  # the event loop keeps running meanwhile
    assert window.document.text() == "before"

    def writer():
        with open(fifo, "wb") as fh:
            fh.write(b"The tenant pays.")

    thread = threading.Thread(target=writer)
    with qtbot.waitSignal(window.text_reader.succeeded, timeout=TIMEOUT):
        thread.start()
    thread.join()
    assert window.document.text() == "The tenant pays."


def test_a_fifo_without_a_writer_is_cancelled_by_the_next_open(window, qtbot, tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    doc = tmp_path / "doc.txt"
    doc.write_text("The rent is due.", encoding="utf-8")
    window.open_text_file(str(fifo))
    with qtbot.waitSignal(window.text_reader.succeeded, timeout=TIMEOUT):
        window.open_text_file(str(doc))
    qtbot.waitUntil(lambda: not window.text_reader.busy, timeout=TIMEOUT)
    assert window.document.text() == "The rent is due."


def test_hostile_session_changes_nothing(window, qtbot, tmp_path):
    path = session(tmp_path / "bad.attn", version=True)
    window.document.set_text("keep me")
    title = window.windowTitle()
    with qtbot.waitSignal(window.session_failed, timeout=TIMEOUT) as failed:
        window.open_session(str(path))
    assert "schema version True" in failed.args[0]
    assert window.document.text() == "keep me" and window.windowTitle() == title
    assert str(path) not in recent(window) and str(path.resolve()) not in recent(window)


def test_session_that_fails_while_shown_is_all_or_nothing(window, qtbot, tmp_path, monkeypatch):
    good = session(tmp_path / "good.attn")
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT):
        window.open_session(str(good))
    window.state.update(layer=1, head=2)
    shown, sel = window.state.prepared, window.state.sel
    title, text = window.windowTitle(), window.document.text()
    other = session(tmp_path / "other.attn", view={"layer": 0, "head": 0, "measure": "attention"})
    real_show = type(window).show_prepared
    calls = []

    def failing_show(self, prepared):
        calls.append(prepared.source)
        real_show(self, prepared)
        if prepared.source == str(other):  # it was shown in part, then a view failed
            raise ValueError("a view could not draw it")

    monkeypatch.setattr(type(window), "show_prepared", failing_show)
    with qtbot.waitSignal(window.session_failed, timeout=TIMEOUT) as failed:
        window.open_session(str(other))
    assert "'other.attn' could not be shown (ValueError: a view could not draw it); nothing was changed" \
        == failed.args[0]
    assert window.state.prepared is shown and window.document.text() == text and window.state.sel == sel
    assert window.windowTitle() == title and window.messages.level == "error"
    assert not any("other.attn" in r for r in recent(window))


def test_a_save_on_a_full_disk_reports_and_leaves_nothing(window, qtbot, tmp_path, monkeypatch):
    import errno

    from attn_desktop.core.store import writes

    good = session(tmp_path / "good.attn")
    with qtbot.waitSignal(window.analysis_shown, timeout=TIMEOUT):
        window.open_session(str(good))
    text = window.document.text()
    out = tmp_path / "out"
    out.mkdir()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writes.os, "fsync", full)
    with qtbot.waitSignal(window.session_failed, timeout=TIMEOUT) as failed:
        window.save_session(str(out / "s.attn"))
    assert "the disk is full; nothing was written" in failed.args[0]
    assert os.listdir(out) == [] and window.document.text() == text
    assert window.messages.level == "error"


def test_exports_write_through_the_atomic_writer(tmp_path):
    from attn_desktop.core.errors import UserError
    from attn_desktop.gui.exports import write_atomic

    tmp_path = tmp_path / "out"  # the GUI fixtures keep settings and a library beside
    tmp_path.mkdir()

    with pytest.raises(UserError, match="file name is .* bytes; this file system allows"):
        write_atomic(tmp_path / ("x" * 300 + ".png"), b"data")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        write_atomic(fifo, b"data")
    assert sorted(os.listdir(tmp_path)) == ["pipe.png"]
    assert write_atomic(tmp_path / "a.png", b"data").read_bytes() == b"data"
