"""One replication of one cell: simulate, fit every approach, score against the truth.

The hierarchical model is hetreport's own (``build_design`` / ``build_model`` /
``resolve_priors`` / ``diagnose``). Its graph's shape depends only on the groups, term levels
and controls, and its data enter through ``pm.Data`` containers, so every replication of a
cell can share one compiled model: the first replication a worker runs in a cell compiles it
with ``nutpie.compile_pymc_model``; later ones swap their data in with
``CompiledPyMCModel.with_data(...)`` and only sample. A replication whose group set differs
(a group empty at small N) compiles afresh and is recorded as ``fallback``.

Two things make the swapped model exactly the model a fresh compile of the same data
would give:

- **priors are fixed per cell**: the defaults scaled to the outcome (``resolve_priors``) are
  resolved once, from replication 0 of the cell, and used for every replication (a prior
  should not move with each simulated data set, and a prior baked into a compiled graph
  cannot);
- **one centring constant per cell**: the graph works on y centred at a constant it keeps
  (``Design.y_mean``); each replication's sufficient statistics are re-centred at the cell's
  constant (replication 0's mean) — exact algebra, the likelihood is unchanged.

So results depend on (design, cell, replication) only: not on the worker, the order, or
whether the model was swapped or compiled (``tests/test_simstudy_engine.py`` checks this).

Each fit samples its chains on one thread (``HETREPORT_SIM_CORES``, default 1): the
parallelism is across replications, one per worker process.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import Dataset, prepare_analysis
from ..groups import build_groups
from ..spec import parse_spec
from .design import APPROACHES, Cell, SimDesign, cells
from .generate import SimData, load_study, seeds, simulate
from .metrics import common_groups, group_metrics, rmse

HIER_VARS = ["Intercept", "b_treat", "sd_intercept", "sd_slope", "rho", "sigma", "group_effect", "group_intercept", "crossing_slope"]
DATA_NAMES = ("cell_n", "cell_sy", "cell_sx", "xx", "xy", "yy", "n_obs")


# --------------------------------------------------------------------------- simulated data -> hetreport's analysis


def analysis_inputs(design: SimDesign, sim: SimData):
    """The simulated frame through hetreport's own data path (spec -> AnalysisData -> Groups)."""
    analysis = {"name": "sim", "modifiers": list(sim.modifiers), "controls": list(sim.controls), "categorical": list(sim.categorical)}
    spec = parse_spec(
        {
            "title": "simulated",
            "data": {"path": "simulated.csv"},
            "outcome": "y",
            "treatment": "treat",
            "analyses": [analysis],
            "ols": design.ols.model_dump(),
            "report": {"truth": "true_effect"},
        }
    )
    ds = Dataset(
        frame=sim.frame,
        path=Path("simulated.csv"),
        sha256="",
        format="csv",
        n_read=len(sim.frame),
        n_filtered_out=0,
        n_filter_missing=0,
        variable_labels={},
        value_labels={},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, ds, spec.analyses[0])
        groups = build_groups(adata, 5)
    if adata.n != len(sim.frame):  # simulated data have no missing values
        raise RuntimeError(f"{len(sim.frame) - adata.n} simulated rows were dropped by prepare_analysis")
    return adata, groups


def group_truth(adata, groups) -> np.ndarray:
    return pd.Series(adata.truth).groupby(groups.index).mean().sort_index().to_numpy()


# --------------------------------------------------------------------------- every approach but the hierarchical model


