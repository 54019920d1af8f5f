"""A design block resolved against its spec: level shares, group sizes, simulated data.

:func:`resolve_plan` turns ``spec.design`` into a :class:`Plan` (every check that needs the
spec or the pilot file happens here, before anything is written): each modifier's codes and
shares (from ``design.modifiers`` or the pilot file's marginals), each control's distribution,
the outcome's scale, and per analysis the full crossing of its modifiers with every group's
expected share. :func:`expected_sizes` gives the expected group-size table for a planned N;
:func:`simulate_frame` draws one data set of the planned design with a known truth, through the
simulation study's generator (:mod:`hetreport.simstudy.dgp`).

Families: gaussian, and bernoulli (a 0/1 outcome with ``design.base_rate``, the expected share of 1s
in the control arm; effects are differences in probability). Analyses with other families, or with
their own outcome, are registered but not simulated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..data import canonical_code, code_key, read_table
from ..errors import SpecError, suggest
from ..groups import terms
from ..simstudy.dgp import (
    bernoulli_outcome,
    cell_means,
    draw_binary,
    draw_levels,
    gaussian_outcome,
    group_effects,
    term_coefficients,
)
from ..simstudy.generate import derived_seed
from ..spec import Spec

#: the families pre-registration can simulate and mock
SUPPORTED_FAMILIES = ("gaussian", "bernoulli")
#: simulated probabilities are kept within these bounds (a group's true effect is clipped to them)
P_MIN, P_MAX = 0.005, 0.995


@dataclass(frozen=True)
class Categorical:
    name: str
    codes: tuple
    shares: tuple[float, ...]
    labels: tuple[str, ...]
    source: str  # "design" or "pilot"


@dataclass(frozen=True)
class Normal:
    name: str
    mean: float
    sd: float
    source: str


@dataclass(frozen=True)
class AnalysisPlan:
    name: str
    title: str
    modifiers: tuple[str, ...]
    controls: tuple[str, ...]
    mode: str
    groups: pd.DataFrame  # group, <modifier codes>, group_label, share (expected)
    term_list: tuple[tuple[str, ...], ...]
    #: the analysis's family (gaussian, or bernoulli on the same 0/1 outcome)
    family: str = "gaussian"


@dataclass(frozen=True)
class Plan:
    spec: Spec
    sizes: tuple[int, ...]
    sds: tuple[float, ...]
    p_treat: float
    outcome_mean: float
    outcome_sd: float
    outcome_sd_source: str
    average_effect: float
    replications: int
    seed: int
    min_arm: int
    variables: dict  # name -> Categorical | Normal (modifiers and controls)
    analyses: tuple[AnalysisPlan, ...]
    simulated: tuple[str, ...]  # analyses the detection simulation covers
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: the simulated outcome: "gaussian" (continuous) or "bernoulli" (0/1, when any analysis is bernoulli)
    outcome_family: str = "gaussian"
    #: bernoulli: the expected share of 1s in the control arm (design.base_rate)
    base_rate: float | None = None

    def analysis(self, name: str) -> AnalysisPlan:
        return next(a for a in self.analyses if a.name == name)


def _pilot_frame(spec: Spec) -> pd.DataFrame | None:
    from ..data import _apply_filter
    from ..expr import compile_expr

    pilot = spec.design.pilot
    if pilot is None:
        return None
    from pathlib import Path

    path = Path(pilot.path)
    path = path if path.is_absolute() else spec.base_dir / path
    if not path.is_file():
        raise SpecError(
            f"the pilot file '{path}' does not exist; design.pilot.path is read relative to the spec file's folder.",
            where="design.pilot.path",
        )
    frame, _, _, _ = read_table(path, pilot.format, pilot.sheet)
    for name, text in pilot.derive.items():
        frame[name] = compile_expr(text, where=f"design.pilot.derive.{name}", columns=frame.columns).evaluate(frame)
    if pilot.filter:
        keep, _, _ = _apply_filter(frame, pilot.filter, "design.pilot.filter")
        frame = frame.loc[keep].reset_index(drop=True)
    return frame


def _label(spec: Spec, var: str, code) -> str:
    levels = spec.labels.levels.get(var, {})
    for k, v in levels.items():
        if code_key(k) == code_key(code):
            return str(v)
    return str(canonical_code(code))


def _ordered(spec: Spec, var: str, codes: list) -> list:
    """Level order: the spec's labels order first (as data.py does), then sorted codes."""
    order = [code_key(k) for k in spec.labels.levels.get(var, {})]
    first = [c for o in order for c in codes if code_key(c) == o]
    rest = [c for c in codes if code_key(c) not in order]
    try:
        rest = sorted(rest, key=float)
    except (TypeError, ValueError):
        rest = sorted(rest, key=str)
    return first + rest


