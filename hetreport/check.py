"""Everything before the first fit: the spec checked, the data read, every analysis prepared and its
model sized, with nothing heavy imported (no PyMC, ArviZ, bambi, statsmodels or plotting).

``prepare`` is the first step of :func:`hetreport.api.fit`, so a spec or data error, or a model
above the limits on work, is reported within a second of starting; ``hetreport check SPEC``
prints the same preparation (``check``) and stops.

The size of a hierarchical model (``ModelSize``) is counted from its design: G groups, T varying
terms (every non-empty combination of the k modifiers, 2^k - 1, or only their crossing), L levels
(each term's observed combinations). The correlated model's parameters are the intercept, the common
slope, p control coefficients, an intercept SD, a slope SD and a correlation per term, sigma (gaussian),
and a standardised intercept and slope per level: 2 + p + 3T + 1 + 2L (the uncorrelated model has no
correlations: 2T; slope predictors add 2 each; ordinal models have cutpoints in place of the intercept,
negative binomial a dispersion). The posterior that is kept holds per draw the group effects,
intercepts and crossing slopes (3G), the three per-term scales (3T), p coefficients and a few scalars;
its size is chains x draws x 8 bytes x that count. Peak memory and time are rough estimates from
measurements on a 2-core machine (``MEASUREMENTS`` below), shown as such.
"""

from __future__ import annotations

import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError, SpecError, clean_text, shorten
from .spec import Analysis, Limits, Spec, load_spec

#: rough costs measured on a 2-core machine (Tomz-Weeks respondents: 100 groups, 15 terms, 323 levels,
#: 4 chains x 2,000 iterations: compile ~50 s, sampling ~40 s quiet; the project's shared measurements and
#: benchmarks/bench_check.py): Python and the libraries loaded, graph compile per term, sampling per
#: iteration of one chain per unit of gradient work (groups x terms + parameters + unit rows for non-Gaussian
#: per-unit likelihoods)
BASE_MEMORY_BYTES = 600e6
COMPILE_BASE_S = 15.0
COMPILE_PER_TERM_S = 2.5
ITERATION_PER_WORK_S = 2.5e-6
#: the kept posterior is copied about this many times while it is summarised and saved
POSTERIOR_COPIES = 3


@dataclass(frozen=True)
class ModelSize:
    """The size and rough cost of one analysis's hierarchical model, before it is built."""

    groups: int
    one_arm: int
    small_arm: int
    terms: int
    levels: int | None  # None: not counted (more terms than the limit)
    parameters: int | None
    stored_per_draw: int | None
    draws_kept: int  # chains x draws
    posterior_bytes: int | None
    memory_bytes: int | None
    seconds: float | None

    @property
    def one_arm_share(self) -> float:
        return self.one_arm / self.groups if self.groups else 0.0


@dataclass(frozen=True)
class PreparedAnalysis:
    analysis: Analysis
    data: object  # AnalysisData
    groups: object  # Groups
    size: ModelSize
    formula_bambi: str
    formula_brms: str
    refusal: str | None = None  # why the limits refuse this model, or None


@dataclass(frozen=True)
class PreparedStudy:
    spec: Spec
    dataset: object  # Dataset
    analyses: tuple[PreparedAnalysis, ...]
    seconds: float = 0.0
    #: the conformance with a pre-registration (``conformance.check``), when the spec names one
    conformance: dict | None = None

    @property
    def refusals(self) -> list[str]:
        return [p.refusal for p in self.analyses if p.refusal]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def level_counts(groups, term_list) -> list[int]:
    """The observed levels of each term: distinct combinations of its modifiers among the groups."""
    import numpy as np

    positions = groups.table.attrs.get("level_positions", {})
    codes = {m: np.array([positions[m][k] for k in groups.table[m].map(_key)]) for m in groups.modifiers}
    sizes = {m: len(positions[m]) for m in groups.modifiers}
    out = []
    for term in term_list:
        flat = np.zeros(groups.n_groups, dtype=np.int64)
        for m in term:
            flat = flat * sizes[m] + codes[m]
        out.append(len(np.unique(flat)))
    return out


def _key(v):
    from .data import code_key

    return code_key(v)


