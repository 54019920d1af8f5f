"""Frequentist approaches: OLS with fully crossed interactions, additive interactions,
and subgroup differences in means.

Each returns a :class:`MethodEstimates` with one row per group in the common shape
(``estimate, std_error, df, lower_90 … upper_95, p_value, estimable, note``).

The fully crossed model ``y ~ treat * (m1 * m2 * … * mk) + controls`` is fitted in its
cell-means form (a dummy per group and a treatment dummy per group, plus controls):
the same column space, so the same fit and the same group effects as the
treatment-coded formula, and each group's effect is one coefficient. Robust
covariances are computed here (HC0–HC3, CR1) so that rank deficiency and leverage-1
rows are handled explicitly rather than turned into NaN for every group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..data import AnalysisData, code_key
from ..groups import Groups

LEVELS = (0.90, 0.95)


@dataclass(frozen=True)
class MethodEstimates:
    method: str
    table: pd.DataFrame  # group, estimate, std_error, df, p_value, lower_90, upper_90, lower_95, upper_95, estimable, note
    formula: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LinearFit:
    beta: np.ndarray
    vcov: np.ndarray
    df: float
    rank: int
    basis: np.ndarray  # orthonormal basis of the row space of X (for estimability)
    leverage: np.ndarray
    resid: np.ndarray

    def contrast(self, c: np.ndarray) -> tuple[float, float, bool]:
        """Estimate and SE of c'beta; NaN and False when c'beta is not estimable."""
        resid = c - self.basis @ (self.basis.T @ c)
        if np.linalg.norm(resid) > 1e-8 * max(1.0, np.linalg.norm(c)):
            return np.nan, np.nan, False
        var = float(c @ self.vcov @ c)
        return float(c @ self.beta), (np.sqrt(var) if var >= 0 else np.nan), True


def _sandwich(X, bread, n: int, r: int, se_type: str, e2, leverage, score, cluster) -> tuple[np.ndarray, float]:
    """The robust covariance (HC0-HC3 or CR1) and its df, from design rows ``X`` that are units or cells:
    ``e2`` each row's sum of squared residuals, ``leverage`` its hat value (one unit's), ``score`` its sum of
    residuals and ``cluster`` its cluster label (cluster-robust only); ``n`` units, rank ``r``."""
    if se_type == "cluster":
        if cluster is None:
            raise ValueError("cluster-robust SEs need cluster labels")
        codes, inv = np.unique(cluster, return_inverse=True)
        scores = np.zeros((len(codes), X.shape[1]))
        np.add.at(scores, inv.reshape(-1), X * score[:, None])
        meat = scores.T @ scores
        G = len(codes)
        factor = G / (G - 1) * (n - 1) / (n - r) if G > 1 and n > r else np.nan
        return factor * bread @ meat @ bread, G - 1
    one = leverage > 1 - 1e-10  # such rows are fitted exactly (residual 0); their 0/0 weight is set to 0
    if se_type == "HC0":
        w = e2
    elif se_type == "HC1":
        w = e2 * n / max(n - r, 1)
    elif se_type == "HC2":
        w = np.where(one, 0.0, e2 / np.where(one, 1.0, 1 - leverage))
    elif se_type == "HC3":
        w = np.where(one, 0.0, e2 / np.where(one, 1.0, 1 - leverage) ** 2)
    else:
        raise ValueError(f"unknown se_type {se_type}")
    return bread @ ((X * w[:, None]).T @ X) @ bread, n - r


def fit_linear(X: np.ndarray, y: np.ndarray, se_type: str = "HC2", cluster: np.ndarray | None = None) -> LinearFit:
    """Least squares with a robust sandwich covariance; tolerates rank deficiency (pseudo-inverse)."""
    n = X.shape[0]
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    tol = s.max() * max(X.shape) * np.finfo(float).eps if s.size else 0.0
    r = int((s > tol).sum())
    Ur, sr, Vr = U[:, :r], s[:r], Vt[:r].T
    beta = Vr @ ((Ur.T @ y) / sr)
    resid = y - X @ beta
    leverage = np.einsum("ij,ij->i", Ur, Ur)
    bread = Vr @ np.diag(1.0 / sr**2) @ Vr.T  # (X'X)^+
    vcov, df = _sandwich(X, bread, n, r, se_type, resid**2, leverage, resid, cluster)
    return LinearFit(beta, vcov, float(df), r, Vr, leverage, resid)


# Rows with identical design rows (group x treatment x control values, and cluster when clustered) are
# fitted from their cell totals when the cells are few: the same least squares, sandwich and df, in O(cells).
COMPRESS_MAX_SHARE = 0.25


def row_cells(keys: list[np.ndarray], n: int, max_cells: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Cells of rows equal in every key column: (cell index of each row, first row of each cell), or None when
    there would be more than ``max_cells`` cells."""
    code = np.zeros(n, dtype=np.int64)
    for col in keys:
        col = np.asarray(col)
        for j in range(col.shape[1] if col.ndim == 2 else 1):
            c = col[:, j] if col.ndim == 2 else col
            _, k = np.unique(c, return_inverse=True)
            _, code = np.unique(code * (int(k.max()) + 1 if n else 1) + k.reshape(-1), return_inverse=True)
            code = code.reshape(-1).astype(np.int64)
            if max_cells is not None and n and int(code.max()) + 1 > max_cells:
                return None
    _, first = np.unique(code, return_index=True)
    return code, first


