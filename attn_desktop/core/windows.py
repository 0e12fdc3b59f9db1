"""Windowed analysis: a document longer than the model's window, analysed in overlapping windows.

The document is tokenized once (its *document tokens*: the pieces with a span in the text, no
special tokens). Windows are runs of document tokens of at most `size` positions with the model's
special tokens, starting about `stride` tokens apart, each cut where the text allows: after a
paragraph, else a sentence, else a clause, else between words (never inside a word when a word
boundary is near). Each window's text (the characters from its first to its last token) is analysed
by the ordinary pipeline, on its own: attention never crosses windows.

The Analysis returned shows one window (its tokens, with offsets into the whole text, and its
arrays); every window's attention is kept in `window_attentions` [W, L, H, S, S] (S: the largest
window, the rest zero) and `manifest['windows']` holds the map (see docs/windows.md).
`window_view(analysis, k)` gives the Analysis of window k."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from attn_desktop.core.analysis import Analysis, Token
from attn_desktop.core.errors import Cancelled, UserError

MIN_SIZE = 16
RULE = "Attention does not cross windows: each window was analysed on its own."
# manifest sections that describe one window's run and would be wrong for another window
_PER_WINDOW = ("methods", "view", "explain", "heads", "input_ids", "truncation")
WINDOW_KINDS = ("encoder", "sequence-classification", "masked-lm", "causal-lm")


def parse_spec(spec: str | None) -> dict[str, int]:
    """'SIZE[:STRIDE]' (or '' for the defaults) as {'size': .., 'stride': ..}."""
    spec = (spec or "").strip()
    if not spec:
        return {}
    size_text, _, stride_text = spec.partition(":")
    try:
        out = {"size": int(size_text)} if size_text.strip() else {}
        if stride_text.strip():
            out["stride"] = int(stride_text)
    except ValueError:
        raise UserError(f"--windows takes SIZE or SIZE:STRIDE in tokens (for example 512:256), not {spec!r}") from None
    return out


def _settings(loaded, size: int | None, stride: int | None) -> tuple[int, int, int]:
    """(size, stride, special tokens per window), checked against the model."""
    if loaded.kind not in WINDOW_KINDS:
        raise UserError(f"{loaded.name} is a {loaded.kind} model: windows are for encoders, classifiers "
                        "and causal LMs")
    limit = loaded.max_positions
    specials = int(loaded.tokenizer.num_special_tokens_to_add(pair=False))
    if size is None:
        if limit is None:
            raise UserError(f"{loaded.name} states no maximum length: give the window size (--windows SIZE)")
        size = int(limit)
    if limit is not None and size > limit:
        raise UserError(f"a window of {size} tokens is longer than {loaded.name} accepts ({limit} positions)")
    if size < MIN_SIZE + specials:
        raise UserError(f"a window of {size} tokens is too small (at least {MIN_SIZE + specials})")
    room = size - specials
    stride = room // 2 if stride is None else int(stride)
    if not 1 <= stride <= room:
        raise UserError(f"the window stride must be 1 to {room} tokens for windows of {size} "
                        f"({specials} special tokens each), not {stride}")
    return int(size), stride, specials


def document_tokens(loaded, text: str) -> tuple[list[tuple[int, int]], list[str]]:
    """(spans, pieces) of the document tokens: every piece with a non-empty span, in order."""
    tok = loaded.tokenizer
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    spans, pieces = [], tok.convert_ids_to_tokens(enc["input_ids"])
    keep = []
    for (s, e), piece in zip(enc["offset_mapping"], pieces, strict=True):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            spans.append((int(s), int(e)))
            keep.append(piece)
    return spans, keep


def cut_scores(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """score[i]: how good a cut is before document token i (i = 1 .. N-1): 4 paragraph, 3 sentence,
    2 clause, 1 between words, 0 inside a word."""
    scores = [0] * (len(spans) + 1)
    for i in range(1, len(spans)):
        gap = text[spans[i - 1][1]:spans[i][0]]
        last = text[spans[i - 1][1] - 1]
        if "\n\n" in gap or ("\n" in gap and last in ".!?:;"):
            scores[i] = 4
        elif last in ".!?" and gap:
            scores[i] = 3
        elif last in ",;:)" and gap or "\n" in gap:
            scores[i] = 2
        elif gap:
            scores[i] = 1
    scores[0] = scores[len(spans)] = 5
    return scores


def _best_cut(scores: list[int], lo: int, hi: int) -> int:
    """The best cut in [lo, hi]; among equals the last one."""
    best = hi
    for i in range(hi, lo - 1, -1):
        if scores[i] > scores[best]:
            best = i
    return best


def plan_windows(scores: list[int], room: int, stride: int,
                 fits: Callable[[int, int], int] | None = None) -> list[tuple[int, int]]:
    """Windows as [start, end) ranges of document tokens covering 0..N, each at most `room` tokens,
    starts about `stride` apart. `fits(a, b)` returns how many tokens too many the window's own text
    gives (0: it fits); such a window is shortened."""
    n = len(scores) - 1
    if n <= 0:
        return []
    slack = max(1, room // 4)
    windows: list[tuple[int, int]] = []
    a = 0
    while True:
        hard = min(n, a + room)
        end = n if hard == n else _best_cut(scores, max(a + 1, hard - slack), hard)
        while fits is not None and end > a + 1:
            over = fits(a, end)
            if over <= 0:
                break
            end = max(a + 1, end - over)
        windows.append((a, end))
        if end >= n:
            return windows
        target = min(a + stride, end)
        nxt = _best_cut(scores, max(a + 1, target - max(1, stride // 2)), target)
        a = max(a + 1, min(nxt, end))


def window_chars(text: str, spans: list[tuple[int, int]], a: int, b: int) -> tuple[int, int]:
    """The characters of the window of document tokens a..b-1: from its first token (with the one
    space before it, which byte-level tokenizers read as part of the word, as in the document) to
    the end of its last."""
    lo = spans[a][0]
    if lo > 0 and text[lo - 1] == " ":
        lo -= 1
    return lo, spans[b - 1][1]


def analyze_windows(loaded, text: str, *, size: int | None = None, stride: int | None = None,
                    only_if_long: bool = False, progress=None, cancel=None,
                    analyze_one: Callable[..., Analysis], planned=None) -> Analysis | None:
    """The windowed Analysis of `text` (showing window 0), or None when `only_if_long` and the
    text fits the model in one piece. `analyze_one(loaded, text, cancel=...)` is the plain pipeline;
    `planned(document tokens of each window, special tokens per window)` is told the windows first."""
    report = progress or (lambda f, m: None)
    size, stride, specials = _settings(loaded, size, stride)
    spans, _pieces = document_tokens(loaded, text)
    if not spans:
        raise UserError("the text has no tokens to analyse")
    limit = loaded.max_positions
    if only_if_long and (limit is None or len(spans) + specials <= limit):
        return None
    tok = loaded.tokenizer

    def over(a: int, b: int) -> int:
        lo, hi = window_chars(text, spans, a, b)
        n = len(tok(text[lo:hi], add_special_tokens=True, verbose=False)["input_ids"])
        return n - size

    plan = plan_windows(cut_scores(text, spans), size - specials, stride, fits=over)
    if planned is not None:
        planned([b - a for a, b in plan], specials)
    views: list[Analysis] = []
    for k, (a, b) in enumerate(plan):
        if cancel is not None and cancel():
            raise Cancelled()
        lo, hi = window_chars(text, spans, a, b)
        part = analyze_one(loaded, text[lo:hi], cancel=cancel)
        views.append(part)
        report((k + 1) / len(plan), f"window {k + 1} of {len(plan)}")
    return assemble(text, plan, spans, views, size, stride)


def _shifted(tokens: list[Token], by: int) -> list[Token]:
    return [Token(t.text, t.start + by, t.end + by, t.special, t.generated, t.piece, t.unknown) for t in tokens]


def assemble(text: str, plan: list[tuple[int, int]], spans: list[tuple[int, int]], views: list[Analysis],
             size: int, stride: int) -> Analysis:
    """One Analysis from the windows' own analyses (`views[k]` analysed the text of window k)."""
    first = views[0]
    sizes = [len(v.tokens) for v in views]
    biggest = max(sizes)
    att0 = first.arrays["attentions"]
    stack = np.zeros((len(views), *att0.shape[:2], biggest, biggest), dtype=att0.dtype)
    entries, token_lists = [], []
    for k, ((a, b), view) in enumerate(zip(plan, views, strict=True)):
        n = sizes[k]
        stack[k, :, :, :n, :n] = view.arrays["attentions"]
        lo, hi = window_chars(text, spans, a, b)
        token_lists.append([t.to_json() for t in _shifted(view.tokens, lo)])
        entries.append({"char_start": lo, "char_end": hi, "token_start": a, "token_end": b, "tokens": n,
                        "input_ids": list(view.manifest.get("input_ids") or []),
                        "seconds": (view.manifest.get("timings") or {}).get("total")})
    manifest = copy.deepcopy(first.manifest)
    for key in _PER_WINDOW:
        manifest.pop(key, None)
    manifest["timings"] = {"total": round(sum(e["seconds"] or 0.0 for e in entries), 6)}
    manifest["windows"] = {
        "size": size, "stride": stride, "document_tokens": len(spans), "shown": 0,
        "rule": RULE, "cuts": "paragraph, else sentence, else clause, else between words",
        "windows": entries, "tokens": token_lists,
    }
    whole = Analysis(text=text, tokens=[], arrays={"window_attentions": stack}, manifest=manifest)
    return window_view(whole, 0)


