"""Outcome families: the family checks, the aggregated likelihood, response-scale effects
(by hand, against known truths, and against bambi's own comparisons on the same fit)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_analysis
from scipy.special import expit

from hetreport.errors import DataError, SpecError
from hetreport.models.families import _ordinal_logp, default_cutpoints, mean_response, response_effects, unit_table
from hetreport.models.hierarchical import build_design, build_glm_model, fit_hierarchical, group_summary, resolve_priors

CUTS = np.array([-1.2, -0.2, 0.8, 1.8])


def family_frame(n=1500, seed=4, controls=False, levels=(2, 3)):
    """Simulated data with a known link-scale model; returns the frame and the true linear predictor pieces."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {"treat": rng.integers(0, 2, n), "m1": rng.integers(0, levels[0], n), "m2": rng.integers(0, levels[1], n), "x1": rng.normal(size=n)}
    )
    base = -0.3 + 0.3 * f.m1 - 0.1 * f.m2 + (0.5 * f.x1 if controls else 0.0)
    slope = 0.5 + 0.4 * f.m1 - 0.3 * f.m2
    eta = base + slope * f.treat
    f["ybin"] = (rng.random(n) < expit(eta)).astype(int)
    f["cnt"] = rng.poisson(np.exp(eta))
    f["nb"] = rng.poisson(rng.gamma(3.0, np.exp(eta) / 3.0))
    f["pref"] = 1 + ((eta.to_numpy() + rng.logistic(size=n))[:, None] > CUTS).sum(axis=1)
    return f, base.to_numpy(), slope.to_numpy()


def true_group_effects(f, base, slope, family, groups):
    """delta_g from the true parameters: mean over the group's units of E[y|T=1] - E[y|T=0]."""
    cut = CUTS[None, :] if family == "ordinal" else None
    d = mean_response(base + slope, family, cut, (1, 2, 3, 4, 5)) - mean_response(base, family, cut, (1, 2, 3, 4, 5))
    return pd.Series(d).groupby(groups.index).mean().to_numpy()


# --------------------------------------------------------------------------- checks of the outcome


@pytest.mark.parametrize(
    "family,outcome,message",
    [
        ("bernoulli", "pref", "family bernoulli needs a 0/1 outcome"),
        ("poisson", "neg", "negative"),
        ("negativebinomial", "half", "not a whole number"),
        ("ordinal", "ybin", "at least three ordered categories"),
        ("ordinal", "x1", "whole numbers"),
    ],
)
def test_a_family_that_does_not_fit_the_outcome_is_a_clear_error(tmp_path, family, outcome, message):
    f, _, _ = family_frame(200)
    f["neg"] = f["cnt"] - 1
    f["half"] = f["cnt"] + 0.5
    with pytest.raises(DataError) as err:
        make_analysis(tmp_path, f.rename(columns={outcome: "y"}), ["m1", "m2"], family=family)
    assert message in str(err.value) and "family" in str(err.value)


def test_binomial_needs_trials_and_successes_within_them(tmp_path):
    f, _, _ = family_frame(200)
    f["y"], f["n_trials"] = f["cnt"], 3
    with pytest.raises(SpecError, match="needs 'trials'"):
        make_analysis(tmp_path, f, ["m1"], family="binomial")
    with pytest.raises(SpecError, match="only used with family: binomial"):
        make_analysis(tmp_path, f, ["m1"], trials="n_trials")
    with pytest.raises(DataError, match="successes between 0 and the trials"):
        make_analysis(tmp_path, f.assign(y=f["cnt"] + 3), ["m1"], family="binomial", trials="n_trials")


def test_per_analysis_outcome_and_family(tmp_path):
    f, _, _ = family_frame(300)
    spec, adata, _ = make_analysis(
        tmp_path, f.rename(columns={"ybin": "y"}), ["m1"], family="bernoulli", analysis={"outcome": "pref", "family": "ordinal"}
    )
    assert adata.family == "ordinal" and adata.outcome.name == "pref" and adata.categories == (1, 2, 3, 4, 5)
    assert spec.family_of(spec.analyses[0]) == "ordinal"


# --------------------------------------------------------------------------- likelihood


