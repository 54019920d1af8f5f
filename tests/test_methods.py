"""The method and family registries: one source for names, labels, styles and vocabularies."""

from __future__ import annotations

import typing

import pandas as pd
import pytest

from hetreport import families
from hetreport import methods as registry
from hetreport.effects import NON_MODIFIER_COLUMNS, validate
from hetreport.errors import DataError, SpecError
from hetreport.spec import Analysis, Spec, parse_spec

BASE = {"title": "t", "data": {"path": "d.csv"}, "outcome": "y", "treatment": "t", "analyses": [{"name": "a", "modifiers": ["m"]}]}


def test_spec_family_vocabulary_is_the_family_registry():
    assert typing.get_args(Spec.model_fields["family"].annotation) == families.FAMILY_NAMES
    inner = [x for x in typing.get_args(Analysis.model_fields["family"].annotation) if x is not type(None)]
    assert typing.get_args(inner[0]) == families.FAMILY_NAMES


def test_glm_tables_are_derived_from_the_family_registry():
    from hetreport.models import glm

    assert set(glm.FAMILIES) == {f.name for f in families.FAMILIES.values() if f.has_glm} == set(families.FAMILY_NAMES) - {"gaussian"}
    for f in glm.FAMILIES:
        assert glm.LINKS[f] == families.FAMILIES[f].link and glm.RESPONSE_SCALE[f] == families.FAMILIES[f].glm_estimand


def test_report_and_simulation_names_come_from_the_registry():
    from hetreport.report.build import METHOD_NAMES
    from hetreport.simstudy.design import APPROACHES
    from hetreport.simstudy.report import TABLE_NAMES, TEXT_NAMES

    assert METHOD_NAMES == {m.name: m.title for m in registry.REGISTRY.values()}
    assert set(APPROACHES) == {m.name for m in registry.REGISTRY.values() if m.simulation}
    assert all(TEXT_NAMES[a] == registry.get(a).text for a in APPROACHES) and set(TABLE_NAMES) == set(registry.REGISTRY)


def test_every_registered_fit_function_and_option_model_resolves():
    for m in registry.REGISTRY.values():
        assert callable(m.fit_function())
        if m.options:
            assert m.parse_options({}) is not None


def test_methods_key_default_and_per_analysis():
    spec = parse_spec(BASE)
    sel = spec.methods_of(spec.analyses[0])
    assert sel.names == registry.default_names()
    assert [m.name for m in sel.methods("gaussian")] == [n for n in registry.default_names() if n != "glm_full"]
    spec = parse_spec(
        {
            **BASE,
            "methods": ["hierarchical", "ols_full"],
            "analyses": [
                {"name": "a", "modifiers": ["m"]},
                {"name": "b", "modifiers": ["m"], "methods": ["ols_full", "subgroup", "hierarchical"]},
            ],
        }
    )
    assert spec.methods_of(spec.analyses[0]).names == ("ols_full", "hierarchical")  # registry order
    assert spec.methods_of(spec.analyses[1]).names == ("ols_full", "subgroup", "hierarchical")


def test_a_listed_method_that_does_not_fit_the_family_is_refused_before_fitting():
    spec = parse_spec({**BASE, "methods": ["ols_full", "glm_full", "hierarchical"]})
    with pytest.raises(SpecError, match=r"glm_full.*does not fit the gaussian family.*Remove 'glm_full'"):
        spec.methods_of(spec.analyses[0])
    spec = parse_spec({**BASE, "family": "bernoulli", "methods": ["ols_full", "glm_full", "hierarchical"]})
    assert [m.name for m in spec.methods_of(spec.analyses[0]).methods("bernoulli")] == ["ols_full", "glm_full", "hierarchical"]


def test_methods_key_errors_name_the_field_and_the_fix():
    with pytest.raises(SpecError, match=r"unknown method 'hierarchal'.*hierarchical"):
        parse_spec({**BASE, "methods": ["ols_full", "hierarchal"]})
    with pytest.raises(SpecError, match=r"analyses\[0\]\.methods.*must include hierarchical"):
        parse_spec({**BASE, "analyses": [{"name": "a", "modifiers": ["m"], "methods": ["ols_full"]}]})
    with pytest.raises(SpecError, match="listed twice"):
        parse_spec({**BASE, "methods": ["ols_full", "hierarchical", "ols_full"]})
    with pytest.raises(SpecError, match="takes no options"):
        parse_spec({**BASE, "method_options": {"ols_full": {"x": 1}}})


def test_methods_key_absent_leaves_the_spec_hash_unchanged():
    """Specs written before the registry hash as before: absent keys are not part of the canonical form."""
    canon = parse_spec(BASE).canonical()
    assert "methods" not in canon and "method_options" not in canon and "methods" not in canon["analyses"][0]
    assert parse_spec({**BASE, "methods": list(registry.default_names())}).spec_hash() != parse_spec(BASE).spec_hash()


def _table(**change):
    row = {
        "analysis": "a",
        "method": "ols_full",
        "group": "g1",
        "m": 1,
        "n": 10,
        "n_treated": 5,
        "n_control": 5,
        "estimate": 0.1,
        "std_error": 0.1,
        "lower_90": -0.06,
        "upper_90": 0.26,
        "lower_95": -0.1,
        "upper_95": 0.3,
        "prob_positive": float("nan"),
        "estimable": True,
        "group_label": "g1",
        "median": float("nan"),
        "df": 8.0,
        "p_value": 0.3,
        "note": "",
        "flag": "",
    }
    row.update(change)
    return pd.DataFrame([row])


def test_validate_accepts_the_contract_and_names_each_violation():
    assert validate(_table()) is not None
    assert [c for c in _table().columns if c not in NON_MODIFIER_COLUMNS] == ["m"]
    with pytest.raises(DataError, match="unknown method"):
        validate(_table(method="forest"))
    with pytest.raises(DataError, match="duplicate"):
        validate(pd.concat([_table(), _table()]))
    with pytest.raises(DataError, match="missing column"):
        validate(_table().drop(columns="upper_95"))
    with pytest.raises(DataError, match="must be numeric"):
        validate(_table(estimate="high"))
    with pytest.raises(DataError, match="runs backwards"):
        validate(_table(lower_95=0.5))
