"""The study spec: pydantic models of the YAML file, loaded safely.

A spec is data. It is read with ``yaml.safe_load``; expressions in it are
parsed by :mod:`hetreport.expr`, never evaluated as Python. Every validation
error becomes one :class:`~hetreport.errors.SpecError` paragraph naming the
spec path (``analyses[0].modifiers[2]``) and the fix. This module knows
nothing of pandas or PyMC; checks that need the data live in ``data.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from .errors import HetreportWarning, SpecError, clean_text, path_str, shorten, suggest, unsafe_characters
from .errors import LocatedError as _LocatedError
from .families import FAMILY_NAMES
from .prereg.design import PlannedDesign

Scalar = int | float | str | bool


def _display(text: str, info: ValidationInfo) -> str:
    """Titles and labels reach HTML, PDF and the terminal: control characters (NUL, BEL, escape
    sequences, right-to-left overrides) are removed, with a warning naming them."""
    bad = unsafe_characters(text)
    if bad:
        warnings.warn(
            f"{info.field_name or 'text'}: removed control character(s) {', '.join(bad)} from {shorten(clean_text(text))!r}; "
            "titles and labels are shown without them.",
            HetreportWarning,
            stacklevel=2,
        )
    return clean_text(text)


#: display text from the spec (titles, labels, units, author)
Text = Annotated[str, AfterValidator(_display)]

# --------------------------------------------------------------------------- priors

#: distribution name -> (PyMC class name, parameter names in order)
#: the outcome families, from the family registry (hetreport/families.py)
FamilyName = Literal[FAMILY_NAMES]

PRIOR_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "normal": ("Normal", ("mu", "sigma")),
    "student_t": ("StudentT", ("nu", "mu", "sigma")),
    "cauchy": ("Cauchy", ("alpha", "beta")),
    "halfnormal": ("HalfNormal", ("sigma",)),
    "halfstudent_t": ("HalfStudentT", ("nu", "sigma")),
    "halfcauchy": ("HalfCauchy", ("beta",)),
    "exponential": ("Exponential", ("lam",)),
    "lkj": ("LKJ", ("eta",)),
}
_POSITIVE = {"halfnormal", "halfstudent_t", "halfcauchy", "exponential"}
_PRIOR_RE = re.compile(r"^\s*([a-z_]+)\s*\(([^()]*)\)\s*$")


class Prior(BaseModel):
    """A prior distribution: a name and numeric parameters, e.g. ``normal(0, 0.25)``."""

    model_config = ConfigDict(frozen=True)
    family: str
    params: tuple[float, ...]

    @classmethod
    def parse(cls, text: str, where: str) -> Prior:
        if isinstance(text, Prior):
            return text
        m = _PRIOR_RE.match(str(text))
        if not m:
            raise SpecError(
                f"'{text}' is not a prior. Write a distribution and its numbers, e.g. "
                f"'normal(0, 0.25)', 'halfnormal(1)', 'student_t(3, 0, 1)', 'exponential(2)' or 'lkj(2)'.",
                where=where,
            )
        name, args = m.group(1), m.group(2)
        if name not in PRIOR_FAMILIES:
            raise SpecError(
                f"unknown prior distribution '{name}'.{suggest(name, PRIOR_FAMILIES)} Known: {', '.join(PRIOR_FAMILIES)}.",
                where=where,
            )
        try:
            params = tuple(float(a) for a in args.split(",")) if args.strip() else ()
        except ValueError:
            raise SpecError(f"the parameters of '{text}' must be numbers.", where=where) from None
        expected = PRIOR_FAMILIES[name][1]
        if len(params) != len(expected):
            raise SpecError(
                f"'{name}' takes {len(expected)} number(s) ({', '.join(expected)}), got {len(params)} in '{text}'.",
                where=where,
            )
        if any(not math.isfinite(p) for p in params):
            raise SpecError(f"the parameters of '{text}' must be finite numbers.", where=where)
        scale_ok = all(
            p > 0
            for n, p in zip(expected, params)
            if n in ("sigma", "beta", "lam", "nu", "eta", "alpha") and not (name == "cauchy" and n == "alpha")
        )
        if not scale_ok:
            raise SpecError(f"scale parameters in '{text}' must be positive.", where=where)
        return cls(family=name, params=params)

    @property
    def positive(self) -> bool:
        return self.family in _POSITIVE

    @property
    def dist_name(self) -> str:
        """The PyMC / bambi distribution class name, e.g. 'HalfNormal'."""
        return PRIOR_FAMILIES[self.family][0]

    def kwargs(self) -> dict[str, float]:
        return dict(zip(PRIOR_FAMILIES[self.family][1], self.params))

    def __str__(self) -> str:
        return f"{self.family}({', '.join(_fmt_num(p) for p in self.params)})"


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


# --------------------------------------------------------------------------- spec sections


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BinRule(_Strict):
    """How to turn a continuous column into levels: ``{quantiles: 4}`` or ``{breaks: [...]}``.

    ``closed`` says which edge a bin includes: ``right`` (the default; bins (a, b], the lowest
    [a, b]) or ``left`` (bins [a, b), the highest [a, b])."""

    quantiles: int | None = Field(default=None, ge=2, le=20)
    breaks: list[float] | None = None
    labels: list[Text] | None = None
    #: None is the default, right-closed (not written out, so older specs keep their hash)
    closed: Literal["left", "right"] | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> BinRule:
        if (self.quantiles is None) == (self.breaks is None):
            raise ValueError("give exactly one of 'quantiles' (a number of equal-count bins) or 'breaks' (a list of cut points)")
        if self.breaks is not None:
            if len(self.breaks) < 2 or any(b <= a for a, b in zip(self.breaks[:-1], self.breaks[1:])):
                raise ValueError("'breaks' must be at least two strictly increasing numbers")
        k = self.quantiles if self.quantiles is not None else len(self.breaks or []) - 1
        if self.labels is not None and len(self.labels) != k:
            raise ValueError(f"'labels' must name each of the {k} bins")
        return self


class DataSpec(_Strict):
    path: str
    format: Literal["csv", "tsv", "parquet", "dta", "sav", "xlsx"] | None = None
    sheet: str | int | None = None
    derive: dict[str, str] = Field(default_factory=dict)
    filter: str | None = None
    bins: dict[str, BinRule] = Field(default_factory=dict)


class Labels(_Strict):
    variables: dict[str, Text] = Field(default_factory=dict)
    levels: dict[str, dict[Scalar, Text]] = Field(default_factory=dict)
    #: the unit of an outcome, by outcome column: words written after an effect ("dollars": "812 dollars")
    #: or a currency symbol written before it ("$": "$812"); see report/format.py ``Unit``
    units: dict[str, Text] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _units(self) -> Labels:
        for var, text in self.units.items():
            if not text.strip():
                raise _LocatedError(("units", var), "the unit is empty; write it as words (e.g. dollars) or a currency symbol (e.g. $)")
            if len(text) > 40:
                raise _LocatedError(("units", var), f"the unit '{shorten(text)}' is longer than 40 characters; write it in a word or two")
        return self


class Comparison(_Strict):
    """A named contrast: the average effect of the groups ``a`` selects minus that of the groups ``b`` selects.
    Each selection maps modifiers to a value or a list of values (``{white: 1, male: 1}``: every group with
    those values; modifiers not named are free); levels are checked against the data when it is read."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=60)
    a: dict[str, Scalar | list[Scalar]] = Field(min_length=1)
    b: dict[str, Scalar | list[Scalar]] = Field(min_length=1)
    label: Text | None = Field(default=None, max_length=200)


