#!/usr/bin/env python
"""Benchmark: the aggregated binomial likelihood against one Bernoulli term per unit, on the
Tomz–Weeks respondent analysis as a logit model, timed in the same process.

Data: Tomz and Weeks (2021), April 2017 YouGov survey experiment (1,200 respondents);
outcome force = pref >= 4 (0/1), treatment alliance, modifiers white x male x intl x hawk_r
(100 groups, 15 varying terms), no controls, family bernoulli, default logit priors.

With only categorical predictors, every unit of a group x arm cell has the same linear
predictor, so the Bernoulli likelihood depends on the data only through successes and trials
per cell: hetreport evaluates it on the cells (here about 190 instead of 1,200 terms). Both
fits below are the same model and give the same posterior (checked: the largest difference
between the two fits' posterior means of the group effects, in units of their MC error);
only the cost per gradient differs.

(a) baseline: ``unit_table(..., aggregate=False)``: one term per unit.
(b) hetreport's default: ``unit_table(...)``: one binomial term per cell.

Printed per fit: compile and sampling seconds, divergences, min bulk ESS of the group
effects; then baseline/aggregated ratios of sampling time and of ESS per second.

    python benchmarks/bench_families.py                # 4 chains x (1000 + 1000)
    python benchmarks/bench_families.py --draws 500 --tune 500
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPEC = REPO / "examples" / "tomz-weeks" / "spec.yml"


def prepare():
    from hetreport.data import load_data, prepare_analysis
    from hetreport.groups import build_groups
    from hetreport.spec import Analysis, load_spec

    spec = load_spec(SPEC)
    analysis = Analysis(name="logit", modifiers=["white", "male", "intl", "hawk_r"], family="bernoulli")
    spec = spec.model_copy(update={"analyses": [analysis], "priors": spec.priors.model_copy(update={"intercept": None, "b": None, "sd": None, "sigma": None})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, load_data(spec), analysis)
        groups = build_groups(adata, spec.report.min_arm)
    return spec, adata, groups


def run(spec, adata, groups, aggregate: bool, sampler):
    from hetreport.models.families import unit_table
    from hetreport.models.hierarchical import (_add_response_effects, _sample, build_design, build_glm_model,
                                               resolve_priors)

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    args = p.parse_args(argv)
    from hetreport.spec import Sampler

    spec, adata, groups = prepare()
    sampler = Sampler(draws=args.draws, tune=args.tune, chains=args.chains, seed=2021)
    out = {}
    for name, agg in (("per unit (baseline)", False), ("aggregated binomial", True)):
        rows, idata, t, ess, div = run(spec, adata, groups, agg, sampler)
        out[name] = (idata, t, ess)
        print(f"{name:22s} rows {rows:5d}  compile {t['compile_s']:6.1f} s  sampling {t['sampling_s']:6.1f} s  "
              f"divergences {div:3d}  min ESS(theta_g) {ess:6.0f}  ESS/s {ess / t['sampling_s']:7.1f}", flush=True)
    (ib, tb, eb), (ia, ta, ea) = out.values()
    mb = ib.posterior["group_effect"].mean(("chain", "draw")).to_numpy()
    ma = ia.posterior["group_effect"].mean(("chain", "draw")).to_numpy()
    mcse = np.sqrt(az.mcse(ib.posterior[["group_effect"]])["group_effect"].to_numpy() ** 2
                   + az.mcse(ia.posterior[["group_effect"]])["group_effect"].to_numpy() ** 2)
    print(f"same posterior: max |difference of group-effect means| = {np.abs(mb - ma).max():.4f} "
          f"({np.max(np.abs(mb - ma) / mcse):.1f} MC standard errors)")
    print(f"ratio sampling time baseline/aggregated: {tb['sampling_s'] / ta['sampling_s']:.2f}x; "
          f"ESS per second aggregated/baseline: {(ea / ta['sampling_s']) / (eb / tb['sampling_s']):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
