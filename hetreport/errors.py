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


# --------------------------------------------------------------------------- text from specs and data files

#: characters that reorder or hide text: bidirectional embeddings, overrides and isolates (a right-to-left
#: override makes "evil" read "live"); marks that only nudge neutral characters (U+200E, U+200F) are kept
_BIDI = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x061C}


def _unsafe(ch: str) -> bool:
    o = ord(ch)
    return o < 0x20 or o == 0x7F or 0x80 <= o <= 0x9F or o in _BIDI


def clean_text(text: str) -> str:
    """Display text (titles, labels) without control characters: tabs and line breaks become spaces,
    NUL, BEL, escape sequences, C1 controls and bidirectional overrides are removed."""
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(" " if c in "\t\n\r" else c for c in text if not _unsafe(c) or c in "\t\n\r")


def unsafe_characters(text: str) -> list[str]:
    """The control characters clean_text removes from ``text``, as code points such as U+202E (for a warning)."""
    return sorted({f"U+{ord(c):04X}" for c in text if _unsafe(c) and c not in "\t\n\r"})


def visible(text: str) -> str:
    """Text for a terminal: control characters shown as escapes (\\x07, \\u202e) so that none can ring,
    move the cursor or reorder what is printed; line breaks are kept."""
    if not any(_unsafe(c) for c in text):
        return text
    return "".join(c if (c == "\n" or not _unsafe(c)) else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)


def shorten(text: object, width: int = 60) -> str:
    """A value for quoting in a message: long ones cut in the middle with their length, e.g.
    '1111111111…1111 (1,500 characters)'."""
    s = str(text)
    if len(s) <= width:
        return s
    keep = max(width - 20, 10)
    return f"{s[: keep * 2 // 3]}…{s[-(keep // 3) :]} ({len(s):,} characters)"


class LocatedError(ValueError):
    """Raised inside a spec's validators to point at a sub-path of the model being validated (spec.py and
    prereg/design.py both raise it; it lives here so that neither imports the other for it)."""

    def __init__(self, loc: tuple, message: str):
        self.loc = loc
        super().__init__(message)
