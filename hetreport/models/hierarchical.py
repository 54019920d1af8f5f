"""Bayesian hierarchical model of group treatment effects (the seed paper's section 2).

    y_i ~ Normal(mu_i, sigma)
    mu_i = alpha + X_i beta + (beta_T + sum_S theta_S[g_i]) T_i + sum_S alpha_S[g_i]
    (alpha_S[l], theta_S[l]) ~ MVN(0, diag(sd_alpha_S, sd_theta_S) R_S diag(...)),  R_S ~ LKJ(eta)

with one varying intercept-and-slope term S for every non-empty combination of the
modifiers (brms ``(1 + treat | m1*m2*…)``), or only the full crossing. Each group's
effect theta_g = beta_T + the sum of the slopes of every term the group belongs to,
recorded per draw (``group_effect``) and summarised from those draws.

Two builds of the same design:
- ``correlated: true`` (default, brms ``|``): a PyMC graph written here, non-centred,
  with each term's 2x2 LKJ correlation as rho = 2 Beta(eta, eta) - 1 (exactly the LKJ
  marginal for 2x2), and the Gaussian likelihood written through per-cell sufficient
  statistics (exact; the graph's shape depends only on the number of groups, levels
  and controls, not on N). Sampled with nutpie (PyMC NUTS as a fallback).
- ``correlated: false`` (brms ``||``): bambi's model, whose group terms are uncorrelated.

The correlated graph that is sampled (``build_collapsed_model``) integrates the intercept, the common
slope and the level effects of the coarsest terms out analytically and draws them afterwards from their
exact Gaussian conditional: the same posterior, without the ridges and funnels that made NUTS diverge.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import arviz as az
import numpy as np
import pandas as pd

from ..data import AnalysisData
from ..errors import HetreportWarning, SpecError
from ..groups import Groups, term_levels, terms  # noqa: F401 (formulas: pure, in groups.py)
from ..groups import model_formulas as formulas
from ..spec import Prior, Priors, Sampler
from .collapse import collapse_design as _collapse_design
from .priors import ResolvedPriors, _r, control_prior_sds, resolve_priors  # noqa: F401 (re-exported)

_control_prior_sds = control_prior_sds  # the name the simulation study and pre-registration import

RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass(frozen=True)
class HierarchicalFit:
    idata: az.InferenceData  # posterior with group_effect (chain, draw, group), sd_intercept/sd_slope (term), ...
    terms: tuple[str, ...]
    formula_bambi: str
    formula_brms: str
    priors: dict[str, str]  # the priors actually used, after scaling to the outcome
    correlated: bool
    backend: str
    timings: dict[str, float]
    diagnostics: dict = field(default_factory=dict)
    family: str = "gaussian"
    #: the likelihood's terms: rows summed over, units, whether units were aggregated into cells
    likelihood: dict = field(default_factory=dict)

    def group_draws(self) -> np.ndarray:
        """Draws of every group's effect, shape (chains * draws, groups)."""
        ge = self.idata.posterior["group_effect"]
        return ge.stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()


# --------------------------------------------------------------------------- priors


# resolve_priors, control_prior_sds: in priors.py (a frozen ResolvedPriors record), imported above and
# kept under these names for the model builders, the simulation study and pre-registration


def _dist(pm, prior: Prior, name: str, **kw):
    return getattr(pm, prior.dist_name)(name, **prior.kwargs(), **kw)


# --------------------------------------------------------------------------- design


@dataclass(frozen=True)
class Design:
    """Everything the graph needs, as arrays; shapes depend only on groups/levels/controls."""

    term_names: tuple[str, ...]
    level_names: tuple[str, ...]
    level_term: np.ndarray  # (L,) term position of each level
    group_levels: np.ndarray  # (G, T) level position (global) of each group in each term
    cell_n: np.ndarray  # (G, 2) units per group x arm
    cell_sy: np.ndarray  # (G, 2) sum of centred y
    cell_sx: np.ndarray  # (G, 2, p) sum of centred controls
    xx: np.ndarray  # (p, p)
    xy: np.ndarray  # (p,)
    yy: float
    y_mean: float
    x_mean: np.ndarray
    n: int


def build_design(adata: AnalysisData, groups: Groups, mode: str = "all") -> Design:
    term_list = terms(groups.modifiers, mode)
    level_names, level_term, cols = [], [], []
    for k, term in enumerate(term_list):
        names, pos = term_levels(groups, term)
        cols.append(pos + len(level_names))
        level_names += names
        level_term += [k] * len(names)
    y_mean = float(adata.y.mean())
    yc = adata.y - y_mean
    X = adata.control_matrix
    x_mean = X.mean(axis=0) if X.size else np.zeros(X.shape[1])
    Xc = X - x_mean
    G, p = groups.n_groups, X.shape[1]
    t = adata.t.astype(int)
    cell_n = np.zeros((G, 2))
    cell_sy = np.zeros((G, 2))
    cell_sx = np.zeros((G, 2, p))
    np.add.at(cell_n, (groups.index, t), 1.0)
    np.add.at(cell_sy, (groups.index, t), yc)
    np.add.at(cell_sx, (groups.index, t), Xc)
    return Design(
        term_names=tuple(":".join(tm) for tm in term_list),
        level_names=tuple(level_names),
        level_term=np.array(level_term),
        group_levels=np.column_stack(cols),
        cell_n=cell_n,
        cell_sy=cell_sy,
        cell_sx=cell_sx,
        xx=Xc.T @ Xc,
        xy=Xc.T @ yc,
        yy=float(yc @ yc),
        y_mean=y_mean,
        x_mean=x_mean,
        n=adata.n,
    )


# --------------------------------------------------------------------------- the graph


def _data_containers(pm, design: Design):
    """The data as PyMC containers (swappable with nutpie's with_data): per-cell sums and cross-products."""
    return (
        pm.Data("cell_n", design.cell_n),
        pm.Data("cell_sy", design.cell_sy),
        pm.Data("cell_sx", design.cell_sx),
        pm.Data("xx", design.xx),
        pm.Data("xy", design.xy),
        pm.Data("yy", design.yy),
        pm.Data("n_obs", float(design.n)),
    )


