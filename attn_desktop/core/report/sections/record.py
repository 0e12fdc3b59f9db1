"""The machine-readable record: the session's manifest as JSON, for checking the report."""

from __future__ import annotations

import json

from ..markup import esc, how_to_read, note
from ..redact import redact_manifest, scrub_strings, text_scrubber
from . import Section

HOWTO = ("This is the analysis's own record, exactly as stored in the session file (manifest.json), "
         "so that a technical reviewer can check every setting and number above against it without "
         "this software. Nothing here needs to be read by a non-specialist.")


def render(ctx):
    manifest = ctx.manifest
    parts = [how_to_read(HOWTO)]
    if ctx.view.redacted:
        manifest = scrub_strings(redact_manifest(manifest), text_scrubber(ctx.view, ctx.explain().get("target")))
        parts.append(note("Redacted: the text, the tokens, the token ids and every field that carries text "
                          "from the document are replaced by “[redacted]”."))
    raw = readable_json(manifest)
    parts.append(f"<pre class='record'>{esc(raw)}</pre>")
    return Section("record", "Machine-readable record", "".join(parts))


def readable_json(manifest: dict) -> str:
    """Valid JSON, one top-level key per line; lists of objects (tokens) one object per line."""
    lines = []
    for key, value in manifest.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            inner = ",\n  ".join(_dump(v) for v in value)
            lines.append(f" {_dump(key)}: [\n  {inner}\n ]")
        elif isinstance(value, dict) and value:
            inner = ",\n  ".join(f"{_dump(k)}: {_dump(v)}" for k, v in value.items())
            lines.append(f" {_dump(key)}: {{\n  {inner}\n }}")
        else:
            lines.append(f" {_dump(key)}: {_dump(value)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def _dump(v) -> str:
    return json.dumps(v, ensure_ascii=False, default=_default, allow_nan=True)


def _default(obj):
    try:
        return obj.tolist()
    except AttributeError:
        return str(obj)