def _from_pilot(spec: Spec, frame: pd.DataFrame | None, var: str, role: str, where: str, categorical: bool):
    if frame is None:
        raise SpecError(
            f"{role} '{var}' has no planned distribution. Add it under design.{'modifiers' if role == 'modifier' else 'controls'}."
            f"{var} (e.g. {{levels: {{0: 0.5, 1: 0.5}}}}{'' if role == 'modifier' else ' or {mean: 0, sd: 1}'}), "
            "or give design.pilot with a file that has the column.",
            where=where,
        )
    if var not in frame.columns:
        raise SpecError(
            f"the pilot file lacks the {role} '{var}'.{suggest(var, frame.columns)} Add the column to the file, derive it with "
            f'design.pilot.derive (e.g. {var}: "..."), or give its planned shares under design.{"modifiers" if role == "modifier" else "controls"}.{var}.',
            where="design.pilot",
        )
    col = frame[var].dropna()
    if col.empty:
        raise SpecError(
            f"the pilot file's column '{var}' has no non-missing values; give its planned shares under design instead.",
            where="design.pilot",
        )
    if categorical or col.nunique() <= 12 or not pd.api.types.is_numeric_dtype(col):
        shares = col.value_counts(normalize=True)
        codes = _ordered(spec, var, [canonical_code(c) for c in shares.index])
        lookup = {code_key(k): float(v) for k, v in shares.items()}
        return Categorical(
            var, tuple(codes), tuple(lookup[code_key(c)] for c in codes), tuple(_label(spec, var, c) for c in codes), "pilot"
        )
    return Normal(var, float(col.mean()), float(col.std(ddof=1)) or 1.0, "pilot")


def _categorical(spec: Spec, var: str, levels: dict) -> Categorical:
    codes = _ordered(spec, var, [canonical_code(k) for k in levels])
    lookup = {code_key(k): float(v) for k, v in levels.items()}
    total = sum(lookup.values())
    return Categorical(
        var, tuple(codes), tuple(lookup[code_key(c)] / total for c in codes), tuple(_label(spec, var, c) for c in codes), "design"
    )


def _group_table(spec: Spec, mods: list[Categorical]) -> pd.DataFrame:
    from ..groups import group_key

    rows = []
    for combo in itertools.product(*[range(len(m.codes)) for m in mods]):
        codes = [m.codes[k] for m, k in zip(mods, combo)]
        share = float(np.prod([m.shares[k] for m, k in zip(mods, combo)]))
        label = ", ".join(
            m.labels[k] if m.labels[k] != str(canonical_code(m.codes[k])) else f"{spec.label(m.name)} = {m.labels[k]}"
            for m, k in zip(mods, combo)
        )
        rows.append(
            {
                "group": group_key([m.name for m in mods], codes),
                **{m.name: c for m, c in zip(mods, codes)},
                "group_label": label,
                "share": share,
            }
        )
    return pd.DataFrame(rows)