def _scale_parameters(pm, resolved: dict, control_sds, p: int, eta: float, with_sigma: bool = True):
    """Control coefficients, every term's intercept and slope SDs and correlation, and sigma
    (created in this order: the order fixes the sampler's parameter vector)."""
    beta = None
    if p:
        beta = (
            pm.Normal("beta", 0.0, control_sds, dims="control")
            if control_sds is not None
            else _dist(pm, resolved["b"], "beta", dims="control")
        )
    sd_int = _dist(pm, resolved["sd"], "sd_intercept", dims="term")
    sd_slope = _dist(pm, resolved["sd"], "sd_slope", dims="term")
    rho_raw = pm.Beta("rho_raw", eta, eta, dims="term")
    rho = pm.Deterministic("rho", 2 * rho_raw - 1, dims="term")
    sigma = _dist(pm, resolved["sigma"], "sigma") if with_sigma else None
    return beta, sd_int, sd_slope, rho, sigma


def build_model(
    design: Design,
    resolved: dict,
    control_sds: np.ndarray | None,
    control_names,
    group_keys,
    predictors: np.ndarray | None = None,
    predictor_names=(),
):
    """The correlated model as a PyMC graph (non-centred, sufficient-statistic likelihood).

    ``predictors`` (groups x q, centred) are slope predictors: the group's effect is then
    b_treat + predictors @ lambda + the varying slopes, and its intercept gets predictors @ gamma.
    """
    import pymc as pm
    import pytensor.tensor as pt

    p = design.xx.shape[0]
    coords = {
        "term": list(design.term_names),
        "level": list(design.level_names),
        "group": list(group_keys),
        "control": list(control_names),
        "component": ["intercept", "slope"],
        "predictor": list(predictor_names),
    }
    eta = resolved["cor"].params[0] if resolved["cor"] is not None else 2.0
    intercept_prior = resolved["intercept"]
    shift = design.y_mean  # the graph works on centred y; shift the intercept prior's location
    with pm.Model(coords=coords) as model:
        cell_n, cell_sy, cell_sx, xx, xy, yy, n_obs = _data_containers(pm, design)
        ip = intercept_prior.kwargs()
        if "mu" in ip:
            ip["mu"] = ip["mu"] - shift
        alpha_c = getattr(pm, intercept_prior.dist_name)("alpha_centred", **ip)
        pm.Deterministic("Intercept", alpha_c + shift)
        b_treat = _dist(pm, resolved["b"], "b_treat")
        beta, sd_int, sd_slope, rho, sigma = _scale_parameters(pm, resolved, control_sds, p, eta)
        z = pm.Normal("z", 0.0, 1.0, dims=("level", "component"))
        lt = design.level_term
        a_lev = sd_int[lt] * z[:, 0]
        b_lev = sd_slope[lt] * (rho[lt] * z[:, 0] + pt.sqrt(1 - rho[lt] ** 2) * z[:, 1])
        gl = design.group_levels
        A = a_lev[gl].sum(axis=1)
        B = b_lev[gl].sum(axis=1)
        if predictors is not None and predictors.shape[1]:
            lam = _dist(pm, resolved["b"], "lambda", dims="predictor")
            gam = _dist(pm, resolved["b"], "gamma", dims="predictor")
            Z = pt.as_tensor_variable(predictors)
            systematic = pm.Deterministic("systematic_slope", b_treat + Z @ lam, dims="group")
            A = A + Z @ gam
        else:
            systematic = b_treat
        theta = pm.Deterministic("group_effect", systematic + B, dims="group")
        alpha_g = alpha_c + A
        pm.Deterministic("group_intercept", alpha_g + shift, dims="group")
        pm.Deterministic("crossing_slope", b_lev[gl[:, -1]], dims="group")
        m = pt.stack([alpha_g, alpha_g + theta], axis=1)  # (G, 2) cell means before controls
        quad = yy - 2 * (m * cell_sy).sum() + (cell_n * m**2).sum()
        if p:
            quad = quad - 2 * (xy * beta).sum() + 2 * (m[:, :, None] * cell_sx * beta).sum() + beta @ xx @ beta
        pm.Potential("likelihood", -n_obs * pt.log(sigma) - 0.5 * n_obs * np.log(2 * np.pi) - quad / (2 * sigma**2))
    return model


