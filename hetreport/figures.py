"""Figures for the hetreport report (plotnine).

The three core figures follow Alley (2024), "Using Hierarchical Models to
Estimate Heterogeneous Effects":

* :func:`plot_comparison` -- Figure 1: OLS (full interactions) and
  hierarchical group estimates with 95% intervals, faceted by one modifier.
* :func:`plot_distribution` -- Figure 2: posterior distribution of all group
  effects with the smallest, median and largest group annotated.
* :func:`plot_by_modifier` -- Figure 3: group effects by level of each
  modifier (boxplots with jittered points, one facet per modifier).

plus :func:`plot_shrinkage`, :func:`plot_heatmap` and :func:`plot_ppc`.

Every ``plot_*`` function returns a plotnine ``ggplot`` with
:class:`theme_hetreport` (a complete theme) and a suggested ``figure_size``
already added.  Nothing here calls ``theme_set``, changes
``plotnine.options`` or ``matplotlib.rcParams``, or writes files -- except
:func:`save_figure`, which writes ``<stem>.png`` and ``<stem>.svg``.

Inputs follow the effects contract: a long DataFrame with one row per
method x group (``analysis, method, group, <modifiers...>, n, n_treated,
n_control, estimate, std_error, lower_90, upper_90, lower_95, upper_95,
prob_positive, estimable, group_label`` and optionally ``truth``).  Modifier
columns hold display labels as ordered Categoricals.  Rows with
``estimable == False`` or a missing estimate/interval are never plotted.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    element_line,
    element_rect,
    element_text,
    facet_grid,
    facet_wrap,
    geom_area,
    geom_boxplot,
    geom_col,
    geom_hline,
    geom_line,
    geom_point,
    geom_pointrange,
    geom_rug,
    geom_segment,
    geom_text,
    geom_tile,
    geom_vline,
    ggplot,
    guide_legend,
    guides,
    labs,
    position_jitter,
    position_nudge,
    scale_color_identity,
    scale_color_manual,
    scale_fill_gradient,
    scale_fill_gradient2,
    scale_fill_manual,
    scale_linetype_manual,
    scale_shape_manual,
    scale_size_continuous,
    scale_size_manual,
    scale_x_continuous,
    scale_x_discrete,
    scale_y_continuous,
    scale_y_discrete,
    theme,
    theme_bw,
)

from hetreport.errors import DataError, HetreportError, RenderError, SpecError, suggest

__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "METHOD_LINETYPES",
    "METHOD_SHAPES",
    "PAGE_WIDTH",
    "figure_size",
    "layer_data",
    "plot_by_modifier",
    "plot_comparison",
    "plot_distribution",
    "plot_heatmap",
    "plot_ppc",
    "plot_shrinkage",
    "save_figure",
    "theme_hetreport",
]

# --------------------------------------------------------------------------
# Constants: page, methods, palette
# --------------------------------------------------------------------------

PAGE_WIDTH = 6.5
"""Usable page width in inches (letter paper, 1 in margins)."""

METHOD_LABELS: dict[str, str] = {
    "ols_full": "OLS, full interactions",
    "ols_additive": "OLS, additive",
    "subgroup": "Subgroup difference in means",
    "hierarchical": "Hierarchical (Bayesian)",
    "truth": "True effect",
}

# Greys plus one accent (the hierarchical model, the paper's focus).  The
# grey levels differ in luminance and every method also has its own shape and
# linetype, so the figures survive greyscale printing.
METHOD_COLORS: dict[str, str] = {
    "ols_full": "#808080",
    "ols_additive": "#B3B3B3",
    "subgroup": "#4D4D4D",
    "hierarchical": "#0072B2",  # Okabe-Ito blue; prints as a dark grey
    "truth": "#000000",
}
METHOD_SHAPES: dict[str, str] = {
    "ols_full": "s",
    "ols_additive": "^",
    "subgroup": "D",
    "hierarchical": "o",
    "truth": "x",
}
METHOD_LINETYPES: dict[str, str] = {
    "ols_full": "dashed",
    "ols_additive": "dotted",
    "subgroup": "dashdot",
    "hierarchical": "solid",
    "truth": "none",  # a marker only: no line in legend keys
}

_ESTIMATE_METHODS = ("ols_full", "ols_additive", "subgroup", "hierarchical")

# Columns of the effects contract that are not modifiers.
_CONTRACT_COLUMNS = frozenset(
    {
        "analysis",
        "method",
        "group",
        "n",
        "n_treated",
        "n_control",
        "estimate",
        "std_error",
        "lower_90",
        "upper_90",
        "lower_95",
        "upper_95",
        "prob_positive",
        "estimable",
        "group_label",
        "truth",
    }
)

_MINUS = "\u2212"
_FILL_NEG = "#B35806"  # PuOr ends: orange (lighter in greyscale) ...
_FILL_POS = "#542788"  # ... and purple (darker in greyscale)
_FILL_MID = "#F7F7F7"
_POOLED_FILL = "#D9D9D9"
_GROUP_LINE = "#6E6E6E"
_REF_LINE = "#7F7F7F"
_JITTER_SEED = 20240601


# --------------------------------------------------------------------------
# Theme
# --------------------------------------------------------------------------


class theme_hetreport(theme_bw):
    """Complete, greyscale-friendly theme for print: ``theme_bw`` with a
    10 pt base, light grid, bold strip text on light grey, legend at the
    bottom, 200 dpi and SVG text stored as paths (self-contained files).

    The SVG font setting is a theme rcParam, so plotnine applies it only while
    drawing/saving this plot (``matplotlib.rcParams`` stays untouched).
    """

    def __init__(self, base_size: float = 10, base_family: str | None = None):
        super().__init__(base_size, base_family)
        self += theme(
            text=element_text(color="#1A1A1A"),
            axis_text=element_text(size=0.8 * base_size, color="#333333"),
            axis_ticks=element_line(color="#7F7F7F", size=0.5),
            panel_border=element_rect(fill="none", color="#7F7F7F", size=0.6),
            panel_grid_major=element_line(color="#EBEBEB", size=0.5),
            panel_grid_minor=element_blank(),
            strip_background=element_rect(fill="#EEEEEE", color="#7F7F7F", size=0.6),
            strip_text=element_text(size=0.85 * base_size, weight="bold", color="#1A1A1A"),
            legend_position="bottom",
            legend_title=element_text(size=0.85 * base_size),
            legend_text=element_text(size=0.8 * base_size),
            legend_key=element_blank(),
            plot_subtitle=element_text(size=0.85 * base_size, color="#333333", linespacing=1.2),
            plot_caption=element_text(size=0.7 * base_size, color="#4D4D4D", ha="left", linespacing=1.2),
            plot_caption_position="plot",
            dpi=200,
            svg_usefonts=False,  # -> rcParams["svg.fonttype"] = "path", locally
        )
        # Deterministic SVG ids (reproducible report builds); plot-local too.
        self._rcParams["svg.hashsalt"] = "hetreport"


# --------------------------------------------------------------------------
# Figure sizes
# --------------------------------------------------------------------------

_PLOT_KINDS = ("comparison", "shrinkage", "distribution", "by_modifier", "heatmap", "ppc")


def _comparison_row_height(n_groups: int) -> float:
    """Inches per group row in Figure 1 (panels are stacked in one column:
    two columns at 6.5 in leave ~1 in wide panels next to long labels)."""
    return 0.17 if n_groups <= 20 else (0.14 if n_groups <= 40 else 0.105)


def _comparison_size(rows_per_panel: int, n_facets: int, n_methods: int) -> tuple[float, float]:
    """Figure 1 size: rows get 35% taller per dodged method beyond two."""
    n_groups = rows_per_panel * n_facets
    row_h = _comparison_row_height(n_groups) * (1 + 0.35 * max(n_methods - 2, 0))
    legend_rows = 1 if n_methods + 1 <= 3 else 2
    h = 1.2 + 0.2 * (legend_rows - 1) + n_facets * (0.34 + rows_per_panel * row_h + 0.08)
    return (PAGE_WIDTH, round(min(h, 24.0), 2))


def _comparison_text_size(n_groups: int) -> float:
    return 7.0 if n_groups <= 40 else 6.0


def figure_size(plot_kind: str, n_groups: int = 1, n_facets: int = 1) -> tuple[float, float]:
    """Suggested ``(width, height)`` in inches for a 6.5 in wide page.

    ``plot_kind`` is one of ``"comparison"``, ``"shrinkage"``,
    ``"distribution"``, ``"by_modifier"``, ``"heatmap"``, ``"ppc"``.  Only
    the comparison figure grows with ``n_groups`` (one row per group);
    ``n_facets`` adds panel rows to the comparison, heatmap and by-modifier
    figures.  Heights are capped at 24 in (plotnine refuses > 25 in).
    """
    n_groups = max(int(n_groups), 1)
    n_facets = max(int(n_facets), 1)
    w = PAGE_WIDTH
    if plot_kind == "comparison":
        return _comparison_size(math.ceil(n_groups / n_facets), n_facets, 2)
    elif plot_kind == "shrinkage":
        h = 4.5
    elif plot_kind == "distribution":
        h = 4.2
    elif plot_kind == "by_modifier":
        h = 3.4 if n_facets <= 5 else 3.0 * math.ceil(n_facets / 3)
    elif plot_kind == "heatmap":
        ncol = min(n_facets, 3)
        nrow = math.ceil(n_facets / ncol)
        panel_w = (w - 1.4) / ncol
        h = 1.6 + nrow * (min(panel_w, 3.2) + 0.35)
    elif plot_kind == "ppc":
        h = 3.4
    else:
        raise HetreportError(
            f"Unknown plot kind '{plot_kind}'; expected one of {', '.join(_PLOT_KINDS)}."
            + suggest(plot_kind, _PLOT_KINDS),
            where="figure_size",
        )
    return (w, round(min(h, 24.0), 2))


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _num(x: float, digits: int = 2) -> str:
    """Format a number with a typographic minus and no '-0.00'."""
    if x is None or not np.isfinite(x):
        return "NA"
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0:
        s = s[1:]
    return s.replace("-", _MINUS)


def _name(names: Mapping[str, str] | None, column: str) -> str:
    if names and column in names:
        return str(names[column])
    return str(column)


def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}.", where=what)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(repr(c) for c in missing)}; the table has "
            f"{', '.join(map(str, df.columns))}. Pass the effects table produced by the "
            "estimation stage.",
            where=what,
        )


def _check_effects(effects: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Contract checks shared by the effects figures: required columns, one
    analysis, at most one row per method x group."""
    _require_columns(effects, ["method", "group", *columns], what)
    if "analysis" in effects.columns and effects["analysis"].nunique(dropna=True) > 1:
        raise DataError(
            f"the effects table holds several analyses ({', '.join(map(str, effects['analysis'].unique()))}); "
            "pass the rows of one analysis at a time.",
            where=what,
        )
    dup = effects.duplicated(["method", "group"])
    if dup.any():
        first = effects.loc[dup].iloc[0]
        raise DataError(
            f"{int(dup.sum())} duplicate method x group row(s), e.g. method '{first['method']}', "
            f"group '{first['group']}'; the table must have one row per method and group.",
            where=what,
        )


