"""Covariate-pattern aggregation of the non-Gaussian likelihood with controls: units sharing group,
arm and every control's value collapse into one row (binomial counts; (pattern, value) frequency
weights), which changes the log density only by a constant, so the posterior is the same."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import make_analysis
from scipy.special import expit
from test_families import CUTS, family_frame

import hetreport.models.families as fams
from hetreport.models.families import default_cutpoints, unit_table
from hetreport.models.hierarchical import _control_prior_sds, build_design, build_glm_model, fit_hierarchical, resolve_priors
from hetreport.spec import Sampler

OUTCOME = {"bernoulli": "ybin", "binomial": "ybinom", "poisson": "cnt", "negativebinomial": "nb", "ordinal": "pref"}


def pattern_frame(n=600, seed=4):
    """family_frame plus few-valued controls: a binary one and a 3-level categorical one that shift eta."""
    f, _, _ = family_frame(n, seed)
    rng = np.random.default_rng(seed + 1)
    f["c1"] = rng.integers(0, 2, n)
    f["c2"] = rng.integers(1, 4, n)
    eta = -0.2 + 0.3 * f.m1 + (0.5 + 0.3 * f.m1) * f.treat + 0.6 * f.c1 - 0.4 * (f.c2 == 3)
    f["ybin"] = (rng.random(n) < expit(eta)).astype(int)
    f["trials"] = rng.integers(1, 5, n)
    f["ybinom"] = rng.binomial(f["trials"], expit(eta))
    f["pref"] = 1 + ((eta.to_numpy() + rng.logistic(size=n))[:, None] > CUTS).sum(axis=1)
    return f


def _analysis(tmp_path, family, frame=None, controls=("c1", "c2")):
    f = pattern_frame() if frame is None else frame
    extra = {"trials": "trials"} if family == "binomial" else {}
    analysis = {"categorical": ["c2"]} if "c2" in controls else {}
    return make_analysis(
        tmp_path, f.rename(columns={OUTCOME[family]: "y"}), ["m1", "m2"], list(controls), family=family, analysis=analysis, **extra
    )


def test_patterns_are_the_distinct_group_arm_control_rows(tmp_path):
    spec, adata, groups = _analysis(tmp_path, "bernoulli")
    ut = unit_table(adata, groups)
    key = np.column_stack([groups.index, adata.t, adata.control_matrix])
    n_pat = len(np.unique(key, axis=0))
    assert ut.aggregated and ut.n_rows == n_pat == ut.n_patterns and n_pat <= adata.n / 2
    assert "patterns" in ut.route and f"{adata.n:,} units" in ut.route
    # the counts are the data's, summed a second way (pandas groupby on the raw columns)
    f = pattern_frame()
    counts = f.groupby(["m1", "m2", "treat", "c1", "c2"])["ybin"].agg(["sum", "size"])
    assert ut.trials.sum() == adata.n and sorted(ut.trials) == sorted(counts["size"].astype(float))
    assert ut.y.sum() == f["ybin"].sum() and sorted(ut.y) == sorted(counts["sum"].astype(float))
    # every row's centred controls are one of the units' centred control rows
    Xc = adata.control_matrix - adata.control_matrix.mean(axis=0)
    units = {tuple(np.round(r, 12)) for r in Xc}
    assert all(tuple(np.round(r, 12)) in units for r in ut.X)


def test_a_continuous_control_falls_back_to_one_row_per_unit(tmp_path):
    spec, adata, groups = _analysis(tmp_path, "bernoulli", controls=("x1", "c1"))
    ut = unit_table(adata, groups)
    assert not ut.aggregated and ut.n_rows == adata.n and ut.n_patterns == adata.n
    assert ut.route.startswith("per unit") and "patterns" in ut.route


def test_the_threshold_is_a_share_of_the_units(tmp_path, monkeypatch):
    spec, adata, groups = _analysis(tmp_path, "ordinal")
    ut = unit_table(adata, groups)
    assert ut.aggregated
    monkeypatch.setattr(fams, "AGGREGATE_MAX_SHARE", 0.9 * ut.n_patterns / adata.n)
    assert not unit_table(adata, groups).aggregated


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "negativebinomial", "ordinal"])
def test_pattern_likelihood_is_the_unit_likelihood_up_to_a_constant(tmp_path, family):
    """Compile both graphs; log p(patterns) - log p(units) is the same at random parameter points,
    and the constant is the sum of log multinomial / binomial coefficients (checked by hand for the
    binary and ordinal outcomes)."""
    spec, adata, groups = _analysis(tmp_path, family)
    ut, per_unit = unit_table(adata, groups), unit_table(adata, groups, aggregate=False)
    assert ut.aggregated and ut.n_rows < adata.n / 2 and not per_unit.aggregated
    resolved = resolve_priors(spec.priors, adata)
    design = build_design(adata, groups)
    sds = _control_prior_sds(resolved, adata)
    cut = default_cutpoints(adata) if family == "ordinal" else None
    models = [build_glm_model(design, u, family, resolved, sds, adata.control_columns, groups.keys, cut_mu=cut) for u in (ut, per_unit)]
    logps = [m.compile_logp() for m in models]
    rng = np.random.default_rng(1)
    start = models[0].initial_point()
    diffs = []
    for _ in range(5):
        point = {k: v + 0.4 * rng.standard_normal(np.shape(v)) for k, v in start.items()}
        a, b = logps[0](point), logps[1](point)
        assert np.isfinite(a) and np.isfinite(b)
        diffs.append(a - b)
    assert np.ptp(diffs) < 1e-6 * max(1.0, abs(diffs[0])), diffs
    if family == "bernoulli":  # the binomial coefficients log C(n_r, s_r)
        from scipy.special import gammaln

        const = np.sum(gammaln(ut.trials + 1) - gammaln(ut.y + 1) - gammaln(ut.trials - ut.y + 1))
        assert diffs[0] == pytest.approx(const, abs=1e-6)
    if family == "ordinal":  # frequency weights carry no coefficient: the two sums are equal
        assert abs(diffs[0]) < 1e-6


@pytest.mark.slow
def test_posterior_means_agree_with_the_per_unit_route(tmp_path, monkeypatch):
    """A small fit of each route (bernoulli with two few-valued controls): the posterior means of the
    response-scale group effects and of the control coefficients agree within Monte Carlo error."""
    spec, adata, groups = _analysis(tmp_path, "bernoulli")
    sampler = Sampler(draws=300, tune=300, chains=2, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = fit_hierarchical(adata, groups, spec.priors, sampler)
        monkeypatch.setattr(fams, "AGGREGATE_MAX_SHARE", 0.0)
        unit = fit_hierarchical(adata, groups, spec.priors, sampler)
    assert agg.likelihood["aggregated"] and not unit.likelihood["aggregated"]
    assert agg.likelihood["rows"] < unit.likelihood["rows"] == adata.n
    import arviz as az

    for var in ("group_effect", "beta"):
        pa, pu = agg.idata.posterior[var], unit.idata.posterior[var]
        diff = (pa.mean(("chain", "draw")) - pu.mean(("chain", "draw"))).to_numpy()
        mcse = np.sqrt(az.mcse(pa.to_dataset())[var].to_numpy() ** 2 + az.mcse(pu.to_dataset())[var].to_numpy() ** 2)
        assert np.all(np.abs(diff) < 4 * mcse + 1e-3), (var, diff, mcse)
