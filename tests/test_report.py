"""The report end to end on the built-in route (pandoc + Typst): real fit, real render."""

import re
import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from hetreport.errors import RenderError
from hetreport.facts import compute_facts
from hetreport.report import build_and_render
from hetreport.report.format import md, num, pct
from hetreport.results import load_results

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered(small_study):
    d, results = small_study
    out = d / "out"
    results.save(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = build_and_render(results, out, route="builtin")
    return out, results, outcome


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _pdf_text(path):
    from pypdf import PdfReader

    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in PdfReader(str(path)).pages))


def test_html_is_self_contained_and_complete(rendered):
    out, results, outcome = rendered
    html = outcome.outputs["html"].read_text()
    p = _Collect()
    p.feed(html)
    for tag, attrs in p.tags:
        for key in ("src", "href"):
            url = attrs.get(key) or ""
            if tag in ("img", "script", "link", "source", "iframe") or (tag == "a" and key == "href" and False):
                assert not re.match(r"https?://|//", url), f"external resource {tag} {key}={url[:80]}"
    imgs = [a for t, a in p.tags if t == "img"]
    svgs = [a for t, a in p.tags if t == "svg"]
    assert len(imgs) + len(svgs) >= 6  # comparison, shrinkage, distribution, by-modifier, heatmap, ppc
    assert all((a.get("src") or "").startswith("data:") for a in imgs)
    assert not [a for t, a in p.tags if t == "script" and "alert" in str(a)]
    text = "".join(p.text)
    for section in (
        "Summary",
        "Groups",
        "Comparison of approaches",
        "Distribution of effects",
        "Sources of variation",
        "Diagnostics",
        "Methods",
        "Appendix: reproducibility",
    ):
        assert section in text
    assert "<math" in html  # MathML, no CDN


def test_labels_from_data_appear_literally(rendered):
    out, _, outcome = rendered
    html = outcome.outputs["html"].read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html
    assert "{{ 7*7 }}" in html and "49" not in re.findall(r"\{\{ 7\*7 \}\}|49", html)[:1]
    assert "$x$" in html and "@fig-x" in html
    pdf = _pdf_text(outcome.outputs["pdf"])
    assert "<script>alert(1)</script> {{ 7*7 }} $x$ @fig-x *bold*" in pdf


def test_pdf_summary_numbers_equal_effects_csv(rendered):
    out, results, outcome = rendered
    effects = pd.read_csv(out / "effects.csv")
    hier = effects[effects.method == "hierarchical"]
    largest = hier.loc[hier.estimate.idxmax()]
    smallest = hier.loc[hier.estimate.idxmin()]
    pdf = _pdf_text(outcome.outputs["pdf"])
    for row in (largest, smallest):
        assert f"{num(row.estimate)} ({num(row.lower_95)} to {num(row.upper_95)})" in pdf
    facts = compute_facts(results.analyses[0], results.effects)
    assert f"by {num(facts.average.estimate)} (95% interval {num(facts.average.lower)} to {num(facts.average.upper)})" in pdf
    assert "Figure 1" in pdf and "@fig-sim" not in pdf and "?@" not in pdf and "{{<" not in pdf


def test_truth_is_shown_for_simulated_studies(rendered):
    out, results, outcome = rendered
    html = outcome.outputs["html"].read_text()
    assert "Against the known truth" in html and "RMSE vs truth" in html


def test_rerender_from_saved_results_without_refitting(rendered, tmp_path):
    import shutil

    src, results, outcome = rendered
    out = tmp_path / "out"  # a copy: rendering only html here replaces the shared report (its PDF with it)
    shutil.copytree(src, out)
    loaded = load_results(out)
    pd.testing.assert_frame_equal(loaded.effects.reset_index(drop=True), pd.read_csv(out / "effects.csv"))
    np.testing.assert_array_equal(loaded.analyses[0].group_draws(), results.analyses[0].group_draws())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = build_and_render(loaded, out, formats=["html"], route="builtin")
    assert again.outputs["html"].exists()