def build_glm_model(
    design: Design,
    ut,
    family: str,
    resolved: dict,
    control_sds: np.ndarray | None,
    control_names,
    group_keys,
    predictors: np.ndarray | None = None,
    predictor_names=(),
    cut_mu: np.ndarray | None = None,
):
    """The correlated model for a non-Gaussian family: the same varying intercepts and slopes on the link
    scale, eta_r = alpha_g + theta_g t_r + x_r' beta, and the family's likelihood summed over the unit
    table ``ut`` (aggregated cells when there are no controls; see ``families.py``). For ordinal outcomes
    the intercept is absorbed by the cutpoints. The response-scale effects are computed after sampling."""
    import pymc as pm
    import pytensor.tensor as pt

    from .families import add_likelihood

    p = design.xx.shape[0]
    coords = {
        "term": list(design.term_names),
        "level": list(design.level_names),
        "group": list(group_keys),
        "control": list(control_names),
        "component": ["intercept", "slope"],
        "predictor": list(predictor_names),
    }
    if family == "ordinal":
        coords["cutpoint"] = [f"{k + 1}|{k + 2}" for k in range(len(cut_mu))]
    eta = resolved["cor"].params[0] if resolved["cor"] is not None else 2.0
    with pm.Model(coords=coords) as model:
        if family == "ordinal":
            cp = resolved["cutpoints"]
            ordered = dict(dims="cutpoint", transform=pm.distributions.transforms.ordered, initval=np.sort(cut_mu))
            cut = (
                pm.Normal("cutpoints", cut_mu, 2.5, **ordered)
                if cp is None
                else getattr(pm, cp.dist_name)("cutpoints", **cp.kwargs(), **ordered)
            )
            alpha0 = pt.as_tensor_variable(0.0)
        else:
            alpha0 = _dist(pm, resolved["intercept"], "Intercept")
            cut = None
        b_treat = _dist(pm, resolved["b"], "b_treat")
        beta, sd_int, sd_slope, rho, _ = _scale_parameters(pm, resolved, control_sds, p, eta, with_sigma=False)
        disp = _dist(pm, resolved["alpha"], "alpha") if family == "negativebinomial" else None
        z = pm.Normal("z", 0.0, 1.0, dims=("level", "component"))
        lt = design.level_term
        a_lev = sd_int[lt] * z[:, 0]
        b_lev = sd_slope[lt] * (rho[lt] * z[:, 0] + pt.sqrt(1 - rho[lt] ** 2) * z[:, 1])
        gl = design.group_levels
        A = a_lev[gl].sum(axis=1)
        B = b_lev[gl].sum(axis=1)
        if predictors is not None and predictors.shape[1]:
            lam = _dist(pm, resolved["b"], "lambda", dims="predictor")
            gam = _dist(pm, resolved["b"], "gamma", dims="predictor")
            Z = pt.as_tensor_variable(predictors)
            systematic = pm.Deterministic("systematic_slope", b_treat + Z @ lam, dims="group")
            A = A + Z @ gam
        else:
            systematic = b_treat
        theta = pm.Deterministic("group_slope", systematic + B, dims="group")
        alpha_g = pm.Deterministic("group_intercept", alpha0 + A, dims="group")
        pm.Deterministic("crossing_slope", b_lev[gl[:, -1]], dims="group")
        eta_r = alpha_g[ut.group] + theta[ut.group] * ut.t
        if p:
            eta_r = eta_r + pt.as_tensor_variable(ut.X) @ beta
        add_likelihood(pm, pt, eta_r, ut, family, alpha=disp, cutpoints=cut)
    return model


#: the intercept, the common slope and the level effects of the coarsest terms (fewest levels, most
#: units per level), up to this many levels in all, are integrated out analytically
COLLAPSE_MAX_LEVELS = 20


def collapsed_terms(design: Design, resolved: dict) -> tuple[int, ...] | None:
    """Terms whose level effects are integrated out: the smallest terms while their levels total at most
    COLLAPSE_MAX_LEVELS (depends on the design's structure only). None when the intercept or the
    common slope has a non-normal prior: then nothing is integrated out."""
    if resolved["intercept"].family != "normal" or resolved["b"].family != "normal":
        return None
    sizes = np.bincount(design.level_term, minlength=len(design.term_names))
    chosen, total = [], 0
    for k in sorted(range(len(sizes)), key=lambda k: sizes[k]):
        if total + sizes[k] > COLLAPSE_MAX_LEVELS:
            break
        chosen.append(k)
        total += sizes[k]
    return tuple(sorted(chosen))


