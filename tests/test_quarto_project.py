"""The report project as a user's Quarto sees it, and the same project on the builtin route.

Quarto cannot be installed here, so the properties that made real Quarto 1.11 fail or leak are
tested on the generated files: dates, the mock report's marking, shortcodes from a spec or data
file (checked with tests/quarto_shortcodes.py, hetreport's own checker written from Quarto's
documented shortcode syntax), the route line of the appendix, and _quarto.yml. The builtin route
renders the same project for real.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from hetreport.report import render
from hetreport.report.format import code_block, code_inert, md, yaml_date, yaml_md
from tests import quarto_shortcodes

REPO = Path(__file__).resolve().parents[1]

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="stand-in quarto is a POSIX shell script")

# Hostile text: Quarto shortcodes that read the environment, files and metadata, and an opening
# "{{<" that is never closed (Quarto's scan stops there and drops the rest of the document).
HOSTILE = [
    "{{< env HOME >}}",
    "{{< include x >}}",
    "{{< meta title >}}",
    "{{< include ../../../etc/hostname >}}",
    "{{<env HOME>}}",
    "{{{< var x >}}}",
    "unclosed {{< here",
    "stray >}} close",
]


def pandoc() -> str:
    import pypandoc

    return pypandoc.get_pandoc_path()


def as_quarto(qmd: Path) -> dict:
    """Quarto's shortcode passes over a .qmd: {lost, raw, code, meta} (see tests/quarto_shortcodes.py)."""
    return quarto_shortcodes.as_quarto(qmd, pandoc())


_BLOCK_SHORTCODE = re.compile(r"^\s*{{< (?!/\*)(.+?)(?<!\*/) >}}\s*$")  # Quarto's isBlockShortcode (parse-shortcode.ts)


def block_shortcodes(text: str) -> list[str]:
    """Lines Quarto's TypeScript stage treats as a block shortcode ({{< include >}} reads a file there)."""
    return [line for line in text.splitlines() if _BLOCK_SHORTCODE.match(line)]


def fake_quarto(path: Path, version: str = "1.11.0") -> Path:
    """Answers `quarto --version` only: enough to build a project for the Quarto route."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\nexit 2\n', encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# --------------------------------------------------------------------------- unit level


def test_checker_sees_shortcodes_as_documented(tmp_path):
    """The checker itself: it finds what Quarto documents as a shortcode, and not the escaped forms."""
    qmd = tmp_path / "c.qmd"
    qmd.write_text(
        "---\ntitle: 'T {{< meta x >}}'\n---\n\nA {{< env HOME >}} and {{<env HOME>}} and "
        '{{< video "a >}}b" width=1 >}}; literal {{{< var v >}}} and {{</* var w */>}}.\n\n'
        "Code `x {{{< a >}}} {{< b >}}`.\n\n```{shortcodes=false}\n{{< c >}}\n```\n\nEnd.\n",
        encoding="utf-8",
    )
    seen = as_quarto(qmd)
    assert seen["raw"] == [
        "{{< meta x >}}",
        "{{< env HOME >}}",
        "{{<env HOME>}}",
        '{{< video "a >}}b" width=1 >}}',
        "{{< b >}}",
        "{{< c >}}",
    ]
    assert seen["code"] == ["x {{< a >}} <<SHORTCODE {{< b >}}>>", "{{< c >}}"]
    assert seen["meta"] == ["{{<", ">}}"] and seen["lost"] == 0  # title words "{{<" meta x ">}}"
    text = qmd.read_text()
    qmd.write_text(text + "Then {{< unclosed\n\nmore.\n", encoding="utf-8")
    assert as_quarto(qmd)["lost"] == len("{{< unclosed\n\nmore.\n")
    qmd.write_text(text + "Then {{{< unclosed escape\n", encoding="utf-8")
    assert as_quarto(qmd)["lost"] == len("{{{< unclosed escape\n")


def test_dates_are_plain_iso_strings():
    assert yaml_date("2026-12-06") == '"2026-12-06"'
    assert yaml.safe_load(f"date: {yaml_date('2026-12-06')}")["date"] == "2026-12-06"
    # Not a date: written as escaped text, never as markup.
    assert yaml_date("<b>soon</b>") == yaml_md("<b>soon</b>")


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_is_inert_and_unchanged(tmp_path, text):
    """In prose and in the title, Quarto finds no shortcode and pandoc shows the text itself."""
    qmd = tmp_path / "t.qmd"
    qmd.write_text(f"---\ntitle: {yaml_md('T ' + text)}\n---\n\nBefore {md(text)} after.\n\nLast paragraph.\n", encoding="utf-8")
    seen = as_quarto(qmd)
    assert seen["lost"] == 0 and seen["raw"] == [] and seen["meta"] == []
    assert block_shortcodes(qmd.read_text()) == []
    plain = subprocess.run([pandoc(), str(qmd), "-t", "plain", "-s"], capture_output=True, text=True, check=True).stdout
    assert f"Before {text} after." in " ".join(plain.split()) and f"T {text}" in " ".join(plain.split())


@pytest.mark.parametrize("text", HOSTILE + ["# {{< env SECRET >}}\nlabel: {{< include x >}}\n  {{< include ../../../etc/hostname >}}\n"])
def test_code_text_shows_as_itself_on_both_routes(tmp_path, text):
    """Code blocks and inline code: Quarto shows the original text (no shortcode runs, nothing is
    cut off), and the builtin route's filter shows the same."""
    qmd = tmp_path / "t.qmd"
    inline = code_inert(text.replace("\n", " "))
    qmd.write_text(f"Inline `{inline}` code.\n\n{code_block(text)}\n\nLast paragraph.\n", encoding="utf-8")
    seen = as_quarto(qmd)
    assert seen["lost"] == 0 and seen["raw"] == []
    assert block_shortcodes(qmd.read_text()) == []
    shown = [s.replace("\u2060", "") for s in seen["code"]]  # the word joiner of an unclosed "{{<" is invisible
    assert shown == [text.replace("\n", " ").strip(), text.rstrip()]  # pandoc trims inline code
    filt = REPO / "hetreport" / "report" / "filters" / "hetreport.lua"
    native = subprocess.run(
        [pandoc(), str(qmd), "--lua-filter", str(filt), "-t", "json"], capture_output=True, text=True, check=True
    ).stdout
    assert [s.replace("\u2060", "") for s in _code_texts(json.loads(native)["blocks"])] == shown


