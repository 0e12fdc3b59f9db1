"""Command line: `attn-desktop` opens the window; subcommands work headless."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from attn_desktop import __version__
from attn_desktop.core.errors import Cancelled, UserError
from attn_desktop.core.quoting import quote, shown

SUBCOMMANDS = ("analyze", "models", "report", "prune")


def _analyze_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attn-desktop analyze",
        description="Run a local model once over a text, capture every layer's and head's attention, "
        "and write a session file.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to analyse")
    src.add_argument("--text-file", metavar="FILE", help="read the text from a UTF-8 file ('-' for stdin)")
    src.add_argument("-", dest="stdin", action="store_true", help="read the text from standard input")
    p.add_argument("--model", default="demo", help="'demo' or a local model folder (default: demo)")
    p.add_argument("--out", required=True, metavar="FILE.attn", help="session file to write")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--truncate", action="store_true", help="cut text longer than the model's maximum")
    p.add_argument("--windows", nargs="?", const="", metavar="SIZE[:STRIDE]",
                   help="analyse a text longer than the model accepts in overlapping windows of SIZE tokens "
                   "(default, and at most: the model's maximum) starting about STRIDE tokens apart (default: half a window), "
                   "cut at sentence or clause ends where possible; attention does not cross windows")
    p.add_argument("--on-disk", action="store_true",
                   help="for texts of thousands of tokens: write the attention a head at a time to float16 files "
                   "beside --out (removed afterwards) instead of holding it in memory; rollout is computed a "
                   "layer at a time (docs/long-inputs.md)")
    from attn_desktop.cli_report import add_analyze_arguments

    add_analyze_arguments(p)
    gen = p.add_mutually_exclusive_group()
    gen.add_argument("--generate", type=int, metavar="N", help="append up to N greedy tokens")
    gen.add_argument("--target-text", metavar="TEXT", help="teacher-force this output instead")
    meth = p.add_argument_group("propagation across layers (Abnar & Zuidema 2020)")
    meth.add_argument("--methods", default="attention", metavar="LIST",
                      help="comma-separated: attention (always), rollout, flow, and the checks below "
                      "(saliency, grad_input, ig, grad_rollout, loo, interventions, faithfulness, agreement), "
                      "or all; heads: head ablation and gradient grids, no-effect heads, over-smoothing "
                      "(not part of all) (default: attention)")
    meth.add_argument("--flow-rows", default="focus", metavar="focus|all|I,J,K",
                      help="output tokens whose flow is computed: the focus token (the first token, "
                      "or the last for a causal LM), all, or indices (default: focus)")
    meth.add_argument("--alpha", type=float, default=0.5, help="residual weight: A_hat = a*A + (1-a)*I (default 0.5)")
    meth.add_argument("--head-fusion", default="mean", metavar="mean|max|min|H",
                      help="how heads are fused before propagation, or one head's index (default: mean)")
    meth.add_argument("--start-layer", type=int, default=0, metavar="K", help="rollout starts at layer K (default 0)")
    from attn_desktop.cli_explain import add_explain_arguments

    add_explain_arguments(p)
    from attn_desktop.cli_heads import add_heads_arguments

    add_heads_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


METHODS = ("attention", "rollout", "flow", "saliency", "grad_input", "ig", "grad_rollout", "loo",
           "interventions", "faithfulness", "agreement", "heads", "all")


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if "all" in methods:
        methods = [m for m in METHODS if m not in ("all", "heads")] + [m for m in methods if m not in METHODS or m == "heads"]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    return methods


def _models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attn-desktop models", description="List the model library.")
    p.add_argument("--library", metavar="DIR", help="library folder (default: $ATTN_DESKTOP_MODELS or the user data folder)")
    p.add_argument("--debug", action="store_true")
    return p


def _gui_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attn-desktop",
        description="Offline inspection of attention in local Transformer models. "
        f"Subcommands for headless use: {', '.join(SUBCOMMANDS)} (see attn-desktop SUBCOMMAND --help).",
    )
    p.add_argument("session", nargs="?", metavar="FILE.attn", help="open a session file")
    p.add_argument("--model", help="'demo' (default) or a local model folder")
    p.add_argument("--text-file", metavar="FILE", help="open this text")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--version", action="version", version=f"attn-desktop {__version__}")
    return p


def read_text_file(name: str) -> str:
    """A text from a file, a device, a FIFO or standard input ('-'), capped and decoded by the
    rule the window uses too (core.text_source)."""
    from attn_desktop.core.text_source import read_text

    return read_text(name)


def cmd_analyze(args: argparse.Namespace) -> int:
    from attn_desktop.core.store.session import check_writable
    from attn_desktop.core.text_source import text_argument

    if args.target_text is not None:
        text_argument(args.target_text, "--target-text")
    if args.text is not None:
        text = text_argument(args.text)
    else:
        text = read_text_file("-" if args.stdin else args.text_file)
    from attn_desktop.core.pipeline import check_text

    check_text(text)
    methods = parse_methods(args.methods)
    out = check_writable(args.out)
    if out.suffix != ".attn":
        raise UserError(f"the session file must end in .attn: {quote(out)}")
    from attn_desktop.cli_report import check_report_args, write_analysis_report

    report = check_report_args(args)
    started = time.perf_counter()
    from attn_desktop.cli_explain import explain_options, target_spec, verdict_headline
    from attn_desktop.cli_heads import heads_options, heads_summary
    from attn_desktop.core.model.loading import load_model
    from attn_desktop.core.pipeline import analyze
    from attn_desktop.core.store.session import save_session

    explain = {"methods": methods, "target": target_spec(args), "explain_options": explain_options(args),
               "heads_options": heads_options(args)}
    if args.windows is not None:
        from attn_desktop.core.windows import parse_spec

        if args.truncate:
            raise UserError("give either --windows or --truncate, not both")
        if "all" in [m.strip() for m in args.methods.split(",")]:  # all that applies to windows
            methods = explain["methods"] = [m for m in methods if m not in ("rollout", "flow")]
        if {"rollout", "flow"} & set(methods):
            raise UserError("rollout and flow are not computed with --windows: open the session in the "
                            "window, where they are computed for the window shown")
        explain["windows"] = parse_spec(args.windows)
    if args.on_disk:
        if args.windows is not None or "flow" in methods or set(methods) - {"attention", "rollout"}:
            raise UserError("--on-disk takes attention and rollout only, without --windows")
        import tempfile

        explain["mapped"] = tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        loaded = load_model(args.model, device=args.device)
        if "windows" in explain:
            explain["windows"] = fit_window_size(explain["windows"], loaded.max_positions)
        ticker = terminal_progress(sys.stderr, lines=args.windows is not None and bool(set(methods) - {"attention"}))
        try:
            analysis = analyze(
                loaded, text, truncate=args.truncate, generate=args.generate, target_text=args.target_text,
                progress=ticker, **explain
            )
        finally:
            if ticker is not None:
                ticker.done()
        if args.on_disk:
            add_rollout_on_disk(analysis, methods, args, explain["mapped"])
        else:
            add_methods(analysis, methods, args)
        from attn_desktop.core.store import source_name

        source_name.stamp(analysis.manifest, None if args.text is not None or args.stdin
                          else source_name.of_path(args.text_file))
        save_session(analysis, out)
    finally:
        if args.on_disk:
            import shutil

            shutil.rmtree(explain["mapped"], ignore_errors=True)  # the session holds the arrays now
    if report is not None:
        from attn_desktop.core.store.source_name import document_name

        write_analysis_report(analysis, args, out, document_name=document_name(analysis.manifest))
    print(summary_line(loaded, analysis, time.perf_counter() - started, out)
          + (f", report -> {report}" if report is not None else ""))
    if verdict_headline(analysis):
        print(verdict_headline(analysis))
    if heads_summary(analysis):
        print(heads_summary(analysis))
    return 0


def fit_window_size(spec: dict, limit: int | None) -> dict:
    """--windows SIZE above the model's maximum is clamped to it, as the window's dialog does, with
    one line on stderr saying so; a STRIDE given with it that cannot fit the smaller window becomes
    the default (half a window), also said."""
    size = spec.get("size")
    if limit is None or size is None or size <= limit:
        return spec
    print(f"window size {size} is more than the model's {limit} positions: using {limit}", file=sys.stderr)
    fitted = {**spec, "size": int(limit)}
    stride = spec.get("stride")
    if stride is not None and stride >= limit:  # given for the larger window: it cannot fit this one
        print(f"window stride {stride} does not fit a window of {limit}: using half a window", file=sys.stderr)
        del fitted["stride"]
    return fitted


def add_rollout_on_disk(analysis, methods: list[str], args: argparse.Namespace, folder: str) -> None:
    if "rollout" not in methods:
        return
    from attn_desktop.core.model import mapped
    from attn_desktop.core.propagate.propagation import check_params, parse_fusion

    fusion = parse_fusion(args.head_fusion)
    check_params(analysis, args.alpha, fusion, args.start_layer)
    rollout, entry = mapped.rollout(analysis.arrays["attentions"], Path(folder) / "rollout.npy", args.alpha,
                                    fusion, args.start_layer)
    analysis.arrays["rollout"] = rollout
    analysis.manifest.setdefault("methods", {})["rollout"] = entry


def add_methods(analysis, methods: list[str], args: argparse.Namespace) -> None:
    if not {"rollout", "flow"} & set(methods):
        return
    from attn_desktop.core.propagate.propagation import (
        add_flow,
        add_rollout,
        check_params,
        parse_fusion,
        parse_rows,
    )

    fusion = parse_fusion(args.head_fusion)
    check_params(analysis, args.alpha, fusion, args.start_layer)
    rows = parse_rows(args.flow_rows, analysis) if "flow" in methods else []
    if "rollout" in methods:
        add_rollout(analysis, args.alpha, fusion, args.start_layer)
    if rows:
        from attn_desktop.core.propagate.flow_cost import SAY_ESTIMATE_AFTER_S, plan
        from attn_desktop.core.propagate.flow_pool import default_workers

        cost = plan(analysis.num_layers, len(analysis.tokens), len(rows), default_workers())
        if cost.seconds >= SAY_ESTIMATE_AFTER_S and cost.refusal is None:
            print(f"attn-desktop: {cost.describe()}", file=sys.stderr, flush=True)
        add_flow(analysis, rows, args.alpha, fusion, parallel=True)


def summary_line(loaded, analysis, seconds: float, out: Path) -> str:
    n = len(analysis.tokens)
    parts = [f"{loaded.name} ({loaded.kind})", f"{n} tokens"]
    if analysis.decoder_tokens is not None:
        parts.append(f"{len(analysis.decoder_tokens)} decoder tokens")
    from attn_desktop.core.tokens import count_unknown

    unknown = count_unknown(analysis.tokens) + count_unknown(analysis.decoder_tokens)
    if unknown:
        parts.append(f"{unknown} unknown token" + ("s" if unknown != 1 else "") + " (not in the vocabulary)")
    if analysis.manifest.get("truncation", {}).get("truncated"):
        parts.append(f"truncated from {analysis.manifest['truncation']['tokens_before_truncation']}")
    gen = analysis.manifest.get("generation")
    if gen:
        parts.append(f"{gen['output_tokens']} output tokens ({gen['source']})")
    layers = f"{loaded.num_layers}x{loaded.num_heads}"
    if loaded.is_encoder_decoder:
        layers = f"{loaded.num_layers}+{loaded.num_decoder_layers} layers x {loaded.num_heads} heads"
    else:
        layers += " layers x heads"
    parts.append(layers)
    methods = analysis.manifest.get("methods", {})
    if "rollout" in methods:
        parts.append(f"rollout {methods['rollout']['seconds'] * 1000:.0f} ms")
    if "flow" in methods:
        flow = methods["flow"]
        exact = "exact" if flow["exact"] else "approximate"
        parts.append(f"flow {len(flow['rows'])} row(s) {exact} (bound {flow['max_abs_error_bound']:.1e}) "
                     f"{flow['seconds']:.2f} s")
    if "windows" in analysis.manifest:
        from attn_desktop.core.windows import summary

        parts[1] = summary(analysis)
        parts += [f"model {analysis.manifest['timings']['total']:.2f} s", f"total {seconds:.2f} s", f"-> {quote(out)}"]
        return ", ".join(parts)
    parts += [f"forward {analysis.manifest['timings']['forward'] * 1000:.0f} ms",
              f"total {seconds:.2f} s", f"-> {quote(out)}"]
    return ", ".join(parts)


def cmd_models(args: argparse.Namespace) -> int:
    from attn_desktop.core.store.library import (
        default_library_dir,
        human_count,
        human_size,
        list_models,
    )

    folder = Path(args.library).expanduser() if args.library else default_library_dir()
    entries = list_models(folder)
    print(f"library: {shown(folder)}" + ("" if folder.is_dir() else " (does not exist yet)"))
    rows = [("NAME", "KIND", "LAYERSxHEADS", "PARAMS", "MAX LEN", "SIZE", "STATUS")]
    for e in entries:
        if e.error:
            rows.append((shown(e.name), "-", "-", "-", "-", "-", f"cannot load: {e.error}"))
        else:
            rows.append((
                shown(e.name), e.kind, f"{e.num_layers}x{e.num_heads}", human_count(e.num_parameters),
                str(e.max_positions or "-"), human_size(e.size_bytes), "ok",
            ))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6])
    return 0


def _print_error(message: str) -> None:
    """One line on stderr, whatever bytes the message carries (a surrogate-escaped path)."""
    line = f"attn-desktop: error: {' '.join(message.splitlines())}\n"
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr.write(line.encode(encoding, "backslashreplace").decode(encoding, "replace"))


def _end_on_sigterm() -> None:
    """SIGTERM during a headless command unwinds like Ctrl+C, so a save in progress removes its
    temporary file (SIGKILL cannot be caught: the next save to that folder removes it)."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (embedded use)
        signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in SUBCOMMANDS:
            command, rest = argv[0], argv[1:]
            if command == "report":
                from attn_desktop.cli_report import cmd_report, report_parser

                return cmd_report(report_parser().parse_args(rest))
            if command == "prune":
                from attn_desktop.cli_heads import cmd_prune, prune_parser

                return cmd_prune(prune_parser().parse_args(rest))
            if as_program:
                _end_on_sigterm()
            parser = _analyze_parser() if command == "analyze" else _models_parser()
            args = parser.parse_args(rest)
            return cmd_analyze(args) if command == "analyze" else cmd_models(args)
        args = _gui_parser().parse_args(argv)
        from attn_desktop.gui.app import run

        return run(model=args.model, text_file=args.text_file, session=args.session, device=args.device)
    except UserError as exc:
        if debug:
            raise
        _print_error(str(exc))
        return 2
    except Cancelled:
        print("attn-desktop: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


class _Ticker:
    """One self-overwriting progress line on a terminal: '  42%  Integrated Gradients'."""

    def __init__(self, stream) -> None:
        self.stream, self.width = stream, 0

    def __call__(self, fraction: float, message: str) -> None:
        from attn_desktop.core.explain.document_progress import ESTIMATE_PREFIX

        if message.startswith(ESTIMATE_PREFIX):  # the estimate stays on screen
            self.done()
            self.stream.write(f"attn-desktop: {message}\n")
            self.stream.flush()
            return
        line = f"  {max(0.0, min(1.0, fraction)):4.0%}  {message}"[:100]
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def done(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


class _Lines:
    """Progress as lines when stderr is not a terminal (a windowed explanation takes minutes to hours):
    the estimate, then a line every 5% or every 30 s."""

    def __init__(self, stream, clock=time.monotonic) -> None:
        self.stream, self.clock = stream, clock
        self.step, self.said = -1, clock()

    def __call__(self, fraction: float, message: str) -> None:
        from attn_desktop.core.explain.document_progress import ESTIMATE_PREFIX

        fraction = max(0.0, min(1.0, fraction))
        if message.startswith(ESTIMATE_PREFIX):
            self.stream.write(f"attn-desktop: {message}\n")
        elif int(fraction * 20) > self.step or self.clock() - self.said >= 30:
            self.stream.write(f"  {fraction:4.0%}  {message}\n")
            self.step = int(fraction * 20)
        else:
            return
        self.said = self.clock()
        self.stream.flush()

    def done(self) -> None:
        """Lines already said stay: nothing to wipe."""


def terminal_progress(stream, lines: bool = False):
    """A progress callback for `analyze` when `stream` is a terminal (an explained run takes minutes
    and said nothing until the end); else, with `lines` (a windowed explanation), progress lines;
    else None: piped output stays as it was."""
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return _Ticker(stream)
    return _Lines(stream) if lines else None


if __name__ == "__main__":
    raise SystemExit(main())

