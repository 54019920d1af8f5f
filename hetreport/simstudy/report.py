"""The simulation report: figures, tables and generated text from ``DIR/results.parquet``.

Built like the study report (sandboxed Jinja with every printed value markdown-escaped,
numbers through :mod:`hetreport.report.format`), written as a Quarto project in
``DIR/report/`` and rendered by :func:`hetreport.report.render.render_project` (Quarto, or the
builtin pandoc + Typst route). The project is built and rendered in a temporary folder and
only then replaces ``DIR/report``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from .. import methods as registry
from ..errors import RenderError
from ..report import format as fmt
from ..report.build import document_environment, join_words, render_atomically, start_project, write_document
from ..report.render import describe_route
from . import figures as sf
from .design import SimDesign, parse_design
from .executor import META, RESULTS
from .metrics import NOMINAL, paired, summarise, verdict

TEMPLATE = "simulation/simulation.qmd.j2"
#: the approaches in table order: the two the study compares first, then the rest of the registry
ORDER = (*registry.REQUIRED, *(a for a in registry.simulation_names() if a not in registry.REQUIRED))
TABLE_NAMES = {m.name: m.short or m.label for m in registry.REGISTRY.values()}


def _widths(table: Markup, widths: list[int]) -> Markup:
    """Give a pipe table relative column widths (pandoc reads them from the dashes of the
    separator line when a line is longer than 72 characters, which these tables' are)."""
    lines = str(table).split("\n")
    marks = lines[1].strip("|").split("|")
    new = []
    for m, w in zip(marks, widths):
        left, right = m.startswith(":"), m.endswith(":")
        dashes = "-" * max(3, w - left - right)
        new.append((":" if left else "") + dashes + (":" if right else ""))
    lines[1] = "|" + "|".join(new) + "|"
    return Markup("\n".join(lines))


def _ordered(summary: pd.DataFrame) -> pd.DataFrame:
    rank = {a: i for i, a in enumerate(ORDER)}
    return summary.assign(_o=summary["approach"].map(rank)).sort_values(["cell_index", "_o"]).drop(columns="_o")


TEXT_NAMES = {m.name: m.text for m in registry.REGISTRY.values()}


def _n(n) -> str:
    return f"N = {int(n):,}"


def _sd(sd) -> str:
    return f"SD {float(sd):g}"


def est_se(x, se, digits: int = 3) -> str:
    """'0.061 ± 0.003': a Monte-Carlo mean and its MC standard error, with enough digits
    (up to 5) that the standard error shows a significant figure."""
    if x is None or not np.isfinite(x):
        return "—"
    if se is None or not np.isfinite(se):
        return fmt.num(x, digits)
    while digits < 5 and 0 < se < 0.5 * 10.0**-digits:
        digits += 1
    return f"{fmt.num(x, digits)} ± {fmt.num(se, digits)}"


def share_se(x, se) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{100 * x:.1f}%" + ("" if se is None or not np.isfinite(se) else f" ± {100 * se:.1f}")


@dataclass
class SimResults:
    results: pd.DataFrame
    meta: dict
    design: SimDesign
    summary: pd.DataFrame
    rmse_diff: pd.DataFrame  # hierarchical - ols_full, paired


def load_simulation(out_dir: str | Path, design: SimDesign | None = None) -> SimResults:
    out = Path(out_dir)
    if not (out / RESULTS).exists():
        raise RenderError(f"{out / RESULTS} does not exist; run `hetreport simulate SIM.yml --out {out}` first.")
    results = pd.read_parquet(out / RESULTS)
    meta = json.loads((out / META).read_text()) if (out / META).exists() else {}
    if design is None:
        design = parse_design(meta.get("design", {}), source_text=meta.get("source_text"))
    summary = summarise(results)
    return SimResults(results, meta, design, summary, paired(results, "rmse", registry.REFERENCE, registry.BASELINE))


# --------------------------------------------------------------------------- generated text


def _row(summary, cell_index, approach):
    r = summary[(summary["cell_index"] == cell_index) & (summary["approach"] == approach)]
    return None if r.empty else r.iloc[0]


def comparison_text(sim: SimResults) -> dict:
    """Where the hierarchical model beats OLS with full interactions on group-effect RMSE, and where not."""
    d = sim.rmse_diff
    s = sim.summary
    if d.empty:
        return {"available": False}
    items = {"better": [], "worse": [], "unclear": []}
    for r in d.itertuples():
        h, o = _row(s, r.cell_index, registry.REFERENCE), _row(s, r.cell_index, registry.BASELINE)
        v = verdict(r.diff, r.diff_se)
        items[v].append(
            {
                "cell": f"{_sd(r.sd)}, {_n(r.n)}",
                "hier": fmt.num(h["rmse"], 3),
                "ols": fmt.num(o["rmse"], 3),
                "diff": est_se(r.diff, r.diff_se),
                "pct": f"{100 * abs(r.ratio - 1):.0f}%",
                "ratio": r.ratio,
                "sd": r.sd,
                "n": r.n,
            }
        )
    ratios = d["ratio"].to_numpy(dtype=float)
    return {
        "available": True,
        "n_cells": len(d),
        "ratio_min": float(np.nanmin(ratios)),
        "ratio_max": float(np.nanmax(ratios)),
        "max_gap_pct": float(np.nanmax(np.abs(ratios - 1)) * 100),
        "better": items["better"],
        "worse": items["worse"],
        "unclear": items["unclear"],
        "n_better": len(items["better"]),
        "n_worse": len(items["worse"]),
        "n_unclear": len(items["unclear"]),
    }


def _trend(values: list[float]) -> str:
    v = [x for x in values if np.isfinite(x)]
    if len(v) < 2:
        return "flat"
    if all(b >= a - 1e-12 for a, b in zip(v, v[1:])):
        return "rises"
    if all(b <= a + 1e-12 for a, b in zip(v, v[1:])):
        return "falls"
    return "mixed"


def claims(sim: SimResults) -> list[dict]:
    """The paper's qualitative claims, each next to the numbers of this run and a verdict."""
    s, d = sim.summary, sim.rmse_diff
    out = []
    if d.empty:
        return out
    sds, ns = sorted(d["sd"].unique()), sorted(d["n"].unique())
    small = d[(d["sd"] == sds[0]) & (d["n"] == ns[0])].iloc[0]
    v = verdict(small["diff"], small["diff_se"])
    h, o = _row(s, small["cell_index"], registry.REFERENCE), _row(s, small["cell_index"], registry.BASELINE)
    out.append(
        {
            "claim": "Partial pooling gives group-effect estimates closer to the truth than OLS with fully crossed interactions "
            "when effects vary little and the sample is small: its bias is outweighed by lower variance.",
            "numbers": f"At {_sd(sds[0])}, {_n(ns[0])}: RMSE {est_se(h['rmse'], h['rmse_se'])} (hierarchical) against "
            f"{est_se(o['rmse'], o['rmse_se'])} (OLS); paired difference {est_se(small['diff'], small['diff_se'])}, "
            f"{abs(1 - small['ratio']) * 100:.1f}% {'lower' if small['ratio'] < 1 else 'higher'} for the hierarchical model.",
            "verdict": {"better": "Supported", "worse": "Not supported", "unclear": "Not distinguishable from no difference"}[v],
        }
    )
    # larger N: less helpful. Per SD: an advantage at the smallest N that shrinks (ratio rises toward 1) with N.
    parts, supported, testable = [], 0, 0
    for sd in sds:
        r = d[d["sd"] == sd].sort_values("n")
        ratios = r["ratio"].to_list()
        parts.append(f"{_sd(sd)}: " + ", ".join(f"{x:.3f}" for x in ratios))
        if verdict(r["diff"].iloc[0], r["diff_se"].iloc[0]) == "better":
            testable += 1
            supported += _trend(ratios) == "rises" or ratios[-1] >= ratios[0]
    numbers = "RMSE ratio hierarchical / OLS by N (" + ", ".join(f"{n:,}" for n in ns) + "): " + "; ".join(parts) + "."
    if not testable:
        v = "Not testable here: the hierarchical model has no advantage at the smallest N to shrink"
    elif supported == testable:
        v = "Supported" if testable == len(sds) else f"Supported where testable ({testable} of {len(sds)} heterogeneity SDs)"
    else:
        v = "Partly supported" if supported else "Not supported"
    out.append(
        {
            "claim": "Larger data sets make the regularisation less helpful: the hierarchical model's advantage shrinks as N grows.",
            "numbers": numbers
            + f" The advantage at the smallest N exceeds two MC standard errors at {testable} of {len(sds)} heterogeneity SDs.",
            "verdict": v,
        }
    )
    # more heterogeneity: regularisation more important (the paper's expectation). Per N: the ratio falls with the SD.
    parts, falls, rises = [], 0, 0
    for n in ns:
        r = d[d["n"] == n].sort_values("sd")
        ratios = r["ratio"].to_list()
        parts.append(f"{_n(n)}: " + ", ".join(f"{x:.3f}" for x in ratios))
        if max(ratios) - min(ratios) > 0.02:  # a trend smaller than 2% of the RMSE is not read as one
            t = _trend(ratios)
            falls += t == "falls" or (t == "mixed" and ratios[-1] < ratios[0])
            rises += t == "rises" or (t == "mixed" and ratios[-1] > ratios[0])
    if falls and not rises:
        v = "Supported" + ("" if falls == len(ns) else f" at {falls} of {len(ns)} sample sizes (no clear trend at the others)")
    elif rises and not falls:
        v = "Contradicted: the advantage shrinks as effects vary more" + (
            "" if rises == len(ns) else f" (at {rises} of {len(ns)} sample sizes; no clear trend at the others)"
        )
    elif not falls and not rises:
        v = "No clear trend: the ratios move by less than 2%"
    else:
        v = "Mixed"
    out.append(
        {
            "claim": "More variation in effects may make regularisation more important (the paper's expectation).",
            "numbers": "RMSE ratio hierarchical / OLS by heterogeneity SD ("
            + ", ".join(f"{x:g}" for x in sds)
            + "): "
            + "; ".join(parts)
            + ". A ratio falling with the SD would support the claim.",
            "verdict": v,
        }
    )
    hb = s[s["approach"] == registry.REFERENCE]
    ob = s[s["approach"] == registry.BASELINE]
    if len(hb) and len(ob):
        # the hierarchical model's own bias: its mean error minus OLS's on the same data (OLS is unbiased)
        bd = paired(sim.results, "bias", registry.REFERENCE, registry.BASELINE)
        worst = bd.loc[bd["diff"].abs().idxmax()]
        n_biased = sum(verdict(r.diff, r.diff_se) != "unclear" for r in bd.itertuples())
        hw = hb.loc[hb["bias"].abs().idxmax()]
        out.append(
            {
                "claim": "Hierarchical estimates can be biased on average (Clifford and Rainey 2024); the question is whether lower variance offsets it.",
                "numbers": f"Largest mean error of the hierarchical group effects: {est_se(hw['bias'], hw['bias_se'])} ({_sd(hw['sd'])}, {_n(hw['n'])}). "
                f"Against OLS on the same data (OLS is unbiased, so this is the pooling's own bias) the largest paired difference in mean error is "
                f"{est_se(worst['diff'], worst['diff_se'])} ({_sd(worst['sd'])}, {_n(worst['n'])}); it exceeds two MC standard errors in "
                f"{n_biased} of {len(bd)} cells.",
                "verdict": "Bias detectable" if n_biased else "No bias beyond OLS's detectable",
            }
        )
        if "rmse_y" in s:
            gap = (hb.set_index("cell_index")["rmse_y"] - ob.set_index("cell_index")["rmse_y"]).abs().max()
            out.append(
                {
                    "claim": "Model fit (RMSE of the predicted outcomes) is compared as a second metric.",
                    "numbers": f"The hierarchical and OLS predicted-outcome RMSEs differ by at most {gap:.2g} in any cell "
                    f"(outcome SD {sim.design.outcome_sd:g}), so in-sample fit does not separate the approaches; the group-effect RMSE does.",
                    "verdict": "Same fit" if gap < 0.05 * sim.design.outcome_sd else "Fit differs",  # within 5% of the outcome SD
                }
            )
    return out


# --------------------------------------------------------------------------- tables


def results_table(sim: SimResults) -> Markup:
    rows = []
    last = None
    for r in _ordered(sim.summary).itertuples():
        cell = f"{_sd(r.sd)}, {_n(r.n)}"
        rows.append(
            [
                cell if cell != last else "",
                TABLE_NAMES.get(r.approach, r.approach),
                est_se(r.rmse, r.rmse_se),
                est_se(r.bias, r.bias_se),
                share_se(r.coverage_90, r.coverage_90_se),
                share_se(r.coverage_95, r.coverage_95_se),
                fmt.num(r.width_95, 3),
                fmt.num(r.rmse_y, 4),
                fmt.num(r.fit_s, 2),
                f"{r.replications}" + (f" ({r.failed} failed)" if r.failed else ""),
            ]
        )
        last = cell
    table = fmt.pipe_table(
        ["Cell", "Approach", "RMSE", "Bias", "90% coverage", "95% coverage", "95% width", "RMSE of ŷ", "Fit (s)", "Reps"],
        rows,
        "llrrrrrrrr",
        "Every cell and approach: means over replications ± Monte-Carlo standard errors. RMSE, bias and coverage are of the group "
        "effects against the truth, over the groups every approach estimated; RMSE of ŷ is of the predicted outcomes against the observed ones; "
        "fit time is the wall time of one fit (for the hierarchical model, sampling plus its share of compilation).",
        "tbl-results",
    )
    return _widths(table, [12, 11, 13, 13, 11, 11, 7, 7, 6, 5])


def diff_table(sim: SimResults) -> Markup:
    rows = []
    for r in sim.rmse_diff.itertuples():
        v = verdict(r.diff, r.diff_se)
        rows.append(
            [
                _sd(r.sd),
                _n(r.n),
                est_se(r.diff, r.diff_se),
                f"{r.ratio:.2f}",
                {"better": "hierarchical better", "worse": "OLS better", "unclear": "within MC error"}[v],
            ]
        )
    return fmt.pipe_table(
        ["Heterogeneity", "Sample size", "RMSE difference", "RMSE ratio", "Verdict"],
        rows,
        "llrrl",
        "Group-effect RMSE of the hierarchical model minus that of OLS with full interactions, paired within replications (± MC SE); "
        "a verdict needs the difference to exceed two MC standard errors.",
        "tbl-difference",
    )


def diagnostics_table(sim: SimResults) -> Markup | None:
    s = sim.summary[sim.summary["approach"] == registry.REFERENCE]
    if s.empty:
        return None
    res = sim.results[(sim.results["approach"] == registry.REFERENCE) & (sim.results["status"] == "ok")]
    rows = []
    for r in s.itertuples():
        rr = res[res["cell_index"] == r.cell_index]
        comp = rr["compile"].value_counts() if "compile" in rr else {}
        rows.append(
            [
                f"{_sd(r.sd)}, {_n(r.n)}",
                fmt.num(getattr(r, "divergences", np.nan), 1),
                fmt.num(getattr(r, "treedepth_hits", np.nan) / max(1, sim.design.sampler.draws * sim.design.sampler.chains) * 100, 0) + "%",
                fmt.count(getattr(r, "min_ess_bulk", np.nan)),
                f"{getattr(r, 'max_rhat', np.nan):.3f}",
                f"{int(comp.get('compile', 0))} / {int(comp.get('swap', 0))} / {int(comp.get('fallback', 0))}",
                fmt.num(rr["sampling_s"].mean(), 2) if "sampling_s" in rr else "—",
                fmt.num(rr.loc[rr["compile"] != "swap", "compile_s"].mean(), 1)
                if "compile_s" in rr and (rr["compile"] != "swap").any()
                else "—",
            ]
        )
    return _widths(
        fmt.pipe_table(
            [
                "Cell",
                "Divergences per fit",
                "Draws at max depth",
                "Min bulk ESS (θ)",
                "Max R-hat (θ)",
                "Compiled / swapped / fallback",
                "Sampling (s)",
                "Compile (s)",
            ],
            rows,
            "lrrrrrrr",
            "Sampler diagnostics of the hierarchical fits per cell (ESS and R-hat over every group effect θ_g and replication); how many fits "
            "compiled the model, swapped their data into a compiled one, or compiled afresh because their group set differed.",
            "tbl-diagnostics",
        ),
        [16, 10, 10, 10, 10, 14, 9, 9],
    )


def errors_table(sim: SimResults) -> Markup | None:
    bad = sim.results[sim.results["status"] != "ok"]
    if bad.empty:
        return None
    rows = [[r.cell, str(r.rep), r.approach, str(r.error)[:160]] for r in bad.head(30).itertuples()]
    return fmt.pipe_table(
        ["Cell", "Replication", "Approach", "Error"],
        rows,
        "lrll",
        f"Failed replications ({len(bad)} rows; the first 30 shown). They are left out of every average.",
        "tbl-errors",
    )


# --------------------------------------------------------------------------- figures


def write_figures(sim: SimResults, folder: Path) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    s = sim.summary
    out = {}
    main = [a for a in registry.REQUIRED if a in set(s["approach"])]

    def save(key, plot, caption, alt):
        w, h = plot.theme.getp("figure_size")
        from .. import figures as hf

        hf.save_figure(plot, folder / f"sim-{key}", w, h)
        out[key] = {"id": Markup(f"fig-sim-{key}"), "path": Markup(f"figures/sim-{key}"), "caption": caption, "alt": Markup(alt)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save(
            "rmse",
            sf.plot_metric(s, "rmse", "RMSE of the group effects", approaches=main),
            "Root mean squared error of the group effects against the truth, by sample size, one panel per heterogeneity SD (the paper's comparison): "
            "OLS with fully crossed interactions and the hierarchical model. Error bars: ±1.96 Monte-Carlo standard errors.",
            "RMSE of group effects by sample size and heterogeneity for OLS and the hierarchical model.",
        )
        save(
            "rmse-all",
            sf.plot_metric(s, "rmse", "RMSE of the group effects"),
            "RMSE of the group effects for every approach, including additive OLS (which cannot represent higher-order interactions) and subgroup "
            "differences in means.",
            "RMSE of group effects for all approaches.",
        )
        if not sim.rmse_diff.empty:
            save(
                "difference",
                sf.plot_difference(sim.rmse_diff, "RMSE: hierarchical − OLS"),
                "Group-effect RMSE of the hierarchical model minus that of OLS with full interactions, paired within replications: below the dashed line "
                "the hierarchical model is closer to the truth. Error bars: ±1.96 MC standard errors.",
                "Paired RMSE differences by cell.",
            )
        # additive OLS is misspecified for these data: its coverage and widths are far off the others' scale
        near = [a for a in ORDER if a in set(s["approach"]) and a != "ols_additive"] or None
        add = s[s["approach"] == "ols_additive"]
        off = (
            (
                f" Additive OLS is left out of the panels: its coverage is {100 * add['coverage_95'].min():.0f}–{100 * add['coverage_95'].max():.0f}% "
                f"(95% intervals) and its intervals {fmt.num(add['width_95'].min())}–{fmt.num(add['width_95'].max())} wide."
            )
            if len(add) and near
            else ""
        )
        off = fmt.md(off) + (Markup(" See @tbl-results.") if off else Markup(""))  # a cross-reference: markup, not text
        save(
            "coverage",
            sf.plot_coverage(s, approaches=near),
            fmt.md("Share of the true group effects inside the 90% and 95% intervals (dashed: nominal).") + off,
            "Interval coverage by cell and approach.",
        )
        save(
            "width",
            sf.plot_metric(s, "width_95", "Mean width of 95% intervals", approaches=near),
            fmt.md("Mean width of the 95% intervals of the group effects.") + off,
            "Interval width by cell and approach.",
        )
        save(
            "bias",
            sf.plot_metric(s, "bias", "Mean error (bias) of the group effects", zero=True),
            "Mean error of the group effects (estimate minus truth, averaged over groups).",
            "Bias by cell and approach.",
        )
        save(
            "fit",
            sf.plot_metric(s, "rmse_y", "RMSE of predicted outcomes"),
            "Root mean squared error of the predicted outcomes against the observed outcomes (the paper's model-fit metric).",
            "Predicted-outcome RMSE.",
        )
    return out


# --------------------------------------------------------------------------- build and render


def context(sim: SimResults, figures: dict, route: str) -> dict:
    design, meta = sim.design, sim.meta
    grid = sorted(sim.results[["n", "sd"]].drop_duplicates().itertuples(index=False))
    mods = design.modifier_list if design.study is None else []
    mod_text = (
        join_words(
            [
                f"{m.name} (P(1) = {m.probability:g})" if m.binary else f"{m.name} ({', '.join(f'{k}: {v:g}' for k, v in m.level_probs)})"
                for m in mods
            ]
        )
        if mods
        else ""
    )
    n_ok = int(sim.results.drop_duplicates(["cell_index", "rep"]).shape[0])
    failed = sim.results[sim.results["status"] != "ok"].drop_duplicates(["cell_index", "rep"]).shape[0]
    versions = meta.get("packages", {})
    cmp = comparison_text(sim)
    return {
        "title": design.title,
        "subtitle": design.subtitle,
        "author": design.report.author,
        "date": (meta.get("created") or "")[:10],
        "d": design,
        "mod_text": mod_text,
        "n_modifiers": len(mods),
        "study": design.study,
        "sample_sizes": join_words([f"{n:,}" for n in sorted({g[0] for g in grid})]),
        "sds": join_words([f"{s:g}" for s in sorted({g[1] for g in grid})]),
        "n_cells": len({(g[0], g[1]) for g in grid}),
        "n_groups": int(sim.results["n_groups"].max()) if "n_groups" in sim.results else 0,
        "replications": design.replications,
        "n_tasks": n_ok,
        "failed": failed,
        "approaches": [TEXT_NAMES[a] for a in design.approaches],
        "cmp": cmp,
        "claims": claims(sim),
        "fig": figures,
        "results_table": results_table(sim),
        "diff_table": diff_table(sim) if not sim.rmse_diff.empty else None,
        "diagnostics_table": diagnostics_table(sim),
        "errors_table": errors_table(sim),
        "nominal": NOMINAL,
        "sampler": design.sampler,
        "route": route,
        "executor": meta.get("executor", ""),
        "where": meta.get("where", ""),
        "wall_min": (meta.get("wall_s") or 0) / 60,
        "design_hash": meta.get("design_hash", design.design_hash()),
        "spec_block": fmt.code_block(design.source_text or json.dumps(design.canonical(), indent=2), "yaml"),
        "versions": fmt.pipe_table(
            ["Package", "Version"], [[k, v] for k, v in versions.items()], "ll", "Package versions of the run.", "tbl-versions"
        ),
        "pagebreak": Markup("{{< pagebreak >}}"),
        "has_hier": registry.REFERENCE in design.approaches and registry.BASELINE in design.approaches,
    }


def build_simulation_project(sim: SimResults, project: Path, route: str = "auto") -> Path:
    """Write the simulation report's Quarto project (report.qmd, _quarto.yml, figures/) into ``project``,
    through the study report's project writing (:func:`hetreport.report.build.start_project`, ``document_environment``,
    ``write_document``)."""
    start_project(project)
    figures = write_figures(sim, project / "figures")
    env = document_environment(est_se=est_se, share_se=share_se, code_span=fmt.code_span)
    write_document(
        project,
        env,
        TEMPLATE,
        context(sim, figures, describe_route(route)),
        "the simulation report template",
        "This is a bug in hetreport.",
    )
    return project


def render_simulation(out_dir: str | Path, *, design: SimDesign | None = None, formats=None, route: str = "auto", log=None):
    """Build ``out_dir/report`` from ``out_dir/results.parquet`` and render it; the previous report stays until the new one is complete."""
    say = log or (lambda m: None)
    out = Path(out_dir)
    sim = load_simulation(out, design)
    formats = list(formats or sim.design.report.formats)

    def build(tmp: Path) -> None:
        say("simulation report: figures and tables")
        build_simulation_project(sim, tmp, route)

    return render_atomically(out, build, formats, route, log)
