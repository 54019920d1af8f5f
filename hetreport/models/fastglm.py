"""The non-Gaussian hierarchical model's log density and gradient in numba, compiled once per machine.

``build_glm_model`` (hierarchical.py) states the model as a PyMC graph, and nutpie compiles that graph for
every study (its index arrays and unit table are baked into it: 20-110 s per analysis of the bundled
example). This module computes the same log density - same parameter vector, same priors, same constants,
so the two routes agree point by point - and its analytic gradient from one flat float64 buffer holding
every size, index array, likelihood row and prior parameter of a study. The two C callbacks nutpie calls
are numba ``cfunc``s with ``cache=True`` and no data baked in, so they are compiled on the first use on a
machine and loaded from numba's disk cache by every later study of the class. The kernels themselves
(``glm_logp_grad``, ``c_glm_logp``, ``c_glm_expand``) are in fastlogp.py, next to the group-level functions
they call: numba invalidates its cache per source file, so they must be recompiled when those change.

Families: bernoulli and binomial (logit link), poisson (log link) and ordinal (cumulative logit), correlated
varying intercepts and slopes for every term, controls or not, without slope predictors; the intercept (or
the cutpoints), the common slope and the controls with normal priors and the SDs with one of
``fastlogp.SD_FAMILIES``. Other cases (negative binomial, slope predictors, other priors) keep the PyMC graph. The group-level part (the SDs'
and correlations' priors, the non-centred level effects, their chain rule) is ``fastlogp``'s, shared with
the Gaussian density.

Parameter vector (PyMC's order of value variables): Intercept, b_treat, beta (p), log sd_intercept (T),
log sd_slope (T), logit rho_raw (T), z (L x 2). The likelihood sums over the rows of the unit table
(``families.unit_table``: cells or covariate patterns, else units), row r with weight w_r:

    eta_r = Intercept + A_g + (b_treat + B_g) t_r + x_r' beta
    binomial:  w_r [y_r eta_r - n_r log(1 + e^eta_r) + log C(n_r, y_r)]
    poisson:   w_r [y_r (eta_r + log n_r) - n_r e^eta_r - log y_r!]   (n_r: units in the cell, 1 per unit)

    ordinal:   w_r log(F(c_k - eta_r) - F(c_(k-1) - eta_r)), k = y_r, F logistic, c_(-1), c_K = -+1000
               (the rows: (pattern, category) with frequency weights; the intercept is in the cutpoints)

and d/d eta_r = w_r (y_r - n_r h(eta_r)), h the inverse link; the constants (binomial coefficients,
log y!) are summed once into the buffer, so the value equals PyMC's ``logp`` exactly. For ordinal
outcomes the parameter vector starts with the cutpoints on PyMC's ordered transform in place of the
Intercept.
tests/test_fastglm.py checks value and gradient against PyTensor's at random points.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln

from . import fastlogp
from .fastlogp import SD_FAMILIES, _prior_code, _typical_scale, model_class

#: the families the compiled density covers, and their code in the buffer
FAMILY_CODES = {"bernoulli": 0, "binomial": 0, "poisson": 1, "ordinal": 2}

# header slots of the flat buffer
_H_LEN, _H_G, _H_L, _H_T, _H_P, _H_R, _H_FAM = range(7)
_H_MUA, _H_SA, _H_MUB, _H_SB, _H_ETA, _H_SDF, _H_SD1, _H_SD2, _H_CONST = range(7, 16)
_O_LT, _O_GL, _O_RG, _O_RT, _O_RX, _O_RY, _O_RN, _O_RW, _O_BMU, _O_BSD = range(16, 26)
_H_NH, _O_CMU, _O_CSD = 26, 27, 28
_HEADER = 32


def supported(family: str, resolved, predictors=None) -> bool:
    """Whether the compiled density covers this family, these priors and this model."""
    return (
        family in FAMILY_CODES
        and (predictors is None or predictors.shape[1] == 0)
        and resolved["intercept"].family == "normal"
        and resolved["b"].family == "normal"
        and resolved["sd"].family in SD_FAMILIES
        and (family != "ordinal" or resolved["cutpoints"] is None or resolved["cutpoints"].family == "normal")
    )


def pack(design, ut, family: str, resolved, control_sds, cut_mu=None) -> tuple[np.ndarray, dict]:
    """The study as one flat float64 buffer (header of sizes and offsets, then the arrays), and the sizes.
    Ordinal: ``cut_mu`` the default cutpoint prior's centres (normal(cut_mu, 2.5), as build_glm_model)."""
    G, T, p = design.group_levels.shape[0], len(design.term_names), design.xx.shape[0]
    L = len(design.level_term)
    R = ut.n_rows
    ip, bp, b_mu, b_sd, eta = fastlogp.fixed_priors(resolved, control_sds, p)
    y = np.asarray(ut.y, dtype=float)
    n = np.asarray(ut.trials, dtype=float) if ut.trials is not None else np.ones(R)
    w = np.asarray(ut.weight, dtype=float)
    nh, c_mu, c_sd = 1, np.zeros(0), np.zeros(0)
    if FAMILY_CODES[family] == 0:
        const = float(np.sum(w * (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1))))
    elif FAMILY_CODES[family] == 1:
        const = float(np.sum(w * (y * np.log(n) - gammaln(y + 1))))
    else:  # ordinal: log P(y = k) has no constant
        const, nh = 0.0, len(cut_mu)
        cp = resolved["cutpoints"]
        c_mu = np.asarray(cut_mu, dtype=float) if cp is None else np.full(nh, cp.kwargs()["mu"])
        c_sd = np.full(nh, 2.5 if cp is None else cp.kwargs()["sigma"])
    arrays = [
        design.level_term,
        design.group_levels.reshape(-1),
        ut.group,
        ut.t,
        np.asarray(ut.X, dtype=float).reshape(-1),
        y,
        n,
        w,
        b_mu,
        b_sd,
        c_mu,
        c_sd,
    ]
    header = np.zeros(_HEADER)
    header[[_H_G, _H_L, _H_T, _H_P, _H_R, _H_FAM]] = G, L, T, p, R, FAMILY_CODES[family]
    header[[_H_MUA, _H_SA, _H_MUB, _H_SB, _H_ETA]] = ip["mu"], ip["sigma"], bp["mu"], bp["sigma"], eta
    header[[_H_SDF, _H_SD1, _H_SD2]] = _prior_code(resolved["sd"])
    header[_H_CONST] = const
    header[_H_NH] = nh
    off = _HEADER
    for slot, arr in zip([*range(_O_LT, _O_BSD + 1), _O_CMU, _O_CSD], arrays):
        header[slot] = off
        off += np.asarray(arr).size
    header[_H_LEN] = off
    buf = np.ascontiguousarray(np.concatenate([header] + [np.asarray(a, dtype=float).reshape(-1) for a in arrays]))
    sizes = dict(G=G, T=T, p=p, L=L, R=R, n_cut=nh if family == "ordinal" else 0, n_dim=nh + 1 + p + 3 * T + 2 * L)
    return buf, sizes


