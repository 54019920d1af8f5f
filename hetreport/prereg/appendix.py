"""The pre-registration appendix: planned analysis, priors, detection, mock report, record.

:func:`preregister` checks the design (nothing is written if it is wrong), runs the detection
simulation, fits the mock study (one simulated data set of the planned design, through
``hetreport.api.fit`` and the study report's own builder), draws the prior predictive, and
writes into ``DIR``:

- ``report/appendix.html`` and ``appendix.pdf``: the appendix (Quarto project next to them);
- ``mock/report/report.html`` and ``report.pdf``: the mock report, every page marked
  "SIMULATED DATA — NOT RESULTS" (title, a banner in HTML, a header and watermark on every PDF page);
- ``registration.json``: the canonical spec's SHA-256 (design block included), the canonical
  spec itself, package versions, seeds and the date (:mod:`hetreport.conformance` reads it);
- ``simulation.csv`` (one row per replication) and ``simulation_groups.csv`` (per group).

Everything is built in a temporary folder next to ``DIR`` and moved into place only when
every step has succeeded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from .. import methods as registry
from ..errors import HetreportError, RenderError
from ..report import format as fmt
from ..report.build import _slug
from ..spec import Spec, load_spec, parse_spec
from .plan import P_MAX, P_MIN, Plan, derived_seed, expected_sizes, resolve_plan, simulate_frame
from .simulate import SimulationResult, cells, per_cell, per_group, resolved_priors, run_simulation

MARK = "SIMULATED DATA — NOT RESULTS"
RECORD = "registration.json"
RECORD_VERSION = 1


# --------------------------------------------------------------------------- the record


def registration_record(spec: Spec, plan: Plan, created: str) -> dict:
    from ..versions import package_versions

    return {
        "kind": "hetreport pre-registration",
        "version": RECORD_VERSION,
        "spec_hash": spec.spec_hash(),
        "created": created,
        "title": spec.title,
        "seeds": {"design": plan.seed, "sampler": spec.sampler.seed, "mock_data": derived_seed(plan.seed, 99)},
        "packages": package_versions(),
        "spec": spec.canonical(),
        "source_text": spec.source_text,
    }


# --------------------------------------------------------------------------- the mock report


def _mock_spec(spec: Spec, plan: Plan, data_path: Path) -> Spec:
    raw = spec.canonical()
    raw.pop("design", None)
    raw.pop("preregistration", None)
    kept = {a.name for a in plan.analyses}
    raw["analyses"] = [a for a in raw["analyses"] if a["name"] in kept]
    raw["title"] = f"{MARK}: {spec.title}"
    raw["data"] = {"path": data_path.name, "format": "csv"}
    text = "# " + MARK + ": the planned spec with one simulated data set in place of the data\n" + (spec.source_text or "")
    return parse_spec(raw, base_dir=data_path.parent, source="mock spec", source_text=text)


_TYPST_MARK = (
    '#set page(header: align(center, text(size: 9pt, weight: "bold", fill: rgb("#B00020"))[SIMULATED DATA — NOT RESULTS]), '
    'foreground: place(center + horizon, rotate(-40deg, text(size: 54pt, weight: "bold", fill: rgb(176, 0, 32, 28))[SIMULATED DATA])))'
)
_HTML_MARK = (
    '<div class="hetreport-simulated" role="note" style="position: sticky; top: 0; z-index: 1000; background: #B00020; '
    'color: #fff; text-align: center; font-weight: bold; padding: 0.35em; letter-spacing: 0.05em;">'
    "SIMULATED DATA — NOT RESULTS</div>"
)


def stamp_simulated(project: Path, title: str) -> None:
    """Mark a built study report as simulated: its title, a banner at the top of the HTML (it stays
    in view while scrolling), and a header plus watermark on every page of the PDF.

    The PDF marking is Typst set in the project's ``_quarto.yml`` as ``format: typst:
    include-in-header: - text:``, the form Quarto's Typst format applies (a raw Typst block in the
    document's ``header-includes`` is dropped there: 2 of 30 pages were marked); the builtin route
    reads the same entries from ``_quarto.yml``, so one project carries the mark on both routes."""
    import yaml

    qmd = project / "report.qmd"
    text = qmd.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        raise RenderError("the mock report has no YAML front matter to mark as simulated; this is a bug in hetreport.")
    end = text.index("\n---\n", 4)
    front = [ln for ln in text[4:end].split("\n") if not ln.startswith("title:")]
    front.insert(0, f"title: {fmt.yaml_md(f'{MARK}: {title}')}")
    config_path = project / "_quarto.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    typst = config.setdefault("format", {}).setdefault("typst", {})
    includes = typst.get("include-in-header") or []
    typst["include-in-header"] = (includes if isinstance(includes, list) else [includes]) + [{"text": _TYPST_MARK + "\n"}]
    config_path.write_text(
        "# hetreport's _quarto.yml, with the mock report's marking on every PDF page (format: typst:\n"
        "# include-in-header).\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000),
        encoding="utf-8",
    )
    body = text[end + 5 :]
    banner = (
        f"```{{=html}}\n{_HTML_MARK}\n```\n\n::: {{.callout-important}}\n## {MARK}\n\nEvery number, table and figure in this report "
        "comes from one data set simulated from the planned design. It shows what will be reported, not what was found.\n:::\n\n"
    )
    qmd.write_text("---\n" + "\n".join(front) + "\n---\n\n" + banner + body, encoding="utf-8")


def fit_mock(spec: Spec, plan: Plan, folder: Path, log=None):
    """Fit every analysis to one simulated data set of the planned design (first N, first SD)."""
    from ..api import fit

    frame, _ = simulate_frame(plan, plan.sizes[0], plan.sds[0], derived_seed(plan.seed, 99))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "simulated.csv"
    frame.to_csv(path, index=False)
    mock = _mock_spec(spec, plan, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(mock, log=log)


# --------------------------------------------------------------------------- prior predictive


def priors_too_wide(group_effect: np.ndarray, outcome_sd: float) -> bool:
    """True when more than 10% of the prior's group effects exceed twice the outcome's SD in size: a
    treatment effect that large is rare in this field's outcomes, so such priors are weak on the
    outcome's scale, and the appendix says so (small groups' estimates and sigma_theta lean on them)."""
    g = np.asarray(group_effect, dtype=float).ravel()
    return bool(np.mean(np.abs(g) > 2 * outcome_sd) > 0.10)


def prior_predictive(plan: Plan, analysis: str, draws: int = 500) -> dict[str, np.ndarray]:
    """Draws of every group's effect and of sigma_theta from the model's prior, on the planned
    design (full crossing of the planned levels, one simulated data set for the controls).

    Bernoulli: the model's parameters are on the log-odds scale; each group's effect is shown on the
    probability scale at the planned base rate p, ``expit(logit(p) + theta_g) - p`` (theta_g the group's
    log-odds slope drawn from the prior), so it lies in (-1, 1); sigma_theta stays on the log-odds scale."""
    import pymc as pm

    from ..models.hierarchical import _control_prior_sds, build_design, build_model
    from .simulate import _analysis_inputs, bernoulli_rows, build_bernoulli_model, full_groups

    cell = next(c for c in cells_for_prior(plan, analysis))
    adata, _, _ = _analysis_inputs(plan, cell, derived_seed(plan.seed, 98))
    g = full_groups(plan, cell, adata)
    d = build_design(adata, g, plan.analysis(analysis).mode)
    resolved = resolved_priors(plan, analysis)
    bernoulli = plan.analysis(analysis).family == "bernoulli"
    if bernoulli:
        model = build_bernoulli_model(
            d, bernoulli_rows(adata, g), resolved, _control_prior_sds(resolved, adata), adata.control_columns, g.keys
        )
        slope = "group_slope"
    else:
        model = build_model(d, resolved, _control_prior_sds(resolved, adata), adata.control_columns, g.keys)
        slope = "group_effect"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with model:
            prior = pm.sample_prior_predictive(
                draws=draws, var_names=[slope, "sd_slope", "b_treat"], random_seed=derived_seed(plan.seed, 97)
            )
    pr = prior.prior
    ge = pr[slope].stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()
    if bernoulli:
        from scipy.special import expit, logit

        p0 = plan.base_rate
        ge = expit(logit(p0) + ge) - p0
    sd = pr["sd_slope"].stack(sample=("chain", "draw")).transpose("sample", "term").to_numpy()
    return {
        "group_effect": ge,
        "sigma_theta": sd[:, -1],
        "b_treat": pr["b_treat"].to_numpy().ravel(),
        "sd_between": ge.std(axis=1, ddof=1),
        "family": "bernoulli" if bernoulli else "gaussian",
    }


def _prior_analyses(plan: Plan) -> list[str]:
    """The analyses whose prior predictive is drawn: the first simulated analysis, and the first of each
    other family among the simulated analyses (the priors' scale differs by family)."""
    out, seen = [], set()
    for name in plan.simulated:
        fam = plan.analysis(name).family
        if fam not in seen:
            seen.add(fam)
            out.append(name)
    return out


def cells_for_prior(plan: Plan, analysis: str):
    from .simulate import Cell

    yield Cell(-1, analysis, plan.sizes[0], plan.sds[0])


# --------------------------------------------------------------------------- figures


def _save(plot, stem: Path, width: float, height: float) -> None:
    from .. import figures as figs

    figs.save_figure(plot, stem, width, height)


def figure_prior(pp: dict, plan: Plan, which: str, label: str):
    from plotnine import aes, geom_histogram, geom_vline, ggplot, labs

    from .. import figures as figs

    bernoulli = pp.get("family") == "bernoulli"
    if which == "group_effect":
        vals = pp["group_effect"].ravel()
        xlab = (
            f"Group effect on P({label}), probability scale (prior draws, all groups)"
            if bernoulli
            else f"Group effect on {label} (prior draws, all groups)"
        )
        ref = [plan.average_effect]
    else:
        vals = pp["sigma_theta"]
        xlab = (
            "σθ, the slope SD of the full crossing, log-odds scale (prior draws)"
            if bernoulli
            else "σθ, the slope SD of the full crossing (prior draws)"
        )
        ref = [s for s in plan.sds] if not bernoulli else [s / (plan.base_rate * (1 - plan.base_rate)) for s in plan.sds]
    lo, hi = np.quantile(vals, [0.005, 0.995])
    d = pd.DataFrame({"value": vals[(vals >= lo) & (vals <= hi)]})
    p = (
        ggplot(d, aes("value"))
        + geom_histogram(bins=60, fill="#9E9E9E", color="white", size=0.1)
        + geom_vline(xintercept=ref, linetype="dashed", color="#B00020")
        + labs(x=xlab, y="Prior draws")
        + figs.theme_hetreport()
    )
    return p


def figure_by_group(pg: pd.DataFrame, sizes: pd.DataFrame, metric: str, ylab: str):
    from plotnine import aes, geom_point, ggplot, labs, scale_x_log10

    from .. import figures as figs

    d = pg.merge(sizes[["group", "n"]].rename(columns={"n": "expected_n"}), on="group", how="left")
    d = d.dropna(subset=[metric])
    d["Approach"] = pd.Categorical(
        d["method"].map(figs.METHOD_LABELS), categories=[figs.METHOD_LABELS[m] for m in registry.REQUIRED], ordered=True
    )
    p = (
        ggplot(d, aes("expected_n", metric, color="Approach", shape="Approach"))
        + geom_point(alpha=0.8, size=1.6)
        + scale_x_log10()
        + labs(x="Expected group size (log scale)", y=ylab, color="", shape="")
        + figs.theme_hetreport()
    )
    for s in figs._method_scales(list(registry.REQUIRED), lines=False):
        p = p + s
    return p


def figure_detection(pc: pd.DataFrame):
    """Probability of detecting heterogeneity: planned N on x (as categories), one colour per approach,
    one shape per assumed heterogeneity SD, ±1.96 Monte-Carlo SEs."""
    from plotnine import aes, geom_errorbar, geom_line, geom_point, ggplot, labs, position_dodge, scale_y_continuous

    from .. import figures as figs

    d = pc.copy()
    d["Approach"] = pd.Categorical(
        d["method"].map(figs.METHOD_LABELS), categories=[figs.METHOD_LABELS[m] for m in registry.REQUIRED], ordered=True
    )
    d["lo"] = (d["detect"] - 1.96 * d["detect_se"]).clip(0, 1)
    d["hi"] = (d["detect"] + 1.96 * d["detect_se"]).clip(0, 1)
    sds = sorted(d["sd"].unique())
    d["Heterogeneity SD"] = pd.Categorical(d["sd"].map(lambda s: f"{s:g}"), categories=[f"{s:g}" for s in sds])  # unordered: a shape each
    ns = sorted(d["n"].unique())
    d["N"] = pd.Categorical(d["n"].map(lambda n: f"{n:,}"), categories=[f"{n:,}" for n in ns], ordered=True)
    d["line"] = d["method"] + "-" + d["sd"].astype(str)
    dodge = position_dodge(width=0.5)
    p = (
        ggplot(d, aes("N", "detect", color="Approach", shape="Heterogeneity SD", group="line"))
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=0.15, position=dodge)
        + geom_point(size=2.4, position=dodge)
        + scale_y_continuous(limits=(0, 1))
        + labs(x="Planned N", y="P(detecting heterogeneity)", color="", shape="Heterogeneity SD")
        + figs.theme_hetreport()
    )
    if len(ns) > 1:
        p = p + geom_line(position=dodge)
    from plotnine import scale_color_manual

    labels = [figs.METHOD_LABELS[m] for m in registry.REQUIRED]
    return p + scale_color_manual(
        values={figs.METHOD_LABELS[m]: figs.METHOD_COLORS[m] for m in registry.REQUIRED}, breaks=labels, limits=labels
    )


