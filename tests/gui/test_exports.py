"""Exports from the window: captioned PNG and SVG of the plots, the heatmap's cells as SVG rects,
CSV/.npy with token labels, the clipboard, and the report written in a worker."""

from __future__ import annotations

import csv
import hashlib
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from attn_desktop.core.report import png as rpng

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v1-bert.attn"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def shown(window, qtbot):
    """The window showing the schema-1 BERT session (9 tokens, 2 layers x 4 heads), no model needed."""
    with qtbot.waitSignal(window.analysis_shown, timeout=30000):
        window.open_session(str(FIXTURE))
    qtbot.waitUntil(lambda: window.heatmap.values is not None, timeout=10000)
    return window


def test_colour_tables_match_the_window(qapp):
    from attn_desktop.core.report import colours
    from attn_desktop.gui.colormaps import COLORMAPS, lut

    for name in COLORMAPS:
        assert np.array_equal(colours.table(name), lut(name)), name


def test_heatmap_svg_has_one_rect_per_cell_and_its_caption(shown, tmp_path):
    w = shown
    w.state.update(measure="attention", layer=1, head=2)
    out = tmp_path / "h.svg"
    assert w.exports.export_image("Heatmap", w.heatmap, str(out), "svg")
    root = ET.parse(out).getroot()
    rows, cols = w.heatmap.values.shape
    cells = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]
    assert len(cells) == rows * cols == 81
    # the cell colours follow the values: the largest value gets the top of the colour map
    from attn_desktop.core.report import colours

    top = colours.hex_colour(w.state.sel.colormap, 1.0)
    flat = np.asarray(w.heatmap.values, np.float32).ravel()
    assert cells[int(np.argmax(flat))].get("fill") == top
    title = root.find(f"{SVG}title").text
    assert "measure: attention" in title and "layer: 1" in title
    desc = root.find(f"{SVG}desc").text
    assert "measure: attention" in desc and "head: 2" in desc and "model: bert" in desc
    caption = root.find(f"{SVG}metadata")[0]
    assert caption.get("model") == "bert" and caption.get("document") == "v1-bert.attn"
    assert caption.get("date") and caption.get("measure") == "attention"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "tenant" in texts and "[CLS]" in texts


def test_png_export_carries_the_caption_in_pixels_and_text_chunks(shown, tmp_path):
    w = shown
    out = tmp_path / "h.png"
    assert w.export_heatmap(str(out))
    data = out.read_bytes()
    meta = rpng.read_text(data)
    assert meta["attn-desktop:model"] == "bert"
    assert meta["attn-desktop:document"] == "v1-bert.attn"
    assert meta["attn-desktop:measure"] == "attention" and meta["attn-desktop:head"] == "mean of heads"
    assert "alpha" in meta["Description"] and "date: " in meta["Description"]
    assert "attn-desktop:date" in meta and "layer" in meta["Description"]
    from PySide6.QtGui import QImage

    image = QImage.fromData(data)
    assert image.height() > w.heatmap.height()  # the caption strip beneath the view


def test_every_plot_exports_to_svg_that_parses(shown, tmp_path):
    w = shown
    names = [name for name, _ in w.exports.plots()]
    assert names[0] == "Heatmap" and "Heads overview" in names
    for k, (name, widget) in enumerate(w.exports.plots()):
        out = tmp_path / f"p{k}.svg"
        assert w.exports.export_image(name, widget, str(out), "svg"), name
        root = ET.parse(out).getroot()
        assert root.tag == f"{SVG}svg"
        desc = root.find(f"{SVG}desc")
        assert desc is not None and "bert" in desc.text and "v1-bert.attn" in desc.text
        assert root.find(f"{SVG}metadata") is not None