def model_size(spec: Spec, analysis: Analysis, adata, groups) -> ModelSize:
    """Count the model's groups, terms, levels and parameters from the design, and estimate its memory
    and time (see the module docstring)."""
    from .groups import terms

    limits = spec.work_limits
    sampler = spec.sampler_of(analysis)
    table = groups.table
    G = groups.n_groups
    one_arm = int(table["one_arm"].sum())
    small = int(table["small_arm"].sum())
    k = len(groups.modifiers)
    T = 1 if analysis.terms == "crossing" else 2**k - 1
    kept = sampler.chains * sampler.draws
    if T > limits.terms:
        return ModelSize(G, one_arm, small, T, None, None, None, kept, None, None, None)
    L = sum(level_counts(groups, terms(groups.modifiers, analysis.terms)))
    p = adata.control_matrix.shape[1]
    q = len(analysis.slope_predictors)
    family = adata.family
    scales = 3 * T if analysis.correlated else 2 * T
    head = (len(adata.categories) - 1 if family == "ordinal" else 1) + 1  # intercept (or cutpoints), common slope
    extra = (1 if family == "gaussian" else 0) + (1 if family == "negativebinomial" else 0)
    parameters = head + p + scales + extra + 2 * L + 2 * q
    # kept per draw: group_effect, group_intercept, crossing_slope (+ systematic_slope, + group_slope for
    # non-Gaussian families), sd_intercept, sd_slope, rho per term, beta, lambda/gamma, Intercept, b_treat,
    # sigma, average_effect, sigma_theta
    group_vars = 3 + (1 if q else 0) + (1 if family != "gaussian" else 0)
    stored = group_vars * G + 3 * T + p + 2 * q + head + extra + 2
    if family == "ordinal":
        stored += G * (len(adata.categories) - 1)  # effects on P(y >= k) for every k
    posterior = kept * stored * 8
    memory = int(BASE_MEMORY_BYTES + POSTERIOR_COPIES * posterior + 8 * 4 * G * T)  # + the graph's group-by-term index arrays
    rows = 0 if family == "gaussian" else adata.n  # per-unit likelihood
    work = G * T + parameters + rows
    iterations = sampler.chains * (sampler.draws + sampler.tune) / min(sampler.chains, _cores())
    seconds = COMPILE_BASE_S + COMPILE_PER_TERM_S * T + iterations * ITERATION_PER_WORK_S * work * (2 if not analysis.correlated else 1)
    return ModelSize(G, one_arm, small, T, L, parameters, stored, kept, posterior, memory, seconds)


def refusal(spec: Spec, analysis: Analysis, size: ModelSize, n: int) -> str | None:
    """Why the limits on work refuse this model (one paragraph with the numbers and what to do), or None."""
    import math

    lim: Limits = spec.work_limits
    k = len(analysis.modifiers)
    over, needed = [], []
    if size.terms > lim.terms:
        over.append(f"{size.terms:,} varying terms (limit {lim.terms:,}; limits.terms)")
        needed.append(f"terms: {size.terms}")
    if size.parameters is not None and size.parameters > lim.parameters:
        over.append(f"{size.parameters:,} parameters (limit {lim.parameters:,}; limits.parameters)")
        needed.append(f"parameters: {size.parameters}")
    if size.memory_bytes is not None and size.memory_bytes > lim.memory_gb * 1e9:
        over.append(f"about {size.memory_bytes / 1e9:.1f} GB of memory (limit {lim.memory_gb:g} GB; limits.memory_gb)")
        needed.append(f"memory_gb: {math.ceil(size.memory_bytes / 1e9)}")
    if size.one_arm_share > lim.one_arm_groups:
        over.append(
            f"{size.one_arm:,} of its {size.groups:,} groups with units in only one treatment arm "
            f"({size.one_arm_share:.0%}; limit {lim.one_arm_groups:.0%}; limits.one_arm_groups)"
        )
        needed.append("one_arm_groups: 1")
    if not over:
        return None
    fixes = ["fewer modifiers"]
    if analysis.terms == "all" and k > 1:
        fixes.append("`terms: crossing` (one term over the full crossing instead of every combination)")
    fixes.append("coarser levels (data.bins, or a derived column that merges levels)")
    cost = f"about {_duration(size.seconds)}" if size.seconds else "far longer than the limits allow"
    return (
        f"analysis '{analysis.name}' asks for a model of {size.groups:,} groups from {n:,} rows with "
        + "; ".join(over)
        + f". Fitting it would take {cost}. Use "
        + ", or ".join(fixes)
        + ". If this model is meant, raise the limit in the spec: limits: {"
        + ", ".join(needed)
        + "}."
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:,.0f} days"


