"""The two-page brief for policymakers: the same facts as the report's page one, said for a reader
who will not read the report.

Every sentence of the brief is made here, in plain text, from :class:`hetreport.facts.Facts`
(the numbers the report's page one prints) and the analysis's group table; the template only
places them. The brief speaks of one analysis, the *headline* (``report.headline``, default the
first analysis), and says in one sentence whether the others point the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from ..errors import SpecError
from ..facts import CREDIBLE, Facts, GroupFact, Interval
from ..models.families import get_family
from . import format as fmt

__all__ = ["Brief", "brief_for", "direction", "headline_analysis", "write_brief_figure"]


@dataclass(frozen=True)
class Brief:
    """What the brief says, sentence by sentence (plain text; the template escapes it)."""

    analysis: str  # name of the headline analysis
    title: str  # the study's title
    analysis_title: str
    headline: str  # one sentence: the average effect and its interval, in the outcome's units
    findings: list[str]  # three to five, each with its uncertainty
    cannot_tell: list[str]  # what the data cannot tell (tiny groups, one-arm groups); may be empty
    agreement: str | None  # whether the other analyses agree (None with one analysis)
    method: str  # one line of method and where the full report is
    preregistration: str | None  # the pre-registration status, when there is one
    figure_alt: str  # alt text of the brief's figure: what it shows and its main number
    figure_caption: str
    numbers: dict = field(default_factory=dict)  # the facts each statement used, for tests


def headline_analysis(spec, names: list[str]) -> str:
    """The analysis the brief (and page one) speak of: ``report.headline`` or the first analysis."""
    wanted = getattr(spec.report, "headline", None)
    if wanted is None:
        return names[0]
    if wanted not in names:
        raise SpecError(
            f"report.headline is '{wanted}', which is not the name of an analysis. "
            f"The analyses are: {', '.join(names)}. Set report.headline to one of them, or leave it out "
            "to use the first analysis."
        )
    return wanted


def direction(iv: Interval) -> str:
    """'positive' / 'negative' when the 95% interval is on one side of zero, else 'unclear'."""
    if iv.lower > 0:
        return "positive"
    if iv.upper < 0:
        return "negative"
    return "unclear"


def _people(n: int, unit: str, units: str) -> str:
    return f"{fmt.count(n)} {unit if n == 1 else units}"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _have(n: int) -> str:
    return "has" if n == 1 else "have"


def _scale(family: str) -> tuple[str, int | None]:
    """How the effect is said (unit words) and the digits for it, from the outcome's family."""
    fam = get_family(family)
    if fam.name in ("bernoulli", "binomial"):
        return "percentage points", 1
    return "", None  # the document's decimals (report.digits or the outcome's scale)


def _effect(x: float, family: str, unit=None) -> str:
    """An effect in the outcome's units: percentage points for a probability, else the outcome's unit
    (``labels.units``: '$812', '812 dollars') or, without one, the bare number."""
    words, digits = _scale(family)
    if words:
        return f"{fmt.num(100 * x, digits)} {words}"
    return fmt.effect(x, unit, digits)


def _interval(iv: Interval, family: str, unit=None) -> str:
    words, digits = _scale(family)
    if words:
        return f"{fmt.num(100 * iv.lower, digits)} to {fmt.num(100 * iv.upper, digits)} {words}"
    return fmt.effect_range(iv.lower, iv.upper, unit, digits)


def _with_interval(iv: Interval, family: str, unit=None) -> str:
    return f"{_effect(iv.estimate, family, unit)} (95% interval {_interval(iv, family, unit)})"


def _small(groups: pd.DataFrame, gf: GroupFact) -> str | None:
    """Why a group's estimate is weak, when it is (one arm, or an arm under min_arm)."""
    row = groups.loc[groups["group"] == gf.group]
    if row.empty:
        return None
    r = row.iloc[0]
    if bool(r["one_arm"]):
        return "it has people in only one arm, so its effect is inferred from similar groups"
    if bool(r["small_arm"]):
        return (
            f"it is a small group ({fmt.count(int(r['n_treated']))} treated, {fmt.count(int(r['n_control']))} "
            f"untreated), so its interval is wide"
        )
    return None