def _code_texts(node) -> list[str]:
    """The text of every Code and CodeBlock in pandoc's JSON AST, in document order."""
    if isinstance(node, list):
        return [t for item in node for t in _code_texts(item)]
    if isinstance(node, dict):
        if node.get("t") in ("Code", "CodeBlock"):
            return [node["c"][1]]
        return _code_texts(node.get("c", []))
    return []


def test_word_joiner_only_where_no_literal_form_exists():
    assert code_inert("a {{< b >}} c") == "a {{{< b >}}} c"
    assert "\u2060" not in code_inert("{{< x >}} and {{< y >}}")
    assert code_inert("open {{< and never closed") == "open {\u2060{< and never closed"
    assert code_inert("no shortcode {{ at }} all") == "no shortcode {{ at }} all"


def test_builtin_reads_include_in_header_and_refuses_files_outside(tmp_path):
    work = tmp_path / "p"
    work.mkdir()
    (work / "h.typ").write_text("// mine\n")
    args = render._header_includes({"include-in-header": [{"text": "#let a = 1\n"}, {"file": "h.typ"}, "h.typ"]}, work, ".typ")
    files = args[1::2]
    assert args[0::2] == ["--include-in-header"] * 3
    assert Path(files[0]).read_text() == "#let a = 1\n" and Path(files[1]) == (work / "h.typ").resolve()
    (tmp_path / "outside.typ").write_text("// no\n")
    with pytest.raises(render.RenderError, match="include-in-header"):
        render._header_includes({"include-in-header": [{"file": "../outside.typ"}]}, work, ".typ")


# --------------------------------------------------------------------------- the mock report's marking


def _long_project(target: Path) -> Path:
    target.mkdir(parents=True)
    (target / "_quarto.yml").write_text((REPO / "_quarto.yml").read_text(encoding="utf-8"), encoding="utf-8")
    body = "\n\n".join(f"# Section {k} {{#sec-s{k}}}\n\n" + ("Words in a paragraph that fills the page. " * 60) for k in range(6))
    (target / "report.qmd").write_text(f'---\ntitle: "Study"\ndate: "2026-12-06"\n---\n\n{body}\n', encoding="utf-8")
    return target


