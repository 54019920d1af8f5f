"""Saving figures as PNG and self-contained SVG."""

from __future__ import annotations

import re
from pathlib import Path

from plotnine import (
    ggplot,
    theme,
)

from hetreport.errors import HetreportError, RenderError

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
