"""Read the data file, apply ``derive``/``filter``/``bins``, and prepare each analysis.

Codes, not value labels, are what hetreport computes with: Stata and SPSS files
are read with their numeric codes and the value labels are kept aside for
display. Missing values stay missing through ``derive`` (see ``expr.py``) and
are removed listwise per analysis, with a count for every variable.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, HetreportWarning, SpecError, clean_text, shorten, suggest
from .expr import compile_expr, spelling_hint
from .spec import Analysis, Limits, Spec

#: a numeric modifier with more distinct values than this needs a binning rule
MAX_MODIFIER_LEVELS = 20

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".dta": "dta",
    ".sav": "sav",
    ".zsav": "sav",
    ".xlsx": "xlsx",
}


def canonical_code(value):
    """One form per level code: 1, 1.0 and np.int8(1) are all 1; True is 1; text stays text."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str):
        return value
    return value


def map_codes(values, f) -> list:
    """``[f(v) for v in values]``, with ``f`` called once per distinct value (a column of a million rows has few)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values, use_na_sentinel=False)
    mapped = np.empty(len(uniques), dtype=object)
    mapped[:] = [f(u) for u in uniques]
    return mapped[codes].tolist()


def code_key(value) -> str:
    """The string a code is matched by (YAML may write level keys as 1 or '1')."""
    c = canonical_code(value)
    if isinstance(c, str):
        try:
            return code_key(float(c)) if c.strip() and c.strip().lstrip("-").replace(".", "", 1).isdigit() else c
        except ValueError:
            return c
    return str(c)


@dataclass(frozen=True)
class Dataset:
    """The study's data after derive, filter and bins, with its provenance."""

    frame: pd.DataFrame
    path: Path
    sha256: str
    format: str
    n_read: int
    n_filtered_out: int
    n_filter_missing: int
    variable_labels: dict[str, str]
    value_labels: dict[str, dict[str, str]]  # column -> code_key -> label (file's, then spec's)
    notes: tuple[str, ...] = ()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"), (b"\x28\xb5\x2f\xfd", "zstd"))


class _CappedReader(io.RawIOBase):
    """A binary stream that stops with a DataError once more than ``cap`` bytes have been read
    (so that a compressed csv cannot inflate without limit)."""

    def __init__(self, raw, cap: int, name: str, owner=None):
        self.raw, self.cap, self.name, self.seen, self.owner = raw, cap, name, 0, owner

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.raw.read(len(buf))
        self.seen += len(data)
        if self.seen > self.cap:
            raise DataError(_too_big(self.name, f"more than {_mb(self.cap)} once decompressed"), where="data.path")
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.raw.close()
        if self.owner is not None:  # the zip archive a member was opened from
            self.owner.close()
        super().close()


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e6:.2g} MB"


def _too_big(name: str, what: str) -> str:
    return (
        f"'{name}' holds {what}, above the limit of data read (limits.data_mb). Read a smaller extract, "
        "or raise the limit in the spec if the file is meant to be this large, e.g. limits: {data_mb: 5000}."
    )


def _too_many_rows(name: str, what: str, cap: int) -> str:
    return (
        f"'{name}' has {what} rows, above the limit of {cap:,} rows read (limits.rows). Read a smaller extract, "
        f"or raise the limit in the spec, e.g. limits: {{rows: {max(cap * 10, 10_000_000)}}}."
    )


def _open_text_source(path: Path, cap: int):
    """The csv/tsv file as a capped binary stream, decompressed when it is gzip, bz2, xz or zip
    (by its first bytes); a plain file larger than the cap is refused before reading."""
    with path.open("rb") as f:
        head = f.read(8)
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind is None:
        size = path.stat().st_size
        if size > cap:
            raise DataError(_too_big(path.name, _mb(size)), where="data.path")
        return _CappedReader(path.open("rb"), cap, path.name)
    if kind == "gzip":
        import gzip

        raw = gzip.open(path, "rb")
    elif kind == "bz2":
        import bz2

        raw = bz2.open(path, "rb")
    elif kind == "xz":
        import lzma

        raw = lzma.open(path, "rb")
    elif kind == "zip":
        import zipfile

        zf = zipfile.ZipFile(path)
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) != 1 or members[0].file_size > cap:
            zf.close()
            if len(members) != 1:
                raise DataError(
                    f"'{path.name}' is a zip archive with {len(members)} files; a zipped csv must hold exactly one.", where="data.path"
                )
            raise DataError(_too_big(path.name, f"{_mb(members[0].file_size)} once decompressed"), where="data.path")
        return _CappedReader(zf.open(members[0]), cap, path.name, owner=zf)
    else:
        raise DataError(
            f"'{path.name}' is compressed with {kind}, which hetreport does not read; decompress it first or use gzip.", where="data.path"
        )
    return _CappedReader(raw, cap, path.name)


