"""Assemble the report: one self-contained HTML file (no script, no outside font, stylesheet
or image), printable, with one section per result the analysis holds."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from attn_desktop import __version__
from attn_desktop.core.analysis import Analysis
from attn_desktop.core.errors import UserError

from . import png
from .context import ReportContext, ReportOptions
from .markup import esc
from .sections import Section, all_sections

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 14px/1.5 "Segoe UI", "Helvetica Neue", Helvetica, Arial, sans-serif; color: #1d2330;
       background: #fff; margin: 0; }
main { max-width: 1040px; margin: 0 auto; padding: 28px 36px 60px; }
header.cover { border-bottom: 3px solid #1f3a5f; padding-bottom: 14px; margin-bottom: 18px; }
header.cover h1 { font-size: 26px; margin: 0 0 4px; color: #1f3a5f; letter-spacing: 0.2px; }
header.cover .sub { color: #4a5568; margin: 0; }
.summary { border: 1px solid #1f3a5f; background: #f5f8fc; padding: 8px 12px; margin: 12px 0; border-radius: 4px; }
.summary a { color: #1f3a5f; }
.banner { border: 1px solid #b7791f; background: #fffaf0; padding: 8px 12px; margin: 12px 0; border-radius: 4px; }
nav.toc { background: #f5f7fa; border: 1px solid #dde3ea; border-radius: 4px; padding: 10px 16px; margin: 16px 0; }
nav.toc ol { margin: 4px 0 0 18px; padding: 0; columns: 2; }
nav.toc a { color: #1f3a5f; text-decoration: none; }
section { margin-top: 34px; }
section > h2 { font-size: 20px; color: #1f3a5f; border-bottom: 1px solid #cbd5e0; padding-bottom: 4px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #2d3748; }
.howto { background: #eef4fb; border-left: 4px solid #3b6ea5; padding: 8px 12px; margin: 8px 0 14px; }
.howto p { margin: 0; }
p.note { color: #4a5568; font-size: 13px; margin: 6px 0; }
p.warn { color: #7b341e; background: #fff5f0; border-left: 3px solid #c05621; padding: 4px 8px; font-size: 13px; }
.muted { color: #718096; }
.mono, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
caption { caption-side: top; text-align: left; color: #4a5568; font-size: 12.5px; padding-bottom: 4px; }
table.narrow caption, table.grid caption { white-space: nowrap; }
th, td { border: 1px solid #d5dbe3; padding: 3px 7px; vertical-align: top; text-align: left; }
thead th { background: #edf1f6; }
thead { display: table-header-group; }
tr, figure, .howto, .caveats, svg { break-inside: avoid; page-break-inside: avoid; }
table.kv { width: 99.8%; }
table.kv th { width: 34%; font-weight: 600; background: #f7f9fb; overflow-wrap: anywhere; }
table.kv td { word-break: break-word; }
table.hashes td { word-break: break-all; }
table.hashes td:nth-child(-n+3) { word-break: normal; white-space: nowrap; }
table.narrow td.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.grid td.cell { text-align: center; min-width: 44px; font-variant-numeric: tabular-nums; font-size: 12px; }
table.grid th { font-size: 12px; white-space: nowrap; }
table.attr { font-size: 12.5px; }
table.attr tr.special td:first-child { color: #a0aec0; }
.tokcell { white-space: pre-wrap; }
figure { margin: 10px 0 16px; }
figcaption { color: #4a5568; font-size: 12.5px; margin-top: 4px; }
svg.fig { max-width: 100%; height: auto; display: block; }
svg.fig text { fill: #1d2330; }
svg.fig text.axis { fill: #4a5568; font-style: italic; }
svg.fig text.mark { fill: #000; font-size: 10px; paint-order: stroke; stroke: #fff; stroke-width: 2px; }
.document { border: 1px solid #d5dbe3; border-radius: 4px; padding: 12px 14px; white-space: pre-wrap;
            line-height: 1.9; font-size: 15px; background: #fff; overflow-wrap: anywhere; }
.tok, .chip { border-radius: 3px; padding: 1px 0; }
.chip { display: inline-block; padding: 0 5px; margin: 0 3px 3px 0; border: 1px solid #cbd5e0; font-size: 12.5px; }
.hid { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; border: 1px dashed #a0aec0;
       padding: 0 2px; margin: 0 1px; }
.focus { outline: 2px solid #d53f8c; outline-offset: 1px; }
.focusmark { outline: 2px solid #d53f8c; padding: 0 3px; }
.ramp .sw { display: inline-block; width: 16px; height: 12px; vertical-align: middle; border: 1px solid #e2e8f0; }
p.headline { font-size: 17px; font-weight: 600; border: 2px solid #1f3a5f; padding: 10px 14px; border-radius: 4px; }
.caveats { background: #fffaf0; border: 1px solid #ecc94b; border-radius: 4px; padding: 4px 14px 8px; }
pre.record { white-space: pre-wrap; word-break: break-all; background: #f7f9fb; border: 1px solid #dde3ea;
             padding: 10px; font-size: 11px; line-height: 1.35; }
footer { margin-top: 40px; color: #718096; font-size: 12px; border-top: 1px solid #cbd5e0; padding-top: 8px; }
@page { size: A4; margin: 16mm 14mm; }
@media print {
  main { max-width: none; padding: 0; }
  body { font-size: 11.5pt; }
  section { break-before: page; page-break-before: always; margin-top: 0; }
  section:first-of-type { break-before: auto; page-break-before: auto; margin-top: 18px; }
  nav.toc a { color: #1d2330; }
  .document { border: none; padding: 0; }
  pre.record { font-size: 8pt; }
}
"""


