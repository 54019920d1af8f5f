"""The hierarchical model: its likelihood and group sums checked by hand, and small real fits."""

import warnings

import numpy as np
import pytest
from scipy import stats

from hetreport.groups import group_key, terms
from hetreport.models.hierarchical import (
    _control_prior_sds,
    build_design,
    build_model,
    fit_hierarchical,
    group_summary,
    posterior_predictive,
    resolve_priors,
)
from hetreport.spec import Priors
from tests.conftest import SMALL_SAMPLER, make_analysis, random_frame


def _evaluate(model, names, point):
    """Values of model variables at a point given in the sampler's (transformed) space."""
    outs = model.replace_rvs_by_values([model[n] for n in names])
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=True)
    return f(point)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    frame = random_frame(n=500, seed=11)
    return make_analysis(tmp_path_factory.mktemp("h"), frame, ["m1", "m2"], ["x1", "x2"], analysis={"categorical": ["x2"]})


@pytest.fixture(scope="module")
def fitted(analysis):
    spec, adata, groups = analysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_hierarchical(adata, groups, spec.priors, spec.sampler)


def test_design_levels_match_each_groups_modifier_values(analysis):
    _, adata, groups = analysis
    design = build_design(adata, groups)
    term_list = terms(groups.modifiers)
    assert design.term_names == ("m1", "m2", "m1:m2")
    for g, row in groups.table.iterrows():
        for k, term in enumerate(term_list):
            name = design.level_names[design.group_levels[g, k]]
            assert name == group_key(term, [row[m] for m in term])
            assert design.level_term[design.group_levels[g, k]] == k


def test_sufficient_statistic_likelihood_equals_per_row_sum(analysis):
    """The cell-sum likelihood equals sum_i log N(y_i | mu_i, sigma) at an arbitrary point (1e-8)."""
    spec, adata, groups = analysis
    resolved = resolve_priors(spec.priors, adata)
    design = build_design(adata, groups)
    model = build_model(design, resolved, _control_prior_sds(resolved, adata), adata.control_columns, groups.keys)
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.7, np.shape(v)) for k, v in model.initial_point().items()}
    like, alpha_g, theta, beta, sigma = _evaluate(model, ["likelihood", "group_intercept", "group_effect", "beta", "sigma"], point)
    Xc = adata.control_matrix - adata.control_matrix.mean(axis=0)
    mu = alpha_g[groups.index] + theta[groups.index] * adata.t + Xc @ beta
    by_hand = stats.norm.logpdf(adata.y, mu, sigma).sum()
    assert like == pytest.approx(by_hand, rel=1e-10, abs=1e-8)


def test_group_effect_is_common_slope_plus_every_terms_slope(analysis):
    spec, adata, groups = analysis
    resolved = resolve_priors(spec.priors, adata)
    design = build_design(adata, groups)
    model = build_model(design, resolved, None, adata.control_columns, groups.keys)
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    theta, b_treat, z, sd_slope, rho = _evaluate(model, ["group_effect", "b_treat", "z", "sd_slope", "rho"], point)
    lt = design.level_term
    slope_level = sd_slope[lt] * (rho[lt] * z[:, 0] + np.sqrt(1 - rho[lt] ** 2) * z[:, 1])
    for g in range(groups.n_groups):
        assert theta[g] == pytest.approx(b_treat + slope_level[design.group_levels[g]].sum(), abs=1e-12)


def test_summaries_are_computed_from_the_draws(fitted, analysis):
    _, adata, groups = analysis
    draws = fitted.group_draws()
    assert draws.shape == (SMALL_SAMPLER["chains"] * SMALL_SAMPLER["draws"], groups.n_groups)
    summary = group_summary(fitted, groups).set_index("group")
    for j, g in enumerate(groups.keys):
        d = np.sort(draws[:, j])
        assert summary.loc[g, "estimate"] == pytest.approx(d.sum() / len(d))
        assert summary.loc[g, "prob_positive"] == pytest.approx((d > 0).sum() / len(d))
        assert summary.loc[g, "lower_95"] == pytest.approx(np.quantile(d, 0.025))
    w = groups.table["n"].to_numpy() / groups.table["n"].sum()
    avg = fitted.idata.posterior["average_effect"].stack(s=("chain", "draw")).to_numpy()
    np.testing.assert_allclose(avg, draws @ w, rtol=1e-10)
    sig = fitted.idata.posterior["sigma_theta"].stack(s=("chain", "draw")).to_numpy()
    np.testing.assert_allclose(sig, fitted.idata.posterior["sd_slope"].sel(term="m1:m2").stack(s=("chain", "draw")).to_numpy())


