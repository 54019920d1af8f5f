#!/usr/bin/env python
"""Benchmark: the non-Gaussian hierarchical models on the Tomz–Weeks respondents with their four
controls, the likelihood per covariate pattern (hetreport's default) against one term per unit, each
fit a fresh ``hetreport fit`` process as a user runs it.

Data: Tomz and Weeks (2021), April 2017 YouGov survey experiment (1,200 respondents); treatment
ally, modifiers white x male x intl x hawk_r (100 groups, 15 varying terms), controls dem,
lowstakes, lowcost (0/1, the randomised scenario) and region (4 levels, categorical): 1,200 units
fall into far fewer group x arm x control patterns. Families:

- bernoulli: force = pref >= 4, priors intercept normal(0, 2.5), b normal(0, 1), sd halfnormal(1)
  (the bundled example's respondents_logit analysis, plus the controls);
- ordinal: pref (1-5), priors b normal(0, 1), sd halfnormal(1) (its respondents_ordinal analysis,
  plus the controls).

For each family a spec holding only that analysis (``methods: [ols_full, hierarchical]``, the fewest a spec may list, unless --all-methods)
is fitted twice, each in a fresh process:

(a) baseline: one likelihood term per unit (``hetreport.models.families.AGGREGATE_MAX_SHARE = 0``
    set before ``hetreport fit`` runs: the route hetreport took before covariate patterns);
(b) hetreport's default: one binomial term per pattern (bernoulli) or one frequency-weighted
    term per (pattern, category) (ordinal). The same posterior (tests/test_glm_patterns.py).

Unless --no-warmup, each route is first fitted once with 50 + 50 draws so the timed runs find the
PyTensor / numba compile caches warm (the issue's "warm cache"). Printed per run: wall seconds
of the whole process, its CPU seconds, the hierarchical model's compile and sampling seconds,
likelihood rows, divergences, min bulk/tail ESS and max R-hat over the reported quantities and
SDs; then per family the ratio baseline / patterns of wall time, and the largest difference of
the posterior means of the response-scale group effects in units of their combined MC error.

    python benchmarks/bench_families.py                         # both families, 4 x (1000 + 1000)
    python benchmarks/bench_families.py --family ordinal --draws 500 --tune 500
    python benchmarks/bench_families.py --modifiers white male  # few patterns: the pattern route applies
    python benchmarks/bench_families.py --routes compiled --family bernoulli --controls   # the bundled example's
                                                                # respondents_logit: PyTensor graph against fastglm
    python benchmarks/bench_families.py --in-process            # the older check: no controls,
                                                                # cells against units, one process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPEC = REPO / "examples" / "tomz-weeks" / "spec.yml"
MODIFIERS = ["white", "male", "intl", "hawk_r"]
CONTROLS = ["dem", "lowstakes", "lowcost", "region"]
ANALYSES = {
    "bernoulli": {
        "name": "logit_controls",
        "family": "bernoulli",
        "outcome": "force",
        "priors": {"intercept": "normal(0, 2.5)", "b": "normal(0, 1)", "sd": "halfnormal(1)"},
    },
    "ordinal": {"name": "ordinal_controls", "family": "ordinal", "outcome": "pref", "priors": {"b": "normal(0, 1)", "sd": "halfnormal(1)"}},
}
#: the baseline process: switch the pattern route off, then run the CLI as a user does
BASELINE = (
    "import sys, hetreport.models.families as f; f.AGGREGATE_MAX_SHARE = 0.0; from hetreport.cli import main; sys.exit(main(sys.argv[1:]))"
)
DEFAULT = "import sys; from hetreport.cli import main; sys.exit(main(sys.argv[1:]))"
#: --routes compiled: the baseline is the PyTensor graph nutpie compiles per study (fastglm switched off, the
#: route hetreport took before fastglm), against fastglm's numba density loaded from the disk cache
PYTENSOR = (
    "import sys, hetreport.models.fastglm as f; f.supported = lambda *a, **k: False; "
    "from hetreport.cli import main; sys.exit(main(sys.argv[1:]))"
)
#: every process notes the wall-clock time at which nutpie's sampler is called (time to first draw)
STAMP = (
    "import os, time, nutpie; _s = nutpie.sample\n"
    "def _stamped(*a, **k):\n"
    "    open(os.environ['BENCH_SAMPLE_STAMP'], 'a').write(f'{time.time()}\\n')\n"
    "    return _s(*a, **k)\n"
    "nutpie.sample = _stamped\n"
)


def write_spec(
    folder: Path,
    family: str,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    all_methods: bool,
    modifiers=tuple(MODIFIERS),
    controls=tuple(CONTROLS),
) -> Path:
    import yaml

    base = yaml.safe_load(SPEC.read_text())
    data = dict(base["data"])
    data["path"] = str((SPEC.parent / data["path"]).resolve())  # absolute: the spec lives in a temporary folder
    analysis = {**ANALYSES[family], "modifiers": list(modifiers), "controls": list(controls)}
    if "region" in controls:
        analysis["categorical"] = ["region"]
    if not all_methods:
        analysis["methods"] = ["ols_full", "hierarchical"]
    spec = {
        "title": f"bench_families {family}",
        "data": data,
        "outcome": base["outcome"],
        "treatment": base["treatment"],
        "analyses": [analysis],
        "sampler": {"draws": draws, "tune": tune, "chains": chains, "seed": seed},
    }
    path = folder / f"{family}.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def fit_process(code: str, spec: Path, out: Path) -> dict:
    """One fresh ``hetreport fit`` process: wall and CPU seconds, and what it wrote."""
    stamp = out.with_name(out.name + ".stamp")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "BENCH_SAMPLE_STAMP": str(stamp)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, start = time.perf_counter(), time.time()
    proc = subprocess.run(
        [sys.executable, "-c", STAMP + code, "fit", str(spec), "--out", str(out)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"hetreport fit failed on {spec.name}")
    name = next(out.glob("analysis_*.json")).stem.removeprefix("analysis_")
    meta = json.loads((out / f"analysis_{name}.json").read_text())
    diag = json.loads((out / "diagnostics.json").read_text())[name]
    q = diag["quantities"].values()
    return {
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "timings": meta["hierarchical"]["timings"],
        "likelihood": meta["hierarchical"]["likelihood"],
        "divergences": diag["divergences"],
        "min_ess_bulk": min(v["min_ess_bulk"] for v in q),
        "min_ess_tail": min(v["min_ess_tail"] for v in q),
        "max_rhat": max(v["max_rhat"] for v in q),
        "out": out,
        "name": name,
        # seconds from the process's start to nutpie's sampler being called (data read, model built or loaded)
        "first_draw": float(stamp.read_text().split()[0]) - start if stamp.exists() else float("nan"),
    }


def group_effect_means(run: dict):
    import arviz as az

    idata = az.from_netcdf(str(run["out"] / f"posterior_{run['name']}.nc"))
    ge = idata.posterior["group_effect"]
    return ge.mean(("chain", "draw")).to_numpy(), az.mcse(idata.posterior[["group_effect"]])["group_effect"].to_numpy()


def fresh_main(args) -> int:
    families = args.family or ["bernoulli", "ordinal"]
    print(f"load at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for family in families:
            spec = write_spec(tmp, family, args.draws, args.tune, args.chains, args.seed, args.all_methods, args.modifiers, args.controls)
            if args.routes == "compiled":
                routes = (("PyTensor graph (baseline)", PYTENSOR), ("numba fastglm (hetreport)", DEFAULT))
            else:
                routes = (("per unit (baseline)", BASELINE), ("patterns (hetreport)", DEFAULT))
            if not args.no_warmup:
                (tmp / "warm").mkdir(exist_ok=True)
                small = write_spec(tmp / "warm", family, 50, 50, 2, args.seed, args.all_methods, args.modifiers, args.controls)
                for label, code in routes:
                    w = fit_process(code, small, tmp / f"warm-{family}-{label[:5]}")
                    print(
                        f"{family:9s} warm-up {label:22s} wall {w['wall']:6.1f} s  compile {w['timings'].get('compile_s', float('nan')):6.1f} s",
                        flush=True,
                    )
            runs = {}
            for label, code in routes:
                r = fit_process(code, spec, tmp / f"{family}-{label[:5]}")
                runs[label] = r
                t, lik = r["timings"], r["likelihood"]
                print(
                    f"{family:9s} {label:22s} wall {r['wall']:6.1f} s  first draw at {r['first_draw']:5.1f} s  CPU {r['cpu']:6.1f} s  "
                    f"compile {t.get('compile_s', float('nan')):5.1f} s  "
                    f"sampling {t.get('sampling_s', float('nan')):6.1f} s  rows {lik['rows']:5d}  divergences {r['divergences']:3d}  "
                    f"min ESS bulk {r['min_ess_bulk']:6.0f} tail {r['min_ess_tail']:6.0f}  max R-hat {r['max_rhat']:.3f}",
                    flush=True,
                )
                print(f"{'':9s} {'':22s} route: {lik.get('route', '')}", flush=True)
            (mb, sb), (ma, sa) = (group_effect_means(r) for r in runs.values())
            b, a = runs.values()
            z = np.abs(mb - ma) / np.sqrt(sb**2 + sa**2)
            print(
                f"{family:9s} ratio wall baseline/hetreport {b['wall'] / a['wall']:.2f}x, first draw {b['first_draw'] / a['first_draw']:.2f}x, "
                f"CPU {b['cpu'] / a['cpu']:.2f}x, "
                f"sampling {b['timings']['sampling_s'] / a['timings']['sampling_s']:.2f}x; same posterior: max |difference of "
                f"group-effect means| {np.abs(mb - ma).max():.4f} ({z.max():.1f} MC standard errors)",
                flush=True,
            )
    print(f"load at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    return 0


# ----------------------------------------------------------------------------- the older in-process check (no controls)


def prepare():
    from hetreport.data import load_data, prepare_analysis
    from hetreport.groups import build_groups
    from hetreport.spec import Analysis, load_spec

    spec = load_spec(SPEC)
    analysis = Analysis(name="logit", modifiers=MODIFIERS, family="bernoulli")
    spec = spec.model_copy(
        update={"analyses": [analysis], "priors": spec.priors.model_copy(update={"intercept": None, "b": None, "sd": None, "sigma": None})}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, load_data(spec), analysis)
        groups = build_groups(adata, spec.report.min_arm)
    return spec, adata, groups


def run(spec, adata, groups, aggregate: bool, sampler):
    import arviz as az

    from hetreport.models.families import unit_table
    from hetreport.models.hierarchical import _add_response_effects, _sample, build_design, build_glm_model, resolve_priors

    ut = unit_table(adata, groups, aggregate=aggregate)
    resolved = resolve_priors(spec.priors, adata)
    model = build_glm_model(build_design(adata, groups), ut, "bernoulli", resolved, None, (), groups.keys)
    keep = ["b_treat", "Intercept", "sd_slope", "group_slope", "group_intercept"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata, timings, _ = _sample(model, sampler, keep, progress=False)
    idata = _add_response_effects(idata, adata, groups)
    ess = az.ess(idata.posterior[["group_effect"]], method="bulk")["group_effect"].to_numpy()
    div = int(idata.sample_stats["diverging"].sum())
    return ut.n_rows, idata, timings, float(ess.min()), div


def in_process_main(args) -> int:
    """No controls: the aggregated binomial on the ~190 group x arm cells against 1,200 Bernoulli terms."""
    import arviz as az

    from hetreport.spec import Sampler

    spec, adata, groups = prepare()
    sampler = Sampler(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed)
    out = {}
    for name, agg in (("per unit (baseline)", False), ("aggregated binomial", True)):
        rows, idata, t, ess, div = run(spec, adata, groups, agg, sampler)
        out[name] = (idata, t, ess)
        print(
            f"{name:22s} rows {rows:5d}  compile {t['compile_s']:6.1f} s  sampling {t['sampling_s']:6.1f} s  "
            f"divergences {div:3d}  min ESS(theta_g) {ess:6.0f}  ESS/s {ess / t['sampling_s']:7.1f}",
            flush=True,
        )
    (ib, tb, eb), (ia, ta, ea) = out.values()
    mb = ib.posterior["group_effect"].mean(("chain", "draw")).to_numpy()
    ma = ia.posterior["group_effect"].mean(("chain", "draw")).to_numpy()
    mcse = np.sqrt(
        az.mcse(ib.posterior[["group_effect"]])["group_effect"].to_numpy() ** 2
        + az.mcse(ia.posterior[["group_effect"]])["group_effect"].to_numpy() ** 2
    )
    print(
        f"same posterior: max |difference of group-effect means| = {np.abs(mb - ma).max():.4f} "
        f"({np.max(np.abs(mb - ma) / mcse):.1f} MC standard errors)"
    )
    print(
        f"ratio sampling time baseline/aggregated: {tb['sampling_s'] / ta['sampling_s']:.2f}x; "
        f"ESS per second aggregated/baseline: {(ea / ta['sampling_s']) / (eb / tb['sampling_s']):.2f}x"
    )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--family", choices=sorted(ANALYSES), action="append")
    p.add_argument("--no-warmup", action="store_true", help="time cold compile caches (no 50-draw fit of each route first)")
    p.add_argument(
        "--modifiers",
        nargs="+",
        default=MODIFIERS,
        help="the analysis' modifiers (default white male intl hawk_r: 100 groups, 1,009 patterns among 1,200 "
        "units, so the pattern route falls back to per unit; white male: 4 groups, 244 patterns)",
    )
    p.add_argument(
        "--routes",
        choices=("patterns", "compiled"),
        default="patterns",
        help="patterns: per-unit likelihood (baseline) against covariate patterns; compiled: the PyTensor graph nutpie "
        "compiles per study (baseline) against fastglm's cached numba density",
    )
    p.add_argument(
        "--controls",
        nargs="*",
        default=CONTROLS,
        help="the analysis' controls (default dem lowstakes lowcost region; none: the bundled example's respondents_logit)",
    )
    p.add_argument("--all-methods", action="store_true", help="fit the default set of methods, not only the hierarchical model")
    p.add_argument("--in-process", action="store_true", help="the older check: no controls, cells against units, one process")
    args = p.parse_args(argv)
    return in_process_main(args) if args.in_process else fresh_main(args)


if __name__ == "__main__":
    sys.exit(main())
