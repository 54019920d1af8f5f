"""Typed records carried one way: facts computed once in fit, saved and loaded as the same record; resolved priors."""

import json
import math
from dataclasses import asdict, fields

import numpy as np
import pytest

from hetreport.facts import Facts, Interval, compute_facts, facts_from_dict
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
    assert all(isinstance(lev["effect"], Interval) for mf in loaded.modifiers for lev in mf.levels)
    assert all(isinstance(t["sd_slope"], Interval) for t in loaded.terms)
    assert _same(asdict(loaded), asdict(carried))
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())[a.name]
    assert _same(saved, json.loads(json.dumps(asdict(carried), default=float)))


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
