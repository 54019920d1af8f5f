"""Rendering stage: hetreport.report.render.

The builtin route runs for real (pandoc from pypandoc-binary, the typst
wheel). Real Quarto is not installed here, so the Quarto route is exercised
with small stand-in executables that behave like ``quarto`` on the command
line (version, exit code, stderr, output file), which checks how hetreport
finds, calls and reports on Quarto.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from hetreport.errors import HetreportWarning, RenderError
from hetreport.report import render
from hetreport.report.render import RenderOutcome, describe_route, find_quarto, render_project

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "render_project"
QUARTO_YML = REPO / "_quarto.yml"

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="stand-in quarto is a POSIX shell script")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def write_figures(figures: Path) -> None:
    """Two figures as the builder writes them: SVG for HTML, PNG (200 dpi) for PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figures.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), sharey=True)
    for ax, name in zip(axes, ["Interaction", "Hierarchical"]):
        y = np.arange(10)
        x = rng.normal(0.3, 0.4, 10)
        ax.errorbar(x, y, xerr=0.4, fmt="o")
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(name)
    fig.tight_layout()
    fig.savefig(figures / "fig-comparison.svg")
    fig.savefig(figures / "fig-comparison.png", dpi=200)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(rng.gamma(2, 0.2, 2000), bins=40)
    ax.set_xlabel("sigma_theta")
    fig.tight_layout()
    fig.savefig(figures / "fig-draws.svg")
    fig.savefig(figures / "fig-draws.png", dpi=200)
    plt.close(fig)


def make_project(target: Path) -> Path:
    """The fixture report.qmd, the repository's _quarto.yml and fresh figures."""
    shutil.copytree(FIXTURE, target)
    shutil.copyfile(QUARTO_YML, target / "_quarto.yml")
    write_figures(target / "figures")
    return target


def small_project(target: Path, body: str, title: str = "Small") -> Path:
    target.mkdir(parents=True)
    shutil.copyfile(QUARTO_YML, target / "_quarto.yml")
    (target / "report.qmd").write_text(f'---\ntitle: "{title}"\n---\n\n{body}\n', encoding="utf-8")
    return target


class Tree(HTMLParser):
    """Every start tag with its attributes, the text inside each tag, and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.styles: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, text) of <a>
        self.text_parts: list[str] = []  # visible text
        self._stack: list[str] = []
        self._a: list[list[str]] = []
        self._a_href: list[str] = []
        self._elements: list[tuple[dict[str, str], list[str]]] = []

    def handle_starttag(self, tag, attrs):
        attributes = {k: (v or "") for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag in ("img", "br", "hr", "meta", "link", "input", "col", "source"):
            return
        self._stack.append(tag)
        self._elements.append((attributes, []))
        if tag == "a":
            self._a.append([])
            self._a_href.append(attributes.get("href", ""))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, {k: (v or "") for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag == "a" and self._a:
            self.links.append((self._a_href.pop(), "".join(self._a.pop())))
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data):
        if self._stack and self._stack[-1] == "style":
            self.styles.append(data)
        elif not (self._stack and self._stack[-1] in ("script", "annotation")):
            self.text_parts.append(data)
        for parts in self._a:
            parts.append(data)

    @property
    def text(self) -> str:
        return norm("".join(self.text_parts))

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]

    def by_id(self, ident: str) -> list[tuple[str, dict[str, str]]]:
        return [(t, a) for t, a in self.tags if a.get("id") == ident]


def parse_html(path: Path) -> Tree:
    tree = Tree()
    tree.feed(path.read_text(encoding="utf-8"))
    tree.close()
    return tree


def norm(text: str) -> str:
    """Text as a reader sees it: ligatures split, non-breaking spaces plain."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def squash(text: str) -> str:
    return "".join(norm(text).split())


def pdf_pages(pdf: Path, project: Path) -> list[str]:
    """Text of each PDF page: pypdf if installed, else poppler's pdftotext, else
    the Typst source the builtin route compiles (one 'page')."""
    try:
        import pypdf
    except ImportError:
        pypdf = None
    if pypdf is not None:
        reader = pypdf.PdfReader(str(pdf))
        return [norm(page.extract_text() or "") for page in reader.pages]
    if shutil.which("pdftotext"):
        out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True)
        pages = out.stdout.decode("utf-8", "replace").split("\f")
        return [norm(p) for p in pages if p.strip()]
    # Typst markup read as text: calls such as #strong[...] and #link(<x>)[...]
    # reduced to their text, escapes dropped, "~" a non-breaking space.
    source = typst_source(project).replace("#pagebreak(weak: true)", "")
    source = re.sub(r'#callout\(kind: "\w+", title: \[(.*?)\]\)\[', r"\1 ", source)
    source = re.sub(r"#[\w.]+(\([^()]*\))?\[", "", source).replace("]", "")
    return [norm(re.sub(r"\\(.)", r"\1", source).replace("~", " "))]


