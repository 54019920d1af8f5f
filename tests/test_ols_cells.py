"""OLS from cell totals (rows with identical design rows collapsed) equals the per-row fit: estimate, SE for
every se_type, df, on the Tomz-Weeks data and on a simulated study with few distinct control values."""

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

from hetreport.data import load_data, prepare_analysis
from hetreport.groups import build_groups
from hetreport.models.ols import fit_cells, fit_linear, fit_ols_additive, fit_ols_full, row_cells
from hetreport.spec import parse_spec
from tests.conftest import REPO, TW_DATA, make_analysis

SE_TYPES = ("HC0", "HC1", "HC2", "HC3", "cluster")


def _few_values_frame(n=3000, seed=3):
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {
            "treat": rng.integers(0, 2, n),
            "m1": rng.integers(0, 2, n),
            "m2": rng.integers(0, 3, n),
            "x1": rng.integers(0, 2, n),
            "x2": rng.choice([1.5, 2.5, 4.0], n),
            "site": rng.integers(0, 12, n),
        }
    )
    f["y"] = 0.5 + (0.3 + 0.2 * f.m2) * f.treat + 0.4 * f.x1 - 0.1 * f.x2 + rng.normal(0, 1, n) * (1 + 0.5 * f.m1)
    return f


def _compare(adata, groups, se_type):
    for fit in (fit_ols_full, fit_ols_additive):
        a = fit(adata, groups, se_type, compress=True)
        b = fit(adata, groups, se_type, compress=False)
        ta, tb = a.table.set_index("group"), b.table.set_index("group")
        assert a.details["rank"] == b.details["rank"] and a.details["n_coef"] == b.details["n_coef"]
        np.testing.assert_array_equal(ta["estimable"], tb["estimable"])
        np.testing.assert_array_equal(np.isnan(ta["std_error"]), np.isnan(tb["std_error"]))
        assert np.isfinite(ta["std_error"]).sum() > 0
        for col in ("estimate", "std_error", "df", "lower_95"):
            np.testing.assert_allclose(ta[col], tb[col], rtol=1e-10, atol=1e-10, err_msg=f"{fit.__name__} {se_type} {col}")
        real = ~(tb["std_error"] < 1e-10)  # an effect fitted exactly (SE at rounding level) has a p-value of noise in both
        np.testing.assert_allclose(ta["p_value"][real], tb["p_value"][real], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("se_type", SE_TYPES)
def test_cells_equal_rows_on_a_study_with_few_control_values(tmp_path, se_type):
    extra = {"ols": {"cluster": "site", "se_type": se_type}} if se_type == "cluster" else {}
    _, adata, groups = make_analysis(tmp_path, _few_values_frame(), ["m1", "m2"], ["x1", "x2"], **extra)
    cells = row_cells([groups.index, adata.t, adata.control_matrix], adata.n)
    assert len(cells[1]) <= adata.n / 4  # the automatic route compresses this study
    _compare(adata, groups, se_type)


@pytest.fixture(scope="module")
def tomz_weeks_respondents():
    if TW_DATA is None:
        pytest.skip("the Tomz-Weeks data file is not available")
    raw = yaml.safe_load((REPO / "examples" / "tomz-weeks" / "spec.yml").read_text())
    raw["data"]["path"] = str(TW_DATA)
    raw["analyses"] = [a for a in raw["analyses"] if a["name"] == "respondents"]
    spec = parse_spec(raw, base_dir=REPO / "examples" / "tomz-weeks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, load_data(spec), spec.analyses[0])
        groups = build_groups(adata, spec.report.min_arm)
    return adata, groups


@pytest.mark.parametrize("se_type", SE_TYPES)
def test_cells_equal_rows_on_tomz_weeks_respondents(tomz_weeks_respondents, se_type):
    adata, groups = tomz_weeks_respondents
    if se_type == "cluster":  # a real column with few values as the clusters
        adata = replace(adata, cluster=adata.frame["region"].astype(str).to_numpy())
    _compare(adata, groups, se_type)


def test_fit_cells_equals_fit_linear_with_one_row_cells_and_rank_deficiency():
    """Leverage-1 cells (a single row fitted exactly) and a collinear column: the same as per row."""
    rng = np.random.default_rng(0)
    base = np.column_stack([np.ones(6), rng.integers(0, 2, 6), rng.normal(size=6)])
    base = np.column_stack([base, base[:, 1] * 2])  # collinear
    inv = np.r_[np.repeat(np.arange(5), 20), 5]  # the last cell has a single row
    X, y = base[inv], rng.normal(size=len(inv))
    for se_type in ("HC0", "HC1", "HC2", "HC3"):
        a, b = fit_cells(base, inv, y, se_type), fit_linear(X, y, se_type)
        assert a.rank == b.rank == 3
        np.testing.assert_allclose(a.beta, b.beta, atol=1e-12)
        np.testing.assert_allclose(a.vcov, b.vcov, atol=1e-12)
        np.testing.assert_allclose(a.leverage, b.leverage, atol=1e-12)
        np.testing.assert_allclose(a.resid, b.resid, atol=1e-12)
