#!/usr/bin/env python
"""Benchmark: how `hetreport fit` scales with rows and groups (issue 14 goal 5), fresh processes.

Simulated Gaussian studies, written as CSV files with their specs into a temporary folder, each fitted by
`python -m hetreport.cli fit SPEC --out DIR` in its own process (default sampler: 4 chains x (1000 + 1000),
no controls, the default methods):

- `1e3`:  N = 1,000 rows on 100 groups (modifiers of 2 x 2 x 5 x 5 levels) -- the baseline;
- `1e6`:  N = 1,000,000 rows on the same 100 groups (the sufficient-statistic likelihood does not grow with N;
          what does: reading, groups, OLS, LOO, saving, posterior predictive);
- `1000g`: 1,000 groups (2 x 5 x 10 x 10 levels), 20,000 rows.

Per case: process wall and CPU seconds, peak resident memory, the manifest's fit() seconds and the analysis's
sampling seconds (the rest is everything else: imports, data, groups, OLS, diagnostics, LOO; process minus
fit() is saving), divergences and the worst R-hat / ESS; then the ratios to the `1e3` case. Goals: 1e6 <= 3x
1e3 (wall), 1000g <= 300 s, memory < 4 GB.

    python benchmarks/bench_scale.py                    # all three, ~10 min on 2 idle cores
    python benchmarks/bench_scale.py --cases 1e3 1e6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASES = {"1e3": (1_000, (2, 2, 5, 5)), "1e6": (1_000_000, (2, 2, 5, 5)), "1000g": (20_000, (2, 5, 10, 10))}
# the child reports its own peak memory (ru_maxrss of the process, in KiB on Linux)
CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = ['hetreport', 'fit', sys.argv[1], '--out', sys.argv[2]]\n"
    "try:\n    runpy.run_module('hetreport.cli', run_name='__main__')\n"
    "finally:\n    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def write_study(folder: Path, n: int, levels: tuple[int, ...], seed: int) -> Path:
    import pandas as pd
    import yaml

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"m{k + 1}": rng.integers(0, L, n) for k, L in enumerate(levels)})
    effect = 0.3 + sum(0.1 * (frame[f"m{k + 1}"] / (L - 1)) for k, L in enumerate(levels))
    frame["treat"] = rng.integers(0, 2, n)
    frame["y"] = 1.0 + 0.2 * frame["m1"] + effect * frame["treat"] + rng.normal(0, 1, n)
    frame.to_csv(folder / "data.csv", index=False)
    spec = {
        "title": f"Scale: {n:,} rows, {int(np.prod(levels))} groups",
        "data": {"path": "data.csv"},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [{"name": "scale", "modifiers": [f"m{k + 1}" for k in range(len(levels))]}],
        "sampler": {"seed": seed},
    }
    (folder / "spec.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "spec.yml"


def run(spec: Path, out: Path) -> dict:
    import resource

    load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(spec), str(out)], capture_output=True, text=True, env=env, cwd=spec.parent)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"hetreport fit {spec} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("MAXRSS")]
    m = json.loads((out / "manifest.json").read_text())
    d = json.loads((out / "diagnostics.json").read_text())["scale"]
    q = d["quantities"].values()
    return {
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "rss_gb": rss[0] / 2**20 if rss else float("nan"),
        "fit_s": m["total_s"],
        "sampling_s": m["timings"]["scale"]["sampling_s"] + m["timings"]["scale"].get("first_fit_s", 0.0),
        "divergences": d["divergences"],
        "rhat": max(v["max_rhat"] for v in q),
        "ess": min(min(v["min_ess_bulk"], v["min_ess_tail"]) for v in q),
        "retry": "retry" in d,
        "load": f"{load0} -> {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows = {}
    try:
        for name in args.cases:
            n, levels = CASES[name]
            folder = work / name
            folder.mkdir()
            t0 = time.perf_counter()
            spec = write_study(folder, n, levels, args.seed)
            print(f"{name}: {n:,} rows, {int(np.prod(levels))} groups (data written in {time.perf_counter() - t0:.1f} s)", flush=True)
            r = rows[name] = run(spec, folder / "out")
            print(
                f"  wall {r['wall']:.1f} s, CPU {r['cpu']:.1f} s, peak memory {r['rss_gb']:.2f} GB; fit() {r['fit_s']:.1f} s, "
                f"sampling {r['sampling_s']:.1f} s, other {r['wall'] - r['sampling_s']:.1f} s; divergences {r['divergences']}, "
                f"max R-hat {r['rhat']:.3f}, min ESS {r['ess']:.0f}{' (after the automatic second fit)' if r['retry'] else ''}; "
                f"load {r['load']}",
                flush=True,
            )
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "1e3" in rows:
        base = rows["1e3"]
        for name, r in rows.items():
            if name != "1e3":
                print(
                    f"{name} / 1e3: wall {r['wall'] / base['wall']:.2f}x, CPU {r['cpu'] / base['cpu']:.2f}x, "
                    f"other than sampling {(r['wall'] - r['sampling_s']) / (base['wall'] - base['sampling_s']):.2f}x"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
