"""Typed records carried one way: facts computed once in fit, saved and loaded as the same record; resolved priors."""

import json
import math
import re
from dataclasses import asdict, fields

import numpy as np
import pytest

from hetreport.facts import Facts, Interval, LevelFact, PredictorFact, TermFact, compute_facts, facts_from_dict, facts_to_dict
from hetreport.models.priors import ResolvedPriors, control_prior_sds, resolve_priors
from hetreport.results import load_results
from hetreport.spec import Priors


def _same(a, b):
    """Equal, with NaN equal to NaN (json keeps NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_fit_carries_facts_and_loading_gives_back_the_same_records(small_study, tmp_path):
    _, results = small_study
    a = results.analyses[0]
    carried = results.facts[a.name]
    assert isinstance(carried, Facts)
    assert _same(asdict(carried), asdict(compute_facts(a, results.effects)))  # the second route: computed again
    results.save(tmp_path / "out")
    loaded = load_results(tmp_path / "out").facts[a.name]
    assert isinstance(loaded.average, Interval) and isinstance(loaded.largest.effect, Interval)
    assert all(isinstance(lev, LevelFact) and isinstance(lev.effect, Interval) for mf in loaded.modifiers for lev in mf.levels)
    assert all(isinstance(t, TermFact) and isinstance(t.sd_slope, Interval) for t in loaded.terms)
    assert loaded.terms[-1].term == ":".join(a.modifier_names) and loaded.terms == carried.terms  # no NaN in these
    assert _same(asdict(loaded), asdict(carried))
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())[a.name]
    assert _same(saved, json.loads(json.dumps(facts_to_dict(carried), default=float)))
    assert set(saved["terms"][0]) == {"term", "label", "sd_slope", "sd_intercept", "rho"}  # summary.json's keys as before


def test_slope_predictor_facts_round_trip_with_the_key_lambda(small_study):
    """summary.json keeps λ under "lambda" (a Python keyword, so the field is ``lambda_``)."""
    from dataclasses import replace

    _, results = small_study
    carried = results.facts[results.analyses[0].name]
    with_pred = replace(carried, predictors=(PredictorFact("m1", "First modifier", Interval(0.25, 0.1, 0.4)),))
    saved = json.loads(json.dumps(facts_to_dict(with_pred), default=float))
    assert saved["predictors"] == [
        {"name": "m1", "label": "First modifier", "lambda": {"estimate": 0.25, "lower": 0.1, "upper": 0.4, "level": 0.95}}
    ]
    back = facts_from_dict(saved)
    assert back.predictors == with_pred.predictors and back.terms == carried.terms
    # the report's predictors table reads the record
    from hetreport.report.build import tables_for

    t = tables_for(results.analyses[0], results.effects, with_pred, "x", results.spec.report.min_arm)
    assert re.search(r"\| First modifier \| 0\\?\.25 \\?\(0\.10 to 0\.40\\?\) \|", t["predictors"]), t["predictors"]


def test_facts_from_an_earlier_version_are_computed_again():
    assert facts_from_dict({"analysis": "x", "n": 3}) is None  # other fields: the loader computes them
    assert facts_from_dict(None) is None


def test_resolved_priors_are_a_frozen_record():
    from types import SimpleNamespace

    y = np.linspace(0.0, 4.0, 50)
    x = np.column_stack([np.linspace(1, 3, 50), np.r_[np.zeros(25), np.ones(25)]])
    adata = SimpleNamespace(family="gaussian", y=y, control_matrix=x)
    r = resolve_priors(Priors(), adata)
    assert isinstance(r, ResolvedPriors) and r.b_default and r.gaussian
    assert r["b"] is r.b and r.b.params == (0.0, float(f"{np.std(y):.3g}"))
    assert [k for k, _ in r.items()] == ["intercept", "b", "sd", "sigma", "cor"]
    with pytest.raises(KeyError):
        r["_b_default"]
    with pytest.raises(AttributeError):
        r.b_default = False  # frozen
    sds = control_prior_sds(r, adata)  # 2.5 sd(y) / sd(x), 3 significant digits
    expect = [float(f"{2.5 * np.std(y) / s:.3g}") for s in x.std(axis=0)]
    assert sds.tolist() == expect
    given = resolve_priors(Priors(b="normal(0, 3)"), adata)
    assert not given.b_default and control_prior_sds(given, adata) is None
    assert {f.name for f in fields(ResolvedPriors)} >= {"intercept", "b", "sd", "sigma", "cor", "alpha", "cutpoints"}


# the keys analysis_<name>.json and diagnostics.json held when these were dicts: the records keep them
_HIERARCHICAL_KEYS = {
    "formula_bambi", "formula_brms", "priors", "correlated", "backend", "terms", "mode", "slope_predictors", "family",
    "likelihood", "outcome_name", "categories", "category_labels", "timings", "sampler", "loo",
}  # fmt: skip
_DIAGNOSTICS_KEYS = {"quantities", "divergences", "draws", "max_treedepth_hits", "min_bfmi", "flags", "thresholds"}


def test_fit_records_are_frozen_and_round_trip_save_and_load(small_study, tmp_path):
    from dataclasses import FrozenInstanceError

    from hetreport.results import Diagnostics, HierarchicalInfo, MethodInfo

    _, results = small_study
    a = results.analyses[0]
    assert isinstance(a.diagnostics, Diagnostics) and isinstance(a.hierarchical, HierarchicalInfo)
    assert all(isinstance(m, MethodInfo) for m in [*a.ols.values(), *a.methods.values()])
    with pytest.raises(FrozenInstanceError):
        a.hierarchical.family = "bernoulli"
    results.save(tmp_path / "out")
    meta = json.loads((tmp_path / "out" / f"analysis_{a.name}.json").read_text())
    diag = json.loads((tmp_path / "out" / "diagnostics.json").read_text())[a.name]
    assert set(meta["hierarchical"]) == _HIERARCHICAL_KEYS and set(diag) == _DIAGNOSTICS_KEYS
    assert set(meta["ols"]["ols_full"]) >= {"formula", "se_type", "effect_vcov", "rank", "df_resid"}  # flat, as before
    b = load_results(tmp_path / "out").analysis(a.name)
    assert _same(b.hierarchical.to_dict(), json.loads(json.dumps(a.hierarchical.to_dict(), default=float)))
    assert _same(b.diagnostics.to_dict(), a.diagnostics.to_dict()) and b.diagnostics.flags == a.diagnostics.flags
    assert b.ols.keys() == a.ols.keys() and b.methods.keys() == a.methods.keys()
    for k in a.ols:
        assert _same(b.ols[k].to_dict(), json.loads(json.dumps(a.ols[k].to_dict(), default=float)))
    # the second route for the typed views: the worst R-hat / ESS from the per-quantity records by hand
    q = diag["quantities"].values()
    assert b.diagnostics.max_rhat == max(v["max_rhat"] for v in q)
    assert b.diagnostics.min_ess == min(min(v["min_ess_bulk"], v["min_ess_tail"]) for v in q)
    vcov = np.asarray(b.ols["ols_full"].effect_vcov, dtype=float)
    assert vcov.shape == (len(a.groups), len(a.groups))
    np.testing.assert_array_equal(vcov, np.asarray(meta["ols"]["ols_full"]["effect_vcov"], dtype=float))


def test_an_output_folder_from_before_the_records_still_loads(small_study, tmp_path):
    """A folder written when these were dicts and before the optional keys existed: the documented defaults."""
    _, results = small_study
    a = results.analyses[0]
    out = results.save(tmp_path / "old")
    path = out / f"analysis_{a.name}.json"
    meta = json.loads(path.read_text())
    for k in ("slope_predictors", "family", "likelihood", "outcome_name", "categories", "category_labels", "loo"):
        del meta["hierarchical"][k]
    del meta["methods"]
    path.write_text(json.dumps(meta))
    dpath = out / "diagnostics.json"
    diag = json.loads(dpath.read_text())
    del diag[a.name]["thresholds"]["divergences"]
    dpath.write_text(json.dumps(diag))
    b = load_results(out).analysis(a.name)
    h = b.hierarchical
    assert (h.family, h.outcome_name, h.slope_predictors, h.categories, h.loo, dict(h.likelihood)) == ("gaussian", None, (), (), None, {})
    assert b.methods == {} and b.diagnostics.thresholds.divergences == 0
    assert h.formula_brms == a.hierarchical.formula_brms and b.ols["ols_full"].se_type == a.ols["ols_full"].se_type


def test_the_analysis_context_is_a_frozen_record_templates_see_as_plain_data(small_study):
    from dataclasses import FrozenInstanceError, fields, replace

    from hetreport.report.build import AnalysisContext, View, analysis_context, tables_for, template_data

    _, results = small_study
    a = results.analyses[0]
    facts = results.facts[a.name]
    c = analysis_context(a, results, {}, tables_for(a, results.effects, facts, "x", results.spec.report.min_arm), facts)
    assert isinstance(c, AnalysisContext)
    with pytest.raises(FrozenInstanceError):
        c.title = "changed"
    names = [f.name for f in fields(AnalysisContext)]
    assert list(c) == names and c["f"] is c.f and c["diag"] is a.diagnostics  # the read-only mapping view
    with pytest.raises(KeyError):
        c["nothing"]
    assert c.se_type == a.ols["ols_full"].se_type and c.n_terms == len(a.hierarchical.terms) == len(facts.terms)
    view = template_data(replace(c, is_headline=True))
    assert isinstance(view, View) and list(view) == names and view.is_headline is True
    assert isinstance(view.a, View) and isinstance(view.diag, View) and view.diag.thresholds.rhat_max == a.diagnostics.thresholds.rhat_max
    assert "posterior" not in view.a  # the draws stay out of a template's reach
