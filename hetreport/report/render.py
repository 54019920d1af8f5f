"""Render a report project (``_quarto.yml`` + ``report.qmd`` + ``figures/``) to
self-contained HTML and to PDF.

Two routes render the *same* project:

``quarto``
    A Quarto executable (1.6 or later): ``quarto render report.qmd --to html``
    and ``--to typst`` (Quarto's Typst format writes the PDF). Quarto handles
    the cross-references, callouts, shortcodes and options in ``_quarto.yml``.
    Found through ``QUARTO_PATH``, then ``quarto`` on ``PATH``, then the binary
    inside the ``quarto-cli`` Python package if that is installed.

``builtin``
    No Quarto needed: pandoc (from ``pypandoc-binary``) with hetreport's Lua
    filter (``filters/hetreport.lua``: cross-references, callouts, the
    ``{{< pagebreak >}}`` shortcode, labelled equations) writes HTML with the
    stylesheet in ``assets/`` embedded, and writes Typst with the template in
    ``assets/``, which the ``typst`` wheel compiles to PDF. The options of
    ``_quarto.yml`` that matter here (image extension per format, toc,
    numbered sections, paper, margins, font, ``include-in-header``) are read
    from the project.

``render_project`` is atomic: it renders in a temporary copy of the project
and moves the outputs into the project folder only when every requested
format has rendered, so a failure leaves earlier outputs untouched.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from hetreport.errors import HetreportWarning, RenderError

__all__ = [
    "RenderOutcome",
    "SUPPORTED_FORMATS",
    "describe_route",
    "find_quarto",
    "render_project",
]

SUPPORTED_FORMATS: tuple[str, ...] = ("html", "pdf", "docx")
ROUTES: tuple[str, ...] = ("auto", "quarto", "builtin")
QUARTO_MIN_VERSION: tuple[int, int] = (1, 6)

_HERE = Path(__file__).resolve().parent
ASSETS_DIR = _HERE / "assets"
FILTERS_DIR = _HERE / "filters"
LUA_FILTER = FILTERS_DIR / "hetreport.lua"
HTML_CSS = ASSETS_DIR / "hetreport.css"
TYPST_TEMPLATE = ASSETS_DIR / "hetreport.typst"

# Quarto's format for each output we offer, and the file it writes.
_QUARTO_TO = {"html": "html", "pdf": "typst", "docx": "docx"}
_SUFFIX = {"html": ".html", "pdf": ".pdf", "docx": ".docx"}
_FORMAT_LABEL = {"html": "HTML", "pdf": "PDF", "docx": "Word (docx)"}

# Markdown as Quarto reads it is pandoc's markdown; nothing to switch on or off.
_PANDOC_FROM = "markdown"

_QUARTO_INSTALL_HINT = (
    "Install Quarto 1.6 or later (https://quarto.org/docs/get-started/) and put it on PATH, "
    "or set QUARTO_PATH to the quarto executable, or `pip install quarto-cli`; "
    "or render with route='builtin', which needs only pandoc and Typst (both installed with hetreport)."
)


@dataclass(frozen=True)
class RenderOutcome:
    """What ``render_project`` did: which route, and where each output is."""

    route: str
    outputs: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------
# Finding the tools
# --------------------------------------------------------------------------


def _executable(path: Path) -> Path | None:
    """``path`` if it is an executable file (following symlinks), else None."""
    try:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    except OSError:
        return None
    return None


def _quarto_in_dir(directory: Path) -> Path | None:
    for name in ("quarto", "quarto.exe", "quarto.cmd"):
        for candidate in (directory / "bin" / name, directory / name):
            found = _executable(candidate)
            if found:
                return found
    return None


def _quarto_from_env() -> Path | None:
    value = os.environ.get("QUARTO_PATH", "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        return _quarto_in_dir(path)
    return _executable(path)


def _quarto_from_python_package() -> Path | None:
    """The binary shipped inside the ``quarto-cli`` wheel (``quarto_cli/bin/quarto``).

    The package is located without importing it (it is a plain folder whose
    console script runs ``bin/quarto``)."""
    try:
        spec = importlib.util.find_spec("quarto_cli")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        found = _quarto_in_dir(Path(location))
        if found:
            return found
    return None


def find_quarto() -> Path | None:
    """The Quarto executable to use, or None.

    Looked up in this order: the ``QUARTO_PATH`` environment variable (the
    executable, or the folder holding it or its ``bin/``), ``quarto`` on
    ``PATH``, then the binary inside the ``quarto-cli`` Python package."""
    found = _quarto_from_env()
    if found:
        return found
    on_path = shutil.which("quarto")
    if on_path:
        return Path(on_path)
    return _quarto_from_python_package()


@lru_cache(maxsize=8)
def _quarto_version(path: str) -> str | None:
    """``quarto --version`` (e.g. "1.6.40"), or None if it does not answer."""
    try:
        proc = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    match = re.search(r"\d+\.\d+(?:\.\d+)*", proc.stdout)
    return match.group(0) if match else None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _pandoc_path() -> Path:
    try:
        import pypandoc
    except ImportError as exc:  # pragma: no cover - a hetreport dependency
        raise RenderError(
            "The builtin rendering route needs pandoc, which comes with the Python package "
            "pypandoc-binary, but it could not be imported "
            f"({exc}). Reinstall hetreport (`pip install hetreport`) or `pip install pypandoc-binary`."
        ) from exc
    try:
        return Path(pypandoc.get_pandoc_path())
    except OSError as exc:
        raise RenderError(
            f"The builtin rendering route needs pandoc, but pypandoc found none ({exc}). "
            "`pip install --force-reinstall pypandoc-binary` puts a pandoc binary inside the package."
        ) from exc


@lru_cache(maxsize=4)
def _pandoc_version(path: str) -> str:
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
        match = re.search(r"\d+(?:\.\d+)+", proc.stdout)
        if match:
            return match.group(0)
    except (OSError, subprocess.SubprocessError):
        pass
    return "?"


def _typst_version() -> str | None:
    if importlib.util.find_spec("typst") is None:
        return None
    try:
        from importlib.metadata import version

        return version("typst")
    except Exception:  # noqa: BLE001 - metadata missing in odd installs
        return "?"


@dataclass(frozen=True)
class _Route:
    kind: str  # "quarto" | "builtin"
    description: str  # printed in the report: tools and versions, never a path of this machine
    quarto: Path | None = None

    @property
    def where(self) -> str:
        """The description plus the executable's path, for error messages."""
        return f"{self.description} at {self.quarto}" if self.quarto else self.description


