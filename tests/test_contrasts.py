"""Named comparisons (``compare:``): spec checks, and every number against a second route
(the posterior draws combined by hand; statsmodels on the same fully crossed OLS fit)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from conftest import SMALL_SAMPLER, random_frame

from hetreport.api import fit
from hetreport.contrasts import study_contrasts
from hetreport.errors import SpecError
from hetreport.results import load_results
from hetreport.spec import parse_spec

COMPARE = [
    {"name": "high_vs_low", "a": {"m2": 2}, "b": {"m2": 0}, "label": "Highest against lowest m2"},
    {"name": "corner", "a": {"m1": 1, "m2": [1, 2]}, "b": {"m1": 0, "m2": 0}},
]


def _raw(path, compare=COMPARE, **extra):
    analysis = {"name": "a", "modifiers": ["m1", "m2"], "controls": ["x1"], "compare": compare}
    analysis.update(extra)
    return {
        "title": "Contrasts",
        "data": {"path": str(path)},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [analysis],
        "sampler": SMALL_SAMPLER,
        "report": {"formats": ["html"]},
    }


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("contrasts")
    frame = random_frame(n=600, seed=11)
    frame.to_csv(d / "data.csv", index=False)
    spec = parse_spec(_raw(d / "data.csv"), base_dir=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(spec)
    res.save(d / "out")
    return frame, res, d / "out"


def _by_hand_weights(frame, sel):
    """n-weights of the groups a selection takes, keyed by (m1, m2), from the raw data."""
    mask = np.ones(len(frame), dtype=bool)
    for m, v in sel.items():
        mask &= frame[m].isin(v if isinstance(v, list) else [v]).to_numpy()
    counts = frame[mask].groupby(["m1", "m2"]).size()
    return counts / counts.sum()


def test_hierarchical_contrast_is_the_weighted_difference_of_the_draws(fitted):
    frame, res, _ = fitted
    a = res.analyses[0]
    table = study_contrasts(res)
    post = a.posterior.posterior["group_effect"]
    for c in COMPARE:
        wa, wb = _by_hand_weights(frame, c["a"]), _by_hand_weights(frame, c["b"])
        total = 0.0
        for w in (wa, -wb):
            for (m1, m2), wt in w.items():
                key = f"m1={m1}|m2={m2}"
                total = total + wt * post.sel(group=key).to_numpy().ravel()  # chains x draws, by hand
        row = table[(table["name"] == c["name"]) & (table["method"] == "hierarchical")].iloc[0]
        assert row["estimate"] == pytest.approx(total.mean(), abs=1e-12)
        assert row["std_error"] == pytest.approx(total.std(ddof=1), rel=1e-10)
        assert row["lower_95"] == pytest.approx(np.quantile(total, 0.025), abs=1e-12)
        assert row["upper_90"] == pytest.approx(np.quantile(total, 0.95), abs=1e-12)
        assert row["prob_positive"] == pytest.approx((total > 0).mean())
        assert (
            row["n_a"]
            == frame[np.logical_and.reduce([frame[m].isin(v if isinstance(v, list) else [v]) for m, v in c["a"].items()])].shape[0]
        )


def test_ols_contrast_equals_statsmodels_on_the_same_fully_crossed_fit(fitted):
    frame, res, _ = fitted
    table = study_contrasts(res)
    df = frame.assign(g=frame["m1"].astype(str) + "_" + frame["m2"].astype(str))
    sm = smf.ols("y ~ 0 + C(g) + C(g):treat + x1", data=df).fit(cov_type="HC2")
    names = list(sm.params.index)
    for c in COMPARE:
        L = np.zeros(len(names))
        for w, sign in ((_by_hand_weights(frame, c["a"]), 1), (_by_hand_weights(frame, c["b"]), -1)):
            for (m1, m2), wt in w.items():
                L[names.index(f"C(g)[{m1}_{m2}]:treat")] += sign * wt
        tt = sm.t_test(L)
        row = table[(table["name"] == c["name"]) & (table["method"] == "ols_full")].iloc[0]
        assert row["estimate"] == pytest.approx(float(tt.effect[0]), rel=1e-9)
        assert row["std_error"] == pytest.approx(float(tt.sd[0, 0]), rel=1e-8)
        # statsmodels' robust t_test uses the normal; ours uses t with the residual df, as the group rows do
        from scipy import stats

        t = float(tt.effect[0]) / float(tt.sd[0, 0])
        assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), sm.df_resid), rel=1e-8)
        assert row["lower_95"] == pytest.approx(float(tt.effect[0]) - stats.t.ppf(0.975, sm.df_resid) * float(tt.sd[0, 0]), rel=1e-8)


def test_contrasts_file_written_and_recomputed_from_the_folder(fitted):
    _, res, out = fitted
    written = pd.read_csv(out / "contrasts.csv")
    assert list(written.columns[:13]) == [
        "analysis",
        "name",
        "method",
        "estimate",
        "std_error",
        "lower_90",
        "upper_90",
        "lower_95",
        "upper_95",
        "prob_positive",
        "p_value",
        "n_a",
        "n_b",
    ]
    assert set(written["method"]) == {"hierarchical", "ols_full"}
    assert (out / "contrasts.parquet").is_file()
    again = study_contrasts(load_results(out))
    np.testing.assert_allclose(again["estimate"].to_numpy(float), written["estimate"].to_numpy(float), rtol=1e-12)
    np.testing.assert_allclose(again["std_error"].to_numpy(float), written["std_error"].to_numpy(float), rtol=1e-12)


@pytest.mark.parametrize(
    "compare, where, words",
    [
        ([{"name": "x", "a": {"m9": 1}, "b": {"m1": 0}}], "compare[0].a.m9", "not one of this analysis's modifiers"),
        ([{"name": "x", "a": {"m1": 1}, "b": {"m1": []}}], "compare[0].b.m1", "empty list"),
        ([{"name": "x", "a": {"m1": 1}, "b": {"m1": 0}}, {"name": "x", "a": {"m1": 1}, "b": {"m1": 0}}], "compare[1].name", "used twice"),
    ],
)
def test_bad_comparisons_in_the_spec(tmp_path, compare, where, words):
    with pytest.raises(SpecError) as e:
        parse_spec(_raw(tmp_path / "d.csv", compare=compare), base_dir=tmp_path)
    assert where in str(e.value) and words in str(e.value)


@pytest.mark.parametrize(
    "compare, words",
    [
        ([{"name": "x", "a": {"m1": 7}, "b": {"m1": 0}}], "7 is not a level of 'm1'"),
        ([{"name": "x", "a": {"m1": 1, "m2": 9}, "b": {"m1": 0}}], "not a level of 'm2'"),
    ],
)
def test_unknown_levels_stop_before_fitting(tmp_path, compare, words):
    random_frame(n=200, seed=1).to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(_raw(tmp_path / "d.csv", compare=compare), base_dir=tmp_path)
    with pytest.raises(SpecError) as e:
        fit(spec)
    assert words in str(e.value) and "analyses[0].compare[0].a" in str(e.value)


def test_a_combination_absent_from_the_data_is_an_error(tmp_path):
    frame = random_frame(n=300, seed=2)
    frame = frame[~((frame["m1"] == 1) & (frame["m2"] == 2))]
    frame.to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(_raw(tmp_path / "d.csv", compare=[{"name": "x", "a": {"m1": 0}, "b": {"m1": 1, "m2": 2}}]), base_dir=tmp_path)
    with pytest.raises(SpecError) as e:
        fit(spec)
    assert "compare[0].b" in str(e.value) and "no group" in str(e.value)


def test_labels_select_levels_too(tmp_path):
    from hetreport.contrasts import resolve
    from hetreport.results import Modifier

    mods = (Modifier("white", "Race", (0, 1), ("non-white", "white")),)
    assert resolve({"white": "white"}, mods, "x").levels == {"white": ("1",)}
    assert resolve({"white": [0, "white"]}, mods, "x").levels == {"white": ("0", "1")}


def test_glm_contrast_equals_statsmodels_logit_with_the_delta_method(tmp_path):
    """bernoulli: the GLM row is the weighted difference of the groups' average marginal effects from the fully
    crossed logit, its SE the delta method on statsmodels' HC0 covariance of the same fit."""
    import statsmodels.api as sm

    rng = np.random.default_rng(4)
    frame = random_frame(n=800, seed=4)
    frame["y"] = (rng.random(len(frame)) < 1 / (1 + np.exp(-(frame["y"] - 1.5)))).astype(int)
    frame.to_csv(tmp_path / "d.csv", index=False)
    comp = [{"name": "hi", "a": {"m2": 2}, "b": {"m2": 0}}]
    raw = _raw(tmp_path / "d.csv", compare=comp, family="bernoulli")
    raw["ols"] = {"se_type": "HC0"}
    spec = parse_spec(raw, base_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(spec)
    row = study_contrasts(res).query("method == 'glm_full'").iloc[0]
    g = (frame["m1"].astype(str) + "_" + frame["m2"].astype(str)).to_numpy()
    levels = sorted(set(g))
    G = np.column_stack([(g == lev).astype(float) for lev in levels])
    X = np.column_stack([G, G * frame["treat"].to_numpy()[:, None], frame["x1"].to_numpy()])
    m = sm.GLM(frame["y"].to_numpy(), X, family=sm.families.Binomial()).fit(cov_type="HC0")
    w = np.zeros(len(levels))
    for sel, sign in ((comp[0]["a"], 1), (comp[0]["b"], -1)):
        for (m1, m2), wt in _by_hand_weights(frame, sel).items():
            w[levels.index(f"{m1}_{m2}")] += sign * wt

    def contrast(beta):
        out = 0.0
        for j, lev in enumerate(levels):
            rows = g == lev
            X1, X0 = X[rows].copy(), X[rows].copy()
            X1[:, len(levels) + j], X0[:, len(levels) + j] = 1.0, 0.0
            out += w[j] * np.mean(1 / (1 + np.exp(-X1 @ beta)) - 1 / (1 + np.exp(-X0 @ beta)))
        return out

    b = np.asarray(m.params)
    grad = np.array([(contrast(b + e) - contrast(b - e)) / 2e-6 for e in np.eye(len(b)) * 1e-6])
    assert row["estimate"] == pytest.approx(contrast(b), rel=1e-6)
    assert row["std_error"] == pytest.approx(float(np.sqrt(grad @ np.asarray(m.cov_params()) @ grad)), rel=1e-4)


def test_ols_contrast_leaves_out_groups_it_cannot_estimate_and_says_so(fitted):
    """A group without an OLS estimate (here: made so) drops out of its side, which is re-weighted over the rest;
    the numbers are statsmodels' t_test of that re-weighted combination."""
    from dataclasses import replace

    frame, res, _ = fitted
    gone = "m1=1|m2=2"
    eff = res.effects.copy()
    eff.loc[(eff["method"] == "ols_full") & (eff["group"] == gone), ["estimate", "std_error"]] = np.nan
    table = study_contrasts(replace(res, effects=eff))
    row = table[(table["name"] == "corner") & (table["method"] == "ols_full")].iloc[0]
    df = frame.assign(g=frame["m1"].astype(str) + "_" + frame["m2"].astype(str))
    sm = smf.ols("y ~ 0 + C(g) + C(g):treat + x1", data=df).fit(cov_type="HC2")
    names = list(sm.params.index)
    keep_a = frame[(frame["m1"] == 1) & (frame["m2"] == 1)]  # side A was m1 = 1 and m2 in (1, 2); m2 = 2 is gone
    L = np.zeros(len(names))
    L[names.index("C(g)[1_1]:treat")] = 1.0
    L[names.index("C(g)[0_0]:treat")] = -1.0
    tt = sm.t_test(L)
    assert row["estimate"] == pytest.approx(float(tt.effect[0]), rel=1e-9)
    assert row["std_error"] == pytest.approx(float(tt.sd[0, 0]), rel=1e-8)
    assert row["n_a"] == len(keep_a) and row["n_groups_a"] == 1
    assert "side A: 1 of its 2 groups" in row["note"]
    hier = table[(table["name"] == "corner") & (table["method"] == "hierarchical")].iloc[0]
    assert hier["n_groups_a"] == 2  # the hierarchical contrast keeps every group
