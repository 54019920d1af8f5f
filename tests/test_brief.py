"""The two-page brief: statements generated from the report's facts and checked against them
(and against the effects table, a second route), and the brief rendered on the built-in route."""

import re
import warnings
from dataclasses import replace
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest

from hetreport.errors import SpecError
from hetreport.facts import CREDIBLE, Interval, compute_facts
from hetreport.report import brief as brief_mod
from hetreport.report import build_and_render
from hetreport.report.build import analysis_context, tables_for
from hetreport.report.format import num, pct
from hetreport.spec import parse_spec


def _context(results, a):
    facts = compute_facts(a, results.effects)
    tables = tables_for(a, results.effects, facts, "x", results.spec.report.min_arm)
    return analysis_context(a, results, {}, tables, facts)


@pytest.fixture(scope="module")
def brief_and_ctx(small_study):
    _, results = small_study
    a = results.analyses[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = _context(results, a)
    study = {"conformance": None, "title": results.spec.title, "date": ""}
    return brief_mod.brief_for(ctx, [], study, results.spec), ctx, results


def test_headline_states_the_average_and_its_interval(brief_and_ctx):
    b, ctx, results = brief_and_ctx
    f = ctx["f"]
    # second route: the average effect recomputed from the draws here
    d = ctx["a"].draws("average_effect")
    assert np.isclose(f.average.estimate, d.mean())
    assert f"{num(np.quantile(d, 0.025))} to {num(np.quantile(d, 0.975))}" in b.headline
    assert num(abs(d.mean())) in b.headline
    word = "raises" if np.quantile(d, 0.025) > 0 else ("lowers" if np.quantile(d, 0.975) < 0 else "changes")
    assert word in b.headline
    assert f"{f.n:,}" in b.headline and f"{f.n_groups} groups" in b.headline


def test_findings_name_the_extremes_with_their_uncertainty(brief_and_ctx):
    b, ctx, results = brief_and_ctx
    f = ctx["f"]
    eff = results.effects
    hier = eff[(eff["analysis"] == ctx["name"]) & (eff["method"] == "hierarchical")]
    top, bottom = hier.loc[hier["estimate"].idxmax()], hier.loc[hier["estimate"].idxmin()]  # second route: the effects table
    first = b.findings[0]
    assert str(top["group_label"]) in first and str(bottom["group_label"]) in first
    assert num(top["estimate"]) in first and num(bottom["estimate"]) in first
    apart = "we cannot tell these two groups apart" in first
    assert apart == (f.prob_largest_above_smallest < CREDIBLE)
    assert pct(f.prob_largest_above_smallest) in first
    assert 3 <= len(b.findings) + (b.agreement is not None) <= 5
    counted = re.search(r"In (\d+) of the (\d+) groups the effect is positive", " ".join(b.findings))
    assert counted and int(counted.group(1)) == int((hier["prob_positive"] >= CREDIBLE).sum())


def test_largest_among_well_measured_groups(brief_and_ctx):
    b, ctx, results = brief_and_ctx
    min_arm = results.spec.report.min_arm
    g = ctx["a"].groups
    ok = g[(g["n_treated"] >= min_arm) & (g["n_control"] >= min_arm)]["group"]
    eff = results.effects
    hier = eff[(eff["analysis"] == ctx["name"]) & (eff["method"] == "hierarchical") & eff["group"].isin(ok)]
    best = hier.loc[hier["estimate"].idxmax()]
    got = b.numbers["best_measured"]
    assert got.group == best["group"] and np.isclose(got.effect.estimate, best["estimate"])


def _fake(title, lo, hi):
    return {"title": title, "f": SimpleNamespace(average=Interval((lo + hi) / 2, lo, hi))}


def test_direction_and_agreement_sentences():
    assert brief_mod.direction(Interval(0.2, 0.1, 0.3)) == "positive"
    assert brief_mod.direction(Interval(-0.2, -0.3, -0.1)) == "negative"
    assert brief_mod.direction(Interval(0.1, -0.1, 0.3)) == "unclear"
    head = _fake("A", 0.1, 0.3)
    one = brief_mod._agreement(head, [_fake("B", 0.2, 0.4)])
    assert one == "The other analysis of this study agrees: it finds a positive average effect."
    assert (
        brief_mod._agreement(head, [_fake("B", 0.2, 0.4)] * 3)
        == "All 3 other analyses of this study agree: each finds a positive average effect."
    )
    two = brief_mod._agreement(head, [_fake("B", 0.2, 0.4), _fake("C", -0.1, 0.4)])
    assert (
        two
        == "1 of the other 2 analyses agrees in finding a positive average effect; C (an average effect whose interval includes zero) does not."
    )
    assert brief_mod._agreement(head, []) is None


def test_cannot_tell_sentences_agree_in_number(small_study, brief_and_ctx):
    _, ctx, results = brief_and_ctx
    for n_one, n_small in ((1, 1), (2, 3)):
        g = ctx["a"].groups.copy()
        g["one_arm"] = False
        g["small_arm"] = False
        g.loc[g.index[:n_one], "one_arm"] = True
        g.loc[g.index[n_one : n_one + n_small], "small_arm"] = True
        a = SimpleNamespace(**{k: getattr(ctx["a"], k) for k in ("posterior",)}, groups=g, group_draws=ctx["a"].group_draws)
        f = replace(ctx["f"], n_one_arm=n_one)
        b = brief_mod.brief_for({**ctx, "a": a, "f": f}, [], {"conformance": None}, results.spec)
        text = " ".join(b.cannot_tell)
        if n_one == 1:
            assert "1 of the" in text and "groups has people in only one arm" in text
            assert "1 group has fewer than" in text and "its estimate is" in text
        else:
            assert "2 of the" in text and "groups have people in only one arm" in text
            assert "3 groups have fewer than" in text and "their estimates are" in text


def test_headline_must_name_an_analysis(tmp_path):
    (tmp_path / "d.csv").write_text("y,treat,m\n1,0,a\n2,1,b\n")
    raw = {
        "title": "t",
        "data": {"path": "d.csv"},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [{"name": "main", "modifiers": ["m"]}],
        "report": {"headline": "mian"},
    }
    with pytest.raises(SpecError) as err:
        parse_spec(raw, base_dir=tmp_path)
    assert "report.headline" in str(err.value) and "main" in str(err.value)
    raw["report"] = {"headline": "main"}
    spec = parse_spec(raw, base_dir=tmp_path)
    assert spec.report.headline == "main"
    del raw["report"]
    # an unset headline leaves the spec hash of older specs unchanged
    assert "headline" not in parse_spec(raw, base_dir=tmp_path).canonical()["report"]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.slow
def test_brief_renders_to_html_and_at_most_two_pdf_pages(small_study, brief_and_ctx):
    from pypdf import PdfReader

    d, results = small_study
    b = brief_and_ctx[0]
    out = d / "brief-out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = build_and_render(results, out, route="builtin", formats=["html", "pdf"])
    assert outcome.outputs["brief-html"] == out / "report" / "brief.html"
    pdf = PdfReader(str(out / "report" / "brief.pdf"))
    assert 1 <= len(pdf.pages) <= 2
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in pdf.pages))
    assert "What we found" in text and num(b.numbers["average"].lower) in text
    alts = []
    for num_ in range(1, 2000):
        try:
            obj = pdf.get_object(num_)
        except Exception:  # noqa: BLE001 - past the last object
            continue
        if hasattr(obj, "get") and obj.get("/Alt"):
            alts.append(str(obj["/Alt"]))
    assert b.figure_alt in alts  # the PDF's figure carries its alt text (tagged PDF)
    parser = _Images()
    parser.feed((out / "report" / "brief.html").read_text(encoding="utf-8"))
    assert len(parser.images) == 1 and parser.images[0]["alt"] == b.figure_alt
    html_text = re.sub(r"\s+", " ", "".join(parser.text))
    assert b.headline in html_text
    for line in b.findings:
        assert line in html_text
    assert "Table of contents" not in html_text and 'id="TOC"' not in (out / "report" / "brief.html").read_text()


