"""Outcome families: links, likelihoods on the (possibly aggregated) unit table, and each group's
treatment effect on the response scale.

The hierarchical model is linear on the link scale: for unit i in group g and arm t,

    eta_i = alpha_g + theta_g t_i + x_i' beta

and y_i follows the family with mean h(eta_i) (h the inverse link). The slope theta_g is the group's
effect on the link scale (log odds ratio, log rate ratio, cumulative log odds ratio). What a reader
wants is the effect on the outcome's own scale, which for a non-identity link depends on where the
unit sits; so the group's *response-scale effect* is, per posterior draw,

    delta_g = mean over the group's own units of  E[y | t=1, x_i] - E[y | t=0, x_i],

the difference in the expected outcome (probability; probability per trial; expected count; expected
category value on the outcome's own codes for ordinal) between treatment and control with every unit
keeping its observed covariates. Everything downstream (intervals, ranks, figures, the average effect)
is computed from these draws exactly as for a Gaussian outcome.

**Aggregation.** With only categorical predictors (no controls) every unit of a group x arm cell has
the same eta, so the likelihood depends on the data only through per-cell statistics: a Bernoulli or
binomial outcome through successes and trials per cell (the aggregated binomial model: the same
posterior, one term per cell instead of one per unit), a Poisson outcome through the cell's total count
and its number of units (a sum of Poissons is Poisson), and negative binomial and ordinal outcomes
through how often each value occurs in each cell (frequency weights). With controls the same holds for
covariate patterns (units sharing group, arm and every control's value): when there are at most half
as many patterns as units (randomised scenario factors, binary demographics) the likelihood is evaluated
per pattern, else (a continuous control) per unit; ``UnitTable.route`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from ..data import AnalysisData
from ..families import FAMILIES, Family, get_family  # noqa: F401  (the registry, re-exported)
from ..groups import Groups

# --------------------------------------------------------------------------- the unit table


#: with controls, units are collapsed into covariate patterns when there are at most this share of N
#: patterns (below it, the per-pattern terms cost well under half the per-unit ones)
AGGREGATE_MAX_SHARE = 0.5


@dataclass(frozen=True)
class UnitTable:
    """The rows the likelihood sums over: units, or cells of units with identical likelihood terms."""

    group: np.ndarray  # (R,) group position
    t: np.ndarray  # (R,) 0/1
    X: np.ndarray  # (R, p) controls, centred at the unit means
    y: np.ndarray  # (R,) outcome (successes; count; category index 0..K-1 for ordinal)
    trials: np.ndarray | None  # (R,) binomial trials (bernoulli/binomial); Poisson: units in the cell
    weight: np.ndarray  # (R,) frequency weight
    aggregated: bool
    n_units: int
    x_mean: np.ndarray
    #: how the rows were formed, in words (the manifest's ``likelihood.route``)
    route: str = ""
    #: distinct (group, treatment, controls) patterns among the units
    n_patterns: int = 0

    @property
    def n_rows(self) -> int:
        return len(self.y)


def category_index(adata: AnalysisData) -> np.ndarray:
    cats = np.asarray(adata.categories, dtype=float)
    return np.searchsorted(cats, adata.y).astype(int)


def unit_table(adata: AnalysisData, groups: Groups, aggregate: bool = True) -> UnitTable:
    """The likelihood's rows. Units that share group, treatment and every control's value (a covariate
    pattern) have the same linear predictor, so their terms are collapsed into one row per pattern:
    successes and trials (bernoulli, binomial), the total count and the number of units (Poisson), or
    one row per (pattern, value) with a frequency weight (negative binomial, ordinal: sum over values of
    count x log P(y = value | eta)). The log likelihood differs from the per-unit one by a constant (the
    binomial / multinomial coefficients), so the posterior is the same. Without controls the patterns are
    the group x arm cells and always collapsed; with controls only when there are at most
    ``AGGREGATE_MAX_SHARE`` x N patterns (a continuous control has about N: one row per unit)."""
    fam = adata.family
    X = adata.control_matrix
    n, p = adata.n, X.shape[1]
    x_mean = X.mean(axis=0) if X.size else np.zeros(p)
    Xc = X - x_mean
    g, t = groups.index.astype(int), adata.t.astype(int)
    y = category_index(adata) if fam == "ordinal" else adata.y.astype(float)
    trials = adata.trials if fam == "binomial" else (np.ones(n) if fam == "bernoulli" else None)

    def per_unit(route: str, n_patterns: int = 0) -> UnitTable:
        return UnitTable(g, t.astype(float), Xc, y.astype(float), trials, np.ones(n), False, n, x_mean, route, n_patterns)

    if fam == "gaussian":
        return per_unit("per unit")
    if not aggregate or AGGREGATE_MAX_SHARE <= 0:
        return per_unit("per unit (aggregation switched off)")
    # the pattern of each unit: group, arm, then the controls' raw values (exact equality)
    key = np.column_stack([g, t, X]).astype(float) if p else np.column_stack([g, t]).astype(float)
    pat_keys, pat = np.unique(key, axis=0, return_inverse=True)
    pat = pat.ravel()
    n_pat = len(pat_keys)
    if p and n_pat > AGGREGATE_MAX_SHARE * n:
        return per_unit(
            f"per unit: {n_pat:,} distinct group x arm x control patterns among {n:,} units, more than "
            f"{AGGREGATE_MAX_SHARE:.0%} of them (controls with many distinct values, or many combinations)",
            n_pat,
        )
    what = f"{n_pat:,} group x arm x control patterns of {n:,} units" if p else f"{n_pat:,} group x arm cells of {n:,} units"
    if fam in ("bernoulli", "binomial", "poisson"):
        rows = np.arange(n_pat)
        ysum = np.bincount(pat, weights=y, minlength=n_pat)
        tr = np.bincount(pat, weights=trials, minlength=n_pat) if trials is not None else np.bincount(pat, minlength=n_pat).astype(float)
        weight = np.ones(n_pat)
        route = ("aggregated binomial on " if fam != "poisson" else "aggregated Poisson on ") + what
    else:  # negativebinomial, ordinal: (pattern, value) with frequency weights
        pairs = np.stack([pat, y.astype(np.int64)], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        rows, ysum, tr = uniq[:, 0], uniq[:, 1].astype(float), None
        weight = np.bincount(inv.ravel()).astype(float)
        route = f"frequency-weighted (pattern, value) rows on {what}"
    keys = pat_keys[rows]
    Xr = keys[:, 2:] - x_mean if p else np.zeros((len(rows), 0))
    return UnitTable(keys[:, 0].astype(int), keys[:, 1].astype(float), Xr, ysum, tr, weight, True, n, x_mean, route, n_pat)


# --------------------------------------------------------------------------- priors


def default_location(adata: AnalysisData) -> float:
    """Where the intercept's default prior is centred: the link of the outcome's mean."""
    fam = adata.family
    if fam in ("bernoulli", "binomial"):
        p = float(np.sum(adata.y) / (np.sum(adata.trials) if fam == "binomial" else adata.n))
        return float(logit(np.clip(p, 0.01, 0.99)))
    if fam in ("poisson", "negativebinomial"):
        return float(np.log(max(float(np.mean(adata.y)), 0.01)))
    return 0.0


def default_cutpoints(adata: AnalysisData) -> np.ndarray:
    """Centres of the default cutpoint priors: the logits of the cumulative category shares."""
    idx = category_index(adata)
    K = len(adata.categories)
    share = np.bincount(idx, minlength=K) / len(idx)
    cum = np.clip(np.cumsum(share)[:-1], 0.02, 0.98)
    return np.maximum.accumulate(logit(cum) + np.arange(K - 1) * 1e-3)


# --------------------------------------------------------------------------- the likelihood (PyMC)


def add_likelihood(pm, pt, eta, ut: UnitTable, family: str, *, alpha=None, cutpoints=None):
    """sum_r w_r log p(y_r | eta_r) as a Potential (exact up to constants that do not involve parameters)."""
    if family in ("bernoulli", "binomial"):
        lp = pm.logp(pm.Binomial.dist(n=ut.trials, logit_p=eta), ut.y)
    elif family == "poisson":
        mu = pt.exp(eta) * (ut.trials if ut.aggregated else 1.0)
        lp = pm.logp(pm.Poisson.dist(mu=mu), ut.y)
    elif family == "negativebinomial":
        lp = pm.logp(pm.NegativeBinomial.dist(mu=pt.exp(eta), alpha=alpha), ut.y)
    elif family == "ordinal":
        lp = _ordinal_logp(pt, eta, cutpoints, ut.y.astype(int))
    else:  # pragma: no cover - gaussian has its own sufficient-statistic likelihood
        raise ValueError(family)
    w = ut.weight
    return pm.Potential("likelihood", (lp * w).sum() if not np.all(w == 1) else lp.sum())


def _ordinal_logp(pt, eta, cutpoints, k: np.ndarray):
    """log P(y = k) under the cumulative logit, P(y <= k) = logistic(c_k - eta), computed stably:
    log(F(b) - F(a)) = log F(b) + log(1 - exp(log F(a) - log F(b))) with log F = -softplus(-x)."""
    big = 1e3
    c = pt.concatenate([pt.as_tensor_variable([-big]), cutpoints, pt.as_tensor_variable([big])])
    upper = c[k + 1] - eta
    lower = c[k] - eta
    # sigma(u) - sigma(l) = sigma(u) sigma(-l) (1 - exp(l - u))
    return -pt.softplus(-upper) - pt.softplus(lower) + pt.log1mexp(lower - upper)


# --------------------------------------------------------------------------- response scale (numpy)


def mean_response(eta: np.ndarray, family: str, cutpoints: np.ndarray | None = None, categories=None) -> np.ndarray:
    """E[y | eta]: eta itself, a probability, a count, or the expected category value.
    For ordinal, ``cutpoints`` broadcasts against eta.shape + (K-1,)."""
    if family == "gaussian":
        return eta
    if family in ("bernoulli", "binomial"):
        return expit(eta)
    if family in ("poisson", "negativebinomial"):
        return np.exp(eta)
    if family == "ordinal":
        cats = np.asarray(categories, dtype=float)
        # E[y] = c_1 + sum_k (c_{k+1} - c_k) P(y > k) ;  P(y > k) = logistic(eta - cut_k)
        steps = np.diff(cats)
        p_above = expit(eta[..., None] - cutpoints)
        return cats[0] + (p_above * steps).sum(axis=-1)
    raise ValueError(family)


def response_effects(
    alpha_g: np.ndarray,
    theta_g: np.ndarray,
    beta: np.ndarray | None,
    Xc: np.ndarray,
    group_index: np.ndarray,
    n_groups: int,
    family: str,
    cutpoints: np.ndarray | None = None,
    categories=None,
    chunk: int = 256,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """delta_g per draw: the mean over the group's units of E[y | t=1] - E[y | t=0], each unit at its own
    covariates. alpha_g, theta_g: (S, G) link-scale group intercepts and slopes; beta (S, p) or None;
    Xc (n, p) centred controls; cutpoints (S, K-1) for ordinal; ``weights`` per unit (binomial: the
    trials, so that the effect is per trial, as for the expanded 0/1 rows). Returns (S, G)."""
    if family == "gaussian":
        return theta_g.copy()
    return _group_average(
        alpha_g,
        theta_g,
        beta,
        Xc,
        group_index,
        n_groups,
        cutpoints,
        chunk,
        lambda eta, cut: mean_response(eta, family, cut, categories),
        weights,
    )


def at_least_effects(
    alpha_g: np.ndarray,
    theta_g: np.ndarray,
    beta: np.ndarray | None,
    Xc: np.ndarray,
    group_index: np.ndarray,
    n_groups: int,
    cutpoints: np.ndarray,
    chunk: int = 256,
) -> np.ndarray:
    """Ordinal outcomes: per draw and group, the effect on P(y >= category k) for k = 2..K (the
    response scale of a binary outcome derived as ``y >= k``). Returns (S, G, K-1)."""
    return _group_average(alpha_g, theta_g, beta, Xc, group_index, n_groups, cutpoints, chunk, lambda eta, cut: expit(eta[..., None] - cut))


def _group_average(alpha_g, theta_g, beta, Xc, group_index, n_groups, cutpoints, chunk, f, weights=None) -> np.ndarray:
    """Per draw, the (weighted) mean over each group's units of f(eta at T=1) - f(eta at T=0)."""
    S = alpha_g.shape[0]
    if beta is None or Xc.shape[1] == 0:  # every unit of a group has the same eta
        cut = cutpoints[:, None, :] if cutpoints is not None else None
        return f(alpha_g + theta_g, cut) - f(alpha_g, cut)
    w = np.ones(len(group_index)) if weights is None else np.asarray(weights, dtype=float)
    totals = np.bincount(group_index, weights=w, minlength=n_groups)
    member = np.zeros((len(group_index), n_groups))
    member[np.arange(len(group_index)), group_index] = w / np.where(totals > 0, totals, 1.0)[group_index]
    out = None
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        base = alpha_g[s0:s1][:, group_index] + beta[s0:s1] @ Xc.T  # (s, n)
        slope = theta_g[s0:s1][:, group_index]
        cut = cutpoints[s0:s1, None, :] if cutpoints is not None else None
        diff = f(base + slope, cut) - f(base, cut)  # (s, n) or (s, n, m)
        avg = np.einsum("sn...,ng->sg...", diff, member)
        if out is None:
            out = np.empty((S,) + avg.shape[1:])
        out[s0:s1] = avg
    return out


def draw_outcomes(
    rng: np.random.Generator, eta: np.ndarray, family: str, *, trials=None, alpha=None, cutpoints=None, categories=None, sigma=None
) -> np.ndarray:
    """Replicated outcomes given eta (draws x units), for posterior predictive checks."""
    if family == "gaussian":
        return eta + sigma[:, None] * rng.standard_normal(eta.shape)
    if family == "bernoulli":
        return (rng.random(eta.shape) < expit(eta)).astype(float)
    if family == "binomial":
        return rng.binomial(np.broadcast_to(trials.astype(int), eta.shape), expit(eta)).astype(float)
    if family == "poisson":
        return rng.poisson(np.exp(eta)).astype(float)
    if family == "negativebinomial":
        mu = np.exp(eta)
        a = alpha[:, None]
        return rng.poisson(rng.gamma(a, mu / a)).astype(float)
    if family == "ordinal":
        cats = np.asarray(categories, dtype=float)
        p_above = expit(eta[..., None] - cutpoints[:, None, :])  # (S, n, K-1)
        u = rng.random(eta.shape)
        k = (u[..., None] < p_above).sum(axis=-1)
        return cats[k]
    raise ValueError(family)
