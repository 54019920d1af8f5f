#!/usr/bin/env python
"""Benchmark: what a user waits for before sampling starts, and the whole fit, in fresh processes.

Two routes to the same posterior (the collapsed Gaussian model; tests/test_fastlogp.py checks that their
log densities and gradients agree to 1e-8 at random points):

- compiled: the log density and gradient written in numba (``hetreport/models/fastlogp.py``), compiled
  once per machine and loaded from numba's disk cache by every later process (the default);
- graph: the PyMC graph (``build_collapsed_model``) that PyTensor and numba compile for each study
  (``fit_hierarchical(..., compiled=False)``, the route before the compiled density).

Each fit runs as its own fresh Python process, as ``hetreport fit`` does: import, read the data, build,
compile, sample, diagnose. Printed per fit: the process's wall and CPU time, the time from the data being
read to the first draw (build + compile), sampling, divergences, min bulk/tail ESS and max R-hat over the
group effects and the SDs; then the graph / compiled ratios. The analyses are the bundled example's
Gaussian ones (``examples/tomz-weeks/spec.yml``): respondents (15 terms, 100 groups, 4 controls) and
scenario (15 terms, 32 groups, 4 controls), each with the spec's own sampler settings; optionally
respondents_lambda (the crossing term over 100 groups, 4 slope predictors, 4 controls: lambda and gamma are
integrated out with the collapsed coefficients on both routes).

    python benchmarks/bench_compile.py                        # both analyses, both routes (~15 min on 2 loaded cores)
    python benchmarks/bench_compile.py --analyses respondents --routes compiled
    python benchmarks/bench_compile.py --analyses respondents_lambda   # the slope-predictor model (~1 min)
    python benchmarks/bench_compile.py --cold                 # empties the compiled density's numba cache first

The machine is shared: the load average is printed before and after, compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "examples" / "tomz-weeks" / "spec.yml"

CHILD = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
from hetreport.spec import load_spec
from hetreport.data import load_data, prepare_analysis
from hetreport.groups import build_groups
from hetreport.models.hierarchical import fit_hierarchical
t_import = time.perf_counter() - t0
spec = load_spec(sys.argv[1])
analysis = next(a for a in spec.analyses if a.name == sys.argv[2])
warnings.simplefilter("ignore")
ds = load_data(spec)
adata = prepare_analysis(spec, ds, analysis)
groups = build_groups(adata, spec.report.min_arm)
t_read = time.perf_counter() - t0
fit = fit_hierarchical(adata, groups, spec.priors_of(analysis), spec.sampler_of(analysis), mode=analysis.terms,
                       correlated=analysis.correlated, predictors=analysis.slope_predictors or (),
                       compiled=sys.argv[3] == "compiled")
d = fit.diagnostics
q = d["quantities"]
print("RESULT " + json.dumps({
    "import_s": t_import, "read_s": t_read, "timings": fit.timings, "backend": fit.backend,
    "divergences": d["divergences"], "max_rhat": max(v["max_rhat"] for v in q.values()),
    "min_ess_bulk": min(v["min_ess_bulk"] for v in q.values()), "min_ess_tail": min(v["min_ess_tail"] for v in q.values()),
    "theta_ess": q["group_effect"]["min_ess_bulk"], "theta_rhat": q["group_effect"]["max_rhat"],
    "fit_s": time.perf_counter() - t0 - t_read}))
"""


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run(spec: Path, analysis: str, route: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(spec), analysis, route], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"the {route} fit of '{analysis}' failed:\n{proc.stderr[-3000:]}")
    out = json.loads(line[7:])
    out.update(
        wall_s=wall,
        cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        to_first_draw_s=out["timings"].get("compile_s", 0.0) + out["timings"].get("build_s", 0.0),
    )
    return out


def numba_cache_files() -> list[Path]:
    return list((REPO / "hetreport" / "models" / "__pycache__").glob("fastlogp.*.nb[ic]"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(SPEC))
    ap.add_argument("--analyses", nargs="+", default=["respondents", "scenario"])
    ap.add_argument("--routes", nargs="+", default=["compiled", "graph"], choices=["compiled", "graph"])
    ap.add_argument("--cold", action="store_true", help="delete the compiled density's numba cache before the first compiled fit")
    args = ap.parse_args(argv)
    if args.cold:
        for f in numba_cache_files():
            f.unlink()
    rows = []
    for analysis in args.analyses:
        for route in args.routes:
            la = load_avg()
            r = run(Path(args.spec), analysis, route)
            r.update(analysis=analysis, route=route, load_before=la, load_after=load_avg())
            rows.append(r)
            print(
                f"{analysis:<12s} {route:<9s} process {r['wall_s']:6.1f} s (CPU {r['cpu_s']:6.1f} s): imports {r['import_s']:.1f} s, "
                f"data read → first draw {r['to_first_draw_s']:6.1f} s, sampling {r['timings']['sampling_s']:6.1f} s; "
                f"div {r['divergences']}, θ_g ESS {r['theta_ess']:.0f} R̂ {r['theta_rhat']:.3f}; all: min ESS bulk "
                f"{r['min_ess_bulk']:.0f} tail {r['min_ess_tail']:.0f}, max R̂ {r['max_rhat']:.3f}; load {la} → {r['load_after']}",
                flush=True,
            )
    print("\nratios graph / compiled (same analysis, same invocation)")
    for analysis in args.analyses:
        by = {r["route"]: r for r in rows if r["analysis"] == analysis}
        if {"compiled", "graph"} <= set(by):
            c, g = by["compiled"], by["graph"]
            print(
                f"  {analysis}: process wall {g['wall_s'] / c['wall_s']:.1f}x, CPU {g['cpu_s'] / c['cpu_s']:.1f}x, "
                f"data → first draw {g['to_first_draw_s'] / max(c['to_first_draw_s'], 1e-9):.0f}x, "
                f"sampling {g['timings']['sampling_s'] / c['timings']['sampling_s']:.1f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
