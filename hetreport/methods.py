"""The method registry: every approach hetreport can fit, and how the later stages show it.

One :class:`Method` record per approach: its name in the tidy effects table, its labels, its style
in the figures, which families it fits, whether it is in the default set, the simulation study and
the comparison figure and table, and where its fit function lives. ``api.fit``, ``facts``, the
figures, the report builder and the simulation study all read this registry; nothing else lists
methods. Adding an approach is one module with a fit function plus one entry here.

A fit function has the signature ``fit(adata, groups, request: FitRequest) -> MethodFit`` and
returns one row per group in the shape :func:`hetreport.effects.method_rows` joins to the group
table (``group``, ``estimate``, ``std_error``, ``lower_90`` ... ``prob_positive``, ``estimable``
and optionally ``median``, ``df``, ``p_value``, ``note`` and the ``link_*`` columns).

This module imports nothing heavy: fit functions, option models and describers are named as
``"module:attribute"`` and imported when first used, so a spec is checked against the registry
before any model code is loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError, suggest
from .families import FAMILIES


@dataclass(frozen=True)
class FitRequest:
    """What a method's fit function may read besides the data: the spec's settings for this analysis."""

    se_type: str = "HC2"
    priors: Any = None  # spec.Priors (hierarchical)
    sampler: Any = None  # spec.Sampler (hierarchical)
    mode: str = "all"  # hierarchical terms
    correlated: bool = True
    predictors: tuple[str, ...] = ()
    #: this method's options, validated by its option model (empty: the defaults)
    options: Any = None
    seed: int = 0
    progress: bool = False
    #: the simulation study also scores fitted values against the data
    fitted: bool = False


@dataclass(frozen=True)
class MethodFit:
    """One method's result on one analysis."""

    method: str
    table: Any  # pandas DataFrame, one row per group (see the module docstring)
    formula: str
    details: dict  # JSON-able settings and facts about the fit (saved; printed in the methods section)
    fitted: Any = None  # numpy array of fitted means per row, when the request asked for them
    extra: Any = None  # method-specific objects the pipeline keeps (the hierarchical fit)


@dataclass(frozen=True)
class Method:
    name: str  # the ``method`` column of effects.csv
    label: str  # figures' legend and the simulation tables
    title: str  # the report's tables
    text: str  # in running prose ("OLS with fully crossed interactions")
    color: str
    shape: str
    linetype: str
    fit: str  # "module:function", imported on first use
    kind: str = "frequentist"  # frequentist | bayesian (posterior probabilities in prob_positive)
    default: bool = True  # in the default ``methods:`` set
    #: families it fits (None: every family)
    families: tuple[str, ...] | None = None
    #: drawn in the comparison figure
    in_figure: bool = False
    #: a column of the group-effects table
    in_table: bool = False
    #: page one says where it disagrees with the hierarchical model about which group's effect is largest
    headline: bool = False
    #: available to the simulation study (``approaches:``)
    simulation: bool = True
    #: the import the fit needs beyond hetreport's own dependencies, and the extra that installs it
    requires: tuple[str, str] | None = None
    #: "module:Class": a pydantic model of the method's options (``method_options: {name: {...}}``)
    options: str | None = None
    #: "module:function": details -> one sentence for the report's methods section
    describe: str | None = None
    #: the table column's header ("OLS (95% CI)"); defaults to the label
    column: str = ""
    #: the simulation study's tables ("OLS, full"); defaults to the label
    short: str = ""

    def fits(self, family: str) -> bool:
        return self.families is None or family in self.families

    def fit_function(self) -> Callable:
        return _resolve(self.fit)

    def option_model(self):
        return _resolve(self.options) if self.options else None

    def parse_options(self, raw: dict | None):
        """The method's options as its option model (the defaults when none are given)."""
        model = self.option_model()
        if model is None:
            if raw:
                raise SpecError(f"method '{self.name}' takes no options; remove 'method_options: {self.name}'.", where="method_options")
            return None
        return model.model_validate(raw or {})

    def sentence(self, details: dict) -> str | None:
        return _resolve(self.describe)(details) if self.describe else None

    def check_available(self) -> None:
        """Raise a clear error when the method's optional dependency is not installed."""
        if self.requires is None:
            return
        module, extra = self.requires
        if importlib.util.find_spec(module) is None:
            raise SpecError(
                f"method '{self.name}' ({self.text}) needs the Python package '{module}', which is not installed. "
                f"Install it with `pip install hetreport[{extra}]` (or `pip install {module}`), or remove "
                f"'{self.name}' from 'methods:'.",
                where="methods",
            )


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


_OKABE_BLUE = "#0072B2"