# "1 of 24 groups have", "(1 have ...)", "1 groups": a count of one with a plural verb or noun
_PLURAL_AFTER_ONE = re.compile(
    r"(?<![\d.,−-])1 (?:(?:of (?:the )?\d+ )?[a-z]+ (?:have|are|were|do)\b|(?:have|are)\b|(?!of )(?:[a-z]+ )?(?:groups|units|analyses)\b)"
)


def test_the_plural_check_catches_what_it_should():
    for bad in ("1 of 24 groups have", "(1 have people", "in 1 groups", "1 small groups"):
        assert _PLURAL_AFTER_ONE.search(bad), bad
    for good in ("1 of 24 groups has", "(1 has people", "in 1 group", "2,501 units", "0.1 units", "11 groups"):
        assert not _PLURAL_AFTER_ONE.search(good), good


def test_singular_agreement_in_generated_sentences(brief_and_ctx, tmp_path):
    from hetreport.report.build import add_extreme_words, environment, join_words, plural, template_data
    from hetreport.report.questions import analysis_questions

    b, ctx, results = brief_and_ctx
    f = replace(ctx["f"], n_one_arm=1, n_credibly_positive=1, n_credibly_negative=1)
    ols = replace(ctx["ols"], n_estimable=f.n_groups - 1)
    c = add_extreme_words(
        replace(ctx, f=f, ols=ols, is_headline=True, q=analysis_questions(ctx.a, results, tmp_path)), results.spec.report.min_arm
    )
    env = environment()
    env.globals.update(plural=plural, join_words=join_words)
    text = env.from_string('{% include "_summary.qmd.j2" %}').render(
        **template_data({"summary_order": [c], "min_arm": 5, "brief_figure": None})
    )
    text = re.sub(r"\s+", " ", text.replace("\\", ""))
    assert "(1 has people in only one treatment arm)" in text
    assert f"1 of {f.n_groups} groups has an effect" in text and "and 1 has one that is negative" in text
    assert not _PLURAL_AFTER_ONE.search(text), _PLURAL_AFTER_ONE.search(text)
    # and every sentence of the brief, with counts of one
    g = ctx["a"].groups.copy()
    g["one_arm"], g["small_arm"] = False, False
    g.loc[g.index[0], "one_arm"] = True
    g.loc[g.index[1], "small_arm"] = True
    a = SimpleNamespace(posterior=ctx["a"].posterior, groups=g, group_draws=ctx["a"].group_draws)
    f1 = replace(f, n_credibly_negative=0, n_credibly_positive=f.n_groups - 1)
    b1 = brief_mod.brief_for({**ctx, "a": a, "f": f1}, [_fake("B", 0.1, 0.2)], {"conformance": None}, results.spec)
    sentences = " ".join([b1.headline, *b1.findings, *b1.cannot_tell, b1.agreement or ""])
    assert "For the remaining group" in sentences
    assert not _PLURAL_AFTER_ONE.search(sentences), _PLURAL_AFTER_ONE.search(sentences)


