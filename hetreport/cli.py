"""Command line: each command is one call into the API; errors are one paragraph, no traceback.

Nothing heavy is imported here: the API checks the spec and reads the data before it loads the model
stack, so a spec or data error prints within a second (benchmarks/bench_errors.py)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from pathlib import Path

from .errors import HetreportError, HetreportWarning, visible


def _say(msg: str) -> None:
    print(visible(f"hetreport: {msg}"), file=sys.stderr, flush=True)


def _warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, HetreportWarning):
        print(
            textwrap.fill(
                visible(f"warning: {message}"), width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
            ),
            file=sys.stderr,
        )
    # other libraries' warnings (PyTensor BLAS, numba) are noise for a user of this CLI


def cmd_fit(args) -> int:
    from . import outdir

    with outdir.Output(args.out) as o:  # an unusable or foreign --out stops here, before any fitting (and heavy imports)
        from .api import fit

        results = fit(args.spec, progress=args.progress, log=_say)
        outdir.fault("fitted")
        stage = o.stage()
        results.save(stage)
        out = o.commit(stage)
    _say(f"wrote {out / 'effects.csv'} and the posterior, diagnostics and manifest in {out}")
    return 0


def cmd_check(args) -> int:
    from .api import check
    from .check import summary

    study = check(args.spec, log=_say)
    print(visible(summary(study)))
    return 2 if study.refusals else 0


def cmd_run(args) -> int:
    from . import outdir
    from .errors import RenderError

    if len(args.spec) > 1 or Path(args.spec[0]).is_dir():
        return cmd_run_project(args)
    args.spec = args.spec[0]  # one spec: today's single-study run and layout
    if args.scheduler or args.workers:
        _say("one spec: --scheduler and --workers apply to several specs (a project) and are ignored")
    with outdir.Output(args.out) as o:  # an unusable or foreign --out stops here, before any fitting (and heavy imports)
        from .api import fit

        results = fit(args.spec, progress=args.progress, log=_say, preregistration=args.preregistration)
        outdir.fault("fitted")
        from .report import build_and_render  # after the fit: the report stack is not needed to find a spec error

        stage = o.stage()
        results.save(stage)
        try:
            outcome = build_and_render(results, stage, formats=args.formats, route=args.route, log=_say)
        except Exception as exc:  # the fit is worth keeping: the results go in, without a report
            out = o.commit(stage)
            kept = (
                f"The new results were written to {out} without a report (an earlier report described earlier results); "
                f"fix this and run `hetreport report {out}` to render without refitting."
            )
            if isinstance(exc, RenderError):
                raise RenderError(f"{_drop_nothing_written(str(exc))} {kept}") from None
            raise _ResultsKept(f"{type(exc).__name__}: {exc}. {kept}") from exc
        out = o.commit(stage)
    _say(f"wrote results and report to {out}")
    for fmt, path in outcome.outputs.items():
        print(f"{fmt.upper()}: {out / 'report' / Path(path).name}")
    return 0


class _ResultsKept(Exception):
    """A bug while building the report after the results were written."""


def _drop_nothing_written(message: str) -> str:
    """A renderer's closing 'Nothing was written to <folder> ...' names a private staging folder; the caller says what is true."""
    i = message.find(" Nothing was written to ")
    return message[:i] if i >= 0 else message


def cmd_run_project(args) -> int:
    from .api import run_project

    if getattr(args, "preregistration", None):
        from .errors import SpecError

        raise SpecError(
            "--preregistration compares one study with its registration; run each registered study on its own "
            "(`hetreport run SPEC --preregistration ...`), or give the registration in each spec's preregistration: key."
        )
    outcome = run_project(
        args.spec, args.out, formats=args.formats, route=args.route, scheduler=args.scheduler, workers=args.workers, log=_say
    )
    print(f"INDEX: {outcome.index}")
    for s in outcome.studies:
        for fmt, path in s.outputs.items():
            print(f"{fmt.upper()}: {outcome.out / 'site' / path}")
    for s in outcome.failed:
        print(
            textwrap.fill(
                f"failed: {s.spec_path}: {s.error_kind}: {s.error}",
                width=100,
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            ),
            file=sys.stderr,
        )
    if outcome.failed:
        _say(f"{len(outcome.failed)} of {len(outcome.studies)} studies failed (listed on the index); the others were rendered")
        return 1
    return 0


