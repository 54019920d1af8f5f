"""What the planned design can detect: the simulation engine run on the design.

A *cell* is (analysis, planned N, assumed heterogeneity SD); every cell is replicated
``design.replications`` times. One replication simulates a data set of the planned design
(:func:`hetreport.prereg.plan.simulate_frame`), puts it through hetreport's own data path,
and fits OLS with full interactions (the spec's SE type) and the hierarchical model.

The Gaussian hierarchical model is sampled as ``hetreport fit`` samples it: the collapsed model through
the log density compiled once per machine (:func:`hetreport.simstudy.engine.sample_density`,
``hetreport.models.fastlogp``), so nothing is compiled per cell or worker; its design is built over
the *full crossing* of the planned levels, so a group that happens to be empty in one replication
(common at N = 1,200 with 100 groups) keeps its place; an empty group's effect is then estimated from
pooling alone, as it would be for a group with one arm. (Priors the compiled density does not know, and
``graph=True``, take the PyMC graph, compiled **once per cell and worker** with the simulation engine's
``compile_model`` / ``swap_data`` (nutpie's ``with_data``) / ``sample_compiled``.) On the Tomz-Weeks
design the density route samples a replication in about 0.6x the CPU of the swapped graph, with 4x
fewer leapfrog steps per draw, and skips the graph's compile (benchmarks/README.md). As in the engine, priors and the
centring constant are fixed per cell (from replication 0), so results depend on (design, cell,
replication) only, never on the worker or the order.

**Family bernoulli** (a 0/1 outcome): the same scheme with hetreport's bernoulli model
(``build_glm_model``, the binomial likelihood over every group x arm cell of the full crossing, or
one row per unit with controls), its data held in named shared variables that nutpie's
``with_data`` swaps per replication (:func:`fit_bernoulli_cell`). Group effects are compared with
the truth on the probability scale (:func:`response_draws`, hetreport's response-scale effects);
OLS is the linear probability model; sigma_theta stays on the log-odds scale (``link_scale``).

Per replication and group: both approaches' estimate and 95% interval against the truth.

**Detecting heterogeneity, calibrated.** Every (analysis, N) is also simulated with *no*
heterogeneity (SD 0, the null cell; added when the design does not list 0). Heterogeneity is
**detected**

- by the hierarchical model when the posterior mean of the SD of the group effects (over the
  groups that occur, per draw: the report's "how much it varies" number) exceeds the 95th
  percentile of the same statistic in the null cell: a 5% false-positive rate by construction.
  (An uncalibrated rule such as "P(SD > x) >= 0.95" fires even without heterogeneity: with
  small groups the posterior of that SD is held up by the priors; measured 4 of 4 null
  replications on the Tomz-Weeks design.)
- by OLS when a Wald test that every group with at least ``min_arm`` units in each arm has the
  same effect (chi-squared, using the groups' robust SEs as independent, exact without
  controls) rejects at 5%; its false-positive rate is measured in the null cell and reported
  next to it, since robust SEs of small groups can make it anti-conservative.

Runs on local processes (spawned, one replication per process at a time) or on a Dask cluster, through
:mod:`hetreport.executor`.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .. import methods as registry
from ..models.priors import ResolvedPriors
from ..simstudy.engine import WorkerCache
from .plan import Plan, derived_seed, simulate_frame


@dataclass(frozen=True)
class Cell:
    index: int
    analysis: str
    n: int
    sd: float
    #: a null cell added to calibrate detection (the design did not list SD 0)
    calibration: bool = False

    @property
    def id(self) -> str:
        return f"{self.analysis}-n{self.n}-sd{self.sd:g}"


def cells(plan: Plan) -> list[Cell]:
    """Every (analysis, heterogeneity SD, N); the null SD 0 first, added for calibration if not listed."""
    out = []
    sds = [(float(s), False) for s in plan.sds]
    if 0.0 not in [s for s, _ in sds]:
        sds = [(0.0, True)] + sds
    for a in plan.simulated:
        for sd, extra in sds:
            for n in plan.sizes:
                out.append(Cell(len(out), a, int(n), sd, extra))
    return out


# --------------------------------------------------------------------------- one replication


def _analysis_inputs(plan: Plan, cell: Cell, seed: int):
    from ..data import Dataset, prepare_analysis
    from ..groups import build_groups
    from ..spec import parse_spec

    spec = plan.spec
    a = spec.analysis(cell.analysis)
    frame, truth = simulate_frame(plan, cell.n, cell.sd, seed, analysis=cell.analysis, columns=[*a.modifiers, *a.controls])
    raw = {
        "title": "simulated",
        "data": {"path": "simulated.csv"},
        "outcome": spec.outcome,
        "treatment": spec.treatment,
        "treated_value": spec.treated_value,
        "family": spec.family,
        # labels.units may name the outcomes of other analyses, which this one-analysis spec does not have
        "labels": {**spec.labels.model_dump(mode="json"), "units": {k: v for k, v in spec.labels.units.items() if k == spec.outcome_of(a)}},
        "analyses": [a.model_dump(mode="json")],
        "ols": spec.ols.model_dump(mode="json"),
        "report": {"min_arm": plan.min_arm},
    }
    sspec = parse_spec(raw, source="simulated")
    ds = Dataset(
        frame=frame,
        path=Path("simulated.csv"),
        sha256="",
        format="csv",
        n_read=len(frame),
        n_filtered_out=0,
        n_filter_missing=0,
        variable_labels={},
        value_labels={},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(sspec, ds, sspec.analyses[0])
        groups = build_groups(adata, plan.min_arm)
    return adata, groups, truth


def full_groups(plan: Plan, cell: Cell, adata):
    """Groups over the full crossing of the planned levels (empty groups included): a fixed graph shape."""
    from ..data import code_key
    from ..groups import Groups

    ap = plan.analysis(cell.analysis)
    table = ap.groups[["group", *ap.modifiers, "group_label"]].copy()
    pos = {g: i for i, g in enumerate(table["group"])}
    from ..groups import group_key

    keys = [group_key(ap.modifiers, row) for row in adata.frame[list(ap.modifiers)].itertuples(index=False, name=None)]
    index = np.array([pos[k] for k in keys])
    n = np.bincount(index, minlength=len(table))
    nt = np.bincount(index, weights=adata.t, minlength=len(table)).astype(int)
    table["n"], table["n_treated"], table["n_control"] = n, nt, n - nt
    table.attrs["level_positions"] = {m: {code_key(c): i for i, c in enumerate(plan.variables[m].codes)} for m in ap.modifiers}
    return Groups(cell.analysis, tuple(ap.modifiers), table, index, len(table), plan.min_arm)


#: per process: cell references and compiled models (the simulation engine's cache, keyed by (spec hash, cell))
CACHE = WorkerCache()


@dataclass(frozen=True)
class PlannedScale:
    """What the prior defaults (``resolve_priors``, ``default_location``) read of the data, taken from the design
    before any data exist: the outcome values whose mean and SD the defaults scale to, the family, the number of
    units and trials, and an empty control matrix (the control priors are resolved from replication 0)."""

    y: np.ndarray
    family: str
    n: int
    trials: np.ndarray | None = None
    control_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def _planned_scale(plan: Plan, family: str = "gaussian") -> PlannedScale:
    """The data ``resolve_priors`` sees in a design: for gaussian two values with the design's outcome mean and
    SD; for bernoulli the planned share of 1s, ``base_rate + treatment_probability * average_effect`` (the mean
    of y that the defaults' ``logit(mean y)`` will see)."""
    m, s = plan.outcome_mean, plan.outcome_sd
    if family == "bernoulli":
        return PlannedScale(y=np.array([m]), family="bernoulli", n=1, control_matrix=np.zeros((1, 0)))
    return PlannedScale(y=np.array([m - s, m + s]), family="gaussian", n=2, control_matrix=np.zeros((2, 0)))


def resolved_priors(plan: Plan, analysis: str | None = None) -> ResolvedPriors:
    """The priors an analysis will use (the spec's, with the analysis's own written over them), defaults
    scaled to the design: the planned outcome SD (gaussian) or on the log-odds scale with the intercept
    centred at the logit of the planned share of 1s (bernoulli). Without ``analysis``: the spec's own."""
    from ..models.hierarchical import resolve_priors

    spec = plan.spec
    if analysis is None:
        return resolve_priors(spec.priors, _planned_scale(plan, spec.family))
    return resolve_priors(spec.priors_of(spec.analysis(analysis)), _planned_scale(plan, plan.analysis(analysis).family))


def _reference(plan: Plan, cell: Cell, key: tuple, cache: WorkerCache):
    from ..models.hierarchical import _control_prior_sds, build_design
    from ..simstudy.engine import CellReference, _signature

    if key not in cache.references:
        adata0, _, _ = _analysis_inputs(plan, cell, derived_seed(plan.seed, 1, cell.index, 0))
        g0 = full_groups(plan, cell, adata0)
        resolved = resolved_priors(plan, cell.analysis)
        d0 = build_design(adata0, g0, plan.analysis(cell.analysis).mode)
        cache.references[key] = CellReference(
            resolved, _control_prior_sds(resolved, adata0), float(adata0.y.mean()), tuple(g0.keys), _signature(d0, g0, adata0)
        )
    return cache.references[key]


def fit_hierarchical_cell(
    plan: Plan, cell: Cell, adata, groups, seed: int, cache: WorkerCache | None = None, force_compile: bool = False, graph: bool = False
):
    """Sample the hierarchical model of one replication: through the log density compiled once per machine when the
    priors allow (the route ``hetreport fit`` takes; nothing compiled per cell), else (or with ``graph=True``) the
    PyMC graph, reusing the cell's compiled model. Returns (posterior, info)."""
    from ..simstudy.engine import (
        _signature,
        cached_compiled,
        compile_model,
        density_route,
        recentred_design,
        sample_compiled,
        sample_density,
        swap_data,
    )

    cache = cache or CACHE
    key = (plan.spec.spec_hash(), cell.index)
    ref = _reference(plan, cell, key, cache)
    d = recentred_design(adata, groups, ref.shift, plan.analysis(cell.analysis).mode)
    cores = int(os.environ.get("HETREPORT_SIM_CORES", "1"))
    collapse = None if graph else density_route(d, ref.resolved)
    if collapse is not None:
        cache.counts["density"] += 1
        return sample_density(d, collapse, ref.resolved, ref.control_sds, adata, groups, plan.spec.design.sampler, seed, cores)
    compiled, info = cached_compiled(
        cache,
        key,
        ref,
        _signature(d, groups, adata),
        force_compile,
        swap=lambda entry: swap_data(entry, d),
        compile=lambda: compile_model(d, ref, adata, groups),
    )
    idata, info["sampling_s"] = sample_compiled(compiled, plan.spec.design.sampler, seed, cores)
    return idata, info


# --------------------------------------------------------------------------- bernoulli cells

#: the bernoulli likelihood's data, as pytensor shared variables (swapped per replication with nutpie's with_data)
BERNOULLI_DATA = ("bern_group", "bern_t", "bern_x", "bern_y", "bern_trials")
BERNOULLI_VARS = ["Intercept", "b_treat", "sd_intercept", "sd_slope", "rho", "group_slope", "group_intercept", "crossing_slope"]


def bernoulli_rows(adata, groups) -> dict[str, np.ndarray]:
    """The rows the bernoulli likelihood sums over, with a shape fixed per cell: without controls every
    group x arm cell of the full crossing (successes and trials; an empty cell has 0 trials and adds
    nothing), the aggregated binomial model hetreport fits; with controls one row per unit."""
    X = adata.control_matrix
    G, t = groups.n_groups, adata.t.astype(int)
    if X.shape[1] == 0:
        cell = groups.index.astype(int) * 2 + t
        return {
            "bern_group": np.repeat(np.arange(G), 2).astype(np.int64),
            "bern_t": np.tile([0.0, 1.0], G),
            "bern_x": np.zeros((2 * G, 0)),
            "bern_y": np.bincount(cell, weights=adata.y, minlength=2 * G).astype(float),
            "bern_trials": np.bincount(cell, minlength=2 * G).astype(float),
        }
    return {
        "bern_group": groups.index.astype(np.int64),
        "bern_t": t.astype(float),
        "bern_x": X - X.mean(axis=0),
        "bern_y": adata.y.astype(float),
        "bern_trials": np.ones(adata.n),
    }


def build_bernoulli_model(d, rows: dict, resolved: dict, control_sds, control_names, group_keys):
    """hetreport's correlated bernoulli model (``build_glm_model``, binomial likelihood on ``rows``) with the
    data held in named shared variables, so that a compiled model can take another replication's data."""
    import pytensor

    from ..models.families import UnitTable
    from ..models.hierarchical import build_glm_model

    sh = {k: pytensor.shared(v, name=k) for k, v in rows.items()}
    R = len(rows["bern_y"])
    ut = UnitTable(
        sh["bern_group"],
        sh["bern_t"],
        sh["bern_x"],
        sh["bern_y"],
        sh["bern_trials"],
        np.ones(R),
        rows["bern_x"].shape[1] == 0,
        R,
        np.zeros(rows["bern_x"].shape[1]),
    )
    return build_glm_model(d, ut, "bernoulli", resolved, control_sds, control_names, group_keys)


def _bernoulli_signature(groups, d, adata, rows) -> tuple:
    return (tuple(groups.keys), tuple(d.term_names), tuple(adata.control_columns), len(rows["bern_y"]))


def fit_bernoulli_cell(plan: Plan, cell: Cell, adata, groups, seed: int, cache: WorkerCache | None = None, force_compile: bool = False):
    """Sample the bernoulli hierarchical model of one replication, compiled once per cell and worker: the
    first replication compiles it (nutpie), later ones swap their successes and trials in (``with_data``);
    a replication whose rows differ in number (an analysis filter) compiles afresh (``fallback``). Priors
    are fixed per cell (resolved from the design; control prior SDs from replication 0). Returns
    (posterior with the link-scale ``group_slope`` and the response-scale ``group_effect``, info)."""
    import nutpie

    from ..models.hierarchical import _control_prior_sds, build_design
    from ..simstudy.engine import CellReference, cached_compiled, sample_compiled

    cache = cache or CACHE
    key = (plan.spec.spec_hash(), cell.index)
    mode = plan.analysis(cell.analysis).mode
    if key not in cache.references:
        adata0, _, _ = _analysis_inputs(plan, cell, derived_seed(plan.seed, 1, cell.index, 0))
        g0 = full_groups(plan, cell, adata0)
        resolved = resolved_priors(plan, cell.analysis)
        d0 = build_design(adata0, g0, mode)
        cache.references[key] = CellReference(
            resolved,
            _control_prior_sds(resolved, adata0),
            0.0,
            tuple(g0.keys),
            _bernoulli_signature(g0, d0, adata0, bernoulli_rows(adata0, g0)),
        )
    ref = cache.references[key]
    d = build_design(adata, groups, mode)
    rows = bernoulli_rows(adata, groups)

    def compile_():
        model = build_bernoulli_model(d, rows, ref.resolved, ref.control_sds, adata.control_columns, groups.keys)
        t0 = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, var_names=BERNOULLI_VARS + (["beta"] if adata.control_matrix.shape[1] else []))
        return compiled, time.perf_counter() - t0

    compiled, info = cached_compiled(
        cache,
        key,
        ref,
        _bernoulli_signature(groups, d, adata, rows),
        force_compile,
        # bern_x is a shared variable only with controls
        swap=lambda entry: entry.with_data(**{k: v for k, v in rows.items() if k in entry.shared_data}),
        compile=compile_,
    )
    idata, info["sampling_s"] = sample_compiled(compiled, plan.spec.design.sampler, seed, int(os.environ.get("HETREPORT_SIM_CORES", "1")))
    post = idata.posterior
    ge = response_draws(post, adata, groups)
    C, D = post.sizes["chain"], post.sizes["draw"]
    post = post.assign(group_effect=(("chain", "draw", "group"), ge.reshape(C, D, -1)))
    import arviz as az

    return az.InferenceData(posterior=post, sample_stats=idata.sample_stats), info