# --------------------------------------------------------------------------- context


def _share_tables(plan: Plan) -> Markup:
    from .plan import Categorical

    rows = []
    for name, var in plan.variables.items():
        if isinstance(var, Categorical):
            for k, (_code, share, lab) in enumerate(zip(var.codes, var.shares, var.labels)):
                rows.append([plan.spec.label(name) if k == 0 else "", lab, fmt.pct(share, 1), var.source if k == 0 else ""])
        else:
            rows.append([plan.spec.label(name), f"normal(mean {fmt.num(var.mean)}, SD {fmt.num(var.sd)})", "", var.source])
    return fmt.pipe_table(
        ["Variable", "Level", "Expected share", "From"],
        rows,
        "llrl",
        "Planned level shares of every modifier and control (modifiers are assumed independent).",
        "tbl-shares",
    )


def _size_table(plan: Plan, analysis: str, n: int, slug: str) -> tuple[Markup, int, int]:
    t = expected_sizes(plan, analysis, n)
    rows = []
    for r in t.itertuples():
        flag = ""
        if r.likely_small:
            flag = f"likely an arm < {plan.min_arm}"
        rows.append(
            [
                r.group_label,
                fmt.pct(r.share, 2),
                fmt.num(r.n, 1),
                fmt.num(r.n_treated, 1),
                fmt.num(r.n_control, 1),
                fmt.pct(r.p_small),
                fmt.pct(r.p_one_arm),
                flag,
            ]
        )
    tbl = fmt.pipe_table(
        ["Group", "Share", "Expected n", "Treated", "Control", f"P(arm < {plan.min_arm})", "P(one arm)", "Flag"],
        rows,
        "lrrrrrrl",
        f"Expected group sizes at N = {n:,} (treatment probability {plan.p_treat:g}): the probability that an arm "
        f"has fewer than {plan.min_arm} units or that a group has units in only one arm, under multinomial sampling. "
        "Groups flagged are those where that probability is at least 50%.",
        f"tbl-{slug}-sizes-{n}",
    )
    return tbl, int(t["likely_small"].sum()), int((t["p_one_arm"] >= 0.5).sum())