def build_collapsed_model(
    design: Design,
    resolved: dict,
    control_sds: np.ndarray | None,
    control_names,
    group_keys,
    collapse: tuple[int, ...],
    predictors: np.ndarray | None = None,
    predictor_names=(),
):
    """build_model's posterior, with the intercept, the common slope and the level effects of the terms
    in ``collapse`` (gamma, d = 2 + 2 x their levels) integrated out analytically; with slope
    ``predictors`` (G x q, centred) their main effects and slope coefficients (gamma_Z, lambda_Z, the
    ``b`` prior each) too (d = 2 + 2 x levels + 2q).

    Given the rest, gamma has a Gaussian prior and enters the cell means linearly (m = r + D gamma), so
    the likelihood is Gaussian in gamma with precision H / sigma^2, H = D'ND; the potential is the
    exact marginal log p(y | rest) through a Cholesky factor of P = prior precision + H / sigma^2.
    gamma is drawn afterwards from N(P^-1 v, P^-1) per draw (``draw_collapsed``). Sampled, these
    coarse terms (hundreds of units per level, SDs informed by a few levels) make the ridges and
    funnels behind the divergences; integrated out, NUTS needs ~30 leapfrog steps per draw, not ~200.
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.tensor.slinalg import cholesky, solve_triangular

    k_idx, r_idx, kept, member, D, H, gl_rest = _collapse_design(design, collapse, predictors)
    lt, G, LK, p = design.level_term, design.group_levels.shape[0], len(k_idx), design.xx.shape[0]
    ia, ib = 2 + np.arange(LK), 2 + LK + np.arange(LK)
    iz = 2 + 2 * LK + np.arange(D.shape[1] - 2 - 2 * LK)  # gamma_Z, lambda_Z: the b prior each
    ip, bp = resolved["intercept"].kwargs(), resolved["b"].kwargs()
    mu_a, s_a, mu_b, s_b = ip["mu"] - design.y_mean, ip["sigma"], bp["mu"], bp["sigma"]
    coords = {
        "term": list(design.term_names),
        "level_rest": [design.level_names[l] for l in r_idx],
        "group": list(group_keys),
        "control": list(control_names),
        "component": ["intercept", "slope"],
        "collapsed": _collapsed_names(design, collapse, predictor_names),
    }
    eta = resolved["cor"].params[0] if resolved["cor"] is not None else 2.0
    with pm.Model(coords=coords) as model:
        cell_n, cell_sy, cell_sx, xx, xy, yy, n_obs = _data_containers(pm, design)
        Dm = pm.Data("collapse_D", D)
        Hm = pm.Data("collapse_H", H)
        beta, sd_int, sd_slope, rho, sigma = _scale_parameters(pm, resolved, control_sds, p, eta)
        A, B = pt.zeros(G), pt.zeros(G)
        if len(r_idx):
            lr = lt[r_idx]
            z = pm.Normal("z", 0.0, 1.0, dims=("level_rest", "component"))
            a_r = sd_int[lr] * z[:, 0]
            b_r = sd_slope[lr] * (rho[lr] * z[:, 0] + pt.sqrt(1 - rho[lr] ** 2) * z[:, 1])
            A, B = a_r[gl_rest].sum(axis=1), b_r[gl_rest].sum(axis=1)
            if kept[-1] == len(design.term_names) - 1:
                pm.Deterministic("crossing_rest", b_r[gl_rest[:, -1]], dims="group")
        pm.Deterministic("A_rest", A, dims="group")
        pm.Deterministic("B_rest", B, dims="group")
        r = pt.stack([A, A + B], axis=1)  # (G, 2) cell means from the sampled terms
        quad = yy - 2 * (r * cell_sy).sum() + (cell_n * r**2).sum()
        h = cell_sy - cell_n * r
        if p:
            sxb = (cell_sx * beta).sum(axis=2)
            quad = quad - 2 * (xy * beta).sum() + 2 * (r * sxb).sum() + beta @ xx @ beta
            h = h - sxb
        lk = lt[k_idx]
        sa, sb, rk = sd_int[lk], sd_slope[lk], rho[lk]
        om = 1 - rk**2
        P = Hm / sigma**2
        P = pt.inc_subtensor(P[[0, 1], [0, 1]], np.array([1 / s_a**2, 1 / s_b**2]))
        if len(iz):
            P = pt.inc_subtensor(P[iz, iz], np.full(len(iz), 1 / s_b**2))
        if LK:
            P = pt.inc_subtensor(P[ia, ia], 1 / (sa**2 * om))
            P = pt.inc_subtensor(P[ib, ib], 1 / (sb**2 * om))
            P = pt.inc_subtensor(P[ia, ib], -rk / (sa * sb * om))
            P = pt.inc_subtensor(P[ib, ia], -rk / (sa * sb * om))
        m0 = np.zeros(D.shape[1])
        m0[:2] = mu_a / s_a**2, mu_b / s_b**2
        m0[iz] = mu_b / s_b**2
        v = m0 + Dm.T @ h.reshape((2 * G,)) / sigma**2
        chol = cholesky(P, lower=True)
        w = solve_triangular(chol, v, lower=True)
        logdet_prior = 2 * np.log(s_a * s_b) + 2 * len(iz) * np.log(s_b) + (2 * pt.log(sa * sb) + pt.log(om)).sum()
        pm.Potential(
            "likelihood",
            -n_obs * pt.log(sigma)
            - 0.5 * n_obs * np.log(2 * np.pi)
            - quad / (2 * sigma**2)
            - 0.5 * logdet_prior
            - pt.log(pt.diagonal(chol)).sum()
            + 0.5 * (w**2).sum()
            - 0.5 * (mu_a**2 / s_a**2 + (1 + len(iz)) * mu_b**2 / s_b**2),
        )
        pm.Deterministic("gamma_mean", solve_triangular(chol.T, w, lower=False), dims="collapsed")
    return model


def _fast_supported(resolved: dict) -> bool:
    from .fastlogp import supported

    return supported(resolved)


def _collapsed_names(design: Design, collapse: tuple[int, ...], predictor_names=()) -> list[str]:
    """The coordinate of gamma = (Intercept, b_treat, the collapsed levels' intercepts, their slopes[, the slope
    predictors' main effects gamma_Z, their slope coefficients lambda_Z])."""
    in_k = np.isin(design.level_term, collapse)
    names = [design.level_names[l] for l in np.flatnonzero(in_k)]
    return (
        ["Intercept", "b_treat"]
        + [f"{n} intercept" for n in names]
        + [f"{n} slope" for n in names]
        + [f"gamma[{z}]" for z in predictor_names]
        + [f"lambda[{z}]" for z in predictor_names]
    )


def draw_collapsed(
    post, design: Design, resolved: dict, collapse: tuple[int, ...], seed: int, predictors: np.ndarray | None = None
) -> dict:
    """Exact draws of gamma | rest ~ N(gamma_mean, P^-1), one per posterior draw, and the quantities
    build_model records: Intercept, b_treat, group_effect, group_intercept, crossing_slope; with slope
    ``predictors`` (G x q, centred, as sampled) also lambda, gamma and systematic_slope = b_treat + Z lambda."""
    k_idx, _, kept, member, _, H, _ = _collapse_design(design, collapse, predictors)
    LK, lk = len(k_idx), design.level_term[k_idx]
    ia, ib = 2 + np.arange(LK), 2 + LK + np.arange(LK)
    q = (H.shape[0] - 2 - 2 * LK) // 2
    iz = 2 + 2 * LK + np.arange(2 * q)
    s_a, s_b = resolved["intercept"].kwargs()["sigma"], resolved["b"].kwargs()["sigma"]
    sa, sb = post["sd_intercept"].to_numpy()[..., lk], post["sd_slope"].to_numpy()[..., lk]
    rk = post["rho"].to_numpy()[..., lk]
    om = 1 - rk**2
    P = H / post["sigma"].to_numpy()[..., None, None] ** 2
    P[..., 0, 0] += 1 / s_a**2
    P[..., 1, 1] += 1 / s_b**2
    P[..., iz, iz] += 1 / s_b**2
    P[..., ia, ia] += 1 / (sa**2 * om)
    P[..., ib, ib] += 1 / (sb**2 * om)
    P[..., ia, ib] -= rk / (sa * sb * om)
    P[..., ib, ia] -= rk / (sa * sb * om)
    chol = np.linalg.cholesky(P)
    eps = np.random.default_rng(seed).standard_normal(P.shape[:-1] + (1,))
    gamma = post["gamma_mean"].to_numpy() + np.linalg.solve(np.swapaxes(chol, -1, -2), eps)[..., 0]
    gam_z, lam_z = gamma[..., 2 + 2 * LK : 2 + 2 * LK + q], gamma[..., 2 + 2 * LK + q :]
    Z = np.zeros((member.shape[0], 0)) if predictors is None else np.asarray(predictors, dtype=float)
    systematic = gamma[..., 1:2] + lam_z @ Z.T
    theta = systematic + gamma[..., 2 + LK : 2 + 2 * LK] @ member.T + post["B_rest"].to_numpy()
    alpha_g = gamma[..., :1] + gamma[..., 2 : 2 + LK] @ member.T + gam_z @ Z.T + post["A_rest"].to_numpy() + design.y_mean
    last = len(design.term_names) - 1
    crossing = (
        post["crossing_rest"].to_numpy() if last in kept else gamma[..., 2 + LK + np.searchsorted(k_idx, design.group_levels[:, last])]
    )
    gd = ("chain", "draw", "group")
    out = {
        "Intercept": (("chain", "draw"), gamma[..., 0] + design.y_mean),
        "b_treat": (("chain", "draw"), gamma[..., 1]),
        "group_effect": (gd, theta),
        "group_intercept": (gd, alpha_g),
        "crossing_slope": (gd, crossing),
    }
    if q:
        pd_ = ("chain", "draw", "predictor")
        out.update({"lambda": (pd_, lam_z), "gamma": (pd_, gam_z), "systematic_slope": (gd, systematic)})
    return out


# --------------------------------------------------------------------------- sampling


def wait_interruptibly(running):
    """The draws of a running nutpie sampler, or the interrupt that came while waiting for them.

    A SIGINT or SIGTERM while nutpie's ``wait()`` runs calls the Python handler inside nutpie's Rust code; the
    exception the handler raises there can be dropped and ``wait()`` then returns the draws as if nothing had
    happened (seen in CI: an interrupted ``hetreport run`` finished and exited 0). So the signals are also
    recorded here, and a recorded one ends the run after ``wait()`` returns: the sampler is cancelled and the
    handler's exception (KeyboardInterrupt; the CLI's SIGTERM exception) raised from Python."""
    import signal
    import threading

    seen: list[int] = []
    previous: dict[int, object] = {}

    def record(signum, frame):
        seen.append(signum)
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler):  # SIG_DFL / SIG_IGN keep their meaning (SIGTERM's default ends the process)
                previous[sig] = handler
                signal.signal(sig, record)
    try:
        try:
            idata = running.wait()
        except BaseException:
            running.cancel()
            raise
        if seen:
            running.cancel()
            handler = previous[seen[0]]
            handler(seen[0], None)  # the handler's own exception (it raised inside nutpie and was dropped)
            raise KeyboardInterrupt
        return idata
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sample(model, sampler: Sampler, var_names, progress: bool, compiled=None):
    """Sample the PyMC graph ``model`` (nutpie compiles it), or a ready nutpie model ``compiled``."""
    timings = {}
    if compiled is not None or sampler.backend == "nutpie":
        try:
            import nutpie
        except ImportError:  # pragma: no cover - nutpie is a dependency
            nutpie = None
        if nutpie is not None:
            t0 = time.perf_counter()
            suffix = " (the log density compiled by hetreport in numba)" if compiled is not None else ""
            if compiled is None:
                compiled = nutpie.compile_pymc_model(model, var_names=var_names)
            else:
                compiled = compiled()
            timings["compile_s"] = time.perf_counter() - t0
            from threadpoolctl import threadpool_limits

            t0 = time.perf_counter()
            with threadpool_limits(1):  # one BLAS thread per chain: the collapsed route's small LAPACK calls
                # not blocking: nutpie's blocking call catches KeyboardInterrupt and returns the draws so far
                # as if sampling had finished; an interrupt (or SIGTERM) must end the run instead
                running = nutpie.sample(
                    compiled,
                    draws=sampler.draws,
                    tune=sampler.tune,
                    chains=sampler.chains,
                    seed=sampler.seed,
                    target_accept=sampler.target_accept,
                    progress_bar=progress,
                    save_warmup=False,
                    blocking=False,
                )
                idata = wait_interruptibly(running)
            timings["sampling_s"] = time.perf_counter() - t0
            return idata, timings, f"nutpie {nutpie.__version__}{suffix}"
    import pymc as pm

    t0 = time.perf_counter()
    with model:
        idata = pm.sample(
            draws=sampler.draws,
            tune=sampler.tune,
            chains=sampler.chains,
            random_seed=sampler.seed,
            target_accept=sampler.target_accept,
            progressbar=progress,
            compute_convergence_checks=False,
            var_names=var_names,
        )
    timings["sampling_s"] = time.perf_counter() - t0
    return idata, timings, f"PyMC {pm.__version__} NUTS"