def test_failed_render_keeps_the_previous_report(rendered, tmp_path):
    out, results, outcome = rendered
    before = (out / "report" / "report.html").read_bytes()
    bad = tmp_path / "tpl"
    bad.mkdir()
    (bad / "_summary.qmd.j2").write_text("{% if %}broken")
    spec = results.spec.model_copy(update={"report": results.spec.report.model_copy(update={"templates": str(bad)})})
    broken = type(results)(spec=spec, effects=results.effects, analyses=results.analyses, manifest=results.manifest)
    with pytest.raises(RenderError, match="_summary.qmd.j2"):
        build_and_render(broken, out, route="builtin")
    assert (out / "report" / "report.html").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]


def test_user_template_overrides_by_name_and_cannot_run_code(rendered, tmp_path):
    out, results, _ = rendered
    tpl = tmp_path / "mine"
    tpl.mkdir()
    (tpl / "_appendix.qmd.j2").write_text("# My appendix\n\n{{ ''.__class__.__mro__ }}\n")
    spec = results.spec.model_copy(update={"report": results.spec.report.model_copy(update={"templates": str(tpl)})})
    custom = type(results)(spec=spec, effects=results.effects, analyses=results.analyses, manifest=results.manifest)
    with pytest.raises(RenderError):  # the sandbox refuses dunder access
        build_and_render(custom, tmp_path / "o", formats=["html"], route="builtin")
    (tpl / "_appendix.qmd.j2").write_text("# My appendix {#sec-mine}\n\nCustom text.\n")
    res = build_and_render(custom, tmp_path / "o", formats=["html"], route="builtin")
    assert "Custom text." in res.outputs["html"].read_text()


def test_markdown_escaping_and_number_format():
    assert str(md("<b>$x$ {{ y }} @fig-a *z*")) == r"\<b\>\$x\$ \{\{ y \}\} \@fig\-a \*z\*"
    assert num(-0.0001) == "0.00" and num(-0.5) == "\u22120.50" and num(float("nan")) == "—"
    assert pct(0.999999) == ">99%" and pct(1.0) == ">99%" and pct(0.5) == "50%" and pct(0.001) == "<1%"


def test_figure_labels_escape_dollar_signs(small_study):
    """matplotlib reads $...$ as math: labels from data reach the figures with $ escaped."""
    from hetreport.report.build import display_effects, names_for

    _, results = small_study
    a = results.analyses[0]
    eff = display_effects(a, results.effects)
    assert any(r"\$x\$" in str(v) for v in eff["m1"].cat.categories)
    assert all("$x$" not in str(v).replace(r"\$x\$", "") for v in eff["group_label"])
    assert names_for(a)["m1"] == "First modifier"


def test_every_heading_and_run_in_paragraph_starts_a_block(rendered):
    """A template line of text ending in `{% endif %}` once lost its newline, gluing the next
    heading ("## Differences by ... {#sec-methods-...}") onto a paragraph as literal text."""
    out, _, _ = rendered
    lines = (out / "report" / "report.qmd").read_text().split("\n")
    body = lines[lines.index("---", 1) + 1 :]
    fenced = False
    for i, line in enumerate(body[1:], start=1):
        if line.startswith("```") or line.startswith("$$"):
            fenced = not fenced
        if fenced:
            continue
        if re.match(r"#{1,6} ", line) or re.match(r"\*\*(Hierarchical model|Interaction approach)\.\*\*", line):
            assert body[i - 1].strip() == "" or body[i - 1].startswith(":::"), (
                f"line glued to the one before: {body[i - 1][-60:]!r} / {line[:60]!r}"
            )


