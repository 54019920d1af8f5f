"""``report/paper/``: figures and tables to drop into a manuscript unchanged.

- ``figures/``: every figure of the report as vector PDF, SVG and 300-dpi PNG, each at two widths,
  a journal column (3.5 in, ``-column``) and a page (7 in, ``-page``).
- ``tables/``: the main tables (group effects by approach, variation by modifier, σθ and the term
  SDs) as LaTeX (booktabs), Markdown, CSV and Word.
- ``methods.md`` and ``methods.tex``: a methods paragraph with the model equation, the brms and
  bambi formulas, the priors and the software versions; ``references.bib`` with the method paper,
  the software and the data source.

Numbers come from the same facts and effects table as the report.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from .. import methods as registry
from ..facts import Facts
from ..families import get_family
from . import format as fmt

__all__ = ["COLUMN_IN", "PAGE_IN", "latex_table", "markdown_table", "paper_tables", "write_paper"]

COLUMN_IN = 3.5  # a journal column
PAGE_IN = 7.0  # a full page width
DPI = 300


# --------------------------------------------------------------------------- tables


def paper_tables(a, effects: pd.DataFrame, facts: Facts, unit: fmt.Unit | None = None) -> dict[str, tuple[pd.DataFrame, str]]:
    """name -> (numeric table, caption); with the outcome's unit (labels.units) the captions say it."""
    say = _unit_words(a, unit)
    eff = effects[effects["analysis"] == a.name]
    g = a.groups.set_index("group")
    # every approach the analysis fitted, in the registry's order, under its short name
    columns = [
        (m, registry.get(m).short or registry.get(m).label) for m in registry.ordered(eff["method"].unique()) if m in registry.REGISTRY
    ]
    rows = []
    for group in g.index:
        row = {"group": str(g.loc[group, "group_label"]), "n": int(g.loc[group, "n"])}
        for method, name in columns:
            e = eff[(eff["method"] == method) & (eff["group"] == group)]
            if e.empty:
                continue
            e = e.iloc[0]
            ok = bool(e["estimable"])
            row[f"{name} estimate"] = float(e["estimate"]) if ok else np.nan
            row[f"{name} lower 95%"] = float(e["lower_95"]) if ok else np.nan
            row[f"{name} upper 95%"] = float(e["upper_95"]) if ok else np.nan
        rows.append(row)
    groups = pd.DataFrame(rows)
    levels = pd.DataFrame(
        [
            {
                "modifier": mf.label,
                "level": lev.label,
                "n": lev.n,
                "estimate": lev.effect.estimate,
                "lower 95%": lev.effect.lower,
                "upper 95%": lev.effect.upper,
            }
            for mf in facts.modifiers
            for lev in mf.levels
        ]
    )
    sds = [
        {
            "quantity": "σθ (SD of the group slopes of the last term)",
            "estimate": facts.sigma_theta.estimate,
            "lower 95%": facts.sigma_theta.lower,
            "upper 95%": facts.sigma_theta.upper,
        }
    ]
    for t in facts.terms:
        sds.append(
            {
                "quantity": f"Slope SD: {t.label}",
                "estimate": t.sd_slope.estimate,
                "lower 95%": t.sd_slope.lower,
                "upper 95%": t.sd_slope.upper,
            }
        )
    sds.append(
        {
            "quantity": "SD of the group effects across groups",
            "estimate": facts.sd_between_groups.estimate,
            "lower 95%": facts.sd_between_groups.lower,
            "upper 95%": facts.sd_between_groups.upper,
        }
    )
    return {
        "group-effects": (
            groups,
            f"{a.title}: the effect of the treatment within each group by approach (estimate and 95% interval{say['effects']}).",
        ),
        "modifiers": (
            levels,
            f"{a.title}: average hierarchical effect at each level of each modifier (weighted by group size, 95% interval{say['effects']}).",
        ),
        "variation": (
            pd.DataFrame(sds),
            f"{a.title}: standard deviations of the treatment effect across groups (posterior mean and 95% interval{say['variation']}).",
        ),
    }


