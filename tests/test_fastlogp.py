"""The compiled (numba) log density of the collapsed Gaussian model against the PyMC graph it replaces.

The strongest check there is: at random points of the sampler's (unconstrained) space, the two log densities
agree to 1e-8 and so do their gradients (PyTensor's symbolic gradient of ``build_collapsed_model``), for
designs with and without controls, with and without rest levels, and for every supported SD prior."""

import warnings

import numpy as np
import pytest

from hetreport.models import fastlogp
from hetreport.models.hierarchical import (
    _control_prior_sds,
    build_collapsed_model,
    build_design,
    collapsed_terms,
    fit_hierarchical,
    predictor_matrix,
    resolve_priors,
)
from hetreport.spec import Sampler
from tests.conftest import make_analysis, random_frame


def _pymc_logp_dlogp(model):
    logp = model.compile_logp(jacobian=True)
    dlogp = model.compile_dlogp(jacobian=True)
    names = [v.name for v in model.value_vars]
    return logp, dlogp, names


def _flat_to_point(model, x):
    point, pos = {}, 0
    for v in model.value_vars:
        shape = model.initial_point()[v.name].shape
        n = int(np.prod(shape))
        point[v.name] = x[pos : pos + n].reshape(shape)
        pos += n
    return point


def _check(tmp_path, frame, modifiers, controls, priors=None, mode=None, collapse=None, n_points=6, seed=0, predictors=()):
    extra = {"analysis": {"categorical": [c for c in controls if c == "x2"]}} if controls else {}
    if predictors:
        extra.setdefault("analysis", {})["slope_predictors"] = list(predictors)
    if priors:
        extra["priors"] = priors
    spec, adata, groups = make_analysis(tmp_path, frame, modifiers, controls, **extra)
    resolved = resolve_priors(spec.priors, adata)
    design = build_design(adata, groups, mode or "all")
    control_sds = _control_prior_sds(resolved, adata)
    collapse = collapsed_terms(design, resolved) if collapse is None else collapse
    assert fastlogp.supported(resolved)
    Z = predictor_matrix(adata, groups, predictors)
    model = build_collapsed_model(design, resolved, control_sds, adata.control_columns, groups.keys, collapse, Z, predictors)
    logp, dlogp, _ = _pymc_logp_dlogp(model)
    buf, sizes = fastlogp.pack(design, resolved, control_sds, collapse, Z)
    n_dim = sum(int(np.prod(model.initial_point()[v.name].shape)) for v in model.value_vars)
    assert sizes["n_dim"] == n_dim
    rng = np.random.default_rng(seed)
    for _ in range(n_points):
        x = rng.normal(0, 0.8, n_dim)
        point = _flat_to_point(model, x)
        ref, ref_grad = float(logp(point)), np.asarray(dlogp(point))
        val, grad = fastlogp.logp_and_grad(x, buf)
        assert val == pytest.approx(ref, rel=1e-9, abs=1e-8)  # 1e-9 relative: the two sum in different orders
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-8)
    # the stored values equal the graph's deterministics at the same point
    x = rng.normal(0, 0.8, n_dim)
    point = _flat_to_point(model, x)
    stored = fastlogp._stored(sizes)
    names = [s[0] for s in stored]
    outs = model.replace_rvs_by_values([model[n] for n in names])
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=True)
    ref_vals = f(point)
    got = fastlogp.expand_values(x, buf, int(sum(np.prod(s[1]) for s in stored)))
    pos = 0
    for (name, shape, _), ref_v in zip(stored, ref_vals):
        n = int(np.prod(shape))
        np.testing.assert_allclose(got[pos : pos + n], np.ravel(ref_v), rtol=1e-9, atol=1e-10, err_msg=name)
        pos += n
    return sizes


def test_logp_and_gradient_equal_pymc_graph_with_controls(tmp_path):
    sizes = _check(tmp_path, random_frame(n=400, seed=3, levels=(2, 3)), ["m1", "m2"], ["x1", "x2"])
    assert sizes["p"] > 0 and sizes["LK"] > 0


def test_logp_and_gradient_equal_pymc_graph_without_controls_three_modifiers(tmp_path):
    frame = random_frame(n=600, seed=5, levels=(2, 3))
    frame["m3"] = np.random.default_rng(1).integers(0, 4, len(frame))
    sizes = _check(tmp_path, frame, ["m1", "m2", "m3"], [], seed=1)
    assert sizes["p"] == 0 and sizes["Lr"] > 0 and sizes["LK"] > 0


