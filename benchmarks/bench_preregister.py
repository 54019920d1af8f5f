#!/usr/bin/env python
"""Benchmark: the pre-registration appendix of the Tomz-Weeks design (issue 8's speed target).

1. **The whole appendix**, as `hetreport preregister examples/tomz-weeks/design.yml --out DIR`
   runs it: the detection simulation (the respondent analysis, 100 groups, N = 1,200, 50
   replications, 2 chains x 500 draws each, on local processes, one per core), the mock report
   (all three analyses fitted with the spec's own sampler, 4 chains x 1,000 draws, and rendered
   to HTML and PDF), the prior predictive draws and the appendix itself. Target: < 15 minutes on
   2 cores. The simulation's share and the compile/swap counts are printed.
2. **The three routes of one replication's hierarchical fit**, in this process, on a few replications of the
   same cell (`--ratio-reps`, default 3): the log density compiled once per machine (the default for a
   Gaussian model), the PyMC graph compiled once per cell with the replication's data swapped in (nutpie
   `with_data`), and the graph compiled for every replication (`force_compile=True`). All three sample the
   same posterior; the ratios are of the hierarchical fit's wall time.

Run from the repository root (not collected by pytest):

    python benchmarks/bench_preregister.py                 # both parts, ~15 minutes on 2 cores
    python benchmarks/bench_preregister.py --skip-appendix  # the ratio only, ~3 minutes
    python benchmarks/bench_preregister.py --baseline REV --reps 6   # this checkout against REV

3. With ``--baseline REV``: only the old/new ratio of the detection simulation (its share of the appendix's
   time): the first ``--reps`` replications of every cell of the Tomz-Weeks design on ``--workers`` local
   processes, with revision REV's hetreport and with this checkout's, each in a fresh interpreter, one after
   the other in this invocation; prints both wall times, the ratio, the machine's load, and whether the two
   runs' estimates agree.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DESIGN = ROOT / "examples" / "tomz-weeks" / "design.yml"


def appendix(workers: int | None, keep: Path | None) -> None:
    import pandas as pd

    from hetreport.prereg import preregister

    out = keep or Path(tempfile.mkdtemp(prefix="bench-prereg-")) / "out"
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    done = preregister(DESIGN, out, workers=workers, log=lambda m: print(f"  [{time.perf_counter() - t0:6.0f} s] {m}", flush=True))
    total = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    sim = pd.read_csv(out / "simulation.csv")
    ok = sim[sim["status"] == "ok"]
    print(f"\nappendix of {DESIGN.relative_to(ROOT)}: {total / 60:.1f} min wall ({done['where']})")
    print(
        f"  detection simulation: {done['simulation_s'] / 60:.1f} min for {len(sim)} replications ({len(ok)} ok); "
        f"compiled {int(ok['compile'].isin(['compile', 'fallback']).sum())}x, swapped {int((ok['compile'] == 'swap').sum())}x; "
        f"median sampling {ok['sampling_s'].median():.1f} s, median compile {ok.loc[ok['compile'] != 'swap', 'compile_s'].median():.1f} s"
    )
    print(f"  everything else (mock report fit + render, prior predictive, appendix render): {(total - done['simulation_s']) / 60:.1f} min")
    print(
        f"  CPU time of this process and its worker processes: {cpu / 60:.1f} min, i.e. {cpu / 120:.1f} min of wall time on 2 otherwise idle "
        f"cores (load average now {os.getloadavg()[0]:.1f}: other programs on this machine slow the wall time)"
    )
    print(f"  target < 15 min: {'met' if total < 900 else 'NOT met'}")
    if keep is None:
        shutil.rmtree(out.parent, ignore_errors=True)


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def ratio(reps: int) -> None:
    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import cells, run_replication
    from hetreport.simstudy.engine import WorkerCache
    from hetreport.spec import load_spec

    plan = resolve_plan(load_spec(DESIGN))
    cell = cells(plan)[0]
    warnings.simplefilter("ignore")
    cache = WorkerCache()
    run_replication(plan, cell, 0, cache, graph=True)  # warm-up: compiles the cell's graph (and warms PyTensor's cache)
    run_replication(plan, cell, 0, WorkerCache())  # warm-up: loads the compiled density from numba's cache
    t_dens, t_swap, t_fresh = [], [], []
    for r in range(1, reps + 1):
        d = run_replication(plan, cell, r, WorkerCache())["summary"]
        a = run_replication(plan, cell, r, cache, graph=True)["summary"]
        b = run_replication(plan, cell, r, WorkerCache(), force_compile=True, graph=True)["summary"]
        assert d["compile"] == "density" and a["compile"] == "swap" and b["compile"] == "compile"
        assert abs(a["sd_between_mean"] - b["sd_between_mean"]) < 1e-9, "the swapped and the fresh model must sample the same posterior"
        t_dens.append(d["compile_s"] + d["sampling_s"])
        t_swap.append(a["compile_s"] + a["sampling_s"])
        t_fresh.append(b["compile_s"] + b["sampling_s"])
        print(
            f"  replication {r}: compiled density {t_dens[-1]:.1f} s, graph swapped {t_swap[-1]:.1f} s, "
            f"graph fresh compile {t_fresh[-1]:.1f} s (compile {b['compile_s']:.1f} s); "
            f"sd_between_mean {d['sd_between_mean']:.3f} (density) vs {a['sd_between_mean']:.3f} (graph)"
        )
    print(
        f"\n{reps} replications of {cell.id}, hierarchical fit: compiled density {sum(t_dens):.1f} s, graph with swapped data "
        f"{sum(t_swap):.1f} s, graph compiled per replication {sum(t_fresh):.1f} s; swapped / density {sum(t_swap) / sum(t_dens):.2f}x, "
        f"fresh / swapped {sum(t_fresh) / sum(t_swap):.2f}x"
    )


SUBSET = """
import dataclasses, json, time, warnings
warnings.simplefilter("ignore")
from hetreport.prereg.plan import resolve_plan
from hetreport.prereg.simulate import run_simulation
from hetreport.spec import load_spec
plan = resolve_plan(load_spec("examples/tomz-weeks/design.yml"))
plan = dataclasses.replace(plan, replications={reps})
t0 = time.perf_counter()
sim = run_simulation(plan, workers={workers})
wall = time.perf_counter() - t0
g = sim.groups.sort_values(["cell_index", "rep", "method", "group"])
s = sim.summary.sort_values(["cell_index", "rep"])
print(json.dumps({{"wall_s": wall, "failed": int((s["status"] != "ok").sum()), "estimate": g["estimate"].tolist(),
                  "sd_between_mean": s["sd_between_mean"].tolist()}}))
