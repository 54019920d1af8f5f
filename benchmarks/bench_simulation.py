#!/usr/bin/env python
"""Benchmark: the simulation grid's throughput on this machine.

1. Replications per minute on local processes (``ProcessPoolExecutor``, one per core) against a
   two-worker Dask ``LocalCluster`` (one thread per worker process), running the same replications
   of the same cell (the paper's design at N = 1,000, heterogeneity SD .25, every approach, the
   sampler of ``examples/simulation/paper.yml``). The wall time counts everything from submitting the
   first task to the last result, including worker start-up and one model compilation per worker;
   the steady-state rate leaves out each worker's first (compiling) replication.
2. The compile-once speed-up, in this process: a replication's hierarchical fit with a fresh
   ``nutpie.compile_pymc_model`` against the same fit with the data swapped into the cell's compiled
   model (``CompiledPyMCModel.with_data``); both sample the same posterior.

Run from the repository root (it is not collected by pytest):

    python benchmarks/bench_simulation.py                  # 12 replications each way, ~5 min on 2 cores
    python benchmarks/bench_simulation.py --reps 24 --workers 2
    python benchmarks/bench_simulation.py --baseline REV --cells 1 --reps 6   # this checkout against REV

3. With ``--baseline REV``: only the old/new ratio. The same fixed subset of the paper's grid (the first
   ``--cells`` cells of N x SD, ``--reps`` replications each, every approach, ``--workers`` local
   processes) runs with revision REV's hetreport and with this checkout's, each in a fresh interpreter,
   one after the other in this invocation; it prints both wall times, the ratio, the machine's load, and
   whether the two runs' per-replication metrics agree (same seeds: identical unless the sampler route
   changed, then within Monte Carlo error).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def design(reps: int, n: int):
    from hetreport.simstudy.design import load_design

    base = load_design(ROOT / "examples" / "simulation" / "paper.yml")
    return base.model_copy(update={"sample_sizes": [n], "heterogeneity_sds": [0.25], "replications": reps})


def throughput(label: str, d, out: Path, **kw) -> dict:
    from hetreport.simstudy.executor import run_grid

    t0 = time.perf_counter()
    res = run_grid(d, out, progress=False, **kw)
    wall = time.perf_counter() - t0
    reps = res.drop_duplicates(["cell_index", "rep"])
    h = res[res["approach"] == "hierarchical"]
    first = h[h["compile"] == "compile"]
    swapped = h[h["compile"] == "swap"]
    workers = max(1, h["worker"].nunique())
    # steady state: the swapped replications' task time, shared by the workers that ran them
    steady_s = swapped["task_s"].sum() / workers
    out_ = {
        "label": label,
        "reps": len(reps),
        "wall_s": wall,
        "per_min": 60 * len(reps) / wall,
        "steady_per_min": 60 * len(swapped) / steady_s if steady_s else float("nan"),
        "compiles": len(first),
        "failed": int((res["status"] != "ok").sum()),
    }
    print(
        f"{label:<28} {out_['reps']:>4} reps  {wall:7.1f} s wall  {out_['per_min']:6.2f} reps/min end to end  "
        f"{out_['steady_per_min']:6.2f} reps/min steady  ({out_['compiles']} compiles, {out_['failed']} failed rows)",
        flush=True,
    )
    return out_


def compile_once(d, k: int) -> None:
    from hetreport.simstudy.design import cells
    from hetreport.simstudy.engine import WorkerCache, analysis_inputs, fit_hierarchical_cached
    from hetreport.simstudy.generate import seeds, simulate

    cell = cells(d)[0]
    cache = WorkerCache()
    fresh, swapped = [], []
    for rep in range(k + 1):
        sim = simulate(d, cell, rep)
        adata, groups = analysis_inputs(d, sim)
        seed = seeds(d, cell, rep)[2]
        t0 = time.perf_counter()
        _, info = fit_hierarchical_cached(d, cell, adata, groups, seed, cache=cache)
        t_swap = time.perf_counter() - t0
        if rep == 0:
            continue  # the cache's first compile
        assert info["compile"] == "swap"
        t0 = time.perf_counter()
        fit_hierarchical_cached(d, cell, adata, groups, seed, cache=WorkerCache(), force_compile=True)
        fresh.append(time.perf_counter() - t0)
        swapped.append(t_swap)
    f, s = statistics.median(fresh), statistics.median(swapped)
    print(
        f"compile once: fresh compile + sample {f:.1f} s, swapped data + sample {s:.1f} s (medians of {k}): "
        f"{f / s:.1f}x faster per replication",
        flush=True,
    )


SUBSET = """
import json, tempfile, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from hetreport.simstudy.design import cells, load_design
from hetreport.simstudy.executor import run_grid
d = load_design(Path("examples/simulation/paper.yml"))
grid = [(c.n, c.sd) for c in cells(d)][:{cells}]
d = d.model_copy(update={{"sample_sizes": sorted({{n for n, _ in grid}}), "heterogeneity_sds": sorted({{s for _, s in grid}}),
                         "replications": {reps}}})