def prepare(spec: Spec | str | Path, *, log=None, enforce_limits: bool = True) -> PreparedStudy:
    """Read the data and prepare every analysis (rows, coding, groups, formulas, size) without fitting.
    Raises the first spec or data error; with ``enforce_limits``, a ModelError for a model above the
    limits on work."""
    from .contrasts import check_comparisons
    from .data import load_data, prepare_analysis
    from .groups import build_groups, model_formulas
    from .targeting import check_targeting

    t0 = time.perf_counter()
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    _ = spec.data_path  # a design-only spec: the error that says so
    say = log or (lambda msg: None)
    dataset = load_data(spec)
    say(f"read {dataset.path.name}: {dataset.n_read:,} rows" + (f", {len(dataset.frame):,} after the filter" if spec.data.filter else ""))
    out = []
    for analysis in spec.analyses:
        adata = prepare_analysis(spec, dataset, analysis)
        groups = build_groups(adata, spec.report.min_arm)
        check_comparisons(analysis, adata.modifiers, groups.table, spec.analyses.index(analysis))  # before any fitting
        check_targeting(spec, groups.table, analysis.name)
        if analysis.slope_predictors and not analysis.correlated:
            raise SpecError(
                "slope_predictors need the correlated model (the default); remove 'correlated: false' from this analysis.",
                where=f"analysis '{analysis.name}'",
            )
        if analysis.slope_predictors:  # found here, not after the earlier analyses' fits (models/hierarchical.py says the same)
            try:
                groups.table[list(analysis.slope_predictors)].to_numpy(dtype=float)
            except (TypeError, ValueError):
                raise SpecError(
                    f"slope predictors must have numeric codes (they enter linearly); {list(analysis.slope_predictors)} include text. "
                    "Recode them with data.derive, e.g. map(x, {'low': 1, 'high': 2}).",
                    where=f"analysis '{analysis.name}'",
                ) from None
        _warn_many_levels(spec, dataset, analysis, adata, groups)
        bambi, brms = model_formulas(adata, groups, analysis.terms, analysis.correlated, tuple(analysis.slope_predictors))
        size = model_size(spec, analysis, adata, groups)
        out.append(PreparedAnalysis(analysis, adata, groups, size, bambi, brms, refusal(spec, analysis, size, adata.n)))
    study = PreparedStudy(spec, dataset, tuple(out), time.perf_counter() - t0)
    if enforce_limits and study.refusals:
        raise ModelError(" ".join(study.refusals))
    return study


#: an unlabelled whole-number modifier with at least this many values gets a warning suggesting bins
MANY_LEVELS = 8


def _warn_many_levels(spec: Spec, dataset, analysis: Analysis, adata, groups) -> None:
    """An integer modifier with many values and no value labels is probably a count or a scale that
    was meant to be binned (data.py refuses more than MAX_MODIFIER_LEVELS; below that it is a warning)."""
    import warnings

    import pandas as pd

    from .errors import HetreportWarning

    ai = spec.analyses.index(analysis)
    for i, m in enumerate(adata.modifiers):
        labelled = bool(spec.labels.levels.get(m.name)) or bool(dataset.value_labels.get(m.name))
        numeric = pd.api.types.is_numeric_dtype(dataset.frame[m.name].dtype)
        if numeric and not labelled and m.name not in spec.data.bins and len(m.levels) >= MANY_LEVELS:
            t = groups.table
            warnings.warn(
                f"analyses[{ai}].modifiers[{i}]: the modifier '{m.name}' has {len(m.levels)} distinct whole-number values and no "
                f"value labels, so every value is a level of its own: with it analysis '{analysis.name}' has {groups.n_groups:,} "
                f"groups, {int(t['one_arm'].sum()):,} of them with only one arm. If it is a count or a scale, bin it, e.g. "
                f"data.bins: {{{m.name}: {{quantiles: 4}}}}; if its values are categories, label them under labels.levels.{m.name}.",
                HetreportWarning,
                stacklevel=3,
            )


# --------------------------------------------------------------------------- hetreport check


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(
        text, width=100, initial_indent=indent, subsequent_indent=indent + "  ", break_long_words=False, break_on_hyphens=False
    )


