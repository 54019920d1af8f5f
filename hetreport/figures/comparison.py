"""Figure 1: every group's estimate and interval under each comparison method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    element_line,
    element_text,
    facet_wrap,
    geom_point,
    geom_segment,
    geom_vline,
    ggplot,
    guide_legend,
    guides,
    labs,
    position_nudge,
    scale_x_continuous,
    scale_y_discrete,
    theme,
)

from hetreport import methods as _registry
from hetreport.errors import DataError, SpecError, suggest

from .checks import (
    _as_categorical,
    _caption,
    _check_effects,
    _check_methods,
    _check_modifier,
    _facet_strip_labels,
    _finish,
    _method_scales,
    _name,
    _plottable,
)
from .theme import _REF_LINE, METHOD_LABELS, _comparison_size, _comparison_text_size


def plot_comparison(
    effects: pd.DataFrame,
    facet: str,
    *,
    names: Mapping[str, str] | None = None,
    methods: Sequence[str] | None = None,
    facet_levels: Sequence[str] | None = None,
    drop_facet_level: bool = True,
) -> ggplot:
    """Figure 1: each group's estimate and 95% interval under each method.

    Groups (their ``group_label``) are on the y axis, ordered within each
    facet by the hierarchical estimate (largest at the top; falling back to
    the mean of the plotted estimates when there is no hierarchical row).
    Methods are drawn as point + interval, dodged vertically (first method on
    top); by default the registry's comparison methods (``in_figure``) that the
    table holds.  Panels are the levels of the ``facet`` modifier with free y scales
    stacked in one column; the height grows with the number of groups (see
    :func:`figure_size`: about 13 in for 100 groups).  A ``truth`` column, when
    present, adds the true effect as an extra black ``x`` marker.  Groups a
    method cannot estimate simply lack that method's marker; the caption says
    how many.

    With ``drop_facet_level`` (default) the y labels leave out the facet
    level their panel's strip already shows ("non-white, men, low
    internationalism" reads "men, low internationalism" under "Race:
    non-white") -- when every group label lists that level exactly once
    among its comma-separated parts; otherwise labels are shown whole.

    One row per group does not fit a page beyond about 60 groups (rows of
    6 pt labels need 0.1 in; 100 groups make a 12.5 in figure).
    ``facet_levels`` (labels of levels of ``facet``) draws only the groups at
    those levels, with the x axis of the whole table so that the parts share
    one scale; :func:`comparison_facet_chunks` splits the levels into parts
    that each fit a page, for one figure per part.
    """
    what = "plot_comparison"
    _check_effects(effects, ["group_label", "estimate", "lower_95", "upper_95"], what)
    _check_modifier(effects, facet, what)
    if methods is None:  # the registry's comparison methods that the table holds
        methods = _registry.figure_methods(effects["method"].unique()) or [_registry.BASELINE, _registry.REFERENCE]
    methods = _check_methods(methods, what)

    sel = effects.loc[effects["method"].isin(methods)]
    rows = _plottable(sel, ["estimate", "lower_95", "upper_95"])
    if rows.empty:
        raise DataError(f"no estimable rows for method(s) {', '.join(methods)}; nothing to plot.", where=what)
    x_limits = None
    if facet_levels is not None:
        x_limits = _comparison_x_range(effects, rows)
        effects, rows = _select_facet_levels(effects, rows, facet, facet_levels, what)

    # One record per group: label, facet level, ordering key.
    groups = effects.drop_duplicates("group").set_index("group")
    plotted = pd.Index(rows["group"].unique())
    groups = groups.loc[groups.index.isin(plotted)]
    hier = _plottable(effects.loc[effects["method"] == _registry.REFERENCE], ["estimate"])
    key = hier.drop_duplicates("group").set_index("group")["estimate"].astype(float)
    fallback = rows.groupby("group")["estimate"].mean()
    order_key = key.reindex(groups.index).fillna(fallback.reindex(groups.index))
    facet_cat = _as_categorical(groups[facet])
    facet_codes = np.asarray(facet_cat.cat.codes)

    labels = groups["group_label"].astype(str)
    if labels.duplicated().any():  # keep rows apart if upstream labels collide
        dup = labels.duplicated(keep=False)
        labels = labels.where(~dup, labels + " [" + groups.index.astype(str) + "]")
    order = pd.DataFrame({"facet": facet_codes, "key": order_key.to_numpy(), "label": labels.to_numpy()}, index=groups.index).sort_values(
        ["facet", "key", "label"], na_position="first"
    )
    y_levels = list(dict.fromkeys(labels.loc[order.index]))
    label_of = labels.to_dict()
    # Rows are keyed by the full label; the tick shows it without the facet
    # level, which the panel's strip already gives.
    shown = _labels_without_level(labels, facet_cat.astype(str)) if drop_facet_level else labels
    tick_of = dict(zip(labels, shown))
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
            data=d,
            size=0.45,
            position=position_nudge(y=off),
        )
        p += geom_point(
            aes(x="estimate", y="y", color="method_label", shape="method_label"),
            data=d,
            size=1.3,
            fill="white",
            stroke=0.5,
            position=position_nudge(y=off),
        )
    legend_methods = list(present)
    if "truth" in effects.columns:
        tr = effects.drop_duplicates("group")
        tr = tr.loc[tr["group"].isin(groups.index)]
        tr = tr.loc[np.isfinite(pd.to_numeric(tr["truth"], errors="coerce").astype(float))]
        if not tr.empty:
            d = _frame(tr)
            d["method_label"] = METHOD_LABELS["truth"]
            p += geom_point(aes(x="truth", y="y", color="method_label", shape="method_label"), data=d, size=1.4, stroke=0.6)
            legend_methods.append("truth")

    p += facet_wrap(facet, ncol=1, scales="free_y")
    p += scale_y_discrete(labels=lambda breaks: [tick_of.get(str(b), str(b)) for b in breaks])
    p += _method_scales(legend_methods)
    # Three labels in one row overrun the page width ("Bayesian causal fo..." was cut off), and
    # _comparison_size already leaves room for a second legend row from three approaches on.
    if len(legend_methods) >= 3:
        p += guides(**{a: guide_legend(nrow=2) for a in ("color", "shape", "linetype")})
    caption = []
    for m in present:
        missing = len(set(groups.index) - set(rows.loc[rows["method"] == m, "group"]))
        if missing:
            caption.append(f"{missing} by {METHOD_LABELS[m]}")
    caption_text = f"Groups not estimable (shown without that marker): {'; '.join(caption)}." if caption else None
    p += labs(x=_name(names, "estimate"), y="", caption=_caption(caption_text))
    if x_limits is not None:  # a part of the table: the scale of the whole table
        p += scale_x_continuous(limits=x_limits)
    # Panels share one height, so size them for the most crowded facet level.
    per_panel = int(pd.Series(facet_codes).value_counts().max())
    size = _comparison_size(per_panel, n_facets, len(present))
    return _finish(p, size) + theme(
        axis_text_y=element_text(size=_comparison_text_size(n_groups)),
        axis_ticks_major_y=element_blank(),
        panel_grid_major_y=element_line(color="#F2F2F2", size=0.4),
        legend_title=element_blank(),
    )


def _labels_without_level(labels: pd.Series, levels: pd.Series) -> pd.Series:
    """Group labels ("a, b, c") without the part equal to the group's facet
    level.  Unchanged (all of them) unless every label holds its level exactly
    once and something else besides."""
    parts = [str(lab).split(", ") for lab in labels]
    levels = [str(v) for v in levels]
    if any(p.count(v) != 1 or len(p) < 2 for p, v in zip(parts, levels)):
        return labels
    return pd.Series([", ".join(x for x in p if x != v) for p, v in zip(parts, levels)], index=labels.index)


def _comparison_x_range(effects: pd.DataFrame, rows: pd.DataFrame) -> tuple[float, float]:
    """x range of the full comparison figure: every interval, every true
    effect, and 0 (the reference line)."""
    vals = [rows["lower_95"].astype(float).to_numpy(), rows["upper_95"].astype(float).to_numpy(), [0.0]]
    if "truth" in effects.columns:
        tr = pd.to_numeric(effects.loc[effects["group"].isin(rows["group"]), "truth"], errors="coerce")
        vals.append(tr.astype(float).to_numpy())
    allv = np.concatenate([np.asarray(v, dtype=float) for v in vals])
    allv = allv[np.isfinite(allv)]
    return (float(allv.min()), float(allv.max()))


def _select_facet_levels(
    effects: pd.DataFrame, rows: pd.DataFrame, facet: str, facet_levels: Sequence[str] | str, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows (of ``effects`` and of the plottable ``rows``) of the groups
    at the given levels of ``facet``."""
    wanted = [facet_levels] if isinstance(facet_levels, str) else list(facet_levels)
    wanted = [str(v) for v in wanted]
    known = [str(c) for c in _as_categorical(effects[facet]).cat.categories]
    for v in wanted:
        if v not in known:
            raise SpecError(
                f"'{v}' is not a level of '{facet}'; its levels are {', '.join(known)}." + suggest(v, known),
                where=what,
            )
    if not wanted:
        raise SpecError("facet_levels is empty; give at least one level.", where=what)
    keep = effects.loc[effects[facet].astype(str).isin(wanted), "group"].unique()
    effects = effects.loc[effects["group"].isin(keep)]
    rows = rows.loc[rows["group"].isin(keep)]
    if rows.empty:
        raise DataError(f"no estimable rows at {facet} = {', '.join(wanted)}; nothing to plot.", where=what)
    return effects, rows


