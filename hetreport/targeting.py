"""Whom to treat first (the spec's ``report.targeting``): rank the groups by posterior mean effect
and evaluate treating the top ones, up to a share of the population or a number of groups.

With n_g units and effect theta_g in group g, N units in all, the chosen set S (the top groups in
order of posterior mean, while their units stay within the budget; at least one group) and its
units n_S, per posterior draw:

    reach              = n_S / N
    mean_treated       = sum_S n_g theta_g / n_S          (average effect among those treated)
    average            = sum_g n_g theta_g / N            (treating everyone: the average effect)
    gain_vs_random     = mean_treated - average           (per treated person, against treating a random
                                                           n_S of the population, whose expected effect is the average)
    gain_per_person    = sum_S n_g theta_g / N - reach * average   (the same per person of the population)
    share_of_effect    = sum_S n_g theta_g / sum_g n_g theta_g

``P(top k)`` of a group: the share of draws in which it is among the k largest effects.

Two versions of the evaluation, said apart everywhere they are shown:

* ``in_sample``: the ranking chosen from the posterior means and evaluated on the same posterior.
  This flatters the ranking: the data noise that put a group at the top also raised its posterior.
* ``replicate`` (posterior-predictive, honest): for each draw, a new study of the same size is
  simulated (each group's estimate = its effect in that draw + noise with that group's OLS standard
  error), its estimates are shrunk toward their mean as a hierarchical model would
  (factor tau^2 / (tau^2 + se_g^2), tau the SD of the draw's group effects), the top groups are chosen
  from those, and the choice is evaluated on the draw's effects, which the new study did not see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import methods as registry
from .errors import SpecError

QUANTITIES = ("reach", "mean_treated", "average", "gain_vs_random", "gain_per_person", "share_of_effect")
SUMMARY_COLUMNS = ["analysis", "version", "quantity", "estimate", "lower_95", "upper_95", "prob_positive", "n_groups_treated", "budget"]
GROUP_COLUMNS = [
    "analysis",
    "rank",
    "group",
    "group_label",
    "n",
    "cumulative_share",
    "estimate",
    "lower_95",
    "upper_95",
    "prob_top_k",
    "treated",
]
REPLICATE_SEED = 20240611


def check_targeting(spec, groups_table: pd.DataFrame, analysis_name: str) -> None:
    t = spec.report.targeting
    if t is not None and t.groups is not None and t.groups >= len(groups_table):
        raise SpecError(
            f"report.targeting asks for the top {t.groups} groups, but analysis '{analysis_name}' has only {len(groups_table)}, "
            "so every group would be treated and there is nothing to rank. Give a smaller number of groups, or a budget "
            "(a share of the population, e.g. {budget: 0.25}).",
            where="report.targeting.groups",
        )


def choose(order: np.ndarray, n: np.ndarray, budget: float | None, k: int | None) -> np.ndarray:
    """Positions (in ``order``'s ranking) of the groups treated: the top k, or the top groups whose units stay within
    the budget's share of the population (at least one)."""
    if k is not None:
        return order[:k]
    cum = np.cumsum(n[order]) / n.sum()
    m = max(1, int(np.searchsorted(cum, budget + 1e-12, side="right")))
    return order[:m]


def _quantities(theta: np.ndarray, n: np.ndarray, chosen: np.ndarray) -> dict[str, np.ndarray]:
    """The quantities per draw for a chosen set (``chosen``: (S, G) 0/1, or (G,) 0/1)."""
    chosen = np.broadcast_to(chosen, theta.shape).astype(float)
    N = n.sum()
    nS = chosen @ n
    total_S = (theta * chosen) @ n
    total = theta @ n
    average = total / N
    mean_treated = total_S / nS
    reach = nS / N
    with np.errstate(divide="ignore", invalid="ignore"):
        share = total_S / total
    return {
        "reach": reach,
        "mean_treated": mean_treated,
        "average": average,
        "gain_vs_random": mean_treated - average,
        "gain_per_person": total_S / N - reach * average,
        "share_of_effect": share,
    }


def prob_top_k(theta: np.ndarray, k: int) -> np.ndarray:
    """P(each group is among the k largest effects), over the draws."""
    top = np.argsort(-theta, axis=1, kind="stable")[:, :k]
    hits = np.zeros(theta.shape[1])
    np.add.at(hits, top.ravel(), 1.0)
    return hits / theta.shape[0]


def replicate_choice(theta: np.ndarray, n: np.ndarray, se: np.ndarray, budget, k, seed: int = REPLICATE_SEED) -> np.ndarray:
    """Per draw, the groups a new study of the same size would choose (0/1, (S, G)); see the module text."""
    rng = np.random.default_rng(seed)
    se = np.where(np.isfinite(se) & (se > 0), se, np.inf)
    noise = rng.standard_normal(theta.shape) * np.where(np.isfinite(se), se, 0.0)
    est = theta + noise
    tau2 = theta.var(axis=1, ddof=1)[:, None]
    b = np.where(np.isfinite(se), tau2 / (tau2 + se**2), 0.0)
    centre = (np.where(np.isfinite(se), est, 0.0) * n * np.isfinite(se)).sum(axis=1, keepdims=True) / max((n * np.isfinite(se)).sum(), 1)
    shrunk = centre + b * (np.where(np.isfinite(se), est, centre) - centre)
    chosen = np.zeros(theta.shape)
    for s in range(theta.shape[0]):
        order = np.argsort(-(shrunk[s] + 1e-12 * rng.standard_normal(len(n))), kind="stable")  # ties (unestimable groups) at random
        chosen[s, choose(order, n, budget, k)] = 1.0
    return chosen


@dataclass(frozen=True)
class Targeting:
    analysis: str
    budget: float | None
    k_requested: int | None
    groups: pd.DataFrame  # GROUP_COLUMNS, in rank order
    summary: pd.DataFrame  # SUMMARY_COLUMNS
    curve: pd.DataFrame  # reach, share, lower, upper per number of groups treated (in-sample)
    k: int
    prob_top3_set: float  # P(the three top-ranked groups are exactly the true top three)
    prob_top3: tuple[float, ...] = ()  # P(each of the three top-ranked groups is among the true top three)


def _summ(d: np.ndarray) -> tuple[float, float, float, float]:
    d = d[np.isfinite(d)]
    if d.size == 0:
        return np.nan, np.nan, np.nan, np.nan
    return float(d.mean()), float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975)), float((d > 0).mean())


