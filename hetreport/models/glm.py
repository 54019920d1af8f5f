"""Frequentist GLM with fully crossed interactions, for non-Gaussian outcomes (method ``glm_full``).

The model has the column space of :func:`hetreport.models.ols.fit_ols_full` in its
cell-means form — a dummy per group, a treatment dummy per group that has both arms, and
the control matrix — with the family's likelihood and link:

===================  ===============================  ================================
family               link (coefficient)               response scale of the estimate
===================  ===============================  ================================
bernoulli            logit (log odds ratio)           probability of y = 1
binomial             logit (log odds ratio)           probability of success per trial
poisson              log (log rate ratio)             expected count
negativebinomial     log (log rate ratio), NB2        expected count
ordinal              cumulative logit (cumulative     expected category value on the
                     log odds ratio)                  outcome's numeric codes (e.g. 1–5)
===================  ===============================  ================================

For ordinal outcomes ``P(y <= k) = logistic(theta_k - eta)`` (the convention of
statsmodels' ``OrderedModel``), and the thresholds ``theta_k`` carry the intercept, so one
group dummy (the last group left in the fit) is dropped. Negative binomial is NB2 with
variance ``mu + mu^2 / phi``; ``phi`` (reported as ``dispersion``, the spec's ``alpha``, brms'
and PyMC's shape) is estimated jointly with the coefficients.

**Estimand.** Each group's *average marginal effect* on the response scale: the mean over
the group's own units of ``E[y | t=1, x_i] - E[y | t=0, x_i]``, with ``x_i`` the unit's
controls and group (binomial: units are weighted by their trials, so the estimate is the
per-trial probability difference, the same as for the expanded 0/1 rows). The link-scale
treatment coefficient of the group (``link_estimate``, ``link_std_error``) is reported too.

**Standard errors.** Delta method from a sandwich covariance of all parameters (coefficients,
and the dispersion or thresholds), bread = inverse observed information at the MLE;
normal intervals and p-values (``df`` is infinite). ``se_type``:

* ``HC0``: the plain sandwich; ``HC1``: times ``n / (n - k)`` (``k`` every parameter).
* ``HC2`` / ``HC3``: each unit's score outer product divided by ``1 - h_i`` / ``(1 - h_i)^2``,
  with ``h_i`` the GLM hat value ``w_i x_i' (X'WX)^-1 x_i`` (``w_i`` the Fisher working weight;
  what R's ``sandwich::vcovHC`` uses for ``glm`` and ``glm.nb`` fits). For the ordinal model,
  which is not a GLM, ``h_i = trace(A_i A^-1)`` with ``A_i`` unit i's share of the observed
  information (the same number as the GLM hat value for canonical links). Why this is
  defensible: without controls the model is saturated, ``h_i = 1/n_arm`` and HC2 gives each
  arm the unbiased variance ``s^2 / n_arm`` — the same Neyman/Welch-type variance that OLS
  HC2 gives on a saturated model; HC0 gives the biased ``(n-1)/n`` version. An arm of one
  unit has ``h_i = 1``: its HC2/HC3 standard error is undefined and is not reported (as
  for OLS).
* ``cluster``: cluster sums of the scores with the CR1 factor ``G/(G-1) (n-1)/(n-k)`` (the
  OLS factor here and statsmodels' default).

**Separation.** Where the MLE does not exist the effect is marked ``estimable = False`` with
a note naming the arm and the reason, never printed as a huge number. Before fitting, each
arm is checked (logit: every outcome 0, or every outcome a success; counts: every count 0;
ordinal: every answer in the lowest, or every answer in the highest category — an arm using
one *middle* category still has a finite estimate, as the thresholds are shared). Then, for
the logit and log families, a linear program (Konis 2007) finds any remaining direction in
which the likelihood keeps rising, e.g. a control level whose outcomes are all 0. Rows that
are predicted perfectly along such a direction are left out of the fit: this is exactly the
limit of the MLE for every other parameter, so every other group's estimate is the one a
converged fit would approach. A group whose own treatment contrast is separated is not
estimable; a group with units that are perfectly predicted in *both* arms (by the controls)
keeps its estimate, those units contributing their limit, a zero difference. After fitting,
a group's link coefficient beyond ±15 or a control coefficient beyond ±15 per SD is
flagged as divergence, and a fit that does not converge marks every group non-estimable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from scipy import sparse, stats
from scipy.optimize import linprog
from scipy.special import expit, gammaln, polygamma, psi

from ..data import AnalysisData
from ..families import FAMILIES as _REGISTRY
from ..groups import Groups
from .ols import LEVELS, MethodEstimates

#: the families the GLM fits, and their words: derived from the family registry
FAMILIES = tuple(f.name for f in _REGISTRY.values() if f.has_glm)
LINKS = {f: _REGISTRY[f].link for f in FAMILIES}
LINK_SCALE = {f: _REGISTRY[f].link_scale for f in FAMILIES}
RESPONSE_SCALE = {f: _REGISTRY[f].glm_estimand for f in FAMILIES}
SE_TYPES = ("HC0", "HC1", "HC2", "HC3", "cluster")
#: a link-scale coefficient (or a control's coefficient per SD) beyond this is treated as divergence
DIVERGED = 15.0
MAX_ITER = 100
#: the NB shape phi is bounded here; at the bound there is no overdispersion (Poisson)
PHI_MAX = 1e8


# ----------------------------------------------------------------------------- likelihoods


class _Family(ABC):
    """Log-likelihood, per-unit scores and observed information of one family (parameters: beta, then extras)."""

    n_extra = 0

    def __init__(self, X: np.ndarray, y: np.ndarray, trials: np.ndarray):
        self.X, self.y, self.trials = X, y, trials

    @abstractmethod
    def start(self) -> np.ndarray:
        """Starting values for Newton's method."""

    @abstractmethod
    def evaluate(self, params: np.ndarray, scores: bool = False):
        """(loglik, gradient, A = minus the Hessian, per-unit scores or None)."""

    @abstractmethod
    def leverage(self, params: np.ndarray, A_inv: np.ndarray) -> np.ndarray:
        """Each unit's hat value (the HC2/HC3 leverage) at the MLE."""


