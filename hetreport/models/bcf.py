"""Bayesian causal forests (Hahn, Murray and Carvalho 2020) with stochtree, as a registry method.

The outcome is modelled as ``y_i = mu(x_i) + tau(x_i) t_i + e_i``: a prognostic forest ``mu`` and a
treatment-effect forest ``tau`` over the covariates ``x_i`` (the analysis's modifiers, in their
listed level order, and its controls). For a 0/1 outcome stochtree's probit BCF is used,
``P(y_i = 1) = Phi(mu(x_i) + tau(x_i) t_i)``, and a unit's effect on the probability scale is, per
draw, ``Phi(mu + tau) - Phi(mu)``.

Each group's effect is the posterior of the average of its members' conditional average treatment
effects (CATEs): for every retained draw ``s`` the mean over the group's units of their CATE draw,
then the mean, SD, quantiles and P(> 0) of those averages — the same estimand as the hierarchical
model's response-scale group effect.

The propensity is known from a randomised design: by default every unit's is the treated share
(a constant, so it is not offered to the forests as a covariate); ``propensity: estimated`` lets
stochtree estimate it from the covariates (a BART model) and include it in the prognostic forest.
stochtree 0.4.5 fits continuous (identity) and binary (probit) outcomes; other families are refused.
"""

from __future__ import annotations

import time
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..data import AnalysisData, code_key
from ..errors import ModelError
from ..groups import Groups
from ..methods import FitRequest, MethodFit, get


class BCFOptions(BaseModel):
    """``method_options: {bcf: {...}}``: the forest's size and the sampler's length."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: grow-from-root (XBART) sweeps that warm-start the MCMC
    num_gfr: int = Field(default=10, ge=0, le=1000)
    num_burnin: int = Field(default=0, ge=0, le=100_000)
    #: retained MCMC draws (per chain)
    num_mcmc: int = Field(default=200, ge=10, le=100_000)
    num_chains: int = Field(default=1, ge=1, le=16)
    num_trees_mu: int = Field(default=200, ge=1, le=2000)
    num_trees_tau: int = Field(default=50, ge=1, le=2000)
    #: share: the treated share, known from the design; estimated: stochtree's BART propensity model
    propensity: Literal["share", "estimated"] = "share"
    #: the random seed; None: the spec's sampler seed
    seed: int | None = Field(default=None, ge=0, lt=2**31)


def covariates(adata: AnalysisData) -> pd.DataFrame:
    """The forests' covariates: every modifier as an ordered categorical (its listed level order),
    every control column as a number (categorical controls as their dummies)."""
    cols: dict[str, object] = {}
    for m in adata.modifiers:
        keys = [code_key(c) for c in m.levels]
        pos = {k: j for j, k in enumerate(keys)}
        idx = np.array([pos[code_key(v)] for v in adata.frame[m.name]])
        cols[m.name] = pd.Categorical.from_codes(idx, categories=[str(j) for j in range(len(keys))], ordered=True)
    for j, name in enumerate(adata.control_columns):
        cols[f"control_{j}_{name}"] = adata.control_matrix[:, j].astype(float)
    return pd.DataFrame(cols)


def _version() -> str:
    from importlib import metadata

    return metadata.version("stochtree")


def _import_stochtree():
    try:
        import stochtree
    except ImportError:
        raise ModelError(
            "method 'bcf' (Bayesian causal forest) needs the Python package 'stochtree', which is not installed. "
            "Install it with `pip install hetreport[ml]`, or remove 'bcf' from 'methods:'.",
            where="methods",
        ) from None
    return stochtree


def unit_effect_draws(model, adata: AnalysisData) -> np.ndarray:
    """Every unit's CATE draws (n x S) on the outcome's scale, from the fitted model's training draws."""
    tau = np.asarray(model.tau_hat_train, dtype=float).reshape(adata.n, -1)
    if adata.family == "bernoulli":
        from scipy.stats import norm

        mu = np.asarray(model.mu_hat_train, dtype=float).reshape(adata.n, -1)
        return norm.cdf(mu + tau) - norm.cdf(mu)
    return tau


def group_average_draws(cate: np.ndarray, groups: Groups) -> np.ndarray:
    """Per draw, each group's mean of its members' CATE draws: (G, S)."""
    G = groups.n_groups
    member = np.zeros((G, cate.shape[0]))
    member[groups.index, np.arange(cate.shape[0])] = 1.0
    counts = member.sum(axis=1, keepdims=True)
    return (member @ cate) / np.where(counts > 0, counts, 1.0)


def summarise(draws: np.ndarray, groups: Groups) -> pd.DataFrame:
    """The per-group rows of the tidy table from the (G, S) draws of the group averages."""
    q = np.quantile(draws, [0.025, 0.05, 0.5, 0.95, 0.975], axis=1)
    one_arm = groups.table["one_arm"].to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "group": groups.table["group"].to_numpy(),
            "estimate": draws.mean(axis=1),
            "std_error": draws.std(axis=1, ddof=1),
            "lower_90": q[1],
            "upper_90": q[3],
            "lower_95": q[0],
            "upper_95": q[4],
            "median": q[2],
            "prob_positive": (draws > 0).mean(axis=1),
            "estimable": np.ones(len(draws), dtype=bool),
            "note": np.where(one_arm, "one arm only: the forest's effect here is extrapolated from other groups", ""),
        }
    )


