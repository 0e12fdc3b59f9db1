"""What a session may hold, checked before it is shown: the manifest's types and ranges, and for
every array its name, dtype, shape and values.

ARRAY_RULES is the table to extend when a stage adds an array: name -> ArrayRule(shape, values).
A shape is a tuple of dimension terms over the session's own sizes:
  n  tokens            m   decoder tokens          H  heads
  L  (encoder) layers  Ld  decoder layers          *  any size (bounded)
  a term plus a number ("L+1"), or a range "1..L".
values: "probability" (float, finite, in [0, 1], fp16 rounding allowed), "float" (float, finite),
"index_n" (integers in [0, n)). Arrays not in the table are kept when their name is plain, their
dtype numeric, their values finite and their size bounded, so that later additions keep loading.
Manifest sections other stages add can be checked by adding a function to SECTION_CHECKS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from attn_desktop.core.errors import UserError
from attn_desktop.core.quoting import quote

PROBABILITY_SLACK = 1e-3  # float16 rounds 1 up to 1.00098
MAX_TOKENS = 1_000_000
MAX_TEXT = 50_000_000
MAX_TOKEN_TEXT = 1000
MAX_LAYERS = 4096
MAX_HEADS = 4096
UNKNOWN_ARRAY_MIN_ELEMENTS = 1 << 22
FUSIONS = ("mean", "max", "min")


@dataclass(frozen=True)
class ArrayRule:
    shape: tuple[str, ...]
    values: str = "float"  # probability | float | index_n


def _per_token(*names: str) -> dict[str, ArrayRule]:
    return {name: ArrayRule(("n",)) for name in names}


def _per_head(prefix: str, layers: str) -> dict[str, ArrayRule]:
    """The heads stage's grids of one attention set of an encoder-decoder (docs/heads.md)."""
    grids = {name: ArrayRule((layers, "H")) for name in ("head_importance", "head_importance_grad", "head_entropy")}
    return {prefix + name: rule for name, rule in {**grids, "layer_importance": ArrayRule((layers,))}.items()}


ARRAY_RULES: dict[str, ArrayRule] = {
    "attentions": ArrayRule(("L", "H", "n", "n"), "probability"),
    "encoder_attentions": ArrayRule(("L", "H", "n", "n"), "probability"),
    "decoder_attentions": ArrayRule(("Ld", "H", "m", "m"), "probability"),
    "cross_attentions": ArrayRule(("Ld", "H", "m", "n"), "probability"),
    "rollout": ArrayRule(("1..L", "n", "n"), "probability"),
    "decoder_rollout": ArrayRule(("Ld", "m", "m"), "probability"),
    "decoder_source_rollout": ArrayRule(("Ld", "m", "n"), "probability"),
    "flow": ArrayRule(("*", "n"), "probability"),
    "flow_rows": ArrayRule(("*",), "index_n"),
    **_per_token("saliency", "grad_input", "integrated_gradients", "grad_rollout", "loo",
                 "attention_importance", "rollout_importance", "flow_importance"),
    "head_importance": ArrayRule(("L", "H")),
    "head_importance_grad": ArrayRule(("L", "H")),
    "head_entropy": ArrayRule(("L", "H")),
    "layer_importance": ArrayRule(("L",)),
    "layer_smoothing": ArrayRule(("L+1",)),
    **_per_head("encoder_", "L"), **_per_head("decoder_", "Ld"), **_per_head("cross_", "Ld"),
    "encoder_layer_smoothing": ArrayRule(("L+1",)),
    "decoder_layer_smoothing": ArrayRule(("Ld+1",)),
    # what views need from a long analysis, made during the on-disk capture (core.model.mapped.HeadViews);
    # head_thumbnails [L, H, t, t] uint8 is kept as an array outside this table
    "head_mean": ArrayRule(("L", "n", "n"), "probability"),
    "head_row_entropy": ArrayRule(("L", "H")),
    "head_top_position": ArrayRule(("L", "H"), "index_n"),
    "head_top_share": ArrayRule(("L", "H"), "probability"),
    # windowed analysis (core.windows): W windows, S tokens in the largest
    "window_attentions": ArrayRule(("W", "L", "H", "S", "S"), "probability"),
    # document-level explanations of a windowed analysis (core.explain.document): N document tokens
    **{"document_" + name: ArrayRule(("N",)) for name in (
        "saliency", "grad_input", "integrated_gradients", "loo", "attention_importance", "rollout_importance")},
    "window_document_index": ArrayRule(("W", "S"), "index_N"),
}
REQUIRED = {False: ("attentions",), True: ("encoder_attentions", "decoder_attentions", "cross_attentions")}