def test_fit_records_formulas_priors_and_diagnostics(fitted, analysis):
    _, adata, groups = analysis
    assert fitted.formula_brms == "y ~ 1 + x1 + x2 + treat + (1 + treat | m1*m2)"
    assert fitted.formula_bambi.endswith("(1 + treat | m1) + (1 + treat | m2) + (1 + treat | m1:m2)")
    assert fitted.correlated and "nutpie" in fitted.backend
    d = fitted.diagnostics
    assert {"group_effect", "sigma_theta", "sd_slope", "sigma"} <= set(d["quantities"])
    assert d["quantities"]["group_effect"]["kind"] == "reported" and d["quantities"]["sd_slope"]["kind"] == "SD"
    assert d["draws"] == SMALL_SAMPLER["chains"] * SMALL_SAMPLER["draws"]
    assert isinstance(d["divergences"], int)
    assert "intercept–slope correlation (every term)" in fitted.priors


def test_estimates_are_near_ols_with_plenty_of_data(fitted, analysis):
    """Each group has ~80 units: the pooled estimates sit near the within-group contrasts."""
    from hetreport.models.ols import fit_ols_full

    _, adata, groups = analysis
    ols = fit_ols_full(adata, groups).table.set_index("group")
    hier = group_summary(fitted, groups).set_index("group")
    diff = (hier["estimate"] - ols["estimate"]).abs()
    assert (diff < 2 * ols["std_error"]).all()


def test_same_seed_same_numbers(analysis, fitted):
    spec, adata, groups = analysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = fit_hierarchical(adata, groups, spec.priors, spec.sampler)
    np.testing.assert_array_equal(again.group_draws(), fitted.group_draws())


def test_posterior_predictive_shape_and_scale(fitted, analysis):
    _, adata, groups = analysis
    y_rep = posterior_predictive(fitted, adata, groups, n_draws=20)
    assert y_rep.shape == (20, adata.n)
    assert abs(y_rep.mean() - adata.y.mean()) < 0.2
    assert abs(y_rep.std() - adata.y.std()) / adata.y.std() < 0.2


def test_default_priors_scale_with_the_outcome(analysis):
    spec, adata, groups = analysis
    from dataclasses import replace

    scaled = replace(adata, y=adata.y * 10)
    a, b = resolve_priors(Priors(), adata), resolve_priors(Priors(), scaled)
    assert b["sd"].params[0] == pytest.approx(10 * a["sd"].params[0], rel=0.01)
    assert b["sigma"].params[0] == pytest.approx(10 * a["sigma"].params[0], rel=0.01)
    given = resolve_priors(Priors(sd="halfnormal(0.75)"), scaled)
    assert str(given["sd"]) == "halfnormal(0.75)"


def test_uncorrelated_route_sums_bambi_terms_like_bambi_predicts(analysis):
    """correlated: false uses bambi's model; our per-draw sums equal bambi's own predicted
    difference mu(treat=1) - mu(treat=0) for a unit of each group."""
    import nutpie
    import pandas as pd

    from hetreport.data import code_key
    from hetreport.models.bambi_route import build_bambi_model, group_posterior

    spec, adata, groups = analysis
    resolved = resolve_priors(spec.priors, adata)
    model, term_list, safe_terms, mod_names = build_bambi_model(adata, groups, resolved, "all")
    model.build()
    raw = nutpie.sample(nutpie.compile_pymc_model(model.backend.model), draws=50, tune=50, chains=1, seed=3, progress_bar=False)
    ours = group_posterior(raw.posterior, adata, groups, term_list, safe_terms)["group_effect"].to_numpy()[0]
    rows = []
    for _, g in groups.table.iterrows():
        for t in (0.0, 1.0):
            row = {"treat": t, **{mod_names[m]: code_key(g[m]) for m in groups.modifiers}}
            row.update({f"x{k}": 0.0 for k in range(adata.control_matrix.shape[1])})
            rows.append(row)
    pred = model.predict(raw, data=pd.DataFrame(rows), kind="response_params", inplace=False)
    mu = pred.posterior["mu"].to_numpy()[0]  # (draw, obs)
    np.testing.assert_allclose(ours, mu[:, 1::2] - mu[:, 0::2], atol=1e-8)


