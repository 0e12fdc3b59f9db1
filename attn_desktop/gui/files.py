"""File actions of the main window: open text, model folders and sessions (menu, recent files,
drag and drop), save sessions, export the heatmap. Slow work goes to workers."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import traceback
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from ..core.quoting import quote
from ..core.store import source_name
from . import settings as app_settings
from .document import input_text
from .measures import prepare, work_copy
from .workers import LatestOnly

SESSION_FILTER = "attn-desktop sessions (*.attn)"
TEXT_FILTER = "Text files (*.txt *.md *.text);;All files (*)"
TEXT_WAIT_SECONDS = 30  # a FIFO that gives nothing for this long is reported
log = logging.getLogger(__name__)


class FileActions:
    """Mixed into MainWindow; uses its document, state, messages and runners."""

    _source_name: str | None = None  # the text file the document came from (saved in sessions)

    def document_title(self) -> str | None:
        """What reports and captions call the document: the text file's name when known, else
        the session's (or nothing)."""
        return self._source_name or getattr(self, "_document_name", None)

    def stamp_source(self, analysis) -> None:
        """Record the text file's name in an analysis about to be saved (a copy)."""
        source_name.stamp(analysis.manifest, self._source_name)

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
        else:  # files, FIFOs and devices alike: core.text_source says why one cannot be read
            self.open_text_file(str(p))

    def choose_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open text", "", TEXT_FILTER)
        if path:
            self.open_text_file(path)

    @property
    def text_reader(self) -> LatestOnly:
        """Reads texts off the GUI thread: a FIFO, a device or a slow disk never blocks the window."""
        if getattr(self, "_text_reader", None) is None:
            self._text_reader = LatestOnly("Reading the text", self)
            self._text_reader.succeeded.connect(self._on_text_read)
            self._text_reader.failed.connect(lambda _gen, message: self.messages.error(message))
        return self._text_reader

    def open_text_file(self, path: str, remember: bool = True) -> int | None:
        """Read `path` in a worker (size cap and UTF-8 rule of core.text_source); the document
        changes only once the whole text is read. remember=False: a sample, neither named nor
        added to the recent files. None: the user kept the edited text (Cancel)."""
        if not self.confirm_unsaved("opening another document"):
            return None

        def work(progress, cancel):
            from ..core.text_source import read_text

            return path, read_text(path, cancel=cancel, idle_timeout=TEXT_WAIT_SECONDS), remember

        return self.text_reader.request(work)

    def _on_text_read(self, _gen, result) -> None:
        path, text, remember = result
        self._source_name = source_name.of_path(path) if remember else None  # a sample is not the user's file
        if not remember:
            self.document.set_text(text)
            self._on_text_edited()
            self.mark_saved()  # a sample as shipped: nothing to lose
            self.request_analysis()
            return
        self.document.set_text(text)
        app_settings.add_recent(path, self.settings)
        self.set_document_name(Path(path).name)
        self._on_text_edited()
        self.mark_saved()  # as it is on disk
        self.request_analysis()

    def choose_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", SESSION_FILTER)
        if path:
            self.open_session(path)

    def open_session(self, path: str) -> int | None:
        if not self.confirm_unsaved("opening a session"):
            return None
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
            self.set_document_name(Path(result).name)
            if self.document.synced is self.state.analysis:
                self.mark_saved()  # else the edits since the analysis are still unsaved
            self.messages.info(f"Saved {Path(result).name}.")
            self.session_saved.emit(result)
            return
        self.analyzer.invalidate()
        self.debounce.stop()
        if not self._switch_to_session(result):
            return
        app_settings.add_recent(result.source, self.settings)
        self._source_name = source_name.document_name(result.analysis.manifest)  # checked on reading
        self.set_document_name(Path(result.source).name)
        self.mark_saved()
        self._say_session_model(Path(result.source).name, result.analysis.manifest.get("model") or {})

    def _say_session_model(self, name: str, model: dict) -> None:
        """Whether the loaded model is the one the session was made with, by weight hashes."""
        made_with = str(model.get("name", "?"))
        if self.loaded is None:
            self.messages.info(f"Opened session {name} (model {made_with}), for reading: "
                               "load that model to add to it.")
        elif model.get("weights_sha256") and model.get("weights_sha256") == self.loaded.weights_sha256:
            self.messages.info(f"Opened session {name} (model {made_with}): the loaded model has the "
                               "same weights, so new results can be added to it.")
        else:
            self.messages.warning(
                f"Opened session {name} (model {made_with}); the loaded model "
                f"{self.display_name(self.loaded)} has different weights, so anything computed now "
                "comes from the loaded model, not the session's.")

    def _switch_to_session(self, prepared) -> bool:
        """Show a session read and prepared in full by the worker; if showing it fails, put back
        the text and the analysis that were shown, so the window is never half-switched."""
        old_text, old_prepared, old_sel = self.document.text(), self.state.prepared, self.state.sel
        try:
            self.document.set_text(input_text(prepared.analysis))
            self.show_prepared(prepared)
            return True
        except Exception as exc:  # a view could not show it: nothing of it stays
            log.error("showing session %s failed:\n%s", prepared.source, traceback.format_exc())
            with contextlib.suppress(Exception):
                self.document.set_text(old_text)
                if old_prepared is not None:
                    self.show_prepared(old_prepared)
                    self.state.update(**{f.name: getattr(old_sel, f.name) for f in dataclasses.fields(old_sel)})
            lines = str(exc).strip().splitlines()
            message = (f"{quote(Path(prepared.source).name)} could not be shown "
                       f"({type(exc).__name__}: {(lines[0] if lines else '')[:200]}); nothing was changed")
            self._on_session_failed(None, message)
            return False

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
        snapshot.manifest["view"] = self.view_settings()  # reopening shows the session as it was
        self.stamp_source(snapshot)

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
