"""The GLM with fully crossed interactions (``glm_full``) checked against second routes:
closed forms on the saturated model, statsmodels' formula API with a numerically
differentiated delta method, statsmodels' OrderedModel and NegativeBinomial, recovery of
known effects, and the separation traps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import patsy
import pytest
import statsmodels.api as sm
from scipy.special import expit
from statsmodels.miscmodels.ordinal_model import OrderedModel

import hetreport.models.glm as glm
from hetreport.models.glm import fit_glm_full
from tests.conftest import make_analysis

COLUMNS = [
    "group",
    "estimate",
    "std_error",
    "df",
    "lower_90",
    "upper_90",
    "lower_95",
    "upper_95",
    "p_value",
    "estimable",
    "note",
    "link_estimate",
    "link_std_error",
    "link_lower_95",
    "link_upper_95",
]


def _frame(n=600, seed=0, levels=(2, 3), family="bernoulli", controls=True, effects=None):
    """Groups m1 x m2, a treatment, controls x1 (numeric) and x2 (1-3, categorical), and an outcome of the family."""
    rng = np.random.default_rng(seed)
    f = pd.DataFrame({"treat": rng.integers(0, 2, n)})
    for k, L in enumerate(levels):
        f[f"m{k + 1}"] = rng.integers(0, L, n)
    f["x1"] = rng.normal(size=n)
    f["x2"] = rng.integers(1, 4, n)
    g = f["m1"] * levels[1] + f["m2"]
    base = -0.3 + 0.2 * f["m1"] - 0.1 * f["m2"]
    tau = (0.4 + 0.3 * f["m1"] - 0.25 * f["m2"]) if effects is None else np.asarray(effects)[g]
    eta = base + tau * f["treat"] + ((0.6 * f["x1"] + 0.3 * (f["x2"] == 3)) if controls else 0.0)
    if family == "bernoulli":
        f["y"] = rng.binomial(1, expit(eta))
    elif family == "binomial":
        f["n"] = rng.integers(1, 6, n)
        f["y"] = rng.binomial(f["n"], expit(eta))
    elif family == "poisson":
        f["y"] = rng.poisson(np.exp(eta + 0.5))
    elif family == "negativebinomial":
        mu, phi = np.exp(eta + 0.7), 1.5
        f["y"] = rng.negative_binomial(phi, phi / (phi + mu))
    elif family == "ordinal":
        latent = eta + rng.logistic(size=n)
        f["y"] = np.digitize(latent, [-1.5, -0.3, 0.6, 1.8]) + 1  # 1..5
    f["g"] = f["m1"].astype(str) + "_" + f["m2"].astype(str)
    return f


def _fit(tmp_path, frame, family, controls=("x1", "x2"), se_type="HC2", **extra):
    if controls:
        extra.setdefault("analysis", {"categorical": ["x2"]} if "x2" in controls else {})
    if family == "binomial":
        extra.setdefault("trials", "n")
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], list(controls), family=family, **extra)
    return adata, groups, fit_glm_full(adata, groups, se_type)


def _by_group(res, frame):
    t = res.table.set_index("group")
    keys = {f"m1={a}|m2={b}": f"{a}_{b}" for a in frame.m1.unique() for b in frame.m2.unique()}
    return t, keys


# --------------------------------------------------------------------------- saturated closed forms


def test_table_shape_and_formula(tmp_path):
    frame = _frame()
    adata, groups, res = _fit(tmp_path, frame, "bernoulli")
    assert res.method == "glm_full"
    assert list(res.table.columns) == COLUMNS
    assert len(res.table) == groups.n_groups and res.table["estimable"].all()
    assert np.isinf(res.table["df"]).all()
    assert res.formula == "y ~ treat * (m1 * m2) + x1 + x2; family bernoulli, logit link"
    for key in ("family", "link", "se_type", "n", "n_coef", "converged", "loglik"):
        assert key in res.details
    assert res.details["converged"] and res.details["family"] == "bernoulli" and res.details["link"] == "logit"
    # normal (z) intervals
    row = res.table.iloc[0]
    assert row.upper_95 - row.estimate == pytest.approx(1.959963984540054 * row.std_error, rel=1e-9)
    assert row.upper_90 - row.estimate == pytest.approx(1.6448536269514722 * row.std_error, rel=1e-9)
    assert row.link_lower_95 == pytest.approx(row.link_estimate - 1.959963984540054 * row.link_std_error, rel=1e-9)
    z = row.estimate / row.std_error
    assert row.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)


def test_saturated_bernoulli_equals_difference_in_proportions(tmp_path):
    """No controls: each group's AME is p1 - p0, its HC0 SE sqrt(p1(1-p1)/n1 + p0(1-p0)/n0),
    its HC2 SE the same with n - 1 (the Welch-type variance), its link estimate the log odds ratio."""
    frame = _frame(controls=False)
    _, groups, hc0 = _fit(tmp_path, frame, "bernoulli", controls=(), se_type="HC0")
    _, _, hc2 = _fit(tmp_path, frame, "bernoulli", controls=(), se_type="HC2")
    t0, keys = _by_group(hc0, frame)
    t2 = hc2.table.set_index("group")
    for key, g in keys.items():
        sub = frame[frame.g == g]
        y1, y0 = sub.y[sub.treat == 1], sub.y[sub.treat == 0]
        p1, p0, n1, n0 = y1.mean(), y0.mean(), len(y1), len(y0)
        assert t0.loc[key, "estimate"] == pytest.approx(p1 - p0, abs=1e-6)
        assert t0.loc[key, "std_error"] == pytest.approx(np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0), rel=1e-6)
        assert t2.loc[key, "std_error"] == pytest.approx(np.sqrt(p1 * (1 - p1) / (n1 - 1) + p0 * (1 - p0) / (n0 - 1)), rel=1e-6)
        lor = np.log(p1 / (1 - p1)) - np.log(p0 / (1 - p0))
        assert t0.loc[key, "link_estimate"] == pytest.approx(lor, abs=1e-6)
        assert t0.loc[key, "link_std_error"] == pytest.approx(np.sqrt(1 / (n1 * p1 * (1 - p1)) + 1 / (n0 * p0 * (1 - p0))), rel=1e-6)


def test_saturated_poisson_equals_difference_in_means(tmp_path):
    """No controls: AME = mean1 - mean0. The HC0 sandwich gives each arm var(y)/n with the
    1/n variance, sum((y - ybar)^2) / n^2 -- not the model-based mean/n, which holds only when
    the counts really are Poisson; HC2 gives the unbiased s^2/n."""
    frame = _frame(family="poisson", controls=False)
    _, _, hc0 = _fit(tmp_path, frame, "poisson", controls=(), se_type="HC0")
    _, _, hc2 = _fit(tmp_path, frame, "poisson", controls=(), se_type="HC2")
    t0, keys = _by_group(hc0, frame)
    t2 = hc2.table.set_index("group")
    for key, g in keys.items():
        sub = frame[frame.g == g]
        y1, y0 = sub.y[sub.treat == 1].to_numpy(float), sub.y[sub.treat == 0].to_numpy(float)
        assert t0.loc[key, "estimate"] == pytest.approx(y1.mean() - y0.mean(), abs=1e-6)
        assert t0.loc[key, "std_error"] == pytest.approx(np.sqrt(y1.var() / len(y1) + y0.var() / len(y0)), rel=1e-6)
        assert t2.loc[key, "std_error"] == pytest.approx(np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0)), rel=1e-6)
        assert t0.loc[key, "link_estimate"] == pytest.approx(np.log(y1.mean() / y0.mean()), abs=1e-6)


# --------------------------------------------------------------------------- against statsmodels


def _numeric_ame(frame, res, design, key_rows, predict):
    """AME of the group's rows as a function of statsmodels' parameters; value and central-difference gradient."""
    d1 = frame.loc[key_rows].assign(treat=1)
    d0 = frame.loc[key_rows].assign(treat=0)
    X1 = np.asarray(patsy.build_design_matrices([design], d1)[0])
    X0 = np.asarray(patsy.build_design_matrices([design], d0)[0])

    def f(b):
        return float(np.mean(predict(X1 @ b) - predict(X0 @ b)))

    b = res.params.to_numpy()
    grad = np.array([(f(b + e) - f(b - e)) / 2e-6 for e in np.eye(len(b)) * 1e-6])
    return f(b), grad


def _link_contrast(names, g_level, ref_level):
    c = np.zeros(len(names))
    c[names.index("treat")] = 1.0
    if g_level != ref_level:
        c[names.index(f"treat:C(g)[T.{g_level}]")] = 1.0
    return c


def _sm_cov(res, se_type, cluster=None):
    """Robust covariance of a statsmodels GLM from its own pieces (scores, Hessian, hat values)."""
    S = res.model.score_obs(res.params.to_numpy())
    bread = np.linalg.inv(-res.model.hessian(res.params.to_numpy()))
    n, k = S.shape
    if se_type == "HC0":
        meat = S.T @ S
    elif se_type == "HC1":
        meat = S.T @ S * n / (n - k)
    elif se_type in ("HC2", "HC3"):
        h = res.get_hat_matrix_diag()
        meat = (S / ((1 - h) ** (1 if se_type == "HC2" else 2))[:, None]).T @ S
    return bread @ meat @ bread


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
@pytest.mark.parametrize("se_type", ["HC0", "HC1", "HC2", "HC3", "cluster"])
def test_with_controls_matches_statsmodels_formula(tmp_path, family, se_type):
    """AMEs and SEs against sm.GLM on patsy's design for 'y ~ treat * C(g) + x1 + C(x2)' with a numerically
    differentiated delta method; the link estimate is statsmodels' treatment-coded contrast.
    HC0 and cluster use statsmodels' own robust covariances; HC1-HC3 its scores, Hessian and hat values."""
    frame = _frame(n=700, seed=3, family=family)
    frame["cl"] = np.arange(len(frame)) // 7
    extra = {"ols": {"se_type": "cluster", "cluster": "cl"}} if se_type == "cluster" else {}
    _, _, ours = _fit(tmp_path, frame, family, se_type=se_type, **extra)
    sm_family = sm.families.Binomial() if family == "bernoulli" else sm.families.Poisson()
    y, X = patsy.dmatrices("y ~ treat * C(g) + x1 + C(x2)", frame, return_type="dataframe")
    model = sm.GLM(y, X, family=sm_family)
    if se_type == "HC0":
        res = model.fit(cov_type="HC0")
        V = res.cov_params().to_numpy()
    elif se_type == "cluster":
        res = model.fit(cov_type="cluster", cov_kwds={"groups": frame["cl"].to_numpy()})
        V = res.cov_params().to_numpy()
    else:
        res = model.fit()
        V = _sm_cov(res, se_type)
    predict = expit if family == "bernoulli" else np.exp
    names = list(res.params.index)
    ref = sorted(frame.g.unique())[0]
    table, keys = _by_group(ours, frame)
    assert ours.details["loglik"] == pytest.approx(res.llf, rel=1e-9)
    for key, g in keys.items():
        value, grad = _numeric_ame(frame, res, X.design_info, frame.index[frame.g == g], predict)
        assert table.loc[key, "estimate"] == pytest.approx(value, abs=1e-7)
        assert table.loc[key, "std_error"] == pytest.approx(np.sqrt(grad @ V @ grad), rel=1e-5)
        c = _link_contrast(names, g, ref)
        assert table.loc[key, "link_estimate"] == pytest.approx(c @ res.params.to_numpy(), abs=1e-7)
        assert table.loc[key, "link_std_error"] == pytest.approx(np.sqrt(c @ V @ c), rel=1e-6)


