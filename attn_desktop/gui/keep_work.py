"""The user's work and place: the title's modified marker and document name, asking before
unsaved text is lost, the view saved with a session and restored from it, and the focus kept
on the same word across edits. Mixed into MainWindow."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.propagate.heads import AGGREGATES
from .document import input_text
from .measures import MEASURES, work_copy
from .state import Selection, default_focus

APP_TITLE = "attn-desktop"
SELECTION_VIEW = ("set_name", "measure", "layer", "head", "focus", "alpha", "start_layer")


def ask_unsaved(parent, name: str, action: str = "quitting") -> QMessageBox.StandardButton:
    box = QMessageBox(QMessageBox.Warning, APP_TITLE, f"The text of {name} has changed and is not saved.",
                      QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, parent)
    box.setTextFormat(Qt.PlainText)  # the name is a file name: never markup
    box.setInformativeText(f"Save it before {action}?")
    box.setDefaultButton(QMessageBox.Save)
    return QMessageBox.StandardButton(box.exec())


def view_fields(view) -> dict:
    """Selection fields from a session's saved view, keeping only values of the right kind."""
    if not isinstance(view, dict):
        return {}
    out = {}
    if view.get("measure") in MEASURES:
        out["measure"] = view["measure"]
    if isinstance(view.get("set_name"), str):
        out["set_name"] = view["set_name"]
    for key in ("layer", "focus", "start_layer"):
        if type(view.get(key)) is int and view[key] >= 0:
            out[key] = view[key]
    head = view.get("head")
    if (type(head) is int and head >= 0) or head in AGGREGATES:
        out["head"] = head
    if type(view.get("alpha")) in (int, float):
        out["alpha"] = float(view["alpha"])
    if type(view.get("words")) is bool and "words" in Selection.__dataclass_fields__:
        out["words"] = view["words"]
    picked = view.get("picked")
    if isinstance(picked, list) and all(type(t) is int for t in picked) and "picked" in Selection.__dataclass_fields__:
        out["picked"] = tuple(picked)
    return out


def common_ends(old: str, new: str) -> tuple[int, int]:
    """(length of the common prefix, length of the common suffix not overlapping it)."""
    limit = min(len(old), len(new))
    p = 0
    while p < limit and old[p] == new[p]:
        p += 1
    s = 0
    while s < limit - p and old[len(old) - 1 - s] == new[len(new) - 1 - s]:
        s += 1
    return p, s


def carried_focus(old, focus: int, new) -> int | None:
    """The token of `new` that is the word `focus` was in `old`, when the edit between their texts
    left that word untouched; None when it was the default focus, or it is gone."""
    if old is None or not 0 <= focus < len(old.tokens) or focus == default_focus(old):
        return None
    t = old.tokens[focus]
    if t.end <= t.start:
        return None
    old_text, new_text = input_text(old), input_text(new)
    p, s = common_ends(old_text, new_text)
    if t.end <= p:
        start, end = t.start, t.end
    elif t.start >= len(old_text) - s:
        shift = len(new_text) - len(old_text)
        start, end = t.start + shift, t.end + shift
    else:
        return None  # the edit touched this word
    for i, u in enumerate(new.tokens):
        if u.start == start and u.end == end and u.text == t.text:
            return i
    return None


class KeepWork:
    """Uses the window's document, state, messages, editor and session saving."""

    _document_name: str | None = None

    def set_document_name(self, name: str | None) -> None:
        """The title names the document (a text file or session) and marks unsaved edits."""
        self._document_name = name
        self.setWindowTitle(f"{name}[*] — {APP_TITLE}" if name else f"{APP_TITLE}[*]")

    def mark_saved(self) -> None:
        self.setWindowModified(False)

    def mark_edited(self) -> None:
        self.setWindowModified(True)

    # -- the view a session keeps -----------------------------------------------------------
    def view_settings(self) -> dict:
        sel = self.state.sel
        view = {k: getattr(sel, k) for k in SELECTION_VIEW}
        for key in ("words", "picked"):  # word view and a selection of several words, where the window has them
            if hasattr(sel, key):
                value = getattr(sel, key)
                view[key] = list(value) if isinstance(value, tuple) else value
        view["scroll"] = int(self.document.editor.verticalScrollBar().value())
        return view

    def session_fields(self, an, params: dict) -> dict:
        """Selection fields that show a reopened session as it was saved: its view, over the rollout
        and flow parameters `params`; a focus without a flow row in flow view goes to the first row,
        so opening a session computes nothing."""
        fields = dict(params)
        view = view_fields(an.manifest.get("view"))
        if view.get("set_name") not in an.attention_set_names():
            view.pop("set_name", None)
        fields.update(view)
        sel = replace(self.state.sel, **fields)
        if sel.measure == "flow" and MEASURES["flow"].unavailable(an, sel.set_name) is None:
            rows = [int(r) for r in MEASURES["flow"].row_queries(an, sel)]
            if rows and sel.focus not in rows:
                fields["focus"] = rows[0]
        return fields

    def restore_scroll(self, view) -> None:
        scroll = view.get("scroll") if isinstance(view, dict) else None
        if type(scroll) is int and scroll >= 0:
            bar = self.document.editor.verticalScrollBar()
            bar.setValue(scroll)
            QTimer.singleShot(0, lambda: bar.setValue(scroll))  # once the editor has laid the text out

    # -- quitting -----------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """False when the user cancels quitting (or cancels the save it asked for)."""
        return self.confirm_unsaved("quitting")

    def confirm_unsaved(self, action: str) -> bool:
        """Before the edited text would be lost (quitting, opening another document): Save, Discard
        or Cancel; False when the user cancels (or cancels the save)."""
        if not self.isWindowModified() or not self.document.text().strip():
            return True
        answer = ask_unsaved(self, self._document_name or "the document", action)
        if answer == QMessageBox.Cancel:
            return False
        if answer == QMessageBox.Discard:
            return True
        return self.save_work_now()

    def save_work_now(self) -> bool:
        """Save at once (no worker: the window is closing): the session when the analysis shown is of
        this text, else the text itself."""
        from ..core.errors import UserError
        from ..core.store.session import save_session

        analysis = self.state.analysis
        if analysis is not None and self.document.synced is analysis:
            path, _ = QFileDialog.getSaveFileName(self, "Save session", "analysis.attn",
                                                  "attn-desktop sessions (*.attn)")
            if not path:
                return False
            path = path if path.endswith(".attn") else path + ".attn"
            snapshot = work_copy(analysis)
            snapshot.manifest["view"] = self.view_settings()
            try:
                save_session(snapshot, path)
            except UserError as exc:
                self.messages.error(str(exc))
                return False
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Save text", "document.txt",
                                                  "Text files (*.txt);;All files (*)")
            if not path:
                return False
            from ..core.store.writes import atomic_write

            data = self.document.text().encode("utf-8")
            try:
                atomic_write(path, lambda fh: fh.write(data), what="text", mode=0o644)
            except UserError as exc:
                self.messages.error(str(exc))
                return False
        self.mark_saved()
        return True
