"""Named comparisons between sets of groups (the spec's ``compare:`` key of an analysis).

A comparison ``{name, a, b}`` selects two sets of groups by their modifier values and
estimates the difference between the sets' average effects, each average weighted by
group size as the population-average effect is:

    contrast = sum_{g in A} (n_g / n_A) theta_g  -  sum_{g in B} (n_g / n_B) theta_g

* hierarchical: the same linear combination of every posterior draw of the group effects,
  summarised after (mean, SD, equal-tailed 90/95% intervals, P(contrast > 0));
* ols_full (and glm_full for a non-Gaussian family): the same combination of the group
  estimates of the fully crossed fit, with its standard error from that fit's robust
  covariance of the group effects (``w' V w``), t (OLS) or normal (GLM) intervals and the
  two-sided p-value of zero.

Written as ``contrasts.csv`` / ``contrasts.parquet`` (one row per analysis x comparison x method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import methods as registry
from .data import code_key
from .errors import SpecError, suggest

COLUMNS = [
    "analysis",
    "name",
    "method",
    "estimate",
    "std_error",
    "lower_90",
    "upper_90",
    "lower_95",
    "upper_95",
    "prob_positive",
    "p_value",
    "n_a",
    "n_b",
    "label",
    "n_groups_a",
    "n_groups_b",
    "note",
]
#: the fully crossed regressions whose group estimates a comparison combines (the GLM's on its response scale)
FREQUENTIST = (registry.BASELINE, "glm_full")


@dataclass(frozen=True)
class Selection:
    """Which groups one side of a comparison takes: modifier -> accepted level codes (as code keys)."""

    levels: dict[str, tuple[str, ...]]

    def mask(self, groups: pd.DataFrame) -> np.ndarray:
        keep = np.ones(len(groups), dtype=bool)
        for m, codes in self.levels.items():
            keep &= groups[m].map(code_key).isin(codes).to_numpy()
        return keep


def _modifier_info(modifiers) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (level code keys, level labels), from Modifier-like objects."""
    return {m.name: ([code_key(v) for v in m.levels], [str(x) for x in m.level_labels]) for m in modifiers}


def resolve(selection: dict, modifiers, where: str) -> Selection:
    """A spec selection (values as codes or level labels) as level codes; a clear error for an unknown level."""
    info = _modifier_info(modifiers)
    out: dict[str, tuple[str, ...]] = {}
    for m, given in selection.items():
        if m not in info:
            raise SpecError(
                f"'{m}' is not one of this analysis's modifiers ({', '.join(info)}); a comparison selects groups by their "
                f"modifier values.{suggest(m, info)}",
                where=f"{where}.{m}",
            )
        codes, labels = info[m]
        picked = []
        for v in given if isinstance(given, list) else [given]:
            k = code_key(v)
            if k in codes:
                picked.append(k)
            elif str(v) in labels:
                picked.append(codes[labels.index(str(v))])
            else:
                levels = "; ".join(f"{c} ({lab})" if lab != c else c for c, lab in zip(codes, labels))
                raise SpecError(
                    f"{v!r} is not a level of '{m}'. Its levels in the data are {levels}; give a level's code or its label "
                    f"(a list of them selects several).{suggest(str(v), codes + labels)}",
                    where=f"{where}.{m}",
                )
        out[m] = tuple(dict.fromkeys(picked))
    return Selection(out)


def check_comparisons(analysis, modifiers, groups: pd.DataFrame, index: int) -> None:
    """Validate an analysis's ``compare:`` against the data's levels and groups (before any fitting)."""
    for i, c in enumerate(analysis.compare):
        for side in ("a", "b"):
            where = f"analyses[{index}].compare[{i}].{side}"
            sel = resolve(getattr(c, side), modifiers, where)
            if not sel.mask(groups).any():
                raise SpecError(
                    f"no group of analysis '{analysis.name}' has {_describe(sel)}, so the comparison '{c.name}' has nothing "
                    "to average on this side. Check the values, or select fewer modifiers.",
                    where=where,
                )


def _describe(sel: Selection) -> str:
    return " and ".join(f"{m} in ({', '.join(v)})" if len(v) > 1 else f"{m} = {v[0]}" for m, v in sel.levels.items())


def weights(a, comparison, index: int = 0) -> tuple[np.ndarray, np.ndarray, int, int, int, int]:
    """Weights of side a and side b over the groups in ``a.groups`` order (each sums to 1, by group size),
    and the sides' units and group counts."""
    groups = a.groups.reset_index(drop=True)
    n = groups["n"].to_numpy(dtype=float)
    out = []
    for side in ("a", "b"):
        mask = resolve(getattr(comparison, side), a.modifiers, f"compare[{index}].{side}").mask(groups)
        w = np.where(mask, n, 0.0)
        out.append((w / w.sum() if w.sum() > 0 else w, int(n[mask].sum()), int(mask.sum())))
    (wa, na, ga), (wb, nb, gb) = out
    return wa, wb, na, nb, ga, gb


def _draw_order(a) -> np.ndarray:
    """Position in ``a.groups`` of each group of the posterior's ``group`` coordinate."""
    pos = {g: i for i, g in enumerate(a.groups["group"].tolist())}
    return np.array([pos[g] for g in a.posterior.posterior["group"].to_numpy().tolist()])


def contrast_draws(a, w: np.ndarray) -> np.ndarray:
    """Per posterior draw: sum_g w_g theta_g, with ``w`` in ``a.groups`` order."""
    return a.group_draws() @ w[_draw_order(a)]