def _duplicates(names) -> list[str]:
    seen, dup = set(), []
    for n in names:
        k = str(n)
        if k in seen and k not in dup:
            dup.append(k)
        seen.add(k)
    return dup


def _refuse_duplicates(names, path: Path) -> None:
    dup = _duplicates(names)
    if dup:
        shown = ", ".join(f"'{shorten(clean_text(d))}'" for d in dup[:8]) + (", …" if len(dup) > 8 else "")
        raise DataError(
            f"'{path.name}' has more than one column named {shown}. hetreport cannot tell which one a spec "
            "means; rename the columns in the file so that every name is used once.",
            where="data.path",
        )


def _read_csv(path: Path, sep: str, limits: Limits) -> pd.DataFrame:
    cap = int(limits.data_mb * 1e6)
    # the header as written: pandas renames a repeated name (m1, m1.1), so duplicates are found here
    with _open_text_source(path, cap) as src:
        header = pd.read_csv(src, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    _refuse_duplicates(list(header.iloc[0]) if len(header) else [], path)
    with _open_text_source(path, cap) as src:
        frame = pd.read_csv(src, sep=sep, low_memory=False, nrows=limits.rows + 1)
    if len(frame) > limits.rows:
        raise DataError(_too_many_rows(path.name, f"more than {limits.rows:,}", limits.rows), where="data.path")
    return frame


def _check_xlsx(path: Path, limits: Limits) -> None:
    """An xlsx file is a zip archive: its declared uncompressed sizes are checked before any parsing
    (a 1 MB file can inflate to gigabytes; reading never goes past the declared size)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile:
        raise DataError(
            f"'{path.name}' is not a valid xlsx file (an xlsx file is a zip archive, and this one cannot be "
            "opened as one). Save it again from the spreadsheet program, or export it as csv.",
            where="data.path",
        ) from None
    if total > limits.data_mb * 1e6:
        raise DataError(_too_big(path.name, f"{_mb(total)} once decompressed ({_mb(path.stat().st_size)} on disk)"), where="data.path")


def _check_parquet(path: Path, limits: Limits) -> None:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:
        raise DataError(f"could not read '{path.name}' as parquet: {type(exc).__name__}: {shorten(exc, 200)}.", where="data.path") from None
    _refuse_duplicates([meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)] if meta.num_columns else [], path)
    if meta.num_rows > limits.rows:
        raise DataError(_too_many_rows(path.name, f"{meta.num_rows:,}", limits.rows), where="data.path")
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if size > limits.data_mb * 1e6:
        raise DataError(_too_big(path.name, f"{_mb(size)} of values once decompressed"), where="data.path")


def _check_stat_file(path: Path, fmt: str, limits: Limits) -> None:
    """Stata and SPSS files: rows and size from the file's header, before the values are read."""
    import pyreadstat

    reader = pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav
    try:
        _, meta = reader(str(path), metadataonly=True)
    except Exception as exc:
        raise DataError(
            f"could not read '{path.name}' as {fmt}: {type(exc).__name__}: {shorten(exc, 200)}. Check that the file is a valid {fmt} file or set data.format.",
            where="data.path",
        ) from None
    _refuse_duplicates(meta.column_names or [], path)
    rows = meta.number_rows
    if rows is not None and rows > limits.rows:
        raise DataError(_too_many_rows(path.name, f"{rows:,}", limits.rows), where="data.path")
    if rows is not None and rows * max(meta.number_columns or 0, 1) * 8 > limits.data_mb * 1e6:
        raise DataError(
            _too_big(path.name, f"about {_mb(rows * meta.number_columns * 8)} of values ({rows:,} rows x {meta.number_columns:,} columns)"),
            where="data.path",
        )


def read_table(path: Path, fmt: str | None = None, sheet=None, limits: Limits | None = None) -> tuple[pd.DataFrame, dict, dict, str]:
    """Read a data file as codes. Returns (frame, variable labels, value labels, format).

    ``limits`` (default: the documented ``Limits()``) caps the rows read and the decompressed size,
    checked for every format before the values are parsed; repeated column names are an error."""
    limits = limits or Limits()
    if not path.is_file():
        raise DataError(
            f"the data file '{path}' does not exist. data.path is read relative to the spec file's folder; check the name and location.",
            where="data.path",
        )
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format of '{path.name}' from its extension. Set data.format to one of csv, tsv, parquet, dta, sav, xlsx.",
            where="data.format",
        )
    var_labels: dict = {}
    val_labels: dict = {}
    try:
        if fmt in ("csv", "tsv"):
            frame = _read_csv(path, "," if fmt == "csv" else "\t", limits)
        elif fmt == "parquet":
            _check_parquet(path, limits)
            frame = pd.read_parquet(path)
        elif fmt == "xlsx":
            _check_xlsx(path, limits)
            sheet_name = sheet if sheet is not None else 0
            header = pd.read_excel(path, sheet_name=sheet_name, header=None, nrows=1, dtype=str)
            _refuse_duplicates([v for v in header.iloc[0] if isinstance(v, str) or pd.notna(v)] if len(header) else [], path)
            frame = pd.read_excel(path, sheet_name=sheet_name, nrows=limits.rows + 1)
            if len(frame) > limits.rows:
                raise DataError(_too_many_rows(path.name, f"more than {limits.rows:,}", limits.rows), where="data.path")
        elif fmt in ("dta", "sav"):
            import pyreadstat

            _check_stat_file(path, fmt, limits)
            reader = pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav
            frame, meta = reader(str(path), apply_value_formats=False, row_limit=limits.rows + 1)
            if len(frame) > limits.rows:
                raise DataError(_too_many_rows(path.name, f"more than {limits.rows:,}", limits.rows), where="data.path")
            var_labels = {k: v for k, v in (meta.column_names_to_labels or {}).items() if v}
            val_labels = dict(meta.variable_value_labels or {})
        else:  # pragma: no cover - guarded by the spec's Literal
            raise DataError(f"unsupported format '{fmt}'.", where="data.format")
    except DataError:
        raise
    except Exception as exc:  # a broken file: say which and why, no traceback
        raise DataError(
            f"could not read '{path.name}' as {fmt}: {type(exc).__name__}: {shorten(exc, 200)}. Check that the file is a valid {fmt} file or set data.format.",
            where="data.path",
        ) from None
    _refuse_duplicates(list(frame.columns), path)
    # pandas nullable / arrow dtypes -> plain float64 (NaN) or object, so missing is one thing
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            frame[col] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            continue
        else:
            # integer columns with missing values arrive as object (pyreadstat) or text (csv):
            # if every non-missing value is a number, the column is numeric
            values = s.astype(object).where(s.notna(), np.nan)
            nonmissing = values.dropna()
            numbers = (
                pd.to_numeric(nonmissing, errors="coerce")
                if len(nonmissing)
                and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in nonmissing)
                else None
            )
            frame[col] = numbers.reindex(values.index).astype("float64") if numbers is not None else values
    frame.columns = [str(c) for c in frame.columns]
    _refuse_duplicates(list(frame.columns), path)  # e.g. a parquet file's 1 and '1'
    val_labels = {col: {code_key(k): str(v) for k, v in labels.items()} for col, labels in val_labels.items()}
    return frame.reset_index(drop=True), var_labels, val_labels, fmt


