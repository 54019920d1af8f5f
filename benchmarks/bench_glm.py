"""Time ``fit_glm_full`` against statsmodels on the same fully crossed model (not a test).

Seeded simulated data: N rows (default 20,000), modifiers 2 x 2 x 5 x 5 (100 groups), a
random treatment, four numeric controls and one categorical control with 4 levels; the
outcome is drawn per family (bernoulli, poisson, negativebinomial, ordinal 1-5) with group
effects on the link scale. For each family, after one warm-up call of each route, it times

- **hetreport**: ``fit_glm_full(adata, groups, "HC2")`` -- the separation checks (per arm and
  the linear program), the Newton fit, HC2 leverages, and the 100 delta-method AMEs;
- **baseline**: statsmodels on patsy's treatment-coded design ``y ~ treat * C(g) + controls``
  (``GLM(...).fit(cov_type="HC0")``, ``NegativeBinomial(...).fit(cov_type="HC0")`` or
  ``OrderedModel(...).fit(method="bfgs")``) -- the fit and the robust covariance only, no AMEs;

and prints both wall times, their ratio, the largest AME difference between the routes
(the baseline's AMEs computed afterwards, not timed) and hetreport's log-likelihood minus
the baseline's (positive: the baseline stopped short of the maximum). On a loaded machine
set ``OPENBLAS_NUM_THREADS=1``: OpenBLAS threads fighting for 2 busy cores made every
matrix product 10-20 times slower here. OrderedModel (numerical gradients, BFGS) is slow:
use ``--n 3000`` for ordinal.

    python benchmarks/bench_glm.py                 # N = 20,000, all four families
    python benchmarks/bench_glm.py --n 5000 --family bernoulli
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
import statsmodels.api as sm
from scipy.special import expit
from statsmodels.miscmodels.ordinal_model import OrderedModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hetreport.data import load_data, prepare_analysis  # noqa: E402
from hetreport.groups import build_groups  # noqa: E402
from hetreport.models.glm import fit_glm_full  # noqa: E402
from hetreport.spec import parse_spec  # noqa: E402

CONTROLS = ["x1", "x2", "x3", "x4", "region"]
FORMULA = "y ~ treat * C(g) + x1 + x2 + x3 + x4 + C(region)"


def simulate(n: int, family: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {
            "treat": rng.integers(0, 2, n),
            "m1": rng.integers(0, 2, n),
            "m2": rng.integers(0, 2, n),
            "m3": rng.integers(1, 6, n),
            "m4": rng.integers(1, 6, n),
            "region": rng.integers(1, 5, n),
        }
    )
    for k in range(1, 5):
        f[f"x{k}"] = rng.normal(size=n)
    g = ((f.m1 * 2 + f.m2) * 5 + f.m3 - 1) * 5 + f.m4 - 1
    tau = rng.normal(0.3, 0.3, 100)[g]
    eta = -0.2 + 0.1 * f.m3 - 0.1 * f.m4 + tau * f.treat + 0.3 * f.x1 - 0.2 * f.x2 + 0.1 * (f.region == 3)
    if family == "bernoulli":
        f["y"] = rng.binomial(1, expit(eta))
    elif family == "poisson":
        f["y"] = rng.poisson(np.exp(eta + 1))
    elif family == "negativebinomial":
        mu = np.exp(eta + 1)
        f["y"] = rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    else:
        f["y"] = np.digitize(eta + rng.logistic(size=n), [-1.5, -0.3, 0.6, 1.8]) + 1
    f["g"] = g
    return f


def hetreport_route(frame: pd.DataFrame, family: str, folder: Path):
    frame.to_csv(folder / "data.csv", index=False)
    spec = parse_spec(
        {
            "title": "bench",
            "data": {"path": "data.csv"},
            "outcome": "y",
            "treatment": "treat",
            "family": family,
            "analyses": [{"name": "a", "modifiers": ["m1", "m2", "m3", "m4"], "controls": CONTROLS, "categorical": ["region"]}],
        },
        base_dir=folder,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, load_data(spec), spec.analyses[0])
        groups = build_groups(adata)
    start = time.perf_counter()
    res = fit_glm_full(adata, groups, "HC2")
    return time.perf_counter() - start, res


def baseline_route(frame: pd.DataFrame, family: str):
    y, X = patsy.dmatrices(FORMULA, frame, return_type="dataframe")
    design = X.design_info
    start = time.perf_counter()
    if family in ("bernoulli", "poisson"):
        fam = sm.families.Binomial() if family == "bernoulli" else sm.families.Poisson()
        res = sm.GLM(y, X, family=fam).fit(cov_type="HC0")
        inv = expit if family == "bernoulli" else np.exp
        beta = res.params.to_numpy()
    elif family == "negativebinomial":
        res = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(disp=0, cov_type="HC0", maxiter=300, method="newton")
        inv, beta = np.exp, res.params.to_numpy()[:-1]
    else:
        X = X.drop(columns="Intercept")
        model = OrderedModel(frame["y"].to_numpy(), X, distr="logit")
        res = model.fit(method="bfgs", disp=0, maxiter=3000)
    elapsed = time.perf_counter() - start
    ames = {}
    for g, sub in frame.groupby("g"):
        x1 = np.asarray(patsy.build_design_matrices([design], sub.assign(treat=1))[0])
        x0 = np.asarray(patsy.build_design_matrices([design], sub.assign(treat=0))[0])
        if family == "ordinal":  # OrderedModel has no intercept column
            codes, b = np.arange(1, 6), res.params.to_numpy()
            ames[g] = float(np.mean(res.model.predict(b, exog=x1[:, 1:]) @ codes - res.model.predict(b, exog=x0[:, 1:]) @ codes))
        else:
            ames[g] = float(np.mean(inv(x1 @ beta) - inv(x0 @ beta)))
    return elapsed, ames, float(res.llf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--family", choices=["bernoulli", "poisson", "negativebinomial", "ordinal"], action="append")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    families = args.family or ["bernoulli", "poisson", "negativebinomial", "ordinal"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            frame = simulate(args.n, family, args.seed)
            small = simulate(2000, family, args.seed + 1)
            hetreport_route(small, family, Path(tmp))  # warm-up
            baseline_route(small, family)
            t_het, res = hetreport_route(frame, family, Path(tmp))
            t_base, ames, llf = baseline_route(frame, family)
            table = res.table
            key = {
                f"m1={a}|m2={b}|m3={c}|m4={d}": ((a * 2 + b) * 5 + c - 1) * 5 + d - 1
                for a in range(2)
                for b in range(2)
                for c in range(1, 6)
                for d in range(1, 6)
            }
            diffs = [abs(r.estimate - ames[key[r.group]]) for r in table.itertuples() if r.estimable]
            rows.append(
                {
                    "family": family,
                    "n": args.n,
                    "hetreport_s": round(t_het, 3),
                    "statsmodels_s": round(t_base, 3),
                    "ratio": round(t_base / t_het, 2),
                    "estimable": int(table.estimable.sum()),
                    "max_ame_diff": float(max(diffs)) if diffs else np.nan,
                    "loglik_gain": res.details["loglik"] - llf,
                }
            )
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