#: the automatic second fit: a run of at least this many draws in all (chains x draws) whose first diagnosis
#: fails (R-hat, bulk or tail ESS of a reported quantity or an SD, divergences) is sampled once more with a
#: longer warm-up (``retry_sampler``); smaller runs (quick looks, tests) are reported as they are
RETRY_MIN_DRAWS = 2000


def needs_retry(diag: dict, sampler: Sampler) -> bool:
    """Whether a first fit's diagnosis calls for the automatic second fit."""
    if sampler.chains * sampler.draws < RETRY_MIN_DRAWS:
        return False
    q = diag["quantities"].values()
    return bool(
        diag["divergences"]
        or max(v["max_rhat"] for v in q) > RHAT_MAX
        or min(min(v["min_ess_bulk"], v["min_ess_tail"]) for v in q) < ESS_MIN
    )


def retry_sampler(sampler: Sampler, diag: dict) -> Sampler:
    """The second fit's settings: twice the warm-up (at least 1,000 draws), so the step size and the mass matrix
    adapt on a longer run; after divergences, a smaller step (target_accept a quarter of the way closer to 1:
    0.98 -> 0.995); twice the draws, so the second fit's own R-hat and ESS are not a borderline call again (the
    bundled example's scenario analysis, rerun after 7 divergences with 1,000 draws per chain, ended at R-hat
    1.011); with an ESS short of ESS_MIN, draws scaled up to reach it with a margin of a quarter (at most four
    times as many). The seed is the same, so the rerun is reproducible."""
    q = diag["quantities"].values()
    worst_ess = min(min(v["min_ess_bulk"], v["min_ess_tail"]) for v in q)
    draws = 2 * sampler.draws
    if worst_ess < ESS_MIN:
        draws = int(min(4 * sampler.draws, max(draws, np.ceil(sampler.draws * 1.25 * ESS_MIN / max(worst_ess, 1.0)))))
    target = sampler.target_accept
    if diag["divergences"]:
        target = round(max(target, 1 - (1 - target) / 4), 6)
    return sampler.model_copy(update={"tune": max(2 * sampler.tune, 1000), "draws": draws, "target_accept": target})


