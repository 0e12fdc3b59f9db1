"""Windowed documents in the window (core.windows): a strip that says which window the views show
and where it lies in the document, a map of every window to pick another, and the rule that a
click in the text shows the window in which that token sits most centrally.

The editor always holds the whole document; the views show one window (an Analysis of its own,
made by core.windows.window_view) at a time. Attention never crosses windows, and the strip says so."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ..core import windows as core_windows

SETTING = "windows"
ACTION_TEXT = "Analyse long texts in overlapping &windows"
WINDOWS_SETTING = "Analysis ▸ Analyse long texts in overlapping windows"


class WindowMap(QWidget):
    """Every window as a bar over the document's length (two lanes, so overlaps show); the shown
    window filled. Click a bar to show that window."""

    picked = Signal(int)
    LANE = 9

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spans: list[tuple[int, int]] = []  # document tokens [start, end) per window
        self.total = 1
        self.shown = -1
        self.setMinimumWidth(160)
        self.setFixedHeight(2 * self.LANE + 6)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setCursor(Qt.PointingHandCursor)

    def set_windows(self, spans: list[tuple[int, int]], total: int, shown: int) -> None:
        self.spans, self.total, self.shown = spans, max(1, total), shown
        tips = [f"window {k + 1}: tokens {a + 1}-{b}" for k, (a, b) in enumerate(spans)]
        self.setToolTip("Click a window to show it.\n" + "\n".join(tips[:40]))
        self.update()

    def bar_rect(self, k: int) -> QRectF:
        a, b = self.spans[k]
        width = max(1.0, self.width() - 2.0)
        x1, x2 = 1 + width * a / self.total, 1 + width * b / self.total
        return QRectF(x1, 2 + (k % 2) * (self.LANE + 2), max(2.0, x2 - x1), self.LANE)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing, False)
        base = self.palette().color(self.palette().ColorRole.Mid)
        accent = self.palette().color(self.palette().ColorRole.Highlight)
        for k in range(len(self.spans)):
            r = self.bar_rect(k)
            if k == self.shown:
                p.fillRect(r, accent)
                p.setPen(QPen(QColor(0, 0, 0), 1))
            else:
                p.fillRect(r, QColor(base.red(), base.green(), base.blue(), 110))
                p.setPen(QPen(base, 1))
            p.drawRect(r)
        p.end()

    def window_at(self, x: float, y: float) -> int:
        hits = [k for k in range(len(self.spans)) if self.bar_rect(k).adjusted(0, -1, 0, 1).contains(x, y)]
        if hits:
            return hits[0]
        fraction = min(max((x - 1) / max(1.0, self.width() - 2.0), 0.0), 1.0) * self.total
        inside = [k for k, (a, b) in enumerate(self.spans) if a <= fraction < b]
        return inside[0] if inside else -1

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            k = self.window_at(event.position().x(), event.position().y())
            if k >= 0:
                self.picked.emit(k)
        super().mouseReleaseEvent(event)


class WindowsStrip(QWidget):
    """'window 2 of 5, tokens 380-891 of 1500 · attention does not cross windows', the map, and
    previous/next. Hidden unless the analysis shown is windowed."""

    window_shown = Signal(int)

    def __init__(self, window) -> None:
        super().__init__()
        self.window = window
        self.pinned = False  # the user picked the window shown: clicks inside it keep it
        self.label = QLabel()
        self.label.setTextFormat(Qt.PlainText)
        self.map = WindowMap()
        self.prev = QToolButton()
        self.prev.setText("◀")
        self.prev.setToolTip("Show the previous window")
        self.next = QToolButton()
        self.next.setText("▶")
        self.next.setToolTip("Show the next window")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.prev)
        row.addWidget(self.map, 1)
        row.addWidget(self.next)
        self.hide()
        self.map.picked.connect(lambda k: self.show_window(k, pinned=True))
        self.prev.clicked.connect(lambda: self.step(-1))
        self.next.clicked.connect(lambda: self.step(1))
        from .workers import LatestOnly

        self.runner = LatestOnly("Window", self)
        self.runner.succeeded.connect(self._on_prepared)
        self.runner.failed.connect(lambda _g, m: window.messages.error(m))
        self._pending: tuple = (None, None, 0)
        self._seen: tuple = (None, 0)  # (analysis, focus) on screen, kept up to date
        self._before: tuple = (None, 0)  # what was on screen before the analysis now shown
        window.state.analysis_changed.connect(self.sync)
        window.state.changed.connect(lambda _f: self._remember())
        window.analysis_shown.connect(self._after_analysis)
        window.document.editor.viewport().installEventFilter(self)
        self._press = None

    # -- what is shown ----------------------------------------------------------------------
    def analysis(self):
        an = self.window.state.analysis
        return an if core_windows.is_windowed(an) else None

    def _remember(self) -> None:
        self._seen = (self.window.state.analysis, self.window.state.sel.focus)

    def _after_analysis(self, prepared) -> None:
        """After an edit, the new analysis shows the window where the old focus word now sits most
        centrally (the analysis itself starts at window 1)."""
        old, focus = self._before
        if prepared.source != "analysis" or self.analysis() is not prepared.analysis or old is None:
            return
        char = carried_char(old, focus, prepared.analysis)
        if char is not None:
            self.focus_position(char)

    def sync(self) -> None:
        self._before = self._seen
        an = self.analysis()
        if an is None:
            self.hide()
            return
        info = an.manifest["windows"]
        shown = core_windows.shown_window(an)
        self.map.set_windows([(e["token_start"], e["token_end"]) for e in info["windows"]],
                             int(info["document_tokens"]), shown)
        self.label.setText(f"{core_windows.place(an)} · attention does not cross windows")
        self.label.setToolTip(core_windows.summary(an, rule=False) + ". " + core_windows.RULE
                              + " Click a token in the text to show the window in which it sits most "
                              "centrally; click the map to pick another window.")
        self.prev.setEnabled(shown > 0)
        self.next.setEnabled(shown < core_windows.window_count(an) - 1)
        self.show()
        status = self.window.status_tokens
        if "window" not in status.text():
            status.setText(f"{status.text()} · {core_windows.place(an)} (attention does not cross windows)")

    def step(self, delta: int) -> None:
        an = self.analysis()
        if an is not None:
            k = core_windows.shown_window(an) + delta
            if 0 <= k < core_windows.window_count(an):
                self.show_window(k, pinned=True)

    def show_window(self, k: int, focus: int | None = None, pinned: bool = False) -> bool:
        """Show window k of the windowed analysis on screen; `focus` a token of that window (None:
        the focus word's own token there when it has one, else the window's default). The window's
        views are prepared in a worker (a few hundred milliseconds at 512 tokens)."""
        from .measures import prepare

        an = self.analysis()
        if an is None or self.window.is_stale() or not 0 <= k < core_windows.window_count(an):
            return False
        self.pinned = pinned
        if k == core_windows.shown_window(an):
            if focus is not None:
                self.window.state.update(focus=focus, picked=())
            return True
        if focus is None:
            focus = self._carried_focus(an, k)
        stack = an.arrays["window_attentions"]

        def work(progress, cancel):
            return prepare(core_windows.window_view(an, k), cancel)

        self._pending = (stack, focus, k)
        self.runner.request(work)
        return True

    def _on_prepared(self, _gen, prepared) -> None:
        stack, focus, k = self._pending
        an = self.analysis()
        if an is None or an.arrays["window_attentions"] is not stack or self.window.is_stale():
            return  # another document or analysis came meanwhile
        old = self.window.state.prepared
        prepared.source, prepared.seconds = old.source, old.seconds
        self.window.cache.clear()
        fields = {} if focus is None else {"focus": focus}
        self.window.propagation.restore_window(prepared.analysis)  # the rows already computed for window k
        self.window.state.set_prepared(prepared, **fields)
        if self.pinned:
            self._reveal(an.manifest["windows"]["windows"][k])
        self.window_shown.emit(k)

    def _reveal(self, entry: dict) -> None:
        """Scroll the editor to a window chosen with the arrows or the map when none of its text is
        on screen (its shading was out of sight); the caret and selection stay where they are."""
        editor = self.window.document.editor
        view = editor.viewport().rect()
        first = editor.cursorForPosition(view.topLeft()).position()
        last = editor.cursorForPosition(view.bottomRight()).position()
        lo, hi = entry["char_start"], entry["char_end"]
        if hi > first and lo < last:
            return
        block = editor.document().findBlock(lo)
        layout = block.layout()
        line = layout.lineForTextPosition(lo - block.position()).lineNumber() if layout is not None else 0
        editor.verticalScrollBar().setValue(block.firstLineNumber() + max(line, 0))

    def _carried_focus(self, an, k: int) -> int | None:
        sel = self.window.state.sel
        if not 0 <= sel.focus < len(an.tokens) or an.tokens[sel.focus].end <= an.tokens[sel.focus].start:
            return None
        start = an.tokens[sel.focus].start
        for window, j, _d in core_windows.windows_at(an, start):
            if window == k:
                return j
        return None

    # -- clicks in the text -----------------------------------------------------------------
    def eventFilter(self, obj: QObject, event) -> bool:
        kind = event.type()
        if kind == QEvent.MouseButtonPress and event.button() == Qt.LeftButton:
            self._press = event.position().toPoint()
        elif kind == QEvent.MouseButtonRelease and event.button() == Qt.LeftButton and self._press is not None:
            point = event.position().toPoint()
            still = (point - self._press).manhattanLength() < 4
            self._press = None
            if still and not event.modifiers() & Qt.ControlModifier and self.analysis() is not None:
                char = self.window.document.editor.char_at(point)
                if char >= 0:
                    QTimer.singleShot(0, lambda: self.focus_position(char))
        return False

    def focus_position(self, char: int) -> bool:
        """Focus the token at character `char`, in the window where it sits most centrally (or in
        the window the user picked, when it holds the token)."""
        an = self.analysis()
        if an is None or self.window.is_stale():
            return False
        hits = core_windows.windows_at(an, char)
        if not hits:
            return False
        shown = core_windows.shown_window(an)
        mine = [h for h in hits if h[0] == shown]
        k, j, _ = mine[0] if self.pinned and mine else hits[0]
        if k == shown and self.window.state.sel.focus == j:
            return True
        return self.show_window(k, focus=j, pinned=self.pinned and k == shown)


def carried_char(old, focus: int, new) -> int | None:
    """Where the focus token of `old` starts in the text of `new`, when the edit between them left
    it untouched (gui.keep_work.carried_focus's rule), else None."""
    from .document import input_text
    from .keep_work import common_ends

    if old is None or not 0 <= focus < len(old.tokens):
        return None
    t = old.tokens[focus]
    if t.end <= t.start:
        return None
    old_text, new_text = input_text(old), input_text(new)
    p, s = common_ends(old_text, new_text)
    if t.end <= p:
        return t.start
    if t.start >= len(old_text) - s:
        return t.start + len(new_text) - len(old_text)
    return None


def add_action(w, menu) -> None:
    """Analysis ▸ Analyse long texts in overlapping windows (on by default, remembered), and
    Window size and stride…"""
    from .menus import action

    w.act_windows = action(w, menu, ACTION_TEXT, None)
    w.act_windows.setCheckable(True)
    w.act_windows.setChecked(w.settings.value(SETTING, "true") in (True, "true"))
    w.act_windows.setToolTip("A text longer than the model accepts is analysed in overlapping windows of the "
                             "model's length, cut at sentence ends; attention does not cross windows.")

    def toggled(on: bool) -> None:
        w.settings.setValue(SETTING, on)
        w.schedule_analysis()

    w.act_windows.toggled.connect(toggled)
    w.act_window_settings = action(w, menu, "Window si&ze and stride…", lambda: WindowSettings(w).open())


def _setting(w, key: str) -> int:
    try:
        value = int(w.settings.value(f"{SETTING}/{key}", 0))
    except (TypeError, ValueError):
        return 0
    return max(0, value)


class WindowSettings(QDialog):
    """Window size and stride in tokens; 0 means the default (the model's maximum; half a window)."""

    def __init__(self, w) -> None:
        super().__init__(w)
        self.w = w
        self.setWindowTitle("Window size and stride")
        self.size_box = QSpinBox()
        self.size_box.setRange(0, 1_000_000)
        self.size_box.setSpecialValueText("the model's maximum")
        self.size_box.setSuffix(" tokens")
        self.size_box.setValue(_setting(w, "size"))
        self.stride_box = QSpinBox()
        self.stride_box.setRange(0, 1_000_000)
        self.stride_box.setSpecialValueText("half a window")
        self.stride_box.setSuffix(" tokens")
        self.stride_box.setValue(_setting(w, "stride"))
        note = QLabel("Windows start about one stride apart and are cut at sentence or clause ends where "
                      "possible. Attention does not cross windows.")
        note.setWordWrap(True)
        self.problem = QLabel()
        self.problem.setTextFormat(Qt.PlainText)
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b00020")
        self.problem.hide()
        form = QFormLayout(self)
        form.addRow("Size", self.size_box)
        form.addRow("Stride", self.stride_box)
        form.addRow(note)
        form.addRow(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        loaded = getattr(self.w, "loaded", None)
        size = self.size_box.value() or getattr(loaded, "max_positions", None) or 0
        if loaded is not None and loaded.max_positions:
            size = min(size, loaded.max_positions)  # as analysis_options uses it
        stride = self.stride_box.value()
        if size and stride >= size:  # windows would leave tokens out
            self.problem.setText(f"The stride must be smaller than the window ({size} tokens): windows start "
                                 "one stride apart, so a longer stride would skip text.")
            self.problem.show()
            return
        self.w.settings.setValue(f"{SETTING}/size", self.size_box.value())
        self.w.settings.setValue(f"{SETTING}/stride", self.stride_box.value())
        super().accept()
        self.w.schedule_analysis()


def analysis_options(w, opts: dict) -> dict:
    """What the window adds to the options `opts` of an analysis: windows when the text is too long,
    the setting is on and nothing else asks otherwise (truncation, generation, a decoder text)."""
    act = getattr(w, "act_windows", None)
    hint = {"windows_hint": WINDOWS_SETTING}
    loaded = w.loaded
    if (act is None or not act.isChecked() or loaded is None or loaded.kind not in core_windows.WINDOW_KINDS
            or opts.get("truncate") or opts.get("generate") or opts.get("target_text") is not None):
        return hint
    windows = {"only_if_long": True}
    size, stride = _setting(w, "size"), _setting(w, "stride")
    if size:
        windows["size"] = min(size, loaded.max_positions or size)  # never longer than the model takes
    if stride:
        windows["stride"] = stride
    return {"windows": windows, **hint}
