"""The family registry: every outcome family hetreport fits, and what its numbers are.

One record per family. The spec's ``family:`` vocabulary, the hierarchical model's links, the GLM's
tables and the report's words are all read from here; nothing else lists families. This module
imports nothing heavy, so the spec can be checked against it before any model code is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    link: str  # identity | logit | log | cumulative logit
    link_scale: str  # what theta_g is, for the report
    linear_scale: str  # the scale on which the model is linear
    response: str  # what the response-scale effect is a difference of
    unit: str  # the effect's unit, for the report ("percentage points" etc.)
    title: str  # the model's name in the report ("logit", "Poisson")
    glm_estimand: str | None  # the GLM's average marginal effect, in words; None: no GLM (OLS is the model)

    @property
    def identity(self) -> bool:
        return self.link == "identity"

    @property
    def has_glm(self) -> bool:
        return self.glm_estimand is not None


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "gaussian", "identity", "difference in means", "the outcome's", "the mean outcome", "outcome units", "linear (Gaussian)", None
        ),
        Family(
            "bernoulli",
            "logit",
            "log odds ratio",
            "log-odds",
            "the probability that the outcome is 1",
            "probability",
            "logit",
            "difference in the probability of y = 1",
        ),
        Family(
            "binomial",
            "logit",
            "log odds ratio",
            "log-odds",
            "the probability of success per trial",
            "probability",
            "binomial logit",
            "difference in the probability of success per trial",
        ),
        Family("poisson", "log", "log rate ratio", "log", "the expected count", "count", "Poisson", "difference in the expected count"),
        Family(
            "negativebinomial",
            "log",
            "log rate ratio",
            "log",
            "the expected count",
            "count",
            "negative binomial",
            "difference in the expected count",
        ),
        Family(
            "ordinal",
            "cumulative logit",
            "cumulative log odds ratio",
            "cumulative log-odds",
            "the expected category (the mean of the outcome's codes)",
            "category",
            "ordinal (cumulative logit)",
            "difference in the expected category value (the outcome's codes)",
        ),
    )
}

#: the spec's ``family:`` vocabulary, in registry order
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def get_family(name: str) -> Family:
    return FAMILIES[name]
