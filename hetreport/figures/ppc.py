"""Posterior predictive check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    geom_col,
    geom_line,
    geom_pointrange,
    ggplot,
    labs,
    scale_color_manual,
    scale_fill_manual,
    scale_size_manual,
    scale_y_continuous,
    theme,
)

from hetreport.errors import DataError

from .checks import _finish, _name
from .density import _bandwidth, _grid_for, _kde_on_grid
from .theme import _POOLED_FILL, figure_size


def plot_ppc(
    y: Any,
    y_rep: Any,
    *,
    names: Mapping[str, str] | None = None,
    n_draws: int = 50,
    seed: int = 0,
) -> ggplot:
    """Posterior predictive check.

    ``y``: observed outcome (1-D, length n); ``y_rep``: replicated outcomes
    (draws x n).  Continuous outcomes: densities of ``n_draws`` (default 50)
    randomly chosen replications (fixed ``seed``) in thin grey and the
    observed density in black.  Discrete outcomes (at most 10 distinct values
    among ``y`` and the chosen replications): bars of the observed proportion
    of each value with the median and 95% interval of the replicated
    proportions (over all draws).  The x label is ``names[y.name]`` for a
    named Series, else ``names["outcome"]``, else "Outcome".
    """
    what = "plot_ppc"
    label_key = getattr(y, "name", None)
    x_title = (
        _name(names, str(label_key)) if label_key is not None else (_name(names, "outcome") if names and "outcome" in names else "Outcome")
    )
    yv = np.asarray(y, dtype=float).ravel() if np.ndim(y) <= 1 else None
    yr = np.asarray(y_rep, dtype=float)
    if yv is None or yr.ndim != 2 or yr.shape[1] != yv.size:
        raise DataError(
            f"expected y of shape (n,) and y_rep of shape (draws, n); got {np.shape(y)} and {np.shape(y_rep)}.",
            where=what,
        )
    ok = np.isfinite(yv)
    yv, yr = yv[ok], yr[:, ok]
    if yv.size == 0 or yr.shape[0] == 0:
        raise DataError("no observed values or no replications to plot.", where=what)
    rng = np.random.default_rng(seed)
    pick = rng.choice(yr.shape[0], size=min(n_draws, yr.shape[0]), replace=False)
    sub = yr[pick]

    obs_label, rep_label = "Observed", f"Replicated ({len(pick)} draws)"
    values = np.unique(np.concatenate([np.unique(yv), np.unique(sub[np.isfinite(sub)])]))
    if values.size <= 10:
        props_obs = np.array([(yv == v).mean() for v in values])
        with np.errstate(invalid="ignore"):
            props_rep = np.stack([(yr == v).mean(axis=1) for v in values], axis=1)
        q = np.quantile(props_rep, [0.025, 0.5, 0.975], axis=0)
        labels = [f"{v:g}" for v in values]
        d = pd.DataFrame(
            {
                "value": pd.Categorical(labels, categories=labels),
                "observed": props_obs,
                "lower": q[0],
                "median": q[1],
                "upper": q[2],
                "obs": obs_label,
                "rep": "Replicated (median, 95% interval)",
            }
        )
        p = (
            ggplot(d, aes(x="value"))
            + geom_col(aes(y="observed", fill="obs"), width=0.6, color="#8C8C8C", size=0.3)
            + geom_pointrange(aes(y="median", ymin="lower", ymax="upper", color="rep"), size=0.4, fatten=3)
            + scale_fill_manual(values={obs_label: _POOLED_FILL}, name="")
            + scale_color_manual(values={"Replicated (median, 95% interval)": "black"}, name="")
            + scale_y_continuous(limits=(0, None), expand=(0, 0, 0.05, 0))
            + labs(x=x_title, y="Proportion")
        )
        return _finish(p, figure_size("ppc")) + theme(legend_title=element_blank())

    allv = np.concatenate([yv, sub.ravel()])
    grid = _grid_for(allv, n=512)
    bw_obs = _bandwidth(yv)
    parts = [pd.DataFrame({"x": grid, "density": _kde_on_grid(yv, grid, bw_obs), "draw": "obs", "which": obs_label})]
    for k, row in enumerate(sub):
        parts.append(pd.DataFrame({"x": grid, "density": _kde_on_grid(row, grid, bw_obs), "draw": f"rep{k}", "which": rep_label}))
    d = pd.concat(parts, ignore_index=True)
    d["which"] = pd.Categorical(d["which"], categories=[obs_label, rep_label])
    reps, obs = d.loc[d["draw"] != "obs"], d.loc[d["draw"] == "obs"]
    p = (
        ggplot(mapping=aes("x", "density", group="draw", color="which", size="which"))
        + geom_line(data=reps, alpha=0.5)
        + geom_line(data=obs)
        + scale_color_manual(values={obs_label: "black", rep_label: "#A6A6A6"}, name="", breaks=[obs_label, rep_label])
        + scale_size_manual(values={obs_label: 0.8, rep_label: 0.25}, name="", breaks=[obs_label, rep_label])
        + scale_y_continuous(expand=(0, 0, 0.05, 0))
        + labs(x=x_title, y="Density")
    )
    return _finish(p, figure_size("ppc")) + theme(panel_grid_major_y=element_blank(), legend_title=element_blank())
