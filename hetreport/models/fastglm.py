"""The non-Gaussian hierarchical model's log density and gradient in numba, compiled once per machine.

``build_glm_model`` (hierarchical.py) states the model as a PyMC graph, and nutpie compiles that graph for
every study (its index arrays and unit table are baked into it: 20-110 s per analysis of the bundled
example). This module computes the same log density - same parameter vector, same priors, same constants,
so the two routes agree point by point - and its analytic gradient from one flat float64 buffer holding
every size, index array, likelihood row and prior parameter of a study. The two C callbacks nutpie calls
are numba ``cfunc``s with ``cache=True`` and no data baked in, so they are compiled on the first use on a
machine and loaded from numba's disk cache by every later study of the class.

Families: bernoulli and binomial (logit link) and poisson (log link), correlated varying intercepts and
slopes for every term, controls or not, without slope predictors; the intercept, the common slope and the
controls with normal priors and the SDs with one of ``fastlogp.SD_FAMILIES``. Other cases (ordinal,
negative binomial, slope predictors, other priors) keep the PyMC graph. The group-level part (the SDs'
and correlations' priors, the non-centred level effects, their chain rule) is ``fastlogp``'s, shared with
the Gaussian density.

Parameter vector (PyMC's order of value variables): Intercept, b_treat, beta (p), log sd_intercept (T),
log sd_slope (T), logit rho_raw (T), z (L x 2). The likelihood sums over the rows of the unit table
(``families.unit_table``: cells or covariate patterns, else units), row r with weight w_r:

    eta_r = Intercept + A_g + (b_treat + B_g) t_r + x_r' beta
    binomial:  w_r [y_r eta_r - n_r log(1 + e^eta_r) + log C(n_r, y_r)]
    poisson:   w_r [y_r (eta_r + log n_r) - n_r e^eta_r - log y_r!]   (n_r: units in the cell, 1 per unit)

and d/d eta_r = w_r (y_r - n_r h(eta_r)), h the inverse link; the constants (binomial coefficients,
log y!) are summed once into the buffer, so the value equals PyMC's ``logp`` exactly.
tests/test_fastglm.py checks value and gradient against PyTensor's at random points.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit
from scipy.special import gammaln

from .fastlogp import SD_FAMILIES, _prior_code, _typical_scale, c_expand_sig, c_logp_sig, levels_backward, levels_forward, model_class
from .fastlogp import scales_backward, scales_logp

#: the families the compiled density covers, and their code in the buffer
FAMILY_CODES = {"bernoulli": 0, "binomial": 0, "poisson": 1}

# header slots of the flat buffer
_H_LEN, _H_G, _H_L, _H_T, _H_P, _H_R, _H_FAM = range(7)
_H_MUA, _H_SA, _H_MUB, _H_SB, _H_ETA, _H_SDF, _H_SD1, _H_SD2, _H_CONST = range(7, 16)
_O_LT, _O_GL, _O_RG, _O_RT, _O_RX, _O_RY, _O_RN, _O_RW, _O_BMU, _O_BSD = range(16, 26)
_HEADER = 32


def supported(family: str, resolved, predictors=None) -> bool:
    """Whether the compiled density covers this family, these priors and this model."""
    return (
        family in FAMILY_CODES
        and (predictors is None or predictors.shape[1] == 0)
        and resolved["intercept"].family == "normal"
        and resolved["b"].family == "normal"
        and resolved["sd"].family in SD_FAMILIES
    )


def pack(design, ut, family: str, resolved, control_sds) -> tuple[np.ndarray, dict]:
    """The study as one flat float64 buffer (header of sizes and offsets, then the arrays), and the sizes."""
    G, T, p = design.group_levels.shape[0], len(design.term_names), design.xx.shape[0]
    L = len(design.level_term)
    R = ut.n_rows
    ip, bp = resolved["intercept"].kwargs(), resolved["b"].kwargs()
    if control_sds is not None:
        b_mu, b_sd = np.zeros(p), np.asarray(control_sds, dtype=float)
    else:
        b_mu, b_sd = np.full(p, bp["mu"]), np.full(p, bp["sigma"])
    eta = resolved["cor"].params[0] if resolved["cor"] is not None else 2.0
    y = np.asarray(ut.y, dtype=float)
    n = np.asarray(ut.trials, dtype=float) if ut.trials is not None else np.ones(R)
    w = np.asarray(ut.weight, dtype=float)
    if FAMILY_CODES[family] == 0:
        const = float(np.sum(w * (gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1))))
    else:
        const = float(np.sum(w * (y * np.log(n) - gammaln(y + 1))))
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
    ]
    header = np.zeros(_HEADER)
    header[[_H_G, _H_L, _H_T, _H_P, _H_R, _H_FAM]] = G, L, T, p, R, FAMILY_CODES[family]
    header[[_H_MUA, _H_SA, _H_MUB, _H_SB, _H_ETA]] = ip["mu"], ip["sigma"], bp["mu"], bp["sigma"], eta
    header[[_H_SDF, _H_SD1, _H_SD2]] = _prior_code(resolved["sd"])
    header[_H_CONST] = const
    off = _HEADER
    for slot, arr in zip(range(_O_LT, _O_BSD + 1), arrays):
        header[slot] = off
        off += np.asarray(arr).size
    header[_H_LEN] = off
    buf = np.ascontiguousarray(np.concatenate([header] + [np.asarray(a, dtype=float).reshape(-1) for a in arrays]))
    sizes = dict(G=G, T=T, p=p, L=L, R=R, n_dim=2 + p + 3 * T + 2 * L)
    return buf, sizes


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True, error_model="numpy")
def glm_logp_grad(x, buf, grad, expand):
    """Log density at x (unconstrained), its gradient into grad; expand (or an empty array) gets the stored
    values: Intercept, b_treat, beta, sd_intercept, sd_slope, rho, group_intercept, group_slope, crossing_slope."""
    G, L, T, p, R, fam = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5]), buf[6]
    mu_a, s_a, mu_b, s_b, eta_lkj = buf[7], buf[8], buf[9], buf[10], buf[11]
    sdf, sd1, sd2, const = buf[12], buf[13], buf[14], buf[15]
    o_lt, o_gl, o_rg, o_rt, o_rx = int(buf[16]), int(buf[17]), int(buf[18]), int(buf[19]), int(buf[20])
    o_ry, o_rn, o_rw, o_bmu, o_bsd = int(buf[21]), int(buf[22]), int(buf[23]), int(buf[24]), int(buf[25])
    i_beta, i_sa, i_z = 2, 2 + p, 2 + p + 3 * T
    for i in range(grad.size):
        grad[i] = 0.0
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    a0, bt = x[0], x[1]
    lp = -0.5 * ((a0 - mu_a) / s_a) ** 2 - math.log(s_a) - half_log_2pi
    lp += -0.5 * ((bt - mu_b) / s_b) ** 2 - math.log(s_b) - half_log_2pi
    grad[0] = -(a0 - mu_a) / (s_a * s_a)
    grad[1] = -(bt - mu_b) / (s_b * s_b)
    for j in range(p):
        mu, s = buf[o_bmu + j], buf[o_bsd + j]
        lp += -0.5 * ((x[i_beta + j] - mu) / s) ** 2 - math.log(s) - half_log_2pi
        grad[i_beta + j] = -(x[i_beta + j] - mu) / (s * s)
    sa = np.empty(T)
    sb = np.empty(T)
    rho = np.empty(T)
    crho = np.empty(T)
    drho_dx = np.empty(T)
    lp += scales_logp(x, grad, i_sa, T, sdf, sd1, sd2, eta_lkj, sa, sb, rho, crho, drho_dx)
    a_l = np.empty(L)
    b_l = np.empty(L)
    A = np.empty(G)
    B = np.empty(G)
    lp += levels_forward(x, grad, i_z, buf, o_lt, o_gl, L, G, T, sa, sb, rho, crho, a_l, b_l, A, B)
    if expand.size:
        expand[0] = a0
        expand[1] = bt
        e = 2
        for j in range(p):
            expand[e] = x[i_beta + j]
            e += 1
        for k in range(T):
            expand[e + k] = sa[k]
            expand[e + T + k] = sb[k]
            expand[e + 2 * T + k] = rho[k]
        e += 3 * T
        for g in range(G):
            expand[e + g] = a0 + A[g]
            expand[e + G + g] = bt + B[g]
            expand[e + 2 * G + g] = b_l[int(buf[o_gl + g * T + T - 1])]
        return lp
    # the likelihood over the unit table's rows, and d lp / d eta per row into the groups and controls
    gA = np.zeros(G)
    gB = np.zeros(G)
    ll = const
    for r in range(R):
        g = int(buf[o_rg + r])
        t = buf[o_rt + r]
        e = a0 + A[g] + (bt + B[g]) * t
        for j in range(p):
            e += buf[o_rx + r * p + j] * x[i_beta + j]
        y, n, w = buf[o_ry + r], buf[o_rn + r], buf[o_rw + r]
        if fam == 0.0:
            # log(1 + e^eta) and the logistic function, stable on both sides
            if e > 0:
                ee = math.exp(-e)
                sp = e + math.log1p(ee)
                h = 1.0 / (1.0 + ee)
            else:
                ee = math.exp(e)
                sp = math.log1p(ee)
                h = ee / (1.0 + ee)
            ll += w * (y * e - n * sp)
            ge = w * (y - n * h)
        else:
            mu = math.exp(e)
            ll += w * (y * e - n * mu)
            ge = w * (y - n * mu)
        gA[g] += ge
        gB[g] += ge * t
        for j in range(p):
            grad[i_beta + j] += ge * buf[o_rx + r * p + j]
    lp += ll
    for g in range(G):
        grad[0] += gA[g]
        grad[1] += gB[g]
    dsa = np.zeros(T)
    dsb = np.zeros(T)
    drho = np.zeros(T)
    levels_backward(x, grad, i_z, buf, o_lt, o_gl, L, G, T, sa, sb, rho, crho, gA, gB, dsa, dsb, drho)
    scales_backward(grad, i_sa, T, sa, sb, drho_dx, dsa, dsb, drho)
    return lp


@numba.cfunc(c_logp_sig, cache=True, error_model="numpy")
def c_glm_logp(dim, x_, out_, logp_, data_):
    head = numba.carray(data_, (1,), np.float64)
    buf = numba.carray(data_, (int(head[0]),), np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    val = glm_logp_grad(x, buf, out, np.empty(0))
    logp[0] = val
    if not np.isfinite(val):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


@numba.cfunc(c_expand_sig, cache=True, error_model="numpy")
def c_glm_expand(dim, n_expanded, x_, out_, data_):
    head = numba.carray(data_, (1,), np.float64)
    buf = numba.carray(data_, (int(head[0]),), np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (n_expanded,))
    grad = np.empty(dim)
    glm_logp_grad(x, buf, grad, out)
    return 0


def _kernels():
    return glm_logp_grad, c_glm_logp, c_glm_expand


def logp_and_grad(x: np.ndarray, buf: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at x (for tests and checks)."""
    grad = np.empty(len(x))
    val = glm_logp_grad(np.asarray(x, dtype=float), buf, grad, np.empty(0))
    return float(val), grad