def _modifier_columns(effects: pd.DataFrame) -> list[str]:
    return [c for c in effects.columns if c not in _CONTRACT_COLUMNS]


def _check_modifier(effects: pd.DataFrame, column: str, what: str) -> None:
    if column not in effects.columns or column in _CONTRACT_COLUMNS:
        mods = _modifier_columns(effects)
        raise SpecError(
            f"'{column}' is not a modifier column of the effects table; modifiers are "
            f"{', '.join(mods) or '(none)'}." + suggest(column, mods),
            where=what,
        )


def _as_categorical(s: pd.Series) -> pd.Series:
    """The modifier as a Categorical of display labels (contract: already is)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s
    cats = list(dict.fromkeys(s.dropna().astype(str)))
    return pd.Series(pd.Categorical(s.astype(str), categories=cats, ordered=True), index=s.index)


def _check_methods(methods: Sequence[str], what: str) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    out = []
    for m in methods:
        if m not in _ESTIMATE_METHODS:
            raise SpecError(
                f"unknown method '{m}'; expected one of {', '.join(_ESTIMATE_METHODS)}."
                + suggest(m, _ESTIMATE_METHODS),
                where=what,
            )
        if m not in out:
            out.append(m)
    if not out:
        raise SpecError("no methods given.", where=what)
    return out


def _plottable(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows that can be drawn: estimable and finite in ``columns``."""
    keep = pd.Series(True, index=df.index)
    if "estimable" in df.columns:
        keep &= df["estimable"].fillna(False).astype(bool)
    for c in columns:
        keep &= np.isfinite(pd.to_numeric(df[c], errors="coerce").astype(float))
    return df.loc[keep]


