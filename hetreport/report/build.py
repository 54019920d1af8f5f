"""Fill the Jinja templates with a study's results and write a Quarto project.

Templates are documents with holes: every number arrives formatted from ``facts``
through :mod:`hetreport.report.format`, every table is prepared here, and every value
printed by a template is markdown-escaped unless it was prepared as markup. The
environment is sandboxed, so a user's template directory cannot run code either.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined, TemplateError
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from .. import figures as figs
from .. import methods as registry
from .. import outdir
from ..conformance import report_context as conformance_context
from ..data import code_key
from ..errors import RenderError
from ..facts import CREDIBLE, Facts, MethodFact, ModifierFact, compare_models
from ..families import get_family
from ..resources import quarto_yml, templates_dir
from ..results import AnalysisResults, Diagnostics, Modifier, StudyResults, _json_default
from . import format as fmt
from .brief import attribute_text, headline_analysis, render_documents, write_brief
from .paper import lighten_heavy_svgs, write_paper
from .questions import analysis_questions, loo_context
from .render import RenderOutcome, describe_route
from .template_data import Kept, View, template_data  # noqa: F401 (View, template_data: re-exported for callers and tests)

#: the report's name of every approach, from the method registry
METHOD_NAMES = {m.name: m.title for m in registry.REGISTRY.values()}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "analysis"


# A line of text that ends in a closing block tag (`... sentence.{% endif %}`): trim_blocks would
# eat its newline and glue the next line on (a heading after it stops being a heading, two
# paragraphs become one). Such lines get one more newline, which trim_blocks then removes;
# lines holding only tags are trimmed as before.
_TEXT_THEN_END_TAG = re.compile(r"^(?P<line>[^\n]*\{%-?\s*end\w+\s*-?%\})[ \t]*\n", re.MULTILINE)
_TAGS = re.compile(r"\{%.*?%\}|<#--.*?--#>")


class _KeepTextLineEnds(Extension):
    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        def fix(m: re.Match) -> str:
            line = m.group("line")
            return line + ("\n\n" if _TAGS.sub("", line).strip() else "\n")

        return _TEXT_THEN_END_TAG.sub(fix, source)


class _InsideLoader(FileSystemLoader):
    """A template folder whose files resolve inside it: a symbolic link (or any path) that leads
    out of the folder is not a template, so an include cannot read a file from elsewhere."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        real = os.path.realpath(filename)
        if not any(real.startswith(os.path.realpath(root) + os.sep) for root in self.searchpath):
            raise TemplateError(
                f"template '{template}' is '{filename}', which leads out of its folder to '{real}' "
                f"(a symbolic link); templates are read only from inside their folder"
            )
        return source, filename, uptodate


def environment(user_dir: Path | None = None) -> SandboxedEnvironment:
    loaders = ([_InsideLoader(str(user_dir), followlinks=False)] if user_dir else []) + [_InsideLoader(str(templates_dir()))]
    env = SandboxedEnvironment(
        loader=ChoiceLoader(loaders),
        finalize=fmt.md_finalize,
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # pandoc attributes are written {#id}: Jinja comments use other delimiters
        comment_start_string="<#--",
        comment_end_string="--#>",
        extensions=[_KeepTextLineEnds],
    )
    env.filters.update(
        num=fmt.num,
        count=fmt.count,
        pct=fmt.pct,
        interval=fmt.interval,
        effect=fmt.effect,
        effect_range=fmt.effect_range,
        md=fmt.md,
        ci=fmt.ci,
        yaml_md=fmt.yaml_md,
        yaml_date=fmt.yaml_date,
        code=fmt.code,
        share=fmt.share,
    )
    return env


# --------------------------------------------------------------------------- display data


def plain(text) -> str:
    """A label for a figure: matplotlib reads $...$ as math, so a dollar sign is escaped."""
    return str(text).replace("$", r"\$")


def display_effects(a: AnalysisResults, effects: pd.DataFrame) -> pd.DataFrame:
    """One analysis's effects with modifier columns as ordered label categoricals (for figures)."""
    eff = effects[effects["analysis"] == a.name].copy()
    eff["group_label"] = eff["group_label"].map(plain)
    for m in a.modifiers:
        lookup = {code_key(c): plain(lab) for c, lab in zip(m.levels, m.level_labels)}
        cats = list(dict.fromkeys(plain(lab) for lab in m.level_labels))
        eff[m.name] = pd.Categorical(eff[m.name].map(code_key).map(lookup), categories=cats, ordered=True)
    drop = [
        c for c in eff.columns if c not in eff.columns[:3] and eff[c].isna().all() and c not in ("prob_positive", "median", "p_value", "df")
    ]
    return eff.drop(columns=[c for c in drop if c not in a.modifier_names and c != "truth"])


def names_for(a: AnalysisResults, unit: fmt.Unit | None = None) -> dict[str, str]:
    """Axis and legend names of one analysis's figures; the effect axis says the outcome's unit when
    ``labels.units`` gives one ("Effect of Alliance on Earnings ($)")."""
    out = {m.name: plain(m.label) for m in a.modifiers}
    out["estimate"] = plain(f"Effect of {a.treatment} on {a.outcome}" + (f" ({unit.text})" if unit is not None else ""))
    out["y"] = plain(a.outcome)
    return out


def default_facet(a: AnalysisResults, requested: str | None) -> str:
    if requested and requested in a.modifier_names:
        return requested
    first = a.modifiers[:2]
    return min(first, key=lambda m: len(m.levels)).name


def heatmap_axes(a: AnalysisResults, requested: list[str] | None) -> tuple[str, str, str | None]:
    mods = list(a.modifiers)
    if requested and all(r in a.modifier_names for r in requested):
        x, y = requested
    else:
        ranked = sorted(mods, key=lambda m: -len(m.levels))
        x, y = ranked[0].name, ranked[1].name
    rest = [m for m in mods if m.name not in (x, y)]
    n_rest = int(np.prod([len(m.levels) for m in rest])) if rest else 1
    facet = "__facet" if rest and n_rest <= 8 else None
    return x, y, facet