def test_negative_binomial_matches_statsmodels(tmp_path):
    """NB2 against statsmodels' NegativeBinomial (alpha = 1 / phi) with its HC0 sandwich:
    coefficients, dispersion, log-likelihood, AMEs and their SEs."""
    frame = _frame(n=900, seed=5, family="negativebinomial")
    _, _, ours = _fit(tmp_path, frame, "negativebinomial", se_type="HC0")
    y, X = patsy.dmatrices("y ~ treat * C(g) + x1 + C(x2)", frame, return_type="dataframe")
    res = sm.NegativeBinomial(y, X, loglike_method="nb2").fit(disp=0, cov_type="HC0", maxiter=500, method="newton", tol=1e-12)
    assert ours.details["loglik"] == pytest.approx(res.llf, rel=1e-8)
    assert ours.details["dispersion"] == pytest.approx(1 / res.params["alpha"], rel=1e-4)
    V = res.cov_params().to_numpy()[:-1, :-1]
    b = res.params.to_numpy()[:-1]
    table, keys = _by_group(ours, frame)
    for key, g in keys.items():
        rows = frame.g == g
        X1 = np.asarray(patsy.build_design_matrices([X.design_info], frame[rows].assign(treat=1))[0])
        X0 = np.asarray(patsy.build_design_matrices([X.design_info], frame[rows].assign(treat=0))[0])
        f = lambda bb, X1=X1, X0=X0: float(np.mean(np.exp(X1 @ bb) - np.exp(X0 @ bb)))  # noqa: E731
        grad = np.array([(f(b + e) - f(b - e)) / 2e-6 for e in np.eye(len(b)) * 1e-6])
        assert table.loc[key, "estimate"] == pytest.approx(f(b), rel=1e-6)
        assert table.loc[key, "std_error"] == pytest.approx(np.sqrt(grad @ V @ grad), rel=1e-6)