def fit_hierarchical(
    adata: AnalysisData,
    groups: Groups,
    priors: Priors,
    sampler: Sampler,
    *,
    mode: str = "all",
    correlated: bool = True,
    progress: bool = False,
    predictors=(),
    compiled: bool = True,
    retry: bool = True,
) -> HierarchicalFit:
    """Fit the hierarchical model. ``compiled``: sample the collapsed Gaussian model (slope predictors' lambda and
    gamma integrated out with it), and the bernoulli, binomial,
    poisson and ordinal models without slope predictors, through a log density compiled once per machine (``fastlogp``,
    ``fastglm``; the same posterior as the PyMC graph, checked point by point in tests/test_fastlogp.py and
    tests/test_fastglm.py); False samples the PyMC graph, compiled for this study. ``retry``: when the first
    diagnosis fails on a full-size run (``needs_retry``), sample once more with a longer warm-up
    (``retry_sampler``) and report that fit; ``diagnostics["retry"]`` records why, the first fit's figures and
    the settings used."""
    kw = dict(mode=mode, correlated=correlated, progress=progress, predictors=predictors, compiled=compiled)
    fit = _fit_once(adata, groups, priors, sampler, **kw)
    diag = fit.diagnostics
    if retry and needs_retry(diag, sampler):
        second = retry_sampler(sampler, diag)
        q = diag["quantities"].values()
        first = {
            "sampler": sampler.model_dump(),
            "max_rhat": max(v["max_rhat"] for v in q),
            "min_ess": min(min(v["min_ess_bulk"], v["min_ess_tail"]) for v in q),
            "divergences": diag["divergences"],
            "seconds": round(sum(fit.timings.values()), 2),
            "flags": diag["flags"],
        }
        fit = _fit_once(adata, groups, priors, second, **kw)
        fit.timings["first_fit_s"] = first["seconds"]
        fit.diagnostics["retry"] = {
            "reason": "the first fit's diagnosis failed: " + " ".join(diag["flags"]),
            "first": first,
            "sampler": second.model_dump(),
        }
        diag = fit.diagnostics
    if diag["flags"]:
        warnings.warn(f"analysis '{adata.name}': " + " ".join(diag["flags"]), HetreportWarning, stacklevel=2)
    return fit


def predictor_matrix(adata: AnalysisData, groups: Groups, predictors) -> np.ndarray | None:
    """The groups' slope predictors (G x q), centred on the unit average (same θ_g, better geometry); None without."""
    if not predictors:
        return None
    try:
        Z = groups.table[list(predictors)].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise SpecError(
            f"slope predictors must have numeric codes (they enter linearly); {list(predictors)} include text. "
            "Recode them with data.derive, e.g. map(x, {'low': 1, 'high': 2}).",
            where=f"analysis '{adata.name}'",
        ) from None
    w = groups.table["n"].to_numpy(dtype=float)
    return Z - (w[:, None] * Z).sum(axis=0) / w.sum()


def _fit_once(
    adata: AnalysisData,
    groups: Groups,
    priors: Priors,
    sampler: Sampler,
    *,
    mode: str,
    correlated: bool,
    progress: bool,
    predictors,
    compiled: bool,
) -> HierarchicalFit:
    resolved = resolve_priors(priors, adata)
    predictors = tuple(predictors)
    family = adata.family
    likelihood = {"rows": adata.n, "units": adata.n, "aggregated": False}
    bambi_formula, brms_formula = formulas(adata, groups, mode, correlated, predictors)
    if predictors and not correlated:
        raise SpecError(
            "slope_predictors need the correlated model (the default); remove 'correlated: false' from this analysis.",
            where=f"analysis '{adata.name}'",
        )
    if correlated:
        design = build_design(adata, groups, mode)
        control_sds = _control_prior_sds(resolved, adata)
        Z = predictor_matrix(adata, groups, predictors)
        t0 = time.perf_counter()
        keep = ["Intercept", "b_treat", "sd_intercept", "sd_slope", "rho", "sigma", "group_effect", "group_intercept", "crossing_slope"]
        if predictors:
            keep += ["lambda", "gamma", "systematic_slope"]
        if adata.control_matrix.shape[1]:
            keep.append("beta")
        # integrate the coarse terms out (nutpie only: under PyMC's C backend the Cholesky gradients are slow)
        # (slope predictors' main effects and slope coefficients too: they are more linear coefficients, ``collapse_design``)
        collapse = collapsed_terms(design, resolved) if sampler.backend == "nutpie" and family == "gaussian" else None
        fast = None
        if family != "gaussian":
            from .families import default_cutpoints, unit_table

            ut = unit_table(adata, groups)
            likelihood = {"rows": ut.n_rows, "units": ut.n_units, "aggregated": ut.aggregated, "route": ut.route}
            keep = [v for v in keep if v not in ("sigma", "group_effect", "Intercept")] + ["group_slope"]
            keep += ["cutpoints"] if family == "ordinal" else ["Intercept"]
            keep += ["alpha"] if family == "negativebinomial" else []
            from . import fastglm

            if compiled and sampler.backend == "nutpie" and fastglm.supported(family, resolved, Z):
                # the log density compiled once per machine (fastglm; the PyMC graph's, point by point)
                model, stored = None, None
                coords = {"term": list(design.term_names), "group": list(groups.keys), "control": list(adata.control_columns)}
                cut_mu = default_cutpoints(adata) if family == "ordinal" else None
                if cut_mu is not None:
                    coords["cutpoint"] = [f"{k + 1}|{k + 2}" for k in range(len(cut_mu))]
                fast = lambda: fastglm.compile_glm(design, ut, family, resolved, control_sds, coords, cut_mu)  # noqa: E731
            else:
                model = build_glm_model(
                    design,
                    ut,
                    family,
                    resolved,
                    control_sds,
                    adata.control_columns,
                    groups.keys,
                    Z,
                    predictors,
                    default_cutpoints(adata) if family == "ordinal" else None,
                )
                stored = keep
        elif collapse is None:
            model, stored = build_model(design, resolved, control_sds, adata.control_columns, groups.keys, Z, predictors), keep
        elif compiled and _fast_supported(resolved):
            from . import fastlogp

            model, stored = None, None
            coords = {
                "term": list(design.term_names),
                "group": list(groups.keys),
                "control": list(adata.control_columns),
                "collapsed": _collapsed_names(design, collapse, predictors),
            }
            fast = lambda: fastlogp.compile_collapsed(design, resolved, control_sds, collapse, coords, Z)  # noqa: E731
        else:
            model = build_collapsed_model(design, resolved, control_sds, adata.control_columns, groups.keys, collapse, Z, predictors)
            stored = [v for v in keep + ["gamma_mean", "A_rest", "B_rest", "crossing_rest"] if v in model.named_vars]
        idata, timings, backend = _sample(model, sampler, stored, progress, compiled=fast)
        timings["build_s"] = time.perf_counter() - t0 - sum(timings.values())
        post = idata.posterior
        if collapse is not None:
            post = post.assign(draw_collapsed(post, design, resolved, collapse, sampler.seed, Z))
            if predictors:
                post = post.assign_coords(predictor=list(predictors))
        post = post[[v for v in keep if v in post]]
        idata = az.InferenceData(posterior=post, sample_stats=idata.sample_stats)
        term_names = design.term_names
    else:
        from .bambi_route import fit_bambi

        idata, timings, backend, term_names = fit_bambi(adata, groups, resolved, sampler, mode, progress)
    if family != "gaussian":
        idata = _add_response_effects(idata, adata, groups)
    idata = _add_summaries(idata, groups)
    used = _priors_used(resolved, adata, correlated, predictors)
    fit = HierarchicalFit(
        idata=idata,
        terms=tuple(term_names),
        formula_bambi=bambi_formula,
        formula_brms=brms_formula,
        priors=used,
        correlated=correlated,
        backend=backend,
        timings=timings,
        family=family,
        likelihood=likelihood,
    )
    fit = replace(fit, diagnostics=diagnose(fit))
    return fit


