"""Frequentist approaches checked against second routes to the same numbers."""

import numpy as np
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from hetreport.models.ols import fit_linear, fit_ols_additive, fit_ols_full, fit_subgroup
from tests.conftest import make_analysis, random_frame


def test_full_interactions_equal_within_group_regressions(tmp_path):
    """With no controls, each group's contrast is the treatment coefficient of an OLS fitted
    within that group alone (to 1e-8)."""
    frame = random_frame(controls=False)
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"])
    est = fit_ols_full(adata, groups).table.set_index("group")
    for _g, row in groups.table.iterrows():
        sub = frame[(frame.m1 == row.m1) & (frame.m2 == row.m2)]
        coef = np.polyfit(sub.treat, sub.y, 1)[0]
        assert est.loc[row.group, "estimate"] == pytest.approx(coef, abs=1e-8)


def test_full_interactions_with_controls_match_statsmodels_formula(tmp_path):
    """The cell-means fit equals the treatment-coded formula y ~ treat * C(m1) * C(m2) + x1 + C(x2):
    group contrasts and their HC2 standard errors."""
    frame = random_frame()
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], ["x1", "x2"], analysis={"categorical": ["x2"]})
    ours = fit_ols_full(adata, groups, "HC2").table.set_index("group")
    sm = smf.ols("y ~ treat * C(m1) * C(m2) + x1 + C(x2)", frame).fit(cov_type="HC2")
    names = list(sm.params.index)
    for _, row in groups.table.iterrows():
        c = np.zeros(len(names))
        for i, name in enumerate(names):
            if "treat" not in name:
                continue
            parts = [p for p in name.split(":") if p != "treat"]
            ok = all((f"C(m1)[T.{row.m1}]" == p) or (f"C(m2)[T.{row.m2}]" == p) for p in parts)
            c[i] = 1.0 if ok else 0.0
        est = c @ sm.params.to_numpy()
        se = np.sqrt(c @ sm.cov_params().to_numpy() @ c)
        assert ours.loc[row.group, "estimate"] == pytest.approx(est, abs=1e-8)
        assert ours.loc[row.group, "std_error"] == pytest.approx(se, rel=1e-6)


@pytest.mark.parametrize("se_type", ["HC0", "HC1", "HC2", "HC3"])
def test_sandwich_matches_statsmodels(se_type):
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(80), rng.normal(size=(80, 3))])
    y = X @ [1, 2, 0, -1] + rng.normal(size=80) * (1 + np.abs(X[:, 1]))
    import statsmodels.api as sm

    ref = sm.OLS(y, X).fit(cov_type=se_type)
    ours = fit_linear(X, y, se_type)
    np.testing.assert_allclose(ours.beta, ref.params, atol=1e-10)
    np.testing.assert_allclose(ours.vcov, ref.cov_params(), rtol=1e-8)


def test_cluster_robust_matches_statsmodels():
    rng = np.random.default_rng(4)
    n = 120
    cl = rng.integers(0, 15, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ [1, 0.5] + rng.normal(size=15)[cl] + rng.normal(size=n)
    import statsmodels.api as sm

    ref = sm.OLS(y, X).fit(cov_type="cluster", cov_kwds={"groups": cl})
    ours = fit_linear(X, y, "cluster", cl)
    np.testing.assert_allclose(ours.vcov, ref.cov_params(), rtol=1e-8)


def test_additive_model_matches_statsmodels(tmp_path):
    frame = random_frame()
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], ["x1"])
    ours = fit_ols_additive(adata, groups, "HC2").table.set_index("group")
    sm = smf.ols("y ~ treat * (C(m1) + C(m2)) + x1", frame).fit(cov_type="HC2")
    p = sm.params
    for _, row in groups.table.iterrows():
        names = ["treat"] + ([f"treat:C(m1)[T.{row.m1}]"] if row.m1 != 0 else []) + ([f"treat:C(m2)[T.{row.m2}]"] if row.m2 != 0 else [])
        c = np.array([1.0 if n in names else 0.0 for n in p.index])
        assert ours.loc[row.group, "estimate"] == pytest.approx(c @ p.to_numpy(), abs=1e-8)
        assert ours.loc[row.group, "std_error"] == pytest.approx(np.sqrt(c @ sm.cov_params().to_numpy() @ c), rel=1e-6)


def test_subgroup_difference_in_means_is_welch(tmp_path):
    frame = random_frame()
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"])
    ours = fit_subgroup(adata, groups).table.set_index("group")
    for _, row in groups.table.iterrows():
        sub = frame[(frame.m1 == row.m1) & (frame.m2 == row.m2)]
        a, b = sub.y[sub.treat == 1], sub.y[sub.treat == 0]
        res = stats.ttest_ind(a, b, equal_var=False)
        assert ours.loc[row.group, "estimate"] == pytest.approx(a.mean() - b.mean())
        assert ours.loc[row.group, "p_value"] == pytest.approx(res.pvalue, rel=1e-8)
        lo, hi = res.confidence_interval(0.95)
        assert ours.loc[row.group, "lower_95"] == pytest.approx(lo, rel=1e-8)
        assert ours.loc[row.group, "upper_95"] == pytest.approx(hi, rel=1e-8)


def test_one_arm_group_is_not_estimable_and_others_are_unchanged(tmp_path):
    frame = random_frame()
    mask = (frame.m1 == 1) & (frame.m2 == 2)
    frame.loc[mask, "treat"] = 1  # that group has no control units
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"])
    table = fit_ols_full(adata, groups).table.set_index("group")
    bad = "m1=1|m2=2"
    assert not table.loc[bad, "estimable"] and np.isnan(table.loc[bad, "estimate"])
    assert "one treatment arm" in table.loc[bad, "note"]
    assert table.drop(bad)["estimable"].all() and table.drop(bad)["estimate"].notna().all()
    assert groups.table.set_index("group").loc[bad, "one_arm"]
    sub = fit_subgroup(adata, groups).table.set_index("group")
    assert not sub.loc[bad, "estimable"]


def test_singleton_arm_gets_no_hc2_number_but_a_flag(tmp_path):
    frame = random_frame()
    idx = frame.index[(frame.m1 == 0) & (frame.m2 == 1)]
    frame.loc[idx, "treat"] = 0
    frame.loc[idx[0], "treat"] = 1  # exactly one treated unit
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], ["x1"])
    table = fit_ols_full(adata, groups, "HC2").table.set_index("group")
    g = "m1=0|m2=1"
    assert np.isfinite(table.loc[g, "estimate"]) and np.isnan(table.loc[g, "std_error"])
    assert "HC2 standard error undefined" in table.loc[g, "note"]
    assert groups.table.set_index("group").loc[g, "singleton_arm"]
    others = table.drop(g)
    assert np.isfinite(others["std_error"]).all()


def test_control_collinear_with_groups_does_not_crash(tmp_path):
    frame = random_frame()
    frame["m1copy"] = frame["m1"] * 2.0  # constant within groups: collinear with the group dummies
    _, a1, g1 = make_analysis(tmp_path, frame, ["m1", "m2"], ["m1copy"])
    _, a0, g0 = make_analysis(tmp_path, frame, ["m1", "m2"])
    t1, t0 = fit_ols_full(a1, g1).table, fit_ols_full(a0, g0).table
    np.testing.assert_allclose(t1.estimate, t0.estimate, atol=1e-8)
    assert t1.estimable.all()