def test_negative_binomial_without_overdispersion_is_poisson(tmp_path):
    """Underdispersed counts put the MLE of phi at infinity: the Poisson fit is used and said so."""
    frame = _frame(n=500, seed=6, family="poisson")
    frame["y"] = np.random.default_rng(6).binomial(4, 0.5, len(frame))
    _, _, nb = _fit(tmp_path, frame, "negativebinomial")
    _, _, po = _fit(tmp_path, frame, "poisson")
    assert nb.details["dispersion"] is None and "no overdispersion" in nb.details["dispersion_note"]
    np.testing.assert_allclose(nb.table["estimate"], po.table["estimate"], atol=1e-10)
    np.testing.assert_allclose(nb.table["std_error"], po.table["std_error"], rtol=1e-10)


def test_ordinal_matches_ordered_model(tmp_path):
    """Cumulative logit against statsmodels' OrderedModel: coefficients, thresholds and
    log-likelihood; each AME equals the hand computation sum_k code_k P(y = k) from
    OrderedModel's predicted probabilities, and its HC0 SE the delta method on OrderedModel's
    own (numerical) scores and Hessian, in its own parametrisation."""
    frame = _frame(n=800, seed=7, family="ordinal")
    adata, _, ours = _fit(tmp_path, frame, "ordinal", se_type="HC0")
    assert adata.categories == (1.0, 2.0, 3.0, 4.0, 5.0)
    X = patsy.dmatrix("treat * C(g) + x1 + C(x2)", frame, return_type="dataframe").drop(columns="Intercept")
    model = OrderedModel(frame["y"].to_numpy(), X, distr="logit")
    res = model.fit(method="bfgs", disp=0, maxiter=5000, gtol=1e-9)
    assert ours.details["loglik"] == pytest.approx(res.llf, rel=1e-7)
    thresholds = model.transform_threshold_params(res.params.to_numpy())[1:-1]
    mine = np.array(list(ours.details["thresholds"].values()))
    # the reference groups differ (ours: the last group, patsy's: the first), which shifts every threshold alike
    np.testing.assert_allclose(np.diff(mine), np.diff(thresholds), atol=1e-4)
    codes = np.arange(1, 6)
    b = res.params.to_numpy()
    S = model.score_obs(b)
    bread = np.linalg.inv(-model.hessian(b))
    V = bread @ (S.T @ S) @ bread
    table, keys = _by_group(ours, frame)
    names = list(X.columns)
    ref = sorted(frame.g.unique())[0]
    for key, g in keys.items():
        rows = frame.g == g
        X1 = X[rows].assign(treat=1.0)
        X0 = X[rows].assign(treat=0.0)
        for c in names:
            if c.startswith("treat:"):
                X1[c] = X[rows][c.split(":", 1)[1]]
                X0[c] = 0.0

        def f(bb, X1=X1, X0=X0):
            return float(np.mean(model.predict(bb, exog=X1.to_numpy()) @ codes - model.predict(bb, exog=X0.to_numpy()) @ codes))

        by_hand = np.mean(res.predict(X1) @ codes - res.predict(X0) @ codes)
        grad = np.array([(f(b + e) - f(b - e)) / 2e-6 for e in np.eye(len(b)) * 1e-6])
        assert table.loc[key, "estimate"] == pytest.approx(by_hand, abs=2e-5)
        assert table.loc[key, "std_error"] == pytest.approx(np.sqrt(grad @ V @ grad), rel=5e-4)
        c = np.zeros(len(b))
        c[names.index("treat")] = 1.0
        if g != ref:
            c[names.index(f"treat:C(g)[T.{g}]")] = 1.0
        assert table.loc[key, "link_estimate"] == pytest.approx(c @ b, abs=1e-4)


