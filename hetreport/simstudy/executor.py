"""Running the grid: replications are independent tasks, run by local processes or a Dask cluster.

Both routes are :mod:`hetreport.executor`'s (the one executor hetreport has):

- **local** (default): ``concurrent.futures.ProcessPoolExecutor`` with one process per core;
  each process receives the design once (its initializer) and keeps a cache of compiled models,
  so it compiles each cell's model once and then only samples.
- **dask**: ``distributed.Client(address)`` on an existing cluster (``--scheduler tcp://host:port``
  or ``executor: dask`` + ``scheduler:`` in the file); the design is scattered to every worker
  once, tasks are submitted cell by cell and collected with ``as_completed``; every worker
  process keeps the same cache as a local process.

Results stream to ``DIR/results.parquet``: the file is rewritten atomically (write, then
rename) as tasks finish (at most every ``flush_every`` seconds, and always at the end or on an
interrupt), so an interrupted run keeps what finished and ``resume=True`` runs only the rest.
A replication that fails is recorded (``status = error`` and the message) and the grid goes on;
on resume, failed replications are run again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..errors import HetreportError, SpecError
from .design import APPROACHES, SimDesign, cells
from .generate import load_study

RESULTS = "results.parquet"
META = "simulation.json"


class SimulationError(HetreportError):
    kind = "Simulation error"


# --------------------------------------------------------------------------- the results file


class ResultStore:
    """``DIR/results.parquet``, kept in memory and rewritten atomically as rows arrive."""

    def __init__(self, out_dir: Path, flush_every: float = 2.0):
        self.path = Path(out_dir) / RESULTS
        self.flush_every = flush_every
        self.frames: list[pd.DataFrame] = []
        self._last = 0.0
        self._dirty = False
        if self.path.exists():
            self.frames.append(pd.read_parquet(self.path))

    def table(self) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame()
        if len(self.frames) > 1:
            self.frames = [pd.concat(self.frames, ignore_index=True)]
        return self.frames[0]

    def done(self) -> set[tuple[int, int]]:
        """(cell_index, rep) of replications whose every approach ran."""
        t = self.table()
        if t.empty:
            return set()
        ok = t.groupby(["cell_index", "rep"])["status"].agg(lambda s: bool((s == "ok").all()))
        return {(int(c), int(r)) for (c, r), v in ok.items() if v}

    def drop(self, keys: set[tuple[int, int]]) -> None:
        t = self.table()
        if t.empty or not keys:
            return
        idx = pd.MultiIndex.from_frame(t[["cell_index", "rep"]].astype(int))
        self.frames = [t[~idx.isin(list(keys))].reset_index(drop=True)]
        self._dirty = True

    def add(self, rows: list[dict]) -> None:
        if rows:
            self.frames.append(pd.DataFrame(rows))
            self._dirty = True
        if time.monotonic() - self._last >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        t = self.table().sort_values(["cell_index", "rep", "approach"], kind="stable").reset_index(drop=True)
        self.frames = [t]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        t.to_parquet(tmp, index=False)
        os.replace(tmp, self.path)
        self._last = time.monotonic()
        self._dirty = False


# --------------------------------------------------------------------------- progress


class Progress:
    """Cells and replications done, with an ETA: a rich progress bar on a terminal, log lines otherwise."""

    def __init__(self, total_reps: int, reps_per_cell: dict[int, int], n_cells: int, enabled: bool | None = None, log=None):
        self.total = total_reps
        self.left = dict(reps_per_cell)
        self.n_cells = n_cells
        self.cells_done = n_cells - sum(1 for v in self.left.values() if v > 0)
        self.done = 0
        self.failed = 0
        self.t0 = time.monotonic()
        self.log = log or (lambda m: None)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._last_log = 0.0

    def __enter__(self):
        if self.enabled and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._cells = self._bar.add_task("cells", total=self.n_cells, completed=self.cells_done)
            self._reps = self._bar.add_task("replications", total=self.total)
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()

    def eta(self) -> float:
        el = time.monotonic() - self.t0
        return el / self.done * (self.total - self.done) if self.done else float("nan")

    def update(self, cell_index: int, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.left[cell_index] -= 1
        if self.left[cell_index] == 0:
            self.cells_done += 1
        if self._bar is not None:
            self._bar.update(
                self._reps, completed=self.done, description=f"replications{f' ({self.failed} failed)' if self.failed else ''}"
            )
            self._bar.update(self._cells, completed=self.cells_done)
        elif time.monotonic() - self._last_log > 15 or self.done == self.total:
            self._last_log = time.monotonic()
            eta = self.eta()
            self.log(
                f"{self.done}/{self.total} replications, {self.cells_done}/{self.n_cells} cells done"
                + (f", {self.failed} failed" if self.failed else "")
                + (f", ETA {eta / 60:.1f} min" if eta == eta else "")
            )


# --------------------------------------------------------------------------- failures


def _error_rows(design: SimDesign, cell, rep: int, exc: BaseException) -> list[dict]:
    msg = f"{type(exc).__name__}: {str(exc)[:400]}"
    return [
        {
            "cell": cell.id,
            "cell_index": cell.index,
            "n": cell.n,
            "sd": cell.sd,
            "rep": rep,
            "approach": a,
            "status": "error",
            "error": msg,
            "design_hash": design.design_hash()[:16],
        }
        for a in APPROACHES
        if a in design.approaches
    ]


# --------------------------------------------------------------------------- the entry point


def _meta(design: SimDesign, grid, executor: str, where: str) -> dict:
    from ..versions import package_versions

    return {
        "design_hash": design.design_hash(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "cells": [{"index": c.index, "id": c.id, "n": c.n, "sd": c.sd} for c in grid],
        "replications": design.replications,
        "executor": executor,
        "where": where,
        "design": design.canonical(),
        "source_text": design.source_text,
        "packages": package_versions(),
    }


def run_grid(
    design: SimDesign,
    out_dir: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    resume: bool = False,
    progress: bool | None = None,
    log=None,
    client=None,
    executor: str | None = None,
    flush_every: float = 2.0,
    max_tasks: int | None = None,
) -> pd.DataFrame:
    """Run every replication of every cell not yet in ``out_dir/results.parquet``; returns all results.

    ``scheduler`` (or ``client``, a ``distributed.Client``) runs the tasks on Dask, else on
    ``workers`` local processes (default: the design's ``workers``, else every core).
    ``max_tasks`` stops after that many tasks (for tests of resuming)."""
    say = log or (lambda m: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(design)
    grid = cells(design, study.n if study is not None else None)
    scheduler = scheduler or design.scheduler
    kind = executor or ("dask" if (scheduler or client is not None) else design.executor)
    if kind == "dask" and scheduler is None and client is None:
        raise SpecError(
            "executor is 'dask' but no scheduler address is given; add scheduler: tcp://host:port to the file or pass --scheduler.",
            where="executor",
        )
    meta_path = out / META
    store_exists = (out / RESULTS).exists()
    if store_exists and not resume:
        raise SimulationError(f"{out / RESULTS} already holds results. Pass --resume to continue that run, or choose another --out folder.")
    if resume and meta_path.exists():
        old = json.loads(meta_path.read_text())
        if old.get("design_hash") != design.design_hash():
            raise SimulationError(
                f"{out} holds a run of a different design (the grid, modifiers, seed, sampler or priors changed). "
                "Resume with the same SIM.yml, or choose another --out folder."
            )
    store = ResultStore(out, flush_every)
    done = store.done()
    tasks = [(c.index, r) for c in grid for r in range(design.replications) if (c.index, r) not in done]
    store.drop({t for t in tasks})  # earlier failed attempts of replications that run again
    if max_tasks is not None:
        tasks = tasks[:max_tasks]
    workers = workers or design.workers or os.cpu_count() or 1
    where = scheduler or ("a Dask client" if client is not None else f"{workers} local processes")
    meta = _meta(design, grid, kind, where)
    if resume and meta_path.exists():
        meta["created"] = json.loads(meta_path.read_text()).get("created", meta["created"])
        meta["resumed"] = datetime.now(UTC).isoformat(timespec="seconds")
    meta_path.write_text(json.dumps(meta, indent=2, default=str))
    if done:
        say(f"resuming: {len(done)} replications already done, {len(tasks)} to run")
    say(f"{len(grid)} cells x {design.replications} replications; {len(tasks)} to run on {where}")
    per_cell = {c.index: sum(1 for ci, _ in tasks if ci == c.index) for c in grid}
    t0 = time.monotonic()
    with Progress(len(tasks), per_cell, len(grid), progress, say) as bar:

        def on_rows(c, rows):
            store.add(rows)
            bar.update(c, all(r.get("status") == "ok" for r in rows))

        try:
            from .. import executor as runner
            from .engine import run_task

            runner.run(
                run_task,
                tasks,
                lambda task, rows: on_rows(task[0], rows),
                payload=design,
                workers=workers,
                scheduler=scheduler if kind == "dask" else None,
                client=client if kind == "dask" else None,
                on_error=lambda task, exc: _error_rows(design, grid[task[0]], task[1], exc),
                key=lambda task: f"hetreport-sim-{design.design_hash()[:12]}-{task[0]}-{task[1]}",
                error_type=SimulationError,
                local_note="the grid runs on local processes.",
            )
        finally:
            store.flush()
    if tasks:
        say(f"{len(tasks)} replications in {(time.monotonic() - t0) / 60:.1f} min; results in {store.path}")
    meta["wall_s"] = round(time.monotonic() - t0, 2)
    meta_path.write_text(json.dumps(meta, indent=2, default=str))
    return store.table()
