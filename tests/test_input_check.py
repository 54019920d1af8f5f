"""Bad input found early and named (issue 12 s3, issue 13 s3 and s4): errors before any heavy import,
`hetreport check`, limits on work and on the data read, and the silent wrong results that are now errors."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hetreport.check import check, prepare, summary
from hetreport.data import load_data, prepare_analysis, read_table
from hetreport.errors import DataError, HetreportWarning, ModelError, SpecError, clean_text, shorten, visible
from hetreport.expr import compile_expr
from hetreport.groups import build_groups
from hetreport.spec import Limits, parse_spec
from tests.conftest import REPO, make_spec, random_frame

HEAVY = ("pymc", "arviz", "bambi", "pytensor", "nutpie", "plotnine", "matplotlib", "statsmodels", "numba", "xarray")


def spec_dict(path: Path, **extra) -> dict:
    raw = {
        "title": "t",
        "data": {"path": str(path)},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [{"name": "a", "modifiers": ["m1", "m2"]}],
        "sampler": {"draws": 100, "tune": 100, "chains": 1},
    }
    raw.update(extra)
    return raw


def write(tmp_path: Path, frame: pd.DataFrame, name="d.csv", **extra) -> Path:
    frame.to_csv(tmp_path / name, index=False)
    import yaml

    p = tmp_path / "spec.yml"
    p.write_text(yaml.safe_dump(spec_dict(tmp_path / name, **extra)))
    return p


# --------------------------------------------------------------------------- nothing heavy before an error

PROBE = """
import json, sys
from hetreport.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)  # noqa: UP031  (a code template: its braces would need escaping in an f-string)


def probe(*args):
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


@pytest.mark.parametrize("case", ["misspelt key", "data error in the last analysis", "infinite outcome"])
def test_spec_and_data_errors_come_before_any_heavy_import(tmp_path, case):
    frame = random_frame(n=200)
    extra = {}
    if case == "misspelt key":
        extra = {"analyses": [{"name": "a", "modifers": ["m1"]}]}
    elif case == "data error in the last analysis":  # found before the first analysis is fitted
        extra = {"analyses": [{"name": "a", "modifiers": ["m1"]}, {"name": "b", "modifiers": ["x1"]}]}
    else:
        frame.loc[7, "y"] = np.inf
    spec = write(tmp_path, frame, **extra)
    out, err = probe("run", spec, "--out", tmp_path / "out")
    assert out["rc"] == 2, err
    assert out["heavy"] == [], err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_check_command_prints_groups_models_and_size_without_fitting(tmp_path):
    spec = write(tmp_path, random_frame(n=300))
    out, err = probe("check", spec)
    assert out["rc"] == 0, err
    assert out["heavy"] == []
    r = subprocess.run([sys.executable, "-m", "hetreport.cli", "check", str(spec)], capture_output=True, text=True, timeout=300, cwd=REPO)
    text = r.stdout
    assert "groups: 6 of 6 possible" in text
    assert "brms:  y ~ 1 + treat + (1 + treat | m1*m2)" in text
    assert "bambi: y ~ 1 + treat + (1 + treat | m1) + (1 + treat | m2) + (1 + treat | m1:m2)" in text
    # 3 terms, 2 + 3 + 6 levels; parameters 2 + 3*3 + 1 + 2*11
    assert "3 varying terms, 11 levels, 34 parameters" in text
    assert "estimated fitting time" in text and "smallest arms" in text
    assert not any(tmp_path.glob("out*"))