# --------------------------------------------------------------------------- recovery


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_recovers_known_response_scale_effects(tmp_path, family):
    """Simulated data with known group effects: each estimate is within 4 SE of the group's
    true average marginal effect (computed from the true model on the same units)."""
    effects = np.array([0.0, 0.5, -0.4, 0.9, 0.2, -0.8])
    frame = _frame(n=12000, seed=11, family=family, effects=effects)
    _, groups, res = _fit(tmp_path, frame, family)
    gidx = (frame["m1"] * 3 + frame["m2"]).to_numpy()
    base = (-0.3 + 0.2 * frame["m1"] - 0.1 * frame["m2"] + 0.6 * frame["x1"] + 0.3 * (frame["x2"] == 3)).to_numpy()
    inv = expit if family == "bernoulli" else (lambda e: np.exp(e + 0.5))
    table, keys = _by_group(res, frame)
    for key, g in keys.items():
        k = int(g[0]) * 3 + int(g[2])
        rows = gidx == k
        truth = np.mean(inv(base[rows] + effects[k]) - inv(base[rows]))
        row = table.loc[key]
        assert row.estimable and abs(row.estimate - truth) < 4 * row.std_error
        assert row.std_error < 0.1 * (1 if family == "bernoulli" else 5)


# --------------------------------------------------------------------------- binomial = expanded bernoulli