class _Canonical(_Family):
    """Logit-binomial (bernoulli: trials 1) and log-Poisson: Newton = IRLS."""

    def __init__(self, X, y, trials, kind: str):
        super().__init__(X, y, trials)
        self.kind = kind

    def start(self):
        """The usual IRLS start: one weighted least-squares step from mu = y (shrunk off the bounds)."""
        y, n, X = self.y, self.trials, self.X
        if self.kind == "logit":
            p0 = (y + 0.5) / (n + 1)
            eta0, w0 = np.log(p0 / (1 - p0)), n * p0 * (1 - p0)
        else:
            eta0, w0 = np.log(y + 0.5), y + 0.5
        return _solve_pd((X * w0[:, None]).T @ X, X.T @ (w0 * eta0))

    def _moments(self, eta):
        if self.kind == "logit":
            mu = self.trials * expit(eta)
            return mu, self.trials * expit(eta) * expit(-eta)
        mu = np.exp(eta)
        return mu, mu

    def loglik_terms(self, eta):
        y, n = self.y, self.trials
        if self.kind == "logit":
            return y * eta - n * np.logaddexp(0.0, eta) + gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
        return y * eta - np.exp(eta) - gammaln(y + 1)

    def evaluate(self, params, scores=False):
        X = self.X
        eta = X @ params
        with np.errstate(over="ignore", invalid="ignore"):
            ll = float(np.sum(self.loglik_terms(eta)))
            mu, w = self._moments(eta)
        r = self.y - mu
        grad = X.T @ r
        A = (X * w[:, None]).T @ X
        return ll, grad, A, (X * r[:, None] if scores else None)

    def leverage(self, params, A_inv):
        _, w = self._moments(self.X @ params)
        return w * np.sum((self.X @ A_inv) * self.X, axis=1)


class _NegBin(_Family):
    """NB2 with log link; parameters (beta, s = log phi), variance mu + mu^2 / phi."""

    n_extra = 1

    def __init__(self, X, y, trials, beta0: np.ndarray):
        super().__init__(X, y, trials)
        self.beta0 = beta0

    def start(self):
        mu = np.exp(self.X @ self.beta0)
        over = float(np.sum((self.y - mu) ** 2 - mu) / np.sum(mu**2))
        phi = 1.0 / over if over > 1e-3 else 1e3
        return np.append(self.beta0, np.log(np.clip(phi, 1e-3, PHI_MAX)))

    def _parts(self, params):
        beta, s = params[:-1], params[-1]
        r = np.exp(s)
        eta = self.X @ beta
        mu = np.exp(eta)
        return r, eta, mu

    def evaluate(self, params, scores=False):
        X, y = self.X, self.y
        r, eta, mu = self._parts(params)
        log_rmu = np.logaddexp(np.log(r), eta)  # log(r + mu)
        ll = float(np.sum(gammaln(y + r) - gammaln(r) - gammaln(y + 1) + r * (np.log(r) - log_rmu) + y * (eta - log_rmu)))
        rm = r + mu
        l_eta = (y - mu) * r / rm
        l_etaeta = -r * mu * (r + y) / rm**2
        l_r = psi(y + r) - psi(r) + np.log(r) - log_rmu + (mu - y) / rm
        l_rr = polygamma(1, y + r) - polygamma(1, r) + 1.0 / r - 1.0 / rm - (mu - y) / rm**2
        l_s = r * l_r
        l_ss = r * l_r + r**2 * l_rr
        l_etas = r * (y - mu) * mu / rm**2
        S = np.column_stack([X * l_eta[:, None], l_s])
        grad = S.sum(axis=0)
        p = X.shape[1]
        A = np.empty((p + 1, p + 1))
        A[:p, :p] = (X * (-l_etaeta)[:, None]).T @ X
        A[:p, p] = A[p, :p] = -(X.T @ l_etas)
        A[p, p] = -float(np.sum(l_ss))
        return ll, grad, A, (S if scores else None)

    def leverage(self, params, A_inv):
        # GLM hat values with the Fisher weights mu / (1 + mu / phi), phi held fixed (as R's glm.nb)
        r, _, mu = self._parts(params)
        w = r * mu / (r + mu)
        X = self.X
        return w * np.sum((X @ np.linalg.pinv((X * w[:, None]).T @ X)) * X, axis=1)