"""


def compare(rev: str, reps: int, workers: int) -> None:
    import numpy as np
    from baseline import ROOT as _root
    from baseline import load, run_in, tree_at

    old_tree = tree_at(rev)
    code = SUBSET.format(reps=reps, workers=workers)
    print(
        f"detection simulation of {DESIGN.relative_to(ROOT)}, {reps} replications per cell, {workers} local processes; {load()} at the start",
        flush=True,
    )
    old = run_in(old_tree, code)
    print(f"  {rev[:12]}: {old['wall_s']:.1f} s ({old['failed']} failed); {load()}", flush=True)
    new = run_in(_root, code)
    print(f"  this checkout: {new['wall_s']:.1f} s ({new['failed']} failed); {load()}", flush=True)
    print(
        f"old / new: {old['wall_s'] / new['wall_s']:.2f}x wall, {old['cpu_s'] / new['cpu_s']:.2f}x CPU ({old['cpu_s']:.0f} / {new['cpu_s']:.0f} CPU-s)"
    )
    for k in ("estimate", "sd_between_mean"):
        a, b = np.asarray(old[k], float), np.asarray(new[k], float)
        same = a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        diff = float(np.nanmax(np.abs(a - b))) if a.shape == b.shape and a.size else float("nan")
        print(f"  {k}: {'identical' if same else f'differ, max |old - new| = {diff:.4g}'} over {a.size} values")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, help="local processes for the simulation (default: every core)")
    ap.add_argument("--ratio-reps", type=int, default=3)
    ap.add_argument("--skip-appendix", action="store_true")
    ap.add_argument("--skip-ratio", action="store_true")
    ap.add_argument("--keep", type=Path, help="write the appendix here instead of a temporary folder")
    ap.add_argument(
        "--baseline", metavar="REV", help="time the detection simulation with revision REV and with this checkout and print the ratio"
    )
    ap.add_argument("--reps", type=int, default=6, help="with --baseline: replications per cell")
    args = ap.parse_args()
    if args.baseline:
        compare(args.baseline, args.reps, args.workers or 2)
        return
    if not args.skip_appendix:
        appendix(args.workers, args.keep)
    if not args.skip_ratio:
        ratio(args.ratio_reps)


if __name__ == "__main__":
    main()