def response_draws(post, adata, groups) -> np.ndarray:
    """Per draw (chains x draws, groups): each group's effect on the probability scale, the mean over its
    units of P(y = 1 | treated) - P(y = 1 | control) at their own covariates (hetreport's
    ``families.response_effects``); a group without units in this replication, at the average covariates."""
    from scipy.special import expit

    from ..models.families import response_effects

    C, D = post.sizes["chain"], post.sizes["draw"]

    def flat(var, last):
        return post[var].transpose("chain", "draw", last).to_numpy().reshape(C * D, -1)

    a, th = flat("group_intercept", "group"), flat("group_slope", "group")
    X = adata.control_matrix
    beta = flat("beta", "control") if ("beta" in post and X.shape[1]) else None
    Xc = X - X.mean(axis=0) if X.shape[1] else X
    delta = response_effects(a, th, beta, Xc, groups.index, groups.n_groups, "bernoulli")
    if beta is not None:
        empty = np.bincount(groups.index, minlength=groups.n_groups) == 0
        delta[:, empty] = expit(a[:, empty] + th[:, empty]) - expit(a[:, empty])
    return delta


def _wald(est: np.ndarray, se: np.ndarray) -> float:
    ok = np.isfinite(est) & np.isfinite(se) & (se > 0)
    if ok.sum() < 2:
        return float("nan")
    w = 1 / se[ok] ** 2
    mean = np.sum(w * est[ok]) / w.sum()
    stat = float(np.sum(w * (est[ok] - mean) ** 2))
    return float(stats.chi2.sf(stat, ok.sum() - 1))