@dataclass(frozen=True)
class Dims:
    n: int
    m: int | None
    L: int
    Ld: int | None
    H: int
    W: int | None = None  # windows of a windowed analysis (core.windows)
    S: int | None = None  # tokens of its largest window
    N: int | None = None  # its document tokens

    def value(self, term: str) -> int | None:
        term = term.strip()
        base, _, plus = term.partition("+")
        base = base.strip()
        number = int(base) if base.isdigit() else getattr(self, base)
        if number is None:
            return None
        return number + (int(plus) if plus else 0)


def dimension_fits(term: str, size: int, dims: Dims, bound: int) -> bool | None:
    """Whether `size` satisfies one shape term; None when the term needs a size this session lacks."""
    if term == "*":
        return 0 < size <= bound
    if ".." in term:
        lo, hi = (dims.value(t) for t in term.split(".."))
        return None if lo is None or hi is None else lo <= size <= hi
    want = dims.value(term)
    return None if want is None else size == want


class Refusal(UserError):
    """A session whose content breaks a rule of the schema (one line, as every UserError)."""


def fail(label: str, why: str) -> Refusal:
    return Refusal(f"{label}: {why}")


# -- manifest -------------------------------------------------------------------------------------
def is_int(value) -> bool:
    return type(value) is int


def is_number(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def check_tokens(label: str, raw, text: str, what: str) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise fail(label, f"the manifest's {what} are missing or empty")
    if len(raw) > MAX_TOKENS:
        raise fail(label, f"the manifest lists {len(raw)} {what} (at most {MAX_TOKENS})")
    item = what[:-1]  # "token", "decoder token"
    for i, tok in enumerate(raw):
        if not isinstance(tok, dict) or not isinstance(tok.get("text"), str):
            raise fail(label, f"{item} {i} in the manifest is damaged")
        if len(tok["text"]) > MAX_TOKEN_TEXT or len(str(tok.get("piece") or "")) > MAX_TOKEN_TEXT:
            raise fail(label, f"{item} {i} is longer than {MAX_TOKEN_TEXT} characters")
        start, end = tok.get("start"), tok.get("end")
        if not (is_int(start) and is_int(end)) or not 0 <= start <= end <= len(text):
            raise fail(label, f"{item} {i} has a span outside the text")
        for flag in ("special", "generated", "unknown"):
            if flag in tok and type(tok[flag]) is not bool:
                raise fail(label, f"{item} {i}: '{flag}' is not true or false")
        if tok.get("piece") is not None and not isinstance(tok["piece"], str):
            raise fail(label, f"{item} {i}: 'piece' is not text")
    return raw


def check_model(label: str, model) -> tuple[int, int | None, int]:
    if not isinstance(model, dict):
        raise fail(label, "the manifest's 'model' is not an object")
    layers, dec, heads = model.get("layers"), model.get("decoder_layers"), model.get("heads")
    if not is_int(layers) or not 1 <= layers <= MAX_LAYERS:
        raise fail(label, f"the model's layer count {layers!r} is not a positive whole number")
    if not is_int(heads) or not 1 <= heads <= MAX_HEADS:
        raise fail(label, f"the model's head count {heads!r} is not a positive whole number")
    if dec is not None and (not is_int(dec) or not 1 <= dec <= MAX_LAYERS):
        raise fail(label, f"the model's decoder layer count {dec!r} is not a positive whole number")
    for key in ("folder", "name", "kind", "model_type", "architecture"):
        if model.get(key) is not None and not isinstance(model[key], str):
            raise fail(label, f"the model's '{key}' is not text")
    sha = model.get("weights_sha256")
    if sha is not None and not (isinstance(sha, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in sha.items())):
        raise fail(label, "the model's weight hashes are damaged")
    return layers, dec, heads


def check_fusion(label: str, where: str, fusion, heads: int) -> None:
    if fusion in FUSIONS:
        return
    if not is_int(fusion) or not 0 <= fusion < heads:
        raise fail(label, f"{where}: head fusion {fusion!r} is not mean, max, min or a head of 0 to {heads - 1}")


def check_alpha(label: str, where: str, alpha) -> None:
    if not is_number(alpha) or not 0.0 < alpha <= 1.0:
        raise fail(label, f"{where}: alpha {alpha!r} is not a number in (0, 1]")


def check_methods(label: str, methods, dims: Dims) -> None:
    if methods is None:
        return
    if not isinstance(methods, dict) or not all(isinstance(v, dict) for v in methods.values()):
        raise fail(label, "the manifest's 'methods' is not an object of objects")
    rollout = methods.get("rollout")
    if rollout is not None:
        check_alpha(label, "rollout", rollout.get("alpha"))
        check_fusion(label, "rollout", rollout.get("head_fusion"), dims.H)
        start = rollout.get("start_layer", 0)
        if not is_int(start) or not 0 <= start < dims.L:
            raise fail(label, f"rollout: start layer {start!r} is not a layer of 0 to {dims.L - 1}")
    flow = methods.get("flow")
    if flow is not None:
        check_alpha(label, "flow", flow.get("alpha"))
        check_fusion(label, "flow", flow.get("head_fusion"), dims.H)
        rows = flow.get("rows", [])
        if not isinstance(rows, list) or not all(is_int(r) and 0 <= r < dims.n for r in rows):
            raise fail(label, f"flow: rows are not token indices of 0 to {dims.n - 1}")
        if "exact" in flow and type(flow["exact"]) is not bool:
            raise fail(label, "flow: 'exact' is not true or false")
        for key in ("max_abs_error_bound", "max_abs_error_bound_normalised", "seconds"):
            if flow.get(key) is not None and (not is_number(flow[key]) or flow[key] < 0):
                raise fail(label, f"flow: {key} {flow[key]!r} is not a non-negative number")


def check_sections(label: str, manifest: dict) -> None:
    for key in ("capture", "truncation", "generation", "timings", "versions", "explain", "heads"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise fail(label, f"the manifest's {key!r} is not an object")
    for key in ("input_ids", "decoder_input_ids"):
        ids = manifest.get(key)
        if ids is not None and not (isinstance(ids, list) and all(is_int(i) for i in ids)):
            raise fail(label, f"the manifest's {key!r} is not a list of whole numbers")


SECTION_CHECKS: dict[str, Callable[[str, object, Dims], None]] = {}


def _check_heads(label: str, section, dims: Dims) -> None:
    from attn_desktop.core.explain.heads_stage import check_section

    check_section(label, section, dims)


SECTION_CHECKS["heads"] = _check_heads


def _check_source_name(label: str, value, dims: Dims) -> None:
    from attn_desktop.core.store.source_name import check

    check(label, value, dims)


SECTION_CHECKS["source_name"] = _check_source_name  # the text file's name (optional)


# -- the view the window showed (schema 2) --------------------------------------------------------
VIEW_MAX_KEYS = 64
VIEW_MAX_LIST = 100_000
VIEW_MAX_TEXT = 1000
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _simple(value) -> bool:
    if value is None or type(value) in (bool, int):
        return True
    if type(value) is float:
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= VIEW_MAX_TEXT


def _view_value(value, nested: bool) -> bool:
    if _simple(value):
        return True
    if isinstance(value, list):
        return len(value) <= VIEW_MAX_LIST and all(
            _simple(v) or (isinstance(v, list) and len(v) <= VIEW_MAX_LIST and all(map(_simple, v)))
            for v in value)
    if isinstance(value, dict) and not nested:
        return _view_object(value, nested=True)
    return False


def _view_object(view: dict, nested: bool = False) -> bool:
    return (len(view) <= VIEW_MAX_KEYS
            and all(isinstance(k, str) and _KEY.fullmatch(k) for k in view)
            and all(_view_value(v, nested) for v in view.values()))


def check_view(label: str, view) -> None:
    """The view: an object of simple values (null, true/false, numbers, short texts), lists of
    them (or of such lists, for spans) and objects of them one level deep."""
    if view is None:
        return
    if not isinstance(view, dict) or not _view_object(view):
        raise fail(label, "the manifest's 'view' is not an object of simple values (names of letters, "
                          f"digits, _ . -; at most {VIEW_MAX_KEYS} keys, texts of {VIEW_MAX_TEXT} characters)")


# -- arrays ---------------------------------------------------------------------------------------
def check_array_shape(label: str, name: str, shape: tuple[int, ...], dtype: np.dtype, dims: Dims,
                      unknown_bound: int) -> None:
    """Refuse before reading: the dtype kind and the shape against the table and the session."""
    rule = ARRAY_RULES.get(name)
    shown = quote(name)
    if rule is None:
        if dtype.kind not in "iuf":
            raise fail(label, f"array {shown} has dtype {dtype}, not a number type")
        if math.prod(shape) > unknown_bound:
            raise fail(label, f"array {shown} holds {math.prod(shape)} values (at most {unknown_bound})")
        return
    if rule.values in ("index_n", "index_N"):
        if dtype.kind not in "iu":
            raise fail(label, f"array {shown} has dtype {dtype}; it holds token indices")
    elif dtype.kind != "f":
        raise fail(label, f"array {shown} has dtype {dtype}; it must be a float type")
    expected = " x ".join(rule.shape)
    if len(shape) != len(rule.shape):
        raise fail(label, f"array {shown} has shape {list(shape)}, expected [{expected}]")
    bound = max(dims.n, dims.m or 0, dims.L, dims.Ld or 0, dims.H) * 4 + 16
    for term, size in zip(rule.shape, shape, strict=True):
        fits = dimension_fits(term, size, dims, bound)
        if fits is None:
            kind = "windowed" if term in ("W", "S", "N") else "encoder-decoder"
            raise fail(label, f"array {shown} belongs to {kind} sessions")
        if not fits:
            sizes = {k: v for k, v in vars(dims).items() if v is not None}
            raise fail(label, f"array {shown} has shape {list(shape)}, expected [{expected}] with {sizes}")


def check_array_values(label: str, name: str, values: np.ndarray, dims: Dims) -> None:
    rule = ARRAY_RULES.get(name)
    kind = rule.values if rule else ("float" if values.dtype.kind == "f" else "any")
    if values.size == 0:
        return
    if kind in ("probability", "float"):
        for part in _slices(values):
            if _plainly_fine(part, kind):
                continue
            if not np.isfinite(part).all():
                raise fail(label, f"array {quote(name)} holds NaN or infinite values")
            if kind == "probability" and (part.min() < 0 or part.max() > 1 + PROBABILITY_SLACK):
                raise fail(label, f"array {quote(name)} holds weights outside [0, 1] "
                                  f"(from {float(part.min()):.4g} to {float(part.max()):.4g})")
    elif kind == "index_n":
        if values.min() < 0 or values.max() >= dims.n:
            raise fail(label, f"array {quote(name)} holds token indices outside 0 to {dims.n - 1}")
    elif kind == "index_N":  # document tokens, -1 for none
        if values.min() < -1 or values.max() >= (dims.N or 0):
            raise fail(label, f"array {quote(name)} holds document token indices outside -1 to {(dims.N or 0) - 1}")


_INT_OF = {2: np.int16, 4: np.int32, 8: np.int64}
_UINT_OF = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _plainly_fine(part: np.ndarray, kind: str) -> bool:
    """A fast check on the bit patterns of IEEE floats (float16 arithmetic in numpy is slow):
    True when every value is finite (and for probabilities within [0, 1 + slack]); False means
    "look closer" (also for -0.0), never "refuse"."""
    if part.dtype.kind != "f" or part.dtype.itemsize not in _INT_OF or not part.dtype.isnative:
        return False
    bits = part.view(_INT_OF[part.dtype.itemsize])
    if kind == "probability":  # sign bit clear and at most the limit: one unsigned maximum, not min and max
        limit = np.array(1 + PROBABILITY_SLACK, dtype=part.dtype).view(bits.dtype)
        return bool(bits.view(_UINT_OF[part.dtype.itemsize]).max() <= limit)
    magnitude_mask = np.iinfo(bits.dtype).max  # every bit but the sign
    infinity = np.array(np.inf, dtype=part.dtype).view(bits.dtype)
    return bool(np.bitwise_and(bits, magnitude_mask).max() < infinity)


def _slices(values: np.ndarray):
    """The array a few megabytes at a time, so that checks never double its memory (and the pages of
    an array mapped from a file are released as they are checked: core.pages)."""
    from attn_desktop.core.pages import chunks

    yield from chunks(values, 1 << 22)


def check_together(label: str, arrays: dict[str, np.ndarray], manifest: dict, dims: Dims,
                   encoder_decoder: bool) -> None:
    for name in REQUIRED[encoder_decoder]:
        if name not in arrays:
            raise fail(label, f"the session lacks the array {quote(name)}")
    other = REQUIRED[not encoder_decoder]
    present = [name for name in other if name in arrays and name not in REQUIRED[encoder_decoder]]
    if present:
        raise fail(label, f"array {quote(present[0])} does not belong to this kind of session")
    if (dims.W is not None) != ("window_attentions" in arrays):
        raise fail(label, "the window map and array 'window_attentions' come only together")
    if ("flow" in arrays) != ("flow_rows" in arrays):
        raise fail(label, "arrays 'flow' and 'flow_rows' come only together")
    if "flow" in arrays:
        rows = arrays["flow_rows"]
        if rows.ndim != 1 or arrays["flow"].shape[0] != rows.shape[0]:
            raise fail(label, "arrays 'flow' and 'flow_rows' do not match")
        if rows.size > 1 and not (np.diff(rows) > 0).all():
            raise fail(label, "array 'flow_rows' is not in ascending order")
    rollout = (manifest.get("methods") or {}).get("rollout")
    if "rollout" in arrays and isinstance(rollout, dict) and not encoder_decoder:
        start = rollout.get("start_layer", 0)
        if arrays["rollout"].shape[0] != dims.L - start:
            raise fail(label, f"array 'rollout' has {arrays['rollout'].shape[0]} layers; "
                              f"start layer {start} of {dims.L} gives {dims.L - start}")