def load_data(spec: Spec) -> Dataset:
    """Read the spec's data file and apply derive, filter and bins (in that order)."""
    path = spec.data_path
    frame, var_labels, val_labels, fmt = read_table(path, spec.data.format, spec.data.sheet, spec.work_limits)
    n_read = len(frame)
    if n_read == 0:
        raise DataError(f"'{path.name}' has no rows.", where="data.path")
    notes: list[str] = []
    raw_columns = set(frame.columns)
    row_number = np.arange(1, n_read + 1)  # the file's data rows, 1 = the first after the header
    # derive, in the order written; each may use the ones before it
    for name, text in spec.data.derive.items():
        where = f"data.derive.{name}"
        expr = compile_expr(text, where=where, columns=frame.columns)
        values = expr.evaluate(frame)
        _check_derived(values, expr, where)
        frame[name] = values
        raw_columns.discard(name)
        if name in val_labels:  # a recode of a labelled column no longer carries its labels
            val_labels.pop(name)
    n_filtered_out = n_filter_missing = 0
    if spec.data.filter:
        keep, n_filtered_out, n_filter_missing = _apply_filter(frame, spec.data.filter, "data.filter")
        frame = frame.loc[keep].reset_index(drop=True)
        row_number = row_number[keep]
        if n_filter_missing:
            notes.append(
                f"data.filter could not be evaluated for {n_filter_missing:,} rows (missing values in "
                f"{', '.join(sorted(compile_expr(spec.data.filter, where='data.filter').names))}); they were dropped."
            )
        if frame.empty:
            raise DataError(
                f"the filter '{shorten(spec.data.filter)}' keeps no rows of {n_read:,}. Check the filter's values against the data's codes.",
                where="data.filter",
            )
    _refuse_infinite(frame, sorted(_used_columns(spec) & raw_columns), row_number, path)
    for col, rule in spec.data.bins.items():
        where = f"data.bins.{col}"
        if col not in frame.columns:
            raise SpecError(f"there is no column '{col}' to bin.{suggest(col, frame.columns)}", where=where)
        frame[col], labels = _bin(frame[col], rule, where)
        val_labels[col] = labels
    # spec labels extend and override the file's value labels
    for col, mapping in spec.labels.levels.items():
        val_labels.setdefault(col, {}).update({code_key(k): str(v) for k, v in mapping.items()})
    return Dataset(
        frame=frame,
        path=path,
        sha256=_sha256(path),
        format=fmt,
        n_read=n_read,
        n_filtered_out=n_filtered_out,
        n_filter_missing=n_filter_missing,
        variable_labels=var_labels,
        value_labels=val_labels,
        notes=tuple(notes),
    )