def test_check_exits_2_and_names_the_numbers_when_run_would_refuse(tmp_path):
    rng = np.random.default_rng(1)
    n = 600
    frame = pd.DataFrame({f"b{k}": rng.integers(0, 2, n) for k in range(10)})
    frame["treat"] = rng.integers(0, 2, n)
    frame["y"] = rng.normal(size=n)
    spec = write(tmp_path, frame, analyses=[{"name": "wide", "modifiers": [f"b{k}" for k in range(10)]}])
    r = subprocess.run([sys.executable, "-m", "hetreport.cli", "check", str(spec)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2
    text = " ".join(r.stdout.split())
    assert "1,023 varying terms (limit 255; limits.terms)" in text
    assert "terms: crossing" in text and "`hetreport run` would refuse" in text
    assert "limits: {terms: 1023, one_arm_groups: 1}" in text


# --------------------------------------------------------------------------- limits on work


def wide_spec(tmp_path, k=12, n=3000, **extra):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({f"b{j}": rng.integers(0, 2, n) for j in range(k)})
    frame["treat"] = rng.integers(0, 2, n)
    frame["y"] = rng.normal(size=n)
    frame.to_csv(tmp_path / "wide.csv", index=False)
    analysis = {"name": "wide", "modifiers": [f"b{j}" for j in range(k)], **extra.pop("analysis", {})}
    return parse_spec(spec_dict(tmp_path / "wide.csv", analyses=[analysis], **extra), base_dir=tmp_path)


def test_twelve_binary_modifiers_are_refused_with_numbers_and_suggestions(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HetreportWarning)
        with pytest.raises(ModelError) as e:
            prepare(wide_spec(tmp_path))
    msg = str(e.value)
    assert "4,095 varying terms (limit 255; limits.terms)" in msg
    assert "with units in only one treatment arm" in msg and "limits.one_arm_groups" in msg
    assert "fewer modifiers" in msg and "terms: crossing" in msg and "data.bins" in msg
    assert "limits: {" in msg


def test_the_crossing_still_refused_when_most_groups_have_one_arm_and_the_override_lets_it_through(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HetreportWarning)
        spec = wide_spec(tmp_path, analysis={"terms": "crossing"})
        with pytest.raises(ModelError, match="one_arm_groups"):
            prepare(spec)
        study = prepare(wide_spec(tmp_path, analysis={"terms": "crossing"}, limits={"one_arm_groups": 1}))
    size = study.analyses[0].size
    g = study.analyses[0].groups
    assert size.groups == g.n_groups and size.one_arm == int(g.table["one_arm"].sum())
    assert size.one_arm / size.groups > 0.5
    assert size.terms == 1 and size.levels == size.groups


def test_parameter_limit_and_its_override(tmp_path):
    frame = random_frame(n=300)
    spec = make_spec(tmp_path, frame, ["m1", "m2"], limits={"parameters": 10})
    with pytest.raises(ModelError, match=r"34 parameters \(limit 10; limits.parameters\)"):
        prepare(spec)
    assert prepare(make_spec(tmp_path, frame, ["m1", "m2"], limits={"parameters": 34})).refusals == []


def test_default_limits_leave_the_bundled_example_alone():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HetreportWarning)  # its one-arm groups
        study = check(REPO / "examples" / "tomz-weeks" / "spec.yml")
    assert study.refusals == []
    assert "ready" in summary(study)


def built_model_parameters(adata, groups, analysis, spec):
    """Second route: the number of free parameters of the PyMC model the fit builds."""
    from hetreport.models.hierarchical import _control_prior_sds, build_design, build_glm_model, build_model, resolve_priors

    resolved = resolve_priors(spec.priors_of(analysis), adata)
    design = build_design(adata, groups, analysis.terms)
    if adata.family == "gaussian":
        model = build_model(design, resolved, _control_prior_sds(resolved, adata), adata.control_columns, groups.keys)
    else:
        from hetreport.models.families import default_cutpoints, unit_table

        model = build_glm_model(
            design,
            unit_table(adata, groups),
            adata.family,
            resolved,
            _control_prior_sds(resolved, adata),
            adata.control_columns,
            groups.keys,
            None,
            (),
            default_cutpoints(adata) if adata.family == "ordinal" else None,
        )
    return sum(int(np.size(v)) for v in model.initial_point().values()), len(design.level_names)


@pytest.mark.parametrize("family, terms", [("gaussian", "all"), ("gaussian", "crossing"), ("bernoulli", "all"), ("ordinal", "all")])
def test_parameter_count_equals_the_built_models(tmp_path, family, terms):
    frame = random_frame(n=400, levels=(2, 3, 2))
    if family == "bernoulli":
        frame["y"] = (frame["y"] > frame["y"].median()).astype(int)
    if family == "ordinal":
        frame["y"] = pd.cut(frame["y"], 4, labels=False) + 1
    spec = make_spec(tmp_path, frame, ["m1", "m2", "m3"], ["x1", "x2"], family=family, analysis={"terms": terms})
    study = prepare(spec)
    p = study.analyses[0]
    params, levels = built_model_parameters(p.data, p.groups, p.analysis, spec)
    assert p.size.levels == levels
    assert p.size.parameters == params


@pytest.mark.slow
def test_kept_posterior_size_equals_a_real_fits(tmp_path):
    from hetreport.models.hierarchical import fit_hierarchical

    spec = make_spec(tmp_path, random_frame(n=300), ["m1", "m2"], ["x1"], sampler={"draws": 60, "tune": 60, "chains": 2, "seed": 1})
    p = prepare(spec).analyses[0]
    fit = fit_hierarchical(p.data, p.groups, spec.priors, spec.sampler_of(p.analysis))
    post = fit.idata.posterior
    per_draw = sum(int(np.prod([post[v].sizes[d] for d in post[v].dims if d not in ("chain", "draw")])) for v in post.data_vars)
    assert p.size.stored_per_draw == per_draw
    assert p.size.posterior_bytes == sum(post[v].nbytes for v in post.data_vars)


# --------------------------------------------------------------------------- limits on the data read


def test_xlsx_whose_sheets_inflate_past_the_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "bomb.xlsx"
    random_frame(n=50).to_excel(path, index=False)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:  # 3 MB of padding, ~3 kB compressed
        zf.writestr("xl/padding.xml", b" " * 3_000_000)
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"MB once decompressed.*limits.data_mb"):
        read_table(path, limits=Limits(data_mb=2))
    frame, *_ = read_table(path, limits=Limits(data_mb=10))
    assert len(frame) == 50


