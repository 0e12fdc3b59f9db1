"""Provenance: where every number in the report comes from, so that it can be checked later."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np

from attn_desktop import __version__
from attn_desktop.core import pages
from attn_desktop.core.model.hashing import sha256_file

from ..markup import esc, flatten, how_to_read, kv_table, note, table
from ..redact import redact_value
from . import Section

HOWTO = ("This page identifies exactly what was analysed and how. The model is identified by the "
         "SHA-256 fingerprint of each of its weight files: anyone holding the same files can compute "
         "the same fingerprints and confirm that the same model was used. The session file's fingerprint "
         "ties this report to the saved analysis it was made from; the fingerprint of each array lets a "
         "reviewer confirm that the numbers in that file are the ones shown here. A different fingerprint "
         "means a different file.")

SETTINGS_HOWTO = ("Every setting recorded with the analysis (capture, truncation, methods, the explanation "
                  "target and its conventions, timings), the view this report shows, and the SHA-256 of each "
                  "array, so that every number in the report can be recomputed from the session file.")


def array_sha256(a: np.ndarray) -> str:
    """SHA-256 of the array's raw bytes in C order, fed a chunk at a time (a mapped multi-gigabyte
    stack is never copied whole, and its pages are handed back as they are hashed)."""
    h = hashlib.sha256()
    for part in pages.chunks(np.asarray(a)):
        h.update(memoryview(np.ascontiguousarray(part)).cast("B"))
    return h.hexdigest()


def render(ctx) -> Section:
    m, opts, view = ctx.manifest, ctx.options, ctx.view
    model = m.get("model") or {}
    withheld = "withheld (redacted report)"
    parts = []

    report_rows = [
        ("Report created (UTC)", ctx.created.strftime("%Y-%m-%d %H:%M:%S")),
        ("Report written by", f"attn-desktop {__version__} (Python {platform.python_version()})"),
        ("Analysis created (UTC)", str(m.get("created", "unknown"))),
        ("Analysis made by", f"{m.get('app', 'attn-desktop')} {m.get('app_version', '?')}"),
        ("Document", withheld if view.redacted else (opts.document_name or "not named")),
        ("Redaction", view.describe()),
    ]
    if opts.session_path:
        path = Path(opts.session_path)
        report_rows += [("Session file", withheld if view.redacted else path.name),
                        ("Session file SHA-256", sha256_file(path)),
                        ("Session file size", f"{path.stat().st_size:,} bytes")]
    else:
        report_rows.append(("Session file", "none: the analysis was not saved to a file"))
    parts.append("<h3>Report</h3>" + kv_table(report_rows))

    model_rows = [("Model folder name", Path(str(model.get("folder", ""))).name or model.get("name", "?")),
                  ("Name", model.get("name")), ("Kind", model.get("kind")),
                  ("Model type", model.get("model_type")), ("Architecture", model.get("architecture")),
                  ("Layers", model.get("layers"))]
    if model.get("decoder_layers"):
        model_rows.append(("Decoder layers", model.get("decoder_layers")))
    model_rows += [("Heads per layer", model.get("heads")), ("Parameters", model.get("parameters")),
                   ("Maximum positions", model.get("max_positions")), ("Device", m.get("device"))]
    parts.append("<h3>Model</h3>" + kv_table(model_rows))
    weights = model.get("weights_sha256") or {}
    if weights:
        parts.append(table(["Weight file", "SHA-256"],
                           [(esc(k), f"<span class='mono'>{esc(v)}</span>") for k, v in weights.items()],
                           cls="hashes"))
    else:
        parts.append(note("The session records no weight file fingerprints.", "warn"))

    versions = m.get("versions") or {}
    if versions:
        parts.append("<h3>Software</h3>" + kv_table(sorted(versions.items())))
    parts.append("<p class='note'>Every setting of the analysis and the fingerprint of every array are "
                 "listed in <a href='#settings'>Settings and array fingerprints</a>, near the end.</p>")
    return Section("provenance", "Provenance", how_to_read(HOWTO) + "".join(parts))


def render_settings(ctx) -> Section:
    """The appendix: every recorded setting, the view shown, and each array's fingerprint."""
    m, an, opts, view = ctx.manifest, ctx.analysis, ctx.options, ctx.view
    parts = []
    capture = m.get("capture") or {}
    settings = [("Tokens", len(an.tokens))]
    from attn_desktop.core import windows as core_windows

    if core_windows.is_windowed(an):  # an.tokens are the shown window's, not the document's
        settings = [("Tokens", f"{len(an.tokens)} in the window shown ({core_windows.place(an)})")]
    if an.decoder_tokens is not None:
        settings.append(("Decoder tokens", len(an.decoder_tokens)))
    settings += [(f"capture.{k}", v) for k, v in capture.items()]
    settings += [(f"truncation.{k}", v) for k, v in (m.get("truncation") or {}).items()]
    gen = m.get("generation") or {}
    settings += [(f"generation.{k}", v) for k, v in gen.items() if k != "output_text"]
    settings += [(f"methods.{k}", v) for k, v in flatten(m.get("methods") or {})]
    explain = ctx.explain()
    for k, v in flatten(explain.get("target") or {}):
        settings.append((f"explain.target.{k}", v))
    for k, v in flatten(explain.get("methods") or {}):
        settings.append((f"explain.methods.{k}", v))
    for k, v in flatten(explain.get("read_row") or {}):
        settings.append((f"explain.read_row.{k}", v))
    settings += [(f"timings.{k} (s)", v) for k, v in (m.get("timings") or {}).items()]
    if view.redacted:
        settings = [(k, redact_value(k, v)) for k, v in settings]
    parts.append("<h3>Settings and target</h3>" + kv_table(settings))

    choice = [("Measure", opts.measure), ("Attention set", ctx.set_name), ("Layer", ctx.layer()),
              ("Head", ctx.head_label()), ("Focus", ctx.focus_label()), ("Colour map", opts.colormap),
              ("Colour scale", opts.scale)]
    parts.append("<h3>View shown in this report</h3>" + kv_table(choice))

    rows = [(esc(name), esc(str(a.dtype)), esc("×".join(str(s) for s in a.shape) or "scalar"),
             f"<span class='mono'>{array_sha256(a)}</span>") for name, a in sorted(an.arrays.items())]
    parts.append("<h3>Arrays in the analysis</h3>"
                 + note("SHA-256 of each array's raw bytes in C order, as stored in the session's NAME.npy "
                        "(numpy.load(...).tobytes()).")
                 + table(["Array", "Type", "Shape", "SHA-256 of the values"], rows, cls="hashes"))
    return Section("settings", "Settings and array fingerprints", how_to_read(SETTINGS_HOWTO) + "".join(parts))