def _used_columns(spec: Spec) -> set[str]:
    """Every column a spec reads: the roles of every analysis and the names in derive, filter and bins."""
    used = {spec.outcome, spec.treatment} | set(spec.data.bins)
    used |= {c for c in (spec.trials, spec.ols.cluster, spec.report.truth) if c}
    texts = list(spec.data.derive.values()) + [spec.data.filter] + [a.filter for a in spec.analyses]
    for a in spec.analyses:
        used |= {spec.outcome_of(a), *a.modifiers, *a.controls}
    for text in texts:
        if text:
            used |= set(compile_expr(text, where="data").names)
    return used


def _refuse_infinite(frame: pd.DataFrame, columns: list[str], row_number: np.ndarray, path: Path) -> None:
    """Infinite numbers (``inf`` in a csv) are not values any model can use: an error naming the
    column and the file's rows, in the rows the filter keeps."""
    for col in columns:
        s = frame[col]
        if not pd.api.types.is_float_dtype(s.dtype):
            continue
        bad = np.isinf(s.to_numpy())
        if bad.any():
            rows = row_number[bad]
            shown = ", ".join(f"{r:,}" for r in rows[:8]) + (", …" if len(rows) > 8 else "")
            raise DataError(
                f"the column '{shorten(col)}' holds infinite values (inf or -inf) in {len(rows):,} row(s) of "
                f"'{path.name}': data row(s) {shown} (1 = the first row after the header). No model can use an "
                f"infinite number: correct them in the file, or leave those rows out with data.filter, "
                f'e.g. "abs({col}) < 1e300".',
                where="data.path",
            )


def _check_derived(values: pd.Series, expr, where: str) -> None:
    """A derived column missing in every row is an error; rows that overflowed to infinity or divided
    by zero (and so became missing) are a warning."""
    bad = values.attrs.get("nonfinite_rows", 0)
    if len(values) and values.isna().all():
        why = (
            f" in {bad:,} of them the calculation overflows to infinity or divides by zero, which gives missing"
            if bad
            else " the columns it uses are missing there, or no row matches"
        )
        raise DataError(
            f"`{shorten(expr.text)}` is missing in every one of the {len(values):,} rows:{why}. Check the expression "
            "and the values of the columns it uses.",
            where=where,
        )
    if bad:
        warnings.warn(
            f"{where}: `{shorten(expr.text)}` overflows to infinity or divides by zero in {bad:,} of {len(values):,} rows; "
            "those rows are missing in the derived column.",
            HetreportWarning,
            stacklevel=3,
        )


def _apply_filter(frame: pd.DataFrame, text: str, where: str) -> tuple[np.ndarray, int, int]:
    value = compile_expr(text, where=where, columns=frame.columns).evaluate(frame)
    numeric = pd.to_numeric(value, errors="coerce")
    if numeric.notna().sum() < value.notna().sum():
        raise SpecError(
            f"the filter '{shorten(text)}' does not give true/false for every row; write a comparison such as \"gender != 8\".", where=where
        )
    odd = numeric[numeric.notna() & (numeric != 0) & (numeric != 1)]
    if len(odd):
        raise SpecError(
            f"the filter '{shorten(text)}' must be a condition (true or false for each row), but it gives other values "
            f"(e.g. {odd.iloc[0]:g}, in {len(odd):,} rows), which would keep rows silently. Write a comparison such as "
            '"m1 == 1" or "gender != 8".',
            where=where,
        )
    missing = numeric.isna().to_numpy()
    keep = (numeric.fillna(0) != 0).to_numpy()
    return keep, int((~keep).sum() - missing.sum()), int(missing.sum())


