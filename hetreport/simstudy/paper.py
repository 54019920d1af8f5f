"""The seed paper's section 4 design: simulated studies with known group effects (the simulation study's generator for it).

A binary treatment T (p = .5) and binary modifiers m1..mk (default p = .3, .4, .5, .6).
The outcome's mean is a fully crossed model in T and the modifiers: a coefficient for
every combination S of the variables. The treatment effect of the all-zero group is
fixed at ``base_effect`` (.5); every other coefficient is drawn from
N(``coef_mean``, ``sd``). The paper draws them with mean .5; ``coef_mean`` makes the
mean a choice. The outcome is Normal(mean, ``outcome_sd`` = .25).

A group's **true treatment effect** is the treatment coefficient plus every treatment
interaction coefficient whose modifiers the group has (all equal to 1). (The paper's own
script multiplied the modifier grid element-wise by a recycled coefficient vector, which
does not give these effects.)

The draws are :func:`hetreport.simstudy.generate.simulate_levels` with every modifier binary (the
one generator of :mod:`hetreport.simstudy.dgp` that pre-registration uses too).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .dgp import truth_table
from .generate import simulate_levels

PAPER_PROBS = (0.3, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class SimulatedStudy:
    data: pd.DataFrame  # y, treat, m1..mk, true_effect (each unit's group effect)
    truth: pd.DataFrame  # one row per modifier combination: m1..mk, true_effect
    coefficients: dict[tuple[str, ...], float]


def true_group_effects(coefs: dict[tuple[str, ...], float], modifiers: list[str]) -> pd.DataFrame:
    """Every group's true effect from coefficients keyed by the variables they multiply."""
    levels = {tuple((v, 1) for v in key): c for key, c in coefs.items()}
    return truth_table(levels, list(modifiers), {m: [0, 1] for m in modifiers})


def simulate_study(
    n: int = 2500,
    sd: float = 0.25,
    probs=PAPER_PROBS,
    base_effect: float = 0.5,
    coef_mean: float = 0.5,
    outcome_sd: float = 0.25,
    p_treat: float = 0.5,
    seed: int = 0,
    coef_seed: int | None = None,
) -> SimulatedStudy:
    """One simulated data set. ``coef_seed`` fixes the coefficients (the truth) separately
    from the sampling of units, so replications of one design share a truth."""
    modifiers = [f"m{k + 1}" for k in range(len(probs))]
    frame, truth, coefs = simulate_levels(
        n,
        list(zip(modifiers, probs)),
        sd=sd,
        base_effect=base_effect,
        coef_mean=coef_mean,
        outcome_sd=outcome_sd,
        p_treat=p_treat,
        unit_seed=seed,
        coef_seed=seed if coef_seed is None else coef_seed,
    )
    # coefficients keyed by the variables they multiply (every level here is 1)
    named = {tuple(v for v, _ in key): c for key, c in coefs.items()}
    return SimulatedStudy(data=frame[["y", "treat", *modifiers, "true_effect"]], truth=truth, coefficients=named)
