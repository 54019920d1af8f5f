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
from .. import figures_questions as qfigs
from ..contrasts import analysis_contrasts, resolve
from ..data import code_key
from ..figures import METHOD_LABELS
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
        if all(lab == str(c) for lab, c in zip(labs, codes)):  # no labels: say which variable
            text = f"{m.label} {text}"
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
    for c in compare:
        h, o, g = (_row(table, c.name, m) for m in ("hierarchical", "ols_full", "glm_full"))
        wa, wb = side_words(a, c.a), side_words(a, c.b)
        label = c.label or c.name
        direction = "larger" if h["estimate"] >= 0 else "smaller"
        p_dir = h["prob_positive"] if h["estimate"] >= 0 else 1 - h["prob_positive"]
        sentence = (f"{label}: the average effect among {wa} ({fmt.count(h['n_a'])} {results.spec.report.units}) is "
                    f"{fmt.num(abs(h['estimate']))} {direction} than among {wb} ({fmt.count(h['n_b'])}), "
                    f"95% interval {fmt.num(h['lower_95'])} to {fmt.num(h['upper_95'])} for the difference "
                    f"(probability {fmt.pct(p_dir)} that it is {direction})")
        freq = []
        for r, what in ((o, "OLS with fully crossed interactions"), (g, "the fully crossed GLM")):
            if r is None:
                continue
            if np.isfinite(r["estimate"]):
                freq.append(f"{what}: {fmt.num(r['estimate'])} ({fmt.num(r['lower_95'])} to {fmt.num(r['upper_95'])}, p = {_p(r['p_value'])})")
            else:
                freq.append(f"{what}: no estimate ({r['note']})")
        sentence += ("; " + "; ".join(freq) if freq else "") + "."
        items.append({"label": label, "sentence": sentence, "a": wa, "b": wb})
        for r in (h, o, g):
            if r is None:
                continue
            prob = fmt.pct(r["prob_positive"]) if r["method"] == "hierarchical" else "—"
            rows.append([label if r["method"] == "hierarchical" else "", METHOD_LABELS[r["method"]],
                         f"{fmt.num(r['estimate'])}", fmt.ci(r["lower_95"], r["upper_95"]), fmt.num(r["std_error"]), prob,
                         _p(r["p_value"]), f"{fmt.count(r['n_a'])} / {fmt.count(r['n_b'])}"])
    tbl = fmt.pipe_table(["Comparison", "Method", "Difference", "95% interval", "SD / SE", "P(A > B)", "p-value", "Units A / B"], rows,
                         "llrrrrrr", "Named comparisons: the average effect of the groups on side A minus that of side B, each average weighted by "
                         "group size. Hierarchical: posterior mean, SD and equal-tailed interval of the difference computed draw by draw. "
                         "OLS / GLM: the same combination of the fully crossed fit's group estimates with its robust standard error.",
                         f"tbl-{slug}-contrasts")
    plot = qfigs.plot_contrasts(table, effect_name=f"Difference in average effect on {a.outcome}")
    stem = folder / f"{slug}-contrasts"
    w, hgt = plot.theme.getp("figure_size")
    figs.save_figure(plot, stem, w, hgt)
    fig = {"id": Markup(f"fig-{slug}-contrasts"), "path": Markup(f"figures/{slug}-contrasts"),
           "caption": "Named comparisons: the difference between the two sets' average effects, by method.",
           "alt": Markup("Dot-and-interval plot of each named comparison by method.")}
    return {"any": True, "items": items, "table": tbl, "fig": fig}


def analysis_questions(a, results, folder: Path) -> dict:
    """Everything the questions partials of one analysis need (``c.q`` in the templates)."""
    return {"contrasts": contrasts_context(a, results, folder)}