def test_binomial_equals_bernoulli_on_expanded_rows(tmp_path):
    frame = _frame(n=300, seed=9, family="binomial")
    rows = []
    for r in frame.itertuples(index=False):
        for j in range(int(r.n)):
            rows.append({**r._asdict(), "y": int(j < r.y)})
    expanded = pd.DataFrame(rows).drop(columns="n")
    (tmp_path / "b").mkdir()
    (tmp_path / "e").mkdir()
    _, _, binom = _fit(tmp_path / "b", frame, "binomial")
    _, _, bern = _fit(tmp_path / "e", expanded, "bernoulli")
    np.testing.assert_allclose(binom.table["estimate"], bern.table["estimate"], atol=1e-6)
    np.testing.assert_allclose(binom.table["link_estimate"], bern.table["link_estimate"], atol=1e-6)
    assert "trials(n)" in binom.formula and "per trial" in binom.details["estimand"]


# --------------------------------------------------------------------------- traps


def test_gaussian_family_is_refused(tmp_path):
    _, adata, groups = make_analysis(tmp_path, _frame(family="poisson"), ["m1", "m2"])
    with pytest.raises(ValueError, match="gaussian"):
        fit_glm_full(adata, groups)


def test_one_arm_group_not_estimable(tmp_path):
    frame = _frame(seed=12)
    frame = frame[~((frame.g == "1_2") & (frame.treat == 1))]
    _, _, res = _fit(tmp_path, frame, "bernoulli")
    t = res.table.set_index("group")
    assert not t.loc["m1=1|m2=2", "estimable"] and "one treatment arm" in t.loc["m1=1|m2=2", "note"]
    assert np.isnan(t.loc["m1=1|m2=2", "estimate"])
    assert t.drop(index="m1=1|m2=2")["estimable"].all()


