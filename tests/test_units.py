"""An outcome's unit from ``labels.units`` next to every effect the documents say in words (issue 15 §5: "units
from labels"): the brief, page one, the report's and the paper's table captions and headers. Unset, nothing changes."""

import re
import warnings
from dataclasses import replace

import pytest

from hetreport.errors import SpecError
from hetreport.facts import compute_facts
from hetreport.report import brief as brief_mod
from hetreport.report import format as fmt
from hetreport.report.build import add_extreme_words, analysis_context, environment, tables_for
from hetreport.report.paper import _display, paper_tables, table_unit
from hetreport.report.template_data import template_data
from hetreport.spec import parse_spec

M = "\u2212"
NUMBER = rf"{M}?\d[\d,]*(?:\.\d+)?"


def _raw(**labels):
    raw = {
        "title": "t",
        "data": {"path": "d.csv"},
        "outcome": "earnings",
        "treatment": "t",
        "analyses": [{"name": "a", "modifiers": ["m"]}, {"name": "b", "modifiers": ["m"], "outcome": "hours"}],
    }
    if labels:
        raw["labels"] = labels
    return raw


# --------------------------------------------------------------------------- the spec key


def test_units_name_outcomes_and_are_checked(tmp_path):
    spec = parse_spec(_raw(units={"earnings": "dollars", "hours": "hours"}), base_dir=tmp_path)
    assert spec.unit_of(spec.analysis("a")) == "dollars" and spec.unit_of(spec.analysis("b")) == "hours"
    with pytest.raises(SpecError) as e:  # not an outcome: the key, the outcomes, a suggestion
        parse_spec(_raw(units={"earning": "dollars"}), base_dir=tmp_path)
    msg = str(e.value)
    assert "labels.units.earning" in msg and "earnings, hours" in msg and "Did you mean 'earnings'" in msg
    with pytest.raises(SpecError, match="labels.units.m.*not an outcome"):  # a modifier is not an outcome
        parse_spec(_raw(units={"m": "years"}), base_dir=tmp_path)
    with pytest.raises(SpecError, match="labels.units.earnings.*empty"):
        parse_spec(_raw(units={"earnings": " "}), base_dir=tmp_path)
    with pytest.raises(SpecError, match="unknown key 'unit'.*Did you mean 'units'"):
        parse_spec(_raw(unit={"earnings": "$"}), base_dir=tmp_path)


def test_a_probability_outcome_keeps_percentage_points(tmp_path):
    raw = _raw(units={"hours": "hours"})
    raw["analyses"][1]["family"] = "bernoulli"
    with pytest.raises(SpecError) as e:
        parse_spec(raw, base_dir=tmp_path)
    assert "labels.units.hours" in str(e.value) and "percentage points" in str(e.value) and "analysis 'b'" in str(e.value)


def test_units_are_sanitised_text(tmp_path):
    with pytest.warns(Warning, match="control character"):
        spec = parse_spec(_raw(units={"earnings": "dol\x1b[31mlars"}), base_dir=tmp_path)
    assert spec.labels.units["earnings"] == "dol[31mlars"
    # markup in a unit is text in the documents: the template escapes it like every label
    evil = fmt.unit_of("$x$ {{ 7*7 }}")
    assert not evil.prefix
    assert str(fmt.md(fmt.effect(3.0, evil))) == r"3\.00 \$x\$ \{\{ 7\*7 \}\}"


def test_units_enter_the_spec_hash_only_when_given(tmp_path):
    plain = parse_spec(_raw(), base_dir=tmp_path)
    assert "units" not in plain.canonical()["labels"]
    empty = parse_spec(_raw(units={}), base_dir=tmp_path)
    assert empty.spec_hash() == plain.spec_hash()
    dollars = parse_spec(_raw(units={"earnings": "dollars"}), base_dir=tmp_path)
    assert dollars.spec_hash() != plain.spec_hash()
    assert dollars.spec_hash() != parse_spec(_raw(units={"earnings": "$"}), base_dir=tmp_path).spec_hash()


# --------------------------------------------------------------------------- how a unit is written