def _unit_words(a, unit: fmt.Unit | None) -> dict[str, str]:
    """', in dollars' for the captions of tables in the outcome's unit: the effects always, the SDs only for an
    identity-link model (σθ and the term SDs of a logit or log model are on its linear scale)."""
    if unit is None:
        return {"effects": "", "variation": ""}
    identity = get_family(a.hierarchical.family).identity
    return {"effects": f", {fmt.unit_phrase(unit)}", "variation": f", {fmt.unit_phrase(unit)}" if identity else ""}


def table_unit(a, name: str, unit: fmt.Unit | None) -> fmt.Unit | None:
    """The unit a paper table's estimate columns are in (None: none to say)."""
    return unit if _unit_words(a, unit)["variation" if name == "variation" else "effects"] else None


def _display(df: pd.DataFrame, unit: fmt.Unit | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows as printed: an estimate with its interval in one cell ('0.31 [0.12, 0.50]'); with a
    unit, the header says it ('Hierarchical (95% interval, in dollars)')."""
    in_unit = f", {fmt.unit_phrase(unit)}" if unit is not None else ""
    cols = list(df.columns)
    header, build = [], []
    for c in cols:
        if c.endswith(" lower 95%") or c.endswith(" upper 95%") or c in ("lower 95%", "upper 95%"):
            continue
        if c.endswith(" estimate") or c == "estimate":
            base = c[: -len("estimate")].strip()
            lo, hi = (f"{base} lower 95%".strip(), f"{base} upper 95%".strip())
            header.append(f"{base} (95% interval{in_unit})".strip() if base else f"Estimate (95% interval{in_unit})")
            build.append(("iv", c, lo, hi))
        else:
            header.append(c[:1].upper() + c[1:])
            build.append(("plain", c, None, None))
    rows = []
    for r in df.itertuples(index=False):
        d = dict(zip(cols, r))
        row = []
        for kind, c, lo, hi in build:
            if kind == "plain":
                v = d[c]
                row.append(fmt.count(v) if isinstance(v, (int, np.integer)) else str(v))
            elif not np.isfinite(d[c]):
                row.append("not estimable")
            else:
                row.append(f"{fmt.num(d[c])} [{fmt.num(d[lo])}, {fmt.num(d[hi])}]")
        rows.append(row)
    return header, rows


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "−": "$-$",
    "σ": r"$\sigma$",
    "θ": r"$\theta$",
    "×": r"$\times$",
    "—": "---",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return out.replace(r"$\sigma$$\theta$", r"$\sigma_\theta$")


def latex_table(header: list[str], rows: list[list[str]], caption: str, label: str) -> str:
    align = "l" + "r" * (len(header) - 1)
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{tab:{label}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]], caption: str) -> str:
    return str(fmt.pipe_table(header, rows, "l" + "r" * (len(header) - 1), caption)) + "\n"


def _pandoc(args: list[str], cwd: Path) -> None:
    from .render import _pandoc_path

    subprocess.run([str(_pandoc_path()), *args], cwd=str(cwd), check=True, capture_output=True, timeout=300)


# --------------------------------------------------------------------------- figures


def _has_colourbar(plot) -> bool:
    """Whether the plot's legend is a colourbar (a continuous fill or colour scale, the heat maps'): turned
    vertical in a column, it was drawn as a squashed bar."""
    from plotnine.scales.scale_continuous import scale_continuous

    return any(isinstance(s, scale_continuous) and {"fill", "color", "colour"} & set(s.aesthetics) for s in plot.scales)


def sized(plot, size: str, width: float, height: float):
    """The plot laid out at ``width`` x ``height`` inches; at a column's width its legend is rearranged to fit."""
    from plotnine import theme

    p = plot + theme(figure_size=(width, height))
    if size == "column" and _has_colourbar(plot):  # a colourbar as long as a page's would not fit: shorter, title above
        p = p + theme(legend_key_width=0.45 * width * 72, legend_title_position="top")
    elif size == "column":  # a legend in one row is wider than a column: one entry per line
        p = p + theme(legend_direction="vertical")
    return p