def test_default_data_limit_refuses_a_real_zip_bomb_without_parsing_it(tmp_path):
    path = tmp_path / "bomb.xlsx"
    random_frame(n=20).to_excel(path, index=False)
    chunk = b"<c/>" * 262_144  # 1 MiB
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("xl/worksheets/padding.xml", "w", force_zip64=True) as member:
            for _ in range(210):  # 220 MB, above the default 200 MB
                member.write(chunk)
    assert path.stat().st_size < 2_000_000
    # refused from the zip directory's sizes (220 MB in all), before anything is inflated or parsed
    with pytest.raises(DataError, match=r"220 MB once decompressed \(1 MB on disk\).*limits.data_mb"):
        read_table(path)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "csv.gz", "parquet", "xlsx", "dta"])
def test_row_limit_for_every_format(tmp_path, fmt):
    frame = random_frame(n=120)
    path = tmp_path / f"d.{fmt}"
    if fmt in ("csv", "csv.gz"):
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_stata(path, write_index=False)
    kind = "csv" if fmt == "csv.gz" else None
    with pytest.raises(DataError, match=r"above the limit of 100 rows read \(limits.rows\)"):
        read_table(path, kind, limits=Limits(rows=100))
    assert len(read_table(path, kind, limits=Limits(rows=120))[0]) == 120


def test_compressed_csv_is_capped_while_it_is_read(tmp_path):
    import gzip

    path = tmp_path / "d.csv.gz"
    text = random_frame(n=20000).to_csv(index=False).encode()
    path.write_bytes(gzip.compress(text))
    with pytest.raises(DataError, match="more than 0.5 MB once decompressed"):
        read_table(path, "csv", limits=Limits(data_mb=0.5))
    assert len(read_table(path, "csv")[0]) == 20000


