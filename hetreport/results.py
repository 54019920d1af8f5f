"""Study results: what a fit produces, written to and read back from a folder.

The saved folder is the contract between fitting and reporting: ``hetreport report
DIR`` re-renders from it without refitting, so :class:`StudyResults` holds only what
the folder holds.

    effects.csv / effects.parquet   one row per analysis x method x group
    groups.csv                      the group table of every analysis
    diagnostics.json                sampler diagnostics per analysis
    summary.json                    headline numbers per analysis (average effect, sigma_theta,
                                    SD of all draws, variance shares, per-term SDs, extremes)
    posterior_<analysis>.nc         the hierarchical posterior (ArviZ netCDF)
    analysis_<analysis>.json        labels, formulas, priors used, row accounting
    ppc_<analysis>.npz              observed outcome and replicated draws
    spec.yml                        the spec as written
    manifest.json                   versions, hashes, seed, timings
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import yaml

from .effects import validate, write_effects
from .errors import HetreportError
from .spec import Spec, parse_spec

# --------------------------------------------------------------------------- records of a fit
# One schema each: ``to_dict`` is what analysis_<name>.json / diagnostics.json hold, ``from_dict``
# reads it back; keys that folders from earlier versions lack get the default documented on the field.


def _plain(value):
    """JSON-shaped copy of a record's value (tuples as lists, nested records as dicts)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class QuantityDiagnostics:
    """Convergence of one reported quantity (or scale parameter) over all its elements."""

    kind: str  # "reported" (group effects, average effect, sigma_theta) or "SD" (a scale parameter)
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_rhat": self.max_rhat, "min_ess_bulk": self.min_ess_bulk, "min_ess_tail": self.min_ess_tail}

    @classmethod
    def from_dict(cls, d: Mapping) -> QuantityDiagnostics:
        return cls(d["kind"], float(d["max_rhat"]), float(d["min_ess_bulk"]), float(d["min_ess_tail"]))


@dataclass(frozen=True)
class Thresholds:
    rhat_max: float
    ess_min: float
    divergences: int = 0

    def to_dict(self) -> dict:
        return {"rhat_max": self.rhat_max, "ess_min": self.ess_min, "divergences": self.divergences}

    @classmethod
    def from_dict(cls, d: Mapping) -> Thresholds:
        return cls(d["rhat_max"], d["ess_min"], d.get("divergences", 0))


@dataclass(frozen=True)
class Diagnostics:
    """The hierarchical fit's sampler diagnostics (``models.hierarchical.diagnose``), as diagnostics.json holds them."""

    quantities: Mapping[str, QuantityDiagnostics]
    divergences: int
    draws: int
    max_treedepth_hits: int
    min_bfmi: float  # NaN when the backend records no energy
    flags: tuple[str, ...]
    thresholds: Thresholds
    #: why the model was sampled a second time, the first fit's figures and the settings used (None: one fit).
    #: A Mapping: it nests two sampler settings records as the spec writes them, read only as a whole.
    retry: Mapping | None = None

    @property
    def max_rhat(self) -> float:
        return max(q.max_rhat for q in self.quantities.values())

    @property
    def min_ess(self) -> float:
        return min(min(q.min_ess_bulk, q.min_ess_tail) for q in self.quantities.values())

    def to_dict(self) -> dict:
        out = {
            "quantities": {k: q.to_dict() for k, q in self.quantities.items()},
            "divergences": self.divergences,
            "draws": self.draws,
            "max_treedepth_hits": self.max_treedepth_hits,
            "min_bfmi": self.min_bfmi,
            "flags": list(self.flags),
            "thresholds": self.thresholds.to_dict(),
        }
        if self.retry is not None:
            out["retry"] = _plain(self.retry)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> Diagnostics:
        """``d``: ``diagnose``'s dict or diagnostics.json's entry; ``retry`` missing means one fit."""
        return cls(
            quantities={k: QuantityDiagnostics.from_dict(q) for k, q in d["quantities"].items()},
            divergences=int(d["divergences"]),
            draws=int(d["draws"]),
            max_treedepth_hits=int(d["max_treedepth_hits"]),
            min_bfmi=float("nan") if d["min_bfmi"] is None else float(d["min_bfmi"]),
            flags=tuple(d["flags"]),
            thresholds=Thresholds.from_dict(d["thresholds"]),
            retry=d.get("retry"),
        )


