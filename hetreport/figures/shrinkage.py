"""Shrinkage: OLS -> hierarchical."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    geom_hline,
    geom_point,
    geom_segment,
    ggplot,
    labs,
    scale_color_manual,
    scale_shape_manual,
    scale_size_continuous,
    scale_x_discrete,
    theme,
)

from hetreport import methods as _registry
from hetreport.errors import DataError

from .checks import _caption, _check_effects, _finish, _name, _num, _plottable
from .theme import _REF_LINE, METHOD_COLORS, METHOD_LABELS, METHOD_SHAPES, figure_size


def plot_shrinkage(effects: pd.DataFrame, *, names: Mapping[str, str] | None = None) -> ggplot:
    """Each group's move from its OLS (full interactions) estimate to its
    hierarchical estimate: thin grey segments between two x positions, point
    size = group n, dashed line at the n-weighted mean hierarchical estimate.
    Groups not estimable by OLS appear only on the hierarchical side.
    """
    what = "plot_shrinkage"
    _check_effects(effects, ["estimate", "n"], what)
    ols = _plottable(effects.loc[effects["method"] == _registry.BASELINE], ["estimate"])
    hier = _plottable(effects.loc[effects["method"] == _registry.REFERENCE], ["estimate"])
    if hier.empty:
        raise DataError("no estimable hierarchical rows; nothing to plot.", where=what)
    x_ols, x_hier = METHOD_LABELS[_registry.BASELINE], _registry.get(_registry.REFERENCE).short
    ols = ols.drop_duplicates("group")
    hier = hier.drop_duplicates("group")
    pts = pd.concat(
        [ols.assign(side=x_ols, method_key=_registry.BASELINE), hier.assign(side=x_hier, method_key=_registry.REFERENCE)],
        ignore_index=True,
    )
    pts["side"] = pd.Categorical(pts["side"], categories=[x_ols, x_hier])
    pts["n"] = pd.to_numeric(pts["n"], errors="coerce").astype(float)
    seg = ols[["group", "estimate"]].merge(hier[["group", "estimate"]], on="group", suffixes=("_ols", "_hier"))
    seg["x"], seg["xend"] = 1.0, 2.0

    w = pd.to_numeric(hier["n"], errors="coerce").astype(float).fillna(0).clip(lower=0).to_numpy()
    est = hier["estimate"].astype(float).to_numpy()
    mean = float(np.average(est, weights=w)) if w.sum() > 0 else float(est.mean())
    n_not = len(set(hier["group"]) - set(ols["group"]))

    caption = f"Dashed line: n-weighted mean of the hierarchical estimates ({_num(mean)})."
    if n_not:
        caption += f" {n_not} group{'s' if n_not != 1 else ''} not estimable by OLS appear on the right only."
    p = (
        ggplot(pts, aes(x="side", y="estimate"))
        + geom_hline(yintercept=mean, linetype="dashed", color=_REF_LINE, size=0.5)
        + geom_segment(
            aes(x="x", xend="xend", y="estimate_ols", yend="estimate_hier"),
            data=seg,
            inherit_aes=False,
            color="#9E9E9E",
            size=0.3,
            alpha=0.7,
        )
        + geom_point(aes(size="n", color="method_key", shape="method_key"), fill="white", stroke=0.5, alpha=0.85)
        + scale_color_manual(values=METHOD_COLORS, guide=None)
        + scale_shape_manual(values=METHOD_SHAPES, guide=None)
        + scale_size_continuous(range=(0.8, 4.0), name=_name(names, "n"))
        + scale_x_discrete(expand=(0, 0.35))
        + labs(x="", y=_name(names, "estimate"), caption=_caption(caption))
    )
    return _finish(p, figure_size("shrinkage")) + theme(panel_grid_major_x=element_blank())