def cmd_report(args) -> int:
    from . import outdir
    from .errors import RenderError
    from .report import build_and_render
    from .results import load_results

    d = Path(args.dir)
    outdir.recover(d)
    if not d.is_dir():
        load_results(d)  # the error that says what a results folder is
    with outdir.Output(d, what="the results folder") as o:
        results = load_results(d)
        stage = o.stage(carry=True)  # the fitted results, linked unchanged, and a new report
        try:
            outcome = build_and_render(results, stage, formats=args.formats, route=args.route, log=_say)
        except RenderError as exc:
            raise RenderError(f"{_drop_nothing_written(str(exc))} Nothing was written; {d} is as it was.") from None
        out = o.commit(stage)
    for fmt, path in outcome.outputs.items():
        print(f"{fmt.upper()}: {out / 'report' / Path(path).name}")
    return 0


def cmd_preregister(args) -> int:
    from .spec import load_spec

    spec = load_spec(args.spec)  # a spec error before the appendix's report stack is imported
    from .prereg import preregister

    done = preregister(spec, args.out, formats=args.formats, route=args.route, scheduler=args.scheduler, workers=args.workers, log=_say)
    for fmt, path in done["appendix"].items():
        print(f"APPENDIX {fmt.upper()}: {path}")
    for fmt, path in done["mock"].items():
        print(f"MOCK REPORT {fmt.upper()}: {path}")
    print(f"RECORD: {done['record']}")
    return 0


def cmd_simulate(args) -> int:
    from .simstudy import load_design, render_simulation, run_grid

    design = load_design(args.sim)
    try:
        run_grid(design, args.out, scheduler=args.scheduler, workers=args.workers, resume=args.resume, progress=args.progress, log=_say)
    except KeyboardInterrupt:
        _say(f"interrupted; finished replications are in {Path(args.out) / 'results.parquet'}: add --resume to run the rest")
        return 130
    if args.no_report:
        return 0
    outcome = render_simulation(args.out, design=design, formats=args.formats, route=args.route, log=_say)
    for fmt, path in outcome.outputs.items():
        print(f"{fmt.upper()}: {path}")
    return 0