# --------------------------------------------------------------------------- silent wrong results (issue 13 s3)


def test_a_filter_must_be_a_condition(tmp_path):
    frame = random_frame(n=100)
    frame["m1"] = frame["m1"] + 1  # values 1 or 2
    spec = make_spec(tmp_path, frame, ["m2"], data={"path": str(tmp_path / "data.csv"), "filter": "m1 + 1"})
    with pytest.raises(SpecError, match=r"must be a condition.*e\.g\. [23]"):
        load_data(spec)
    spec = make_spec(tmp_path, frame, ["m2"], data={"path": str(tmp_path / "data.csv"), "filter": "m1 == 1"})
    assert len(load_data(spec).frame) == int((frame["m1"] == 1).sum())


def test_an_analysis_filter_must_be_a_condition_too(tmp_path):
    spec = make_spec(tmp_path, random_frame(n=100), ["m2"], analysis={"filter": "x2"})
    with pytest.raises(SpecError, match="must be a condition"):
        prepare_analysis(spec, load_data(spec), spec.analyses[0])


def test_full_width_names_are_not_read_as_ascii_columns():
    frame = pd.DataFrame({"m1": [1.0, 2.0]})
    with pytest.raises(SpecError) as e:
        compile_expr("\uff4d1 + 1", where="data.derive.z", columns=frame.columns)
    msg = str(e.value)
    assert "`\uff4d1`" in msg and "U+FF4D" in msg and "Write `m1`" in msg
    # a column really spelt with the full-width letter is found, exactly
    wide = pd.DataFrame({"\uff4d1": [1.0, 2.0], "m1": [10.0, 20.0]})
    assert compile_expr("\uff4d1 + 1", where="w", columns=wide.columns).evaluate(wide).tolist() == [2.0, 3.0]
    # function names and keywords too: a full-width `ａbs` is not abs
    with pytest.raises(SpecError, match="not an allowed function"):
        compile_expr("\uff41bs(m1)", where="w", columns=frame.columns)
    with pytest.raises(SpecError, match="has no argument"):
        compile_expr("round(m1, \uff44igits=1)", where="w", columns=frame.columns)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "xlsx", "parquet"])
def test_duplicate_column_names_are_an_error_naming_them(tmp_path, fmt):
    frame = pd.DataFrame([[1, 2, 3], [4, 5, 6]], columns=["m1", "y", "m1"])
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "xlsx":
        frame.to_excel(path, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table([pa.array([1, 4]), pa.array([2, 5]), pa.array([3, 6])], names=["m1", "y", "m1"]), path)
    with pytest.raises(DataError, match="more than one column named 'm1'"):
        read_table(path)


def test_a_real_column_named_like_pandas_mangling_is_not_a_duplicate(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"m1": [1, 2], "m1.1": [3, 4]}).to_csv(path, index=False)
    assert list(read_table(path)[0].columns) == ["m1", "m1.1"]


def test_infinite_values_in_a_used_column_are_a_data_error_naming_column_and_rows(tmp_path):
    frame = random_frame(n=100)
    frame.loc[[4, 41], "y"] = [np.inf, -np.inf]
    spec = make_spec(tmp_path, frame, ["m1"])
    with pytest.raises(DataError, match=r"'y' holds infinite values .* in 2 row\(s\).*data row\(s\) 5, 42"):
        load_data(spec)
    # in a column the spec never reads, or in rows the filter drops, they do no harm
    frame.loc[[4, 41], "y"] = 0.0
    frame.loc[3, "x1"] = np.inf
    assert len(load_data(make_spec(tmp_path, frame, ["m1"])).frame) == 100
    frame.loc[3, "y"] = np.inf
    spec = make_spec(tmp_path, frame, ["m1"], data={"path": str(tmp_path / "data.csv"), "filter": "abs(y) < 1e300"})
    assert len(load_data(spec).frame) == 99