def expand_values(x: np.ndarray, buf: np.ndarray, n_expanded: int) -> np.ndarray:
    out = np.empty(n_expanded)
    glm_logp_grad(np.asarray(x, dtype=float), buf, np.empty(len(x)), out)
    return out


# --------------------------------------------------------------------------- nutpie model


def stored(sizes: dict) -> list[tuple[str, tuple[int, ...], tuple[str, ...]]]:
    """The values recorded per draw, in the order ``glm_logp_grad`` writes them: (name, shape, dims)."""
    G, T, p = sizes["G"], sizes["T"], sizes["p"]
    return [
        ("Intercept", (), ()),
        ("b_treat", (), ()),
        *([("beta", (p,), ("control",))] if p else []),
        ("sd_intercept", (T,), ("term",)),
        ("sd_slope", (T,), ("term",)),
        ("rho", (T,), ("term",)),
        ("group_intercept", (G,), ("group",)),
        ("group_slope", (G,), ("group",)),
        ("crossing_slope", (G,), ("group",)),
    ]


def compile_glm(design, ut, family: str, resolved, control_sds, coords: dict):
    """The nutpie model for one study: the cached callbacks and this study's buffer (no compilation after
    the first use on a machine)."""
    cls = model_class()
    buf, sizes = pack(design, ut, family, resolved, control_sds)
    rows = stored(sizes)
    names = tuple(s[0] for s in rows)
    dims = {s[0]: s[2] for s in rows}
    T, p = sizes["T"], sizes["p"]
    start = np.zeros(sizes["n_dim"])
    start[0] = resolved["intercept"].kwargs()["mu"]
    start[1] = resolved["b"].kwargs()["mu"]
    start[2 : 2 + p] = buf[int(buf[_O_BMU]) : int(buf[_O_BMU]) + p]
    start[2 + p : 2 + p + 2 * T] = math.log(_typical_scale(resolved["sd"]))

    def init(seed):
        # PyMC's start (support point, jitter U(-1, 1) on the unconstrained scale), written out
        rng = np.random.default_rng(seed)
        return start + rng.uniform(-1, 1, size=start.size)

    used = {k: v for k, v in coords.items() if k in {"term", "group", "control"}}
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