def _facet_strip_labels(values: pd.Series, title: str) -> pd.Series:
    """'Title: level' strip labels, keeping the level order."""
    cat = _as_categorical(values)
    cats = [f"{title}: {c}" for c in cat.cat.categories]
    lab = cat.cat.rename_categories(cats)
    return lab.cat.remove_unused_categories()


def _method_scales(methods: Sequence[str], *, lines: bool = True) -> list:
    """Manual colour/shape(/linetype) scales keyed by method display label,
    with identical titles and labels, so plotnine merges them into one legend."""
    labels = [METHOD_LABELS[m] for m in methods]
    colors = {METHOD_LABELS[m]: METHOD_COLORS[m] for m in methods}
    shapes = {METHOD_LABELS[m]: METHOD_SHAPES[m] for m in methods}
    # limits=labels: every scale has every method, so the guides (same
    # title, same labels) merge into one legend even if a layer (the truth
    # marker) does not use every aesthetic.
    out = [
        scale_color_manual(values=colors, breaks=labels, limits=labels),
        scale_shape_manual(values=shapes, breaks=labels, limits=labels),
    ]
    if lines:
        ltys = {METHOD_LABELS[m]: METHOD_LINETYPES[m] for m in methods}
        out.append(scale_linetype_manual(values=ltys, breaks=labels, limits=labels))
    return out


def _caption(text: str | None, width: int = 115) -> str | None:
    """Captions are 7 pt: wrap them to the 6.5 in page."""
    return textwrap.fill(text, width) if text else None


def _finish(p: ggplot, size: tuple[float, float]) -> ggplot:
    return p + theme_hetreport() + theme(figure_size=size)


def layer_data(plot: ggplot, i: int = 0) -> pd.DataFrame:
    """The computed data of layer ``i`` (like ggplot2's ``layer_data``).

    plotnine 0.15 has no ``ggplot.layer_data``; this builds a copy of the plot
    (the plot itself is left untouched) and returns that layer's data after
    statistics, positions and scales were applied.
    """
    from plotnine._utils.context import plot_context

    p = deepcopy(plot)
    with plot_context(p):
        p._setup()
        p._build()
    return p.layers[i].data


# --------------------------------------------------------------------------
# Densities (binned Gaussian KDE: O(number of draws), no subsampling)
# --------------------------------------------------------------------------


def _bandwidth(x: np.ndarray) -> float:
    """Silverman's rule of thumb."""
    n = x.size
    if n < 2:
        return 0.0
    sd = float(np.std(x, ddof=1))
    q75, q25 = np.percentile(x, [75, 25])
    spread = min(sd, (q75 - q25) / 1.34) if q75 > q25 else sd
    return 0.9 * spread * n ** (-0.2)


def _kde_on_grid(x: np.ndarray, grid: np.ndarray, bw: float | None = None) -> np.ndarray:
    """Gaussian KDE of ``x`` evaluated on the equally spaced ``grid``.

    Draws are linearly binned onto the grid and convolved with a Gaussian
    kernel (FFT), so 400,000 draws take milliseconds.  Values outside the grid
    are dropped (the grid is chosen to cover all but the extreme tails).
    """
    from scipy.signal import fftconvolve

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    dx = grid[1] - grid[0]
    if bw is None:
        bw = _bandwidth(x)
    bw = max(bw, dx)
    if x.size == 0:
        return np.zeros_like(grid)
    pos = (x - grid[0]) / dx
    inside = (pos >= 0) & (pos <= grid.size - 1)
    pos = pos[inside]
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    hi = np.minimum(lo + 1, grid.size - 1)
    counts = np.bincount(lo, weights=1 - frac, minlength=grid.size)
    counts += np.bincount(hi, weights=frac, minlength=grid.size)
    half = int(min(math.ceil(4 * bw / dx), grid.size))
    k = np.arange(-half, half + 1) * dx
    kernel = np.exp(-0.5 * (k / bw) ** 2)
    kernel /= kernel.sum()
    dens = fftconvolve(counts, kernel, mode="same")
    dens = np.clip(dens, 0, None) / (x.size * dx)
    return dens


def _grid_for(values: np.ndarray, extra: Iterable[float] = (), n: int = 1024) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = np.quantile(v, [0.0005, 0.9995])
    bw = _bandwidth(v)
    lo, hi = lo - 3 * bw, hi + 3 * bw
    extra = [e for e in extra if e is not None and np.isfinite(e)]
    if extra:
        lo, hi = min(lo, min(extra)), max(hi, max(extra))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.02 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, n)


# --------------------------------------------------------------------------
# Figure 1: OLS vs hierarchical, every group
# --------------------------------------------------------------------------


