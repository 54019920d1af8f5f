"""The hierarchical model's priors after resolution: the spec's priors, with the defaults scaled to the outcome.

A frozen :class:`ResolvedPriors` record instead of a dict with a private ``"_b_default"`` key. The
model builders, the bambi route, the fast log-density and the simulation study all read it; it
imports nothing from the model modules, so they do not import one another for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..spec import Prior, Priors

#: the priors a resolution holds, in the order they are listed
PRIOR_NAMES = ("intercept", "b", "sd", "sigma", "cor", "alpha", "cutpoints")


@dataclass(frozen=True)
class ResolvedPriors:
    intercept: Prior
    b: Prior
    sd: Prior
    sigma: Prior | None  # gaussian only
    cor: Prior | None  # None: lkj(2)
    alpha: Prior | None = None  # negative binomial only
    cutpoints: Prior | None = None  # ordinal, when the spec gives one
    #: the spec gave no ``b`` prior, so each control column's prior is scaled to its SD (bambi's rule)
    b_default: bool = True
    #: the outcome family is gaussian (alpha and cutpoints do not apply)
    gaussian: bool = True

    def __getitem__(self, name: str) -> Prior | None:
        if name not in PRIOR_NAMES:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Prior | None = None) -> Prior | None:
        """The prior called ``name`` (None where it does not apply), or ``default`` for a name that is not a prior."""
        return getattr(self, name) if name in PRIOR_NAMES else default

    def items(self) -> Iterator[tuple[str, Prior | None]]:
        """(name, prior) for the priors that apply to the family (gaussian: no alpha or cutpoints)."""
        for name in PRIOR_NAMES[:5] if self.gaussian else PRIOR_NAMES:
            yield name, getattr(self, name)


def resolve_priors(priors: Priors, adata) -> ResolvedPriors:
    """The spec's priors, with defaults scaled to the outcome where the spec is silent.

    Gaussian defaults (documented in the README): intercept normal(mean(y), 2.5 sd(y)); coefficients
    normal(0, sd(y)) for the treatment, normal(0, 2.5 sd(y) / sd(x)) per control column (bambi's rule);
    group SDs halfnormal(sd(y)); sigma halfnormal(2 sd(y)); lkj(2).
    Other families work on the link scale, where one unit is already a large effect: intercept
    normal(link(mean y), 2.5); treatment normal(0, 1); controls normal(0, 2.5 / sd(x)); group SDs
    halfnormal(1); negative binomial dispersion alpha halfcauchy(1) (bambi's); ordinal cutpoints
    normal(logit of the cumulative category shares, 2.5), ordered.
    """
    b_default = priors.get("b") is None
    if adata.family != "gaussian":
        from .families import default_location

        return ResolvedPriors(
            intercept=priors.get("intercept") or Prior(family="normal", params=(_r(default_location(adata)), 2.5)),
            b=priors.get("b") or Prior(family="normal", params=(0.0, 1.0)),
            sd=priors.get("sd") or Prior(family="halfnormal", params=(1.0,)),
            sigma=None,
            cor=priors.get("cor"),
            alpha=(priors.get("alpha") or Prior(family="halfcauchy", params=(1.0,))) if adata.family == "negativebinomial" else None,
            cutpoints=priors.get("cutpoints") if adata.family == "ordinal" else None,
            b_default=b_default,
            gaussian=False,
        )
    sd_y = float(np.std(adata.y)) or 1.0
    mean_y = float(np.mean(adata.y))
    return ResolvedPriors(
        intercept=priors.get("intercept") or Prior(family="normal", params=(_r(mean_y), _r(2.5 * sd_y))),
        b=priors.get("b") or Prior(family="normal", params=(0.0, _r(sd_y))),
        sd=priors.get("sd") or Prior(family="halfnormal", params=(_r(sd_y),)),
        sigma=priors.get("sigma") or Prior(family="halfnormal", params=(_r(2 * sd_y),)),
        cor=priors.get("cor"),
        b_default=b_default,
        gaussian=True,
    )


def _r(x: float) -> float:
    return float(f"{x:.3g}")


def control_prior_sds(resolved: ResolvedPriors, adata) -> np.ndarray | None:
    """Each control column's prior SD under the default ``b`` prior (2.5 sd(y) / sd(x)); None when the spec gave ``b``."""
    if not resolved.b_default or adata.control_matrix.shape[1] == 0:
        return None
    sd_y = (float(np.std(adata.y)) or 1.0) if adata.family == "gaussian" else 1.0
    sd_x = adata.control_matrix.std(axis=0)
    sd_x[sd_x == 0] = 1.0
    return np.array([_r(2.5 * sd_y / s) for s in sd_x])
