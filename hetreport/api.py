"""The pipeline as functions: spec -> data -> groups -> fits -> effects -> results.

Imports are lazy: the spec is checked and the data read (``check.prepare``) before the model stack
(PyMC, ArviZ, bambi, statsmodels, plotting) is loaded, so a spec or data error prints within a second."""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .spec import Spec, load_spec
from .versions import PACKAGES, package_versions  # noqa: F401  (re-exported: part of the API)

if TYPE_CHECKING:
    import numpy as np

    from .check import PreparedStudy
    from .results import StudyResults

#: the posterior predictive check draws replications for at most this many rows (a seeded random subset
#: beyond it): the figure's densities need no more, and 50 draws of every row of a million-row study do not
PPC_MAX_ROWS = 20_000


def ppc_row_subset(n: int, seed: int) -> np.ndarray | None:
    """The rows the posterior predictive check replicates: None (all) up to PPC_MAX_ROWS, else that many
    rows drawn at random without replacement (seeded by the sampler seed), in row order."""
    import numpy as np

    if n <= PPC_MAX_ROWS:
        return None
    return np.sort(np.random.default_rng([seed, n]).choice(n, PPC_MAX_ROWS, replace=False))


def _as_spec(spec: Spec | str | Path) -> Spec:
    return spec if isinstance(spec, Spec) else load_spec(spec)


def compiled_for() -> str:
    """The CPU the sampler's compiled code (numba, through LLVM) targets: draws are bit-identical for the same
    spec, data, seed and package versions on this CPU type; another one may round differently in the last bit,
    which MCMC amplifies to differences of Monte-Carlo size."""
    try:
        import llvmlite.binding as llvm
        from numba.core import config

        return str(config.CPU_NAME or llvm.get_host_cpu_name())
    except Exception:  # numba/llvmlite missing or changed: the manifest still records the platform
        return "unknown"


