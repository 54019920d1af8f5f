"""Many studies in one Quarto project: ``hetreport run A.yml B.yml ... --out SITE``.

Each study spec is fitted and its full report rendered by a worker (local processes, or
a Dask cluster with ``scheduler=``; :mod:`hetreport.executor`), exactly as ``hetreport run SPEC`` does for one study;
the main process then writes an index page with every study's headline numbers side by
side and links to each study's HTML page and PDF. The layout of ``SITE``::

    SITE/project.json               which specs ran, slugs, status, error messages, timings
    SITE/studies/<slug>/            each study's saved results (as `hetreport fit` writes them)
    SITE/site/_quarto.yml           one Quarto project (type: default) ...
    SITE/site/index.qmd, index.html ... its index page (HTML only) ...
    SITE/site/<slug>/report.qmd     ... and one page per study: the study report, with
    SITE/site/<slug>/figures/           its figures, report.html and report.pdf

``quarto render`` in ``SITE/site`` renders the same pages (the index's front matter limits
it to HTML; every study page gets the formats of ``_quarto.yml``). Without Quarto, every
page is rendered by the builtin pandoc + Typst route and pages link by relative paths.

A study that fails (bad spec, bad data, a model or rendering error) is listed on the index
with its one-paragraph error message and does not stop the others (when only its report
failed, its fitted results are still kept in ``studies/<slug>``). The headline numbers
are read from each study's saved ``summary.json`` (the :mod:`hetreport.facts` of every
analysis), the same numbers the study report prints. Everything is built in a temporary
folder next to ``SITE`` and swapped in at the end, so a failure before the swap leaves an
earlier ``SITE`` untouched.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from jinja2 import TemplateError
from markupsafe import Markup

from .errors import HetreportError, HetreportWarning, RenderError, SpecError
from .facts import Interval
from .report import format as fmt
from .simstudy.report import _widths
from .versions import package_versions

PROJECT_JSON = "project.json"
STUDIES = "studies"
SITE = "site"
INDEX_TEMPLATE = "site/index.qmd.j2"
YAML_SUFFIXES = (".yml", ".yaml")


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class StudyOutcome:
    """One study of a project: where its spec came from, its slug, and how it went."""

    slug: str
    spec_path: str
    title: str
    status: str  # "ok" | "error"
    error_kind: str | None = None
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # format -> path relative to SITE/site
    seconds: float | None = None
    warnings: tuple[str, ...] = ()  # hetreport's warnings about the data or the fit
    results: str | None = None  # the saved results, relative to SITE (also kept when only the report failed)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class ProjectOutcome:
    """What :func:`run_project` wrote: the site folder, the index page and every study."""

    out: Path
    index: Path
    studies: tuple[StudyOutcome, ...]
    route: str

    @property
    def failed(self) -> tuple[StudyOutcome, ...]:
        return tuple(s for s in self.studies if not s.ok)


# --------------------------------------------------------------------------- specs and slugs


def _spec_kind(path: Path) -> tuple[bool, str]:
    """Is ``path`` a study spec? A YAML mapping with ``analyses`` (or ``outcome``) is;
    a design-only pre-registration spec, a simulation design or anything else is not."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True, ""  # let the study fail with the spec loader's own message
    if not isinstance(raw, dict):
        return False, "not a YAML mapping"
    if "analyses" not in raw and "outcome" not in raw:
        return False, "no 'analyses' key (a simulation design or another YAML file)"
    if "design" in raw and "data" not in raw:
        return False, "a design-only pre-registration spec (no 'data')"
    return True, ""


def collect_specs(specs, log=None) -> list[Path]:
    """The spec files named by ``specs`` (files, or folders whose ``*.yml``/``*.yaml`` study
    specs are taken in name order); each file once."""
    say = log or (lambda m: None)
    found: list[Path] = []
    for item in specs:
        p = Path(item)
        if p.is_dir():
            names = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in YAML_SUFFIXES and not q.name.startswith(("_", "."))
            )
            picked = []
            for q in names:
                ok, why = _spec_kind(q)
                if ok:
                    picked.append(q)
                else:
                    say(f"skipping {q}: {why}")
            if not picked:
                raise SpecError(
                    f"the folder '{p}' holds no study spec (no *.yml or *.yaml file with 'analyses'). "
                    "Give the spec files themselves, or a folder that holds them."
                )
            found += picked
        elif p.is_file():
            found.append(p)
        else:
            raise SpecError(f"'{p}' is neither a spec file nor a folder. Give the path of a YAML study spec, or of a folder of specs.")
    unique: list[Path] = []
    seen = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
        else:
            say(f"{p} was given twice; it runs once")
    return unique


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "study"


