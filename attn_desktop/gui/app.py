"""Start-up: show the window first, then load the model and analyse in the background.

Nothing here imports torch or transformers; workers import them after the window is visible.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from .. import __version__
from . import settings as app_settings
from .contrast import readable_disabled

TIMING_ENV = "ATTN_DESKTOP_TIMING"  # print start-up milestones (epoch seconds) to stdout
EXIT_ENV = "ATTN_DESKTOP_EXIT_AFTER_FIRST_HEATMAP"


def make_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setOrganizationName(app_settings.ORG)
    app.setApplicationName(app_settings.APP)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("attn-desktop")
    palette = app.palette()
    readable_disabled(palette)  # greyed-out captions and hints stay readable (WCAG AA)
    app.setPalette(palette)
    icon = app_settings.resources_dir() / "icons" / "attn-desktop.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def milestone(name: str) -> None:
    if os.environ.get(TIMING_ENV):
        print(f"attn-desktop-timing {name} {time.time():.6f}", flush=True)


def start(window, model: str | None, text_file: str | None, session: str | None, device: str) -> None:
    """What the window does once it is on screen."""
    window.refresh_library()
    if session and not session.lower().endswith(".attn"):
        # a file manager passes any file as the positional argument (Exec=attn-desktop %f)
        if Path(session).is_dir():
            model = model or session
        else:
            text_file = text_file or session
        session = None
    if session:
        window.open_session(session)
        if model:
            window.load_model(model, device)
        return
    if text_file:
        window.open_text_file(text_file)
    else:
        samples = app_settings.sample_files()
        if samples:
            window.open_text_file(str(samples[0]), remember=False)
            window.set_document_name(None)
    if model is None:
        from ..core.errors import UserError
        from ..core.model.demo import demo_model_path

        try:
            model = str(demo_model_path())
        except UserError as exc:
            window.messages.error(str(exc))
            return
    window.load_model(str(Path(model).expanduser()), device)


def run(model: str | None = None, text_file: str | None = None, session: str | None = None,
        device: str = "cpu") -> int:
    milestone("start")
    app = make_app()
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    from .main_window import MainWindow
    from .workers import stop_all

    window = MainWindow(device=device)
    if device not in ("cpu", ""):
        window.model_panel.set_devices(["cpu", device], device)
    window.show()

    def shown() -> None:
        milestone("window")
        start(window, model, text_file, session, device)

    def first_heatmap(_prepared) -> None:
        window.analysis_shown.disconnect(first_heatmap)
        window.heatmap.graphics.repaint()
        milestone("first-heatmap")
        if os.environ.get(EXIT_ENV):
            QTimer.singleShot(0, window.close)

    window.analysis_shown.connect(first_heatmap)
    QTimer.singleShot(0, shown)
    code = app.exec()
    stop_all()
    window.deleteLater()
    app.processEvents()
    gc.collect()
    return int(code)