def run_replication(
    plan: Plan, cell: Cell, rep: int, cache: WorkerCache | None = None, force_compile: bool = False, graph: bool = False
) -> dict:
    """Both approaches on replication ``rep`` of ``cell``: a summary row and per-group rows (errors recorded, not raised).
    ``graph=True`` samples a Gaussian model through the PyMC graph instead of the compiled density (for comparisons)."""
    from ..models.ols import fit_ols_full

    family = plan.analysis(cell.analysis).family
    base = {
        "cell": cell.id,
        "cell_index": cell.index,
        "analysis": cell.analysis,
        "family": family,
        "n": cell.n,
        "sd": cell.sd,
        "rep": rep,
        "worker": f"{os.uname().nodename}:{os.getpid()}",
    }
    t0 = time.perf_counter()
    try:
        adata, groups, truth = _analysis_inputs(plan, cell, derived_seed(plan.seed, 1, cell.index, rep))
        fg = full_groups(plan, cell, adata)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ols = fit_ols_full(adata, groups, plan.spec.ols.se_type).table.set_index("group")
        seed = derived_seed(plan.seed, 3, cell.index, rep)
        if family == "bernoulli":
            idata, info = fit_bernoulli_cell(plan, cell, adata, fg, seed, cache, force_compile)
        else:
            idata, info = fit_hierarchical_cell(plan, cell, adata, fg, seed, cache, force_compile, graph)
    except Exception as exc:  # recorded: the appendix reports failed replications
        return {"summary": {**base, "status": "error", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}, "groups": []}
    post = idata.posterior
    ge = post["group_effect"].stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()
    sd_slope = post["sd_slope"].stack(sample=("chain", "draw")).transpose("sample", "term").to_numpy()
    tau = np.sqrt((sd_slope**2).sum(axis=1))
    seen = fg.table["n"].to_numpy() > 0
    sd_between = ge[:, seen].std(axis=1, ddof=1)
    sigma_theta = sd_slope[:, -1]
    keys = list(fg.keys)
    tr = truth.reindex(keys).to_numpy()
    h_est, h_lo, h_hi = ge.mean(axis=0), np.quantile(ge, 0.025, axis=0), np.quantile(ge, 0.975, axis=0)
    o = ols.reindex(keys)
    o_ok = o["estimable"].fillna(False).to_numpy(dtype=bool) & np.isfinite(o["estimate"].to_numpy(dtype=float))
    rows = []
    for g, key in enumerate(keys):
        n_g = int(fg.table["n"].iat[g])
        rows.append(
            {
                "cell_index": cell.index,
                "rep": rep,
                "group": key,
                "truth": tr[g],
                "n_g": n_g,
                "method": registry.REFERENCE,
                "estimate": h_est[g],
                "lower_95": h_lo[g],
                "upper_95": h_hi[g],
            }
        )
        if o_ok[g]:
            rows.append(
                {
                    "cell_index": cell.index,
                    "rep": rep,
                    "group": key,
                    "truth": tr[g],
                    "n_g": n_g,
                    "method": registry.BASELINE,
                    "estimate": float(o["estimate"].iat[g]),
                    "lower_95": float(o["lower_95"].iat[g]),
                    "upper_95": float(o["upper_95"].iat[g]),
                }
            )
    div = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    # the Wald test uses the groups with at least min_arm units in each arm (tiny arms' robust SEs make it anti-conservative)
    big = groups.table.set_index("group")[["n_treated", "n_control"]].min(axis=1).reindex(keys).fillna(0).to_numpy() >= plan.min_arm
    p_ols = _wald(np.where(big, o["estimate"].to_numpy(dtype=float), np.nan), o["std_error"].to_numpy(dtype=float))
    summary = {
        **base,
        "status": "ok",
        "error": "",
        "n_groups_observed": int(groups.n_groups),
        "n_ols_estimable": int(o_ok.sum()),
        "tau_mean": float(tau.mean()),
        "tau_lower": float(np.quantile(tau, 0.025)),
        "tau_upper": float(np.quantile(tau, 0.975)),
        "sd_between_mean": float(sd_between.mean()),
        "sd_between_lower": float(np.quantile(sd_between, 0.025)),
        "sd_between_upper": float(np.quantile(sd_between, 0.975)),
        "sigma_theta_mean": float(sigma_theta.mean()),
        "sigma_theta_lower": float(np.quantile(sigma_theta, 0.025)),
        "sigma_theta_upper": float(np.quantile(sigma_theta, 0.975)),
        # sigma_theta and tau are slope SDs of the model: on the link scale (log-odds for bernoulli); sd_between is on the
        # outcome's scale (probability for bernoulli), like every group effect
        "link_scale": "log-odds" if family == "bernoulli" else "outcome",
        "true_sd": float(np.std(tr[seen], ddof=1)),
        "p_ols_wald": p_ols,
        "detect_ols": bool(np.isfinite(p_ols) and p_ols < 0.05),
        "divergences": div,
        "compile": info["compile"],
        "compile_s": info["compile_s"],
        "sampling_s": info["sampling_s"],
        "wall_s": time.perf_counter() - t0,
    }
    return {"summary": summary, "groups": rows}