def _named(gf: GroupFact, family: str, groups: pd.DataFrame, unit: str, units: str, effect_unit=None) -> str:
    text = (
        f"{gf.label}, at {_effect(gf.effect.estimate, family, effect_unit)} (95% interval {_interval(gf.effect, family, effect_unit)}; "
        f"{_people(gf.n, unit, units)})"
    )
    weak = _small(groups, gf)
    return text + (f" — {weak}" if weak else "")


def brief_for(ctx: dict, others: list[dict], study: dict, spec) -> Brief:
    """The brief of the headline analysis ``ctx`` (an analysis context of build.analysis_context),
    with ``others`` the contexts of the other analyses and ``study`` the study context."""
    f: Facts = ctx["f"]
    a = ctx["a"]
    family = ctx["family"]
    unit, units = ctx["unit"], ctx["units"]
    eu = ctx.get("effect_unit")  # the outcome's unit (labels.units), None for a bare number
    groups = a.groups
    treatment, outcome = ctx["treatment"], ctx["outcome"]
    min_arm = spec.report.min_arm
    avg = f.average
    d = direction(avg)
    moves = {"positive": "raises", "negative": "lowers", "unclear": "changes"}[d]
    headline = (
        f"On average, {treatment} {moves} {outcome} by {_effect(abs(avg.estimate) if d != 'unclear' else avg.estimate, family, eu)} "
        f"(95% interval {_interval(avg, family, eu)}), over {_people(f.n, unit, units)} in {fmt.count(f.n_groups)} groups."
    )
    if d == "unclear":
        headline += " The interval includes zero, so the data cannot say whether the average effect is positive or negative."

    findings = []
    largest = _named(f.largest, family, groups, unit, units, eu)
    smallest = _named(f.smallest, family, groups, unit, units, eu)
    if f.prob_largest_above_smallest >= CREDIBLE:
        findings.append(
            f"The effect is largest among {largest}, and smallest among {smallest}. The largest exceeds the smallest "
            f"with {fmt.pct(f.prob_largest_above_smallest)} probability."
        )
    else:
        findings.append(
            f"The effect is estimated to be largest among {largest}, and smallest among {smallest}; but we cannot tell "
            f"these two groups apart: the probability that the first truly has the larger effect is only "
            f"{fmt.pct(f.prob_largest_above_smallest)}."
        )
    best = _largest_well_measured(ctx, min_arm)
    if best is not None and best.group != f.largest.group:
        findings.append(
            f"Among the groups with at least {fmt.count(min_arm)} people in each arm, the effect is largest among "
            f"{best.label}, at {_effect(best.effect.estimate, family, eu)} (95% interval {_interval(best.effect, family, eu)}; "
            f"{_people(best.n, unit, units)})."
        )
    if f.modifiers:
        mf = max(f.modifiers, key=lambda m: m.range_mean)
        if mf.highest != mf.lowest:
            text = (
                f"By {mf.label}: the effect is {_effect(mf.difference.estimate, family, eu)} larger among {mf.highest} than among "
                f"{mf.lowest} (95% interval {_interval(mf.difference, family, eu)})."
            )
            if mf.prob_difference >= CREDIBLE:
                text += f" This difference is clear ({fmt.pct(mf.prob_difference)} probability that it is real)."
            else:
                text += (
                    f" We cannot tell these two groups apart with confidence ({fmt.pct(mf.prob_difference)} probability "
                    "that the difference is real)."
                )
            findings.append(text)
    pos, neg = f.n_credibly_positive, f.n_credibly_negative
    sentence = (
        f"In {fmt.count(pos)} of the {fmt.count(f.n_groups)} groups the effect is positive with at least {fmt.pct(CREDIBLE)} probability"
    )
    sentence += f", and in {fmt.count(neg)} it is negative with that probability." if neg else "."
    rest = f.n_groups - pos - neg
    if rest:
        sentence += (" For the remaining group" if rest == 1 else f" For the other {fmt.count(rest)} groups") + (
            " the data cannot say with that confidence which way the effect goes."
        )
    findings.append(sentence)
    findings = findings[:5]

    cannot = []
    if f.n_one_arm:
        cannot.append(
            f"{fmt.count(f.n_one_arm)} of the {fmt.count(f.n_groups)} groups {_have(f.n_one_arm)} people in only one arm "
            "(all treated or all untreated): nothing in the data measures the effect there; the model's estimate "
            "for them is borrowed from similar groups."
        )
    small_only = int((groups["small_arm"] & ~groups["one_arm"]).sum())
    if small_only:
        one = small_only == 1
        cannot.append(
            f"{fmt.count(small_only)} group{'' if one else 's'} {_have(small_only)} fewer than {fmt.count(min_arm)} "
            f"people in an arm: {'its estimate is' if one else 'their estimates are'} too uncertain to say much "
            f"about {'that group' if one else 'those groups'} on {'its' if one else 'their'} own."
        )
    agreement = _agreement(ctx, others)
    files = [f"report.{ext}" for ext in study.get("formats") or ["html", "pdf"]]
    report_words = (
        f"The full report ({', '.join(files)}, next to this brief) gives every group's estimate, the model and its checks; "
        "paper/ holds its figures and tables for a manuscript."
    )
    method = (
        "Method: each group's effect comes from a Bayesian hierarchical model that lets small groups borrow "
        "strength from similar ones (Alley 2024), checked against a regression with a separate effect for every group. " + report_words
    )
    pre = _preregistration(study.get("conformance"))
    alt = (
        f"Dot plot of the {fmt.count(f.n_groups)} groups ranked by their estimated effect of {treatment} on {outcome}, "
        f"each with its 95% interval: from {_effect(f.smallest.effect.estimate, family, eu)} ({f.smallest.label}) to "
        f"{_effect(f.largest.effect.estimate, family, eu)} ({f.largest.label}); the average is {_effect(avg.estimate, family, eu)}."
    )
    caption = (
        "Each dot is one group's estimated effect, ranked from smallest to largest; the line through it is its 95% "
        "interval. The dashed line is the average effect, the grey line zero."
    )
    return Brief(
        analysis=ctx["name"],
        title=spec.title,
        analysis_title=ctx["title"],
        headline=headline,
        findings=findings,
        cannot_tell=cannot,
        agreement=agreement,
        method=method,
        preregistration=pre,
        figure_alt=alt,
        figure_caption=caption,
        numbers={
            "average": avg,
            "largest": f.largest,
            "smallest": f.smallest,
            "best_measured": best,
            "n_one_arm": f.n_one_arm,
            "n_small_only": small_only,
        },
    )