def test_mock_marking_is_applied_on_every_page_of_both_routes(tmp_path):
    from pypdf import PdfReader

    from hetreport.prereg.appendix import MARK, stamp_simulated

    project = _long_project(tmp_path / "report")
    stamp_simulated(project, "Study")
    qmd = (project / "report.qmd").read_text(encoding="utf-8")
    front = yaml.safe_load(qmd.split("\n---\n")[0][4:])
    # Quarto (typst) drops a document-level header-includes raw block: no such thing is written...
    assert "header-includes" not in front and "{=typst}" not in qmd
    # ...the marking is include-in-header text in _quarto.yml, which Quarto's typst format applies.
    config = yaml.safe_load((project / "_quarto.yml").read_text(encoding="utf-8"))
    includes = config["format"]["typst"]["include-in-header"]
    assert all(set(entry) == {"text"} for entry in includes)
    assert any("#set page(header:" in e["text"] and "SIMULATED DATA — NOT RESULTS" in e["text"] for e in includes)
    assert any("breakable: true" in e["text"] for e in includes)  # hetreport's own entry is kept
    assert front["title"].startswith(md(MARK))
    outcome = render.render_project(project, route="builtin")
    pages = PdfReader(str(outcome.outputs["pdf"])).pages
    assert len(pages) >= 3
    assert all("SIMULATED DATA — NOT RESULTS" in p.extract_text() for p in pages)
    html = outcome.outputs["html"].read_text(encoding="utf-8")
    assert 'class="hetreport-simulated"' in html and "position: sticky" in html


# --------------------------------------------------------------------------- _quarto.yml


def test_quarto_yml_is_complete_for_both_formats():
    config = yaml.safe_load((REPO / "_quarto.yml").read_text(encoding="utf-8"))
    assert config["project"] == {"type": "default"}
    assert config["number-sections"] is True  # @sec- references need numbered sections
    html, typst = config["format"]["html"], config["format"]["typst"]
    assert html["embed-resources"] is True and html["html-math-method"] == "mathml"
    assert html["toc"] is True and html["toc-location"] == "left"
    assert typst["toc"] is False and typst["default-image-extension"] == "png"
    for entry in typst["include-in-header"] + html.get("include-in-header", []):
        assert set(entry) == {"text"}  # no file to ship, nothing read from outside the project