def _priors_table(plan: Plan, analysis: str | None = None) -> Markup:
    """The priors of the spec (``analysis`` None) or of one analysis (its own priors and family)."""
    spec = plan.spec
    fam = plan.analysis(analysis).family if analysis else spec.family
    pri = spec.priors_of(spec.analysis(analysis)) if analysis else spec.priors
    res = resolved_priors(plan, analysis)
    rows = []
    keys = [
        ("intercept", "Intercept α"),
        ("b", "Treatment slope β_T and each control's coefficient"),
        ("sd", "Every term's intercept and slope SD"),
    ]
    keys += [("sigma", "Residual SD σ")] if fam == "gaussian" else []
    keys += [("cor", "Intercept–slope correlation of each term")]
    for key, what in keys:
        given = getattr(pri, key)
        used = res.get(key)
        if given is not None:
            src = "the spec"
        elif fam == "bernoulli":
            src = (
                "default on the log-odds scale, centred at the logit of the planned share of 1s "
                f"({fmt.num(plan.outcome_mean)} = base rate + treatment probability × average effect)"
                if key == "intercept"
                else "default on the log-odds scale"
            )
            if key == "b":
                src += " (each control: normal(0, 2.5/sd(x)))"
        else:
            src = f"default, scaled to the planned outcome SD {fmt.num(plan.outcome_sd)}"
            if key == "b":
                src += " (each control: normal(0, 2.5 sd(y)/sd(x)))"
        rows.append([what, fmt.code_span(str(used) if used is not None else "lkj(2)"), src])
    if fam == "bernoulli":
        caption = (
            f"Priors of the hierarchical model of analysis '{analysis or plan.simulated[0]}' (family bernoulli): every parameter is on the "
            "log-odds scale. Default priors do not depend on the outcome's SD; on the real data the intercept's default is recentred at the "
            "logit of the observed share of 1s; priors given in the spec are used as written."
        )
    else:
        caption = (
            "Priors of the hierarchical model. Defaults scale with the outcome's SD: on the real data they are recomputed from its SD, "
            "which is close to the planned one if the design's outcome_sd is right; priors given in the spec are used as written."
        )
    if analysis is not None and fam != "bernoulli":
        caption = f"Analysis '{analysis}': " + caption
    label = "tbl-priors" if analysis is None else "tbl-priors-" + _slug(analysis)
    return fmt.pipe_table(["Parameter", "Prior", "From"], rows, "lll", caption, label)


