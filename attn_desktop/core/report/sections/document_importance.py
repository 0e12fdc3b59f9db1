"""Document-level importance of a text read in windows (core.explain.document): the rule, the
Integrated Gradients completeness for the document, and the document's tokens ranked by the vectors."""

from __future__ import annotations

import numpy as np

from ..context import VECTOR_NAMES
from ..markup import esc, how_to_read, note, number, table
from . import Section
from .text import NEG, POS, shade

HOWTO = ("The document was read in overlapping windows, and these values are for ONE target computed from "
         "all of them (named below), not for one window. A token that sits in two windows gets the sum of "
         "its values in both, because the target depends on both; leave-one-out replaced it in every window "
         "that holds it. The attention columns are each window's attention averaged over the windows that "
         "hold the token: attention does not cross windows, so they say nothing about how the model weighs "
         "text in two different windows. The table lists the words (or tokens) with the largest absolute value of the "
         "first method; shading is per column, blue for negative values.")
TOP = 25
ORDER = ("integrated_gradients", "loo", "grad_input", "saliency", "attention_importance", "rollout_importance")


def target_phrase(target: dict) -> str:
    """"P(label 'x') = 0.52", "P(class 'y') = 0.7" or "cosine similarity to the reference = 0.4"."""
    value = target.get("value")
    shown = f"{value:.3f}" if isinstance(value, (int, float)) else "?"
    kind = target.get("kind")
    if kind == "zero-shot":
        return f"P(label {target.get('label')!r}) = {shown}, the mean of the windows' pooled embeddings read"
    if kind == "reference":
        return f"cosine similarity of the mean of the windows' pooled embeddings to the reference = {shown}"
    name = target.get("class_label", target.get("class"))
    return f"P(class {name!r}) averaged over the windows = {shown}"


def render(ctx):
    from attn_desktop.core.explain.document import (
        ARRAY_PREFIX,
        INDEX_ARRAY,
        by_words,
        document_token_list,
        is_document,
    )

    explain = ctx.explain()
    an = ctx.analysis
    if not is_document(explain) or INDEX_ARRAY not in an.arrays:
        return None
    doc = explain["document"]
    vectors = {name: np.asarray(an.arrays[ARRAY_PREFIX + name], np.float64) for name in ORDER
               if ARRAY_PREFIX + name in an.arrays}
    if not vectors:
        return None
    count = len(next(iter(vectors.values())))
    parts = [how_to_read(HOWTO), note("Attention does not cross windows: each window was analysed on its own.", "warn"),
             f"<p>Target for the whole document ({doc.get('windows')} windows, {count} document tokens): "
             f"{esc(target_phrase(explain.get('target') or {}))}.</p>",
             f"<p class='note'>Target: {esc(doc.get('target_rule'))}. Tokens: {esc(doc.get('token_rule'))}. "
             f"Attention: {esc(doc.get('attention_rule'))}</p>"]
    ig = (explain.get("methods") or {}).get("integrated_gradients")
    if isinstance(ig, dict) and "integrated_gradients" in vectors:
        parts.append(f"<p class='note'>Integrated Gradients over the document: sum of attributions "
                     f"{number(vectors['integrated_gradients'].sum(), 4)}, f(document) − f(baseline) = "
                     f"{number((ig.get('f_input') or 0) - (ig.get('f_baseline') or 0), 4)} "
                     f"({esc(ig.get('steps'))} steps, baseline {esc(ig.get('baseline'))}: "
                     f"{esc(ig.get('baseline_rule'))}).</p>")
    if ctx.options.words and not ctx.view.redacted:
        texts, vectors = by_words(an, vectors)
        unit = "word"
    else:
        texts = ([t.text for t in document_token_list(an)] if not ctx.view.redacted
                 else [f"#{i + 1}" for i in range(count)])  # redacted: token numbers only
        unit = "token"
    first = next(iter(vectors))
    order = np.argsort(-np.abs(vectors[first]), kind="stable")[:TOP]
    peaks = {k: float(np.abs(v).max()) or 1.0 for k, v in vectors.items()}
    rows = []
    for i in order:
        cells = [str(int(i) + 1), esc(texts[i])]
        for k, v in vectors.items():
            x = float(v[i])
            cells.append(f"<span style='background:{shade(abs(x) / peaks[k], NEG if x < 0 else POS)}'>"
                         f"{number(x, 4)}</span>")
        rows.append(cells)
    header = [f"Document {unit}", "Text"] + [esc(VECTOR_NAMES.get(k, k)) for k in vectors]
    shown = min(TOP, len(texts))
    parts.append(table(header, rows, cls="attr",
                       caption=esc(f"The {shown} document {unit}s with the largest |{VECTOR_NAMES[first]}| "
                                   f"({unit}s counted from 1" + (", a word's value the sum of its pieces'"
                                                                  if unit == "word" else "") + ")")))
    return Section("document-importance", "Document-level importance", "".join(parts))