@pytest.mark.parametrize("family,outcome", [("bernoulli", "ybin"), ("poisson", "cnt"), ("negativebinomial", "nb"), ("ordinal", "pref")])
def test_aggregated_likelihood_is_the_unit_likelihood_up_to_a_constant(tmp_path, family, outcome):
    """Same posterior: log p(aggregated) - log p(per unit) is the same at every parameter value."""
    f, _, _ = family_frame(600)
    spec, adata, groups = make_analysis(tmp_path, f.rename(columns={outcome: "y"}), ["m1", "m2"], family=family)
    ut = unit_table(adata, groups)
    assert ut.aggregated and ut.n_rows < adata.n / 5
    resolved = resolve_priors(spec.priors, adata)
    design = build_design(adata, groups)
    cut = default_cutpoints(adata) if family == "ordinal" else None
    per_unit = unit_table(adata, groups, aggregate=False)
    assert not per_unit.aggregated and per_unit.n_rows == adata.n
    models = [build_glm_model(design, u, family, resolved, None, (), groups.keys, cut_mu=cut) for u in (ut, per_unit)]
    logps = [m.compile_logp() for m in models]
    rng = np.random.default_rng(0)
    start = models[0].initial_point()
    diffs = []
    for _ in range(4):
        point = {k: v + 0.3 * rng.standard_normal(np.shape(v)) for k, v in start.items()}
        diffs.append(logps[0](point) - logps[1](point))
    assert np.ptp(diffs) < 1e-6, diffs


def test_ordinal_logp_matches_pymc():
    import pymc as pm
    import pytensor.tensor as pt

    eta = np.array([-2.0, 0.0, 0.3, 1.5, 4.0])
    cut = np.array([-1.0, 0.5, 2.0])
    k = np.array([0, 1, 2, 3, 3])
    ours = _ordinal_logp(pt, pt.as_tensor_variable(eta), pt.as_tensor_variable(cut), k).eval()
    ref = pm.logp(pm.OrderedLogistic.dist(eta=eta, cutpoints=cut), k).eval()
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-10)


# --------------------------------------------------------------------------- response scale


def test_expected_category_by_hand():
    eta, cut, cats = np.array([0.4]), np.array([[-1.0, 0.5, 2.0]]), (1, 2, 4, 7)
    cdf = expit(cut[0] - eta[0])
    p = np.diff(np.concatenate([[0], cdf, [1]]))
    assert mean_response(eta, "ordinal", cut, cats)[0] == pytest.approx(float(p @ np.array(cats)), rel=1e-12)


@pytest.mark.parametrize("family", ["bernoulli", "poisson", "ordinal"])
def test_response_effects_with_controls_equal_a_loop_over_units(family):
    rng = np.random.default_rng(1)
    S, G, n, p = 7, 3, 40, 2
    a, th, beta = rng.normal(size=(S, G)), rng.normal(size=(S, G)), rng.normal(size=(S, p))
    X = rng.normal(size=(n, p))
    g = rng.integers(0, G, n)
    cut = np.sort(rng.normal(size=(S, 3)), axis=1) if family == "ordinal" else None
    got = response_effects(a, th, beta, X, g, G, family, cut, (1, 2, 3, 4), chunk=3)
    want = np.zeros((S, G))
    for s in range(S):
        for j in range(G):
            rows = np.flatnonzero(g == j)
            e0 = a[s, j] + X[rows] @ beta[s]
            c = cut[s][None, :] if cut is not None else None
            want[s, j] = np.mean(mean_response(e0 + th[s, j], family, c, (1, 2, 3, 4)) - mean_response(e0, family, c, (1, 2, 3, 4)))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- recovery (slow: real fits)