# -- reading a windowed Analysis ------------------------------------------------------------------
def is_windowed(analysis: Analysis | None) -> bool:
    return analysis is not None and isinstance(analysis.manifest.get("windows"), dict) \
        and "window_attentions" in analysis.arrays


def window_count(analysis: Analysis) -> int:
    return len(analysis.manifest["windows"]["windows"])


def shown_window(analysis: Analysis) -> int:
    return int(analysis.manifest["windows"].get("shown", 0))


def window_view(analysis: Analysis, k: int) -> Analysis:
    """The Analysis of window k of a windowed analysis: its tokens (offsets into the whole text) and
    attention, with every window's arrays and the map kept so that saving it keeps the document."""
    info = analysis.manifest["windows"]
    entry = info["windows"][k]
    n = int(entry["tokens"])
    stack = analysis.arrays["window_attentions"]
    tokens = [Token.from_json(t) for t in info["tokens"][k]]
    manifest = {key: value for key, value in analysis.manifest.items() if key not in _PER_WINDOW}
    manifest["windows"] = {**info, "shown": int(k)}
    manifest["input_ids"] = list(entry["input_ids"])
    manifest["tokens"] = [t.to_json() for t in tokens]
    keep = {name: a for name, a in analysis.arrays.items() if name.startswith(("window_", "document_"))}
    arrays = {"attentions": stack[k, :, :, :n, :n], **keep}
    from attn_desktop.core.explain import document

    if document.is_document(analysis.manifest.get("explain")):  # document-level: the same for every window
        manifest["explain"] = analysis.manifest["explain"]
        arrays.update(document.window_vectors(keep, k, n))
    return Analysis(text=analysis.text, tokens=tokens, arrays=arrays, manifest=manifest)