@dataclass(frozen=True)
class HierarchicalInfo:
    """What the report says about the hierarchical model: formulas, priors used, structure, sampler, PSIS-LOO."""

    formula_bambi: str
    formula_brms: str
    priors: Mapping[str, str]  # parameter -> the prior used, after scaling to the outcome
    correlated: bool
    backend: str
    terms: tuple[str, ...]  # varying terms, "m1:m2" for a crossing
    mode: str  # the spec's ``terms:`` (full / nested / ...)
    #: per-phase seconds (build, sample, ...): open, the phases depend on the backend
    timings: Mapping[str, float]
    #: the sampler settings as the spec writes them (``Sampler.model_dump()``)
    sampler: Mapping
    slope_predictors: tuple[str, ...] = ()
    family: str = "gaussian"  # folders written before families were added are gaussian
    #: the likelihood's terms (rows summed over, units, whether units were aggregated into cells); open:
    #: its keys depend on the family; empty in folders written before it was recorded
    likelihood: Mapping = field(default_factory=dict)
    outcome_name: str | None = None  # the outcome's column; None in folders written before it was recorded
    categories: tuple = ()  # ordinal outcome's codes in order; () for other families
    category_labels: tuple[str, ...] = ()
    #: PSIS-LOO record per row (``modelcheck.loo_record``; open: pointwise arrays, fingerprint of the rows);
    #: None when not computed (a family without it, or folders written before it)
    loo: Mapping | None = None

    def to_dict(self) -> dict:
        return {
            "formula_bambi": self.formula_bambi,
            "formula_brms": self.formula_brms,
            "priors": dict(self.priors),
            "correlated": self.correlated,
            "backend": self.backend,
            "terms": list(self.terms),
            "mode": self.mode,
            "slope_predictors": list(self.slope_predictors),
            "family": self.family,
            "likelihood": _plain(self.likelihood),
            "outcome_name": self.outcome_name,
            "categories": list(self.categories),
            "category_labels": list(self.category_labels),
            "timings": dict(self.timings),
            "sampler": _plain(self.sampler),
            "loo": _plain(self.loo),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> HierarchicalInfo:
        return cls(
            formula_bambi=d["formula_bambi"],
            formula_brms=d["formula_brms"],
            priors=dict(d["priors"]),
            correlated=bool(d["correlated"]),
            backend=d["backend"],
            terms=tuple(d["terms"]),
            mode=d["mode"],
            timings=dict(d.get("timings") or {}),
            sampler=dict(d.get("sampler") or {}),
            slope_predictors=tuple(d.get("slope_predictors") or ()),
            family=d.get("family") or "gaussian",
            likelihood=dict(d.get("likelihood") or {}),
            outcome_name=d.get("outcome_name"),
            categories=tuple(d.get("categories") or ()),
            category_labels=tuple(d.get("category_labels") or ()),
            loo=d.get("loo"),
        )


@dataclass(frozen=True)
class MethodInfo:
    """One approach's formula and settings besides its effects rows (analysis_<name>.json's ``ols`` and
    ``methods`` entries)."""

    formula: str
    #: the standard errors' type (HC2, CR1, Welch, ...) of a frequentist approach; None for the others
    se_type: str | None = None
    #: covariance of the group effects (G x G, NaN rows for groups not estimated) when the fit gives one
    effect_vcov: tuple | None = None
    #: everything else the method reports about its fit: open, each registry method has its own
    #: (``Method.sentence`` reads them; rank and df for OLS, trees and draws for the forest, ...)
    details: Mapping = field(default_factory=dict)

    def settings(self) -> dict:
        """The method's own details with its SE type: what its registry entry describes."""
        return {**({"se_type": self.se_type} if self.se_type is not None else {}), **self.details}

    def to_dict(self) -> dict:
        out = {"formula": self.formula, **self.settings()}
        if self.effect_vcov is not None:
            out["effect_vcov"] = _plain(self.effect_vcov)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> MethodInfo:
        rest = {k: v for k, v in d.items() if k not in ("formula", "se_type", "effect_vcov")}
        vcov = d.get("effect_vcov")
        return cls(
            formula=d["formula"],
            se_type=d.get("se_type"),
            effect_vcov=None if vcov is None else tuple(tuple(r) for r in vcov),
            details=rest,
        )

    @classmethod
    def of_fit(cls, formula: str, details: Mapping) -> MethodInfo:
        """From a registry method's fit (``MethodFit.formula`` and ``.details``)."""
        return cls.from_dict({"formula": formula, **details})


@dataclass(frozen=True)
class Modifier:
    name: str
    label: str
    levels: tuple  # codes in display order
    level_labels: tuple[str, ...]


@dataclass(frozen=True)
class AnalysisResults:
    name: str
    title: str
    modifiers: tuple[Modifier, ...]
    outcome: str  # outcome label
    treatment: str  # treatment label
    controls: tuple[str, ...]  # control display names (one per model column)
    groups: pd.DataFrame
    accounting: pd.DataFrame
    posterior: az.InferenceData
    diagnostics: Diagnostics
    hierarchical: HierarchicalInfo
    ols: Mapping[str, MethodInfo]  # formula and SE details per frequentist method, by method name
    y: np.ndarray
    t: np.ndarray
    y_rep: np.ndarray
    n: int
    n_start: int
    notes: tuple[str, ...] = ()
    #: settings and formulas of the approaches that are neither frequentist nor the hierarchical model, by method name
    methods: Mapping[str, MethodInfo] = field(default_factory=dict)
    #: the rows ``y_rep`` replicates (a seeded subset of a large study), None for all rows
    ppc_rows: np.ndarray | None = None

    @property
    def y_ppc(self) -> np.ndarray:
        """The observed outcome of the rows ``y_rep`` replicates."""
        return self.y if self.ppc_rows is None else self.y[self.ppc_rows]

    @property
    def modifier_names(self) -> list[str]:
        return [m.name for m in self.modifiers]

    def group_draws(self) -> np.ndarray:
        ge = self.posterior.posterior["group_effect"]
        return ge.stack(sample=("chain", "draw")).transpose("sample", "group").to_numpy()

    def draws(self, var: str) -> np.ndarray:
        return self.posterior.posterior[var].stack(sample=("chain", "draw")).to_numpy()


@dataclass(frozen=True)
class StudyResults:
    spec: Spec
    effects: pd.DataFrame
    analyses: tuple[AnalysisResults, ...]
    manifest: dict = field(default_factory=dict)
    #: each analysis's :class:`hetreport.facts.Facts`, by name: computed once in ``api.fit``, saved in
    #: summary.json and read back by :func:`load_results`
    facts: dict = field(default_factory=dict)

    def analysis(self, name: str) -> AnalysisResults:
        for a in self.analyses:
            if a.name == name:
                return a
        raise KeyError(name)

    def facts_of(self, name: str):
        """The analysis's facts as computed in ``fit`` (computed here only for results built without them)."""
        if name in self.facts:
            return self.facts[name]
        from .facts import compute_facts

        return compute_facts(self.analysis(name), self.effects)

    def save(self, directory: str | Path) -> Path:
        """Write every output into ``directory`` in one switch (see :mod:`hetreport.outdir`).

        ``directory`` must be new, empty or an earlier hetreport output holding only hetreport's
        files; it then holds exactly these results (an earlier report, which described earlier
        results, is not kept: render again). Inside a run's staging folder the files are written
        there directly and the run switches them in with its report."""
        from . import outdir

        directory = Path(directory)
        if outdir.is_stage(directory):
            self._write(directory)
            outdir.fault("results-written")
            return directory
        with outdir.transaction(directory) as stage:
            self._write(stage)
            outdir.fault("results-written")
        return directory

    def _write(self, d: Path) -> None:
        write_effects(self.effects, d)
        from .questions import write_questions  # contrasts.csv, targeting.csv (when the spec asks)

        write_questions(self, d)
        pd.concat([a.groups.assign(analysis=a.name) for a in self.analyses], ignore_index=True).pipe(
            lambda t: t[["analysis", *[c for c in t.columns if c != "analysis"]]]
        ).to_csv(d / "groups.csv", index=False)
        (d / "diagnostics.json").write_text(
            json.dumps({a.name: a.diagnostics.to_dict() for a in self.analyses}, indent=2, default=_json_default)
        )
        for a in self.analyses:
            a.posterior.to_netcdf(str(d / f"posterior_{a.name}.nc"), engine="h5netcdf")
            meta = {
                "name": a.name,
                "title": a.title,
                "outcome": a.outcome,
                "treatment": a.treatment,
                "controls": list(a.controls),
                "modifiers": [
                    {"name": m.name, "label": m.label, "levels": list(m.levels), "level_labels": list(m.level_labels)} for m in a.modifiers
                ],
                "hierarchical": a.hierarchical.to_dict(),
                "ols": {k: m.to_dict() for k, m in a.ols.items()},
                "methods": {k: m.to_dict() for k, m in a.methods.items()},
                "n": a.n,
                "n_start": a.n_start,
                "notes": list(a.notes),
                "accounting": a.accounting.to_dict(orient="records"),
            }
            (d / f"analysis_{a.name}.json").write_text(json.dumps(meta, indent=2, default=_json_default))
            np.savez_compressed(
                d / f"ppc_{a.name}.npz", y=a.y, t=a.t, y_rep=a.y_rep, **({} if a.ppc_rows is None else {"ppc_rows": a.ppc_rows})
            )
        from .facts import facts_to_dict

        summary = {a.name: facts_to_dict(self.facts_of(a.name)) for a in self.analyses}  # the headline numbers, machine-readable
        (d / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
        (d / "spec.yml").write_text(self.spec.source_text or yaml.safe_dump(self.spec.canonical(), sort_keys=False))
        (d / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=_json_default))


def _json_default(o):
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def load_results(directory: str | Path) -> StudyResults:
    """Read a folder written by :meth:`StudyResults.save`."""
    d = Path(directory)
    if not (d / "manifest.json").is_file() or not (d / "effects.parquet").is_file():
        raise HetreportError(
            f"'{d}' is not a hetreport results folder (no manifest.json / effects.parquet). Run `hetreport fit SPEC --out {d}` first."
        )
    manifest = json.loads((d / "manifest.json").read_text())
    spec_text = (d / "spec.yml").read_text()
    spec = parse_spec(yaml.safe_load(spec_text), base_dir=manifest.get("spec_dir", "."), source="spec.yml", source_text=spec_text)
    effects = validate(pd.read_csv(d / "effects.csv"), where=str(d / "effects.csv"))
    diagnostics = json.loads((d / "diagnostics.json").read_text())
    groups_all = pd.read_csv(d / "groups.csv")
    analyses = []
    for a in spec.analyses:
        meta = json.loads((d / f"analysis_{a.name}.json").read_text())
        ppc = np.load(d / f"ppc_{a.name}.npz")
        post = az.from_netcdf(str(d / f"posterior_{a.name}.nc"), engine="h5netcdf")
        post.posterior.load()
        groups = groups_all[groups_all["analysis"] == a.name].drop(columns="analysis").reset_index(drop=True)
        # other analyses' modifier columns are empty here; an empty flag is "" not missing
        keep = [c for c in groups.columns if c in ("flag", "group_label") or groups[c].notna().any()]
        groups = groups[keep].assign(flag=groups["flag"].astype(object).fillna("").astype(str))  # all-empty reads as float
        analyses.append(
            AnalysisResults(
                name=a.name,
                title=meta["title"],
                modifiers=tuple(Modifier(m["name"], m["label"], tuple(m["levels"]), tuple(m["level_labels"])) for m in meta["modifiers"]),
                outcome=meta["outcome"],
                treatment=meta["treatment"],
                controls=tuple(meta["controls"]),
                groups=groups,
                accounting=pd.DataFrame(meta["accounting"]),
                posterior=post,
                diagnostics=Diagnostics.from_dict(diagnostics[a.name]),
                hierarchical=HierarchicalInfo.from_dict(meta["hierarchical"]),
                ols={k: MethodInfo.from_dict(m) for k, m in meta["ols"].items()},
                y=ppc["y"],
                t=ppc["t"],
                y_rep=ppc["y_rep"],
                n=meta["n"],
                n_start=meta["n_start"],
                notes=tuple(meta["notes"]),
                # folders written before the method registry have no "methods"
                methods={k: MethodInfo.from_dict(m) for k, m in meta.get("methods", {}).items()},
                ppc_rows=ppc["ppc_rows"] if "ppc_rows" in ppc.files else None,
            )
        )
    from .facts import compute_facts, facts_from_dict

    saved = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else {}
    facts = {}
    for a in analyses:  # the facts saved by fit; a folder from an earlier version has other fields: computed again
        facts[a.name] = facts_from_dict(saved.get(a.name)) or compute_facts(a, effects)
    return StudyResults(spec=spec, effects=effects, analyses=tuple(analyses), manifest=manifest, facts=facts)