def plot_comparison(
    effects: pd.DataFrame,
    facet: str,
    *,
    names: Mapping[str, str] | None = None,
    methods: Sequence[str] = ("ols_full", "hierarchical"),
) -> ggplot:
    """Figure 1: each group's estimate and 95% interval under each method.

    Groups (their ``group_label``) are on the y axis, ordered within each
    facet by the hierarchical estimate (largest at the top; falling back to
    the mean of the plotted estimates when there is no hierarchical row).
    Methods are drawn as point + interval, dodged vertically (first method on
    top).  Panels are the levels of the ``facet`` modifier with free y scales
    stacked in one column; the height grows with the number of groups (see
    :func:`figure_size`: about 13 in for 100 groups).  A ``truth`` column, when
    present, adds the true effect as an extra black ``x`` marker.  Groups a
    method cannot estimate simply lack that method's marker; the caption says
    how many.
    """
    what = "plot_comparison"
    _check_effects(effects, ["group_label", "estimate", "lower_95", "upper_95"], what)
    _check_modifier(effects, facet, what)
    methods = _check_methods(methods, what)

    sel = effects.loc[effects["method"].isin(methods)]
    rows = _plottable(sel, ["estimate", "lower_95", "upper_95"])
    if rows.empty:
        raise DataError(
            f"no estimable rows for method(s) {', '.join(methods)}; nothing to plot.", where=what
        )

    # One record per group: label, facet level, ordering key.
    groups = effects.drop_duplicates("group").set_index("group")
    plotted = pd.Index(rows["group"].unique())
    groups = groups.loc[groups.index.isin(plotted)]
    hier = _plottable(effects.loc[effects["method"] == "hierarchical"], ["estimate"])
    key = hier.drop_duplicates("group").set_index("group")["estimate"].astype(float)
    fallback = rows.groupby("group")["estimate"].mean()
    order_key = key.reindex(groups.index).fillna(fallback.reindex(groups.index))
    facet_cat = _as_categorical(groups[facet])
    facet_codes = np.asarray(facet_cat.cat.codes)

    labels = groups["group_label"].astype(str)
    if labels.duplicated().any():  # keep rows apart if upstream labels collide
        dup = labels.duplicated(keep=False)
        labels = labels.where(~dup, labels + " [" + groups.index.astype(str) + "]")
    order = (
        pd.DataFrame({"facet": facet_codes, "key": order_key.to_numpy(), "label": labels.to_numpy()},
                     index=groups.index)
        .sort_values(["facet", "key", "label"], na_position="first")
    )
    y_levels = list(dict.fromkeys(labels.loc[order.index]))
    label_of = labels.to_dict()
    facet_title = _name(names, facet)
    strip_of = dict(zip(groups.index, _facet_strip_labels(facet_cat, facet_title).to_numpy()))
    strip_levels = list(_facet_strip_labels(facet_cat, facet_title).cat.categories)

    def _frame(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out["y"] = pd.Categorical(out["group"].map(label_of), categories=y_levels)
        out["panel"] = pd.Categorical(out["group"].map(strip_of), categories=strip_levels)
        out[facet] = out["panel"]  # the facet variable, shown as "Name: level"
        return out

    n_groups = len(y_levels)
    n_facets = len(strip_levels)
    present = [m for m in methods if (rows["method"] == m).any()]
    spread = 0.2 if len(present) <= 2 else 0.3
    offsets = np.linspace(spread, -spread, len(present)) if len(present) > 1 else np.zeros(1)

    p = ggplot() + geom_vline(xintercept=0, color=_REF_LINE, linetype="dashed", size=0.4)
    for m, off in zip(present, offsets):
        d = _frame(rows.loc[rows["method"] == m])
        d["method_label"] = METHOD_LABELS[m]
        p += geom_segment(
            aes(x="lower_95", xend="upper_95", y="y", yend="y", color="method_label", linetype="method_label"),
            data=d, size=0.45, position=position_nudge(y=off),
        )
        p += geom_point(
            aes(x="estimate", y="y", color="method_label", shape="method_label"),
            data=d, size=1.3, fill="white", stroke=0.5, position=position_nudge(y=off),
        )
    legend_methods = list(present)
    if "truth" in effects.columns:
        tr = effects.drop_duplicates("group")
        tr = tr.loc[tr["group"].isin(groups.index)]
        tr = tr.loc[np.isfinite(pd.to_numeric(tr["truth"], errors="coerce").astype(float))]
        if not tr.empty:
            d = _frame(tr)
            d["method_label"] = METHOD_LABELS["truth"]
            p += geom_point(aes(x="truth", y="y", color="method_label", shape="method_label"),
                            data=d, size=1.4, stroke=0.6)
            legend_methods.append("truth")

    p += facet_wrap(facet, ncol=1, scales="free_y")
    p += _method_scales(legend_methods)
    if len(legend_methods) > 3:  # two legend rows fit the page width
        p += guides(**{a: guide_legend(nrow=2) for a in ("color", "shape", "linetype")})
    caption = []
    for m in present:
        missing = len(set(groups.index) - set(rows.loc[rows["method"] == m, "group"]))
        if missing:
            caption.append(f"{missing} by {METHOD_LABELS[m]}")
    caption_text = (f"Groups not estimable (shown without that marker): {'; '.join(caption)}."
                    if caption else None)
    p += labs(x=_name(names, "estimate"), y="", caption=_caption(caption_text))
    # Panels share one height, so size them for the most crowded facet level.
    per_panel = int(pd.Series(facet_codes).value_counts().max())
    size = _comparison_size(per_panel, n_facets, len(present))
    return _finish(p, size) + theme(
        axis_text_y=element_text(size=_comparison_text_size(n_groups)),
        axis_ticks_major_y=element_blank(),
        panel_grid_major_y=element_line(color="#F2F2F2", size=0.4),
        legend_title=element_blank(),
    )


# --------------------------------------------------------------------------
# Shrinkage: OLS -> hierarchical
# --------------------------------------------------------------------------


def plot_shrinkage(effects: pd.DataFrame, *, names: Mapping[str, str] | None = None) -> ggplot:
    """Each group's move from its OLS (full interactions) estimate to its
    hierarchical estimate: thin grey segments between two x positions, point
    size = group n, dashed line at the n-weighted mean hierarchical estimate.
    Groups not estimable by OLS appear only on the hierarchical side.
    """
    what = "plot_shrinkage"
    _check_effects(effects, ["estimate", "n"], what)
    ols = _plottable(effects.loc[effects["method"] == "ols_full"], ["estimate"])
    hier = _plottable(effects.loc[effects["method"] == "hierarchical"], ["estimate"])
    if hier.empty:
        raise DataError("no estimable hierarchical rows; nothing to plot.", where=what)
    x_ols, x_hier = METHOD_LABELS["ols_full"], "Hierarchical"
    ols = ols.drop_duplicates("group")
    hier = hier.drop_duplicates("group")
    pts = pd.concat(
        [ols.assign(side=x_ols, method_key="ols_full"), hier.assign(side=x_hier, method_key="hierarchical")],
        ignore_index=True,
    )
    pts["side"] = pd.Categorical(pts["side"], categories=[x_ols, x_hier])
    pts["n"] = pd.to_numeric(pts["n"], errors="coerce").astype(float)
    seg = ols[["group", "estimate"]].merge(
        hier[["group", "estimate"]], on="group", suffixes=("_ols", "_hier")
    )
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
        + geom_segment(aes(x="x", xend="xend", y="estimate_ols", yend="estimate_hier"),
                       data=seg, inherit_aes=False, color="#9E9E9E", size=0.3, alpha=0.7)
        + geom_point(aes(size="n", color="method_key", shape="method_key"), fill="white", stroke=0.5,
                     alpha=0.85)
        + scale_color_manual(values=METHOD_COLORS, guide=None)
        + scale_shape_manual(values=METHOD_SHAPES, guide=None)
        + scale_size_continuous(range=(0.8, 4.0), name=_name(names, "n"))
        + scale_x_discrete(expand=(0, 0.35))
        + labs(x="", y=_name(names, "estimate"), caption=_caption(caption))
    )
    return _finish(p, figure_size("shrinkage")) + theme(panel_grid_major_x=element_blank())


# --------------------------------------------------------------------------
# Figure 2: distribution of all group effects
# --------------------------------------------------------------------------

_ROLE_TITLES = {"smallest": "Smallest", "median": "Median", "largest": "Largest"}
_ANN_SIZE = 7.0  # points
_ANN_LINEHEIGHT = 1.2
_ANN_WRAP = 34


