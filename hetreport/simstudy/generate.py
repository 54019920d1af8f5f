"""Simulated data sets for one replication of one cell, with their true group effects.

Three sources, one result (:class:`SimData`):

- the paper's design (every modifier binary, no study spec): :func:`hetreport.simstudy.paper.simulate_study`
  itself, called with the cell's N and SD;
- categorical modifiers (level probabilities): the same fully crossed model generalised to
  levels — a coefficient for every combination of variables and of their non-reference levels;
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

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .design import Cell, SimDesign
from .paper import simulate_study


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


def _coefficients(variables: list[tuple[str, tuple]], base_effect: float, coef_mean: float, sd: float, rng) -> dict:
    """Coefficient of every combination of variables at non-reference levels.

    ``variables`` is [("treat", (1,)), (modifier, non-reference codes), ...]; keys are tuples of
    (variable, code) pairs; the treatment alone has ``base_effect``; the intercept is 0."""
    coefs: dict[tuple, float] = {(): 0.0}
    names = [v for v, _ in variables]
    levels = dict(variables)
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            for codes in itertools.product(*(levels[v] for v in combo)):
                key = tuple(zip(combo, codes))
                coefs[key] = base_effect if combo == ("treat",) else float(rng.normal(coef_mean, sd))
    return coefs


def _cell_means(coefs: dict, frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    mu = np.zeros(len(frame))
    values = {c: frame[c].to_numpy() for c in cols}
    for key, c in coefs.items():
        if not key:
            continue
        on = np.ones(len(frame), dtype=bool)
        for var, code in key:
            on &= values[var] == code
        mu += c * on
    return mu


def _truth_table(coefs: dict, modifiers: list[str], all_levels: dict[str, list]) -> pd.DataFrame:
    rows = []
    for combo in itertools.product(*(all_levels[m] for m in modifiers)):
        have = set(zip(modifiers, combo)) | {("treat", 1)}
        effect = sum(c for key, c in coefs.items() if ("treat", 1) in key and set(key) <= have)
        rows.append({**dict(zip(modifiers, combo)), "true_effect": effect})
    return pd.DataFrame(rows)


def _outcome(
    frame: pd.DataFrame,
    modifiers: list[str],
    all_levels: dict[str, list],
    design: SimDesign,
    cell: Cell,
    coef_rng,
    unit_rng,
    extra_mu: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    variables = [("treat", (1,))] + [(m, tuple(all_levels[m][1:])) for m in modifiers]
    coefs = _coefficients(variables, design.base_effect, design.coefficient_mean, cell.sd, coef_rng)
    mu = _cell_means(coefs, frame, ["treat", *modifiers])
    if extra_mu is not None:
        mu = mu + extra_mu
    frame = frame.assign(y=mu + unit_rng.normal(0, design.outcome_sd, len(frame)), mu=mu)
    truth = _truth_table(coefs, modifiers, all_levels)
    frame = frame.merge(truth, on=modifiers, how="left")
    return frame, truth


# --------------------------------------------------------------------------- the three sources


def simulate(design: SimDesign, cell: Cell, rep: int, study=None) -> SimData:
    """The data of replication ``rep`` of ``cell`` (``study``: a :class:`StudyRows` when the design reuses a study)."""
    unit_seed, coef_seed, _ = seeds(design, cell, rep)
    p_treat = design.treatment_probability
    if study is not None:
        return _from_study(design, cell, study, unit_seed, coef_seed)
    mods = design.modifier_list
    names = [m.name for m in mods]
    if all(m.binary for m in mods):
        sim = simulate_study(
            n=cell.n,
            sd=cell.sd,
            probs=tuple(m.probability for m in mods),
            base_effect=design.base_effect,
            coef_mean=design.coefficient_mean,
            outcome_sd=design.outcome_sd,
            p_treat=0.5 if p_treat is None else p_treat,
            seed=unit_seed,
            coef_seed=coef_seed,
        )
        frame = sim.data.rename(columns={f"m{k + 1}": m for k, m in enumerate(names)})
        truth = sim.truth.rename(columns={f"m{k + 1}": m for k, m in enumerate(names)})
        # the true mean of each unit's outcome, from the same coefficients (keys are variable names, all at 1)
        frame["mu"] = _cell_means(
            {tuple((v, 1) for v in key): c for key, c in sim.coefficients.items()},
            sim.data,
            ["treat", *[f"m{k + 1}" for k in range(len(names))]],
        )
        return SimData(frame, tuple(names), (), (), truth, unit_seed, coef_seed)
    rng = np.random.default_rng([unit_seed, 1])
    frame = pd.DataFrame({"treat": rng.binomial(1, 0.5 if p_treat is None else p_treat, cell.n)})
    all_levels = {}
    for m in mods:
        codes = [k for k, _ in m.level_probs] if not m.binary else [0, 1]
        probs = np.array([p for _, p in m.level_probs])
        frame[m.name] = (
            np.asarray(codes, dtype=object)[rng.choice(len(codes), size=cell.n, p=probs / probs.sum())]
            if not m.binary
            else rng.binomial(1, m.probability, cell.n)
        )
        all_levels[m.name] = codes
    frame, truth = _outcome(frame, names, all_levels, design, cell, np.random.default_rng(coef_seed), rng)
    return SimData(frame[["y", "treat", *names, "true_effect", "mu"]], tuple(names), (), (), truth, unit_seed, coef_seed)


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
    frame.insert(0, "treat", rng.binomial(1, p, cell.n))
    coef_rng = np.random.default_rng(coef_seed)
    extra = None
    X = study.control_matrix
    if X.shape[1] and design.study.control_effect_sd > 0:
        sd = X.std(axis=0)
        sd[sd == 0] = 1.0
        gamma = np.random.default_rng([coef_seed, 7]).normal(0, design.study.control_effect_sd, X.shape[1]) / sd
        extra = X[rows] @ gamma
    frame, truth = _outcome(frame, list(study.modifiers), study.levels, design, cell, coef_rng, rng, extra)
    cols = ["y", "treat", *study.modifiers, *study.controls, "true_effect", "mu"]
    return SimData(frame[cols], study.modifiers, study.controls, study.categorical, truth, unit_seed, coef_seed)