class Analysis(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=60)
    title: Text | None = None
    modifiers: list[str] = Field(min_length=1)
    controls: list[str] = Field(default_factory=list)
    #: controls to treat as categorical (dummies) even though they are numeric
    categorical: list[str] = Field(default_factory=list)
    #: "all": a varying term for every non-empty combination of modifiers (brms ``| m1*m2*...``);
    #: "crossing": one term over the full crossing only (brms ``| m1:m2:...``)
    terms: Literal["all", "crossing"] = "all"
    #: intercept and slope of each term share a bivariate normal with an LKJ correlation
    correlated: bool = True
    #: modifiers that also predict the treatment slope linearly (the "lambda" specification:
    #: treat:(z1 + z2) + (1 + treat | group)); usually with terms: crossing
    slope_predictors: list[str] = Field(default_factory=list)
    filter: str | None = None
    #: this analysis's outcome and family, when they differ from the spec's (e.g. a logit model of a
    #: binary outcome next to the linear one, or an ordinal model of the 5-point scale it was derived from)
    outcome: str | None = None
    family: FamilyName | None = None
    #: priors for this analysis only, key by key over the spec's (e.g. log-odds priors for a logit analysis)
    priors: Priors | None = None
    #: sampler settings for this analysis only, key by key over the spec's (e.g. a higher target_accept)
    sampler: Sampler | None = None
    #: named comparisons of sets of groups (contrasts.csv, a report section)
    compare: list[Comparison] = Field(default_factory=list)
    #: the approaches fitted for this analysis (names from hetreport/methods.py), instead of the spec's
    methods: list[str] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Analysis:
        for field in ("modifiers", "controls"):
            seen: set[str] = set()
            for i, v in enumerate(getattr(self, field)):
                if v in seen:
                    raise _LocatedError((field, i), f"'{v}' is listed twice; list each column once")
                seen.add(v)
        for i, c in enumerate(self.controls):
            if c in self.modifiers:
                raise _LocatedError(
                    ("controls", i),
                    f"'{c}' is both a modifier and a control; a modifier is already in the model, so remove it from 'controls'",
                )
        for i, z in enumerate(self.slope_predictors):
            if z not in self.modifiers:
                raise _LocatedError(
                    ("slope_predictors", i),
                    f"'{z}' is not one of this analysis's modifiers {self.modifiers}; a slope predictor is a group characteristic, so list modifiers here",
                )
        names = [c.name for c in self.compare]
        for i, c in enumerate(self.compare):
            if names.index(c.name) != i:
                raise _LocatedError(
                    ("compare", i, "name"),
                    f"the comparison name '{c.name}' is used twice in this analysis; give each comparison its own name",
                )
            for side in ("a", "b"):
                for m, v in getattr(c, side).items():
                    if m not in self.modifiers:
                        raise _LocatedError(
                            ("compare", i, side, m),
                            f"'{m}' is not one of this analysis's modifiers {self.modifiers}; a comparison "
                            f"selects groups by their modifier values, so name modifiers here{suggest(m, self.modifiers)}",
                        )
                    if isinstance(v, list) and not v:
                        raise _LocatedError(("compare", i, side, m), "an empty list selects no group; give one value or a list of values")
        for i, c in enumerate(self.categorical):
            if c not in self.controls:
                raise _LocatedError(
                    ("categorical", i),
                    f"'{c}' is not among this analysis's controls {self.controls}; 'categorical' marks controls to enter as dummies",
                )
        return self