def _bin(series: pd.Series, rule, where: str) -> tuple[pd.Series, dict[str, str]]:
    x = pd.to_numeric(series, errors="coerce")
    if x.notna().sum() == 0:
        raise DataError("the column to bin has no numeric values.", where=where)
    if rule.quantiles is not None:
        edges = np.unique(np.quantile(x.dropna(), np.linspace(0, 1, rule.quantiles + 1)))
        if len(edges) - 1 < rule.quantiles:
            raise DataError(
                f"the column has too few distinct values for {rule.quantiles} quantile bins (only {len(edges) - 1} distinct edges); use fewer quantiles or explicit breaks.",
                where=where,
            )
    else:
        edges = np.asarray(rule.breaks, dtype=float)
    right = rule.closed != "left"
    codes = bin_codes(x.to_numpy(dtype=float), edges, right)
    binned = pd.Series(codes, index=series.index, dtype="float64")  # 1..k, missing stays missing
    outside = int((x.notna() & binned.isna()).sum())
    if outside:
        warnings.warn(
            f"{where}: {outside:,} values fall outside the breaks {list(edges)} and become missing.", HetreportWarning, stacklevel=3
        )
    present = x.dropna().to_numpy()
    integers = bool(len(present)) and bool(np.all(present == np.round(present)))
    names = rule.labels or bin_labels(edges, right, integers)
    return binned, {str(i + 1): n for i, n in enumerate(names)}


def bin_codes(x: np.ndarray, edges: np.ndarray, right: bool = True) -> np.ndarray:
    """Bin numbers 1..k (float; NaN outside the edges or missing). Right-closed: (a, b], the lowest
    bin [a, b] (as pandas' cut with include_lowest); left-closed: [a, b), the highest bin [a, b]."""
    k = len(edges) - 1
    if right:
        idx = np.searchsorted(edges, x, side="left").astype(float)
        idx[x == edges[0]] = 1
    else:
        idx = np.searchsorted(edges, x, side="right").astype(float)
        idx[x == edges[-1]] = k
    idx[(idx < 1) | (idx > k) | np.isnan(x)] = np.nan
    return idx


def bin_labels(edges: np.ndarray, right: bool, integers: bool) -> list[str]:
    """Labels that say what each bin holds: for whole numbers the first and last number in it
    ("18–43", "44–56", or "44" alone); otherwise the edges with the open one marked
    ("18 to 25", "over 25 to 40" when right-closed; "18 to under 25", ..., "40 to 65" when left-closed)."""
    k = len(edges) - 1
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        if integers:
            if right:
                first = int(np.ceil(lo)) if i == 0 else int(np.floor(lo)) + 1
                last = int(np.floor(hi))
            else:
                first = int(np.ceil(lo))
                last = int(np.floor(hi)) if i == k - 1 else int(np.ceil(hi)) - 1
            if first <= last:
                out.append(f"{first}" if first == last else f"{first}–{last}")
                continue
        if right:
            out.append(f"{_num(lo)} to {_num(hi)}" if i == 0 else f"over {_num(lo)} to {_num(hi)}")
        else:
            out.append(f"{_num(lo)} to {_num(hi)}" if i == k - 1 else f"{_num(lo)} to under {_num(hi)}")
    return out


def _num(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:.3g}"


# --------------------------------------------------------------------------- per analysis


@dataclass(frozen=True)
class Variable:
    """A column's role and display information in one analysis."""

    name: str
    label: str
    levels: tuple = ()  # canonical codes in display order (modifiers, categorical controls)
    level_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalysisData:
    """One analysis's rows after listwise deletion, coded for modelling."""

    name: str
    title: str
    frame: pd.DataFrame  # columns: outcome, treatment (0/1), modifiers (codes), controls, [cluster], [truth]
    y: np.ndarray
    t: np.ndarray
    outcome: Variable
    treatment: Variable
    modifiers: tuple[Variable, ...]
    controls: tuple[str, ...]
    control_matrix: np.ndarray  # n x p, numeric controls as-is and categorical ones as dummies
    control_columns: tuple[str, ...]  # names of control_matrix columns
    control_display: tuple[str, ...]
    cluster: np.ndarray | None
    truth: np.ndarray | None
    accounting: pd.DataFrame  # variable, role, missing, removed (sequential)
    n_start: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    family: str = "gaussian"
    #: binomial: trials per row (the outcome y holds the successes)
    trials: np.ndarray | None = None
    #: ordinal: the outcome's categories (numeric codes, ascending) and their labels
    categories: tuple[float, ...] = ()
    category_labels: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def modifier_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modifiers)


def _var_label(spec: Spec, dataset: Dataset, col: str) -> str:
    return clean_text(spec.labels.variables.get(col) or dataset.variable_labels.get(col) or col)


def _level_label(dataset: Dataset, col: str, code) -> str:
    return clean_text(dataset.value_labels.get(col, {}).get(code_key(code), str(canonical_code(code))))


def _check_column(frame: pd.DataFrame, col: str, where: str) -> None:
    if col not in frame.columns:
        raise SpecError(
            f"the data has no column '{shorten(col)}'.{spelling_hint(col, list(frame.columns))} Columns include: "
            f"{', '.join(list(frame.columns)[:12])}{', …' if frame.shape[1] > 12 else ''}. Define it under data.derive or fix the name.",
            where=where,
        )


