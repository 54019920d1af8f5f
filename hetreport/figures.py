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

import functools
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
    geom_blank,
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

from hetreport import effects as _effects
from hetreport import methods as _registry
from hetreport.errors import DataError, HetreportError, RenderError, SpecError, suggest

__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "METHOD_LINETYPES",
    "METHOD_SHAPES",
    "PAGE_WIDTH",
    "comparison_facet_chunks",
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

# Labels and styles come from the method registry (hetreport/methods.py): greys plus one accent
# (the hierarchical model, the paper's focus); every method also has its own shape and linetype,
# so the figures survive greyscale printing. "truth" is the true-effect marker.
_STYLED = (*_registry.names(), "truth")
METHOD_LABELS: dict[str, str] = {m: _registry.style(m)["label"] for m in _STYLED}
METHOD_COLORS: dict[str, str] = {m: _registry.style(m)["color"] for m in _STYLED}
METHOD_SHAPES: dict[str, str] = {m: _registry.style(m)["shape"] for m in _STYLED}
METHOD_LINETYPES: dict[str, str] = {m: _registry.style(m)["linetype"] for m in _STYLED}

_ESTIMATE_METHODS = _registry.names()

# Columns of the effects contract that are not modifiers (the contract's own list).
_CONTRACT_COLUMNS = _effects.NON_MODIFIER_COLUMNS

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
    if all(c in effects.columns for c in _effects.CORE_COLUMNS):  # a whole effects table: the contract's own checks
        _effects.validate(effects, where=what)


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


# --------------------------------------------------------------------------
# Fitting tick and strip labels: measured widths, wrapping at word boundaries
# --------------------------------------------------------------------------

_TICK_PT = 7.0  # x tick labels of the by-modifier figure, tick labels of the heatmap
_STRIP_PT = 8.5  # strip text: 0.85 x the 10 pt base size, bold
_SUBTITLE_PT = 8.5  # plot subtitle: 0.85 x the base size
_LINE = 1.2  # line height of multi-line labels (x font size)
_GAP = 0.08  # inches between facet panels (a little more than the theme's)
_SLOT_PAD = 0.07  # inches kept free between neighbouring x tick labels
_STRIP_PAD = 0.14  # inches kept free inside a strip
_MAX_TICK_LINES = 3


def _lines_height_in(n_lines: int, size: float) -> float:
    return n_lines * size * _LINE / 72.0


def _n_lines(text: str) -> int:
    return str(text).count("\n") + 1


def _greedy_wrap(words: Sequence[str], max_w: float, size: float, weight: str) -> list[str]:
    """Fill lines word by word up to ``max_w`` inches (fewest lines for that width)."""
    lines: list[str] = []
    cur = ""
    for w in words:
        cand = f"{cur} {w}" if cur else w
        if cur and _line_width_in(cand, size, weight) > max_w + 1e-9:
            lines.append(cur)
            cur = w
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


def _min_wrap_width(text: str, size: float = _TICK_PT, *, weight: str = "normal",
                    max_lines: int = _MAX_TICK_LINES) -> float:
    """Narrowest width (inches) ``text`` can be wrapped to at spaces in at
    most ``max_lines`` lines (words are never broken)."""
    text = str(text)
    words = text.split()
    if len(words) <= 1:
        return _line_width_in(text, size, weight)
    floor = max(_line_width_in(w, size, weight) for w in words)
    spans = sorted({_line_width_in(" ".join(words[i:j]), size, weight)
                    for i in range(len(words)) for j in range(i + 1, len(words) + 1)})
    for width in spans:
        if width >= floor and len(_greedy_wrap(words, width, size, weight)) <= max_lines:
            return width
    return spans[-1]


def _wrap_to_width(text: str, max_w: float, size: float = _TICK_PT, *, weight: str = "normal",
                   max_lines: int = _MAX_TICK_LINES) -> str:
    """``text`` wrapped at spaces so that every line is at most ``max_w``
    inches wide at ``size`` pt, in as few lines as possible; words are never
    broken.  When that would take more than ``max_lines`` lines, the text is
    split into ``max_lines`` lines as evenly as possible (the narrowest
    result, which is then wider than ``max_w``); a single word wider than
    ``max_w`` stays whole.  Use :func:`_fits_width` to check the result."""
    text = str(text)
    words = text.split()
    if len(words) <= 1 or _line_width_in(" ".join(words), size, weight) <= max_w + 1e-9:
        return " ".join(words) if words else text
    lines = _greedy_wrap(words, max_w, size, weight)
    if len(lines) > max_lines:
        narrowest = _min_wrap_width(text, size, weight=weight, max_lines=max_lines)
        lines = _greedy_wrap(words, narrowest, size, weight)
    return "\n".join(lines)


