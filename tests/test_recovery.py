"""Recovery of known group effects on data simulated from the seed paper's section 4 design:
four binary modifiers (p = .3/.4/.5/.6), N = 2,500, small heterogeneity. Both approaches
should cover the truth at close to nominal rates, and the hierarchical RMSE should be
lower than OLS's when heterogeneity is small."""

import warnings

import numpy as np
import pytest

from hetreport.api import fit
from hetreport.simstudy.paper import simulate_study, true_group_effects
from hetreport.spec import parse_spec

pytestmark = pytest.mark.slow


def test_true_group_effects_sum_treatment_terms():
    coefs = {(): 0, ("treat",): 0.5, ("m1",): 9.0, ("treat", "m1"): 0.2, ("treat", "m2"): -0.1, ("treat", "m1", "m2"): 0.05}
    truth = true_group_effects(coefs, ["m1", "m2"]).set_index(["m1", "m2"])["true_effect"]
    assert truth[(0, 0)] == pytest.approx(0.5)
    assert truth[(1, 0)] == pytest.approx(0.7)
    assert truth[(0, 1)] == pytest.approx(0.4)
    assert truth[(1, 1)] == pytest.approx(0.5 + 0.2 - 0.1 + 0.05)


def test_simulated_outcome_has_the_true_group_effects():
    sim = simulate_study(n=200_000, sd=0.25, seed=1)
    d = sim.data
    for _, row in sim.truth.iterrows():
        sel = (d[["m1", "m2", "m3", "m4"]] == row[["m1", "m2", "m3", "m4"]].to_numpy()).all(axis=1)
        sub = d[sel]
        diff = sub.y[sub.treat == 1].mean() - sub.y[sub.treat == 0].mean()
        assert diff == pytest.approx(row.true_effect, abs=0.03)


def test_recovery_of_known_group_effects(tmp_path):
    rows = []
    for rep in range(3):
        sim = simulate_study(n=2500, sd=0.05, coef_mean=0.0, seed=100 + rep, coef_seed=7)
        sim.data.to_csv(tmp_path / "d.csv", index=False)
        spec = parse_spec(
            {
                "title": "sim",
                "data": {"path": "d.csv"},
                "outcome": "y",
                "treatment": "treat",
                "analyses": [{"name": "a", "modifiers": ["m1", "m2", "m3", "m4"]}],
                "report": {"truth": "true_effect"},
                "sampler": {"draws": 500, "tune": 500, "chains": 2, "seed": rep},
            },
            base_dir=tmp_path,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            effects = fit(spec).effects
        for method in ("ols_full", "hierarchical"):
            d = effects[(effects.method == method) & effects.estimable]
            assert len(d) == 16
            rows.append(
                (
                    method,
                    np.sqrt(np.mean((d.estimate - d.truth) ** 2)),
                    np.mean((d.lower_95 <= d.truth) & (d.truth <= d.upper_95)),
                    np.mean((d.lower_90 <= d.truth) & (d.truth <= d.upper_90)),
                )
            )
    by = {m: np.array([r[1:] for r in rows if r[0] == m]).mean(axis=0) for m in ("ols_full", "hierarchical")}
    for m, (_rmse, c95, c90) in by.items():
        assert 0.85 <= c95 <= 1.0, (m, c95)  # 48 intervals per method: nominal 0.95
        assert 0.75 <= c90 <= 1.0, (m, c90)
    assert by["hierarchical"][0] < by["ols_full"][0]
