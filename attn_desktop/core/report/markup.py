"""Escaping and small HTML helpers shared by the report's section renderers.

Every string that comes from a document, a token, a file name or a manifest goes through
`esc` (or `attr` inside an attribute) before it meets markup: `<script>`, `</style>`,
`"onerror=` and `javascript:` in a document become visible text, nothing more.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from typing import Any

# C0/C1 controls other than tab and newline, lone surrogates and non-characters are not
# allowed in HTML or XML text: shown as U+FFFD. Bidirectional overrides and isolates would let
# a document reorder what the reader sees around it: shown by name.
_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def clean(text: Any) -> str:
    s = _INVALID.sub("\ufffd", str(text))
    return _BIDI.sub(lambda m: f"[U+{ord(m.group()):04X}]", s)


def esc(text: Any) -> str:
    """Text content: every markup character escaped (quotes too, so it is also safe in attributes)."""
    return html.escape(clean(text), quote=True)


attr = esc


def number(x: Any, digits: int = 4) -> str:
    """A value for a table: integers as they are, floats with `digits` significant digits."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        f = float(x)
    except (TypeError, ValueError):
        return esc(x)
    if f != f:
        return "NaN"
    if f == 0:
        return "0"
    if abs(f) >= 1e5 or abs(f) < 1e-3:
        return f"{f:.{max(digits - 1, 1)}e}"
    return f"{f:.{digits}g}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", caption: str = "") -> str:
    """Cells are markup already (escape what you put in them)."""
    head = "".join(f"<th scope='col'>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{caption}</caption>" if caption else ""
    klass = f" class='{cls}'" if cls else ""
    return f"<table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(pairs: Iterable[tuple[str, Any]], cls: str = "kv") -> str:
    rows = "".join(f"<tr><th scope='row'>{breakable(k)}</th><td>{value_markup(v)}</td></tr>" for k, v in pairs)
    return f"<table class='{cls}'><tbody>{rows}</tbody></table>"


def breakable(key: Any) -> str:
    """A dotted setting name that may wrap after its dots and underscores, not inside words."""
    return esc(key).replace(".", ".<wbr>").replace("_", "_<wbr>")


def value_markup(v: Any) -> str:
    if isinstance(v, (bool, int, float)) or v is None:
        return number(v)
    if isinstance(v, (list, tuple)):
        if len(v) > 24 and all(isinstance(x, (int, float)) for x in v):
            shown = ", ".join(number(x) for x in v[:24])
            return f"<span class='mono'>[{shown}, … {len(v)} values]</span>"
        return "<span class='mono'>[" + ", ".join(value_markup(x) for x in v) + "]</span>"
    return esc(v)


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (dotted key, leaf value) pairs; lists stay leaves."""
    if not isinstance(d, dict):
        return [(prefix or "value", d)]
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.extend(flatten(v, key))
        else:
            out.append((key, v))
    return out


def how_to_read(text: str) -> str:
    """The plain-language note every section carries, for a reader who is not a researcher."""
    return f"<div class='howto'><p><strong>How to read this.</strong> {esc(text)}</p></div>"


def note(text: str, kind: str = "note") -> str:
    return f"<p class='{kind}'>{esc(text)}</p>"