def windows_at(analysis: Analysis, position: int) -> list[tuple[int, int, int]]:
    """(window, token index in that window, distance to the window's nearer edge in tokens) for every
    window with a token whose span holds character `position`, the most central first."""
    info = analysis.manifest["windows"]
    hits = []
    for k, raw in enumerate(info["tokens"]):
        entry = info["windows"][k]
        if not entry["char_start"] <= position < max(entry["char_end"], entry["char_start"] + 1):
            continue
        for j, t in enumerate(raw):
            if t["start"] <= position < t["end"]:
                hits.append((k, j, min(j, len(raw) - 1 - j)))
                break
    hits.sort(key=lambda h: (-h[2], h[0]))
    return hits


def place(analysis: Analysis, k: int | None = None) -> str:
    """'window 2 of 5, tokens 380-891 of 1500' (document tokens, counted from 1)."""
    info = analysis.manifest["windows"]
    k = shown_window(analysis) if k is None else k
    entry = info["windows"][k]
    return (f"window {k + 1} of {len(info['windows'])}, tokens {entry['token_start'] + 1}-"
            f"{entry['token_end']} of {info['document_tokens']}")


def summary(analysis: Analysis, rule: bool = True) -> str:
    """One line for the command line and the status: the windows, and (`rule`) that attention stays
    in each (left out where RULE is said beside it)."""
    info = analysis.manifest["windows"]
    count = len(info["windows"])
    return (f"{count} window{'s' if count != 1 else ''} of at most {info['size']} tokens, stride {info['stride']}, "
            f"over {info['document_tokens']} document tokens" + ("; attention does not cross windows" if rule else ""))


