"""Running the grid: local processes and a Dask LocalCluster give identical results for the same
seed; results stream to results.parquet; an interrupted run resumes; failures are recorded."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from hetreport.simstudy import engine, executor
from hetreport.simstudy.design import parse_design
from hetreport.simstudy.executor import RESULTS, SimulationError, run_grid

distributed = pytest.importorskip("distributed")

OLS_ONLY = ["ols_full", "ols_additive", "subgroup"]
GRID = {"sample_sizes": [300, 500], "heterogeneity_sds": [0.25], "replications": 2, "approaches": OLS_ONLY}
HIER = {
    "sample_sizes": [300],
    "heterogeneity_sds": [0.25],
    "replications": 2,
    "sampler": {"draws": 200, "tune": 200, "chains": 2, "max_treedepth": 7},
}
VOLATILE = ["worker", "task_s", "fit_s", "compile_s", "sampling_s", "compile"]


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in VOLATILE if c in df]).sort_values(["cell_index", "rep", "approach"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def threaded_client():
    """A one-worker in-process cluster: monkeypatches reach its tasks."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _two_ways(tmp_path, raw):
    from distributed import Client, LocalCluster

    d = parse_design(raw)
    local = run_grid(d, tmp_path / "local", workers=2, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        dask = run_grid(d, tmp_path / "dask", client=client, progress=False)
    assert (tmp_path / "local" / RESULTS).exists() and (tmp_path / "dask" / RESULTS).exists()
    return d, local, dask


def test_local_processes_and_dask_cluster_give_identical_results(tmp_path):
    d, local, dask = _two_ways(tmp_path, GRID)
    assert len(local) == 2 * 2 * 3 and (local["status"] == "ok").all()
    pd.testing.assert_frame_equal(_stable(local), _stable(dask))
    assert pd.read_parquet(tmp_path / "local" / RESULTS).shape == local.shape
    meta = json.loads((tmp_path / "dask" / "simulation.json").read_text())
    assert meta["design_hash"] == d.design_hash() and meta["executor"] == "dask"


@pytest.mark.slow
def test_hierarchical_grid_identical_on_local_processes_and_dask(tmp_path):
    d, local, dask = _two_ways(tmp_path, HIER)
    assert (local["status"] == "ok").all(), local[local.status != "ok"]["error"].tolist()
    pd.testing.assert_frame_equal(_stable(local), _stable(dask))
    h = local[local["approach"] == "hierarchical"]
    assert set(h["compile"]) <= {"compile", "swap"} and h["n_groups"].eq(16).all() and h["n_compared"].between(12, 16).all()


def test_results_stream_and_an_interrupted_run_resumes(tmp_path, threaded_client):
    d = parse_design(GRID)
    out = tmp_path / "run"
    part = run_grid(d, out, client=threaded_client, progress=False, max_tasks=3, flush_every=0)
    assert part.drop_duplicates(["cell_index", "rep"]).shape[0] == 3
    with pytest.raises(SimulationError, match="--resume"):
        run_grid(d, out, client=threaded_client, progress=False)
    full = run_grid(d, out, client=threaded_client, progress=False, resume=True)
    assert full.drop_duplicates(["cell_index", "rep"]).shape[0] == 4
    once = run_grid(d, tmp_path / "once", client=threaded_client, progress=False)
    pd.testing.assert_frame_equal(_stable(full), _stable(once))
    other = parse_design({**GRID, "seed": 1})
    with pytest.raises(SimulationError, match="different design"):
        run_grid(other, out, client=threaded_client, progress=False, resume=True)


def test_a_failed_replication_is_recorded_and_the_grid_goes_on(tmp_path, threaded_client, monkeypatch):
    real = engine.run_replication

    def flaky(design, cell, rep, study=None, cache=engine.CACHE):
        if cell.index == 1 and rep == 0:
            raise RuntimeError("worker lost")
        return real(design, cell, rep, study, cache)

    monkeypatch.setattr(engine, "run_replication", flaky)
    d = parse_design(GRID)
    res = run_grid(d, tmp_path / "run", client=threaded_client, progress=False)
    bad = res[res["status"] != "ok"]
    assert set(zip(bad["cell_index"], bad["rep"])) == {(1, 0)} and bad["error"].str.contains("worker lost").all()
    assert (res[res["cell_index"] == 0]["status"] == "ok").all()
    # resuming runs the failed replication again (and only it)
    monkeypatch.setattr(engine, "run_replication", real)
    again = run_grid(d, tmp_path / "run", client=threaded_client, progress=False, resume=True)
    assert (again["status"] == "ok").all() and len(again) == len(res)


def test_dask_without_a_scheduler_is_an_error(tmp_path):
    from hetreport.errors import SpecError

    with pytest.raises(SpecError, match="scheduler"):
        run_grid(parse_design({**GRID, "executor": "dask"}), tmp_path, progress=False)


def test_progress_counts_cells_and_replications():
    lines = []
    p = executor.Progress(4, {0: 2, 1: 2}, 2, enabled=False, log=lines.append)
    with p:
        for c in (0, 0, 1, 1):
            p._last_log = 0  # log every update
            p.update(c, ok=c == 0)
    assert p.cells_done == 2 and p.done == 4 and p.failed == 2
    assert lines[-1].startswith("4/4 replications, 2/2 cells done, 2 failed")
