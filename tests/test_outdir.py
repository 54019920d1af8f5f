"""The output folder (issue 13 §1, issue 12 §1/§3): only hetreport's own files are replaced, an
unusable --out is found before any fit, every output is one visible switch under a lock, a kill
at any step leaves the complete old or the complete new outputs, interruption is reliable.

Kills are real: ``HETREPORT_FAULT=<step>`` makes the process SIGKILL itself at that step.
A read-only folder cannot be made with mode bits when the tests run as root (root writes
anyway), so "unwritable" is a path under a file, which no user can create; the checks in
hetreport write a probe file, so they hold for read-only mounts and ACLs too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import random_frame

from hetreport import outdir

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def hetreport(*args, env=None, timeout=900, **kw):
    return subprocess.run(
        [sys.executable, "-m", "hetreport.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=timeout,
        **kw,
    )


def tiny_spec(folder: Path, draws: int = 100, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    random_frame(n=200).to_csv(folder / "tiny.csv", index=False)
    raw = {
        "title": "Tiny study",
        "data": {"path": "tiny.csv"},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [{"name": "a", "modifiers": ["m1", "m2"]}],
        "sampler": {"draws": draws, "tune": 100, "chains": 1, "seed": 3},
        "report": {"formats": ["html"], **extra},
    }
    (folder / "spec.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / "spec.yml"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny study fitted once (in this process) and its results saved; tests copy the folder."""
    from hetreport.api import fit

    d = tmp_path_factory.mktemp("fitted")
    spec = tiny_spec(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = fit(spec)
    results.save(d / "golden")
    return d, results


@pytest.fixture(scope="module")
def rendered(fitted, tmp_path_factory):
    """The same results with a rendered report."""
    from hetreport.report import build_and_render

    d, results = fitted
    out = tmp_path_factory.mktemp("rendered") / "out"
    shutil.copytree(d / "golden", out)
    build_and_render(results, out, formats=["html"], route="builtin")
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# --------------------------------------------------------------------------- what may be replaced


def test_foreign_files_are_refused_before_any_fit(tmp_path):
    spec = tiny_spec(tmp_path / "study")
    out = tmp_path / "myproject"
    (out / "report").mkdir(parents=True)
    (out / "report" / "thesis.docx").write_text("three years of work")
    (out / "effects.csv").write_text("my own effects")
    before = snapshot(out)
    t0 = time.monotonic()
    res = hetreport("run", spec, "--out", out, timeout=120)
    assert time.monotonic() - t0 < 60, "the check must come before the fit (measured: under a second)"
    assert res.returncode == 2, res.stderr
    text = res.stderr.replace("\n  ", " ")
    assert "report/thesis.docx" in text and "effects.csv" in text and "did not write" in text and "--out" in text
    assert "sampling" not in text and "Traceback" not in text
    assert snapshot(out) == before


def test_user_file_inside_an_earlier_report_is_refused(rendered, tmp_path):
    out = copy(rendered, tmp_path / "out")
    (out / "report" / "thesis.docx").write_text("mine")
    before = snapshot(out)
    res = hetreport("report", out, "--no-quarto", timeout=120)
    assert res.returncode == 2 and "report/thesis.docx" in res.stderr.replace("\n  ", " ")
    assert snapshot(out) == before


def test_outputs_of_earlier_versions_are_recognised(rendered, tmp_path):
    """A folder written before the marker existed (manifest.json + hetreport's names) is hetreport's."""
    out = copy(rendered, tmp_path / "legacy")
    (out / outdir.MARKER).unlink()
    assert outdir.foreign_files(out) == []
    (out / "report" / "thesis.docx").write_text("mine")
    (out / "notes.txt").write_text("mine")
    assert outdir.foreign_files(out) == ["notes.txt", "report/thesis.docx"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "manifest.json").write_text("{}")  # someone else's manifest
    assert outdir.foreign_files(plain) == ["manifest.json"]


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_unusable_out_is_an_error_before_any_fit(tmp_path, where):
    spec = tiny_spec(tmp_path / "study")
    afile = tmp_path / "afile.txt"
    afile.write_text("not a folder")
    out = afile if where == "file" else afile / "sub"
    t0 = time.monotonic()
    res = hetreport("run", spec, "--out", out, timeout=120)
    assert time.monotonic() - t0 < 60
    assert res.returncode == 2 and "Output error" in res.stderr and "afile.txt" in res.stderr
    assert "Internal error" not in res.stderr and "sampling" not in res.stderr
    assert afile.read_text() == "not a folder"


def test_fit_into_unusable_out_is_an_error_before_fitting(tmp_path):
    spec = tiny_spec(tmp_path / "study")
    (tmp_path / "afile.txt").write_text("x")
    res = hetreport("fit", spec, "--out", tmp_path / "afile.txt" / "out", timeout=120)
    assert res.returncode == 2 and "Output error" in res.stderr and "sampling" not in res.stderr


def test_new_output_folder_follows_the_umask(fitted, tmp_path):
    d, results = fitted
    old = os.umask(0o022)
    try:
        results.save(tmp_path / "new")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o755


def test_a_spec_error_leaves_no_output_folder(tmp_path):
    spec = tiny_spec(tmp_path / "study")
    spec.write_text(spec.read_text().replace("outcome: y", "outcome: nope"))
    res = hetreport("run", spec, "--out", tmp_path / "out", timeout=120)
    assert res.returncode == 2 and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- lock and leftovers

HOLD = textwrap.dedent("""
    import sys, time
    from hetreport import outdir
    with outdir.Output(sys.argv[1]) as o:
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_run_into_the_same_folder_is_refused(rendered, tmp_path):
    out = copy(rendered, tmp_path / "out")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        res = hetreport("report", out, "--no-quarto", timeout=120)
        assert res.returncode == 2
        assert f"process {holder.pid}" in res.stderr.replace("\n  ", " ") and "Nothing was written" in res.stderr.replace("\n  ", " ")
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()


def test_leftovers_of_an_interrupted_run_are_cleaned(fitted, tmp_path):
    d, results = fitted
    out = copy(d / "golden", tmp_path / "out")
    dead = tmp_path / "out.partial-0badc0de"
    dead.mkdir()
    (dead / outdir.LOCK).write_text("{}")  # nobody holds it: its run was killed
    (dead / "effects.csv").write_text("half")
    (out / ".report-x1y2z3").mkdir()  # a temporary folder of an older hetreport
    (out / "report.partial-00000000").mkdir()
    (out / "report.partial-00000000" / outdir.LOCK).write_text("{}")
    results.save(out)
    assert not dead.exists() and not (out / ".report-x1y2z3").exists() and not (out / "report.partial-00000000").exists()
    assert outdir.check_complete(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- kills at chosen points

SAVE = textwrap.dedent("""
    import sys
    from hetreport.results import load_results
    load_results(sys.argv[1]).save(sys.argv[2])
""")


def _state(out: Path, old: dict[str, bytes]) -> str:
    now = snapshot(out)
    ours = {k: v for k, v in now.items() if not k.endswith(outdir.LOCK)}
    if ours == {k: v for k, v in old.items() if not k.endswith(outdir.LOCK)}:
        return "old"
    assert outdir.check_complete(out) == [], "neither the old outputs nor a complete new generation"
    return "new"


@pytest.mark.parametrize("step, expect", [("results-written", "old"), ("before-switch", "old"), ("after-switch", "new")])
def test_kill_while_saving_results(rendered, tmp_path, step, expect):
    out = copy(rendered, tmp_path / "out")
    old = snapshot(out)
    killed = subprocess.run(
        [sys.executable, "-c", SAVE, str(rendered), str(out)],
        env={**ENV, "HETREPORT_FAULT": step},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _state(out, old) == expect
    if expect == "new":
        assert "report/report.html" not in snapshot(out)  # the results alone: the old report is not kept beside them
    # the next run cleans what the killed one left beside and inside the folder
    done = subprocess.run([sys.executable, "-c", SAVE, str(rendered), str(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert outdir.check_complete(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not [p for p in out.iterdir() if p.name.startswith((".report", "report.partial"))]


def test_kill_between_the_two_renames_is_rolled_forward(rendered, tmp_path):
    """Systems without an atomic exchange swap with two renames; a kill between them is repaired by the next run."""
    out = copy(rendered, tmp_path / "out")
    env = {**ENV, "HETREPORT_FAULT": "between-renames", "HETREPORT_NO_EXCHANGE": "1"}
    killed = subprocess.run([sys.executable, "-c", SAVE, str(rendered), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()
    res = hetreport("report", out, "--no-quarto", timeout=600)  # the next run finds the complete new generation
    assert res.returncode == 0, res.stderr
    assert outdir.check_complete(out) == [] and (out / "report" / "report.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
@pytest.mark.parametrize("step, expect", [("report-built", "old"), ("rendered", "old"), ("after-switch", "new")])
def test_kill_while_rendering_the_report(rendered, tmp_path, step, expect):
    out = copy(rendered, tmp_path / "out")
    old = snapshot(out)
    killed = hetreport("report", out, "--no-quarto", env={"HETREPORT_FAULT": step})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _state(out, old) == expect
    assert (out / "report" / "report.html").is_file()  # never a folder without its report
    res = hetreport("report", out, "--no-quarto")
    assert res.returncode == 0, res.stderr
    assert outdir.check_complete(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --------------------------------------------------------------------------- where the report is rendered

FAKE_QUARTO = textwrap.dedent("""\
    #!{python}
    # Records where Quarto would run; answers like Quarto 1.11.0.
    import json, os, sys
    from pathlib import Path
    if sys.argv[1:] == ["--version"]:
        print("1.11.0"); sys.exit(0)
    cwd = Path.cwd()
    with open(os.environ["FAKE_QUARTO_LOG"], "a") as log:
        log.write(json.dumps({{"cwd": str(cwd), "args": sys.argv[1:], "quarto_yml": (cwd / "_quarto.yml").is_file()}}) + "\\n")
    doc = Path(sys.argv[2])
    (cwd / (doc.stem + ".html")).write_text("<html><body>rendered</body></html>")
""")


def test_quarto_renders_in_a_folder_it_does_not_ignore(rendered, tmp_path):
    """Quarto ignores paths with a part starting with '.' or '_' (its project context ignores **/.*):
    _quarto.yml must be found, so the folder Quarto runs in has no such part."""
    out = copy(rendered, tmp_path / "out")
    quarto = tmp_path / "bin" / "quarto"
    quarto.parent.mkdir()
    quarto.write_text(FAKE_QUARTO.format(python=sys.executable))
    quarto.chmod(0o755)
    log = tmp_path / "quarto.log"
    res = hetreport("report", out, "--quarto", "--format", "html", env={"QUARTO_PATH": str(quarto), "FAKE_QUARTO_LOG": str(log)})
    assert res.returncode == 0, res.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls and all(c["quarto_yml"] for c in calls)
    for c in calls:
        parts = Path(c["cwd"]).parts[1:]
        assert not [p for p in parts if p.startswith((".", "_"))], c["cwd"]
    assert (out / "report" / "report.html").read_text() == "<html><body>rendered</body></html>"


def test_report_folder_inside_the_output_is_visible(fitted, tmp_path):
    """Where the project is built (inside the output) no part starts with '.' or '_', even for such an --out."""
    from hetreport.report.build import render_atomically

    seen = []

    def build(p: Path):
        seen.append(p)
        raise RuntimeError("stop after recording")

    for name in ("_site", ".hidden", "plain"):
        with pytest.raises(RuntimeError):
            with outdir.transaction(tmp_path / name) as stage:
                render_atomically(stage, build, ["html"], "builtin")
    with pytest.raises(RuntimeError):  # a simulation study's folder: report.partial-XXXX inside it
        render_atomically(tmp_path / "sim", build, ["html"], "builtin")
    assert len(seen) == 4
    for p in seen:
        rel = p.relative_to(tmp_path)
        assert not [q for q in rel.parts if q.startswith((".", "_"))], p
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"] and (tmp_path / "sim" / outdir.LOCK).exists()
    assert not list((tmp_path / "sim").glob("report*"))


# --------------------------------------------------------------------------- "Nothing was written" is true


@pytest.mark.slow
def test_a_failing_report_after_the_fit_says_what_was_written(tmp_path):
    tpl = tmp_path / "study" / "tpl"
    tpl.mkdir(parents=True)
    (tpl / "report.qmd.j2").write_text("{{ 1 / 0 }}\n")  # an error that is not a template error: an "internal error"
    spec = tiny_spec(tmp_path / "study", templates="tpl")
    res = hetreport("run", spec, "--out", tmp_path / "out")
    text = res.stderr.replace("\n  ", " ")
    assert res.returncode == 1 and "Nothing was written" not in text, text
    assert f"new results were written to {tmp_path / 'out'}" in text and "hetreport report" in text
    assert outdir.check_complete(tmp_path / "out") == [] and not (tmp_path / "out" / "report").exists()


# --------------------------------------------------------------------------- interruption


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_sampling_ends_the_run(tmp_path, sig, code):
    spec = tiny_spec(tmp_path / "study", draws=100000)  # a minute or more of sampling: only a signal ends it early
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hetreport.cli", "run", str(spec), "--out", str(out)], env=ENV, stderr=subprocess.PIPE, text=True
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "sampling the hierarchical model" in line:
            break
    time.sleep(3)
    proc.send_signal(sig)
    try:
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, "".join(lines) + rest
    assert "Nothing was written" in rest
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["study"]


# --------------------------------------------------------------------------- templates are a sandbox (issue 13 §2)


def _with_templates(results, folder: Path):
    spec = results.spec.model_copy(update={"report": results.spec.report.model_copy(update={"templates": str(folder)})})
    return type(results)(spec=spec, effects=results.effects, analyses=results.analyses, manifest=results.manifest)


@pytest.mark.parametrize(
    "call, written",
    [
        ("c.a.accounting.to_csv('{path}')", "x.csv"),
        ("c.a.posterior.to_netcdf('{path}')", "x.nc"),
        ("c.a.groups.to_csv('{path}')", "x.csv"),
        ("c.f.smallest.__class__", None),
    ],
)
def test_templates_cannot_write_files(fitted, tmp_path, call, written):
    from hetreport.errors import RenderError
    from hetreport.report.build import build_project

    _, results = fitted
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    target = tmp_path / (written or "none")
    (tpl / "report.qmd.j2").write_text("{% for c in analyses %}{{ " + call.format(path=target) + " }}{% endfor %}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RenderError):
            build_project(_with_templates(results, tpl), tmp_path / "project", route="builtin", formats=["html"])
    assert not target.exists()


def test_template_context_is_plain_data(fitted, tmp_path):
    """Everything a template can reach is numbers, strings, tuples or read-only views."""
    from hetreport.facts import compute_facts
    from hetreport.report.build import View, analysis_context, study_context, template_data

    _, results = fitted
    a = results.analyses[0]
    facts = compute_facts(a, results.effects)
    ctx = study_context(results, [analysis_context(a, results, {}, {}, facts)], "builtin", ["html"])
    seen = []

    def walk(v):
        seen.append(type(v))
        if isinstance(v, View):
            for x in v.values():
                walk(x)
        elif isinstance(v, tuple):
            for x in v:
                walk(x)

    walk(template_data(ctx))
    assert set(seen) <= {View, tuple, str, int, float, bool, type(None)} | {s for s in seen if issubclass(s, str)}
    view = template_data(ctx)
    with pytest.raises(TypeError):
        view.title = "changed"
    from jinja2.exceptions import SecurityError

    from hetreport.report.build import environment

    with pytest.raises(SecurityError):  # the view's own store is out of a template's reach
        environment().from_string("{{ v._data.clear() }}").render(v=view)
    assert environment().from_string("{{ v.analyses[0].a.hierarchical.family }}").render(v=view) == "gaussian"


def test_a_symlink_out_of_the_templates_folder_is_refused(fitted, tmp_path):
    from hetreport.errors import RenderError
    from hetreport.report.build import build_project

    _, results = fitted
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("SECRET-42")
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "_appendix.qmd.j2").symlink_to(secret)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RenderError, match="leads out of its folder"):
            build_project(_with_templates(results, tpl), tmp_path / "project", route="builtin", formats=["html"])
    qmd = tmp_path / "project" / "report.qmd"
    assert not qmd.exists() or "SECRET-42" not in qmd.read_text()


def test_a_templates_folder_that_overrides_nothing_or_lies_elsewhere_is_named(fitted, tmp_path):
    from hetreport.errors import HetreportWarning
    from hetreport.report.build import build_project

    d, results = fitted
    tpl = tmp_path / "typo"
    tpl.mkdir()
    (tpl / "_sumary.qmd.j2").write_text("misspelt")
    with pytest.warns(HetreportWarning) as record:
        build_project(_with_templates(results, tpl), tmp_path / "project", route="builtin", formats=["html"])
    words = [str(w.message) for w in record if issubclass(w.category, HetreportWarning)]
    assert any("overrides none" in w and str(tpl) in w for w in words)
    assert any("outside the spec's folder" in w and str(tpl) in w for w in words)


def test_a_simulation_folder_gets_its_report_in_one_switch(tmp_path):
    """Outside a run's staging folder (a simulation study's folder) report/ alone is swapped, under the lock."""
    from hetreport.report.build import render_atomically

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "results.parquet").write_text("the simulation's own file")

    def build(text):
        def make(p: Path):
            p.mkdir(parents=True, exist_ok=True)
            (p / "_quarto.yml").write_text("project:\n  type: default\n")
            (p / "report.qmd").write_text(f"---\ntitle: T\n---\n\n{text}\n")

        return make

    first = render_atomically(sim, build("first version"), ["html"], "builtin")
    assert "first version" in first.outputs["html"].read_text()
    (sim / "report.partial-deadbeef").mkdir()  # a killed earlier render: nobody holds its lock
    (sim / "report.partial-deadbeef" / outdir.LOCK).write_text("{}")
    second = render_atomically(sim, build("second version"), ["html"], "builtin")
    html = (sim / "report" / "report.html").read_text()
    assert second.outputs["html"] == sim / "report" / "report.html" and "second version" in html and "first version" not in html
    assert sorted(p.name for p in sim.iterdir()) == [outdir.LOCK, "report", "results.parquet"]
    assert (sim / "results.parquet").read_text() == "the simulation's own file"


def test_python_render_of_saved_results_keeps_them_byte_for_byte(fitted, tmp_path):
    """README's Python route: save, load, render into the same folder; the saved results are not rewritten."""
    import hetreport

    d, _ = fitted
    out = copy(d / "golden", tmp_path / "tw")
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(".")}
    again = hetreport.load_results(out)
    outcome = hetreport.render(again, out, formats=["html"], route="builtin")
    assert outcome.outputs["html"] == out / "report" / "report.html" and outcome.outputs["html"].is_file()
    after = snapshot(out)
    assert all(after[k] == v for k, v in before.items())
    assert outdir.check_complete(out) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["tw"]