def resolve_plan(spec: Spec) -> Plan:
    """Check the design against the spec and resolve shares, scales and groups (raises SpecError)."""
    d = spec.design
    if d is None:
        raise SpecError(
            "this spec has no 'design:' block. `hetreport preregister` plans a study from a design-only spec: replace 'data:' "
            "by 'design:' with the planned N, shares, outcome scale and assumed effects (see examples/tomz-weeks/design.yml).",
            where="design",
        )
    if spec.family not in SUPPORTED_FAMILIES:
        raise SpecError(
            f"pre-registration does not yet support family '{spec.family}': it supports gaussian and bernoulli (a 0/1 outcome "
            "with the expected share of 1s in the control arm as design.base_rate). Its power simulation and mock report need a "
            "simulated outcome on that family's scale. Pre-register the analysis with family: gaussian or bernoulli, or wait for a "
            "release that supports it.",
            where="family",
        )
    pilot = _pilot_frame(spec)
    # analyses with another family (ordinal, poisson, ...) or their own outcome are registered (the record holds them and
    # the conformance check covers them) but not yet simulated or mocked. Bernoulli analyses need a 0/1 outcome with a
    # base rate: without design.base_rate (a gaussian spec whose design gives outcome_sd) they are registered only.
    same = [a for a in spec.analyses if spec.family_of(a) in SUPPORTED_FAMILIES and not (a.outcome and a.outcome != spec.outcome)]
    binary = [a.name for a in same if spec.family_of(a) == "bernoulli"]
    unscaled = binary if (d.base_rate is None and spec.family != "bernoulli") else []
    binary = [n for n in binary if n not in unscaled]
    skipped = [a.name for a in spec.analyses if a not in same or a.name in unscaled]
    names = [a.name for a in same if a.name not in unscaled]
    for i, n in enumerate(d.analyses or []):
        if n in unscaled:
            raise SpecError(
                f"analysis '{n}' has family bernoulli, a model of a 0/1 outcome; to simulate it the design needs design.base_rate "
                "(the expected share of 1s in the control arm, e.g. base_rate: 0.3) in place of outcome_sd and outcome_mean. "
                f"Give base_rate, or remove '{n}' from design.analyses.",
                where=f"design.analyses[{i}]",
            )
        if n not in names:
            raise SpecError(
                f"there is no gaussian or bernoulli analysis of the outcome '{spec.outcome}' named '{n}'.{suggest(n, names)} "
                "design.analyses lists the analyses whose detection is simulated.",
                where=f"design.analyses[{i}]",
            )
    _check_outcome_scale(spec, binary)
    notes = [
        (
            f"Analysis '{n}' has family bernoulli, but the design gives the outcome's scale as outcome_sd rather than as a base rate: "
            "it is registered (and checked for conformance) but has no detection simulation and is left out of the mock report. "
            "Give design.base_rate (the expected share of 1s in the control arm) in place of outcome_sd and outcome_mean to simulate it."
        )
        if n in unscaled
        else (
            f"Analysis '{n}' has its own outcome or a family other than gaussian and bernoulli, which pre-registration does not yet simulate: "
            "it is registered (and checked for conformance) but has no detection simulation and is left out of the mock report."
        )
        for n in skipped
    ]
    variables: dict = {}
    for ai, a in enumerate(spec.analyses):
        if a.name in skipped:
            continue
        for i, m in enumerate(a.modifiers):
            if m in variables:
                continue
            plan = d.modifiers.get(m)
            if plan is not None and plan.levels is not None:
                variables[m] = _categorical(spec, m, plan.levels)
            else:
                variables[m] = _from_pilot(spec, pilot, m, "modifier", f"design.modifiers (analyses[{ai}].modifiers[{i}])", True)
        for i, c in enumerate(a.controls):
            if c in variables:
                continue
            plan = d.controls.get(c) or (d.modifiers.get(c) if c in d.modifiers else None)
            if plan is not None and getattr(plan, "levels", None) is not None:
                variables[c] = _categorical(spec, c, plan.levels)
            elif plan is not None and getattr(plan, "sd", None) is not None:
                variables[c] = Normal(c, float(plan.mean), float(plan.sd), "design")
            else:
                variables[c] = _from_pilot(spec, pilot, c, "control", f"design.controls (analyses[{ai}].controls[{i}])", c in a.categorical)
    for k in d.modifiers:
        if k not in variables:
            raise SpecError(
                f"'{k}' is not a modifier or control of any analysis.{suggest(k, variables)} Remove it or add it to an analysis.",
                where=f"design.modifiers.{k}",
            )
    for k in d.controls:
        if k not in variables:
            raise SpecError(
                f"'{k}' is not a control or modifier of any analysis.{suggest(k, variables)} Remove it or add it to an analysis.",
                where=f"design.controls.{k}",
            )
    if binary:
        # a 0/1 outcome: its mean and SD follow from the base rate (and scale the priors of any linear probability model)
        q = d.base_rate + d.treatment_probability * d.average_effect
        outcome_mean, outcome_sd, sd_source = q, float(np.sqrt(q * (1 - q))), "design.base_rate"
        clipped = _clipped_share(d.base_rate, d.average_effect, max(d.heterogeneity_sds))
        if clipped > 0.05:
            notes.append(
                f"With base rate {d.base_rate:g}, average effect {d.average_effect:g} and heterogeneity SD {max(d.heterogeneity_sds):g}, "
                f"about {clipped:.0%} of the true group effects would put the treated probability outside [{P_MIN:g}, {P_MAX:g}]; "
                "the simulation clips those probabilities and uses the clipped difference as the group's true effect."
            )
    else:
        outcome_sd, sd_source = d.outcome_sd, "design.outcome_sd"
        outcome_mean = d.outcome_mean
    if outcome_sd is None:
        if pilot is None or spec.outcome not in pilot.columns:
            raise SpecError(
                "the outcome's expected scale is missing: give design.outcome_sd (the outcome's standard deviation, e.g. 0.5 for a "
                "0/1 outcome near 50%), or a design.pilot file with the outcome column "
                f"'{spec.outcome}' to take it from.",
                where="design.outcome_sd",
            )
        y = pd.to_numeric(pilot[spec.outcome], errors="coerce").dropna()
        outcome_sd, sd_source = float(y.std(ddof=1)), "the pilot file"
        if "outcome_mean" not in d.model_fields_set:
            outcome_mean = float(y.mean())
    analyses = []
    for a in spec.analyses:
        if a.name in skipped:
            continue
        mods = [variables[m] for m in a.modifiers]
        for m in mods:
            if not isinstance(m, Categorical):
                raise SpecError(
                    f"modifier '{m.name}' must have levels with shares (a modifier defines groups); the pilot file's column "
                    "has many distinct values: bin it with design.pilot.derive, e.g. cut(x, [...]).",
                    where=f"design.modifiers.{m.name}",
                )
        table = _group_table(spec, mods)
        analyses.append(
            AnalysisPlan(
                a.name,
                a.title or a.name,
                tuple(a.modifiers),
                tuple(a.controls),
                a.terms,
                table,
                tuple(terms(tuple(a.modifiers), a.terms)),
                spec.family_of(a),
            )
        )
        G = len(table)
        for i, n in enumerate(d.sizes):
            if n < 2 * G:
                raise SpecError(
                    f"a planned N of {n} is too small for analysis '{a.name}': its modifiers make {G} groups, and every group needs "
                    f"units in both arms, so N must be at least {2 * G} (and in practice many times that). Raise design.n, "
                    "or use fewer modifiers or levels.",
                    where="design.n" if isinstance(d.n, int) else f"design.n[{i}]",
                )
        if (not a.correlated or a.slope_predictors) and a.name in (d.analyses or names):
            notes.append(
                f"Analysis '{a.name}' uses {'uncorrelated terms' if not a.correlated else 'slope predictors'}; the detection simulation "
                "fits it as the correlated model with the same terms (the mock report fits it exactly as specified)."
            )
    simulated = tuple(d.analyses or names)
    min_arm = d.min_arm or spec.report.min_arm
    return Plan(
        spec=spec,
        sizes=tuple(d.sizes),
        sds=tuple(d.heterogeneity_sds),
        p_treat=d.treatment_probability,
        outcome_mean=float(outcome_mean),
        outcome_sd=float(outcome_sd),
        outcome_sd_source=sd_source,
        average_effect=float(d.average_effect),
        replications=d.replications,
        seed=d.seed,
        min_arm=min_arm,
        variables=variables,
        analyses=tuple(analyses),
        simulated=simulated,
        notes=tuple(notes),
        outcome_family="bernoulli" if binary else "gaussian",
        base_rate=float(d.base_rate) if binary else None,
    )