def _ordered_levels(values: pd.Series, col: str, spec: Spec) -> tuple:
    present = {code_key(v): canonical_code(v) for v in values.dropna().unique()}
    spec_order = [code_key(k) for k in spec.labels.levels.get(col, {})]
    ordered = [present[k] for k in spec_order if k in present]
    rest = [v for k, v in present.items() if k not in spec_order]
    try:
        rest = sorted(rest)
    except TypeError:
        rest = sorted(rest, key=str)
    return tuple(ordered + rest)


def prepare_analysis(spec: Spec, dataset: Dataset, analysis: Analysis) -> AnalysisData:
    """Select, check and code one analysis's variables; listwise deletion with counts."""
    ai = spec.analyses.index(analysis)
    frame = dataset.frame
    notes: list[str] = []
    outcome, family = spec.outcome_of(analysis), spec.family_of(analysis)
    o_where = f"analyses[{ai}].outcome" if analysis.outcome else "outcome"
    roles: list[tuple[str, str, str]] = [(outcome, "outcome", o_where), (spec.treatment, "treatment", "treatment")]
    roles += [(m, "modifier", f"analyses[{ai}].modifiers[{i}]") for i, m in enumerate(analysis.modifiers)]
    roles += [(c, "control", f"analyses[{ai}].controls[{i}]") for i, c in enumerate(analysis.controls)]
    if spec.trials:
        roles.append((spec.trials, "trials", "trials"))
    if spec.ols.cluster:
        roles.append((spec.ols.cluster, "cluster", "ols.cluster"))
    if spec.report.truth:
        roles.append((spec.report.truth, "true effect", "report.truth"))
    for col, _, where in roles:
        _check_column(frame, col, where)
    n_start = len(frame)
    if analysis.filter:
        keep, _, n_miss = _apply_filter(frame, analysis.filter, f"analyses[{ai}].filter")
        frame = frame.loc[keep]
        if n_miss:
            notes.append(f"The analysis filter could not be evaluated for {n_miss:,} rows (missing values); they were dropped.")
    cols = list(dict.fromkeys(c for c, _, _ in roles))
    sub = frame[cols]
    # a column of only missing values is an error, not an empty analysis
    for col, role, where in roles:
        if sub[col].notna().sum() == 0:
            raise DataError(
                f"the {role} column '{col}' has only missing values in the {len(sub):,} rows this analysis starts from. "
                "Check data.derive and data.filter, or the file's missing-value codes.",
                where=where,
            )
    # listwise deletion with sequential attribution
    rows = []
    alive = np.ones(len(sub), dtype=bool)
    for col, role, _ in roles:
        miss = sub[col].isna().to_numpy()
        rows.append(
            {
                "variable": col,
                "label": _var_label(spec, dataset, col),
                "role": role,
                "missing": int(miss.sum()),
                "removed": int((miss & alive).sum()),
            }
        )
        alive &= ~miss
    accounting = pd.DataFrame(rows)
    sub = sub.loc[alive].reset_index(drop=True)
    if len(sub) == 0:
        worst = accounting.sort_values("removed", ascending=False).iloc[0]
        raise DataError(
            f"no rows are left after removing missing values; '{worst['variable']}' alone removes {worst['removed']:,}. "
            "Check its coding or drop it from the analysis.",
            where=f"analyses[{ai}]",
        )
    # treatment -> 0/1
    t_raw = sub[spec.treatment]
    t_vals = [canonical_code(v) for v in pd.unique(t_raw)]
    t = _code_treatment(spec, dataset, t_raw, t_vals)
    # outcome
    y = pd.to_numeric(sub[outcome], errors="coerce")
    if y.isna().any():
        example = sub[outcome][y.isna()].iloc[0]
        raise DataError(
            f"the outcome '{outcome}' is not numeric (e.g. the value {shorten(repr(example))}). The outcome must be a number (a code); "
            f"if the file stores label text, recode it with data.derive, e.g. map({outcome}, {{'Agree': 1, 'Disagree': 0}}).",
            where=o_where,
        )
    if y.nunique() < 2:
        raise DataError(
            f"the outcome '{outcome}' takes a single value ({shorten(repr(y.iloc[0]))}) in this analysis; there is no variation to explain.",
            where=o_where,
        )
    trials = pd.to_numeric(sub[spec.trials], errors="coerce").to_numpy(dtype=float) if spec.trials and family == "binomial" else None
    categories = _check_family(
        spec, family, outcome, y.to_numpy(dtype=float), trials, where=f"analyses[{ai}].family" if analysis.family else "family"
    )
    # modifiers
    mods = []
    for i, m in enumerate(analysis.modifiers):
        where = f"analyses[{ai}].modifiers[{i}]"
        col = sub[m]
        levels = _ordered_levels(col, m, spec)
        numeric = pd.api.types.is_numeric_dtype(col.dtype)
        if numeric and m not in spec.data.bins:
            non_integer = not np.allclose(col, np.round(col))
            if non_integer or len(levels) > MAX_MODIFIER_LEVELS:
                why = "has non-integer values" if non_integer else f"has {len(levels)} distinct values"
                raise DataError(
                    f"the modifier '{m}' {why}, so it looks continuous and would make one group per value. "
                    f"Add a binning rule, e.g. data.bins: {{{m}: {{quantiles: 4}}}} or {{{m}: {{breaks: [..]}}}}.",
                    where=where,
                )
        if len(levels) < 2:
            raise DataError(
                f"the modifier '{m}' takes a single value ({levels[0]!r}) in this analysis, so it defines no contrast; drop it from modifiers.",
                where=where,
            )
        sub[m] = map_codes(col, canonical_code)
        mods.append(Variable(m, _var_label(spec, dataset, m), levels, tuple(_level_label(dataset, m, v) for v in levels)))
    # controls
    columns, display, blocks = [], [], []
    for i, c in enumerate(analysis.controls):
        where = f"analyses[{ai}].controls[{i}]"
        col = sub[c]
        labelled = len(dataset.value_labels.get(c, {})) > 0
        numeric = pd.api.types.is_numeric_dtype(col.dtype)
        levels = _ordered_levels(col, c, spec)
        if len(levels) < 2:
            notes.append(f"Control '{c}' is constant in this analysis and was left out.")
            warnings.warn(
                f"analyses[{ai}].controls[{i}]: '{c}' is constant in this analysis and is left out.", HetreportWarning, stacklevel=2
            )
            continue
        categorical = (not numeric) or c in analysis.categorical or (labelled and len(levels) > 2)
        if categorical:
            keys = np.array(map_codes(col, lambda v: code_key(canonical_code(v))), dtype=object)
            for lev in levels[1:]:
                blocks.append((keys == code_key(lev)).astype(float))
                columns.append(f"{c}[{lev}]")
                display.append(f"{_var_label(spec, dataset, c)}: {_level_label(dataset, c, lev)}")
        else:
            blocks.append(col.to_numpy(dtype=float))
            columns.append(c)
            display.append(_var_label(spec, dataset, c))
    X = np.column_stack(blocks) if blocks else np.zeros((len(sub), 0))
    cluster = np.array(map_codes(sub[spec.ols.cluster], code_key), dtype=object) if spec.ols.cluster else None
    truth = sub[spec.report.truth].to_numpy(dtype=float) if spec.report.truth else None
    sub = sub.assign(**{spec.treatment: t})
    return AnalysisData(
        name=analysis.name,
        title=analysis.title or analysis.name,
        frame=sub,
        y=y.to_numpy(dtype=float),
        t=t,
        outcome=Variable(outcome, _var_label(spec, dataset, outcome)),
        treatment=Variable(spec.treatment, _var_label(spec, dataset, spec.treatment)),
        modifiers=tuple(mods),
        controls=tuple(analysis.controls),
        control_matrix=X,
        control_columns=tuple(columns),
        control_display=tuple(display),
        cluster=cluster,
        truth=truth,
        accounting=accounting,
        n_start=n_start,
        notes=tuple(notes + list(dataset.notes)),
        family=family,
        trials=trials,
        categories=categories,
        category_labels=tuple(_level_label(dataset, outcome, c) for c in categories),
    )