def _wrap_strip(text: str, max_w: float, *, size: float = _STRIP_PT, max_lines: int = 3) -> str:
    """Strip text ("Title: level") fitted to ``max_w`` inches: kept on one
    line when it fits, else broken after the colon first, then at spaces."""
    text = str(text)
    if _line_width_in(text, size, "bold") <= max_w + 1e-9:
        return text
    if ": " in text and max_lines >= 2:
        head, tail = text.split(": ", 1)
        head_lines = _wrap_to_width(head + ":", max_w, size, weight="bold",
                                    max_lines=max(max_lines - 1, 1)).split("\n")
        tail_lines = _wrap_to_width(tail, max_w, size, weight="bold",
                                    max_lines=max(max_lines - len(head_lines), 1)).split("\n")
        return "\n".join(head_lines + tail_lines)
    return _wrap_to_width(text, max_w, size, weight="bold", max_lines=max_lines)


def _fits_width(text: str, max_w: float, size: float, weight: str = "normal") -> bool:
    return _text_width_in(text, size, weight) <= max_w + 1e-9


_ROT_WRAP = 1.5  # inches: rotated tick labels wrap at this width
_MAX_FIG_H = 9.0  # inches: the tallest figure that fits a page with its caption


def _rotated_text(size: float) -> element_text:
    """x tick labels at 45 degrees, each ending (right-aligned lines) at its tick."""
    return element_text(size=size, rotation=45, ha="right", va="top", ma="right", linespacing=_LINE)


def _rotated_extent(text: str, size: float) -> float:
    """Horizontal (= vertical) extent in inches of ``text`` rotated 45 degrees."""
    return (_text_width_in(text, size) + _lines_height_in(_n_lines(text), size)) * math.sqrt(0.5)


def _rotated_slot(text: str, size: float) -> float:
    """Slot width (inches) that keeps parallel 45-degree labels apart."""
    return (_lines_height_in(_n_lines(text), size) + 0.04) / math.sqrt(0.5)


def _short_levels(levels: Sequence[str], title: str) -> list[str]:
    """Level labels without a word that every label repeats from the title.

    Under the axis or strip title "Internationalism", the levels "lowest
    internationalism", "low internationalism", ..., "highest
    internationalism" read "lowest", "low", ..., "highest".  Only a shared
    first or last word that is also a word of ``title`` (ignoring case) is
    dropped, and only when every label has another word and the shortened
    labels stay distinct; otherwise the labels are returned unchanged.
    """
    levels = [str(v) for v in levels]
    words = [v.split() for v in levels]
    if len(levels) < 2 or any(len(w) < 2 for w in words):
        return levels
    title_words = {w.lower() for w in re.findall(r"\w+", str(title))}
    for pos in (-1, 0):
        common = {w[pos].lower() for w in words}
        if len(common) == 1 and next(iter(common)) in title_words:
            short = [" ".join(w[:-1] if pos == -1 else w[1:]) for w in words]
            if len(set(short)) == len(short):
                return short
    return levels


def layer_data(plot: ggplot, i: int = 0) -> pd.DataFrame:
    """The computed data of layer ``i`` (like ggplot2's ``layer_data``).

    plotnine 0.15 has no ``ggplot.layer_data``; this draws a copy of the plot
    with the public ``ggplot.draw`` (the plot itself is left untouched) and
    returns that layer's data after statistics, positions and scales were
    applied.
    """
    import matplotlib.pyplot as plt

    p = deepcopy(plot)
    plt.close(p.draw())  # the public route: drawing computes every layer's data in place
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
        methods = _registry.figure_methods(effects["method"].unique()) or ["ols_full", "hierarchical"]
    methods = _check_methods(methods, what)

    sel = effects.loc[effects["method"].isin(methods)]
    rows = _plottable(sel, ["estimate", "lower_95", "upper_95"])
    if rows.empty:
        raise DataError(
            f"no estimable rows for method(s) {', '.join(methods)}; nothing to plot.", where=what
        )
    x_limits = None
    if facet_levels is not None:
        x_limits = _comparison_x_range(effects, rows)
        effects, rows = _select_facet_levels(effects, rows, facet, facet_levels, what)

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
    # Rows are keyed by the full label; the tick shows it without the facet
    # level, which the panel's strip already gives.
    shown = (_labels_without_level(labels, facet_cat.astype(str)) if drop_facet_level
             else labels)
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
    p += scale_y_discrete(labels=lambda breaks: [tick_of.get(str(b), str(b)) for b in breaks])
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