def _priors_used(resolved: ResolvedPriors, adata: AnalysisData, correlated: bool, predictors=()) -> dict[str, str]:
    used = {
        "Intercept": str(resolved["intercept"]),
        f"{adata.treatment.name} (common slope)": str(resolved["b"]),
    }
    sds = _control_prior_sds(resolved, adata)
    for k, name in enumerate(adata.control_columns):
        used[name] = f"normal(0, {sds[k]:g})" if sds is not None else str(resolved["b"])
    for z in predictors:
        used[f"{z}: slope predictor (λ) and main effect"] = str(resolved["b"])
    used["group SDs (intercepts and slopes, every term)"] = str(resolved["sd"])
    if correlated:
        used["intercept–slope correlation (every term)"] = str(resolved["cor"])
    if adata.family == "gaussian":
        used["sigma (residual SD)"] = str(resolved["sigma"])
    elif adata.family == "negativebinomial":
        used["alpha (dispersion: variance = μ + μ²/α)"] = str(resolved["alpha"])
    elif adata.family == "ordinal":
        del used["Intercept"]
        if resolved["cutpoints"] is None:
            from .families import default_cutpoints

            centres = ", ".join(f"{c:.2f}" for c in default_cutpoints(adata))
            used["cutpoints (ordered)"] = f"normal(c_k, 2.5), c = {centres} (logits of the cumulative category shares)"
        else:
            used["cutpoints (ordered)"] = str(resolved["cutpoints"])
    return used


def _add_response_effects(idata: az.InferenceData, adata: AnalysisData, groups: Groups) -> az.InferenceData:
    """group_effect = each group's effect on the response scale, per draw, from the link-scale draws
    (group_intercept, group_slope, beta, cutpoints); see ``families.response_effects``."""
    from .families import response_effects

    post = idata.posterior
    C, D = post.sizes["chain"], post.sizes["draw"]

    def flat(var, last):
        return post[var].transpose("chain", "draw", last).to_numpy().reshape(C * D, -1)

    X = adata.control_matrix
    beta = flat("beta", "control") if ("beta" in post and X.shape[1]) else None
    Xc = X - X.mean(axis=0) if X.shape[1] else X
    cut = flat("cutpoints", "cutpoint") if "cutpoints" in post else None
    delta = response_effects(
        flat("group_intercept", "group"),
        flat("group_slope", "group"),
        beta,
        Xc,
        groups.index,
        groups.n_groups,
        adata.family,
        cut,
        adata.categories,
        weights=adata.trials if adata.family == "binomial" else None,
    )
    post = post.assign(group_effect=(("chain", "draw", "group"), delta.reshape(C, D, -1)))
    if adata.family == "ordinal":  # also on the scale of a binary outcome y >= k, for every k
        from .families import at_least_effects

        ge = at_least_effects(flat("group_intercept", "group"), flat("group_slope", "group"), beta, Xc, groups.index, groups.n_groups, cut)
        post = post.assign(group_effect_at_least=(("chain", "draw", "group", "at_least"), ge.reshape(C, D, groups.n_groups, -1)))
        post = post.assign_coords(at_least=[float(c) for c in adata.categories[1:]])
    stats_ = getattr(idata, "sample_stats", None)
    return az.InferenceData(posterior=post, **({"sample_stats": stats_} if stats_ is not None else {}))


def _add_summaries(idata: az.InferenceData, groups: Groups) -> az.InferenceData:
    """Population-average effect (n-weighted over groups) and sigma_theta, per draw."""
    post = idata.posterior
    w = groups.table["n"].to_numpy(dtype=float)
    w = w / w.sum()
    import xarray as xr

    weights = xr.DataArray(w, dims="group", coords={"group": post["group"]})
    post = post.assign(average_effect=(post["group_effect"] * weights).sum("group"))
    post = post.assign(sigma_theta=post["sd_slope"].isel(term=-1, drop=True))
    return az.InferenceData(posterior=post, sample_stats=idata.sample_stats)


