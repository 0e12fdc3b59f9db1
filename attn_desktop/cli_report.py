"""`attn-desktop report SESSION.attn --out FILE.html` and `analyze ... --report FILE.html`."""

from __future__ import annotations

import argparse
from pathlib import Path

from attn_desktop.core.errors import UserError

COLORMAPS = {"viridis": "viridis", "cividis": "cividis", "cbl2": "colour-blind safe (CET-CBL2)"}
REDACT_HELP = ("'words': words replaced by token indices (numbers stay); 'spans:FILE': mask the "
               "character spans listed in FILE (docs/report.md)")


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attn-desktop report",
        description="Write a self-contained HTML report of a saved analysis (no script, nothing loaded "
        "from elsewhere, printable). The view defaults to the one saved with the session.",
    )
    p.add_argument("session", metavar="SESSION.attn", help="session file to report on")
    p.add_argument("--out", required=True, metavar="FILE.html", help="report to write")
    p.add_argument("--redact", metavar="words|spans:FILE", help=REDACT_HELP)
    p.add_argument("--measure", help="attention, rollout, flow, or a per-token vector such as integrated_gradients")
    p.add_argument("--set", dest="set_name", metavar="self|encoder|decoder|cross", help="attention set")
    p.add_argument("--layer", type=int, help="layer shown (default: the last)")
    p.add_argument("--head", metavar="H|mean|max|min", help="head index or aggregate over heads (default: mean)")
    p.add_argument("--focus", metavar="I[,J...]", help="query token index(es) whose row shades the text")
    units = p.add_mutually_exclusive_group()
    units.add_argument("--words", action="store_true",
                       help="rows, columns and the text by words, as the window shows them (the default "
                            "unless the session was saved showing pieces)")
    units.add_argument("--pieces", action="store_true", help="rows, columns and the text by word pieces")
    p.add_argument("--colormap", choices=tuple(COLORMAPS), default="viridis",
                   help="viridis (default), cividis, or cbl2 (colour-blind safe CET-CBL2)")
    p.add_argument("--scale", choices=("linear", "log", "min–max"), default="linear")
    p.add_argument("--title", default="Attention analysis report")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    p.add_argument("--redact", metavar="words|spans:FILE", help="redact the report: " + REDACT_HELP)


def parse_focus(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--focus takes token indices separated by commas, not {text!r}") from None
    if not out:
        raise UserError("--focus needs at least one token index")
    return out


def saved_view(manifest: dict) -> dict:
    """Report options from the view a session was saved with (only values of the right kind)."""
    view = manifest.get("view")
    if not isinstance(view, dict):
        return {}
    out: dict = {}
    if isinstance(view.get("measure"), str):
        out["measure"] = view["measure"]
    if isinstance(view.get("set_name"), str):
        out["set_name"] = view["set_name"]
    if type(view.get("words")) is bool:
        out["words"] = view["words"]
    if type(view.get("layer")) is int:
        out["layer"] = view["layer"]
    head = view.get("head")
    if type(head) is int or head in ("mean", "max", "min"):
        out["head"] = head
    picked = view.get("picked")
    if isinstance(picked, list) and picked and all(type(i) is int for i in picked):
        out["focus"] = tuple(picked)
    elif type(view.get("focus")) is int:
        out["focus"] = (view["focus"],)
    return out


def options_from_args(args: argparse.Namespace, analysis, session: Path | None, document_name: str | None):
    from attn_desktop.core.report import ReportOptions, parse_redact

    fields = {"words": True}  # the window's default: lawyers and clinicians point at words
    fields.update(saved_view(analysis.manifest) if getattr(args, "session", None) else {})
    if fields.get("measure") not in (None, "attention", "rollout", "flow") and fields["measure"] not in analysis.arrays:
        fields.pop("measure")  # the saved view showed something the report cannot (a window-only view)
    for key in ("measure", "set_name", "layer"):
        if getattr(args, key, None) is not None:
            fields[key] = getattr(args, key)
    if getattr(args, "head", None) is not None:
        fields["head"] = int(args.head) if args.head.lstrip("-").isdigit() else args.head
    if getattr(args, "words", False):
        fields["words"] = True
    if getattr(args, "pieces", False):
        fields["words"] = False
    focus = parse_focus(getattr(args, "focus", None))
    if focus is not None:
        fields["focus"] = focus
    return ReportOptions(
        **fields, colormap=COLORMAPS[getattr(args, "colormap", "viridis")], scale=getattr(args, "scale", "linear"),
        redaction=parse_redact(args.redact), session_path=str(session) if session else None,
        document_name=document_name, title=getattr(args, "title", "Attention analysis report"),
    )


def check_report_args(args: argparse.Namespace) -> Path | None:
    """Refuse a bad report path or redaction before any work is done."""
    from attn_desktop.core.report import parse_redact
    from attn_desktop.core.report.build import check_report_path

    if getattr(args, "report", None) is None:
        if getattr(args, "redact", None):
            raise UserError("--redact applies to a report: add --report FILE.html")
        return None
    parse_redact(args.redact)
    return check_report_path(Path(args.report).expanduser())


def cmd_report(args: argparse.Namespace) -> int:
    from attn_desktop.core.report import parse_redact
    from attn_desktop.core.report.build import check_report_path, write_report
    from attn_desktop.core.store.session import load_session

    out = check_report_path(Path(args.out).expanduser())
    parse_redact(args.redact)
    session = Path(args.session).expanduser()
    analysis = load_session(session)
    from attn_desktop.core.store.source_name import document_name

    # the text file the analysis was made from; a session made from typed text is named by itself
    options = options_from_args(args, analysis, session, document_name=document_name(analysis.manifest, session.name))
    write_report(analysis, out, options)
    print(f"report of {session.name} -> {out}" + (f" (redacted: {args.redact.split(':')[0]})" if args.redact else ""))
    return 0


def write_analysis_report(analysis, args: argparse.Namespace, session: Path, document_name: str | None) -> Path:
    from attn_desktop.core.report.build import write_report

    options = options_from_args(args, analysis, session, document_name)
    return write_report(analysis, Path(args.report).expanduser(), options)
