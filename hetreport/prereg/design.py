"""The ``design:`` block of a study spec: the planned study, before any outcome data exist.

A spec with ``design:`` in place of ``data:`` describes a study to pre-register
(``hetreport preregister SPEC --out DIR``). Everything else in the spec (modifiers, analyses,
priors, sampler, labels, report options) is written exactly as it will be used on the real
data. The block holds:

- ``n``: the planned number of units (or a list of Ns to compare);
- ``treatment_probability``: the share assigned to treatment (default 0.5);
- ``modifiers``: per modifier its level shares, ``{levels: {code: share}}`` (display labels
  come from the spec's ``labels:`` block), or ``pilot:`` to take them from a pilot file;
- ``controls``: per control a distribution, ``{mean: m, sd: s}`` or ``{levels: {code: share}}``;
- ``outcome_sd`` and ``outcome_mean``: the outcome's expected scale (gaussian); or, for a 0/1
  outcome analysed with family bernoulli, ``base_rate``: the expected share of 1s in the control arm;
- ``average_effect`` and ``heterogeneity_sd`` (one value or a list): the assumed truth, on the
  outcome's scale (for bernoulli: differences in probability between treatment and control);
- ``replications`` (default 50), ``seed``, ``min_arm`` (default ``report.min_arm``),
  ``sampler`` (the simulation's sampler, default 2 chains x 500 draws), ``analyses`` (which
  analyses the detection simulation covers; default all). Detection is calibrated against a simulation without heterogeneity (see
  ``hetreport/prereg/simulate.py``), so it needs no threshold.

Modifiers are assumed independent: a group's expected share is the product of its levels'
shares. The simulated truth is the hierarchical model's own structure: each group's effect is
``average_effect`` plus one normal deviation per term (every combination of the modifiers, or
only their crossing, as the analysis says), the term SDs equal and chosen so that the true
group effects spread around the average with SD ``heterogeneity_sd``; the deviations are centred
so that the planned population's average effect is exactly ``average_effect``.

This module only holds the pydantic models and their checks; :mod:`hetreport.prereg.plan`
resolves them against the spec (pilot file, group sizes) before anything is written.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import LocatedError

Scalar = int | float | str | bool
#: shares may be rounded: they must add up to 1 within this
SHARE_TOLERANCE = 1e-3


def _located(loc: tuple, message: str) -> ValueError:
    return LocatedError(loc, message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_shares(levels: dict, what: str) -> None:
    if len(levels) < 2:
        raise _located(("levels",), f"{what} needs at least two levels with their shares, e.g. {{0: 0.4, 1: 0.6}}")
    for k, p in levels.items():
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p <= 1):
            raise _located(
                ("levels", k),
                f"the share of level {k!r} must be a number above 0 and at most 1 (got {p!r}); drop levels that will not occur",
            )
    total = sum(levels.values())
    if abs(total - 1) > SHARE_TOLERANCE:
        raise _located(
            ("levels",),
            f"the level shares of {what} add up to {total:.4g}, not 1; give every level's expected share "
            "of the units so that they add up to 1 (e.g. {0: 0.25, 1: 0.75})",
        )


class ModifierPlan(_Strict):
    """A modifier's expected level shares, or ``pilot: true`` to read them from the pilot file."""

    levels: dict[Scalar, float] | None = None
    pilot: bool = False

    @model_validator(mode="after")
    def _one(self) -> ModifierPlan:
        if (self.levels is None) == (not self.pilot):
            raise ValueError(
                "give either 'levels' (each level's expected share, e.g. {0: 0.4, 1: 0.6}) or 'pilot: true' "
                "(shares from the design's pilot file), not both or neither"
            )
        if self.levels is not None:
            _check_shares(self.levels, "this modifier")
        return self


