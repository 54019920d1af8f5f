"""The numbers the report's text and tables need, computed once per analysis.

Everything uncertain is computed per posterior draw first and summarised after
(an average over groups, a contrast between groups, a share of variance), never
pieced together from interval bounds. Facts are plain data: templates format them,
they never compute.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import methods as registry
from .data import code_key

if TYPE_CHECKING:  # facts are computed from the results; results do not import this module at load time
    from .results import AnalysisResults

#: a difference is called credible in the text only at or above this posterior probability
CREDIBLE = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    lower: float
    upper: float
    level: float = 0.95

    @classmethod
    def from_draws(cls, draws: np.ndarray, level: float = 0.95) -> Interval:
        d = np.asarray(draws, dtype=float)
        a = (1 - level) / 2
        return cls(float(d.mean()), float(np.quantile(d, a)), float(np.quantile(d, 1 - a)), level)


@dataclass(frozen=True)
class GroupFact:
    group: str
    label: str
    n: int
    effect: Interval
    prob_positive: float


@dataclass(frozen=True)
class LevelFact:
    """The average effect at one level of a modifier (weighted by group size, per draw)."""

    label: str
    n: int
    effect: Interval


@dataclass(frozen=True)
class TermFact:
    """One varying term's standard deviations (and intercept-slope correlation)."""

    term: str  # "m1:m2" for a crossing
    label: str  # the modifiers' labels joined by " × "
    sd_slope: Interval
    sd_intercept: Interval
    rho: Interval | None  # None: uncorrelated intercepts and slopes


@dataclass(frozen=True)
class PredictorFact:
    """A slope predictor's coefficient: how the treatment effect changes per unit of its code."""

    name: str
    label: str
    lambda_: Interval  # λ (``lambda`` is Python's keyword); summary.json keeps the key "lambda"


@dataclass(frozen=True)
class ModifierFact:
    name: str
    label: str
    levels: tuple[LevelFact, ...]
    highest: str
    lowest: str
    difference: Interval  # highest-level minus lowest-level average effect, per draw
    prob_difference: float  # P(highest > lowest)
    range_mean: float  # posterior mean of the range of level averages


@dataclass(frozen=True)
class MethodFact:
    method: str
    n_estimable: int
    dispersion: float  # SD of the estimable group estimates
    mean_width: float  # mean width of the 95% intervals (finite ones)
    dispersion_ratio: float  # relative to OLS full interactions (same groups)
    width_ratio: float
    rmse: float | None = None  # against the truth, when known
    coverage_95: float | None = None
    coverage_90: float | None = None
    largest: str = ""  # label of the group with the largest estimate (estimable groups)
    largest_estimate: float = float("nan")


@dataclass(frozen=True)
class Facts:
    analysis: str
    n: int
    n_groups: int
    n_one_arm: int
    n_small: int
    n_singleton: int
    average: Interval  # hierarchical population-average effect (n-weighted over groups)
    raw_difference: Interval  # overall difference in means, Welch 95% CI
    smallest: GroupFact
    median: GroupFact
    largest: GroupFact
    prob_largest_above_smallest: float
    n_credibly_positive: int
    n_credibly_negative: int
    sd_all_draws: float
    sd_between_groups: Interval  # SD of the group effects across groups, per draw
    sigma_theta: Interval
    share_unexplained: Interval  # per draw: var over groups of the crossing term's slopes / var of effects
    terms: tuple[TermFact, ...]
    modifiers: list[ModifierFact]
    methods: list[MethodFact]
    shrinkage: dict  # mean absolute move from OLS to hierarchical; share moved toward the mean
    diagnostics_ok: bool
    flags: list[str] = field(default_factory=list)
    has_truth: bool = False
    predictors: tuple[PredictorFact, ...] = ()


def facts_to_dict(f: Facts) -> dict:
    """The record as summary.json holds it (``dataclasses.asdict``, a predictor's λ under "lambda")."""
    d = asdict(f)
    d["predictors"] = [{("lambda" if k == "lambda_" else k): v for k, v in p.items()} for p in d["predictors"]]
    return d