class _Ordinal(_Family):
    """Cumulative logit: P(y <= k) = logistic(theta_k - x'beta); parameters (beta, theta_1..theta_{K-1})."""

    def __init__(self, X, y, trials, K: int):
        super().__init__(X, y, trials)  # y: category index 0..K-1
        self.K = K
        self.n_extra = K - 1

    def start(self):
        counts = np.bincount(self.y.astype(int), minlength=self.K)
        cum = np.cumsum(counts)[:-1] / counts.sum()
        cum = np.clip(cum, 1e-4, 1 - 1e-4)
        theta = np.log(cum / (1 - cum))
        theta = np.maximum.accumulate(theta + np.arange(self.K - 1) * 1e-3)
        return np.append(np.zeros(self.X.shape[1]), theta)

    def _parts(self, params):
        """Per unit: P(observed category), the derivatives of log P with respect to
        u = theta_y - eta and l = theta_{y-1} - eta, and the threshold indicators Eu, El."""
        X, k = self.X, self.y.astype(int)
        p = X.shape[1]
        beta, theta = params[:p], params[p:]
        eta = X @ beta
        full = np.concatenate([[-np.inf], theta, [np.inf]])
        u = full[k + 1] - eta
        lo = full[k] - eta
        Fu, Fl = expit(u), expit(lo)
        prob = np.where(lo > 0, expit(-lo) - expit(-u), Fu - Fl)
        with np.errstate(divide="ignore", invalid="ignore"):
            fu, fl = Fu * expit(-u), Fl * expit(-lo)
            lu, ll_ = fu / prob, -fl / prob
            luu = fu * (1 - 2 * Fu) / prob - lu**2
            lll = -fl * (1 - 2 * Fl) / prob - ll_**2
            lul = -lu * ll_
        n, rows = len(k), np.arange(len(k))
        Eu = np.zeros((n, self.K - 1))
        El = np.zeros_like(Eu)
        up, low = k < self.K - 1, k > 0
        Eu[rows[up], k[up]] = 1.0
        El[rows[low], k[low] - 1] = 1.0
        return prob, lu, ll_, luu, lll, lul, Eu, El

    def evaluate(self, params, scores=False):
        X = self.X
        theta = params[X.shape[1] :]
        if np.any(np.diff(theta) <= 0):
            return -np.inf, None, None, None
        prob, lu, ll_, luu, lll, lul, Eu, El = self._parts(params)
        if np.any(prob <= 0):
            return -np.inf, None, None, None
        ll = float(np.sum(np.log(prob)))
        # d(u, l)/d(beta) = -x, d u/d theta = Eu, d l/d theta = El; the Hessian block by block
        grad = np.concatenate([-(X.T @ (lu + ll_)), Eu.T @ lu + El.T @ ll_])
        S = np.column_stack([-X * (lu + ll_)[:, None], Eu * lu[:, None] + El * ll_[:, None]]) if scores else None
        p = X.shape[1]
        H = np.empty((len(params), len(params)))
        H[:p, :p] = (X * (luu + lll + 2 * lul)[:, None]).T @ X
        B = Eu * (luu + lul)[:, None] + El * (lll + lul)[:, None]
        H[:p, p:] = -(X.T @ B)
        H[p:, :p] = H[:p, p:].T
        H[p:, p:] = (Eu * luu[:, None]).T @ Eu + (El * lll[:, None]).T @ El + (Eu * lul[:, None]).T @ El + (El * lul[:, None]).T @ Eu
        return ll, grad, -H, S

    def leverage(self, params, A_inv):
        """trace(A_i A^-1), A_i unit i's share of the observed information."""
        prob, lu, ll_, luu, lll, lul, Eu, El = self._parts(params)
        Du = np.column_stack([-self.X, Eu])
        Dl = np.column_stack([-self.X, El])
        q = lambda a, b: np.sum((a @ A_inv) * b, axis=1)  # noqa: E731
        return -(luu * q(Du, Du) + lll * q(Dl, Dl) + 2 * lul * q(Du, Dl))

    def expected(self, params, X, codes):
        """E[y | x] on the codes, and its gradient with respect to (beta, theta), per row of X."""
        p = X.shape[1]
        beta, theta = params[:p], params[p:]
        eta = X @ beta
        dc = np.diff(codes)
        F = expit(theta[None, :] - eta[:, None])
        f = F * (1 - F)
        value = codes[0] + (dc[None, :] * (1 - F)).sum(axis=1)
        grad = np.column_stack([X * (f @ dc)[:, None], -f * dc[None, :]])
        return value, grad


