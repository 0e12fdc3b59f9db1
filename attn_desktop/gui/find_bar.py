"""Find in the text (Ctrl+F): a bar under the editor; every match is boxed, the current one
selected and scrolled into view; Enter / F3 next, Shift+Enter / Shift+F3 previous, Esc closes."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QToolButton, QWidget

from .marks import EditorMarks

MAX_MATCHES = 100_000


def find_all(text: str, needle: str) -> list[tuple[int, int]]:
    """Case-insensitive, non-overlapping matches of `needle` in `text` as (start, end)."""
    if not needle:
        return []
    hay, pat = text.casefold(), needle.casefold()
    if len(hay) != len(text) or len(pat) != len(needle):  # casefold changed lengths (ß, ﬁ): exact case
        hay, pat = text, needle
    out, i = [], hay.find(pat)
    while i >= 0 and len(out) < MAX_MATCHES:
        out.append((i, i + len(pat)))
        i = hay.find(pat, i + len(pat))
    return out


class FindBar(QWidget):
    def __init__(self, editor: QPlainTextEdit, marks: EditorMarks, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editor = editor
        self.marks = marks
        self.field = QLineEdit()
        self.field.setPlaceholderText("Find in the text")
        self.field.setClearButtonEnabled(True)
        self.field.installEventFilter(self)
        self.count = QLabel()
        self.count.setTextFormat(Qt.PlainText)
        prev_b, next_b, close_b = QToolButton(), QToolButton(), QToolButton()
        prev_b.setText("▲")
        prev_b.setToolTip("Previous match (Shift+Enter, Shift+F3)")
        next_b.setText("▼")
        next_b.setToolTip("Next match (Enter, F3)")
        close_b.setText("✕")
        close_b.setAutoRaise(True)
        close_b.setToolTip("Close (Esc)")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 2, 0, 2)
        row.addWidget(QLabel("Find"))
        row.addWidget(self.field, 1)
        row.addWidget(self.count)
        row.addWidget(prev_b)
        row.addWidget(next_b)
        row.addWidget(close_b)
        prev_b.clicked.connect(self.find_previous)
        next_b.clicked.connect(self.find_next)
        close_b.clicked.connect(self.close_bar)
        self.field.textChanged.connect(lambda _t: self._search(keep=False))
        editor.textChanged.connect(self._on_text_changed)
        self.matches: list[tuple[int, int]] = []
        self.current: int | None = None
        self.hide()

    def open_bar(self) -> None:
        selected = self.editor.textCursor().selectedText()
        if selected and "\u2029" not in selected:
            self.field.setText(selected)
        self.show()
        self.field.setFocus()
        self.field.selectAll()
        self._search(keep=True)

    def close_bar(self) -> None:
        self.hide()
        self.matches, self.current = [], None
        self.marks.set_matches((), None)
        self.editor.setFocus()

    def eventFilter(self, watched, event) -> bool:
        if watched is self.field:
            if event.type() == QEvent.ShortcutOverride and event.key() in (Qt.Key_Escape, Qt.Key_Return, Qt.Key_Enter):
                event.accept()  # ours, not the window's (Esc there cancels an analysis)
                return True
            if event.type() == QEvent.KeyPress:
                if event.key() == Qt.Key_Escape:
                    self.close_bar()
                    return True
                if event.key() in (Qt.Key_Return, Qt.Key_Enter):
                    if event.modifiers() & Qt.ShiftModifier:
                        self.find_previous()
                    else:
                        self.find_next()
                    return True
        return super().eventFilter(watched, event)

    # -- searching -----------------------------------------------------------------------
    def _on_text_changed(self) -> None:
        if self.isVisible():
            self._search(keep=True)

    def _search(self, keep: bool) -> None:
        self.matches = find_all(self.editor.toPlainText(), self.field.text())
        if not self.matches:
            self.current = None
        else:
            pos = self.editor.textCursor().selectionStart()
            at = next((k for k, (s, _e) in enumerate(self.matches) if s >= pos), 0)
            self.current = at
        self._show(select=not keep)

    def find_next(self) -> None:
        self._step(1)

    def find_previous(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        if not self.isVisible():
            self.open_bar()
            return
        if not self.matches:
            self._search(keep=False)
            return
        self.current = 0 if self.current is None else (self.current + delta) % len(self.matches)
        self._show(select=True)

    def _show(self, select: bool) -> None:
        self.marks.set_matches(self.matches, self.current)
        if not self.field.text():
            self.count.setText("")
        elif not self.matches:
            self.count.setText("no match")
        else:
            more = "+" if len(self.matches) >= MAX_MATCHES else ""
            self.count.setText(f"{self.current + 1} of {len(self.matches)}{more}")
        if select and self.current is not None:
            s, e = self.matches[self.current]
            cursor = QTextCursor(self.editor.document())
            cursor.setPosition(s)
            cursor.setPosition(e, QTextCursor.KeepAnchor)
            self.editor.setTextCursor(cursor)
            self.editor.ensureCursorVisible()
