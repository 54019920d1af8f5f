"""The simulation report: generated text and verdicts from fabricated results with known
numbers, the CLI, and (slow) a rendered report on the builtin route."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hetreport.cli import main
from hetreport.simstudy.design import parse_design
from hetreport.simstudy.executor import META, RESULTS
from hetreport.simstudy.report import claims, comparison_text, est_se, load_simulation, render_simulation

APPROACHES = ("ols_full", "ols_additive", "subgroup", "hierarchical")


def fabricate(out: Path, reps: int = 10) -> None:
    """Results in which the hierarchical model wins at small SD and N, loses at large SD, ties elsewhere."""
    rng = np.random.default_rng(1)
    rows = []
    design = parse_design({"sample_sizes": [500, 2000], "heterogeneity_sds": [0.05, 0.75], "replications": reps})
    for ci, (sd, n) in enumerate([(0.05, 500), (0.05, 2000), (0.75, 500), (0.75, 2000)]):
        for rep in range(reps):
            base = 0.2 / np.sqrt(n / 500) + rng.normal(0, 0.01)
            gain = {0: -0.05, 1: 0.0, 2: 0.03, 3: 0.0}[ci]
            for a in APPROACHES:
                r = base + (gain if a == "hierarchical" else 0.4 if a == "ols_additive" else 0.0)
                rows.append(
                    {
                        "cell": f"n{n}-sd{sd:g}",
                        "cell_index": ci,
                        "n": n,
                        "sd": sd,
                        "rep": rep,
                        "approach": a,
                        "status": "ok",
                        "error": "",
                        "n_groups": 16,
                        "n_compared": 16,
                        "rmse": r,
                        "bias": rng.normal(0, 0.01),
                        "mae": r * 0.8,
                        "coverage_90": 0.9,
                        "coverage_95": 0.95,
                        "width_90": 0.5,
                        "width_95": 0.6,
                        "rmse_y": 0.25,
                        "rmse_mu": 0.05,
                        "fit_s": 1.0,
                        "compile": "swap" if a == "hierarchical" else None,
                        "compile_s": 0.0,
                        "sampling_s": 1.0,
                        "divergences": 0.0,
                        "treedepth_hits": 0.0,
                        "max_rhat": 1.001,
                        "min_ess_bulk": 500.0,
                    }
                )
    rows.append({**rows[-1], "rep": reps, "status": "error", "error": "RuntimeError: <script>x</script>", "rmse": np.nan})
    pd.DataFrame(rows).to_parquet(out / RESULTS)
    (out / META).write_text(
        json.dumps(
            {
                "design_hash": design.design_hash(),
                "design": design.canonical(),
                "created": "2026-01-01T00:00:00",
                "executor": "local",
                "where": "2 local processes",
                "packages": {"pymc": "x"},
            }
        )
    )


def test_generated_text_says_where_hierarchical_wins_and_where_not(tmp_path):
    fabricate(tmp_path)
    sim = load_simulation(tmp_path)
    cmp = comparison_text(sim)
    assert [i["cell"] for i in cmp["better"]] == ["SD 0.05, N = 500"]
    assert [i["cell"] for i in cmp["worse"]] == ["SD 0.75, N = 500"]
    assert cmp["n_unclear"] == 2
    c = {x["claim"][:20]: x for x in claims(sim)}
    assert c["Partial pooling give"]["verdict"] == "Supported"
    assert c["More variation in ef"]["verdict"].startswith("Contradicted")
    assert c["Larger data sets mak"]["verdict"] == "Supported where testable (1 of 2 heterogeneity SDs)"
    assert est_se(0.1234, 0.0001) == "0.1234 ± 0.0001" and est_se(-0.5, 0.02) == "\u22120.500 ± 0.020"


def test_cli_reports_a_bad_file_in_one_paragraph(tmp_path, capsys):
    (tmp_path / "sim.yml").write_text("sample_size: [100]\n")
    assert main(["simulate", str(tmp_path / "sim.yml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "sim.yml: sample_size: unknown key 'sample_size'. Did you mean 'sample_sizes'?" in " ".join(err.split())
    assert "Traceback" not in err


def test_cli_runs_a_grid_without_report(tmp_path):
    (tmp_path / "sim.yml").write_text(
        "sample_sizes: [300]\nheterogeneity_sds: [0.25]\nreplications: 2\napproaches: [ols_full, subgroup]\nworkers: 1\n"
    )
    assert main(["simulate", str(tmp_path / "sim.yml"), "--out", str(tmp_path / "out"), "--no-report", "--no-progress"]) == 0
    res = pd.read_parquet(tmp_path / "out" / RESULTS)
    assert len(res) == 4 and (res["status"] == "ok").all()


@pytest.mark.slow
def test_report_renders_on_the_builtin_route(tmp_path):
    fabricate(tmp_path)
    outcome = render_simulation(tmp_path, formats=["html", "pdf"], route="builtin")
    html = outcome.outputs["html"].read_text(encoding="utf-8")
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html  # an error message is text, not markup
    for words in (
        "Where the hierarchical model beats OLS",
        "1 of 4",
        "SD 0.05, N = 500",
        "Where it does not",
        "The paper",
        "Contradicted",
        "fig-sim-rmse",
        "heterogeneity SD",
    ):
        assert words in html, words
    assert 'src="data:image/svg+xml' in html  # figures embedded
    assert outcome.outputs["pdf"].stat().st_size > 20_000
    qmd = (tmp_path / "report" / "report.qmd").read_text()
    assert "{{" not in qmd.replace("{{< pagebreak >}}", "")
    # build_simulation_project starts from the study report's start_project: hetreport's own _quarto.yml
    from hetreport.resources import quarto_yml

    assert (tmp_path / "report" / "_quarto.yml").read_bytes() == quarto_yml().read_bytes()


def test_simulation_project_is_written_by_the_report_builders_parts(tmp_path):
    """The simulation report's project is written by the study report's parts: start_project (hetreport's
    _quarto.yml) and write_document, whose template errors are one paragraph naming the template and line, and
    write no report.qmd. (The slow builtin-route test renders a whole build_simulation_project.)"""
    from hetreport.errors import RenderError
    from hetreport.report.build import document_environment, start_project, write_document
    from hetreport.resources import quarto_yml
    from hetreport.simstudy.report import TEMPLATE

    project = start_project(tmp_path / "project")
    assert (project / "_quarto.yml").read_bytes() == quarto_yml().read_bytes()
    broken = tmp_path / "templates"
    (broken / TEMPLATE).parent.mkdir(parents=True)
    (broken / TEMPLATE).write_text("fine\n{{ undefined_name.attr }}\n")
    with pytest.raises(RenderError, match=rf"the simulation report template failed \({TEMPLATE}, line 2\).*This is a bug in hetreport"):
        write_document(project, document_environment(broken), TEMPLATE, {}, "the simulation report template", "This is a bug in hetreport.")
    assert not (project / "report.qmd").exists()