def _own_priors(plan: Plan, name: str) -> bool:
    """Whether an analysis's priors differ from the spec's table (its own family or priors)."""
    a = plan.spec.analysis(name)
    return plan.analysis(name).family != plan.spec.family or a.priors is not None


def _decision_rules(plan: Plan) -> list[Markup]:
    from ..facts import CREDIBLE
    from ..models.hierarchical import ESS_MIN, RHAT_MAX

    c = fmt.pct(CREDIBLE)
    return [
        fmt.md(r)
        for r in (
            f"A group's effect is called positive (or negative) only when its posterior probability of being above (below) zero is at least {c}.",
            f"The largest group effect is said to exceed the smallest only when the posterior probability of that difference is at least {c}; "
            "otherwise the text says the data cannot tell the two groups apart with confidence.",
            "Differences between levels of a modifier are reported as the posterior difference of the level averages (weighted by group size, "
            "per draw) with its 95% interval and probability.",
            "Every interval is a 95% interval: posterior quantiles for the hierarchical model, t intervals with the stated robust standard "
            "errors for OLS.",
            f"Groups with units in only one arm are not estimable by OLS (reported as such); arms with one unit get no HC2/HC3 standard error; "
            f"arms with fewer than {plan.spec.report.min_arm} units are flagged.",
            f"The sampler is flagged (a warning on page one) when any reported quantity has R-hat above {RHAT_MAX}, bulk or tail ESS below "
            f"{ESS_MIN}, or any divergent transition.",
            "The comparison of approaches says the hierarchical estimates are less spread out or more precise than OLS from the ratio of their "
            "standard deviations and mean interval widths over the groups OLS can estimate.",
        )
    ]


