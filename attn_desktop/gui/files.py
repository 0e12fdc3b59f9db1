"""File actions of the main window: open text, model folders and sessions (menu, recent files,
drag and drop), save sessions, export the heatmap. Slow work goes to workers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from ..core.errors import UserError
from . import settings as app_settings
from .document import input_text
from .measures import prepare, work_copy

SESSION_FILTER = "attn-desktop sessions (*.attn)"
TEXT_FILTER = "Text files (*.txt *.md *.text);;All files (*)"


class FileActions:
    """Mixed into MainWindow; uses its document, state, messages and runners."""

    # -- files ----------------------------------------------------------------------------------
    def open_paths(self, paths: list[str]) -> None:
        for path in paths:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        p = Path(path)
        if p.is_dir():
            self.load_model(str(p))
        elif p.suffix.lower() == ".attn":
            self.open_session(str(p))
        elif p.is_file():
            self.open_text_file(str(p))
        else:
            self.messages.error(f"not found: {p}")

    def choose_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open text", "", TEXT_FILTER)
        if path:
            self.open_text_file(path)

    def open_text_file(self, path: str) -> bool:
        try:
            text = read_text_file(path)
        except UserError as exc:
            self.messages.error(str(exc))
            return False
        self.document.set_text(text)
        app_settings.add_recent(path, self.settings)
        self.setWindowTitle(f"{Path(path).name} — attn-desktop")
        self._on_text_edited()
        self.request_analysis()
        return True

    def choose_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", SESSION_FILTER)
        if path:
            self.open_session(path)

    def open_session(self, path: str) -> int:
        def work(progress, cancel):
            from ..core.store.session import load_session

            started = time.perf_counter()
            progress(0.1, "reading the session")
            prepared = prepare(load_session(path), cancel)
            prepared.source = str(path)
            prepared.seconds = time.perf_counter() - started
            return prepared

        return self.session_runner.request(work)

    def _on_session_done(self, _gen, result) -> None:
        if isinstance(result, str):  # a save
            app_settings.add_recent(result, self.settings)
            self.messages.info(f"Saved {Path(result).name}.")
            self.session_saved.emit(result)
            return
        self.analyzer.invalidate()
        self.debounce.stop()
        self.document.set_text(input_text(result.analysis))
        app_settings.add_recent(result.source, self.settings)
        self.setWindowTitle(f"{Path(result.source).name} — attn-desktop")
        model = result.analysis.manifest.get("model", {}).get("name", "?")
        self.messages.info(f"Opened session {Path(result.source).name} (model {model}).")
        self.show_prepared(result)

    def _on_session_failed(self, _gen, message: str) -> None:
        self.messages.error(message)
        self.session_failed.emit(message)

    def choose_save_session(self) -> None:
        if self.state.analysis is None:
            self.messages.warning("Nothing to save yet: analyse a text first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save session", "analysis.attn", SESSION_FILTER)
        if path:
            if not path.endswith(".attn"):
                path += ".attn"
            self.save_session(path)

    def save_session(self, path: str) -> int | None:
        analysis = self.state.analysis
        if analysis is None:
            self.messages.warning("Nothing to save yet: analyse a text first.")
            return None
        if self.document.synced is not analysis:
            self.messages.warning("The text has changed since the analysis; the session holds the analysed text.")
        # a copy made here: rollout and flow results may be filed into the analysis meanwhile
        snapshot = work_copy(analysis)

        def work(progress, cancel):
            from ..core.store.session import save_session

            return str(save_session(snapshot, path))

        return self.session_runner.request(work)

    def choose_export(self) -> None:
        if self.heatmap.values is None:
            self.messages.warning("No heatmap to export yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export heatmap", "heatmap.png", "PNG images (*.png)")
        if path:
            self.export_heatmap(path if path.lower().endswith(".png") else path + ".png")

    def export_heatmap(self, path: str) -> bool:
        """The heatmap with its caption (also in the PNG's text chunks): gui.exports."""
        return self.exports.export_image("Heatmap", self.heatmap, path, "png")

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = app_settings.recent_files(self.settings)
        for path in items:
            act = self.recent_menu.addAction(path)
            act.setEnabled(os.path.exists(path))
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if not items:
            self.recent_menu.addAction("(none)").setEnabled(False)

    # -- drag and drop
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)


def read_text_file(path: str, limit: int = 5_000_000) -> str:
    p = Path(path)
    try:
        if p.stat().st_size > limit:
            raise UserError(f"{p.name} is {p.stat().st_size / 1e6:.1f} MB; attn-desktop opens texts up to {limit / 1e6:.0f} MB")
        data = p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {p.name}: {exc.strerror or exc}") from None
    if b"\x00" in data[:4096]:
        raise UserError(f"{p.name} looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")
