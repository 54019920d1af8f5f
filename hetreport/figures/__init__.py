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

The package: :mod:`.theme` (page, styles, theme, sizes), :mod:`.text` (measured text),
:mod:`.checks` (contract checks, scales), :mod:`.density`, one module per figure
(:mod:`.comparison`, :mod:`.shrinkage`, :mod:`.distribution`, :mod:`.by_modifier`, :mod:`.heatmap`,
:mod:`.ppc`) and :mod:`.save`.
"""

from __future__ import annotations

from .by_modifier import (  # noqa: F401
    _BM_LEFT,
    _BM_RIGHT,
    _DISCRETE_PAD,
    _MIN_SLOT,
    _SEP,
    _TICK_SIZES,
    _by_modifier_layout,
    _fit_ticks,
    _slot_need,
    plot_by_modifier,
)
from .checks import (  # noqa: F401
    _as_categorical,
    _caption,
    _check_effects,
    _check_methods,
    _check_modifier,
    _facet_strip_labels,
    _finish,
    _method_scales,
    _modifier_columns,
    _name,
    _num,
    _plottable,
    _require_columns,
    layer_data,
)
from .comparison import _comparison_x_range, _labels_without_level, _select_facet_levels, comparison_facet_chunks, plot_comparison  # noqa: F401
from .density import _bandwidth, _grid_for, _kde_on_grid  # noqa: F401
from .distribution import (  # noqa: F401
    _ANN_LINEHEIGHT,
    _ANN_SIZE,
    _ANN_WRAP,
    _ROLE_TITLES,
    _annotation_text,
    _format_sigma,
    _layout_annotations,
    _wrap_label,
    plot_distribution,
)
from .heatmap import _HM_MAX_H, _HM_RIGHT, _HM_YTITLE, _VALUE_PT, _heatmap_layout, plot_heatmap  # noqa: F401
from .ppc import plot_ppc  # noqa: F401
from .save import _SVG_DOCTYPE, save_figure  # noqa: F401
from .shrinkage import plot_shrinkage  # noqa: F401
from .text import (  # noqa: F401
    _GAP,
    _LINE,
    _MAX_FIG_H,
    _MAX_TICK_LINES,
    _ROT_WRAP,
    _SLOT_PAD,
    _STRIP_PAD,
    _STRIP_PT,
    _SUBTITLE_PT,
    _TICK_PT,
    _fits_width,
    _greedy_wrap,
    _line_width_in,
    _lines_height_in,
    _min_wrap_width,
    _n_lines,
    _rotated_extent,
    _rotated_slot,
    _rotated_text,
    _short_levels,
    _text_width_in,
    _theme_rc,
    _wrap_strip,
    _wrap_to_width,
)
from .theme import (  # noqa: F401
    _CONTRACT_COLUMNS,
    _ESTIMATE_METHODS,
    _FILL_MID,
    _FILL_NEG,
    _FILL_POS,
    _GROUP_LINE,
    _JITTER_SEED,
    _MINUS,
    _PLOT_KINDS,
    _POOLED_FILL,
    _REF_LINE,
    _STYLED,
    METHOD_COLORS,
    METHOD_LABELS,
    METHOD_LINETYPES,
    METHOD_SHAPES,
    PAGE_WIDTH,
    _comparison_row_height,
    _comparison_size,
    _comparison_text_size,
    figure_size,
    theme_hetreport,
)

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