def _kernels():
    return fastlogp.glm_logp_grad, fastlogp.c_glm_logp, fastlogp.c_glm_expand


def logp_and_grad(x: np.ndarray, buf: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at x (for tests and checks)."""
    grad = np.empty(len(x))
    val = fastlogp.glm_logp_grad(np.asarray(x, dtype=float), buf, grad, np.empty(0))
    return float(val), grad


def expand_values(x: np.ndarray, buf: np.ndarray, n_expanded: int) -> np.ndarray:
    out = np.empty(n_expanded)
    fastlogp.glm_logp_grad(np.asarray(x, dtype=float), buf, np.empty(len(x)), out)
    return out


# --------------------------------------------------------------------------- nutpie model


def stored(sizes: dict) -> list[tuple[str, tuple[int, ...], tuple[str, ...]]]:
    """The values recorded per draw, in the order ``glm_logp_grad`` writes them: (name, shape, dims)."""
    G, T, p = sizes["G"], sizes["T"], sizes["p"]
    head = [("cutpoints", (sizes["n_cut"],), ("cutpoint",))] if sizes.get("n_cut") else [("Intercept", (), ())]
    return [
        *head,
        ("b_treat", (), ()),
        *([("beta", (p,), ("control",))] if p else []),
        ("sd_intercept", (T,), ("term",)),
        ("sd_slope", (T,), ("term",)),
        ("rho", (T,), ("term",)),
        ("group_intercept", (G,), ("group",)),
        ("group_slope", (G,), ("group",)),
        ("crossing_slope", (G,), ("group",)),
    ]


def compile_glm(design, ut, family: str, resolved, control_sds, coords: dict, cut_mu=None):
    """The nutpie model for one study: the cached callbacks and this study's buffer (no compilation after
    the first use on a machine)."""
    cls = model_class()
    buf, sizes = pack(design, ut, family, resolved, control_sds, cut_mu)
    rows = stored(sizes)
    names = tuple(s[0] for s in rows)
    dims = {s[0]: s[2] for s in rows}
    T, p, nh = sizes["T"], sizes["p"], int(buf[_H_NH])
    start = np.zeros(sizes["n_dim"])
    if family == "ordinal":  # PyMC's initval, the sorted centres, on the ordered transform's scale
        c0 = np.sort(np.asarray(cut_mu, dtype=float))
        start[0], start[1:nh] = c0[0], np.log(np.maximum(np.diff(c0), 1e-6))
    else:
        start[0] = resolved["intercept"].kwargs()["mu"]
    start[nh] = resolved["b"].kwargs()["mu"]
    start[nh + 1 : nh + 1 + p] = buf[int(buf[_O_BMU]) : int(buf[_O_BMU]) + p]
    start[nh + 1 + p : nh + 1 + p + 2 * T] = math.log(_typical_scale(resolved["sd"]))

    def init(seed):
        # PyMC's start (support point, jitter U(-1, 1) on the unconstrained scale), written out
        rng = np.random.default_rng(seed)
        return start + rng.uniform(-1, 1, size=start.size)

    used = {k: v for k, v in coords.items() if k in {"term", "group", "control", "cutpoint"}}
    return cls(
        dims=dims,
        buf=buf,
        sizes=sizes,
        names=names,
        shape_list=tuple(s[1] for s in rows),
        _coords=used,
        seed_init=init,
        kernels=_kernels,
    )