def _select_facet_levels(effects: pd.DataFrame, rows: pd.DataFrame, facet: str,
                         facet_levels: Sequence[str] | str, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
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
    methods: Sequence[str] = ("ols_full", "hierarchical"),
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


def _text_width_in(text: str, size: float, weight: str = "normal") -> float:
    """Width (inches) of multi-line ``text`` at ``size`` pt in the theme font."""
    return max(_line_width_in(ln, float(size), weight) for ln in str(text).split("\n"))


@functools.lru_cache(maxsize=16384)
def _line_width_in(line: str, size: float, weight: str = "normal") -> float:
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path
    from plotnine.options import get_option

    if not line:
        return 0.0
    with mpl.rc_context(_theme_rc()):
        prop = FontProperties(family=get_option("base_family"), size=size, weight=weight)
        w = text_to_path.get_text_width_height_descent(line, prop, ismath=False)[0]
    return w / 72.0


@functools.lru_cache(maxsize=1)
def _theme_rc() -> dict:
    return dict(theme_hetreport().rcParams)


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


def _by_modifier_layout(levels: Sequence[Sequence[str]], titles: Sequence[str],
                        width: float = PAGE_WIDTH) -> dict[str, Any]:
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
    return {"ncol": ncol, "nrow": nrow, "widths": widths, "ticks": ticks, "tick_size": tick_size,
            "strips": strips, "rotate": rotate, "margin_left": round(margin_left, 3),
            "size": (width, round(min(h, 24.0), 2))}


def plot_by_modifier(
    effects: pd.DataFrame,
    modifiers: Sequence[str],
    *,
    names: Mapping[str, str] | None = None,
    method: str = "hierarchical",
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
        parts.append(pd.DataFrame({
            "modifier": title,
            "level": [f"{title}{_SEP}{v}" for v in cat.astype(str)],
            "x": [pos_of[v] for v in cat.astype(str)],
            "estimate": rows["estimate"].astype(float).to_numpy(),
            "group": rows["group"].to_numpy(),
        }))
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
        facet = facet_grid(cols="modifier", scales="free_x",
                           space={"x": [round(w, 4) for w in lay["widths"]], "y": [1]})
        spans = [len(pp) - 1 + 2 * pad for pp in positions]
    else:
        facet = facet_wrap("modifier", ncol=lay["ncol"], scales="free_x")
        spans = [max(len(pp) for pp in positions) - 1 + 2 * pad] * len(positions)
    centre = [(pp[0] + pp[-1]) / 2 for pp in positions]
    ends = pd.DataFrame({
        "modifier": pd.Categorical(np.repeat(lay["strips"], 2), categories=strips.categories),
        "x": np.ravel([[c - w / 2, c + w / 2] for c, w in zip(centre, spans)]),
        "estimate": float(long["estimate"].median()),
    })
    p = (
        ggplot(long, aes("x", "estimate"))
        + geom_hline(yintercept=0, color=_REF_LINE, linetype="dashed", size=0.4)
        + geom_boxplot(aes(group="level"), outlier_shape="", fill="#F2F2F2", color="#4D4D4D",
                       width=0.6, size=0.4)
        + geom_point(position=position_jitter(width=0.18, height=0, random_state=_JITTER_SEED),
                     color=METHOD_COLORS[method], shape=METHOD_SHAPES[method], size=0.9,
                     alpha=0.6, stroke=0)
        + geom_blank(data=ends)
        + facet
        + scale_x_continuous(breaks=_breaks, labels=_labels, minor_breaks=[], expand=(0, 0))
        + labs(x="", y=_name(names, "estimate"))
    )
    x_text = (_rotated_text(lay["tick_size"]) if lay["rotate"]
              else element_text(size=lay["tick_size"], linespacing=_LINE))
    out = _finish(p, lay["size"]) + theme(
        panel_grid_major_x=element_blank(),
        axis_text_x=x_text,
        panel_spacing_x=_GAP / PAGE_WIDTH,
    )
    if lay["margin_left"] > 0:  # room for the first rotated label
        out += theme(plot_margin_left=lay["margin_left"] / lay["size"][0])
    return out


# --------------------------------------------------------------------------
# Heatmap
# --------------------------------------------------------------------------


_HM_YTITLE = 0.3  # inches: y axis title of the heatmap, plus its margin
_HM_RIGHT = 0.08
_HM_MAX_H = 9.0  # the heatmap never gets taller than this (inches)
_VALUE_PT = 7.0  # tile numbers


def _heatmap_layout(x_levels: Sequence[str], y_levels: Sequence[str], strips: Sequence[str] | None,
                    subtitle_lines: int = 0, width: float = PAGE_WIDTH) -> dict[str, Any]:
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
    longest_word = max((_line_width_in(w, _TICK_PT, "normal") for v in y_levels for w in str(v).split()),
                       default=0.0)
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
        ncol = next((c for c in cands if strips_fit((avail - _GAP * (c - 1)) / c)
                     and (avail - _GAP * (c - 1)) / c / nx >= value_w + 0.06), cands[-1])
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
    return {"ncol": ncol, "nrow": nrow, "x_ticks": x_ticks, "y_ticks": y_ticks, "strips": wrapped,
            "rotate": rotate, "tile": (tile_w, tile_h), "value_size": value_size,
            "margin_left": round(margin_left, 3), "size": (width, round(min(h, 24.0), 2))}


def plot_heatmap(
    effects: pd.DataFrame,
    x: str,
    y: str,
    *,
    facet: str | None = None,
    names: Mapping[str, str] | None = None,
    method: str = "hierarchical",
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
    lay = _heatmap_layout(x_text, y_text, strip_text,
                          subtitle.count("\n") + 1 if subtitle else 0)
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
    x_axis = (_rotated_text(_TICK_PT) if lay["rotate"]
              else element_text(size=_TICK_PT, linespacing=_LINE))
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