def fit_approach(approach: str, design: SimDesign, adata, groups, seed: int):
    """An approach from the method registry on one replication: its per-group table, fitted means and timing."""
    from ..methods import FitRequest, get

    t0 = time.perf_counter()
    request = FitRequest(se_type=design.ols.se_type, options=design.options_of(approach), seed=seed, fitted=True)
    mfit = get(approach).fit_function()(adata, groups, request)
    return mfit.table, mfit.fitted, {"fit_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- hierarchical, compiled once per cell


@dataclass
class CellReference:
    """What every replication of a cell shares: priors, the centring constant, the graph's shape."""

    resolved: dict
    control_sds: np.ndarray | None
    shift: float
    group_keys: tuple[str, ...]
    signature: tuple


@dataclass
class CompiledEntry:
    compiled: object
    signature: tuple
    compile_s: float


class WorkerCache:
    """Per process: cell references and compiled models, keyed by (design hash, cell)."""

    def __init__(self):
        self.references: dict[tuple, CellReference] = {}
        self.compiled: dict[tuple, CompiledEntry] = {}
        self.counts = {"compile": 0, "swap": 0, "fallback": 0, "density": 0}

    def clear(self):
        self.__init__()


CACHE = WorkerCache()


def _signature(design_obj, groups, adata) -> tuple:
    return (tuple(groups.keys), tuple(design_obj.term_names), tuple(adata.control_columns))


def cell_reference(design: SimDesign, cell: Cell, study=None, cache: WorkerCache = CACHE) -> CellReference:
    from ..models.hierarchical import _control_prior_sds, build_design, resolve_priors

    key = (design.design_hash(), cell.index)
    if key not in cache.references:
        sim0 = simulate(design, cell, 0, study)
        adata0, groups0 = analysis_inputs(design, sim0)
        resolved = resolve_priors(design.priors, adata0)
        d0 = build_design(adata0, groups0, "all")
        cache.references[key] = CellReference(
            resolved, _control_prior_sds(resolved, adata0), float(adata0.y.mean()), tuple(groups0.keys), _signature(d0, groups0, adata0)
        )
    return cache.references[key]


def recentred_design(adata, groups, shift: float, mode: str = "all"):
    """``build_design`` with y centred at ``shift`` instead of its own mean (same likelihood)."""
    from ..models.hierarchical import build_design

    d = build_design(adata, groups, mode)
    delta = d.y_mean - shift
    return replace(d, cell_sy=d.cell_sy + delta * d.cell_n, yy=float(d.yy + d.n * delta**2), y_mean=float(shift))


def design_data(d) -> dict[str, np.ndarray]:
    return {
        "cell_n": d.cell_n,
        "cell_sy": d.cell_sy,
        "cell_sx": d.cell_sx,
        "xx": d.xx,
        "xy": d.xy,
        "yy": np.asarray(d.yy, dtype=float),
        "n_obs": np.asarray(float(d.n)),
    }


def compile_model(d, ref: CellReference, adata, groups):
    import nutpie

    from ..models.hierarchical import build_model

    model = build_model(d, ref.resolved, ref.control_sds, adata.control_columns, groups.keys)
    keep = HIER_VARS + (["beta"] if adata.control_matrix.shape[1] else [])
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, var_names=keep)
    return compiled, time.perf_counter() - t0


def swap_data(compiled, d):
    """The compiled model with this design's data (only the containers the graph uses)."""
    data = {k: v for k, v in design_data(d).items() if k in compiled.shared_data}
    for k, v in data.items():
        if np.shape(v) != compiled.shared_data[k].shape:
            raise ValueError(f"data '{k}' has shape {np.shape(v)}, the compiled model {compiled.shared_data[k].shape}")
    return compiled.with_data(**data)


def sample_compiled(compiled, sampler, seed: int, cores: int = 1):
    import nutpie

    t0 = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=sampler.draws,
        tune=sampler.tune,
        chains=sampler.chains,
        seed=seed,
        target_accept=sampler.target_accept,
        maxdepth=sampler.max_treedepth,
        progress_bar=False,
        save_warmup=False,
        cores=cores,
    )
    return idata, time.perf_counter() - t0


def density_route(d, resolved) -> tuple[int, ...] | None:
    """The collapsed terms when this replication can be sampled through the log density compiled once per machine
    (``hetreport.models.fastlogp``, the route ``hetreport fit`` takes for a Gaussian model), else None."""
    from ..models.hierarchical import _fast_supported, collapsed_terms

    collapse = collapsed_terms(d, resolved)
    return collapse if collapse is not None and _fast_supported(resolved) else None