@pytest.mark.parametrize(
    ("unit", "x", "text", "low_high"),
    [
        ("$", 812.4, "$812", f"{M}$12 to $1,500"),
        ("€", -812.4, f"{M}€812", f"{M}€12 to €1,500"),
        ("US$", 812.4, "US$812", f"{M}US$12 to US$1,500"),
        ("dollars", 812.4, "812 dollars", f"{M}12 to 1,500 dollars"),
        ("dollars", 1.0, "1 dollar", f"{M}12 to 1,500 dollars"),  # a regular plural after exactly 1
        ("hours worked", -1.0, f"{M}1 hour worked", f"{M}12 to 1,500 hours worked"),
        ("inches", 1.0, "1 inches", f"{M}12 to 1,500 inches"),  # an -es plural is not guessed at
        ("CHF", 812.4, "812 CHF", f"{M}12 to 1,500 CHF"),  # letters only: words after the number
        ("Swiss francs", 1.0, "1 Swiss franc", f"{M}12 to 1,500 Swiss francs"),
    ],
)
def test_symbol_before_words_after(unit, x, text, low_high):
    u = fmt.unit_of(unit)
    with fmt.using_digits(0):
        assert fmt.effect(x, u) == text
        assert fmt.effect_range(-12.2, 1500.1, u) == low_high
        assert fmt.interval(type("Iv", (), {"estimate": x, "lower": -12.2, "upper": 1500.1})(), unit=u) == f"{text} ({low_high})"
    assert template_data(u).prefix == u.prefix  # templates see the same unit


def test_without_a_unit_numbers_are_as_before():
    iv = type("Iv", (), {"estimate": 0.31, "lower": -0.12, "upper": 0.5})()
    assert fmt.effect(0.31) == fmt.num(0.31) == "0.31"
    assert fmt.effect_range(-0.12, 0.5) == fmt.ci(-0.12, 0.5)
    assert fmt.interval(iv) == fmt.interval(iv, unit=None) == f"0.31 ({M}0.12 to 0.50)"
    assert fmt.effect(float("nan"), fmt.unit_of("$")) == "—"


# --------------------------------------------------------------------------- the documents' sentences


def _with_units(results, unit):
    labels = results.spec.labels.model_copy(update={"units": {results.spec.outcome: unit}} if unit else {})
    return results.__class__(**{**results.__dict__, "spec": results.spec.model_copy(update={"labels": labels})})