class ControlPlan(_Strict):
    """A control's distribution: normal (``mean``, ``sd``) or categorical (``levels``)."""

    mean: float | None = None
    sd: float | None = Field(default=None, gt=0)
    levels: dict[Scalar, float] | None = None
    pilot: bool = False

    @model_validator(mode="after")
    def _one(self) -> ControlPlan:
        kinds = [self.sd is not None or self.mean is not None, self.levels is not None, self.pilot]
        if sum(kinds) != 1:
            raise ValueError("give a control either 'mean' and 'sd' (normal), 'levels' (categorical shares) or 'pilot: true'")
        if kinds[0] and (self.sd is None or self.mean is None):
            raise ValueError("a normal control needs both 'mean' and 'sd'")
        if self.levels is not None:
            _check_shares(self.levels, "this control")
        return self


class PilotPlan(_Strict):
    """A pilot or earlier-wave data file: level shares and the outcome's scale are read from it."""

    path: str
    format: Literal["csv", "tsv", "parquet", "dta", "sav", "xlsx"] | None = None
    sheet: str | int | None = None
    derive: dict[str, str] = Field(default_factory=dict)
    filter: str | None = None


class SimulationSampler(_Strict):
    """The sampler of the detection simulation (the mock report uses the spec's own ``sampler``)."""

    draws: int = Field(default=500, ge=10, le=100_000)
    tune: int = Field(default=500, ge=10, le=100_000)
    chains: int = Field(default=2, ge=1, le=64)
    target_accept: float = Field(default=0.95, gt=0.5, lt=1.0)
    max_treedepth: int = Field(default=10, ge=3, le=15)


class PlannedDesign(_Strict):
    n: int | list[int]
    treatment_probability: float = Field(default=0.5, gt=0, lt=1)
    modifiers: dict[str, ModifierPlan] = Field(default_factory=dict)
    controls: dict[str, ControlPlan] = Field(default_factory=dict)
    pilot: PilotPlan | None = None
    outcome_sd: float | None = Field(default=None, gt=0)
    outcome_mean: float = 0.0
    #: family bernoulli: the expected share of 1s in the control arm (in place of outcome_sd and outcome_mean)
    base_rate: float | None = Field(default=None, gt=0, lt=1)
    average_effect: float
    heterogeneity_sd: float | list[float]
    replications: int = Field(default=50, ge=1, le=10_000)
    seed: int = Field(default=20240529, ge=0, lt=2**32)
    #: arms smaller than this are flagged (default: report.min_arm)
    min_arm: int | None = Field(default=None, ge=1)
    sampler: SimulationSampler = Field(default_factory=SimulationSampler)
    #: the analyses whose detection is simulated (default: every analysis)
    analyses: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> PlannedDesign:
        for i, n in enumerate(self.sizes):
            if n < 4:
                raise _located(("n",) if isinstance(self.n, int) else ("n", i), f"a planned N of {n} is too small; plan at least 4 units")
        if isinstance(self.n, list):
            if not self.n:
                raise _located(("n",), "give at least one planned N")
            for i, n in enumerate(self.n):
                if self.n.index(n) != i:
                    raise _located(("n", i), f"N = {n} is listed twice; list each planned N once")
        sds = self.heterogeneity_sds
        loc = ("heterogeneity_sd",)
        if isinstance(self.heterogeneity_sd, list):
            if not sds:
                raise _located(loc, "give at least one assumed heterogeneity SD")
        for i, s in enumerate(sds):
            here = loc if not isinstance(self.heterogeneity_sd, list) else (*loc, i)
            if not math.isfinite(s) or s < 0:
                raise _located(
                    here,
                    f"an assumed heterogeneity SD of {s} is negative; a standard deviation is zero or positive "
                    "(0 means every group has the average effect), e.g. heterogeneity_sd: 0.1",
                )
            if sds.index(s) != i:
                raise _located(here, f"{s} is listed twice; list each assumed heterogeneity SD once")
        if not math.isfinite(self.average_effect):
            raise _located(("average_effect",), "the assumed average effect must be a finite number")
        return self

    @property
    def sizes(self) -> list[int]:
        return [self.n] if isinstance(self.n, int) else list(self.n)

    @property
    def heterogeneity_sds(self) -> list[float]:
        v = self.heterogeneity_sd
        return [float(v)] if isinstance(v, (int, float)) else [float(x) for x in v]


__all__ = ["ControlPlan", "ModifierPlan", "PilotPlan", "PlannedDesign", "SimulationSampler"]
