"""Groups: the crossing of an analysis's modifiers, with sizes and flags.

Groups come from the data (combinations that occur), not from label sets; the
order is the modifiers' level order (from the spec's labels, else sorted codes),
never data row order.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import AnalysisData, canonical_code, code_key, map_codes
from .errors import HetreportWarning


@dataclass(frozen=True)
class Groups:
    analysis: str
    modifiers: tuple[str, ...]
    table: pd.DataFrame  # group, <modifiers: codes>, group_label, n, n_treated, n_control, one_arm, small_arm, singleton_arm, flag
    index: np.ndarray  # row -> group position (0..G-1)
    n_possible: int  # size of the full crossing of observed levels
    min_arm: int

    @property
    def n_groups(self) -> int:
        return len(self.table)

    @property
    def keys(self) -> list[str]:
        return self.table["group"].tolist()


def group_key(modifiers, codes) -> str:
    """Machine key of a group, e.g. ``white=1|male=0|intl=3``."""
    return "|".join(f"{m}={code_key(c)}" for m, c in zip(modifiers, codes))


def level_phrase(modifier, k: int) -> str:
    """A level as text in a group's name: its label, or 'variable = code' when it has none."""
    label = modifier.level_labels[k]
    return f"{modifier.label} = {label}" if label == str(canonical_code(modifier.levels[k])) else label


def build_groups(adata: AnalysisData, min_arm: int = 5) -> Groups:
    mods = adata.modifiers
    names = tuple(m.name for m in mods)
    positions = []
    for m in mods:
        pos = {code_key(lev): i for i, lev in enumerate(m.levels)}
        positions.append(np.array(map_codes(adata.frame[m.name], lambda v, pos=pos: pos[code_key(v)]), dtype=int))
    dims = [len(m.levels) for m in mods]
    flat = np.ravel_multi_index(positions, dims) if positions else np.zeros(adata.n, dtype=int)
    present = np.unique(flat)  # sorted = level order
    index = np.searchsorted(present, flat)
    n_all = np.bincount(index, minlength=len(present))
    n_treated = np.bincount(index, adata.t, minlength=len(present))
    rows = []
    for gi, code in enumerate(present):
        combo = np.unravel_index(code, dims)
        levels = [m.levels[k] for m, k in zip(mods, combo)]
        n_t, n = int(round(n_treated[gi])), int(n_all[gi])
        row = {"group": group_key(names, levels)}
        row.update({m.name: lev for m, lev in zip(mods, levels)})
        row["group_label"] = ", ".join(level_phrase(m, k) for m, k in zip(mods, combo))
        row.update(n=n, n_treated=n_t, n_control=n - n_t)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["one_arm"] = (table["n_treated"] == 0) | (table["n_control"] == 0)
    table["singleton_arm"] = ~table["one_arm"] & ((table["n_treated"] == 1) | (table["n_control"] == 1))
    table["small_arm"] = ~table["one_arm"] & (table[["n_treated", "n_control"]].min(axis=1) < min_arm)
    table["flag"] = np.select(
        [table["one_arm"], table["singleton_arm"], table["small_arm"]],
        ["only one arm: no within-group contrast", "an arm with one unit: robust SE undefined", f"an arm with fewer than {min_arm} units"],
        default="",
    )
    one_arm = table.loc[table["one_arm"], "group_label"].tolist()
    if one_arm:
        shown = "; ".join(one_arm[:5]) + ("; …" if len(one_arm) > 5 else "")
        warnings.warn(
            f"analysis '{adata.name}': {len(one_arm)} of {len(table)} groups have units in only one treatment arm ({shown}). "
            "OLS and subgroup means cannot estimate their effects and mark them non-estimable; the hierarchical model estimates them from pooling alone.",
            HetreportWarning,
            stacklevel=2,
        )
    table.attrs["level_positions"] = {m.name: {code_key(lev): i for i, lev in enumerate(m.levels)} for m in mods}
    return Groups(adata.name, names, table, index, int(np.prod(dims)), min_arm)


def terms(modifiers: tuple[str, ...], mode: str = "all") -> list[tuple[str, ...]]:
    """The varying-effect terms: every non-empty combination of modifiers (brms ``| m1*m2*...``)
    in order of size, or only the full crossing (``mode='crossing'``)."""
    if mode == "crossing":
        return [tuple(modifiers)]
    return [c for k in range(1, len(modifiers) + 1) for c in itertools.combinations(modifiers, k)]


def term_levels(groups: Groups, term: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """The levels of a term that occur (in level order), and each group's level position within it."""
    sub = groups.table[list(term)]
    order = groups.table.attrs.get("level_positions", {})
    rows = list(sub.itertuples(index=False, name=None))
    sort_key = {}
    for row in rows:
        key = group_key(term, row)
        sort_key[key] = tuple(order.get(m, {}).get(code_key(v), 0) for m, v in zip(term, row))
    uniq = sorted(sort_key, key=sort_key.__getitem__)
    pos = {k: i for i, k in enumerate(uniq)}
    return uniq, np.array([pos[group_key(term, row)] for row in rows])


def model_formulas(adata: AnalysisData, groups: Groups, mode: str, correlated: bool, predictors=()) -> tuple[str, str]:
    """The hierarchical model as (bambi, brms) formulas. Pure text: ``hetreport check`` prints them
    without importing the model stack."""
    y, t = adata.outcome.name, adata.treatment.name
    controls = "".join(f" + {c}" for c in adata.controls)
    if predictors:  # the slope-predictor ("lambda") specification: linear in the predictors, then varying
        controls += "".join(f" + {z}" for z in predictors) + f" + {t}:({' + '.join(predictors)})"
    bar = "|" if correlated else "||"
    brms = f"{y} ~ 1{controls} + {t} + (1 + {t} {bar} {('*' if mode == 'all' else ':').join(groups.modifiers)})"
    bambi = f"{y} ~ 1{controls} + {t}" + "".join(f" + (1 + {t} | {':'.join(tm)})" for tm in terms(groups.modifiers, mode))
    return bambi, brms
