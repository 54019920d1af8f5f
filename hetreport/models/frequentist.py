"""The frequentist approaches as registry methods (see :mod:`hetreport.methods`): OLS with fully
crossed and with additive interactions, subgroup differences in means, and the GLM with fully
crossed interactions. Each wraps its fit function in :mod:`hetreport.models.ols` / ``glm``.

OLS reads the outcome on its own scale: for a binomial outcome the share of successes per row,
for a 0/1 outcome the linear probability model. With ``request.fitted`` the fitted means of the
same regression are returned too (the simulation study scores them against the data).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_limits

from ..data import AnalysisData, code_key
from ..groups import Groups
from ..methods import FitRequest, MethodFit
from .ols import MethodEstimates


def _ols_data(adata: AnalysisData) -> AnalysisData:
    return replace(adata, y=adata.y / adata.trials) if adata.family == "binomial" else adata


def _lstsq_fitted(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    return X @ beta


def ols_fitted(adata: AnalysisData, groups: Groups, approach: str, details: dict) -> np.ndarray:
    """Fitted values of an OLS-type approach: from the fit when it reports them, else the projection
    of y on the same columns (fully crossed: group x arm cells; additive: treatment, modifier dummies
    and their products; subgroup: cell means) plus the controls."""
    if "fitted" in details:
        return np.asarray(details["fitted"], dtype=float)
    G, t = groups.n_groups, adata.t
    cell = np.zeros((adata.n, 2 * G))
    cell[np.arange(adata.n), groups.index * 2 + t.astype(int)] = 1.0
    if approach == "subgroup":
        return _lstsq_fitted(cell, adata.y)
    if approach == "ols_full":
        X = cell
    else:
        blocks = [np.ones(adata.n), t]
        for m in adata.modifiers:
            codes = np.array([code_key(v) for v in adata.frame[m.name]])
            for lev in m.levels[1:]:
                d = (codes == code_key(lev)).astype(float)
                blocks += [d, d * t]
        X = np.column_stack(blocks)
    if adata.control_matrix.size:
        X = np.column_stack([X, adata.control_matrix])
    return _lstsq_fitted(X, adata.y)


def _as_fit(me: MethodEstimates, adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    fitted = ols_fitted(adata, groups, me.method, me.details) if request.fitted else None
    return MethodFit(me.method, me.table, me.formula, dict(me.details), fitted=fitted)


def fit_ols_full(adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    from .ols import fit_ols_full as fit

    odata = _ols_data(adata)
    with threadpool_limits(1):  # small dense algebra: extra BLAS threads only contend on a busy machine
        return _as_fit(fit(odata, groups, request.se_type), odata, groups, request)


def fit_ols_additive(adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    from .ols import fit_ols_additive as fit

    odata = _ols_data(adata)
    with threadpool_limits(1):
        return _as_fit(fit(odata, groups, request.se_type), odata, groups, request)


def fit_subgroup(adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    from .ols import fit_subgroup as fit

    odata = _ols_data(adata)
    with threadpool_limits(1):
        return _as_fit(fit(odata, groups), odata, groups, request)


def fit_glm_full(adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    from .glm import fit_glm_full as fit

    with threadpool_limits(1):
        me = fit(adata, groups, request.se_type)
    return MethodFit(me.method, me.table, me.formula, dict(me.details))
