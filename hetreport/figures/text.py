"""Text measurement: fitting tick, strip and annotation labels to measured widths."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

from plotnine import (
    element_text,
)

from .theme import theme_hetreport

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


def _min_wrap_width(text: str, size: float = _TICK_PT, *, weight: str = "normal", max_lines: int = _MAX_TICK_LINES) -> float:
    """Narrowest width (inches) ``text`` can be wrapped to at spaces in at
    most ``max_lines`` lines (words are never broken)."""
    text = str(text)
    words = text.split()
    if len(words) <= 1:
        return _line_width_in(text, size, weight)
    floor = max(_line_width_in(w, size, weight) for w in words)
    spans = sorted({_line_width_in(" ".join(words[i:j]), size, weight) for i in range(len(words)) for j in range(i + 1, len(words) + 1)})
    for width in spans:
        if width >= floor and len(_greedy_wrap(words, width, size, weight)) <= max_lines:
            return width
    return spans[-1]


def _wrap_to_width(text: str, max_w: float, size: float = _TICK_PT, *, weight: str = "normal", max_lines: int = _MAX_TICK_LINES) -> str:
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
        head_lines = _wrap_to_width(head + ":", max_w, size, weight="bold", max_lines=max(max_lines - 1, 1)).split("\n")
        tail_lines = _wrap_to_width(tail, max_w, size, weight="bold", max_lines=max(max_lines - len(head_lines), 1)).split("\n")
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