def typst_source(project: Path) -> str:
    """The .typ the builtin route writes for ``project`` (rendered in a scratch copy)."""
    work = project.parent / (project.name + "-typst-source")
    if not work.exists():
        shutil.copytree(project, work)
        render._render_builtin_pdf(work, "report.qmd", time.monotonic() + 300)
    return (work / "report.typ").read_text(encoding="utf-8")


def fake_quarto(path: Path, version: str = "1.6.40", fail: bool = False, log: Path | None = None) -> Path:
    """A stand-in ``quarto``: answers --version; `render X.qmd --to html|typst`
    writes X.html / X.pdf (or fails with a message on stderr)."""
    log_line = f'echo "$@" >> "{log}"' if log else ":"
    render_part = (
        'echo "ERROR: compilation failed: unknown variable: foo" >&2\n    echo "   at report.typ:12:3" >&2\n    exit 1'
        if fail
        else 'stem="${2%.qmd}"\n'
        '    case "$4" in\n'
        '      html) printf "<html><body>quarto %s</body></html>" "$stem" > "$stem.html" ;;\n'
        '      typst) printf "%%PDF-1.7 quarto" > "$stem.pdf" ;;\n'
        "    esac"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"{log_line}\n"
        'if [ "$1" = "--version" ]; then\n'
        f'  echo "{version}"\n'
        "  exit 0\n"
        "fi\n"
        'if [ "$1" = "render" ]; then\n'
        f"    {render_part}\n"
        "    exit 0\n"
        "fi\n"
        "exit 2\n",
        encoding="utf-8",
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def no_quarto(monkeypatch, tmp_path):
    """An environment with no Quarto anywhere hetreport looks."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("QUARTO_PATH", raising=False)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(render, "_quarto_from_python_package", lambda: None)
    render._quarto_version.cache_clear()
    yield
    render._quarto_version.cache_clear()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, RenderOutcome]:
    project = make_project(tmp_path_factory.mktemp("render") / "report")
    outcome = render_project(project, route="builtin")
    return project, outcome


# --------------------------------------------------------------------------
# Arguments and routes (no rendering)
# --------------------------------------------------------------------------


def test_unknown_format_lists_supported_ones(tmp_path):
    project = small_project(tmp_path / "p", "Hello.")
    with pytest.raises(RenderError) as err:
        render_project(project, formats=("html", "epub"), route="builtin")
    message = str(err.value)
    assert "epub" in message and "html" in message and "pdf" in message and "docx" in message
    assert not (project / "report.html").exists()


def test_unknown_route_and_missing_document(tmp_path):
    project = small_project(tmp_path / "p", "Hello.")
    with pytest.raises(RenderError, match="auto, quarto, builtin"):
        render_project(project, route="latex")
    with pytest.raises(RenderError, match="nothing to render"):
        render_project(project, document="other.qmd", route="builtin")
    with pytest.raises(RenderError, match="does not exist"):
        render_project(tmp_path / "nowhere", route="builtin")


def test_quarto_route_without_quarto_says_how_to_install(tmp_path, no_quarto):
    project = small_project(tmp_path / "p", "Hello.")
    assert find_quarto() is None
    with pytest.raises(RenderError) as err:
        render_project(project, route="quarto")
    message = str(err.value)
    assert "Install Quarto" in message
    assert "QUARTO_PATH" in message and "quarto-cli" in message
    assert "builtin" in message
    with pytest.raises(RenderError, match="Install Quarto"):
        describe_route("quarto")
    # auto falls back to the builtin route.
    assert describe_route("auto").startswith("pandoc ")


def test_describe_builtin_route():
    description = describe_route("builtin")
    assert description.startswith("pandoc 3.")
    assert " + typst " in description


@posix_only
def test_find_quarto_order(tmp_path, monkeypatch):
    env_quarto = fake_quarto(tmp_path / "env" / "quarto")
    path_quarto = fake_quarto(tmp_path / "onpath" / "quarto")
    package_quarto = fake_quarto(tmp_path / "site" / "quarto_cli" / "bin" / "quarto")
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.delenv("QUARTO_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    if render._quarto_from_python_package() is not None:
        pytest.skip("a real quarto-cli package is installed and would be found first")

    # The quarto-cli package layout (quarto_cli/bin/quarto), found without importing it.
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert find_quarto() == package_quarto

    monkeypatch.setenv("PATH", str(path_quarto.parent))
    assert find_quarto() == path_quarto

    monkeypatch.setenv("QUARTO_PATH", str(env_quarto))
    assert find_quarto() == env_quarto
    # QUARTO_PATH may also name the folder that holds bin/quarto.
    monkeypatch.setenv("QUARTO_PATH", str(tmp_path / "site" / "quarto_cli"))
    assert find_quarto() == package_quarto
    # A QUARTO_PATH that points nowhere is passed over.
    monkeypatch.setenv("QUARTO_PATH", str(tmp_path / "missing" / "quarto"))
    assert find_quarto() == path_quarto

    render._quarto_version.cache_clear()
    try:
        # The version only: the report's appendix shows no path of the machine that rendered it.
        assert describe_route("auto") == "quarto 1.6.40"
    finally:
        render._quarto_version.cache_clear()


@posix_only
def test_quarto_route_runs_quarto_render_per_format(tmp_path, monkeypatch, no_quarto):
    log = tmp_path / "calls.log"
    quarto = fake_quarto(tmp_path / "q" / "quarto", log=log)
    monkeypatch.setenv("QUARTO_PATH", str(quarto))
    project = small_project(tmp_path / "p", "Hello.")

    outcome = render_project(project, route="auto")

    assert outcome.route == "quarto 1.6.40" and str(quarto) not in outcome.route
    assert outcome.outputs == {"html": project / "report.html", "pdf": project / "report.pdf"}
    assert (project / "report.html").read_text() == "<html><body>quarto report</body></html>"
    assert (project / "report.pdf").read_bytes().startswith(b"%PDF")
    calls = log.read_text().splitlines()
    assert "render report.qmd --to html" in calls
    assert "render report.qmd --to typst" in calls


@posix_only
def test_quarto_failure_reports_stderr_and_keeps_outputs(tmp_path, monkeypatch, no_quarto):
    quarto = fake_quarto(tmp_path / "q" / "quarto", fail=True)
    monkeypatch.setenv("QUARTO_PATH", str(quarto))
    project = small_project(tmp_path / "p", "Hello.")
    (project / "report.pdf").write_bytes(b"%PDF old")

    with pytest.raises(RenderError) as err:
        render_project(project, formats=["pdf"], route="quarto")

    message = str(err.value)
    assert "PDF" in message and "quarto route" in message
    assert "unknown variable: foo" in message and "report.typ:12:3" in message
    assert "quarto check" in message
    assert str(quarto) in message  # an error names the executable that failed (the report never does)
    assert (project / "report.pdf").read_bytes() == b"%PDF old"


@posix_only
def test_quarto_time_limit(tmp_path, monkeypatch, no_quarto):
    quarto = tmp_path / "q" / "quarto"
    fake_quarto(quarto)
    sleep = shutil.which("sleep", path=os.defpath) or "/bin/sleep"  # PATH is emptied by no_quarto
    script = quarto.read_text().replace('if [ "$1" = "render" ]; then', f'if [ "$1" = "render" ]; then\n    "{sleep}" 60')
    quarto.write_text(script)
    monkeypatch.setenv("QUARTO_PATH", str(quarto))
    project = small_project(tmp_path / "p", "Hello.")
    started = time.monotonic()
    with pytest.raises(RenderError, match="did not finish within the time limit"):
        render_project(project, formats=["html"], route="quarto", timeout=2)
    assert time.monotonic() - started < 30
    assert not (project / "report.html").exists()


@posix_only
def test_old_quarto_is_not_used(tmp_path, monkeypatch, no_quarto):
    quarto = fake_quarto(tmp_path / "q" / "quarto", version="1.3.450")
    monkeypatch.setenv("QUARTO_PATH", str(quarto))
    assert describe_route("auto").startswith("pandoc ")
    with pytest.raises(RenderError, match=r"version 1\.3\.450.*1\.6 or later"):
        describe_route("quarto")


def test_quarto_yml_options():
    config = yaml.safe_load(QUARTO_YML.read_text(encoding="utf-8"))
    assert config["project"] == {"type": "default"}
    html_opts = config["format"]["html"]
    typst_opts = config["format"]["typst"]
    assert html_opts["embed-resources"] is True
    assert html_opts["self-contained-math"] is True
    assert html_opts["html-math-method"] == "mathml"
    assert html_opts["default-image-extension"] == "svg"
    assert html_opts["toc"] is True
    # Bootswatch themes such as cosmo import fonts from a web-font server.
    assert html_opts["theme"] == "default"
    assert typst_opts["default-image-extension"] == "png"
    assert typst_opts["papersize"] in ("a4", "us-letter")
    assert typst_opts["toc"] is False  # page one of the PDF is the summary
    assert config["number-sections"] is True
    assert "engine" not in config and "jupyter" not in config


# --------------------------------------------------------------------------
# The builtin route, end to end
# --------------------------------------------------------------------------


def test_builtin_outcome(rendered):
    project, outcome = rendered
    assert outcome.route.startswith("pandoc 3.")
    assert outcome.outputs == {"html": project / "report.html", "pdf": project / "report.pdf"}
    assert all(path.is_file() for path in outcome.outputs.values())
    # Nothing else appears in the project folder.
    assert sorted(p.name for p in project.iterdir()) == [
        "_quarto.yml",
        "figures",
        "report.html",
        "report.pdf",
        "report.qmd",
    ]


def test_html_is_self_contained(rendered):
    project, _ = rendered
    tree = parse_html(project / "report.html")
    images = [a for t, a in tree.tags if t == "img"]
    assert len(images) == 2
    for img in images:
        assert img["src"].startswith("data:image/svg+xml"), img["src"][:60]
    for tag, attrs in tree.tags:
        for attr in ("src", "href", "xlink:href", "data"):
            value = attrs.get(attr, "").strip().lower()
            if tag == "a" and attr == "href":
                continue  # a hyperlink is not a resource the page loads
            assert not value.startswith(("http:", "https:", "//")), (tag, attr, value)
    css = "\n".join(tree.styles)
    assert "@import" not in css
    assert "url(http" not in css.replace(" ", "").lower()
    assert not [a for t, a in tree.tags if t == "script" and a.get("src")]
    assert not [a for t, a in tree.tags if t == "link" and a.get("rel") == "stylesheet"]


def test_html_figure_alt_text(rendered):
    project, _ = rendered
    tree = parse_html(project / "report.html")
    alts = [a.get("alt") for t, a in tree.tags if t == "img"]
    assert "Two dot-and-whisker panels comparing the group effects of the two models." in alts


def test_html_cross_references(rendered):
    project, _ = rendered
    tree = parse_html(project / "report.html")
    links = {(href, norm(text)) for href, text in tree.links}
    assert ("#fig-comparison", "Figure 1") in links
    assert ("#fig-draws", "Figure 2") in links
    assert ("#tbl-groups", "Table 1") in links
    assert ("#sec-model", "Section 2") in links
    assert ("#sec-details", "Section 3") in links
    assert ("#eq-model", "Equation 1") in links
    # The targets exist.
    assert [t for t, _ in tree.by_id("fig-comparison")] == ["figure"]
    assert [t for t, _ in tree.by_id("tbl-groups")] == ["table"]
    assert tree.by_id("sec-model") and tree.by_id("eq-model")
    text = tree.text
    assert "Figure 1: Estimated treatment effect by group" in text
    assert "Table 1: Treatment effect by group" in text
    assert "@fig-" not in text and "@tbl-" not in text and "@sec-" not in text


def test_html_callouts(rendered):
    project, _ = rendered
    tree = parse_html(project / "report.html")
    warnings = tree.with_class("div", "callout-warning")
    notes = tree.with_class("div", "callout-note")
    assert len(warnings) == 1 and len(notes) == 1
    assert "callout" in warnings[0]["class"].split()
    source = (project / "report.html").read_text(encoding="utf-8")
    assert '<div class="callout-title">\nRead with care\n</div>' in source or ('<div class="callout-title">Read with care</div>' in source)
    assert '<div class="callout-title">\nNote\n</div>' in source or '<div class="callout-title">Note</div>' in source
    # The callout's own heading is not a section (no "Read with care" in the TOC).
    toc = source.split('<nav id="TOC"', 1)[1].split("</nav>", 1)[0]
    assert "Read with care" not in toc
    # ...and it is styled: a coloured left border and a background.
    css = "\n".join(tree.styles)
    assert "div.callout" in css and "border-left" in css and "div.callout-warning" in css


def test_html_math_is_mathml(rendered):
    project, _ = rendered
    source = (project / "report.html").read_text(encoding="utf-8")
    assert source.count("<math") >= 5
    assert '<math display="block"' in source
    assert "mtable" in source  # \begin{pmatrix}
    assert "mathjax" not in source.lower() and "katex" not in source.lower()


def test_html_keeps_literal_text_literal(rendered):
    project, _ = rendered
    source = (project / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source
    tree = parse_html(project / "report.html")
    assert [t for t, _ in tree.tags if t == "script"] == []
    assert "{{ 7*7 }}" in source
    assert "$x$" in source
    # The pagebreak shortcode leaves no trace but an empty page-break div.
    assert "{{&lt;" not in source and "{{<" not in source and "pagebreak" not in source
    assert len(tree.with_class("div", "page-break")) == 1


def test_pdf_output(rendered):
    project, _ = rendered
    pdf = project / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    pages = pdf_pages(pdf, project)
    text = " ".join(pages)
    flat = squash(text)  # text extractors differ in where they put spaces
    for phrase in (
        "Figure 1",
        "Figure 2",
        "Table 1",
        "Section 2",
        "Equation 1",
        "Figure 1: Estimated treatment effect by group",
        "Read with care",
        "Note",
        "<script>alert(1)</script>",
        "{{ 7*7 }}",
        "$x$",
    ):
        assert squash(phrase) in flat, phrase
    for literal in ("@fig-", "@tbl-", "@sec-", "?@", "{{<", "pagebreak"):
        assert literal not in text, literal
    # Every row of the 120-row table is there, first to last.
    assert "G001" in text and "G060" in text and "G120" in text
    if len(pages) > 1:
        # The long table runs over several pages, and {{< pagebreak >}} starts
        # "Details" on a fresh page.
        assert len(pages) >= 4
        table_pages = [i for i, page in enumerate(pages) if "G0" in page or "G1" in page]
        assert len(table_pages) >= 2
        details = next(i for i, page in enumerate(pages) if "3Details" in squash(page))
        assert squash("The specification that produced this report") not in squash(pages[details])


def test_typst_source(rendered, tmp_path):
    project, _ = rendered
    source = typst_source(project)
    assert "#cite(" not in source
    assert "<fig-comparison>" in source and "#link(<fig-comparison>)" in source
    assert '#callout(kind: "warning", title: [Read with care])[' in source
    assert "#pagebreak(weak: true)" in source
    assert 'image("figures/fig-comparison.png"' in source
    # Tables are sized by Typst (no fixed fractions from the pipe table's dashes).
    assert "columns: 8," in source


# --------------------------------------------------------------------------
# Failures leave earlier outputs alone
# --------------------------------------------------------------------------


def test_broken_image_fails_and_keeps_previous_outputs(tmp_path):
    project = make_project(tmp_path / "report")
    qmd = project / "report.qmd"
    qmd.write_text(
        qmd.read_text(encoding="utf-8").replace("figures/fig-draws)", "figures/fig-missing)"),
        encoding="utf-8",
    )
    old_html = b"<html><body>the report from yesterday</body></html>\n"
    old_pdf = b"%PDF-1.7 yesterday"
    (project / "report.html").write_bytes(old_html)
    (project / "report.pdf").write_bytes(old_pdf)

    with pytest.raises(RenderError) as err:
        render_project(project, route="builtin")

    message = str(err.value)
    assert "HTML" in message and "builtin route" in message
    assert "figures/fig-missing" in message
    assert "unchanged" in message
    assert (project / "report.html").read_bytes() == old_html
    assert (project / "report.pdf").read_bytes() == old_pdf
    assert sorted(p.name for p in project.iterdir()) == [
        "_quarto.yml",
        "figures",
        "report.html",
        "report.pdf",
        "report.qmd",
    ]


def test_pdf_failure_keeps_html_from_before(tmp_path):
    """HTML renders (the SVG is there) but PDF cannot (the PNG is not): neither
    output is replaced, so HTML and PDF never disagree."""
    project = make_project(tmp_path / "report")
    (project / "figures" / "fig-draws.png").unlink()
    old_html = b"<html>old</html>"
    (project / "report.html").write_bytes(old_html)

    with pytest.raises(RenderError) as err:
        render_project(project, route="builtin")

    message = str(err.value)
    assert "PDF" in message and "fig-draws.png" in message
    assert (project / "report.html").read_bytes() == old_html
    assert not (project / "report.pdf").exists()

    # The same project renders to HTML alone.
    outcome = render_project(project, formats=["html"], route="builtin")
    assert list(outcome.outputs) == ["html"]
    assert (project / "report.html").read_bytes() != old_html


# --------------------------------------------------------------------------
# The Lua filter on small documents
# --------------------------------------------------------------------------


def test_unresolved_and_plain_citations(tmp_path):
    project = small_project(
        tmp_path / "p",
        "# One {#sec-one}\n\nSee @fig-nothing, @sec-one, [see @Sec-one, p. 2] and @smith2020.\n",
    )
    with pytest.warns(HetreportWarning, match="fig-nothing"):
        render_project(project, route="builtin")
    text = parse_html(project / "report.html").text
    assert "?@fig-nothing" in text
    assert "see Section 1, p. 2" in text
    assert "@smith2020" in text
    assert "Section1" in squash(" ".join(pdf_pages(project / "report.pdf", project)))


def test_unnumbered_sections_are_referred_to_by_title(tmp_path):
    project = small_project(tmp_path / "p", "# Background {#sec-bg}\n\nAs in @sec-bg.\n")
    config = yaml.safe_load((project / "_quarto.yml").read_text(encoding="utf-8"))
    config["number-sections"] = False
    (project / "_quarto.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    render_project(project, formats=["html"], route="builtin")
    tree = parse_html(project / "report.html")
    assert ("#sec-bg", "Background") in {(h, norm(t)) for h, t in tree.links}


def test_callout_kinds_and_titles(tmp_path):
    body = "\n\n".join(f"::: {{.callout-{kind}}}\nBody of {kind}.\n:::" for kind in ("note", "tip", "important", "caution"))
    body += '\n\n::: {.callout-tip title="Custom title"}\nWith a title attribute.\n:::\n'
    project = small_project(tmp_path / "p", body)
    render_project(project, route="builtin")
    tree = parse_html(project / "report.html")
    for kind in ("note", "tip", "important", "caution"):
        assert tree.with_class("div", f"callout-{kind}")
    text = tree.text
    for title in ("Note", "Tip", "Important", "Caution", "Custom title"):
        assert title in text
    pdf_text = squash(" ".join(pdf_pages(project / "report.pdf", project)))
    assert "Important" in pdf_text and "Customtitle" in pdf_text


def test_a_text_line_ending_in_a_closing_tag_keeps_its_line_break():
    from hetreport.report.build import environment

    t = environment().from_string("Para.{% if x %} More.{% endif %}\n\n## Heading\n{% if y %}\nline\n{% endif %}\nafter\n")
    assert t.render(x=True, y=True) == "Para. More.\n\n## Heading\nline\nafter\n"
    assert t.render(x=False, y=False) == "Para.\n\n## Heading\nafter\n"


def test_pipe_table_columns_are_sized_by_their_content():
    """Pandoc (and Quarto) size wrapped table columns by the dashes under the header: a column of
    group names must get more room than a column of counts, and every header word its width."""
    from hetreport.report.format import pipe_table

    table = str(
        pipe_table(
            ["Group", "n", "Hierarchical (95% interval)"],
            [["non-white, women, lowest internationalism, least hawkish", 6, "0.04 (−0.42 to 0.48)"]],
            "lrr",
        )
    )
    dashes = [len(c.strip(":")) for c in table.split("\n")[1].strip("|").split("|")]
    assert dashes[0] > dashes[2] > dashes[1] >= len("n")
    assert dashes[0] <= 28 + 3  # long names wrap instead of starving the other columns
    assert dashes[2] >= len("Hierarchical") + 2


def test_pipe_table_first_column_can_wrap_wider():
    """The appendix's group tables give the group names a wider first column (fewer lines a row)."""
    from hetreport.report.format import pipe_table

    name = "non-white, women, lowest internationalism, least hawkish"
    wide = str(pipe_table(["Group", "n"], [[name, 6]], "lr", first_wrap=48))
    dashes = [len(c.strip(":")) for c in wide.split("\n")[1].strip("|").split("|")]
    assert dashes[0] == 48 + 3 and dashes[1] < 10
    short = str(pipe_table(["Group", "n"], [["a, b", 6]], "lr", first_wrap=48))
    assert len(short.split("\n")[1].strip("|").split("|")[0].strip(":")) < 12  # short names stay narrow