@pytest.mark.parametrize("controls", [(), ("x1", "x2")])
def test_separated_treated_arm_flagged_and_others_unchanged(tmp_path, controls):
    """Every treated outcome 0 in one group: not estimable, a note naming the treated arm;
    every other group equals the fit without that arm's rows (the limit of the MLE), and
    without controls also the fit without the group."""
    frame = _frame(n=800, seed=13)
    sep = (frame.g == "0_1") & (frame.treat == 1)
    frame.loc[sep, "y"] = 0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    _, _, res = _fit(tmp_path / "a", frame, "bernoulli", controls=controls)
    t = res.table.set_index("group")
    row = t.loc["m1=0|m2=1"]
    assert not row.estimable and np.isnan(row.estimate) and np.isnan(row.std_error)
    assert "separation" in row.note and "treated arm" in row.note and "outcome 0" in row.note
    assert "m1=0|m2=1" in res.details["separated_groups"]
    _, _, without_arm = _fit(tmp_path / "b", frame[~sep], "bernoulli", controls=controls)
    other = [k for k in t.index if k != "m1=0|m2=1"]
    ref = without_arm.table.set_index("group").loc[other]
    np.testing.assert_allclose(t.loc[other, "estimate"], ref["estimate"], atol=1e-6)
    np.testing.assert_allclose(t.loc[other, "std_error"], ref["std_error"], rtol=1e-5)
    if not controls:
        _, _, without_group = _fit(tmp_path / "c", frame[frame.g != "0_1"], "bernoulli", controls=controls)
        np.testing.assert_allclose(t.loc[other, "estimate"], without_group.table.set_index("group").loc[other, "estimate"], atol=1e-6)


def test_separation_by_a_control_keeps_groups_estimable(tmp_path):
    """A control level whose outcomes are all 0 (in both arms of every group) sends its
    coefficient to minus infinity. Found by the linear program: those units add a zero
    difference, so each group's AME is the fit without them, scaled by the share of the
    group's units that remain."""
    frame = _frame(n=900, seed=14)
    frame.loc[frame.x2 == 3, "y"] = 0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, _, res = _fit(tmp_path / "a", frame, "bernoulli")
    assert res.details["converged"] and res.details["n_separated_rows"] == int((frame.x2 == 3).sum())
    kept = frame[frame.x2 != 3]
    _, _, ref = _fit(tmp_path / "b", kept, "bernoulli")
    t, keys = _by_group(res, frame)
    r = ref.table.set_index("group")
    assert t["estimable"].all()
    for key, g in keys.items():
        share = (kept.g == g).sum() / (frame.g == g).sum()
        assert t.loc[key, "estimate"] == pytest.approx(r.loc[key, "estimate"] * share, abs=1e-6)
        assert "predicted perfectly in both arms" in t.loc[key, "note"]
        assert abs(t.loc[key, "link_estimate"]) < 5