def facts_from_dict(d: dict) -> Facts | None:
    """The :class:`Facts` record saved in ``summary.json`` (``dataclasses.asdict``), or None when the
    saved keys are not this version's fields (a folder written by an earlier version: compute again)."""
    if not isinstance(d, dict) or set(d) != {f.name for f in fields(Facts)}:
        return None
    try:
        return Facts(
            **{
                **{k: _interval_tree(v) for k, v in d.items()},
                "smallest": _group_fact(d["smallest"]),
                "median": _group_fact(d["median"]),
                "largest": _group_fact(d["largest"]),
                "modifiers": [
                    ModifierFact(
                        **{
                            **m,
                            "levels": tuple(LevelFact(lev["label"], lev["n"], Interval(**lev["effect"])) for lev in m["levels"]),
                            "difference": Interval(**m["difference"]),
                        }
                    )
                    for m in d["modifiers"]
                ],
                "methods": [MethodFact(**m) for m in d["methods"]],
                "terms": tuple(TermFact(**_interval_tree(t)) for t in d["terms"]),
                "predictors": tuple(PredictorFact(p["name"], p["label"], Interval(**p["lambda"])) for p in d["predictors"]),
            }
        )
    except (TypeError, KeyError):
        return None


def _group_fact(d: dict) -> GroupFact:
    return GroupFact(**{**d, "effect": Interval(**d["effect"])})


_INTERVAL_KEYS = {f.name for f in fields(Interval)}


