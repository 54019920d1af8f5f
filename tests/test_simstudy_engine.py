"""One replication: the approaches, the metrics, and the compile-once hierarchical model
(swapping data into a compiled model gives the posterior a fresh compile gives)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hetreport.models.frequentist import ols_fitted
from hetreport.simstudy import engine
from hetreport.simstudy.design import cells, parse_design
from hetreport.simstudy.engine import WorkerCache, analysis_inputs, recentred_design, run_replication
from hetreport.simstudy.generate import simulate
from hetreport.simstudy.metrics import common_groups, group_metrics, paired, summarise, verdict

OLS_ONLY = ["ols_full", "ols_additive", "subgroup"]
TINY = {
    "sample_sizes": [300],
    "heterogeneity_sds": [0.25],
    "replications": 2,
    "sampler": {"draws": 200, "tune": 200, "chains": 2, "max_treedepth": 7},
}


def _table(est, lo, hi, ok=None):
    est = np.asarray(est, float)
    return pd.DataFrame(
        {
            "estimate": est,
            "lower_90": lo,
            "upper_90": hi,
            "lower_95": np.asarray(lo) - 1,
            "upper_95": np.asarray(hi) + 1,
            "estimable": np.ones(len(est), bool) if ok is None else ok,
        }
    )


def test_group_metrics_by_hand():
    t = _table([1.0, 2.0, 4.0], [0.5, 2.5, 3.0], [1.5, 3.0, 5.0])
    m = group_metrics(t, np.array([1.0, 2.0, 3.0]), np.array([True, True, True]))
    assert m["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert m["bias"] == pytest.approx(1 / 3)
    assert m["coverage_90"] == pytest.approx(2 / 3)  # 2.0 is outside [2.5, 3.0]
    assert m["coverage_95"] == pytest.approx(1.0)
    assert m["width_90"] == pytest.approx((1 + 0.5 + 2) / 3)
    # common groups: a group one approach cannot estimate is left out for all
    other = _table([1.0, np.nan, 3.0], [0, 0, 0], [1, 1, 1], ok=np.array([True, False, True]))
    mask = common_groups({"a": t, "b": other})
    assert mask.tolist() == [True, False, True]


def test_summaries_have_mc_standard_errors_and_paired_differences():
    rows = []
    for rep in range(4):
        for a, r in (("hierarchical", 0.10 + 0.01 * rep), ("ols_full", 0.12 + 0.01 * rep)):
            rows.append({"cell": "c", "cell_index": 0, "n": 100, "sd": 0.1, "rep": rep, "approach": a, "status": "ok", "rmse": r})
    rows.append({"cell": "c", "cell_index": 0, "n": 100, "sd": 0.1, "rep": 4, "approach": "ols_full", "status": "error", "rmse": np.nan})
    res = pd.DataFrame(rows)
    s = summarise(res, metrics=("rmse",)).set_index("approach")
    assert s.loc["hierarchical", "rmse"] == pytest.approx(0.115)
    assert s.loc["hierarchical", "rmse_se"] == pytest.approx(np.std([0.10, 0.11, 0.12, 0.13], ddof=1) / 2)
    assert s.loc["ols_full", "failed"] == 1 and s.loc["ols_full", "replications"] == 4
    d = paired(res, "rmse", "hierarchical", "ols_full").iloc[0]
    assert d["diff"] == pytest.approx(-0.02) and d["diff_se"] == pytest.approx(0.0, abs=1e-12)
    assert verdict(-0.02, 0.0) == "better" and verdict(0.001, 0.01) == "unclear" and verdict(0.05, 0.01) == "worse"


def test_ols_replication_rows_and_fitted_values():
    d = parse_design({**TINY, "approaches": OLS_ONLY})
    rows = run_replication(d, cells(d)[0], 0)
    assert [r["approach"] for r in rows] == OLS_ONLY and all(r["status"] == "ok" for r in rows)
    by = {r["approach"]: r for r in rows}
    # full interactions and subgroup means are the same cell-means model without controls
    assert by["ols_full"]["rmse"] == pytest.approx(by["subgroup"]["rmse"])
    assert by["ols_full"]["rmse_y"] == pytest.approx(by["subgroup"]["rmse_y"])
    assert 0.15 < by["ols_full"]["rmse_y"] < 0.3  # about the outcome SD (.25)
    assert by["ols_additive"]["rmse"] > by["ols_full"]["rmse"]  # additive misses the higher-order interactions
    sim = simulate(d, cells(d)[0], 0)
    adata, groups = analysis_inputs(d, sim)
    fitted = ols_fitted(adata, groups, "ols_full", {})
    cell_means = pd.Series(adata.y).groupby([groups.index, adata.t]).transform("mean").to_numpy()
    np.testing.assert_allclose(fitted, cell_means, atol=1e-10)


def test_a_failing_approach_is_recorded_and_the_others_run(monkeypatch):
    d = parse_design({**TINY, "approaches": OLS_ONLY})
    real = engine.fit_approach

    def broken(approach, *a, **k):
        if approach == "subgroup":
            raise ValueError("boom")
        return real(approach, *a, **k)

    monkeypatch.setattr(engine, "fit_approach", broken)
    rows = {r["approach"]: r for r in run_replication(d, cells(d)[0], 0)}
    assert rows["subgroup"]["status"] == "error" and "ValueError: boom" in rows["subgroup"]["error"]
    assert rows["ols_full"]["status"] == "ok"


def test_recentring_leaves_the_likelihood_unchanged():
    """The graph's log density at corresponding points is the same whether y is centred at its own
    mean or at the cell's constant (the intercept moves by the difference)."""
    from hetreport.models.hierarchical import build_design, build_model, resolve_priors

    d = parse_design(TINY)
    sim = simulate(d, cells(d)[0], 1)
    adata, groups = analysis_inputs(d, sim)
    resolved = resolve_priors(d.priors, adata)
    own = build_design(adata, groups, "all")
    shift = own.y_mean + 0.37
    moved = recentred_design(adata, groups, shift)
    m1 = build_model(own, resolved, None, adata.control_columns, groups.keys)
    m2 = build_model(moved, resolved, None, adata.control_columns, groups.keys)
    point = m1.initial_point()
    rng = np.random.default_rng(0)
    point = {k: v + 0.1 * rng.standard_normal(np.shape(v)) for k, v in point.items()}
    p2 = dict(point)
    p2["alpha_centred"] = point["alpha_centred"] + (own.y_mean - shift)
    assert float(m1.compile_logp()(point)) == pytest.approx(float(m2.compile_logp()(p2)), rel=1e-10)


