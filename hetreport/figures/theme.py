"""Page size, the method styles (from the method registry), the palette, the theme and figure sizes."""

from __future__ import annotations

import math

from plotnine import (
    element_blank,
    element_line,
    element_rect,
    element_text,
    theme,
    theme_bw,
)

from hetreport import effects as _effects
from hetreport import methods as _registry
from hetreport.errors import HetreportError, suggest

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
            f"Unknown plot kind '{plot_kind}'; expected one of {', '.join(_PLOT_KINDS)}." + suggest(plot_kind, _PLOT_KINDS),
            where="figure_size",
        )
    return (w, round(min(h, 24.0), 2))