def _outcome_row(spec: Spec, plan: Plan) -> list[str]:
    """The design table's outcome row: mean and SD (gaussian), or the base rate of a 0/1 outcome."""
    label = spec.label(spec.outcome)
    if plan.outcome_family != "bernoulli":
        return [
            "Outcome",
            f"{label} ({spec.family}); expected mean {fmt.num(plan.outcome_mean)}, SD {fmt.num(plan.outcome_sd)} "
            f"(from {plan.outcome_sd_source})",
        ]
    fams = sorted({a.family for a in plan.analyses})
    how = "bernoulli (logit)" if fams == ["bernoulli"] else "bernoulli (logit) and gaussian (the linear probability model)"
    return [
        "Outcome",
        f"{label}, 0/1, analysed with {how}; expected share of 1s in the control arm (base rate) {fmt.num(plan.base_rate)}; "
        f"treated and control probabilities are kept within [{P_MIN:g}, {P_MAX:g}] in the simulation",
    ]


def mock_sensitivity(mock) -> list[dict]:
    """The power-scaling prior sensitivity of each mock analysis (the diagnostics section's table, for the appendix)."""
    from ..report.questions import sensitivity_context

    out = []
    for ma in mock.analyses:
        ctx = sensitivity_context(ma, label=f"tbl-prereg-sensitivity-{_slug(ma.name)}")
        if ctx["any"]:
            out.append({"title": ma.title, **ctx})
    return out