def test_infinite_values_in_a_column_read_by_derive_are_an_error(tmp_path):
    frame = random_frame(n=50)
    frame.loc[0, "x1"] = np.inf
    spec = make_spec(tmp_path, frame, ["m1"], data={"path": str(tmp_path / "data.csv"), "derive": {"hi": "x1 > 0"}})
    with pytest.raises(DataError, match="'x1' holds infinite values"):
        load_data(spec)


def test_a_derived_column_missing_everywhere_is_an_error_and_partial_overflow_a_warning(tmp_path):
    frame = random_frame(n=50)
    spec = make_spec(tmp_path, frame, ["m1"], data={"path": str(tmp_path / "data.csv"), "derive": {"z": "9 ** 9 ** 9 ** 9"}})
    with pytest.raises(DataError, match=r"data.derive.z: .*missing in every one of the 50 rows.*overflows to infinity"):
        load_data(spec)
    spec = make_spec(tmp_path, frame, ["m1"], data={"path": str(tmp_path / "data.csv"), "derive": {"r": "1 / m1"}})
    with pytest.warns(HetreportWarning, match=rf"data.derive.r: .* in {int((frame['m1'] == 0).sum())} of 50 rows"):
        ds = load_data(spec)
    assert ds.frame["r"].isna().sum() == (frame["m1"] == 0).sum()


