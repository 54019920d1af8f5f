"""Contract checks shared by the effects figures, method scales, captions and finishing."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from copy import deepcopy

import numpy as np
import pandas as pd
from plotnine import (
    ggplot,
    scale_color_manual,
    scale_linetype_manual,
    scale_shape_manual,
    theme,
)

from hetreport import effects as _effects
from hetreport.errors import DataError, SpecError, suggest

from .theme import (
    _CONTRACT_COLUMNS,
    _ESTIMATE_METHODS,
    _MINUS,
    METHOD_COLORS,
    METHOD_LABELS,
    METHOD_LINETYPES,
    METHOD_SHAPES,
    theme_hetreport,
)


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
                f"unknown method '{m}'; expected one of {', '.join(_ESTIMATE_METHODS)}." + suggest(m, _ESTIMATE_METHODS),
                where=what,
            )
        if m not in out:
            out.append(m)
    if not out:
        raise SpecError("no methods given.", where=what)
    return out


def _plottable(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows that can be drawn: estimated (:func:`hetreport.facts.estimated`) and finite in ``columns``."""
    from hetreport.facts import estimated  # the report's one rule for what an approach estimates

    keep = estimated(df)
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

    plotnine 0.15 has no ``ggplot.layer_data``; this draws a copy of the plot
    with the public ``ggplot.draw`` (the plot itself is left untouched) and
    returns that layer's data after statistics, positions and scales were
    applied.
    """
    import matplotlib.pyplot as plt

    p = deepcopy(plot)
    plt.close(p.draw())  # the public route: drawing computes every layer's data in place
    return p.layers[i].data