def _check_outcome_scale(spec: Spec, binary: list[str]) -> None:
    """The outcome's planned scale matches the families: base_rate for a 0/1 (bernoulli) outcome, outcome_sd otherwise."""
    d = spec.design
    if binary:
        who = "the spec's family is bernoulli" if spec.family == "bernoulli" else f"analysis '{binary[0]}' has family bernoulli"
        if d.base_rate is None:
            raise SpecError(
                f"{who}, a model of a 0/1 outcome, so the design needs design.base_rate: the expected share of 1s in the "
                "control arm (e.g. base_rate: 0.3). design.average_effect and design.heterogeneity_sd are then differences in "
                "that probability between treatment and control (e.g. average_effect: 0.05 for 5 percentage points).",
                where="design.base_rate",
            )
        for key in ("outcome_sd", "outcome_mean"):
            if key in d.model_fields_set:
                raise SpecError(
                    f"{who}, so the outcome is 0/1 and its mean and SD follow from design.base_rate (the expected share of 1s "
                    f"in the control arm); remove design.{key}.",
                    where=f"design.{key}",
                )
        treated = d.base_rate + d.average_effect
        if not 0 < treated < 1:
            raise SpecError(
                f"with base rate {d.base_rate:g} an average effect of {d.average_effect:g} puts the treated arm's probability at "
                f"{treated:g}, outside 0 to 1. For family bernoulli design.average_effect is a difference in probability: "
                f"choose it so that base_rate + average_effect lies strictly between 0 and 1 (here above {-d.base_rate:g} and below "
                f"{1 - d.base_rate:g}).",
                where="design.average_effect",
            )
    elif d.base_rate is not None:
        raise SpecError(
            "design.base_rate is the expected share of 1s of a 0/1 outcome analysed with family: bernoulli, but every simulated "
            f"analysis here is {spec.family}. Set family: bernoulli (for the spec or an analysis), or remove base_rate and give the "
            "outcome's expected scale as design.outcome_sd (and optionally design.outcome_mean).",
            where="design.base_rate",
        )