def test_matrix_and_token_values_to_csv_and_npy(shown, tmp_path):
    w = shown
    w.state.update(measure="rollout")
    assert w.heatmap.values is not None
    out = tmp_path / "m.csv"
    assert w.exports.export_data("matrix", str(out), "csv")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and "rollout" in lines[0]
    table = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    labels = [f"{i}:{t}" for i, t in enumerate(w.heatmap.col_labels)]
    assert table[0][1:] == labels and "1:The" in labels
    assert [r[0] for r in table[1:]] == [f"{i}:{t}" for i, t in enumerate(w.heatmap.row_labels)]
    got = np.array([[float(x) for x in r[1:]] for r in table[1:]])
    assert np.allclose(got, np.asarray(w.heatmap.values, np.float64), rtol=1e-6, atol=1e-9)
    npy = tmp_path / "m.npy"
    assert w.exports.export_data("matrix", str(npy), "npy")
    assert np.array_equal(np.load(npy), w.heatmap.values)
    vec = tmp_path / "v.csv"
    assert w.exports.export_data("vectors", str(vec), "csv")
    rows = list(csv.reader(io.StringIO("\n".join(vec.read_text(encoding="utf-8").splitlines()[1:]))))
    assert rows[0][:2] == ["index", "token"] and len(rows) == 1 + 9
    assert rows[2][1] == "1:The"


def test_copy_view_puts_the_captioned_image_on_the_clipboard(shown):
    from PySide6.QtGui import QGuiApplication

    assert shown.exports.copy_view()
    image = QGuiApplication.clipboard().image()
    assert not image.isNull() and image.width() >= shown.heatmap.width()


def test_report_from_the_window_with_its_session(shown, tmp_path, qtbot):
    w = shown
    w.state.update(measure="flow")
    out = tmp_path / "evidence.html"
    with qtbot.waitSignal(w.exports.report_written, timeout=60000):
        assert w.exports.export_report(str(out), "words") is not None
    page = out.read_text(encoding="utf-8")
    session = tmp_path / "evidence.attn"
    assert hashlib.sha256(session.read_bytes()).hexdigest() in page
    assert "Attention flow" in page and "Redacted report" in page
    assert "tenant" not in page.lower()
    with qtbot.waitSignal(w.exports.report_failed, timeout=10000):
        w.exports.export_report(str(tmp_path / "no-such-folder" / "r.html"))


def test_file_menu_export_report_asks_redaction_and_path(shown, tmp_path, qtbot, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

    w = shown
    spans = tmp_path / "spans.txt"
    spans.write_text("text: tenant\n", encoding="utf-8")
    out = tmp_path / "menu-report"
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: (a[3][2], True)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(spans), "")))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    with qtbot.waitSignal(w.exports.report_written, timeout=60000):
        w.act_export_report.trigger()
    page = (tmp_path / "menu-report.html").read_text(encoding="utf-8")
    assert "tenant" not in page.lower() and "spans.txt" in page
    assert "rent" in page  # only the listed word is masked
    # the session beside it exists now: a second export asks before replacing it
    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: asked.append(a) or QMessageBox.No))
    w.act_export_report.trigger()
    assert asked and w.exports._report_job is None


def test_analysis_arrays_to_csv_with_labelled_axes(shown, tmp_path):
    w = shown
    an = w.state.analysis
    an.arrays["head_importance"] = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = tmp_path / "heads.csv"
    assert w.exports.export_array("head_importance", str(out))
    rows = list(csv.reader(io.StringIO("\n".join(out.read_text(encoding="utf-8").splitlines()[1:]))))
    assert rows[0] == ["layer \\ head", "0:head 0", "1:head 1", "2:head 2", "3:head 3"]
    assert rows[2][0] == "1:layer 1" and float(rows[2][4]) == 7.0
    out = tmp_path / "flow.csv"
    assert w.exports.export_array("flow", str(out))
    rows = list(csv.reader(io.StringIO("\n".join(out.read_text(encoding="utf-8").splitlines()[1:]))))
    flow_rows = [int(r) for r in an.arrays["flow_rows"]]
    assert [r[0] for r in rows[1:]] == [f"{k}:{an.tokens[q].text}" for k, q in enumerate(flow_rows)]
    assert rows[0][2] == "1:The"
    assert not w.exports.export_array("attentions", str(tmp_path / "a.csv"))  # 4-D: refused in one line
    assert w.messages.level == "error"