def appendix_context(spec: Spec, plan: Plan, sim: SimulationResult, mock, record: dict, figures: dict, route: str) -> dict:

    pc = per_cell(sim, plan)
    pg = per_group(sim, plan)
    analyses = []
    for ap in plan.analyses:
        a = spec.analysis(ap.name)
        slug = _slug(ap.name)
        size_tables = []
        for n in plan.sizes:
            tbl, n_small, n_one = _size_table(plan, ap.name, n, slug)
            size_tables.append({"n": fmt.count(n), "table": tbl, "n_small": n_small, "n_one": n_one})
        ma = mock.analysis(ap.name)
        f_bambi, f_brms = ma.hierarchical.formula_bambi, ma.hierarchical.formula_brms
        analyses.append(
            {
                "name": ap.name,
                "title": ap.title,
                "slug": Markup(slug),
                "n_groups": len(ap.groups),
                "modifiers": ", ".join(spec.label(m) for m in ap.modifiers),
                "controls": ", ".join(spec.label(c) for c in ap.controls) or "none",
                "terms_mode": ap.mode,
                "n_terms": len(ap.term_list),
                "correlated": a.correlated,
                "slope_predictors": ", ".join(a.slope_predictors),
                "filter": a.filter,
                "formula_bambi": f_bambi,
                "formula_brms": f_brms,
                "ols_formula": ma.ols[registry.BASELINE].formula,
                "additive_formula": ma.ols["ols_additive"].formula,
                "size_tables": size_tables,
                "simulated": ap.name in plan.simulated,
                "figures": figures.get(ap.name, {}),
                "family": ap.family,
                "bernoulli": ap.family == "bernoulli",
                "glm_formula": ma.ols["glm_full"].formula if "glm_full" in ma.ols else None,
                "priors_table": _priors_table(plan, ap.name) if _own_priors(plan, ap.name) else None,
            }
        )
    rows = []
    for r in pc.itertuples():
        fam = plan.analysis(r.analysis).family
        rows.append(
            [
                r.analysis + (" (bernoulli)" if fam == "bernoulli" else ""),
                fmt.count(r.n),
                f"{r.sd:g}" + (" (null)" if r.sd == 0 else ""),
                registry.label(r.method),
                fmt.num(r.groups_estimated, 1),
                fmt.num(r.rmse, 3),
                fmt.num(r.width, 3),
                fmt.share(r.coverage),
                f"{fmt.share(r.detect)} (± {fmt.num(1.96 * r.detect_se, 2)})",
                fmt.share(r.false_positive),
                f"{r.replications} / {r.replications + r.failed}",
            ]
        )
    detect_table = fmt.pipe_table(
        [
            "Analysis",
            "N",
            "Heterogeneity SD",
            "Approach",
            "Groups estimated",
            "RMSE",
            "Mean 95% width",
            "95% coverage",
            "P(detect)",
            "False positives at SD 0",
            "Replications ok",
        ],
        rows,
        "lrrlrrrrrrr",
        "What the design can detect, per planned N and assumed heterogeneity SD: averages over groups and replications of "
        "the error (RMSE against the true group effects; for bernoulli analyses on the probability scale), the 95% interval width and its coverage, and the probability of "
        "detecting heterogeneity (definition above; ± 1.96 Monte-Carlo SEs), next to the same rule's rate of detecting "
        "heterogeneity that is not there (the null cell, SD 0; 5% by construction for the hierarchical rule).",
        "tbl-detection",
    )
    s = sim.summary
    ok = s[s["status"] == "ok"] if len(s) and "status" in s else s
    failed = s[s["status"] != "ok"] if len(s) and "status" in s else s
    d = spec.design
    design_rows = [
        ["Planned N", ", ".join(fmt.count(n) for n in plan.sizes)],
        ["Treatment probability", f"{plan.p_treat:g}"],
        _outcome_row(spec, plan),
        [
            "Assumed average effect" + (" (difference in probability)" if plan.outcome_family == "bernoulli" else ""),
            fmt.num(plan.average_effect),
        ],
        [
            "Assumed heterogeneity SD (of the true group effects" + (", probability scale)" if plan.outcome_family == "bernoulli" else ")"),
            ", ".join(f"{s_:g}" for s_ in plan.sds),
        ],
        ["Detecting heterogeneity", "calibrated: hierarchical against the 95th percentile at SD 0; OLS Wald test at 5%"],
        ["Replications per cell", str(plan.replications)],
        ["Design seed", str(plan.seed)],
        [
            "Simulation sampler",
            f"{d.sampler.chains} chains × {d.sampler.draws} draws ({d.sampler.tune} tuning), target_accept {d.sampler.target_accept:g}",
        ],
        ["Flag threshold (units per arm)", str(plan.min_arm)],
    ]
    compiles = int(ok["compile"].isin(["compile", "fallback"]).sum()) if len(ok) and "compile" in ok else 0
    return {
        "title": spec.title,
        "subtitle": spec.subtitle,
        "author": spec.report.author,
        "date": record["created"][:10],
        "spec_hash": record["spec_hash"],
        "hash12": record["spec_hash"][:12],
        "created": record["created"],
        "units": spec.report.units,
        "treatment": spec.label(spec.treatment),
        "outcome": spec.label(spec.outcome),
        "design_table": fmt.pipe_table(
            ["Item", "Planned"], design_rows, "ll", "The planned design and the assumptions of the simulation.", "tbl-design"
        ),
        "shares_table": _share_tables(plan),
        "priors_table": _priors_table(plan),
        "rules": _decision_rules(plan),
        "sensitivity_sets": mock_sensitivity(mock),  # does the prior matter for the mock study's estimates (power-scaling)
        "analyses": analyses,
        "se_type": spec.ols.se_type,
        "cluster": spec.ols.cluster,
        "detect_table": detect_table,
        "notes": list(plan.notes),
        "prior_sets": figures.get("_priors", []),
        "bernoulli": plan.outcome_family == "bernoulli",
        "p_min": f"{P_MIN:g}",
        "p_max": f"{P_MAX:g}",
        "any_bernoulli": any(a.family == "bernoulli" for a in plan.analyses),
        "any_gaussian": any(a.family == "gaussian" for a in plan.analyses),
        "base_rate": fmt.num(plan.base_rate) if plan.base_rate is not None else None,
        "detect_figure": figures.get("_detect"),
        "sim_where": sim.where,
        "sim_minutes": fmt.num(sim.wall_s / 60, 1),
        "n_replications": len(s),
        "n_failed": len(failed),
        "failed_examples": [str(e) for e in failed.get("error", pd.Series(dtype=str)).head(3)],
        "compiles": compiles,
        "swaps": int((ok["compile"] == "swap").sum()) if len(ok) and "compile" in ok else 0,
        "densities": int((ok["compile"] == "density").sum()) if len(ok) and "compile" in ok else 0,
        "mark": MARK,
        "route": route,
        "record_file": RECORD,
        "seeds_table": fmt.pipe_table(["Seed", "Value"], [[k, str(v)] for k, v in record["seeds"].items()], "lr", "Seeds.", "tbl-seeds"),
        "versions": fmt.pipe_table(
            ["Package", "Version"], [[k, v] for k, v in record["packages"].items()], "ll", "Package versions.", "tbl-versions"
        ),
        "spec_block": fmt.code_block(spec.source_text or ""),
        "canonical_block": fmt.code_block(json.dumps(record["spec"], indent=1, sort_keys=True), "json"),
        "pagebreak": Markup("{{< pagebreak >}}"),
        "simulated_names": ", ".join(plan.simulated),
        "has_pg": len(pg) > 0,
    }


