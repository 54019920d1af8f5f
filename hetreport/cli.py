"""Command line: each command is one call into the API; errors are one paragraph, no traceback."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from pathlib import Path

from .errors import HetreportError, HetreportWarning


def _say(msg: str) -> None:
    print(f"hetreport: {msg}", file=sys.stderr, flush=True)


def _warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, HetreportWarning):
        print(textwrap.fill(f"warning: {message}", width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False), file=sys.stderr)
    # other libraries' warnings (PyTensor BLAS, numba) are noise for a user of this CLI


def cmd_fit(args) -> int:
    from .api import fit

    results = fit(args.spec, progress=args.progress, log=_say)
    out = results.save(args.out)
    _say(f"wrote {out / 'effects.csv'} and the posterior, diagnostics and manifest in {out}")
    return 0


def cmd_run(args) -> int:
    from .api import fit
    from .report import build_and_render

    if len(args.spec) > 1 or Path(args.spec[0]).is_dir():
        return cmd_run_project(args)
    args.spec = args.spec[0]  # one spec: today's single-study run and layout
    if args.scheduler or args.workers:
        _say("one spec: --scheduler and --workers apply to several specs (a project) and are ignored")
    results = fit(args.spec, progress=args.progress, log=_say, preregistration=args.preregistration)
    out = results.save(args.out)
    _say(f"wrote results to {out}")
    outcome = build_and_render(results, out, formats=args.formats, route=args.route, log=_say)
    for fmt, path in outcome.outputs.items():
        print(f"{fmt.upper()}: {path}")
    return 0


def cmd_run_project(args) -> int:
    from .api import run_project

    if getattr(args, "preregistration", None):
        from .errors import SpecError

        raise SpecError("--preregistration compares one study with its registration; run each registered study on its own "
                        "(`hetreport run SPEC --preregistration ...`), or give the registration in each spec's preregistration: key.")
    outcome = run_project(args.spec, args.out, formats=args.formats, route=args.route, scheduler=args.scheduler,
                          workers=args.workers, log=_say)
    print(f"INDEX: {outcome.index}")
    for s in outcome.studies:
        for fmt, path in s.outputs.items():
            print(f"{fmt.upper()}: {outcome.out / 'site' / path}")
    for s in outcome.failed:
        print(textwrap.fill(f"failed: {s.spec_path}: {s.error_kind}: {s.error}", width=100, subsequent_indent="  ",
                            break_long_words=False, break_on_hyphens=False), file=sys.stderr)
    if outcome.failed:
        _say(f"{len(outcome.failed)} of {len(outcome.studies)} studies failed (listed on the index); the others were rendered")
        return 1
    return 0


def cmd_report(args) -> int:
    from .report import build_and_render
    from .results import load_results

    results = load_results(args.dir)
    outcome = build_and_render(results, Path(args.dir), formats=args.formats, route=args.route, log=_say)
    for fmt, path in outcome.outputs.items():
        print(f"{fmt.upper()}: {path}")
    return 0


def cmd_preregister(args) -> int:
    from .prereg import preregister

    done = preregister(args.spec, args.out, formats=args.formats, route=args.route, scheduler=args.scheduler, workers=args.workers, log=_say)
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
    p = argparse.ArgumentParser(prog="hetreport", description="Heterogeneous treatment effects: interaction and hierarchical models, reported.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit every analysis of a spec and save the results")
    f.add_argument("spec", help="the study spec (YAML)")
    f.add_argument("--out", required=True, help="folder for effects.csv, posterior, diagnostics, manifest")
    f.set_defaults(func=cmd_fit)
    for name, helptext in (("run", "fit and render the report"), ("report", "re-render the report from saved results, without refitting")):
        r = sub.add_parser(name, help=helptext)
        if name == "run":
            r.add_argument("spec", nargs="+", help="the study spec (YAML); several specs, or a folder of specs, make one project with an index page")
            r.add_argument("--out", required=True, help="output folder")
            r.add_argument("--scheduler", help="several specs: address of a running Dask scheduler (tcp://host:port); default: local processes")
            r.add_argument("--workers", type=int, help="several specs: local processes (default: one per study, at most one per core)")
            r.add_argument("--preregistration", help="a pre-registration appendix folder (or its registration.json): "
                                                       "the report's first page says whether the analysis is the registered one")
            r.set_defaults(func=cmd_run)
        else:
            r.add_argument("dir", help="a folder written by `hetreport fit` or `hetreport run`")
            r.set_defaults(func=cmd_report)
        r.add_argument("--format", dest="formats", action="append", choices=["html", "pdf", "docx"], help="output format (repeatable; default: the spec's report.formats)")
        g = r.add_mutually_exclusive_group()
        g.add_argument("--quarto", dest="quarto", action="store_true", default=None, help="render with Quarto (error if not installed)")
        g.add_argument("--no-quarto", dest="quarto", action="store_false", help="render with the built-in pandoc + Typst route")
    pre = sub.add_parser("preregister", help="render a pre-registration appendix from a design-only spec")
    pre.add_argument("spec", help="the study spec with a design: block in place of data:")
    pre.add_argument("--out", required=True, help="folder for the appendix, the mock report and registration.json")
    pre.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port) for the simulation; default: local processes")
    pre.add_argument("--workers", type=int, help="local processes for the simulation (default: every core)")
    pre.add_argument("--format", dest="formats", action="append", choices=["html", "pdf"], help="output format (repeatable; default: the spec's report.formats)")
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
    sim.add_argument("--format", dest="formats", action="append", choices=["html", "pdf"], help="output format (repeatable; default: the file's report.formats)")
    g = sim.add_mutually_exclusive_group()
    g.add_argument("--quarto", dest="quarto", action="store_true", default=None, help="render with Quarto (error if not installed)")
    g.add_argument("--no-quarto", dest="quarto", action="store_false", help="render with the built-in pandoc + Typst route")
    sim.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: when stderr is a terminal)")
    sim.set_defaults(func=cmd_simulate)
    for s in (f, *[sub.choices[n] for n in ("run", "report")]):
        s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(), help="show the sampler's progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "quarto"):
        args.route = _route(args)
    warnings.showwarning = _warning
    try:
        return args.func(args)
    except HetreportError as exc:
        kind = getattr(exc, "kind", "Error")
        print(textwrap.fill(f"{kind}: {exc}", width=100, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user mistake: still one paragraph unless asked
        if os.environ.get("HETREPORT_DEBUG"):
            raise
        print(textwrap.fill(f"Internal error: {type(exc).__name__}: {exc}. Nothing was written. This is a bug in hetreport; "
                            "rerun with HETREPORT_DEBUG=1 to see the traceback and report it.", width=100,
                            subsequent_indent="  ", break_long_words=False, break_on_hyphens=False), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
