"""Heat map of the group effects over two modifiers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    element_text,
    facet_wrap,
    geom_text,
    geom_tile,
    ggplot,
    labs,
    scale_color_identity,
    scale_fill_gradient,
    scale_fill_gradient2,
    scale_x_discrete,
    scale_y_discrete,
    theme,
)

from hetreport import methods as _registry
from hetreport.errors import DataError, SpecError

from .checks import (
    _as_categorical,
    _check_effects,
    _check_methods,
    _check_modifier,
    _facet_strip_labels,
    _finish,
    _modifier_columns,
    _name,
    _num,
    _plottable,
)
from .text import (
    _GAP,
    _LINE,
    _ROT_WRAP,
    _SLOT_PAD,
    _STRIP_PAD,
    _STRIP_PT,
    _SUBTITLE_PT,
    _TICK_PT,
    _fits_width,
    _line_width_in,
    _lines_height_in,
    _min_wrap_width,
    _n_lines,
    _rotated_extent,
    _rotated_text,
    _short_levels,
    _text_width_in,
    _wrap_strip,
    _wrap_to_width,
)
from .theme import _FILL_MID, _FILL_NEG, _FILL_POS, PAGE_WIDTH

_HM_YTITLE = 0.3  # inches: y axis title of the heatmap, plus its margin


_HM_RIGHT = 0.08


_HM_MAX_H = 9.0  # the heatmap never gets taller than this (inches)


_VALUE_PT = 7.0  # tile numbers


def _heatmap_layout(
    x_levels: Sequence[str], y_levels: Sequence[str], strips: Sequence[str] | None, subtitle_lines: int = 0, width: float = PAGE_WIDTH
) -> dict[str, Any]:
    """Panel arrangement, tile size and fitted labels of the heatmap.

    Tick labels are 7 pt.  y labels wider than 0.8 in wrap into two lines;
    x labels wrap at spaces into at most three lines (rotated labels: lines of
    at most 1.5 in).  Facet panels go in at
    most 3 columns (2 for four panels) -- the most that leave every x label,
    every tile number and every strip (wrapped after its colon, then at
    spaces) room in its tile or panel; when no column count does, x labels
    are rotated 45 degrees.  Tiles are at most 0.55 in (0.45 in when
    faceted) tall and the figure at most 9 in.

    Returns ``ncol``, ``nrow``, ``x_ticks``, ``y_ticks``, ``strips`` (wrapped),
    ``rotate``, ``tile`` (width, height in inches), ``value_size``,
    ``margin_left`` (inches the rotated first label needs, else 0) and ``size``.
    """
    nx, ny = max(len(x_levels), 1), max(len(y_levels), 1)
    n_f = len(strips) if strips else 1
    longest_word = max((_line_width_in(w, _TICK_PT, "normal") for v in y_levels for w in str(v).split()), default=0.0)
    y_ticks = [_wrap_to_width(v, max(0.8, longest_word), _TICK_PT, max_lines=2) for v in y_levels]
    left = _HM_YTITLE + max((_text_width_in(t, _TICK_PT) for t in y_ticks), default=0.0) + 0.12
    avail = width - left - _HM_RIGHT
    value_w = _text_width_in("\u22120.00", _VALUE_PT)
    x_need = max((_min_wrap_width(v, _TICK_PT) for v in x_levels), default=0.0) + _SLOT_PAD

    def strips_fit(panel_w: float) -> bool:
        for t in strips or []:
            w = _wrap_strip(t, panel_w - _STRIP_PAD)
            if _n_lines(w) > 3 or not _fits_width(w, panel_w - _STRIP_PAD, _STRIP_PT, "bold"):
                return False
        return True

    cands = [1] if n_f == 1 else [c for c in (3, 2, 1) if c <= n_f and not (c == 3 and n_f == 4)]
    ncol, rotate = None, False
    for c in cands:
        panel_w = (avail - _GAP * (c - 1)) / c
        tile_w = panel_w / nx
        if tile_w >= x_need and tile_w >= value_w + 0.06 and strips_fit(panel_w):
            ncol = c
            break
    if ncol is None:  # the x labels do not fit side by side: rotate them
        rotate = True
        ncol = next(
            (c for c in cands if strips_fit((avail - _GAP * (c - 1)) / c) and (avail - _GAP * (c - 1)) / c / nx >= value_w + 0.06),
            cands[-1],
        )
    nrow = math.ceil(n_f / ncol)
    panel_w = (avail - _GAP * (ncol - 1)) / ncol
    tile_w = panel_w / nx
    margin_left = 0.0
    if rotate:
        x_ticks = [_wrap_to_width(v, _ROT_WRAP, _TICK_PT) for v in x_levels]
        tick_h = max((_rotated_extent(v, _TICK_PT) for v in x_ticks), default=0.0) + 0.1
        if x_ticks:  # the first label must not leave the figure on the left
            margin_left = max(_rotated_extent(x_ticks[0], _TICK_PT) + 0.05 - (left + tile_w / 2), 0.0)
    else:
        x_ticks = [_wrap_to_width(v, tile_w - _SLOT_PAD, _TICK_PT) for v in x_levels]
        tick_h = _lines_height_in(max((_n_lines(t) for t in x_ticks), default=1), _TICK_PT) + 0.1
    wrapped = [_wrap_strip(t, panel_w - _STRIP_PAD) for t in strips] if strips else None
    strip_h = (_lines_height_in(max(_n_lines(t) for t in wrapped), _STRIP_PT) + 0.12) if wrapped else 0.0
    fixed = 1.25 + 0.2 * subtitle_lines + tick_h  # x title, legend, margins
    tile_h = min(tile_w, 0.55 if n_f == 1 else 0.45)
    tile_h = min(tile_h, ((_HM_MAX_H - fixed) / nrow - strip_h - _GAP) / ny)
    if tile_h < _lines_height_in(2, _TICK_PT) + 0.04:  # too low for two-line y labels
        y_ticks = [str(v) for v in y_levels]
    value_size = _VALUE_PT if (tile_w >= value_w + 0.1 and tile_h >= 0.2) else 6.0
    h = fixed + nrow * (strip_h + ny * tile_h + _GAP)
    return {
        "ncol": ncol,
        "nrow": nrow,
        "x_ticks": x_ticks,
        "y_ticks": y_ticks,
        "strips": wrapped,
        "rotate": rotate,
        "tile": (tile_w, tile_h),
        "value_size": value_size,
        "margin_left": round(margin_left, 3),
        "size": (width, round(min(h, 24.0), 2)),
    }


def plot_heatmap(
    effects: pd.DataFrame,
    x: str,
    y: str,
    *,
    facet: str | None = None,
    names: Mapping[str, str] | None = None,
    method: str = _registry.REFERENCE,
    abbreviate: bool = True,
) -> ggplot:
    """Tiles of the group effect over two modifiers (optionally faceted).

    When several groups share an (x, y, facet) cell -- because other
    modifiers vary -- the tile shows the n-weighted mean of their estimates
    and the subtitle says so.  Each tile prints its value (2 decimals).  The
    fill is diverging (orange-white-purple, centred on 0, symmetric limits)
    when the values span 0 and sequential from 0 otherwise, so tile
    lightness always reads as distance from zero.

    Labels are fitted to the 6.5 in page (see :func:`_heatmap_layout`): tick
    labels wrap at spaces (x labels rotate when even that is too wide),
    facets go in at most 3 columns (fewer when labels are long) and strip
    titles wrap.  With ``abbreviate`` (default) a word every level repeats
    from the axis title is left out of the tick labels ("lowest
    internationalism" -> "lowest" under "Internationalism").
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
    cells = (
        d.groupby(keys, observed=True, sort=True)
        .agg(wx=("wx", "sum"), n=("n", "sum"), mean=("estimate", "mean"), k=("estimate", "size"))
        .reset_index()
    )
    cells["value"] = np.where(cells["n"] > 0, cells["wx"] / cells["n"].where(cells["n"] > 0, 1), cells["mean"])
    for m in keys:
        cells[m] = pd.Categorical(cells[m].astype(str), categories=[str(c) for c in _as_categorical(rows[m]).cat.categories])

    vals = cells["value"].to_numpy(dtype=float)
    lo, hi = float(vals.min()), float(vals.max())
    if lo < 0 < hi:
        lim = max(abs(lo), abs(hi))
        fill = scale_fill_gradient2(
            low=_FILL_NEG, mid=_FILL_MID, high=_FILL_POS, midpoint=0, limits=(-lim, lim), name=_name(names, "estimate")
        )
    elif hi <= 0:
        lim = max(abs(lo), 1e-12)
        fill = scale_fill_gradient(low=_FILL_NEG, high=_FILL_MID, limits=(-lim, 0), name=_name(names, "estimate"))
    else:
        lim = max(hi, 1e-12)
        fill = scale_fill_gradient(low=_FILL_MID, high=_FILL_POS, limits=(0, lim), name=_name(names, "estimate"))
    cells["label"] = [_num(v) for v in vals]
    cells["text_color"] = np.where(np.abs(vals) / lim > 0.6, "white", "black")

    subtitle = None
    if (cells["k"] > 1).any():
        others = [_name(names, m) for m in _modifier_columns(effects) if m not in keys]
        subtitle = (
            "Each tile: n-weighted mean of the estimates of the groups in the cell"
            + (f" (which differ in {', '.join(others)})" if others else "")
            + "."
        )
        # placed at the figure's left edge (plot_title_position="plot")
        subtitle = _wrap_to_width(subtitle, PAGE_WIDTH - 0.25, _SUBTITLE_PT, max_lines=4)

    # Tick labels: the levels shown (x, y), shortened and wrapped to the tiles.
    x_cats = [str(c) for c in cells[x].cat.categories if (cells[x] == c).any()]
    y_cats = [str(c) for c in cells[y].cat.categories if (cells[y] == c).any()]
    x_text = _short_levels(x_cats, _name(names, x)) if abbreviate else x_cats
    y_text = _short_levels(y_cats, _name(names, y)) if abbreviate else y_cats
    strip_text = None
    if facet:  # strips read "Name: level"
        cells[facet] = _facet_strip_labels(cells[facet], _name(names, facet))
        strip_text = [str(c) for c in cells[facet].cat.categories]
    lay = _heatmap_layout(x_text, y_text, strip_text, subtitle.count("\n") + 1 if subtitle else 0)
    x_lab = dict(zip(x_cats, lay["x_ticks"]))
    y_lab = dict(zip(y_cats, lay["y_ticks"]))
    if facet:
        cells[facet] = cells[facet].cat.rename_categories(dict(zip(strip_text, lay["strips"])))

    p = (
        ggplot(cells, aes(x=x, y=y, fill="value"))
        + geom_tile(color="white", size=0.6)
        + geom_text(aes(label="label", color="text_color"), size=lay["value_size"])
        + scale_color_identity()
        + fill
        + scale_x_discrete(expand=(0, 0), labels=lambda b: [x_lab.get(str(v), str(v)) for v in b])
        + scale_y_discrete(expand=(0, 0), labels=lambda b: [y_lab.get(str(v), str(v)) for v in b])
        + labs(x=_name(names, x), y=_name(names, y), subtitle=subtitle)
    )
    if facet:
        p += facet_wrap(facet, ncol=lay["ncol"])
    x_axis = _rotated_text(_TICK_PT) if lay["rotate"] else element_text(size=_TICK_PT, linespacing=_LINE)
    out = _finish(p, lay["size"]) + theme(
        panel_grid_major=element_blank(),
        axis_text_x=x_axis,
        axis_text_y=element_text(size=_TICK_PT, linespacing=_LINE),
        panel_spacing=_GAP / PAGE_WIDTH,
        plot_title_position="plot",
        legend_key_width=170,  # colourbar length (pt) when horizontal
        legend_key_height=8,
    )
    if lay["margin_left"] > 0:  # room for the first rotated label
        out += theme(plot_margin_left=lay["margin_left"] / lay["size"][0])
    return out