def _check_family(spec: Spec, fam: str, col: str, y: np.ndarray, trials: np.ndarray | None, where: str = "family") -> tuple[float, ...]:
    """A family that does not fit the outcome is an error naming the offending value and the fix.
    Returns the ordered categories for an ordinal outcome (else ())."""

    def first(bad: np.ndarray) -> str:
        v = y[bad][0]
        return f"{v:g}"

    integer = np.isclose(y, np.round(y))
    if fam == "bernoulli":
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            distinct = np.unique(y)
            vals = ", ".join(f"{v:g}" for v in distinct[:8]) + (f", … ({len(distinct):,} distinct values)" if len(distinct) > 8 else "")
            scale = len(distinct) <= 10 and bool(integer.all())
            if scale:  # a rating scale: the upper half
                cut = distinct[len(distinct) // 2]
                rule, why = f"{col} >= {cut:g}", "the upper part of the scale"
            elif distinct[0] == 0 and (y == 0).mean() >= 0.1:
                rule, why = f"{col} > 0", "any amount above zero"
            else:
                cut = float(np.median(y))
                rule, why = f"{col} > {cut:.4g}", "above the median"
            raise DataError(
                f"family bernoulli needs a 0/1 outcome, but {int(bad.sum()):,} of the {len(y):,} rows of '{col}' hold other values "
                f'(e.g. {first(bad)}; its values are {vals}). Derive a 0/1 outcome with data.derive, e.g. {{{col}_bin: "{rule}"}} '
                f"({why}; choose the threshold that means something for this outcome), use family: ordinal for ordered categories, "
                "or family: gaussian.",
                where=where,
            )
    elif fam in ("poisson", "negativebinomial"):
        bad = (y < 0) | ~integer
        if bad.any():
            what = "negative" if (y < 0).any() else "not a whole number"
            raise DataError(
                f"family {fam} needs counts (whole numbers 0, 1, 2, …), but '{col}' takes the value {first(bad)}, which is {what} ({int(bad.sum()):,} rows). "
                "Use family: gaussian for a continuous outcome, or recode the outcome with data.derive.",
                where=where,
            )
    elif fam == "binomial":
        assert trials is not None
        badt = ~np.isclose(trials, np.round(trials)) | (trials < 1)
        if badt.any():
            raise DataError(
                f"the trials column '{spec.trials}' must hold whole numbers of at least 1, but takes the value {trials[badt][0]:g} ({int(badt.sum()):,} rows). "
                "Drop those rows with data.filter or fix the column.",
                where="trials",
            )
        bad = (y < 0) | ~integer | (y > trials)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"family binomial needs successes between 0 and the trials, but '{col}' is {y[i]:g} with {trials[i]:g} trials in {int(bad.sum()):,} rows. "
                f"Check that outcome is the count of successes and trials ('{spec.trials}') the count of attempts.",
                where="outcome",
            )
    elif fam == "ordinal":
        cats = np.unique(y)
        if not integer.all():
            raise DataError(
                f"family ordinal needs ordered categories coded as whole numbers (e.g. 1-5), but '{col}' takes the value {first(~integer)}. "
                "Recode it with data.derive or use family: gaussian.",
                where=where,
            )
        if len(cats) < 3:
            raise DataError(
                f"family ordinal needs at least three ordered categories, but '{col}' takes only {len(cats)} values ({', '.join(f'{c:g}' for c in cats)}). "
                "Use family: bernoulli for a 0/1 outcome.",
                where=where,
            )
        if len(cats) > 15:
            raise DataError(
                f"family ordinal models each category's threshold, but '{col}' has {len(cats)} distinct values; "
                "that is a count or a continuous scale. Use family: gaussian, poisson or negativebinomial, or bin the outcome with data.bins.",
                where=where,
            )
        return tuple(float(c) for c in cats)
    return ()


