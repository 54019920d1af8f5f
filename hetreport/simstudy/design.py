"""The simulation study's file (SIM.yml): pydantic models, loaded safely.

A SIM.yml describes a grid of simulated studies: every combination of a sample size and a
heterogeneity SD is a *cell*, run ``replications`` times. The defaults are the seed paper's
section 4: a binary treatment with p = .5; four binary modifiers with p = .3, .4, .5, .6;
fully crossed interaction coefficients drawn N(.5, sd) with the treatment effect of the
all-zero group fixed at .5; outcome SD .25; N in {1000, 2500, 5000}; sd in {.05, .25, .75}.

Errors are :class:`~hetreport.errors.SpecError` paragraphs with the YAML path and a
close-match suggestion for misspelt keys, exactly as for study specs (``spec.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import methods as registry
from ..errors import SpecError, suggest
from ..spec import OlsOptions, Priors, Sampler, _explain, _LocatedError, _rejoin_flow_priors, read_yaml

#: every approach the simulation study can run (the method registry's, in its order)
APPROACHES = registry.simulation_names()
#: the default set: the registry's default methods the simulation study runs
DEFAULT_APPROACHES = tuple(a for a in APPROACHES if a in registry.default_names())
ApproachName = Literal[APPROACHES]
PAPER_MODIFIERS = (
    {"name": "m1", "probability": 0.3},
    {"name": "m2", "probability": 0.4},
    {"name": "m3", "probability": 0.5},
    {"name": "m4", "probability": 0.6},
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Modifier(_Strict):
    """A simulated modifier: binary with P(1) = ``probability``, or categorical with
    ``levels`` (level name -> probability; the first level is the reference)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=40)
    probability: float | None = Field(default=None, gt=0, lt=1)
    levels: dict[str, float] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Modifier:
        if (self.probability is None) == (self.levels is None):
            raise ValueError(
                f"give modifier '{self.name}' either 'probability' (binary: the share of 1s, e.g. 0.3) "
                "or 'levels' (categorical: each level's probability, e.g. {low: 0.5, mid: 0.3, high: 0.2})"
            )
        if self.levels is not None:
            if len(self.levels) < 2:
                raise _LocatedError(("levels",), "a categorical modifier needs at least two levels")
            for k, p in self.levels.items():
                if not (isinstance(p, (int, float)) and 0 < p < 1):
                    raise _LocatedError(("levels", k), f"the probability of level '{k}' must be a number between 0 and 1 (got {p!r})")
            total = sum(self.levels.values())
            if abs(total - 1) > 1e-6:
                raise _LocatedError(("levels",), f"the level probabilities must add up to 1 (they add up to {total:.4g})")
        return self

    @property
    def level_probs(self) -> tuple[tuple[str, float], ...]:
        if self.levels is None:
            return (("0", 1 - float(self.probability)), ("1", float(self.probability)))
        return tuple((str(k), float(v)) for k, v in self.levels.items())

    @property
    def binary(self) -> bool:
        return self.levels is None


class StudyDesign(_Strict):
    """Reuse a study spec's design: its modifiers with their observed joint frequencies,
    its controls and (unless sample_sizes is given) its N; rows of covariates are resampled."""

    spec: str
    analysis: str | None = None
    #: each control column's coefficient in the simulated outcome is drawn N(0, this) per SD of the control
    control_effect_sd: float = Field(default=0.1, ge=0)


class SimSampler(Sampler):
    """The study spec's sampler block, plus ``max_treedepth`` (nutpie's ``maxdepth``)."""

    draws: int = Field(default=500, ge=10, le=100_000)
    tune: int = Field(default=500, ge=10, le=100_000)
    chains: int = Field(default=2, ge=1, le=64)
    backend: Literal["nutpie"] = "nutpie"
    max_treedepth: int = Field(default=10, ge=3, le=15)


class ReportOptions(_Strict):
    formats: list[Literal["html", "pdf"]] = Field(default_factory=lambda: ["html", "pdf"], min_length=1)
    author: str | None = None


