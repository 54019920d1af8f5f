"""One executor for every parallel loop of hetreport: the simulation study's grid (``hetreport simulate``),
the pre-registration's detection simulation (``hetreport preregister``) and a project's studies
(``hetreport run A.yml B.yml``).

A run is a list of independent tasks (tuples of picklable arguments) and one picklable, module-level
function; each task's result is handed to ``on_result(task, result)`` in the main process as soon as it
finishes, in completion order. Two routes:

- **local** (default): a ``concurrent.futures.ProcessPoolExecutor`` of *spawned* processes (no fork of a
  process holding threads: numba, PyTensor, nutpie). A ``payload`` (the design, the plan) is sent to each
  process once, by its initializer, and every task runs as ``fn(payload, *task)`` (``fn(*task)`` without a
  payload); the main process waits with ``FIRST_COMPLETED`` and streams results as they arrive.
- **dask**: ``distributed.Client(address)`` (``scheduler="tcp://host:port"``) or a given ``client``; the
  payload is scattered to every worker once (under a key of its own, never shared with another run) and the
  tasks are collected with ``as_completed``. A scheduler that cannot be reached is one clear
  :class:`~hetreport.errors.HetreportError` (the caller's subclass) naming the address and the fix.

A task that raises (in the task itself, or a worker process that died) becomes ``on_error(task, exc)``,
whose value is passed to ``on_result`` like any other, so one failure never stops the others; without
``on_error`` the exception propagates. An interrupt (Ctrl-C) or an exception in ``on_result`` cancels the
tasks not yet started, ends the local worker processes and re-raises: no process is left running.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .errors import HetreportError

_PAYLOAD: object = None


def _init_worker(payload, has_payload: bool) -> None:
    global _PAYLOAD
    _PAYLOAD = payload if has_payload else None
    warnings.simplefilter("ignore")


def _call_local(fn: Callable, has_payload: bool, task: tuple):
    return fn(_PAYLOAD, *task) if has_payload else fn(*task)


def _call_dask(fn: Callable, payload, task: tuple):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(payload, *task)


def _call_dask_plain(fn: Callable, task: tuple):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*task)


_NO_PAYLOAD = object()

#: how long to try to reach a Dask scheduler before saying it cannot be reached
CONNECT_TIMEOUT = "30s"


def cores() -> int:
    """The cores this process may use (the affinity mask where there is one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe(scheduler: str | None = None, client=None, workers: int = 1) -> str:
    """Where a run goes, as the logs and reports say it."""
    if scheduler:
        return f"Dask scheduler {scheduler}"
    if client is not None:
        return "a Dask client"
    return f"{workers} local process{'es' if workers > 1 else ''}"


def connect(scheduler: str, error_type: type[HetreportError] = HetreportError, local_note: str = "the tasks run on local processes."):
    """A ``distributed.Client`` on the scheduler at ``scheduler``, or ``error_type`` saying it cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise error_type(
            "running on a Dask cluster needs the 'distributed' package, which is not installed. "
            f"Install it (pip install distributed) or leave out --scheduler: {local_note}"
        ) from None
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise error_type(
            f"could not connect to the Dask scheduler at '{scheduler}' ({type(exc).__name__}: {exc}). "
            f"Start one (`dask scheduler` and `dask worker ADDRESS`) or check the address; without --scheduler {local_note}"
        ) from None


def run(
    fn: Callable,
    tasks: Iterable[tuple],
    on_result: Callable[[tuple, object], None],
    *,
    payload=_NO_PAYLOAD,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    on_error: Callable[[tuple, BaseException], object] | None = None,
    key: Callable[[tuple], str] | None = None,
    error_type: type[HetreportError] = HetreportError,
    local_note: str = "the tasks run on local processes.",
) -> None:
    """Run ``fn`` on every task (see the module's docstring); Dask when ``scheduler`` or ``client`` is given,
    else ``workers`` local processes (default: one per core, never more than there are tasks). ``key(task)``
    names a task on Dask (made unique per run)."""
    tasks = [tuple(t) for t in tasks]
    if not tasks:
        return
    has_payload = payload is not _NO_PAYLOAD
    if scheduler or client is not None:
        _run_dask(
            fn, tasks, on_result, payload if has_payload else None, has_payload, scheduler, client, on_error, key, error_type, local_note
        )
    else:
        n = max(1, min(workers or cores(), len(tasks)))
        _run_local(fn, tasks, on_result, payload if has_payload else None, has_payload, n, on_error)


def _deliver(task, get, on_result, on_error) -> None:
    try:
        res = get()
    except Exception as exc:  # the task raised, or its worker died (e.g. out of memory)
        if on_error is None:
            raise
        res = on_error(task, exc)
    on_result(task, res)


def _run_local(fn, tasks, on_result, payload, has_payload, workers, on_error) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no fork of a process holding threads (numba, PyTensor)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(payload, has_payload))
    try:
        pending = {pool.submit(_call_local, fn, has_payload, t): t for t in tasks}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                _deliver(pending.pop(fut), fut.result, on_result, on_error)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)  # every task is done: let the workers exit


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the worker processes (a running fit would otherwise go on)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)


def _run_dask(fn, tasks, on_result, payload, has_payload, scheduler, client, on_error, key, error_type, local_note) -> None:
    from distributed import as_completed

    own = client is None
    if own:
        client = connect(scheduler, error_type, local_note)
    stamp = f"{os.getpid()}-{time.time_ns()}"
    futures = {}
    try:
        if has_payload:
            pfut = client.scatter(payload, broadcast=True, hash=False)  # a key of its own: never released by another run
        for i, t in enumerate(tasks):
            name = f"{key(t) if key else f'hetreport-task-{i}'}-{stamp}"
            if has_payload:
                fut = client.submit(_call_dask, fn, pfut, t, key=name, pure=False, retries=0)
            else:
                fut = client.submit(_call_dask_plain, fn, t, key=name, pure=False, retries=0)
            futures[fut] = t
        for fut in as_completed(list(futures)):
            _deliver(futures[fut], fut.result, on_result, on_error)
            fut.release()
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        if own:
            client.close()


__all__ = ["connect", "cores", "describe", "run"]
