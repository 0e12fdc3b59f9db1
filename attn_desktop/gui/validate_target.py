"""The Validate run's target (the output whose evidence is checked): the target chooser, one page
per kind of model. It produces the target spec of docs/explain.md (a plain dict) or says in one
line what is missing."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import UserError
from ..core.explain.labels import label_files, parse_labels, read_labels

DEFAULT_TEMPERATURE = 0.05
OWN_FILE = "__own__"
LABEL_SET_KEY = "validate/label_set"
CHOOSE_LABELS = "choose a label set or type labels"


def _settings():
    from .settings import settings

    return settings()


def _form() -> tuple[QWidget, QFormLayout]:
    page = QWidget()
    form = QFormLayout(page)
    form.setContentsMargins(0, 0, 0, 0)
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    return page, form


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.PlainText)
    label.setWordWrap(True)
    label.setEnabled(False)
    return label


class TargetChooser(QWidget):
    changed = Signal()
    problem = Signal(str)  # one line: a label file that cannot be read

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind: str | None = None
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        self._encoder_page()
        self._class_page()
        self._token_page()
        self.none_page = _hint("Load a model to choose what to explain.")
        self.stack.addWidget(self.none_page)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.stack.setCurrentWidget(self.none_page)

    # -- pages --------------------------------------------------------------------------------
    def _encoder_page(self) -> None:
        page, form = _form()
        self.mode = QComboBox()
        self.mode.addItem("zero-shot labels", "zero-shot")
        self.mode.addItem("similarity to a reference text", "reference")
        self.mode.setToolTip("This model has no task head: the target is the probability of a label "
                             "(cosine similarity of mean-pooled embeddings over a temperature, softmax "
                             "over the labels) or the similarity to a reference text")
        form.addRow("Target", self.mode)
        self.label_set = QComboBox()
        self.label_set.setToolTip("A shipped label set, or your own file (one label per line, # comments)")
        self.label_set.setPlaceholderText(CHOOSE_LABELS)  # shown until a set is chosen: none fits every text
        self.open_labels = QToolButton()
        self.open_labels.setText("Open…")
        self.open_labels.setToolTip("Read labels from your own text file")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label_set, 1)
        row.addWidget(self.open_labels)
        self.label_set_row = QWidget()
        self.label_set_row.setLayout(row)
        form.addRow("Label set", self.label_set_row)
        self.labels_edit = QPlainTextEdit()
        self.labels_edit.setPlaceholderText("choose a label set above, or type labels, one per line, e.g.\n"
                                            "limitation of liability\nconfidentiality")
        self.labels_edit.setToolTip("The labels, one per line; edit them freely")
        self.labels_edit.setTabChangesFocus(True)
        self.labels_edit.setMinimumHeight(48)
        self.labels_edit.setMaximumHeight(96)
        form.addRow("Labels", self.labels_edit)
        self.target_label = QComboBox()
        self.target_label.setToolTip("The label whose probability is explained")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.001, 10.0)
        self.temperature.setDecimals(3)
        self.temperature.setSingleStep(0.01)
        self.temperature.setValue(DEFAULT_TEMPERATURE)
        self.temperature.setToolTip("Similarities are divided by it before the softmax over labels")
        form.addRow("Explain", self.target_label)
        form.addRow("Temperature", self.temperature)
        self.reference = QLineEdit()
        self.reference.setPlaceholderText("the text to compare with")
        self.reference.setClearButtonEnabled(True)
        form.addRow("Reference", self.reference)
        self.form_encoder = form
        self.pages["encoder"] = page
        self.stack.addWidget(page)

        self.mode.currentIndexChanged.connect(lambda _i: self._sync_encoder())
        self.label_set.activated.connect(lambda _i: self._on_label_set())
        self.open_labels.clicked.connect(self.choose_label_file)
        self.labels_edit.textChanged.connect(self._refill_target_labels)
        for w in (self.target_label,):
            w.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.reference.textChanged.connect(lambda _t: self.changed.emit())
        self._fill_label_sets()
        self._sync_encoder()

    def _class_page(self) -> None:
        page, form = _form()
        self.class_box = QComboBox()
        self.class_box.setToolTip("The class whose probability is explained")
        form.addRow("Explain class", self.class_box)
        self.pages["sequence-classification"] = page
        self.stack.addWidget(page)

    def _token_page(self) -> None:
        page, form = _form()
        self.token = QLineEdit()
        self.token.setClearButtonEnabled(True)
        self.token_label = QLabel("Token")
        form.addRow(self.token_label, self.token)
        self.token_hint = _hint("")
        form.addRow(self.token_hint)
        self.pages["token"] = page
        self.stack.addWidget(page)

    # -- the model ----------------------------------------------------------------------------
    def set_model(self, kind: str | None, config: dict | None = None) -> None:
        self.kind = kind
        if kind == "encoder":
            self.stack.setCurrentWidget(self.pages["encoder"])
        elif kind == "sequence-classification":
            self.class_box.clear()
            self.class_box.addItem("the predicted class", None)
            names = (config or {}).get("id2label") or {}
            count = int((config or {}).get("num_labels") or len(names) or 2)
            for i in range(count):
                name = names.get(str(i), names.get(i, f"LABEL_{i}")) if isinstance(names, dict) else f"LABEL_{i}"
                self.class_box.addItem(f"{i}: {name}", i)
            self.stack.setCurrentWidget(self.pages["sequence-classification"])
        elif kind in ("causal-lm", "masked-lm", "encoder-decoder"):
            label, placeholder, hint = {
                "causal-lm": ("Next token", "empty: the predicted next token",
                              "The log-probability of this token right after the text."),
                "masked-lm": ("Token at the mask", "empty: the predicted token",
                              "The probability of this token at the first mask token of the text; "
                              "put the model's mask token (for BERT: [MASK]) in the text."),
                "encoder-decoder": ("Output token", "empty: the first generated token",
                                    "The log-probability of this first output token given the text."),
            }[kind]
            self.token_label.setText(label)
            self.token.setPlaceholderText(placeholder)
            self.token.setToolTip("Exactly one token of the model's vocabulary, or empty")
            self.token_hint.setText(hint)
            self.stack.setCurrentWidget(self.pages["token"])
        else:
            self.stack.setCurrentWidget(self.none_page)

    # -- labels -------------------------------------------------------------------------------
    def _fill_label_sets(self) -> None:
        with QSignalBlocker(self.label_set):
            self.label_set.clear()
            files = label_files()
            for path in files:
                self.label_set.addItem(path.stem.replace("_", " "), str(path))
            self.label_set.addItem("your own labels", OWN_FILE)
        remembered = str(_settings().value(LABEL_SET_KEY, "") or "")
        names = [str(p) for p in files]
        if remembered in names:  # the user's last choice; with none yet, no set is guessed for them
            pick = names.index(remembered)
            self.label_set.setCurrentIndex(pick)
            self._load_labels(files[pick])
        else:
            self.label_set.setCurrentIndex(-1)
            self._refill_target_labels()  # "the predicted label", offered before any label is typed

    def _on_label_set(self) -> None:
        data = self.label_set.currentData()
        if data and data != OWN_FILE:
            error = self._load_labels(data)
            if error:
                self.problem.emit(error)
            else:
                _settings().setValue(LABEL_SET_KEY, str(data))  # the next start offers the same set

    def choose_label_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a label file", "", "Text files (*.txt);;All files (*)")
        if path:
            error = self.load_label_file(path)
            if error:
                self.problem.emit(error)

    def load_label_file(self, path: str) -> str | None:
        """Read the user's own label file; returns the one-line error or None."""
        error = self._load_labels(path)
        if error is None:
            with QSignalBlocker(self.label_set):
                i = self.label_set.findData(str(path))
                if i < 0:
                    self.label_set.insertItem(self.label_set.count() - 1, Path(path).name, str(path))
                    i = self.label_set.findData(str(path))
                self.label_set.setCurrentIndex(i)
        return error

    def _load_labels(self, path) -> str | None:
        try:
            labels = read_labels(path)
        except (OSError, UserError) as exc:  # a bad file is a message, never a crash
            return str(exc).splitlines()[0] if str(exc) else f"{Path(path).name} cannot be read"
        self.labels_edit.setPlainText("\n".join(labels))
        return None

    def labels(self) -> list[str]:
        """The labels as typed (checked only when the run starts)."""
        return [line.strip() for line in self.labels_edit.toPlainText().splitlines()
                if line.strip() and not line.strip().startswith("#")]

    def _refill_target_labels(self) -> None:
        current = self.target_label.currentData()
        with QSignalBlocker(self.target_label):
            self.target_label.clear()
            self.target_label.addItem("the predicted label", None)
            for label in self.labels():
                self.target_label.addItem(label, label)
            i = self.target_label.findData(current)
            self.target_label.setCurrentIndex(max(i, 0))
        if self.label_set.currentData() != OWN_FILE and self._edited_away_from_file():
            with QSignalBlocker(self.label_set):
                self.label_set.setCurrentIndex(self.label_set.findData(OWN_FILE))
        self.changed.emit()

    def _edited_away_from_file(self) -> bool:
        data = self.label_set.currentData()
        if data is None:  # no set chosen yet: typed labels are the user's own
            return bool(self.labels())
        try:
            return read_labels(data) != self.labels()
        except (OSError, UserError):
            return True

    def _sync_encoder(self) -> None:
        zero_shot = self.mode.currentData() == "zero-shot"
        for w in (self.label_set_row, self.labels_edit, self.target_label, self.temperature):
            self.form_encoder.setRowVisible(w, zero_shot)
        self.form_encoder.setRowVisible(self.reference, not zero_shot)
        self.changed.emit()

    # -- the spec -----------------------------------------------------------------------------
    def spec(self) -> tuple[dict | None, str | None]:
        """(target spec, None) or (None, what is missing, one line)."""
        kind = self.kind
        if kind is None:
            return None, "load a model first"
        if kind == "encoder":
            if self.mode.currentData() == "reference":
                reference = self.reference.text().strip()
                if not reference:
                    return None, "type a reference text to compare the text with"
                return {"kind": "reference", "reference": reference}, None
            if not self.labels():
                return None, CHOOSE_LABELS
            try:
                labels = parse_labels(self.labels_edit.toPlainText(), "the label list")
            except UserError as exc:
                return None, str(exc)
            return {"kind": "zero-shot", "labels": labels, "label": self.target_label.currentData(),
                    "temperature": round(float(self.temperature.value()), 6)}, None
        if kind == "sequence-classification":
            return {"kind": "class", "class": self.class_box.currentData()}, None
        token = self.token.text()
        spec_kind = {"causal-lm": "next-token", "masked-lm": "masked-token",
                     "encoder-decoder": "seq2seq-token"}.get(kind)
        if spec_kind is None:
            return None, f"no target is defined for a {kind} model"
        return {"kind": spec_kind, "token": token if token.strip() else None}, None