def summary(study: PreparedStudy) -> str:
    """What `hetreport check` prints: the data, and per analysis its groups, model, size and cost."""
    spec, ds = study.spec, study.dataset
    lines = [
        f"{clean_text(spec.title)}",
        f"data: {ds.path.name} ({ds.format}), {ds.n_read:,} rows read"
        + (f", {len(ds.frame):,} kept by data.filter" if spec.data.filter else ""),
    ]
    for note in ds.notes:
        lines.append(_wrap(note))
    conf = study.conformance
    if conf is not None:
        status = "as registered" if conf["as_registered"] else f"{len(conf['deviations'])} deviation(s) from the registration"
        lines.append(
            _wrap(
                f"pre-registration {conf['hash12']} ({conf['registered']}): {status}"
                + "".join(f"; {d['text']}" for d in conf["deviations"][:8]),
                "",
            )
        )
    for p in study.analyses:
        a, ad, g, s = p.analysis, p.data, p.groups, p.size
        t = g.table
        sampler = spec.sampler_of(a)
        lines += [
            "",
            f"analysis '{a.name}': {clean_text(ad.title)}",
            f"  rows: {ad.n:,} of {ad.n_start:,} after removing missing values; family {ad.family}",
            _wrap(
                "modifiers: "
                + ", ".join(f"{m.name} ({len(m.levels)} levels)" for m in ad.modifiers)
                + (f"; controls: {', '.join(ad.controls)}" if ad.controls else ""),
                "  ",
            ),
        ]
        both = t.loc[~t["one_arm"]]
        smallest = both.assign(arm=both[["n_treated", "n_control"]].min(axis=1)).sort_values(["arm", "n"]).head(3)
        lines.append(
            f"  groups: {s.groups:,} of {g.n_possible:,} possible; {s.one_arm:,} with only one arm, "
            f"{s.small_arm:,} with an arm under {g.min_arm} units"
        )
        if len(smallest):
            lines.append(
                _wrap(
                    "smallest arms: "
                    + "; ".join(
                        f"{clean_text(r.group_label)} ({r.n_treated} treated, {r.n_control} control)" for r in smallest.itertuples()
                    ),
                    "  ",
                )
            )
        if s.one_arm:
            names = t.loc[t["one_arm"], "group_label"].tolist()
            lines.append(_wrap("one arm only: " + "; ".join(clean_text(x) for x in names[:5]) + ("; …" if len(names) > 5 else ""), "  "))
        ols = "OLS with every interaction, OLS without interactions, subgroup differences"
        if ad.family != "gaussian":
            ols += f", {'an' if ad.family[0] in 'aeiou' else 'a'} {ad.family} GLM with every interaction"
        lines.append(
            _wrap(
                f"models: {ols}; hierarchical ({'correlated' if a.correlated else 'uncorrelated'} intercepts "
                f"and slopes, terms: {a.terms}, {sampler.backend}, {sampler.chains} chains x {sampler.draws} draws after {sampler.tune} tuning)",
                "  ",
            )
        )
        lines.append(_wrap(f"brms:  {shorten(p.formula_brms, 400)}", "  "))
        lines.append(_wrap(f"bambi: {shorten(p.formula_bambi, 400)}", "  "))
        if s.parameters is None:
            lines.append(f"  size: {_count(s.terms, 'varying term')} (levels and parameters not counted: above limits.terms)")
        else:
            lines.append(
                _wrap(
                    f"size: {_count(s.terms, 'varying term')}, {_count(s.levels, 'level')}, {_count(s.parameters, 'parameter')}; "
                    f"posterior kept {s.posterior_bytes / 1e6:,.1f} MB, peak memory about {s.memory_bytes / 1e9:.1f} GB",
                    "  ",
                )
            )
            lines.append(
                _wrap(
                    f"estimated fitting time: about {_duration(s.seconds)} on {_count(min(sampler.chains, _cores()), 'core')} "
                    "(rough: from measurements on a quiet 2-core machine; longer when the machine is busy)",
                    "  ",
                )
            )
        if p.refusal:
            lines.append(_wrap("REFUSED: " + p.refusal, "  "))
    lines += [
        "",
        (
            f"{len(study.refusals)} of {len(study.analyses)} analyses are above the limits on work; `hetreport run` would refuse."
            if study.refusals
            else "The spec and the data are ready: `hetreport run` would fit the models above."
        ),
    ]
    return "\n".join(lines)


def check(spec: Spec | str | Path, *, log=None) -> PreparedStudy:
    """`hetreport check`: prepare without fitting; models above the limits are reported, not raised.
    A spec that names a pre-registration is compared with it (a bad record is an error, as in `run`)."""
    from dataclasses import replace

    from .conformance import check as check_conformance

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    conformance = check_conformance(spec, None)
    return replace(prepare(spec, log=log, enforce_limits=False), conformance=conformance)