# --------------------------------------------------------------------------- build + render


def _write_figures(spec: Spec, plan: Plan, sim: SimulationResult, folder: Path, log) -> dict:
    say = log or (lambda m: None)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    label = spec.label(spec.outcome)
    sets = []
    for first in _prior_analyses(plan):
        say(f"prior predictive draws ({first})")
        pp = prior_predictive(plan, first)
        bern = pp["family"] == "bernoulli"
        slug = _slug(first)
        if bern:
            caps = (
                (
                    "group_effect",
                    f"Prior predictive draws of the group effects of analysis '{first}' (bernoulli) on the probability scale: "
                    f"the difference in the probability of {label} between treatment and control, each group's log-odds slope "
                    f"drawn from the prior and applied at the planned base rate {plan.base_rate:g}; the dashed line is the "
                    "assumed average effect.",
                ),
                (
                    "sigma_theta",
                    f"Prior draws of σθ of analysis '{first}', the slope SD of the full crossing of the modifiers, on the "
                    "log-odds scale (the model's own scale); dashed lines are the assumed heterogeneity SDs converted to log-odds "
                    f"at the base rate (SD / (p(1 − p)) with p = {plan.base_rate:g}, a first-order approximation).",
                ),
            )
        else:
            caps = (
                (
                    "group_effect",
                    f"Prior predictive draws of the group effects of analysis '{first}' on the outcome's scale ({label}); the dashed line "
                    "is the assumed average effect.",
                ),
                (
                    "sigma_theta",
                    "Prior draws of σθ, the slope SD of the full crossing of the modifiers; dashed lines are the assumed heterogeneity SDs.",
                ),
            )
        entry = {"analysis": first, "bernoulli": bern}
        for key, cap in caps:
            stem = f"prior-{key}" if not sets else f"prior-{slug}-{key}"
            _save(figure_prior(pp, plan, key, label), folder / stem, 6.0, 3.0)
            entry[key] = {"path": Markup(f"figures/{stem}"), "id": Markup(f"fig-{stem.replace('_', '-')}"), "caption": cap}
        entry["summary"] = {
            "ge_lo": fmt.num(np.quantile(pp["group_effect"], 0.05)),
            "ge_hi": fmt.num(np.quantile(pp["group_effect"], 0.95)),
            "st_med": fmt.num(np.median(pp["sigma_theta"])),
            "st_hi": fmt.num(np.quantile(pp["sigma_theta"], 0.95)),
            "between_med": fmt.num(np.median(pp["sd_between"])),
        }
        entry["summary"]["too_wide"] = not bern and priors_too_wide(pp["group_effect"], plan.outcome_sd)
        entry["summary"]["two_sd"] = fmt.num(2 * plan.outcome_sd)
        sets.append(entry)
    out["_priors"] = sets
    pc = per_cell(sim, plan)
    pg = per_group(sim, plan)
    if len(pc) and pc["detect"].notna().any():
        _save(figure_detection(pc), folder / "detection", 6.0, 3.2)
        out["_detect"] = {
            "path": Markup("figures/detection"),
            "id": Markup("fig-detection"),
            "caption": "Probability of detecting heterogeneity, by planned N and approach (error bars: ±1.96 Monte-Carlo SEs).",
        }
    for c in cells(plan):
        if pg.empty:
            break
        if c.calibration:  # the null cell calibrates detection; its per-group figures would only repeat the others
            continue
        sizes = expected_sizes(plan, c.analysis, c.n)
        sub = pg[pg["cell_index"] == c.index]
        if sub.empty:
            continue
        figs_c = out.setdefault(c.analysis, {}).setdefault("cells", [])
        stem = f"{c.analysis}-n{c.n}-sd{c.sd:g}".replace(".", "_")
        entry = {"n": fmt.count(c.n), "sd": f"{c.sd:g}"}
        for metric, ylab, what in (
            ("width", "Mean 95% interval width", "expected 95% interval width"),
            ("rmse", "RMSE against the true effect", "RMSE"),
        ):
            _save(figure_by_group(sub, sizes, metric, ylab), folder / f"{stem}-{metric}", 6.0, 3.4)
            entry[metric] = {
                "path": Markup(f"figures/{stem}-{metric}"),
                "id": Markup(f"fig-{stem}-{metric}"),
                "caption": f"Per group: {what} over {plan.replications} replications at N = {c.n:,} and heterogeneity SD {c.sd:g}, "
                "against the group's expected size; one point per group and approach (OLS only where it can estimate the group).",
            }
        figs_c.append(entry)
    return out