def assign_slugs(paths: list[Path]) -> list[str]:
    """A folder name per spec: its file name's stem; specs whose stems collide take their folder's
    name (``tomz-weeks/spec.yml`` -> ``tomz-weeks``), or folder and stem where the folders collide
    too, and what still collides gets ``-2``, ``-3``."""
    stems = [_slugify(p.stem) for p in paths]
    parents = [_slugify(p.resolve().parent.name) for p in paths]
    slugs = []
    for p, s, d in zip(paths, stems, parents):
        if stems.count(s) == 1:
            slugs.append(s)
        elif sum(1 for s2, d2 in zip(stems, parents) if s2 == s and d2 == d) == 1 and d not in stems:
            slugs.append(d)
        else:
            slugs.append(_slugify(f"{d}-{p.stem}"))
    out, used = [], set()
    for s in slugs:
        cand, k = s, 1
        while cand in used or cand == "index":
            k += 1
            cand = f"{s}-{k}"
        used.add(cand)
        out.append(cand)
    return out


def _title_of(path: Path) -> str:
    """The spec's title for the index, read without validating (a failed study still has a name)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and isinstance(raw.get("title"), (str, int, float)) and str(raw["title"]).strip():
            return str(raw["title"]).strip()
    except Exception:  # noqa: BLE001 - the study itself reports what is wrong
        pass
    return path.name


# --------------------------------------------------------------------------- the worker


def _zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())
    return buf.getvalue()


def run_study(fit, spec_path: str, slug: str, formats=None, route: str = "auto", verbose: bool = False) -> dict:
    """Fit one study with ``fit`` (``hetreport.api.fit``, passed in so that this module never imports the
    API that calls it) and render its page (run inside a worker process).

    Works in a temporary folder and returns the result as a zip archive (``studies/<slug>``
    and ``site/<slug>``), so a Dask worker need not share a file system for outputs. Never
    raises for a study's own problem: the error becomes ``status: error`` with its message."""
    import warnings

    from .report.build import build_project
    from .report.render import render_project

    def say(msg: str) -> None:
        if verbose:
            print(f"hetreport: [{slug}] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hetreport-study-"))
    saved = False

    def failure(kind: str, message: str) -> dict:
        out = {"status": "error", "error_kind": kind, "error": message, "seconds": round(time.perf_counter() - t0, 1)}
        if saved:  # the fit worked and only the report failed: keep the results, `hetreport report` needs no refit
            shutil.rmtree(tmp / SITE, ignore_errors=True)
            out.update(archive=_zip_folder(tmp), results=f"{STUDIES}/{slug}")
        return out

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results = fit(spec_path, progress=False, log=say)
            results.save(tmp / STUDIES / slug)
            saved = True
            wanted = list(formats or results.spec.report.formats)
            page = tmp / SITE / slug
            say("figures and tables")
            build_project(results, page, route=route, formats=wanted)
            say(f"rendering {', '.join(wanted)}")
            outcome = render_project(page, formats=wanted, route=route)
            (page / "_quarto.yml").unlink()  # the site's one _quarto.yml applies (Quarto: never nest project files)
        notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, HetreportWarning)))
        for note in notes:
            say(f"warning: {note}")
        say(f"done in {time.perf_counter() - t0:.0f} s")
        return {
            "status": "ok",
            "title": results.spec.title,
            "archive": _zip_folder(tmp),
            "outputs": {k: f"{slug}/{Path(v).name}" for k, v in outcome.outputs.items()},
            "warnings": notes,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    except HetreportError as exc:  # the main process logs the failure and lists it on the index
        return failure(exc.kind, str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug in hetreport or a library: still reported, the others go on
        if os.environ.get("HETREPORT_DEBUG"):
            import traceback

            traceback.print_exc()
        return failure(
            "Internal error",
            f"{type(exc).__name__}: {str(exc)[:600]}. This is a bug in hetreport; run this spec on "
            "its own with HETREPORT_DEBUG=1 to see the traceback and report it.",
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _worker_failed(task: tuple, exc: BaseException, dask: bool) -> dict:
    """What the index says of a study whose worker stopped (local) or whose Dask task failed."""
    if dask:
        why = (
            f"the Dask task fitting this study failed ({type(exc).__name__}: {exc}). Check that every worker "
            "has hetreport installed and can read the spec and data files at the same paths."
        )
    else:
        why = (
            f"the process fitting this study stopped ({type(exc).__name__}: {exc}); "
            "it may have run out of memory. Run this spec on its own, or with fewer --workers."
        )
    return {"status": "error", "error_kind": "Worker error", "error": why}


# --------------------------------------------------------------------------- the index page


def _interval(d: dict) -> Interval:
    return Interval(float(d["estimate"]), float(d["lower"]), float(d["upper"]))


def _linear_scale(family: str | None) -> str | None:
    """For a non-identity link, the scale σθ is on (the effects themselves are on the outcome's scale)."""
    if not family or family == "gaussian":
        return None
    from .models.families import FAMILIES

    fam = FAMILIES.get(family)
    return None if fam is None or fam.identity else fam.linear_scale


def headline_rows(study_dir: Path) -> list[dict]:
    """One row per analysis from a saved study folder (summary.json = the analyses' facts)."""
    summary = json.loads((study_dir / "summary.json").read_text())
    rows = []
    for name, f in summary.items():
        meta_path = study_dir / f"analysis_{name}.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        title = meta.get("title") or name
        rows.append(
            {
                "analysis": name,
                "title": title or name,
                "n": f["n"],
                "n_groups": f["n_groups"],
                "average": _interval(f["average"]),
                "smallest": float(f["smallest"]["effect"]["estimate"]),
                "largest": float(f["largest"]["effect"]["estimate"]),
                "sigma_theta": _interval(f["sigma_theta"]),
                "diagnostics_ok": bool(f["diagnostics_ok"]),
                "n_flags": len(f.get("flags") or []),
                "linear_scale": _linear_scale(meta.get("hierarchical", {}).get("family")),
            }
        )
    return rows


def _link(text, target: str) -> Markup:
    return Markup(f"[{fmt.md(text)}]({target})")


def _diagnostics_cell(row: dict, page: str | None):
    """'OK', or 'check (k warnings)' linking to that analysis's diagnostics section of the study page."""
    if row["diagnostics_ok"]:
        return "OK"
    text = f"check ({row['n_flags']} warning{'s' if row['n_flags'] != 1 else ''})"
    if not page:
        return text
    from .report.build import _slug  # the section ids of the study report

    return _link(text, f"{page}#sec-diagnostics-{_slug(row['analysis'])}")


def index_context(site_root: Path, studies: list[StudyOutcome], meta: dict) -> dict:
    rows, any_link_scale = [], False
    for s in studies:
        if not s.ok:
            continue
        page = s.outputs.get("html")
        study_cell = _link(s.title, page) if page else fmt.md(s.title)
        if "pdf" in s.outputs:
            study_cell = Markup(f"{study_cell} ([PDF]({s.outputs['pdf']}))")
        for k, r in enumerate(headline_rows(site_root / STUDIES / s.slug)):
            any_link_scale |= r["linear_scale"] is not None
            rows.append(
                [
                    study_cell if k == 0 else "",
                    r["title"],
                    fmt.count(r["n"]),
                    fmt.count(r["n_groups"]),
                    fmt.interval(r["average"]),
                    f"{fmt.num(r['smallest'])} to {fmt.num(r['largest'])}",
                    fmt.interval(r["sigma_theta"]) + (f", {r['linear_scale']} scale" if r["linear_scale"] else ""),
                    _diagnostics_cell(r, page),
                ]
            )
    table = (
        fmt.pipe_table(
            [
                "Study",
                "Analysis",
                "N",
                "Groups",
                "Average effect (95% interval)",
                "Range of group effects",
                "σθ (95% interval)",
                "Diagnostics",
            ],
            rows,
            "llrrrrrl",
            "Headline numbers of every analysis of every study: the hierarchical model's population-average effect, "
            "the smallest to the largest group effect (posterior means), and σθ, the slope standard deviation of the "
            "full crossing of the modifiers: the variation in effects that the modifiers and their lower-order "
            "combinations (or the slope predictors) do not explain.",
            "tbl-studies",
        )
        if rows
        else None
    )
    if table is not None:  # relative column widths (pandoc reads them from the separator line's dashes)
        table = _widths(table, [19, 16, 6, 7, 15, 13, 14, 10])
    failed = [
        {"title": s.title, "spec": s.spec_path, "kind": s.error_kind or "Error", "error": s.error or "unknown error", "results": s.results}
        for s in studies
        if not s.ok
    ]
    runs = fmt.pipe_table(
        ["Study", "Spec file", "Status", "Time (s)"],
        [[s.title, fmt.code_span(s.spec_path), "rendered" if s.ok else "failed", fmt.num(s.seconds, 0)] for s in studies],
        "lllr",
        f"How each study ran ({meta['where']}).",
        "tbl-runs",
    )
    return {
        "title": meta["title"],
        "date": meta["created"][:10],
        "n_studies": len(studies),
        "n_ok": sum(s.ok for s in studies),
        "n_failed": len(failed),
        "table": table,
        "failed": failed,
        "runs": runs,
        "where": meta["where"],
        "formats": meta["formats"],
        "any_pdf": any("pdf" in s.outputs for s in studies),
        "any_link_scale": any_link_scale,
    }


def write_index(site_root: Path, studies: list[StudyOutcome], meta: dict) -> Path:
    """Write ``site/_quarto.yml`` and ``site/index.qmd`` from the saved studies."""
    from .report.build import environment
    from .resources import quarto_yml

    site = site_root / SITE
    site.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(quarto_yml(), site / "_quarto.yml")
    env = environment()
    try:
        text = env.get_template(INDEX_TEMPLATE).render(**index_context(site_root, studies, meta))
    except TemplateError as exc:
        raise RenderError(f"the project index template failed ({exc}); this is a bug in hetreport.") from None
    (site / "index.qmd").write_text(text, encoding="utf-8")
    return site / "index.qmd"


# Options the index's front matter sets for Quarto; the builtin route reads _quarto.yml only,
# so its staging copy gets them there.
INDEX_HTML_OPTIONS = {"toc": False, "number-sections": False}


def render_index(site: Path, route: str) -> Path:
    """Render ``site/index.qmd`` to HTML in a staging folder and move ``index.html`` into ``site``."""
    from .report.render import render_project

    with tempfile.TemporaryDirectory(prefix="hetreport-index-") as tmp:
        stage = Path(tmp) / "site"
        stage.mkdir()
        config = yaml.safe_load((site / "_quarto.yml").read_text()) or {}
        config.update(INDEX_HTML_OPTIONS)
        html = (config.get("format") or {}).get("html")
        if isinstance(html, dict):
            html.update(INDEX_HTML_OPTIONS)
        (stage / "_quarto.yml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        shutil.copyfile(site / "index.qmd", stage / "index.qmd")
        outcome = render_project(stage, formats=["html"], route=route, document="index.qmd")
        shutil.copyfile(outcome.outputs["html"], site / "index.html")
    return site / "index.html"


# --------------------------------------------------------------------------- the entry point


def run_project(
    specs,
    out,
    *,
    fit,
    formats=None,
    route: str = "auto",
    scheduler: str | None = None,
    workers: int | None = None,
    log=None,
    client=None,
    title: str | None = None,
    verbose: bool | None = None,
) -> ProjectOutcome:
    """Fit every study spec in ``specs`` (files or folders of specs) in parallel with ``fit``
    (``hetreport.api.fit``; ``hetreport.api.run_project`` passes it) and write one Quarto project
    into ``out`` (layout in this module's docstring); returns what was written.

    Studies run on ``workers`` local processes (default: one per study, at most one per core)
    or, with ``scheduler`` (``tcp://host:port``) or ``client`` (a ``distributed.Client``), on a
    Dask cluster. A study that fails is listed on the index with its error; check
    ``outcome.failed``. Raises only when nothing can be written (no specs, an unusable --out,
    Quarto asked for but missing, the index failing to render); then ``out`` is untouched."""

    say = log or (lambda m: None)
    paths = collect_specs(specs, log=say)
    if not paths:
        raise SpecError("no study spec was given. Name one or more spec files, or a folder of specs.")
    slugs = assign_slugs(paths)
    out = Path(out)
    from . import outdir

    verbose = log is not None if verbose is None else verbose  # workers print their progress to stderr
    guard = outdir.Output(out, kind="project")  # new, empty or an earlier hetreport output; locked; before any fit
    guard.__enter__()
    try:
        return _run_project_in(fit, guard, paths, slugs, out, formats, route, scheduler, workers, client, title, verbose, say)
    finally:
        guard.__exit__(None, None, None)


def _run_project_in(fit, guard, paths, slugs, out, formats, route, scheduler, workers, client, title, verbose, say) -> ProjectOutcome:
    from .report.render import describe_route

    route_text = describe_route(route)  # fails now, not after the fits, if Quarto is asked for and missing
    tasks = [(fit, str(p.resolve()), slug, list(formats) if formats else None, route, verbose) for p, slug in zip(paths, slugs)]
    use_dask = scheduler is not None or client is not None
    from .executor import cores

    workers = max(1, min(len(tasks), workers or cores()))
    where = (
        (f"Dask scheduler {scheduler}" if scheduler else "a Dask client")
        if use_dask
        else f"{workers} local process{'es' if workers > 1 else ''}"
    )
    say(f"{len(tasks)} studies on {where}: {', '.join(slugs)}")
    tmp = guard.stage()  # the new project is written beside the old one and switched in at the end
    t0 = time.monotonic()
    try:
        results: dict[str, dict] = {}

        def on_result(slug: str, res: dict) -> None:
            if "archive" in res:
                with zipfile.ZipFile(io.BytesIO(res.pop("archive"))) as z:
                    z.extractall(tmp)
            if res.get("status") == "ok":
                say(f"[{slug}] rendered ({res.get('seconds', 0):.0f} s)")
            else:
                say(
                    f"[{slug}] failed: {res.get('error_kind')}"
                    + (f"; its fitted results are kept in {res['results']}" if res.get("results") else "")
                )
            results[slug] = res

        from . import executor as runner

        runner.run(
            run_study,
            tasks,
            lambda task, res: on_result(task[2], res),
            workers=workers,
            scheduler=scheduler,
            client=client,
            on_error=lambda task, exc: _worker_failed(task, exc, use_dask),
            key=lambda task: f"hetreport-study-{task[2]}",
            local_note="the studies run on local processes.",
        )
        studies = []
        for p, slug in zip(paths, slugs):
            res = results.get(slug, {"status": "error", "error_kind": "Worker error", "error": "the study did not return a result."})
            studies.append(
                StudyOutcome(
                    slug=slug,
                    spec_path=str(p),
                    title=res.get("title") or _title_of(p),
                    status=res["status"],
                    error_kind=res.get("error_kind"),
                    error=res.get("error"),
                    outputs=res.get("outputs", {}),
                    seconds=res.get("seconds"),
                    warnings=tuple(res.get("warnings", ())),
                    results=res.get("results") or (f"{STUDIES}/{slug}" if res["status"] == "ok" else None),
                )
            )
        meta = {
            "title": title or f"Heterogeneous effects in {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "where": where,
            "route": route_text,
            "formats": list(formats) if formats else None,
            "wall_s": round(time.monotonic() - t0, 1),
            "packages": package_versions(),
            "studies": [
                {
                    "slug": s.slug,
                    "spec": s.spec_path,
                    "title": s.title,
                    "status": s.status,
                    "error_kind": s.error_kind,
                    "error": s.error,
                    "outputs": s.outputs,
                    "results": s.results,
                    "seconds": s.seconds,
                    "warnings": list(s.warnings),
                }
                for s in studies
            ],
        }
        say("writing the index page")
        write_index(tmp, studies, meta)
        render_index(tmp / SITE, route)
        (tmp / PROJECT_JSON).write_text(json.dumps(meta, indent=2, default=str))
        guard.commit(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ProjectOutcome(out=out, index=out / SITE / "index.html", studies=tuple(studies), route=route_text)