def _contexts(results):
    a = results.analyses[0]
    facts = compute_facts(a, results.effects)
    unit = fmt.unit_of(results.spec.unit_of(results.spec.analysis(a.name)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = tables_for(a, results.effects, facts, "x", results.spec.report.min_arm, unit)
        c = analysis_context(a, results, {}, tables, facts)
    c = replace(c, is_headline=True, q={"contrasts": {"any": False}, "targeting": {"any": False}})
    return add_extreme_words(c, results.spec.report.min_arm)


def _page_one(results, c) -> str:
    from hetreport.report.build import join_words, plural

    env = environment(None)
    env.globals.update(plural=plural, join_words=join_words, md=fmt.md)
    text = env.get_template("_summary.qmd.j2").render(
        **template_data({"summary_order": [c], "min_arm": results.spec.report.min_arm, "brief_figure": None, "extra_methods": []})
    )
    return re.sub(r"\\(.)", r"\1", text).replace("*", "")  # markdown escapes and emphasis off: the words as read


def _effect_numbers(text: str) -> list[str]:
    """Every number on page one or in the brief that is not a count, a percentage, a p-value or part of a label."""
    out = []
    for m in re.finditer(NUMBER, text):
        after = text[m.end() : m.end() + 2]
        before = text[max(0, m.start() - 5) : m.start()]
        if "." not in m.group() or after.startswith("%") or re.search(r"p = <?$", before):  # counts, probabilities, p-values
            continue
        out.append((m.start(), m.end()))
    return out


def _unit_next_to_every_effect(text: str, unit: fmt.Unit) -> int:
    spans = _effect_numbers(text)
    for start, end in spans:
        if unit.prefix:
            ok = text[max(0, start - len(unit.text) - 1) : start].rstrip(M).endswith(unit.text)
        else:  # words once after a number or after a range "a to b dollars"
            rest = text[end:]
            m = re.match(rf" to {NUMBER}", rest)
            ok = rest[m.end() if m else 0 :].startswith(" " + unit.text)
        assert ok, f"no unit at {text[max(0, start - 40) : end + 40]!r}"
    return len(spans)


@pytest.mark.parametrize("unit", ["dollars", "$"])
def test_every_effect_on_page_one_and_in_the_brief_carries_the_unit(small_study, unit):
    _, results = small_study
    res = _with_units(results, unit)
    c = _contexts(res)
    u = fmt.unit_of(unit)
    page = _page_one(res, c)
    summary = page[page.index("Average effect.") : page.index("What the comparison of approaches")]
    assert _unit_next_to_every_effect(summary, u) >= 12  # average, raw difference, extremes, median, spread, modifier
    b = brief_mod.brief_for(c, [], {"conformance": None, "title": "t", "date": ""}, res.spec)
    for sentence in [b.headline, *b.findings, b.figure_alt]:
        _unit_next_to_every_effect(sentence, u)
    assert fmt.effect(abs(c["f"].average.estimate), u) in b.headline  # the same number as without a unit, with its unit
    assert fmt.effect(c["f"].average.estimate, u) in page
    # the tables say it in their captions and headers
    effects, levels = (re.sub(r"\\(.)", r"\1", str(c["tbl"][k])) for k in ("effects", "modifiers"))
    assert f"within each group, {fmt.unit_phrase(u)}." in effects and f"95% interval, {fmt.unit_phrase(u)})" in levels


def test_without_units_page_one_and_the_brief_are_unchanged(small_study):
    """The unset case prints what it printed before: bare numbers, the same sentences with and without the key."""
    _, results = small_study
    plain = _contexts(results)
    again = _contexts(_with_units(results, None))
    assert plain["effect_unit"] is None
    assert _page_one(results, plain) == _page_one(results, again)
    page = _page_one(results, plain)
    f = plain["f"]
    assert f"by {fmt.num(f.average.estimate)} (95% interval {fmt.num(f.average.lower)} to {fmt.num(f.average.upper)})" in page
    b = brief_mod.brief_for(plain, [], {"conformance": None, "title": "t", "date": ""}, results.spec)
    assert f"(95% interval {fmt.num(f.average.lower)} to {fmt.num(f.average.upper)})," in b.headline
    assert "Effect of the treatment within each group." in str(plain["tbl"]["effects"])


def test_paper_tables_say_the_unit_in_caption_and_header(small_study):
    _, results = small_study
    a = results.analyses[0]
    facts = compute_facts(a, results.effects)
    u = fmt.unit_of("dollars")
    tables = paper_tables(a, results.effects, facts, u)
    for name, (df, caption) in tables.items():
        assert caption.endswith("95% interval, in dollars).")  # a gaussian model: its SDs are in dollars too
        header, _ = _display(df, table_unit(a, name, u))
        assert any(h.endswith("(95% interval, in dollars)") for h in header)
    plain = paper_tables(a, results.effects, facts)
    assert all("dollars" not in cap for _, cap in plain.values())
    with_unit = _display(tables["group-effects"][0], u)[0]
    assert _display(plain["group-effects"][0])[0] == [h.replace(", in dollars", "") for h in with_unit]


def test_the_brief_figure_ticks_follow_the_unit():
    """The brief's y axis writes a currency tick as the text writes the effect; words stay in the axis title."""
    dollar = fmt.unit_of("$")
    assert [brief_mod.tick_label(v, dollar) for v in (-1000.0, 0.0, 1500.0)] == [f"{M}$1,000", "$0", "$1,500"]
    assert brief_mod.tick_label(1500.0, fmt.unit_of("dollars")) == "1,500"
    scale = brief_mod._ylim(-1000, 1500, dollar)
    assert scale.limits == (-1000, 1500) and [brief_mod.figs_plain(x) for x in ("$1,500",)] == scale.labels([1500.0])


def test_page_one_comparisons_and_targeting_say_the_unit(small_study, tmp_path):
    """The contrasts and targeting sentences of page one (compare:, report.targeting) carry the unit too."""
    from hetreport.report.questions import contrasts_context, targeting_context
    from hetreport.spec import Comparison, Targeting

    _, results = small_study
    res = _with_units(results, "dollars")
    a = res.analyses[0]
    analysis = res.spec.analysis(a.name).model_copy(update={"compare": [Comparison(name="c", a={"m2": 1}, b={"m2": 0})]})
    report = res.spec.report.model_copy(update={"targeting": Targeting(groups=2)})
    res = res.__class__(**{**res.__dict__, "spec": res.spec.model_copy(update={"analyses": [analysis], "report": report})})
    u = fmt.unit_of("dollars")
    sentence = contrasts_context(a, res, tmp_path)["entries"][0]["sentence"]
    assert _unit_next_to_every_effect(sentence, u) >= 3  # the hierarchical difference with its interval, OLS's
    brief = targeting_context(a, res, tmp_path)["brief"]
    assert _unit_next_to_every_effect(brief, u) >= 5


@pytest.mark.slow
def test_word_documents_say_the_unit_end_to_end(small_study, tmp_path):
    """The built-in route's report.docx and brief.docx of a study with a symbol unit: page one, the body's
    sections and the brief say each effect with it (the same text as HTML and PDF)."""
    docx = pytest.importorskip("docx")
    from hetreport.report import build_and_render

    _, results = small_study
    res = _with_units(results, "$")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = build_and_render(res, tmp_path / "out", formats=["docx"], route="builtin")

    def text(key):
        return "\n".join(p.text for p in docx.Document(str(outcome.outputs[key])).paragraphs)

    report, brief = text("docx"), text("brief-docx")
    f = _contexts(res)["f"]
    u = fmt.unit_of("$")
    assert f"by {fmt.effect(f.average.estimate, u)} (95% interval {fmt.effect_range(f.average.lower, f.average.upper, u)})" in report
    assert f"The smallest group effect is {fmt.interval(f.smallest.effect, unit=u)}" in report  # the distribution section
    assert f"(95% interval {fmt.effect_range(f.average.lower, f.average.upper, u)})," in brief
    headline = next(p for p in brief.splitlines() if p.startswith("On average"))
    assert _unit_next_to_every_effect(headline, u) == 3


def test_a_planned_study_simulates_each_analysis_with_its_own_outcomes_unit():
    """Pre-registration simulates one analysis at a time: a unit for another analysis's outcome is left out of
    that analysis's simulated spec instead of failing it (labels.units names only the spec's outcomes)."""
    import yaml

    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import _analysis_inputs, cells
    from tests.test_preregister import SMALL

    raw = yaml.safe_load(SMALL)
    raw["labels"]["units"] = {"y": "dollars", "z": "hours"}
    raw["analyses"].append({"name": "hours", "modifiers": ["female"], "outcome": "z"})
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    cell = next(c for c in cells(plan) if c.analysis == "people")
    adata, groups, _ = _analysis_inputs(plan, cell, 1)
    assert groups.n_groups == 6


def test_the_table_of_every_analysis_gives_each_its_unit(small_study):
    from hetreport.report.build import study_context

    _, results = small_study
    res = _with_units(results, "$")
    c = _contexts(res)
    table = re.sub(r"\\(.)", r"\1", str(study_context(res, [c], "builtin", ["html"])["across_table"]))
    f, u = c["f"], fmt.unit_of("$")
    assert fmt.interval(f.average, unit=u) in table
    assert fmt.effect_range(f.smallest.effect.estimate, f.largest.effect.estimate, u) in table
    plain = re.sub(r"\\(.)", r"\1", str(study_context(results, [_contexts(results)], "builtin", ["html"])["across_table"]))
    assert fmt.interval(f.average) in plain and "$" not in plain


@pytest.mark.parametrize("unit", ["dollars", "$", None])
def test_the_figures_effect_axis_says_the_unit(small_study, tmp_path, unit):
    """The report's figures name the unit on their effect axis (the comparison figure's x, the by-modifier
    figure's y); a dollar sign is escaped for matplotlib's math text."""
    from hetreport.report.build import write_figures

    _, results = small_study
    res = _with_units(results, unit)
    a = res.analyses[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = write_figures(a, res.effects, compute_facts(a, res.effects), tmp_path, res.spec)
    want = f"Effect of {a.treatment} on {a.outcome}" + ("" if unit is None else f" ({unit.replace('$', chr(92) + '$')})")
    assert figures["comparison"]["paper"].value[0].labels.x == want
    assert figures["by-modifier"]["paper"].value[0].labels.y == want


def test_page_one_names_the_two_spreads_apart(small_study):
    """Issue 15 §5: page one gave the spread of the group effects and, a paragraph later, the SD of the
    hierarchical point estimates as two bare 'SDs'; a reader took them for a contradiction. The first is named
    the spread of the group effects, the second the standard deviation of the point estimates, said to differ."""
    _, results = small_study
    c = _contexts(results)
    text = " ".join(_page_one(results, c).split())
    f = c.f
    spread = fmt.interval(f.sd_between_groups)
    assert f"spread of the group effects (their standard deviation across groups, computed for each posterior draw) is {spread}." in text
    second = (
        "the standard deviation of the point estimates, a different number from the spread of the group effects above: "
        f"{fmt.effect(c.hier.dispersion)} against {fmt.effect(c.ols.dispersion)}"
    )
    assert second in text
    assert text.count("spread of the group effects") == 2  # named once, referred to once