def fit(adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    stochtree = _import_stochtree()
    opts = request.options if isinstance(request.options, BCFOptions) else BCFOptions.model_validate(request.options or {})
    if not get("bcf").fits(adata.family):  # the registry entry lists what stochtree's BCF fits
        raise ModelError(
            f"method 'bcf' cannot fit the {adata.family} family: stochtree {_version()}'s Bayesian causal forest "
            "fits a continuous outcome (family: gaussian) or a 0/1 outcome with a probit link (family: bernoulli). "
            f"Remove 'bcf' from this analysis's 'methods:'.",
            where=f"analysis '{adata.name}'",
        )
    if opts.num_gfr and opts.num_chains > opts.num_gfr:
        raise ModelError(
            f"method_options.bcf: num_chains ({opts.num_chains}) must not exceed num_gfr ({opts.num_gfr}): each chain starts "
            "from its own grow-from-root sweep. Raise num_gfr or lower num_chains.",
            where="method_options.bcf",
        )
    # stochtree's C++ generator takes a signed 32-bit seed; hetreport's seeds run to 2**32 - 1
    seed = (request.seed if opts.seed is None else opts.seed) % (2**31 - 1)
    X = covariates(adata)
    t = adata.t.astype(float)
    y = adata.y.astype(float)
    share = float(t.mean())
    general = {"random_seed": int(seed), "num_chains": opts.num_chains, "adaptive_coding": False}
    if opts.propensity == "share":
        general["propensity_covariate"] = "none"  # a constant carries no information for the forests
        propensity = np.full(adata.n, share)
    else:
        general["propensity_covariate"] = "prognostic"
        propensity = None
    if adata.family == "bernoulli":
        general["outcome_model"] = stochtree.OutcomeModel(outcome="binary", link="probit")
    t0 = time.perf_counter()
    model = stochtree.BCFModel()
    with warnings.catch_warnings():  # probit: "global error variance will not be sampled" is the model, not a problem
        warnings.filterwarnings("ignore", message="Global error variance will not be sampled")
        model.sample(
            X_train=X,
            Z_train=t,
            y_train=y,
            propensity_train=propensity,
            num_gfr=opts.num_gfr,
            num_burnin=opts.num_burnin,
            num_mcmc=opts.num_mcmc,
            general_params=general,
            prognostic_forest_params={"num_trees": opts.num_trees_mu},
            treatment_effect_forest_params={"num_trees": opts.num_trees_tau},
        )
    seconds = time.perf_counter() - t0
    draws = group_average_draws(unit_effect_draws(model, adata), groups)
    fitted = None
    if request.fitted:
        yhat = np.asarray(model.y_hat_train, dtype=float).reshape(adata.n, -1)
        if adata.family == "bernoulli":
            from scipy.stats import norm

            yhat = norm.cdf(yhat)
        fitted = yhat.mean(axis=1)
    link = "probit" if adata.family == "bernoulli" else "identity"
    details = {
        "num_gfr": opts.num_gfr,
        "num_burnin": opts.num_burnin,
        "num_mcmc": opts.num_mcmc,
        "num_chains": opts.num_chains,
        "num_trees_mu": opts.num_trees_mu,
        "num_trees_tau": opts.num_trees_tau,
        "propensity": opts.propensity,
        "treated_share": share,
        "seed": int(seed),
        "link": link,
        "draws": int(draws.shape[1]),
        "covariates": [m.name for m in adata.modifiers] + list(adata.control_display),
        "stochtree": _version(),
        "seconds": round(seconds, 2),
    }
    formula = (
        f"{adata.outcome.name} ~ mu(x) + tau(x) * {adata.treatment.name}"
        + (" (probit)" if link == "probit" else "")
        + f"; x = {', '.join(details['covariates'])}"
    )
    return MethodFit("bcf", summarise(draws, groups), formula, details, fitted=fitted, extra=model)


def describe(details: dict) -> str:
    """The methods section's sentence on the forest's settings."""
    prop = (
        f"every unit's propensity is the treated share, {details['treated_share']:.3f}, known from the randomised design "
        "(a constant, so not a covariate)"
        if details["propensity"] == "share"
        else "the propensity is estimated from the covariates by stochtree's BART model and enters the prognostic forest"
    )
    scale = (
        "; the outcome is 0/1, so the forest is stochtree's probit BCF and each unit's effect is, per draw, "
        "Φ(μ + τ) − Φ(μ), a difference in probability"
        if details["link"] == "probit"
        else ""
    )
    chains = f"{details['num_chains']} chains of " if details["num_chains"] > 1 else ""
    return (
        f"Bayesian causal forest (stochtree {details['stochtree']}): a prognostic forest of {details['num_trees_mu']} trees and a "
        f"treatment-effect forest of {details['num_trees_tau']} trees over {', '.join(details['covariates'])}; "
        f"{details['num_gfr']} grow-from-root warm-start sweeps, {details['num_burnin']} burn-in and {chains}{details['num_mcmc']} "
        f"retained MCMC draws (seed {details['seed']}); {prop}{scale}. Each group's effect is the posterior of the average of its "
        f"members' CATE draws ({details['seconds']:g} s)."
    )