def _resolve_route(route: str) -> _Route:
    if route not in ROUTES:
        raise RenderError(
            f"Unknown rendering route '{route}'. Use one of: {', '.join(ROUTES)} "
            "('auto' uses Quarto when it is installed and the builtin pandoc + Typst route otherwise)."
        )
    if route in ("auto", "quarto"):
        quarto = find_quarto()
        version = _quarto_version(str(quarto)) if quarto else None
        usable = version is not None and _version_tuple(version)[:2] >= QUARTO_MIN_VERSION
        if quarto and usable:
            return _Route("quarto", f"quarto {version}", quarto)
        if route == "quarto":
            if quarto is None:
                raise RenderError("Rendering with Quarto was asked for, but no Quarto executable was found. " + _QUARTO_INSTALL_HINT)
            found = f"version {version}" if version else "a program that did not answer `quarto --version`"
            raise RenderError(
                f"Rendering with Quarto was asked for, but {quarto} is {found}; hetreport needs Quarto "
                f"{'.'.join(map(str, QUARTO_MIN_VERSION))} or later (for its Typst PDF format). " + _QUARTO_INSTALL_HINT
            )
    missing = [str(p) for p in (LUA_FILTER, HTML_CSS, TYPST_TEMPLATE) if not p.is_file()]
    if missing:
        raise RenderError(
            "hetreport's builtin rendering route needs files that are missing from this installation: "
            f"{', '.join(missing)}. Reinstall hetreport (its package data includes report/assets/ and "
            "report/filters/), or render with route='quarto'."
        )
    pandoc = _pandoc_path()
    typst_version = _typst_version() or "missing"
    return _Route("builtin", f"pandoc {_pandoc_version(str(pandoc))} + typst {typst_version}")


def describe_route(route: str = "auto") -> str:
    """What ``render_project(route=route)`` would use, as one line for the
    report's appendix: "quarto 1.6.40" or "pandoc 3.9 + typst 0.15.2" (tools and
    versions; the report never shows a path of the machine it was rendered on).
    Raises RenderError where rendering would."""
    return _resolve_route(route).description