def test_html_figures_at_screen_resolution_pdf_figures_at_full(rendered):
    """The HTML embeds each figure as a vector drawing or as a picture at screen resolution (the report's
    size); the PDF embeds the 200-dpi PNGs, pixel for pixel."""
    import base64
    import io

    from PIL import Image
    from pypdf import PdfReader

    from hetreport.report.paper import SCREEN_DPI

    out, _, outcome = rendered
    p = _Collect()
    p.feed(outcome.outputs["html"].read_text())
    pictures = vectors = 0
    for attrs in (a for t, a in p.tags if t == "img"):
        head, data = attrs["src"].split(",", 1)
        assert head == "data:image/svg+xml;base64", head[:40]
        svg = base64.b64decode(data).decode("utf-8")
        width = re.search(r'<svg[^>]*\swidth="([0-9.]+)pt"', svg)
        inner = re.search(r'xlink:href="data:image/png;base64,([^"]+)"', svg)
        if inner is None:
            vectors += 1
            continue
        with Image.open(io.BytesIO(base64.b64decode(inner.group(1)))) as im:
            assert abs(im.width / (float(width.group(1)) / 72) - SCREEN_DPI) < 1, (im.width, width.group(1))
        pictures += 1
    assert pictures >= 1 and pictures + vectors >= 6
    full = {Image.open(f).size for f in (out / "report" / "figures").glob("*.png")}
    shown = [img.image.size for page in PdfReader(str(outcome.outputs["pdf"])).pages for img in page.images]
    assert len(shown) >= 6 and all(size in full for size in shown), (shown, full)
    assert all(Image.open(f).info["dpi"][0] > 199 for f in (out / "report" / "figures").glob("*.png"))


def test_a_long_title_leaves_no_nearly_empty_page_after_the_summary(rendered, tmp_path):
    """When the summary runs a few lines onto page 2 (its own length, or a title of three lines above it),
    the analyses follow on that page instead of after a page break: page 2 is never nearly empty."""
    import shutil

    from pypdf import PdfReader

    from hetreport.report.render import render_project

    out, results, _ = rendered
    project = tmp_path / "report"
    shutil.copytree(out / "report", project, ignore=shutil.ignore_patterns("report.pdf", "report.html", "paper"))
    qmd = project / "report.qmd"
    source = qmd.read_text(encoding="utf-8")
    assert "Against the known truth" in source.split("hetreport-summary-end")[0]  # the summary's last paragraph
    # The summary with its last paragraph and the sampler's warning box left out is a shorter
    # summary: as the title grows to three lines, it runs onto page 2 by only a few lines.
    summary, rest = source.split("hetreport-summary-end", 1)
    short = re.sub(r"\n\*\*Against the known truth\*\*[^\n]*(\n[^\n]+)*\n", "\n", summary)
    short = re.sub(r"\n::: \{\.callout-warning\}.*?\n:::\n", "\n", short, flags=re.S)
    assert len(short) < len(summary) - 300
    followed = []
    for text, extra in (
        (source, " that runs on and on about the study, its groups and its data"),
        *(
            (short + "hetreport-summary-end" + rest, extra)
            for extra in ("", " that runs on about the study", " that runs on and on about the study, its groups and its data")
        ),
    ):
        title = results.spec.title + extra  # one, two and three lines
        qmd.write_text(re.sub(r"^title: .*$", f"title: {title}", text, count=1, flags=re.M), encoding="utf-8")
        pdf = render_project(project, ["pdf"], route="builtin").outputs["pdf"]
        pages = [re.sub(r"\s+", " ", page.extract_text()) for page in PdfReader(str(pdf)).pages]
        assert title.split()[-1] in pages[0] and "Summary" in pages[0]
        assert len(pages[1]) > 1000, (title, pages[1])  # page 2 is not nearly empty
        ran_over = "the model keeps close to the separate estimates" in pages[1]  # the summary's last words
        followed.append(ran_over and "Groups are every combination" in pages[1])
    assert any(followed), "no title made the summary run over by only a few lines: the test needs another title"
