"""The collapsed Gaussian model's log density and gradient, written by hand in numba, compiled once per machine.

``build_collapsed_model`` (hierarchical.py) states the model as a PyMC graph; PyTensor and numba compile
that graph again for every study, because its index arrays are baked into it (84 s for the Tomz-Weeks
respondents, 111 s for the scenario analysis, measured in benchmarks/README.md). This module computes the
same log density (same parameter vector, same constants) and its analytic gradient from one flat float64
buffer that holds every size, index array, sufficient statistic and prior parameter of a study. The two
C callbacks nutpie calls (log density + gradient, and the values it stores per draw) are numba ``cfunc``s
with ``cache=True`` and no data baked in: compiled on the first use on a machine, loaded from numba's disk
cache by every later study, analysis and simulation replication of the model class (Gaussian, correlated,
collapsed coarse terms, with or without controls and slope predictors: the predictors' lambda and gamma are
integrated out with the collapsed coefficients, their (G, q) table Z in the buffer).

Parameter vector (PyMC's order of value variables, so the two routes can be compared point by point):
beta (p, controls), log sd_intercept (T), log sd_slope (T), logit rho_raw (T), log sigma, z (L_rest x 2).

The gradient, with M = P^-1 v (gamma_mean) and Pinv = P^-1: d/dv = M, d/dP = -(Pinv + M M') / 2, and the
chain rule through P = H / sigma^2 + prior precision, v = m0 + D'h / sigma^2, h = cell_sy - n r - sxb,
r = (A, A + B), A and B sums of the rest levels' effects. tests/test_fastlogp.py checks value and gradient
against PyTensor's at random points to 1e-8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import njit, types

from .collapse import collapse_design

#: prior families of the SDs (and sigma) the compiled density knows; others use the PyMC graph
SD_FAMILIES = {"halfnormal": 0, "halfstudent_t": 1, "halfcauchy": 2, "exponential": 3}

# header slots of the flat buffer
_H_LEN, _H_G, _H_LR, _H_T, _H_LK, _H_P, _H_TK, _H_N, _H_YY = range(9)
_H_MUA, _H_SA, _H_MUB, _H_SB, _H_ETA = 9, 10, 11, 12, 13
_H_SDF, _H_SD1, _H_SD2, _H_SGF, _H_SG1, _H_SG2, _H_CROSS = 14, 15, 16, 17, 18, 19, 20
_O_LT, _O_GL, _O_LK, _O_CN, _O_CSY, _O_CSX, _O_XX, _O_XY, _O_D, _O_HH, _O_BMU, _O_BSD = range(21, 33)
_H_KC = 33  # collapsed terms (columns of the group -> collapsed level table in the D slot)
_H_Q, _O_Z = 34, 35  # slope predictors (q) and their (G, q) table Z: gamma_Z, lambda_Z appended to gamma
_HEADER = 40


def supported(resolved: dict) -> bool:
    """Whether the compiled density covers these priors (the collapse already needs normal intercept and b)."""
    return resolved["sd"].family in SD_FAMILIES and resolved["sigma"] is not None and resolved["sigma"].family in SD_FAMILIES


def _prior_code(prior) -> tuple[float, float, float]:
    kw = prior.kwargs()
    fam = prior.family
    if fam == "halfnormal":
        return 0.0, kw["sigma"], 0.0
    if fam == "halfstudent_t":
        return 1.0, kw["nu"], kw["sigma"]
    if fam == "halfcauchy":
        return 2.0, kw["beta"], 0.0
    return 3.0, kw["lam"], 0.0


def fixed_priors(resolved: dict, control_sds, p: int):
    """The intercept and b priors' parameters, the p controls' prior means and SDs (their own scales when given, else
    the b prior), and the LKJ eta (2 when the model has no correlation): shared by every compiled density."""
    ip, bp = resolved["intercept"].kwargs(), resolved["b"].kwargs()
    if control_sds is not None:
        b_mu, b_sd = np.zeros(p), np.asarray(control_sds, dtype=float)
    else:
        b_mu, b_sd = np.full(p, bp["mu"]), np.full(p, bp["sigma"])
    eta = resolved["cor"].params[0] if resolved["cor"] is not None else 2.0
    return ip, bp, b_mu, b_sd, eta


def pack(design, resolved: dict, control_sds, collapse, predictors=None) -> tuple[np.ndarray, dict]:
    """The study as one flat float64 buffer (header of sizes and offsets, then the arrays), and the sizes.
    ``predictors``: the (G, q) centred slope predictors, whose coefficients are integrated out with gamma."""
    k_idx, r_idx, kept, member, D, H, gl_rest = collapse_design(design, collapse, predictors)
    lt = design.level_term
    G, T, p = design.group_levels.shape[0], len(design.term_names), design.xx.shape[0]
    LK, Lr = len(k_idx), len(r_idx)
    ip, bp, b_mu, b_sd, eta = fixed_priors(resolved, control_sds, p)
    # D (the incidence of gamma in the cell means) is sparse: each group is in one level of every collapsed term
    gk = np.array([np.flatnonzero(row) for row in member]).reshape(G, -1) if LK else np.zeros((G, 0))
    Z = np.zeros((G, 0)) if predictors is None else np.asarray(predictors, dtype=float).reshape(G, -1)
    q = Z.shape[1]
    arrays = [
        lt[r_idx],
        gl_rest.reshape(-1) if Lr else np.zeros(0),
        lt[k_idx],
        design.cell_n.reshape(-1),
        design.cell_sy.reshape(-1),
        design.cell_sx.reshape(-1),
        design.xx.reshape(-1),
        design.xy.reshape(-1),
        gk.reshape(-1),
        H.reshape(-1),
        b_mu,
        b_sd,
    ]
    arrays.append(Z.reshape(-1))
    header = np.zeros(_HEADER)
    cross = bool(Lr) and kept[-1] == T - 1
    header[[_H_G, _H_LR, _H_T, _H_LK, _H_P, _H_TK, _H_N, _H_YY]] = G, Lr, T, LK, p, (len(kept) if Lr else 0), design.n, design.yy
    header[[_H_MUA, _H_SA, _H_MUB, _H_SB, _H_ETA]] = ip["mu"] - design.y_mean, ip["sigma"], bp["mu"], bp["sigma"], eta
    header[[_H_SDF, _H_SD1, _H_SD2]] = _prior_code(resolved["sd"])
    header[[_H_SGF, _H_SG1, _H_SG2]] = _prior_code(resolved["sigma"])
    header[_H_CROSS] = float(cross)
    header[_H_KC] = gk.shape[1]
    header[_H_Q] = q
    off = _HEADER
    for slot, arr in zip(list(range(_O_LT, _O_BSD + 1)) + [_O_Z], arrays, strict=True):
        header[slot] = off
        off += arr.size
    header[_H_LEN] = off
    buf = np.ascontiguousarray(np.concatenate([header] + [np.asarray(a, dtype=float).reshape(-1) for a in arrays]))
    sizes = dict(G=G, T=T, p=p, LK=LK, Lr=Lr, q=q, d=2 + 2 * LK + 2 * q, cross=cross, n_dim=p + 3 * T + 1 + 2 * Lr)
    return buf, sizes


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True, inline="always", error_model="numpy")
def softplus(x):
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


@njit(cache=True, error_model="numpy")
def pos_logp(fam, a1, a2, x):
    """log density of a positive prior at x and its derivative in x."""
    if fam == 0.0:  # halfnormal(sigma=a1)
        return 0.5 * math.log(2 / math.pi) - math.log(a1) - x * x / (2 * a1 * a1), -x / (a1 * a1)
    if fam == 1.0:  # halfstudent_t(nu=a1, sigma=a2)
        nu, s = a1, a2
        q = x * x / (nu * s * s)
        lp = (
            math.log(2.0)
            + math.lgamma((nu + 1) / 2)
            - math.lgamma(nu / 2)
            - 0.5 * math.log(nu * math.pi * s * s)
            - (nu + 1) / 2 * math.log1p(q)
        )
        return lp, -(nu + 1) / 2 * (2 * x / (nu * s * s)) / (1 + q)
    if fam == 2.0:  # halfcauchy(beta=a1)
        q = (x / a1) ** 2
        return math.log(2 / math.pi) - math.log(a1) - math.log1p(q), -2 * x / (a1 * a1) / (1 + q)
    return math.log(a1) - a1 * x, -a1  # exponential(lam=a1)


@njit(cache=True, error_model="numpy")
def scales_logp(x, grad, i_sa, T, sdf, sd1, sd2, eta, sa, sb, rho, crho, drho_dx):
    """The group-level scales, shared by every family's compiled density: x[i_sa : i_sa + 3T] holds
    log sd_intercept (T), log sd_slope (T) and logit rho_raw (T). Their priors (the SD prior family
    sdf with parameters sd1, sd2; rho_raw ~ Beta(eta, eta), the 2x2 LKJ marginal) plus the log Jacobians,
    returned; their gradients added to grad; sa, sb, rho, sqrt(1 - rho^2) and d rho / d x filled in."""
    i_sb, i_rho = i_sa + T, i_sa + 2 * T
    lp = 0.0
    betaln_eta = 2 * math.lgamma(eta) - math.lgamma(2 * eta)
    for k in range(T):
        u = x[i_sa + k]
        sa[k] = math.exp(u)
        l1, g1 = pos_logp(sdf, sd1, sd2, sa[k])
        lp += l1 + u
        grad[i_sa + k] += g1 * sa[k] + 1.0
        u = x[i_sb + k]
        sb[k] = math.exp(u)
        l1, g1 = pos_logp(sdf, sd1, sd2, sb[k])
        lp += l1 + u
        grad[i_sb + k] += g1 * sb[k] + 1.0
        xr = x[i_rho + k]
        lu, l1u = -softplus(-xr), -softplus(xr)
        uu = math.exp(lu)
        lp += eta * lu + eta * l1u - betaln_eta
        grad[i_rho + k] += eta * (1 - uu) - eta * uu
        rho[k] = 2 * uu - 1
        crho[k] = math.sqrt(1 - rho[k] ** 2)
        drho_dx[k] = 2 * uu * (1 - uu)
    return lp


@njit(cache=True, error_model="numpy")
def levels_forward(x, grad, i_z, buf, o_lt, o_gl, Lr, G, Tk, sa, sb, rho, crho, a_r, b_r, A, B):
    """The sampled (non-centred) level effects, shared by every family: z = x[i_z : i_z + 2 Lr] ~ N(0, 1),
    level l of term k has intercept a_l = sa_k z_l0 and slope b_l = sb_k (rho_k z_l0 + sqrt(1 - rho_k^2) z_l1)
    (buf[o_lt + l] = k); group g sums its Tk levels (buf[o_gl + g Tk + j]) into A_g, B_g. Returns the log prior of z."""
    lp = 0.0
    for l in range(Lr):
        k = int(buf[o_lt + l])
        z0, z1 = x[i_z + 2 * l], x[i_z + 2 * l + 1]
        lp += -0.5 * (z0 * z0 + z1 * z1) - math.log(2 * math.pi)
        grad[i_z + 2 * l] -= z0
        grad[i_z + 2 * l + 1] -= z1
        a_r[l] = sa[k] * z0
        b_r[l] = sb[k] * (rho[k] * z0 + crho[k] * z1)
    for g in range(G):
        A[g] = 0.0
        B[g] = 0.0
        for j in range(Tk):
            l = int(buf[o_gl + g * Tk + j])
            A[g] += a_r[l]
            B[g] += b_r[l]
    return lp


@njit(cache=True, error_model="numpy")
def levels_backward(x, grad, i_z, buf, o_lt, o_gl, Lr, G, Tk, sa, sb, rho, crho, gA, gB, dsa, dsb, drho):
    """The chain rule of ``levels_forward``: given d lp / d A_g and d lp / d B_g, add the gradient in z to
    grad and the derivatives in sa, sb, rho (natural scale) to dsa, dsb, drho."""
    ga = np.zeros(Lr)
    gb = np.zeros(Lr)
    for g in range(G):
        for j in range(Tk):
            l = int(buf[o_gl + g * Tk + j])
            ga[l] += gA[g]
            gb[l] += gB[g]
    for l in range(Lr):
        k = int(buf[o_lt + l])
        z0, z1 = x[i_z + 2 * l], x[i_z + 2 * l + 1]
        c = crho[k]
        dsa[k] += ga[l] * z0
        grad[i_z + 2 * l] += ga[l] * sa[k] + gb[l] * sb[k] * rho[k]
        dsb[k] += gb[l] * (rho[k] * z0 + c * z1)
        drho[k] += gb[l] * sb[k] * (z0 - rho[k] / c * z1)
        grad[i_z + 2 * l + 1] += gb[l] * sb[k] * c


@njit(cache=True, error_model="numpy")
def scales_backward(grad, i_sa, T, sa, sb, drho_dx, dsa, dsb, drho):
    """The chain rule to the unconstrained scales (log SDs, logit rho_raw) of ``scales_logp``."""
    for k in range(T):
        grad[i_sa + k] += dsa[k] * sa[k]
        grad[i_sa + T + k] += dsb[k] * sb[k]
        grad[i_sa + 2 * T + k] += drho[k] * drho_dx[k]


@njit(cache=True, error_model="numpy")
def pinv(Li, d, a, b):
    """entry (a, b) of P^-1 = Linv' Linv"""
    s = 0.0
    for k in range(max(a, b), d):
        s += Li[k, a] * Li[k, b]
    return s