def _paper_figure(plot, stem: Path, natural: tuple[float, float]) -> list[Path]:
    """The plot at a column and a page width (aspect of its own layout, the column one a little
    taller so its text keeps its size), as PDF, SVG and 300-dpi PNG."""
    w, h = natural
    written = []
    for size, width in (("column", COLUMN_IN), ("page", PAGE_IN)):
        height = h * width / w if size == "page" else min(max(h * width / w * 1.6, 2.6), 9.0)
        p = sized(plot, size, width, height)
        for ext in ("pdf", "svg", "png"):
            path = stem.with_name(f"{stem.name}-{size}.{ext}")
            p.save(str(path), width=width, height=height, units="in", dpi=DPI, verbose=False)
            written.append(path)
    return written


# --------------------------------------------------------------------------- methods and references


def _bib_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", text)[:40] or "data"


def _bib_escape(text: str) -> str:
    return str(text).replace("\\", "").replace("{", "").replace("}", "").replace("@", "(at)")


def references_bib(spec, manifest: dict) -> str:
    v = manifest.get("packages", {})
    entries = [
        "@unpublished{alley2024,\n  author = {Alley, Joshua},\n  title = {Using Hierarchical Models to Estimate Heterogeneous Effects},\n"
        "  year = {2024},\n  month = may,\n  note = {University College Dublin, working paper}\n}",
        "@article{capretto2022bambi,\n  author = {Capretto, Tom\\'{a}s and Piho, Camen and Kumar, Ravin and Westfall, Jacob and Yarkoni, Tal and Martin, Osvaldo A.},\n"
        "  title = {Bambi: A Simple Interface for Fitting {Bayesian} Linear Models in {Python}},\n  journal = {Journal of Statistical Software},\n"
        f"  year = {{2022}},\n  volume = {{103}},\n  number = {{15}},\n  doi = {{10.18637/jss.v103.i15}},\n  note = {{version {v.get('bambi', '?')}}}\n}}",
        "@article{abrilpla2023pymc,\n  author = {Abril-Pla, Oriol and Andreani, Virgile and Carroll, Colin and Dong, Larry and "
        "Fonnesbeck, Christopher J. and Kochurov, Maxim and Kumar, Ravin and Lao, Junpeng and Luhmann, Christian C. and "
        "Martin, Osvaldo A. and Osthege, Michael and Vieira, Ricardo and Wiecki, Thomas and Zinkov, Robert},\n"
        "  title = {{PyMC}: a modern, and comprehensive probabilistic programming framework in {Python}},\n  journal = {PeerJ Computer Science},\n"
        f"  year = {{2023}},\n  volume = {{9}},\n  pages = {{e1516}},\n  doi = {{10.7717/peerj-cs.1516}},\n  note = {{version {v.get('pymc', '?')}}}\n}}",
        "@software{nutpie,\n  author = {Seyboldt, Adrian and {PyMC Labs}},\n  title = {nutpie: a fast sampler for {Bayesian} posteriors},\n"
        f"  url = {{https://github.com/pymc-devs/nutpie}},\n  version = {{{v.get('nutpie', '?')}}}\n}}",
        "@article{kumar2019arviz,\n  author = {Kumar, Ravin and Carroll, Colin and Hartikainen, Ari and Martin, Osvaldo},\n"
        "  title = {{ArviZ} a unified library for exploratory analysis of {Bayesian} models in {Python}},\n  journal = {Journal of Open Source Software},\n"
        f"  year = {{2019}},\n  volume = {{4}},\n  number = {{33}},\n  pages = {{1143}},\n  doi = {{10.21105/joss.01143}},\n  note = {{version {v.get('arviz', '?')}}}\n}}",
        "@inproceedings{seabold2010statsmodels,\n  author = {Seabold, Skipper and Perktold, Josef},\n  title = {statsmodels: Econometric and statistical modeling with {Python}},\n"
        f"  booktitle = {{9th Python in Science Conference}},\n  year = {{2010}},\n  note = {{version {v.get('statsmodels', '?')}}}\n}}",
    ]
    cite = getattr(spec.report, "data_citation", None)
    data_file = Path(str(manifest.get("data_file") or (spec.data.path if spec.data else "data"))).name
    note = f"File {data_file}, SHA-256 {manifest.get('data_sha256', '?')}"
    if cite:
        entries.append(f"@misc{{data,\n  title = {{{_bib_escape(cite)}}},\n  note = {{{_bib_escape(note)}}}\n}}")
    else:
        entries.append(
            f"@misc{{data,\n  title = {{{_bib_escape(spec.title)}: data}},\n  howpublished = {{{_bib_escape(data_file)}}},\n"
            f"  note = {{{_bib_escape(note)}. Replace this entry by the data's own citation (report.data\\_citation in the spec)}}\n}}"
        )
    return "\n\n".join(entries) + "\n"


