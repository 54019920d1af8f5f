"""Read the data file, apply ``derive``/``filter``/``bins``, and prepare each analysis.

Codes, not value labels, are what hetreport computes with: Stata and SPSS files
are read with their numeric codes and the value labels are kept aside for
display. Missing values stay missing through ``derive`` (see ``expr.py``) and
are removed listwise per analysis, with a count for every variable.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, HetreportWarning, SpecError, suggest
from .expr import compile_expr
from .spec import Analysis, Spec

#: a numeric modifier with more distinct values than this needs a binning rule
MAX_MODIFIER_LEVELS = 20

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".dta": "dta", ".sav": "sav", ".zsav": "sav", ".xlsx": "xlsx"}


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


def read_table(path: Path, fmt: str | None = None, sheet=None) -> tuple[pd.DataFrame, dict, dict, str]:
    """Read a data file as codes. Returns (frame, variable labels, value labels, format)."""
    if not path.is_file():
        raise DataError(f"the data file '{path}' does not exist. data.path is read relative to the spec file's folder; check the name and location.", where="data.path")
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of '{path.name}' from its extension. Set data.format to one of csv, tsv, parquet, dta, sav, xlsx.", where="data.format")
    var_labels: dict = {}
    val_labels: dict = {}
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if fmt == "csv" else "\t", low_memory=False)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        elif fmt == "xlsx":
            frame = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0)
        elif fmt in ("dta", "sav"):
            import pyreadstat

            reader = pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav
            frame, meta = reader(str(path), apply_value_formats=False)
            var_labels = {k: v for k, v in (meta.column_names_to_labels or {}).items() if v}
            val_labels = dict(meta.variable_value_labels or {})
        else:  # pragma: no cover - guarded by the spec's Literal
            raise DataError(f"unsupported format '{fmt}'.", where="data.format")
    except DataError:
        raise
    except Exception as exc:  # a broken file: say which and why, no traceback
        raise DataError(f"could not read '{path.name}' as {fmt}: {type(exc).__name__}: {str(exc)[:200]}. Check that the file is a valid {fmt} file or set data.format.", where="data.path") from None
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
            numbers = pd.to_numeric(nonmissing, errors="coerce") if len(nonmissing) and all(
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in nonmissing) else None
            frame[col] = numbers.reindex(values.index).astype("float64") if numbers is not None else values
    frame.columns = [str(c) for c in frame.columns]
    val_labels = {col: {code_key(k): str(v) for k, v in labels.items()} for col, labels in val_labels.items()}
    return frame.reset_index(drop=True), var_labels, val_labels, fmt


def load_data(spec: Spec) -> Dataset:
    """Read the spec's data file and apply derive, filter and bins (in that order)."""
    path = spec.data_path
    frame, var_labels, val_labels, fmt = read_table(path, spec.data.format, spec.data.sheet)
    n_read = len(frame)
    if n_read == 0:
        raise DataError(f"'{path.name}' has no rows.", where="data.path")
    notes: list[str] = []
    # derive, in the order written; each may use the ones before it
    for name, text in spec.data.derive.items():
        where = f"data.derive.{name}"
        expr = compile_expr(text, where=where, columns=frame.columns)
        frame[name] = expr.evaluate(frame)
        if name in val_labels:  # a recode of a labelled column no longer carries its labels
            val_labels.pop(name)
    n_filtered_out = n_filter_missing = 0
    if spec.data.filter:
        keep, n_filtered_out, n_filter_missing = _apply_filter(frame, spec.data.filter, "data.filter")
        frame = frame.loc[keep].reset_index(drop=True)
        if n_filter_missing:
            notes.append(f"data.filter could not be evaluated for {n_filter_missing:,} rows (missing values in {', '.join(sorted(compile_expr(spec.data.filter, where='data.filter').names))}); they were dropped.")
        if frame.empty:
            raise DataError(f"the filter '{spec.data.filter}' keeps no rows of {n_read:,}. Check the filter's values against the data's codes.", where="data.filter")
    for col, rule in spec.data.bins.items():
        where = f"data.bins.{col}"
        if col not in frame.columns:
            raise SpecError(f"there is no column '{col}' to bin.{suggest(col, frame.columns)}", where=where)
        frame[col], labels = _bin(frame[col], rule, where)
        val_labels[col] = labels
    # spec labels extend and override the file's value labels
    for col, mapping in spec.labels.levels.items():
        val_labels.setdefault(col, {}).update({code_key(k): str(v) for k, v in mapping.items()})
    return Dataset(frame=frame, path=path, sha256=_sha256(path), format=fmt, n_read=n_read,
                   n_filtered_out=n_filtered_out, n_filter_missing=n_filter_missing,
                   variable_labels=var_labels, value_labels=val_labels, notes=tuple(notes))