@njit(cache=True, error_model="numpy")
def logp_grad(x, buf, grad, expand):
    """Log density at x (unconstrained), its gradient into grad; expand (or an empty array) gets the
    stored values: beta, sd_intercept, sd_slope, rho, sigma, A_rest, B_rest, [crossing_rest], gamma_mean."""
    G, Lr, T, LK, p, Tk = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5]), int(buf[6])
    n_obs, yy = buf[7], buf[8]
    mu_a, s_a, mu_b, s_b, eta = buf[9], buf[10], buf[11], buf[12], buf[13]
    sdf, sd1, sd2, sgf, sg1, sg2 = buf[14], buf[15], buf[16], buf[17], buf[18], buf[19]
    cross = buf[20] > 0.5
    o_lt, o_gl, o_lk, o_cn, o_csy, o_csx = int(buf[21]), int(buf[22]), int(buf[23]), int(buf[24]), int(buf[25]), int(buf[26])
    o_xx, o_xy, o_D, o_H, o_bmu, o_bsd = int(buf[27]), int(buf[28]), int(buf[29]), int(buf[30]), int(buf[31]), int(buf[32])
    q, o_Z = int(buf[34]), int(buf[35])  # slope predictors: gamma_Z at iz0 + j, lambda_Z at iz0 + q + j (b prior)
    iz0 = 2 + 2 * LK
    d = iz0 + 2 * q
    G2 = 2 * G
    i_sa, i_sig, i_z = p, p + 3 * T, p + 3 * T + 1
    for i in range(grad.size):
        grad[i] = 0.0
    lp = 0.0
    # controls: normal priors
    beta = x[:p]
    for j in range(p):
        mu, s = buf[o_bmu + j], buf[o_bsd + j]
        lp += -0.5 * ((beta[j] - mu) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
        grad[j] += -(beta[j] - mu) / (s * s)
    # SDs (log transform), rho_raw (logit transform), sigma
    sa = np.empty(T)
    sb = np.empty(T)
    rho = np.empty(T)
    drho_dx = np.empty(T)
    crho = np.empty(T)
    lp += scales_logp(x, grad, i_sa, T, sdf, sd1, sd2, eta, sa, sb, rho, crho, drho_dx)
    u = x[i_sig]
    sig = math.exp(u)
    l1, g1 = pos_logp(sgf, sg1, sg2, sig)
    lp += l1 + u
    grad[i_sig] += g1 * sig + 1.0
    # rest levels (non-centred) -> A, B
    a_r = np.empty(Lr)
    b_r = np.empty(Lr)
    A = np.zeros(G)
    B = np.zeros(G)
    lp += levels_forward(x, grad, i_z, buf, o_lt, o_gl, Lr, G, Tk, sa, sb, rho, crho, a_r, b_r, A, B)
    # likelihood through the sufficient statistics
    r = np.empty(G2)
    for g in range(G):
        r[2 * g] = A[g]
        r[2 * g + 1] = A[g] + B[g]
    sxb = np.zeros(G2)
    for c in range(G2):
        for j in range(p):
            sxb[c] += buf[o_csx + c * p + j] * beta[j]
    quad = yy
    h = np.empty(G2)
    for c in range(G2):
        cn, cs = buf[o_cn + c], buf[o_csy + c]
        quad += -2 * r[c] * cs + cn * r[c] * r[c] + 2 * r[c] * sxb[c]
        h[c] = cs - cn * r[c] - sxb[c]
    for j in range(p):
        quad -= 2 * buf[o_xy + j] * beta[j]
        for k in range(p):
            quad += beta[j] * buf[o_xx + j * p + k] * beta[k]
    s2 = sig * sig
    # P = H / sigma^2 + prior precision; v = m0 + D'h / sigma^2
    P = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            P[i, j] = buf[o_H + i * d + j] / s2
    P[0, 0] += 1 / s_a**2
    P[1, 1] += 1 / s_b**2
    for i in range(iz0, d):
        P[i, i] += 1 / s_b**2
    for i in range(LK):
        k = int(buf[o_lk + i])
        om = 1 - rho[k] ** 2
        ia, ib = 2 + i, 2 + LK + i
        P[ia, ia] += 1 / (sa[k] ** 2 * om)
        P[ib, ib] += 1 / (sb[k] ** 2 * om)
        P[ia, ib] -= rho[k] / (sa[k] * sb[k] * om)
        P[ib, ia] -= rho[k] / (sa[k] * sb[k] * om)
    v = np.zeros(d)
    v[0] = mu_a / s_a**2
    v[1] = mu_b / s_b**2
    for i in range(iz0, d):
        v[i] = mu_b / s_b**2
    Kc = int(buf[33])
    Dh = np.zeros(d)
    for g in range(G):
        h0, h1 = h[2 * g], h[2 * g + 1]
        Dh[0] += h0 + h1
        Dh[1] += h1
        for j in range(Kc):
            i = int(buf[o_D + g * Kc + j])
            Dh[2 + i] += h0 + h1
            Dh[2 + LK + i] += h1
        for j in range(q):
            zz = buf[o_Z + g * q + j]
            Dh[iz0 + j] += (h0 + h1) * zz
            Dh[iz0 + q + j] += h1 * zz
    for i in range(d):
        v[i] += Dh[i] / s2
    # Cholesky P = L L'
    L = np.zeros((d, d))
    for j in range(d):
        s = P[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if s <= 0.0:
            return -np.inf
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, d):
            s = P[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / L[j, j]
    w = np.empty(d)
    for i in range(d):
        s = v[i]
        for k in range(i):
            s -= L[i, k] * w[k]
        w[i] = s / L[i, i]
    M = np.empty(d)
    for i in range(d - 1, -1, -1):
        s = w[i]
        for k in range(i + 1, d):
            s -= L[k, i] * M[k]
        M[i] = s / L[i, i]
    logdet_L = 0.0
    ww = 0.0
    for i in range(d):
        logdet_L += math.log(L[i, i])
        ww += w[i] * w[i]
    logdet_prior = 2 * math.log(s_a * s_b) + 4 * q * math.log(s_b)
    for i in range(LK):
        k = int(buf[o_lk + i])
        logdet_prior += 2 * math.log(sa[k] * sb[k]) + math.log(1 - rho[k] ** 2)
    lp += (
        -n_obs * math.log(sig)
        - 0.5 * n_obs * math.log(2 * math.pi)
        - quad / (2 * s2)
        - 0.5 * logdet_prior
        - logdet_L
        + 0.5 * ww
        - 0.5 * (mu_a**2 / s_a**2 + (1 + 2 * q) * mu_b**2 / s_b**2)
    )
    if expand.size:
        e = 0
        for j in range(p):
            expand[e] = beta[j]
            e += 1
        for k in range(T):
            expand[e] = sa[k]
            expand[e + T] = sb[k]
            expand[e + 2 * T] = rho[k]
            e += 1
        e += 2 * T
        expand[e] = sig
        e += 1
        for g in range(G):
            expand[e + g] = A[g]
            expand[e + G + g] = B[g]
        e += 2 * G
        if cross:
            for g in range(G):
                expand[e + g] = b_r[int(buf[o_gl + g * Tk + Tk - 1])]
            e += G
        for i in range(d):
            expand[e + i] = M[i]
        return lp
    # ---- gradient
    # Pinv entries needed: the diagonal and the (ia, ib) pairs; Linv = L^-1 (lower)
    Li = np.zeros((d, d))
    for j in range(d):
        Li[j, j] = 1 / L[j, j]
        for i in range(j + 1, d):
            s = 0.0
            for k in range(j, i):
                s -= L[i, k] * Li[k, j]
            Li[i, j] = s / L[i, i]

    # sigma: d/dsigma of -n log s - quad/(2 s^2) + terms through P and v
    dsig = -n_obs / sig + quad / (sig**3)
    # through v: dv/dsig = -2 Dh / s^3 ; through P: dP/dsig = -2 H / s^3 = -2 (P - Lambda) / s
    # sum_ij G_ij dP_ij with G = -(Pinv + M M')/2:  -(1/2)[tr(Pinv dP) + M' dP M]
    # tr(Pinv (P - Lambda)) = d - tr(Pinv Lambda); M'(P - Lambda)M = M'v - M'Lambda M
    MDh = 0.0
    for i in range(d):
        MDh += M[i] * Dh[i]
    dsig += -2 * MDh / sig**3
    trPL = pinv(Li, d, 0, 0) / s_a**2 + pinv(Li, d, 1, 1) / s_b**2
    MLM = M[0] ** 2 / s_a**2 + M[1] ** 2 / s_b**2
    for i in range(iz0, d):
        trPL += pinv(Li, d, i, i) / s_b**2
        MLM += M[i] ** 2 / s_b**2
    for i in range(LK):
        k = int(buf[o_lk + i])
        om = 1 - rho[k] ** 2
        ia, ib = 2 + i, 2 + LK + i
        laa, lbb, lab = 1 / (sa[k] ** 2 * om), 1 / (sb[k] ** 2 * om), -rho[k] / (sa[k] * sb[k] * om)
        trPL += pinv(Li, d, ia, ia) * laa + pinv(Li, d, ib, ib) * lbb + 2 * pinv(Li, d, ia, ib) * lab
        MLM += M[ia] ** 2 * laa + M[ib] ** 2 * lbb + 2 * M[ia] * M[ib] * lab
    MPM = 0.0
    for i in range(d):
        MPM += M[i] * v[i]
    dsig += -0.5 * ((d - trPL) + (MPM - MLM)) * (-2 / sig)
    grad[i_sig] += dsig * sig
    # collapsed levels' prior precision and log-determinant
    dsa = np.zeros(T)
    dsb = np.zeros(T)
    drho = np.zeros(T)
    for i in range(LK):
        k = int(buf[o_lk + i])
        a, b, rr = sa[k], sb[k], rho[k]
        om = 1 - rr * rr
        ia, ib = 2 + i, 2 + LK + i
        Gaa = -0.5 * (pinv(Li, d, ia, ia) + M[ia] * M[ia])
        Gbb = -0.5 * (pinv(Li, d, ib, ib) + M[ib] * M[ib])
        Gab = -0.5 * (pinv(Li, d, ia, ib) + M[ia] * M[ib])
        dsa[k] += Gaa * (-2 / (a**3 * om)) + 2 * Gab * (rr / (a * a * b * om)) - 1 / a
        dsb[k] += Gbb * (-2 / (b**3 * om)) + 2 * Gab * (rr / (a * b * b * om)) - 1 / b
        drho[k] += (
            Gaa * (2 * rr / (a * a * om * om))
            + Gbb * (2 * rr / (b * b * om * om))
            + 2 * Gab * (-(1 + rr * rr) / (a * b * om * om))
            + rr / om
        )
    # through h (v = ... + D'h/s2) and quad: d/dr and d/dbeta
    gh = np.empty(G2)
    for g in range(G):
        s0, s1 = M[0], M[1]
        for j in range(Kc):
            i = int(buf[o_D + g * Kc + j])
            s0 += M[2 + i]
            s1 += M[2 + LK + i]
        for j in range(q):
            zz = buf[o_Z + g * q + j]
            s0 += M[iz0 + j] * zz
            s1 += M[iz0 + q + j] * zz
        gh[2 * g] = s0 / s2
        gh[2 * g + 1] = (s0 + s1) / s2
    gA = np.zeros(G)
    gB = np.zeros(G)
    for c in range(G2):
        cn, cs = buf[o_cn + c], buf[o_csy + c]
        gr = -(-2 * cs + 2 * cn * r[c] + 2 * sxb[c]) / (2 * s2) - cn * gh[c]
        gsxb = -(2 * r[c]) / (2 * s2) - gh[c]
        g = c // 2
        gA[g] += gr
        if c % 2 == 1:
            gB[g] += gr
        for j in range(p):
            grad[j] += gsxb * buf[o_csx + c * p + j]
    for j in range(p):
        s = -2 * buf[o_xy + j]
        for k in range(p):
            s += 2 * buf[o_xx + j * p + k] * beta[k]
        grad[j] += -s / (2 * s2)
    levels_backward(x, grad, i_z, buf, o_lt, o_gl, Lr, G, Tk, sa, sb, rho, crho, gA, gB, dsa, dsb, drho)
    scales_backward(grad, i_sa, T, sa, sb, drho_dx, dsa, dsb, drho)
    return lp


c_logp_sig = types.int64(
    types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.CPointer(types.double), types.voidptr
)


@numba.cfunc(c_logp_sig, cache=True, error_model="numpy")
def c_logp(dim, x_, out_, logp_, data_):
    head = numba.carray(data_, (1,), np.float64)
    buf = numba.carray(data_, (int(head[0]),), np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    logp = numba.carray(logp_, (1,))
    val = logp_grad(x, buf, out, np.empty(0))
    logp[0] = val
    if not np.isfinite(val):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


c_expand_sig = types.int64(types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.voidptr)


@numba.cfunc(c_expand_sig, cache=True, error_model="numpy")
def c_expand(dim, n_expanded, x_, out_, data_):
    head = numba.carray(data_, (1,), np.float64)
    buf = numba.carray(data_, (int(head[0]),), np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (n_expanded,))
    grad = np.empty(dim)
    logp_grad(x, buf, grad, out)
    return 0


def _kernels():
    return logp_grad, c_logp, c_expand


# --------------------------------------------------------------------------- the non-Gaussian kernels (fastglm)
# here, not in fastglm.py: numba's disk cache is invalidated per source file, so the kernels that call the
# shared group-level functions above live in their file and are recompiled whenever those change


@njit(cache=True, error_model="numpy")
def glm_logp_grad(x, buf, grad, expand):
    """Log density at x (unconstrained), its gradient into grad; expand (or an empty array) gets the stored
    values: Intercept (ordinal: the cutpoints), b_treat, beta, sd_intercept, sd_slope, rho, group_intercept,
    group_slope, crossing_slope. Family codes: 0 binomial (logit), 1 poisson (log), 2 ordinal (cumulative
    logit, P(y <= k) = logistic(c_k - eta); the cutpoints under PyMC's ordered transform, c_0 = x_0,
    c_j = c_(j-1) + exp(x_j), and the intercept absorbed by them)."""
    G, L, T, p, R, fam = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5]), buf[6]
    mu_a, s_a, mu_b, s_b, eta_lkj = buf[7], buf[8], buf[9], buf[10], buf[11]
    sdf, sd1, sd2, const = buf[12], buf[13], buf[14], buf[15]
    o_lt, o_gl, o_rg, o_rt, o_rx = int(buf[16]), int(buf[17]), int(buf[18]), int(buf[19]), int(buf[20])
    o_ry, o_rn, o_rw, o_bmu, o_bsd = int(buf[21]), int(buf[22]), int(buf[23]), int(buf[24]), int(buf[25])
    nh, o_cmu, o_csd = int(buf[26]), int(buf[27]), int(buf[28])  # head parameters: 1 intercept, or the cutpoints
    ordinal = fam == 2.0
    i_bt = nh
    i_beta, i_sa, i_z = nh + 1, nh + 1 + p, nh + 1 + p + 3 * T
    for i in range(grad.size):
        grad[i] = 0.0
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    bt = x[i_bt]
    cut = np.empty(nh)
    gcut = np.zeros(nh)
    if ordinal:
        a0 = 0.0
        lp = 0.0
        for j in range(nh):
            cut[j] = x[0] if j == 0 else cut[j - 1] + math.exp(x[j])
            if j > 0:
                lp += x[j]  # log Jacobian of the ordered transform
                grad[j] = 1.0
            mu, s = buf[o_cmu + j], buf[o_csd + j]
            lp += -0.5 * ((cut[j] - mu) / s) ** 2 - math.log(s) - half_log_2pi
            gcut[j] = -(cut[j] - mu) / (s * s)
    else:
        a0 = x[0]
        lp = -0.5 * ((a0 - mu_a) / s_a) ** 2 - math.log(s_a) - half_log_2pi
        grad[0] = -(a0 - mu_a) / (s_a * s_a)
    lp += -0.5 * ((bt - mu_b) / s_b) ** 2 - math.log(s_b) - half_log_2pi
    grad[i_bt] = -(bt - mu_b) / (s_b * s_b)
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
        if ordinal:
            for j in range(nh):
                expand[j] = cut[j]
        else:
            expand[0] = a0
        expand[nh] = bt
        e = nh + 1
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
        elif fam == 1.0:
            mu = math.exp(e)
            ll += w * (y * e - n * mu)
            ge = w * (y - n * mu)
        else:
            # log P(y = k) = log(F(u) - F(l)), u = c_k - eta, l = c_(k-1) - eta (the PyMC graph's +-1000 beyond
            # the ends), written as -softplus(-u) - softplus(l) + log(1 - e^(l - u)); its derivatives in u and l
            # are logistic(-u) + 1 / expm1(u - l) and -logistic(l) - 1 / expm1(u - l)
            k = int(y)
            u = (cut[k] if k < nh else 1e3) - e
            lo = (cut[k - 1] if k > 0 else -1e3) - e
            dx = lo - u
            l1m = math.log(-math.expm1(dx)) if dx > -0.6931471805599453 else math.log1p(-math.exp(dx))
            ll += w * (-softplus(-u) - softplus(lo) + l1m)
            q = 1.0 / math.expm1(u - lo)
            fu = (math.exp(-u) / (1.0 + math.exp(-u)) if u > 0 else 1.0 / (1.0 + math.exp(u))) + q
            fl = -(1.0 / (1.0 + math.exp(-lo)) if lo > 0 else math.exp(lo) / (1.0 + math.exp(lo))) - q
            if k < nh:
                gcut[k] += w * fu
            if k > 0:
                gcut[k - 1] += w * fl
            ge = -w * (fu + fl)
        gA[g] += ge
        gB[g] += ge * t
        for j in range(p):
            grad[i_beta + j] += ge * buf[o_rx + r * p + j]
    lp += ll
    for g in range(G):
        if not ordinal:
            grad[0] += gA[g]
        grad[i_bt] += gB[g]
    if ordinal:  # through the ordered transform: d c_j / d x_0 = 1, d c_j / d x_i = exp(x_i) for 1 <= i <= j
        tail = 0.0
        for j in range(nh - 1, -1, -1):
            tail += gcut[j]
            grad[j] += tail if j == 0 else tail * math.exp(x[j])
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


def logp_and_grad(x: np.ndarray, buf: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at x (for tests and checks)."""
    logp_grad = _kernels()[0]
    grad = np.empty(len(x))
    val = logp_grad(np.asarray(x, dtype=float), buf, grad, np.empty(0))
    return float(val), grad


def expand_values(x: np.ndarray, buf: np.ndarray, n_expanded: int) -> np.ndarray:
    logp_grad = _kernels()[0]
    out = np.empty(n_expanded)
    logp_grad(np.asarray(x, dtype=float), buf, np.empty(len(x)), out)
    return out


# --------------------------------------------------------------------------- nutpie model


def _stored(sizes: dict) -> list[tuple[str, tuple[int, ...], tuple[str, ...]]]:
    G, T, p, d = sizes["G"], sizes["T"], sizes["p"], sizes["d"]
    out = [("beta", (p,), ("control",))] if p else []
    out += [
        ("sd_intercept", (T,), ("term",)),
        ("sd_slope", (T,), ("term",)),
        ("rho", (T,), ("term",)),
        ("sigma", (), ()),
        ("A_rest", (G,), ("group",)),
        ("B_rest", (G,), ("group",)),
    ]
    if sizes["cross"]:
        out.append(("crossing_rest", (G,), ("group",)))
    out.append(("gamma_mean", (d,), ("collapsed",)))
    return out


def _make_class():
    from nutpie import _lib
    from nutpie.sample import CompiledModel

    @dataclass(frozen=True)
    class CollapsedGaussianModel(CompiledModel):
        """A nutpie model whose log density is the cached numba callback; the study lives in ``buf``."""

        buf: np.ndarray
        sizes: dict
        names: tuple
        shape_list: tuple
        _coords: dict
        seed_init: Any = None
        #: the callbacks' module function returning (logp_grad, c_logp, c_expand): the Gaussian ones, or another family's
        kernels: Any = None

        @property
        def n_dim(self):
            return self.sizes["n_dim"]

        @property
        def shapes(self):
            return dict(zip(self.names, self.shape_list))

        @property
        def coords(self):
            return self._coords

        def _make_sampler(self, settings, init_mean, cores, progress_type, store):
            return _lib.PySampler.from_pymc(settings, cores, self._make_model(init_mean), progress_type, store)

        def _make_model(self, init_mean):
            _, c_logp, c_expand = (self.kernels or _kernels)()
            n_exp = int(sum(int(np.prod(s)) for s in self.shape_list))
            expand_fn = _lib.ExpandFunc(self.n_dim, n_exp, c_expand.address, self.buf.ctypes.data, self)
            logp_fn = _lib.LogpFunc(c_logp.address, self.buf.ctypes.data, self)
            dim_sizes = {k: len(v) for k, v in self._coords.items()}
            variables = _lib.PyVariable.new_variables(
                list(self.names), ["float64"] * len(self.names), [tuple(s) for s in self.shape_list], dim_sizes, dict(self.dims)
            )
            return _lib.PyMcModel(logp_fn, expand_fn, variables, self.n_dim, dim_sizes, self._coords, self.seed_init, None)

    return CollapsedGaussianModel


_MODEL_CLASS = None


def model_class():
    """The nutpie model class (made once: it subclasses nutpie's CompiledModel, imported on first use)."""
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        _MODEL_CLASS = _make_class()
    return _MODEL_CLASS


def compile_collapsed(design, resolved: dict, control_sds, collapse, coords: dict, predictors=None):
    """The nutpie model for one study: the cached callbacks and this study's buffer (no compilation after
    the first use on a machine). ``predictors``: the (G, q) centred slope predictors, or None."""
    cls = model_class()
    buf, sizes = pack(design, resolved, control_sds, collapse, predictors)
    stored = _stored(sizes)
    names = tuple(s[0] for s in stored)
    dims = {s[0]: s[2] for s in stored}
    T, p = sizes["T"], sizes["p"]
    sd_start = math.log(_typical_scale(resolved["sd"]))
    sig_start = math.log(_typical_scale(resolved["sigma"]))

    def init(seed):
        # PyMC's start (support point, jitter U(-1, 1) on the unconstrained scale), written out
        rng = np.random.default_rng(seed)
        x0 = np.zeros(sizes["n_dim"])
        x0[p : p + 2 * T] = sd_start
        x0[p + 3 * T] = sig_start
        return x0 + rng.uniform(-1, 1, size=x0.size)

    used = {k: v for k, v in coords.items() if k in {"term", "group", "control", "collapsed"}}
    return cls(dims=dims, buf=buf, sizes=sizes, names=names, shape_list=tuple(s[1] for s in stored), _coords=used, seed_init=init)


def _typical_scale(prior) -> float:
    kw = prior.kwargs()
    if prior.family == "exponential":
        return 1 / kw["lam"]
    return kw.get("sigma", kw.get("beta", 1.0))
