"""Tests for hetreport.expr: the safe expression language of data.derive/filter."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from hetreport.errors import SpecError
from hetreport.expr import MAX_DEPTH, MAX_LENGTH, Expression, compile_expr, evaluate

NAN = float("nan")
WHERE = "data.derive.force"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, NAN, 4.0, 0.0],
            "y": [2.0, 0.0, 1.0, NAN, -3.0],
            "b": [1.0, 0.0, NAN, 1.0, 0.0],
            "c": [1.0, 1.0, 1.0, NAN, NAN],
            "party": ["Dem", "Rep", None, "U.S. (aid), 2016", "Ind"],
            "pref": [1, 4, NAN, 6, 7],
        },
        index=[10, 11, 12, 13, 14],
    )


def ev(text: str, frame: pd.DataFrame) -> list:
    return evaluate(text, frame, where=WHERE).tolist()


def same(actual: list, expected: list) -> bool:
    """Element-wise equality where NaN equals NaN."""
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected):
        a_missing = isinstance(a, float) and math.isnan(a)
        e_missing = isinstance(e, float) and math.isnan(e)
        if a_missing or e_missing:
            if not (a_missing and e_missing):
                return False
        elif isinstance(e, float):
            if not math.isclose(a, e, rel_tol=1e-12, abs_tol=1e-12):
                return False
        elif a != e:
            return False
    return True


def refused(text: str, match: str | None = None, columns=("x", "y", "party")) -> SpecError:
    with pytest.raises(SpecError) as info:
        compile_expr(text, where=WHERE, columns=columns)
    message = str(info.value)
    assert WHERE in message
    assert info.value.where == WHERE
    if match:
        assert match in message, message
    return info.value


# --------------------------------------------------------------------------
# API and result shape
# --------------------------------------------------------------------------


def test_expression_api(frame):
    expr = compile_expr("  x + y * 2 ", where=WHERE)
    assert isinstance(expr, Expression)
    assert expr.text == "x + y * 2"
    assert expr.names == frozenset({"x", "y"})
    result = expr.evaluate(frame)
    assert isinstance(result, pd.Series)
    assert result.dtype == np.float64
    assert list(result.index) == [10, 11, 12, 13, 14]
    assert same(result.tolist(), [5.0, 2.0, NAN, NAN, -6.0])
    with pytest.raises(AttributeError):
        expr.text = "x"  # immutable


def test_compiled_once_evaluated_on_several_frames(frame):
    expr = compile_expr("x * 2", where=WHERE)
    assert same(expr.evaluate(frame).tolist(), [2.0, 4.0, NAN, 8.0, 0.0])
    other = pd.DataFrame({"x": [10]})
    assert expr.evaluate(other).tolist() == [20.0]


def test_literal_broadcasts(frame):
    assert ev("3", frame) == [3.0] * 5
    result = evaluate("'yes'", frame, where=WHERE)
    assert result.dtype == object
    assert result.tolist() == ["yes"] * 5
    assert ev("True", frame) == [1.0] * 5
    assert ev("False", frame) == [0.0] * 5


def test_text_result_is_object_dtype_with_nan(frame):
    result = evaluate("party", frame, where=WHERE)
    assert result.dtype == object
    assert same(result.tolist(), ["Dem", "Rep", NAN, "U.S. (aid), 2016", "Ind"])
    assert {type(v) for v in result} == {str, float}  # plain str, NaN for missing


def test_empty_frame():
    empty = pd.DataFrame({"x": pd.Series([], dtype=float)})
    assert evaluate("x >= 1 and not is_missing(x)", empty, where=WHERE).tolist() == []


def test_names_exclude_function_names():
    assert compile_expr("abs(x) + log(y)", where=WHERE).names == frozenset({"x", "y"})


# --------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x + y", [3.0, 2.0, NAN, NAN, -3.0]),
        ("x - y", [-1.0, 2.0, NAN, NAN, 3.0]),
        ("x * y", [2.0, 0.0, NAN, NAN, -0.0]),
        ("x / y", [0.5, NAN, NAN, NAN, -0.0]),
        ("x // y", [0.0, NAN, NAN, NAN, -0.0]),
        ("x % y", [1.0, NAN, NAN, NAN, 0.0]),
        ("x ** 2", [1.0, 4.0, NAN, 16.0, 0.0]),
        ("-x", [-1.0, -2.0, NAN, -4.0, -0.0]),
        ("+x", [1.0, 2.0, NAN, 4.0, 0.0]),
        ("2 * (x + 1) - 7 // 2", [1.0, 3.0, NAN, 7.0, -1.0]),
        ("7 % 3 + 2 ** -1", [1.5] * 5),
    ],
)
def test_arithmetic(frame, text, expected):
    assert same(ev(text, frame), expected)


def test_division_by_zero_is_missing(frame):
    assert same(ev("1 / (x - x)", frame), [NAN] * 5)
    assert same(ev("x // 0", frame), [NAN] * 5)
    assert same(ev("x % 0", frame), [NAN] * 5)
    assert same(ev("0 ** -1", frame), [NAN] * 5)


def test_overflow_is_missing(frame):
    assert same(ev("10.0 ** 400", frame), [NAN] * 5)
    assert same(ev("exp(1000)", frame), [NAN] * 5)


def test_no_numpy_warnings(frame, recwarn):
    evaluate("log(y) + sqrt(y) + x / 0 + exp(1000)", frame, where=WHERE)
    assert len(recwarn) == 0


def test_huge_integer_literal_is_refused():
    refused("x + " + "9" * 400, "too large")


# --------------------------------------------------------------------------
# Comparisons: missing stays missing
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x == 2", [0.0, 1.0, NAN, 0.0, 0.0]),
        ("x != 2", [1.0, 0.0, NAN, 1.0, 1.0]),
        ("x < 2", [1.0, 0.0, NAN, 0.0, 1.0]),
        ("x <= 2", [1.0, 1.0, NAN, 0.0, 1.0]),
        ("x > 2", [0.0, 0.0, NAN, 1.0, 0.0]),
        ("x >= 2", [0.0, 1.0, NAN, 1.0, 0.0]),
        ("x > y", [0.0, 1.0, NAN, NAN, 1.0]),
    ],
)
def test_comparisons(frame, text, expected):
    assert same(ev(text, frame), expected)


def test_nan_compared_is_missing_not_false():
    frame = pd.DataFrame({"pref": [NAN, 7.0, 2.0]})
    result = ev("pref >= 6", frame)
    assert math.isnan(result[0])  # pandas would say False here
    assert result[1:] == [1.0, 0.0]
    assert math.isnan(ev("pref != 6", frame)[0])
    assert math.isnan(ev("pref == pref", frame)[0])


def test_chained_comparison(frame):
    assert same(ev("1 <= x < 4", frame), [1.0, 1.0, NAN, 0.0, 0.0])
    # Kleene: a false link decides even when another link is missing.
    assert same(ev("x < 3 < y", frame), [0.0, 0.0, 0.0, 0.0, 0.0])
    assert same(ev("0 < x < y", frame), [1.0, 0.0, NAN, NAN, 0.0])


def test_comparison_result_is_a_01_outcome():
    frame = pd.DataFrame({"pref": [1, 4, 5, NAN]})
    result = evaluate("pref >= 4", frame, where=WHERE)
    assert result.dtype == np.float64
    assert same(result.tolist(), [0.0, 1.0, 1.0, NAN])


# --------------------------------------------------------------------------
# Logic
# --------------------------------------------------------------------------


def kleene_frame() -> pd.DataFrame:
    values = [1.0, 0.0, NAN]
    return pd.DataFrame({"p": [a for a in values for _ in values], "q": [b for _ in values for b in values]})


def test_kleene_and():
    #        q:  T    F    NA      (rows: p = T, F, NA)
    expected = [1.0, 0.0, NAN, 0.0, 0.0, 0.0, NAN, 0.0, NAN]
    assert same(ev("p and q", kleene_frame()), expected)


def test_kleene_or():
    expected = [1.0, 1.0, 1.0, 1.0, 0.0, NAN, 1.0, NAN, NAN]
    assert same(ev("p or q", kleene_frame()), expected)


def test_not_keeps_missing():
    assert same(ev("not p", kleene_frame()), [0.0] * 3 + [1.0] * 3 + [NAN] * 3)


def test_and_or_chains_and_precedence(frame):
    assert same(ev("b and c and x > 0", frame), [1.0, 0.0, NAN, NAN, 0.0])
    assert same(ev("b or c or x > 100", frame), [1.0, 1.0, 1.0, 1.0, NAN])
    assert same(ev("not b or x == 0", frame), [0.0, 1.0, NAN, 0.0, 1.0])


def test_condition_must_be_01(frame):
    with pytest.raises(SpecError, match="other than 0 and 1") as info:
        evaluate("x and b", frame, where=WHERE)
    assert WHERE in str(info.value)
    assert "x == 1" in str(info.value)
    with pytest.raises(SpecError, match="other than 0 and 1"):
        evaluate("not pref", frame, where=WHERE)


def test_logic_on_text_is_refused(frame):
    with pytest.raises(SpecError, match="column `party` holds text"):
        evaluate("party and b", frame, where=WHERE)


def test_filter_example():
    frame = pd.DataFrame({"gender": [1, 8, 2, NAN], "pref": [NAN, 3, 4, 5]})
    result = evaluate("gender != 8 and not is_missing(pref)", frame, where="data.filter")
    assert same(result.tolist(), [0.0, 0.0, 1.0, NAN])


# --------------------------------------------------------------------------
# in / not in
# --------------------------------------------------------------------------


def test_in_and_not_in_with_missing(frame):
    assert same(ev("x in [1, 4]", frame), [1.0, 0.0, NAN, 1.0, 0.0])
    assert same(ev("x not in (1, 4)", frame), [0.0, 1.0, NAN, 0.0, 1.0])
    assert same(ev("x in [-3, 0.0]", frame), [0.0, 0.0, NAN, 0.0, 1.0])
    assert same(ev("x in []", frame), [0.0, 0.0, NAN, 0.0, 0.0])


def test_in_text(frame):
    assert same(ev("party in ['Dem', 'U.S. (aid), 2016']", frame), [1.0, 0.0, NAN, 1.0, 0.0])


def test_in_with_keys_that_cannot_match(frame):
    with pytest.raises(SpecError, match="never match"):
        evaluate("x in [1, '2']", frame, where=WHERE)
    with pytest.raises(SpecError, match="never match"):
        evaluate("party in ['Dem', 1]", frame, where=WHERE)


def test_in_needs_a_literal_list():
    refused("x in y", "must be a list")
    refused("x in [y, 1]", "number or quoted text")
    refused("x in {1, 2}", "must be a list")
    refused("1 < x in [1, 2]", "cannot be chained")


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def test_text_equality_with_punctuation(frame):
    assert same(ev("party == 'U.S. (aid), 2016'", frame), [0.0, 0.0, NAN, 1.0, 0.0])
    assert same(ev('party != "U.S. (aid), 2016"', frame), [1.0, 1.0, NAN, 0.0, 1.0])
    assert same(ev('party == "it\'s"', frame), [0.0, 0.0, NAN, 0.0, 0.0])


def test_text_compared_with_number_is_unequal(frame):
    assert same(ev("party == 1", frame), [0.0, 0.0, NAN, 0.0, 0.0])
    assert same(ev("party != 1", frame), [1.0, 1.0, NAN, 1.0, 1.0])


def test_text_ordering(frame):
    assert same(ev("party < 'E'", frame), [1.0, 0.0, NAN, 0.0, 0.0])


def test_text_ordered_against_number_is_spec_error(frame):
    with pytest.raises(SpecError, match="orders text against numbers") as info:
        evaluate("party < 3", frame, where=WHERE)
    assert WHERE in str(info.value)


@pytest.mark.parametrize("text", ["party + 1", "-party", "abs(party)", "log(party)", "cut(party, [0, 1])", "min(party, 1)", "round(party)"])
def test_numbers_needed_but_text_given(frame, text):
    with pytest.raises(SpecError, match="column `party` holds text") as info:
        evaluate(text, frame, where=WHERE)
    assert WHERE in str(info.value)


def test_text_that_looks_like_code_is_just_text(frame):
    assert same(ev("party == \"__import__('os').system('x')\"", frame), [0.0, 0.0, NAN, 0.0, 0.0])


def test_mixed_object_column():
    frame = pd.DataFrame({"m": pd.Series([1, "a", None, 2.0], dtype=object)})
    assert same(ev("m == 1", frame), [1.0, 0.0, NAN, 0.0])
    assert same(ev("m == 'a'", frame), [0.0, 1.0, NAN, 0.0])
    assert same(ev("m in [2, 'a']", frame), [0.0, 1.0, NAN, 1.0])
    with pytest.raises(SpecError, match="orders text against numbers"):
        evaluate("m < 2", frame, where=WHERE)


def test_pandas_string_dtype_column():
    frame = pd.DataFrame({"s": pd.Series(["a", None, "b"], dtype="string")})
    result = evaluate("s == 'a'", frame, where=WHERE)
    assert same(result.tolist(), [1.0, NAN, 0.0])
    assert evaluate("s", frame, where=WHERE).dtype == object
    assert same(ev("is_missing(s)", frame), [0.0, 1.0, 0.0])


def test_categorical_column():
    frame = pd.DataFrame({"s": pd.Categorical(["a", None, "b"]), "n": pd.Categorical([1, 2, None])})
    assert same(ev("s == 'b'", frame), [0.0, NAN, 1.0])
    assert same(ev("n + 1", frame), [2.0, 3.0, NAN])


def test_object_column_of_numbers_with_none_is_numeric():
    frame = pd.DataFrame({"o": pd.Series([1, None, 2.5, pd.NA], dtype=object)})
    assert same(ev("o * 2", frame), [2.0, NAN, 5.0, NAN])


def test_unsupported_column_type_is_spec_error():
    frame = pd.DataFrame({"d": pd.to_datetime(["2020-01-01", "2021-01-01"])})
    with pytest.raises(SpecError, match="column `d` cannot be used"):
        evaluate("d == 1", frame, where=WHERE)


# --------------------------------------------------------------------------
# Nullable pandas dtypes
# --------------------------------------------------------------------------


def test_nullable_int64_with_na():
    frame = pd.DataFrame({"pid7": pd.Series([1, pd.NA, 7], dtype="Int64")})
    assert same(ev("pid7 >= 4", frame), [0.0, NAN, 1.0])
    assert same(ev("pid7 + 1", frame), [2.0, NAN, 8.0])
    assert evaluate("pid7", frame, where=WHERE).dtype == np.float64
    assert same(ev("map(pid7, {1: 'Dem', 7: 'Rep'})", frame), ["Dem", NAN, "Rep"])


def test_nullable_boolean_and_float64():
    frame = pd.DataFrame(
        {
            "flag": pd.Series([True, pd.NA, False], dtype="boolean"),
            "f": pd.Series([1.5, pd.NA, 2.0], dtype="Float64"),
        }
    )
    assert same(ev("flag and f > 1", frame), [1.0, NAN, 0.0])
    assert same(ev("not flag", frame), [0.0, NAN, 1.0])


def test_plain_bool_column():
    frame = pd.DataFrame({"flag": [True, False]})
    assert ev("flag or False", frame) == [1.0, 0.0]


# --------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------


def test_abs_exp(frame):
    assert same(ev("abs(y)", frame), [2.0, 0.0, 1.0, NAN, 3.0])
    assert same(ev("exp(x)", frame), [math.e, math.e**2, NAN, math.e**4, 1.0])


def test_log_and_sqrt_outside_domain_are_missing(frame):
    assert same(ev("log(y)", frame), [math.log(2), NAN, 0.0, NAN, NAN])
    assert same(ev("sqrt(y)", frame), [math.sqrt(2), 0.0, 1.0, NAN, NAN])


def test_round_half_even_and_digits():
    frame = pd.DataFrame({"v": [0.5, 1.5, 2.5, -2.5, 1.234, NAN]})
    assert same(ev("round(v)", frame), [0.0, 2.0, 2.0, -2.0, 1.0, NAN])
    assert same(ev("round(v, 1)", frame), [0.5, 1.5, 2.5, -2.5, 1.2, NAN])
    assert same(ev("round(v, digits=2)", frame), [0.5, 1.5, 2.5, -2.5, 1.23, NAN])
    assert same(ev("round(v * 100, -1)", frame), [50.0, 150.0, 250.0, -250.0, 120.0, NAN])


def test_round_digits_must_be_small_integer_literal():
    refused("round(x, y)", "digits")
    refused("round(x, 1.5)", "integer")
    refused("round(x, 400)", "between -15 and 15")


def test_is_missing_never_missing(frame):
    assert ev("is_missing(x)", frame) == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert ev("is_missing(party)", frame) == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert ev("is_missing(x / y)", frame) == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_if_else(frame):
    assert same(ev("if_else(x > 1, 'high', 'low')", frame), ["low", "high", NAN, "high", "low"])
    assert same(ev("if_else(b, x, y)", frame), [1.0, 0.0, NAN, 4.0, -3.0])
    assert same(ev("if_else(cond=b, yes=1, no=y)", frame), [1.0, 0.0, NAN, 1.0, -3.0])


def test_if_else_branches_must_match(frame):
    with pytest.raises(SpecError, match="both numbers or both text"):
        evaluate("if_else(b, 'yes', 0)", frame, where=WHERE)


def test_min_max_propagate_missing(frame):
    assert same(ev("min(x, y)", frame), [1.0, 0.0, NAN, NAN, -3.0])
    assert same(ev("max(x, y)", frame), [2.0, 2.0, NAN, NAN, 0.0])
    assert same(ev("max(x, 1)", frame), [1.0, 2.0, NAN, 4.0, 1.0])


def test_coalesce(frame):
    assert same(ev("coalesce(x, y)", frame), [1.0, 2.0, 1.0, 4.0, 0.0])
    assert same(ev("coalesce(x, -1)", frame), [1.0, 2.0, -1.0, 4.0, 0.0])
    assert same(ev("coalesce(party, 'none')", frame), ["Dem", "Rep", "none", "U.S. (aid), 2016", "Ind"])
    assert same(ev("coalesce(c, x)", frame), [1.0, 1.0, 1.0, 4.0, 0.0])
    with pytest.raises(SpecError, match="both numbers or both text"):
        evaluate("coalesce(party, 0)", frame, where=WHERE)


# --------------------------------------------------------------------------
# cut
# --------------------------------------------------------------------------


def test_cut_edges():
    frame = pd.DataFrame({"age": [17, 18, 18.5, 30, 30.01, 45, 65, 120, 121, NAN]})
    expected = [NAN, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0, NAN, NAN]
    assert same(ev("cut(age, [18, 30, 45, 65, 120])", frame), expected)
    result = evaluate("cut(age, [18, 30, 45, 65, 120])", frame, where=WHERE)
    assert result.dtype == np.float64


def test_cut_matches_pandas_include_lowest():
    values = pd.Series([-5.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 3.5])
    breaks = [-1, 0.5, 2, 3]
    ours = evaluate(f"cut(v, {breaks})", pd.DataFrame({"v": values}), where=WHERE)
    theirs = pd.cut(values, breaks, labels=False, include_lowest=True) + 1
    assert same(ours.tolist(), theirs.astype(float).tolist())


def test_cut_labels():
    frame = pd.DataFrame({"age": [20, 40, NAN, 200]})
    result = evaluate("cut(age, [18, 30, 120], labels=['young', 'old'])", frame, where=WHERE)
    assert result.dtype == object
    assert same(result.tolist(), ["young", "old", NAN, NAN])
    assert same(ev("cut(age, breaks=[18, 30, 120])", frame), [1.0, 2.0, NAN, NAN])


def test_cut_with_expression_argument():
    frame = pd.DataFrame({"birthyr": [1990, 1960, 2000, 1940]})
    result = ev("cut(2017 - birthyr, [18, 30, 45, 65, 120])", frame)
    assert same(result, [1.0, 3.0, NAN, 4.0])


def test_cut_with_negative_breaks():
    frame = pd.DataFrame({"v": [-10, -5, 0, 5]})
    assert same(ev("cut(v, [-10, -5, 5])", frame), [1.0, 1.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "text, match",
    [
        ("cut(x, [3, 2, 5])", "strictly increasing"),
        ("cut(x, [1, 1, 5])", "strictly increasing"),
        ("cut(x, [1])", "at least two"),
        ("cut(x, [1, 'a'])", "must be a number"),
        ("cut(x, [1, y])", "number or quoted text"),
        ("cut(x, 5)", "must be a list of numbers"),
        ("cut(x, [1, 2, 3], labels=['a'])", "2 bin(s), but 1 label(s)"),
        ("cut(x, [1, 2], labels=[1])", "quoted texts"),
        ("cut(x)", "needs the argument `breaks`"),
    ],
)
def test_cut_refusals(text, match):
    refused(text, match)


# --------------------------------------------------------------------------
# map
# --------------------------------------------------------------------------


def test_map_numeric_keys_match_float_column():
    frame = pd.DataFrame({"pid7": [1.0, 2.0, 4.0, 7.0, NAN]})
    text = "map(pid7, {1: 'Dem', 2: 'Dem', 3: 'Dem', 5: 'Rep', 6: 'Rep', 7: 'Rep'})"
    result = evaluate(text, frame, where=WHERE)
    assert result.dtype == object
    assert same(result.tolist(), ["Dem", "Dem", NAN, "Rep", NAN])


def test_map_default_and_missing_stays_missing():
    frame = pd.DataFrame({"pid7": [1.0, 4.0, NAN]})
    assert same(ev("map(pid7, {1: 'Dem'}, default='Other')", frame), ["Dem", "Other", NAN])
    assert same(ev("map(pid7, {1: 'Dem'}, 'Other')", frame), ["Dem", "Other", NAN])


def test_map_to_numbers():
    frame = pd.DataFrame({"hawk": [1, 2, 3, NAN]})
    result = evaluate("map(hawk, {1: 0.0, 2: 0.5, 3.0: 1, -1: 9})", frame, where=WHERE)
    assert result.dtype == np.float64
    assert same(result.tolist(), [0.0, 0.5, 1.0, NAN])


def test_map_text_keys(frame):
    text = "map(party, {'Dem': 1, 'Rep': 2, 'U.S. (aid), 2016': 3}, default=0)"
    assert same(ev(text, frame), [1.0, 2.0, NAN, 3.0, 0.0])


def test_map_keys_that_cannot_match(frame):
    with pytest.raises(SpecError, match="never match"):
        evaluate("map(x, {'1': 'a'})", frame, where=WHERE)
    with pytest.raises(SpecError, match="Put them in quotes"):
        evaluate("map(party, {1: 'a'})", frame, where=WHERE)


@pytest.mark.parametrize(
    "text, match",
    [
        ("map(x, {1: 'a', 1.0: 'b'})", "appears twice"),
        ("map(x, {1: 'a', 2: 3})", "not a mix"),
        ("map(x, {1: 'a'}, default=0)", "not a mix"),
        ("map(x, {1: y})", "number or quoted text"),
        ("map(x, {y: 1})", "number or quoted text"),
        ("map(x, {1: None})", "None is not allowed"),
        ("map(x, [1, 2])", "must be a dict"),
        ("map(x, {**{}})", "`**` inside a dict"),
        ("map(x, {1: 'a'}, default=y)", "number or quoted text"),
        ("map(x, {1: 'a'}, fallback='b')", "no argument `fallback`"),
    ],
)
def test_map_refusals(text, match):
    refused(text, match)


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------


def test_unknown_column_suggests_close_name():
    error = refused("prefs >= 4", "Did you mean 'pref'?", columns=["pref", "race", "gender"])
    assert "`prefs`" in str(error)
    assert "Available columns: pref, race, gender" in str(error)


def test_unknown_column_at_evaluation(frame):
    expr = compile_expr("parti == 'Dem'", where=WHERE)  # no columns given: accepted
    with pytest.raises(SpecError, match="Did you mean 'party'") as info:
        expr.evaluate(frame)
    assert WHERE in str(info.value)


def test_unknown_column_lists_a_few_columns():
    columns = [f"q{i}" for i in range(30)]
    error = refused("zzz + 1", "(30 in all)", columns=columns)
    assert "q0, q1" in str(error)
    assert "q29" not in str(error)


def test_duplicate_column_names():
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(SpecError, match="more than one column"):
        evaluate("a + 1", frame, where=WHERE)


def test_column_named_like_a_function_is_a_column():
    frame = pd.DataFrame({"log": [1.0, 2.0]})
    assert ev("log(log) + log", frame) == [1.0, 2.0 + math.log(2)]


# --------------------------------------------------------------------------
# Refused constructs (security)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, match",
    [
        ("x.__class__", "attribute access"),
        ("x.real", "attribute access"),
        ("__import__('os')", "`__import__` is not an allowed function"),
        ("__import__('os').system('echo hi')", "attribute access"),
        ("open('x')", "`open` is not an allowed function"),
        ("eval('1')", "`eval` is not an allowed function"),
        ("x[0]", "indexing"),
        ("party[1:2]", "indexing"),
        ("(lambda: 1)()", "only the listed functions"),
        ("lambda: 1", "lambda"),
        ("[v for v in [1, 2]]", "comprehension"),
        ("{v: 1 for v in [1]}", "comprehension"),
        ("sum(v for v in [1])", "`sum` is not an allowed function"),
        ("f'{x}'", "f-string"),
        ("abs(*[x])", "starred"),
        ("abs(**{'x': 1})", "`**` arguments"),
        ("(y := 1)", "assignment"),
        ("__x + 1", "names starting with `_`"),
        ("_private", "names starting with `_`"),
        ("x if y else 1", "if_else"),
        ("round(x, ndigits=1)", "no argument `ndigits`"),
        ("abs(x, key=1)", "no argument `key`"),
        ("abs(x, 2)", "at most 1 arguments"),
        ("abs()", "needs the argument `x`"),
        ("round(x, 1, digits=2)", "got `digits` twice"),
        ("x == None", "None is not allowed"),
        ("x is None", "`is` is not allowed"),
        ("x & y", "use `and`"),
        ("x | y", "use `or`"),
        ("~x", "use `not`"),
        ("x ^ 2", "`^` is not allowed"),
        ("b'abc'", "bytes literal"),
        ("1j", "complex literal"),
        ("...", "ellipsis literal"),
        ("{1, 2}", "a set"),
        ("[1, 2]", "a list can only follow `in`"),
        ("(1, 2)", "a list can only follow `in`"),
        ("{1: 2}", "a dict"),
        ("x = 1", "cannot parse"),
        ("x >=", "cannot parse"),
        ("sqr(x)", "Did you mean 'sqrt'?"),
        ("x(1)", "`x` is not an allowed function"),
        ("x.y()", "no method can be called"),
        ("1e999", "too large"),
    ],
)
def test_refused_constructs(text, match):
    error = refused(text, match)
    # The message also says what is allowed or how to fix it.
    assert len(str(error)) > len(WHERE) + 40


def test_refusal_quotes_the_piece_and_position():
    error = refused("1 + x.__class__", "`x.__class__` (column 5)")
    assert "attribute access" in str(error)
    assert "functions abs, round" in str(error)  # says what is allowed


def test_syntax_error_reports_column():
    error = refused("pref >= >= 4", "column")
    assert "cannot parse `pref >= >= 4`" in str(error)


def test_null_byte_is_spec_error():
    refused("x\x00", "cannot parse")


def test_too_long():
    refused("x + " * (MAX_LENGTH // 4) + "x", "characters long")


def test_too_deep():
    refused("-" * (MAX_DEPTH + 10) + "x", "nested too deeply")
    refused("abs(" * 150 + "x" + ")" * 150, "nested too deeply")
    refused("(" * 300 + "x" + ")" * 300, "cannot parse")
    refused("-" * 1990 + "x", "nested too deeply")


def test_long_sums_are_allowed():
    frame = pd.DataFrame({f"q{i}": [1.0] for i in range(90)})
    text = " + ".join(f"q{i}" for i in range(90))
    assert ev(text, frame) == [90.0]


@pytest.mark.parametrize("value", [None, 5, True, ["x"]])
def test_non_text_expression(value):
    with pytest.raises(SpecError, match="must be text") as info:
        compile_expr(value, where=WHERE)
    assert WHERE in str(info.value)


def test_empty_expression():
    refused("   ", "empty")


def test_refused_call_has_no_side_effect(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "pwned"
    attempts = [
        f"open('{target}', 'w')",
        f"__import__('os').system('touch {target}')",
        f"__import__('pathlib').Path('{target}').touch()",
        "[c for c in ().__class__.__base__.__subclasses__()]",
    ]
    frame = pd.DataFrame({"x": [1]})
    for text in attempts:
        with pytest.raises(SpecError):
            evaluate(text, frame, where=WHERE)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_refusal_happens_before_any_evaluation(monkeypatch):
    """A refused piece anywhere in the expression stops it before any part is
    evaluated, so no column is even read."""
    frame = pd.DataFrame({"x": [1]})

    class Exploding(pd.DataFrame):
        def __getitem__(self, key):  # pragma: no cover - must not run
            raise AssertionError("column read during a refused expression")

    with pytest.raises(SpecError, match="attribute access"):
        evaluate("x + 1 and x.__class__", Exploding(frame), where=WHERE)


def test_module_never_calls_eval_exec_or_getattr():
    import ast
    from pathlib import Path

    import hetreport.expr as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = {f.id for f in calls if isinstance(f, ast.Name)}
    methods = {f.attr for f in calls if isinstance(f, ast.Attribute)}
    assert not names & {"eval", "exec", "compile", "getattr", "__import__", "setattr"}
    assert not methods & {"eval", "query", "literal_eval"}
