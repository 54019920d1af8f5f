#!/usr/bin/env python
"""Benchmark: the Tomz–Weeks respondent analysis, hetreport's default route against a
baseline (bambi's model sampled with PyMC's default NUTS), timed in the same process.

Data: the public replication data of Tomz, Michael and Jessica L. P. Weeks (2021),
"Military Alliances and Public Support for War", International Studies Quarterly
65(3): 811–824 (April 2017 YouGov survey experiment, 1,200 respondents).

The analysis: outcome force = pref >= 4, treatment alliance, modifiers white x male x
intl x hawk_r (100 groups), a varying intercept and slope for every one of the 15
non-empty combinations of the modifiers (323 levels), controls regime, stakes, costs
and region; priors intercept normal(0, .75), b normal(0, .25), sd halfnormal(.75),
sigma halfnormal(1).

(a) hetreport: ``fit_hierarchical`` with the spec's sampler (the default route:
    correlated intercept-slope terms, nutpie).
(b) baseline: ``build_bambi_model`` (uncorrelated terms, the same design and priors)
    sampled with ``model.fit(draws, tune, chains, random_seed)``, i.e. PyMC's default
    NUTS (target_accept 0.8, jitter+adapt_diag, one process per core). This takes
    about 10 minutes on 2 cores; skip it with --skip-baseline.

Reported per fit: compile and sampling wall time, CPU seconds, divergences, tree-depth
hits, min bulk ESS / max R-hat over the group effects theta_g and over the SDs (every
term's intercept and slope SD, and sigma); then the baseline/hetreport ratios of wall
time and hetreport/baseline ratios of ESS per second. For the baseline, "compile" is
everything before the first draw (bambi build, PyMC compile, initialisation, worker
start-up); "sampling" is from the first draw to the end.

A warm-up fit of each route (few draws) runs first unless --no-warmup, so the timed
fits measure a process whose imports and JIT caches are warm; the warm-up's own
compile time is printed as the cold figure. Compare CPU seconds or repeated runs: the
wall time of 4 chains on 2 shared cores is noisy.

Run from the repository root (it is not collected by pytest):

    python benchmarks/bench_tomz_weeks.py --skip-baseline
    python benchmarks/bench_tomz_weeks.py --repeat 3 --skip-baseline
    python benchmarks/bench_tomz_weeks.py                     # with the baseline, ~12 min
    HETREPORT_TW_DATA=/path/to/2017-04-YouGov-extracted.dta python benchmarks/bench_tomz_weeks.py
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
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
    sys.exit("the Tomz–Weeks data file was not found at " + " or ".join(str(p) for p in DATA_CANDIDATES)
             + "; pass --data PATH or set HETREPORT_TW_DATA.")


def make_spec(data_path: Path, draws: int, tune: int, chains: int, seed: int, target_accept: float | None = None):
    from hetreport.spec import parse_spec

    raw = {
        "title": "Military alliances and public support for war (Tomz and Weeks 2021)",
        "data": {
            "path": str(data_path),
            "derive": {"force": "pref >= 4", "white": "race == 1", "male": "gender == 1", "hawk_r": "abs(6 - hawk)",
                       "ally": "alliance == 2", "dem": "regime == 2", "lowstakes": "stakes == 2", "lowcost": "costs == 2"},
        },
        "outcome": "force",
        "treatment": "ally",
        "analyses": [{"name": "respondents", "modifiers": ["white", "male", "intl", "hawk_r"],
                      "controls": ["dem", "lowstakes", "lowcost", "region"], "categorical": ["region"]}],
        "priors": PRIORS,
        "sampler": {"draws": draws, "tune": tune, "chains": chains, "seed": seed},
    }
    if target_accept is not None:
        raw["sampler"]["target_accept"] = target_accept
    return parse_spec(raw, base_dir=REPO, source="bench_tomz_weeks")


def load(data_path: Path, draws: int, tune: int, chains: int, seed: int, target_accept: float | None = None):
    from hetreport.data import load_data, prepare_analysis
    from hetreport.groups import build_groups

    spec = make_spec(data_path, draws, tune, chains, seed, target_accept)
    dataset = load_data(spec)
    adata = prepare_analysis(spec, dataset, spec.analyses[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = build_groups(adata)
    return spec, adata, groups


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def diagnostics(theta, sds: dict, sample_stats) -> dict:
    """theta: (chain, draw, group) array; sds: name -> (chain, draw[, term]) arrays."""
    import arviz as az
    import xarray as xr

    def rhat_ess(arr):
        dims = ["chain", "draw"] + [f"d{k}" for k in range(arr.ndim - 2)]
        ds = xr.Dataset({"x": (dims, np.asarray(arr))})
        return float(np.nanmax(az.rhat(ds)["x"].to_numpy())), float(np.nanmin(az.ess(ds, method="bulk")["x"].to_numpy()))

    rt, et = rhat_ess(theta)
    sd_stats = [rhat_ess(a) for a in sds.values()]
    depth = 0
    for name in ("maxdepth_reached", "reached_max_treedepth"):
        if name in sample_stats:
            depth = int(sample_stats[name].to_numpy().sum())
    return {
        "rhat_theta": rt, "ess_theta": et,
        "rhat_sd": max(r for r, _ in sd_stats), "ess_sd": min(e for _, e in sd_stats),
        "divergences": int(sample_stats["diverging"].to_numpy().sum()), "treedepth": depth,
        "theta_draws": np.asarray(theta),
    }


def run_hetreport(spec, adata, groups, sampler=None) -> dict:
    from hetreport.models.hierarchical import fit_hierarchical

    sampler = sampler or spec.sampler
    c0, t0 = _cpu(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_hierarchical(adata, groups, spec.priors, sampler)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    post = fit.idata.posterior
    theta = post["group_effect"].transpose("chain", "draw", "group").to_numpy()
    sds = {v: post[v].to_numpy() for v in SD_VARS if v in post}
    out = diagnostics(theta, sds, fit.idata.sample_stats)
    out.update(route=f"hetreport ({fit.backend}, target_accept {sampler.target_accept:g})",
               compile_s=fit.timings.get("compile_s", 0.0) + fit.timings.get("build_s", 0.0),
               sampling_s=fit.timings["sampling_s"], total_s=wall, cpu_s=cpu, seed=sampler.seed)
    return out


def run_baseline(spec, adata, groups, draws=None, tune=None, chains=None, seed=None, cores=None) -> dict:
    """bambi's model with PyMC's default NUTS: model.fit(draws, tune, chains, random_seed).

    cores=None is PyMC's default, min(4, cpu_count // 2): on a 2-CPU machine the chains run one
    after another in one process."""
    import bambi as bmb
    import pymc as pm

    from hetreport.data import code_key
    from hetreport.models.bambi_route import build_bambi_model
    from hetreport.models.hierarchical import resolve_priors

    s = spec.sampler
    draws, tune, chains, seed = draws or s.draws, tune or s.tune, chains or s.chains, s.seed if seed is None else seed
    first = []

    def callback(trace, draw):  # called in this process for every draw (tuning included)
        if not first:
            first.append(time.perf_counter())

    c0, t0 = _cpu(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, term_list, safe_terms, _ = build_bambi_model(adata, groups, resolve_priors(spec.priors, adata), "all")
        model.build()
        extra = {} if cores is None else {"cores": cores}
        idata = model.fit(draws=draws, tune=tune, chains=chains, random_seed=seed, progressbar=False, callback=callback, **extra)
    t_end = time.perf_counter()
    wall, cpu = t_end - t0, _cpu() - c0
    t_first = first[0] if first else t0
    try:  # hetreport's own per-draw sums of bambi's terms, where this version has them
        from hetreport.models.bambi_route import group_posterior
    except ImportError:
        group_posterior = None
    if group_posterior is not None:
        gp = group_posterior(idata.posterior, adata, groups, term_list, safe_terms)
        theta = gp["group_effect"].transpose("chain", "draw", "group").to_numpy()
        sds = {v: gp[v].to_numpy() for v in SD_VARS}
    else:
        post = idata.posterior
        theta = post["treat"].to_numpy()[..., None] * np.ones(groups.n_groups)
        sd_int, sd_slope = [], []
        for tm, st in zip(term_list, safe_terms):
            keys = [":".join(code_key(v) for v in row) for row in groups.table[list(tm)].itertuples(index=False, name=None)]
            theta = theta + post[f"treat|{st}"].sel({f"{st}__factor_dim": keys}).to_numpy()
            sd_int.append(post[f"1|{st}_sigma"].to_numpy())
            sd_slope.append(post[f"treat|{st}_sigma"].to_numpy())
        sds = {"sd_intercept": np.stack(sd_int, -1), "sd_slope": np.stack(sd_slope, -1), "sigma": post["sigma"].to_numpy()}
    out = diagnostics(theta, sds, idata.sample_stats)
    out.update(route=f"baseline (bambi {bmb.__version__} model, PyMC {pm.__version__} default NUTS"
                     + (f", cores={cores})" if cores is not None else ")"),
               compile_s=t_first - t0, sampling_s=t_end - t_first, total_s=wall, cpu_s=cpu, seed=seed)
    return out


def fmt_row(label: str, r: dict) -> str:
    ess_s = r["ess_theta"] / r["total_s"]
    return (f"{label:<12s} {r['seed']:>5d} {r['compile_s']:>8.1f} {r['sampling_s']:>9.1f} {r['total_s']:>8.1f} {r['cpu_s']:>7.1f} "
            f"{r['divergences']:>5d} {r['treedepth']:>5d} {r['ess_theta']:>8.0f} {r['rhat_theta']:>7.3f} "
            f"{r['ess_sd']:>7.0f} {r['rhat_sd']:>7.3f} {ess_s:>7.1f}")


HEADER = (f"{'run':<12s} {'seed':>5s} {'compile':>8s} {'sampling':>9s} {'total':>8s} {'CPU-s':>7s} "
          f"{'div':>5s} {'depth':>5s} {'ESS θ_g':>8s} {'R̂ θ_g':>7s} {'ESS SD':>7s} {'R̂ SD':>7s} {'ESS/s':>7s}")


def print_fit(r: dict) -> None:
    print(f"  {r['route']}, seed {r['seed']}")
    print(f"    wall: compile {r['compile_s']:.1f} s, sampling {r['sampling_s']:.1f} s, total {r['total_s']:.1f} s; CPU {r['cpu_s']:.1f} s")
    print(f"    θ_g (100 group effects): min bulk ESS {r['ess_theta']:.0f}, max R-hat {r['rhat_theta']:.3f}")
    print(f"    SDs (term intercept/slope SDs, sigma): min bulk ESS {r['ess_sd']:.0f}, max R-hat {r['rhat_sd']:.3f}")
    print(f"    divergences {r['divergences']}, max tree depth hits {r['treedepth']}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help=f"path of {DATA_NAME} (default: $HETREPORT_TW_DATA, then examples/tomz-weeks/data/, then ../shared/data/tomz-weeks-2021/)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--target-accept", type=float, default=None,
                    help="hetreport route's target_accept (default: the spec default); the baseline keeps PyMC's default 0.8")
    ap.add_argument("--repeat", type=int, default=1, help="timed fits per route (same seed unless --vary-seed)")
    ap.add_argument("--vary-seed", action="store_true", help="repeat k uses seed + k")
    ap.add_argument("--skip-baseline", action="store_true", help="fit only hetreport's route (the baseline takes ~10 min)")
    ap.add_argument("--baseline-cores", type=int, default=None,
                    help="cores for the baseline's pm.sample (default: PyMC's own, min(4, CPUs // 2), i.e. sequential chains on 2 CPUs)")
    ap.add_argument("--no-warmup", action="store_true", help="no warm-up fits: the first timed fit pays imports and JIT compilation")
    args = ap.parse_args(argv)

    data_path = find_data(args.data)
    spec, adata, groups = load(data_path, args.draws, args.tune, args.chains, args.seed, args.target_accept)
    import nutpie
    import pymc as pm
    import pytensor

    print(f"Tomz–Weeks respondents: {adata.n} rows, {groups.n_groups} groups, data {data_path}")
    print(f"draws {args.draws} + tune {args.tune}, {args.chains} chains, {os.cpu_count()} CPUs; "
          f"nutpie {nutpie.__version__}, PyMC {pm.__version__}, PyTensor {pytensor.__version__}")

    if not args.no_warmup:
        small = spec.sampler.model_copy(update={"draws": 50, "tune": 50, "chains": 2})
        t0 = time.perf_counter()
        w = run_hetreport(spec, adata, groups, small)
        print(f"warm-up hetreport: compile {w['compile_s']:.1f} s (first compile in this process), total {time.perf_counter() - t0:.1f} s", flush=True)
        if not args.skip_baseline:
            t0 = time.perf_counter()
            w = run_baseline(spec, adata, groups, draws=50, tune=50, chains=2, cores=args.baseline_cores)
            print(f"warm-up baseline: compile+init {w['compile_s']:.1f} s, total {time.perf_counter() - t0:.1f} s", flush=True)

    rows: dict[str, list[dict]] = {"hetreport": [], "baseline": []}
    for k in range(args.repeat):
        seed = args.seed + k if args.vary_seed else args.seed
        sampler = spec.sampler.model_copy(update={"seed": seed})
        print(f"\nrun {k + 1}/{args.repeat}")
        r = run_hetreport(spec, adata, groups, sampler)
        rows["hetreport"].append(r)
        print_fit(r)
        if not args.skip_baseline:
            b = run_baseline(spec, adata, groups, seed=seed, cores=args.baseline_cores)
            rows["baseline"].append(b)
            print_fit(b)

    print("\n" + HEADER)
    for name, rs in rows.items():
        for k, r in enumerate(rs):
            print(fmt_row(f"{name[:9]}#{k + 1}", r))
    for name, rs in rows.items():
        if len(rs) > 1 and len({r["seed"] for r in rs}) == 1:
            same = all(np.array_equal(rs[0]["theta_draws"], r["theta_draws"]) for r in rs[1:])
            print(f"{name}: repeated fits with seed {rs[0]['seed']} gave {'identical' if same else 'DIFFERENT'} draws")

    if rows["baseline"]:
        def med(name, key):
            return float(np.median([r[key] for r in rows[name]]))

        h_tot, b_tot = med("hetreport", "total_s"), med("baseline", "total_s")
        h_smp, b_smp = med("hetreport", "sampling_s"), med("baseline", "sampling_s")
        h_cpu, b_cpu = med("hetreport", "cpu_s"), med("baseline", "cpu_s")
        h_ess, b_ess = med("hetreport", "ess_theta"), med("baseline", "ess_theta")
        print("\nratios (medians over runs)")
        print(f"  wall time, baseline / hetreport: total {b_tot / h_tot:.1f}x, sampling {b_smp / h_smp:.1f}x; CPU {b_cpu / h_cpu:.1f}x")
        print(f"  min ESS θ_g per second, hetreport / baseline: per total wall s {(h_ess / h_tot) / (b_ess / b_tot):.1f}x, "
              f"per sampling s {(h_ess / h_smp) / (b_ess / b_smp):.1f}x, per CPU s {(h_ess / h_cpu) / (b_ess / b_cpu):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
