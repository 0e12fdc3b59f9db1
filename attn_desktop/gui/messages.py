"""A non-modal message area: one line, a level, a close button; never blocks the window."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

log = logging.getLogger(__name__)

STYLES = {
    "info": ("ℹ", "#2f6fb0"),
    "warning": ("⚠", "#b07a00"),
    "error": ("✖", "#c0392b"),
}


class MessageBar(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageBar")
        self.icon = QLabel()
        self.text = QLabel()
        self.text.setTextFormat(Qt.PlainText)  # messages quote file names, model names and tokens
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 3, 4, 3)
        row.addWidget(self.icon)
        row.addWidget(self.text, 1)
        row.addWidget(close)
        self.level = ""
        self.history: list[tuple[str, str]] = []
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.hide()

    def show_message(self, level: str, message: str, timeout_ms: int | None = None) -> None:
        message = " ".join(str(message).split())  # one line, whatever we were given
        symbol, color = STYLES.get(level, STYLES["info"])
        self.level = level
        self.history.append((level, message))
        del self.history[:-50]
        getattr(log, "error" if level == "error" else "info")(message)
        self.icon.setText(symbol)
        self.text.setText(message)
        self.setStyleSheet(
            f"#MessageBar {{ border: 1px solid {color}; border-left: 4px solid {color}; border-radius: 3px; }}"
            f"#MessageBar QLabel {{ color: palette(window-text); }}"
        )
        self.show()
        if timeout_ms is None:
            timeout_ms = 6000 if level == "info" else 0
        if timeout_ms:
            self._timer.start(timeout_ms)
        else:
            self._timer.stop()

    def info(self, message: str) -> None:
        self.show_message("info", message)

    def warning(self, message: str) -> None:
        self.show_message("warning", message)

    def error(self, message: str) -> None:
        self.show_message("error", message)