# --------------------------------------------------------------------------- figures


def write_figures(a: AnalysisResults, effects: pd.DataFrame, facts: Facts, folder: Path, spec) -> dict[str, dict]:
    """Every figure of one analysis as PNG (200 dpi) and SVG; returns id -> {path, caption, alt}."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = _slug(a.name)
    eff = display_effects(a, effects)
    names = names_for(a, fmt.unit_of(spec.unit_of(spec.analysis(a.name))))
    G = len(a.groups)
    out: dict[str, dict] = {}

    def save(key, plot, kind, caption, alt, n_facets=1):
        stem = folder / f"{slug}-{key}"
        try:  # each plot carries the size it was laid out for (tile grids, unequal facets)
            width, height = plot.theme.getp("figure_size")
        except Exception:
            width, height = figs.figure_size(kind, G, n_facets)
        figs.save_figure(plot, stem, width, height)
        out[key] = {
            "id": Markup(f"fig-{slug}-{key}"),
            "path": Markup(f"figures/{slug}-{key}"),
            "caption": caption,
            "alt": attribute_text(alt),
            "paper": Kept((plot, (width, height))),
        }  # the plot itself for report/paper/, never for templates

    facet = default_facet(a, spec.report.facet)
    facet_label = names[facet]
    n_facets = len(a.modifiers[a.modifier_names.index(facet)].levels)
    shown = registry.figure_methods(eff["method"].unique())
    cmp_caption = (
        f"Each group's effect from {join_words([registry.get(m).text for m in shown])}: point estimate and 95% interval, "
        f"one panel per level of {facet_label}." + (" Crosses mark the true effects." if facts.has_truth else "")
    )
    cmp_alt = (
        f"Dot-and-interval plot comparing {join_words([registry.get(m).label for m in shown])} estimates for each of the {G} groups; the hierarchical "
        f"estimates run from {fmt.num(facts.smallest.effect.estimate)} ({(facts.smallest.label)}) to "
        f"{fmt.num(facts.largest.effect.estimate)} ({(facts.largest.label)})."
    )
    # One row per group: beyond ~60 groups the figure is taller than a page, so it is
    # split by level of the facet modifier into parts that each fit (same x axis).
    parts = figs.comparison_facet_chunks(eff, facet) or [None]
    cmp_keys = []
    for k, levels in enumerate(parts, start=1):
        key = "comparison" if k == 1 else f"comparison-{k}"
        if len(parts) == 1:
            plot, caption = figs.plot_comparison(eff, facet, names=names), cmp_caption
        else:
            plot = figs.plot_comparison(eff, facet, names=names, facet_levels=levels)
            caption = cmp_caption + f" Part {k} of {len(parts)}: {facet_label} {join_words(levels)}; all parts share one horizontal scale."
        save(key, plot, "comparison", caption, cmp_alt, len(levels) if levels else n_facets)
        cmp_keys.append(key)
    out["comparison_parts"] = [out[key] for key in cmp_keys]
    save(
        "shrinkage",
        figs.plot_shrinkage(eff, names=names),
        "shrinkage",
        "Partial pooling: each line joins a group's OLS estimate (left) to its hierarchical estimate (right); larger points are larger groups. "
        "The dashed line is the average hierarchical estimate.",
        f"Lines from OLS to hierarchical estimates for each group; estimates move by {fmt.num(facts.shrinkage['mean_abs_move'])} "
        f"on average, toward the average of {fmt.num(facts.shrinkage['centre'])}.",
    )
    draws = a.group_draws()
    long = pd.DataFrame(
        {
            "group": np.repeat(
                np.asarray(a.posterior.posterior["group"].to_numpy(), dtype=object)[None, :], draws.shape[0], axis=0
            ).ravel(),
            "draw": np.repeat(np.arange(draws.shape[0]), draws.shape[1]),
            "value": draws.ravel(),
        }
    )
    ann = [
        {"role": role, "label": plain(gf.label), "estimate": gf.effect.estimate, "lower": gf.effect.lower, "upper": gf.effect.upper}
        for role, gf in (("smallest", facts.smallest), ("median", facts.median), ("largest", facts.largest))
    ]
    save(
        "distribution",
        figs.plot_distribution(
            long,
            ann,
            sd_all=facts.sd_all_draws,
            sigma_theta=(facts.sigma_theta.estimate, facts.sigma_theta.lower, facts.sigma_theta.upper),
            names=names,
        ),
        "distribution",
        "Posterior distribution of all group effects (draws pooled over groups), with the smallest, median and largest "
        "group effects marked (posterior mean and 95% interval).",
        f"Density of all posterior draws of the group effects; their SD is {fmt.num(facts.sd_all_draws)}, "
        f"the median group's effect {fmt.num(facts.median.effect.estimate)}.",
    )
    save(
        "by-modifier",
        figs.plot_by_modifier(eff, a.modifier_names, names=names),
        "by_modifier",
        "Hierarchical group effects by level of each modifier: each point is a group; boxes show the median and interquartile range "
        "of the groups at that level. Every group appears in every panel.",
        "Box plots of group effects by modifier level"
        + (
            f"; the average effect differs most by {(max(facts.modifiers, key=lambda m: m.range_mean).label)}, by "
            f"{fmt.num(max(facts.modifiers, key=lambda m: m.range_mean).difference.estimate)} between its highest and lowest level."
            if facts.modifiers
            else "."
        ),
        len(a.modifiers),
    )
    x, y, facet_col = heatmap_axes(a, spec.report.heatmap)
    heat = eff.copy()
    if facet_col:
        rest = [m for m in a.modifier_names if m not in (x, y)]
        combo = heat[rest].astype(str).agg(", ".join, axis=1)
        order = list(dict.fromkeys(combo.to_numpy()[np.lexsort([heat[r].cat.codes.to_numpy() for r in reversed(rest)])]))
        heat[facet_col] = pd.Categorical(combo, categories=order, ordered=True)
        names_h = {**names, facet_col: ", ".join(names[r] for r in rest)}
    else:
        names_h = names
    n_f = int(heat[facet_col].nunique()) if facet_col else 1
    save(
        "heatmap",
        figs.plot_heatmap(heat, x, y, facet=facet_col, names=names_h),
        "heatmap",
        f"Hierarchical group effects (posterior means) over {names[x]} and {names[y]}"
        + (
            ", one panel per combination of the other modifiers."
            if facet_col
            else "; cells average the groups that share them (weighted by size)."
        ),
        f"Heat map of group effects over {names_h[x]} and {names_h[y]}, from {fmt.num(facts.smallest.effect.estimate)} to "
        f"{fmt.num(facts.largest.effect.estimate)}.",
        n_f,
    )
    n_ppc = len(a.y_ppc)
    save(
        "ppc",
        figs.plot_ppc(a.y_ppc, a.y_rep, names={**names, "outcome": plain(a.outcome)}),
        "ppc",
        "Posterior predictive check: the observed outcome against outcomes replicated from the fitted hierarchical model"
        + (f", on a random {fmt.count(n_ppc)} of the {fmt.count(a.n)} rows." if n_ppc < a.n else "."),
        f"Observed distribution of {(a.outcome)} ({fmt.count(n_ppc)} values{'' if n_ppc == a.n else f' of {fmt.count(a.n)}, drawn at random'}) against replicated draws from the model.",
    )
    return out


# --------------------------------------------------------------------------- tables


def _md_cell(*parts) -> Markup:
    return Markup("").join(p if isinstance(p, Markup) else fmt.md(p) for p in parts)


def tables_for(
    a: AnalysisResults, effects: pd.DataFrame, facts: Facts, slug: str, min_arm: int, unit: fmt.Unit | None = None
) -> dict[str, Markup]:
    eff = effects[effects["analysis"] == a.name]
    t: dict[str, Markup] = {}
    g = a.groups

    def flag(r) -> str:  # short words, explained in the caption, so the group names get the width
        return "one arm" if r.one_arm else "one-unit arm" if r.singleton_arm else f"arm < {min_arm}" if r.small_arm else ""

    rows = [[r.group_label, fmt.count(r.n), fmt.count(r.n_treated), fmt.count(r.n_control), flag(r)] for r in g.itertuples()]
    t["groups"] = fmt.pipe_table(
        ["Group", "n", "Treated", "Control", "Flag"],
        rows,
        "lrrrl",
        "Group sizes by treatment arm. Flags: one arm, people in only one arm (no within-group contrast); "
        f"one-unit arm, an arm of a single unit (no robust SE); arm < {min_arm}, an arm of fewer than {min_arm} units.",
        f"tbl-{slug}-groups",
        first_wrap=48,
    )
    acc = a.accounting
    rows = [
        [r.label if r.label != r.variable else r.variable, r.role, fmt.count(r.missing), fmt.count(r.removed)] for r in acc.itertuples()
    ]
    rows.append([Markup("**Rows analysed**"), "", "", Markup(f"**{fmt.count(a.n)}** of {fmt.count(a.n_start)}")])
    t["accounting"] = fmt.pipe_table(
        ["Variable", "Role", "Missing", "Removed"],
        rows,
        "llrr",
        "Rows removed for missing values (listwise deletion), in the order of the variables; a row missing on several variables is counted once, at the first.",
        f"tbl-{slug}-rows",
    )
    rows = []
    truth = facts.has_truth
    for mf in facts.methods:
        row = [
            METHOD_NAMES[mf.method],
            fmt.count(mf.n_estimable),
            fmt.num(mf.dispersion),
            fmt.num(mf.mean_width),
            fmt.num(mf.dispersion_ratio, 2),  # ratios: not on the outcome's scale
            fmt.num(mf.width_ratio, 2),
        ]
        if truth:
            row += [fmt.num(mf.rmse, 3), fmt.share(mf.coverage_95), fmt.share(mf.coverage_90)]
        rows.append(row)
    header = ["Approach", "Groups estimated", "SD of estimates", "Mean 95% width", "SD ratio", "Width ratio"]
    if truth:
        header += ["RMSE vs truth", "95% coverage", "90% coverage"]
    t["methods"] = fmt.pipe_table(
        header,
        rows,
        "l" + "r" * (len(header) - 1),
        "Dispersion of the group estimates and mean width of their 95% intervals, over the groups OLS can estimate; ratios are relative to OLS with full interactions."
        + (" RMSE and coverage against the true group effects." if truth else "")
        + (f" SDs, widths and RMSE are {fmt.unit_phrase(unit)}." if unit else ""),
        f"tbl-{slug}-methods",
    )
    fam = get_family(a.hierarchical.family)
    columns = registry.table_methods(eff["method"].unique())  # in registry order; the hierarchical model's link column follows it
    by_method = {m: eff[eff["method"] == m].set_index("group") for m in columns}
    hier = by_method[registry.REFERENCE]
    link_column = not fam.identity and "link_estimate" in hier.columns

    def cell(m: str, o) -> str:
        if registry.get(m).kind == "bayesian":
            return f"{fmt.num(o.estimate)} ({fmt.ci(o.lower_95, o.upper_95)})" if o.estimable else "not estimable"
        if o.estimable and np.isfinite([o.estimate, o.lower_95, o.upper_95]).all():  # facts.estimated, row by row
            return f"{fmt.num(o.estimate)} ({fmt.ci(o.lower_95, o.upper_95)})"
        return fmt.num(o.estimate) + " (no interval)" if o.estimable and np.isfinite(o.estimate) else "not estimable"

    def head(m: str) -> str:
        return (
            "OLS, LPM (95% CI)" if m == registry.BASELINE and fam.name == "bernoulli" else registry.get(m).column or registry.get(m).label
        )

    rows = []
    for r in g.itertuples():
        row = [r.group_label, fmt.count(r.n)]
        for m in columns:
            row.append(cell(m, by_method[m].loc[r.group]))
            if m == registry.REFERENCE and link_column:
                row.append(fmt.num(hier.loc[r.group].link_estimate))
        row.append(fmt.pct(hier.loc[r.group].prob_positive))
        if truth:
            row.append(fmt.num(hier.loc[r.group].truth))
        rows.append(row)
    header = ["Group", "n"]
    for m in columns:
        header.append(head(m))
        if m == registry.REFERENCE and link_column:
            header.append("Hierarchical, " + fam.link_scale)
    header += ["P(effect > 0)"] + (["True"] if truth else [])
    caption = "Effect of the treatment within each group" + (f", {fmt.unit_phrase(unit)}." if unit else ".")
    if not fam.identity:
        caption += (
            f" Effects are differences in {fam.response}, averaged over the group's members; the "
            f"{fam.link_scale} column is the hierarchical model's slope on its linear scale (posterior mean)."
        )
    if sum(registry.get(m).kind == "bayesian" for m in columns) > 1:
        caption += " P(effect > 0) is the hierarchical model's."
    t["effects"] = fmt.pipe_table(header, rows, "l" + "r" * (len(header) - 1), caption, f"tbl-{slug}-effects", first_wrap=40)
    rows = []
    for tf in facts.terms:
        rows.append(
            [
                tf.label,
                fmt.interval(tf.sd_slope),
                fmt.interval(tf.sd_intercept),
                fmt.interval(tf.rho) if tf.rho is not None else "0 (uncorrelated)",
            ]
        )
    t["terms"] = fmt.pipe_table(
        ["Term", "Slope SD", "Intercept SD", "Correlation"],
        rows,
        "lrrr",
        "Standard deviations of the varying slopes and intercepts of each term (posterior mean and 95% interval). The last term's slope SD is σθ.",
        f"tbl-{slug}-terms",
    )
    rows = []
    for mf in facts.modifiers:
        for k, lev in enumerate(mf.levels):
            rows.append([mf.label if k == 0 else "", lev.label, fmt.count(lev.n), fmt.interval(lev.effect)])
    t["modifiers"] = fmt.pipe_table(
        ["Modifier", "Level", "n", f"Average effect (95% interval{', ' + fmt.unit_phrase(unit) if unit else ''})"],
        rows,
        "llrr",
        "Average hierarchical effect at each level of each modifier (weighted by group size, computed per draw).",
        f"tbl-{slug}-levels",
    )
    d = a.diagnostics
    rows = []
    for var, q in d.quantities.items():
        rows.append(
            [
                var,
                "reported" if q.kind == "reported" else "scale (SD)",
                f"{q.max_rhat:.3f}",
                fmt.count(q.min_ess_bulk),
                fmt.count(q.min_ess_tail),
            ]
        )
    t["diagnostics"] = fmt.pipe_table(
        ["Quantity", "Kind", "Max R-hat", "Min bulk ESS", "Min tail ESS"],
        rows,
        "llrrr",
        f"Convergence diagnostics (thresholds: R-hat ≤ {d.thresholds.rhat_max}, ESS ≥ {d.thresholds.ess_min}).",
        f"tbl-{slug}-diagnostics",
    )
    if facts.predictors:
        t["predictors"] = fmt.pipe_table(
            ["Slope predictor", "Change in the effect per unit (λ, 95% interval)"],
            [[pf.label, fmt.interval(pf.lambda_)] for pf in facts.predictors],
            "lr",
            "Slope predictors: how the treatment effect changes with each group characteristic (per unit of its code); "
            "the varying slopes around this line have SD σθ.",
            f"tbl-{slug}-predictors",
        )
    pri = a.hierarchical.priors
    t["priors"] = fmt.pipe_table(
        ["Parameter", "Prior"],
        [[k, v] for k, v in pri.items()],
        "ll",
        "Priors used (after scaling defaults to the outcome where the spec gave none).",
        f"tbl-{slug}-priors",
    )
    return t


# --------------------------------------------------------------------------- text helpers


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{fmt.count(n)} {one if n == 1 else (many or one + 's')}"


def join_words(items: list[str]) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass(frozen=True)
class AnalysisContext(Mapping):
    """What the templates of one analysis read (``c`` in the partials): the records and the words built
    from them. Frozen: the build adds the page-one parts (``q``, ``is_headline``, ``weak``,
    ``best_measured``) with ``dataclasses.replace``. Templates see it through ``template_data`` (plain,
    read-only data); it also reads as a read-only mapping (``c["f"]``) for code written against the
    dict it replaced (report/brief.py)."""

    cmp: Mapping[str, str]  # the comparison of spread and widths in words: spread_words, width_words, meaning
    name: str
    slug: Markup
    title: str
    a: AnalysisResults
    f: Facts
    fig: Mapping[str, Mapping]  # figure key -> {"id", "path", "caption", "alt", ...}
    tbl: Mapping[str, Markup]  # table key -> the pipe table
    modifier_list: str
    n_modifiers: int
    modifiers: tuple[Modifier, ...]
    level_counts: str
    treatment: str
    outcome: str
    controls: list[str]
    hier: MethodFact | None
    ols: MethodFact | None
    methods: Mapping[str, MethodFact]
    ranked_modifiers: list[ModifierFact]
    n_terms: int
    terms_mode: str
    correlated: bool
    formula_bambi: str
    formula_brms: str
    backend: str
    ols_formula: str
    additive_formula: str | None
    se_type: str | None
    credible: float
    largest_credibly_above: bool
    diag: Diagnostics
    sampler: Mapping
    timings: Mapping[str, float]
    notes: list[str]
    n_small: int
    units: str
    unit: str
    effect_unit: fmt.Unit | None  # the outcome's unit (labels.units); None: bare numbers
    term_names: list[str]
    glm: MethodFact | None
    glm_formula: str | None
    likelihood: Mapping
    # family_words: the estimand and the model's linear scale
    family: str
    identity: bool
    link: str
    link_scale: str
    linear_scale: str
    response: str
    probability: bool
    method_notes: list[str]
    headline_notes: list[str]
    figure_extra: list[str]  # the comparison figure's approaches beyond OLS and the hierarchical model, in words
    # added by the build once every analysis has its context
    q: Mapping | None = None  # the questions partials' contexts (report/questions.analysis_questions)
    is_headline: bool = False
    weak: Mapping | None = None  # why page one's largest / smallest group is weakly measured (or None)
    best_measured: object = None  # the largest effect among well-measured groups (a GroupFact), when it differs

    def __getitem__(self, key: str):
        if key not in _CONTEXT_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(_CONTEXT_FIELDS)

    def __len__(self):
        return len(_CONTEXT_FIELDS)


_CONTEXT_FIELDS = tuple(f.name for f in fields(AnalysisContext))


def analysis_context(a: AnalysisResults, results: StudyResults, figures: dict, tables: dict, facts: Facts) -> AnalysisContext:
    slug = _slug(a.name)
    mods = [m.label for m in a.modifiers]
    ms = {mf.method: mf for mf in facts.methods}
    hier, ols = ms.get(registry.REFERENCE), ms.get(registry.BASELINE)
    ranked_mods = sorted(facts.modifiers, key=lambda m: -m.range_mean)
    n_terms = len(a.hierarchical.terms)
    cmp = _comparison_words(hier, ols)
    effect_unit = fmt.unit_of(results.spec.unit_of(results.spec.analysis(a.name)))  # labels.units; None: bare numbers
    context = {
        "cmp": cmp,
        "name": a.name,
        "slug": Markup(slug),
        "title": a.title,
        "a": a,
        "f": facts,
        "fig": figures,
        "tbl": tables,
        "modifier_list": join_words(mods),
        "n_modifiers": len(mods),
        "modifiers": a.modifiers,
        "level_counts": " × ".join(str(len(m.levels)) for m in a.modifiers),
        "treatment": a.treatment,
        "outcome": a.outcome,
        "controls": list(a.controls),
        "hier": hier,
        "ols": ols,
        "methods": {k: v for k, v in ms.items()},
        "ranked_modifiers": ranked_mods,
        "n_terms": n_terms,
        "terms_mode": a.hierarchical.mode,
        "correlated": a.hierarchical.correlated,
        "formula_bambi": a.hierarchical.formula_bambi,
        "formula_brms": a.hierarchical.formula_brms,
        "backend": a.hierarchical.backend,
        "ols_formula": a.ols[registry.BASELINE].formula,
        "additive_formula": a.ols["ols_additive"].formula if "ols_additive" in a.ols else None,
        "se_type": a.ols[registry.BASELINE].se_type,
        "credible": CREDIBLE,
        "largest_credibly_above": facts.prob_largest_above_smallest >= CREDIBLE,
        "diag": a.diagnostics,
        "sampler": a.hierarchical.sampler,
        "timings": a.hierarchical.timings,
        "notes": list(a.notes),
        "n_small": facts.n_small,
        "units": results.spec.report.units,
        "unit": _singular(results.spec.report.units),
        "effect_unit": effect_unit,
        "term_names": [" × ".join(m for m in t.split(":")) for t in a.hierarchical.terms],
        "glm": ms.get("glm_full"),
        "glm_formula": a.ols["glm_full"].formula if "glm_full" in a.ols else None,
        "likelihood": a.hierarchical.likelihood,
        **family_words(a.hierarchical.family),
        "method_notes": method_notes(a),
        "headline_notes": headline_notes(facts, effect_unit),
        # the comparison figure's methods beyond OLS and the hierarchical model, in words
        "figure_extra": [registry.get(m).text for m in registry.figure_methods(ms) if m not in registry.REQUIRED],
    }
    return AnalysisContext(**context)


def method_notes(a: AnalysisResults) -> list[str]:
    """One methods-section sentence per approach whose registry entry describes its settings."""
    out = []
    for name in registry.ordered(a.methods):
        sentence = registry.get(name).sentence(a.methods[name].settings())
        if sentence:
            out.append(sentence)
    return out


def headline_notes(facts: Facts, unit: fmt.Unit | None = None) -> list[str]:
    """Page one: where an approach marked ``headline`` in the registry puts the largest effect in another
    group than the hierarchical model does."""
    ms = {mf.method: mf for mf in facts.methods}
    out = []
    for name in registry.ordered(ms):
        m = registry.get(name)
        if not m.headline or name == registry.REFERENCE or not ms[name].largest:
            continue
        mf = ms[name]
        if mf.largest != facts.largest.label:
            out.append(
                f"{m.text[0].upper() + m.text[1:]} puts the largest effect in another group: {mf.largest} "
                f"({fmt.effect(mf.largest_estimate, unit)}), where the hierarchical model has {facts.largest.label} "
                f"({fmt.effect(facts.largest.effect.estimate, unit)})."
            )
    return out


def family_words(name: str) -> dict:
    """What the numbers of a family's report are: the estimand and the model's linear scale."""
    fam = get_family(name)
    return {
        "family": fam.name,
        "identity": fam.identity,
        "link": fam.link,
        "link_scale": fam.link_scale,
        "linear_scale": fam.linear_scale,
        "response": fam.response,
        "probability": fam.name in ("bernoulli", "binomial"),
    }


def _singular(units: str) -> str:
    return units[:-1] if units.endswith("s") and not units.endswith("ss") else units


def _comparison_words(hier, ols) -> dict:
    if hier is None or ols is None or not np.isfinite(ols.dispersion) or ols.dispersion == 0:
        return {"spread_words": "not comparable", "width_words": "not comparable", "meaning": ""}
    r_sd, r_w = hier.dispersion / ols.dispersion, hier.mean_width / ols.mean_width
    spread = f"{fmt.pct(1 - r_sd)} less spread out" if r_sd < 1 else f"{fmt.pct(r_sd - 1)} more spread out"
    width = f"{fmt.pct(1 - r_w)} narrower" if r_w < 1 else f"{fmt.pct(r_w - 1)} wider"
    if r_sd > 0.9 and r_w > 0.9:
        meaning = (
            "Pooling changes little here: the groups are large enough, or their effects different enough, "
            "that the model keeps close to the separate estimates."
        )
    elif r_sd < 1 and r_w < 1:
        meaning = (
            "Partial pooling pulls noisy estimates from small groups toward the overall pattern, so the hierarchical estimates are "
            "steadier and more precise; where the two disagree, the extreme OLS estimates are the ones more likely to reflect noise."
        )
    elif r_sd < 1:
        meaning = "Partial pooling pulls the separate estimates toward the overall pattern, at the price of intervals that also carry the uncertainty about that pattern."
    else:
        meaning = "Here pooling changes little: the groups are large enough, or their effects different enough, that the model keeps the separate estimates."
    return {"spread_words": spread, "width_words": width, "meaning": meaning}


def study_context(results: StudyResults, analyses: list[AnalysisContext], route: str, formats: list[str]) -> dict:
    spec, man = results.spec, results.manifest
    versions = man.get("packages", {})
    across = []
    for c in analyses:
        f = c.f
        model = f"{c.outcome}, {get_family(c.family).title}"
        across.append(
            [
                c.title,
                model,
                fmt.count(f.n_groups),
                fmt.interval(f.average, unit=c.effect_unit),  # each outcome in its own unit (labels.units)
                fmt.effect_range(f.smallest.effect.estimate, f.largest.effect.estimate, c.effect_unit),
                fmt.interval(f.sigma_theta) + ("" if c.identity else f" ({c.linear_scale})"),
                "OK" if f.diagnostics_ok else "check",
            ]
        )
    across_tbl = fmt.pipe_table(
        [
            "Analysis",
            "Outcome, model",
            "Groups",
            "Average effect (95% interval)",
            "Range of group effects",
            "σθ (95% interval)",
            "Diagnostics",
        ],
        across,
        "llrrrrl",
        "Headline numbers of every analysis. Effects are on each outcome's own scale; σθ is on the scale on which its model is linear.",
        "tbl-across",
    )
    titles = {a.name: a.title for a in results.analyses}
    comparisons = [
        {"first": titles[m.first], "second": titles[m.second], "m": m, "scale": spec.label(m.scale)}
        for m in compare_models(list(results.analyses), dict(spec.data.derive) if spec.data else {})
    ]
    return {
        "title": spec.title,
        "subtitle": spec.subtitle,
        "author": spec.report.author,
        "families": list(dict.fromkeys(c.family for c in analyses)),
        "any_link": any(not c.identity for c in analyses),
        "probability": any(c.probability for c in analyses),
        "conformance": conformance_context(man.get("conformance"), {a.name: a.title for a in results.analyses}),  # pre-registration check
        "date": man.get("created", "")[:10],
        "analyses": analyses,
        "across_table": across_tbl,
        "comparisons": comparisons,
        "spec_block": fmt.code_block(results.spec.source_text or ""),
        "manifest": man,
        "min_arm": spec.report.min_arm,
        "pagebreak": Markup("{{< pagebreak >}}"),
        "route": route,
        "formats": formats,
        "data_file": man.get("data_file"),
        "data_sha256": man.get("data_sha256"),
        "spec_hash": man.get("spec_hash"),
        "provenance": fmt.pipe_table(
            ["Item", "Value"],
            [
                ["Data file", fmt.code_span(man.get("data_file"))],
                ["Data SHA-256", fmt.code_span(man.get("data_sha256"))],
                ["Rows read", fmt.count(man.get("rows_read"))],
                *(
                    [["Filter", fmt.code_span(spec.data.filter)], ["Rows after the filter", fmt.count(man.get("rows_after_filter"))]]
                    if spec.data.filter
                    else []
                ),
                ["Spec hash (canonical form, SHA-256)", fmt.code_span(man.get("spec_hash"))],
                ["Random seed", str(man.get("seed"))],
                ["Fitted", man.get("created", "")],
                *([["Sampler code compiled for (CPU)", fmt.code_span(man["compiled_for"])]] if man.get("compiled_for") else []),
                ["Rendered with", route],
            ],
            "ll",
            "Provenance of this report.",
            "tbl-provenance",
        ),
        "versions": fmt.pipe_table(
            ["Package", "Version"], [[k, v] for k, v in versions.items()], "ll", "Package versions used for the fit.", "tbl-versions"
        ),
        "seed": man.get("seed"),
        "rows_read": man.get("rows_read"),
        "rows_after_filter": man.get("rows_after_filter"),
        "filter": spec.data.filter,
        "derive": spec.data.derive,
        "timings": fmt.pipe_table(
            ["Analysis", "Compile (s)", "Sampling (s)", "Total (s)"],
            [
                [k, fmt.num(v.get("compile_s"), 1), fmt.num(v.get("sampling_s"), 1), fmt.num(v.get("total_s"), 1)]
                for k, v in man.get("timings", {}).items()
            ],
            "lrrr",
            "Wall-clock time of the fit.",
            "tbl-timings",
        ),
    }


def add_extreme_words(c: AnalysisContext, min_arm: int) -> AnalysisContext:
    """``c`` with page one's words on a largest or smallest group whose estimate is weak (one arm, or an arm
    under ``min_arm``), and the largest effect among groups with at least ``min_arm`` per arm."""
    from .brief import _largest_well_measured, _small

    g = c.a.groups
    weak = {"largest": _small(g, c.f.largest), "smallest": _small(g, c.f.smallest)}
    best = _largest_well_measured(c, min_arm)
    return replace(c, weak=weak, best_measured=best if best is not None and best.group != c.f.largest.group else None)


# --------------------------------------------------------------------------- build + render


def document_digits(results: StudyResults) -> int:
    """Decimals of effects in this study's documents: ``report.digits`` when the spec sets it, else from the
    outcomes' scale (``format.digits_for_scale`` of each analysis's outcome SD; the most any analysis needs, so
    no analysis loses precision)."""
    if results.spec.report.digits is not None:
        return results.spec.report.digits
    sds = [float(np.std(np.asarray(a.y, dtype=float))) for a in results.analyses if len(a.y) > 1]
    return max((fmt.digits_for_scale(sd) for sd in sds), default=2)


def start_project(project: Path) -> Path:
    """A Quarto project folder holding hetreport's _quarto.yml (every document's formats, the Typst template and
    filters that both routes read); the study report and the simulation report both begin here."""
    project.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(quarto_yml(), project / "_quarto.yml")
    return project


def document_environment(user_dir: Path | None = None, **extra):
    """The sandboxed template environment with the helpers every report template uses (and ``extra``)."""
    env = environment(user_dir)
    env.globals.update(plural=plural, join_words=join_words, md=fmt.md, Markup=Markup, **extra)
    return env


def _template_where(exc: TemplateError, template: str) -> str:
    """ "<template>, line <n>" of a template error: from a syntax error's own fields, else from the innermost
    template frame of the traceback (where jinja puts an undefined name's template line)."""
    name, line = getattr(exc, "name", None), getattr(exc, "lineno", None)
    if line is None:
        tb = exc.__traceback__
        while tb is not None:
            path = tb.tb_frame.f_code.co_filename
            if path.endswith(".j2"):
                name, line = (template if Path(path).as_posix().endswith(template) else Path(path).name), tb.tb_lineno
            tb = tb.tb_next
    return f"{name or template}, line {line if line is not None else '?'}"


def write_document(project: Path, env, template: str, data: dict, what: str, remedy: str) -> Path:
    """Render ``template`` with ``data`` into ``project/report.qmd``; a template error is one RenderError
    paragraph naming ``what`` failed, where, and ``remedy``."""
    try:
        text = env.get_template(template).render(**data)
    except TemplateError as exc:
        raise RenderError(f"{what} failed ({_template_where(exc, template)}): {exc}. {remedy}") from None
    path = project / "report.qmd"
    path.write_text(text, encoding="utf-8")
    return path


def build_project(results: StudyResults, project: Path, route: str = "auto", formats=None, log=None) -> Path:
    """Write the Quarto project (report.qmd, brief.qmd, _quarto.yml, figures/, paper/) into ``project``; effects
    are written with ``document_digits`` decimals."""
    paper = build_documents(results, project, route, formats, log)
    paper()
    return project


class PaperStep:
    """The second part of a project's build: ``paper/`` (every figure drawn again at a column's and a page's
    width as PDF, SVG and PNG, the tables, methods and references). Nothing that report.qmd or brief.qmd
    shows is in it, so it can be written while those two are rendered."""

    def __init__(self, results: StudyResults, project: Path, contexts, log=None):
        self.results, self.project, self.contexts, self.say = results, project, contexts, log or (lambda m: None)

    def __call__(self) -> Path:
        with fmt.using_digits(document_digits(self.results)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.say("paper/: figures at column and page width, tables, methods, references")
            return write_paper(self.project, self.results, self.contexts)


def build_documents(results: StudyResults, project: Path, route: str = "auto", formats=None, log=None) -> PaperStep:
    """Write everything of the project that report.qmd and brief.qmd show (the two documents, _quarto.yml,
    figures/); returns the step that writes ``paper/``."""
    with fmt.using_digits(document_digits(results)):
        return _build_project(results, project, route, formats, log)


def _build_project(results: StudyResults, project: Path, route: str = "auto", formats=None, log=None) -> PaperStep:
    say = log or (lambda m: None)
    spec = results.spec
    formats = list(formats or spec.report.formats)
    start_project(project)
    user_dir = None
    if spec.report.templates:
        user_dir = Path(spec.report.templates)
        user_dir = user_dir if user_dir.is_absolute() else Path(spec.base_dir) / user_dir
        if not user_dir.is_dir():
            raise RenderError(
                f"report.templates points at '{user_dir}', which is not a folder. Give a folder whose files override hetreport's templates by name."
            )
        _check_user_templates(user_dir, Path(spec.base_dir))
    contexts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in results.analyses:
            say(f"analysis '{a.name}': figures and tables")
            facts = results.facts_of(a.name)  # computed once in fit, carried on the results
            figures = write_figures(a, results.effects, facts, project / "figures", spec)
            tables = tables_for(
                a, results.effects, facts, _slug(a.name), spec.report.min_arm, fmt.unit_of(spec.unit_of(spec.analysis(a.name)))
            )
            questions = analysis_questions(a, results, project / "figures")  # compare:, report.targeting
            contexts.append(replace(analysis_context(a, results, figures, tables, facts), q=questions))
    lighten_heavy_svgs(project / "figures")  # the HTML embeds every figure: each at screen resolution unless its vector drawing is smaller
    # page one speaks of the headline analysis first (with the brief's figure), the others after it, shorter
    head = headline_analysis(spec, [c.name for c in contexts])
    contexts = [add_extreme_words(replace(c, is_headline=c.name == head), spec.report.min_arm) for c in contexts]
    ctx = study_context(results, contexts, describe_route(route), formats)
    ctx["loo"] = loo_context(results)  # PSIS-LOO between analyses of the same outcome and rows
    env = document_environment(user_dir, METHOD_NAMES=METHOD_NAMES)
    ctx["summary_order"] = sorted(contexts, key=lambda c: not c.is_headline)
    # approaches beyond the two every analysis has (e.g. the causal forest), named once in the introduction
    ctx["extra_methods"] = list(dict.fromkeys(m for c in contexts for m in c.figure_extra))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        brief = write_brief(project, results, contexts, ctx, env)
    ctx["brief_figure"] = {"path": Markup("figures/brief-ranked"), "caption": brief.figure_caption, "alt": attribute_text(brief.figure_alt)}
    write_document(
        project,
        env,
        "report.qmd.j2",
        template_data(ctx),
        "the report template",
        "If report.templates overrides hetreport's templates, check that file; otherwise this is a bug in hetreport.",
    )
    return PaperStep(results, project, contexts, log)


def _check_user_templates(user_dir: Path, spec_dir: Path) -> None:
    """Warn about a templates folder that changes nothing, or that lies outside the spec's folder tree."""
    from ..errors import HetreportWarning

    ours = {p.relative_to(templates_dir()).as_posix() for p in templates_dir().rglob("*.j2")}
    theirs = {p.relative_to(user_dir).as_posix() for p in user_dir.rglob("*.j2")}
    if not theirs & ours:
        warnings.warn(
            HetreportWarning(
                f"report.templates '{user_dir}' overrides none of hetreport's templates (its files are matched by name: "
                f"{', '.join(sorted(ours)[:4])}, ...); the report is the standard one."
            ),
            stacklevel=2,
        )
    real, base = os.path.realpath(user_dir), os.path.realpath(spec_dir)
    if real != base and not real.startswith(base + os.sep):
        warnings.warn(
            HetreportWarning(
                f"report.templates '{user_dir}' lies outside the spec's folder '{spec_dir}'; templates are usually kept with the spec."
            ),
            stacklevel=2,
        )


def render_atomically(out_dir: Path, build, formats, route: str = "auto", log=None) -> RenderOutcome:
    """Run ``build(project_dir)``, render it, and only then make it ``out_dir/report``: a failure
    or a kill at any point leaves the previous report in place.

    In a run's staging folder (:mod:`hetreport.outdir`, private until the run switches it in)
    the project is built and rendered in its ``report/`` directly. Elsewhere (a simulation
    study's folder) it is built in a visible ``out_dir/report.partial-<8 hex digits>`` and swapped
    with ``out_dir/report`` in one atomic exchange, under the folder's lock. Either way no
    path inside the output starts with '.' or '_', so Quarto reads the project's _quarto.yml."""
    out_dir = Path(out_dir)
    say = log or (lambda m: None)
    if outdir.is_stage(out_dir):
        final = out_dir / "report"
        if final.exists():
            shutil.rmtree(final)
        try:
            outcome = _build_and_render_in(final, out_dir, build, formats, route, say)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        return outcome
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = outdir._Lock(out_dir / outdir.LOCK, f"'{out_dir}'")
    stage = stage_lock = None
    try:
        for p in out_dir.glob("report.partial-*"):
            if p.is_dir() and not p.is_symlink() and outdir._owner_gone(p):
                shutil.rmtree(p, ignore_errors=True)  # an interrupted earlier render
        for p in out_dir.glob(".report-*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)  # temporary folders of hetreport versions before this one
        stage = out_dir / f"report.partial-{secrets.token_hex(4)}"
        stage.mkdir()  # the user's umask, not drwx------
        stage_lock = outdir._Lock(stage / outdir.LOCK, f"'{stage}'")
        outcome = _build_and_render_in(stage, out_dir, build, formats, route, say)
        final = out_dir / "report"
        if not final.exists():
            os.replace(stage, final)
        elif outdir.exchange(stage, final):
            outdir.fault("after-switch")
        else:  # no atomic exchange on this system: two renames, the gap as short as it gets
            old = out_dir / f"report.partial-{secrets.token_hex(4)}"
            os.replace(final, old)
            os.replace(stage, final)
            stage = old
        (final / outdir.LOCK).unlink(missing_ok=True)
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if stage_lock is not None:
            stage_lock.release()
        lock.release()
    return replace(outcome, outputs={k: final / Path(v).name for k, v in outcome.outputs.items()})


def _build_and_render_in(project: Path, out_dir: Path, build, formats, route, say) -> RenderOutcome:
    if not outdir.visible_path(project, out_dir):
        raise RenderError(
            f"the report would be rendered in '{project}', a path Quarto ignores (a part starts with '.' or '_'); "
            "give an output folder whose name starts with a letter or digit."
        )
    later = build(project)
    outdir.fault("report-built")
    say(f"rendering {', '.join(formats)} ({describe_route(route)})")
    if isinstance(later, PaperStep):  # the study report: paper/ is drawn while the documents render
        outcome = _render_beside(later, project, formats, route)
    else:
        outcome = render_documents(project, formats=formats, route=route)
    outdir.fault("rendered")
    return outcome


def _render_beside(paper: PaperStep, project: Path, formats, route) -> RenderOutcome:
    """Render the documents in a thread (pandoc and Typst do the work, in processes of their own) while this
    thread draws ``paper/`` (Python: matplotlib). The rendering copies the project without paper/. A failure
    of either is raised once both have ended; an interrupt ends the renderers and is raised at once."""
    import threading

    from .render import stop_renderers

    done: dict[str, object] = {}

    def render():
        try:
            done["outcome"] = render_documents(project, formats=formats, route=route)
        except BaseException as exc:  # handed to the main thread
            done["error"] = exc

    thread = threading.Thread(target=render, name="hetreport-render-documents", daemon=True)
    thread.start()
    try:
        paper()
        thread.join()
    except BaseException:
        stop_renderers()
        thread.join(timeout=60)
        raise
    if "error" in done:
        raise done["error"]
    return done["outcome"]


def _saved_manifest(folder: Path):
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def build_and_render(results: StudyResults, out_dir: Path, formats=None, route: str = "auto", log=None) -> RenderOutcome:
    """Build the study's Quarto project and render it into ``out_dir/report``.

    Inside a run's staging folder it is rendered there (the run switches results and report in
    together). Given an output folder, the results are written with the report into a new
    generation that replaces the folder in one switch, so the report never sits beside other results."""
    formats = list(formats or results.spec.report.formats)

    def build(p: Path) -> PaperStep:  # the documents now; paper/ while they render
        return build_documents(results, p, route=route, formats=formats, log=log)

    if outdir.is_stage(Path(out_dir)):
        return render_atomically(out_dir, build, formats, route, log)
    with outdir.Output(out_dir) as o:
        same = _saved_manifest(Path(out_dir)) == json.loads(json.dumps(results.manifest, default=_json_default))
        stage = o.stage(carry=same)  # these very results saved there: linked byte for byte, not written again
        if not same:
            results.save(stage)
        outcome = render_atomically(stage, build, formats, route, log)
        o.commit(stage)
    final = Path(out_dir) / "report"
    return replace(outcome, outputs={k: final / Path(v).name for k, v in outcome.outputs.items()})