def _solve_pd(A: np.ndarray, g: np.ndarray) -> np.ndarray:
    """A^-1 g for a positive definite A, with a growing ridge when A is not (far from the optimum)."""
    scale = max(float(np.trace(A)) / max(len(A), 1), 1e-12) if np.all(np.isfinite(A)) else 1.0
    tau = 0.0
    for _ in range(30):
        try:
            L = np.linalg.cholesky(A + tau * np.eye(len(A)))
            return np.linalg.solve(L.T, np.linalg.solve(L, g))
        except np.linalg.LinAlgError:
            tau = scale * 1e-8 if tau == 0 else tau * 10
    return g / scale


def _newton(fam: _Family, x0: np.ndarray) -> tuple[np.ndarray, bool, int]:
    """Damped Newton ascent; converged when the Newton decrement is below 1e-10."""
    x = x0
    ll, g, A, _ = fam.evaluate(x)
    if not np.isfinite(ll):
        return x, False, 0
    for it in range(1, MAX_ITER + 1):
        step = _solve_pd(A, g)
        dec = float(g @ step)
        t = 1.0
        for _ in range(40):
            x_new = x + t * step
            ll_new, g_new, A_new, _ = fam.evaluate(x_new)
            if np.isfinite(ll_new) and ll_new >= ll - 1e-12 * (1 + abs(ll)):
                break
            t /= 2
        else:
            return x, dec < 1e-8, it
        x, ll, g, A = x_new, ll_new, g_new, A_new
        if dec < 1e-10:
            return x, True, it
    return x, False, MAX_ITER


# ----------------------------------------------------------------------------- design and separation


def _design(adata: AnalysisData, groups: Groups) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Cell-means design [group dummies, controls, treatment dummies]; each column's (role, index)."""
    G = groups.n_groups
    Gd = np.zeros((adata.n, G))
    Gd[np.arange(adata.n), groups.index] = 1.0
    both = np.flatnonzero(~groups.table["one_arm"].to_numpy())
    Td = Gd[:, both] * adata.t[:, None]
    C = adata.control_matrix
    X = np.column_stack([Gd, C, Td])
    roles = [("group", g) for g in range(G)] + [("control", j) for j in range(C.shape[1])] + [("treat", int(g)) for g in both]
    return X, roles


def _select_columns(X: np.ndarray, leading: np.ndarray | None = None) -> np.ndarray:
    """Columns kept, in order, each not in the span of the columns kept before it (and of ``leading``).

    Works on R of X = QR (p x p; the same linear dependencies and residual norms as X), with
    Gram-Schmidt in column order, so a redundant column is dropped, never an earlier one."""
    M = np.column_stack([leading, X]) if leading is not None else X
    if M.shape[0] > M.shape[1]:
        M = np.linalg.qr(M, mode="r")
    k = M.shape[1]
    basis = np.zeros((M.shape[0], k))
    used = 0
    keep = []
    for j in range(k):
        v = M[:, j].astype(float).copy()
        norm = np.linalg.norm(v)
        if norm == 0:
            continue
        for _ in range(2):  # Gram-Schmidt twice for stability
            v -= basis[:, :used] @ (basis[:, :used].T @ v)
        if np.linalg.norm(v) > 1e-8 * norm:
            basis[:, used] = v / np.linalg.norm(v)
            used += 1
            if leading is None or j > 0:
                keep.append(j - (leading is not None))
    return np.array(keep, dtype=int)


def _arm_separation(adata: AnalysisData, groups: Groups, yidx: np.ndarray | None) -> tuple[dict[int, list[str]], np.ndarray]:
    """Arms whose outcomes put the MLE at infinity, with a reason; and the mask of their rows."""
    fam, y, t = adata.family, adata.y, adata.t
    trials = adata.trials if adata.trials is not None else np.ones_like(y)
    reasons: dict[int, list[str]] = {}
    drop = np.zeros(adata.n, dtype=bool)
    K = len(adata.categories)
    for g in range(groups.n_groups):
        for arm, name in ((1, "treated"), (0, "control")):
            rows = (groups.index == g) & (t == arm)
            m = int(rows.sum())
            if m == 0:
                continue
            ya = y[rows]
            why = None
            every = f"the only unit in the {name} arm has" if m == 1 else f"every unit in the {name} arm ({m} units) has"
            if fam == "bernoulli":
                if np.all(ya == 0):
                    why = f"{every} outcome 0, so the arm's log odds go to minus infinity"
                elif np.all(ya == 1):
                    why = f"{every} outcome 1, so the arm's log odds go to infinity"
            elif fam == "binomial":
                n_tr = int(trials[rows].sum())
                if np.all(ya == 0):
                    why = f"the {name} arm has no successes in {n_tr} trials ({_units(m)}), so its log odds go to minus infinity"
                elif np.all(ya == trials[rows]):
                    why = f"every trial in the {name} arm is a success ({n_tr} trials, {_units(m)}), so its log odds go to infinity"
            elif fam in ("poisson", "negativebinomial"):
                if np.all(ya == 0):
                    why = f"{every} a count of 0, so the arm's log rate goes to minus infinity"
            elif fam == "ordinal":
                ka = yidx[rows]
                if np.all(ka == 0):
                    why = f"{every} the lowest category ({_num(adata.categories[0])}), so the arm's latent location goes to minus infinity"
                elif np.all(ka == K - 1):
                    why = f"{every} the highest category ({_num(adata.categories[-1])}), so the arm's latent location goes to infinity"
            if why:
                reasons.setdefault(g, []).append(why)
                drop |= rows
    return reasons, drop


