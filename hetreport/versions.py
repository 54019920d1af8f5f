"""The versions of hetreport and the packages its numbers depend on, recorded in every manifest.

A leaf module (it imports nothing of hetreport's but the version string), so that the API, the project
runner, the simulation study and pre-registration can all record versions without importing each other.
"""

from __future__ import annotations

import platform

from . import __version__

PACKAGES = (
    "bambi",
    "pymc",
    "pytensor",
    "nutpie",
    "arviz",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "plotnine",
    "jinja2",
    "pydantic",
    "pyreadstat",
    "pypandoc-binary",
    "typst",
)


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "hetreport": __version__}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out