def _largest_well_measured(ctx: dict, min_arm: int) -> GroupFact | None:
    """The group with the largest hierarchical estimate among groups with at least ``min_arm`` people in each arm."""
    a = ctx["a"]
    g = a.groups.reset_index(drop=True)
    ok = (g["n_treated"] >= min_arm) & (g["n_control"] >= min_arm)
    if not ok.any():
        return None
    draws = a.group_draws()
    order = a.posterior.posterior["group"].to_numpy().tolist()
    means = draws.mean(axis=0)
    best_j, best = None, -np.inf
    for r in g[ok].itertuples():
        j = order.index(r.group)
        if means[j] > best:
            best_j, best = j, means[j]
    r = g.loc[g["group"] == order[best_j]].iloc[0]
    eff = Interval.from_draws(draws[:, best_j])
    return GroupFact(order[best_j], str(r["group_label"]), int(r["n"]), eff, float((draws[:, best_j] > 0).mean()))


def _agreement(ctx: dict, others: list[dict]) -> str | None:
    if not others:
        return None
    d = direction(ctx["f"].average)
    same = [o for o in others if direction(o["f"].average) == d]
    n = len(others)
    which = {
        "positive": "a positive average effect",
        "negative": "a negative average effect",
        "unclear": "an average effect whose interval includes zero",
    }
    if len(same) == n:
        if n == 1:
            return f"The other analysis of this study agrees: it finds {which[d]}."
        return f"All {fmt.count(n)} other analyses of this study agree: each finds {which[d]}."
    differ = [f"{o['title']} ({which[direction(o['f'].average)]})" for o in others if o not in same]
    return (
        f"{fmt.count(len(same))} of the other {fmt.count(n)} analyses agree{'s' if len(same) == 1 else ''} in finding {which[d]}; "
        f"{'; '.join(differ)} {'does' if len(differ) == 1 else 'do'} not."
    )


