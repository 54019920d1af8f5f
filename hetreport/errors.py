"""One family of errors, each a single readable paragraph.

Every message says *where* (a spec path such as ``analyses[0].modifiers[2]``,
a file, a column), *what* was found, and *what would fix it*. The CLI catches
:class:`HetreportError` once and prints the message without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HetreportError(Exception):
    """Base class: a problem the user can fix, explained in one paragraph."""

    kind = "Error"

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class SpecError(HetreportError):
    kind = "Spec error"


class DataError(HetreportError):
    kind = "Data error"


class ModelError(HetreportError):
    kind = "Model error"


class RenderError(HetreportError):
    kind = "Render error"


class HetreportWarning(UserWarning):
    """Warnings hetreport raises about data or fits (one line each)."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' hint for a misspelt name, or ''."""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if str(name).lower() in lowered:
            close = [lowered[str(name).lower()]]
    return f" Did you mean '{close[0]}'?" if close else ""


def path_str(loc: Iterable[object]) -> str:
    """Turn a location tuple such as ('analyses', 0, 'modifiers', 2) into
    ``analyses[0].modifiers[2]`` (one generic rule for every depth)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"
