"""The hierarchical model as a registry method (see :mod:`hetreport.methods`): a thin adapter over
the public :func:`hetreport.models.hierarchical.fit_hierarchical` and ``group_summary``. The fit
itself is kept in ``MethodFit.extra``: the report reads its posterior, diagnostics and formulas."""

from __future__ import annotations

from ..data import AnalysisData
from ..groups import Groups
from ..methods import FitRequest, MethodFit


def fit(adata: AnalysisData, groups: Groups, request: FitRequest) -> MethodFit:
    from .hierarchical import fit_hierarchical, group_summary

    hfit = fit_hierarchical(
        adata,
        groups,
        request.priors,
        request.sampler,
        mode=request.mode,
        correlated=request.correlated,
        progress=request.progress,
        predictors=request.predictors,
    )
    return MethodFit(
        "hierarchical",
        group_summary(hfit, groups),
        hfit.formula_brms,
        {"formula_bambi": hfit.formula_bambi, "backend": hfit.backend},
        extra=hfit,
    )
