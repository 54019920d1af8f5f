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
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import yaml

from .effects import validate, write_effects
from .errors import HetreportError
from .spec import Spec, parse_spec


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
    diagnostics: dict
    hierarchical: dict  # formulas, priors used, correlated, backend, terms, timings
    ols: dict  # formulas and SE details per frequentist method
    y: np.ndarray
    t: np.ndarray
    y_rep: np.ndarray
    n: int
    n_start: int
    notes: tuple[str, ...] = ()
    #: settings and formulas of the approaches that are neither frequentist nor the hierarchical model, by method name
    methods: dict = field(default_factory=dict)
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
        (d / "diagnostics.json").write_text(json.dumps({a.name: a.diagnostics for a in self.analyses}, indent=2, default=_json_default))
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
                "hierarchical": a.hierarchical,
                "ols": a.ols,
                "methods": a.methods,
                "n": a.n,
                "n_start": a.n_start,
                "notes": list(a.notes),
                "accounting": a.accounting.to_dict(orient="records"),
            }
            (d / f"analysis_{a.name}.json").write_text(json.dumps(meta, indent=2, default=_json_default))
            np.savez_compressed(
                d / f"ppc_{a.name}.npz", y=a.y, t=a.t, y_rep=a.y_rep, **({} if a.ppc_rows is None else {"ppc_rows": a.ppc_rows})
            )
        from dataclasses import asdict

        summary = {a.name: asdict(self.facts_of(a.name)) for a in self.analyses}  # the headline numbers, machine-readable
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
                diagnostics=diagnostics[a.name],
                hierarchical=meta["hierarchical"],
                ols=meta["ols"],
                y=ppc["y"],
                t=ppc["t"],
                y_rep=ppc["y_rep"],
                n=meta["n"],
                n_start=meta["n_start"],
                notes=tuple(meta["notes"]),
                methods=meta["methods"] if "methods" in meta else {},  # folders written before the method registry
                ppc_rows=ppc["ppc_rows"] if "ppc_rows" in ppc.files else None,
            )
        )
    from .facts import compute_facts, facts_from_dict

    saved = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else {}
    facts = {}
    for a in analyses:  # the facts saved by fit; a folder from an earlier version has other fields: computed again
        facts[a.name] = facts_from_dict(saved.get(a.name)) or compute_facts(a, effects)
    return StudyResults(spec=spec, effects=effects, analyses=tuple(analyses), manifest=manifest, facts=facts)