def fit(spec: Spec | str | Path, *, progress: bool = False, log=None, preregistration: str | Path | None = None) -> StudyResults:
    """Fit every analysis of a study spec with every approach; returns typed results.

    ``preregistration`` (or the spec's ``preregistration:`` key): a pre-registration appendix
    folder or its registration.json; the conformance check is stored in the manifest."""
    from .check import prepare
    from .conformance import check as check_conformance

    spec = _as_spec(spec)
    conformance = check_conformance(spec, preregistration)  # a bad record stops here, before any fitting
    # every analysis's approaches (a missing optional dependency, a method that does not fit a family) before any fitting
    selections = {a.name: spec.methods_of(a) for a in spec.analyses}
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    # every analysis's data, groups and model size first: a data error or a model above the limits on
    # work stops here, before the model stack is imported or anything is fitted
    prepared = prepare(spec, log=say)
    dataset = prepared.dataset
    import pandas as pd

    from .effects import combine, method_rows
    from .methods import REFERENCE, REGISTRY, FitRequest
    from .modelcheck import loo_record
    from .models.hierarchical import posterior_predictive
    from .results import AnalysisResults, Diagnostics, HierarchicalInfo, MethodInfo, Modifier, StudyResults

    frames, analyses, timings = [], [], {}
    method_seconds: dict[tuple[str, str], float] = {}
    modifier_order: list[str] = []
    for p in prepared.analyses:
        t0 = time.perf_counter()
        analysis, adata, groups = p.analysis, p.data, p.groups
        say(f"analysis '{analysis.name}': {adata.n:,} rows, {groups.n_groups} groups")
        selection = selections[analysis.name]
        sampler = spec.sampler_of(analysis)
        request = FitRequest(
            se_type=spec.ols.se_type,
            priors=spec.priors_of(analysis),
            sampler=sampler,
            mode=analysis.terms,
            correlated=analysis.correlated,
            predictors=tuple(analysis.slope_predictors),
            seed=sampler.seed,
            progress=progress,
        )
        truth = None
        if adata.truth is not None:
            truth = pd.Series(adata.truth).groupby(groups.table["group"].to_numpy()[groups.index]).mean()
        mods = list(groups.modifiers)
        modifier_order += [m for m in mods if m not in modifier_order]
        fits: dict[str, object] = {}
        for method in selection.methods(adata.family):
            if method.name == REFERENCE:
                say(f"analysis '{analysis.name}': sampling the hierarchical model ({sampler.chains} chains x {sampler.draws} draws)")
            elif method.kind == "bayesian":
                say(f"analysis '{analysis.name}': fitting {method.text}")
            t_m = time.perf_counter()
            mfit = method.fit_function()(adata, groups, replace(request, options=selection.options.get(method.name)))
            fits[method.name] = mfit
            method_seconds[(analysis.name, method.name)] = round(time.perf_counter() - t_m, 2)
            frames.append(method_rows(analysis.name, method.name, groups.table, mods, mfit.table, truth))
        hfit = fits[REFERENCE].extra
        ppc_rows = ppc_row_subset(adata.n, sampler.seed)
        y_rep = posterior_predictive(hfit, adata, groups, n_draws=50, seed=sampler.seed, rows=ppc_rows)
        timings[analysis.name] = {
            **{k: round(v, 2) for k, v in hfit.timings.items()},
            **{f"{k}_s": method_seconds[(analysis.name, k)] for k in fits if REGISTRY[k].kind != "frequentist" and k != REFERENCE},
            "total_s": round(time.perf_counter() - t0, 2),
        }
        group_table = groups.table.drop(columns=[]).copy()
        analyses.append(
            AnalysisResults(
                name=analysis.name,
                title=adata.title,
                modifiers=tuple(Modifier(m.name, m.label, m.levels, m.level_labels) for m in adata.modifiers),
                outcome=adata.outcome.label,
                treatment=adata.treatment.label,
                controls=adata.control_display,
                groups=group_table,
                accounting=adata.accounting,
                posterior=hfit.idata,
                diagnostics=Diagnostics.from_dict(hfit.diagnostics),
                hierarchical=HierarchicalInfo(
                    formula_bambi=hfit.formula_bambi,
                    formula_brms=hfit.formula_brms,
                    priors=dict(hfit.priors),
                    correlated=hfit.correlated,
                    backend=hfit.backend,
                    terms=tuple(hfit.terms),
                    mode=analysis.terms,
                    slope_predictors=tuple(analysis.slope_predictors),
                    family=adata.family,
                    likelihood=hfit.likelihood,
                    outcome_name=adata.outcome.name,
                    categories=tuple(adata.categories),
                    category_labels=tuple(adata.category_labels),
                    timings=hfit.timings,
                    sampler=sampler.model_dump(),
                    loo=loo_record(hfit.idata, adata, groups),  # PSIS-LOO per row (gaussian, bernoulli)
                ),
                ols={k: MethodInfo.of_fit(f.formula, f.details) for k, f in fits.items() if REGISTRY[k].kind == "frequentist"},
                methods={
                    k: MethodInfo.of_fit(f.formula, f.details)
                    for k, f in fits.items()
                    if k != REFERENCE and REGISTRY[k].kind != "frequentist"
                },
                y=adata.y / adata.trials if adata.family == "binomial" else adata.y,
                t=adata.t,
                y_rep=y_rep,
                ppc_rows=ppc_rows,
                n=adata.n,
                n_start=adata.n_start,
                notes=adata.notes,
            )
        )
    effects = combine(frames, modifier_order)
    manifest = {
        "hetreport_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec_hash": spec.spec_hash(),
        "spec_dir": str(spec.base_dir),
        "data_file": dataset.path.name,
        "data_sha256": dataset.sha256,
        "data_format": dataset.format,
        "rows_read": dataset.n_read,
        "rows_after_filter": len(dataset.frame),
        "rows_filtered_out": dataset.n_filtered_out,
        "rows_filter_missing": dataset.n_filter_missing,
        "seed": spec.sampler.seed,
        "sampler": spec.sampler.model_dump(),
        "packages": package_versions(),
        "platform": platform.platform(),
        "compiled_for": compiled_for(),
        "timings": timings,
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    if conformance is not None:
        manifest["conformance"] = conformance
    from .facts import compute_facts  # once, here: saving, loading and the report carry them

    facts = {a.name: compute_facts(a, effects) for a in analyses}
    return StudyResults(spec=spec, effects=effects, analyses=tuple(analyses), manifest=manifest, facts=facts)


def check(spec: Spec | str | Path, *, log=None) -> PreparedStudy:
    """Validate the spec and the data and size every analysis's model, without fitting (``hetreport
    check``); ``check.summary(result)`` is the printed report. Imports nothing heavy."""
    from .check import check as _check

    return _check(_as_spec(spec), log=log)


def render(results: StudyResults, out: str | Path, *, formats=None, route: str = "auto", log=None):
    """Build the Quarto project in ``out/report`` and render it (Quarto, or pandoc + Typst)."""
    from .report import build_and_render

    return build_and_render(results, Path(out), formats=formats, route=route, log=log)


def run(
    spec: Spec | str | Path,
    out: str | Path,
    *,
    formats=None,
    route: str = "auto",
    progress: bool = False,
    log=None,
    preregistration: str | Path | None = None,
):
    """Fit, save the results into ``out`` and render the report there; returns (results, outcome).

    ``out`` is checked (new, empty or an earlier hetreport output) before fitting, and results and
    report are switched in together (see :mod:`hetreport.outdir`); if only the report fails, the
    results are switched in without one and the error is raised."""
    from . import outdir
    from .report import build_and_render

    with outdir.Output(out) as o:
        results = fit(spec, progress=progress, log=log, preregistration=preregistration)
        stage = o.stage()
        results.save(stage)
        try:
            outcome = build_and_render(results, stage, formats=formats, route=route, log=log)
        except Exception:
            o.commit(stage)
            raise
        o.commit(stage)
    final = Path(out) / "report"
    return results, replace(outcome, outputs={k: final / Path(v).name for k, v in outcome.outputs.items()})


def run_project(
    specs, out: str | Path, *, formats=None, route: str = "auto", scheduler: str | None = None, workers: int | None = None, log=None
):
    """Fit several study specs (files, or folders of specs) in parallel and write one Quarto project
    into ``out``: an index page with every study's headline numbers and a page (and PDF) per study.
    A study that fails is listed on the index with its error; returns a ``ProjectOutcome``."""
    from .project import run_project as _run_project

    return _run_project(specs, out, fit=fit, formats=formats, route=route, scheduler=scheduler, workers=workers, log=log)
