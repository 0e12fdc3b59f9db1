"""The main window: wires the views to the shared state and runs the work in the background."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.model.engine import ON_DISK
from ..core.windows import is_windowed
from ..core.windows import place as window_place
from . import settings as app_settings
from .controls import SET_LABELS, SelectionBar
from .devices import opengl_available
from .document import DocumentPanel, input_text
from .files import FileActions
from .find_bar import FindBar
from .heatmap import EMPTY_TEXT, Heatmap
from .heatmap_link import key_token, reveal_token
from .keep_work import KeepWork, carried_focus
from .measures import MEASURES, MatrixCache, prepare, saved_params, store
from .menus import build_menus
from .messages import MessageBar
from .model_panel import ModelPanel
from .model_view import ModelView
from .propagation import Propagation
from .state import ALPHA_MIN, ViewState
from .stopped_jobs import drop_stopped
from .truth import ShowsTruth, heatmap_labels
from .units import (
    focus_cols,
    focus_rows,
    group_label,
    query_group,
    token_numbers,
    uniform_expected,
    unit_matrix,
)
from .validate_panel import ValidatePanel
from .windows_strip import WindowsStrip
from .windows_strip import analysis_options as windows_options
from .workers import Job, LatestOnly, stop_all

DEBOUNCE_MS = 600
# selection fields that change what the heatmap matrix is
MATRIX_FIELDS = frozenset(("set_name", "measure", "layer", "head", "alpha", "start_layer", "words", "all"))


class MainWindow(KeepWork, ShowsTruth, FileActions, QMainWindow):
    model_loaded = Signal(object)
    model_failed = Signal(str)
    analysis_shown = Signal(object)  # the Prepared now on screen
    analysis_failed = Signal(str)
    analysis_cancelled = Signal()
    session_saved = Signal(str)
    session_failed = Signal(str)
    library_listed = Signal(list)

    def __init__(self, device: str = "cpu", engine=None) -> None:
        """`engine` runs the models: by default the shared child process (core.model.engine), so this
        process never imports torch; tests that patch the pipeline pass an InProcessEngine."""
        super().__init__()
        if engine is None:
            from ..core.model.engine import shared_engine

            engine = shared_engine()
        self.engine = engine
        self.set_document_name(None)
        self.setAcceptDrops(True)
        self.settings = app_settings.settings()
        self.state = ViewState(self)
        self.loaded = None
        self.device = device
        self.cache = MatrixCache()
        self._library_job: Job | None = None
        self.model_names: dict[str, str] = {}  # folder -> name the library gives it

        self.messages = MessageBar()
        self.document = DocumentPanel(self.state)
        self.heatmap = Heatmap()
        self.model_panel = ModelPanel()
        self.model_view = ModelView()
        self.selection_bar = SelectionBar(self.state, self)
        self.addToolBar(self.selection_bar)

        self.decoder_row = QWidget()
        drow = QHBoxLayout(self.decoder_row)
        drow.setContentsMargins(0, 0, 0, 0)
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("decoder text (empty: generate)")
        self.target_edit.setClearButtonEnabled(True)
        self.generate_box = QSpinBox()
        self.generate_box.setRange(0, 256)
        self.generate_box.setPrefix("generate ")
        self.generate_box.setSuffix(" tokens")
        self.generate_box.setToolTip("Tokens to generate greedily (0: none for a causal LM)")
        self.target_label = QLabel("Decoder text")
        drow.addWidget(self.target_label)
        drow.addWidget(self.target_edit, 1)
        drow.addWidget(self.generate_box)
        self.decoder_row.hide()
        self.target_edit.textEdited.connect(lambda _t: self.schedule_analysis())
        self.generate_box.valueChanged.connect(lambda _v: self.schedule_analysis())

        doc = QWidget()
        lv = QVBoxLayout(doc)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.decoder_row)
        lv.addWidget(self.document, 1)
        self.find_bar = FindBar(self.document.editor, self.document.marks)
        lv.addWidget(self.find_bar)
        self.heads_box = QWidget()
        hv = QVBoxLayout(self.heads_box)
        hv.setContentsMargins(0, 0, 0, 0)
        hv.setSpacing(0)
        heads_title = QLabel("<b>Heads</b> · click one to show it · each scaled to its own maximum")
        hv.addWidget(heads_title)
        hv.addWidget(self.model_view, 1)
        self.left_splitter = QSplitter(Qt.Vertical)
        self.left_splitter.setObjectName("LeftSplitter")
        self.left_splitter.addWidget(doc)
        self.left_splitter.addWidget(self.heads_box)
        self.left_splitter.setStretchFactor(0, 1)
        self.left_splitter.setStretchFactor(1, 1)
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("MainSplitter")
        self.splitter.addWidget(self.left_splitter)
        self.splitter.addWidget(self.heatmap)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        central = QWidget()
        cv = QVBoxLayout(central)
        cv.setContentsMargins(4, 4, 4, 0)
        cv.addWidget(self.messages)
        cv.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        self.model_dock = self._dock("Model", "ModelDock", self.model_panel, Qt.LeftDockWidgetArea)
        self.validate_panel = ValidatePanel(self)
        self.validate_dock = self._dock("Validate", "ValidateDock", self.validate_panel, Qt.BottomDockWidgetArea)
        from .heads_panel import HeadsPanel

        self.heads_panel = HeadsPanel(self)  # head importance, over-smoothing, pruning (docs/heads.md)
        self.heads_dock = self._dock("Heads", "HeadsDock", self.heads_panel, Qt.BottomDockWidgetArea)
        self.tabifyDockWidget(self.validate_dock, self.heads_dock)
        self.validate_dock.raise_()

        self._make_status_bar()
        self.loader = LatestOnly("Loading the model", self)
        self.analyzer = LatestOnly("Analysis", self)
        self.session_runner = LatestOnly("Session", self)
        self.propagation = Propagation(self.state, self)
        self.rollout_runner = self.propagation.rollout_runner
        self.flow_runner = self.propagation.flow_runner
        self.document.missing_note = self._missing_note
        self.document.stale_note = self.stale_note
        self._connect()
        from .exports import Exports

        self.exports = Exports(self)  # images, data and the report (File > Export…)
        build_menus(self)
        self.windows_strip = WindowsStrip(self)  # which window of a long document the views show
        cv.insertWidget(1, self.windows_strip)
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self.request_analysis)
        self.resizeDocks([self.model_dock], [320], Qt.Horizontal)
        self.resizeDocks([self.validate_dock], [340], Qt.Vertical)
        self.splitter.setSizes([480, 620])
        self.left_splitter.setSizes([420, 360])
        self._restore_settings()
        if not isinstance(self.settings.value("geometry"), QByteArray):
            self.resize(1400, 900)

    # -- construction -------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _make_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_model = QLabel("no model")
        self.status_device = QLabel("")
        self.status_tokens = QLabel("")
        self.status_time = QLabel("")
        self.status_focus = QLabel("")
        for label in (self.status_model, self.status_device, self.status_tokens, self.status_time,
                      self.status_focus):
            label.setTextFormat(Qt.PlainText)  # model, file and token names
        self.analysis_progress = QProgressBar()
        self.analysis_progress.setRange(0, 1000)
        self.analysis_progress.setMaximumWidth(220)
        self.analysis_progress.hide()
        self.analysis_cancel = QToolButton()
        self.analysis_cancel.setText("Cancel")
        self.analysis_cancel.hide()
        self.analysis_cancel.clicked.connect(self.cancel_analysis)
        bar.addWidget(self.analysis_progress)
        bar.addWidget(self.analysis_cancel)
        for w in (self.status_focus, self.status_model, self.status_device, self.status_tokens, self.status_time):
            bar.addPermanentWidget(w)

    def _connect(self) -> None:
        s = self.state
        s.changed.connect(self._on_selection)
        s.analysis_changed.connect(self._on_analysis_changed)
        self.heatmap.cell_clicked.connect(self._on_heatmap_click)
        self.heatmap.key_clicked.connect(self._on_heatmap_key_click)
        self.model_view.grid.head_clicked.connect(lambda layer, head: s.update(measure="attention", layer=layer, head=head))
        self.document.edited.connect(self._on_text_edited)
        self.document.files_dropped.connect(self.open_paths)
        mp = self.model_panel
        mp.load_requested.connect(self.load_model)
        mp.cancel_requested.connect(self.cancel_loading)
        mp.open_folder_requested.connect(self.choose_model_folder)
        mp.refresh_requested.connect(self.refresh_library)

        self.loader.progressed.connect(lambda _g, f, m: mp.set_progress(f, m))
        self.loader.succeeded.connect(self._on_model_loaded)
        self.loader.failed.connect(self._on_model_failed)
        self.loader.cancelled.connect(self._on_model_cancelled)
        self.loader.idle.connect(lambda: mp.set_busy(False))
        self.loader.idle.connect(self._show_empty)
        self.loader.started.connect(lambda _g: self._show_empty())
        self._show_empty()

        self.analyzer.started.connect(self._on_analysis_started)
        self.analyzer.progressed.connect(self._on_analysis_progress)
        self.analyzer.succeeded.connect(self._on_analysis_done)
        self.analyzer.failed.connect(self._on_analysis_failed)
        self.analyzer.cancelled.connect(self._on_analysis_cancelled)
        self.analyzer.idle.connect(self._on_analysis_idle)

        for runner in (self.rollout_runner, self.flow_runner):
            runner.started.connect(self._on_analysis_started)
            runner.progressed.connect(self._on_analysis_progress)
            runner.failed.connect(lambda _g, m: self.messages.error(m))
            runner.idle.connect(self._on_analysis_idle)
        self.flow_runner.cancelled.connect(self._on_flow_cancelled)
        self.propagation.filed.connect(self._on_propagation_filed)
        self.propagation.status_changed.connect(self._on_propagation_status)
        self.propagation.status_changed.connect(lambda: drop_stopped(self))  # a stopped job leaves the bar at once
        self.propagation.stopped.connect(self.messages.info)
        self.selection_bar.flow_all_requested.connect(self.compute_flow_all)

        self.session_runner.succeeded.connect(self._on_session_done)
        self.session_runner.failed.connect(self._on_session_failed)

    # -- settings ---------------------------------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        window_state = s.value("window_state")
        if isinstance(window_state, QByteArray):
            self.restoreState(window_state)
        splitters = s.value("splitters")
        if isinstance(splitters, list) and len(splitters) == 2:
            for splitter, saved in zip((self.splitter, self.left_splitter), splitters, strict=True):
                if isinstance(saved, QByteArray):
                    splitter.restoreState(saved)
        if s.value("show_heads", "true") in (False, "false"):
            self.act_heads.setChecked(False)
            self.heads_box.hide()
        cmap = s.value("colormap", "")
        scale = s.value("scale", "")
        fields = {}
        from .colormaps import COLORMAPS, SCALES

        if cmap in COLORMAPS:
            fields["colormap"] = cmap
        if scale in SCALES:
            fields["scale"] = scale
        for key in s.allKeys():  # the scale last used with each measure (rollout, flow: × uniform)
            if key.startswith("scales/") and s.value(key) in SCALES:
                self.state.scales[key.split("/", 1)[1]] = s.value(key)
        try:
            alpha = float(s.value("alpha", 0.5))
        except (TypeError, ValueError):
            alpha = 0.5
        if ALPHA_MIN <= alpha <= 1.0:
            fields["alpha"] = round(alpha, 4)
        if fields:
            self.state.update(**fields)
        self.act_truncate.setChecked(s.value("truncate", "false") in (True, "true"))

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.setValue("splitters", [self.splitter.saveState(), self.left_splitter.saveState()])
        s.setValue("show_heads", self.act_heads.isChecked())
        s.setValue("colormap", self.state.sel.colormap)
        s.setValue("scale", self.state.scales.get("attention", "linear"))  # what the window opens with
        for measure, scale in self.state.scales.items():
            s.setValue(f"scales/{measure}", scale)
        s.setValue("alpha", self.state.sel.alpha)
        s.setValue("truncate", self.act_truncate.isChecked())
        if self.loaded is not None:
            s.setValue("last_model", str(self.loaded.path))
            s.setValue("device", self.loaded.device)
        s.sync()

    def closeEvent(self, event) -> None:
        if not self.confirm_close():
            event.ignore()
            return
        self.save_settings()
        self.debounce.stop()
        stop_all()
        super().closeEvent(event)

    # -- library and models -------------------------------------------------------------------
    def refresh_library(self) -> None:
        if self._library_job is not None:
            return
        job = Job(list_library, "Listing the model library", self)
        job.succeeded.connect(self._on_library)
        job.failed.connect(self.messages.warning)
        job.done.connect(lambda: setattr(self, "_library_job", None))
        self._library_job = job
        job.start()

    def _on_library(self, result) -> None:
        folder, entries = result
        self.model_names = {str(e.path): e.name for e in entries}
        self.model_panel.set_library(folder, entries)
        last = self.loaded.path if self.loaded is not None else self.settings.value("last_model", "")
        if last:
            self.model_panel.select_path(str(last))
        if self.loaded is not None:
            name = self.display_name(self.loaded)
            self.model_panel.set_title(name)
            self.status_model.setText(f"{name} ({self.loaded.kind})")
        self.library_listed.emit(entries)

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open model folder")
        if folder:
            self.load_model(folder, self.model_panel.device.currentText())

    def load_model(self, path: str, device: str | None = None) -> None:
        device = device or self.model_panel.device.currentText() or self.device
        self.model_panel.set_busy(True, f"loading {Path(path).name}…")

        engine = self.engine

        def work(progress, cancel):
            return engine.load(path, device=device, progress=progress, cancel=cancel)

        self.loader.request(work)

    def cancel_loading(self) -> None:
        self.loader.cancel()
        self.model_panel.set_busy(False)
        self.messages.info("Loading cancelled.")

    def display_name(self, loaded) -> str:
        return self.model_names.get(str(loaded.path), loaded.name)

    def _on_model_loaded(self, _gen, result) -> None:
        loaded, devices = result
        self.loaded = loaded
        self._show_empty()
        name = self.display_name(loaded)
        self.model_panel.set_devices(devices, loaded.device)
        card = [(k, name if k == "Model" else v) for k, v in loaded.card()]
        card.insert(1, ("Folder", str(loaded.path)))
        self.model_panel.set_card(
            name, card,
            {"Weights sha256": "\n".join(f"{k}: {v}" for k, v in loaded.weights_sha256.items())})
        self.status_model.setText(f"{name} ({loaded.kind})")
        self.status_device.setText(loaded.device)
        generative = loaded.kind in ("causal-lm", "encoder-decoder")
        self.decoder_row.setVisible(generative)
        seq2seq = loaded.kind == "encoder-decoder"
        self.target_label.setVisible(seq2seq)
        self.target_edit.setVisible(seq2seq)
        if seq2seq and self.generate_box.value() == 0:
            self.generate_box.setValue(20)
        self.generate_box.setMinimum(1 if seq2seq else 0)
        self.settings.setValue("last_model", str(loaded.path))
        app_settings.add_recent(str(loaded.path), self.settings)
        self.messages.info(f"Loaded {name} in {loaded.load_seconds:.1f} s.")
        self.model_loaded.emit(loaded)
        if self.document.text().strip():
            self.request_analysis()

    def _on_model_failed(self, _gen, message: str) -> None:
        self.messages.error(message)
        self.model_failed.emit(message)

    def _on_model_cancelled(self, _gen) -> None:
        self.model_panel.set_busy(False)

    # -- analysis -----------------------------------------------------------------------------
    def _on_text_edited(self) -> None:
        self.analyzer.invalidate()  # whatever runs now is for an older text
        self.status_time.setText("text changed")
        self.mark_edited()
        self.schedule_analysis()
        if self.is_stale():
            self.propagation.invalidate()  # rollout and flow of a text that is gone stop, unannounced
            self.show_stale()

    def schedule_analysis(self) -> None:
        if self.loaded is not None:
            self.debounce.start()

    def analysis_options(self) -> dict:
        opts: dict = {"truncate": self.act_truncate.isChecked()}
        if self.loaded is not None and self.loaded.kind in ("causal-lm", "encoder-decoder"):
            target = self.target_edit.text()
            if self.loaded.kind == "encoder-decoder" and target.strip():
                opts["target_text"] = target
            elif self.generate_box.value() > 0:
                opts["generate"] = self.generate_box.value()
        opts.update(windows_options(self, opts))  # long texts in windows (gui.windows_strip)
        return opts

    def request_analysis(self) -> int | None:
        self.debounce.stop()
        text = self.document.text()
        if self.loaded is None:
            if text.strip():
                self.messages.info(self.no_model_message())
            return None
        if not text.strip():
            self.analyzer.invalidate()
            return None
        loaded, opts = self.loaded, self.analysis_options()
        opts["truncate_hint"] = self.truncate_hint()  # the too-long message names this window's setting
        opts[ON_DISK] = "auto"  # long texts' attention stays in files this process maps (core.model.mapped.on_disk)
        sel = self.state.sel
        rollout = (sel.alpha, sel.head, sel.start_layer) if sel.measure == "rollout" else None

        engine = self.engine

        def work(progress, cancel):
            started = time.perf_counter()
            analysis = engine.analyze(loaded, text, progress=lambda f, m: progress(0.9 * f, m),
                                      cancel=cancel, **opts)
            progress(0.92, "preparing the views")
            prepared = prepare(analysis, cancel, rollout=rollout)
            prepared.source = "analysis"
            prepared.seconds = time.perf_counter() - started
            return prepared

        return self.analyzer.request(work)

    def cancel_analysis(self) -> None:
        if self.analyzer.busy:
            self.analyzer.cancel()
            self.debounce.stop()
        self.propagation.cancel()
        drop_stopped(self)
        if self.validate_panel.runner.busy:
            self.validate_panel.cancel()  # Esc stops a validation like its Cancel button
        if self.heads_panel.runner.busy:
            self.heads_panel.runner.cancel()

    # -- rollout and attention flow (core.propagate.propagation, in workers) --------------------------------
    def compute_flow(self) -> int | None:
        """The flow rows of the focus word's pieces or of the selection (Ctrl+Shift+F), then show flow."""
        an = self.state.analysis
        return self._compute_flow(query_group(an, self.state.sel) if an is not None else [self.state.sel.focus])

    def compute_flow_all(self) -> int | None:
        """Every token's flow row, in the background (Ctrl+Alt+F), then show flow."""
        return self._compute_flow(None)

    def _compute_flow(self, rows) -> int | None:
        an, sel = self.state.analysis, self.state.sel
        if an is None:
            self.messages.info("Analyse a text first.")
            return None
        if MEASURES["flow"].unavailable(an, sel.set_name):
            if not an.is_encoder_decoder:
                self.messages.warning("Attention flow needs the self-attention of the input.")
                return None
            self.state.update(set_name="encoder")  # flow runs on the encoder self-attention
            sel = self.state.sel
        gen = self.propagation.request_flow(rows, priority=sel.focus)
        self.state.update(measure="flow")
        return gen

    def _ensure_propagation(self, fields) -> None:
        """Start what the selection shows but is not computed yet: the rollout for its
        parameters; in flow view, the focus token's flow row."""
        an, sel = self.state.analysis, self.state.sel
        if an is None:
            return
        if sel.measure == "rollout" and fields & {"measure", "set_name", "head", "alpha", "start_layer", "all"}:
            self.propagation.request_rollout()
        elif sel.measure == "flow" and fields & {"measure", "focus", "alpha", "head", "set_name", "words",
                                                  "picked", "all"}:
            measure = MEASURES["flow"]
            have = set(int(r) for r in measure.row_queries(an, sel))
            missing = [q for q in query_group(an, sel) if q not in have]
            if missing:
                self.propagation.request_flow(missing, priority=sel.focus if sel.focus in missing else missing[0])
            else:
                self.propagation.request_flow([], priority=None)  # adopts the rows shown

    def _on_propagation_filed(self, an, kind: str, params: tuple) -> None:
        if an is not self.state.analysis:
            return
        self.cache.clear()
        if self.state.sel.measure == kind:
            self.selection_bar.sync()
            self.refresh_views()
            self.document.refresh()
            if kind == "flow":
                self._check_flow_exact(params)

    def _check_flow_exact(self, params: tuple) -> None:
        rows = store(self.state.analysis)["flow"].get(params)
        if rows is not None and not rows.entry.get("exact", True):
            bound = float(rows.entry.get("max_abs_error_bound", 0.0))
            self.messages.warning(f"Attention flow is approximate: error bound {bound:.1e}.")

    def _on_propagation_status(self) -> None:
        if self.state.analysis is not None and self.state.sel.measure in ("rollout", "flow"):
            self.refresh_views(frozenset(("notes",)))
            self.document.refresh()

    def _on_flow_cancelled(self, gen) -> None:
        if gen == self.flow_runner.current:
            self.messages.info("Attention flow cancelled; the rows already computed are kept.")

    def _missing_note(self, an, sel, measure) -> str:
        """Why the views show nothing for the focus token (the document panel asks)."""
        if measure.key == "rollout":
            return self.propagation.rollout_note(an, sel)
        if measure.key == "flow":
            group = query_group(an, sel)
            have = set(int(r) for r in measure.row_queries(an, sel))
            missing = [q for q in group if q not in have] or [sel.focus]
            return self.propagation.flow_note(an, sel, missing[0], group_label(an, sel, group))
        return f"{measure.label} has no row for token {sel.focus}."

    def _empty_placeholder(self) -> str:
        """What the heatmap says before there is an analysis to show."""
        if self.analyzer.active:
            return "Analysing the text…"
        if self.loaded is None:
            if self.loader.active:
                return "Loading the model…"
            return "Open a model folder (File ▸ Open model folder…) to analyse a text"
        return EMPTY_TEXT

    def _show_empty(self) -> None:
        if self.state.analysis is None:
            self.heatmap.clear(placeholder=self._empty_placeholder())

    def _on_analysis_started(self, _gen) -> None:
        self.analysis_progress.setValue(0)
        self.analysis_progress.setFormat("analysing…")
        self.analysis_progress.show()
        self.analysis_cancel.show()
        self._show_empty()

    def _on_analysis_progress(self, _gen, fraction: float, message: str) -> None:
        self.analysis_progress.setValue(int(fraction * 1000))
        self.analysis_progress.setFormat(f"{message} %p%")
        fit_progress_text(self.analysis_progress, f"{message} 100%")

    def _on_analysis_idle(self) -> None:
        drop_stopped(self)  # hidden unless another job still reports here (a stopped one does not)
        self._show_empty()

    def _on_analysis_done(self, _gen, prepared) -> None:
        if input_text(prepared.analysis) != self.document.text():
            return  # belt and braces: an edit always invalidates first
        self.show_prepared(prepared)

    def _on_analysis_failed(self, _gen, message: str) -> None:
        self.messages.error(message)
        if self.is_stale():
            self.show_stale()  # the note no longer promises a new analysis
        self.analysis_failed.emit(message)

    def _on_analysis_cancelled(self, gen) -> None:
        if gen == self.analyzer.current:
            self.messages.info("Analysis cancelled.")
            self.status_time.setText("cancelled")
        self.analysis_cancelled.emit()

    def show_prepared(self, prepared) -> None:
        self.cache.clear()
        if prepared.source != "analysis":
            # a session: its view as saved, its rollout and flow under the parameters they were made with
            fields = self.session_fields(prepared.analysis, saved_params(prepared.analysis))
        else:  # the same word keeps the focus across an edit
            carried = carried_focus(self.state.analysis, self.state.sel.focus, prepared.analysis)
            fields = {} if carried is None else {"focus": carried}
        self.state.set_prepared(prepared, **fields)
        if prepared.source != "analysis":
            self.restore_scroll(prepared.analysis.manifest.get("view"))
        self.clear_error_after_success()
        sel = self.state.sel
        rows = MEASURES["flow"].row_queries(prepared.analysis, sel)
        if prepared.source != "analysis" and sel.measure == "flow" and len(rows) and sel.focus not in rows:
            self.state.update(focus=int(rows[0]))
        for warning in prepared.analysis.extras.get("gui_warnings", []):
            self.messages.warning(warning)
        self.analysis_shown.emit(prepared)

    # -- views ----------------------------------------------------------------------------------
    def _on_analysis_changed(self) -> None:
        prepared = self.state.prepared
        an = self.state.analysis
        self.show_summary()
        if prepared is not None:
            secs = prepared.seconds
            if prepared.source == "analysis":
                self.status_time.setText(f"analysis {secs:.2f} s")
            else:
                self.status_time.setText(f"session {Path(prepared.source).name}" if prepared.source else "")
        self.model_view.grid.set_data(None, None, [])
        self._model_view_key = None
        self.propagation.forget(an)

    def _on_selection(self, fields) -> None:
        self.refresh_views(fields)
        self.show_focus_status()
        if not self.is_stale():
            self._ensure_propagation(fields)  # e.g. clicking a word in flow view computes its flow

    def current_matrix(self):
        """What the heatmap shows: the measure's matrix, by words or by pieces (units.UnitMatrix)."""
        an, sel = self.state.analysis, self.state.sel
        measure = MEASURES[sel.measure]
        key = (id(an), sel.measure, measure.view_key(sel), sel.words)
        return self.cache.get(key, lambda: unit_matrix(an, sel, measure, measure.matrix(an, sel)))

    def refresh_views(self, fields=frozenset(("all",))) -> None:
        an, sel = self.state.analysis, self.state.sel
        self.heatmap.set_style(*MEASURES[sel.measure].style(sel))
        self.model_view.grid.set_colormap(sel.colormap)
        if an is None:
            self.heatmap.clear(placeholder=self._empty_placeholder())
            return
        if self.is_stale():
            self.show_stale()  # never a result for an older text beside the new one
            return
        measure = MEASURES[sel.measure]
        title = self._title(sel, measure)
        self._refresh_model_view()
        if not measure.ready(an, sel):
            self.heatmap.clear(f"{title}\n{self._missing_note(an, sel, measure)}")
            return
        if fields & MATRIX_FIELDS or self.heatmap.values is None:
            view = self.current_matrix()
            row_labels, col_labels = heatmap_labels(an, sel, view, measure)  # with the model's pieces
            self.heatmap.set_matrix(view.values, row_labels, col_labels, title=title,
                                    value_name=measure.value_name, expected=uniform_expected(view.col_units),
                                    **token_numbers(an, sel, view))
        hit = focus_rows(an, sel, self.current_matrix(), measure)
        self.heatmap.set_focus_rows(hit, focus_cols(an, sel))
        self.heatmap.title.setToolTip(measure.title_tip(an, sel))
        if not hit and measure.key != "attention":
            title += f"\n{self._missing_note(an, sel, measure)}"
        self.heatmap.title.setText(title)

    def _title(self, sel, measure) -> str:
        an = self.state.analysis
        title = measure.title(an, sel)
        if len(an.attention_set_names()) > 1 and measure.key != "rollout":
            title += f" · {SET_LABELS.get(sel.set_name, sel.set_name)}"
        if is_windowed(an):
            title += f" · {window_place(an)}"
        return title

    def _refresh_model_view(self) -> None:
        prepared, sel = self.state.prepared, self.state.sel
        key = (id(prepared), sel.set_name)
        if getattr(self, "_model_view_key", None) != key:
            self._model_view_key = key
            keys = self.state.key_tokens()
            self.model_view.grid.set_data(prepared.thumbnails.get(sel.set_name),
                                          prepared.diagnostics.get(sel.set_name),
                                          [k.text for k in keys])
        shown_head = sel.head if sel.measure == "attention" else None
        self.model_view.grid.set_selection(sel.layer if sel.measure == "attention" else -1, shown_head)

    def _on_heatmap_click(self, row: int, _col: int) -> None:
        an, sel = self.state.analysis, self.state.sel
        if an is None:
            return
        measure = MEASURES[sel.measure]
        if not getattr(measure, "rows_by_query", True):
            return  # one row for the whole text: no token to focus
        view = self.current_matrix()
        if 0 <= row < len(view.row_first):
            self._focus_from_heatmap(int(view.row_first[row]))

    def _on_heatmap_key_click(self, column: int) -> None:
        an = self.state.analysis
        token = None if an is None else key_token(an, self.state.sel, self.current_matrix(), column)
        if token is not None:
            self._focus_from_heatmap(token)

    def _focus_from_heatmap(self, token: int) -> None:
        """Focus a query token picked in the heatmap and scroll the editor to it."""
        self.state.update(focus=token, picked=())
        an = self.state.analysis
        if an.axis_tokens(self.state.sel.set_name)[0] is an.tokens:
            reveal_token(self.document.editor, token)

    def _toggle_opengl(self) -> None:
        on = self.act_opengl.isChecked()
        if on and not opengl_available():
            self.act_opengl.setChecked(False)
            self.messages.warning("OpenGL is not available here; the heatmap stays on the raster viewport.")
            return
        try:
            self.heatmap.graphics.useOpenGL(on)
        except Exception as exc:  # a broken GL driver: stay on the raster viewport
            self.act_opengl.setChecked(False)
            self.heatmap.graphics.useOpenGL(False)
            self.messages.warning(f"OpenGL could not be used ({exc}).")

def fit_progress_text(bar: QProgressBar, text: str) -> None:
    """Size the status bar's progress bar to its text, so the text is never cut."""
    bar.setFixedWidth(max(220, bar.fontMetrics().horizontalAdvance(text) + 28))


def list_library(progress, cancel):
    """(library folder, entries); the demo model first. Run in a worker."""
    from ..core.store import library

    folder = library.default_library_dir()
    return str(folder), library.list_models(folder)
