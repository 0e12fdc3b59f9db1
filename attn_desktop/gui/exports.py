"""Exports from the window: every plot to PNG and SVG with a caption (also in the PNG's text
chunks and the SVG's title, desc and metadata), the heatmap's matrix and the per-token vectors
to CSV and .npy with token labels, the current view to the clipboard, and the HTML report
(written by core.report in a worker, with the session it describes beside it).

SVG: pyqtgraph's own SVG exporter crashes with this Qt, so plots go through QSvgGenerator
(QtSvg) and the heatmap is written by core.report.exports with one rect per cell."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QBuffer,
    QByteArray,
    QIODevice,
    QObject,
    QPoint,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMenu, QMessageBox, QWidget

from ..core.errors import UserError
from ..core.report import exports as core_exports
from .workers import Job

CAPTION_PAD = 6


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file beside `path` and rename it over `path` when complete; a full
    disk, a name too long or an append-only folder is one UserError line (core.store.writes)."""
    from ..core.store.writes import atomic_write

    return atomic_write(path, lambda fh: fh.write(data), what="file", mode=0o644)


def plain(text: str) -> str:
    """A plot title as plain text (pyqtgraph titles may carry markup)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text or "")).strip()


class Exports(QObject):
    """Attached to the main window as `window.exports`."""

    report_written = Signal(str)
    report_failed = Signal(str)

    def __init__(self, window) -> None:
        super().__init__(window)
        self.w = window
        self._report_job: Job | None = None

    # -- captions -------------------------------------------------------------------------------
    def caption(self, what: str | None = None) -> dict[str, str]:
        w = self.w
        an, sel = w.state.analysis, w.state.sel
        model = "no model"
        if an is not None:
            model = (an.manifest.get("model") or {}).get("name", "?")
        elif w.loaded is not None:
            model = w.loaded.name
        measure = sel.measure
        propagated = measure in ("rollout", "flow")
        fields = core_exports.caption_fields(
            measure=measure, layer=None if measure == "flow" else sel.layer, head=sel.head,
            alpha=sel.alpha if propagated else None, fusion=propagated, model=model,
            document=w.document_title())
        if getattr(sel, "words", False):
            fields["rows and columns"] = "words"
        if what:
            fields = {"view": what, **fields}
        if an is not None and an.manifest.get("created"):
            fields["analysed"] = str(an.manifest["created"])
        return fields

    # -- what can be exported ---------------------------------------------------------------------
    def plots(self) -> list[tuple[str, QWidget]]:
        """(name, widget) of every plot on screen: the heatmap, the heads overview and every other
        pyqtgraph view now visible (validation and heads panels, whatever tab shows)."""
        import pyqtgraph as pg

        w = self.w
        out: list[tuple[str, QWidget]] = [("Heatmap", w.heatmap)]
        if w.model_view.isVisible():
            out.append(("Heads overview", w.model_view))
        seen = {name for name, _ in out}
        counts: dict[str, int] = {}
        for view in w.findChildren(pg.GraphicsView):
            if not view.isVisible() or w.heatmap.isAncestorOf(view):
                continue
            dock = _dock_title(view) or "Plot"
            counts[dock] = counts.get(dock, 0) + 1
            name = view.accessibleName() or _plot_title(view) or f"{dock} plot {counts[dock]}"
            if name in seen:
                name = f"{name} ({dock} plot {counts[dock]})"
            seen.add(name)
            out.append((name, view))
        return out

    def build_menu(self, menu: QMenu) -> None:
        """Fill the Export submenu each time it opens (the plots on screen change)."""
        menu.clear()
        ready = self.w.heatmap.values is not None
        for name, widget in self.plots():
            sub = menu.addMenu(name)
            enabled = ready if widget is self.w.heatmap else True
            sub.setEnabled(enabled)
            sub.addAction("As PNG image…", lambda n=name, x=widget: self.choose_image(n, x, "png"))
            sub.addAction("As SVG drawing…", lambda n=name, x=widget: self.choose_image(n, x, "svg"))
            if widget is self.w.heatmap:
                sub.addSeparator()
                sub.addAction("Matrix as CSV (token labels)…", lambda: self.choose_data("matrix", "csv"))
                sub.addAction("Matrix as NumPy .npy…", lambda: self.choose_data("matrix", "npy"))
        menu.addSeparator()
        an = self.w.state.analysis
        arrays = menu.addMenu("Analysis arrays as CSV")
        for name in core_exports.exportable_arrays(an) if an is not None else []:
            arrays.addAction(name, lambda n=name: self.choose_array(n))
        arrays.setEnabled(not arrays.isEmpty())
        act = menu.addAction("Token values as CSV (focus row and importance vectors)…",
                             lambda: self.choose_data("vectors", "csv"))
        act.setEnabled(self.w.state.analysis is not None)
        act = menu.addAction("Token values as NumPy .npy…", lambda: self.choose_data("vectors", "npy"))
        act.setEnabled(self.w.state.analysis is not None)

    # -- images -----------------------------------------------------------------------------------
    def _captioned(self, widget: QWidget, fields: dict[str, str]) -> QImage:
        shot = widget.grab().toImage()
        text = core_exports.caption_line(fields)
        font = QFont(widget.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.9, 7.0))
        metrics = QFontMetrics(font)
        width = max(shot.width(), 360)
        bound = metrics.boundingRect(QRect(0, 0, width - 2 * CAPTION_PAD, 10000), int(Qt.TextWordWrap), text)
        image = QImage(width, shot.height() + bound.height() + 2 * CAPTION_PAD, QImage.Format_RGB32)
        image.fill(QColor("white"))
        p = QPainter(image)
        p.drawImage(0, 0, shot)
        p.setFont(font)
        p.setPen(QColor("#1d2330"))
        p.drawText(QRect(CAPTION_PAD, shot.height() + CAPTION_PAD, width - 2 * CAPTION_PAD, bound.height()),
                   int(Qt.TextWordWrap), text)
        p.end()
        for key, value in core_exports.png_text(fields).items():
            image.setText(key, value)
        return image

    def image_png(self, widget: QWidget, fields: dict[str, str]) -> bytes:
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.WriteOnly)
        if not self._captioned(widget, fields).save(buf, "PNG"):
            raise UserError("the image could not be encoded as PNG")
        buf.close()
        return bytes(data)

    def plot_svg(self, widget: QWidget, fields: dict[str, str]) -> bytes:
        """Any widget drawn as SVG through QSvgGenerator, the caption beneath it and in
        <title>, <desc> and <metadata>."""
        size = widget.size()
        text = core_exports.caption_line(fields)
        metrics = QFontMetrics(widget.font())
        cap_h = metrics.boundingRect(QRect(0, 0, size.width() - 2 * CAPTION_PAD, 10000),
                                     int(Qt.TextWordWrap), text).height() + 2 * CAPTION_PAD
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.WriteOnly)
        gen = QSvgGenerator()
        gen.setOutputDevice(buf)
        gen.setSize(QSize(size.width(), size.height() + cap_h))
        gen.setViewBox(QRect(0, 0, size.width(), size.height() + cap_h))
        gen.setTitle(core_exports.png_text(fields)["Title"])
        gen.setDescription(text)
        p = QPainter(gen)
        try:
            p.fillRect(QRectF(0, 0, size.width(), size.height() + cap_h), QColor("white"))
            QWidget.render(widget, p, QPoint(0, 0))  # the widget (QGraphicsView.render draws the scene)
            p.setPen(QColor("#1d2330"))
            p.drawText(QRect(CAPTION_PAD, size.height() + CAPTION_PAD, size.width() - 2 * CAPTION_PAD, cap_h),
                       int(Qt.TextWordWrap), text)
        finally:
            p.end()
        buf.close()
        svg = bytes(data).decode("utf-8")
        svg = svg.replace("</desc>", "</desc>\n" + core_exports.metadata_xml(fields), 1)
        return svg.encode("utf-8")

    def heatmap_svg(self, fields: dict[str, str]) -> bytes:
        hm = self.w.heatmap
        if hm.values is None:
            raise UserError("no heatmap to export yet")
        return core_exports.heatmap_svg(hm.values, hm.row_labels, hm.col_labels, caption=fields,
                                        colormap=hm.colormap, scale=hm.scale,
                                        value_name=hm.value_name).encode("utf-8")

    def export_image(self, name: str, widget: QWidget, path: str, fmt: str) -> bool:
        try:
            fields = self.caption(name)
            if fmt == "png":
                data = self.image_png(widget, fields)
            elif widget is self.w.heatmap:
                data = self.heatmap_svg(fields)
            else:
                data = self.plot_svg(widget, fields)
            write_atomic(path, data)
        except UserError as exc:
            self.w.messages.error(str(exc))
            return False
        self.w.messages.info(f"Exported {Path(path).name}.")
        return True

    def choose_image(self, name: str, widget: QWidget, fmt: str) -> None:
        if widget is self.w.heatmap and self.w.heatmap.values is None:
            self.w.messages.warning("No heatmap to export yet.")
            return
        flt = "PNG images (*.png)" if fmt == "png" else "SVG drawings (*.svg)"
        stem = re.sub(r"[^\w.-]+", "-", name.lower()).strip("-") or "plot"
        path, _ = QFileDialog.getSaveFileName(self.w, f"Export {name}", f"{stem}.{fmt}", flt)
        if path:
            self.export_image(name, widget, path if path.lower().endswith(f".{fmt}") else f"{path}.{fmt}", fmt)

    def copy_view(self) -> bool:
        """The heatmap with its caption, as an image on the clipboard."""
        if self.w.heatmap.values is None:
            self.w.messages.warning("No view to copy yet.")
            return False
        image = self._captioned(self.w.heatmap, self.caption("Heatmap"))
        QGuiApplication.clipboard().setImage(image)
        self.w.messages.info("Copied the view as an image, with its caption.")
        return True

    # -- data -------------------------------------------------------------------------------------
    def vectors(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """Values over the input, by words or by pieces as the views show them: the focus row of
        the view (the focus word's, or the selection's: gui.units) when it runs over the input,
        and every importance vector the analysis holds (summed over each word's pieces)."""
        from ..core.report.context import VECTOR_NAMES
        from ..core.views.words import sum_columns
        from .measures import MEASURES
        from .units import focus_row, token_units

        an, sel = self.w.state.analysis, self.w.state.sel
        units = token_units(an, an.tokens, sel.words)
        labels = list(units.labels)
        columns: dict[str, np.ndarray] = {}
        if an.axis_tokens(sel.set_name)[1] is an.tokens:
            row = focus_row(an, sel, MEASURES[sel.measure])
            if row is not None:
                columns[f"{sel.measure} row of the focus"] = np.asarray(row.values, np.float32)
        for name in VECTOR_NAMES:
            a = an.arrays.get(name)
            if a is not None and a.ndim == 1 and a.shape[0] == len(an.tokens):
                columns[name] = sum_columns(np.asarray(a, np.float32), units)
        return columns, labels

    def export_data(self, what: str, path: str, fmt: str) -> bool:
        try:
            fields = self.caption("Heatmap" if what == "matrix" else "Token values")
            if what == "matrix":
                hm = self.w.heatmap
                if hm.values is None:
                    raise UserError("no heatmap to export yet")
                if fmt == "csv":
                    data = core_exports.matrix_csv(hm.values, hm.row_labels, hm.col_labels, caption=fields).encode("utf-8")
                else:
                    data = _npy(np.asarray(hm.values))
            else:
                if self.w.state.analysis is None:
                    raise UserError("analyse a text first")
                columns, labels = self.vectors()
                if not columns:
                    raise UserError("the view has no values over the input tokens to export")
                if fmt == "csv":
                    data = core_exports.vectors_csv(columns, labels, caption=fields).encode("utf-8")
                else:
                    data = _npy(np.stack(list(columns.values()), axis=1))
            write_atomic(path, data)
        except UserError as exc:
            self.w.messages.error(str(exc))
            return False
        self.w.messages.info(f"Exported {Path(path).name}.")
        return True

    def export_array(self, name: str, path: str) -> bool:
        """One vector or matrix of the analysis (head grids, flow rows, importance vectors...) as
        CSV with its axes labelled."""
        try:
            an = self.w.state.analysis
            if an is None or name not in an.arrays:
                raise UserError(f"the analysis holds no array {name!r}")
            values, rows, cols, corner = core_exports.array_table(name, an.arrays[name], an)
            fields = self.caption(f"array {name}")
            data = core_exports.matrix_csv(values, rows, cols, corner=corner, caption=fields).encode("utf-8")
            write_atomic(path, data)
        except (UserError, ValueError) as exc:
            self.w.messages.error(str(exc))
            return False
        self.w.messages.info(f"Exported {Path(path).name}.")
        return True

    def choose_array(self, name: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Export array", f"{name}.csv", "CSV files (*.csv)")
        if path:
            self.export_array(name, path if path.lower().endswith(".csv") else f"{path}.csv")

    def choose_data(self, what: str, fmt: str) -> None:
        flt = "CSV files (*.csv)" if fmt == "csv" else "NumPy arrays (*.npy)"
        default = f"{'matrix' if what == 'matrix' else 'token-values'}.{fmt}"
        path, _ = QFileDialog.getSaveFileName(self.w, "Export data", default, flt)
        if path:
            self.export_data(what, path if path.lower().endswith(f".{fmt}") else f"{path}.{fmt}", fmt)

    # -- the report -------------------------------------------------------------------------------
    def report_options(self, redact: str | None, session_path: str):
        from ..core.report import ReportOptions, parse_redact
        from ..core.report.context import VECTOR_NAMES

        sel = self.w.state.sel
        measure = sel.measure
        if measure not in ("attention", "rollout", "flow") and measure not in VECTOR_NAMES:
            measure = "attention"
        picked = tuple(getattr(sel, "picked", ()) or ())
        focus = picked or (sel.focus,)
        layer = sel.layer if measure in ("attention", "rollout") else None
        return ReportOptions(measure=measure, set_name=sel.set_name, layer=layer, head=sel.head,
                             focus=focus, colormap=sel.colormap, scale=sel.scale,
                             words=bool(getattr(sel, "words", False)),
                             redaction=parse_redact(redact), session_path=session_path,
                             document_name=self.w.document_title())

    def choose_report(self) -> None:
        if self.w.state.analysis is None:
            self.w.messages.warning("Nothing to report yet: analyse a text first.")
            return
        items = ["No redaction", "Replace words by token indices (numbers stay)",
                 "Mask the character spans listed in a file…"]
        choice, ok = QInputDialog.getItem(self.w, "Export report", "Redaction for sharing:", items, 0, False)
        if not ok:
            return
        redact = None
        if choice == items[1]:
            redact = "words"
        elif choice == items[2]:
            spans, _ = QFileDialog.getOpenFileName(self.w, "Spans to mask", "", "Text files (*.txt);;All files (*)")
            if not spans:
                return
            redact = f"spans:{spans}"
        path, _ = QFileDialog.getSaveFileName(self.w, "Export report", "report.html", "HTML reports (*.html)")
        if not path:
            return
        if not path.lower().endswith((".html", ".htm")):
            path += ".html"
        session = Path(path).with_suffix(".attn")
        if session.exists():
            answer = QMessageBox.question(
                self.w, "Export report", f"The report is saved with its session, {session.name}, "
                "which exists. Replace it?")
            if answer != QMessageBox.Yes:
                return
        self.export_report(path, redact)

    def export_report(self, path: str, redact: str | None = None) -> Job | None:
        """Save the analysis as a session beside the report (its SHA-256 goes in the report) and
        write the report, in a worker. The view shown (measure, focus, layer, head) is the
        report's view."""
        from ..core.report.build import check_report_path
        from .measures import work_copy

        an = self.w.state.analysis
        if an is None:
            self.w.messages.warning("Nothing to report yet: analyse a text first.")
            return None
        if self._report_job is not None:
            self.w.messages.info("A report is being written already.")
            return None
        try:
            html_path = check_report_path(Path(path))
            session = html_path.with_suffix(".attn")
            options = self.report_options(redact, str(session))
        except UserError as exc:
            self.w.messages.error(str(exc))
            self.report_failed.emit(str(exc))
            return None
        if getattr(self.w.document, "synced", an) is not an:
            self.w.messages.warning("The text has changed since the analysis; the report shows the analysed text.")
        snapshot = work_copy(an)
        if hasattr(self.w, "view_settings"):
            snapshot.manifest["view"] = self.w.view_settings()
        self.w.stamp_source(snapshot)

        def work(progress, cancel):
            from ..core.report import write_report
            from ..core.store.session import save_session

            progress(0.1, "saving the session the report describes")
            save_session(snapshot, session)
            progress(0.5, "writing the report")
            return str(write_report(snapshot, html_path, options))

        job = Job(work, "Report", self)
        job.progressed.connect(lambda _f, message: self.w.statusBar().showMessage(f"Report: {message}", 5000))
        job.succeeded.connect(self._on_report)
        job.failed.connect(self._on_report_failed)
        job.done.connect(lambda: setattr(self, "_report_job", None))
        self._report_job = job
        job.start()
        return job

    def _on_report(self, path: str) -> None:
        self._report_job = None
        self.w.messages.info(f"Wrote the report {Path(path).name} and its session {Path(path).with_suffix('.attn').name}.")
        self.report_written.emit(path)

    def _on_report_failed(self, message: str) -> None:
        self._report_job = None
        self.w.messages.error(message)
        self.report_failed.emit(message)


def _plot_title(view) -> str:
    import pyqtgraph as pg

    items = [view.getPlotItem()] if isinstance(view, pg.PlotWidget) else \
        [i for i in getattr(getattr(view, "ci", None), "items", {}) if isinstance(i, pg.PlotItem)]
    for item in items:
        title = plain(item.titleLabel.text) if item.titleLabel.isVisible() else ""
        if title:
            return title
    return ""


def _dock_title(widget) -> str:
    from PySide6.QtWidgets import QDockWidget

    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent.windowTitle() if parent is not None else ""


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()