class Priors(_Strict):
    """Priors as text; ``None`` means the documented default scaled to the outcome."""

    intercept: str | None = None
    b: str | None = None
    sd: str | None = None
    sigma: str | None = None
    cor: str = "lkj(2)"
    #: family negativebinomial: the dispersion alpha (variance = mu + mu^2 / alpha)
    alpha: str | None = None
    #: family ordinal: every cutpoint (threshold) of the cumulative logit
    cutpoints: str | None = None

    @model_validator(mode="after")
    def _parse(self) -> Priors:
        for key in ("intercept", "b", "sd", "sigma", "cor", "alpha", "cutpoints"):
            val = getattr(self, key)
            if val is None:
                continue
            prior = Prior.parse(val, where=f"priors.{key}")
            if key in ("sd", "sigma", "alpha") and not prior.positive:
                raise _LocatedError(
                    (key,),
                    f"'{val}' can be negative but a standard deviation cannot; use halfnormal(s), halfstudent_t(nu, s), halfcauchy(s) or exponential(rate)",
                )
            if key in ("intercept", "b", "cutpoints") and (prior.positive or prior.family == "lkj"):
                raise _LocatedError(
                    (key,), f"'{val}' is not a prior for a coefficient; use normal(m, s), student_t(nu, m, s) or cauchy(m, s)"
                )
            if key == "cor" and prior.family != "lkj":
                raise _LocatedError((key,), f"'{val}' is not a correlation prior; use lkj(eta), e.g. lkj(2)")
        return self

    def get(self, key: str) -> Prior | None:
        val = getattr(self, key)
        return None if val is None else Prior.parse(val, where=f"priors.{key}")