def methods_markdown(results, contexts: list) -> str:  # build.AnalysisContext records
    man = results.manifest
    v = man.get("packages", {})
    parts = [
        "Following @alley2024, we estimate the treatment effect within every group, a combination of the modifiers, "
        "with a Bayesian hierarchical model in which the intercept and the treatment slope vary over each term of the modifiers "
        "(partial pooling), and compare it with OLS with fully crossed interactions. For unit $i$ in group $g[i]$ with treatment "
        "$T_i$ and controls $\\mathbf{x}_i$, the linear predictor is",
        "$$\\eta_i = \\alpha + \\mathbf{x}_i^\\top \\beta + \\beta_T T_i + \\sum_{S} \\left( \\alpha_{S[i]} + \\theta_{S[i]} T_i \\right),$$",
        "where $S$ runs over the varying-effect terms; each level of each term has an intercept and a slope with a common normal prior "
        "(standard deviations $\\sigma_{\\alpha,S}$, $\\sigma_{\\theta,S}$), and the effect in group $g$ is "
        "$\\theta_g = \\beta_T + \\sum_S \\theta_{S[g]}$.",
    ]
    for c in contexts:
        a = c.a
        pri = "; ".join(f"{k}: {val}" for k, val in a.hierarchical.priors.items())
        s = a.hierarchical.sampler
        parts.append(
            f"*{a.title}* ({c.family} likelihood): in brms, `{a.hierarchical.formula_brms}`; in bambi, "
            f"`{a.hierarchical.formula_bambi}`. Priors: {pri}. Sampled with {s.get('chains', '?')} chains of "
            f"{s.get('draws', '?')} draws after {s.get('tune', '?')} tuning steps."
            + (f" Effects on {fmt.md(a.outcome)} are in {fmt.md(c.effect_unit.text)}." if c.effect_unit else "")
        )
    parts.append(
        f"The models were fitted with hetreport {v.get('hetreport', '?')}, bambi {v.get('bambi', '?')} [@capretto2022bambi], "
        f"PyMC {v.get('pymc', '?')} [@abrilpla2023pymc] and the nutpie sampler {v.get('nutpie', '?')} [@nutpie]; "
        f"diagnostics with ArviZ {v.get('arviz', '?')} [@kumar2019arviz] and OLS with statsmodels {v.get('statsmodels', '?')} "
        f"[@seabold2010statsmodels]. The data are @data."
    )
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- writing


