"""Importance vectors as measures: one value per input token, for the whole text (not per focus
token), made by the Validate run (core.explain) and kept in the analysis' arrays.

Qt-free, like measures.py. Signed vectors (gradient x input, Integrated Gradients, leave-one-out)
are drawn on a diverging colour map centred at zero; the others on the user's map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import colormaps
from .measures import Measure, register

if TYPE_CHECKING:
    from ..core.analysis import Analysis


class ImportanceMeasure(Measure):
    uses_heads = False
    uses_layers = False
    rows_by_query = False  # one row for the whole text: words mode sums its columns only

    def __init__(self, key: str, label: str, short: str, signed: bool, what: str) -> None:
        self.key = key  # the array's name in the analysis
        self.label = label
        self.short = short  # for plot axes and legends
        self.signed = signed
        self.value_name = key.replace("_", " ")
        self.what = what  # one line: how the vector is made

    def vector(self, analysis: Analysis | None) -> np.ndarray | None:
        if analysis is None:
            return None
        v = analysis.arrays.get(self.key)
        if v is None or v.ndim != 1 or len(v) != len(analysis.tokens):
            return None
        return np.asarray(v, np.float32)

    def unavailable(self, analysis, set_name):
        if analysis is None:
            return "no analysis"
        if set_name not in ("self", "encoder"):
            return f"{self.label} is one value per input token: shown with the input's self-attention"
        if self.vector(analysis) is None:
            return f"{self.label}: not computed for this text yet (Analysis ▸ Validate, Run)"
        return None

    def layer_range(self, analysis, sel):
        return 0, 1

    def ready(self, analysis, sel):
        return self.vector(analysis) is not None

    def view_key(self, sel):
        return (sel.set_name,)

    def row_queries(self, analysis, sel):
        # One row that stands for the whole text: it follows the focus token so that the
        # focus frame and clicks behave as in the other views.
        return np.array([sel.focus], np.int64)

    def row_labels(self, analysis, sel, rows):
        return [self.label]

    def matrix(self, analysis, sel):
        return self.vector(analysis)[None, :]

    def row(self, analysis, sel, query):
        return self.vector(analysis)

    def style(self, sel):
        if self.signed:
            return colormaps.diverging(sel.colormap), colormaps.SIGNED
        return sel.colormap, sel.scale

    def title(self, analysis, sel):
        target = target_phrase(explain_section(analysis))
        return f"{self.label}" + (f" · for {target}" if target else "")

    def legend(self, analysis, sel, who):
        target = target_phrase(explain_section(analysis)) or "the target"
        text = f"{self.label.lower()} for {target}"
        if self.signed:
            low, high = sign_colours(sel.colormap)
            text += f" · {high} raises the target, {low} lowers it"
        return text


IMPORTANCE_MEASURES = [
    ImportanceMeasure("attention_importance", "Attention (output row)", "attention", False,
                      "the attention of the row the model's output reads"),
    ImportanceMeasure("rollout_importance", "Rollout (output row)", "rollout", False,
                      "the attention rollout of the row the model's output reads"),
    ImportanceMeasure("flow_importance", "Flow (output row)", "flow", False,
                      "the attention flow of the row the model's output reads"),
    ImportanceMeasure("saliency", "Saliency", "saliency", False,
                      "L2 norm of the gradient of the target with respect to the token's embedding"),
    ImportanceMeasure("grad_input", "Gradient × input", "grad×input", True,
                      "gradient times input embedding, summed over the embedding (signed)"),
    ImportanceMeasure("integrated_gradients", "Integrated gradients", "IG", True,
                      "Integrated Gradients on the input embeddings (signed)"),
    ImportanceMeasure("grad_rollout", "Gradient-weighted rollout", "grad rollout", False,
                      "rollout of gradient-weighted attention (Chefer et al. 2021)"),
    ImportanceMeasure("loo", "Leave-one-out", "LOO", True,
                      "change of the target when the token is replaced (signed)"),
]
IMPORTANCE_KEYS = tuple(m.key for m in IMPORTANCE_MEASURES)
for _m in IMPORTANCE_MEASURES:
    register(_m)


def importance_measure(key: str) -> ImportanceMeasure | None:
    for m in IMPORTANCE_MEASURES:
        if m.key == key:
            return m
    return None


def method_measure(name: str) -> ImportanceMeasure | None:
    """The measure of a method as core.explain names it in its tables ("ig", "attention", ...)."""
    name = METHOD_ALIASES.get(name, name)
    return importance_measure(name) or importance_measure(f"{name}_importance")


def method_label(name: str, short: bool = True) -> str:
    m = method_measure(name)
    if m is None:
        return name
    return m.short if short else m.label


METHOD_ALIASES = {"ig": "integrated_gradients", "gradient_x_input": "grad_input"}


def sign_colours(colormap: str) -> tuple[str, str]:
    """Names of the negative and positive ends of the diverging map drawn for `colormap`."""
    return ("blue", "yellow") if colormaps.diverging(colormap) == "CET-CBD1" else ("blue", "red")


def explain_section(analysis: Analysis | None) -> dict:
    if analysis is None:
        return {}
    section = analysis.manifest.get("explain")
    return section if isinstance(section, dict) else {}


def target_phrase(explain: dict) -> str:
    """A short name of what the vectors were computed for, from manifest["explain"]["target"]."""
    target = explain.get("target")
    if not isinstance(target, dict):
        return ""
    kind = target.get("kind")
    if kind == "zero-shot":
        label = target.get("label")
        return f"P(label “{label}”)" if label is not None else "the zero-shot label"
    if kind == "reference":
        return "the similarity to the reference text"
    if kind == "class":
        name = target.get("class_label", target.get("class"))
        return f"P(class “{name}”)" if name is not None else "the class probability"
    if kind in ("next-token", "masked-token", "seq2seq-token"):
        token = target.get("token")
        where = {"next-token": "next token", "masked-token": "masked token",
                 "seq2seq-token": "output token"}[kind]
        return f"log P({where} “{token}”)" if token is not None else f"the {where}"
    return str(kind or "")