class Sampler(_Strict):
    draws: int = Field(default=1000, ge=10, le=100_000)
    tune: int = Field(default=1000, ge=10, le=100_000)
    chains: int = Field(default=4, ge=1, le=64)
    seed: int = Field(default=20240529, ge=0, lt=2**32)
    #: 0.98: on the Tomz-Weeks model 0.95 still left a divergence in 1 of 7 runs (benchmarks/README.md)
    target_accept: float = Field(default=0.98, gt=0.5, lt=1.0)
    backend: Literal["nutpie", "pymc"] = "nutpie"


Analysis.model_rebuild()


class OlsOptions(_Strict):
    se_type: Literal["HC0", "HC1", "HC2", "HC3", "cluster"] = "HC2"
    cluster: str | None = None

    @model_validator(mode="after")
    def _cluster(self) -> OlsOptions:
        if self.se_type == "cluster" and not self.cluster:
            raise _LocatedError(("cluster",), "se_type 'cluster' needs the column that defines clusters, e.g. cluster: school_id")
        if self.cluster and self.se_type != "cluster":
            raise _LocatedError(
                ("cluster",), "a cluster column is given but se_type is not 'cluster'; set se_type: cluster or remove 'cluster'"
            )
        return self


class Targeting(_Strict):
    """Whom to treat first: the groups with the largest posterior mean effects, up to a share of the
    population (``budget``) or a number of groups (``groups``)."""

    budget: float | None = Field(default=None, gt=0, lt=1)
    groups: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> Targeting:
        if (self.budget is None) == (self.groups is None):
            raise ValueError(
                "give exactly one of 'budget' (the share of the population to treat, e.g. 0.25) or 'groups' (a number of groups)"
            )
        return self


class ReportOptions(_Strict):
    facet: str | None = None
    formats: list[Literal["html", "pdf", "docx"]] = Field(default_factory=lambda: ["html", "pdf"], min_length=1)
    templates: str | None = None
    #: a data column holding each unit's true treatment effect (simulated studies)
    truth: str | None = None
    #: heat map axes (two modifiers); default: the two modifiers with most levels
    heatmap: list[str] | None = Field(default=None, min_length=2, max_length=2)
    #: groups with fewer units than this in an arm are flagged as small
    min_arm: int = Field(default=5, ge=1)
    #: what the rows are, for the text ("respondents", "schools"); singular is derived
    units: Text = Field(default="units", min_length=1, max_length=40)
    author: Text | None = None
    #: rank the groups and evaluate treating the top ones first (targeting.csv, a report section)
    targeting: Targeting | None = None
    #: the analysis the brief and page one speak of (its name); default: the first analysis
    headline: Text | None = None
    #: the data's citation, for report/paper/references.bib (free text, e.g. the replication file's reference)
    data_citation: Text | None = Field(default=None, max_length=1000)
    #: decimals of effects in the text and tables; default: from the outcome's scale (format.digits_for_scale)
    digits: int | None = Field(default=None, ge=0, le=6)


class Limits(_Strict):
    """Limits on work, checked before anything is parsed or fitted (README: "Limits on work"). Each is a
    ceiling a study can raise deliberately, e.g. ``limits: {parameters: 100000}``."""

    #: model parameters per analysis (varying intercepts and slopes, SDs, coefficients)
    parameters: int = Field(default=20_000, ge=1)
    #: varying terms per analysis (terms: all has 2^k - 1 for k modifiers)
    terms: int = Field(default=255, ge=1)
    #: estimated peak memory of one analysis's fit, in GB
    memory_gb: float = Field(default=4.0, gt=0)
    #: the largest share of groups that may have units in only one treatment arm
    one_arm_groups: float = Field(default=0.5, gt=0, le=1)
    #: rows read from the data file
    rows: int = Field(default=5_000_000, ge=1)
    #: size of the data once decompressed (csv/tsv text, xlsx sheets, parquet/dta/sav values), in MB;
    #: 200 MB of xlsx sheets take minutes to parse, so the 410 MB that a 1.2 MB zip bomb inflates to is refused
    data_mb: float = Field(default=200.0, gt=0)