def test_control_characters_are_removed_from_titles_and_labels(tmp_path):
    evil = "e\u202elive\x00\x07 \x1b[2Jtitle"
    frame = random_frame(n=100)
    with pytest.warns(HetreportWarning) as record:
        spec = make_spec(tmp_path, frame, ["m1"], title=evil, labels={"variables": {"m1": "M\u202eone"}, "levels": {"m1": {0: "z\x07ero"}}})
    said = [str(w.message) for w in record]
    assert any("title: removed control character(s) U+0000, U+0007, U+001B, U+202E" in m for m in said)
    assert any(m.startswith("variables: ") and "U+202E" in m for m in said)
    assert spec.title == "elive [2Jtitle"
    adata = prepare_analysis(spec, load_data(spec), spec.analyses[0])
    assert adata.modifiers[0].label == "Mone" and adata.modifiers[0].level_labels[0] == "zero"
    # text values of a column, used as level labels, too
    frame["grp"] = np.where(frame["m1"] == 1, "a\u202eb", "c\x07d")
    spec = make_spec(tmp_path, frame, ["grp"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        groups = build_groups(prepare_analysis(spec, load_data(spec), spec.analyses[0]))
    assert not any(c in "".join(groups.table["group_label"]) for c in "\u202e\x07")


def test_control_characters_in_a_message_are_shown_not_sent_to_the_terminal(tmp_path):
    frame = random_frame(n=100)
    frame = frame.rename(columns={"y": "y\x1b[2J\u202e"})
    spec = write(tmp_path, frame)
    r = subprocess.run([sys.executable, "-m", "hetreport.cli", "check", str(spec)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 2
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr
    assert visible("a\x1bb\u202ec") == "a\\x1bb\\u202ec"
    assert clean_text("a\tb\nc\u202ed") == "a b cd"


def test_long_literals_are_quoted_shortened(tmp_path):
    frame = pd.DataFrame({"x": [1.0]})
    with pytest.raises(SpecError) as e:
        compile_expr("x > " + "1" * 1500, where="data.filter", columns=frame.columns)
    msg = str(e.value)
    assert len(msg) < 500 and "(1,504 characters)" in msg and "too large" in msg
    with pytest.raises(SpecError) as e:
        parse_spec(spec_dict(Path("d.csv"), treated_value=["9" * 2000]))
    assert len(str(e.value)) < 400
    assert shorten("abc") == "abc" and shorten("x" * 100).endswith("(100 characters)")


# --------------------------------------------------------------------------- what new users tripped over (issue 15 s5)


def test_bin_codes_match_pandas_cut_and_their_left_closed_mirror():
    from hetreport.data import bin_codes

    rng = np.random.default_rng(2)
    x = np.concatenate([rng.integers(10, 60, 500).astype(float), [np.nan, 5.0, 70.0]])
    edges = np.array([10.0, 25.0, 44.0, 60.0])
    expected = pd.cut(x, edges, include_lowest=True, labels=False) + 1
    assert np.array_equal(bin_codes(x, edges, True), expected, equal_nan=True)
    # left-closed: a value v falls in the same bin as -v does in the mirrored right-closed bins
    mirrored = pd.cut(-x, -edges[::-1], include_lowest=True, labels=False)
    assert np.array_equal(bin_codes(x, edges, False), len(edges) - 1 - mirrored, equal_nan=True)


@pytest.mark.parametrize("closed", [None, "right", "left"])
def test_bins_are_labelled_by_what_they_contain(tmp_path, closed):
    rng = np.random.default_rng(4)
    frame = random_frame(n=400)
    frame["age"] = np.concatenate([np.full(37, 44), rng.integers(18, 58, 363)])
    rule = {"quantiles": 3, **({"closed": closed} if closed else {})}
    spec = make_spec(tmp_path, frame, ["m1"], data={"path": str(tmp_path / "data.csv"), "bins": {"age": rule}})
    ds = load_data(spec)
    labels = ds.value_labels["age"]
    for code, label in labels.items():
        held = frame["age"][ds.frame["age"] == float(code)]
        lo, hi = (int(v) for v in label.split("–"))
        assert held.min() == lo and held.max() == hi, (label, held.min(), held.max())
    ranges = [tuple(int(v) for v in labels[str(k)].split("–")) for k in (1, 2, 3)]
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))  # no overlap


def test_bins_closed_key_keeps_old_spec_hashes_and_labels_non_integers_by_their_edges(tmp_path):
    from hetreport.data import bin_labels

    base = spec_dict(Path("d.csv"), data={"path": "d.csv", "bins": {"x": {"breaks": [0, 1.5, 3]}}})
    explicit = spec_dict(Path("d.csv"), data={"path": "d.csv", "bins": {"x": {"breaks": [0, 1.5, 3], "closed": "right"}}})
    assert "closed" not in json.dumps(parse_spec(base).canonical())
    assert parse_spec(explicit).canonical() != parse_spec(base).canonical()  # written out: recorded
    assert bin_labels(np.array([0, 1.5, 3]), True, False) == ["0 to 1.5", "over 1.5 to 3"]
    assert bin_labels(np.array([0, 1.5, 3]), False, False) == ["0 to under 1.5", "1.5 to 3"]
    assert bin_labels(np.array([18, 25, 65]), True, True) == ["18–25", "26–65"]
    assert bin_labels(np.array([18, 25, 65]), False, True) == ["18–24", "25–65"]


def test_unknown_key_in_a_mapping_of_rules_names_the_allowed_keys():
    with pytest.raises(SpecError) as e:
        parse_spec(spec_dict(Path("d.csv"), data={"path": "d.csv", "bins": {"age": {"quantile": 3}}}))
    msg = str(e.value)
    assert "data.bins.age.quantile: unknown key 'quantile'. Did you mean 'quantiles'?" in msg
    assert "Allowed here: quantiles, breaks, labels, closed." in msg
    assert "Allowed here: ." not in msg


def test_treatment_amount_suggests_above_zero(tmp_path):
    frame = random_frame(n=200)
    rng = np.random.default_rng(5)
    frame["amount"] = np.where(frame["treat"] == 1, rng.uniform(0.5, 4, 200), 0.0)
    spec = make_spec(tmp_path, frame.drop(columns="treat"), ["m1"], treatment="amount")
    with pytest.raises(DataError) as e:
        prepare_analysis(spec, load_data(spec), spec.analyses[0])
    assert 'treated: "amount > 0"' in str(e.value)
    assert "2.26943" not in str(e.value)


def test_bernoulli_on_earnings_says_how_many_rows_and_suggests_a_meaningful_threshold(tmp_path):
    frame = random_frame(n=300)
    rng = np.random.default_rng(6)
    frame["y"] = np.where(rng.random(300) < 0.3, 0.0, np.round(rng.gamma(2, 800, 300), 2))
    spec = make_spec(tmp_path, frame, ["m1"], family="bernoulli")
    with pytest.raises(DataError) as e:
        prepare_analysis(spec, load_data(spec), spec.analyses[0])
    msg = " ".join(str(e.value).split())
    n_bad = int((~frame["y"].isin([0, 1])).sum())
    assert f"{n_bad:,} of the 300 rows of 'y' hold other values" in msg
    assert 'y_bin: "y > 0"' in msg and ">= 4" not in msg
    # a 1-7 rating scale: the upper part of the scale
    frame["y"] = rng.integers(1, 8, 300)
    spec = make_spec(tmp_path, frame, ["m1"], family="bernoulli")
    with pytest.raises(DataError, match='y_bin: "y >= 4"'):
        prepare_analysis(spec, load_data(spec), spec.analyses[0])


def test_integer_modifier_with_many_values_warns_with_the_numbers(tmp_path):
    frame = random_frame(n=300)
    frame["years"] = np.random.default_rng(7).integers(0, 12, 300)
    spec = make_spec(tmp_path, frame, ["m1", "years"])
    with pytest.warns(
        HetreportWarning,
        match=r"'years' has 12 distinct whole-number values .* has \d+ groups, \d+ of them with only one arm.*data.bins: \{years: \{quantiles: 4\}\}",
    ):
        prepare(spec)
    labelled = make_spec(tmp_path, frame, ["m1", "years"], labels={"levels": {"years": {k: f"year {k}" for k in range(12)}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", HetreportWarning)
        warnings.filterwarnings("ignore", message=".*only one treatment arm")
        prepare(labelled)


def test_check_compares_a_spec_with_its_registration(tmp_path):
    from tests.test_conformance import _write_pair

    reg, spec, dropped = _write_pair(tmp_path)
    for path, expect in ((spec, "as registered"), (dropped, "1 deviation(s) from the registration")):
        text = path.read_text() + f"preregistration: {reg}\n"
        path.write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", HetreportWarning)
            study = check(path)
        assert study.conformance is not None
        out = " ".join(summary(study).split())
        assert expect in out
    assert "analyses[respondents].modifiers: dropped `hawk_r`" in out


def test_text_slope_predictor_is_found_before_any_fit(tmp_path):
    frame = random_frame(n=200)
    frame["m1"] = np.where(frame["m1"] == 1, "high", "low")
    spec = make_spec(tmp_path, frame, ["m1", "m2"], analysis={"slope_predictors": ["m1"], "terms": "crossing"})
    with pytest.raises(SpecError, match="slope predictors must have numeric codes"):
        prepare(spec)


def test_preregister_spec_error_comes_before_any_heavy_import(tmp_path):
    design = (REPO / "examples" / "tomz-weeks" / "design.yml").read_text()
    bad = tmp_path / "design.yml"
    bad.write_text(design.replace("\ntitle:", "\ntitel:", 1) if "\ntitle:" in design else design.replace("title:", "titel:", 1))
    out, err = probe("preregister", bad, "--out", tmp_path / "out")
    assert out["rc"] == 2 and "unknown key 'titel'" in err
    assert out["heavy"] == []


def test_a_full_width_modifier_name_is_not_the_ascii_column(tmp_path):
    spec = make_spec(tmp_path, random_frame(n=100), ["\uff4d1"])
    with pytest.raises(SpecError, match=r"no column '\uff4d1'.*looks like the column `m1`.*U\+FF4D"):
        prepare_analysis(spec, load_data(spec), spec.analyses[0])