def test_separation_through_a_control_within_one_arm(tmp_path):
    """Outcomes 1 wherever x2 = 3, and 0 in one group's treated arm otherwise: the treated
    arm is separated only jointly with the control, which only the linear program sees."""
    frame = _frame(n=900, seed=15)
    frame.loc[frame.x2 == 3, "y"] = 1
    frame.loc[(frame.g == "1_0") & (frame.treat == 1) & (frame.x2 != 3), "y"] = 0
    _, _, res = _fit(tmp_path, frame, "bernoulli")
    t = res.table.set_index("group")
    row = t.loc["m1=1|m2=0"]
    assert not row.estimable and "quasi-complete separation" in row.note and "treated" in row.note
    others = t.drop(index="m1=1|m2=0")
    assert others["estimable"].all() and others["std_error"].notna().all()
    assert (others["link_estimate"].abs() < 5).all()


def test_poisson_arm_of_zeros_flagged(tmp_path):
    frame = _frame(n=600, seed=16, family="poisson")
    frame.loc[(frame.g == "1_1") & (frame.treat == 0), "y"] = 0
    _, _, res = _fit(tmp_path, frame, "poisson")
    t = res.table.set_index("group")
    assert (
        not t.loc["m1=1|m2=1", "estimable"]
        and "in the control arm" in t.loc["m1=1|m2=1", "note"]
        and "a count of 0" in t.loc["m1=1|m2=1", "note"]
    )
    assert t.drop(index="m1=1|m2=1")["estimable"].all()


def test_ordinal_arm_in_an_extreme_category_flagged_but_middle_category_is_finite(tmp_path):
    frame = _frame(n=900, seed=17, family="ordinal")
    frame.loc[(frame.g == "0_0") & (frame.treat == 1), "y"] = 5
    frame.loc[(frame.g == "1_2") & (frame.treat == 0), "y"] = 3
    _, _, res = _fit(tmp_path, frame, "ordinal")
    t = res.table.set_index("group")
    assert not t.loc["m1=0|m2=0", "estimable"] and "highest category (5" in t.loc["m1=0|m2=0", "note"]
    middle = t.loc["m1=1|m2=2"]
    assert middle.estimable and np.isfinite(middle.std_error) and abs(middle.link_estimate) < 10
    assert res.details["converged"]


def test_singleton_arm_has_no_hc2_standard_error(tmp_path):
    frame = _frame(n=400, seed=18, family="poisson")
    arm = frame.index[(frame.g == "0_2") & (frame.treat == 1)]
    frame = frame.drop(index=arm[1:])
    frame.loc[arm[0], "y"] = 3
    _, _, hc2 = _fit(tmp_path, frame, "poisson", se_type="HC2")
    _, _, hc0 = _fit(tmp_path, frame, "poisson", se_type="HC0")
    r2, r0 = hc2.table.set_index("group").loc["m1=0|m2=2"], hc0.table.set_index("group").loc["m1=0|m2=2"]
    assert r2.estimable and np.isnan(r2.std_error) and "HC2 standard error undefined" in r2.note
    assert np.isfinite(r0.std_error) and r2.estimate == pytest.approx(r0.estimate)


def test_non_convergence_withholds_every_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(glm, "MAX_ITER", 1)
    _, _, res = _fit(tmp_path, _frame(seed=19), "bernoulli")
    assert not res.details["converged"]
    assert not res.table["estimable"].any() and res.table["estimate"].isna().all()
    assert res.table["note"].str.contains("did not converge").all()


