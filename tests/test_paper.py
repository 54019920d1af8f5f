"""report/paper/: figures sized for a column and a page, tables in four formats, methods and references."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from hetreport.report.build import build_project
from hetreport.report.format import num
from hetreport.report.paper import COLUMN_IN, PAGE_IN, latex_escape


@pytest.fixture(scope="module")
def paper(small_study, tmp_path_factory):
    _, results = small_study
    project = tmp_path_factory.mktemp("paper-project")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_project(results, project, route="builtin", formats=["html"])
    return project / "paper", results


def test_figures_at_column_and_page_width_in_three_formats(paper):
    from PIL import Image
    from pypdf import PdfReader

    root, results = paper
    slug = results.analyses[0].name
    for key in ("comparison", "shrinkage", "distribution", "by-modifier", "heatmap"):
        for size, width in (("column", COLUMN_IN), ("page", PAGE_IN)):
            stem = root / "figures" / f"{slug}-{key}-{size}"
            box = PdfReader(str(stem.with_suffix(".pdf"))).pages[0].mediabox
            assert abs(float(box.width) - 72 * width) < 1  # points
            with Image.open(stem.with_suffix(".png")) as im:
                assert abs(im.size[0] - 300 * width) <= 2
                assert round(im.info["dpi"][0]) == 300
            svg = stem.with_suffix(".svg").read_text()
            assert re.search(rf'width="{72 * width:g}pt"', svg)


def test_group_table_numbers_equal_the_effects_table(paper):
    root, results = paper
    a = results.analyses[0]
    eff = results.effects[results.effects["analysis"] == a.name]
    csv = pd.read_csv(root / "tables" / f"{a.name}-group-effects.csv")
    hier = eff[eff["method"] == "hierarchical"].set_index("group_label")
    got = csv.set_index("group")
    for label, row in hier.iterrows():
        assert np.isclose(got.loc[str(label), "Hierarchical estimate"], row["estimate"], rtol=1e-5)
        assert np.isclose(got.loc[str(label), "Hierarchical upper 95%"], row["upper_95"], rtol=1e-5)
    tex = (root / "tables" / f"{a.name}-group-effects.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    first = hier.iloc[0]
    assert f"{num(first['estimate'])} [{num(first['lower_95'])}, {num(first['upper_95'])}]".replace("−", "$-$") in tex
    md = (root / "tables" / f"{a.name}-group-effects.md").read_text()
    assert md.count("\n|") >= len(hier) + 1


def test_word_tables_are_real_tables(paper):
    docx = pytest.importorskip("docx")
    root, results = paper
    a = results.analyses[0]
    d = docx.Document(str(root / "tables" / f"{a.name}-variation.docx"))
    assert len(d.tables) == 1
    rows = d.tables[0].rows
    assert len(rows) == 1 + 1 + len(a.hierarchical.terms) + 1  # header, σθ, one per term, SD across groups


def test_methods_and_references(paper):
    root, results = paper
    a = results.analyses[0]
    methods = (root / "methods.md").read_text()
    assert a.hierarchical.formula_brms in methods and a.hierarchical.formula_bambi in methods
    for k in a.hierarchical.priors:
        assert f"{k}:" in methods
    versions = results.manifest["packages"]
    assert f"bambi {versions['bambi']}" in methods and f"PyMC {versions['pymc']}" in methods
    bib = (root / "references.bib").read_text()
    cited = set(re.findall(r"@([A-Za-z0-9]+)", methods))
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, re.MULTILINE))
    assert cited <= keys and {"alley2024", "data"} <= keys
    assert results.manifest["data_sha256"] in bib
    assert r"\begin{equation}" in (root / "methods.tex").read_text() or r"\[" in (root / "methods.tex").read_text()


def test_latex_escaping():
    assert latex_escape("50% & $5_x") == r"50\% \& \$5\_x"
    assert latex_escape("σθ") == r"$\sigma_\theta$"


def test_heavy_svgs_become_a_screen_resolution_png_for_html(tmp_path):
    import base64
    import io

    from PIL import Image

    from hetreport.report.paper import SCREEN_DPI, lighten_heavy_svgs

    big = tmp_path / "big.svg"
    big.write_text(
        '<?xml version="1.0"?>\n<svg width="468pt" height="284.4pt" viewBox="0 0 468 284.4" xmlns="http://www.w3.org/2000/svg">'
        + "<path d='M 0 0 L 1 1'/>" * 30000
        + "</svg>"
    )
    Image.new("RGB", (1300, 790), (255, 255, 255)).save(tmp_path / "big.png", dpi=(200, 200))  # 6.5 in at 200 dpi
    small = tmp_path / "small.svg"
    small.write_text('<svg width="10pt" height="10pt" xmlns="http://www.w3.org/2000/svg"><path d="M 0 0 L 1 1"/></svg>')
    Image.new("RGB", (28, 28), (200, 0, 0)).save(tmp_path / "small.png")

    assert lighten_heavy_svgs(tmp_path) == [big]
    text = big.read_text()
    assert 'width="468pt"' in text and 'height="284.4pt"' in text and "<path" not in text
    data = re.search(r"data:image/png;base64,([^\"]+)", text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(data))) as shown:
        assert shown.width == round(6.5 * SCREEN_DPI)  # 468 pt = 6.5 in, at screen resolution
    assert (tmp_path / "big.png").read_bytes()[:4] == b"\x89PNG" and Image.open(tmp_path / "big.png").width == 1300  # PDF's: untouched
    assert "<path" in small.read_text()  # smaller as a vector drawing: untouched
    assert lighten_heavy_svgs(tmp_path) == []  # a second pass changes nothing


def test_group_table_has_a_column_for_every_fitted_approach(small_study):
    """The paper's group table takes its approaches from the registry: one the analysis added (here the forest's
    rows, copied from the hierarchical ones) gets its own columns under its registry name, in registry order."""
    from hetreport import methods as registry
    from hetreport.facts import compute_facts
    from hetreport.report.paper import paper_tables

    _, results = small_study
    a = results.analyses[0]
    eff = results.effects[results.effects["analysis"] == a.name]
    forest = eff[eff["method"] == "hierarchical"].assign(method="bcf")
    both = pd.concat([eff, forest], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, _ = paper_tables(a, both, compute_facts(a, eff))["group-effects"]
    names = [registry.get(m).short or registry.get(m).label for m in registry.ordered(both["method"].unique())]
    heads = [c[: -len(" estimate")] for c in table.columns if c.endswith(" estimate")]
    assert heads == names and registry.get("bcf").short in heads
    assert np.allclose(table[f"{registry.get('bcf').short} estimate"], table["Hierarchical estimate"], equal_nan=True)


def test_a_column_heat_map_keeps_a_horizontal_colourbar_that_fits(small_study, tmp_path):
    """Turned vertical like other legends at a column's width, the heat map's colourbar was drawn as a squashed
    bar; it stays horizontal, no longer than the column, its title above it."""
    from hetreport.report import paper as paper_mod
    from hetreport.report.build import write_figures

    _, results = small_study
    a = results.analyses[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = write_figures(a, results.effects, results.facts_of(a.name), tmp_path, results.spec)
    heat, _ = figures["heatmap"]["paper"].value
    other, _ = figures["comparison"]["paper"].value
    assert paper_mod._has_colourbar(heat) and not paper_mod._has_colourbar(other)
    col = paper_mod.sized(heat, "column", COLUMN_IN, 4.0)
    assert col.theme.getp("legend_direction") != "vertical"
    assert col.theme.getp("legend_key_width") <= 72 * COLUMN_IN * 0.5
    assert paper_mod.sized(other, "column", COLUMN_IN, 4.0).theme.getp("legend_direction") == "vertical"
    assert paper_mod.sized(heat, "page", PAGE_IN, 4.0).theme.getp("legend_key_width") == heat.theme.getp("legend_key_width")