def fit_cells(Xc: np.ndarray, inv: np.ndarray, y: np.ndarray, se_type: str = "HC2", cluster: np.ndarray | None = None) -> LinearFit:
    """:func:`fit_linear` of the rows ``Xc[inv]`` from their cell totals: the weighted least squares of the cell
    means (weights n_c), and the sandwich from each cell's sum of squared residuals
    sum_i e_i^2 = W_c + n_c (ybar_c - x_c'b)^2 (W_c the within-cell sum of squares), divided by (1 - h_c)^k for
    HC2/HC3 (the leverage h_c = x_c'(X'X)^+ x_c is the same for every row of a cell). For CR1 the cells must lie
    within clusters (``cluster`` is then read at each cell's rows). ``leverage`` and ``resid`` are per row."""
    n, C = len(y), Xc.shape[0]
    n_c = np.bincount(inv, minlength=C).astype(float)
    ybar = np.bincount(inv, y, minlength=C) / n_c
    W = np.bincount(inv, (y - ybar[inv]) ** 2, minlength=C)
    sw = np.sqrt(n_c)
    U, s, Vt = np.linalg.svd(Xc * sw[:, None], full_matrices=False)
    tol = s.max() * max(n, Xc.shape[1]) * np.finfo(float).eps if s.size else 0.0
    r = int((s > tol).sum())
    Ur, sr, Vr = U[:, :r], s[:r], Vt[:r].T
    beta = Vr @ ((Ur.T @ (ybar * sw)) / sr)
    f = Xc @ beta
    h = np.einsum("ij,ij->i", Ur, Ur) / n_c
    bread = Vr @ np.diag(1.0 / sr**2) @ Vr.T
    first = np.unique(inv, return_index=True)[1]
    labels = None if cluster is None else np.asarray(cluster)[first]  # the cells lie within clusters
    vcov, df = _sandwich(Xc, bread, n, r, se_type, W + n_c * (ybar - f) ** 2, h, n_c * (ybar - f), labels)
    return LinearFit(beta, vcov, float(df), r, Vr, h[inv], y - f[inv])


def fit_design(
    build, keys: list[np.ndarray], y: np.ndarray, se_type: str, cluster: np.ndarray | None, compress: bool | None = None
) -> tuple[LinearFit, int]:
    """Fit the design ``build(rows)`` (its rows for the given row indices, a function of ``keys``): from cell
    totals when the distinct key rows number at most a quarter of the rows (``compress=None``), always when
    ``compress=True``, never when False. Returns the fit and the number of design columns."""
    n = len(y)
    cells = None
    if compress is not False and not (se_type == "cluster" and cluster is None):
        keys = list(keys) + ([cluster] if se_type == "cluster" else [])
        cells = row_cells(keys, n, None if compress else int(n * COMPRESS_MAX_SHARE))
    if cells is not None:
        inv, first = cells
        Xc = build(first)
        return fit_cells(Xc, inv, y, se_type, cluster), Xc.shape[1]
    X = build(np.arange(n))
    return fit_linear(X, y, se_type, cluster), X.shape[1]


