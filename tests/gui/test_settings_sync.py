"""Settings changes are visible at once and written to disk by the writer thread, never by the
thread that makes them (a write waiting on a busy disk froze the window after a model load)."""

import threading

from PySide6.QtCore import QSettings

from attn_desktop.gui import settings as app_settings
from attn_desktop.gui import settings_sync


def _file_text(s: QSettings) -> str:
    try:
        with open(s.fileName(), encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def test_changes_are_seen_at_once_and_written_by_the_writer_thread(qapp):
    s = app_settings.settings()
    assert isinstance(s, settings_sync.BackgroundSettings)
    assert settings_sync.wait_written()
    # hold the writer thread: a change must still return at once and be visible
    entered, release = threading.Event(), threading.Event()
    writer = settings_sync._get_writer()
    hold = _Hold(entered, release)
    hold.moveToThread(writer.thread())
    hold.go.emit()
    assert entered.wait(10)
    try:
        s.setValue("last_model", "/models/held")
        app_settings.add_recent("/tmp/a.txt", s)
        assert s.value("last_model") == "/models/held"
        assert app_settings.recent_files(s)[0].endswith("a.txt")
        assert "held" not in _file_text(s)  # nothing written by this thread
    finally:
        release.set()
    assert settings_sync.wait_written()
    assert "last_model=/models/held" in _file_text(s)
    other = app_settings.settings()  # another object on the same file sees it
    assert other.value("last_model") == "/models/held"
    s.remove("last_model")
    assert s.value("last_model", "none") == "none" and not s.contains("last_model")
    assert settings_sync.wait_written()
    assert "last_model" not in _file_text(s)


def test_an_unchanged_value_is_not_written_again(qapp, monkeypatch):
    s = app_settings.settings()
    s.setValue("colormap", "viridis")
    sent = []

    class Recorder:
        class apply:  # noqa: N801
            emit = staticmethod(lambda *a: sent.append(a[2:]))

    monkeypatch.setattr(settings_sync, "_get_writer", lambda: Recorder)
    s.setValue("colormap", "viridis")
    s.setValue("colormap", "cividis")
    s.setValue("colormap", "cividis")
    assert sent == [("colormap", "cividis")]


from PySide6.QtCore import QObject, Signal, Slot  # noqa: E402


class _Hold(QObject):
    go = Signal()

    def __init__(self, entered, release):
        super().__init__()
        self.entered, self.release = entered, release
        self.go.connect(self._hold)

    @Slot()
    def _hold(self):
        self.entered.set()
        self.release.wait(10)
