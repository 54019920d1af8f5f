"""Targeting (report.targeting) and PSIS-LOO between analyses: every number against a second
route (draws summed by hand, P(top k) by hand, az.loo / az.compare on a log-likelihood computed
here from the posterior)."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import SMALL_SAMPLER, random_frame
from scipy import stats

from hetreport.api import fit
from hetreport.errors import SpecError
from hetreport.modelcheck import compare_loo
from hetreport.spec import parse_spec
from hetreport.targeting import study_targeting


def _an(name, **k):
    return {"name": name, "modifiers": ["m1", "m2"], "controls": ["x1"], **k}


def _raw(path, targeting, analyses=None):
    return {
        "title": "Questions",
        "data": {"path": str(path)},
        "outcome": "y",
        "treatment": "treat",
        "analyses": analyses or [_an("a"), _an("b", terms="crossing", slope_predictors=["m1", "m2"])],
        "sampler": SMALL_SAMPLER,
        "report": {"formats": ["html"], "targeting": targeting},
    }


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("questions")
    frame = random_frame(n=600, seed=11)
    frame.to_csv(d / "data.csv", index=False)
    spec = parse_spec(_raw(d / "data.csv", {"budget": 0.3}), base_dir=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit(spec)
    res.save(d / "out")
    return frame, res, d / "out"


def _theta_by_hand(a):
    """(S, G) draws in a.groups order, selected group by group from the posterior."""
    post = a.posterior.posterior["group_effect"]
    return np.column_stack([post.sel(group=g).to_numpy().ravel() for g in a.groups["group"]])


def test_targeting_gains_and_top_k_by_hand(fitted):
    frame, res, out = fitted
    a = res.analyses[0]
    t = study_targeting(res)[0]
    theta = _theta_by_hand(a)
    n = a.groups["n"].to_numpy(float)
    N = n.sum()
    means = theta.mean(axis=0)
    # the chosen set by hand: walk down the ranking while the units stay within 30% of N
    ranked = sorted(range(len(n)), key=lambda g: -means[g])
    chosen, used = [], 0.0
    for g in ranked:
        if (used + n[g]) / N <= 0.3 or not chosen:
            chosen.append(g)
            used += n[g]
        else:
            break
    assert set(t.groups.loc[t.groups["treated"], "group"]) == {a.groups["group"].iat[g] for g in chosen}
    gains, shares = [], []
    for s in range(theta.shape[0]):
        tot_s = sum(n[g] * theta[s, g] for g in chosen)
        avg = sum(n[g] * theta[s, g] for g in range(len(n))) / N
        gains.append(tot_s / used - avg)
        shares.append(tot_s / (avg * N))
    summ = t.summary[t.summary["version"] == "in_sample"].set_index("quantity")
    assert summ.loc["gain_vs_random", "estimate"] == pytest.approx(np.mean(gains), rel=1e-10)
    assert summ.loc["gain_vs_random", "lower_95"] == pytest.approx(np.quantile(gains, 0.025), rel=1e-10)
    assert summ.loc["share_of_effect", "estimate"] == pytest.approx(np.mean(shares), rel=1e-10)
    assert summ.loc["reach", "estimate"] == pytest.approx(used / N)
    # P(among the true top k) by hand
    k = len(chosen)
    for g in range(len(n)):
        hits = np.mean([g in np.argsort(-theta[s])[:k] for s in range(theta.shape[0])])
        row = t.groups[t.groups["group"] == a.groups["group"].iat[g]].iloc[0]
        assert row["prob_top_k"] == pytest.approx(hits)
    top3 = set(ranked[:3])
    assert t.prob_top3_set == pytest.approx(np.mean([set(np.argsort(-theta[s])[:3]) == top3 for s in range(theta.shape[0])]))
    written = pd.read_csv(out / "targeting.csv")
    assert set(written["version"]) == {"in_sample", "replicate"}
    assert (out / "targeting_groups.csv").is_file()


def test_the_replicate_version_does_not_flatter(fitted):
    """A new study chooses with noise: on average it cannot beat the choice made on the posterior itself."""
    _, res, _ = fitted
    for t in study_targeting(res):
        s = t.summary.set_index(["version", "quantity"])["estimate"]
        assert s["replicate", "gain_vs_random"] < s["in_sample", "gain_vs_random"]
        assert s["replicate", "average"] == pytest.approx(s["in_sample", "average"])


def test_replicate_choice_with_no_noise_is_the_draws_own_top_groups():
    from hetreport.targeting import replicate_choice

    rng = np.random.default_rng(0)
    theta = rng.normal(size=(50, 6))
    n = np.ones(6)
    chosen = replicate_choice(theta, n, np.full(6, 1e-9), None, 2)
    for s in range(50):
        assert set(np.flatnonzero(chosen[s])) == set(np.argsort(-theta[s])[:2])


def test_targeting_more_groups_than_there_are(tmp_path):
    random_frame(n=200, seed=1).to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(_raw(tmp_path / "d.csv", {"groups": 6}, [_an("a")]), base_dir=tmp_path)
    with pytest.raises(SpecError) as e:
        fit(spec)
    assert "report.targeting.groups" in str(e.value) and "only 6" in str(e.value)


@pytest.mark.parametrize("targeting", [{"budget": 0.2, "groups": 2}, {}, {"budget": 1.5}])
def test_targeting_spec_needs_one_of_budget_or_groups(tmp_path, targeting):
    with pytest.raises(SpecError) as e:
        parse_spec(_raw(tmp_path / "d.csv", targeting), base_dir=tmp_path)
    assert "report.targeting" in str(e.value)


def _loglik_by_hand(a, frame):
    """log N(y_i | mu_i, sigma) per draw and row, mu_i assembled from the posterior group by group."""
    post = a.posterior.posterior
    sl = "group_slope" if "group_slope" in post else "group_effect"
    keys = (("m1=" + frame["m1"].astype(str)) + "|m2=" + frame["m2"].astype(str)).to_numpy()
    alpha = np.stack([post["group_intercept"].sel(group=k).to_numpy() for k in keys], axis=-1)
    theta = np.stack([post[sl].sel(group=k).to_numpy() for k in keys], axis=-1)
    beta = post["beta"].to_numpy()[..., 0]
    x = frame["x1"].to_numpy()
    mu = alpha + theta * frame["treat"].to_numpy() + beta[..., None] * (x - x.mean())
    return stats.norm.logpdf(frame["y"].to_numpy(), mu, post["sigma"].to_numpy()[..., None])


def test_loo_against_arviz_on_a_loglik_computed_by_hand(fitted):
    frame, res, _ = fitted
    elpd = {}
    for a in res.analyses:
        ll = _loglik_by_hand(a, frame)
        data = az.InferenceData(posterior=a.posterior.posterior, log_likelihood=xr.Dataset({"y": (("chain", "draw", "obs"), ll)}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = az.loo(data, pointwise=True)
        rec = a.hierarchical.loo
        assert rec["elpd_loo"] == pytest.approx(float(ref["elpd_loo"]), rel=1e-9)
        assert rec["se"] == pytest.approx(float(ref["se"]), rel=1e-9)
        np.testing.assert_allclose(rec["pareto_k"], np.asarray(ref.pareto_k), rtol=1e-8, atol=1e-10)
        elpd[a.name] = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = az.compare(elpd)
    (c,) = compare_loo(res.analyses)
    assert c["best"].name == cmp.index[0]
    assert c["elpd_diff"] == pytest.approx(float(cmp["elpd_diff"].iloc[1]), rel=1e-9)
    assert c["se_diff"] == pytest.approx(float(cmp["dse"].iloc[1]), rel=1e-9)


def test_loo_is_only_compared_on_the_same_rows(fitted):
    _, res, _ = fitted
    from dataclasses import replace

    a, b = res.analyses
    b2 = replace(b, hierarchical=replace(b.hierarchical, loo={**b.hierarchical.loo, "rows": "other"}))
    assert compare_loo([a, b2]) == []


# --------------------------------------------------------------------------- prior sensitivity


def _conjugate(prior_sd, n=20, seed=0, S=4000):
    """Exact posterior draws of a normal mean (sd 1 known) under a normal(0, prior_sd) prior, with the per-draw
    log prior and log likelihood: the known answer for power-scaling."""
    rng = np.random.default_rng(seed)
    y = rng.normal(1.0, 1.0, n)
    prec = 1 / prior_sd**2 + n
    mu = y.sum() / prec
    theta = rng.normal(mu, prec**-0.5, S).reshape(4, S // 4)
    lp = stats.norm.logpdf(theta, 0, prior_sd)
    ll = stats.norm.logpdf(y[None, None, :], theta[..., None], 1).sum(-1)
    return y, theta, lp, ll


def test_power_sense_separates_a_dominating_prior_from_a_dominating_likelihood():
    from hetreport.modelcheck import power_sense

    _, th, lp, ll = _conjugate(prior_sd=0.02)  # the prior holds the mean near 0: prior sensitive, likelihood weak
    (strong,) = power_sense({"theta": th}, lp, ll)
    _, th, lp, ll = _conjugate(prior_sd=100.0)  # a flat prior: the likelihood decides
    (weak,) = power_sense({"theta": th}, lp, ll)
    assert strong["prior"] > 0.05 and strong["likelihood"] < 0.05 and strong["diagnosis"] == "sensitive to the prior (weak likelihood)"
    assert weak["prior"] < 0.01 and weak["likelihood"] > 0.05 and weak["diagnosis"] == "not sensitive to the prior"


def test_power_scaled_prior_weights_by_hand_match_the_closed_form():
    """Scaling the prior by alpha (weights p(theta)^(alpha - 1)) gives the posterior under a normal(0, sd / sqrt(alpha))
    prior: the importance-weighted mean equals its closed form."""
    y, th, lp, _ = _conjugate(prior_sd=0.3, S=40000)
    for alpha in (0.5, 2.0):
        w = np.exp((alpha - 1) * (lp - lp.max()))
        weighted = float((w * th).sum() / w.sum())
        exact = y.sum() / (alpha / 0.3**2 + len(y))
        assert weighted == pytest.approx(exact, abs=3e-3)


def test_log_prior_of_the_fit_against_pymc(fitted):
    import pymc as pm

    from hetreport.modelcheck import log_prior_draws
    from hetreport.spec import Prior

    _, res, _ = fitted
    for a in res.analyses:
        post = a.posterior.posterior
        pri = {k: Prior.parse(v, k) for k, v in a.hierarchical.priors.items()}

        def logp(prior, x):
            if prior.family == "lkj":  # the 2x2 LKJ marginal: (rho + 1) / 2 ~ Beta(eta, eta)
                return pm.logp(pm.Beta.dist(prior.params[0], prior.params[0]), (x + 1) / 2).eval() - np.log(2)
            return pm.logp(getattr(pm, prior.dist_name).dist(**prior.kwargs()), x).eval()

        by_hand = np.zeros((post.sizes["chain"], post.sizes["draw"]))
        for key, prior in pri.items():
            if key == "Intercept":
                by_hand += logp(prior, post["Intercept"].to_numpy())
            elif key.endswith("(common slope)"):
                by_hand += logp(prior, post["b_treat"].to_numpy())
            elif key == "x1":
                by_hand += logp(prior, post["beta"].to_numpy()[..., 0])
            elif "slope predictor" in key:
                z = ["m1", "m2"].index(key.split(":")[0])
                by_hand += logp(prior, post["lambda"].to_numpy()[..., z]) + logp(prior, post["gamma"].to_numpy()[..., z])
            elif key.startswith("group SDs"):
                by_hand += logp(prior, post["sd_intercept"].to_numpy()).sum(-1) + logp(prior, post["sd_slope"].to_numpy()).sum(-1)
            elif key.startswith("intercept–slope"):
                by_hand += logp(prior, post["rho"].to_numpy()).sum(-1)
            elif key.startswith("sigma"):
                by_hand += logp(prior, post["sigma"].to_numpy())
            else:
                raise AssertionError(f"unexpected prior {key}")
        np.testing.assert_allclose(log_prior_draws(a), by_hand, rtol=1e-6)


def test_the_per_draw_loglik_sums_the_rows(fitted):
    frame, res, _ = fitted
    for a in res.analyses:
        np.testing.assert_allclose(np.asarray(a.hierarchical.loo["loglik_draws"]), _loglik_by_hand(a, frame).sum(-1), rtol=1e-9)


def test_sensitivity_rows_for_the_fit(fitted):
    from hetreport.modelcheck import sensitivity_of

    _, res, _ = fitted
    rows = sensitivity_of(res.analyses[0])
    assert [r["quantity"][:8] for r in rows] == ["σθ", "Average ", "Smallest", "Largest "]
    assert all(np.isfinite(r["prior"]) and np.isfinite(r["likelihood"]) for r in rows)


def test_loo_is_skipped_with_a_reason_when_the_loglik_would_be_too_large(monkeypatch):
    from types import SimpleNamespace

    from hetreport import modelcheck

    monkeypatch.setattr(modelcheck, "MAX_LOGLIK_CELLS", 10)
    idata = SimpleNamespace(posterior=xr.Dataset(coords={"chain": [0, 1], "draw": np.arange(5)}))
    adata = SimpleNamespace(family="gaussian", n=3, y=np.zeros(3), t=np.zeros(3), outcome=SimpleNamespace(name="y"))
    rec = modelcheck.loo_record(idata, adata, None)
    assert "3 rows x 10 draws" in rec["skipped"]
    a = SimpleNamespace(hierarchical=SimpleNamespace(loo=rec))
    assert modelcheck.compare_loo([a, a]) == []