def sample_density(d, collapse, resolved, control_sds, adata, groups, sampler, seed: int, cores: int = 1):
    """Sample the collapsed Gaussian model of design ``d`` through the compiled log density: nothing is compiled
    for the replication (its data and the cell's priors are a flat buffer; ``compile_s`` is the buffer's packing),
    then the collapsed coefficients are drawn exactly (``draw_collapsed``), as ``fit_hierarchical`` does. Returns
    (posterior with the graph route's variables, info); the same posterior as :func:`compile_model`'s graph
    (tests/test_prereg_density.py compares the two on one replication)."""
    from threadpoolctl import threadpool_limits

    from ..models import fastlogp
    from ..models.hierarchical import _collapsed_names, draw_collapsed

    t0 = time.perf_counter()
    coords = {
        "term": list(d.term_names),
        "group": list(groups.keys),
        "control": list(adata.control_columns),
        "collapsed": _collapsed_names(d, collapse),
    }
    compiled = fastlogp.compile_collapsed(d, resolved, control_sds, collapse, coords)
    info = {"compile": "density", "compile_s": time.perf_counter() - t0}
    with threadpool_limits(1):  # one BLAS thread per chain, as fit_hierarchical: the collapsed route's small LAPACK calls
        idata, info["sampling_s"] = sample_compiled(compiled, sampler, seed, cores)
    post = idata.posterior
    post = post.assign(draw_collapsed(post, d, resolved, collapse, seed))
    import arviz as az

    return az.InferenceData(posterior=post, sample_stats=idata.sample_stats), info


def cached_compiled(cache: WorkerCache, key: tuple, ref: CellReference, sig: tuple, force_compile: bool, *, swap, compile):
    """The cell's compiled model with this replication's data, for the simulation study and pre-registration alike:
    ``swap(compiled)`` into the model compiled for the cell when the replication's signature matches it, else
    ``compile()`` -> (compiled, seconds), kept for the cell when its signature is the cell's reference one
    ("compile") and not kept otherwise ("fallback"). Returns (compiled, info)."""
    entry = cache.compiled.get(key)
    info = {"compile_s": 0.0}
    if not force_compile and entry is not None and entry.signature == sig:
        compiled, info["compile"] = swap(entry.compiled), "swap"
    else:
        compiled, info["compile_s"] = compile()
        info["compile"] = "compile" if sig == ref.signature else "fallback"
        if sig == ref.signature and not force_compile:
            cache.compiled[key] = CompiledEntry(compiled, sig, info["compile_s"])
    cache.counts[info["compile"]] += 1
    return compiled, info


def fit_hierarchical_cached(
    design: SimDesign,
    cell: Cell,
    adata,
    groups,
    seed: int,
    study=None,
    cache: WorkerCache = CACHE,
    force_compile: bool = False,
    cores: int | None = None,
):
    """Sample the hierarchical model for one replication, reusing the cell's compiled model (the PyMC graph).
    The graph stays the grid's route: on the paper's design (16 groups, every draw at the maximum tree depth)
    the collapsed density of :func:`sample_density` cost about 3x the CPU per replication (23 against 7 CPU-s,
    measured this session), though with 12x the group effects' ESS, so it would make the grid slower.

    Returns (HierarchicalFit, info) where info has compile ('compile', 'swap' or 'fallback'),
    compile_s, sampling_s."""
    import arviz as az
    import nutpie

    from ..models.hierarchical import HierarchicalFit, diagnose, formulas

    ref = cell_reference(design, cell, study, cache)
    d = recentred_design(adata, groups, ref.shift)
    key = (design.design_hash(), cell.index)
    cores = cores or int(os.environ.get("HETREPORT_SIM_CORES", "1"))
    compiled, info = cached_compiled(
        cache,
        key,
        ref,
        _signature(d, groups, adata),
        force_compile,
        swap=lambda c: swap_data(c, d),
        compile=lambda: compile_model(d, ref, adata, groups),
    )
    idata, info["sampling_s"] = sample_compiled(compiled, design.sampler, seed, cores)
    post = idata.posterior
    post = post[[v for v in HIER_VARS + ["beta"] if v in post]]
    idata = az.InferenceData(posterior=post, sample_stats=idata.sample_stats)
    bambi_f, brms_f = formulas(adata, groups, "all", True)
    fit = HierarchicalFit(
        idata=idata,
        terms=tuple(d.term_names),
        formula_bambi=bambi_f,
        formula_brms=brms_f,
        priors={k: str(v) for k, v in ref.resolved.items() if not k.startswith("_")},
        correlated=True,
        backend=f"nutpie {nutpie.__version__}",
        timings=info,
    )
    object.__setattr__(fit, "diagnostics", diagnose(fit))
    return fit, info