# --------------------------------------------------------------------------
# Options from _quarto.yml (for the builtin route)
# --------------------------------------------------------------------------

_LENGTH = re.compile(r"^\d+(?:\.\d+)?(?:pt|mm|cm|in|em)$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
_NUMBERING = re.compile(r"^[0-9aAiI.\-() ]+$")
_MARGIN_KEYS = ("x", "y", "top", "bottom", "left", "right", "inside", "outside", "rest")


def _load_quarto_yml(project: Path) -> dict:
    path = project / "_quarto.yml"
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path} could not be read as YAML ({exc}). Fix the file, or copy hetreport's _quarto.yml over it.") from exc
    return data if isinstance(data, dict) else {}


def _format_options(config: dict, quarto_format: str) -> dict:
    """Top-level document options of ``_quarto.yml`` overlaid with those under
    ``format: <quarto_format>:``."""
    options = {k: v for k, v in config.items() if k not in ("project", "format")}
    formats = config.get("format")
    if isinstance(formats, dict) and isinstance(formats.get(quarto_format), dict):
        options.update(formats[quarto_format])
    return options


def _front_matter(path: Path) -> dict:
    """The YAML front matter of a document (``---`` ... ``---`` at its top), or {}."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    match = re.match(r"\A(?:<!--.*?-->\s*)*---\s*\n(.*?)\n---\s*\n", text, re.DOTALL)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _document_options(work: Path, document: str, quarto_format: str) -> dict:
    """As Quarto merges them: _quarto.yml's options, then the document's front matter (its top level,
    then its ``format: <quarto_format>:``) over them."""
    options = _format_options(_load_quarto_yml(work), quarto_format)
    options.update(_format_options(_front_matter(work / document), quarto_format))
    return options


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _toc_depth(options: dict) -> str | None:
    depth = options.get("toc-depth")
    if isinstance(depth, int) and 1 <= depth <= 6:
        return str(depth)
    return None


def _image_extension(options: dict, default: str) -> str:
    ext = str(options.get("default-image-extension") or default).lstrip(".")
    return ext if re.fullmatch(r"[A-Za-z0-9]+", ext) else default


def _typst_margin(value: object) -> str | None:
    if isinstance(value, dict):
        parts = []
        for key in _MARGIN_KEYS:
            length = value.get(key)
            if length is not None and _LENGTH.match(str(length).strip()):
                parts.append(f"{key}: {str(length).strip()}")
        return f"({', '.join(parts)})" if parts else None
    if value is not None and _LENGTH.match(str(value).strip()):
        return str(value).strip()
    return None


def _header_includes(options: dict, work: Path, suffix: str) -> list[str]:
    """``include-in-header`` of a format in _quarto.yml as pandoc arguments: each ``text:`` entry
    is written to a file in the (temporary) work folder, each ``file:`` entry or plain string must
    name a file inside the project. Quarto applies the same entries on its route."""
    entries = options.get("include-in-header")
    if entries is None:
        return []
    if not isinstance(entries, list):
        entries = [entries]
    args: list[str] = []
    for k, entry in enumerate(entries):
        if isinstance(entry, dict) and isinstance(entry.get("text"), str):
            path = work / f".hetreport-header-{k}{suffix}"
            path.write_text(entry["text"], encoding="utf-8")
        else:
            name = entry.get("file") if isinstance(entry, dict) else entry
            path = (work / str(name)).resolve() if isinstance(name, str) and name.strip() else None
            if path is None or not path.is_relative_to(work.resolve()) or not path.is_file():
                raise RenderError(
                    f"_quarto.yml's include-in-header entry {entry!r} is neither `text: ...` nor a file inside the "
                    "project folder. Write the header text inline (`- text: |`), or name a file next to _quarto.yml."
                )
        args += ["--include-in-header", str(path)]
    return args


# --------------------------------------------------------------------------
# Running tools
# --------------------------------------------------------------------------


def _tail(text: str, lines: int = 12, chars: int = 1500) -> str:
    kept: list[str] = []
    in_traceback = False
    for line in (text or "").strip().splitlines():
        if line.startswith("stack traceback:"):
            in_traceback = True  # a Lua traceback says nothing to the user
            continue
        if in_traceback and (line.startswith(("\t", " ")) or not line.strip()):
            continue
        in_traceback = False
        if line.strip():
            kept.append(line.rstrip())
    tail = " | ".join(kept[-lines:])
    if len(tail) > chars:
        tail = "..." + tail[-chars:]
    return tail or "(no error output)"


def _kill_tree(popen: subprocess.Popen) -> None:
    """End the process we started and everything in its session."""
    if os.name == "posix":
        try:
            os.killpg(popen.pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            pass
    popen.kill()


class _StepFailed(Exception):
    def __init__(self, tool: str, detail: str, hint: str):
        super().__init__(detail)
        self.tool = tool
        self.detail = detail
        self.hint = hint


#: the tools running now (formats render side by side): an interrupt of the run ends them all
_LIVE: set[subprocess.Popen] = set()


def stop_renderers() -> None:
    """End every pandoc or Quarto process this process's renders have running (an interrupt of the run)."""
    for popen in list(_LIVE):
        _kill_tree(popen)