def test_ordinal_leverage_reduces_to_the_logit_hat_value():
    """With two categories the cumulative logit is a logit (P(y = 2) = logistic(eta - theta)):
    the generalised leverage trace(A_i A^-1) then equals statsmodels' GLM hat values of that
    logit, and with five categories the leverages sum to the number of parameters."""
    rng = np.random.default_rng(20)
    n = 300
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)])
    eta = X @ [0.8, -0.5]
    y2 = (eta + rng.logistic(size=n) > 0.2).astype(float)
    fam = glm._Ordinal(X, y2, np.ones(n), 2)
    params, converged, _ = glm._newton(fam, fam.start())
    _, _, A, _ = fam.evaluate(params)
    h = fam.leverage(params, np.linalg.inv(A))
    ref = sm.GLM(y2, np.column_stack([X, np.ones(n)]), family=sm.families.Binomial()).fit()
    assert converged
    np.testing.assert_allclose(params[:2], ref.params[:2], atol=1e-7)
    assert params[2] == pytest.approx(-ref.params[2], abs=1e-7)
    np.testing.assert_allclose(h, ref.get_hat_matrix_diag(), atol=1e-8)
    y5 = np.digitize(eta + rng.logistic(size=n), [-1.0, 0.0, 0.7, 1.5]).astype(float)
    fam5 = glm._Ordinal(X, y5, np.ones(n), 5)
    p5, _, _ = glm._newton(fam5, fam5.start())
    _, _, A5, _ = fam5.evaluate(p5)
    h5 = fam5.leverage(p5, np.linalg.inv(A5))
    assert h5.sum() == pytest.approx(len(p5), rel=1e-8) and (h5 > 0).all() and (h5 < 1).all()


def test_ordinal_hc2_exceeds_hc0(tmp_path):
    """HC2 inflates every unit's score by 1 / (1 - h_i) > 1: each group's SE grows."""
    frame = _frame(n=500, seed=21, family="ordinal")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, _, hc0 = _fit(tmp_path / "a", frame, "ordinal", se_type="HC0")
    _, _, hc2 = _fit(tmp_path / "b", frame, "ordinal", se_type="HC2")
    np.testing.assert_allclose(hc0.table["estimate"], hc2.table["estimate"], atol=1e-12)
    assert (hc2.table["std_error"] > hc0.table["std_error"]).all()
    assert (hc2.table["std_error"] < 1.2 * hc0.table["std_error"]).all()


def test_ordinal_separation_by_a_control_withholds_every_estimate(tmp_path):
    """No linear program for the cumulative logit: a control level whose answers are all in
    the highest category is caught after the fit, as a diverging control coefficient that
    affects every group, and no estimate is printed."""
    frame = _frame(n=900, seed=17, family="ordinal")
    frame.loc[frame.x2 == 3, "y"] = 5
    _, _, res = _fit(tmp_path, frame, "ordinal")
    assert not res.table["estimable"].any() and res.table["estimate"].isna().all()
    assert res.table["note"].str.contains("the control x2\\[3\\] diverges").all()


def test_negative_binomial_leverage_is_the_glm_hat_value_at_fixed_dispersion():
    """HC2/HC3 for NB2 use the hat values of the GLM with the dispersion held at its estimate
    (R's glm.nb and sandwich::vcovHC): statsmodels' GLM NegativeBinomial(alpha = 1/phi) agrees."""
    rng = np.random.default_rng(22)
    n = 400
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.integers(0, 2, n)])
    mu = np.exp(X @ [0.7, 0.4, -0.3])
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)).astype(float)
    pois = glm._Canonical(X, y, np.ones(n), "log")
    b0, _, _ = glm._newton(pois, pois.start())
    fam = glm._NegBin(X, y, np.ones(n), b0)
    params, converged, _ = glm._newton(fam, fam.start())
    h = fam.leverage(params, None)
    ref = sm.GLM(y, X, family=sm.families.NegativeBinomial(alpha=float(np.exp(-params[-1])))).fit()
    assert converged
    np.testing.assert_allclose(ref.params, params[:-1], atol=1e-6)  # the same beta at that dispersion
    np.testing.assert_allclose(h, ref.get_hat_matrix_diag(observed=False), rtol=1e-6)  # Fisher weights, as R