def _route(args) -> str:
    return {True: "quarto", False: "builtin", None: "auto"}[args.quarto]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hetreport", description="Heterogeneous treatment effects: interaction and hierarchical models, reported."
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit every analysis of a spec and save the results")
    f.add_argument("spec", help="the study spec (YAML)")
    f.add_argument("--out", required=True, help="folder for effects.csv, posterior, diagnostics, manifest")
    f.set_defaults(func=cmd_fit)
    c = sub.add_parser("check", help="check the spec and the data, and show the groups and models `run` would fit, without fitting")
    c.add_argument("spec", help="the study spec (YAML)")
    c.set_defaults(func=cmd_check)
    for name, helptext in (("run", "fit and render the report"), ("report", "re-render the report from saved results, without refitting")):
        r = sub.add_parser(name, help=helptext)
        if name == "run":
            r.add_argument(
                "spec", nargs="+", help="the study spec (YAML); several specs, or a folder of specs, make one project with an index page"
            )
            r.add_argument("--out", required=True, help="output folder")
            r.add_argument(
                "--scheduler", help="several specs: address of a running Dask scheduler (tcp://host:port); default: local processes"
            )
            r.add_argument("--workers", type=int, help="several specs: local processes (default: one per study, at most one per core)")
            r.add_argument(
                "--preregistration",
                help="a pre-registration appendix folder (or its registration.json): "
                "the report's first page says whether the analysis is the registered one",
            )
            r.set_defaults(func=cmd_run)
        else:
            r.add_argument("dir", help="a folder written by `hetreport fit` or `hetreport run`")
            r.set_defaults(func=cmd_report)
        r.add_argument(
            "--format",
            dest="formats",
            action="append",
            choices=["html", "pdf", "docx"],
            help="output format (repeatable; default: the spec's report.formats)",
        )
        g = r.add_mutually_exclusive_group()
        g.add_argument("--quarto", dest="quarto", action="store_true", default=None, help="render with Quarto (error if not installed)")
        g.add_argument("--no-quarto", dest="quarto", action="store_false", help="render with the built-in pandoc + Typst route")
    pre = sub.add_parser("preregister", help="render a pre-registration appendix from a design-only spec")
    pre.add_argument("spec", help="the study spec with a design: block in place of data:")
    pre.add_argument("--out", required=True, help="folder for the appendix, the mock report and registration.json")
    pre.add_argument(
        "--scheduler", help="address of a running Dask scheduler (tcp://host:port) for the simulation; default: local processes"
    )
    pre.add_argument("--workers", type=int, help="local processes for the simulation (default: every core)")
    pre.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=["html", "pdf"],
        help="output format (repeatable; default: the spec's report.formats)",
    )
    g = pre.add_mutually_exclusive_group()
    g.add_argument("--quarto", dest="quarto", action="store_true", default=None, help="render with Quarto (error if not installed)")
    g.add_argument("--no-quarto", dest="quarto", action="store_false", help="render with the built-in pandoc + Typst route")
    pre.set_defaults(func=cmd_preregister)
    sim = sub.add_parser("simulate", help="run a grid of simulated studies and report how the approaches compare")
    sim.add_argument("sim", help="the simulation design (SIM.yml; see examples/simulation/paper.yml)")
    sim.add_argument("--out", required=True, help="folder for results.parquet and the report")
    sim.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port); default: local processes")
    sim.add_argument("--workers", type=int, help="local processes (default: the file's workers, else every core)")
    sim.add_argument("--resume", action="store_true", help="continue the run in --out: only replications not yet done are run")
    sim.add_argument("--no-report", action="store_true", help="run the grid only")
    sim.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=["html", "pdf"],
        help="output format (repeatable; default: the file's report.formats)",
    )
    g = sim.add_mutually_exclusive_group()
    g.add_argument("--quarto", dest="quarto", action="store_true", default=None, help="render with Quarto (error if not installed)")
    g.add_argument("--no-quarto", dest="quarto", action="store_false", help="render with the built-in pandoc + Typst route")
    sim.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: when stderr is a terminal)"
    )
    sim.set_defaults(func=cmd_simulate)
    for s in (f, *[sub.choices[n] for n in ("run", "report")]):
        s.add_argument(
            "--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(), help="show the sampler's progress bar"
        )
    return p


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that the run unwinds (staging folders removed, locks released)."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _what_was_written() -> str:
    from . import outdir

    done = outdir.written()
    if not done:
        return "Nothing was written."
    return "Written before it stopped: " + ", ".join(str(p) for p in done) + " (complete)."


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    if hasattr(args, "quarto"):
        args.route = _route(args)
    # the CLI's own warning format and SIGTERM handling, for this call only: main() called from a
    # Python process (a test runner, a notebook) gets its handlers back afterwards
    shown, previous = warnings.showwarning, None
    warnings.showwarning = _warning
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread (hetreport.cli.main called from a thread)
        pass
    try:
        return _dispatch(args)
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args) -> int:
    try:
        return args.func(args)
    except HetreportError as exc:
        kind = getattr(exc, "kind", "Error")
        print(
            textwrap.fill(visible(f"{kind}: {exc}"), width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False),
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"interrupted. {_what_was_written()}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"terminated (SIGTERM). {_what_was_written()}", file=sys.stderr)
        return 143
    except _ResultsKept as exc:
        if os.environ.get("HETREPORT_DEBUG"):
            raise
        print(
            textwrap.fill(
                f"Internal error while building the report: {exc} This is a bug in hetreport; rerun with "
                "HETREPORT_DEBUG=1 to see the traceback and report it.",
                width=100,
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            ),
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # a bug, not a user mistake: still one paragraph unless asked
        if os.environ.get("HETREPORT_DEBUG"):
            raise
        print(
            textwrap.fill(
                visible(
                    f"Internal error: {type(exc).__name__}: {exc}. {_what_was_written()} This is a bug in hetreport; "
                    "rerun with HETREPORT_DEBUG=1 to see the traceback and report it."
                ),
                width=100,
                subsequent_indent="  ",
                break_long_words=False,
                break_on_hyphens=False,
            ),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
