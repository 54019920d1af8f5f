"""The pre-registration simulation samples a Gaussian model through the log density compiled once per machine
(issue 14 goal 5): a replication run by the executor gives the same numbers as that replication run alone, and
the density route's group effects agree with the PyMC graph's (the route before) within Monte Carlo error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from hetreport.spec import parse_spec

DESIGN = """\
title: A small planned study
design:
  n: 400
  modifiers:
    female: {levels: {0: 0.5, 1: 0.5}}
    age: {levels: {1: 0.3, 2: 0.4, 3: 0.3}}
  controls:
    income: {mean: 50, sd: 10}
  outcome_sd: 1.0
  average_effect: 0.3
  heterogeneity_sd: 0.4
  replications: 2
  seed: 7
  sampler: {draws: 300, tune: 300, chains: 2}
outcome: y
treatment: treat
analyses:
  - name: people
    modifiers: [female, age]
    controls: [income]
"""


def _plan():
    from hetreport.prereg.plan import resolve_plan

    return resolve_plan(parse_spec(yaml.safe_load(DESIGN), source="design.yml"))


def test_a_replication_in_the_grid_equals_it_run_alone():
    from distributed import Client, LocalCluster

    from hetreport.prereg.simulate import cells, run_replication, run_simulation
    from hetreport.simstudy.engine import WorkerCache

    plan = _plan()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        sim = run_simulation(plan, client=client)  # through hetreport.executor, as on a cluster
    assert (sim.summary["status"] == "ok").all() and set(sim.summary["compile"]) == {"density"}
    cell = cells(plan)[-1]  # the assumed heterogeneity SD
    grid = sim.groups[(sim.groups["cell_index"] == cell.index) & (sim.groups["rep"] == 1)].sort_values(["method", "group"])
    alone = pd.DataFrame(run_replication(plan, cell, 1, WorkerCache())["groups"]).sort_values(["method", "group"])
    np.testing.assert_array_equal(grid["estimate"].to_numpy(), alone["estimate"].to_numpy())  # same seed, same draws
    np.testing.assert_array_equal(grid["upper_95"].to_numpy(), alone["upper_95"].to_numpy())


@pytest.mark.slow
def test_the_density_route_gives_the_graph_routes_posterior():
    """The second route: the same posterior through the PyMC graph (different draws), group by group within MC error."""
    from hetreport.prereg.plan import derived_seed
    from hetreport.prereg.simulate import _analysis_inputs, cells, fit_hierarchical_cell, full_groups
    from hetreport.simstudy.engine import WorkerCache

    plan = _plan()
    cell = cells(plan)[-1]
    adata, _, _ = _analysis_inputs(plan, cell, derived_seed(plan.seed, 1, cell.index, 1))
    fg = full_groups(plan, cell, adata)
    draws = {}
    for graph in (False, True):
        idata, info = fit_hierarchical_cell(plan, cell, adata, fg, 11, WorkerCache(), graph=graph)
        assert info["compile"] == ("compile" if graph else "density")
        draws[graph] = idata.posterior["group_effect"].stack(s=("chain", "draw")).transpose("s", "group").to_numpy()
    import arviz as az

    m = {g: d.mean(axis=0) for g, d in draws.items()}
    mcse = np.sqrt(sum(d.var(axis=0) / np.array([az.ess(d[:, j]) for j in range(d.shape[1])]) for d in draws.values()))
    assert np.all(np.abs(m[False] - m[True]) < 4 * mcse), (m, mcse)
    sd = {g: d.std(axis=0) for g, d in draws.items()}
    assert np.allclose(sd[False], sd[True], rtol=0.25)
