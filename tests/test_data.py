"""Reading real survey files as codes, derive/filter with missing values, listwise deletion,
and the data errors (each one paragraph naming the column and the fix)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from hetreport.data import load_data, prepare_analysis, read_table
from hetreport.errors import DataError, SpecError
from hetreport.spec import parse_spec
from tests.conftest import SHARED, make_analysis, make_spec, random_frame

BP = SHARED / "bush-prather-2020"
needs_shared = pytest.mark.skipif(not BP.exists(), reason="shared data not present")


def spec_for(path, **kw):
    raw = {
        "title": "t",
        "data": {"path": str(path)},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [{"name": "a", "modifiers": ["m1", "m2"]}],
    }
    raw.update(kw)
    return parse_spec(raw)


@needs_shared
def test_stata_codes_not_labels_and_integer_columns_with_missing():
    frame, var_labels, val_labels, fmt = read_table(BP / "bush-prather-us-2016" / "bush-prather-us-data-all.dta")
    assert fmt == "dta"
    # ipe_support is an integer column with missing values: numeric codes, NaN for missing
    assert frame["ipe_support"].dtype == np.float64
    assert set(frame["ipe_support"].dropna().unique()) == {1.0, 2.0, 3.0, 4.0}
    assert frame["ipe_support"].isna().sum() == 5
    assert val_labels["ipe_support"]["4"] == "strongly agree"
    # a label set naming a code that never occurs does not create a level
    assert "3" in val_labels["treat_ipetype"] and 3 not in set(frame["treat_ipetype"].dropna())


@needs_shared
def test_us2016_row_accounting_and_labels_from_file(tmp_path):
    path = BP / "bush-prather-us-2016" / "bush-prather-us-data-all.dta"
    spec = spec_for(
        path,
        outcome="support",
        treatment="treat_germrus",
        data={"path": str(path), "derive": {"support": "ipe_support >= 3", "college": "educ >= 5"}},
        analyses=[{"name": "a", "modifiers": ["w2_vote_hill", "woman", "college"]}],
    )
    ds = load_data(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, ds, spec.analyses[0])
    acc = adata.accounting.set_index("variable")
    assert acc["removed"].sum() == 1572 - adata.n
    assert acc.loc["treat_germrus", "missing"] == 556  # treatment shown to 1,016 of 1,572
    assert 450 <= adata.n <= 480  # "only about 470 of 1,572 rows have treatment, outcome and vote"
    vote = adata.modifiers[0]
    assert vote.level_labels == ("Trump voter", "Clinton voter")


@needs_shared
def test_sav_reads_codes_and_value_labels():
    frame, _, val_labels, fmt = read_table(BP / "bush-prather-us-2018" / "bush-prather-us-2018.sav")
    assert fmt == "sav" and frame["vote_trump"].dtype == np.float64
    assert val_labels["vote_trump"]["1"] == "Trump voter"


@needs_shared
def test_tunisia_text_treatment_with_punctuation():
    path = BP / "bush-prather-tunisia" / "bush-prather-tunisia-appendix.csv"
    spec = spec_for(
        path,
        outcome="aid",
        treatment="treat_islamist",
        treated_value="Islamist (Qatar)",
        data={
            "path": str(path),
            "derive": {"aid": "map(give_aid, {'strongly agree': 4, 'somewhat agree': 3, 'somewhat disagree': 2, 'strongly disagree': 1})"},
        },
        analyses=[{"name": "a", "modifiers": ["sex", "polislam_bin"]}],
    )
    ds = load_data(spec)
    adata = prepare_analysis(spec, ds, spec.analyses[0])
    assert set(np.unique(adata.t)) == {0.0, 1.0}
    raw = pd.read_csv(path)
    kept = raw.dropna(subset=["give_aid", "sex", "polislam_bin", "treat_islamist"])
    assert adata.n == len(kept)
    assert adata.t.sum() == (kept["treat_islamist"] == "Islamist (Qatar)").sum()


def test_missing_inside_derive_stays_missing_and_is_dropped_not_moved(tmp_path):
    frame = random_frame(n=200)
    frame["score"] = np.where(np.arange(200) % 10 == 0, np.nan, 7.0)
    frame.loc[frame.index % 4 == 0, "score"] = 3.0
    frame.loc[frame.index % 10 == 0, "score"] = np.nan
    spec, adata, groups = make_analysis(
        tmp_path, frame, ["m1", "high"], data={"path": str(tmp_path / "data.csv"), "derive": {"high": "score >= 6"}}
    )
    n_missing = frame["score"].isna().sum()
    assert adata.n == 200 - n_missing  # pandas would have put those rows into high == 0
    acc = adata.accounting.set_index("variable")
    assert acc.loc["high", "missing"] == n_missing
    high = adata.frame["high"]
    assert (high == 0).sum() == ((frame["score"] < 6) & frame["score"].notna()).sum()


def test_filter_with_missing_drops_and_counts(tmp_path):
    frame = random_frame(n=100)
    frame["age"] = np.where(np.arange(100) < 5, np.nan, 30.0)
    spec = make_spec(tmp_path, frame, ["m1", "m2"], data={"path": str(tmp_path / "data.csv"), "filter": "age >= 18"})
    ds = load_data(spec)
    assert ds.n_filter_missing == 5 and len(ds.frame) == 95


@pytest.mark.parametrize(
    "change, words, exc",
    [
        (dict(treatment="trt"), ["'trt'", "Did you mean 'treat'"], SpecError),
        (dict(analysis={"modifiers": ["m1", "m3x"]}), ["analyses[0].modifiers[1]", "'m3x'"], SpecError),
        (dict(treatment="m2"), None, SpecError),  # m2 is then both treatment and modifier
    ],
)
def test_spec_data_mismatch_errors(tmp_path, change, words, exc):
    frame = random_frame(n=60)
    kw = dict(change)
    analysis = kw.pop("analysis", {})
    with pytest.raises(exc) as err:
        spec = make_spec(tmp_path, frame, analysis.get("modifiers", ["m1", "m2"]), **kw)
        ds = load_data(spec)
        prepare_analysis(spec, ds, spec.analyses[0])
    for w in words or []:
        assert w in str(err.value)


def test_treatment_with_three_values(tmp_path):
    frame = random_frame(n=60)
    frame["treat"] = np.arange(60) % 3
    with pytest.raises(DataError, match="3 distinct values.*binary treatment"):
        make_analysis(tmp_path, frame, ["m1", "m2"])


def test_treatment_coded_1_2_needs_treated_value(tmp_path):
    frame = random_frame(n=60)
    frame["treat"] = frame["treat"] + 1
    with pytest.raises(SpecError, match="treated_value"):
        make_analysis(tmp_path, frame, ["m1", "m2"])
    _, adata, _ = make_analysis(tmp_path, frame, ["m1", "m2"], treated_value=2)
    assert adata.t.sum() == (frame["treat"] == 2).sum()


def test_continuous_modifier_needs_bins(tmp_path):
    frame = random_frame(n=120)
    with pytest.raises(DataError, match=r"looks continuous.*data.bins"):
        make_analysis(tmp_path, frame, ["m1", "x1"])
    _, adata, groups = make_analysis(
        tmp_path, frame, ["m1", "x1"], data={"path": str(tmp_path / "data.csv"), "bins": {"x1": {"quantiles": 3}}}
    )
    assert adata.modifiers[1].levels == (1, 2, 3)
    assert groups.n_groups == 6
    assert abs(groups.table.groupby("x1")["n"].sum() - 40).max() <= 1


def test_all_missing_column_is_an_error(tmp_path):
    frame = random_frame(n=40)
    frame["x1"] = np.nan
    with pytest.raises(DataError, match="only missing values"):
        make_analysis(tmp_path, frame, ["m1", "m2"], ["x1"])


def test_text_outcome_is_an_error_with_a_recode_hint(tmp_path):
    frame = random_frame(n=40)
    frame["y"] = np.where(frame["y"] > 1, "agree", "disagree")
    with pytest.raises(DataError, match="not numeric.*map"):
        make_analysis(tmp_path, frame, ["m1", "m2"])


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(spec_for(tmp_path / "nope.csv"))
    (tmp_path / "d.xyz").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="data.format"):
        load_data(spec_for(tmp_path / "d.xyz"))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "xlsx", "dta", "sav"])
def test_every_format_reads_the_same_codes(tmp_path, fmt):
    import pyreadstat

    frame = random_frame(n=50)[["y", "treat", "m1", "m2"]]
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "xlsx":
        frame.to_excel(path, index=False)
    elif fmt == "dta":
        pyreadstat.write_dta(frame, str(path), variable_value_labels={"m1": {0: "zero", 1: "one"}})
    else:
        pyreadstat.write_sav(frame, str(path), variable_value_labels={"m1": {0: "zero", 1: "one"}})
    ds = load_data(spec_for(path))
    np.testing.assert_allclose(ds.frame["y"], frame["y"])
    assert list(ds.frame["m2"]) == list(frame["m2"].astype(float))
    if fmt in ("dta", "sav"):
        assert ds.value_labels["m1"] == {"0": "zero", "1": "one"}


def test_groups_table_counts_and_order(tmp_path):
    frame = random_frame(n=300)
    _, adata, groups = make_analysis(tmp_path, frame, ["m1", "m2"], labels={"levels": {"m2": {2: "two", 0: "zero", 1: "one"}}})
    t = groups.table
    assert list(t["m2"][:3]) == [2, 0, 1]  # level order from the spec's labels, not sorted codes
    assert t["n"].sum() == 300 and (t["n"] == t["n_treated"] + t["n_control"]).all()
    for _, row in t.iterrows():
        sub = frame[(frame.m1 == row.m1) & (frame.m2 == row.m2)]
        assert row.n == len(sub) and row.n_treated == sub.treat.sum()
    assert t["group_label"].iloc[0].endswith("two")
