"""Many studies in one Quarto project (`hetreport run A.yml B.yml ... --out SITE`): an index page with
every study's headline numbers, a page and a PDF per study, failures reported without stopping the
others, hostile titles shown literally, folders of specs, Dask, and an atomic swap of the site."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hetreport import project
from hetreport.api import fit
from hetreport.errors import SpecError
from hetreport.project import assign_slugs, collect_specs, run_project
from hetreport.report import format as fmt
from tests.conftest import EVIL, REPO, TW_DATA, random_frame

SMALL = {"draws": 200, "tune": 200, "chains": 2, "seed": 11}


def hetreport(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hetreport.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=1500)


def copy_spec(src: Path, dest_dir: Path, *, analyses=None, data_path=None, **changes) -> Path:
    """A copy of an example spec in ``dest_dir/spec.yml`` with a small sampler, an absolute data path,
    and only the named analyses."""
    raw = yaml.safe_load(src.read_text())
    raw["data"]["path"] = str(data_path or (src.parent / raw["data"]["path"]).resolve())
    if analyses:
        raw["analyses"] = [a for a in raw["analyses"] if a["name"] in analyses]
    raw["sampler"] = SMALL
    raw.update(changes)
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / "spec.yml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return dest_dir / "spec.yml"


def tiny_spec(path: Path, title: str = "Tiny study", data: str | None = None) -> Path:
    """A fast study (200 rows, 6 groups, one short chain, HTML only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        random_frame(n=200).to_csv(path.with_suffix(".csv"), index=False)
        data = path.with_suffix(".csv").name
    path.write_text(
        yaml.safe_dump(
            {
                "title": title,
                "data": {"path": data},
                "outcome": "y",
                "treatment": "treat",
                "analyses": [{"name": "a", "modifiers": ["m1", "m2"]}],
                "sampler": {"draws": 100, "tune": 100, "chains": 1, "seed": 3},
                "report": {"formats": ["html"]},
            },
            sort_keys=False,
        )
    )
    return path


def soup_of(path: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def text_of(soup) -> str:
    return re.sub(r"\s+", " ", soup.get_text(" "))


# --------------------------------------------------------------------------- fast: specs and slugs


def test_slugs_come_from_file_names_and_never_collide(tmp_path):
    paths = [
        tmp_path / "tomz-weeks" / "spec.yml",
        tmp_path / "simulated" / "spec.yml",
        tmp_path / "Study B.yaml",
        tmp_path / "x" / "study-b.yml",
        tmp_path / "index.yml",
    ]
    slugs = assign_slugs(paths)
    assert slugs[:2] == ["tomz-weeks", "simulated"]  # both spec.yml: the folder names them
    assert assign_slugs([tmp_path / "a" / "spec.yml", tmp_path / "b" / "a" / "spec.yml"]) == ["a-spec", "a-spec-2"]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[a-z0-9-]+", s) for s in slugs)
    assert "index" not in slugs  # the index page's name stays free


def test_a_folder_gives_its_study_specs_and_skips_other_yaml(tmp_path):
    tiny_spec(tmp_path / "b.yml")
    tiny_spec(tmp_path / "a.yaml")
    (tmp_path / "sim.yml").write_text((REPO / "examples" / "simulation" / "paper.yml").read_text())  # a simulation design
    (tmp_path / "_quarto.yml").write_text("project: {type: default}\n")
    (tmp_path / "notes.yml").write_text("- a list\n")
    skipped = []
    found = collect_specs([tmp_path], log=skipped.append)
    assert [p.name for p in found] == ["a.yaml", "b.yml"]
    assert any("sim.yml" in s for s in skipped) and any("notes.yml" in s for s in skipped)
    assert [p.name for p in collect_specs([tmp_path / "b.yml", tmp_path])] == ["b.yml", "a.yaml"]  # each once


def test_sigma_theta_of_a_non_identity_link_is_marked_with_its_scale():
    assert project._linear_scale("gaussian") is None and project._linear_scale(None) is None
    assert project._linear_scale("bernoulli") == "log-odds" and project._linear_scale("ordinal") == "cumulative log-odds"


def test_no_specs_or_a_missing_path_is_a_clear_error_and_nothing_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="holds no study spec"):
        run_project([tmp_path / "empty"], tmp_path / "site", fit=fit)
    res = hetreport("run", tmp_path / "nope.yml", tmp_path / "empty", "--out", tmp_path / "site")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "nope.yml' is neither a spec file nor a folder" in res.stderr.replace("\n  ", " ")
    assert not (tmp_path / "site").exists()


def test_out_that_is_not_a_project_is_refused(tmp_path):
    tiny_spec(tmp_path / "a.yml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_text("mine")
    with pytest.raises(Exception, match="did not write: thesis.docx"):
        run_project([tmp_path / "a.yml", tmp_path / "a.yml"], out, fit=fit)
    assert (out / "thesis.docx").read_text() == "mine"


def test_single_spec_keeps_todays_command(tmp_path):
    res = hetreport("run", tmp_path / "missing.yml", "--out", tmp_path / "out")
    assert res.returncode == 2 and "does not exist" in res.stderr and "neither a spec file" not in res.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the project


@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    """The two Tomz-Weeks analyses (one spec), the simulated example with a hostile title, and a study whose
    data file lost its outcome column, every spec named spec.yml: run from the command line."""
    if TW_DATA is None:
        pytest.skip("the Tomz-Weeks data file is not available")
    d = tmp_path_factory.mktemp("programme")
    tw = REPO / "examples" / "tomz-weeks" / "spec.yml"
    sim = REPO / "examples" / "simulated" / "spec.yml"
    specs = [
        copy_spec(tw, d / "tomz-weeks", analyses=["scenario", "respondents"], data_path=TW_DATA),
        copy_spec(sim, d / "simulated", title=f"Simulated {EVIL}"),
    ]
    broken_data = d / "broken" / "simulated-no-outcome.csv"
    broken_data.parent.mkdir()
    pd.read_csv(REPO / "examples" / "simulated" / "data" / "simulated.csv").drop(columns="y").to_csv(broken_data, index=False)
    specs.append(copy_spec(sim, d / "broken", data_path=broken_data, title="Broken study"))
    out = d / "SITE"
    res = hetreport("run", *specs, "--out", out, "--no-quarto", "--no-progress", "--workers", "2")
    return {"dir": d, "out": out, "res": res, "specs": specs}


@pytest.mark.slow
def test_a_failed_study_makes_the_exit_code_nonzero_but_the_site_is_written(programme):
    res, out = programme["res"], programme["out"]
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert "1 of 3 studies failed" in res.stderr
    assert f"INDEX: {out / 'site' / 'index.html'}" in res.stdout
    meta = json.loads((out / "project.json").read_text())
    assert [s["status"] for s in meta["studies"]] == ["ok", "ok", "error"]
    assert [s["slug"] for s in meta["studies"]] == ["tomz-weeks", "simulated", "broken"]
    assert not list(out.parent.glob(".SITE-*"))  # the temporary build folder was swapped in, nothing left over


@pytest.mark.slow
def test_every_study_has_its_results_page_and_pdf(programme):
    from pypdf import PdfReader

    site = programme["out"] / "site"
    for slug, title in (("tomz-weeks", "Military alliances"), ("simulated", "Simulated")):
        results = programme["out"] / "studies" / slug
        for name in ("effects.csv", "summary.json", "manifest.json", "spec.yml"):
            assert (results / name).is_file(), (slug, name)
        page = soup_of(site / slug / "report.html")
        assert title in page.title.get_text()
        assert (site / slug / "report.qmd").is_file() and list((site / slug / "figures").glob("*.png"))
        pdf = PdfReader(str(site / slug / "report.pdf"))
        assert len(pdf.pages) > 3 and title.split()[0] in pdf.pages[0].extract_text()
        assert not (site / slug / "_quarto.yml").exists()  # one _quarto.yml, at the top of the project
    assert not (site / "broken").exists() and not (programme["out"] / "studies" / "broken").exists()


@pytest.mark.slow
def test_the_index_puts_the_headline_numbers_side_by_side(programme):
    out = programme["out"]
    soup = soup_of(out / "site" / "index.html")
    table = next(t for t in soup.find_all("table") if "Average effect" in t.get_text())
    header = [re.sub(r"\s+", " ", th.get_text(" ", strip=True)) for th in table.find_all("th")]
    assert header[:4] == ["Study", "Analysis", "N", "Groups"] and "Diagnostics" in header[-1]
    body = [[re.sub(r"\s+", " ", td.get_text(" ", strip=True)) for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]
    assert len(body) == 3  # one row per analysis; the broken study has none
    facts = [
        (slug, f)
        for slug in ("tomz-weeks", "simulated")
        for f in json.loads((out / "studies" / slug / "summary.json").read_text()).values()
    ]
    assert [f["analysis"] for _, f in facts] == ["scenario", "respondents", "simulated"]
    assert body[0][0].startswith("Military alliances") and body[1][0] == "" and body[2][0].startswith("Simulated")
    assert [r[1] for r in body] == ["Differences by experimental scenario", "Who responds to alliances", "Recovering known group effects"]
    for row, (_slug, f) in zip(body, facts):
        assert row[2] == fmt.count(f["n"]) and row[3] == fmt.count(f["n_groups"])
        iv = lambda d: f"{fmt.num(d['estimate'])} ({fmt.num(d['lower'])} to {fmt.num(d['upper'])})"  # noqa: E731
        assert row[4] == iv(f["average"])
        assert row[5] == f"{fmt.num(f['smallest']['effect']['estimate'])} to {fmt.num(f['largest']['effect']['estimate'])}"
        assert row[6] == iv(f["sigma_theta"])
        assert row[7].startswith("OK" if f["diagnostics_ok"] else "check")
    assert body[1][3] == "100" and body[0][3] == "32"  # 2x2x5x5 respondent groups; 2x2x2x4 scenario cells
    links = {a["href"] for a in table.find_all("a")}
    for slug in ("tomz-weeks", "simulated"):
        assert {f"{slug}/report.html", f"{slug}/report.pdf"} <= links
    for a in soup.find_all("a", href=True):  # every relative link of the index resolves inside the site
        if not a["href"].startswith(("#", "http")):
            target, _, anchor = a["href"].partition("#")
            assert (out / "site" / target).is_file(), a["href"]
            if anchor:  # "check (k warnings)" opens that analysis's diagnostics section
                assert target.endswith(".html") and soup_of(out / "site" / target).find(id=anchor), a["href"]


@pytest.mark.slow
def test_the_index_shows_the_failed_studys_error(programme):
    soup = soup_of(programme["out"] / "site" / "index.html")
    text = text_of(soup)
    assert "Studies that failed" in text and "Broken study" in text
    meta = json.loads((programme["out"] / "project.json").read_text())
    error = meta["studies"][2]["error"]
    assert f"{meta['studies'][2]['error_kind']} in" in text and "no column 'y'" in text
    assert "'y'" in error and re.sub(r"\s+", " ", error) in text  # the whole paragraph, literally


@pytest.mark.slow
def test_hostile_titles_show_literally_on_the_index(programme):
    soup = soup_of(programme["out"] / "site" / "index.html")
    assert EVIL in text_of(soup)
    assert not any("alert" in (s.string or "") for s in soup.find_all("script"))


@pytest.mark.slow
def test_the_site_is_one_quarto_project(programme):
    site = programme["out"] / "site"
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("_quarto.yml")) == ["_quarto.yml"]
    config = yaml.safe_load((site / "_quarto.yml").read_text())
    assert config["project"]["type"] == "default" and {"html", "typst"} <= set(config["format"])
    front = yaml.safe_load((site / "index.qmd").read_text().split("---")[1])
    assert list(front["format"]) == ["html"]  # Quarto renders the index to HTML only, the study pages to every format
    for slug in ("tomz-weeks", "simulated"):
        qmd = (site / slug / "report.qmd").read_text()
        assert "format:" not in qmd.split("---")[1]  # the study pages take _quarto.yml's formats
        for fig in re.findall(r"\]\((figures/[^)]+)\)", qmd):
            assert (site / slug / (fig + ".png")).is_file() and (site / slug / (fig + ".svg")).is_file()


# --------------------------------------------------------------------------- folders, Dask, atomic swap


@pytest.mark.slow
def test_a_folder_of_specs_from_the_command_line(tmp_path):
    specs = tmp_path / "specs"
    tiny_spec(specs / "good.yml", title="Good <b>study</b>")
    tiny_spec(specs / "bad.yml", data="gone.csv")
    late = tiny_spec(specs / "late.yml", title="Report fails")  # fits, then its (user) template breaks
    (specs / "tpl").mkdir()
    (specs / "tpl" / "report.qmd.j2").write_text("# {{ no_such_value }}\n")
    raw = yaml.safe_load(late.read_text())
    raw["report"]["templates"] = "tpl"
    late.write_text(yaml.safe_dump(raw))
    (specs / "design.yml").write_text((REPO / "examples" / "simulation" / "paper.yml").read_text())
    res = hetreport("run", specs, "--out", tmp_path / "site", "--no-quarto", "--no-progress")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "skipping" in res.stderr and "design.yml" in res.stderr
    meta = json.loads((tmp_path / "site" / "project.json").read_text())
    assert {s["slug"]: s["status"] for s in meta["studies"]} == {"bad": "error", "good": "ok", "late": "error"}
    soup = soup_of(tmp_path / "site" / "site" / "index.html")
    text = text_of(soup)
    assert "Good <b>study</b>" in text and "gone.csv" in text and not soup.find("b", string="study")
    # a study whose report failed after the fit keeps its results, and the index says how to re-render them
    assert (tmp_path / "site" / "studies" / "late" / "effects.parquet").is_file() and not (tmp_path / "site" / "site" / "late").exists()
    assert "no_such_value" in text and "hetreport report studies/late" in text
    assert not (tmp_path / "site" / "studies" / "bad").exists()
    assert (tmp_path / "site" / "site" / "good" / "report.html").is_file()
    assert not (tmp_path / "site" / "site" / "good" / "report.pdf").exists()  # the spec asks for HTML only


@pytest.mark.slow
def test_studies_run_on_a_dask_cluster(tmp_path):
    from distributed import Client, LocalCluster

    tiny_spec(tmp_path / "one.yml", title="One")
    tiny_spec(tmp_path / "two.yml", title="Two", data="missing.csv")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        outcome = project.run_project(
            [tmp_path / "one.yml", tmp_path / "two.yml"], tmp_path / "site", fit=fit, route="builtin", client=client
        )
    assert [s.status for s in outcome.studies] == ["ok", "error"]
    assert outcome.failed[0].error_kind == "Data error" and "missing.csv" in outcome.failed[0].error
    assert (tmp_path / "site" / "site" / "one" / "report.html").is_file()
    assert (tmp_path / "site" / "studies" / "one" / "effects.parquet").is_file()
    assert "Dask" in json.loads((tmp_path / "site" / "project.json").read_text())["where"]


@pytest.mark.slow
def test_a_crash_while_writing_the_site_leaves_the_old_site(tmp_path, monkeypatch):
    tiny_spec(tmp_path / "a.yml", data="missing-a.csv")  # fails fast: no fit needed to build a site
    tiny_spec(tmp_path / "b.yml", data="missing-b.csv")
    out = tmp_path / "site"
    first = run_project([tmp_path / "a.yml", tmp_path / "b.yml"], out, fit=fit, route="builtin", workers=1)
    assert len(first.failed) == 2 and first.index.is_file()
    before = first.index.read_text()

    def crash(site, route):
        raise RuntimeError("disk full")

    monkeypatch.setattr(project, "render_index", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        run_project([tmp_path / "a.yml"], out, fit=fit, route="builtin", workers=1)
    assert first.index.read_text() == before
    assert len(json.loads((out / "project.json").read_text())["studies"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folder left