def _apply_filter(frame: pd.DataFrame, text: str, where: str) -> tuple[np.ndarray, int, int]:
    value = compile_expr(text, where=where, columns=frame.columns).evaluate(frame)
    numeric = pd.to_numeric(value, errors="coerce")
    if numeric.notna().sum() < value.notna().sum():
        raise SpecError(f"the filter '{text}' does not give true/false for every row; write a comparison such as \"gender != 8\".", where=where)
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
            raise DataError(f"the column has too few distinct values for {rule.quantiles} quantile bins (only {len(edges) - 1} distinct edges); use fewer quantiles or explicit breaks.", where=where)
    else:
        edges = np.asarray(rule.breaks, dtype=float)
    codes = pd.cut(x, edges, include_lowest=True, labels=False)
    binned = (codes + 1).astype("float64")  # 1..k, missing stays missing
    outside = int((x.notna() & codes.isna()).sum())
    if outside:
        warnings.warn(f"{where}: {outside:,} values fall outside the breaks {list(edges)} and become missing.", HetreportWarning, stacklevel=3)
    names = rule.labels or [f"{_num(lo)} to {_num(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
    return binned, {str(i + 1): n for i, n in enumerate(names)}


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
    return spec.labels.variables.get(col) or dataset.variable_labels.get(col) or col


def _level_label(dataset: Dataset, col: str, code) -> str:
    return dataset.value_labels.get(col, {}).get(code_key(code), str(canonical_code(code)))


def _check_column(frame: pd.DataFrame, col: str, where: str) -> None:
    if col not in frame.columns:
        raise SpecError(f"the data has no column '{col}'.{suggest(col, frame.columns)} Columns include: {', '.join(list(frame.columns)[:12])}{', …' if frame.shape[1] > 12 else ''}. Define it under data.derive or fix the name.", where=where)


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
            raise DataError(f"the {role} column '{col}' has only missing values in the {len(sub):,} rows this analysis starts from. Check data.derive and data.filter, or the file's missing-value codes.", where=where)
    # listwise deletion with sequential attribution
    rows = []
    alive = np.ones(len(sub), dtype=bool)
    for col, role, _ in roles:
        miss = sub[col].isna().to_numpy()
        rows.append({"variable": col, "label": _var_label(spec, dataset, col), "role": role,
                     "missing": int(miss.sum()), "removed": int((miss & alive).sum())})
        alive &= ~miss
    accounting = pd.DataFrame(rows)
    sub = sub.loc[alive].reset_index(drop=True)
    if len(sub) == 0:
        worst = accounting.sort_values("removed", ascending=False).iloc[0]
        raise DataError(f"no rows are left after removing missing values; '{worst['variable']}' alone removes {worst['removed']:,}. Check its coding or drop it from the analysis.", where=f"analyses[{ai}]")
    # treatment -> 0/1
    t_raw = sub[spec.treatment]
    t_vals = [canonical_code(v) for v in pd.unique(t_raw)]
    t = _code_treatment(spec, dataset, t_raw, t_vals)
    # outcome
    y = pd.to_numeric(sub[outcome], errors="coerce")
    if y.isna().any():
        example = sub[outcome][y.isna()].iloc[0]
        raise DataError(f"the outcome '{outcome}' is not numeric (e.g. the value {example!r}). The outcome must be a number (a code); if the file stores label text, recode it with data.derive, e.g. map({outcome}, {{'Agree': 1, 'Disagree': 0}}).", where=o_where)
    if y.nunique() < 2:
        raise DataError(f"the outcome '{outcome}' takes a single value ({y.iloc[0]!r}) in this analysis; there is no variation to explain.", where=o_where)
    trials = pd.to_numeric(sub[spec.trials], errors="coerce").to_numpy(dtype=float) if spec.trials and family == "binomial" else None
    categories = _check_family(spec, family, outcome, y.to_numpy(dtype=float), trials, where=f"analyses[{ai}].family" if analysis.family else "family")
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
                raise DataError(f"the modifier '{m}' {why}, so it looks continuous and would make one group per value. Add a binning rule, e.g. data.bins: {{{m}: {{quantiles: 4}}}} or {{{m}: {{breaks: [..]}}}}.", where=where)
        if len(levels) < 2:
            raise DataError(f"the modifier '{m}' takes a single value ({levels[0]!r}) in this analysis, so it defines no contrast; drop it from modifiers.", where=where)
        sub[m] = [canonical_code(v) for v in col]
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
            warnings.warn(f"analyses[{ai}].controls[{i}]: '{c}' is constant in this analysis and is left out.", HetreportWarning, stacklevel=2)
            continue
        categorical = (not numeric) or c in analysis.categorical or (labelled and len(levels) > 2)
        if categorical:
            codes = [canonical_code(v) for v in col]
            for lev in levels[1:]:
                blocks.append(np.array([code_key(v) == code_key(lev) for v in codes], dtype=float))
                columns.append(f"{c}[{lev}]")
                display.append(f"{_var_label(spec, dataset, c)}: {_level_label(dataset, c, lev)}")
        else:
            blocks.append(col.to_numpy(dtype=float))
            columns.append(c)
            display.append(_var_label(spec, dataset, c))
    X = np.column_stack(blocks) if blocks else np.zeros((len(sub), 0))
    cluster = sub[spec.ols.cluster].map(code_key).to_numpy() if spec.ols.cluster else None
    truth = sub[spec.report.truth].to_numpy(dtype=float) if spec.report.truth else None
    sub = sub.assign(**{spec.treatment: t})
    return AnalysisData(
        name=analysis.name, title=analysis.title or analysis.name, frame=sub, y=y.to_numpy(dtype=float), t=t,
        outcome=Variable(outcome, _var_label(spec, dataset, outcome)),
        treatment=Variable(spec.treatment, _var_label(spec, dataset, spec.treatment)),
        modifiers=tuple(mods), controls=tuple(analysis.controls), control_matrix=X,
        control_columns=tuple(columns), control_display=tuple(display), cluster=cluster, truth=truth,
        accounting=accounting, n_start=n_start, notes=tuple(notes + list(dataset.notes)),
        family=family, trials=trials, categories=categories,
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
            vals = ", ".join(f"{v:g}" for v in np.unique(y)[:8])
            raise DataError(f"family bernoulli needs a 0/1 outcome, but '{col}' takes the value {first(bad)} ({int(bad.sum()):,} rows; its values are {vals}). "
                            f"Derive a 0/1 outcome with data.derive, e.g. {{{col}_bin: \"{col} >= 4\"}}, use family: ordinal for ordered categories, or family: gaussian.", where=where)
    elif fam in ("poisson", "negativebinomial"):
        bad = (y < 0) | ~integer
        if bad.any():
            what = "negative" if (y < 0).any() else "not a whole number"
            raise DataError(f"family {fam} needs counts (whole numbers 0, 1, 2, …), but '{col}' takes the value {first(bad)}, which is {what} ({int(bad.sum()):,} rows). "
                            "Use family: gaussian for a continuous outcome, or recode the outcome with data.derive.", where=where)
    elif fam == "binomial":
        assert trials is not None
        badt = ~np.isclose(trials, np.round(trials)) | (trials < 1)
        if badt.any():
            raise DataError(f"the trials column '{spec.trials}' must hold whole numbers of at least 1, but takes the value {trials[badt][0]:g} ({int(badt.sum()):,} rows). "
                            "Drop those rows with data.filter or fix the column.", where="trials")
        bad = (y < 0) | ~integer | (y > trials)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"family binomial needs successes between 0 and the trials, but '{col}' is {y[i]:g} with {trials[i]:g} trials in {int(bad.sum()):,} rows. "
                            f"Check that outcome is the count of successes and trials ('{spec.trials}') the count of attempts.", where="outcome")
    elif fam == "ordinal":
        cats = np.unique(y)
        if not integer.all():
            raise DataError(f"family ordinal needs ordered categories coded as whole numbers (e.g. 1-5), but '{col}' takes the value {first(~integer)}. "
                            "Recode it with data.derive or use family: gaussian.", where=where)
        if len(cats) < 3:
            raise DataError(f"family ordinal needs at least three ordered categories, but '{col}' takes only {len(cats)} values ({', '.join(f'{c:g}' for c in cats)}). Use family: bernoulli for a 0/1 outcome.", where=where)
        if len(cats) > 15:
            raise DataError(f"family ordinal models each category's threshold, but '{col}' has {len(cats)} distinct values; that is a count or a continuous scale. Use family: gaussian, poisson or negativebinomial, or bin the outcome with data.bins.", where=where)
        return tuple(float(c) for c in cats)
    return ()


def _code_treatment(spec: Spec, dataset: Dataset, raw: pd.Series, values: list) -> np.ndarray:
    shown = ", ".join(f"{v!r}" + (f" ({_level_label(dataset, spec.treatment, v)})" if code_key(v) in dataset.value_labels.get(spec.treatment, {}) else "") for v in sorted(values, key=str)[:6])
    if len(values) > 2:
        raise DataError(f"the treatment '{spec.treatment}' has {len(values)} distinct values ({shown}{', …' if len(values) > 6 else ''}); hetreport needs a binary treatment. Derive one, e.g. data.derive: {{treated: \"{spec.treatment} == {values[-1]!r}\"}}, and use it as treatment.", where="treatment")
    if len(values) < 2:
        raise DataError(f"the treatment '{spec.treatment}' takes only the value {shown} in the analysed rows; there is no control group to compare with.", where="treatment")
    keys = [code_key(v) for v in raw]
    if spec.treated_value is not None:
        tv = code_key(spec.treated_value)
        if tv not in {code_key(v) for v in values}:
            raise SpecError(f"treated_value {spec.treated_value!r} is not a value of '{spec.treatment}' (its values are {shown}).", where="treated_value")
        return np.array([k == tv for k in keys], dtype=float)
    if {code_key(v) for v in values} == {"0", "1"}:
        return np.array([k == "1" for k in keys], dtype=float)
    raise SpecError(f"the treatment '{spec.treatment}' has values {shown}, not 0/1; say which value is the treatment with treated_value, e.g. treated_value: {sorted(values, key=str)[-1]!r}.", where="treated_value")