def _run(cmd: list[str], cwd: Path, deadline: float, tool: str, hint: str) -> subprocess.CompletedProcess:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _StepFailed(tool, "the time limit was used up before this step started", "Raise render_project's timeout.")
    try:
        # A session of its own, so that a time-out ends the whole tree the
        # tool started (Quarto runs deno, pandoc and typst underneath).
        popen = subprocess.Popen(
            cmd,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=(os.name == "posix"),
        )
    except OSError as exc:
        raise _StepFailed(tool, f"it could not be started ({exc})", hint) from exc
    _LIVE.add(popen)
    with popen:
        try:
            stdout, stderr = popen.communicate(timeout=remaining)
        except subprocess.TimeoutExpired as exc:
            _kill_tree(popen)
            stdout, stderr = popen.communicate()
            raise _StepFailed(
                tool,
                f"it did not finish within the time limit; last output: {_tail(stderr or stdout)}",
                "Raise render_project's timeout, or look for a very large figure or table.",
            ) from exc
        finally:
            _LIVE.discard(popen)
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    if proc.returncode != 0:
        missing = _MISSING_IMAGE.search(proc.stderr or "")
        if missing:
            raise _StepFailed(
                tool,
                f'the figure file "{missing.group(1)}" that the document shows does not exist in the project '
                f"({tool} said: {_tail(proc.stderr)})",
                _MISSING_FIGURE_HINT,
            )
        raise _StepFailed(tool, f"it exited with code {proc.returncode}: {_tail(proc.stderr or proc.stdout)}", hint)
    _forward_warnings(proc.stderr)
    return proc


# Raised by filters/hetreport.lua for an image that is not there.
_MISSING_IMAGE = re.compile(r'image file not found: "([^"]*)"')
_MISSING_FIGURE_HINT = (
    "Write the figure into the project's figures/ folder (as .svg for HTML and .png for PDF, "
    "the extensions _quarto.yml's default-image-extension adds) or fix its path in the document."
)
_FILTER_WARNING = re.compile(r"^\[hetreport\] WARNING: (.*)$", re.MULTILINE)
_QUARTO_CROSSREF_WARNING = re.compile(r"^.*Unable to resolve crossref.*$", re.MULTILINE)


def _forward_warnings(stderr: str | None) -> None:
    """Cross-reference problems reported by the filter (or Quarto) become
    HetreportWarnings: the render succeeds, but the reader would see "?@fig-x"."""
    if not stderr:
        return
    for match in _FILTER_WARNING.finditer(stderr):
        warnings.warn(f"report rendering: {match.group(1).strip()}", HetreportWarning, stacklevel=4)
    for match in _QUARTO_CROSSREF_WARNING.finditer(stderr):
        warnings.warn(f"report rendering: {match.group(0).strip()}", HetreportWarning, stacklevel=4)


_MISSING_RESOURCE = re.compile(r"Could not fetch resource\s*'?([^'\n]*)", re.IGNORECASE)


def _check_missing_resources(stderr: str, tool: str) -> None:
    """pandoc only warns when an image cannot be embedded; treat it as an error."""
    match = _MISSING_RESOURCE.search(stderr or "")
    if match:
        raise _StepFailed(
            tool,
            f"a file the document refers to could not be embedded ({match.group(1).strip() or 'see the log'}): {_tail(stderr)}",
            _MISSING_FIGURE_HINT,
        )