def _units(m: int) -> str:
    return "1 unit" if m == 1 else f"{m} units"


def _num(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def _separation_directions(
    X: np.ndarray, y: np.ndarray, trials: np.ndarray, family: str, max_rounds: int = 10
) -> tuple[list[np.ndarray], np.ndarray]:
    """Directions b in which the log-likelihood rises without bound (Konis 2007's linear program),
    found round by round on the rows not yet separated; returns them and the separated rows."""
    directions: list[np.ndarray] = []
    separated = np.zeros(len(y), dtype=bool)
    scale = np.abs(X).max(axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    for _ in range(max_rounds):
        live = ~separated
        if family in ("bernoulli", "binomial"):
            low, high = live & (y == 0), live & (y == trials)
        else:
            low, high = live & (y == 0), np.zeros_like(live)
        inner = live & ~low & ~high
        if not (low.any() or high.any()):
            break
        # x'b <= 0 on low rows, x'b >= 0 on high rows, x'b = 0 elsewhere; maximise the total separation
        A_ub = sparse.vstack([sparse.csr_matrix(Xs[low]), sparse.csr_matrix(-Xs[high])]).tocsr()
        c = Xs[low].sum(axis=0) - Xs[high].sum(axis=0)
        A_eq = sparse.csr_matrix(Xs[inner]) if inner.any() else None
        res = linprog(
            c,
            A_ub=A_ub,
            b_ub=np.zeros(A_ub.shape[0]),
            A_eq=A_eq,
            b_eq=np.zeros(A_eq.shape[0]) if A_eq is not None else None,
            bounds=[(-1.0, 1.0)] * X.shape[1],
            method="highs",
        )
        if res.status != 0 or res.fun > -1e-7:
            break
        b = res.x.copy()
        b[np.abs(b) < 1e-9] = 0.0
        moved = live & (np.abs(Xs @ b) > 1e-7)
        if not moved.any():
            break
        directions.append(b / scale)
        separated |= moved
    return directions, separated


# ----------------------------------------------------------------------------- covariance


def _sandwich(A: np.ndarray, S: np.ndarray, h: np.ndarray | None, se_type: str, cluster: np.ndarray | None) -> np.ndarray:
    n, k = S.shape
    bread = np.linalg.pinv(A)
    if se_type == "cluster":
        if cluster is None:
            raise ValueError("cluster-robust SEs need cluster labels (ols.cluster)")
        codes, inv = np.unique(cluster, return_inverse=True)
        sums = np.zeros((len(codes), k))
        np.add.at(sums, inv, S)
        G = len(codes)
        factor = G / (G - 1) * (n - 1) / (n - k) if G > 1 and n > k else np.nan
        meat = factor * sums.T @ sums
    elif se_type in ("HC0", "HC1"):
        meat = S.T @ S * (n / (n - k) if se_type == "HC1" and n > k else 1.0)
    elif se_type in ("HC2", "HC3"):
        one = h > 1 - 1e-10
        denom = np.where(one, 1.0, 1 - h) ** (1 if se_type == "HC2" else 2)
        w = np.where(one, 0.0, 1.0 / denom)
        meat = (S * w[:, None]).T @ S
    else:
        raise ValueError(f"unknown se_type {se_type}; use one of {', '.join(SE_TYPES)}")
    return bread @ meat @ bread


def _z_columns(est: np.ndarray, se: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for level in LEVELS:
            q = stats.norm.ppf(0.5 + level / 2)
            tag = int(round(level * 100))
            out[f"lower_{tag}"] = est - q * se
            out[f"upper_{tag}"] = est + q * se
        out["p_value"] = 2 * stats.norm.sf(np.abs(est / se))
    return out


def _assemble(groups: Groups, est, se, estimable, notes, link_est, link_se) -> pd.DataFrame:
    est, se = np.asarray(est, dtype=float), np.asarray(se, dtype=float)
    table = pd.DataFrame({"group": groups.keys, "estimate": est, "std_error": se, "df": np.full(len(est), np.inf)})
    for k, v in _z_columns(est, se).items():
        table[k] = v
    table["estimable"] = np.asarray(estimable, dtype=bool)
    table["note"] = notes
    link_est, link_se = np.asarray(link_est, dtype=float), np.asarray(link_se, dtype=float)
    table["link_estimate"] = link_est
    table["link_std_error"] = link_se
    q = stats.norm.ppf(0.975)
    table["link_lower_95"] = link_est - q * link_se
    table["link_upper_95"] = link_est + q * link_se
    return table


# ----------------------------------------------------------------------------- the method


def glm_formula(adata: AnalysisData, groups: Groups) -> str:
    lhs = adata.outcome.name
    fam = adata.family
    rhs = f"{adata.treatment.name} * ({' * '.join(groups.modifiers)})" + "".join(f" + {c}" for c in adata.controls)
    if fam == "binomial":
        lhs += " | trials(n)"
    name = {"ordinal": "cumulative (thresholds in place of the intercept)", "negativebinomial": "negative binomial (NB2)"}.get(fam, fam)
    return f"{lhs} ~ {rhs}; family {name}, {LINKS[fam]} link"


def fit_glm_full(adata: AnalysisData, groups: Groups, se_type: str = "HC2") -> MethodEstimates:
    """Fully crossed interactions in a GLM (or cumulative logit): each group's average marginal
    effect of the treatment on the response scale, with delta-method robust standard errors."""
    fam = adata.family
    if fam not in FAMILIES:
        raise ValueError(f"fit_glm_full fits the families {', '.join(FAMILIES)}, not '{fam}'; a gaussian outcome is fitted by fit_ols_full")
    if se_type not in SE_TYPES:
        raise ValueError(f"unknown se_type {se_type}; use one of {', '.join(SE_TYPES)}")
    G = groups.n_groups
    y = adata.y.astype(float)
    trials = adata.trials.astype(float) if (fam == "binomial" and adata.trials is not None) else np.ones_like(y)
    codes = np.asarray(adata.categories, dtype=float)
    yidx = np.searchsorted(codes, y) if fam == "ordinal" else None
    X_full, roles = _design(adata, groups)
    treat_col = {g: j for j, (role, g) in enumerate(roles) if role == "treat"}
    table = groups.table
    notes = ["" for _ in range(G)]
    blocked = np.zeros(G, dtype=bool)  # not estimable, note already written
    for g in range(G):
        if table["one_arm"].iat[g]:
            notes[g], blocked[g] = "only one treatment arm: effect not estimable", True

    # 1. arms whose MLE is at infinity
    arm_reasons, drop = _arm_separation(adata, groups, yidx)
    for g, why in arm_reasons.items():
        if not blocked[g]:
            left = "this arm was" if len(why) == 1 else "both arms were"
            notes[g] = "separation: " + "; ".join(why) + f". The effect has no finite estimate; {left} left out of the fit."
            blocked[g] = True
    # 2. remaining separation (controls), logit and log families
    directions: list[np.ndarray] = []
    lp_rows = np.zeros(adata.n, dtype=bool)
    if fam != "ordinal" and (~drop).any():
        directions, sep = _separation_directions(X_full[~drop], y[~drop], trials[~drop], fam)
        lp_rows[np.flatnonzero(~drop)[sep]] = True
    fit_rows = ~drop & ~lp_rows

    details: dict = {
        "family": fam,
        "link": LINKS[fam],
        "link_scale": LINK_SCALE[fam],
        "estimand": RESPONSE_SCALE[fam] + " (average over the group's units)",
        "se_type": se_type,
        "se_method": _se_text(fam, se_type),
        "n": int(fit_rows.sum()),
        "n_rows": adata.n,
        "n_separated_rows": int((~fit_rows).sum()),
    }
    est, se = np.full(G, np.nan), np.full(G, np.nan)
    link_est, link_se = np.full(G, np.nan), np.full(G, np.nan)
    estimable = np.zeros(G, dtype=bool)

    # groups whose units are perfectly predicted along an LP direction
    limit_units: dict[int, np.ndarray] = {}
    for g in range(G):
        if blocked[g]:
            continue
        rows = np.flatnonzero(groups.index == g)
        if not lp_rows[rows].any():
            continue
        X1, X0 = X_full[rows].copy(), X_full[rows].copy()
        X1[:, treat_col[g]], X0[:, treat_col[g]] = 1.0, 0.0
        differs = np.zeros(len(rows), dtype=bool)
        moved = np.zeros(len(rows), dtype=bool)
        for b in directions:
            d1, d0 = X1 @ b, X0 @ b
            tol = 1e-7 * max(1.0, np.abs(b).max())
            first = ~moved & ((np.abs(d1) > tol) | (np.abs(d0) > tol))
            differs |= first & (np.abs(d1 - d0) > tol)
            moved |= first
        if differs.any():
            arms = sorted({"treated" if adata.t[i] == 1 else "control" for i in rows[lp_rows[rows]]})
            notes[g] = (
                f"separation: the outcomes of {int(lp_rows[rows].sum())} units in the {' and '.join(arms)} arm{'s' if len(arms) > 1 else ''} "
                "are predicted perfectly once the controls are included (quasi-complete separation), so the effect has no finite estimate."
            )
            blocked[g] = True
        else:
            limit_units[g] = moved  # these units' predictions are at the boundary in both arms: difference 0
    if directions:
        details["separation_directions"] = len(directions)

    # 3. columns for the rows that are fitted
    Xf = X_full[fit_rows]
    keep = _select_columns(Xf, np.ones(len(Xf)) if fam == "ordinal" else None) if len(Xf) else np.array([], dtype=int)
    if fam == "ordinal":
        present = np.unique(yidx[fit_rows]) if fit_rows.any() else np.array([], dtype=int)
        dropped_groups = [
            g for j, (role, g) in enumerate(roles) if role == "group" and j not in keep and (groups.index[fit_rows] == g).any()
        ]
        if dropped_groups:
            details["reference_group"] = groups.keys[dropped_groups[-1]]
    for g, j in treat_col.items():
        if not blocked[g] and j not in keep:
            if not Xf[:, j].any():
                notes[g] = (
                    "separation: every unit in the treated arm is predicted perfectly by the controls, "
                    "so the effect has no finite estimate; the arm was left out of the fit."
                )
            else:
                notes[g] = "not estimable: collinear with the controls"
            blocked[g] = True
    fit_ok = len(keep) > 0 and fit_rows.sum() > len(keep) and (fam != "ordinal" or len(present) >= 2)
    if not fit_ok:
        details.update(converged=False, n_coef=int(len(keep)), loglik=None)
        for g in range(G):
            if not blocked[g]:
                notes[g] = "not estimable: too few rows are left to fit the model once the separated arms are left out"
        return MethodEstimates(
            "glm_full", _assemble(groups, est, se, estimable, notes, link_est, link_se), glm_formula(adata, groups), details
        )

    Xk = Xf[:, keep]
    yk, nk = y[fit_rows], trials[fit_rows]
    if fam in ("bernoulli", "binomial", "poisson"):
        model: _Family = _Canonical(Xk, yk, nk, "logit" if fam != "poisson" else "log")
        params, converged, iters = _newton(model, model.start())
    elif fam == "negativebinomial":
        pois = _Canonical(Xk, yk, nk, "log")
        beta0, conv0, iters0 = _newton(pois, pois.start())
        mu0 = np.exp(Xk @ beta0)
        # the score for 1/phi at 0 (no overdispersion) is sum((y - mu)^2 - y) / 2: at or below 0 the MLE is the Poisson
        boundary = float(np.sum((yk - mu0) ** 2 - yk)) <= 0
        if not boundary:
            model = _NegBin(Xk, yk, nk, beta0)
            params, converged, iters = _newton(model, model.start())
            boundary = params[-1] > np.log(PHI_MAX) - 1 or not np.isfinite(params[-1])
        if boundary:
            # no overdispersion: the MLE of phi is at infinity, the model is the Poisson
            model, params, converged, iters = pois, beta0, conv0, iters0
            details["dispersion_note"] = (
                "no overdispersion: the dispersion's estimate is at its bound (infinite shape), so the Poisson fit is used"
            )
            details["dispersion"] = None
    else:
        # categories that occur in the fitted rows (an unused category has probability 0 at the MLE)
        remap = np.full(len(codes), -1)
        remap[present] = np.arange(len(present))
        model = _Ordinal(Xk, remap[yidx[fit_rows]].astype(float), nk, len(present))
        params, converged, iters = _newton(model, model.start())
        fit_codes = codes[present]

    ll, _, A, S = model.evaluate(params, scores=True)
    A_inv = np.linalg.pinv(A)
    h = model.leverage(params, A_inv) if se_type in ("HC2", "HC3") else None
    V = _sandwich(A, S, h, se_type, adata.cluster[fit_rows] if adata.cluster is not None else None)
    p = Xk.shape[1]
    details.update(n_coef=int(p), n_params=int(len(params)), converged=bool(converged), iterations=int(iters), loglik=float(ll))
    if isinstance(model, _NegBin):
        se_s = float(np.sqrt(V[p, p])) if V[p, p] >= 0 else np.nan
        details.update(
            dispersion=float(np.exp(params[p])),
            dispersion_se=float(np.exp(params[p]) * se_s),
            dispersion_meaning="phi in variance = mu + mu^2 / phi (the spec's alpha; statsmodels' alpha is 1 / phi)",
        )
    if fam == "ordinal":
        details["thresholds"] = {_num(fit_codes[k]) + "|" + _num(fit_codes[k + 1]): float(params[p + k]) for k in range(len(fit_codes) - 1)}
        if len(present) < len(codes):
            details["unused_categories"] = [_num(c) for i, c in enumerate(codes) if i not in set(present)]

    # divergence of a control coefficient: every group is affected
    col_pos = {int(j): i for i, j in enumerate(keep)}
    diverged_controls = []
    for j, (role, c) in enumerate(roles):
        if role == "control" and j in col_pos:
            xs = adata.control_matrix[fit_rows, c]
            if abs(params[col_pos[j]]) * max(np.std(xs), 1e-12) > DIVERGED:
                diverged_controls.append(adata.control_columns[c])
    global_note = ""
    if not converged:
        global_note = f"not estimable: the {fam} fit did not converge in {MAX_ITER} Newton steps (a separation the checks did not find, or too little information)"
    elif diverged_controls:
        global_note = (
            f"not estimable: the coefficient of the control{'s' if len(diverged_controls) > 1 else ''} {', '.join(diverged_controls)} diverges "
            "(the control separates the outcome); drop or recode it"
        )
    if global_note:
        details["problem"] = global_note

    singleton = table["singleton_arm"].to_numpy()
    grads = np.full((G, len(params)), np.nan)  # each effect's gradient: the effects' covariance, for contrasts
    for g, j in treat_col.items():
        if blocked[g]:
            continue
        if global_note:
            notes[g] = global_note
            continue
        rows = np.flatnonzero(groups.index == g)
        X1 = X_full[np.ix_(rows, keep)].copy()
        X0 = X1.copy()
        X1[:, col_pos[j]], X0[:, col_pos[j]] = 1.0, 0.0
        w = trials[rows] if fam == "binomial" else np.ones(len(rows))
        # units predicted perfectly in both arms add a zero difference: only the others are evaluated
        live = ~limit_units.get(g, np.zeros(len(rows), dtype=bool))
        wsum = w.sum()
        w, X1, X0 = w[live], X1[live], X0[live]
        m1, d1 = _response(model, params, X1, fam, fit_codes if fam == "ordinal" else None)
        m0, d0 = _response(model, params, X0, fam, fit_codes if fam == "ordinal" else None)
        value = float(w @ (m1 - m0) / wsum)
        grad = (w @ (d1 - d0)) / wsum
        var = float(grad @ V @ grad)
        lk, lk_var = float(params[col_pos[j]]), float(V[col_pos[j], col_pos[j]])
        if not np.isfinite(value) or abs(lk) > DIVERGED:
            notes[g] = f"not estimable: the {LINK_SCALE[fam]} diverges ({lk:+.1f}), a sign of (quasi-)separation in this group's arms"
            continue
        est[g], link_est[g], estimable[g] = value, lk, True
        if singleton[g] and se_type in ("HC2", "HC3"):
            notes[g] = f"an arm with one unit: {se_type} standard error undefined"
            continue
        se[g] = np.sqrt(var) if var >= 0 else np.nan
        grads[g] = grad
        link_se[g] = np.sqrt(lk_var) if lk_var >= 0 else np.nan
        if g in limit_units and limit_units[g].any():
            notes[g] = (
                f"{int(limit_units[g].sum())} units are predicted perfectly in both arms by the controls (separation) and add a zero difference"
            )
    details["separated_groups"] = {groups.keys[g]: notes[g] for g in range(G) if notes[g].startswith("separation")}
    ok = np.isfinite(se) & np.isfinite(grads).all(axis=1)
    cov = np.full((G, G), np.nan)
    cov[np.ix_(ok, ok)] = grads[ok] @ V @ grads[ok].T
    details["effect_vcov"] = cov.tolist()
    return MethodEstimates("glm_full", _assemble(groups, est, se, estimable, notes, link_est, link_se), glm_formula(adata, groups), details)


def _response(model: _Family, params: np.ndarray, X: np.ndarray, fam: str, codes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean response per row (probability per trial, expected count, expected category) and its
    gradient with respect to every parameter."""
    n_extra = len(params) - X.shape[1]
    if fam == "ordinal":
        return model.expected(params, X, codes)
    eta = X @ params[: X.shape[1]]
    if fam in ("bernoulli", "binomial"):
        m = expit(eta)
        d = m * (1 - m)
    else:
        m = np.exp(eta)
        d = m
    grad = np.column_stack([X * d[:, None], np.zeros((len(eta), n_extra))])
    return m, grad


def _se_text(fam: str, se_type: str) -> str:
    base = "delta method from a sandwich covariance (bread: inverse observed information); normal intervals"
    if se_type == "HC2":
        lev = "trace(A_i A^-1) (ordinal)" if fam == "ordinal" else "the GLM hat value w_i x_i'(X'WX)^-1 x_i"
        return base + f"; HC2: each unit's score outer product divided by 1 - h_i, h_i = {lev}"
    if se_type == "HC3":
        lev = "trace(A_i A^-1) (ordinal)" if fam == "ordinal" else "the GLM hat value w_i x_i'(X'WX)^-1 x_i"
        return base + f"; HC3: each unit's score outer product divided by (1 - h_i)^2, h_i = {lev}"
    if se_type == "HC1":
        return base + "; HC1: times n / (n - k), k every parameter"
    if se_type == "cluster":
        return base + "; cluster sums of scores, factor G/(G-1) (n-1)/(n-k)"
    return base + "; HC0"
