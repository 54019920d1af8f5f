#!/usr/bin/env python
"""Benchmark: the seed's model as a user meets it -- `hetreport fit` against bambi + nutpie defaults,
each a fresh process, timed in the same invocation.

Data: the public replication data of Tomz, Michael and Jessica L. P. Weeks (2021), "Military Alliances
and Public Support for War", International Studies Quarterly 65(3): 811-824 (April 2017 YouGov survey
experiment, 1,200 respondents).

The analysis: outcome force = pref >= 4, treatment alliance, modifiers white x male x intl x hawk_r
(100 groups), a varying intercept and slope for every one of the 15 non-empty combinations of the
modifiers (323 levels), controls dem, lowstakes, lowcost and region; priors intercept normal(0, .75),
b normal(0, .25), sd halfnormal(.75), sigma halfnormal(1); 4 chains x (1000 warm-up + 1000 draws).

(a) hetreport: `python -m hetreport.cli fit SPEC --out DIR` on a spec holding only that analysis
    (hetreport's default methods and sampler: the collapsed correlated model, the compiled log density,
    nutpie), the whole process timed: imports, data, OLS, sampling, diagnostics, LOO, saving.
(b) baseline: a fresh Python process that builds bambi's model of the same design and priors (hetreport's
    ``build_bambi_model``: uncorrelated terms, centred controls) and calls
    ``model.fit(inference_method="nutpie", draws, tune, chains, random_seed)`` with bambi's and nutpie's
    defaults for everything else (PyTensor compiles the graph with numba for this study), then stores the
    group effects.

Per route: process wall and CPU seconds (parent and children, from rusage), divergences, min bulk ESS and
max R-hat over the 100 group effects theta_g and over the SDs (every term's intercept and slope SD, and
sigma), computed by this script with ArviZ from the draws each process wrote; then the ratios. The load
average is printed before and after each process: on a shared 2-core machine compare CPU seconds.

    python benchmarks/bench_tomz_weeks.py                   # both routes, ~3 min on 2 idle cores
    python benchmarks/bench_tomz_weeks.py --skip-baseline --repeat 3
    python benchmarks/bench_tomz_weeks.py --cold            # empty the compiled density's numba cache first
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA_NAME = "2017-04-YouGov-extracted.dta"
DATA_CANDIDATES = (
    REPO / "examples" / "tomz-weeks" / "data" / DATA_NAME,
    REPO.parent / "shared" / "data" / "tomz-weeks-2021" / DATA_NAME,
)
PRIORS = {"intercept": "normal(0, 0.75)", "b": "normal(0, 0.25)", "sd": "halfnormal(0.75)", "sigma": "halfnormal(1)"}
SD_VARS = ("sd_intercept", "sd_slope", "sigma")


def find_data(arg: str | None) -> Path:
    given = arg or os.environ.get("HETREPORT_TW_DATA")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            sys.exit(f"the Tomz–Weeks data file '{path}' does not exist (from --data or HETREPORT_TW_DATA).")
        return path.resolve()
    for path in DATA_CANDIDATES:
        if path.is_file():
            return path.resolve()
    sys.exit(
        "the Tomz–Weeks data file was not found at "
        + " or ".join(str(p) for p in DATA_CANDIDATES)
        + "; pass --data PATH or set HETREPORT_TW_DATA."
    )


def raw_spec(data_path: Path, draws: int, tune: int, chains: int, seed: int) -> dict:
    return {
        "title": "Military alliances and public support for war (Tomz and Weeks 2021)",
        "data": {
            "path": str(data_path),
            "derive": {
                "force": "pref >= 4",
                "white": "race == 1",
                "male": "gender == 1",
                "hawk_r": "abs(6 - hawk)",
                "ally": "alliance == 2",
                "dem": "regime == 2",
                "lowstakes": "stakes == 2",
                "lowcost": "costs == 2",
            },
        },
        "outcome": "force",
        "treatment": "ally",
        "analyses": [
            {
                "name": "respondents",
                "modifiers": ["white", "male", "intl", "hawk_r"],
                "controls": ["dem", "lowstakes", "lowcost", "region"],
                "categorical": ["region"],
            }
        ],
        "priors": PRIORS,
        "sampler": {"draws": draws, "tune": tune, "chains": chains, "seed": seed},
    }


def baseline_child(spec_path: str, out_path: str) -> int:
    """The baseline process: bambi's model, ``model.fit(inference_method="nutpie")``, draws to ``out_path``."""
    import warnings

    from hetreport.data import load_data, prepare_analysis
    from hetreport.groups import build_groups
    from hetreport.models.bambi_route import build_bambi_model, group_posterior
    from hetreport.models.hierarchical import resolve_priors
    from hetreport.spec import load_spec

    spec = load_spec(spec_path)
    adata = prepare_analysis(spec, load_data(spec), spec.analyses[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = build_groups(adata)
        model, term_list, safe_terms, _ = build_bambi_model(adata, groups, resolve_priors(spec.priors, adata), "all")
        s = spec.sampler
        idata = model.fit(inference_method="nutpie", draws=s.draws, tune=s.tune, chains=s.chains, random_seed=s.seed)
    gp = group_posterior(idata.posterior, adata, groups, term_list, safe_terms)
    np.savez(
        out_path,
        theta=gp["group_effect"].transpose("chain", "draw", "group").to_numpy(),
        diverging=idata.sample_stats["diverging"].to_numpy(),
        **{v: gp[v].to_numpy() for v in SD_VARS},
    )
    return 0


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(cmd: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stderr


def metrics(theta: np.ndarray, sds: dict, diverging: np.ndarray) -> dict:
    import arviz as az
    import xarray as xr

    def rhat_ess(arr):
        dims = ["chain", "draw"] + [f"d{k}" for k in range(arr.ndim - 2)]
        ds = xr.Dataset({"x": (dims, np.asarray(arr))})
        return float(np.nanmax(az.rhat(ds)["x"].to_numpy())), float(np.nanmin(az.ess(ds, method="bulk")["x"].to_numpy()))

    rt, et = rhat_ess(theta)
    sd = [rhat_ess(a) for a in sds.values()]
    return {
        "rhat_theta": rt,
        "ess_theta": et,
        "rhat_sd": max(r for r, _ in sd),
        "ess_sd": min(e for _, e in sd),
        "divergences": int(np.sum(diverging)),
    }


def run_hetreport(spec_path: Path, work: Path, k: int) -> dict:
    import arviz as az

    out = work / f"hetreport-{k}"
    load0 = load_avg()
    wall, cpu, _ = timed([sys.executable, "-m", "hetreport.cli", "fit", str(spec_path), "--out", str(out)])
    idata = az.from_netcdf(out / "posterior_respondents.nc")
    post = idata.posterior
    r = metrics(
        post["group_effect"].transpose("chain", "draw", "group").to_numpy(),
        {v: post[v].to_numpy() for v in SD_VARS},
        idata.sample_stats["diverging"].to_numpy(),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["timings"]["respondents"]
    r.update(
        route="hetreport fit",
        wall=wall,
        cpu=cpu,
        load=f"{load0} -> {load_avg()}",
        detail=f"sampling {t['sampling_s']:.1f} s, data read -> first draw {t.get('compile_s', 0) + t.get('build_s', 0):.1f} s, "
        f"fit() {manifest['total_s']:.1f} s of the process",
    )
    shutil.rmtree(out, ignore_errors=True)
    return r


def run_baseline(spec_path: Path, work: Path, k: int) -> dict:
    out = work / f"baseline-{k}.npz"
    load0 = load_avg()
    wall, cpu, _ = timed([sys.executable, str(Path(__file__).resolve()), "--child-baseline", str(spec_path), str(out)])
    d = np.load(out)
    r = metrics(d["theta"], {v: d[v] for v in SD_VARS}, d["diverging"])
    import bambi
    import nutpie

    r.update(
        route=f"bambi {bambi.__version__} + nutpie {nutpie.__version__} defaults",
        wall=wall,
        cpu=cpu,
        load=f"{load0} -> {load_avg()}",
        detail="",
    )
    return r


def show(r: dict) -> None:
    print(f"  {r['route']}: wall {r['wall']:.1f} s, CPU {r['cpu']:.1f} s (load {r['load']})" + (f"; {r['detail']}" if r["detail"] else ""))
    print(
        f"    divergences {r['divergences']}; θ_g min bulk ESS {r['ess_theta']:.0f}, max R-hat {r['rhat_theta']:.3f}; "
        f"SDs min bulk ESS {r['ess_sd']:.0f}, max R-hat {r['rhat_sd']:.3f}",
        flush=True,
    )


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-baseline"]:
        return baseline_child(argv[1], argv[2])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help=f"path of {DATA_NAME} (default: $HETREPORT_TW_DATA, then examples/tomz-weeks/data/)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=1, help="processes per route, interleaved")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--cold", action="store_true", help="delete the compiled density's numba cache before the first hetreport fit")
    args = ap.parse_args(argv)

    import yaml

    data_path = find_data(args.data)
    work = Path(tempfile.mkdtemp(prefix="bench-tw-"))
    spec_path = work / "spec.yml"
    spec_path.write_text(yaml.safe_dump(raw_spec(data_path, args.draws, args.tune, args.chains, args.seed), sort_keys=False))
    print(
        f"Tomz–Weeks respondents, 100 groups, 15 terms, {args.chains} x ({args.tune} + {args.draws}), seed {args.seed}; "
        f"{os.cpu_count()} CPUs; fresh processes"
    )
    if args.cold:
        for f in (REPO / "hetreport" / "models" / "__pycache__").glob("fastlogp.*.nb[ic]"):
            f.unlink()
        print("  the compiled density's numba cache was emptied: the first hetreport fit compiles it")
    rows: dict[str, list[dict]] = {"hetreport": [], "baseline": []}
    try:
        for k in range(args.repeat):
            print(f"run {k + 1}/{args.repeat}")
            rows["hetreport"].append(run_hetreport(spec_path, work, k))
            show(rows["hetreport"][-1])
            if not args.skip_baseline:
                rows["baseline"].append(run_baseline(spec_path, work, k))
                show(rows["baseline"][-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name, key):
        return float(np.median([r[key] for r in rows[name]]))

    print(f"\nhetreport fit: median wall {med('hetreport', 'wall'):.1f} s, CPU {med('hetreport', 'cpu'):.1f} s over {args.repeat}")
    if rows["baseline"]:
        hw, bw, hc, bc = med("hetreport", "wall"), med("baseline", "wall"), med("hetreport", "cpu"), med("baseline", "cpu")
        he, be = med("hetreport", "ess_theta"), med("baseline", "ess_theta")
        print(
            f"ratios, baseline / hetreport: wall {bw / hw:.1f}x, CPU {bc / hc:.1f}x; "
            f"min ESS θ_g per wall second, hetreport / baseline: {(he / hw) / (be / bw):.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
