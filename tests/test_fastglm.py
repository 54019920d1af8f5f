"""The compiled (numba) log density of the non-Gaussian hierarchical model against the PyMC graph it replaces.

At random points of the sampler's (unconstrained) space the two log densities agree (no constant dropped:
the binomial coefficients and log y! are in both) and so do their gradients (PyTensor's symbolic gradient
of ``build_glm_model``, and a central finite difference of the numba value), for bernoulli, binomial,
poisson and ordinal outcomes, with the likelihood on cells, on covariate patterns and per unit; and a small fit of each
route gives the same posterior means within Monte Carlo error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from test_glm_patterns import OUTCOME, pattern_frame

from hetreport.models import fastglm
from hetreport.models.families import default_cutpoints, unit_table
from hetreport.models.hierarchical import _control_prior_sds, build_design, build_glm_model, fit_hierarchical, resolve_priors
from hetreport.spec import Sampler
from tests.conftest import make_analysis


def _analysis(tmp_path, family, controls=("c1", "c2"), priors=None, modifiers=("m1", "m2")):
    f = pattern_frame()
    f["cnt"] = np.random.default_rng(2).poisson(np.exp(-0.5 + 0.4 * f.m1 + 0.3 * f.treat + 0.2 * f.c1))
    extra = {"trials": "trials"} if family == "binomial" else {}
    if priors:
        extra["priors"] = priors
    analysis = {"categorical": ["c2"]} if "c2" in controls else {}
    return make_analysis(
        tmp_path, f.rename(columns={OUTCOME[family]: "y"}), list(modifiers), list(controls), family=family, analysis=analysis, **extra
    )


def _flat_to_point(model, x):
    point, pos = {}, 0
    for v in model.value_vars:
        shape = model.initial_point()[v.name].shape
        n = int(np.prod(shape))
        point[v.name] = x[pos : pos + n].reshape(shape)
        pos += n
    return point


def _check(tmp_path, family, controls=("c1", "c2"), aggregate=True, priors=None, n_points=5, seed=0):
    spec, adata, groups = _analysis(tmp_path, family, controls, priors)
    resolved = resolve_priors(spec.priors, adata)
    design = build_design(adata, groups)
    sds = _control_prior_sds(resolved, adata)
    ut = unit_table(adata, groups, aggregate=aggregate)
    assert fastglm.supported(family, resolved)
    cut = default_cutpoints(adata) if family == "ordinal" else None
    model = build_glm_model(design, ut, family, resolved, sds, adata.control_columns, groups.keys, cut_mu=cut)
    logp, dlogp = model.compile_logp(jacobian=True), model.compile_dlogp(jacobian=True)
    buf, sizes = fastglm.pack(design, ut, family, resolved, sds, cut)
    n_dim = sum(int(np.prod(model.initial_point()[v.name].shape)) for v in model.value_vars)
    assert sizes["n_dim"] == n_dim
    rng = np.random.default_rng(seed)
    for _ in range(n_points):
        x = rng.normal(0, 0.8, n_dim)
        point = _flat_to_point(model, x)
        ref, ref_grad = float(logp(point)), np.asarray(dlogp(point))
        val, grad = fastglm.logp_and_grad(x, buf)
        assert val == pytest.approx(ref, rel=1e-9, abs=1e-8)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-8)
    # the analytic gradient against a central finite difference of the numba value itself
    x = rng.normal(0, 0.5, n_dim)
    _, grad = fastglm.logp_and_grad(x, buf)
    h = 1e-6
    fd = np.array([(fastglm.logp_and_grad(x + h * e, buf)[0] - fastglm.logp_and_grad(x - h * e, buf)[0]) / (2 * h) for e in np.eye(n_dim)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)
    # the stored values equal the graph's deterministics at the same point
    point = _flat_to_point(model, x)
    rows = fastglm.stored(sizes)
    outs = model.replace_rvs_by_values([model[n] for n, _, _ in rows])
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=True)
    got = fastglm.expand_values(x, buf, int(sum(np.prod(s) for _, s, _ in rows)))
    pos = 0
    for (name, shape, _), ref_v in zip(rows, f(point)):
        n = int(np.prod(shape))
        np.testing.assert_allclose(got[pos : pos + n], np.ravel(ref_v), rtol=1e-9, atol=1e-10, err_msg=name)
        pos += n
    return ut, sizes


def test_logp_and_gradient_equal_pymc_graph_bernoulli_on_covariate_patterns(tmp_path):
    ut, sizes = _check(tmp_path, "bernoulli")
    assert ut.aggregated and sizes["p"] > 0 and ut.n_rows < ut.n_units


def test_logp_and_gradient_equal_pymc_graph_binomial_other_priors(tmp_path):
    priors = {"sd": "halfstudent_t(3, 0.7)", "b": "normal(0.1, 0.5)", "intercept": "normal(1, 3)", "cor": "lkj(3)"}
    ut, sizes = _check(tmp_path, "binomial", priors=priors, seed=3)
    assert ut.aggregated and ut.trials.max() > 1


def test_logp_and_gradient_equal_pymc_graph_per_unit(tmp_path):
    ut, sizes = _check(tmp_path, "bernoulli", aggregate=False, seed=1)
    assert not ut.aggregated and ut.n_rows == ut.n_units


def test_logp_and_gradient_equal_pymc_graph_poisson_on_cells_without_controls(tmp_path):
    ut, sizes = _check(tmp_path, "poisson", controls=(), seed=2)
    assert ut.aggregated and sizes["p"] == 0 and ut.trials.max() > 1


def test_logp_and_gradient_equal_pymc_graph_ordinal_on_pattern_value_rows(tmp_path):
    ut, sizes = _check(tmp_path, "ordinal", seed=4)
    assert ut.aggregated and sizes["n_cut"] == 4 and ut.weight.max() > 1


def test_logp_and_gradient_equal_pymc_graph_ordinal_cutpoint_prior_per_unit(tmp_path):
    ut, sizes = _check(tmp_path, "ordinal", aggregate=False, priors={"cutpoints": "normal(0, 3)"}, seed=5)
    assert not ut.aggregated and sizes["n_cut"] == 4


def test_unsupported_cases_keep_the_pymc_graph(tmp_path):
    spec, adata, groups = _analysis(tmp_path, "bernoulli", priors={"intercept": "student_t(3, 0, 2.5)"})
    assert not fastglm.supported("bernoulli", resolve_priors(spec.priors, adata))
    assert not fastglm.supported("negativebinomial", resolve_priors(spec.priors, adata))
    assert not fastglm.supported("bernoulli", resolve_priors(spec.priors, adata), np.zeros((4, 1)))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bernoulli"])  # ordinal passes too, but its PyMC route takes ~2.5 min
def test_compiled_route_gives_the_pymc_routes_posterior(tmp_path, family):
    """Same data, both routes sampled (on covariate patterns): the posterior means of the response-scale
    group effects, the control coefficients and the SDs agree within Monte Carlo error."""
    import arviz as az

    spec, adata, groups = _analysis(tmp_path, family)
    sampler = Sampler(draws=400, tune=400, chains=2, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fit_hierarchical(adata, groups, spec.priors, sampler)
        old = fit_hierarchical(adata, groups, spec.priors, sampler, compiled=False)
    assert "numba" in fast.backend and "numba" not in old.backend
    assert fast.likelihood == old.likelihood
    for var in ("group_effect", "beta", "sd_slope", "b_treat") + (("cutpoints",) if family == "ordinal" else ("Intercept",)):
        pa, pu = fast.idata.posterior[var], old.idata.posterior[var]
        diff = np.ravel((pa.mean(("chain", "draw")) - pu.mean(("chain", "draw"))).to_numpy())
        mcse = np.ravel(np.sqrt(az.mcse(pa.to_dataset())[var].to_numpy() ** 2 + az.mcse(pu.to_dataset())[var].to_numpy() ** 2))
        assert np.all(np.abs(diff) < 4 * mcse + 1e-3), (var, diff, mcse)