class SimDesign(_Strict):
    title: str = Field(default="Hierarchical models against interactions: a simulation study", min_length=1)
    subtitle: str | None = None
    sample_sizes: list[int] | None = Field(default=None, min_length=1)
    heterogeneity_sds: list[float] = Field(default_factory=lambda: [0.05, 0.25, 0.75], min_length=1)
    modifiers: list[Modifier] | None = Field(default=None, min_length=1)
    treatment_probability: float | None = Field(default=None, gt=0, lt=1)
    base_effect: float = 0.5
    coefficient_mean: float = 0.5
    outcome_sd: float = Field(default=0.25, gt=0)
    #: redraw: new interaction coefficients (a new truth) in every replication; fixed: one truth per heterogeneity SD
    coefficients: Literal["redraw", "fixed"] = "redraw"
    replications: int = Field(default=20, ge=1, le=100_000)
    seed: int = Field(default=20240529, ge=0, lt=2**32)
    study: StudyDesign | None = None
    approaches: list[ApproachName] = Field(default_factory=lambda: list(DEFAULT_APPROACHES), min_length=1)
    #: options of individual approaches, by name (as the study spec's ``method_options``)
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    priors: Priors = Field(default_factory=Priors)
    sampler: SimSampler = Field(default_factory=SimSampler)
    ols: OlsOptions = Field(default_factory=OlsOptions)
    executor: Literal["local", "dask"] = "local"
    #: a Dask scheduler address (tcp://host:port), for executor: dask
    scheduler: str | None = None
    #: local processes (default: all cores)
    workers: int | None = Field(default=None, ge=1, le=512)
    report: ReportOptions = Field(default_factory=ReportOptions)
    base_dir: Path = Field(default=Path("."), exclude=True)
    source_text: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check(self) -> SimDesign:
        for name, raw in self.method_options.items():
            if name not in self.approaches:
                raise _LocatedError(
                    ("method_options", name),
                    f"'{name}' is not among this design's approaches {self.approaches}; add it to 'approaches' or remove its options",
                )
            registry.get(name).parse_options(raw)
        for a in self.approaches:
            registry.get(a).check_available()
        for field in ("sample_sizes", "heterogeneity_sds", "approaches"):
            values = getattr(self, field) or []
            for i, v in enumerate(values):
                if values.index(v) != i:
                    raise _LocatedError((field, i), f"{v!r} is listed twice; list each value once")
        for i, n in enumerate(self.sample_sizes or []):
            if n < 20:
                raise _LocatedError(("sample_sizes", i), f"a sample size of {n} is too small to simulate a study; use at least 20")
        for i, s in enumerate(self.heterogeneity_sds):
            if not (math.isfinite(s) and s >= 0):
                raise _LocatedError(("heterogeneity_sds", i), f"a standard deviation must be zero or positive (got {s})")
        names = [m.name for m in self.modifiers or []]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise _LocatedError(("modifiers", i, "name"), f"modifier '{n}' is listed twice")
            if n in ("y", "treat", "true_effect"):
                raise _LocatedError(("modifiers", i, "name"), f"'{n}' is a reserved column name of simulated data; rename the modifier")
        if self.study is not None and self.modifiers is not None:
            raise _LocatedError(("modifiers",), "give either 'modifiers' or 'study' (whose analysis defines the modifiers), not both")
        if self.ols.se_type == "cluster":
            raise _LocatedError(("ols", "se_type"), "simulated data have no clusters; use HC0, HC1, HC2 or HC3")
        if self.scheduler and self.executor != "dask":
            raise _LocatedError(
                ("scheduler",), "a scheduler address is given but executor is not 'dask'; set executor: dask or remove 'scheduler'"
            )
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def modifier_list(self) -> list[Modifier]:
        return list(self.modifiers) if self.modifiers is not None else [Modifier(**m) for m in PAPER_MODIFIERS]

    def canonical(self) -> dict:
        out = self.model_dump(mode="json", exclude={"base_dir", "source_text"})
        if not out["method_options"]:  # absent: the hash of older designs is unchanged
            out.pop("method_options")
        return out

    def options_of(self, approach: str):
        """The approach's options, parsed by its registry entry (the defaults when none are given)."""
        return registry.get(approach).parse_options(self.method_options.get(approach))

    def design_hash(self) -> str:
        """SHA-256 of what determines the numbers (not the executor, workers or report options)."""
        data = self.canonical()
        for key in ("executor", "scheduler", "workers", "report", "title", "subtitle"):
            data.pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def study_spec_path(self) -> Path | None:
        if self.study is None:
            return None
        p = Path(self.study.spec)
        return p if p.is_absolute() else self.base_dir / p


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: a sample size and a heterogeneity SD."""

    index: int
    n: int
    sd: float
    n_index: int
    sd_index: int

    @property
    def id(self) -> str:
        return f"n{self.n}-sd{self.sd:g}"


def cells(design: SimDesign, default_n: int | None = None) -> list[Cell]:
    """The grid, heterogeneity SD outermost (the paper's panels), then sample size."""
    sizes = design.sample_sizes or ([default_n] if default_n else [1000, 2500, 5000])
    out = []
    for j, sd in enumerate(design.heterogeneity_sds):
        for i, n in enumerate(sizes):
            out.append(Cell(len(out), int(n), float(sd), i, j))
    return out


# --------------------------------------------------------------------------- loading


def parse_design(raw, base_dir: Path | str = ".", source: str = "simulation", source_text: str | None = None) -> SimDesign:
    """Validate a mapping (as read from YAML) into a :class:`SimDesign`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(
            f"{source} must be a YAML mapping with keys such as sample_sizes, heterogeneity_sds, modifiers, replications; "
            f"got {type(raw).__name__}."
        )
    if "priors" in raw:
        raw = {**raw, "priors": _rejoin_flow_priors(raw["priors"], source)}
    try:
        return SimDesign.model_validate({**raw, "base_dir": Path(base_dir), "source_text": source_text})
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        where, why = _explain(errors[0], SimDesign)
        more = f" ({len(errors) - 1} more problem(s) after this one.)" if len(errors) > 1 else ""
        raise SpecError(f"{why}{more}", where=f"{source}: {where}") from None
    except SpecError as exc:
        raise SpecError(exc.message, where=f"{source}: {exc.where}") from None


def load_design(path: str | Path) -> SimDesign:
    """Read and validate a SIM.yml (safe loader only)."""
    path = Path(path)
    raw, text = read_yaml(path, "simulation", "give the path of a SIM.yml (see examples/simulation/paper.yml)")
    design = parse_design(raw, base_dir=path.parent.resolve(), source=path.name, source_text=text)
    sp = design.study_spec_path()
    if sp is not None and not sp.is_file():
        raise SpecError(
            f"the study spec '{sp}' does not exist; study.spec is read relative to the simulation file's folder.",
            where=f"{path.name}: study.spec",
        )
    return design


__all__ = ["APPROACHES", "Cell", "Modifier", "SimDesign", "SimSampler", "StudyDesign", "cells", "load_design", "parse_design", "suggest"]
