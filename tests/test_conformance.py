"""Conformance with a pre-registration (issue 8): the diff, the record checks, page one.

The end-to-end tests register the Tomz-Weeks design (examples/tomz-weeks/design.yml) and run
the real Tomz-Weeks spec against it, as is and with one modifier dropped, with the sampler
reduced to 2 chains x 200 draws in *both* files (so the pair still conforms), the ordinal
analysis's own 2000 + 2000 too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hetreport.cli import main
from hetreport.conformance import check, compare, load_record
from hetreport.errors import SpecError
from hetreport.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples" / "tomz-weeks"
SAMPLER = "sampler: {draws: 1000, tune: 1000, chains: 4, seed: 2021}"
SMALL_SAMPLER = "sampler: {draws: 200, tune: 200, chains: 2, seed: 2021}"
ORDINAL_SAMPLER = "sampler: {tune: 2000, draws: 2000}"  # the ordinal analysis's own, also shrunk in both files


def _write_pair(d: Path) -> tuple[Path, Path, Path]:
    """design.yml's registration record, the real spec and the spec with hawk_r dropped from 'respondents'."""
    from hetreport.prereg.appendix import registration_record
    from hetreport.prereg.plan import resolve_plan

    d.mkdir(parents=True, exist_ok=True)
    design = (EX / "design.yml").read_text()
    spec = (EX / "spec.yml").read_text()
    assert SAMPLER in design and SAMPLER in spec and ORDINAL_SAMPLER in design and ORDINAL_SAMPLER in spec
    (d / "design.yml").write_text(design.replace(SAMPLER, SMALL_SAMPLER).replace(ORDINAL_SAMPLER, "sampler: {tune: 200, draws: 200}"))
    spec = (
        spec.replace(SAMPLER, SMALL_SAMPLER)
        .replace(ORDINAL_SAMPLER, "sampler: {tune: 200, draws: 200}")
        .replace("path: data/", f"path: {EX}/data/")
    )
    (d / "spec.yml").write_text(spec)
    i = spec.index("name: respondents\n")
    (d / "dropped.yml").write_text(
        spec[:i] + spec[i:].replace("modifiers: [white, male, intl, hawk_r]", "modifiers: [white, male, intl]", 1)
    )
    dspec = load_spec(d / "design.yml")
    reg = d / "registration"
    reg.mkdir()
    (reg / "registration.json").write_text(
        json.dumps(registration_record(dspec, resolve_plan(dspec), "2026-01-02T03:04:05+00:00"), default=str)
    )
    return reg, d / "spec.yml", d / "dropped.yml"


# --------------------------------------------------------------------------- the diff


def test_real_spec_conforms_to_the_tomz_weeks_design():
    record = {"spec": load_spec(EX / "design.yml").canonical()}
    diff = compare(record["spec"], load_spec(EX / "spec.yml").canonical())
    assert diff["deviations"] == [] and diff["cosmetic"] == []
    assert diff["unregistered"] and diff["unregistered"][0].startswith("data.derive")


def test_readable_deviations():
    reg = load_spec(EX / "design.yml").canonical()
    cur = copy.deepcopy(load_spec(EX / "spec.yml").canonical())
    cur["analyses"][1]["modifiers"].remove("hawk_r")
    cur["priors"]["sd"] = "halfnormal(0.5)"
    cur["family"] = "bernoulli"
    cur["analyses"][0]["filter"] = "age >= 18"
    cur["title"] = "Another title"
    cur["analyses"].append({**cur["analyses"][0], "name": "extra"})
    texts = [d["text"] for d in compare(reg, cur)["deviations"]]
    assert "analyses[respondents].modifiers: dropped `hawk_r`" in texts
    assert "priors.sd: halfnormal(1) → halfnormal(0.5)" in texts
    assert "family: gaussian → bernoulli" in texts
    assert "analyses[scenario].filter: default → age >= 18" in texts
    assert "analyses: added `extra`, which was not registered" in texts
    assert compare(reg, cur)["cosmetic"] == ["title"]