class Spec(_Strict):
    title: Text = Field(min_length=1)
    subtitle: Text | None = None
    #: the data to analyse; a spec to pre-register has ``design:`` instead (exactly one of the two)
    data: DataSpec | None = None
    #: the planned study (hetreport preregister); see hetreport/prereg/design.py
    design: PlannedDesign | None = None
    #: a pre-registration appendix folder or its registration.json: `run` checks conformance with it
    preregistration: str | None = None
    outcome: str
    treatment: str
    treated_value: Scalar | None = None
    #: the outcome's likelihood: gaussian (identity link), bernoulli (0/1, logit), binomial
    #: (successes out of ``trials``, logit), poisson / negativebinomial (counts, log),
    #: ordinal (ordered categories, cumulative logit)
    family: FamilyName = "gaussian"
    #: binomial only: the column holding each row's number of trials (the outcome is the successes)
    trials: str | None = None
    labels: Labels = Field(default_factory=Labels)
    analyses: list[Analysis] = Field(min_length=1)
    priors: Priors = Field(default_factory=Priors)
    sampler: Sampler = Field(default_factory=Sampler)
    ols: OlsOptions = Field(default_factory=OlsOptions)
    report: ReportOptions = Field(default_factory=ReportOptions)
    #: ceilings on the work a spec may ask for; absent: the documented defaults (``Limits()``)
    limits: Limits | None = None
    #: the approaches fitted for every analysis (names from hetreport/methods.py); default: the registry's default set
    methods: list[str] | None = None
    #: options of individual methods, by method name (e.g. ``bcf: {num_mcmc: 500}``)
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: folder the spec was read from; data paths are relative to it (not a YAML key)
    base_dir: Path = Field(default=Path("."), exclude=True)
    #: the YAML text as written (for the reproducibility appendix; not a YAML key)
    source_text: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _roles(self) -> Spec:
        if self.data is not None and self.design is not None:
            raise _LocatedError(
                ("design",),
                "the spec has both 'data' and 'design', so it is ambiguous whether it analyses data or "
                "plans a study. Keep 'design:' (and no 'data:') in the spec you pre-register with `hetreport preregister`, "
                "and 'data:' (and no 'design:') in the spec that analyses the data; `hetreport run SPEC --preregistration DIR` "
                "then checks that the two agree",
            )
        if self.data is None and self.design is None:
            raise _LocatedError(
                ("data",),
                "this key is required but missing; add 'data:' with the path of the data file "
                "(or 'design:' to plan a study for pre-registration)",
            )
        names = [a.name for a in self.analyses]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise _LocatedError(("analyses", i, "name"), f"analysis name '{n}' is used twice; names must be unique")
        if self.report.headline is not None and self.report.headline not in names:
            raise _LocatedError(
                ("report", "headline"),
                f"'{self.report.headline}' is not the name of an analysis; use one of: "
                f"{', '.join(names)} (or leave report.headline out to speak of the first analysis)",
            )
        if self.outcome == self.treatment:
            raise _LocatedError(("treatment",), f"the treatment '{self.treatment}' is also the outcome")
        self._check_units()
        if not self.trials and any(self.family_of(a) == "binomial" for a in self.analyses):
            raise _LocatedError(
                ("trials",),
                "family binomial needs 'trials': the column with each row's number of trials "
                "(the outcome column holds the successes). For one 0/1 outcome per row use family: bernoulli",
            )
        if self.trials and all(self.family_of(a) != "binomial" for a in self.analyses):
            raise _LocatedError(
                ("trials",), f"'trials' is only used with family: binomial (the family is {self.family}); remove it or set family: binomial"
            )
        from . import methods as registry

        for where, names in ([("methods", self.methods)] if self.methods is not None else []) + [
            (f"analyses[{ai}].methods", a.methods) for ai, a in enumerate(self.analyses) if a.methods is not None
        ]:
            registry.check_names(names, where)
        for name, raw in self.method_options.items():
            registry.get(name).parse_options(raw)
        for ai, a in enumerate(self.analyses):
            if a.outcome is not None and a.outcome == self.treatment:
                raise _LocatedError(("analyses", ai, "outcome"), f"the outcome '{a.outcome}' is the treatment")
            for field in ("modifiers", "controls"):
                for i, v in enumerate(getattr(a, field)):
                    if v == self.treatment:
                        raise _LocatedError(
                            ("analyses", ai, field, i),
                            f"'{v}' is the treatment; the effect of the treatment cannot vary by itself. Remove it from {field}",
                        )
                    if v == self.outcome_of(a):
                        raise _LocatedError(("analyses", ai, field, i), f"'{v}' is the outcome; remove it from {field}")
        return self

    def _check_units(self) -> None:
        """labels.units names outcomes (effects are in the outcome's unit); a probability outcome's effects
        are always said in percentage points, so a unit there is refused rather than ignored."""
        outcomes = list(dict.fromkeys(self.outcome_of(a) for a in self.analyses))
        for var in self.labels.units:
            if var not in outcomes:
                raise _LocatedError(
                    ("labels", "units", var),
                    f"'{shorten(var)}' is not an outcome of this spec.{suggest(var, outcomes)} A unit is given for an outcome, "
                    f"since effects are said in the outcome's unit; name an outcome column here: {', '.join(outcomes)}",
                )
            prob = [a.name for a in self.analyses if self.outcome_of(a) == var and self.family_of(a) in ("bernoulli", "binomial")]
            if prob:
                raise _LocatedError(
                    ("labels", "units", var),
                    f"'{var}' is the outcome of analysis '{prob[0]}', whose family ({self.family_of(self.analysis(prob[0]))}) "
                    "makes its effects differences in a probability, always said in percentage points. Remove labels.units."
                    f"{var} (or give that analysis another outcome)",
                )

    def unit_of(self, analysis: Analysis) -> str | None:
        """The unit of the analysis's outcome from ``labels.units`` (None when not given)."""
        return self.labels.units.get(self.outcome_of(analysis))

    # ------------------------------------------------------------------ helpers
    @property
    def data_path(self) -> Path:
        if self.data is None:
            raise SpecError(
                "this spec has a 'design:' block and no 'data:', so it can be pre-registered (`hetreport preregister`) "
                "but not fitted. Replace 'design:' by 'data:' with the collected data's path to run the analysis.",
                where="data",
            )
        p = Path(self.data.path)
        return p if p.is_absolute() else (self.base_dir / p)

    def canonical(self) -> dict[str, Any]:
        """The spec as plain data with defaults filled in (key order irrelevant)."""
        out = self.model_dump(mode="json", exclude={"base_dir", "source_text"})
        for key in ("data", "design", "preregistration", "limits", "methods"):  # absent keys leave the hash of older specs unchanged
            if out.get(key) is None:
                out.pop(key, None)
        for rule in ((out.get("data") or {}).get("bins") or {}).values():
            if rule.get("closed") is None:
                rule.pop("closed", None)
        for a in out.get("analyses", []):  # so do the question keys (compare, report.targeting)
            if not a.get("compare"):
                a.pop("compare", None)
        if not out.get("labels", {}).get("units"):  # labels.units too, when not given
            out.get("labels", {}).pop("units", None)
        if out.get("report", {}).get("targeting") is None:
            out.get("report", {}).pop("targeting", None)
        if not out.get("method_options"):
            out.pop("method_options", None)
        for a in out["analyses"]:
            if a.get("methods") is None:
                a.pop("methods", None)
        for key in ("headline", "data_citation", "digits"):  # likewise for these report keys
            if out.get("report", {}).get(key) is None:
                out.get("report", {}).pop(key, None)
        return out

    def spec_hash(self) -> str:
        """SHA-256 of the canonical spec: comments, key order and defaults written out do not change it."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def work_limits(self) -> Limits:
        """The spec's limits on work, or the documented defaults."""
        return self.limits or Limits()

    def outcome_of(self, analysis: Analysis) -> str:
        """The analysis's outcome column: its own, else the spec's."""
        return analysis.outcome or self.outcome

    def priors_of(self, analysis: Analysis) -> Priors:
        """The spec's priors with the analysis's own priors written over them, key by key."""
        if analysis.priors is None:
            return self.priors
        return self.priors.model_copy(update={k: getattr(analysis.priors, k) for k in analysis.priors.model_fields_set})

    def sampler_of(self, analysis: Analysis) -> Sampler:
        """The spec's sampler settings with the analysis's own written over them, key by key."""
        if analysis.sampler is None:
            return self.sampler
        return self.sampler.model_copy(update={k: getattr(analysis.sampler, k) for k in analysis.sampler.model_fields_set})

    def methods_of(self, analysis: Analysis):
        """The approaches fitted for ``analysis`` (its own list, else the spec's, else the registry's
        default set) with their options; see :mod:`hetreport.methods`."""
        from . import methods as registry

        explicit = analysis.methods if analysis.methods is not None else self.methods
        names = registry.check_names(explicit) if explicit is not None else list(registry.default_names())
        family = self.family_of(analysis)
        for n in names:
            m = registry.get(n)
            m.check_available()
            if explicit is not None and not m.fits(family):  # a default method that does not apply is simply not fitted
                raise SpecError(
                    f"method '{n}' ({m.text}) does not fit the {family} family of analysis '{analysis.name}'; it fits "
                    f"{', '.join(m.families)}. Remove '{n}' from this analysis's 'methods:' (or give the analysis its own list).",
                    where=f"analyses.{analysis.name}.methods",
                )
        return registry.Selection(tuple(names), {n: registry.get(n).parse_options(self.method_options.get(n)) for n in names})

    def family_of(self, analysis: Analysis) -> str:
        """The analysis's outcome family: its own, else the spec's."""
        return analysis.family or self.family

    def analysis(self, name: str) -> Analysis:
        for a in self.analyses:
            if a.name == name:
                return a
        raise SpecError(f"there is no analysis named '{name}'.{suggest(name, [a.name for a in self.analyses])}")

    def label(self, var: str) -> str:
        return self.labels.variables.get(var, var)