def _treatment_rule(col: str, values: list) -> str:
    """A binary treatment derived from a many-valued one: an amount with 0 for the control arm is
    treated when above 0; other numbers, above the smallest (the control arm's usual code); text,
    equal to one of its values."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        low = min(numbers)
        return f"{col} > {low:g}"
    text = sorted(str(v) for v in values)
    return f"{col} == '{shorten(text[-1], 30)}'"


def _code_treatment(spec: Spec, dataset: Dataset, raw: pd.Series, values: list) -> np.ndarray:
    shown = ", ".join(
        f"{v!r}" + (f" ({_level_label(dataset, spec.treatment, v)})" if code_key(v) in dataset.value_labels.get(spec.treatment, {}) else "")
        for v in sorted(values, key=str)[:6]
    )
    if len(values) > 2:
        raise DataError(
            f"the treatment '{spec.treatment}' has {len(values)} distinct values ({shown}{', …' if len(values) > 6 else ''}); hetreport needs a binary treatment. "
            f'Derive one, e.g. data.derive: {{treated: "{_treatment_rule(spec.treatment, values)}"}}, and use it as treatment.',
            where="treatment",
        )
    if len(values) < 2:
        raise DataError(
            f"the treatment '{spec.treatment}' takes only the value {shown} in the analysed rows; there is no control group to compare with.",
            where="treatment",
        )
    keys = np.array(map_codes(raw, code_key), dtype=object)
    if spec.treated_value is not None:
        tv = code_key(spec.treated_value)
        if tv not in {code_key(v) for v in values}:
            raise SpecError(
                f"treated_value {spec.treated_value!r} is not a value of '{spec.treatment}' (its values are {shown}).",
                where="treated_value",
            )
        return (keys == tv).astype(float)
    if {code_key(v) for v in values} == {"0", "1"}:
        return (keys == "1").astype(float)
    raise SpecError(
        f"the treatment '{spec.treatment}' has values {shown}, not 0/1; "
        f"say which value is the treatment with treated_value, e.g. treated_value: {sorted(values, key=str)[-1]!r}.",
        where="treated_value",
    )
