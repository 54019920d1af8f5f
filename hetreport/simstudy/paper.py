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
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

PAPER_PROBS = (0.3, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class SimulatedStudy:
    data: pd.DataFrame  # y, treat, m1..mk, true_effect (each unit's group effect)
    truth: pd.DataFrame  # one row per modifier combination: m1..mk, true_effect
    coefficients: dict[tuple[str, ...], float]


def true_group_effects(coefs: dict[tuple[str, ...], float], modifiers: list[str]) -> pd.DataFrame:
    rows = []
    for combo in itertools.product([0, 1], repeat=len(modifiers)):
        on = {m for m, v in zip(modifiers, combo) if v == 1}
        effect = sum(c for key, c in coefs.items() if "treat" in key and set(key) - {"treat"} <= on)
        rows.append({**dict(zip(modifiers, combo)), "true_effect": effect})
    return pd.DataFrame(rows)


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
    rng_coef = np.random.default_rng(seed if coef_seed is None else coef_seed)
    rng = np.random.default_rng([seed, 1])
    modifiers = [f"m{k + 1}" for k in range(len(probs))]
    variables = ["treat", *modifiers]
    coefs: dict[tuple[str, ...], float] = {(): 0.0}
    for k in range(1, len(variables) + 1):
        for combo in itertools.combinations(variables, k):
            coefs[combo] = base_effect if combo == ("treat",) else float(rng_coef.normal(coef_mean, sd))
    data = pd.DataFrame({"treat": rng.binomial(1, p_treat, n)})
    for m, p in zip(modifiers, probs):
        data[m] = rng.binomial(1, p, n)
    mu = np.zeros(n)
    for key, c in coefs.items():
        mu += c * (data[list(key)].prod(axis=1).to_numpy() if key else 1.0)
    data["y"] = mu + rng.normal(0, outcome_sd, n)
    truth = true_group_effects(coefs, modifiers)
    data = data.merge(truth, on=modifiers, how="left")
    return SimulatedStudy(data=data[["y", "treat", *modifiers, "true_effect"]], truth=truth, coefficients=coefs)
