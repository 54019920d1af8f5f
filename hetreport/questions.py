"""The questions readers ask of the group effects, written next to the effects table.

``contrasts.csv`` / ``.parquet`` (named comparisons, :mod:`hetreport.contrasts`) and
``targeting.csv`` (whom to treat first, :mod:`hetreport.targeting`), each only when the
spec asks for it. Everything is computed from what the results folder holds (the
posterior draws, the effects table, the fully crossed fits' covariances), so
``hetreport report DIR`` recomputes the same numbers without refitting.
"""

from __future__ import annotations

from pathlib import Path


def write_questions(results, directory: Path) -> None:
    from .contrasts import write_contrasts
    from .targeting import write_targeting

    write_contrasts(results, directory)
    write_targeting(results, directory)
