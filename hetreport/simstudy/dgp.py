"""The one data-generating process behind every simulated study hetreport draws.

The simulation study (:func:`hetreport.simstudy.generate.simulate`, and the paper's design in
:func:`hetreport.simstudy.paper.simulate_study`) and pre-registration
(:func:`hetreport.prereg.plan.simulate_frame`) draw their data from these pieces:

- covariates: :func:`draw_binary` (a 0/1 variable) and :func:`draw_levels` (a categorical variable
  with level shares);
- the outcome's mean is a sum of **coefficients**, each on an indicator of a combination of
  variable levels: a dict whose keys are tuples of ``(variable, code)`` pairs (``()`` is the
  intercept) and whose values are the coefficients. Two ways of drawing them:
  :func:`crossed_coefficients` (the seed paper's fully crossed model: one coefficient for every
  combination of variables at their non-reference levels) and :func:`term_coefficients`
  (pre-registration's: one treatment deviation for every level of every random-effect term,
  centred on the planned population);
- :func:`cell_means`: every unit's true mean from the coefficients;
- :func:`group_effects` / :func:`truth_table`: every group's true treatment effect, the sum of the
  coefficients that involve the treatment and whose other levels the group has;
- :func:`gaussian_outcome` and :func:`bernoulli_outcome`: the outcome per family.

The treatment enters the keys as ``(TREAT, 1)``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

#: the treatment's name in coefficient keys (and in the simulation study's frames)
TREAT = "treat"


# --------------------------------------------------------------------------- covariates


def draw_binary(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    """``n`` draws of a 0/1 variable with P(1) = ``p``."""
    return rng.binomial(1, p, n)


def draw_levels(rng: np.random.Generator, codes, shares, n: int) -> np.ndarray:
    """``n`` draws of a categorical variable: its ``codes`` (an object array) with probabilities
    proportional to ``shares``."""
    shares = np.asarray(shares, dtype=float)
    return np.asarray(codes, dtype=object)[rng.choice(len(codes), size=n, p=shares / shares.sum())]


# --------------------------------------------------------------------------- coefficients


def crossed_coefficients(variables: list[tuple[str, tuple]], base_effect: float, coef_mean: float, sd: float, rng) -> dict:
    """The fully crossed model: a coefficient for every combination of variables at non-reference levels.

    ``variables`` is [(TREAT, (1,)), (modifier, non-reference codes), ...]; the treatment alone has
    ``base_effect``, every other combination N(``coef_mean``, ``sd``) (drawn in the order of
    combinations of 1, 2, ... variables); the intercept is 0."""
    coefs: dict[tuple, float] = {(): 0.0}
    names = [v for v, _ in variables]
    levels = dict(variables)
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            for codes in itertools.product(*(levels[v] for v in combo)):
                key = tuple(zip(combo, codes))
                coefs[key] = base_effect if combo == (TREAT,) else float(rng.normal(coef_mean, sd))
    return coefs


def term_coefficients(
    groups: pd.DataFrame, term_list, sd: float, average: float, rng, intercept: float = 0.0, weights=None, treat: str = TREAT
) -> dict:
    """Pre-registration's model of heterogeneity: for every random-effect term (a tuple of modifiers) one
    N(0, s) treatment deviation per level combination of the term that occurs in ``groups`` (in the
    order of first appearance), s = ``sd`` / sqrt(number of terms), so the group effects spread with SD
    ``sd``. The deviations are centred on their average over ``groups`` weighted by ``weights`` (the
    planned shares), which goes into the treatment's own coefficient: the weighted average group effect
    is exactly ``average``. ``intercept`` is the control arm's mean; ``treat`` the treatment's name in the keys
    (one no modifier has)."""
    s = sd / np.sqrt(len(term_list)) if len(term_list) else 0.0
    coefs: dict[tuple, float] = {(): float(intercept), ((treat, 1),): float(average)}
    deviation = np.zeros(len(groups))
    for term in term_list:
        rows = list(groups[list(term)].itertuples(index=False, name=None))
        keys = [tuple(map(str, r)) for r in rows]
        first = dict(zip(keys, rows))
        uniq = list(first)
        dev = dict(zip(uniq, rng.normal(0.0, s, len(uniq)) if s > 0 else np.zeros(len(uniq))))
        for k in uniq:
            coefs[((treat, 1), *zip(term, first[k]))] = float(dev[k])
        deviation = deviation + np.array([dev[k] for k in keys])
    w = np.ones(len(groups)) if weights is None else np.asarray(weights, dtype=float)
    coefs[((treat, 1),)] -= float(np.sum(w * deviation) / w.sum()) if len(groups) else 0.0
    return coefs


# --------------------------------------------------------------------------- means and truth


def _matches(key: tuple, values: dict, n: int) -> np.ndarray:
    on = np.ones(n, dtype=bool)
    for var, code in key:
        on &= values[var] == code
    return on


def cell_means(coefs: dict, frame: pd.DataFrame) -> np.ndarray:
    """Every row's true mean: the intercept plus each coefficient whose levels the row has."""
    n = len(frame)
    cols = {v for key in coefs for v, _ in key}
    values = {c: frame[c].to_numpy() for c in cols}
    mu = np.full(n, float(coefs.get((), 0.0)))
    for key, c in coefs.items():
        if key:
            mu += c * _matches(key, values, n)
    return mu


def group_effects(coefs: dict, frame: pd.DataFrame, treat: str = TREAT) -> np.ndarray:
    """Each row's true treatment effect (``frame`` holds the modifiers' codes): the sum of the
    coefficients that involve the treatment (named ``treat`` in the keys) and whose other levels the row has."""
    n = len(frame)
    treat_keys = [(tuple(p for p in key if p[0] != treat), c) for key, c in coefs.items() if (treat, 1) in key]
    values = {c: frame[c].to_numpy() for c in {v for key, _ in treat_keys for v, _ in key}}
    effect = np.zeros(n)
    for key, c in treat_keys:
        effect += c * _matches(key, values, n)
    return effect


def truth_table(coefs: dict, modifiers: list[str], all_levels: dict[str, list]) -> pd.DataFrame:
    """One row per possible group (every combination of the modifiers' levels): its codes and ``true_effect``."""
    grid = pd.DataFrame([dict(zip(modifiers, combo)) for combo in itertools.product(*(all_levels[m] for m in modifiers))])
    return grid.assign(true_effect=group_effects(coefs, grid))


# --------------------------------------------------------------------------- outcome per family


def gaussian_outcome(mu: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """A continuous outcome: the true mean plus N(0, ``sd``) noise."""
    return mu + rng.normal(0.0, sd, len(mu))


def bernoulli_outcome(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 outcome (as floats) with P(1) = ``p`` per row."""
    return (rng.random(len(p)) < p).astype(float)


__all__ = [
    "TREAT",
    "bernoulli_outcome",
    "cell_means",
    "crossed_coefficients",
    "draw_binary",
    "draw_levels",
    "gaussian_outcome",
    "group_effects",
    "term_coefficients",
    "truth_table",
]