# -- the session's check of manifest['windows'] (core.store.schema calls it) ---------------------
def _int(value, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def check_section(label: str, section: Any, text: str, heads: int, layers: int) -> dict[str, int]:
    """{'W': windows, 'S': largest window, 'N': document tokens} after checking the map against the
    text, or {} when the session is not windowed. Refuses (UserError) a map that does not fit its text."""
    if section is None:
        return {}

    def bad(why: str) -> UserError:
        return UserError(f"{label}: the window map {why}")

    if not isinstance(section, dict):
        raise bad("is not an object")
    entries, lists = section.get("windows"), section.get("tokens")
    if not isinstance(entries, list) or not entries or not isinstance(lists, list) or len(lists) != len(entries):
        raise bad("lists no windows, or not one token list per window")
    if len(entries) > 100_000:
        raise bad(f"lists {len(entries)} windows")
    doc = section.get("document_tokens")
    for key in ("size", "stride", "document_tokens"):
        if not _int(section.get(key), 1, 10**7):
            raise bad(f"has no valid {key!r}")
    if not _int(section.get("shown", 0), 0, len(entries) - 1):
        raise bad("shows a window it does not list")
    covered = 0
    for k, (entry, raw) in enumerate(zip(entries, lists, strict=True)):
        if not isinstance(entry, dict) or not isinstance(raw, list) or not raw:
            raise bad(f"has a damaged window {k + 1}")
        lo, hi, a, b, n = (entry.get(x) for x in ("char_start", "char_end", "token_start", "token_end", "tokens"))
        if not (_int(lo, 0, len(text)) and _int(hi, lo, len(text)) and _int(a, 0, doc) and _int(b, a + 1, doc)
                and _int(n, 1, section["size"]) and n == len(raw)):
            raise bad(f"has window {k + 1} outside the text or its tokens")
        if a > covered:
            raise bad(f"leaves document tokens {covered + 1} to {a} in no window")
        covered = max(covered, b)
        ids = entry.get("input_ids")
        if not isinstance(ids, list) or not all(type(i) is int for i in ids):
            raise bad(f"has damaged input ids in window {k + 1}")
        for t in raw:
            if not (isinstance(t, dict) and isinstance(t.get("text"), str) and len(t["text"]) <= 1000
                    and _int(t.get("start"), lo, hi) and _int(t.get("end"), t.get("start"), hi)
                    and all(type(t.get(f, False)) is bool for f in ("special", "generated", "unknown"))
                    and (t.get("piece") is None or (isinstance(t["piece"], str) and len(t["piece"]) <= 1000))):
                raise bad(f"has a damaged token in window {k + 1}")
    if covered != doc:
        raise bad(f"covers {covered} of {doc} document tokens")
    return {"W": len(entries), "S": max(len(raw) for raw in lists), "N": doc}


def fits_whole(loaded, text: str) -> bool:
    limit = loaded.max_positions
    return limit is None or len(loaded.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]) <= limit


def from_pipeline(loaded, text: str, options: dict, *, methods, generating: bool, progress, cancel,
                  analyze_one, target: dict | None = None, explain_options: dict | None = None) -> Analysis | None:
    """pipeline.analyze(windows=options): {'size', 'stride', 'only_if_long'} (all optional). Explanation
    methods run for a document-level target (core.explain.document)."""
    if not isinstance(options, dict) or set(options) - {"size", "stride", "only_if_long"}:
        raise UserError("windows take a size, a stride and only_if_long")
    for key in ("size", "stride"):
        if options.get(key) is not None and type(options[key]) is not int:
            raise UserError(f"the window {key} must be a whole number of tokens, not {options[key]!r}")
    if options.get("only_if_long") and fits_whole(loaded, text):
        return None
    from attn_desktop.core.explain import document
    from attn_desktop.core.explain.run import EXPLANATION, expand_methods

    methods = expand_methods(methods)
    extra = [m for m in methods if m not in ("attention", "rollout", "flow") + EXPLANATION]
    if extra:
        raise UserError("head tests are not available with windows: they need a text that fits the model in one "
                        f"piece ({loaded.max_positions} positions); shorten the text, or cut it at that length "
                        "(truncation)")
    if generating:
        raise UserError("generation is not available with windows")
    explaining = any(m in EXPLANATION for m in methods)
    if explaining:
        document.check_request(loaded, methods, target, explain_options)
    report = progress or (lambda f, m: None)
    share = [0.3]  # the windows' part of the bar, sized by their forwards once they are planned

    def planned(held: list[int], specials: int) -> None:
        from attn_desktop.core.explain.document_progress import capture_share

        share[0] = capture_share(methods, explain_options, held, specials)

    windowed = analyze_windows(loaded, text, size=options.get("size"), stride=options.get("stride"),
                               only_if_long=bool(options.get("only_if_long")),
                               progress=(lambda f, m: report(share[0] * f, m)) if explaining else progress,
                               cancel=cancel, analyze_one=analyze_one, planned=planned if explaining else None)
    if windowed is None or not explaining:
        return windowed
    t0 = time.perf_counter()
    shown = document.explain(loaded, windowed, methods, target, explain_options, cancel=cancel,
                             progress=lambda f, m: report(share[0] + (1.0 - share[0]) * f, m))
    shown.manifest["timings"] = {**shown.manifest.get("timings", {}), "explain": round(time.perf_counter() - t0, 6)}
    return shown
