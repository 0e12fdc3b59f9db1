"""GUI fixtures: an isolated settings location, a model library folder, and a check that no
test leaves a worker thread running."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from attn_desktop.gui import workers  # noqa: E402

LOAD_TIMEOUT = 120_000
ANALYSIS_TIMEOUT = 60_000


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """QSettings, the model library and recent files live under tmp_path, never in $HOME."""
    folder = tmp_path / "settings"
    folder.mkdir()
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))
    library = tmp_path / "library"
    library.mkdir()
    monkeypatch.setenv("ATTN_DESKTOP_MODELS", str(library))
    return folder


@pytest.fixture(autouse=True)
def discard_on_close(monkeypatch):
    """Closing a window or opening another document over edited text asks Save / Discard / Cancel
    in a modal box, which would wait forever offscreen: tests answer Discard unless they patch
    the box themselves."""
    from PySide6.QtWidgets import QMessageBox

    from attn_desktop.gui import keep_work

    monkeypatch.setattr(keep_work, "ask_unsaved", lambda *args, **kwargs: QMessageBox.Discard)


@pytest.fixture(autouse=True)
def no_thread_left(qapp):
    """Fail any test that leaves a worker thread running (and stop it, so others are unaffected)."""
    yield
    left = [job.name for job in workers.running_jobs()]
    workers.stop_all()
    assert not left, f"test left worker threads running: {left}"


def _window(qtbot, engine=None):
    from attn_desktop.gui.app import make_app
    from attn_desktop.gui.main_window import MainWindow

    make_app()
    w = MainWindow(engine=engine)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture
def window(qtbot):
    """The real window; models run in the shared child process, as for the user."""
    w = _window(qtbot)
    yield w
    w.close()


@pytest.fixture
def in_process_window(qtbot):
    """The window with models run in this process, for tests that patch core.pipeline or
    core.model.loading to hold a load or an analysis at a chosen point."""
    from attn_desktop.core.model.engine import InProcessEngine

    w = _window(qtbot, InProcessEngine())
    yield w
    w.close()


@pytest.fixture
def load(qtbot):
    def _load(window, path):
        with qtbot.waitSignal(window.model_loaded, timeout=LOAD_TIMEOUT):
            window.load_model(str(path), "cpu")
        return window.loaded

    return _load


@pytest.fixture
def analyse(qtbot):
    """Type `text` into the editor like a user and wait for the analysis it triggers."""

    def _analyse(window, text, *, type_it=True):
        editor = window.document.editor
        with qtbot.waitSignal(window.analysis_shown, timeout=ANALYSIS_TIMEOUT) as blocker:
            if type_it:
                editor.clear()
                qtbot.keyClicks(editor, text)
            else:
                editor.setPlainText(text)
        return blocker.args[0]

    return _analyse
