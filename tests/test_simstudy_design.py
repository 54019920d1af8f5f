"""The simulation file (SIM.yml) and the simulated data: the paper's defaults, error messages,
true group effects, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hetreport.errors import SpecError
from hetreport.simstudy.design import cells, load_design, parse_design
from hetreport.simstudy.generate import load_study, seeds, simulate
from hetreport.simstudy.paper import simulate_study, true_group_effects

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers_section_4():
    d = parse_design({})
    assert [m.probability for m in d.modifier_list] == [0.3, 0.4, 0.5, 0.6]
    assert d.heterogeneity_sds == [0.05, 0.25, 0.75]
    assert (d.base_effect, d.coefficient_mean, d.outcome_sd) == (0.5, 0.5, 0.25)
    grid = cells(d)
    assert [(c.n, c.sd) for c in grid] == [(n, s) for s in (0.05, 0.25, 0.75) for n in (1000, 2500, 5000)]
    sim = simulate(d, grid[0], 0)
    assert sim.truth.shape[0] == 16 and set(sim.frame["treat"].unique()) == {0, 1}
    assert sim.frame["treat"].mean() == pytest.approx(0.5, abs=0.05)


def test_paper_example_file_loads():
    d = load_design(REPO / "examples" / "simulation" / "paper.yml")
    assert len(cells(d)) == 9 and d.replications == 20
    assert d.approaches == ["ols_full", "ols_additive", "subgroup", "hierarchical", "bcf"] and d.options_of("bcf").num_mcmc == 200


@pytest.mark.parametrize(
    "raw, where, words",
    [
        ({"sample_size": [100]}, "sample_size", "Did you mean 'sample_sizes'?"),
        ({"sampler": {"draw": 10}}, "sampler.draw", "Did you mean 'draws'?"),
        ({"modifiers": [{"name": "a", "levels": {"x": 0.5, "y": 0.4}}]}, "modifiers[0].levels", "add up to 1"),
        ({"modifiers": [{"name": "a"}]}, "modifiers[0]", "either 'probability'"),
        ({"modifiers": [{"name": "a", "probability": 1.5}]}, "modifiers[0].probability", "less than 1"),
        ({"heterogeneity_sds": [0.1, 0.1]}, "heterogeneity_sds[1]", "listed twice"),
        ({"scheduler": "tcp://127.0.0.1:8786"}, "scheduler", "executor is not 'dask'"),
        ({"executor": "daks"}, "executor", "'local' or 'dask'"),
        ({"approaches": ["ols", "hierarchical"]}, "approaches[0]", "ols_full"),
        ({"priors": {"sd": "normal(0, 1)"}}, "priors.sd", "halfnormal"),
        ({"study": {"spec": "x.yml"}, "modifiers": [{"name": "a", "probability": 0.5}]}, "modifiers", "not both"),
    ],
)
def test_errors_name_the_path_and_the_fix(raw, where, words):
    with pytest.raises(SpecError) as exc:
        parse_design(raw, source="sim.yml")
    msg = str(exc.value)
    assert msg.startswith(f"sim.yml: {where}:"), msg
    assert words in msg
    assert "\n" not in msg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_design(tmp_path / "nope.yml")
    (tmp_path / "bad.yml").write_text("sample_sizes: [1000\n")
    with pytest.raises(SpecError, match="cannot be read at line"):
        load_design(tmp_path / "bad.yml")


def test_binary_design_is_simulate_study_itself():
    d = parse_design({"sample_sizes": [500], "heterogeneity_sds": [0.25]})
    cell = cells(d)[0]
    sim = simulate(d, cell, 3)
    unit, coef, _ = seeds(d, cell, 3)
    ref = simulate_study(n=500, sd=0.25, seed=unit, coef_seed=coef)
    pd.testing.assert_frame_equal(sim.frame.drop(columns="mu"), ref.data)
    # the truth is the sum of the treatment coefficients (the paper's script got this wrong)
    pd.testing.assert_frame_equal(sim.truth, true_group_effects(ref.coefficients, ["m1", "m2", "m3", "m4"]))


def _check_truth_is_mu_contrast(sim):
    """Within every group, the true mean under treatment minus under control is the true effect."""
    f = sim.frame
    for _, g in f.groupby(list(sim.modifiers)):
        mu1 = g.loc[g.treat == 1, "mu"].unique()
        mu0 = g.loc[g.treat == 0, "mu"].unique()
        if len(mu1) and len(mu0):
            assert len(mu1) == 1 and len(mu0) == 1  # no controls: one mean per cell
            assert mu1[0] - mu0[0] == pytest.approx(g["true_effect"].iloc[0], abs=1e-12)


def test_true_effects_are_the_mean_contrasts_binary_and_categorical():
    d = parse_design({"sample_sizes": [3000], "heterogeneity_sds": [0.5]})
    _check_truth_is_mu_contrast(simulate(d, cells(d)[0], 0))
    d = parse_design(
        {
            "sample_sizes": [3000],
            "heterogeneity_sds": [0.5],
            "coefficient_mean": 0.0,
            "modifiers": [{"name": "region", "levels": {"north": 0.5, "south": 0.3, "west": 0.2}}, {"name": "young", "probability": 0.4}],
        }
    )
    sim = simulate(d, cells(d)[0], 1)
    assert sim.truth.shape[0] == 6 and set(sim.frame["region"]) == {"north", "south", "west"}
    _check_truth_is_mu_contrast(sim)
    # the reference group's effect is the base effect
    ref = sim.truth[(sim.truth.region == "north") & (sim.truth.young == 0)]["true_effect"].iloc[0]
    assert ref == pytest.approx(0.5)
    # level shares follow the probabilities
    assert (sim.frame["region"] == "north").mean() == pytest.approx(0.5, abs=0.04)


def test_seeds_depend_on_cell_and_replication_only():
    d = parse_design({"sample_sizes": [300, 600], "heterogeneity_sds": [0.05, 0.75], "coefficient_mean": 0.0})
    g = cells(d)
    a, b = simulate(d, g[1], 2), simulate(d, g[1], 2)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not simulate(d, g[1], 3).frame.equals(a.frame)
    # redraw: replication r shares its coefficient deviates across cells (common random numbers)
    t1 = simulate(d, g[0], 2).truth["true_effect"].to_numpy()  # sd .05, n 300
    t2 = simulate(d, g[2], 2).truth["true_effect"].to_numpy()  # sd .75, n 300
    assert not np.allclose(t1, t2)
    np.testing.assert_allclose((t1 - 0.5) / 0.05, (t2 - 0.5) / 0.75, atol=1e-9)
    fixed = parse_design({"sample_sizes": [300], "heterogeneity_sds": [0.25], "coefficients": "fixed"})
    c = cells(fixed)[0]
    np.testing.assert_array_equal(simulate(fixed, c, 0).truth["true_effect"], simulate(fixed, c, 5).truth["true_effect"])


def test_study_design_reuses_modifiers_controls_and_n(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "treat": rng.integers(0, 2, n),
            "a": rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1]),
            "b": rng.integers(0, 2, n),
            "x": rng.normal(size=n),
            "r": rng.integers(1, 4, n),
        }
    )
    frame["y"] = rng.normal(size=n)
    frame.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "spec.yml").write_text(
        "title: t\ndata: {path: d.csv}\noutcome: y\ntreatment: treat\n"
        "analyses:\n  - {name: main, modifiers: [a, b], controls: [x, r], categorical: [r]}\n"
    )
    (tmp_path / "sim.yml").write_text("study: {spec: spec.yml}\nheterogeneity_sds: [0.25]\nreplications: 2\n")
    d = load_design(tmp_path / "sim.yml")
    study = load_study(d)
    grid = cells(d, study.n)
    assert [c.n for c in grid] == [400]
    sim = simulate(d, grid[0], 0, study)
    assert sim.modifiers == ("a", "b") and sim.controls == ("x", "r") and sim.categorical == ("r",)
    assert sim.truth.shape[0] == 6
    assert (sim.frame["a"] == 1).mean() == pytest.approx(0.6, abs=0.08)  # observed frequencies kept
    # the controls move the outcome's mean, not the group effects
    g = sim.frame.groupby(["a", "b"])["true_effect"].nunique()
    assert (g == 1).all()