# --------------------------------------------------------------------------- loading

_EXPECTED = {
    "list_type": "a list (e.g. [a, b])",
    "dict_type": "a mapping of keys to values",
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "model_type": "a mapping of keys to values",
}


def _model_fields(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """The allowed keys at a location, for suggestions on unknown keys. A location runs through
    fields, list positions (ints) and the user's own keys of mappings such as ``data.bins.age``."""
    current: Any = model
    skip_key = False  # the previous field was a mapping of models: this part is the user's key
    for part in loc:
        if isinstance(part, int):
            continue
        if skip_key:
            skip_key = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current, skip_key = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [k for k, f in current.model_fields.items() if not f.exclude]
    return None


def _inner_model(ann: Any) -> tuple[Any, bool]:
    """The model class an annotation holds (Model, Model | None, list[Model], dict[str, Model]) and
    whether it is the value of a mapping."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    origin = getattr(ann, "__origin__", None)
    for a in getattr(ann, "__args__", ()) or ():
        inner, mapped = _inner_model(a)
        if inner is not None:
            return inner, mapped or origin is dict
    return None, False


def _explain(err: dict, root: type[BaseModel]) -> tuple[str, str]:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, _LocatedError):
        return path_str(loc + ctx_err.loc), str(ctx_err) + "."
    if isinstance(ctx_err, SpecError):
        return ctx_err.where or path_str(loc), ctx_err.message
    if etype == "extra_forbidden":
        key = str(loc[-1])
        allowed = _model_fields(root, loc[:-1]) or []
        hint = suggest(key, allowed)
        listed = f" Allowed here: {', '.join(allowed)}." if allowed else ""
        return path_str(loc), f"unknown key '{shorten(key)}'.{hint}{listed}"
    if etype == "missing":
        return path_str(loc), f"this key is required but missing; add '{loc[-1]}:' to the spec."
    given = err.get("input")
    given_txt = shorten(json.dumps(given, default=str), 80) if given is not None else "nothing"
    if etype in _EXPECTED:
        return path_str(loc), f"expected {_EXPECTED[etype]}, got {given_txt}."
    if etype == "literal_error":
        return path_str(loc), f"{given_txt} is not allowed; {err.get('msg', '').replace('Input should be', 'use')}."
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    return path_str(loc), f"{msg} (got {given_txt})."


def _rejoin_flow_priors(priors: Any, source: str) -> Any:
    """Undo YAML flow-mapping splits of prior calls.

    In ``priors: {b: normal(0, 0.25), sd: halfnormal(1)}`` YAML's flow syntax splits at the
    comma inside the parentheses, giving ``{b: 'normal(0', '0.25)': None, sd: ...}``.
    The spec format documents exactly this one-line form, so the pieces are rejoined.
    """
    if not isinstance(priors, dict):
        return priors
    out: dict = {}
    items = list(priors.items())
    i = 0
    while i < len(items):
        key, val = items[i]
        i += 1
        if isinstance(val, str) and val.count("(") > val.count(")"):
            parts = [val]
            while "".join(parts).count("(") > "".join(parts).count(")") and i < len(items) and items[i][1] is None:
                parts.append(str(items[i][0]))
                i += 1
            val = ", ".join(parts)
            if val.count("(") != val.count(")"):
                raise SpecError(
                    f"the prior '{val}' has unbalanced parentheses; quote it, e.g. {key}: \"normal(0, 1)\".",
                    where=f"{source}: priors.{key}",
                )
        out[key] = val
    return out


def parse_spec(raw: Any, base_dir: Path | str = ".", source: str = "spec", source_text: str | None = None) -> Spec:
    """Validate a mapping (as read from YAML) into a :class:`Spec`."""
    if not isinstance(raw, dict):
        raise SpecError(
            f"{source} must be a YAML mapping with keys such as title, data, outcome, treatment, analyses; got {type(raw).__name__}."
        )
    if "priors" in raw:
        raw = {**raw, "priors": _rejoin_flow_priors(raw["priors"], source)}
    if isinstance(raw.get("analyses"), list):  # an analysis's own priors are written the same way
        raw = {
            **raw,
            "analyses": [
                {**a, "priors": _rejoin_flow_priors(a["priors"], f"{source}: analyses[{i}]")}
                if isinstance(a, dict) and "priors" in a
                else a
                for i, a in enumerate(raw["analyses"])
            ],
        }
    try:
        spec = Spec.model_validate({**raw, "base_dir": Path(base_dir), "source_text": source_text})
    except ValidationError as exc:
        # an unknown key usually explains a "missing" one (a misspelling): report it first
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        where, why = _explain(errors[0], Spec)
        more = f" ({len(errors) - 1} more problem(s) after this one.)" if len(errors) > 1 else ""
        raise SpecError(f"{why}{more}", where=f"{source}: {where}") from None
    except SpecError as exc:  # prior parsing inside validators
        raise SpecError(exc.message, where=f"{source}: {exc.where}") from None
    return spec


def read_yaml(path: str | Path, what: str = "spec", hint: str = "give the path of a YAML study spec") -> tuple[Any, str]:
    """Read a YAML file with the safe loader; every problem is one SpecError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"the {what} file '{path}' does not exist; {hint}.")
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            f"the YAML cannot be read{at}: {problem}. Check indentation and quoting (quote expressions that contain ':' or '#').",
            where=str(path),
        ) from None
    except UnicodeDecodeError:
        raise SpecError(f"the {what} file is not UTF-8 text.", where=str(path)) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a study spec from a YAML file (safe loader only)."""
    path = Path(path)
    raw, text = read_yaml(path)
    return parse_spec(raw, base_dir=path.parent.resolve(), source=path.name, source_text=text)