def _interval_tree(v):
    """JSON as saved, with every {estimate, lower, upper, level} mapping an :class:`Interval` again."""
    if isinstance(v, dict):
        if set(v) == _INTERVAL_KEYS:
            return Interval(**v)
        return {k: _interval_tree(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_interval_tree(x) for x in v]
    return v


def _label_of(a: AnalysisResults, group_row: pd.Series) -> str:
    return str(group_row["group_label"])


def compute_facts(a: AnalysisResults, effects: pd.DataFrame) -> Facts:
    eff = effects[effects["analysis"] == a.name]
    hier = eff[eff["method"] == registry.REFERENCE].reset_index(drop=True)
    draws = a.group_draws()  # (S, G) in group order
    groups = a.groups.reset_index(drop=True)
    order = {g: j for j, g in enumerate(a.posterior.posterior["group"].to_numpy().tolist())}
    hier = hier.assign(_j=hier["group"].map(order)).sort_values("_j").reset_index(drop=True)
    n_w = hier["n"].to_numpy(dtype=float)

    def group_fact(idx: int) -> GroupFact:
        row = hier.iloc[idx]
        return GroupFact(row["group"], _label_of(a, row), int(row["n"]), Interval.from_draws(draws[:, idx]), float(row["prob_positive"]))

    ranked = np.argsort(hier["estimate"].to_numpy(), kind="stable")
    i_min, i_max = int(ranked[0]), int(ranked[-1])
    i_med = int(ranked[(len(ranked) - 1) // 2])
    post = a.posterior.posterior
    avg = Interval.from_draws(a.draws("average_effect"))
    y, t = a.y, a.t
    y1, y0 = y[t == 1], y[t == 0]
    diff = y1.mean() - y0.mean()
    se = np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
    raw = Interval(float(diff), float(diff - 1.96 * se), float(diff + 1.96 * se))
    sd_between = Interval.from_draws(draws.std(axis=1, ddof=1))
    crossing = post["crossing_slope"].stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()
    # the share is a statement about the model's linear scale: for a non-identity link, the variance of the
    # crossing term's slopes against that of the link-scale group slopes
    slopes = post["group_slope"].stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy() if "group_slope" in post else draws
    var_total = slopes.var(axis=1, ddof=1)
    share = np.where(var_total > 0, crossing.var(axis=1, ddof=1) / np.where(var_total > 0, var_total, 1), np.nan)
    share = (
        Interval.from_draws(np.clip(share[np.isfinite(share)], 0, None)) if np.isfinite(share).any() else Interval(np.nan, np.nan, np.nan)
    )
    terms = []
    for _k, term in enumerate(post["term"].to_numpy().tolist()):
        sel = {"term": term}
        terms.append(
            TermFact(
                term=term,
                label=" × ".join(_mod_label(a, m) for m in term.split(":")),
                sd_slope=Interval.from_draws(post["sd_slope"].sel(sel).to_numpy().ravel()),
                sd_intercept=Interval.from_draws(post["sd_intercept"].sel(sel).to_numpy().ravel()),
                rho=Interval.from_draws(post["rho"].sel(sel).to_numpy().ravel()) if "rho" in post else None,
            )
        )
    modifiers = [_modifier_fact(a, m, hier, draws, n_w) for m in a.modifiers]
    methods = _method_facts(eff)
    ols = eff[eff["method"] == registry.BASELINE].set_index("group")
    h = hier.set_index("group")
    both = ols.index[estimated(ols)]
    move = (h.loc[both, "estimate"] - ols.loc[both, "estimate"]).abs()
    centre = float(np.average(h["estimate"], weights=h["n"]))
    toward = ((h.loc[both, "estimate"] - centre).abs() <= (ols.loc[both, "estimate"] - centre).abs()).mean() if len(both) else np.nan
    diag = a.diagnostics
    return Facts(
        analysis=a.name,
        n=a.n,
        n_groups=len(groups),
        n_one_arm=int(groups["one_arm"].sum()),
        n_small=int(groups["small_arm"].sum()),
        n_singleton=int(groups["singleton_arm"].sum()),
        average=avg,
        raw_difference=raw,
        smallest=group_fact(i_min),
        median=group_fact(i_med),
        largest=group_fact(i_max),
        prob_largest_above_smallest=float((draws[:, i_max] > draws[:, i_min]).mean()),
        n_credibly_positive=int((hier["prob_positive"] >= CREDIBLE).sum()),
        n_credibly_negative=int((hier["prob_positive"] <= 1 - CREDIBLE).sum()),
        sd_all_draws=float(draws.std(ddof=1)),
        sd_between_groups=sd_between,
        sigma_theta=Interval.from_draws(a.draws("sigma_theta")),
        share_unexplained=share,
        terms=tuple(terms),
        modifiers=modifiers,
        methods=methods,
        shrinkage={
            "mean_abs_move": float(move.mean()) if len(move) else np.nan,
            "share_toward_centre": float(toward),
            "centre": centre,
            "n_compared": int(len(both)),
        },
        diagnostics_ok=not diag.flags,
        flags=list(diag.flags),
        has_truth=bool("truth" in eff.columns and eff["truth"].notna().any()),  # a bool, not numpy's (summary.json read it as "True")
        predictors=tuple(
            PredictorFact(z, _mod_label(a, z), Interval.from_draws(post["lambda"].sel(predictor=z).to_numpy().ravel()))
            for z in (post["predictor"].to_numpy().tolist() if "lambda" in post else [])
        ),
    )


def _mod_label(a: AnalysisResults, name: str) -> str:
    for m in a.modifiers:
        if m.name == name:
            return m.label
    return name


def _modifier_fact(a, m, hier: pd.DataFrame, draws: np.ndarray, n_w: np.ndarray) -> ModifierFact:
    keys = hier[m.name].map(code_key).to_numpy()
    levels, level_draws = [], []
    for code, label in zip(m.levels, m.level_labels):
        sel = keys == code_key(code)
        if not sel.any():
            continue
        w = n_w[sel] / n_w[sel].sum()
        d = draws[:, sel] @ w
        level_draws.append(d)
        levels.append(LevelFact(label, int(n_w[sel].sum()), Interval.from_draws(d)))
    stacked = np.column_stack(level_draws)
    means = stacked.mean(axis=0)
    hi, lo = int(np.argmax(means)), int(np.argmin(means))
    diff = stacked[:, hi] - stacked[:, lo]
    return ModifierFact(
        name=m.name,
        label=m.label,
        levels=tuple(levels),
        highest=levels[hi].label,
        lowest=levels[lo].label,
        difference=Interval.from_draws(diff),
        prob_difference=float((diff > 0).mean()),
        range_mean=float((stacked.max(axis=1) - stacked.min(axis=1)).mean()),
    )


def estimated(eff: pd.DataFrame) -> pd.Series:
    """The one rule for "an approach estimates a group", used by page one, the brief, the tables' counts
    and the figures: the row is ``estimable`` and its estimate and 95% interval are finite numbers. A
    group with a one-unit arm has an OLS point estimate but no HC2/HC3 standard error, so no interval:
    it is not counted (nor drawn) as estimated, and its table cell says why."""
    keep = eff["estimable"].fillna(False).astype(bool) if "estimable" in eff.columns else pd.Series(True, index=eff.index)
    for column in ("estimate", "lower_95", "upper_95"):
        if column in eff.columns:
            keep &= np.isfinite(pd.to_numeric(eff[column], errors="coerce").astype(float))
    return keep


def _method_facts(eff: pd.DataFrame) -> list[MethodFact]:
    out = []
    ols = eff[(eff["method"] == registry.BASELINE) & estimated(eff)]
    common = set(ols["group"])
    base_disp = ols["estimate"].std(ddof=1)
    base_width = (ols["upper_95"] - ols["lower_95"]).replace([np.inf, -np.inf], np.nan).mean()
    for method in registry.ordered(eff["method"].unique()):
        d = eff[(eff["method"] == method) & estimated(eff)]
        if d.empty:
            continue
        same = d[d["group"].isin(common)]
        disp = same["estimate"].std(ddof=1)
        width = (same["upper_95"] - same["lower_95"]).replace([np.inf, -np.inf], np.nan).mean()
        rmse = cov95 = cov90 = None
        if "truth" in d.columns and d["truth"].notna().any():
            err = d["estimate"] - d["truth"]
            rmse = float(np.sqrt(np.mean(err**2)))
            ok = d["lower_95"].notna()
            cov95 = float(((d["lower_95"] <= d["truth"]) & (d["truth"] <= d["upper_95"]))[ok].mean())
            cov90 = float(((d["lower_90"] <= d["truth"]) & (d["truth"] <= d["upper_90"]))[ok].mean())
        top = d.loc[d["estimate"].idxmax()] if d["estimate"].notna().any() else None
        out.append(
            MethodFact(
                method,
                len(d),
                float(disp),
                float(width),
                float(disp / base_disp),
                float(width / base_width),
                rmse,
                cov95,
                cov90,
                str(top["group_label"]) if top is not None else "",
                float(top["estimate"]) if top is not None else float("nan"),
            )
        )
    return out


# --------------------------------------------------------------------------- comparing models of one outcome

_AT_LEAST = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*>=\s*(-?[0-9]+(?:\.[0-9]*)?)\s*$")


@dataclass(frozen=True)
class ModelComparison:
    """Two analyses of the same groups and the same outcome scale, fitted with different models."""

    first: str  # analysis names
    second: str
    scale: str  # what both estimate, in words
    average_first: Interval
    average_second: Interval
    correlation: float  # of the group posterior means
    mean_abs_difference: float
    max_abs_difference: float
    max_group: str  # label of the group where the two differ most
    same_extremes: bool  # the same smallest and largest group


def _scale_draws(a: AnalysisResults, derive: dict[str, str], target: str | None):
    """The group-effect draws of ``a`` on the scale of outcome ``target`` (its own outcome when None):
    an ordinal model of y also speaks for a binary outcome derived as ``y >= k``."""
    own = a.hierarchical.outcome_name
    if target is None or target == own:
        return a.group_draws(), own
    m = _AT_LEAST.match(derive.get(target, ""))
    post = a.posterior.posterior
    if m and m.group(1) == own and "group_effect_at_least" in post:
        k = float(m.group(2))
        levels = [float(v) for v in post["at_least"].to_numpy()]
        if k in levels:
            d = post["group_effect_at_least"].sel(at_least=k).stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()
            return d, target
    return None, None


def compare_models(analyses, derive: dict[str, str]) -> list[ModelComparison]:
    """Every pair of analyses with the same groups whose effects are on one outcome scale (the same
    outcome, or an ordinal outcome y and a binary outcome derived as y >= k) but come from different
    models (family, controls or terms): how far their group effects agree."""
    out = []
    for i, a in enumerate(analyses):
        for b in analyses[i + 1 :]:
            if a.modifier_names != b.modifier_names or a.hierarchical.outcome_name is None:
                continue
            ga = a.posterior.posterior["group"].to_numpy().tolist()
            if ga != b.posterior.posterior["group"].to_numpy().tolist():
                continue
            fa, fb = a.hierarchical.family, b.hierarchical.family
            oa, ob = a.hierarchical.outcome_name, b.hierarchical.outcome_name
            if oa == ob:
                da, db, scale = a.group_draws(), b.group_draws(), oa
            elif fa == "ordinal" and fb != "ordinal":
                da, scale = _scale_draws(a, derive, ob)
                db = b.group_draws()
            elif fb == "ordinal" and fa != "ordinal":
                db, scale = _scale_draws(b, derive, oa)
                da = a.group_draws()
            else:
                continue
            if da is None or db is None:
                continue
            ma, mb = da.mean(axis=0), db.mean(axis=0)
            w = a.groups["n"].to_numpy(dtype=float)
            w = w / w.sum()
            diff = np.abs(ma - mb)
            j = int(np.argmax(diff))
            labels = a.groups["group_label"].astype(str).tolist()
            out.append(
                ModelComparison(
                    first=a.name,
                    second=b.name,
                    scale=scale,
                    average_first=Interval.from_draws(da @ w),
                    average_second=Interval.from_draws(db @ w),
                    correlation=float(np.corrcoef(ma, mb)[0, 1]) if len(ma) > 2 else float("nan"),
                    mean_abs_difference=float(diff.mean()),
                    max_abs_difference=float(diff[j]),
                    max_group=labels[j],
                    same_extremes=(int(np.argmin(ma)) == int(np.argmin(mb))) and (int(np.argmax(ma)) == int(np.argmax(mb))),
                )
            )
    return out
