"""Simulation studies: a grid of simulated studies (sample size x heterogeneity SD), every
approach fitted to every replication, scored against the known truth, and reported.

    hetreport simulate SIM.yml --out DIR [--scheduler tcp://host:port] [--resume]

``design`` reads SIM.yml, ``generate`` makes the data, ``engine`` runs one replication
(compiling the hierarchical model once per cell and worker), ``executor`` runs the grid
(local processes or Dask) into ``DIR/results.parquet``, ``metrics`` scores and summarises,
``report`` and ``figures`` write the report.
"""

from __future__ import annotations

from .design import SimDesign, cells, load_design, parse_design
from .executor import run_grid


def render_simulation(*args, **kwargs):
    from .report import render_simulation as _render

    return _render(*args, **kwargs)


__all__ = ["SimDesign", "cells", "load_design", "parse_design", "render_simulation", "run_grid"]