def test_data_filter_change_against_a_registered_data_block():
    cur = load_spec(EX / "spec.yml").canonical()
    reg = copy.deepcopy(cur)
    cur = copy.deepcopy(cur)
    cur["data"]["filter"] = "gender != 8"
    texts = [d["text"] for d in compare(reg, cur)["deviations"]]
    assert texts == ["data.filter changed: default → gender != 8"]


def test_exploratory_scope(tmp_path):
    reg, spec, dropped = _write_pair(tmp_path)
    conf = check(load_spec(dropped), reg)
    assert not conf["as_registered"]
    assert conf["analysis_status"]["respondents"] == "exploratory"
    assert {k for k, v in conf["analysis_status"].items() if v != "as registered"} == {"respondents"}
    assert check(load_spec(spec), reg)["as_registered"]


# --------------------------------------------------------------------------- the record


def test_missing_record_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_record(tmp_path / "nowhere")


def test_unreadable_record_is_an_error(tmp_path):
    (tmp_path / "registration.json").write_text("{not json")
    with pytest.raises(SpecError, match="cannot be read as JSON"):
        load_record(tmp_path)


def test_altered_record_is_an_error(tmp_path):
    reg, spec, _ = _write_pair(tmp_path)
    rec = json.loads((reg / "registration.json").read_text())
    rec["spec"]["analyses"][1]["modifiers"].remove("hawk_r")  # edited to match a deviating analysis
    (reg / "registration.json").write_text(json.dumps(rec))
    with pytest.raises(SpecError, match="altered"):
        check(load_spec(spec), reg)


def test_spec_key_is_read_relative_to_the_spec(tmp_path):
    reg, spec, _ = _write_pair(tmp_path)
    text = spec.read_text() + "preregistration: registration\n"
    spec.write_text(text)
    assert check(load_spec(spec))["as_registered"]


def test_run_with_a_bad_record_writes_nothing(tmp_path, capsys):
    _, spec, _ = _write_pair(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--preregistration", str(tmp_path / "missing")]) == 2
    assert "pre-registration record" in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- end to end


def _first_page(pdf: Path) -> str:
    from pypdf import PdfReader

    return " ".join(PdfReader(pdf).pages[0].extract_text().split())


def _section_text(html, sec_id: str) -> str:
    """A section's text: Quarto puts the id on a <section>, pandoc's HTML writer on the heading."""
    tag = html.find(id=sec_id)
    assert tag is not None, sec_id
    if tag.name == "section":
        return tag.get_text(" ")
    parts = [tag.get_text(" ")]
    for sib in tag.find_next_siblings():
        if sib.name == tag.name:
            break
        parts.append(sib.get_text(" "))
    return " ".join(parts)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return _write_pair(tmp_path_factory.mktemp("conformance"))


@pytest.mark.slow
def test_as_pre_registered_on_page_one(pair, capsys):
    reg, spec, _ = pair
    out = spec.parent / "out-real"
    assert main(["run", str(spec), "--out", str(out), "--preregistration", str(reg)]) == 0
    page = _first_page(out / "report" / "report.pdf")
    h12 = json.loads((reg / "registration.json").read_text())["spec_hash"][:12]
    assert f"Analysis as pre-registered (record {h12}, 2026-01-02)" in page
    assert "Deviations" not in page
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conformance"]["as_registered"] is True


@pytest.mark.slow
def test_dropped_modifier_on_page_one_and_rerender(pair):
    from bs4 import BeautifulSoup

    reg, _, dropped = pair
    out = dropped.parent / "out-dropped"
    assert main(["run", str(dropped), "--out", str(out), "--preregistration", str(reg / "registration.json")]) == 0
    page = _first_page(out / "report" / "report.pdf")
    assert "Deviations from the pre-registration" in page
    assert "analyses[respondents].modifiers: dropped hawk_r" in page
    assert "as pre-registered" not in page
    html = BeautifulSoup((out / "report" / "report.html").read_text(), "html.parser")
    assert "exploratory in full" in _section_text(html, "sec-deviations")
    # the conformance is stored with the results: `hetreport report` re-renders it without the record
    (out / "report" / "report.pdf").unlink()
    assert main(["report", str(out), "--format", "pdf"]) == 0
    assert "analyses[respondents].modifiers: dropped hawk_r" in _first_page(out / "report" / "report.pdf")