#: every approach, in the order tables and legends list them
REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "ols_full",
            "OLS, full interactions",
            "OLS, full interactions",
            "OLS with fully crossed interactions",
            "#808080",
            "s",
            "dashed",
            "hetreport.models.frequentist:fit_ols_full",
            in_figure=True,
            in_table=True,
            column="OLS (95% CI)",
            short="OLS, full",
        ),
        Method(
            "glm_full",
            "GLM, full interactions (AME)",
            "GLM, full interactions (average marginal effects)",
            "the GLM with fully crossed interactions",
            "#666666",
            "v",
            "dashdot",
            "hetreport.models.frequentist:fit_glm_full",
            families=tuple(f.name for f in FAMILIES.values() if f.has_glm),
            in_table=True,
            simulation=False,
            column="GLM AME (95% CI)",
            short="GLM AME",
        ),
        Method(
            "ols_additive",
            "OLS, additive interactions",
            "OLS, additive interactions",
            "OLS with additive interactions",
            "#B3B3B3",
            "^",
            "dotted",
            "hetreport.models.frequentist:fit_ols_additive",
            short="OLS, additive",
        ),
        Method(
            "subgroup",
            "Subgroup difference in means",
            "Subgroup difference in means",
            "differences in means within groups",
            "#4D4D4D",
            "D",
            "dashdot",
            "hetreport.models.frequentist:fit_subgroup",
            short="Subgroup means",
        ),
        Method(
            "hierarchical",
            "Hierarchical (Bayesian)",
            "Hierarchical (Bayesian)",
            "hetreport's hierarchical model",
            _OKABE_BLUE,
            "o",
            "solid",
            "hetreport.models.hierarchical_method:fit",
            kind="bayesian",
            in_figure=True,
            in_table=True,
            column="Hierarchical (95% interval)",
            short="Hierarchical",
        ),
        Method(
            "bcf",
            "Bayesian causal forest",
            "Bayesian causal forest (stochtree)",
            "the Bayesian causal forest",
            "#262626",
            "P",
            (0, (3, 1, 1, 1, 1, 1)),
            "hetreport.models.bcf:fit",
            kind="bayesian",
            default=False,
            families=("gaussian", "bernoulli"),
            in_figure=True,
            in_table=True,
            headline=True,
            requires=("stochtree", "ml"),
            options="hetreport.models.bcf:BCFOptions",
            describe="hetreport.models.bcf:describe",
            column="Forest (95% interval)",
            short="Causal forest",
        ),
    )
}

#: the methods every analysis needs: the report is built around their comparison
#: the two roles every report and simulation study is built around: the regression with a separate
#: effect per group that every approach is compared with, and the model whose estimates the report leads with
BASELINE = "ols_full"
REFERENCE = "hierarchical"
REQUIRED = (BASELINE, REFERENCE)
#: the truth marker's style in the figures (not a method)
TRUTH_STYLE = {"label": "True effect", "color": "#000000", "shape": "x", "linetype": "none"}


def figure_methods(present) -> list[str]:
    """The methods of the comparison figure among those present, in registry order."""
    present = set(present)
    return [m.name for m in REGISTRY.values() if m.in_figure and m.name in present]


def table_methods(present) -> list[str]:
    """The methods with a column in the group-effects table among those present, in registry order."""
    present = set(present)
    return [m.name for m in REGISTRY.values() if m.in_table and m.name in present]


def simulation_names() -> tuple[str, ...]:
    """The approaches the simulation study can run, in registry order."""
    return tuple(m.name for m in REGISTRY.values() if m.simulation)


def get(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(
            f"unknown method '{name}'; hetreport knows {', '.join(REGISTRY)}.{suggest(name, list(REGISTRY))}", where="methods"
        ) from None


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def default_names() -> tuple[str, ...]:
    return tuple(m.name for m in REGISTRY.values() if m.default)


def ordered(present) -> list[str]:
    """The given method names in registry order (unknown names last, as given)."""
    present = list(dict.fromkeys(present))
    return [m for m in REGISTRY if m in present] + [m for m in present if m not in REGISTRY]


def label(name: str) -> str:
    return REGISTRY[name].label if name in REGISTRY else (TRUTH_STYLE["label"] if name == "truth" else name)


def style(name: str) -> dict[str, str]:
    """Label, colour, shape and linetype of a method (or of the truth marker)."""
    if name == "truth":
        return dict(TRUTH_STYLE)
    m = REGISTRY[name]
    return {"label": m.label, "color": m.color, "shape": m.shape, "linetype": m.linetype}


def check_names(requested, where: str = "methods") -> list[str]:
    """Validate a ``methods:`` list: known names, each once, the required ones present, dependencies installed."""
    out: list[str] = []
    for i, name in enumerate(requested):
        if name not in REGISTRY:
            raise SpecError(
                f"unknown method '{name}'; hetreport knows {', '.join(REGISTRY)}.{suggest(name, list(REGISTRY))}", where=f"{where}[{i}]"
            )
        if name in out:
            raise SpecError(f"method '{name}' is listed twice; list each method once.", where=f"{where}[{i}]")
        out.append(name)
    missing = [m for m in REQUIRED if m not in out]
    if missing:
        raise SpecError(
            f"'{where}' must include {' and '.join(missing)}: the report compares every approach with "
            f"{' and '.join(REGISTRY[m].text for m in REQUIRED)}. Add {', '.join(missing)} to the list.",
            where=where,
        )
    return ordered(out)


@dataclass(frozen=True)
class Selection:
    """The methods one analysis fits, in registry order, with their parsed options."""

    names: tuple[str, ...]
    options: dict = field(default_factory=dict)

    def methods(self, family: str) -> list[Method]:
        return [REGISTRY[n] for n in self.names if REGISTRY[n].fits(family)]