@pytest.mark.slow
@pytest.mark.parametrize("family,outcome,controls", [("bernoulli", "ybin", False), ("poisson", "cnt", True), ("ordinal", "pref", False)])
def test_hierarchical_recovers_known_response_scale_effects(tmp_path, family, outcome, controls):
    f, base, slope = family_frame(4000, seed=11, controls=controls)
    spec, adata, groups = make_analysis(
        tmp_path,
        f.rename(columns={outcome: "y"}),
        ["m1", "m2"],
        ["x1"] if controls else [],
        family=family,
        sampler={"draws": 400, "tune": 400, "chains": 2, "seed": 3},
    )
    truth = true_group_effects(f, base, slope, family, groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_hierarchical(adata, groups, spec.priors, spec.sampler)
    s = group_summary(fit, groups)
    z = (s["estimate"] - truth) / s["std_error"]
    inside = ((s["lower_95"] <= truth) & (truth <= s["upper_95"])).mean()
    assert np.all(np.abs(z) < 3.5), (s["estimate"].round(3).tolist(), truth.round(3).tolist())
    assert inside >= 5 / 6
    assert fit.likelihood["aggregated"] == (not controls)
    # the average effect is the unit-weighted mean of the group effects, per draw
    draws = fit.group_draws()
    w = groups.table["n"].to_numpy() / adata.n
    avg = fit.idata.posterior["average_effect"].stack(sample=("chain", "draw")).to_numpy()
    np.testing.assert_allclose(avg, draws @ w, rtol=1e-10)
    # link-scale slopes are reported next to the response-scale effects
    assert {"link_estimate", "link_lower_95"} <= set(s.columns)


@pytest.mark.slow
def test_response_scale_effects_match_bambi_comparisons_on_the_same_fit(tmp_path):
    """Second route: bambi.interpret.comparisons on bambi's own fit, averaged per group, equals the
    group effects hetreport computes from the same draws."""
    import bambi as bmb

    from hetreport.models.bambi_route import build_bambi_model, group_posterior
    from hetreport.models.hierarchical import _add_response_effects

    f, _, _ = family_frame(800, seed=2, controls=True)
    spec, adata, groups = make_analysis(tmp_path, f.rename(columns={"ybin": "y"}), ["m1", "m2"], ["x1"], family="bernoulli")
    resolved = resolve_priors(spec.priors, adata)
    model, term_list, safe_terms, _ = build_bambi_model(adata, groups, resolved, "all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = model.fit(draws=150, tune=300, chains=2, random_seed=5, progressbar=False)
        import arviz as az

        ours = _add_response_effects(
            az.InferenceData(posterior=group_posterior(raw.posterior, adata, groups, term_list, safe_terms)), adata, groups
        )
        cmp = bmb.interpret.comparisons(model, raw, contrast={"treat": [0, 1]}, conditional=None, average_by=["m0", "m1"])
    mine = ours.posterior["group_effect"].mean(("chain", "draw")).to_pandas()
    assert len(cmp) == groups.n_groups
    for m0, m1, est in zip(cmp["m0"], cmp["m1"], cmp["estimate"]):
        key = f"m1={m0}|m2={m1}"
        assert est == pytest.approx(float(mine[key]), abs=1e-9), (key, est, float(mine[key]))


def test_effects_on_at_least_k_add_up_to_the_expected_category_effect():
    """E[y] = c_1 + sum_k (c_k - c_{k-1}) P(y >= c_k), so the effects must add up the same way."""
    from hetreport.models.families import at_least_effects

    rng = np.random.default_rng(3)
    S, G, n, cats = 5, 4, 30, (1, 2, 4, 5)
    a, th, beta, X = rng.normal(size=(S, G)), rng.normal(size=(S, G)), rng.normal(size=(S, 1)), rng.normal(size=(n, 1))
    g = np.arange(n) % G
    cut = np.sort(rng.normal(size=(S, 3)), axis=1)
    ge = at_least_effects(a, th, beta, X, g, G, cut)
    assert ge.shape == (S, G, 3)
    total = (ge * np.diff(cats)).sum(axis=-1)
    np.testing.assert_allclose(total, response_effects(a, th, beta, X, g, G, "ordinal", cut, cats), rtol=1e-10)
    # and without controls, by hand for one draw and group
    ge0 = at_least_effects(a, th, None, np.zeros((n, 0)), g, G, cut)
    assert ge0[1, 2, 0] == pytest.approx(expit(a[1, 2] + th[1, 2] - cut[1, 0]) - expit(a[1, 2] - cut[1, 0]))


@pytest.mark.slow
def test_a_study_with_three_families_runs_and_reports_on_the_outcome_scale(tmp_path):
    """End to end: a linear, a logit and an ordinal analysis of one data set; effects.csv, the GLM
    rows, the link-scale columns, and the report's scale statements and model comparison."""
    from bs4 import BeautifulSoup

    from hetreport.api import run

    f, _, _ = family_frame(1200, seed=8)
    f["support"] = f["pref"].map(lambda v: int(v >= 4))
    f.drop(columns=["support"]).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "spec.yml").write_text(
        "title: Three families\n"
        "data: {path: d.csv, derive: {support: 'pref >= 4'}}\n"
        "outcome: support\ntreatment: treat\n"
        "labels: {variables: {support: Support, pref: Preference}}\n"
        "analyses:\n"
        "  - {name: linear, modifiers: [m1, m2]}\n"
        "  - {name: logit, modifiers: [m1, m2], family: bernoulli}\n"
        "  - {name: ordinal, modifiers: [m1, m2], outcome: pref, family: ordinal}\n"
        "sampler: {draws: 250, tune: 300, chains: 2, seed: 1}\n"
        "report: {formats: [html]}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results, outcome = run(tmp_path / "spec.yml", tmp_path / "out", route="builtin")
    eff = pd.read_csv(tmp_path / "out" / "effects.csv")
    assert set(eff.loc[eff.analysis == "logit", "method"]) == {"ols_full", "glm_full", "ols_additive", "subgroup", "hierarchical"}
    assert "glm_full" not in set(eff.loc[eff.analysis == "linear", "method"])
    hier = eff[(eff.method == "hierarchical") & (eff.analysis != "linear")]
    assert hier["link_estimate"].notna().all() and eff.loc[eff.analysis == "linear", "link_estimate"].isna().all()
    # logit effects are probabilities: bounded, and close to the linear model's
    logit = hier[hier.analysis == "logit"].set_index("group")["estimate"]
    linear = eff[(eff.method == "hierarchical") & (eff.analysis == "linear")].set_index("group")["estimate"]
    assert logit.abs().max() < 1 and (logit - linear).abs().max() < 0.05
    html = BeautifulSoup((tmp_path / "out" / "report" / "report.html").read_text(), "html.parser").get_text(" ")
    html = " ".join(html.split())
    assert "On which scale. Every effect of this analysis" in html and "difference in the probability that the outcome is 1" in html
    assert "expected category" in html and "log-odds scale" in html
    assert "GLM AME" in html
    # the ordinal model speaks for the binary outcome derived as pref >= 4: compared on that scale
    assert "The same groups, different models" in html and "on the scale of Support" in html
    n_cmp = html.count("on the scale of Support")
    assert n_cmp == 3  # linear-logit, linear-ordinal, logit-ordinal


@pytest.mark.slow
def test_slope_predictors_work_with_a_logit_model(tmp_path):
    """The lambda specification on the link scale: theta_g = b_treat + z_g' lambda + u_g per draw, and the
    response-scale effects follow from it."""
    f, _, _ = family_frame(2000, seed=6, levels=(2, 4))
    spec, adata, groups = make_analysis(
        tmp_path,
        f.rename(columns={"ybin": "y"}),
        ["m1", "m2"],
        family="bernoulli",
        analysis={"terms": "crossing", "slope_predictors": ["m2"]},
        sampler={"draws": 200, "tune": 300, "chains": 2, "seed": 2},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_hierarchical(adata, groups, spec.priors, spec.sampler, mode="crossing", predictors=("m2",))
    post = fit.idata.posterior
    lam = post["lambda"].sel(predictor="m2").to_numpy().ravel()
    assert np.mean(lam < 0) > 0.95  # the simulated slope falls by 0.3 per level of m2
    theta = post["group_slope"].stack(s=("chain", "draw")).to_numpy()
    parts = (post["systematic_slope"] + post["crossing_slope"]).stack(s=("chain", "draw")).to_numpy()
    np.testing.assert_allclose(theta, parts, atol=1e-9)
    assert np.abs(post["group_effect"]).max() < 1  # probabilities


def test_binomial_effects_are_per_trial():
    """Units with more trials weigh more: the same as expanding them into 0/1 rows."""
    rng = np.random.default_rng(2)
    S, G, n = 4, 2, 12
    a, th, beta, X = rng.normal(size=(S, G)), rng.normal(size=(S, G)), rng.normal(size=(S, 1)), rng.normal(size=(n, 1))
    g, trials = np.arange(n) % G, rng.integers(1, 6, n)
    got = response_effects(a, th, beta, X, g, G, "binomial", weights=trials)
    rows = np.repeat(np.arange(n), trials)
    want = response_effects(a, th, beta, X[rows], g[rows], G, "bernoulli")
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.slow
def test_binomial_rows_and_their_expanded_bernoulli_rows_give_the_same_draws(tmp_path):
    """Without controls both reduce to the same successes and trials per cell: the same model, so the
    same seed gives the same draws."""
    rng = np.random.default_rng(9)
    n = 300
    f = pd.DataFrame({"treat": rng.integers(0, 2, n), "m1": rng.integers(0, 2, n), "m2": rng.integers(0, 3, n), "k": rng.integers(1, 5, n)})
    p = expit(-0.2 + (0.4 + 0.3 * f.m1) * f.treat)
    f["y"] = rng.binomial(f["k"], p)
    rows = np.repeat(np.arange(n), f["k"])
    succ = np.concatenate([np.r_[np.ones(y), np.zeros(k - y)] for y, k in zip(f["y"], f["k"])])
    long = f.iloc[rows].drop(columns=["y", "k"]).assign(y=succ.astype(int)).reset_index(drop=True)
    sampler = {"draws": 100, "tune": 150, "chains": 2, "seed": 4}
    fits = []
    for sub, frame, extra in (("a", f, {"family": "binomial", "trials": "k"}), ("b", long, {"family": "bernoulli"})):
        (tmp_path / sub).mkdir()
        spec, adata, groups = make_analysis(tmp_path / sub, frame, ["m1", "m2"], sampler=sampler, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits.append(fit_hierarchical(adata, groups, spec.priors, spec.sampler))
    a, b = (x.group_draws() for x in fits)
    np.testing.assert_allclose(a, b, atol=1e-8)