def test_one_rule_for_what_ols_estimates(brief_and_ctx, tmp_path):
    """Groups with a one-unit arm get an OLS estimate but no HC2 interval: page one's count, the
    approaches table, the group table and the comparison figure all leave the same groups out."""
    from hetreport import figures as figs
    from hetreport.facts import estimated
    from hetreport.report.build import (
        add_extreme_words,
        default_facet,
        display_effects,
        environment,
        join_words,
        names_for,
        plural,
        template_data,
    )
    from hetreport.report.questions import analysis_questions

    _, ctx, results = brief_and_ctx
    a = ctx["a"]
    eff = results.effects.copy()
    ols_rows = eff.index[(eff["analysis"] == a.name) & (eff["method"] == "ols_full")]
    no_interval = ols_rows[:3]  # as fit_ols_full writes a one-unit arm: estimable, a point estimate, no SE
    eff.loc[no_interval, ["std_error", "lower_90", "upper_90", "lower_95", "upper_95"]] = np.nan
    assert eff.loc[no_interval, "estimate"].notna().all() and eff.loc[no_interval, "estimable"].all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        facts = compute_facts(a, eff)
        tables = tables_for(a, eff, facts, "x", results.spec.report.min_arm)
        c = analysis_context(a, results, {}, tables, facts)
    G = facts.n_groups
    expected = G - 3 - int(eff.loc[ols_rows[3:], "estimable"].eq(False).sum())
    assert int(estimated(eff.loc[ols_rows]).sum()) == expected
    assert c["ols"].n_estimable == expected and facts.shrinkage["n_compared"] == expected
    # the approaches table: its "Groups estimated" column
    assert re.search(rf"\|\s*OLS[^|\n]*\|\s*{expected}\s*\|", tables["methods"]), tables["methods"]
    # the group table: cells with an interval, and three that say there is none
    assert tables["effects"].count("no interval") == 3
    # the comparison figure: OLS points drawn, and the caption's count of groups left out
    shown = display_effects(a, eff)
    plot = figs.plot_comparison(shown, default_facet(a, None), names=names_for(a))
    drawn = {int(i): len(layer_data(plot, i)) for i in range(len(plot.layers))}
    assert expected in drawn.values() and f"{G - expected} by OLS" in plot.labels.get("caption", "")
    # page one
    c = add_extreme_words(replace(c, is_headline=True, q=analysis_questions(a, results, tmp_path)), results.spec.report.min_arm)
    env = environment()
    env.globals.update(plural=plural, join_words=join_words)
    text = env.from_string('{% include "_summary.qmd.j2" %}').render(
        **template_data({"summary_order": [c], "min_arm": 5, "brief_figure": None})
    )
    text = re.sub(r"\s+", " ", text.replace("\\", ""))
    assert f"OLS can estimate {expected} of the {G} groups" in text
    assert "3 have no OLS estimate with an interval" in text


def layer_data(plot, i):
    from hetreport.figures import layer_data as ld

    return ld(plot, i)


def test_introduction_names_the_approaches_beyond_the_two(brief_and_ctx, tmp_path):
    """Page one's first paragraph names an approach some analysis adds (the causal forest), and says nothing
    more when none does."""
    from hetreport.report.build import add_extreme_words, environment, join_words, plural, template_data
    from hetreport.report.questions import analysis_questions

    _, ctx, results = brief_and_ctx
    c = add_extreme_words(replace(ctx, is_headline=False, q=analysis_questions(ctx.a, results, tmp_path)), results.spec.report.min_arm)
    env = environment()
    env.globals.update(plural=plural, join_words=join_words)
    render = lambda extra: re.sub(  # noqa: E731
        r"\s+",
        " ",
        env.from_string('{% include "_summary.qmd.j2" %}')
        .render(**template_data({"summary_order": [c], "min_arm": 5, "brief_figure": None, "extra_methods": extra}))
        .replace("\\", ""),
    )
    assert "the Bayesian causal forest is shown beside them where an analysis asks for it." in render(["the Bayesian causal forest"])
    assert "shown beside them" not in render([])