def write_paper(project: Path, results, contexts: list) -> Path:  # build.AnalysisContext records
    """Write ``project/paper/`` (see the module docstring)."""
    root = project / "paper"
    (root / "figures").mkdir(parents=True, exist_ok=True)
    (root / "tables").mkdir(parents=True, exist_ok=True)
    for c in contexts:
        slug = str(c.slug)
        for key, fig in c.fig.items():
            if not isinstance(fig, dict) or "paper" not in fig:
                continue
            plot, size = fig["paper"].value
            _paper_figure(plot, root / "figures" / f"{slug}-{key}", size)
        unit = c.effect_unit
        for name, (df, caption) in paper_tables(c.a, results.effects, c.f, unit).items():
            stem = root / "tables" / f"{slug}-{name}"
            df.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.6g")
            header, rows = _display(df, table_unit(c.a, name, unit))
            stem.with_suffix(".tex").write_text(latex_table(header, rows, caption, f"{slug}-{name}"), encoding="utf-8")
            stem.with_suffix(".md").write_text(markdown_table(header, rows, caption), encoding="utf-8")
            _pandoc(
                [stem.with_suffix(".md").name, "--from", "markdown", "--to", "docx", "--output", stem.with_suffix(".docx").name],
                stem.parent,
            )
    (root / "references.bib").write_text(references_bib(results.spec, results.manifest), encoding="utf-8")
    (root / "methods.md").write_text(methods_markdown(results, contexts), encoding="utf-8")
    _pandoc(["methods.md", "--from", "markdown", "--to", "latex", "--natbib", "--output", "methods.tex"], root)
    return root


# --------------------------------------------------------------------------- HTML size


#: pixels per inch of the figures the HTML shows as pictures: a screen's, one pixel per CSS pixel at 100 %
#: (120 dpi made the bundled example's HTML 4.9 MB); the PDF and docx use the 200-dpi PNG
SCREEN_DPI = 96
_PT = {"pt": 1 / 72, "px": 1 / 96, "in": 1.0, "": 1 / 72}


def _screen_png(png: Path, width_in: float, dpi: int) -> bytes:
    """``png`` resampled to ``dpi`` pixels per inch at ``width_in`` inches wide, on white, as a
    256-colour palette PNG (figures have few colours; antialiased edges keep their shades)."""
    import io

    from PIL import Image

    with Image.open(png) as im:
        im.load()
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    w = max(1, round(width_in * dpi))
    h = max(1, round(rgb.height * w / rgb.width))
    small = rgb.resize((w, h), Image.LANCZOS) if w < rgb.width else rgb
    buf = io.BytesIO()
    small.quantize(256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True, dpi=(dpi, dpi))
    return buf.getvalue()


def lighten_heavy_svgs(folder: Path, dpi: int = SCREEN_DPI) -> list[Path]:
    """Show each figure in HTML at screen resolution unless its vector drawing is smaller.

    The self-contained HTML embeds every ``figures/*.svg`` (base64, a third larger); drawn as vectors
    with text as paths, comparison figures, box plots with jittered points and heat maps run to
    hundreds of kilobytes each. Every SVG with a ``.png`` beside it (200 dpi, the one the PDF and docx
    use) whose screen-resolution PNG (``dpi`` pixels per inch, 256 colours) is smaller is replaced by an
    SVG of the same size holding that picture; small vector drawings stay vectors. ``paper/`` keeps
    the vector versions of every figure. Returns the files replaced."""
    import base64

    replaced = []
    for svg in sorted(Path(folder).glob("*.svg")):
        png = svg.with_suffix(".png")
        if not png.exists():
            continue
        head = svg.read_text(encoding="utf-8", errors="replace")[:4000]
        w = re.search(r'<svg[^>]*\swidth="([0-9.]+)(pt|px|in)?"', head)
        h = re.search(r'<svg[^>]*\sheight="([0-9.]+)(pt|px|in)?"', head)
        if not (w and h) or "data:image/png;base64," in head:
            continue
        unit = w.group(2) or ""
        picture = _screen_png(png, float(w.group(1)) * _PT[unit], dpi)
        data = base64.b64encode(picture).decode("ascii")
        text = (
            f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{w.group(1)}{unit}" '
            f'height="{h.group(1)}{h.group(2) or ""}" viewBox="0 0 {w.group(1)} {h.group(1)}">'
            f'<image width="{w.group(1)}" height="{h.group(1)}" xlink:href="data:image/png;base64,{data}"/></svg>\n'
        )
        if len(text.encode("utf-8")) >= svg.stat().st_size:
            continue
        svg.write_text(text, encoding="utf-8")
        replaced.append(svg)
    return replaced
