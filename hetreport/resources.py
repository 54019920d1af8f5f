"""Where hetreport's report templates and its ``_quarto.yml`` are, in every kind of install.

The repository keeps them at its top level (``templates/`` and ``_quarto.yml``, next to
``hetreport/``), where a reader of the design finds them. A built wheel ships them inside the
package as ``hetreport/_data/templates/`` and ``hetreport/_data/_quarto.yml`` (pyproject.toml
maps the top-level folder there). They are looked up through :mod:`importlib.resources` first,
then in the source checkout (a plain checkout on ``PYTHONPATH`` or an editable install, where the
package folder is the repository's ``hetreport/``).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import RenderError

_DATA = "_data"


def _packaged() -> Path | None:
    try:
        root = resources.files("hetreport") / _DATA
    except (ModuleNotFoundError, TypeError):
        return None
    # A wheel installs into a real folder, so the Traversable is a path on disk (Jinja's
    # FileSystemLoader and shutil need one).
    path = Path(str(root))
    return path if (path / "templates").is_dir() and (path / "_quarto.yml").is_file() else None


def _checkout() -> Path | None:
    path = Path(str(resources.files("hetreport"))).resolve().parent
    return path if (path / "templates").is_dir() and (path / "_quarto.yml").is_file() else None


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The folder holding ``templates/`` and ``_quarto.yml``."""
    root = _packaged() or _checkout()
    if root is None:
        raise RenderError(
            "hetreport's report templates and _quarto.yml are missing from this installation (looked in "
            f"{Path(str(resources.files('hetreport'))) / _DATA} and next to the package). Reinstall hetreport "
            "(`pip install --force-reinstall hetreport`); from a source checkout, `pip install .` builds them in."
        )
    return root


def templates_dir() -> Path:
    """hetreport's Jinja templates (report.qmd.j2 and its parts, preregistration/, simulation/, site/)."""
    return data_root() / "templates"


def quarto_yml() -> Path:
    """The ``_quarto.yml`` copied into every report project."""
    return data_root() / "_quarto.yml"


__all__ = ["data_root", "quarto_yml", "templates_dir"]
