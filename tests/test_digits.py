"""Decimals of effects from the outcome's scale, and report.digits to override them (issue 15 §5: an outcome in
dollars was printed to the cent)."""

import numpy as np
import pytest

from hetreport.errors import SpecError
from hetreport.report import format as fmt
from hetreport.spec import parse_spec


@pytest.mark.parametrize(
    ("sd", "digits"),
    [(0.5, 2), (0.1, 2), (1.0, 2), (9.99, 2), (10.0, 1), (99.0, 1), (2_000.0, 0), (0.05, 3), (0.002, 4), (1e-6, 4), (0.0, 2)],
)
def test_digits_follow_the_outcome_scale(sd, digits):
    assert fmt.digits_for_scale(sd) == digits


def test_numbers_use_the_documents_digits_inside_the_block_only():
    assert fmt.num(1588.0349) == "1,588.03"
    with fmt.using_digits(0):
        assert fmt.num(1588.0349) == "1,588"
        assert fmt.num(-0.3) == "0"  # no negative zero
        assert fmt.num(-12.6) == "\u221213"
        assert fmt.num(0.123, 3) == "0.123"  # explicit digits win
        assert fmt.ci(-1200.4, 2400.6) == "\u22121,200 to 2,401"
    assert fmt.num(1588.0349) == "1,588.03"


def _spec(**report):
    raw = {"title": "t", "data": {"path": "d.csv"}, "outcome": "y", "treatment": "t", "analyses": [{"name": "a", "modifiers": ["m"]}]}
    if report:
        raw["report"] = report
    return raw


def test_report_digits_is_validated_and_leaves_other_specs_hash_alone(tmp_path):
    with pytest.raises(SpecError, match="digits"):
        parse_spec(_spec(digits=9), base_dir=tmp_path)
    plain = parse_spec(_spec(), base_dir=tmp_path)
    assert "digits" not in plain.canonical()["report"]
    set0 = parse_spec(_spec(digits=0), base_dir=tmp_path)
    assert set0.report.digits == 0 and set0.spec_hash() != plain.spec_hash()


def test_document_digits_from_the_outcome_or_the_spec(small_study):
    """The study's documents use report.digits when set, else the outcome's scale (the small study's outcome SD
    lies between 0.1 and 10: 2 decimals); scaling the outcome by 1,000 gives 0 decimals."""
    from dataclasses import replace

    from hetreport.report.build import document_digits

    _, res = small_study
    sd = float(np.std(res.analyses[0].y))
    assert document_digits(res) == fmt.digits_for_scale(sd) == 2
    dollars = replace(res, analyses=[replace(a, y=np.asarray(a.y) * 1000.0) for a in res.analyses])
    assert document_digits(dollars) == 0
    spec = res.spec.model_copy(update={"report": res.spec.report.model_copy(update={"digits": 3})})
    assert document_digits(replace(res, spec=spec)) == 3


def test_settings_and_ratios_keep_two_decimals_whatever_the_outcome_scale():
    """Only effect-scale numbers follow the document's decimals: a float printed as it is (a sampler
    setting, a diagnostic) keeps 2."""
    with fmt.using_digits(0):
        assert str(fmt.md_finalize(0.85)).replace("\\", "") == "0.85"
        assert fmt.num(0.85) == "1"