def _wrap_label(label: str, width: int, max_lines: int = 3) -> list[str]:
    """Wrap a group label preferably at ', ' (between modifiers); beyond
    ``max_lines`` the rest is cut with an ellipsis."""
    parts = [p for p in str(label).split(", ") if p]
    lines: list[str] = []
    cur = ""
    for k, part in enumerate(parts):
        piece = part + ("," if k < len(parts) - 1 else "")
        cand = f"{cur} {piece}" if cur else piece
        if len(cand) <= width or not cur:
            cur = cand
        else:
            lines.append(cur)
            cur = piece
    if cur:
        lines.append(cur)
    out: list[str] = []
    for ln in lines:  # a single part longer than the width
        out += textwrap.wrap(ln, width) or [ln]
    if len(out) > max_lines:
        out = out[:max_lines]
        out[-1] = out[-1][: width - 1].rstrip(" ,") + "\u2026"
    return out


def _annotation_text(a: Mapping[str, Any]) -> str:
    role = str(a.get("role", ""))
    title = _ROLE_TITLES.get(role, role.capitalize())
    head = f"{title}: {_num(a['estimate'])} ({_num(a['lower'])} to {_num(a['upper'])})"
    label = str(a.get("label", "") or "")
    lines = _wrap_label(label, max(_ANN_WRAP, len(head))) if label else []
    return "\n".join([head, *lines])


def _text_width_in(text: str, size: float) -> float:
    """Width (inches) of multi-line ``text`` at ``size`` pt in the theme font."""
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path
    from plotnine.options import get_option

    with mpl.rc_context(theme_hetreport().rcParams):
        prop = FontProperties(family=get_option("base_family"), size=size)
        w = max(text_to_path.get_text_width_height_descent(ln, prop, ismath=False)[0]
                for ln in text.split("\n"))
    return w / 72.0


def _layout_annotations(
    xs: Sequence[float], widths: Sequence[float], x0: float, x1: float, gap: float
) -> list[tuple[float, float, int, str]]:
    """Place labels (all widths/xs in data units) above the density.

    Returns ``(box_left, box_right, tier, anchor)`` per label.  Each label
    sits on top of its own vertical line (``tier`` 0 is the lowest) and is
    centred on it (``"center"``), starts at it (``"left"``, text extends to
    the right) or ends at it (``"right"``); boxes are shifted to stay inside
    ``[x0, x1]``.  Rules, in order of priority: boxes in one tier never
    overlap (hard: giving every label its own tier always satisfies it); a
    label's text is not crossed by the line of a label in a higher tier
    (that line passes through the lower tier); few tiers; centred labels;
    labels close to their line.  All anchor x tier choices are searched for
    up to 4 labels; more labels get one tier each, left to right.
    """
    n = len(xs)
    if n == 0:
        return []

    def box(i: int, anchor: str) -> tuple[float, float]:
        x, w = xs[i], widths[i]
        lo = {"center": x - w / 2, "left": x, "right": x - w}[anchor]
        lo = min(max(lo, x0), x1 - w)
        return lo, lo + w

    if n > 4:
        order = np.argsort(xs, kind="stable")
        out: list[tuple[float, float, int, str]] = [None] * n  # type: ignore[list-item]
        for t, i in enumerate(order):
            lo, hi = box(int(i), "center")
            out[int(i)] = (lo, hi, t, "center")
        return out

    anchors = ("center", "left", "right")
    line_gap = gap / 2
    best, best_cost = None, math.inf
    for anch in product(anchors, repeat=n):
        boxes = [box(i, a) for i, a in enumerate(anch)]
        base = sum(a != "center" for a in anch) + sum(
            abs((b[0] + b[1]) / 2 - x) / max(w, 1e-12) * 0.5 for b, x, w in zip(boxes, xs, widths)
        )
        for tiers in product(range(n), repeat=n):
            used = len(set(tiers))
            if max(tiers) != used - 1:  # tiers must be 0..k without holes
                continue
            cost = 10.0 * used + base
            if cost >= best_cost:
                continue
            for i in range(n):
                for j in range(n):
                    if i == j:
                        continue
                    if j > i and tiers[i] == tiers[j] and (
                        boxes[i][0] < boxes[j][1] + gap and boxes[j][0] < boxes[i][1] + gap
                    ):
                        cost = math.inf
                        break
                    if tiers[i] < tiers[j] and boxes[i][0] - line_gap < xs[j] < boxes[i][1] + line_gap:
                        cost += 100.0  # j's line would cross i's text
                if cost == math.inf:
                    break
            if cost < best_cost:
                best_cost, best = cost, [(b[0], b[1], t, a) for b, t, a in zip(boxes, tiers, anch)]
    assert best is not None  # one tier per label is always allowed
    return best


def _format_sigma(sigma_theta: Any) -> str | None:
    if sigma_theta is None:
        return None
    if isinstance(sigma_theta, Mapping):
        est = sigma_theta.get("estimate")
        lo, hi = sigma_theta.get("lower"), sigma_theta.get("upper")
    elif isinstance(sigma_theta, (tuple, list, np.ndarray)):
        est, lo, hi = (list(sigma_theta) + [None, None])[:3]
    else:
        est, lo, hi = sigma_theta, None, None
    s = r"$\sigma_\theta$ " + _num(float(est))
    if lo is not None and hi is not None:
        s += f" ({_num(float(lo))} to {_num(float(hi))})"
    return s