def _clipped_share(base_rate: float, average: float, sd: float) -> float:
    """Expected share of groups whose treated probability base_rate + effect falls outside [P_MIN, P_MAX]."""
    if sd <= 0:
        return 0.0
    mu = base_rate + average
    return float(stats.norm.cdf((P_MIN - mu) / sd) + stats.norm.sf((P_MAX - mu) / sd))


# --------------------------------------------------------------------------- expected group sizes


def expected_sizes(plan: Plan, analysis: str, n: int) -> pd.DataFrame:
    """Per group: expected n, treated and control; P(an arm < min_arm) under multinomial sampling."""
    a = plan.analysis(analysis)
    t = a.groups.copy()
    p = plan.p_treat
    k = plan.min_arm
    t["n"] = n * t["share"]
    t["n_treated"] = t["n"] * p
    t["n_control"] = t["n"] * (1 - p)
    # each arm's count is Binomial(N, share * p); the arms are nearly independent for small shares
    p_t = stats.binom.cdf(k - 1, n, t["share"] * p)
    p_c = stats.binom.cdf(k - 1, n, t["share"] * (1 - p))
    t["p_small"] = 1 - (1 - p_t) * (1 - p_c)
    t["p_one_arm"] = 1 - (1 - stats.binom.pmf(0, n, t["share"] * p)) * (1 - stats.binom.pmf(0, n, t["share"] * (1 - p)))
    t["likely_small"] = t["p_small"] >= 0.5
    return t


# --------------------------------------------------------------------------- simulated data


def _coefficients(plan: Plan, analysis: str, sd: float, rng: np.random.Generator) -> dict:
    """The analysis's coefficients in the shared generator's form (:func:`hetreport.simstudy.dgp.term_coefficients`):
    the intercept ``outcome_mean``, the treatment's average effect and one treatment deviation per term level."""
    a = plan.analysis(analysis)
    return term_coefficients(
        a.groups, a.term_list, sd, plan.average_effect, rng, plan.outcome_mean, a.groups["share"], treat=plan.spec.treatment
    )


def true_effects(plan: Plan, analysis: str, sd: float, rng: np.random.Generator) -> pd.Series:
    """Each possible group's true effect: one N(0, s) deviation per term level, s = sd / sqrt(number
    of terms), so the group effects spread with SD ``sd``; the deviations are centred on their
    average over the planned population (weighted by the groups' planned shares), so the population's
    average effect is exactly the assumed one. (Uncentred, the coarse terms' few levels move that
    average by about ``sd / 2`` from one draw to the next: a mock report then showed an average of
    0.28 for an assumed 0.10.)"""
    a = plan.analysis(analysis)
    coefs = _coefficients(plan, analysis, sd, rng)
    return pd.Series(group_effects(coefs, a.groups, plan.spec.treatment), index=a.groups["group"].to_numpy())