def _interval_columns(est: np.ndarray, se: np.ndarray, df: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    with np.errstate(invalid="ignore"):
        for level in LEVELS:
            q = stats.t.ppf(0.5 + level / 2, df)
            tag = int(round(level * 100))
            out[f"lower_{tag}"] = est - q * se
            out[f"upper_{tag}"] = est + q * se
        out["p_value"] = 2 * stats.t.sf(np.abs(est / se), df)
    return out


def _assemble(groups: Groups, est, se, df, estimable, notes) -> pd.DataFrame:
    est, se, df = (np.asarray(a, dtype=float) for a in (est, se, df))
    table = pd.DataFrame({"group": groups.keys, "estimate": est, "std_error": se, "df": df})
    for k, v in _interval_columns(est, se, df).items():
        table[k] = v
    table["estimable"] = np.asarray(estimable, dtype=bool)
    table["note"] = notes
    return table


def _dummies(codes: np.ndarray, levels: list) -> np.ndarray:
    return np.column_stack([codes == lev for lev in levels]).astype(float) if levels else np.zeros((len(codes), 0))


def _controls(adata: AnalysisData) -> np.ndarray:
    return adata.control_matrix


def _se_note(groups: Groups, se_type: str) -> list[str]:
    notes = []
    for row in groups.table.itertuples():
        if row.one_arm:
            notes.append("only one treatment arm: effect not estimable")
        elif row.singleton_arm and se_type in ("HC2", "HC3"):
            notes.append(f"an arm with one unit: {se_type} standard error undefined")
        else:
            notes.append("")
    return notes


def _design_keys(adata: AnalysisData, groups: Groups) -> list[np.ndarray]:
    """What a design row of the OLS approaches is a function of: the group, the treatment, the controls."""
    return [groups.index, adata.t] + ([adata.control_matrix] if adata.control_matrix.size else [])


def fit_ols_full(adata: AnalysisData, groups: Groups, se_type: str = "HC2", compress: bool | None = None) -> MethodEstimates:
    """Fully crossed interactions: one effect per group, as the coefficient of its treatment dummy
    (fitted from cell totals when rows repeat, see :func:`fit_design`)."""
    G = groups.n_groups
    gidx = groups.index
    t = adata.t
    both = ~groups.table["one_arm"].to_numpy()

    def build(rows: np.ndarray) -> np.ndarray:
        Gd = np.zeros((len(rows), G))
        Gd[np.arange(len(rows)), gidx[rows]] = 1.0
        return np.column_stack([Gd, Gd[:, both] * t[rows, None], _controls(adata)[rows]])

    fit, p = fit_design(build, _design_keys(adata, groups), adata.y, se_type, adata.cluster, compress)
    est = np.full(G, np.nan)
    se = np.full(G, np.nan)
    estimable = np.zeros(G, dtype=bool)
    notes = _se_note(groups, se_type)
    cols = np.flatnonzero(both)
    singleton = groups.table["singleton_arm"].to_numpy()
    for j, g in enumerate(cols):
        c = np.zeros(p)
        c[G + j] = 1.0
        e, s, ok = fit.contrast(c)
        est[g], estimable[g] = e, ok
        se[g] = np.nan if (singleton[g] and se_type in ("HC2", "HC3")) else s
        if not ok:
            notes[g] = "not estimable: collinear with the controls"
    df = np.full(G, fit.df)
    table = _assemble(groups, est, se, df, estimable, notes)
    formula = f"{adata.outcome.name} ~ {adata.treatment.name} * ({' * '.join(groups.modifiers)})" + "".join(
        f" + {c}" for c in adata.controls
    )
    return MethodEstimates(
        "ols_full",
        table,
        formula,
        {
            "se_type": se_type,
            "n": adata.n,
            "rank": fit.rank,
            "n_coef": p,
            "df_resid": fit.df,
            "effect_vcov": effect_vcov(fit.vcov, G, cols, np.isfinite(se)),
        },
    )


def effect_vcov(vcov: np.ndarray, G: int, cols: np.ndarray, ok: np.ndarray) -> list[list[float]]:
    """The robust covariance of the group effects (G x G, group order; NaN rows and columns for a group without a
    standard error), so that a contrast of weighted group averages gets its SE from the same fit."""
    V = np.full((G, G), np.nan)
    pos = G + np.arange(len(cols))
    V[np.ix_(cols, cols)] = vcov[np.ix_(pos, pos)]
    V[~ok, :] = np.nan
    V[:, ~ok] = np.nan
    return V.tolist()


def fit_ols_additive(adata: AnalysisData, groups: Groups, se_type: str = "HC2", compress: bool | None = None) -> MethodEstimates:
    """Treatment interacted with each modifier separately: ``treat * (m1 + … + mk) + controls``
    (fitted from cell totals when rows repeat, see :func:`fit_design`)."""
    t = adata.t
    gidx = groups.index
    gblocks = [np.ones(groups.n_groups)]  # per group: intercept, then per modifier its level dummies
    names = ["(Intercept)", "treat"]
    slope_cols: dict[tuple[str, str], int] = {}
    dummy_cols: list[tuple[int, bool]] = [(0, False), (0, True)]  # (column of the group block, times treatment)
    for m in adata.modifiers:
        codes = np.array([code_key(v) for v in groups.table[m.name]])
        levels = [code_key(v) for v in m.levels[1:]]
        D = _dummies(codes, levels)
        for k, lev in enumerate(levels):
            dummy_cols.append((len(gblocks) + k, False))
            names.append(f"{m.name}[{lev}]")
        for k, lev in enumerate(levels):
            slope_cols[(m.name, lev)] = len(dummy_cols)
            dummy_cols.append((len(gblocks) + k, True))
            names.append(f"treat:{m.name}[{lev}]")
        gblocks.extend(D[:, k] for k in range(len(levels)))
    GX = np.column_stack(gblocks)
    src = np.array([c for c, _ in dummy_cols], dtype=int)
    times_t = np.array([tt for _, tt in dummy_cols])

    def build(rows: np.ndarray) -> np.ndarray:
        B = GX[gidx[rows]][:, src]
        B[:, times_t] *= t[rows, None]
        return np.column_stack([B] + ([_controls(adata)[rows]] if adata.control_matrix.size else []))

    fit, p = fit_design(build, _design_keys(adata, groups), adata.y, se_type, adata.cluster, compress)
    G = groups.n_groups
    est, se, ok = np.full(G, np.nan), np.full(G, np.nan), np.zeros(G, dtype=bool)
    notes = [""] * G
    group_levels = {m.name: [code_key(v) for v in groups.table[m.name]] for m in adata.modifiers}
    for g in range(G):
        c = np.zeros(p)
        c[1] = 1.0
        for m in adata.modifiers:
            lev = group_levels[m.name][g]
            if (m.name, lev) in slope_cols:
                c[slope_cols[(m.name, lev)]] = 1.0
        est[g], se[g], ok[g] = fit.contrast(c)
        if not ok[g]:
            notes[g] = "not estimable in the additive model"
    table = _assemble(groups, est, se, np.full(G, fit.df), ok, notes)
    formula = f"{adata.outcome.name} ~ {adata.treatment.name} * ({' + '.join(groups.modifiers)})" + "".join(
        f" + {c}" for c in adata.controls
    )
    return MethodEstimates(
        "ols_additive", table, formula, {"se_type": se_type, "n": adata.n, "rank": fit.rank, "n_coef": p, "df_resid": fit.df}
    )


def fit_subgroup(adata: AnalysisData, groups: Groups) -> MethodEstimates:
    """Difference in means within each group, Welch standard error and degrees of freedom."""
    G = groups.n_groups
    est, se, df = np.full(G, np.nan), np.full(G, np.nan), np.full(G, np.nan)
    ok = np.zeros(G, dtype=bool)
    notes = [""] * G
    for g in range(G):
        in_g = groups.index == g
        y1, y0 = adata.y[in_g & (adata.t == 1)], adata.y[in_g & (adata.t == 0)]
        if len(y1) == 0 or len(y0) == 0:
            notes[g] = "only one treatment arm: effect not estimable"
            continue
        est[g], ok[g] = y1.mean() - y0.mean(), True
        if len(y1) < 2 or len(y0) < 2:
            notes[g] = "an arm with one unit: Welch standard error undefined"
            continue
        v1, v0 = y1.var(ddof=1) / len(y1), y0.var(ddof=1) / len(y0)
        se[g] = np.sqrt(v1 + v0)
        denom = v1**2 / (len(y1) - 1) + v0**2 / (len(y0) - 1)
        df[g] = (v1 + v0) ** 2 / denom if denom > 0 else np.nan
        if se[g] == 0:
            se[g], notes[g] = np.nan, "no variation in the outcome within the group: standard error undefined"
    table = _assemble(groups, est, se, df, ok, notes)
    return MethodEstimates(
        "subgroup",
        table,
        f"mean({adata.outcome.name} | treated) − mean({adata.outcome.name} | control), within each group",
        {"se_type": "Welch", "n": adata.n},
    )