def build_report(analysis: Analysis, options: ReportOptions | None = None) -> str:
    """The report as one HTML string."""
    ctx = ReportContext(analysis, options or ReportOptions())
    sections: list[Section] = []
    for render in all_sections():
        section = render(ctx)
        if section is not None:
            sections.append(section)
    page = _page(ctx, sections)
    if ctx.view.redacted:
        check_no_leak(page, ctx.view)
    return page


def _page(ctx: ReportContext, sections: list[Section]) -> str:
    m = ctx.manifest
    model = (m.get("model") or {}).get("name", "?")
    doc = None if ctx.view.redacted else ctx.options.document_name
    subtitle = f"Model {model} ({(m.get('model') or {}).get('kind', '?')})"
    if doc:
        subtitle += f" · document {doc}"
    subtitle += f" · report of {ctx.created.strftime('%Y-%m-%d %H:%M UTC')}"
    banner = ""
    if ctx.summary:
        banner += (f"<p class='summary'><strong>Verdict for this text and output:</strong> {esc(ctx.summary)} "
                   "<a href='#verdict'>Details and caveats</a>.</p>")
    toc = "".join(f"<li><a href='#{s.id}'>{esc(s.title)}</a></li>" for s in sections)
    if ctx.view.redacted:
        banner = f"<p class='banner'><strong>Redacted report.</strong> {esc(ctx.view.describe())}.</p>" + banner
    body = "".join(f"<section id='{s.id}'><h2>{esc(s.title)}</h2>{s.body}</section>" for s in sections)
    title = ctx.options.title + (f" · {doc}" if doc else "")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<meta name='generator' content='attn-desktop {esc(__version__)}'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f"<header class='cover'><h1>{esc(ctx.options.title)}</h1><p class='sub'>{esc(subtitle)}</p></header>"
        f"{banner}<nav class='toc' aria-label='Contents'><strong>Contents</strong><ol>{toc}</ol></nav>"
        f"{body}<footer>Written by attn-desktop {esc(__version__)}. This file is self-contained: it loads "
        "nothing from elsewhere and runs no script. Attention and attribution scores are clues about "
        "what a model combines, not proof of why it produced an output.</footer></main></body></html>\n"
    )


_DATA_URI = re.compile(r"data:([\w/+.-]+);base64,([A-Za-z0-9+/=]+)")


def decoded_contents(page: str) -> list[str]:
    """The page's text and everything embedded in it, decoded (data URIs, PNG text chunks)."""
    import html

    out = [page, html.unescape(page)]
    for mime, b64 in _DATA_URI.findall(page):
        data = base64.b64decode(b64)
        if mime == "image/png":
            out += list(png.read_text(data).values()) + list(png.read_text(data).keys())
        else:
            out.append(data.decode("utf-8", "replace"))
    return out


def check_no_leak(page: str, view) -> None:
    """Refuse to hand out a redacted report in which a run of two hidden tokens, or a hidden
    span, still stands as it was in the document (a forgotten field would show here)."""
    haystack = "\n".join(decoded_contents(page))
    for needle in view.hidden_runs() + [s for s in view.hidden_strings() if len(s) >= 12]:
        if needle.strip() and needle in haystack:
            raise UserError("redaction check failed: redacted text would remain in the report; nothing was written")


def write_report(analysis: Analysis, path: str | Path, options: ReportOptions | None = None) -> Path:
    """Build the report and write it atomically (a temporary file renamed over `path`)."""
    path = Path(path).expanduser()
    check_report_path(path)
    page = build_report(analysis, options).encode("utf-8")
    from attn_desktop.core.store.writes import atomic_write

    # full disk, name too long, append-only folder: one line, nothing left (core.store.writes)
    return atomic_write(path, lambda fh: fh.write(page), what="report", mode=0o666 & ~_UMASK)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: umask is process-wide and not thread-safe to probe


def check_report_path(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if path.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"the report must end in .html: {path}")
    if path.is_dir():
        raise UserError(f"cannot write the report: {path} is a folder")
    if not parent.is_dir():
        raise UserError(f"cannot write the report: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write the report: {path} is not writable")
    return path
