"""Word output on the built-in route (pandoc's docx writer), read back with python-docx:
headings are Word headings, pipe tables Word tables, figures embedded with their alt text."""

import shutil
import warnings
from pathlib import Path

import pytest

from hetreport.report.render import render_project
from hetreport.resources import quarto_yml

docx = pytest.importorskip("docx")


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, dpi=50)
    plt.close(fig)


def _alt_texts(document) -> list[str]:
    ns = "{http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing}docPr"
    return [el.get("descr") for el in document.element.body.iter(ns)]


def test_docx_has_word_headings_tables_and_figures_with_alt_text(tmp_path):
    project = tmp_path / "p"
    (project / "figures").mkdir(parents=True)
    shutil.copyfile(quarto_yml(), project / "_quarto.yml")
    _png(project / "figures" / "f.png")
    (project / "report.qmd").write_text(
        '---\ntitle: "A study"\n---\n\n# Summary {#sec-summary}\n\nText with 0.31.\n\n## Details\n\n'
        "| Group | n |\n|:------|--:|\n| a | 10 |\n| b | 20 |\n\n: Group sizes. {#tbl-sizes}\n\n"
        '![The effects by group.](figures/f){#fig-f fig-alt="Dot plot of 2 groups; the largest effect is 0.31."}\n\n'
        "See @fig-f and @tbl-sizes.\n",
        encoding="utf-8",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = render_project(project, formats=["docx"], route="builtin")
    path = out.outputs["docx"]
    assert path == project.resolve() / "report.docx"
    d = docx.Document(str(path))
    headings = [(p.style.name, p.text) for p in d.paragraphs if p.style.name.startswith("Heading")]
    assert ("Heading 1", "1\tSummary") in headings
    assert any(style == "Heading 2" and text.endswith("Details") for style, text in headings)
    assert len(d.tables) == 1
    cells = [[c.text for c in row.cells] for row in d.tables[0].rows]
    assert cells == [["Group", "n"], ["a", "10"], ["b", "20"]]
    assert len(d.inline_shapes) == 1
    assert _alt_texts(d) == ["Dot plot of 2 groups; the largest effect is 0.31."]
    text = " ".join(p.text for p in d.paragraphs)
    assert "The effects by group." in text  # the caption stays the caption
    assert "?@fig-f" not in text
