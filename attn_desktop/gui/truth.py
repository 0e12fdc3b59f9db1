"""What the window says must be true for the moment: views of an analysis that no longer matches
the text are cleared at once, the status says how many tokens the model did not know and where
the text was cut, messages fit what is happening, and an error banner goes once things work
again. Mixed into MainWindow."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel

from ..core.tokens import count_unknown, model_pieces
from .document import analysed_chars
from .state import default_focus, focus_rule
from .units import axis_units, group_label, query_group
from .window_numbers import document_place

TRUNCATE_SETTING = "Analysis ▸ Truncate texts longer than the model accepts"


def with_pieces(labels, units, tokens) -> list[str]:
    """Each unit's label, followed by the model's pieces where they read otherwise than the text
    ("réévaluer ‹re ##eva ##lu ##er›", "😷 ‹[UNK]›"); differences of case alone are left to the
    tooltips, or an uncased model would double every capitalised label."""
    out = []
    for u, label in enumerate(labels):
        seen = model_pieces([tokens[k] for k in units.tokens(u)], ignore_case=True) if u < len(units) else None
        out.append(f"{label} ‹{seen}›" if seen else label)
    return out


def unit_labels(an, units, tokens) -> list[str]:
    """with_pieces of the units' own labels, cached on the analysis (layer and head switches redraw
    the heatmap with the same labels)."""
    cache = an.extras.setdefault("piece_labels", {})
    hit = cache.get(id(units))
    if hit is not None and hit[0] is units and hit[1] is tokens:
        return hit[2]
    labels = with_pieces(units.labels, units, tokens)
    cache[id(units)] = (units, tokens, labels)
    return labels


def heatmap_labels(an, sel, view, measure) -> tuple[list[str], list[str]]:
    """(row labels, column labels) of a unit matrix, with the model's pieces where they differ."""
    queries, keys = an.axis_tokens(sel.set_name)
    same = len(view.col_labels) == len(view.col_units.labels) and list(view.col_labels) == list(view.col_units.labels)
    cols = unit_labels(an, view.col_units, keys) if same else with_pieces(view.col_labels, view.col_units, keys)
    rows = list(view.row_labels)
    if getattr(measure, "rows_by_query", True):
        qu = axis_units(an, sel)[0]
        decorated = unit_labels(an, qu, queries)
        rows = [decorated[int(u)] if qu.labels[int(u)] == label else label
                for u, label in zip(view.row_units, view.row_labels, strict=True)]
    return rows, cols


def analysis_summary(an) -> tuple[str, str]:
    """(status text, tooltip): tokens, unknown tokens, truncation."""
    text = f"{len(an.tokens)} tokens"
    tips = []
    if an.decoder_tokens is not None:
        text += f" + {len(an.decoder_tokens)} decoder"
    unknown = count_unknown(an.tokens) + count_unknown(an.decoder_tokens)
    if unknown:
        text += f" · {unknown} unknown"
        tips.append(f"{unknown} token(s) reached the model as its unknown token ([UNK]): that text never "
                    "reached the model; they are underlined in red dots in the text.")
    info = an.manifest.get("truncation") or {}
    if info.get("truncated"):
        before = info.get("tokens_before_truncation")
        text += f" · truncated ({before} before)" if before else " · truncated"
        cut = analysed_chars(an)
        tips.append(f"The text was cut to fit the model: characters {cut} onwards were not analysed "
                    "(greyed in the text).")
    return text, "\n".join(tips)


class ShowsTruth:
    """Uses the window's state, document, heatmap, model view, status labels and runners."""

    status_focus: QLabel

    def is_stale(self) -> bool:
        """An analysis is on screen but the text is no longer the one it analysed."""
        an = self.state.analysis
        return an is not None and self.document.synced is not an

    def show_stale(self) -> None:
        """Clear every view that shows the analysis of an older text."""
        note = self.stale_note()
        self.heatmap.clear(note)
        if self.state.analysis is not None and self.document.text():
            self.document.note.setText(note)
            self.document.note.show()
        self.model_view.grid.set_data(None, None, [])
        self._model_view_key = None
        self.status_tokens.setText("")  # the old count is not this text's ("text changed" is beside it)
        self.status_tokens.setToolTip("")
        self.status_focus.setText("")

    def stale_note(self) -> str:
        lead = "The text has changed since the analysis"
        if self.loaded is None:
            if self.loader.busy:
                return f"{lead}; it is analysed when the model has loaded."
            return f"{lead}; load a model to analyse it."
        if self.analyzer.busy or self.debounce.isActive():
            return f"{lead}; the views return when the new analysis is ready."
        return f"{lead}; analyse it again (Ctrl+Return) to see the views."

    def no_model_message(self) -> str:
        if self.loader.busy:
            return "The model is loading; the text is analysed as soon as it is ready."
        return "Load a model to analyse the text."

    def show_summary(self) -> None:
        an = self.state.analysis
        if an is None:
            return
        text, tip = analysis_summary(an)
        self.status_tokens.setText(text)
        self.status_tokens.setToolTip(tip)

    def show_focus_status(self) -> None:
        an, sel = self.state.analysis, self.state.sel
        if an is None or self.is_stale():
            self.status_focus.setText("")
            return
        queries = an.axis_tokens(sel.set_name)[0]
        if not 0 <= sel.focus < len(queries):
            self.status_focus.setText("")
            return
        group = query_group(an, sel)
        who = f"focus {group_label(an, sel, group)}"  # the word and its token numbers, as the highlight
        where = document_place(an, group)  # a window of a document: its number there, as the strip counts
        if where:
            who = f"{who} {where}"
        rule = focus_rule(an, sel.set_name)
        default = sel.focus == default_focus(an, sel.set_name)
        self.status_focus.setText(f"{who}, the default" if default else who)
        self.status_focus.setToolTip(f"The default focus is {rule}; the command line's flow focus "
                                     "follows the same rule. Click a token to focus another.")

    def truncate_hint(self) -> str:
        return TRUNCATE_SETTING

    def clear_error_after_success(self) -> None:
        if self.messages.level == "error" and self.messages.isVisible():
            self.messages.hide()
