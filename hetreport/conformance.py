"""Conformance: is this analysis the pre-registered one?

``hetreport run SPEC --preregistration DIR_OR_RECORD`` (or the spec key ``preregistration:``)
reads the registration record written by ``hetreport preregister`` (``registration.json``)
and compares the registered canonical spec with the analysis spec, key by key. The result is
stored in the results' ``manifest.json`` (``conformance``), so ``hetreport report DIR``
re-renders it, and the report's first page states either "Analysis as pre-registered
(record <hash12>, <date>)" or lists every deviation as a readable diff.

What is compared, and what is not:

- **Not compared**: ``design`` (the registration plans the data; the analysis has them),
  ``data.path``/``format``/``sheet`` (where the data are), ``preregistration`` itself.
  ``data.derive``/``filter``/``bins`` are compared when the registered spec has a ``data``
  block too; when it has only a design, the derivations are listed as unregistered, not as
  deviations, since a design has nothing to compare them with.
- **Cosmetic** (listed, never a deviation; they change no estimate): ``title``, ``subtitle``,
  ``labels`` (display names and level labels), each analysis's ``title``, and the whole
  ``report`` block (formats, facet, heat map, templates, author, units, the small-arm flag
  threshold ``min_arm`` and ``truth``).
- **Deviations**, with what they make exploratory: the outcome, treatment, treated value,
  family, trials, priors or a data filter/derivation -> every result; the OLS options -> the
  OLS results; an analysis's modifiers, controls, categorical controls, terms, correlation,
  slope predictors or filter -> that analysis in full; an analysis not registered -> that
  analysis in full; a registered analysis not run -> reported as missing; the sampler's
  settings -> listed (they change the Monte-Carlo error, not the estimand), nothing exploratory.

An unreadable, missing or altered record is an error, never "as pre-registered".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import SpecError
from .spec import Spec

RECORD = "registration.json"
COSMETIC_TOP = ("title", "subtitle", "labels", "report")
NOT_COMPARED = ("design", "preregistration")
ANALYSIS_KEYS = ("modifiers", "controls", "categorical", "terms", "correlated", "slope_predictors", "filter")
GLOBAL_KEYS = ("outcome", "treatment", "treated_value", "family", "trials")


def record_path(value: str | Path, base: Path | None = None) -> Path:
    p = Path(value).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    return p / RECORD if p.is_dir() else p


def load_record(value: str | Path, base: Path | None = None, where: str = "--preregistration") -> dict:
    """Read and verify a registration record (a folder written by `hetreport preregister`, or its registration.json)."""
    path = record_path(value, base)
    if not path.is_file():
        raise SpecError(
            f"the pre-registration record '{path}' does not exist. Give the folder written by `hetreport preregister` "
            f"(it holds {RECORD}) or the path of its {RECORD}; without a readable record the analysis cannot be "
            "called pre-registered.",
            where=where,
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(
            f"the pre-registration record '{path}' cannot be read as JSON ({type(exc).__name__}: {str(exc)[:120]}). "
            "Use the registration.json written by `hetreport preregister`, unchanged.",
            where=where,
        ) from None
    if not isinstance(record, dict) or not {"spec_hash", "spec", "created"} <= set(record):
        raise SpecError(
            f"'{path}' is not a hetreport registration record (it lacks spec_hash, spec or created). Use the "
            "registration.json written by `hetreport preregister`.",
            where=where,
        )
    text = json.dumps(record["spec"], sort_keys=True, separators=(",", ":"))
    if hashlib.sha256(text.encode()).hexdigest() != record["spec_hash"]:
        raise SpecError(
            f"the registered spec in '{path}' does not match its recorded hash {str(record['spec_hash'])[:12]}: the record "
            "was altered after registration. Use the original registration.json.",
            where=where,
        )
    record["_path"] = str(path)
    return record


# --------------------------------------------------------------------------- diff


def _show(v: Any) -> str:
    if v is None:
        return "default"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_show(x)}" for k, x in v.items()) + "}"
    return str(v)


def _list_diff(path: str, old: list, new: list) -> list[str]:
    out = []
    dropped = [x for x in old if x not in new]
    added = [x for x in new if x not in old]
    if dropped:
        out.append(f"{path}: dropped " + ", ".join(f"`{x}`" for x in dropped))
    if added:
        out.append(f"{path}: added " + ", ".join(f"`{x}`" for x in added))
    if not dropped and not added and old != new:
        out.append(f"{path}: order changed {_show(old)} → {_show(new)}")
    return out


def _value_diff(path: str, old, new) -> list[str]:
    if old == new:
        return []
    if isinstance(old, list) and isinstance(new, list):
        return _list_diff(path, old, new)
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += _value_diff(f"{path}.{k}", old.get(k), new.get(k))
        return out
    return [f"{path}: {_show(old)} → {_show(new)}"]


def compare(registered: dict, current: dict) -> dict:
    """Deviations of ``current`` (canonical spec) from ``registered``: a list of
    {"text", "scope", "analysis"} plus cosmetic differences and per-analysis status."""
    deviations: list[dict] = []
    cosmetic: list[str] = []
    unregistered: list[str] = []

    def add(texts, scope, analysis=None):
        for t in texts:
            deviations.append({"text": t, "scope": scope, "analysis": analysis})

    for key in GLOBAL_KEYS:
        add(_value_diff(key, registered.get(key), current.get(key)), "all")
    add(_value_diff("priors", registered.get("priors", {}), current.get("priors", {})), "all")
    add(_value_diff("ols", registered.get("ols", {}), current.get("ols", {})), "ols")
    add(_value_diff("sampler", registered.get("sampler", {}), current.get("sampler", {})), "none")
    rdata, cdata = registered.get("data"), current.get("data")
    for key in ("derive", "filter", "bins"):
        new = (cdata or {}).get(key)
        if rdata is not None:
            old = rdata.get(key)
            if old != new:
                add([f"data.{key} changed: {_show(old)} → {_show(new)}"], "all")
        elif new:
            unregistered.append(
                f"data.{key}: {_show(new)} (the registration has a design, not a data block, so there is nothing to compare it with)"
            )
    reg_a = {a["name"]: a for a in registered.get("analyses", [])}
    cur_a = {a["name"]: a for a in current.get("analyses", [])}
    for name, a in cur_a.items():
        if name not in reg_a:
            add([f"analyses: added `{name}`, which was not registered"], "analysis", name)
            continue
        r = reg_a[name]
        for key in ANALYSIS_KEYS:
            add(_value_diff(f"analyses[{name}].{key}", r.get(key), a.get(key)), "analysis", name)
        if r.get("title") != a.get("title"):
            cosmetic.append(f"analyses[{name}].title")
    for name in reg_a:
        if name not in cur_a:
            add([f"analyses: dropped `{name}`: registered but not run"], "missing", name)
    for key in COSMETIC_TOP:
        if registered.get(key) != current.get(key):
            cosmetic.append(key)
    return {"deviations": deviations, "cosmetic": cosmetic, "unregistered": unregistered}


def check(spec: Spec, value: str | Path | None = None) -> dict | None:
    """The conformance of ``spec`` with its registration (``value`` overrides the spec's
    ``preregistration`` key); None when neither names one. Raises SpecError for a bad record."""
    if value is not None:
        record = load_record(value, None, "--preregistration")
    elif spec.preregistration:
        record = load_record(spec.preregistration, spec.base_dir, "preregistration")
    else:
        return None
    diff = compare(record["spec"], spec.canonical())
    devs = diff["deviations"]
    names = [a.name for a in spec.analyses]
    status = {}
    for n in names:
        if any(d["scope"] == "all" for d in devs) or any(d["scope"] == "analysis" and d["analysis"] == n for d in devs):
            status[n] = "exploratory"
        elif any(d["scope"] == "ols" for d in devs):
            status[n] = "OLS results exploratory"
        else:
            status[n] = "as registered"
    return {
        "record": record["_path"],
        "spec_hash": record["spec_hash"],
        "hash12": record["spec_hash"][:12],
        "registered": str(record["created"]),
        "registered_title": record.get("title"),
        "as_registered": not devs,
        "deviations": devs,
        "cosmetic": diff["cosmetic"],
        "unregistered": diff["unregistered"],
        "analysis_status": status,
        "missing": [d["analysis"] for d in devs if d["scope"] == "missing"],
    }


def exploratory_lines(conf: dict, titles: dict[str, str]) -> list[str]:
    """Plain sentences saying which results the deviations make exploratory."""
    lines = []
    devs = conf["deviations"]
    if any(d["scope"] == "all" for d in devs):
        which = "; ".join(d["text"] for d in devs if d["scope"] == "all")
        lines.append(f"Every result in this report is exploratory, because a deviation applies to all analyses ({which}).")
    for name, _st in conf["analysis_status"].items():
        own = [d["text"] for d in devs if d["scope"] == "analysis" and d["analysis"] == name]
        if own:
            lines.append(f"{titles.get(name, name)}: exploratory in full ({'; '.join(own)}).")
    if any(d["scope"] == "ols" for d in devs) and not any(d["scope"] == "all" for d in devs):
        lines.append(
            "The OLS results are exploratory (the OLS options differ from the registered ones); the hierarchical results are not affected."
        )
    for name in conf["missing"]:
        lines.append(f"The registered analysis `{name}` was not run; its registered results are missing from this report.")
    if any(d["scope"] == "none" for d in devs):
        lines.append(
            "The sampler settings differ from the registered ones: this changes the Monte-Carlo error of the posterior summaries, "
            "not what is estimated, so no result becomes exploratory for that reason."
        )
    if not lines and not devs:
        lines.append("None: the analysis is the registered one.")
    return lines


def _markup(text: str):
    """A deviation as markdown: `quoted` names become code spans, everything else is escaped."""
    from markupsafe import Markup

    from .report.format import code_span, md

    parts = text.split("`")
    if len(parts) % 2 == 0:  # unbalanced: escape it all
        return md(text)
    return Markup("").join(md(p) if i % 2 == 0 else code_span(p) for i, p in enumerate(parts))


def report_context(conf: dict | None, titles: dict[str, str]) -> dict | None:
    """What the report's templates need (markup prepared here: escaped text, names as code)."""
    if not conf:
        return None
    return {
        "as_registered": conf["as_registered"],
        "hash12": conf["hash12"],
        "registered": conf["registered"][:10],
        "registered_full": conf["registered"],
        "spec_hash": conf["spec_hash"],
        "deviations": [_markup(d["text"]) for d in conf["deviations"]],
        "n_deviations": len(conf["deviations"]),
        "cosmetic": conf["cosmetic"],
        "unregistered": conf["unregistered"],
        "exploratory": [_markup(t) for t in exploratory_lines(conf, titles)],
    }


__all__ = ["check", "compare", "exploratory_lines", "load_record", "report_context"]