# --------------------------------------------------------------------------- a hostile study, end to end


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A small fitted study whose spec and data carry Quarto shortcodes everywhere text goes."""
    from hetreport.api import fit
    from hetreport.simstudy.paper import simulate_study

    d = tmp_path_factory.mktemp("hostile")
    sim = simulate_study(n=500, sd=0.25, probs=(0.5, 0.5), coef_mean=0.0, seed=5)
    sim.data.to_csv(d / "sim.csv", index=False)
    (d / "spec.yml").write_text(
        "# {{< env SECRET >}} in a comment\n"
        "title: 'Study {{< env HOME >}} {{< meta title >}}'\n"
        "subtitle: |-\n  {{< include x >}}\n"
        "data: {path: sim.csv}\n"
        "outcome: y\ntreatment: treat\n"
        "labels:\n"
        "  variables: {m1: '{{< include ../../../etc/hostname >}}', m2: 'Second {{<env HOME>}}', y: Outcome, treat: Treatment}\n"
        "  levels:\n"
        "    m1: {0: 'unclosed {{< here', 1: 'stray >}} close'}\n"
        "analyses:\n  - name: sim\n    title: 'Analysis {{{< var x >}}}'\n    modifiers: [m1, m2]\n"
        "report: {units: '{{< env HOME >}} people', author: '{{< meta author >}}'}\n"
        "sampler: {draws: 200, tune: 300, chains: 2, seed: 3}\n",
        encoding="utf-8",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = fit(d / "spec.yml")
    return d, results


@pytest.fixture
def quarto_1_11(tmp_path, monkeypatch):
    quarto = fake_quarto(tmp_path / "qbin" / "quarto")
    monkeypatch.setenv("QUARTO_PATH", str(quarto))
    render._quarto_version.cache_clear()
    yield quarto
    render._quarto_version.cache_clear()


@pytest.mark.slow
@posix_only
def test_quarto_project_from_a_hostile_spec(hostile, tmp_path, quarto_1_11):
    from hetreport.report.build import build_project

    _, results = hostile
    project = build_project(results, tmp_path / "report", route="quarto")
    qmd = project / "report.qmd"
    text = qmd.read_text(encoding="utf-8")
    seen = as_quarto(qmd)
    assert seen["lost"] == 0, "Quarto's scan would drop the end of the document"
    assert seen["raw"] == ["{{< pagebreak >}}"] * len(seen["raw"]) and seen["raw"]  # only hetreport's own
    assert seen["meta"] == []
    assert block_shortcodes(text) == ["{{< pagebreak >}}"] * len(block_shortcodes(text))
    assert not any("<<SHORTCODE" in c for c in seen["code"])
    # The spec is printed as it is (Quarto shows the escaped form as the original)...
    spec_shown = [c for c in seen["code"] if "in a comment" in c]
    assert spec_shown and spec_shown[0].replace("\u2060", "") == results.spec.source_text.rstrip()
    # ...the date is a plain ISO string, the route line names Quarto's version and no path.
    front = yaml.safe_load(text.split("\n---\n")[0][4:])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", front["date"])
    assert "quarto 1.11.0" in text and str(quarto_1_11) not in text and str(quarto_1_11.parent) not in text


@pytest.mark.slow
def test_builtin_route_shows_hostile_text_literally(hostile, tmp_path):
    from bs4 import BeautifulSoup

    from hetreport.report import build_and_render

    d, results = hostile
    outcome = build_and_render(results, tmp_path / "out", route="builtin")
    soup = BeautifulSoup(outcome.outputs["html"].read_text(encoding="utf-8"), "html.parser")
    shown = " ".join(soup.get_text(" ").split()).replace("\u2060", "")
    assert soup.title.get_text().startswith("Study {{< env HOME >}} {{< meta title >}}")
    for text in (
        "{{< include x >}}",
        "{{< include ../../../etc/hostname >}}",
        "Second {{<env HOME>}}",
        "unclosed {{< here",
        "stray >}} close",
        "Analysis {{{< var x >}}}",
        "{{< env HOME >}} people",
        "# {{< env SECRET >}} in a comment",
    ):
        assert text in shown, text
    assert "{{{{" not in shown and "{{{< env" not in shown  # no escape form is left visible
    blocks = [b.get_text() for b in soup.find_all("pre")]
    assert any(b.replace("\u2060", "").strip() == results.spec.source_text.strip() for b in blocks)


def test_table_style_comes_from_quarto_yml_on_both_routes(tmp_path):
    """One table style: Quarto applies _quarto.yml's typst include-in-header; the builtin route
    gets the same text as a header include (and its template does not carry a second copy)."""
    config = yaml.safe_load((REPO / "_quarto.yml").read_text(encoding="utf-8"))
    shared = "\n".join(e["text"] for e in config["format"]["typst"]["include-in-header"])
    assert "#set table(" in shared and "inset: (x: 5pt, y: 3.2pt)" in shared
    template = (REPO / "hetreport" / "report" / "assets" / "hetreport.typst").read_text(encoding="utf-8")
    assert "#set table(" not in template and "#set align(center)" in template  # centred title, as Quarto's
    project = tmp_path / "p"
    project.mkdir()
    (project / "_quarto.yml").write_text((REPO / "_quarto.yml").read_text(encoding="utf-8"), encoding="utf-8")
    (project / "report.qmd").write_text('---\ntitle: "T"\n---\n\n| a | b |\n|---|--:|\n| x | 1 |\n\n: Cap {#tbl-x}\n', encoding="utf-8")
    render._render_builtin_pdf(project, "report.qmd", __import__("time").monotonic() + 300)
    typ = (project / "report.typ").read_text(encoding="utf-8")
    assert typ.count("#set table(") == 1 and "inset: (x: 5pt, y: 3.2pt)" in typ
    assert typ.index("#set table(") < typ.index("#table(")


# --------------------------------------------------------------------------- the wheel's contents


def test_wheel_configuration_ships_every_package_and_template():
    """pyproject.toml lists the packages by name (hetreport._data has no folder of its own) and
    ships templates/ and _quarto.yml by glob: every package and every template must be covered.
    (.ci/run builds the wheel and renders an example through it.)"""
    import fnmatch
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = set(config["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "hetreport").rglob("__init__.py")}
    assert found <= packages and packages - found == {"hetreport._data"}
    assert config["package-dir"] == {"hetreport._data": "."}
    globs = config["package-data"]["hetreport._data"]
    shipped = [p.relative_to(REPO).as_posix() for p in [REPO / "_quarto.yml", *(REPO / "templates").rglob("*")] if p.is_file()]
    assert all(any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs) for f in shipped)
    assert "py.typed" in config["package-data"]["hetreport"] and (REPO / "hetreport" / "py.typed").is_file()


def test_resources_are_found_and_version_is_the_distributions():
    from importlib.metadata import version

    import hetreport
    from hetreport.resources import quarto_yml, templates_dir

    assert (templates_dir() / "report.qmd.j2").is_file() and quarto_yml().name == "_quarto.yml"
    assert hetreport.__version__ == version("hetreport")
