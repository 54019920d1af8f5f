"""Report context for the questions sections (named comparisons, targeting, model comparison,
prior sensitivity): tables and sentences prepared here, figures written here, so that the
templates only place them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from .. import figures as figs
from .. import methods as registry
from ..contrasts import analysis_contrasts, resolve
from ..data import code_key
from ..figures import METHOD_LABELS
from ..figures import questions as qfigs
from . import format as fmt


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "analysis"


def side_words(a, selection: dict) -> str:
    """A side of a comparison in words: 'white, men' or 'high or highest internationalism'."""
    sel = resolve(selection, a.modifiers, "compare")
    parts = []
    for m in a.modifiers:
        if m.name not in sel.levels:
            continue
        codes = [str(c) for c in sel.levels[m.name]]
        keys = [code_key(v) for v in m.levels]
        labs = [m.level_labels[keys.index(c)] for c in codes]
        text = labs[0] if len(labs) == 1 else ", ".join(labs[:-1]) + " or " + labs[-1]
        if all(lab == str(c) for lab, c in zip(labs, codes)):  # no labels: say which variable, as group names do
            text = f"{m.label} = {text}"
        parts.append(text)
    return ", ".join(parts)


def _row(table: pd.DataFrame, name: str, method: str):
    r = table[(table["name"] == name) & (table["method"] == method)]
    return None if r.empty else r.iloc[0]


def _iv(r) -> str:
    return f"{fmt.num(r['estimate'])} (95% interval {fmt.num(r['lower_95'])} to {fmt.num(r['upper_95'])})"


def _p(p) -> str:
    if not np.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def contrasts_context(a, results, folder: Path) -> dict:
    compare = results.spec.analysis(a.name).compare
    if not compare:
        return {"any": False}
    slug = _slug(a.name)
    table = analysis_contrasts(a, results.effects, compare)
    items, rows = [], []
    u = fmt.unit_of(results.spec.unit_of(results.spec.analysis(a.name)))  # labels.units: the sentences say it
    for c in compare:
        h, o, g = (_row(table, c.name, m) for m in (registry.REFERENCE, registry.BASELINE, "glm_full"))
        wa, wb = side_words(a, c.a), side_words(a, c.b)
        label = c.label or c.name
        direction = "larger" if h["estimate"] >= 0 else "smaller"
        p_dir = h["prob_positive"] if h["estimate"] >= 0 else 1 - h["prob_positive"]
        sentence = (
            f"{label}: the average effect among {wa} ({fmt.count(h['n_a'])} {results.spec.report.units}) is "
            f"{fmt.effect(abs(h['estimate']), u)} {direction} than among {wb} ({fmt.count(h['n_b'])}), "
            f"95% interval {fmt.effect_range(h['lower_95'], h['upper_95'], u)} for the difference "
            f"(probability {fmt.pct(p_dir)} that it is {direction})"
        )
        freq = []
        for r, what in ((o, "OLS with fully crossed interactions"), (g, "the fully crossed GLM")):
            if r is None:
                continue
            if np.isfinite(r["estimate"]):
                part = (
                    f"{what}: {fmt.effect(r['estimate'], u)} ({fmt.effect_range(r['lower_95'], r['upper_95'], u)}, p = {_p(r['p_value'])})"
                )
                if r["n_groups_a"] < h["n_groups_a"] or r["n_groups_b"] < h["n_groups_b"]:
                    part += (
                        f", averaging only the groups it can estimate ({int(r['n_groups_a'])} of {int(h['n_groups_a'])} on the first side, "
                        f"{int(r['n_groups_b'])} of {int(h['n_groups_b'])} on the second)"
                    )
                freq.append(part)
            else:
                freq.append(f"{what}: no estimate ({r['note']})")
        sentence += ("; " + "; ".join(freq) if freq else "") + "."
        items.append({"label": label, "sentence": sentence, "a": wa, "b": wb})
        for r in (h, o, g):
            if r is None:
                continue
            prob = fmt.pct(r["prob_positive"]) if r["method"] == registry.REFERENCE else "—"
            rows.append(
                [
                    label if r["method"] == registry.REFERENCE else "",
                    METHOD_LABELS[r["method"]],
                    f"{fmt.num(r['estimate'])} ({fmt.ci(r['lower_95'], r['upper_95'])})",
                    fmt.num(r["std_error"]),
                    prob,
                    _p(r["p_value"]),
                    f"{fmt.count(r['n_a'])} / {fmt.count(r['n_b'])}",
                ]
            )
    tbl = fmt.pipe_table(
        ["Comparison (A against B)", "Method", "Difference (95% interval)", "SD / SE", "P(A>B)", "p", "Units A / B"],
        rows,
        "llrrrrr",
        "Named comparisons: the average effect of the groups on side A minus that of side B, each average weighted by "
        "group size. Hierarchical: posterior mean, SD and equal-tailed interval of the difference computed draw by draw. "
        "OLS / GLM: the same combination of the fully crossed fit's group estimates with its robust standard error.",
        f"tbl-{slug}-contrasts",
    )
    plot = qfigs.plot_contrasts(table, effect_name=f"Difference in average effect on {a.outcome}")
    stem = folder / f"{slug}-contrasts"
    w, hgt = plot.theme.getp("figure_size")
    figs.save_figure(plot, stem, w, hgt)
    fig = {
        "id": Markup(f"fig-{slug}-contrasts"),
        "path": Markup(f"figures/{slug}-contrasts"),
        "caption": "Named comparisons: the difference between the two sets' average effects, by method.",
        "alt": Markup("Dot-and-interval plot of each named comparison by method."),
    }
    return {"any": True, "entries": items, "table": tbl, "fig": fig}


def analysis_questions(a, results, folder: Path) -> dict:
    """Everything the questions partials of one analysis need (``c.q`` in the templates)."""
    return {
        "contrasts": contrasts_context(a, results, folder),
        "targeting": targeting_context(a, results, folder),
        "sensitivity": sensitivity_context(a),
    }


def _share_iv(q) -> str:
    return f"{fmt.share(q['estimate'])} (95% interval {fmt.share(q['lower_95'])} to {fmt.share(q['upper_95'])})"


def targeting_context(a, results, folder: Path) -> dict:
    from ..targeting import targeting_of

    spec_t = results.spec.report.targeting
    if spec_t is None:
        return {"any": False}
    slug = _slug(a.name)
    t = targeting_of(a, results.effects, spec_t.budget, spec_t.groups)
    units = results.spec.report.units
    u = fmt.unit_of(results.spec.unit_of(results.spec.analysis(a.name)))  # labels.units: the sentences say it
    unit = units[:-1] if units.endswith("s") and not units.endswith("ss") else units
    q = {
        (r.version, r.quantity): {"estimate": r.estimate, "lower_95": r.lower_95, "upper_95": r.upper_95, "prob_positive": r.prob_positive}
        for r in t.summary.itertuples(index=False)
    }
    ins, rep = (lambda name: q[("in_sample", name)]), (lambda name: q[("replicate", name)])
    asked = (
        f"the groups with the largest estimated effects, up to {fmt.share(spec_t.budget)} of the {units}"
        if spec_t.budget is not None
        else f"the {spec_t.groups} groups with the largest estimated effects"
    )
    p3 = ", ".join(f"{fmt.pct(p)}" for p in t.prob_top3)
    certain = all(p >= 0.8 for p in t.prob_top3)
    brief = (
        f"Treating the {'group' if t.k == 1 else plural_word(t.k, 'group')} ranked highest first reaches {fmt.share(ins('reach')['estimate'])} of the {units} and "
        f"{_share_iv(ins('share_of_effect'))} of the total effect; their average effect is {fmt.effect(ins('mean_treated')['estimate'], u)} against "
        f"{fmt.effect(ins('average')['estimate'], u)} for everyone, {fmt.effect(ins('gain_vs_random')['estimate'], u)} more per treated {unit} "
        f"than a random choice of the same size (95% interval {fmt.effect_range(ins('gain_vs_random')['lower_95'], ins('gain_vs_random')['upper_95'], u)}). "
        f"These numbers rank and evaluate the groups on the same data, which flatters the ranking; a new study of this size choosing its own "
        f"top groups would gain {fmt.effect(rep('gain_vs_random')['estimate'], u)} per treated {unit} "
        f"(95% interval {fmt.effect_range(rep('gain_vs_random')['lower_95'], rep('gain_vs_random')['upper_95'], u)}). "
        + (
            f"The ranking of the top three is {'fairly secure' if certain else 'uncertain'}: the probability that each is truly among the three "
            f"largest effects is {p3}, and {fmt.pct(t.prob_top3_set)} that all three are."
            if len(t.prob_top3) == 3
            else ""
        )
    )
    show = t.groups.head(max(t.k + 3, 8))
    g_rows = [
        [
            str(r.rank),
            r.group_label,
            fmt.count(r.n),
            fmt.share(r.cumulative_share),
            fmt.num(r.estimate),
            fmt.ci(r.lower_95, r.upper_95),
            fmt.pct(r.prob_top_k),
            "yes" if r.treated else "",
        ]
        for r in show.itertuples()
    ]
    g_tbl = fmt.pipe_table(
        ["Rank", "Group", "Units", "Cumulative share", "Effect", "95% interval", f"P(top {t.k})", "Treated"],
        g_rows,
        "rlrrrrrl",
        f"The groups in order of their posterior mean effect (the first {len(show)} of {len(t.groups)}). P(top {t.k}): the posterior "
        f"probability that the group is among the {t.k} largest effects.",
        f"tbl-{slug}-targeting-groups",
    )
    names = {
        "reach": "Share of the population treated",
        "mean_treated": "Average effect among the treated",
        "average": "Average effect, everyone treated",
        "gain_vs_random": f"Gain per treated {unit} over a random choice",
        "gain_per_person": f"Gain per {unit} of the population over a random choice",
        "share_of_effect": "Share of the total effect reached",
    }
    pct_rows = {"reach", "share_of_effect"}

    s_rows = []
    for key, label in names.items():
        row = [label]
        for version in ("in_sample", "replicate"):
            v = q[(version, key)]
            if key in pct_rows and fmt.share(v["lower_95"]) == fmt.share(v["upper_95"]):  # fixed by the choice, not uncertain
                row.append(fmt.share(v["estimate"]))
            elif key in pct_rows:
                row.append(f"{fmt.share(v['estimate'])} ({fmt.share(v['lower_95'])} to {fmt.share(v['upper_95'])})")
            else:
                row.append(f"{fmt.num(v['estimate'])} ({fmt.ci(v['lower_95'], v['upper_95'])})")
        s_rows.append(row)
    s_tbl = fmt.pipe_table(
        ["Quantity", "Ranked and evaluated on the same data (flatters)", "A new study of the same size (honest)"],
        s_rows,
        "lrr",
        "What treating the top groups first achieves (posterior mean and 95% interval). Left: the ranking chosen from the posterior "
        "means and evaluated on the same posterior. Right: for each posterior draw, a new study of the same size estimates every "
        "group with its OLS standard error, shrinks the estimates as a hierarchical model would, picks its top groups within the "
        "same budget, and is evaluated on that draw's effects, which it did not see.",
        f"tbl-{slug}-targeting",
    )
    plot = qfigs.plot_targeting(t.curve, float(t.groups.loc[t.groups["treated"], "cumulative_share"].max()))
    w, hgt = plot.theme.getp("figure_size")
    figs.save_figure(plot, folder / f"{slug}-targeting", w, hgt)
    fig = {
        "id": Markup(f"fig-{slug}-targeting"),
        "path": Markup(f"figures/{slug}-targeting"),
        "caption": "Targeting curve: treating groups in order of their estimated effect, the share of the population reached against the "
        "share of the total effect reached (posterior mean and 95% interval).",
        "alt": Markup("Curve of the share of the total effect against the share of the population treated."),
    }
    return {"any": True, "asked": asked, "brief": brief, "groups_table": g_tbl, "table": s_tbl, "fig": fig, "k": t.k}


def plural_word(n: int, one: str) -> str:
    return f"{n} {one}" if n == 1 else f"{n} {one}s"


def loo_context(results) -> dict:
    from ..modelcheck import compare_loo

    pairs = compare_loo(results.analyses)
    if not pairs:
        return {"any": False}
    items, rows, seen = [], [], set()
    for c in pairs:
        b, o = c["best"], c["other"]
        close = abs(c["elpd_diff"]) < 2 * c["se_diff"]
        ks = [f"{fmt.md(x.title)}: {r['n_high_k']} of {r['n']} rows" for x, r in ((b, c["best_loo"]), (o, c["other_loo"])) if r["n_high_k"]]
        bt, ot = Markup(f"*{fmt.md(b.title)}*"), Markup(f"*{fmt.md(o.title)}*")
        text = (
            f"{bt} and {ot} model the same outcome on the same {fmt.count(c['n'])} rows. By PSIS-LOO, {bt} predicts a left-out "
            f"row better: its expected log predictive density is higher by {fmt.num(c['elpd_diff'], 1)} (standard error {fmt.num(c['se_diff'], 1)}), "
            + (
                "less than two standard errors, so the data do not clearly prefer either model. "
                if close
                else "more than two standard errors, so the data prefer it. "
            )
            + (
                f"Pareto k is above {c['best_loo']['k_threshold']} for {'; '.join(ks)}, so for those rows the estimate is unreliable and "
                "the difference should be read with care. "
                if ks
                else f"Every Pareto k is below {c['best_loo']['k_threshold']}, so the estimates are reliable. "
            )
        )
        items.append(Markup(text))  # the titles are escaped above; the rest is hetreport's text and numbers
        for x, r in ((b, c["best_loo"]), (o, c["other_loo"])):
            if x.name in seen:
                continue
            seen.add(x.name)
            diff = "0 (best)" if x is b else f"{fmt.num(-c['elpd_diff'], 1)} ({fmt.num(c['se_diff'], 1)})"
            rows.append(
                [
                    x.title,
                    f"{fmt.num(r['elpd_loo'], 1)} ({fmt.num(r['se'], 1)})",
                    fmt.num(r["p_loo"], 1),
                    diff,
                    f"{r['n_high_k']} (max {fmt.num(r['max_k'], 2)})",
                ]
            )
    tbl = fmt.pipe_table(
        [
            "Analysis",
            "elpd LOO (SE)",
            "p LOO",
            "Difference to the best (SE)",
            f"Rows with Pareto k > {pairs[0]['best_loo']['k_threshold']}",
        ],
        rows,
        "lrrrr",
        "PSIS-LOO of the hierarchical models that share an outcome and rows: the expected log predictive density "
        "of a left-out row (higher is better), the effective number of parameters, and the difference to the best model with its "
        "standard error (from the rows' paired differences).",
        "tbl-loo",
    )
    return {"any": True, "entries": items, "table": tbl}


def sensitivity_context(a, label: str | None = None) -> dict:
    from ..modelcheck import PSENSE_THRESHOLD, sensitivity_of

    rows = sensitivity_of(a)
    if not rows:
        return {"any": False}
    slug = _slug(a.name)
    has_lik = any(np.isfinite(r["likelihood"]) for r in rows)
    table = fmt.pipe_table(
        ["Quantity", "Prior sensitivity", "Likelihood sensitivity", "Diagnosis"],
        [[r["quantity"], fmt.num(r["prior"], 3), fmt.num(r["likelihood"], 3), r["diagnosis"]] for r in rows],
        "lrrl",
        "Power-scaling sensitivity (Kallioinen et al. 2024, arviz-stats psense): how much each posterior changes "
        "when the joint prior of the model's parameters" + (" or the likelihood" if has_lik else "") + " is raised to a power "
        f"near 1 (the gradient of the CJS distance, from Pareto-smoothed importance weights; no refit). {PSENSE_THRESHOLD} or more "
        "counts as sensitive.",
        label or f"tbl-{slug}-sensitivity",
    )
    sens = [r["quantity"] for r in rows if r["prior"] >= PSENSE_THRESHOLD]
    if sens:
        words = (
            "The posterior of " + ", ".join(sens) + " moves when the priors are made slightly stronger or weaker, so "
            "these estimates lean on the priors as well as on the data"
            + (
                "; where the likelihood sensitivity is also high, prior and data pull in different directions (a possible prior-data conflict), "
                "and where it is low, the data say little about the quantity."
                if has_lik
                else "."
            )
        )
    else:
        words = (
            "None of these posteriors moves noticeably when the priors are made slightly stronger or weaker: the estimates are "
            "driven by the data, whatever the priors allow on their own."
        )
    return {"any": True, "table": table, "words": words, "label": Markup(label or f"tbl-{slug}-sensitivity")}