def _preregistration(conf: dict | None) -> str | None:
    if not conf:
        return None
    if conf["as_registered"]:
        return f"This analysis was pre-registered on {conf['registered']} (record {conf['hash12']}) and was run as registered."
    k = conf["n_deviations"]
    return (
        f"This analysis was pre-registered on {conf['registered']} (record {conf['hash12']}); it differs from the registration "
        f"in {k} way{'s' if k != 1 else ''}, listed in the full report."
    )


def attribute_text(text: str) -> Markup:
    """Text for a quoted pandoc attribute (fig-alt="..."): pandoc reads \\ and \" there and every other
    character literally; a Quarto shortcode opener is broken up so that it stays text."""
    return Markup(str(text).replace("\\", "\\\\").replace('"', '\\"').replace("{{<", "{ {<").replace("\n", " "))


# --------------------------------------------------------------------------- the figure


def ranked_frame(ctx: dict) -> pd.DataFrame:
    """One row per group: label, n, estimate and 95% interval, ranked by estimate (rank 1 = smallest)."""
    a = ctx["a"]
    draws = a.group_draws()
    order = a.posterior.posterior["group"].to_numpy().tolist()
    g = a.groups.set_index("group")
    out = pd.DataFrame(
        {
            "group": order,
            "estimate": draws.mean(axis=0),
            "lower": np.quantile(draws, 0.025, axis=0),
            "upper": np.quantile(draws, 0.975, axis=0),
        }
    )
    out["label"] = [str(g.loc[k, "group_label"]) for k in order]
    out["n"] = [int(g.loc[k, "n"]) for k in order]
    out = out.sort_values("estimate", kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def write_brief_figure(ctx: dict, folder: Path, scale: float = 1.0) -> dict:
    """The brief's one figure (groups ranked with intervals, the smallest and largest named), as PNG and SVG."""
    from plotnine import aes, annotate, element_blank, geom_hline, geom_point, geom_segment, ggplot, labs, theme

    from .. import figures as figs

    df = ranked_frame(ctx)
    f = ctx["f"]
    family = ctx["family"]
    mult = 100 if _scale(family)[0] else 1
    for c in ("estimate", "lower", "upper"):
        df[c] = df[c] * mult
    eu = ctx.get("effect_unit")
    ylab = f"Effect on {ctx['outcome']}" + (" (percentage points)" if mult == 100 else f" ({eu.text})" if eu else "")
    G = len(df)
    lo, hi = df.iloc[0], df.iloc[-1]
    p = (
        ggplot(df, aes("rank", "estimate"))
        + geom_hline(yintercept=0, color="#999999")
        + geom_hline(yintercept=f.average.estimate * mult, linetype="dashed", color="#333333")
        + geom_segment(aes(x="rank", xend="rank", y="lower", yend="upper"), color="#9ecae1", size=0.8 if G < 40 else 0.4)
        + geom_point(size=2.2 if G < 40 else 1.2, color="#08519c")
        + annotate(
            "text", x=lo["rank"], y=lo["lower"], label=_wrap(str(lo["label"]).replace("$", r"\$")), ha="left", va="top", size=8, nudge_x=0.3
        )
        + annotate(
            "text",
            x=hi["rank"],
            y=hi["upper"],
            label=_wrap(str(hi["label"]).replace("$", r"\$")),
            ha="right",
            va="bottom",
            size=8,
            nudge_x=-0.3,
        )
        + labs(x=f"Groups, ranked from smallest to largest effect (1 to {G})", y=figs_plain(ylab))
        + figs.theme_hetreport()
        + theme(panel_grid_major_x=element_blank(), panel_grid_minor_x=element_blank(), figure_size=(6.5, 3.0))
    )
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / "brief-ranked"
    span = df["upper"].max() - df["lower"].min()
    p = p + _ylim(df["lower"].min() - 0.12 * span, df["upper"].max() + 0.12 * span, None if mult == 100 else eu)
    figs.save_figure(p, stem, 6.5 * scale, 3.0 * scale)
    return {"path": Markup("figures/brief-ranked"), "stem": stem}


def figs_plain(text: str) -> str:
    return str(text).replace("$", r"\$")


def _ylim(lo: float, hi: float, unit=None):
    """The y range; with an outcome's unit the ticks are written as the text writes effects ("$1,500", "−$500")."""
    from plotnine import scale_y_continuous, ylim

    if unit is None:
        return ylim(lo, hi)
    return scale_y_continuous(limits=(lo, hi), labels=lambda breaks: [figs_plain(tick_label(b, unit)) for b in breaks])


def tick_label(value: float, unit) -> str:
    """An axis tick in the outcome's unit: a currency symbol before the number, words left to the axis title."""
    text = fmt.num(value, 0 if float(value).is_integer() else None)
    return fmt.effect(value, unit, 0 if float(value).is_integer() else None) if unit.prefix else text


def _wrap(label: str, width: int = 38) -> str:
    words, lines, cur = label.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    return "\n".join(lines[:3])


# --------------------------------------------------------------------------- writing and rendering


def write_brief(project: Path, results, contexts: list[dict], study: dict, env) -> Brief:
    """Write ``brief.qmd`` and its figure into the report project (next to report.qmd)."""
    from jinja2 import TemplateError

    from ..errors import RenderError

    names = [c["name"] for c in contexts]
    head = headline_analysis(results.spec, names)
    ctx = contexts[names.index(head)]
    others = [c for c in contexts if c["name"] != head]
    brief = brief_for(ctx, others, study, results.spec)
    fig = write_brief_figure(ctx, project / "figures")
    try:
        from .template_data import template_data  # plain data only, as for the report (a user may override brief.qmd.j2)

        text = env.get_template("brief.qmd.j2").render(
            **template_data(
                {"b": brief, "fig": fig, "alt": attribute_text(brief.figure_alt), "title": study["title"], "date": study["date"]}
            )
        )
    except TemplateError as exc:
        raise RenderError(
            f"the brief's template failed (brief.qmd.j2, line {getattr(exc, 'lineno', '?')}): {exc}. If report.templates "
            "overrides hetreport's templates, check its brief.qmd.j2; otherwise this is a bug in hetreport."
        ) from None
    (project / "brief.qmd").write_text(text, encoding="utf-8")
    return brief


def render_documents(project: Path, formats, route: str = "auto"):
    """Render report.qmd and, when the project has one, brief.qmd, to every format. The report's outputs
    keep their keys ("html", "pdf", ...); the brief's are "brief-html", "brief-pdf", ..."""
    from dataclasses import replace

    from .render import render_project

    outcome = render_project(project, formats=formats, route=route)
    if not (Path(project) / "brief.qmd").is_file():
        return outcome
    brief = render_project(project, formats=formats, route=route, document="brief.qmd")
    return replace(outcome, outputs={**outcome.outputs, **{f"brief-{k}": v for k, v in brief.outputs.items()}})