def probabilities(plan: Plan, effects) -> tuple[float, np.ndarray]:
    """A 0/1 outcome's control and treated probabilities per group from effects on the probability
    scale: ``base_rate`` and ``base_rate + effect``, each clipped to [P_MIN, P_MAX]."""
    p_control = float(np.clip(plan.base_rate, P_MIN, P_MAX))
    return p_control, np.clip(plan.base_rate + np.asarray(effects, dtype=float), P_MIN, P_MAX)


def _draw(var, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(var, Categorical):
        codes = draw_levels(rng, var.codes, var.shares, n)
        try:
            return codes.astype(float)
        except (TypeError, ValueError):
            return codes
    return rng.normal(var.mean, var.sd, n)


def simulate_frame(
    plan: Plan, n: int, sd: float, seed: int, analysis: str | None = None, columns: list[str] | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """One simulated data set of the planned design: the treatment, every modifier and control
    (independent draws with the planned shares/distributions), and the outcome
    ``outcome_mean + theta_g * T + N(0, outcome_sd)`` with the truth of ``analysis`` (default: the
    first simulated analysis). For a 0/1 outcome (``plan.outcome_family == "bernoulli"``) the outcome
    is Bernoulli with probability ``base_rate`` in the control arm and ``base_rate + theta_g`` in the
    treated arm, both clipped to [P_MIN, P_MAX], and the truth returned is the clipped difference (the
    group's actual effect on the probability scale). Controls do not move the outcome. Returns (frame,
    truth per group).

    The draws are the simulation study's generator (:mod:`hetreport.simstudy.dgp`): covariates with
    ``draw_binary``/``draw_levels`` from ``[seed, 1]``, the coefficients with ``term_coefficients`` from
    ``[seed, 2]``, the means with ``cell_means`` and the outcome with ``gaussian_outcome`` or
    ``bernoulli_outcome``."""
    spec = plan.spec
    analysis = analysis or plan.simulated[0]
    a = plan.analysis(analysis)
    rng = np.random.default_rng([seed, 1])
    coefs = _coefficients(plan, analysis, sd, np.random.default_rng([seed, 2]))
    # the treatment's name in the coefficients' keys is the spec's: no modifier has it (one may be called "treat")
    tname = spec.treatment
    truth = pd.Series(group_effects(coefs, a.groups, tname), index=a.groups["group"].to_numpy())
    treat = draw_binary(rng, plan.p_treat, n)
    drawn = {
        name: _draw(var, n, rng) for name, var in plan.variables.items()
    }  # all drawn: a column does not change with the others asked for
    wanted = columns or list(plan.variables)
    frame = pd.DataFrame({name: values for name, values in drawn.items() if name in wanted}, index=range(n))
    units = pd.DataFrame({tname: treat, **{m: drawn[m] for m in a.modifiers}})
    if plan.outcome_family == "bernoulli":
        p_control, p_treated = probabilities(plan, truth)
        truth = pd.Series(p_treated - p_control, index=truth.index)
        effect = np.clip(plan.base_rate + group_effects(coefs, units, tname), P_MIN, P_MAX) - p_control
        y = bernoulli_outcome(p_control + effect * treat, rng)
    else:
        y = gaussian_outcome(cell_means(coefs, units), plan.outcome_sd, rng)
    tv = spec.treated_value
    if tv is None:
        frame.insert(0, spec.treatment, treat)
    else:
        other = 0 if isinstance(tv, (int, float)) and tv != 0 else ("control" if isinstance(tv, str) else 1)
        frame.insert(0, spec.treatment, np.where(treat == 1, tv, other))
    frame.insert(0, spec.outcome, y)
    return frame, truth


__all__ = [
    "P_MAX",
    "P_MIN",
    "SUPPORTED_FAMILIES",
    "AnalysisPlan",
    "Categorical",
    "Normal",
    "Plan",
    "derived_seed",
    "expected_sizes",
    "probabilities",
    "resolve_plan",
    "simulate_frame",
    "true_effects",
]
