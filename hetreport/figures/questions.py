"""Figures for the questions sections: named comparisons and targeting (plotnine).

Built on the main figures module's theme, palette and method labels; like every
``plot_*`` function there, these return a ggplot with its size and write nothing.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    coord_flip,
    element_blank,
    geom_hline,
    geom_line,
    geom_linerange,
    geom_point,
    geom_vline,
    ggplot,
    labs,
    position_dodge,
    scale_color_manual,
    scale_linetype_manual,
    scale_shape_manual,
    scale_x_continuous,
    scale_y_continuous,
    theme,
)

from .. import methods as _registry
from ..errors import DataError
from .checks import _caption, _finish
from .theme import METHOD_COLORS, METHOD_LABELS, METHOD_SHAPES, PAGE_WIDTH


def plot_contrasts(table: pd.DataFrame, *, effect_name: str = "Difference in average effects") -> ggplot:
    """Each named comparison's estimate by method: point, 90% interval (thick) and 95% interval (thin).

    ``table``: rows of contrasts.csv for one analysis (``label, method, estimate, lower_90 … upper_95``)."""
    rows = table[np.isfinite(table["estimate"].astype(float)) & np.isfinite(table["lower_95"].astype(float))].copy()
    if rows.empty:
        raise DataError("no comparison has an estimate to plot.", where="plot_contrasts")
    labels = list(dict.fromkeys(table["label"].astype(str)))
    wrapped = {lab: "\n".join(textwrap.wrap(lab, 28)) or lab for lab in labels}
    rows["row"] = pd.Categorical(
        rows["label"].astype(str).map(wrapped), categories=[wrapped[lab] for lab in reversed(labels)], ordered=True
    )
    # the hierarchical model first, then the other methods contrasts.csv holds, in registry order
    present = [m for m in _registry.ordered(rows["method"]) if m in _registry.REGISTRY]
    methods = sorted(present, key=lambda m: m != _registry.REFERENCE)
    rows["Method"] = pd.Categorical(rows["method"].map(METHOD_LABELS), categories=[METHOD_LABELS[m] for m in methods], ordered=True)
    colors = {METHOD_LABELS[m]: METHOD_COLORS[m] for m in methods}
    shapes = {METHOD_LABELS[m]: METHOD_SHAPES[m] for m in methods}
    dodge = position_dodge(width=0.55)
    n_lines = sum(wrapped[lab].count("\n") + 1 for lab in labels)
    height = min(9.0, 1.6 + 0.42 * n_lines * max(1, len(methods)) ** 0.5)
    p = (
        ggplot(rows, aes(x="row", y="estimate", color="Method", shape="Method"))
        + geom_hline(yintercept=0, linetype="dashed", color="#7F7F7F", size=0.4)
        + geom_linerange(aes(ymin="lower_95", ymax="upper_95"), position=dodge, size=0.5)
        + geom_linerange(aes(ymin="lower_90", ymax="upper_90"), position=dodge, size=1.4)
        + geom_point(position=dodge, size=2.4, fill="white", stroke=0.6)
        + scale_color_manual(values=colors, breaks=list(colors))
        + scale_shape_manual(values=shapes, breaks=list(shapes))
        + coord_flip()
        + labs(
            x="",
            y=effect_name,
            color="",
            shape="",
            caption=_caption(
                "Point: posterior mean (hierarchical) or estimate (OLS/GLM); thick line 90% interval, thin line 95%. "
                "Dashed line: no difference."
            ),
        )
    )
    return _finish(p, (PAGE_WIDTH, height)) + theme(panel_grid_major_y=element_blank(), panel_grid_minor_y=element_blank())


def plot_targeting(curve: pd.DataFrame, budget_share: float, *, effect_name: str = "Share of the total effect") -> ggplot:
    """The targeting curve: share of the population treated (groups in order of their posterior mean effect)
    against the share of the total effect reached, with its 95% band; the diagonal is a random choice.

    ``curve``: ``reach, share, lower, upper`` (one row per number of groups treated, starting at 0)."""
    if curve.empty:
        raise DataError("no groups to rank.", where="plot_targeting")
    diag = pd.DataFrame({"reach": [0.0, 1.0], "share": [0.0, 1.0]})
    long = pd.concat(
        [
            curve.assign(what="Ranked groups, posterior mean", line="solid"),
            curve.assign(share=curve["lower"], what="95% interval", line="dotted"),
            curve.assign(share=curve["upper"], what="95% interval", line="dotted"),
        ],
        ignore_index=True,
    )
    long["band"] = np.repeat([0, 1, 2], len(curve))
    p = (
        ggplot(long, aes(x="reach", y="share"))
        + geom_line(aes(x="reach", y="share"), data=diag, inherit_aes=False, linetype="dashed", color="#7F7F7F", size=0.5)
        + geom_hline(yintercept=1.0, color="#BDBDBD", size=0.3)
        + geom_line(aes(group="band", linetype="what"), color=METHOD_COLORS[_registry.REFERENCE], size=0.6)
        + geom_vline(xintercept=budget_share, color="#4D4D4D", size=0.4)
        + scale_linetype_manual(values={"Ranked groups, posterior mean": "solid", "95% interval": "dotted"})
        + scale_x_continuous(labels=lambda v: [f"{100 * x:.0f}%" for x in v], limits=(0, 1))
        + scale_y_continuous(labels=lambda v: [f"{100 * x:.0f}%" for x in v])
        + labs(
            x="Share of the population treated (groups in order of their estimated effect)",
            y=effect_name,
            linetype="",
            caption=_caption(
                "Dashed diagonal: treating a random share of the population. Vertical line: the share the treated groups reach "
                "(within the budget). "
                "Curve and interval are evaluated on the same posterior draws the ranking was chosen from."
            ),
        )
    )
    return _finish(p, (PAGE_WIDTH, 3.8))