# --------------------------------------------------------------------------- executors


def run_task(plan: Plan, cell_index: int, rep: int) -> dict:
    """The unit of work an executor runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_replication(plan, cells(plan)[cell_index], rep)


@dataclass(frozen=True)
class SimulationResult:
    summary: pd.DataFrame  # one row per cell x replication
    groups: pd.DataFrame  # one row per cell x replication x group x method
    wall_s: float
    where: str


def run_simulation(plan: Plan, *, scheduler: str | None = None, workers: int | None = None, log=None, client=None) -> SimulationResult:
    """Every replication of every cell, on local processes or a Dask cluster."""
    say = log or (lambda m: None)
    grid = cells(plan)
    tasks = [(c.index, r) for c in grid for r in range(plan.replications)]
    results: list[dict] = []
    t0 = time.monotonic()
    done = [0]
    last = [time.monotonic()]

    def collect(res):
        results.append(res)
        done[0] += 1
        if time.monotonic() - last[0] > 15 or done[0] == len(tasks):
            last[0] = time.monotonic()
            el = time.monotonic() - t0
            say(
                f"simulation: {done[0]}/{len(tasks)} replications ({el / 60:.1f} min"
                + (f", about {el / done[0] * (len(tasks) - done[0]) / 60:.1f} min left)" if done[0] < len(tasks) else ")")
            )

    from .. import executor as runner

    if scheduler or client is not None:
        where = f"Dask scheduler {scheduler or client.scheduler.address}"
    else:
        workers = max(1, min(workers or runner.cores(), len(tasks)))
        where = runner.describe(workers=workers)
        say(f"simulation: {len(grid)} cell(s) x {plan.replications} replications on {where}")

    def failed(task, exc):
        c, r = task
        return {"summary": {"cell_index": c, "rep": r, "status": "error", "error": f"{type(exc).__name__}: {exc}"}, "groups": []}

    runner.run(
        run_task,
        tasks,
        lambda task, res: collect(res),
        payload=plan,
        workers=workers,
        scheduler=scheduler,
        client=client,
        on_error=failed,
        key=lambda task: f"hetreport-prereg-{plan.seed}-{task[0]}-{task[1]}",
        local_note="the simulation runs on local processes. Nothing was written.",
    )
    summary = pd.DataFrame([r["summary"] for r in results])
    groups = pd.DataFrame([g for r in results for g in r["groups"]])
    if len(summary) and "cell_index" in summary:
        summary = summary.sort_values(["cell_index", "rep"]).reset_index(drop=True)
    return SimulationResult(summary, groups, time.monotonic() - t0, where)


# --------------------------------------------------------------------------- summaries


def per_group(sim: SimulationResult, plan: Plan) -> pd.DataFrame:
    """Per cell, method and group: RMSE, mean 95% width and coverage over replications."""
    g = sim.groups
    if g.empty:
        return pd.DataFrame()
    g = g.assign(
        err2=(g["estimate"] - g["truth"]) ** 2,
        width=g["upper_95"] - g["lower_95"],
        covered=((g["lower_95"] <= g["truth"]) & (g["truth"] <= g["upper_95"])).astype(float),
    )
    out = (
        g.groupby(["cell_index", "method", "group"], sort=False)
        .agg(
            rmse=("err2", lambda x: float(np.sqrt(x.mean()))),
            width=("width", "mean"),
            coverage=("covered", "mean"),
            replications=("rep", "nunique"),
            mean_n=("n_g", "mean"),
        )
        .reset_index()
    )
    return out


def per_cell(sim: SimulationResult, plan: Plan) -> pd.DataFrame:
    """Per cell and method: averages over groups and replications, detection probability, failures."""
    grid = cells(plan)
    pg = per_group(sim, plan)
    rows = []
    s = sim.summary

    def ok_rows(cell):
        sc = s[(s.get("cell_index") == cell.index)] if len(s) else s
        return sc, (sc[sc["status"] == "ok"] if len(sc) else sc)

    # the hierarchical detection threshold per (analysis, N): 95th percentile of the statistic without heterogeneity
    thresholds = {}
    for c in grid:
        if c.sd == 0:
            _, ok0 = ok_rows(c)
            thresholds[(c.analysis, c.n)] = float(np.quantile(ok0["sd_between_mean"], 0.95)) if len(ok0) else float("nan")
    null_rate: dict = {}
    for c in grid:
        sc, ok = ok_rows(c)
        reps = len(ok)
        thr = thresholds.get((c.analysis, c.n), float("nan"))
        for method in (registry.BASELINE, registry.REFERENCE):
            sub = pg[(pg["cell_index"] == c.index) & (pg["method"] == method)] if len(pg) else pg
            g = sim.groups
            gg = g[(g["cell_index"] == c.index) & (g["method"] == method)] if len(g) else g
            if method == registry.REFERENCE:
                hits = ok["sd_between_mean"] > thr if reps and np.isfinite(thr) else None
            else:
                hits = ok["detect_ols"] if reps else None
            detect = float(np.mean(hits)) if hits is not None else float("nan")
            if c.sd == 0:
                null_rate[(c.analysis, c.n, method)] = detect
            rows.append(
                {
                    "cell_index": c.index,
                    "cell": c.id,
                    "analysis": c.analysis,
                    "n": c.n,
                    "sd": c.sd,
                    "method": method,
                    "replications": reps,
                    "failed": int(len(sc) - reps),
                    "rmse": float(np.sqrt(((gg["estimate"] - gg["truth"]) ** 2).mean())) if len(gg) else float("nan"),
                    "width": float((gg["upper_95"] - gg["lower_95"]).mean()) if len(gg) else float("nan"),
                    "coverage": float(((gg["lower_95"] <= gg["truth"]) & (gg["truth"] <= gg["upper_95"])).mean())
                    if len(gg)
                    else float("nan"),
                    "groups_estimated": float(sub["replications"].sum() / max(reps, 1)) if len(sub) else 0.0,
                    "detect": detect,
                    "detect_se": float(np.sqrt(detect * (1 - detect) / reps)) if reps else float("nan"),
                    "threshold": thr if method == registry.REFERENCE else float("nan"),
                    "calibration": c.calibration,
                    "divergences": float(ok["divergences"].mean()) if reps and method == registry.REFERENCE else float("nan"),
                }
            )
    out = pd.DataFrame(rows)
    if len(out):
        out["false_positive"] = [null_rate.get((r.analysis, r.n, r.method), float("nan")) for r in out.itertuples()]
    return out


__all__ = [
    "Cell",
    "SimulationResult",
    "bernoulli_rows",
    "build_bernoulli_model",
    "cells",
    "fit_bernoulli_cell",
    "fit_hierarchical_cell",
    "per_cell",
    "per_group",
    "response_draws",
    "run_replication",
    "run_simulation",
]
