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
through how often each value occurs in each cell (frequency weights). With controls, one term per unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from ..data import AnalysisData
from ..families import FAMILIES, Family, get_family  # noqa: F401  (the registry, re-exported)
from ..groups import Groups


# --------------------------------------------------------------------------- the unit table


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

    @property
    def n_rows(self) -> int:
        return len(self.y)


def category_index(adata: AnalysisData) -> np.ndarray:
    cats = np.asarray(adata.categories, dtype=float)
    return np.searchsorted(cats, adata.y).astype(int)


def unit_table(adata: AnalysisData, groups: Groups, aggregate: bool = True) -> UnitTable:
    """The likelihood's rows: cells when there are no controls (and ``aggregate``), else units."""
    fam = adata.family
    X = adata.control_matrix
    x_mean = X.mean(axis=0) if X.size else np.zeros(X.shape[1])
    Xc = X - x_mean
    g, t = groups.index.astype(int), adata.t.astype(int)
    y = category_index(adata) if fam == "ordinal" else adata.y.astype(float)
    trials = adata.trials if fam == "binomial" else (np.ones(adata.n) if fam == "bernoulli" else None)
    if X.shape[1] or fam == "gaussian" or not aggregate:
        return UnitTable(g, t.astype(float), Xc, y.astype(float), trials, np.ones(adata.n), False, adata.n, x_mean)
    cell = g * 2 + t
    if fam in ("bernoulli", "binomial", "poisson"):
        keys, inv = np.unique(cell, return_inverse=True)
        ysum = np.bincount(inv, weights=y)
        tr = np.bincount(inv, weights=trials) if trials is not None else np.bincount(inv).astype(float)
    else:  # negativebinomial, ordinal: (cell, value) with frequency weights
        pairs = np.stack([cell, y.astype(np.int64)], axis=1)
        uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
        keys, ysum, tr = uniq[:, 0], uniq[:, 1].astype(float), None
        weight = np.bincount(inv.ravel()).astype(float)
        return UnitTable((keys // 2).astype(int), (keys % 2).astype(float), np.zeros((len(keys), 0)), ysum, None, weight, True, adata.n, x_mean)
    return UnitTable((keys // 2).astype(int), (keys % 2).astype(float), np.zeros((len(keys), 0)), ysum, tr, np.ones(len(keys)), True, adata.n, x_mean)


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


def response_effects(alpha_g: np.ndarray, theta_g: np.ndarray, beta: np.ndarray | None, Xc: np.ndarray,
                     group_index: np.ndarray, n_groups: int, family: str, cutpoints: np.ndarray | None = None,
                     categories=None, chunk: int = 256, weights: np.ndarray | None = None) -> np.ndarray:
    """delta_g per draw: the mean over the group's units of E[y | t=1] - E[y | t=0], each unit at its own
    covariates. alpha_g, theta_g: (S, G) link-scale group intercepts and slopes; beta (S, p) or None;
    Xc (n, p) centred controls; cutpoints (S, K-1) for ordinal; ``weights`` per unit (binomial: the
    trials, so that the effect is per trial, as for the expanded 0/1 rows). Returns (S, G)."""
    if family == "gaussian":
        return theta_g.copy()
    return _group_average(alpha_g, theta_g, beta, Xc, group_index, n_groups, cutpoints, chunk,
                          lambda eta, cut: mean_response(eta, family, cut, categories), weights)


def at_least_effects(alpha_g: np.ndarray, theta_g: np.ndarray, beta: np.ndarray | None, Xc: np.ndarray,
                     group_index: np.ndarray, n_groups: int, cutpoints: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Ordinal outcomes: per draw and group, the effect on P(y >= category k) for k = 2..K (the
    response scale of a binary outcome derived as ``y >= k``). Returns (S, G, K-1)."""
    return _group_average(alpha_g, theta_g, beta, Xc, group_index, n_groups, cutpoints, chunk,
                          lambda eta, cut: expit(eta[..., None] - cut))


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


def draw_outcomes(rng: np.random.Generator, eta: np.ndarray, family: str, *, trials=None, alpha=None,
                  cutpoints=None, categories=None, sigma=None) -> np.ndarray:
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