def build_appendix(project: Path, spec: Spec, plan: Plan, sim: SimulationResult, mock, record: dict, route: str, log=None) -> Path:
    from ..report.build import environment
    from ..report.render import describe_route
    from ..resources import quarto_yml

    project.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(quarto_yml(), project / "_quarto.yml")
    figures = _write_figures(spec, plan, sim, project / "figures", log)
    ctx = appendix_context(spec, plan, sim, mock, record, figures, describe_route(route))
    env = environment(None)
    try:
        text = env.get_template("preregistration/appendix.qmd.j2").render(**ctx)
    except Exception as exc:
        raise RenderError(f"the appendix template failed ({type(exc).__name__}: {exc}); this is a bug in hetreport.") from None
    (project / "appendix.qmd").write_text(text, encoding="utf-8")
    return project


def preregister(
    spec: Spec | str | Path,
    out: str | Path,
    *,
    formats=None,
    route: str = "auto",
    scheduler: str | None = None,
    workers: int | None = None,
    log=None,
    client=None,
) -> dict:
    """Check the design, simulate, fit the mock study, render the appendix and write the record.

    Returns {"appendix": {fmt: path}, "mock": {fmt: path}, "record": path, "simulation_s": seconds}."""
    from ..report.build import build_project
    from ..report.render import describe_route, render_project

    say = log or (lambda m: None)
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    plan = resolve_plan(spec)  # every design error is raised here, before anything is written
    formats = list(formats or spec.report.formats)
    describe_route(route)  # a missing renderer is an error now, not after the simulation
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    tmp = Path(tempfile.mkdtemp(prefix="prereg-partial-", dir=out.parent))  # no dot: Quarto ignores dot-named folders
    try:
        sim = run_simulation(plan, scheduler=scheduler, workers=workers, log=say, client=client)
        if len(sim.summary) and (sim.summary["status"] == "ok").sum() == 0:
            first = sim.summary["error"].iloc[0]
            raise HetreportError(f"every replication of the detection simulation failed; the first error: {first}. Nothing was written.")
        say("mock report: fitting one simulated data set of the planned design")
        mock = fit_mock(spec, plan, tmp / "mock-data", log=say)
        mock.save(tmp / "mock")  # a new folder (the results' own check refuses foreign files in it)
        os.replace(tmp / "mock-data" / "simulated.csv", tmp / "mock" / "simulated.csv")  # the data beside its results
        (tmp / "mock-data").rmdir()
        mock_project = tmp / "mock" / "report"

        def build_mock(p: Path):
            build_project(mock, p, route=route, formats=formats, log=say)
            stamp_simulated(p, spec.title)

        build_mock(mock_project)
        say(f"rendering the mock report ({', '.join(formats)})")
        mock_outcome = render_project(mock_project, formats=formats, route=route)
        record = registration_record(spec, plan, created)
        (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        sim.summary.to_csv(tmp / "simulation.csv", index=False)
        sim.groups.to_csv(tmp / "simulation_groups.csv", index=False)
        project = tmp / "report"
        build_appendix(project, spec, plan, sim, mock, record, route, log=say)
        say(f"rendering the appendix ({', '.join(formats)})")
        outcome = render_project(project, formats=formats, route=route, document="appendix.qmd")
        # swap into place: nothing in `out` changes unless every step succeeded
        old = None
        if out.exists():
            old = out.parent / f".prereg-old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fix = lambda outs, sub: {k: out / sub / Path(v).name for k, v in outs.items()}  # noqa: E731
    return {
        "appendix": fix(outcome.outputs, "report"),
        "mock": fix(mock_outcome.outputs, "mock/report"),
        "record": out / RECORD,
        "simulation_s": sim.wall_s,
        "where": sim.where,
    }


__all__ = ["MARK", "RECORD", "preregister", "registration_record", "stamp_simulated"]