def comparison_facet_chunks(
    effects: pd.DataFrame,
    facet: str,
    *,
    methods: Sequence[str] = (_registry.BASELINE, _registry.REFERENCE),
    max_height: float = 9.0,
) -> list[list[str]]:
    """Levels of ``facet`` split into consecutive parts whose comparison
    figures (:func:`plot_comparison` with ``facet_levels=part``) are each at
    most ``max_height`` inches tall -- 9 in fits an A4 or letter page with
    its caption.  Returns one part, all levels, when the whole figure fits;
    a single level too tall on its own is a part by itself.  Levels are
    display labels, in the modifier's order, and only levels with plottable
    groups are listed.
    """
    what = "comparison_facet_chunks"
    _check_effects(effects, ["group_label", "estimate", "lower_95", "upper_95"], what)
    _check_modifier(effects, facet, what)
    methods = _check_methods(methods, what)
    rows = _plottable(effects.loc[effects["method"].isin(methods)], ["estimate", "lower_95", "upper_95"])
    if rows.empty:
        return []
    n_methods = int(rows["method"].nunique())
    groups = effects.drop_duplicates("group").set_index("group")
    groups = groups.loc[groups.index.isin(rows["group"].unique())]
    cat = _as_categorical(groups[facet])
    counts = cat.value_counts(sort=False)
    levels = [(str(c), int(counts[c])) for c in cat.cat.categories if counts.get(c, 0) > 0]

    def height(part: list[tuple[str, int]]) -> float:
        return _comparison_size(max(k for _, k in part), len(part), n_methods)[1]

    parts: list[list[tuple[str, int]]] = []
    for lv in levels:
        if parts and height(parts[-1] + [lv]) <= max_height:
            parts[-1].append(lv)
        else:
            parts.append([lv])
    return [[name for name, _ in part] for part in parts]
