"""The Validate panel: choose a target, run every explanation method in the model process
(core.explain through engine.analyze, with progress and Cancel), and read how attention
compares with gradient and ablation evidence for this text.

Results are filed in the analysis they were computed for (its arrays and manifest["explain"],
so Save session keeps them) and shown only while the editor holds that analysis' text.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QHBoxLayout,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .compare_view import CompareView
from .document import input_text
from .document_shade import DocumentShade
from .document_validate import document_arrays, document_lines, same_window, shown_window_of
from .importance import IMPORTANCE_KEYS, explain_section, method_measure, target_phrase
from .measures import prepare
from .run_identity import same_document
from .validate_absent import absent_reason
from .validate_checks import ChecksRow, not_asked, refusal
from .validate_plots import AgreementView, FaithfulnessView, InterventionTable, fmt, plain_label
from .validate_target import TargetChooser
from .workers import LatestOnly

INTRO = ("Validation checks the attention on this text against other evidence, for the target you "
         "choose on the left. One run, in the model process, computes what is ticked under Checks: "
         "saliency, gradient × input, Integrated Gradients, gradient-weighted rollout and "
         "leave-one-out, next to the attention, rollout and flow of the row the output reads; what "
         "the output does when the attention is made uniform or permuted; comprehensiveness and "
         "sufficiency of every ranking against random rankings; and how far the rankings agree "
         "(Kendall τ, Spearman ρ, top-k overlap).\n\n"
         "Every vector then appears in Show, so it can colour the text, and two can be compared side "
         "by side. Results belong to the text they were computed for: editing the text clears them; "
         "Save session keeps them.")


def same_input(a, b) -> bool:
    """True when two analyses ran the same model on the same tokens (results of one hold for the other)."""
    ma, mb = a.manifest.get("model") or {}, b.manifest.get("model") or {}
    return (input_text(a) == input_text(b) and a.tokens == b.tokens and a.decoder_tokens == b.decoder_tokens
            and ma.get("folder") == mb.get("folder") and ma.get("weights_sha256") == mb.get("weights_sha256"))


def result_arrays(analysis) -> dict:
    """The explanation stage's vectors in `analysis`: the importance vectors and whatever else
    manifest["explain"]["arrays"] names, as long as it is one value per input token."""
    listed = explain_section(analysis).get("arrays")
    names = set(IMPORTANCE_KEYS) | {k for k in (listed if isinstance(listed, list) else []) if isinstance(k, str)}
    n = len(analysis.tokens)
    out = {k: v for k, v in analysis.arrays.items() if k in names and v.ndim == 1 and len(v) == n}
    out.update(document_arrays(analysis))  # a windowed document's vectors, shared by its windows
    return out


def file_results(into, source) -> None:
    """Copy `source`'s explanation arrays and manifest["explain"] into `into` (same input).
    Rebinds the dict and manifest rather than changing them, so that a worker reading the old
    ones (a session being saved) never sees them change under it."""
    old = result_arrays(into)
    arrays = {k: v for k, v in into.arrays.items() if k not in old}
    arrays.update(result_arrays(source))
    into.arrays = arrays
    into.manifest = {**into.manifest, "explain": source.manifest["explain"]}


def results_only(analysis):
    """What `file_results` and `same_input` need from an analysis, without its attention arrays."""
    from ..core.analysis import Analysis

    manifest = {k: analysis.manifest[k] for k in ("model", "explain", "generation") if k in analysis.manifest}
    return Analysis(text=analysis.text, tokens=analysis.tokens, arrays=result_arrays(analysis), manifest=manifest,
                    decoder_text=analysis.decoder_text, decoder_tokens=analysis.decoder_tokens)


NOT_RUN = "not run for this text"


class ValidatePanel(QWidget):
    validation_shown = Signal(object)  # the Analysis whose results the panel now shows
    validation_failed = Signal(str)
    validation_cancelled = Signal()

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.runner = LatestOnly("Validation", self)
        self.document_shade = DocumentShade(window)  # a windowed document's values outside the window shown
        self.shown = None  # the analysis whose results are on screen
        self.last = None  # the last analysis holding results (carried over to a re-analysis of the same input)
        self.run_for = None  # the analysis on screen when the running validation started

        self.chooser = TargetChooser()
        self.checks = ChecksRow()
        self.run_button = QPushButton("Run validation")
        self.run_button.setToolTip("Compute the ticked checks for this text, in the model process")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat(NOT_RUN)  # an empty bar beside Cancel looked like a text field
        self.progress.setValue(0)
        self.step = plain_label("")  # the running step's name: too long for the bar's own text
        self.status = plain_label("")
        self.headline = plain_label("")
        font = QFont(self.headline.font())
        font.setBold(True)
        self.headline.setFont(font)
        self.headline.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setFrameShape(QPlainTextEdit.NoFrame)
        self.details.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress, 1)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.chooser)
        lv.addWidget(self.checks)
        lv.addLayout(run_row)
        lv.addWidget(self.step)
        lv.addWidget(self.status)
        lv.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setMinimumWidth(360)
        scroll.setMaximumWidth(520)

        self.agreement = AgreementView()
        self.faithfulness = FaithfulnessView()
        self.interventions = InterventionTable()
        self.compare = CompareView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.details, "Verdict")
        self.tabs.addTab(self.agreement, "Agreement")
        self.tabs.addTab(self.faithfulness, "Faithfulness")
        self.tabs.addTab(self.interventions, "Changed attention")
        self.tabs.addTab(self.compare, "Compare side by side")
        self.intro = plain_label(INTRO)
        self.intro.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.intro.setContentsMargins(8, 8, 8, 8)
        self.results = QWidget()
        rv = QVBoxLayout(self.results)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.setSpacing(2)
        rv.addWidget(self.headline)
        rv.addWidget(self.tabs, 1)
        self.right = QStackedWidget()
        self.right.addWidget(self.intro)
        self.right.addWidget(self.results)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(scroll)
        layout.addWidget(self.right, 1)

        self.run_button.clicked.connect(self.run)
        self.chooser.problem.connect(self.status.setText)
        self.cancel_button.clicked.connect(self.cancel)
        self.runner.started.connect(self._on_started)
        self.runner.progressed.connect(self._on_progress)
        self.runner.succeeded.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.runner.idle.connect(self._on_idle)
        self.agreement.pair_clicked.connect(self._compare_pair)
        self.faithfulness.method_chosen.connect(self.show_measure)
        window.model_loaded.connect(self._on_model)
        window.state.analysis_changed.connect(self._on_analysis)
        window.state.changed.connect(self._on_selection)
        window.document.edited.connect(self._on_edit)
        self.refresh()

    # -- running ------------------------------------------------------------------------------
    def run(self) -> int | None:
        w = self.window
        text = w.document.text()
        if w.loaded is None:
            return self._refuse("Load a model first.")
        if not text.strip():
            return self._refuse("Type or open a text first.")
        spec, error = self.chooser.spec()
        if error:
            return self._refuse(error[0].upper() + error[1:] + ".")
        window_shown = shown_window_of(w.state.analysis)
        refused = refusal(self.checks.chosen(), window_shown is not None)
        if refused:
            return self._refuse(refused)
        methods = self.checks.methods()
        loaded, options, engine = w.loaded, w.analysis_options(), w.engine

        def work(progress, cancel):
            started = time.perf_counter()
            analysis = engine.analyze(loaded, text, progress=lambda f, m: progress(0.97 * f, m),
                                      cancel=cancel, methods=methods, target=spec, **options)
            analysis = same_window(analysis, window_shown)  # a document's results keep the window shown
            progress(0.98, "preparing the views")
            prepared = prepare(analysis, cancel)
            prepared.source = "analysis"
            prepared.seconds = time.perf_counter() - started
            return prepared

        self.status.setText("")
        self.run_for = w.state.analysis
        return self.runner.request(work)

    def _refuse(self, message: str) -> None:
        self.status.setText(message)
        self.validation_failed.emit(message)
        return None

    def cancel(self) -> None:
        self.runner.cancel()

    def drop_run(self, why: str) -> None:
        """The running validation is for a document no longer shown: stop it, drop its result."""
        if self.runner.busy:
            self.runner.invalidate()
            self.status.setText(why)
        self.run_for = None

    def _on_started(self, _gen) -> None:
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self.cancel_button.setEnabled(True)
        self.run_button.setText("Running…")
        self.run_button.setEnabled(False)

    def _on_progress(self, gen, fraction: float, message: str) -> None:
        value = int(fraction * 1000)
        if gen == getattr(self, "_progress_gen", None):  # a run's bar never goes back
            value = max(value, self.progress.value())
        self._progress_gen = gen
        self.progress.setValue(value)
        self.progress.setFormat("%p%")
        self.step.setText(message)

    def _on_idle(self) -> None:
        self.step.setText("")
        self.cancel_button.setEnabled(False)
        self.run_button.setText("Run validation")
        self.run_button.setEnabled(self.window.loaded is not None)

    def _on_failed(self, _gen, message: str) -> None:
        self.progress.setFormat("failed")
        self.status.setText(message)
        self.validation_failed.emit(message)

    def _on_cancelled(self, gen) -> None:
        self.progress.setValue(0)
        if gen == self.runner.current:
            self.progress.setFormat("cancelled")
            self.status.setText("Validation cancelled; nothing was changed.")
        else:
            self.progress.setFormat(NOT_RUN)  # superseded by an edit, a new model or a new run
        self.validation_cancelled.emit()

    def _on_done(self, _gen, prepared) -> None:
        w = self.window
        result = prepared.analysis
        self.progress.setValue(1000)
        self.progress.setFormat(f"done in {prepared.seconds:.1f} s")
        if input_text(result) != w.document.text() or not explain_section(result):
            return  # an edit always invalidates first; this is the belt to those braces
        current, started_for = w.state.analysis, self.run_for
        self.run_for = None
        if started_for is not None and not same_document(current, started_for):
            self.status.setText("The validation was for another analysis than the one shown; its results were dropped.")
            return  # opening a session or re-analysing cancels first; this is the belt to those braces
        if current is not None and started_for is not None:
            result = same_window(result, shown_window_of(current))  # the window on screen now, not at the start
        self.last = results_only(result)
        if current is not None and same_input(current, result):
            file_results(current, result)
            w.cache.clear()
            w.selection_bar.sync()
            w.refresh_views()
            w.document.refresh()
            self.refresh()
        else:
            w.show_prepared(prepared)  # the panel shows it on analysis_changed

    # -- what invalidates results ------------------------------------------------------------
    def _on_edit(self) -> None:
        self.runner.invalidate()
        self.run_for = None
        self.refresh()

    def _on_model(self, loaded) -> None:
        self.runner.invalidate()
        self.chooser.set_model(loaded.kind, loaded.info.config)
        self.refresh()

    def _on_analysis(self) -> None:
        an = self.window.state.analysis
        if self.run_for is not None and not same_document(an, self.run_for):
            self.drop_run("Validation stopped: another analysis or session is shown now; run it again for this one.")
        if an is not None and explain_section(an):
            self.last = results_only(an)  # e.g. a session: its results carry over like a run's
        elif an is not None and self.last is not None and same_input(self.last, an):
            file_results(an, self.last)  # the same input analysed again: its results still hold
        self.refresh()

    def _on_selection(self, fields) -> None:
        if "colormap" in fields and self.shown is not None:
            self.agreement.set_section(explain_section(self.shown).get("agreement"), self.window.state.sel.colormap)
            self.compare.set_analysis(self.shown, self.window.state.sel)

    # -- showing -----------------------------------------------------------------------------
    def current(self):
        """The analysis whose results may be shown: the one on screen, if its text is the editor's."""
        an = self.window.state.analysis
        if an is None or not explain_section(an) or input_text(an) != self.window.document.text():
            return None
        return an

    def refresh(self) -> None:
        an = self.current()
        stale = an is None and self.shown is not None
        self.shown = an
        self.run_button.setEnabled(self.window.loaded is not None and not self.runner.busy)
        if an is not None:
            try:
                self._show(an, explain_section(an))
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                # a session written by something else: say so in one line, show nothing half-drawn
                self.shown = None
                self._clear()
                text = str(exc).strip().splitlines()
                self.status.setText("The validation results saved with this analysis cannot be shown "
                                    f"({type(exc).__name__}: {text[0] if text else ''}).")
                return
            self.validation_shown.emit(an)
            return
        self._clear()
        if stale:
            self.status.setText("The text has changed since the last validation: run it again.")

    def _clear(self) -> None:
        sel = self.window.state.sel
        self.agreement.set_section(None, sel.colormap)
        self.faithfulness.set_section(None)
        self.interventions.set_section(None)
        self.compare.set_analysis(None, sel)
        self.right.setCurrentWidget(self.intro)
        self.headline.setText("")
        self.details.setPlainText("")

    def _show(self, an, section: dict) -> None:
        sel = self.window.state.sel
        self.agreement.set_section(section.get("agreement"), sel.colormap)
        self.faithfulness.set_section(section.get("faithfulness"), absent_reason(section, "faithfulness"))
        self.interventions.set_section(section.get("interventions"), section.get("target"),
                                       lambda i: self.output_name(section.get("target") or {}, i),
                                       absent_reason(section, "interventions"))
        self.compare.set_analysis(an, sel)
        self.right.setCurrentWidget(self.results)
        self.status.setText("")
        verdict = section.get("verdict") or {}
        self.headline.setText(str(verdict.get("headline") or ""))
        lines = self.summary(section) + [""] + [f"• {d}" for d in verdict.get("details") or []]
        caveats = verdict.get("caveats") or []
        if caveats:
            lines += ["", "Caveats:"] + [f"• {c}" for c in caveats]
        skipped = section.get("skipped") or {}
        if skipped:
            lines += ["", "Not computed:"] + [f"• {method_label_long(k)}: {v}" for k, v in skipped.items()]
        asked_not = not_asked(section)
        if asked_not:
            lines += ["", "This validation did not ask for: " + ", ".join(asked_not) + "."]
        self.details.setPlainText("\n".join(lines))

    def summary(self, section: dict) -> list[str]:
        """What was explained and how well Integrated Gradients converged, one fact a line."""
        target = section.get("target") or {}
        lines = [f"Target: {target_phrase(section) or target.get('kind', '?')} = {fmt(target.get('value'))}"
                 + (f" · predicted: {target['predicted']}" if target.get("predicted") is not None else "")]
        lines += document_lines(section)
        read = section.get("read_row") or {}
        if read.get("why"):
            lines.append(f"Row the output reads: {read.get('rule')} ({read['why']})")
        ig = (section.get("methods") or {}).get("integrated_gradients") or {}
        if ig:
            lines.append(f"Integrated Gradients: {ig.get('steps')} steps, completeness gap δ = "
                         f"{100 * float(ig.get('relative_delta') or 0):.2g} % of f(x) − f(baseline)"
                         + ("" if ig.get("converged", True) else " (did not reach the tolerance)"))
        loo = (section.get("methods") or {}).get("loo") or {}
        if loo.get("replacement"):
            lines.append(f"Tokens removed by: {loo['replacement']}" + (f" ({loo['token']})" if loo.get("token") else ""))
        timings = section.get("timings") or {}
        total = sum(float(v) for v in timings.values() if isinstance(v, (int, float)))
        if total > 0:
            top = sorted(((float(v), k) for k, v in timings.items() if isinstance(v, (int, float))), reverse=True)[:3]
            lines.append(f"Time: {total:.1f} s, most in " + ", ".join(f"{k} {100 * v / total:.0f} %" for v, k in top))
        return lines

    def output_name(self, target: dict, index: int) -> str:
        """The name of entry `index` of the target's output distribution."""
        labels = target.get("labels")
        if target.get("kind") == "zero-shot" and isinstance(labels, list) and 0 <= index < len(labels):
            return str(labels[index])
        if target.get("kind") == "class" and self.window.loaded is not None:
            names = self.window.loaded.info.config.get("id2label") or {}
            return str(names.get(str(index), names.get(index, f"class {index}")))
        return f"token id {index}"

    # -- links to the rest of the window -------------------------------------------------------
    def _compare_pair(self, a: str, b: str) -> None:
        self.compare.set_pair(a, b)
        self.tabs.setCurrentWidget(self.compare)

    def show_measure(self, name: str) -> None:
        """Highlight the editor with a method's vector."""
        m = method_measure(name)
        if m is not None and self.shown is not None:
            fields = {"measure": m.key}
            if self.shown.is_encoder_decoder:
                fields["set_name"] = "encoder"  # the vectors are over the encoder's tokens
            self.window.state.update(**fields)


def method_label_long(name: str) -> str:
    m = method_measure(name)
    return m.label if m is not None else name