# --- Quarto ---------------------------------------------------------------


def _render_quarto(quarto: Path, work: Path, document: str, fmt: str, deadline: float) -> Path:
    cmd = [str(quarto), "render", document, "--to", _QUARTO_TO[fmt]]
    proc = _run(
        cmd,
        work,
        deadline,
        "quarto",
        "Run `quarto check` to see whether Quarto and its Typst are working, or render with route='builtin'.",
    )
    if fmt == "html":
        _check_missing_resources(proc.stderr, "quarto")
    output = work / (Path(document).stem + _SUFFIX[fmt])
    if not output.exists():
        raise _StepFailed(
            "quarto",
            f"it finished but wrote no {output.name}: {_tail(proc.stderr)}",
            "Check that _quarto.yml does not set output-dir or output-file, and run `quarto check`.",
        )
    return output


# --- builtin: pandoc (+ typst) -------------------------------------------


_PANDOC_HINT = "The message names the problem (a missing figure, or markdown pandoc cannot read); fix report.qmd or the files it refers to."


def _pandoc_command(
    document: str, to: str, output: str, options: dict, default_ext: str, writer_args: list[str], toc_depth_args
) -> list[str]:
    """pandoc's argument list for the builtin route: the same reader, Lua filter and _quarto.yml
    options (image extension, toc, numbering) for every writer."""
    cmd = [
        str(_pandoc_path()),
        document,
        "--from",
        _PANDOC_FROM,
        "--to",
        to,
        "--standalone",
        *writer_args,
        "--lua-filter",
        str(LUA_FILTER),
        "--default-image-extension",
        _image_extension(options, default_ext),
        "--resource-path",
        ".",
        "--output",
        output,
    ]
    if _truthy(options.get("toc", True)):
        cmd.append("--toc")
        depth = _toc_depth(options)
        if depth:
            cmd += toc_depth_args(depth)
    if _truthy(options.get("number-sections", True)):
        cmd.append("--number-sections")
    return cmd


def _render_builtin_html(work: Path, document: str, deadline: float) -> Path:
    options = _document_options(work, document, "html")
    output = work / (Path(document).stem + ".html")
    cmd = _pandoc_command(
        document,
        "html5",
        output.name,
        options,
        "svg",
        ["--embed-resources", "--mathml", "--css", str(HTML_CSS), *_header_includes(options, work, ".html")],
        lambda depth: ["--toc-depth", depth],
    )
    proc = _run(cmd, work, deadline, "pandoc", _PANDOC_HINT)
    _check_missing_resources(proc.stderr, "pandoc")
    if not output.exists():
        raise _StepFailed("pandoc", f"it wrote no {output.name}: {_tail(proc.stderr)}", _PANDOC_HINT)
    return output


def _render_builtin_docx(work: Path, document: str, deadline: float) -> Path:
    """Word through pandoc's docx writer: headings as Word headings, pipe tables as Word tables,
    figures (PNG) embedded with their alt text."""
    options = _document_options(work, document, "docx")
    output = work / (Path(document).stem + ".docx")
    cmd = _pandoc_command(document, "docx", output.name, options, "png", [], lambda depth: ["--toc-depth", depth])
    proc = _run(cmd, work, deadline, "pandoc", _PANDOC_HINT)
    _check_missing_resources(proc.stderr, "pandoc")
    if not output.exists():
        raise _StepFailed("pandoc", f"it wrote no {output.name}: {_tail(proc.stderr)}", _PANDOC_HINT)
    return output


def _typst_error_text(exc: Exception) -> str:
    """Typst's diagnostic (message, file:line and the offending source line),
    without the decoration lines of its box drawing."""
    diagnostic = str(getattr(exc, "diagnostic", "") or "")
    text = diagnostic if diagnostic.strip() else str(getattr(exc, "message", "") or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip().strip("│").strip()]
    for hint in getattr(exc, "hints", None) or []:
        if hint not in text:
            lines.append(f"hint: {hint}")
    return "\n".join(lines)


