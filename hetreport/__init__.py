"""hetreport: heterogeneous treatment effects from interaction and hierarchical models.

spec = hetreport.load_spec("spec.yml")
results = hetreport.fit(spec)          # StudyResults
results.save("out")                    # effects.csv, posterior, diagnostics, manifest
hetreport.render(results, "out")       # Quarto project in out/report/, HTML and PDF
"""

try:  # one version string: the installed distribution's (pyproject.toml's [project] version)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    __version__ = _version("hetreport")
except PackageNotFoundError:  # a source checkout on PYTHONPATH that was never installed
    __version__ = "0+unknown"

__all__ = [
    "load_spec",
    "check",
    "fit",
    "run",
    "render",
    "load_results",
    "StudyResults",
    "AnalysisResults",
    "Spec",
    "HetreportError",
    "__version__",
]


def __getattr__(name):  # lazy: `import hetreport` stays fast and light
    if name in ("load_spec", "Spec"):
        from . import spec

        return getattr(spec, name)
    if name in ("check", "fit", "run", "render"):
        from . import api

        return getattr(api, name)
    if name in ("load_results", "StudyResults", "AnalysisResults"):
        from . import results

        return getattr(results, name)
    if name == "HetreportError":
        from .errors import HetreportError

        return HetreportError
    raise AttributeError(f"module 'hetreport' has no attribute '{name}'")
