"""Bayesian causal forests (stochtree) as the third approach: small real fits, group averages
checked by a second route through stochtree's own predict(), the spec and dependency errors."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_analysis, random_frame

from hetreport.errors import SpecError
from hetreport.methods import FitRequest
from hetreport.spec import parse_spec

pytest.importorskip("stochtree")
from hetreport.models import bcf  # noqa: E402

SMALL = bcf.BCFOptions(num_gfr=5, num_mcmc=60, num_trees_mu=50, num_trees_tau=20)


def _by_hand(draws_unit: np.ndarray, groups) -> np.ndarray:
    """Per draw, the mean of each group's members' CATE draws, one group at a time."""
    return np.vstack([draws_unit[groups.index == g].mean(axis=0) for g in range(groups.n_groups)])


def test_gaussian_group_effects_are_the_average_of_member_cate_draws(tmp_path):
    spec, adata, groups = make_analysis(tmp_path, random_frame(500, seed=3), ["m1", "m2"], ["x1"])
    f = bcf.fit(adata, groups, FitRequest(seed=11, options=SMALL))
    model = f.extra
    # second route: stochtree's own predict() of the CATE at the training covariates
    cate = model.predict(bcf.covariates(adata), adata.t.astype(float), propensity=np.full(adata.n, adata.t.mean()), terms="cate")
    g = _by_hand(np.asarray(cate), groups)
    assert g.shape == (groups.n_groups, 60)
    t = f.table.set_index("group").loc[groups.table["group"]]
    np.testing.assert_allclose(t["estimate"], g.mean(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(t["std_error"], g.std(axis=1, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(t["lower_95"], np.quantile(g, 0.025, axis=1), rtol=1e-9)
    np.testing.assert_allclose(t["upper_90"], np.quantile(g, 0.95, axis=1), rtol=1e-9)
    np.testing.assert_allclose(t["prob_positive"], (g > 0).mean(axis=1))
    # it recovers the simulated ordering: effect 0.3 + 0.2 m1 + 0.2 m2
    assert np.corrcoef(t["estimate"], [0.3 + 0.2 * a + 0.2 * b for a in (0, 1) for b in (0, 1, 2)])[0, 1] > 0.8
    assert f.details["propensity"] == "share" and f.details["treated_share"] == pytest.approx(adata.t.mean())
    assert "50 trees" in bcf.describe(f.details) and "60 retained MCMC draws" in bcf.describe(f.details)


def test_binary_outcome_uses_probit_bcf_on_the_probability_scale(tmp_path):
    rng = np.random.default_rng(5)
    frame = random_frame(600, seed=4)
    p = 0.3 + 0.15 * frame["treat"] * (1 + frame["m1"])
    frame["y"] = (rng.random(len(frame)) < p).astype(int)
    spec, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], family="bernoulli")
    f = bcf.fit(adata, groups, FitRequest(seed=2, options=SMALL))
    X = bcf.covariates(adata)
    prop = np.full(adata.n, adata.t.mean())
    one = np.asarray(f.extra.predict(X, np.ones(adata.n), propensity=prop, terms="y_hat", scale="probability"))
    zero = np.asarray(f.extra.predict(X, np.zeros(adata.n), propensity=prop, terms="y_hat", scale="probability"))
    g = _by_hand(one - zero, groups)
    t = f.table.set_index("group").loc[groups.table["group"]]
    np.testing.assert_allclose(t["estimate"], g.mean(axis=1), rtol=1e-7, atol=1e-10)
    assert f.details["link"] == "probit" and (t["lower_95"] >= -1).all() and (t["upper_95"] <= 1).all()
    assert "probit" in bcf.describe(f.details)


def test_estimated_propensity_is_said_and_a_seed_beyond_int32_works(tmp_path):
    """The simulation study's seeds run to 2**32 - 1; stochtree's generator takes a signed 32-bit one."""
    spec, adata, groups = make_analysis(tmp_path, random_frame(300, seed=1), ["m1"])
    f = bcf.fit(adata, groups, FitRequest(seed=2**32 - 5, options=SMALL.model_copy(update={"propensity": "estimated"})))
    assert 0 <= f.details["seed"] < 2**31
    assert f.details["propensity"] == "estimated" and "estimated from the covariates" in bcf.describe(f.details)
    assert np.isfinite(f.table["estimate"]).all()


def test_spec_accepts_bcf_with_options_and_refuses_other_families(tmp_path):
    base = {
        "title": "t",
        "data": {"path": "d.csv"},
        "outcome": "y",
        "treatment": "t",
        "analyses": [{"name": "a", "modifiers": ["m"], "methods": ["ols_full", "hierarchical", "bcf"]}],
    }
    spec = parse_spec({**base, "method_options": {"bcf": {"num_mcmc": 300}}})
    sel = spec.methods_of(spec.analyses[0])
    assert sel.names[-1] == "bcf" and sel.options["bcf"].num_mcmc == 300
    with pytest.raises(SpecError, match="num_mcmc"):
        parse_spec({**base, "method_options": {"bcf": {"num_mcmc": "many"}}})
    spec = parse_spec({**base, "family": "poisson"})
    with pytest.raises(SpecError, match=r"'bcf'.*does not fit the poisson family.*gaussian, bernoulli"):
        spec.methods_of(spec.analyses[0])


def test_missing_stochtree_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "stochtree" else real(name, *a))
    spec = parse_spec(
        {
            "title": "t",
            "data": {"path": "d.csv"},
            "outcome": "y",
            "treatment": "t",
            "methods": ["ols_full", "hierarchical", "bcf"],
            "analyses": [{"name": "a", "modifiers": ["m"]}],
        }
    )
    with pytest.raises(SpecError, match=r"needs the Python package 'stochtree'.*pip install hetreport\[ml\]"):
        spec.methods_of(spec.analyses[0])


def test_simulation_engine_runs_bcf_from_the_registry():
    from hetreport.simstudy.design import cells, parse_design
    from hetreport.simstudy.engine import run_replication

    d = parse_design(
        {
            "title": "tiny",
            "sample_sizes": [400],
            "heterogeneity_sds": [0.25],
            "replications": 1,
            "modifiers": [{"name": "m1", "probability": 0.5}, {"name": "m2", "probability": 0.5}],
            "approaches": ["ols_full", "bcf"],
            "method_options": {"bcf": {"num_gfr": 5, "num_mcmc": 40, "num_trees_mu": 50, "num_trees_tau": 20}},
        }
    )
    rows = {r["approach"]: r for r in run_replication(d, cells(d)[0], 0)}
    assert rows["bcf"]["status"] == "ok", rows["bcf"].get("error")
    assert np.isfinite(rows["bcf"]["rmse"]) and 0 <= rows["bcf"]["coverage_95"] <= 1 and rows["bcf"]["fit_s"] > 0
    assert np.isfinite(rows["bcf"]["rmse_y"])


@pytest.mark.slow
def test_bcf_through_fit_facts_and_the_report_tables(tmp_path):
    """End to end without rendering: api.fit with methods [..., bcf] puts bcf rows in the effects table,
    its column in the group-effects table, its settings in the methods section's notes."""
    from hetreport.api import fit
    from hetreport.facts import compute_facts
    from hetreport.report.build import headline_notes, method_notes, tables_for

    frame = random_frame(500, seed=8)
    spec, _, _ = make_analysis(
        tmp_path,
        frame,
        ["m1", "m2"],
        ["x1"],
        analysis={"methods": ["ols_full", "subgroup", "hierarchical", "bcf"]},
        method_options={"bcf": {"num_gfr": 5, "num_mcmc": 60, "num_trees_mu": 50, "num_trees_tau": 20}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(spec)
    eff = res.effects
    assert list(dict.fromkeys(eff["method"])) == ["ols_full", "subgroup", "hierarchical", "bcf"]
    b = eff[eff["method"] == "bcf"]
    assert len(b) == 6 and b["estimable"].all() and b["prob_positive"].between(0, 1).all()
    a = res.analyses[0]
    facts = compute_facts(a, eff)
    assert "bcf" in [m.method for m in facts.methods]
    tbl = tables_for(a, eff, facts, "a", 5)
    assert r"Forest \(95\% interval\)" in str(tbl["effects"]) and "Bayesian causal forest" in str(tbl["methods"])
    assert method_notes(a)[0].startswith("Bayesian causal forest (stochtree")
    notes = headline_notes(facts)
    bf = next(m for m in facts.methods if m.method == "bcf")
    assert (len(notes) == 1) == (bf.largest != facts.largest.label)
    saved = res.save(tmp_path / "out")
    from hetreport.results import load_results

    back = load_results(saved)
    cols = ["estimate", "std_error", "lower_90", "upper_90", "lower_95", "upper_95", "prob_positive", "median"]
    pd.testing.assert_frame_equal(
        back.effects.loc[back.effects["method"] == "bcf", cols].reset_index(drop=True),
        eff.loc[eff["method"] == "bcf", cols].reset_index(drop=True),
        check_dtype=False,
        atol=1e-12,
    )
    assert back.analyses[0].methods["bcf"].details["num_mcmc"] == 60 and back.analyses[0].methods["bcf"] == res.analyses[0].methods["bcf"]