def test_logp_and_gradient_equal_pymc_graph_nothing_collapsed(tmp_path):
    sizes = _check(tmp_path, random_frame(n=300, seed=7), ["m1", "m2"], ["x1"], collapse=(), seed=2)
    assert sizes["LK"] == 0 and sizes["cross"]


def test_logp_and_gradient_equal_pymc_graph_everything_collapsed(tmp_path):
    frame = random_frame(n=300, seed=8)
    sizes = _check(tmp_path, frame, ["m1", "m2"], ["x1"], collapse=(0, 1, 2), seed=3)
    assert sizes["Lr"] == 0 and not sizes["cross"]


def _predictor_frame(n, seed):
    """Groups of m1 x m2 x m3; m2 and m3 (numeric codes) can be slope predictors."""
    return random_frame(n=n, seed=seed, levels=(2, 3, 3))


def test_logp_and_gradient_equal_pymc_graph_slope_predictors_with_controls(tmp_path):
    """Slope predictors' lambda and gamma integrated out with the collapsed coefficients (d = 2 + 2 LK + 2q)."""
    sizes = _check(tmp_path, _predictor_frame(500, 11), ["m1", "m2", "m3"], ["x1", "x2"], predictors=("m2", "m3"), seed=5)
    assert sizes["q"] == 2 and sizes["p"] > 0 and sizes["d"] == 2 + 2 * sizes["LK"] + 4


def test_logp_and_gradient_equal_pymc_graph_slope_predictors_without_controls(tmp_path):
    sizes = _check(
        tmp_path,
        _predictor_frame(400, 12),
        ["m1", "m2", "m3"],
        [],
        priors={"b": "normal(0.2, 0.7)", "intercept": "normal(0.5, 2)"},  # nonzero prior means reach v and the constant
        mode="crossing",
        predictors=("m3",),
        seed=6,
    )
    assert sizes["q"] == 1 and sizes["p"] == 0


def test_logp_and_gradient_equal_pymc_graph_slope_predictors_nothing_collapsed(tmp_path):
    sizes = _check(tmp_path, _predictor_frame(300, 13), ["m1", "m2"], ["x1"], collapse=(), predictors=("m2",), seed=7)
    assert sizes["LK"] == 0 and sizes["q"] == 1


@pytest.mark.parametrize(
    "sd,sigma", [("halfstudent_t(3, 0.7)", "halfcauchy(2)"), ("exponential(2)", "halfnormal(1.5)"), ("halfcauchy(0.5)", "exponential(0.5)")]
)
def test_logp_and_gradient_equal_pymc_graph_other_sd_priors(tmp_path, sd, sigma):
    _check(
        tmp_path,
        random_frame(n=300, seed=9),
        ["m1", "m2"],
        ["x1"],
        priors={"sd": sd, "sigma": sigma, "b": "normal(0.1, 0.5)", "intercept": "normal(1, 3)", "cor": "lkj(3)"},
        seed=4,
    )


def test_compiled_route_gives_the_pymc_routes_posterior(tmp_path):
    """Same data, both routes sampled: the posterior means of the group effects agree within Monte Carlo error."""
    frame = random_frame(n=500, seed=21, levels=(2, 3))
    spec, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], ["x1"])
    sampler = Sampler(draws=500, tune=500, chains=2, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fit_hierarchical(adata, groups, spec.priors, sampler)
        old = fit_hierarchical(adata, groups, spec.priors, sampler, compiled=False)
    assert "numba" in fast.backend and "numba" not in old.backend
    a, b = fast.group_draws(), old.group_draws()
    se = np.sqrt(a.var(axis=0) / 400 + b.var(axis=0) / 400)  # ESS well above 400 per fit on this easy design
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4 * se)
    for var in ("sigma", "sd_slope", "Intercept", "b_treat"):
        fa, fb = fast.idata.posterior[var], old.idata.posterior[var]
        assert np.all(
            np.abs(fa.mean(("chain", "draw")) - fb.mean(("chain", "draw")))
            < 4 * np.sqrt(fa.var(("chain", "draw")) / 200 + fb.var(("chain", "draw")) / 200)
        )