def plot_distribution(
    draws: pd.DataFrame,
    annotations: Sequence[Mapping[str, Any]] = (),
    *,
    sd_all: float | None = None,
    sigma_theta: float | Sequence[float] | Mapping[str, float] | None = None,
    names: Mapping[str, str] | None = None,
) -> ggplot:
    """Figure 2: the posterior distribution of all group effects.

    ``draws`` is long (``group``, ``draw``, ``value``).  The filled light-grey
    area is the density of all draws pooled over groups; with at most 30
    groups each group's posterior density is added as a thin line, otherwise a
    rug marks the group posterior medians.  Densities are computed here with a
    binned Gaussian KDE on a 1,024-point grid (Silverman bandwidth) using
    **all** draws -- no subsampling; 400,000 draws take well under a second.
    The x range covers the central 99.9% of draws (plus the annotated
    intervals); the extreme 0.1% of tails is cut from view.

    ``annotations``: dicts ``{"role", "label", "estimate", "lower",
    "upper"}``; each gets a vertical line and a label "Smallest: 0.05 (-0.12
    to 0.21)" + the wrapped group label, placed above the density so labels
    neither overlap one another nor leave the panel (layout computed for the
    figure's own ``figure_size``).  ``sd_all`` and ``sigma_theta`` (a number,
    an ``(estimate, lower, upper)`` triple or a dict with those keys) go in
    the subtitle when given.
    """
    what = "plot_distribution"
    _require_columns(draws, ["group", "value"], what)
    values = pd.to_numeric(draws["value"], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise DataError("no finite posterior draws to plot.", where=what)
    annotations = [dict(a) for a in (annotations or [])]
    for k, a in enumerate(annotations):
        miss = [key for key in ("role", "estimate", "lower", "upper") if key not in a]
        if miss:
            raise DataError(f"annotation is missing {', '.join(miss)}.", where=f"{what}.annotations[{k}]")

    extra = [float(a[k]) for a in annotations for k in ("estimate", "lower", "upper")]
    grid = _grid_for(values[finite], extra)
    x0, x1 = float(grid[0]), float(grid[-1])
    pooled = _kde_on_grid(values[finite], grid)
    curves = pd.DataFrame({"x": grid, "density": pooled})

    groups = draws.loc[finite, "group"]
    n_groups = int(groups.nunique())
    layers: list = []
    ymax = float(pooled.max())
    if n_groups <= 30:
        parts = []
        for g, v in pd.Series(values[finite], index=groups.to_numpy()).groupby(level=0, sort=False):
            d = _kde_on_grid(v.to_numpy(), grid)
            parts.append(pd.DataFrame({"x": grid, "density": d, "group": str(g)}))
        by_group = pd.concat(parts, ignore_index=True)
        ymax = max(ymax, float(by_group["density"].max()))
        layers.append(geom_line(aes("x", "density", group="group"), data=by_group,
                                color=_GROUP_LINE, size=0.25, alpha=0.6))
        note = f"Thin lines: posterior density of each of the {n_groups} groups."
    else:
        med = (pd.DataFrame({"group": groups.to_numpy(), "value": values[finite]})
               .groupby("group", sort=False)["value"].median().reset_index())
        layers.append(geom_rug(aes(x="value"), data=med, inherit_aes=False, sides="b",
                               color=_GROUP_LINE, alpha=0.7, size=0.3, length=0.03))
        note = f"Rug: posterior medians of the {n_groups} groups."

    # ---- annotation layout (inches -> data units) -------------------------
    width, height = figure_size("distribution")
    subtitle_parts = []
    if sd_all is not None:
        subtitle_parts.append(f"SD of all draws {_num(float(sd_all))}")
    sig = _format_sigma(sigma_theta)
    if sig:
        subtitle_parts.append(sig)
    subtitle = "   \u00b7   ".join(subtitle_parts) or None
    # Panel size, slightly underestimated (measured: 5.96 x 3.34 in with a
    # subtitle), so the estimated label extents err on the safe side.
    panel_w = width - 0.7  # y axis text + title + margins
    panel_h = height - 1.0 - (0.18 if subtitle else 0.0)  # x axis, caption, subtitle
    texts = [_annotation_text(a) for a in annotations]
    widths_in = [_text_width_in(t, _ANN_SIZE) * 1.06 + 0.04 for t in texts]
    line_in = _ANN_SIZE * _ANN_LINEHEIGHT / 72.0
    xspan = x1 - x0
    xs = [float(a["estimate"]) for a in annotations]
    layout = _layout_annotations(
        xs, [w / panel_w * xspan for w in widths_in], x0 + 0.01 * xspan, x1 - 0.01 * xspan,
        gap=0.06 / panel_w * xspan,
    )
    n_tiers = 1 + max((t for _, _, t, _ in layout), default=-1)
    tier_h_in = [0.0] * n_tiers
    for t_txt, (_, _, t, _) in zip(texts, layout):
        tier_h_in[t] = max(tier_h_in[t], (t_txt.count("\n") + 1) * line_in + 0.08)
    label_frac = min(sum(tier_h_in) / panel_h, 0.6)
    y_top = ymax * 1.04 / (1 - label_frac) if n_tiers else ymax * 1.05
    per_in = y_top / panel_h  # data units per inch vertically
    base = ymax * 1.04
    tier_y = []
    for t in range(n_tiers):
        tier_y.append(base)
        base += tier_h_in[t] * per_in

    p = ggplot(curves, aes("x", "density")) + geom_area(fill=_POOLED_FILL, color="#8C8C8C", size=0.3, position="identity")
    for layer in layers:
        p += layer
    p += geom_hline(yintercept=0, color="#8C8C8C", size=0.3)
    if annotations:
        ann = pd.DataFrame({
            "x_line": xs,
            "y_line": [tier_y[t] for _, _, t, _ in layout],
            "y_text": [tier_y[t] + 0.03 * per_in for _, _, t, _ in layout],
            "label": texts,
            "role": [str(a["role"]) for a in annotations],
            "tier": [t for _, _, t, _ in layout],
            "box_left": [lo for lo, _, _, _ in layout],
            "box_right": [hi for _, hi, _, _ in layout],
            "ha": [anc for *_, anc in layout],
        })
        ann["x_text"] = np.select(
            [ann["ha"] == "left", ann["ha"] == "right"],
            [ann["box_left"], ann["box_right"]],
            (ann["box_left"] + ann["box_right"]) / 2,
        )
        p += geom_segment(aes(x="x_line", xend="x_line", y=0, yend="y_line"), data=ann,
                          inherit_aes=False, color="black", size=0.5, linetype="solid")
        # Anchor the text where the layout put its box: centred labels at the
        # box centre, labels extending right (left) from their line at the
        # box's left (right) edge.
        p += geom_text(aes(x="x_text", y="y_text", label="label", ha="ha"), data=ann,
                       inherit_aes=False, va="bottom", size=_ANN_SIZE,
                       lineheight=_ANN_LINEHEIGHT, color="#1A1A1A")
    p += scale_x_continuous(limits=(x0, x1), expand=(0, 0))
    p += scale_y_continuous(limits=(0, y_top), expand=(0, 0))
    p += labs(x=_name(names, "estimate"), y="Posterior density", subtitle=subtitle,
              caption=_caption("Grey area: all posterior draws pooled over groups. " + note))
    return _finish(p, (width, height)) + theme(panel_grid_major_y=element_blank())


# --------------------------------------------------------------------------
# Figure 3: effects by level of each modifier
# --------------------------------------------------------------------------

_SEP = "\x1f"


def _wrap_level(s: str, width: int = 11) -> str:
    return "\n".join(textwrap.wrap(str(s), width)) or str(s)


def plot_by_modifier(
    effects: pd.DataFrame,
    modifiers: Sequence[str],
    *,
    names: Mapping[str, str] | None = None,
    method: str = "hierarchical",
) -> ggplot:
    """Figure 3: group estimates by level of each modifier.

    One facet per modifier (panel width proportional to its number of levels,
    free x), x = level label (in the Categorical's order), y = the ``method``'s
    group estimate.  Boxplots (no outlier points) with the groups jittered on
    top (fixed seed, so reruns are identical) and a line at 0.  A group
    appears once in every facet.
    """
    what = "plot_by_modifier"
    if isinstance(modifiers, str):
        modifiers = [modifiers]
    modifiers = list(dict.fromkeys(modifiers))
    if not modifiers:
        raise SpecError("no modifiers given.", where=what)
    _check_effects(effects, ["estimate"], what)
    for m in modifiers:
        _check_modifier(effects, m, what)
    (method,) = _check_methods([method], what)
    rows = _plottable(effects.loc[effects["method"] == method], ["estimate"]).drop_duplicates("group")
    if rows.empty:
        raise DataError(f"no estimable rows for method '{method}'; nothing to plot.", where=what)

    parts, x_levels, n_levels = [], [], []
    for m in modifiers:
        cat = _as_categorical(rows[m])
        title = _name(names, m)
        keys = [f"{title}{_SEP}{c}" for c in cat.cat.categories if (cat == c).any()]
        x_levels += keys
        n_levels.append(len(keys))
        parts.append(pd.DataFrame({
            "modifier": title,
            "level": [f"{title}{_SEP}{v}" for v in cat.astype(str)],
            "estimate": rows["estimate"].astype(float).to_numpy(),
            "group": rows["group"].to_numpy(),
        }))
    long = pd.concat(parts, ignore_index=True)
    long["modifier"] = pd.Categorical(long["modifier"], categories=[_name(names, m) for m in modifiers])
    long["level"] = pd.Categorical(long["level"], categories=list(dict.fromkeys(x_levels)))

    def _labels(breaks: Sequence[str]) -> list[str]:
        return [_wrap_level(str(b).split(_SEP, 1)[-1]) for b in breaks]

    n_mod = len(modifiers)
    # Panel widths follow the number of levels, but a binary modifier still
    # gets room for two labels such as "Non-white".
    facet = (facet_grid(cols="modifier", scales="free_x",
                        space={"x": [max(k, 2.6) for k in n_levels], "y": [1]})
             if n_mod <= 5 else facet_wrap("modifier", ncol=3, scales="free_x"))
    p = (
        ggplot(long, aes("level", "estimate"))
        + geom_hline(yintercept=0, color=_REF_LINE, linetype="dashed", size=0.4)
        + geom_boxplot(outlier_shape="", fill="#F2F2F2", color="#4D4D4D", width=0.6, size=0.4)
        + geom_point(position=position_jitter(width=0.18, height=0, random_state=_JITTER_SEED),
                     color=METHOD_COLORS[method], shape=METHOD_SHAPES[method], size=0.9,
                     alpha=0.6, stroke=0)
        + facet
        + scale_x_discrete(labels=_labels)
        + labs(x="", y=_name(names, "estimate"))
    )
    return _finish(p, figure_size("by_modifier", rows["group"].nunique(), n_mod)) + theme(
        panel_grid_major_x=element_blank(),
        axis_text_x=element_text(size=7),
    )


# --------------------------------------------------------------------------
# Heatmap
# --------------------------------------------------------------------------


def plot_heatmap(
    effects: pd.DataFrame,
    x: str,
    y: str,
    *,
    facet: str | None = None,
    names: Mapping[str, str] | None = None,
    method: str = "hierarchical",
) -> ggplot:
    """Tiles of the group effect over two modifiers (optionally faceted).

    When several groups share an (x, y, facet) cell -- because other
    modifiers vary -- the tile shows the n-weighted mean of their estimates
    and the subtitle says so.  Each tile prints its value (2 decimals).  The
    fill is diverging (orange-white-purple, centred on 0, symmetric limits)
    when the values span 0 and sequential from 0 otherwise, so tile
    lightness always reads as distance from zero.
    """
    what = "plot_heatmap"
    _check_effects(effects, ["estimate", "n"], what)
    for m in (x, y) + ((facet,) if facet else ()):
        _check_modifier(effects, m, what)
    if len({x, y, facet} - {None}) < len([v for v in (x, y, facet) if v]):
        raise SpecError("x, y and facet must be different modifiers.", where=what)
    (method,) = _check_methods([method], what)
    rows = _plottable(effects.loc[effects["method"] == method], ["estimate"]).drop_duplicates("group")
    if rows.empty:
        raise DataError(f"no estimable rows for method '{method}'; nothing to plot.", where=what)

    keys = [x, y] + ([facet] if facet else [])
    d = rows[keys + ["estimate", "n"]].copy()
    d["n"] = pd.to_numeric(d["n"], errors="coerce").astype(float).fillna(0).clip(lower=0)
    d["wx"] = d["estimate"].astype(float) * d["n"]
    cells = d.groupby(keys, observed=True, sort=True).agg(
        wx=("wx", "sum"), n=("n", "sum"), mean=("estimate", "mean"), k=("estimate", "size")
    ).reset_index()
    cells["value"] = np.where(cells["n"] > 0, cells["wx"] / cells["n"].where(cells["n"] > 0, 1), cells["mean"])
    for m in keys:
        cells[m] = pd.Categorical(cells[m].astype(str), categories=[str(c) for c in _as_categorical(rows[m]).cat.categories])

    vals = cells["value"].to_numpy(dtype=float)
    lo, hi = float(vals.min()), float(vals.max())
    if lo < 0 < hi:
        lim = max(abs(lo), abs(hi))
        fill = scale_fill_gradient2(low=_FILL_NEG, mid=_FILL_MID, high=_FILL_POS, midpoint=0,
                                    limits=(-lim, lim), name=_name(names, "estimate"))
    elif hi <= 0:
        lim = max(abs(lo), 1e-12)
        fill = scale_fill_gradient(low=_FILL_NEG, high=_FILL_MID, limits=(-lim, 0),
                                   name=_name(names, "estimate"))
    else:
        lim = max(hi, 1e-12)
        fill = scale_fill_gradient(low=_FILL_MID, high=_FILL_POS, limits=(0, lim),
                                   name=_name(names, "estimate"))
    cells["label"] = [_num(v) for v in vals]
    cells["text_color"] = np.where(np.abs(vals) / lim > 0.6, "white", "black")

    subtitle = None
    if (cells["k"] > 1).any():
        others = [_name(names, m) for m in _modifier_columns(effects) if m not in keys]
        subtitle = ("Each tile: n-weighted mean of the estimates of the groups in the cell"
                    + (f" (which differ in {', '.join(others)})" if others else "") + ".")
        subtitle = textwrap.fill(subtitle, 95)

    n_facets = 1
    if facet:  # strips read "Name: level"
        cells[facet] = _facet_strip_labels(cells[facet], _name(names, facet))
        n_facets = len(cells[facet].cat.categories)
    p = (
        ggplot(cells, aes(x=x, y=y, fill="value"))
        + geom_tile(color="white", size=0.6)
        + geom_text(aes(label="label", color="text_color"), size=7)
        + scale_color_identity()
        + fill
        + scale_x_discrete(expand=(0, 0))
        + scale_y_discrete(expand=(0, 0))
        + labs(x=_name(names, x), y=_name(names, y), subtitle=subtitle)
    )
    if facet:
        p += facet_wrap(facet, ncol=min(n_facets, 3))
    size = _heatmap_size(cells[x].nunique(), cells[y].nunique(), n_facets, bool(facet), subtitle)
    return _finish(p, size) + theme(
        panel_grid_major=element_blank(),
        legend_key_width=170,  # colourbar length (pt) when horizontal
        legend_key_height=8,
    )


def _heatmap_size(nx: int, ny: int, n_facets: int, strips: bool, subtitle: str | None):
    """Height from the tile grid: tiles at most 0.55 in tall, so a 2 x 5
    heatmap is not blown up to a full page."""
    ncol = min(n_facets, 3)
    nrow = math.ceil(n_facets / ncol)
    panel_w = (PAGE_WIDTH - 1.3 - 0.1 * (ncol - 1)) / ncol
    tile = min(panel_w / max(nx, 1), 0.55)
    h = 1.45 + nrow * (ny * tile + (0.32 if strips else 0) + 0.1)
    if subtitle:
        h += 0.2 * (subtitle.count("\n") + 1)
    return (PAGE_WIDTH, round(min(h, 24.0), 2))


# --------------------------------------------------------------------------
# Posterior predictive check
# --------------------------------------------------------------------------


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
    x_title = _name(names, str(label_key)) if label_key is not None else (
        _name(names, "outcome") if names and "outcome" in names else "Outcome")
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
        d = pd.DataFrame({
            "value": pd.Categorical(labels, categories=labels),
            "observed": props_obs, "lower": q[0], "median": q[1], "upper": q[2],
            "obs": obs_label, "rep": "Replicated (median, 95% interval)",
        })
        p = (
            ggplot(d, aes(x="value"))
            + geom_col(aes(y="observed", fill="obs"), width=0.6, color="#8C8C8C", size=0.3)
            + geom_pointrange(aes(y="median", ymin="lower", ymax="upper", color="rep"), size=0.4,
                              fatten=3)
            + scale_fill_manual(values={obs_label: _POOLED_FILL}, name="")
            + scale_color_manual(values={"Replicated (median, 95% interval)": "black"}, name="")
            + scale_y_continuous(limits=(0, None), expand=(0, 0, 0.05, 0))
            + labs(x=x_title, y="Proportion")
        )
        return _finish(p, figure_size("ppc")) + theme(legend_title=element_blank())

    allv = np.concatenate([yv, sub.ravel()])
    grid = _grid_for(allv, n=512)
    bw_obs = _bandwidth(yv)
    parts = [pd.DataFrame({"x": grid, "density": _kde_on_grid(yv, grid, bw_obs), "draw": "obs",
                           "which": obs_label})]
    for k, row in enumerate(sub):
        parts.append(pd.DataFrame({"x": grid, "density": _kde_on_grid(row, grid, bw_obs),
                                   "draw": f"rep{k}", "which": rep_label}))
    d = pd.concat(parts, ignore_index=True)
    d["which"] = pd.Categorical(d["which"], categories=[obs_label, rep_label])
    reps, obs = d.loc[d["draw"] != "obs"], d.loc[d["draw"] == "obs"]
    p = (
        ggplot(mapping=aes("x", "density", group="draw", color="which", size="which"))
        + geom_line(data=reps, alpha=0.5)
        + geom_line(data=obs)
        + scale_color_manual(values={obs_label: "black", rep_label: "#A6A6A6"}, name="",
                             breaks=[obs_label, rep_label])
        + scale_size_manual(values={obs_label: 0.8, rep_label: 0.25}, name="",
                            breaks=[obs_label, rep_label])
        + scale_y_continuous(expand=(0, 0, 0.05, 0))
        + labs(x=x_title, y="Density")
    )
    return _finish(p, figure_size("ppc")) + theme(
        panel_grid_major_y=element_blank(), legend_title=element_blank()
    )


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


_SVG_DOCTYPE = re.compile(r"<!DOCTYPE svg[^>]*>\s*", re.IGNORECASE)


def save_figure(plot: ggplot, stem: Path | str, width: float, height: float) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (200 dpi) and ``<stem>.svg``; return both paths.

    The SVG is self-contained: text is stored as paths (``svg.fonttype =
    "path"``, a plot-local rcParam set by :class:`theme_hetreport` and forced
    here for plots without it), so no fonts are needed; the Dublin Core
    metadata block (creator URL, date) is left out and the DOCTYPE line
    pointing at the W3C DTD is removed, so the only URLs left are the XML
    namespace names (``xmlns``), which are identifiers, not links.  IDs are
    salted deterministically, so reruns give identical files.  Neither
    ``matplotlib.rcParams`` nor the plotnine default theme is modified, and
    ``plot`` itself is left as it was.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    local = plot + theme(svg_usefonts=False)
    no_meta = {"Creator": None, "Date": None, "Format": None, "Type": None}
    try:
        local.save(png, width=width, height=height, dpi=200, verbose=False)
        local.save(svg, width=width, height=height, dpi=200, verbose=False, metadata=no_meta)
    except HetreportError:
        raise
    except Exception as exc:
        raise RenderError(
            f"could not write the figure ({type(exc).__name__}: {exc}). Check that the folder is "
            "writable and the plot draws (plot.draw()).",
            where=str(stem),
        ) from exc
    svg.write_text(_SVG_DOCTYPE.sub("", svg.read_text(encoding="utf-8"), count=1), encoding="utf-8")
    return png, svg