def _render_builtin_pdf(work: Path, document: str, deadline: float) -> Path:
    try:
        import typst
    except ImportError as exc:
        raise _StepFailed(
            "typst",
            f"the typst Python package could not be imported ({exc})",
            "Reinstall hetreport, or `pip install typst`.",
        ) from exc

    options = _document_options(work, document, "typst")
    stem = Path(document).stem
    typ_path = work / f"{stem}.typ"
    pdf_path = work / f"{stem}.pdf"
    cmd = _pandoc_command(
        document,
        "typst",
        typ_path.name,
        options,
        "png",
        ["--template", str(TYPST_TEMPLATE), *_header_includes(options, work, ".typ")],
        lambda depth: ["--variable", f"toc-depth={depth}"],
    )
    if _truthy(options.get("number-sections", True)):
        numbering = str(options.get("section-numbering") or "1.1.1")
        if not _NUMBERING.match(numbering):
            numbering = "1.1.1"
        cmd += ["--variable", f"section-numbering={numbering}"]
    papersize = options.get("papersize")
    if papersize and _SAFE_WORD.match(str(papersize)):
        cmd += ["--variable", f"papersize={str(papersize).strip().lower()}"]
    margin = _typst_margin(options.get("margin"))
    if margin:
        cmd += ["--variable", f"margin-typst={margin}"]
    fontsize = options.get("fontsize")
    if fontsize and _LENGTH.match(str(fontsize).strip()):
        cmd += ["--variable", f"fontsize={str(fontsize).strip()}"]
    mainfont = options.get("mainfont")
    if mainfont and _SAFE_WORD.match(str(mainfont)):
        cmd += ["--variable", f"mainfont={str(mainfont).strip()}"]

    _run(cmd, work, deadline, "pandoc", _PANDOC_HINT)
    if time.monotonic() > deadline:
        raise _StepFailed("typst", "the time limit was used up before Typst started", "Raise render_project's timeout.")
    try:
        typst.compile(str(typ_path), output=str(pdf_path), root=str(work))
    except Exception as exc:  # typst.TypstError, or RuntimeError from older wheels
        raise _StepFailed(
            "typst",
            f"it stopped with: {_tail(_typst_error_text(exc))}",
            "If it names a missing file, write that figure (as PNG) into figures/ or fix its path; "
            "otherwise the Typst line it quotes was converted from report.qmd by pandoc with hetreport's "
            "template and filter: that text in report.qmd needs changing, or it is a hetreport bug "
            "to report (route='quarto' renders the same project where Quarto is installed).",
        ) from exc
    if not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise _StepFailed("typst", "it wrote no PDF", "Check the typst package installation.")
    return pdf_path


# --------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------


def _normalise_formats(formats: Sequence[str] | str) -> list[str]:
    if isinstance(formats, str):
        formats = [formats]
    wanted: list[str] = []
    for fmt in formats:
        name = str(fmt).strip().lower()
        if name not in SUPPORTED_FORMATS:
            raise RenderError(f"Unknown output format '{fmt}'. The supported formats are: {', '.join(SUPPORTED_FORMATS)}.")
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise RenderError(f"No output format was asked for. Pass one or more of: {', '.join(SUPPORTED_FORMATS)}.")
    return wanted


def _copy_project(source: Path, target: Path, stem: str) -> None:
    """Copy the project, without earlier outputs or Quarto's scratch folders."""
    # paper/ (figures and tables for a manuscript) is written while the documents render, and neither shows it
    skip_top = {f"{stem}.html", f"{stem}.pdf", f"{stem}.typ", f"{stem}.docx", f"{stem}_files", ".quarto", "paper"}

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = {n for n in names if n.startswith(".hetreport-")}
        if Path(directory).resolve() == source:
            ignored |= {n for n in names if n in skip_top}
        return ignored

    shutil.copytree(source, target, ignore=ignore, symlinks=False)


def _install_output(built: Path, final: Path) -> None:
    """Move ``built`` to ``final`` so that ``final`` is replaced in one step."""
    partial = final.with_name(f".hetreport-{final.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(built, partial)
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()


def _render_all(one, wanted: list[str], parallel: bool) -> dict[str, object]:
    """``one(fmt)`` for every format: its output path, or the exception it raised (in ``wanted``'s order, so
    the first failing format is the one reported). ``parallel``: each format in a thread of its own (the work
    is in pandoc's and Typst's own code, which does not hold the GIL); otherwise one after the other, stopping
    at the first failure."""
    results: dict[str, object] = {}
    if not parallel or len(wanted) == 1:
        for fmt in wanted:
            try:
                results[fmt] = one(fmt)
            except Exception as exc:
                results[fmt] = exc
                break
        return results
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="hetreport-render") as pool:
        futures = {fmt: pool.submit(one, fmt) for fmt in wanted}
        try:
            for fmt, future in futures.items():
                try:
                    results[fmt] = future.result()
                except Exception as exc:
                    results[fmt] = exc
        except BaseException:  # an interrupt (or SIGTERM) of the run: end the tools, do not wait for them
            for future in futures.values():
                future.cancel()
            stop_renderers()
            raise
    return results