t0 = time.perf_counter()
res = run_grid(d, Path(tempfile.mkdtemp()) / "out", progress=False, workers={workers})
wall = time.perf_counter() - t0
ok = res[res["status"] == "ok"]
cols = [c for c in ("rmse", "coverage_95", "rmse_mu") if c in ok]
m = ok.sort_values(["cell_index", "rep", "approach"])[["cell_index", "rep", "approach", *cols]]
print(json.dumps({{"wall_s": wall, "rows": len(res), "failed": int((res["status"] != "ok").sum()),
                  "metrics": m.to_dict(orient="list")}}))
"""


def compare(rev: str, n_cells: int, reps: int, workers: int) -> None:
    import numpy as np
    from baseline import ROOT as _root
    from baseline import load, run_in, tree_at

    old_tree = tree_at(rev)
    code = SUBSET.format(cells=n_cells, reps=reps, workers=workers)
    print(
        f"the first {n_cells} cell(s) of examples/simulation/paper.yml x {reps} replications, {workers} local processes; "
        f"{load()} at the start",
        flush=True,
    )
    old = run_in(old_tree, code)
    print(f"  {rev[:12]}: {old['wall_s']:.1f} s ({old['failed']} failed rows); {load()}", flush=True)
    new = run_in(_root, code)
    print(f"  this checkout: {new['wall_s']:.1f} s ({new['failed']} failed rows); {load()}", flush=True)
    print(
        f"old / new: {old['wall_s'] / new['wall_s']:.2f}x wall, {old['cpu_s'] / new['cpu_s']:.2f}x CPU ({old['cpu_s']:.0f} / {new['cpu_s']:.0f} CPU-s)"
    )
    for k in old["metrics"]:
        if k in ("cell_index", "rep", "approach"):
            continue
        a, b = np.asarray(old["metrics"][k], float), np.asarray(new["metrics"].get(k, []), float)
        same = a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        diff = float(np.nanmax(np.abs(a - b))) if a.shape == b.shape and a.size else float("nan")
        print(f"  {k}: {'identical' if same else f'differ, max |old - new| = {diff:.4g}'} over {a.size} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=12, help="replications per executor")
    ap.add_argument("--n", type=int, default=1000, help="sample size of the cell")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compile-reps", type=int, default=3, help="replications timed for the compile-once speed-up (0 skips)")
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="time a fixed subset with revision REV and with this checkout (fresh processes) and print the ratio",
    )
    ap.add_argument("--cells", type=int, default=1, help="with --baseline: the first CELLS cells of the paper's grid")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.baseline:
        compare(args.baseline, args.cells, args.reps, args.workers)
        return
    from distributed import Client, LocalCluster

    d = design(args.reps, args.n)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        print(
            f"cell N = {args.n:,}, SD 0.25, {args.reps} replications; sampler {d.sampler.chains} x {d.sampler.draws} draws "
            f"(+{d.sampler.tune} tune), max tree depth {d.sampler.max_treedepth}; {args.workers} workers",
            flush=True,
        )
        local = throughput(f"local processes ({args.workers})", d, tmp / "local", workers=args.workers)
        t0 = time.perf_counter()
        with (
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            start = time.perf_counter() - t0
            dask = throughput(f"Dask LocalCluster ({args.workers})", d, tmp / "dask", client=client)
        print(f"(LocalCluster start-up, not counted above: {start:.1f} s)")
        print(f"LocalCluster / local processes, end to end: {dask['per_min'] / local['per_min']:.2f}")
        if args.compile_reps:
            compile_once(d, args.compile_reps)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