def hierarchical_fitted(fit, adata, groups) -> np.ndarray:
    post = fit.idata.posterior
    a = post["group_intercept"].mean(("chain", "draw")).to_numpy()
    th = post["group_effect"].mean(("chain", "draw")).to_numpy()
    mu = a[groups.index] + th[groups.index] * adata.t
    if "beta" in post and adata.control_matrix.shape[1]:
        beta = post["beta"].mean(("chain", "draw")).to_numpy()
        mu = mu + (adata.control_matrix - adata.control_matrix.mean(axis=0)) @ beta
    return mu


# --------------------------------------------------------------------------- one replication


def run_replication(design: SimDesign, cell: Cell, rep: int, study=None, cache: WorkerCache = CACHE) -> list[dict]:
    """Every approach on replication ``rep`` of ``cell``: one row per approach (errors recorded, never raised)."""
    unit_seed, coef_seed, sampler_seed = seeds(design, cell, rep)
    base = {
        "cell": cell.id,
        "cell_index": cell.index,
        "n": cell.n,
        "sd": cell.sd,
        "rep": rep,
        "unit_seed": unit_seed,
        "coef_seed": coef_seed,
        "sampler_seed": sampler_seed,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "design_hash": design.design_hash()[:16],
    }
    approaches = [a for a in APPROACHES if a in design.approaches]
    try:
        sim = simulate(design, cell, rep, study)
        adata, groups = analysis_inputs(design, sim)
        truth = group_truth(adata, groups)
        mu_true = sim.frame["mu"].to_numpy(dtype=float)
    except Exception as exc:  # the data could not be made: every approach fails
        return [{**base, "approach": a, "status": "error", "error": _err(exc)} for a in approaches]
    tables, extra = {}, {}
    errors: dict[str, str] = {}
    for a in approaches:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if a == "hierarchical":
                    from ..models.hierarchical import group_summary

                    fit, info = fit_hierarchical_cached(design, cell, adata, groups, sampler_seed, study, cache)
                    table = group_summary(fit, groups)
                    fitted = hierarchical_fitted(fit, adata, groups)
                    dg = fit.diagnostics
                    q = dg["quantities"].get("group_effect", {})
                    info = {
                        **info,
                        "fit_s": info["compile_s"] + info["sampling_s"],
                        "divergences": dg["divergences"],
                        "treedepth_hits": dg["max_treedepth_hits"],
                        "max_rhat": q.get("max_rhat"),
                        "min_ess_bulk": q.get("min_ess_bulk"),
                    }
                else:
                    table, fitted, info = fit_approach(a, design, adata, groups, sampler_seed)
            tables[a] = table
            extra[a] = {**info, "rmse_y": rmse(fitted, adata.y), "rmse_mu": rmse(fitted, mu_true)}
        except Exception as exc:
            errors[a] = _err(exc)
    rows = []
    mask = common_groups(tables) if tables else None
    for a in approaches:
        if a in errors:
            rows.append({**base, "approach": a, "status": "error", "error": errors[a]})
            continue
        m = group_metrics(tables[a], truth, mask)
        rows.append({**base, "approach": a, "status": "ok", "error": "", "n_groups": int(groups.n_groups), **m, **extra[a]})
    return rows


def _err(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {str(exc)[:400]}{where}"


def run_task(design: SimDesign, cell_index: int, rep: int) -> list[dict]:
    """The unit of work an executor runs: replication ``rep`` of the cell at ``cell_index``."""
    study = load_study(design)
    grid = cells(design, study.n if study is not None else None)
    t0 = time.perf_counter()
    rows = run_replication(design, grid[cell_index], rep, study)
    for r in rows:
        r["task_s"] = time.perf_counter() - t0
    return rows