def render_project(
    project_dir: Path,
    formats: Sequence[str] = ("html", "pdf"),
    route: str = "auto",
    document: str = "report.qmd",
    timeout: float = 600,
) -> RenderOutcome:
    """Render ``project_dir/document`` to each of ``formats`` ("html", "pdf").

    ``route`` is "auto" (Quarto 1.6+ if found, else builtin), "quarto" or
    "builtin". Outputs are written as ``<document stem>.html`` / ``.pdf`` in
    ``project_dir`` only after every format has rendered in a temporary copy
    of the project; on any failure a RenderError explains what failed and
    earlier outputs stay as they were. ``timeout`` (seconds) bounds the
    external programs of the whole call (pandoc, Quarto and what Quarto runs,
    which are ended on expiry); the builtin route's Typst compile runs in this
    process and is only checked against the deadline before it starts."""
    wanted = _normalise_formats(formats)
    project = Path(project_dir).expanduser().resolve()
    if not project.is_dir():
        raise RenderError(
            f"The report project folder {project} does not exist. Build the report first "
            "(it writes _quarto.yml, report.qmd and figures/ there), or pass the right folder."
        )
    if Path(document).name != document:
        raise RenderError(f"The document to render must be a file name inside the project folder, not '{document}'.")
    if not (project / document).is_file():
        raise RenderError(
            f"{project / document} does not exist, so there is nothing to render. Build the report "
            "first, or pass document= with the name of the .qmd file in the project folder."
        )
    resolved = _resolve_route(route)
    stem = Path(document).stem
    deadline = time.monotonic() + float(timeout)

    built: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="hetreport-render-") as tmp:
        work = Path(tmp) / project.name
        try:
            _copy_project(project, work, stem)
        except OSError as exc:
            raise RenderError(
                f"Could not copy the project {project} to a temporary folder for rendering ({exc}). "
                "Check that the files are readable and the temporary folder has room."
            ) from exc

        def one(fmt: str) -> Path:
            if resolved.kind == "quarto":
                assert resolved.quarto is not None
                return _render_quarto(resolved.quarto, work, document, fmt, deadline)
            if fmt == "html":
                return _render_builtin_html(work, document, deadline)
            if fmt == "docx":
                return _render_builtin_docx(work, document, deadline)
            return _render_builtin_pdf(work, document, deadline)

        # the builtin route's formats write different files (pandoc and Typst processes of their own), so they
        # run side by side; Quarto renders one format at a time (it shares scratch folders in the project)
        attempts = _render_all(one, wanted, parallel=resolved.kind != "quarto")
        for fmt, got in attempts.items():  # in wanted's order, up to the first failure
            if isinstance(got, _StepFailed):
                kept = ", ".join(f"{stem}{_SUFFIX[f]}" for f in wanted)
                raise RenderError(
                    f"Rendering {document} to {_FORMAT_LABEL[fmt]} on the {resolved.kind} route "
                    f"({resolved.where}) failed in {got.tool}: {got.detail}. "
                    f"{got.hint} Nothing was written to {project}; any earlier {kept} is unchanged."
                ) from got
            if isinstance(got, BaseException):
                raise got
            built[fmt] = got

        outputs: dict[str, Path] = {}
        for fmt in wanted:
            final = project / f"{stem}{_SUFFIX[fmt]}"
            try:
                _install_output(built[fmt], final)
            except OSError as exc:
                raise RenderError(
                    f"{_FORMAT_LABEL[fmt]} was rendered but could not be written to {final} ({exc}). "
                    "Check that the project folder is writable and the file is not open elsewhere."
                ) from exc
            outputs[fmt] = final
    return RenderOutcome(route=resolved.description, outputs=outputs)