@pytest.mark.slow
def test_swapped_data_gives_the_posterior_of_a_fresh_compile():
    d = parse_design(TINY)
    cell = cells(d)[0]
    cache = WorkerCache()
    first = run_replication(d, cell, 0, cache=cache)  # compiles
    swapped = run_replication(d, cell, 1, cache=cache)  # swaps its data in
    h0 = next(r for r in first if r["approach"] == "hierarchical")
    h1 = next(r for r in swapped if r["approach"] == "hierarchical")
    assert (h0["compile"], h1["compile"]) == ("compile", "swap")
    assert h1["compile_s"] == 0 and h0["compile_s"] > 0
    sim = simulate(d, cell, 1)
    adata, groups = analysis_inputs(d, sim)
    from hetreport.simstudy.generate import seeds

    seed = seeds(d, cell, 1)[2]
    fit_swap, info_swap = engine.fit_hierarchical_cached(d, cell, adata, groups, seed, cache=cache)
    fit_fresh, info_fresh = engine.fit_hierarchical_cached(d, cell, adata, groups, seed, cache=WorkerCache(), force_compile=True)
    assert (info_swap["compile"], info_fresh["compile"]) == ("swap", "compile")
    a, b = fit_swap.group_draws(), fit_fresh.group_draws()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    # and the replication's row is exactly what this fit gives
    summary = a.mean(axis=0)
    assert np.isfinite(summary).all()
    assert h1["status"] == "ok" and 0 <= h1["coverage_95"] <= 1
