"""The menu bar of the main window."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from . import settings as app_settings
from .about import show_about
from .help import show_guide
from .measures import MEASURES


def action(w, menu, text, slot, shortcut=None) -> QAction:
    act = QAction(text, w)
    if shortcut is not None:
        act.setShortcut(QKeySequence(shortcut))
        act.setShortcutContext(Qt.WindowShortcut)
    if slot is not None:
        act.triggered.connect(lambda _=False: slot())
    menu.addAction(act)
    return act


def build_menus(w) -> None:
    bar = w.menuBar()
    file = bar.addMenu("&File")
    w.act_open_model = action(w, file, "Open &model folder…", w.choose_model_folder, "Ctrl+Shift+O")
    w.act_open_text = action(w, file, "Open &text…", w.choose_text, QKeySequence.Open)
    w.act_open_session = action(w, file, "Open &session…", w.choose_session, "Ctrl+Alt+O")
    w.act_save_session = action(w, file, "&Save session…", w.choose_save_session, QKeySequence.Save)
    w.act_export = action(w, file, "&Export heatmap as PNG…", w.choose_export, "Ctrl+E")
    w.export_menu = file.addMenu("E&xport view")  # every plot to PNG/SVG, matrices and vectors to CSV/.npy
    w.export_menu.aboutToShow.connect(lambda: w.exports.build_menu(w.export_menu))
    w.act_export_report = action(w, file, "Export &report…", w.exports.choose_report, "Ctrl+Shift+R")
    w.act_copy_view = action(w, file, "&Copy view as image", w.exports.copy_view, "Ctrl+Shift+C")
    w.samples_menu = file.addMenu("Sample &documents")
    for path in app_settings.sample_files():
        act = w.samples_menu.addAction(path.stem.replace("_", " "))
        act.triggered.connect(lambda _=False, p=path: w.open_text_file(str(p)))
    w.samples_menu.setEnabled(bool(app_settings.sample_files()))
    w.recent_menu = file.addMenu("&Recent files")
    w.recent_menu.aboutToShow.connect(w._fill_recent)
    file.addSeparator()
    action(w, file, "&Quit", w.close, QKeySequence.Quit)

    edit = bar.addMenu("&Edit")
    w.act_find = action(w, edit, "&Find in the text…", w.find_bar.open_bar, QKeySequence.Find)
    action(w, edit, "Find &next", w.find_bar.find_next, QKeySequence.FindNext)
    action(w, edit, "Find &previous", w.find_bar.find_previous, QKeySequence.FindPrevious)

    analysis = bar.addMenu("A&nalysis")
    action(w, analysis, "Analyse &now", w.request_analysis, "Ctrl+Return")
    action(w, analysis, "&Cancel analysis, validation, rollout or flow", w.cancel_analysis, "Esc")
    action(w, analysis, "Compute attention &flow for the focus token", w.compute_flow, "Ctrl+Shift+F")
    w.act_flow_all = action(w, analysis, "Compute attention flow for &all tokens", w.compute_flow_all,
                            "Ctrl+Alt+F")
    w.act_validate = action(w, analysis, "&Validate: check attention against gradients and ablations",
                            lambda: (w.validate_dock.show(), w.validate_dock.raise_(), w.validate_panel.run()),
                            "Ctrl+Shift+V")
    w.act_truncate = action(w, analysis, "&Truncate texts longer than the model accepts", None)
    w.act_truncate.setCheckable(True)
    w.act_truncate.toggled.connect(lambda _on: w.schedule_analysis())
    from .windows_strip import add_action as add_windows_action

    add_windows_action(w, analysis)  # long texts in overlapping windows (gui.windows_strip)

    view = bar.addMenu("&View")
    s = w.state
    action(w, view, "Next layer", lambda: s.step_layer(1), "Alt+Down")
    action(w, view, "Previous layer", lambda: s.step_layer(-1), "Alt+Up")
    action(w, view, "Next head", lambda: s.step_head(1), "Alt+Right")
    action(w, view, "Previous head", lambda: s.step_head(-1), "Alt+Left")
    action(w, view, "Cycle head / mean / max / min", s.cycle_aggregate, "Alt+A")
    view.addSeparator()
    for key, m in MEASURES.items():
        action(w, view, f"Show {m.label.lower()}", lambda _=False, k=key: s.update(measure=k))
    view.addSeparator()
    w.act_opengl = action(w, view, "Use OpenGL for the heatmap", w._toggle_opengl)
    w.act_opengl.setCheckable(True)
    view.addSeparator()
    view.addAction(w.model_dock.toggleViewAction())
    view.addAction(w.validate_dock.toggleViewAction())
    w.act_heads = action(w, view, "Heads overview", lambda: w.heads_box.setVisible(w.act_heads.isChecked()))
    w.act_heads.setCheckable(True)
    w.act_heads.setChecked(True)
    view.addAction(w.selection_bar.toggleViewAction())

    help_menu = bar.addMenu("&Help")
    w.act_guide = action(w, help_menu, "&Reading the views", lambda: show_guide(w), QKeySequence.HelpContents)
    action(w, help_menu, "&About attn-desktop", lambda: show_about(w))
