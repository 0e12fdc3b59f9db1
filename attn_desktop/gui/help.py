"""Help ▸ Reading the views: a short guide, shown as escaped text in a dialog."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

GUIDE: list[tuple[str, list[str]]] = [
    ("The text and its tokens", [
        "The model reads tokens, not words: a word can be several pieces (réévaluer = re ##eva ##lu ##er "
        "for an uncased BERT, which also drops accents and capitals). Hover a token to see the piece the "
        "model received where it differs from the text.",
        "A dotted red underline marks text the model received as its unknown token ([UNK]): that part of "
        "the text never reached the model. The status bar counts them.",
        "Text after a truncation cut is greyed: the model never saw it (Analysis ▸ Truncate texts longer "
        "than the model accepts).",
        "The focus token is framed. By default it is the token that summarises the input: the first one "
        "([CLS]) for encoders, the last one for causal language models (the only one that sees the whole "
        "text), the last output token on the decoder side. The command line's flow focus follows the "
        "same rule. Click any token to focus it.",
    ]),
    ("Heatmap", [
        "Row i is token i looking at the text: how its attention (in the layer and head chosen) is "
        "spread over every token, the columns. Each row sums to 1. The framed row is the focus token; "
        "its row is what the editor colours. With Words on, a word's row is the mean of its pieces' "
        "rows and a word's column the sum of its pieces' columns; Pieces shows the model's tokens.",
        "Heads: each small map is one head of one layer. Click one to show it. Mean, max and min "
        "combine the heads of a layer.",
        "Zoom with the wheel or + and −, pan by dragging or with the arrow keys; 0 or Fit shows the "
        "whole matrix, F or Zoom to focus the focus row with every label readable. When the matrix has "
        "more rows or columns than the view has pixels, each pixel shows the largest value of a block "
        "of cells (the line above the heatmap says how many), so a single strong cell is never lost; "
        "hover it to see the block and the cell that gives it its colour, click to focus that cell's "
        "token. Zoom in to see every cell.",
    ]),
    ("Rollout and flow", [
        "Attention in one layer mixes information that earlier layers already mixed. Rollout multiplies "
        "the layers' attention (with the residual connection) to estimate how much each input token "
        "reaches a token after a given layer (Abnar & Zuidema 2020).",
        "Attention flow treats the layers as a network of pipes and asks how much can flow from an "
        "output token back to each input token. It is slower, so it is computed per token on request; "
        "the title says whether the values are exact or approximate, and within what bound.",
    ]),
    ("Long documents", [
        "A text longer than the model accepts is read in overlapping windows cut at sentence ends. The "
        "strip above the text says which window the views show. Attention, rollout and flow never cross "
        "windows: a word is only compared with the words of its own window, and text outside the window "
        "shown is not shaded. Clicking a word shows the window where it sits most centrally.",
        "Validate on a long document scores the words for one target of the whole document (the mean of the "
        "windows' embeddings or class probabilities); a word in two windows gets the sum of its values in "
        "both, and the whole text is shaded on one scale. Heads need a text that fits the model in one "
        "piece.",
    ]),
    ("Validate and Heads", [
        "Analysis ▸ Validate compares, for one output you choose (for the demo model, a label of a label "
        "set: choose one that fits your text), the attention of the row that output reads with gradients "
        "and with removing tokens, and tests what changing the attention does to the output. Its verdict "
        "says whether they agree or diverge on this text only; two methods agreeing does not show that "
        "either reflects what the model computes.",
        "The Heads panel measures what removing each head does to that same output.",
    ]),
    ("Attention is a clue, not proof", [
        "High attention means a token was looked at, not that it caused the output. Other weights, the "
        "values and the feed-forward layers also shape the result, and different attention can give the "
        "same output (Jain & Wallace 2019; Wiegreffe & Pinter 2019). Read the views as where to look, "
        "and check what matters with tests that change the input.",
    ]),
]


def guide_html() -> str:
    parts = []
    for title, paragraphs in GUIDE:
        parts.append(f"<h3>{html.escape(title)}</h3>")
        parts.extend(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return "\n".join(parts)


def show_guide(parent: QWidget) -> QDialog:
    dialog = QDialog(parent)
    dialog.setWindowTitle("Reading the views — attn-desktop")
    browser = QTextBrowser()
    browser.setOpenLinks(False)
    browser.setHtml(guide_html())
    buttons = QDialogButtonBox(QDialogButtonBox.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(browser)
    layout.addWidget(buttons)
    dialog.resize(620, 560)
    dialog.show()
    return dialog
