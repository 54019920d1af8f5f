"""Figures of the simulation report (plotnine, hetreport's theme and method styles).

Every figure is in the paper's layout: the sample size on the x axis, one panel per
heterogeneity SD, one line per approach, with ±1.96 Monte-Carlo standard errors as
error bars (the uncertainty of the simulation itself, not of any one fit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_text,
    facet_grid,
    facet_wrap,
    geom_errorbar,
    geom_hline,
    geom_line,
    geom_point,
    ggplot,
    guide_legend,
    guides,
    labs,
    position_dodge,
    scale_x_continuous,
    theme,
)

from .. import figures as hf
from .. import methods as registry

Z = 1.96


def _sd_label(sd: float) -> str:
    return f"heterogeneity SD = {sd:g}"


def _long(summary: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Rows per cell x approach x metric: value, lo, hi; facets as ordered categoricals."""
    frames = []
    for m, label in metrics.items():
        if m not in summary:
            continue
        d = summary[["n", "sd", "approach", m, f"{m}_se"]].rename(columns={m: "value", f"{m}_se": "se"}).copy()
        d["metric"] = label
        frames.append(d)
    d = pd.concat(frames, ignore_index=True)
    d["se"] = d["se"].fillna(0.0)
    d["lo"], d["hi"] = d["value"] - Z * d["se"], d["value"] + Z * d["se"]
    d["metric"] = pd.Categorical(d["metric"], categories=[v for k, v in metrics.items() if k in summary], ordered=True)
    sds = sorted(d["sd"].unique())
    d["panel"] = pd.Categorical(d["sd"].map(_sd_label), categories=[_sd_label(s) for s in sds], ordered=True)
    approaches = [a for a in hf.METHOD_LABELS if a in set(d["approach"])]
    d["Approach"] = pd.Categorical(d["approach"].map(hf.METHOD_LABELS), categories=[hf.METHOD_LABELS[a] for a in approaches], ordered=True)
    return d.dropna(subset=["value"]), approaches


def _base(d: pd.DataFrame, approaches, ylab: str, caption: str | None):
    ns = sorted(d["n"].unique())
    width = 0.06 * (max(ns) - min(ns)) if len(ns) > 1 else 10.0
    dodge = position_dodge(width=width)
    p = (
        ggplot(d, aes("n", "value", color="Approach", shape="Approach", linetype="Approach", group="Approach"))
        + geom_line(position=dodge, size=0.6)
        + geom_errorbar(aes(ymin="lo", ymax="hi"), position=dodge, width=width * 0.8, linetype="solid", size=0.4)
        + geom_point(position=dodge, size=2.0, fill="white")
        + scale_x_continuous(breaks=ns, labels=[f"{n:,}" for n in ns])
        + labs(x="Sample size (N)", y=ylab, color="", shape="", linetype="", caption=hf._caption(caption))
    )
    for s in hf._method_scales(approaches):
        p = p + s
    if len(approaches) > 2:  # four labels do not fit one row of a 6.5 in page
        p = p + guides(color=guide_legend(nrow=2), shape=guide_legend(nrow=2), linetype=guide_legend(nrow=2))
    return p


def plot_metric(
    summary: pd.DataFrame,
    metric: str,
    ylab: str,
    *,
    nominal: float | None = None,
    zero: bool = False,
    caption: str | None = None,
    approaches: list[str] | None = None,
    free_y: bool = True,
):
    """One metric by N, a panel per heterogeneity SD (the paper's RMSE figure when metric='rmse')."""
    s = summary if approaches is None else summary[summary["approach"].isin(approaches)]
    d, appr = _long(s, {metric: ylab})
    p = _base(d, appr, ylab, caption) + facet_wrap("~panel", nrow=1, scales="free_y" if free_y else "fixed")
    if nominal is not None:
        p = p + geom_hline(yintercept=nominal, linetype="dashed", color="#7F7F7F")
    if zero:
        p = p + geom_hline(yintercept=0, linetype="dashed", color="#7F7F7F")
    return hf._finish(p, (hf.PAGE_WIDTH, 3.3)) + theme(subplots_adjust={"wspace": 0.35}, axis_text_x=element_text(rotation=30, ha="right"))


def plot_coverage(summary: pd.DataFrame, caption: str | None = None, approaches: list[str] | None = None):
    """90% and 95% coverage by N: a row per level, a column per heterogeneity SD, dashed nominal lines."""
    s = summary if approaches is None else summary[summary["approach"].isin(approaches)]
    d, appr = _long(s, {"coverage_90": "90% intervals", "coverage_95": "95% intervals"})
    nominal = pd.DataFrame(
        {
            "metric": pd.Categorical(["90% intervals", "95% intervals"], categories=list(d["metric"].cat.categories), ordered=True),
            "nominal": [0.90, 0.95],
        }
    )
    p = (
        _base(d, appr, "Coverage of the true group effects", caption)
        + geom_hline(nominal, aes(yintercept="nominal"), linetype="dashed", color="#7F7F7F")
        + facet_grid("metric ~ panel", scales="free_y")
    )
    return hf._finish(p, (hf.PAGE_WIDTH, 5.0)) + theme(subplots_adjust={"wspace": 0.3}, axis_text_x=element_text(rotation=30, ha="right"))


def plot_difference(paired: pd.DataFrame, ylab: str, caption: str | None = None):
    """Hierarchical minus OLS (paired over replications) by N, a panel per SD; below zero = hierarchical better."""
    d = paired.copy()
    d["value"], d["se"] = d["diff"], d["diff_se"].fillna(0.0)
    d["lo"], d["hi"] = d["value"] - Z * d["se"], d["value"] + Z * d["se"]
    sds = sorted(d["sd"].unique())
    d["panel"] = pd.Categorical(d["sd"].map(_sd_label), categories=[_sd_label(s) for s in sds], ordered=True)
    ns = sorted(d["n"].unique())
    width = 0.05 * (max(ns) - min(ns)) if len(ns) > 1 else 10.0
    p = (
        ggplot(d, aes("n", "value"))
        + geom_hline(yintercept=0, linetype="dashed", color="#7F7F7F")
        + geom_line(color=hf.METHOD_COLORS[registry.REFERENCE], size=0.6)
        + geom_errorbar(aes(ymin="lo", ymax="hi"), width=width, color=hf.METHOD_COLORS[registry.REFERENCE], size=0.4)
        + geom_point(color=hf.METHOD_COLORS[registry.REFERENCE], size=2.0)
        + scale_x_continuous(breaks=ns, labels=[f"{n:,}" for n in ns])
        + facet_wrap("~panel", nrow=1, scales="free_y")
        + labs(x="Sample size (N)", y=ylab, caption=hf._caption(caption))
    )
    return hf._finish(p, (hf.PAGE_WIDTH, 3.1)) + theme(subplots_adjust={"wspace": 0.35}, axis_text_x=element_text(rotation=30, ha="right"))


def empty_ok(summary: pd.DataFrame, metric: str) -> bool:
    return metric in summary and np.isfinite(summary[metric].to_numpy(dtype=float)).any()