def test_callbacks_are_loaded_from_the_disk_cache_by_a_later_process():
    """Compiled once per machine: a second fresh process loads every C callback from numba's cache."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from hetreport.models import fastlogp as f; "
        "print(f.c_logp.cache_hits, f.c_expand.cache_hits, f.c_glm_logp.cache_hits, f.c_glm_expand.cache_hits)"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for _ in range(2):  # the first may compile (empty cache), the second must not
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.split()
    assert out == ["1", "1", "1", "1"]  # the Gaussian callbacks and the non-Gaussian ones (fastglm)


def test_slope_predictor_fit_with_two_predictors_and_controls_samples_the_compiled_density(tmp_path):
    """End to end: fit_hierarchical with two slope predictors and controls samples the compiled density and stores
    lambda, gamma (by predictor) and systematic_slope; group_effect = systematic_slope + crossing_slope (crossing)."""
    frame = _predictor_frame(600, 14)
    spec, adata, groups = make_analysis(
        tmp_path, frame, ["m1", "m2", "m3"], ["x1"], analysis={"terms": "crossing", "slope_predictors": ["m2", "m3"]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_hierarchical(
            adata, groups, spec.priors, Sampler(draws=200, tune=200, chains=2, seed=1), mode="crossing", predictors=("m2", "m3")
        )
    assert fit.backend.endswith("(the log density compiled by hetreport in numba)")
    post = fit.idata.posterior
    assert list(post["lambda"]["predictor"].values) == ["m2", "m3"] and post["gamma"].sizes["predictor"] == 2
    np.testing.assert_allclose(post["group_effect"], post["systematic_slope"] + post["crossing_slope"], atol=1e-10)
    assert post["lambda"].std() > 0 and post["gamma"].std() > 0  # drawn, not fixed at their conditional means
    assert np.isfinite(post["group_intercept"]).all()


@pytest.mark.slow  # 19-50 s on the shared 2-core machine: PyTensor compiles build_model's graph for the reference fit
def test_slope_predictors_compiled_route_gives_the_uncollapsed_models_posterior(tmp_path):
    """A slope-predictor analysis end to end through ``fit_hierarchical`` samples the compiled density (lambda and
    gamma integrated out, drawn afterwards); ``build_model`` (nothing integrated out, lambda and gamma sampled,
    as before) on the same data gives the same posterior means of group_effect, lambda and sd_slope within
    Monte Carlo error (each route's own ESS)."""
    import arviz as az
    import pandas as pd

    from hetreport.models.hierarchical import _sample, build_model

    rng = np.random.default_rng(31)
    n = 1200
    frame = pd.DataFrame({"treat": rng.integers(0, 2, n), "m1": rng.integers(0, 2, n), "m2": rng.integers(1, 5, n)})
    frame["x1"] = rng.normal(size=n)
    frame["y"] = 0.2 + 0.3 * frame["m1"] + (0.1 + 0.3 * frame["m2"]) * frame["treat"] + 0.4 * frame["x1"] + rng.normal(0, 1, n)
    spec, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], ["x1"], analysis={"slope_predictors": ["m2"]})
    sampler = Sampler(draws=500, tune=500, chains=2, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fit_hierarchical(adata, groups, spec.priors, sampler, predictors=("m2",))
        resolved = resolve_priors(spec.priors, adata)
        design = build_design(adata, groups, "all")
        Z = predictor_matrix(adata, groups, ("m2",))
        model = build_model(design, resolved, _control_prior_sds(resolved, adata), adata.control_columns, groups.keys, Z, ("m2",))
        old, _, old_backend = _sample(model, sampler, ["group_effect", "lambda", "sd_slope", "systematic_slope"], False)
    assert fast.backend.endswith("(the log density compiled by hetreport in numba)") and "numba" not in old_backend
    a, b = fast.idata.posterior, old.posterior
    assert a["lambda"].sizes["predictor"] == 1 and list(a["lambda"]["predictor"].values) == ["m2"]
    for var in ("group_effect", "lambda", "sd_slope"):
        ma, mb = a[var].mean(("chain", "draw")).to_numpy(), b[var].mean(("chain", "draw")).to_numpy()
        se = np.sqrt(
            a[var].var(("chain", "draw")).to_numpy() / az.ess(a[[var]])[var].to_numpy()
            + b[var].var(("chain", "draw")).to_numpy() / az.ess(b[[var]])[var].to_numpy()
        )
        assert np.all(np.abs(ma - mb) < 4 * se), (var, ma, mb, se)
    # the stored identities: group effect = systematic part + varying slopes, systematic = b_treat + Z lambda
    z = a["group"].copy(data=Z[:, 0])
    np.testing.assert_allclose(a["systematic_slope"], a["b_treat"] + a["lambda"].sel(predictor="m2") * z, atol=1e-10)
    assert fast.diagnostics["divergences"] == 0
