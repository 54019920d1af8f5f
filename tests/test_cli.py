"""The command line: one paragraph per error, no traceback; fit/run/report end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, random_frame


def hetreport(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hetreport.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)


def write_spec(tmp_path: Path, body: str) -> Path:
    random_frame(n=200).to_csv(tmp_path / "d.csv", index=False)
    p = tmp_path / "spec.yml"
    p.write_text(body)
    return p


BASE = "title: t\ndata: {path: d.csv}\noutcome: y\ntreatment: treat\nanalyses: [{name: a, modifiers: [m1, m2]}]\nsampler: {draws: 100, tune: 100, chains: 1}\n"


@pytest.mark.parametrize(
    "body, words",
    [
        (BASE.replace("modifiers", "modifers"), "Did you mean 'modifiers'"),
        (BASE.replace("treatment: treat", "treatment: trt"), "no column 'trt'"),
        (BASE.replace("d.csv", "missing.csv"), "does not exist"),
        (BASE + "priors: {sd: normal(0, 1)}\n", "standard deviation cannot"),
        (BASE.replace("data: {path: d.csv}", "data: {path: d.csv, derive: {z: \"__import__('os').system('echo hi')\"}}"), "data.derive.z"),
        ("title: [unclosed\n", "YAML cannot be read"),
    ],
)
def test_errors_are_one_paragraph_without_traceback(tmp_path, body, words):
    spec = write_spec(tmp_path, body)
    res = hetreport("fit", spec, "--out", tmp_path / "out")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert words in res.stderr.replace("\n  ", " ")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_report_on_a_folder_that_is_not_results(tmp_path):
    res = hetreport("report", tmp_path)
    assert res.returncode == 2 and "not a hetreport results folder" in res.stderr.replace("\n  ", " ")


@pytest.mark.slow
def test_fit_then_report_from_the_command_line(tmp_path):
    spec = write_spec(tmp_path, BASE)
    res = hetreport("fit", spec, "--out", tmp_path / "out", "--no-progress")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    for name in (
        "effects.csv",
        "effects.parquet",
        "groups.csv",
        "diagnostics.json",
        "manifest.json",
        "posterior_a.nc",
        "spec.yml",
        "summary.json",
    ):
        assert (out / name).exists(), name
    effects = pd.read_csv(out / "effects.csv")
    assert list(effects.columns[:17]) == [
        "analysis",
        "method",
        "group",
        "m1",
        "m2",
        "n",
        "n_treated",
        "n_control",
        "estimate",
        "std_error",
        "lower_90",
        "upper_90",
        "lower_95",
        "upper_95",
        "prob_positive",
        "estimable",
        "group_label",
    ]
    assert set(effects["method"]) == {"ols_full", "ols_additive", "subgroup", "hierarchical"}
    summary = json.loads((out / "summary.json").read_text())["a"]
    assert {"average", "sigma_theta", "sd_all_draws", "share_unexplained", "terms", "smallest", "largest"} <= set(summary)
    assert summary["sigma_theta"]["lower"] <= summary["sigma_theta"]["estimate"] <= summary["sigma_theta"]["upper"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 20240529 and len(manifest["data_sha256"]) == 64 and manifest["packages"]["bambi"]
    import llvmlite.binding as llvm  # the CPU type the draws are reproducible on

    assert manifest["compiled_for"] == (os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name())
    res = hetreport("report", out, "--no-quarto", "--format", "html")
    assert res.returncode == 0, res.stderr
    assert (out / "report" / "report.html").exists()
    res = hetreport("report", out, "--quarto")
    if res.returncode != 0:  # no Quarto on this machine: a clear error, the old report untouched
        assert "Quarto" in res.stderr and "Traceback" not in res.stderr
        assert (out / "report" / "report.html").exists()


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    import re

    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]" && \.venv/bin/python -m pytest', readme)
    assert extras, "README's test command is missing"
    assert f'pip install --quiet -e ".[{extras.group(1)}]"' in ci
    assert "python -m pytest" in readme and "python -m pytest" in ci
