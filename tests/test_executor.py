"""hetreport.executor, the one executor of the simulation study, the pre-registration and projects: local spawned
processes with a payload, results streamed as tasks finish, one failing task recorded while the others go on,
an interrupt that leaves no worker behind, and the Dask route (in-process LocalCluster) with its payload
scattered and a clear error for a scheduler that cannot be reached."""

from __future__ import annotations

import os
import time

import pytest

from hetreport import executor
from hetreport.errors import HetreportError


def scaled(payload: dict, x: int) -> tuple[int, int]:
    """A task that reads the payload: (x * factor, the worker's pid)."""
    if x == payload.get("bad"):
        raise ValueError(f"task {x} is bad")
    return x * payload["factor"], os.getpid()


def square(x: int) -> int:
    return x * x


def slow(payload, x: int) -> int:
    time.sleep(payload)
    return x


def _collect(**kw):
    got = {}
    executor.run(kw.pop("fn", scaled), kw.pop("tasks"), lambda t, r: got.__setitem__(t, r), **kw)
    return got


def test_local_processes_run_every_task_with_the_payload():
    got = _collect(tasks=[(x,) for x in range(6)], payload={"factor": 3}, workers=2)
    assert {t[0]: r[0] for t, r in got.items()} == {x: 3 * x for x in range(6)}
    pids = {r[1] for r in got.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # spawned workers, at most two


def test_without_a_payload_the_task_is_the_whole_argument_list():
    got = _collect(fn=square, tasks=[(2,), (5,)], workers=2)
    assert got == {(2,): 4, (5,): 25}


def test_a_failing_task_is_recorded_and_the_others_finish():
    errors = []

    def on_error(task, exc):
        errors.append((task, type(exc).__name__, str(exc)))
        return "failed"

    got = _collect(tasks=[(x,) for x in range(5)], payload={"factor": 2, "bad": 3}, workers=2, on_error=on_error)
    assert got[(3,)] == "failed" and errors == [((3,), "ValueError", "task 3 is bad")]
    assert {t[0]: r[0] for t, r in got.items() if t != (3,)} == {0: 0, 1: 2, 2: 4, 4: 8}


def test_without_on_error_the_task_error_propagates():
    with pytest.raises(ValueError, match="task 1 is bad"):
        _collect(tasks=[(1,)], payload={"factor": 2, "bad": 1}, workers=1)


def test_an_interrupt_stops_the_run_and_its_workers():
    import multiprocessing as mp

    seen = []

    def on_result(task, res):
        seen.append(task)
        raise KeyboardInterrupt  # as Ctrl-C in the main process while results arrive

    before = set(mp.active_children())
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        executor.run(slow, [(0,), (1,), (2,), (3,), (4,), (5,)], on_result, payload=0.5, workers=2)
    assert len(seen) == 1 and time.monotonic() - t0 < 20
    assert not [p for p in mp.active_children() if p.is_alive() and p not in before]  # none of its workers left running


distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_dask_runs_every_task_with_the_scattered_payload_and_records_failures(client):
    got = _collect(
        tasks=[(x,) for x in range(5)],
        payload={"factor": 10, "bad": 4},
        client=client,
        on_error=lambda t, e: f"error: {e}",
        key=lambda t: f"test-executor-{t[0]}",
    )
    assert got[(4,)] == "error: task 4 is bad"
    assert {t[0]: r[0] for t, r in got.items() if t != (4,)} == {0: 0, 1: 10, 2: 20, 3: 30}
    assert _collect(fn=square, tasks=[(3,)], client=client) == {(3,): 9}
    assert not [k for k in client.who_has() if str(k).startswith("test-executor-")]  # every task released


def test_an_unreachable_scheduler_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(executor, "CONNECT_TIMEOUT", "2s")

    class GridError(HetreportError):
        kind = "Grid error"

    t0 = time.monotonic()
    with pytest.raises(GridError) as info:
        executor.run(square, [(1,)], lambda t, r: None, scheduler="tcp://127.0.0.1:9", error_type=GridError, local_note="it runs here.")
    msg = str(info.value)
    assert "tcp://127.0.0.1:9" in msg and "dask scheduler" in msg and "without --scheduler it runs here." in msg
    assert time.monotonic() - t0 < 20
