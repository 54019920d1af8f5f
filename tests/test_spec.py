"""Spec validation: every bad spec is one SpecError naming its path and the fix."""

import pytest

from hetreport.errors import SpecError
from hetreport.spec import Prior, load_spec, parse_spec

BASE = dict(title="t", data={"path": "x.csv"}, outcome="y", treatment="t", analyses=[{"name": "a", "modifiers": ["m1", "m2"]}])


def with_(**kw):
    return {**BASE, **kw}


def test_minimal_spec_gets_defaults():
    spec = parse_spec(BASE)
    assert spec.sampler.chains == 4 and spec.ols.se_type == "HC2" and spec.family == "gaussian"
    assert spec.analyses[0].terms == "all" and spec.analyses[0].correlated


@pytest.mark.parametrize(
    "raw, where, words",
    [
        (with_(analyses=[{"name": "a", "modifers": ["m1"]}]), "analyses[0].modifers", "Did you mean 'modifiers'"),
        (with_(analyses=[{"name": "a", "modifiers": ["m1", "t"]}]), "analyses[0].modifiers[1]", "is the treatment"),
        (with_(analyses=[{"name": "a", "modifiers": ["m1", "y"]}]), "analyses[0].modifiers[1]", "is the outcome"),
        (
            with_(analyses=[{"name": "a", "modifiers": ["m1"], "controls": ["m1"]}]),
            "analyses[0].controls[0]",
            "both a modifier and a control",
        ),
        (with_(analyses=[{"name": "a", "modifiers": ["m1", "m1"]}]), "analyses[0].modifiers[1]", "listed twice"),
        (with_(priors={"sd": "normal(0, 1)"}), "priors.sd", "standard deviation cannot"),
        (with_(priors={"b": "nromal(0, 1)"}), "priors.b", "Did you mean 'normal'"),
        (with_(priors={"b": "normal(0)"}), "priors.b", "takes 2 number"),
        (with_(sampler={"draws": "many"}), "sampler.draws", "whole number"),
        (with_(ols={"se_type": "HC5"}), "ols.se_type", "'HC2'"),
        (with_(ols={"se_type": "cluster"}), "ols.cluster", "needs the column"),
        (with_(analyses=[{"name": "a", "modifiers": "m1"}]), "analyses[0].modifiers", "expected a list"),
        (with_(titel="x"), "titel", "Did you mean 'title'"),
        (with_(data={"path": "x", "bins": {"age": {"breaks": [3, 2]}}}), "data.bins.age", "increasing"),
        (with_(analyses=[{"name": "a", "modifiers": ["m"]}, {"name": "a", "modifiers": ["m"]}]), "analyses[1].name", "used twice"),
    ],
)
def test_bad_specs_name_path_and_fix(raw, where, words):
    with pytest.raises(SpecError) as err:
        parse_spec(raw, source="s.yml")
    msg = str(err.value)
    assert f"s.yml: {where}" in msg
    assert words in msg
    assert "\n" not in msg.strip()


def test_flow_mapping_priors_from_the_docs_are_rejoined(tmp_path):
    p = tmp_path / "s.yml"
    p.write_text(
        "title: t\ndata: {path: x.csv}\noutcome: y\ntreatment: t\nanalyses: [{name: a, modifiers: [m1, m2]}]\n"
        "priors: {intercept: normal(0, 0.75), b: normal(0, 0.25), sd: halfnormal(0.75), sigma: halfnormal(1)}\n"
    )
    spec = load_spec(p)
    assert spec.priors.get("intercept") == Prior(family="normal", params=(0.0, 0.75))
    assert str(spec.priors.get("sd")) == "halfnormal(0.75)"


def test_yaml_errors_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yml")
    p = tmp_path / "bad.yml"
    p.write_text("title: [unclosed\n")
    with pytest.raises(SpecError, match="line"):
        load_spec(p)


def test_yaml_cannot_construct_python_objects(tmp_path):
    p = tmp_path / "evil.yml"
    p.write_text("title: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError):
        load_spec(p)


def test_spec_hash_ignores_comments_and_key_order(tmp_path):
    a, b = tmp_path / "a.yml", tmp_path / "b.yml"
    a.write_text("title: t\noutcome: y\ntreatment: t\ndata: {path: x.csv}\nanalyses: [{name: a, modifiers: [m1, m2]}]\n")
    b.write_text(
        "# a comment\ntreatment: t\ntitle: t\ndata: {path: x.csv}\noutcome: y\nanalyses: [{modifiers: [m1, m2], name: a}]\nsampler: {chains: 4}\n"
    )
    assert load_spec(a).spec_hash() == load_spec(b).spec_hash()


def test_an_analysis_may_override_priors_in_one_line_flow_style(tmp_path):
    import yaml

    text = (
        "title: t\ndata: {path: d.csv}\noutcome: y\ntreatment: t\npriors: {b: normal(0, 0.5), sd: halfnormal(1)}\n"
        "analyses:\n  - {name: a, modifiers: [m], family: bernoulli, priors: {intercept: normal(0, 2.5), b: normal(0, 1)}}\n"
        "  - {name: c, modifiers: [m]}\n"
    )
    spec = parse_spec(yaml.safe_load(text), base_dir=tmp_path)
    first, second = (spec.priors_of(a) for a in spec.analyses)
    assert (first.intercept, first.b, first.sd) == ("normal(0, 2.5)", "normal(0, 1)", "halfnormal(1)")
    assert (second.intercept, second.b) == (None, "normal(0, 0.5)")


def test_an_analysis_may_override_sampler_settings(tmp_path):
    raw = {
        "title": "t",
        "data": {"path": "d.csv"},
        "outcome": "y",
        "treatment": "t",
        "sampler": {"draws": 500, "seed": 3},
        "analyses": [{"name": "a", "modifiers": ["m"], "sampler": {"target_accept": 0.995}}, {"name": "b", "modifiers": ["m"]}],
    }
    spec = parse_spec(raw, base_dir=tmp_path)
    a, b = (spec.sampler_of(x) for x in spec.analyses)
    assert (a.draws, a.seed, a.target_accept) == (500, 3, 0.995)
    assert b.target_accept == spec.sampler.target_accept == 0.98
    with pytest.raises(SpecError, match="target_accept"):
        parse_spec({**raw, "analyses": [{"name": "a", "modifiers": ["m"], "sampler": {"target_accept": 1.5}}]}, base_dir=tmp_path)