def targeting_of(a, effects: pd.DataFrame, budget: float | None, k: int | None) -> Targeting:
    from .contrasts import _draw_order

    groups = a.groups.reset_index(drop=True)
    theta = a.group_draws()[:, np.argsort(_draw_order(a))]  # (S, G) in a.groups order
    n = groups["n"].to_numpy(dtype=float)
    mean = theta.mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    chosen_idx = choose(order, n, budget, k)
    kk = len(chosen_idx)
    chosen = np.zeros(len(n))
    chosen[chosen_idx] = 1.0
    ptop = prob_top_k(theta, kk)
    ols = effects[(effects["analysis"] == a.name) & (effects["method"] == registry.BASELINE)].set_index("group").reindex(groups["group"])
    se = ols["std_error"].to_numpy(dtype=float) if not ols.empty else np.full(len(n), np.nan)
    rows = []
    for version, sel in (("in_sample", chosen), ("replicate", replicate_choice(theta, n, se, budget, k))):
        q = _quantities(theta, n, sel)
        for name in QUANTITIES:
            est, lo, hi, pp = _summ(q[name])
            rows.append(
                {
                    "analysis": a.name,
                    "version": version,
                    "quantity": name,
                    "estimate": est,
                    "lower_95": lo,
                    "upper_95": hi,
                    "prob_positive": pp,
                    "n_groups_treated": kk if version == "in_sample" else float(sel.sum(axis=1).mean()),
                    "budget": budget if budget is not None else np.nan,
                }
            )
    lo95, hi95 = np.quantile(theta, 0.025, axis=0), np.quantile(theta, 0.975, axis=0)
    cum = np.cumsum(n[order]) / n.sum()
    gtab = pd.DataFrame(
        {
            "analysis": a.name,
            "rank": np.arange(1, len(n) + 1),
            "group": groups["group"].to_numpy()[order],
            "group_label": groups["group_label"].to_numpy()[order],
            "n": n[order].astype(int),
            "cumulative_share": cum,
            "estimate": mean[order],
            "lower_95": lo95[order],
            "upper_95": hi95[order],
            "prob_top_k": ptop[order],
            "treated": chosen[order] > 0,
        }
    )
    # the curve: treating the top j groups in rank order, j = 0 .. G
    total = theta @ n
    cum_total = np.cumsum(theta[:, order] * n[order], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = cum_total / total[:, None]
    curve = pd.DataFrame(
        {
            "reach": np.concatenate([[0.0], cum]),
            "share": np.concatenate([[0.0], np.nanmean(share, axis=0)]),
            "lower": np.concatenate([[0.0], np.nanquantile(share, 0.025, axis=0)]),
            "upper": np.concatenate([[0.0], np.nanquantile(share, 0.975, axis=0)]),
        }
    )
    top3 = order[:3]
    true3 = np.sort(np.argsort(-theta, axis=1, kind="stable")[:, :3], axis=1)
    p3 = float((true3 == np.sort(top3)[None, :]).all(axis=1).mean()) if len(n) > 3 else 1.0
    p_each = tuple(float(x) for x in prob_top_k(theta, min(3, len(n)))[top3])
    return Targeting(a.name, budget, k, gtab[GROUP_COLUMNS], pd.DataFrame(rows, columns=SUMMARY_COLUMNS), curve, kk, p3, p_each)


def study_targeting(results) -> list[Targeting]:
    t = results.spec.report.targeting
    if t is None:
        return []
    return [targeting_of(a, results.effects, t.budget, t.groups) for a in results.analyses]


def write_targeting(results, directory) -> None:
    from pathlib import Path

    ts = study_targeting(results)
    if not ts:
        return
    d = Path(directory)
    pd.concat([t.summary for t in ts], ignore_index=True).to_csv(d / "targeting.csv", index=False)
    pd.concat([t.groups for t in ts], ignore_index=True).to_csv(d / "targeting_groups.csv", index=False)