def _bayes_row(d: np.ndarray) -> dict:
    q = np.quantile(d, [0.05, 0.95, 0.025, 0.975])
    return {
        "estimate": float(d.mean()),
        "std_error": float(d.std(ddof=1)),
        "lower_90": q[0],
        "upper_90": q[1],
        "lower_95": q[2],
        "upper_95": q[3],
        "prob_positive": float((d > 0).mean()),
        "p_value": np.nan,
        "note": "",
    }


def _freq_row(a, effects: pd.DataFrame, method: str, wa: np.ndarray, wb: np.ndarray) -> dict | None:
    """The fully crossed fit's contrast. Groups it cannot estimate (one arm; an arm of one unit under HC2/HC3) are
    left out and each side is re-weighted over the groups it can: the row's n_a, n_b, n_groups_a, n_groups_b say
    what was averaged, and the note says what was left out."""
    rows = effects[(effects["analysis"] == a.name) & (effects["method"] == method)]
    if rows.empty:
        return None
    rows = rows.set_index("group").reindex(a.groups["group"])
    est = rows["estimate"].to_numpy(dtype=float)
    n = a.groups["n"].to_numpy(dtype=float)
    vcov = a.ols[method].effect_vcov if method in a.ols else None
    empty = {k: np.nan for k in ("estimate", "std_error", "lower_90", "upper_90", "lower_95", "upper_95", "p_value")}
    if vcov is None:
        return {**empty, "prob_positive": np.nan, "note": "the fit did not produce a covariance of the group effects"}
    V = np.asarray(vcov, dtype=float)
    ok = np.isfinite(est) & np.isfinite(np.diag(V))
    sides, notes = [], []
    for w, tag in ((wa, "A"), (wb, "B")):
        sel = w > 0
        use = sel & ok
        if sel.sum() > use.sum():
            notes.append(
                f"side {tag}: {int(use.sum())} of its {int(sel.sum())} groups ({fmt_int(n[use].sum())} of {fmt_int(n[sel].sum())} units)"
            )
        w2 = np.where(use, n, 0.0)
        sides.append((w2 / w2.sum() if w2.sum() > 0 else w2, int(n[use].sum()), int(use.sum())))
    (w_a, na, ga), (w_b, nb, gb) = sides
    counts = {"n_a": na, "n_b": nb, "n_groups_a": ga, "n_groups_b": gb}
    note = ("the fit estimates only some groups, so each side averages those: " + "; ".join(notes)) if notes else ""
    if ga == 0 or gb == 0:
        return {
            **empty,
            **counts,
            "prob_positive": np.nan,
            "note": "no group on side " + ("A" if ga == 0 else "B") + " has an estimate and standard error from this fit",
        }
    w = w_a - w_b
    used = w != 0
    Vu = V[np.ix_(used, used)]
    value = float(w[used] @ est[used])
    se = float(np.sqrt(max(w[used] @ Vu @ w[used], 0.0)))
    df = float(rows["df"].to_numpy(dtype=float)[used][0]) if method == registry.BASELINE else np.inf
    out = {"estimate": value, "std_error": se, "prob_positive": np.nan, "note": note, **counts}
    from scipy import stats  # here, not at import: a spec error is reported before scipy.stats loads

    for level, tag in ((0.90, "90"), (0.95, "95")):
        q = stats.t.ppf(0.5 + level / 2, df) if np.isfinite(df) else stats.norm.ppf(0.5 + level / 2)
        out[f"lower_{tag}"], out[f"upper_{tag}"] = value - q * se, value + q * se
    with np.errstate(divide="ignore", invalid="ignore"):
        z = value / se if se > 0 else np.nan
    out["p_value"] = float(2 * (stats.t.sf(abs(z), df) if np.isfinite(df) else stats.norm.sf(abs(z)))) if np.isfinite(z) else np.nan
    return out


def fmt_int(x: float) -> str:
    return f"{int(round(x)):,}"


def analysis_contrasts(a, effects: pd.DataFrame, compare) -> pd.DataFrame:
    """Every comparison of one analysis, by every method that estimates it."""
    rows = []
    for i, c in enumerate(compare):
        wa, wb, na, nb, ga, gb = weights(a, c, i)
        w = wa - wb
        base = {"analysis": a.name, "name": c.name, "n_a": na, "n_b": nb, "label": c.label or c.name, "n_groups_a": ga, "n_groups_b": gb}
        rows.append({**base, "method": registry.REFERENCE, **_bayes_row(contrast_draws(a, w))})
        for method in FREQUENTIST:
            r = _freq_row(a, effects, method, wa, wb)
            if r is not None:
                rows.append({**base, "method": method, **r})
    return pd.DataFrame(rows, columns=COLUMNS)


def study_contrasts(results) -> pd.DataFrame:
    """contrasts.csv: every analysis's comparisons (an empty table with the columns when none are asked for)."""
    frames = [
        analysis_contrasts(a, results.effects, results.spec.analysis(a.name).compare)
        for a in results.analyses
        if results.spec.analysis(a.name).compare
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def write_contrasts(results, directory) -> None:
    from pathlib import Path

    table = study_contrasts(results)
    if table.empty:
        return
    d = Path(directory)
    table.to_csv(d / "contrasts.csv", index=False)
    table.to_parquet(d / "contrasts.parquet", index=False)
