"""Figure 3: group effects by level of each modifier."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    element_text,
    facet_grid,
    facet_wrap,
    geom_blank,
    geom_boxplot,
    geom_hline,
    geom_point,
    ggplot,
    labs,
    position_jitter,
    scale_x_continuous,
    theme,
)

from hetreport import methods as _registry
from hetreport.errors import DataError, SpecError

from .checks import _as_categorical, _check_effects, _check_methods, _check_modifier, _finish, _name, _plottable
from .text import (
    _GAP,
    _LINE,
    _MAX_FIG_H,
    _ROT_WRAP,
    _SLOT_PAD,
    _STRIP_PAD,
    _STRIP_PT,
    _lines_height_in,
    _min_wrap_width,
    _n_lines,
    _rotated_extent,
    _rotated_slot,
    _rotated_text,
    _short_levels,
    _text_width_in,
    _wrap_strip,
    _wrap_to_width,
)
from .theme import _JITTER_SEED, _REF_LINE, METHOD_COLORS, METHOD_SHAPES, PAGE_WIDTH

_SEP = "\x1f"


_BM_LEFT = 0.58  # y axis title + tick labels of the by-modifier figure (inches)


_BM_RIGHT = 0.06


_MIN_SLOT = 0.34  # narrowest x slot (inches): room for a box and its points


_DISCRETE_PAD = 0.6  # plotnine's default discrete expansion, in slots, on each side


_TICK_SIZES = (7.0, 6.5, 6.0)  # x tick label sizes tried, largest first


def _slot_need(ticks: Sequence[str], size: float) -> float:
    """Narrowest slot (inches per level) in which the (wrapped) tick labels
    ``ticks`` do not touch: neighbours share the distance between their
    centres, the outer labels may use the panel's expansion and half the gap
    to the next panel."""
    w = [_text_width_in(t, size) for t in ticks] or [0.0]
    need = max([(a + b) / 2 + _SLOT_PAD for a, b in zip(w, w[1:])] + [_MIN_SLOT])
    edge = max(w[0], w[-1]) / 2 + _SLOT_PAD / 2 - _GAP / 2
    return max(need, edge / _DISCRETE_PAD)


def _fit_ticks(levels: Sequence[str], slot: float, size: float) -> list[str]:
    """Tick labels wrapped as little as the ``slot`` (inches per level) allows."""
    levels = [str(v) for v in levels]
    longest = max((_text_width_in(v, size) for v in levels), default=0.0)
    target = longest
    while target > 0:
        ticks = [_wrap_to_width(v, target, size) for v in levels]
        if _slot_need(ticks, size) <= slot + 1e-9:
            return ticks
        target -= 0.02
    return [_wrap_to_width(v, 0.0, size) for v in levels]


def _by_modifier_layout(levels: Sequence[Sequence[str]], titles: Sequence[str], width: float = PAGE_WIDTH) -> dict[str, Any]:
    """Panel arrangement and fitted labels of Figure 3.

    ``levels``: the tick labels of each modifier (already shortened);
    ``titles``: the strip titles.  Tick labels wrap at spaces into at most
    three lines and neighbouring labels must not touch.  In order of
    preference:

    1. all modifiers in one row (``ncol`` None), each panel as wide as its
       labels need and the room left shared out so slots are as equal as
       possible (two-level panels stay narrow), tick labels at 7 then 6.5 pt;
    2. panels of equal width in rows (``facet_wrap``: at most 3 columns, 2
       for 4 modifiers), labels at 7, 6.5 or 6 pt, if the figure stays
       within 9 in;
    3. labels rotated 45 degrees (wrapped to at most 1.5 in), in one row if
       the slots are wide enough, else in rows.

    Returns ``ncol``, ``nrow``, ``widths`` (panel widths, inches), ``ticks``
    (labels per modifier), ``tick_size``, ``strips``, ``rotate``,
    ``margin_left`` (inches the rotated first label needs beyond the usual
    margin, else 0) and ``size``.
    """
    n = len(titles)
    k = [max(len(lv), 1) for lv in levels]
    units = [kk + 2 * _DISCRETE_PAD - 1 for kk in k]  # panel width in slots
    avail = width - _BM_LEFT - _BM_RIGHT
    room = avail - _GAP * (n - 1)
    strip_one = [_text_width_in(t, _STRIP_PT, "bold") + _STRIP_PAD for t in titles]
    strip_two = [_min_wrap_width(t, _STRIP_PT, weight="bold", max_lines=2) + _STRIP_PAD for t in titles]
    cands = [c for c in (3, 2, 1) if c <= n and not (c == 3 and n == 4)]

    def narrowest(size: float) -> list[list[str]]:
        return [[_wrap_to_width(v, 0.0, size) for v in lv] for lv in levels]

    def one_row(nd: Sequence[float]) -> list[float] | None:
        for strip in (strip_one, strip_two):

            def total(slot: float, strip=strip) -> float:
                return sum(max(u * max(x, slot), st) for u, x, st in zip(units, nd, strip))

            if total(0.0) <= room:
                lo, hi = 0.0, room
                for _ in range(50):  # the widest common slot that still fits
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if total(mid) <= room else (lo, mid)
                return [max(u * max(x, lo), st) for u, x, st in zip(units, nd, strip)]
        return None

    def in_rows(nd: Sequence[float]) -> int | None:
        for c in cands:
            w = (avail - _GAP * (c - 1)) / c
            if all(u * x <= w for u, x in zip(units, nd)) and all(st <= w for st in strip_two):
                return c
        return None

    def height(nrow: int, tick_h: float, strips: Sequence[str]) -> float:
        strip_h = _lines_height_in(max(_n_lines(t) for t in strips), _STRIP_PT) + 0.12
        panel_h = 2.3 if nrow == 1 else 1.75
        return 0.45 + nrow * (strip_h + panel_h + tick_h) + _GAP * (nrow - 1)

    ncol: int | None = None
    widths: list[float] | None = None
    rotate = False
    tick_size = _TICK_SIZES[0]
    if n <= 5:  # 1. one row
        for tick_size in _TICK_SIZES[:2]:
            widths = one_row([_slot_need(t, tick_size) for t in narrowest(tick_size)])
            if widths:
                break
    if widths is None:  # 2. rows of equal panels
        for c, tick_size in product(cands, _TICK_SIZES):
            narrow = narrowest(tick_size)
            if in_rows([_slot_need(t, tick_size) for t in narrow]) == c:
                lines = max(_n_lines(v) for lv in narrow for v in lv)
                h = height(math.ceil(n / c), _lines_height_in(lines, tick_size) + 0.1, titles)
                if h <= _MAX_FIG_H:
                    ncol, widths = c, [(avail - _GAP * (c - 1)) / c] * n
                    break
    rot_ticks: list[list[str]] = []
    if widths is None:  # 3. rotated labels
        rotate, tick_size = True, _TICK_SIZES[0]
        rot_ticks = [[_wrap_to_width(v, _ROT_WRAP, tick_size) for v in lv] for lv in levels]
        nd = [max([_rotated_slot(t, tick_size) for t in lv] + [_MIN_SLOT]) for lv in rot_ticks]
        widths = one_row(nd) if n <= 5 else None
        if widths is None:
            ncol = in_rows(nd) or cands[-1]
            widths = [(avail - _GAP * (ncol - 1)) / ncol] * n
    nrow = 1 if ncol is None else math.ceil(n / ncol)

    margin_left = 0.0
    if rotate:
        ticks = rot_ticks
        tick_h = max(_rotated_extent(v, tick_size) for lv in ticks for v in lv) + 0.1
        first_tick = _BM_LEFT + _DISCRETE_PAD * widths[0] / units[0]
        margin_left = max(_rotated_extent(ticks[0][0], tick_size) + 0.05 - first_tick, 0.0)
    else:
        ticks = [_fit_ticks(lv, w / u, tick_size) for lv, w, u in zip(levels, widths, units)]
        lines = max(_n_lines(v) for lv in ticks for v in lv)
        tick_h = _lines_height_in(lines, tick_size) + 0.1
    strips = [_wrap_strip(t, w - _STRIP_PAD, max_lines=2) for t, w in zip(titles, widths)]
    h = height(nrow, tick_h, strips)
    return {
        "ncol": ncol,
        "nrow": nrow,
        "widths": widths,
        "ticks": ticks,
        "tick_size": tick_size,
        "strips": strips,
        "rotate": rotate,
        "margin_left": round(margin_left, 3),
        "size": (width, round(min(h, 24.0), 2)),
    }


def plot_by_modifier(
    effects: pd.DataFrame,
    modifiers: Sequence[str],
    *,
    names: Mapping[str, str] | None = None,
    method: str = _registry.REFERENCE,
    abbreviate: bool = True,
) -> ggplot:
    """Figure 3: group estimates by level of each modifier.

    One facet per modifier, x = level label (in the Categorical's order), y =
    the ``method``'s group estimate.  Boxplots (no outlier points) with the
    groups jittered on top (fixed seed, so reruns are identical) and a line at
    0.  A group appears once in every facet.

    Labels are fitted to the 6.5 in page (see :func:`_by_modifier_layout`):
    tick labels wrap at spaces into at most three lines, panels are as wide
    as their labels need (two-level modifiers stay narrow), and when one row
    cannot hold them the panels go into rows.  With ``abbreviate`` (default)
    a word every level of a modifier repeats from its name is left out of
    the tick labels ("lowest internationalism" -> "lowest" under
    "Internationalism").
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

    # x is numeric: level i of modifier j sits at 1000 * j + i, so every
    # position names one tick label, and panels can be given equal slot
    # widths when they are laid out in rows (see below).
    parts, level_text, titles, positions = [], [], [], []
    for j, m in enumerate(modifiers):
        cat = _as_categorical(rows[m])
        title = _name(names, m)
        present = [str(c) for c in cat.cat.categories if (cat == c).any()]
        pos_of = {c: 1000.0 * j + i for i, c in enumerate(present, start=1)}
        titles.append(title)
        level_text.append(_short_levels(present, title) if abbreviate else present)
        positions.append([pos_of[c] for c in present])
        parts.append(
            pd.DataFrame(
                {
                    "modifier": title,
                    "level": [f"{title}{_SEP}{v}" for v in cat.astype(str)],
                    "x": [pos_of[v] for v in cat.astype(str)],
                    "estimate": rows["estimate"].astype(float).to_numpy(),
                    "group": rows["group"].to_numpy(),
                }
            )
        )
    long = pd.concat(parts, ignore_index=True)
    long["modifier"] = pd.Categorical(long["modifier"], categories=titles)
    long["level"] = pd.Categorical(long["level"], categories=list(dict.fromkeys(long["level"])))

    lay = _by_modifier_layout(level_text, titles)
    tick_of = {pos: tick for pp, tt in zip(positions, lay["ticks"]) for pos, tick in zip(pp, tt)}
    all_pos = sorted(tick_of)
    strips = pd.Categorical(lay["strips"], categories=list(dict.fromkeys(lay["strips"])))
    long["modifier"] = long["modifier"].cat.rename_categories(dict(zip(titles, lay["strips"])))

    def _breaks(limits: Sequence[float]) -> list[float]:
        return [v for v in all_pos if limits[0] - 0.5 <= v <= limits[1] + 0.5]

    def _labels(breaks: Sequence[float]) -> list[str]:
        return [tick_of.get(float(b), "") for b in breaks]

    # Each panel's x range is set by two blank points: its levels plus
    # _DISCRETE_PAD slots on either side (as a discrete scale would; the box
    # and jitter widths must not widen it), or -- panels in rows, all equally
    # wide -- as many slots as the modifier with the most levels, so boxes
    # and slots are equally wide in every panel.
    pad = _DISCRETE_PAD
    if lay["ncol"] is None:  # one row: panel widths from the labels
        facet = facet_grid(cols="modifier", scales="free_x", space={"x": [round(w, 4) for w in lay["widths"]], "y": [1]})
        spans = [len(pp) - 1 + 2 * pad for pp in positions]
    else:
        facet = facet_wrap("modifier", ncol=lay["ncol"], scales="free_x")
        spans = [max(len(pp) for pp in positions) - 1 + 2 * pad] * len(positions)
    centre = [(pp[0] + pp[-1]) / 2 for pp in positions]
    ends = pd.DataFrame(
        {
            "modifier": pd.Categorical(np.repeat(lay["strips"], 2), categories=strips.categories),
            "x": np.ravel([[c - w / 2, c + w / 2] for c, w in zip(centre, spans)]),
            "estimate": float(long["estimate"].median()),
        }
    )
    p = (
        ggplot(long, aes("x", "estimate"))
        + geom_hline(yintercept=0, color=_REF_LINE, linetype="dashed", size=0.4)
        + geom_boxplot(aes(group="level"), outlier_shape="", fill="#F2F2F2", color="#4D4D4D", width=0.6, size=0.4)
        + geom_point(
            position=position_jitter(width=0.18, height=0, random_state=_JITTER_SEED),
            color=METHOD_COLORS[method],
            shape=METHOD_SHAPES[method],
            size=0.9,
            alpha=0.6,
            stroke=0,
        )
        + geom_blank(data=ends)
        + facet
        + scale_x_continuous(breaks=_breaks, labels=_labels, minor_breaks=[], expand=(0, 0))
        + labs(x="", y=_name(names, "estimate"))
    )
    x_text = _rotated_text(lay["tick_size"]) if lay["rotate"] else element_text(size=lay["tick_size"], linespacing=_LINE)
    out = _finish(p, lay["size"]) + theme(
        panel_grid_major_x=element_blank(),
        axis_text_x=x_text,
        panel_spacing_x=_GAP / PAGE_WIDTH,
    )
    if lay["margin_left"] > 0:  # room for the first rotated label
        out += theme(plot_margin_left=lay["margin_left"] / lay["size"][0])
    return out