@pytest.mark.slow
def test_pymc_backend_gives_the_same_posterior(analysis, fitted):
    """sampler.backend: pymc samples the same model with PyMC's NUTS: group effects agree with
    nutpie's to Monte-Carlo error."""
    spec, adata, groups = analysis
    sampler = spec.sampler.model_copy(update={"backend": "pymc"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = fit_hierarchical(adata, groups, spec.priors, sampler)
    assert "PyMC" in other.backend
    a, b = group_summary(fitted, groups), group_summary(other, groups)
    mc_se = np.sqrt(a["std_error"] ** 2 / 150 + b["std_error"] ** 2 / 150)  # conservative ESS
    assert (np.abs(a["estimate"] - b["estimate"]) < 4 * mc_se).all()


@pytest.mark.slow
def test_slope_predictors_recover_a_linear_effect_pattern(tmp_path):
    """The lambda specification: theta_g = beta_T + z_g' lambda + u_g; on data whose effect rises
    by 0.3 per level of m2, lambda is near 0.3 and each draw's group effect is the systematic part
    plus the varying part exactly."""
    rng = np.random.default_rng(2)
    n = 1500
    import pandas as pd

    frame = pd.DataFrame({"treat": rng.integers(0, 2, n), "m1": rng.integers(0, 2, n), "m2": rng.integers(1, 5, n)})
    frame["y"] = 0.2 + (0.1 + 0.3 * frame["m2"]) * frame["treat"] + rng.normal(0, 0.5, n)
    spec, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], analysis={"terms": "crossing", "slope_predictors": ["m2"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_hierarchical(adata, groups, spec.priors, spec.sampler, mode="crossing", predictors=["m2"])
    assert "compiled by hetreport in numba" in fit.backend  # lambda and gamma integrated out: no per-study compile
    post = fit.idata.posterior
    lam = post["lambda"].sel(predictor="m2").to_numpy().ravel()
    assert abs(lam.mean() - 0.3) < 3 * lam.std() + 0.02
    np.testing.assert_allclose(post["group_effect"], post["systematic_slope"] + post["crossing_slope"], atol=1e-10)
    assert "treat:(m2)" in fit.formula_brms and "(1 + treat | m1:m2)" in fit.formula_brms


def _gamma_precision(Hm, sig, ipr, bpr, lk, ia, ib, sdi, sds, rho, iz=np.arange(0)):
    """P = H / sigma^2 + the prior precision of gamma = (alpha, b_treat, a_K, b_K[, gamma_Z, lambda_Z]), by hand."""
    om = 1 - rho[lk] ** 2
    P = Hm / sig**2
    P[0, 0] += 1 / ipr["sigma"] ** 2
    P[1, 1] += 1 / bpr["sigma"] ** 2
    P[iz, iz] += 1 / bpr["sigma"] ** 2
    P[ia, ia] += 1 / (sdi[lk] ** 2 * om)
    P[ib, ib] += 1 / (sds[lk] ** 2 * om)
    P[ia, ib] -= rho[lk] / (sdi[lk] * sds[lk] * om)
    P[ib, ia] -= rho[lk] / (sdi[lk] * sds[lk] * om)
    return P


def _levels_logpdf(gam, lk, LK, sdi, sds, rho):
    """The collapsed levels' bivariate normal prior (intercept and slope effect of each level), by hand."""
    from scipy.stats import multivariate_normal as mvn

    lp = 0.0
    for j, l in enumerate(lk):
        C = [[sdi[l] ** 2, rho[l] * sdi[l] * sds[l]], [rho[l] * sdi[l] * sds[l], sds[l] ** 2]]
        lp += mvn.logpdf([gam[2 + j], gam[2 + LK + j]], [0, 0], C)
    return lp


def _gaussian_loglik(design, m, beta, sig):
    """The Gaussian log likelihood from the cells' sufficient statistics at cell means m (G, 2) and controls beta."""
    quad = (
        design.yy
        - 2 * (m * design.cell_sy).sum()
        + (design.cell_n * m**2).sum()
        - 2 * design.xy @ beta
        + 2 * (m[:, :, None] * design.cell_sx * beta).sum()
        + beta @ design.xx @ beta
    )
    return -design.n * np.log(sig) - 0.5 * design.n * np.log(2 * np.pi) - quad / (2 * sig**2)


def test_collapsed_likelihood_is_the_exact_marginal(tmp_path):
    """The sampled graph integrates the intercept, common slope and coarse terms out: at any point,
    joint log density = collapsed potential + log N(gamma | gamma_mean, P^-1), for any gamma."""
    from scipy.stats import multivariate_normal as mvn
    from scipy.stats import norm

    from hetreport.models import hierarchical as H

    frame = random_frame(n=600, seed=4, levels=(2, 3, 5))
    spec, adata, groups = make_analysis(
        tmp_path, frame, ["m1", "m2", "m3"], ["x1"], priors={"intercept": "normal(0, 1)", "b": "normal(0, 0.5)"}
    )
    resolved = H.resolve_priors(spec.priors, adata)
    design = H.build_design(adata, groups, "all")
    K = H.collapsed_terms(design, resolved)
    assert 0 < len(K) < len(design.term_names)  # some terms integrated out, some sampled
    model = H.build_collapsed_model(design, resolved, H._control_prior_sds(resolved, adata), adata.control_columns, groups.keys, K)
    k_idx, _, _, member, _, Hm, _ = H._collapse_design(design, K)
    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(size=np.shape(v)) * 0.5 for k, v in model.initial_point().items()}
    logm, gm, Ar, Br, sdi, sds, rho, sig, beta = _evaluate(
        model, ["likelihood", "gamma_mean", "A_rest", "B_rest", "sd_intercept", "sd_slope", "rho", "sigma", "beta"], point
    )
    lk, LK = design.level_term[k_idx], len(k_idx)
    ipr, bpr = resolved["intercept"].kwargs(), resolved["b"].kwargs()
    ia, ib = 2 + np.arange(LK), 2 + LK + np.arange(LK)
    P = _gamma_precision(Hm, sig, ipr, bpr, lk, ia, ib, sdi, sds, rho)
    gaps = []
    for _ in range(3):
        gam = rng.normal(size=2 + 2 * LK) * 0.3
        lp = norm.logpdf(gam[0], ipr["mu"] - design.y_mean, ipr["sigma"]) + norm.logpdf(gam[1], bpr["mu"], bpr["sigma"])
        lp += _levels_logpdf(gam, lk, LK, sdi, sds, rho)
        m0 = gam[0] + member @ gam[2 : 2 + LK] + Ar
        m = np.stack([m0, m0 + gam[1] + member @ gam[2 + LK :] + Br], axis=1)
        ll = _gaussian_loglik(design, m, beta, sig)
        gaps.append(ll + lp - logm - mvn.logpdf(gam, gm, np.linalg.inv(P)))
    np.testing.assert_allclose(gaps, 0, atol=1e-6)


def test_collapsed_likelihood_with_slope_predictors_is_the_exact_marginal(tmp_path):
    """With slope predictors, gamma also holds their main effects and slope coefficients (the b prior, here with a
    nonzero mean): joint log density, written out by hand from build_model's formulas = collapsed potential +
    log N(gamma | gamma_mean, P^-1), for any gamma."""
    from scipy.stats import multivariate_normal as mvn
    from scipy.stats import norm

    from hetreport.models import hierarchical as H

    frame = random_frame(n=600, seed=6, levels=(2, 3, 3))
    spec, adata, groups = make_analysis(
        tmp_path,
        frame,
        ["m1", "m2", "m3"],
        ["x1"],
        priors={"intercept": "normal(0.3, 1)", "b": "normal(0.1, 0.5)"},
        analysis={"slope_predictors": ["m2", "m3"]},
    )
    resolved = H.resolve_priors(spec.priors, adata)
    design = H.build_design(adata, groups, "all")
    K = H.collapsed_terms(design, resolved)
    assert 0 < len(K) < len(design.term_names)
    Z = H.predictor_matrix(adata, groups, ("m2", "m3"))
    sds = H._control_prior_sds(resolved, adata)
    model = H.build_collapsed_model(design, resolved, sds, adata.control_columns, groups.keys, K, Z, ("m2", "m3"))
    k_idx, _, _, member, _, Hm, _ = H._collapse_design(design, K, Z)
    rng = np.random.default_rng(7)
    point = {k: v + rng.normal(size=np.shape(v)) * 0.5 for k, v in model.initial_point().items()}
    logm, gm, Ar, Br, sdi, sds_, rho, sig, beta = _evaluate(
        model, ["likelihood", "gamma_mean", "A_rest", "B_rest", "sd_intercept", "sd_slope", "rho", "sigma", "beta"], point
    )
    lk, LK, q = design.level_term[k_idx], len(k_idx), 2
    ipr, bpr = resolved["intercept"].kwargs(), resolved["b"].kwargs()
    d = 2 + 2 * LK + 2 * q
    assert gm.shape == (d,) and Hm.shape == (d, d)
    ia, ib, iz = 2 + np.arange(LK), 2 + LK + np.arange(LK), 2 + 2 * LK + np.arange(2 * q)
    P = _gamma_precision(Hm, sig, ipr, bpr, lk, ia, ib, sdi, sds_, rho, iz)
    gaps = []
    for _ in range(3):
        gam = rng.normal(size=d) * 0.3
        lp = norm.logpdf(gam[0], ipr["mu"] - design.y_mean, ipr["sigma"]) + norm.logpdf(gam[[1, *iz]], bpr["mu"], bpr["sigma"]).sum()
        lp += _levels_logpdf(gam, lk, LK, sdi, sds_, rho)
        g_z, l_z = gam[iz[:q]], gam[iz[q:]]
        m0 = gam[0] + member @ gam[ia] + Z @ g_z + Ar  # build_model: alpha + A + Z gamma
        m = np.stack([m0, m0 + gam[1] + Z @ l_z + member @ gam[ib] + Br], axis=1)  # + b_treat + Z lambda + B
        ll = _gaussian_loglik(design, m, beta, sig)
        gaps.append(ll + lp - logm - mvn.logpdf(gam, gm, np.linalg.inv(P)))
    np.testing.assert_allclose(gaps, 0, atol=1e-6)


def test_a_failed_first_diagnosis_is_refitted_with_a_longer_warm_up(analysis):
    """The automatic second fit: a short warm-up aiming at a large step (target_accept 0.51) diverges, so the
    first diagnosis fails; the recorded diagnostics are the second fit's (twice the warm-up, at least 1,000,
    and a smaller step), with the first fit's figures and the reason kept beside them."""
    from hetreport.models.hierarchical import needs_retry
    from hetreport.spec import Sampler

    spec, adata, groups = analysis
    sampler = Sampler(draws=1000, tune=20, chains=2, seed=2, target_accept=0.51)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_hierarchical(adata, groups, spec.priors, sampler)
    d = fit.diagnostics
    retry = d["retry"]
    first = retry["first"]
    assert first["sampler"]["tune"] == 20 and first["flags"] and first["divergences"] > 0
    assert "divergent" in retry["reason"]
    assert retry["sampler"]["tune"] == 1000 and retry["sampler"]["seed"] == 2
    assert retry["sampler"]["target_accept"] == pytest.approx(1 - 0.49 / 4)
    assert retry["sampler"]["draws"] >= 1000
    # what is reported comes from the second fit: its draws, its diagnosis
    assert d["draws"] == 2 * retry["sampler"]["draws"] == fit.group_draws().shape[0]
    assert not needs_retry(d, sampler) and not d["flags"]
    assert fit.timings["first_fit_s"] == first["seconds"] > 0
    # without the rule, the same call reports the failed first fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = fit_hierarchical(adata, groups, spec.priors, sampler, retry=False)
    assert "retry" not in plain.diagnostics and plain.diagnostics["flags"] == first["flags"]


def test_retry_settings_follow_the_failure():
    from hetreport.models.hierarchical import RETRY_MIN_DRAWS, needs_retry, retry_sampler
    from hetreport.spec import Sampler

    def diag(rhat=1.0, ess=1000.0, div=0):
        return {"quantities": {"sd_slope": {"max_rhat": rhat, "min_ess_bulk": ess, "min_ess_tail": ess + 1}}, "divergences": div}

    s = Sampler(draws=1000, tune=1000, chains=4, target_accept=0.98, seed=1)
    assert not needs_retry(diag(), s)
    assert needs_retry(diag(rhat=1.02), s) and needs_retry(diag(ess=300), s) and needs_retry(diag(div=2), s)
    small = s.model_copy(update={"draws": RETRY_MIN_DRAWS // 4 - 1})
    assert not needs_retry(diag(div=5), small)  # quick looks are reported as they are
    r = retry_sampler(s, diag(rhat=1.02))
    assert (r.tune, r.draws, r.target_accept, r.seed) == (2000, 2000, 0.98, 1)  # twice the warm-up and the draws
    assert retry_sampler(s, diag(div=2)).target_accept == pytest.approx(0.995)
    assert retry_sampler(s, diag(ess=300)).draws == 2000  # twice as many reach 400 with a margin
    assert retry_sampler(s, diag(ess=200)).draws == 2500  # 1,000 x 1.25 x 400 / 200
    assert retry_sampler(s, diag(ess=10)).draws == 4000  # at most four times as many
    assert retry_sampler(s.model_copy(update={"tune": 200}), diag(rhat=1.1)).tune == 1000


def test_posterior_predictive_on_a_subset_of_rows_is_the_same_model(fitted, analysis):
    """Replications for a subset of rows (what a large study's check draws) come from the same model as those of
    every row: with all posterior draws, the per-row means differ only by the outcome noise (the controls stay
    centred on all rows, as fitted); and the subset rule keeps every row of a small study."""
    from hetreport.api import PPC_MAX_ROWS, ppc_row_subset

    _, adata, groups = analysis
    rows = np.sort(np.random.default_rng(1).choice(adata.n, 150, replace=False))
    D = fitted.idata.posterior.sizes["chain"] * fitted.idata.posterior.sizes["draw"]
    full = posterior_predictive(fitted, adata, groups, n_draws=D, seed=3)[:, rows]
    sub = posterior_predictive(fitted, adata, groups, n_draws=D, seed=4, rows=rows)
    assert sub.shape == (D, len(rows))
    z = (sub.mean(0) - full.mean(0)) / np.sqrt((sub.var(0) + full.var(0)) / D)
    assert abs(z.mean()) < 4 / np.sqrt(len(rows)) and (z**2).mean() < 1.6
    assert ppc_row_subset(PPC_MAX_ROWS, 1) is None
    big = ppc_row_subset(10 * PPC_MAX_ROWS, 1)
    assert len(np.unique(big)) == PPC_MAX_ROWS and np.all(np.diff(big) > 0)
    np.testing.assert_array_equal(big, ppc_row_subset(10 * PPC_MAX_ROWS, 1))


class _SwallowingSampler:
    """Stands in for nutpie's running sampler only in what this test is about: a ``wait()`` inside which a
    signal's handler raises and the exception is dropped (what nutpie's Rust ``wait`` did in CI)."""

    def __init__(self, sig=None):
        self.sig, self.cancelled = sig, False

    def wait(self):
        import os
        import time

        if self.sig is not None:
            try:
                os.kill(os.getpid(), self.sig)
                time.sleep(0.5)  # the handler runs here
            except BaseException:  # dropped, as inside the sampler
                pass
        return "draws"

    def cancel(self):
        self.cancelled = True


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_dropped_inside_the_samplers_wait_still_ends_the_run(sig):
    import signal

    from hetreport.cli import Terminated, _on_sigterm
    from hetreport.models.hierarchical import wait_interruptibly

    before = signal.signal(signal.SIGTERM, _on_sigterm), signal.getsignal(signal.SIGINT)
    try:
        running = _SwallowingSampler(getattr(signal, sig))
        with pytest.raises(KeyboardInterrupt if sig == "SIGINT" else Terminated):
            wait_interruptibly(running)
        assert running.cancelled
        quiet = _SwallowingSampler()
        assert wait_interruptibly(quiet) == "draws" and not quiet.cancelled
        assert signal.getsignal(signal.SIGTERM) is _on_sigterm and signal.getsignal(signal.SIGINT) is before[1]  # restored
    finally:
        signal.signal(signal.SIGTERM, before[0])
