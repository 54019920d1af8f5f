"""The tidy per-group effects table: the output contract every later stage reads.

One row per analysis x method x group. The first columns are fixed (scripts read
them; add columns, never rename these)::

    analysis, method, group, <one column per modifier>, n, n_treated, n_control,
    estimate, std_error, lower_90, upper_90, lower_95, upper_95, prob_positive, estimable

followed by ``group_label, median, df, p_value, note, flag``, ``truth`` when the
spec names a true-effect column, and for non-Gaussian families ``link_estimate, link_std_error,
link_lower_95, link_upper_95`` (the slope on the link scale; ``estimate`` is always on the
outcome's scale). ``prob_positive`` is a posterior probability and is
empty for the frequentist methods (their ``p_value`` is the two-sided test of zero).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CORE_COLUMNS = [
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
]
EXTRA_COLUMNS = ["group_label", "median", "df", "p_value", "note", "flag"]
#: for non-identity links: the group's slope on the link scale (log odds / log rate / cumulative log odds ratio)
LINK_COLUMNS = ["link_estimate", "link_std_error", "link_lower_95", "link_upper_95"]


KEY_COLUMNS = ["analysis", "method", "group"]
#: every column that is not a modifier (the modifier columns sit between ``group`` and ``n``)
NON_MODIFIER_COLUMNS = frozenset([*KEY_COLUMNS, *CORE_COLUMNS, *EXTRA_COLUMNS, "truth", *LINK_COLUMNS])
_NUMERIC = [
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
    "median",
    "df",
    "p_value",
]


def modifier_columns(table: pd.DataFrame) -> list[str]:
    """The modifier columns of an effects table (every column the contract does not name)."""
    return [c for c in table.columns if c not in NON_MODIFIER_COLUMNS]


def validate(table: pd.DataFrame, where: str = "effects table") -> pd.DataFrame:
    """Check a table against the contract (where it is read: loading results, the figures); returns it.

    Raises a :class:`~hetreport.errors.DataError` naming the first problem: a missing column, a
    method the registry does not know, a duplicated analysis x method x group row, a non-numeric
    estimate column, a non-boolean ``estimable``, or an interval whose lower end is above its upper end."""
    from . import methods as registry
    from .errors import DataError

    if not isinstance(table, pd.DataFrame):
        raise DataError(f"expected the effects table as a pandas DataFrame, got {type(table).__name__}.", where=where)
    keys = [c for c in KEY_COLUMNS if c != "analysis" or c in table.columns]
    missing = [c for c in [*keys, *CORE_COLUMNS] if c not in table.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; the table has {', '.join(map(str, table.columns))}. "
            "Pass the effects table hetreport wrote (effects.csv / effects.parquet).",
            where=where,
        )
    unknown = sorted(set(table["method"].astype(str)) - set(registry.names()))
    if unknown:
        raise DataError(
            f"unknown method(s) {', '.join(unknown)} in column 'method'; hetreport's methods are {', '.join(registry.names())}.",
            where=where,
        )
    dup = table.duplicated(keys)
    if dup.any():
        first = table.loc[dup].iloc[0]
        raise DataError(
            f"{int(dup.sum())} duplicate {' x '.join(keys)} row(s), e.g. method '{first['method']}', group '{first['group']}'; "
            "the table has one row per analysis, method and group.",
            where=where,
        )
    for c in _NUMERIC:
        if c in table.columns and not (pd.api.types.is_numeric_dtype(table[c]) or table[c].isna().all()):
            raise DataError(f"column '{c}' must be numeric (found {table[c].dtype}).", where=where)
    if table["estimable"].dtype != bool:
        raise DataError(f"column 'estimable' must be true/false (found {table['estimable'].dtype}).", where=where)
    for level in ("90", "95"):
        lo, hi = table[f"lower_{level}"].to_numpy(float), table[f"upper_{level}"].to_numpy(float)
        bad = np.isfinite(lo) & np.isfinite(hi) & (lo > hi)
        if bad.any():
            r = table.loc[bad].iloc[0]
            raise DataError(
                f"the {level}% interval of method '{r['method']}', group '{r['group']}' runs backwards "
                f"({r[f'lower_{level}']:g} to {r[f'upper_{level}']:g}).",
                where=where,
            )
    return table


def method_rows(
    analysis: str, method: str, groups_table: pd.DataFrame, modifiers: list[str], estimates: pd.DataFrame, truth: pd.Series | None = None
) -> pd.DataFrame:
    """Join one method's per-group estimates to the group table in the contract's shape."""
    est = estimates.set_index("group").reindex(groups_table["group"]).reset_index()
    out = pd.DataFrame({"analysis": analysis, "method": method, "group": groups_table["group"].to_numpy()})
    for m in modifiers:
        out[m] = groups_table[m].to_numpy()
    for c in ("n", "n_treated", "n_control"):
        out[c] = groups_table[c].to_numpy()
    for c in ("estimate", "std_error", "lower_90", "upper_90", "lower_95", "upper_95", "prob_positive"):
        out[c] = est[c].to_numpy(dtype=float) if c in est else np.nan
    out["estimable"] = est["estimable"].fillna(False).to_numpy(dtype=bool)
    out["group_label"] = groups_table["group_label"].to_numpy()
    out["median"] = est["median"].to_numpy(dtype=float) if "median" in est else np.nan
    out["df"] = est["df"].to_numpy(dtype=float) if "df" in est else np.nan
    out["p_value"] = est["p_value"].to_numpy(dtype=float) if "p_value" in est else np.nan
    out["note"] = est["note"].fillna("").to_numpy() if "note" in est else ""
    out["flag"] = groups_table["flag"].to_numpy()
    if truth is not None:
        out["truth"] = truth.reindex(groups_table["group"]).to_numpy(dtype=float)
    for c in LINK_COLUMNS:  # non-identity links: the link-scale slope next to the response-scale effect
        if c in est:
            out[c] = est[c].to_numpy(dtype=float)
    return out


def combine(frames: list[pd.DataFrame], modifier_order: list[str]) -> pd.DataFrame:
    """Stack per-method rows of every analysis with the contract's column order."""
    table = pd.concat(frames, ignore_index=True)
    mods = [m for m in modifier_order if m in table.columns]
    rest = [c for c in table.columns if c not in ["analysis", "method", "group", *mods, *CORE_COLUMNS, *EXTRA_COLUMNS]]
    cols = ["analysis", "method", "group", *mods, *CORE_COLUMNS, *EXTRA_COLUMNS, *rest]
    return table[cols]


def write_effects(table: pd.DataFrame, directory) -> None:
    from pathlib import Path

    directory = Path(directory)
    table.to_csv(directory / "effects.csv", index=False)
    parquet = table.copy()
    for c in parquet.columns:  # mixed-type modifier codes across analyses: store as text in parquet
        if parquet[c].dtype == object and c not in ("note", "flag", "group_label", "analysis", "method", "group"):
            parquet[c] = parquet[c].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    parquet.to_parquet(directory / "effects.parquet", index=False)