def diagnose(fit: HierarchicalFit) -> dict:
    """R-hat, bulk/tail ESS for the reported quantities and the SDs; divergences, tree depth, BFMI."""
    post = fit.idata.posterior
    stats_ = fit.idata.sample_stats
    out: dict = {"quantities": {}}
    reported = ["group_effect", "average_effect", "sigma_theta", "sd_slope", "sd_intercept", "sigma"]
    for var in reported:
        if var not in post:
            continue
        rhat = az.rhat(post[[var]])[var].to_numpy()
        ess_b = az.ess(post[[var]], method="bulk")[var].to_numpy()
        ess_t = az.ess(post[[var]], method="tail")[var].to_numpy()
        out["quantities"][var] = {
            "kind": "reported" if var in ("group_effect", "average_effect", "sigma_theta") else "SD",
            "max_rhat": float(np.nanmax(rhat)),
            "min_ess_bulk": float(np.nanmin(ess_b)),
            "min_ess_tail": float(np.nanmin(ess_t)),
        }
    div = stats_["diverging"].to_numpy() if "diverging" in stats_ else np.zeros(1)
    out["divergences"] = int(div.sum())
    out["draws"] = int(div.size)
    depth_hits = 0
    for name in ("maxdepth_reached", "reached_max_treedepth"):
        if name in stats_:
            depth_hits = int(stats_[name].to_numpy().sum())
    out["max_treedepth_hits"] = depth_hits
    try:
        out["min_bfmi"] = float(np.min(az.bfmi(fit.idata)))
    except Exception:  # energy not recorded by this backend
        out["min_bfmi"] = float("nan")
    flags = []
    q = out["quantities"]
    worst_rhat = max(v["max_rhat"] for v in q.values())
    worst_ess = min(min(v["min_ess_bulk"], v["min_ess_tail"]) for v in q.values())
    if worst_rhat > RHAT_MAX:
        flags.append(f"R-hat up to {worst_rhat:.3f} (> {RHAT_MAX}): chains disagree; run more draws.")
    if worst_ess < ESS_MIN:
        flags.append(f"effective sample size down to {worst_ess:.0f} (< {ESS_MIN}): intervals are imprecise; run more draws.")
    if out["divergences"]:
        flags.append(
            f"{out['divergences']} divergent transition{'' if out['divergences'] == 1 else 's'} of {out['draws']}: "
            "the sampler may have missed part of the posterior; raise sampler.target_accept."
        )
    # draws that hit the maximum tree depth cost efficiency, not validity: reported, not flagged
    if np.isfinite(out["min_bfmi"]) and out["min_bfmi"] < 0.3:
        flags.append(f"BFMI {out['min_bfmi']:.2f} (< 0.3): poor exploration of the energy distribution.")
    out["flags"] = flags
    out["thresholds"] = {"rhat_max": RHAT_MAX, "ess_min": ESS_MIN, "divergences": 0}
    return out


def group_summary(fit: HierarchicalFit, groups: Groups) -> pd.DataFrame:
    """Per-group summaries computed from the draws: mean, median, sd, 90/95% intervals, P(>0)."""
    draws = fit.group_draws()
    q = np.quantile(draws, [0.025, 0.05, 0.5, 0.95, 0.975], axis=0)
    table = pd.DataFrame(
        {
            "group": groups.keys,
            "estimate": draws.mean(axis=0),
            "median": q[2],
            "std_error": draws.std(axis=0, ddof=1),
            "lower_90": q[1],
            "upper_90": q[3],
            "lower_95": q[0],
            "upper_95": q[4],
            "prob_positive": (draws > 0).mean(axis=0),
            "estimable": True,
            "note": "",
        }
    )
    post = fit.idata.posterior
    if "group_slope" in post:  # non-identity link: the link-scale slope next to the response-scale effect
        link = post["group_slope"].stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()
        lq = np.quantile(link, [0.025, 0.975], axis=0)
        table["link_estimate"] = link.mean(axis=0)
        table["link_std_error"] = link.std(axis=0, ddof=1)
        table["link_lower_95"], table["link_upper_95"] = lq[0], lq[1]
    return table


def posterior_predictive(
    fit: HierarchicalFit, adata: AnalysisData, groups: Groups, n_draws: int = 50, seed: int = 0, rows: np.ndarray | None = None
) -> np.ndarray:
    """Replicated outcomes (n_draws x n) from the fitted model, drawn by hand from the posterior
    (binomial: as proportions of the trials, like the outcome the report shows); with ``rows`` only for
    those rows (n_draws x len(rows)), from the same model (controls centred on all rows, as fitted)."""
    from .families import draw_outcomes

    post = fit.idata.posterior.stack(sample=("chain", "draw"))
    rng = np.random.default_rng(seed)
    pick = rng.choice(post.sizes["sample"], size=min(n_draws, post.sizes["sample"]), replace=False)
    slope = "group_slope" if "group_slope" in post else "group_effect"
    alpha_g = post["group_intercept"].transpose("sample", "group").to_numpy()[pick]
    theta = post[slope].transpose("sample", "group").to_numpy()[pick]
    rows = np.arange(adata.n) if rows is None else np.asarray(rows)
    gidx, trials = groups.index[rows], (None if adata.trials is None else adata.trials[rows])
    mu = alpha_g[:, gidx] + theta[:, gidx] * adata.t[rows][None, :]
    if "beta" in post and adata.control_matrix.shape[1]:
        beta = post["beta"].transpose("sample", "control").to_numpy()[pick]
        Xc = adata.control_matrix[rows] - adata.control_matrix.mean(axis=0)
        mu = mu + beta @ Xc.T
    fam = adata.family

    def take(var, *dims):
        return post[var].transpose("sample", *dims).to_numpy()[pick] if var in post else None

    y_rep = draw_outcomes(
        rng,
        mu,
        fam,
        trials=trials,
        alpha=take("alpha"),
        cutpoints=take("cutpoints", "cutpoint"),
        categories=adata.categories,
        sigma=take("sigma"),
    )
    return y_rep / trials[None, :] if fam == "binomial" else y_rep
