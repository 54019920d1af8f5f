"""One data generator (issue 16 §1): pre-registration's ``simulate_frame`` and the simulation study's
``simulate`` draw through the same pieces of ``hetreport.simstudy.dgp``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from hetreport.groups import group_key
from hetreport.prereg.plan import resolve_plan, simulate_frame, true_effects
from hetreport.simstudy.dgp import cell_means, group_effects, term_coefficients, truth_table
from hetreport.simstudy.generate import simulate_levels
from hetreport.spec import parse_spec

DESIGN = """\
title: Two callers, one generator
design:
  n: 400
  modifiers:
    female: {levels: {0: 0.5, 1: 0.5}}
    age: {levels: {1: 0.3, 2: 0.4, 3: 0.3}}
  outcome_sd: 0.000001
  average_effect: 0.3
  heterogeneity_sd: 0.4
  replications: 2
  seed: 7
outcome: y
treatment: treat
analyses:
  - name: people
    modifiers: [female, age]
"""


@pytest.fixture(scope="module")
def plan():
    return resolve_plan(parse_spec(yaml.safe_load(DESIGN), source="design.yml"))


def test_same_seed_same_units_through_both_callers(plan):
    """The treatment and the modifiers of pre-registration's frame are the simulation study's draws for the same seed."""
    frame, _ = simulate_frame(plan, 5000, 0.4, 123)
    sim, _, _ = simulate_levels(
        5000,
        [("female", ([0, 1], [0.5, 0.5])), ("age", ([1, 2, 3], [0.3, 0.4, 0.3]))],
        sd=0.4,
        base_effect=0.3,
        coef_mean=0.0,
        outcome_sd=1.0,
        p_treat=plan.p_treat,
        unit_seed=123,
        coef_seed=1,
    )
    np.testing.assert_array_equal(frame["treat"].to_numpy(), sim["treat"].to_numpy())
    for m in ("female", "age"):
        np.testing.assert_array_equal(frame[m].to_numpy(float), sim[m].to_numpy(float))


def test_prereg_truth_is_the_shared_truth_and_the_data_contrast(plan):
    """Pre-registration's truth is the shared generator's truth table, and (with almost no noise) each group's
    treated-minus-control mean of the simulated outcome: a second route through the data."""
    frame, truth = simulate_frame(plan, 4000, 0.4, 11)
    a = plan.analysis("people")
    coefs = term_coefficients(a.groups, a.term_list, 0.4, 0.3, np.random.default_rng([11, 2]), plan.outcome_mean, a.groups["share"])
    table = truth_table(coefs, ["female", "age"], {"female": [0, 1], "age": [1, 2, 3]})
    keys = [group_key(("female", "age"), r) for r in table[["female", "age"]].itertuples(index=False, name=None)]
    np.testing.assert_allclose(pd.Series(table["true_effect"].to_numpy(), index=keys).reindex(truth.index), truth, atol=1e-15)
    np.testing.assert_allclose(true_effects(plan, "people", 0.4, np.random.default_rng([11, 2])), truth, atol=1e-15)
    frame["group"] = [group_key(("female", "age"), r) for r in frame[["female", "age"]].itertuples(index=False, name=None)]
    means = frame.groupby(["group", "treat"])["y"].mean().unstack()
    np.testing.assert_allclose((means[1] - means[0]).reindex(truth.index), truth, atol=1e-5)
    assert truth.std() > 0.1
    # the same coefficients give the same per-unit means through cell_means and group_effects
    units = frame
    mu = cell_means(coefs, units)
    np.testing.assert_allclose(mu, plan.outcome_mean + group_effects(coefs, units) * units["treat"], atol=1e-12)


def test_contrast_figure_takes_its_methods_from_the_registry():
    """The named-comparisons figure lists the hierarchical model first, then every registered method of the table in
    registry order, each under its registry label (no method name of its own)."""
    from hetreport import methods as registry
    from hetreport.figures.questions import plot_contrasts

    rows = []
    for m in ("bcf", "glm_full", "hierarchical", "ols_full"):
        rows.append(
            {"label": "women vs men", "method": m, "estimate": 0.1, "lower_90": 0.0, "upper_90": 0.2, "lower_95": -0.1, "upper_95": 0.3}
        )
    p = plot_contrasts(pd.DataFrame(rows))
    want = [registry.REFERENCE] + [m for m in registry.REGISTRY if m in {"bcf", "glm_full", "ols_full"}]
    assert list(p.data["Method"].cat.categories) == [registry.label(m) for m in want]


def test_a_modifier_named_treat_is_not_the_treatment():
    """The coefficients' keys name the treatment by the spec's treatment column, so a modifier called "treat" (with
    the treatment called T) is a modifier: the data's contrast per group is still the truth."""
    raw = yaml.safe_load(DESIGN.replace("treatment: treat", "treatment: T").replace("female", "treat"))
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    frame, truth = simulate_frame(plan, 4000, 0.4, 11)
    frame["group"] = [group_key(("treat", "age"), r) for r in frame[["treat", "age"]].itertuples(index=False, name=None)]
    means = frame.groupby(["group", "T"])["y"].mean().unstack()
    np.testing.assert_allclose((means[1] - means[0]).reindex(truth.index), truth, atol=1e-5)
    assert truth.std() > 0.1
