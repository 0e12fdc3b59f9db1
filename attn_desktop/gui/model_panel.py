"""Model panel: the library of model folders, device choice, load with progress and cancel,
and the card of the loaded model."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .contrast import secondary_color
from .plain import plain_tip

PATH_ROLE = Qt.UserRole
ERROR_ROLE = Qt.UserRole + 1


def human_count(n: int | None) -> str:
    if not n:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


class ModelPanel(QWidget):
    load_requested = Signal(str, str)  # folder, device
    cancel_requested = Signal()
    open_folder_requested = Signal()
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = QListWidget()
        self.library.setSelectionMode(QAbstractItemView.SingleSelection)
        self.library.setWordWrap(True)
        self.library.setAlternatingRowColors(True)
        self.library.itemDoubleClicked.connect(lambda _item: self._load_selected())
        self.library.currentItemChanged.connect(self._on_current)
        self.library_label = QLabel("Library")
        self.library_label.setWordWrap(True)
        self.library_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Scan the library folder again")
        refresh.clicked.connect(self.refresh_requested)

        self.open_button = QPushButton("Open model folder…")
        self.open_button.clicked.connect(self.open_folder_requested)
        self.device = QComboBox()
        self.device.addItem("cpu")
        self.device.setToolTip("Where the model runs; CUDA appears when a GPU is usable")
        self.load_button = QPushButton("Load")
        self.load_button.setDefault(True)
        self.load_button.clicked.connect(self._load_selected)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.progress_row = QWidget()
        prow = QHBoxLayout(self.progress_row)
        prow.setContentsMargins(0, 0, 0, 0)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel_button)
        self.progress_row.hide()

        self.card = QTableWidget(0, 2)
        self.card.horizontalHeader().hide()
        self.card.verticalHeader().hide()
        self.card.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.card.setSelectionMode(QAbstractItemView.ContiguousSelection)
        self.card.setWordWrap(True)
        self.card.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.card.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.card_title = QLabel("<b>No model loaded</b>")

        top = QHBoxLayout()
        top.addWidget(self.library_label, 1)
        top.addWidget(refresh)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Device"))
        actions.addWidget(self.device)
        actions.addStretch(1)
        actions.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addWidget(self.library, 2)
        layout.addWidget(self.open_button)
        layout.addLayout(actions)
        layout.addWidget(self.progress_row)
        layout.addWidget(self.card_title)
        layout.addWidget(self.card, 3)
        self.entries: list = []

    # -- library --------------------------------------------------------------------------
    def set_library(self, folder: str, entries: list) -> None:
        self.entries = list(entries)
        self.library_label.setText(f"Library: <i>{html.escape(folder)}</i>" if folder else "Library")
        self.library_label.setToolTip(plain_tip(folder))
        current = self.selected_path()
        self.library.clear()
        muted = secondary_color(self.library.palette(), "Text", "Base")  # readable: WCAG AA
        for e in self.entries:
            error = getattr(e, "error", None)
            if error:
                text = f"{e.name}\n    cannot load: {error}"
            else:
                text = (f"{e.name}\n    {e.kind} · {e.num_layers} layers × {e.num_heads} heads · "
                        f"{human_count(e.num_parameters)}")
            item = QListWidgetItem(text)
            item.setData(PATH_ROLE, str(e.path))
            item.setData(ERROR_ROLE, error)
            item.setToolTip(plain_tip(str(e.path) + (f"\n{error}" if error else "")))
            if error:
                item.setForeground(muted)
            self.library.addItem(item)
            if str(e.path) == current:
                self.library.setCurrentItem(item)
        if self.library.currentItem() is None and self.library.count():
            self.library.setCurrentRow(0)

    def selected_path(self) -> str | None:
        item = self.library.currentItem()
        return None if item is None else item.data(PATH_ROLE)

    def select_path(self, path: str) -> None:
        for i in range(self.library.count()):
            if self.library.item(i).data(PATH_ROLE) == path:
                self.library.setCurrentRow(i)
                return

    def _on_current(self, item, _previous) -> None:
        self.load_button.setEnabled(item is not None and not item.data(ERROR_ROLE))

    def _load_selected(self) -> None:
        item = self.library.currentItem()
        if item is None:
            return
        self.load_requested.emit(item.data(PATH_ROLE), self.device.currentText())

    # -- devices --------------------------------------------------------------------------
    def set_devices(self, devices: list[str], current: str | None = None) -> None:
        chosen = current or self.device.currentText()
        self.device.clear()
        self.device.addItems(devices)
        if chosen in devices:
            self.device.setCurrentText(chosen)

    # -- progress and card ----------------------------------------------------------------
    def set_busy(self, busy: bool, message: str = "") -> None:
        self.progress_row.setVisible(busy)
        self.load_button.setEnabled(not busy)
        if busy:
            self.progress.setValue(0)
            self.progress.setFormat(message or "loading…")

    def set_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"{message} %p%")

    def set_title(self, title: str) -> None:
        self.card_title.setText(f"<b>{html.escape(title)}</b>")  # a model's name is any folder name

    def set_card(self, title: str, rows: list[tuple[str, str]],
                 tooltips: dict[str, str] | None = None) -> None:
        self.set_title(title)
        self.card.setRowCount(len(rows))
        for i, (label, value) in enumerate(rows):
            a = QTableWidgetItem(label)
            b = QTableWidgetItem(value)
            b.setToolTip(plain_tip((tooltips or {}).get(label, value)))
            self.card.setItem(i, 0, a)
            self.card.setItem(i, 1, b)
        self.card.resizeRowsToContents()
