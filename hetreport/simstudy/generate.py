"""Simulated data sets for one replication of one cell, with their true group effects.

Two sources, one result (:class:`SimData`), both drawn with the shared generator of
:mod:`hetreport.simstudy.dgp` (which pre-registration's ``simulate_frame`` uses too):

- modifiers given by the design (binary with a probability, or categorical with level
  probabilities): :func:`simulate_levels`, the seed paper's fully crossed model generalised to
  levels — a coefficient for every combination of variables and of their non-reference levels
  (:func:`hetreport.simstudy.paper.simulate_study` is this with every modifier binary);
- a study spec (``study:``): rows of the study's modifiers and controls resampled with
  replacement (so their joint frequencies are the observed ones), a new treatment, and the
  same fully crossed outcome model plus the controls' effects.

A group's true effect is the treatment coefficient plus every treatment-interaction
coefficient whose modifier levels the group has. The true *mean* of every unit's outcome
is kept too (``mu``), for the RMSE of predicted outcomes against the truth.

Seeds are derived from (seed, cell, replication) only, so a replication gives the same data
wherever and in whatever order it runs. With ``coefficients: redraw`` replication r of every
cell draws the same standard-normal coefficient deviates (common random numbers across cells);
with ``fixed`` every replication of every cell shares one set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .design import Cell, SimDesign
from .dgp import TREAT, cell_means, crossed_coefficients, draw_binary, draw_levels, gaussian_outcome, truth_table


def derived_seed(*parts: int) -> int:
    """A 32-bit seed from integers (stable across processes and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@dataclass(frozen=True)
class SimData:
    frame: pd.DataFrame  # y, treat, <modifiers>, [controls], true_effect, mu
    modifiers: tuple[str, ...]
    controls: tuple[str, ...]
    categorical: tuple[str, ...]  # controls entered as dummies
    truth: pd.DataFrame  # one row per possible group: <modifiers (codes)>, true_effect
    unit_seed: int
    coef_seed: int


def seeds(design: SimDesign, cell: Cell, rep: int) -> tuple[int, int, int]:
    """(unit seed, coefficient seed, sampler seed) of one replication."""
    unit = derived_seed(design.seed, 1, cell.n_index, cell.sd_index, rep)
    coef = derived_seed(design.seed, 2, rep) if design.coefficients == "redraw" else derived_seed(design.seed, 2)
    sampler = derived_seed(design.seed, 3, design.sampler.seed, cell.n_index, cell.sd_index, rep)
    return unit, coef, sampler


# --------------------------------------------------------------------------- the fully crossed model over levels


def _outcome(
    frame: pd.DataFrame,
    modifiers: list[str],
    all_levels: dict[str, list],
    base_effect: float,
    coef_mean: float,
    sd: float,
    outcome_sd: float,
    coef_rng,
    unit_rng,
    extra_mu: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The fully crossed outcome model on ``frame`` (treat and the modifiers' codes): y, mu and each unit's true effect."""
    variables = [(TREAT, (1,))] + [(m, tuple(all_levels[m][1:])) for m in modifiers]
    coefs = crossed_coefficients(variables, base_effect, coef_mean, sd, coef_rng)
    mu = cell_means(coefs, frame)
    if extra_mu is not None:
        mu = mu + extra_mu
    frame = frame.assign(y=gaussian_outcome(mu, outcome_sd, unit_rng), mu=mu)
    truth = truth_table(coefs, modifiers, all_levels)
    frame = frame.merge(truth, on=modifiers, how="left")
    return frame, truth, coefs


def simulate_levels(
    n: int,
    modifiers: list[tuple[str, float | tuple[list, list]]],
    *,
    sd: float,
    base_effect: float,
    coef_mean: float,
    outcome_sd: float,
    p_treat: float,
    unit_seed: int,
    coef_seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Units with a treatment and modifiers drawn independently, and the fully crossed outcome.

    ``modifiers`` is [(name, P(1))] for a 0/1 modifier or [(name, (codes, shares))] for a categorical
    one (the first code is the reference). Units draw from ``[unit_seed, 1]`` (the treatment, then
    each modifier in order, then the outcome's noise), coefficients from ``coef_seed``. Returns
    (frame with y, treat, the modifiers, true_effect and mu; the truth table; the coefficients)."""
    rng = np.random.default_rng([unit_seed, 1])
    frame = pd.DataFrame({TREAT: draw_binary(rng, p_treat, n)})
    all_levels = {}
    for name, spec in modifiers:
        if isinstance(spec, tuple):
            codes, shares = spec
            frame[name] = draw_levels(rng, codes, shares, n)
            all_levels[name] = list(codes)
        else:
            frame[name] = draw_binary(rng, spec, n)
            all_levels[name] = [0, 1]
    names = [m for m, _ in modifiers]
    frame, truth, coefs = _outcome(frame, names, all_levels, base_effect, coef_mean, sd, outcome_sd, np.random.default_rng(coef_seed), rng)
    return frame[["y", TREAT, *names, "true_effect", "mu"]], truth, coefs


# --------------------------------------------------------------------------- the sources


def simulate(design: SimDesign, cell: Cell, rep: int, study=None) -> SimData:
    """The data of replication ``rep`` of ``cell`` (``study``: a :class:`StudyRows` when the design reuses a study)."""
    unit_seed, coef_seed, _ = seeds(design, cell, rep)
    p_treat = design.treatment_probability
    if study is not None:
        return _from_study(design, cell, study, unit_seed, coef_seed)
    mods = design.modifier_list
    names = [m.name for m in mods]
    levels = [(m.name, m.probability if m.binary else ([k for k, _ in m.level_probs], [p for _, p in m.level_probs])) for m in mods]
    frame, truth, _ = simulate_levels(
        cell.n,
        levels,
        sd=cell.sd,
        base_effect=design.base_effect,
        coef_mean=design.coefficient_mean,
        outcome_sd=design.outcome_sd,
        p_treat=0.5 if p_treat is None else p_treat,
        unit_seed=unit_seed,
        coef_seed=coef_seed,
    )
    return SimData(frame, tuple(names), (), (), truth, unit_seed, coef_seed)


@dataclass(frozen=True)
class StudyRows:
    """A study's analysed covariate rows (modifiers as codes, controls as in the data)."""

    frame: pd.DataFrame
    modifiers: tuple[str, ...]
    levels: dict  # modifier -> level codes in the study's order (the first is the reference)
    controls: tuple[str, ...]
    categorical: tuple[str, ...]
    control_matrix: np.ndarray
    p_treat: float
    n: int
    title: str


@lru_cache(maxsize=4)
def _load_study_cached(spec_path: str, analysis: str | None) -> StudyRows:
    import warnings

    from ..data import load_data, prepare_analysis
    from ..spec import load_spec

    spec = load_spec(spec_path)
    a = spec.analysis(analysis) if analysis else spec.analyses[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, load_data(spec), a)
    mods = adata.modifier_names
    keep = list(mods) + [c for c in adata.controls if c in adata.frame.columns]
    frame = adata.frame[keep].reset_index(drop=True)
    used_controls = tuple(c for c in adata.controls if any(col == c or col.startswith(f"{c}[") for col in adata.control_columns))
    categorical = tuple(c for c in used_controls if any(col.startswith(f"{c}[") for col in adata.control_columns))
    return StudyRows(
        frame=frame,
        modifiers=mods,
        levels={m.name: list(m.levels) for m in adata.modifiers},
        controls=used_controls,
        categorical=categorical,
        control_matrix=adata.control_matrix,
        p_treat=float(adata.t.mean()),
        n=adata.n,
        title=adata.title,
    )


def load_study(design: SimDesign) -> StudyRows | None:
    path = design.study_spec_path()
    if path is None:
        return None
    return _load_study_cached(str(path.resolve()), design.study.analysis)


def _from_study(design: SimDesign, cell: Cell, study: StudyRows, unit_seed: int, coef_seed: int) -> SimData:
    rng = np.random.default_rng([unit_seed, 1])
    rows = rng.integers(0, study.n, cell.n)
    frame = study.frame.iloc[rows].reset_index(drop=True)
    p = study.p_treat if design.treatment_probability is None else design.treatment_probability
    frame.insert(0, TREAT, draw_binary(rng, p, cell.n))
    coef_rng = np.random.default_rng(coef_seed)
    extra = None
    X = study.control_matrix
    if X.shape[1] and design.study.control_effect_sd > 0:
        sd = X.std(axis=0)
        sd[sd == 0] = 1.0
        gamma = np.random.default_rng([coef_seed, 7]).normal(0, design.study.control_effect_sd, X.shape[1]) / sd
        extra = X[rows] @ gamma
    frame, truth, _ = _outcome(
        frame,
        list(study.modifiers),
        study.levels,
        design.base_effect,
        design.coefficient_mean,
        cell.sd,
        design.outcome_sd,
        coef_rng,
        rng,
        extra,
    )
    cols = ["y", "treat", *study.modifiers, *study.controls, "true_effect", "mu"]
    return SimData(frame[cols], study.modifiers, study.controls, study.categorical, truth, unit_seed, coef_seed)
