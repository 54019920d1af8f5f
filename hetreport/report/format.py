"""One formatter for prose and tables, and markdown escaping for everything from data.

Numbers: effects with 2 decimals and a true minus sign, counts with thousands
separators, probabilities as percentages. Text from data or the spec (labels, titles)
is escaped so that ``<script>``, ``{{ 7*7 }}``, ``$x$``, ``@fig-x`` or ``*`` appear
literally in the rendered report.

Quarto shortcodes (``{{< env HOME >}}``, ``{{< include FILE >}}``, ``{{< meta x >}}``) in such
text stay text too, on both routes (see :func:`md` and :func:`code_inert`). Quarto looks for them
in three places: in the raw document text before pandoc reads it (code included: ``{{< include >}}``
on a line of its own, and every ``{{<`` ... ``>}}``), in the text of code blocks and inline code, and
in the words of metadata values (the title) after pandoc has read them, where backslash escapes
no longer count.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import unicodedata
from dataclasses import dataclass, field

from markupsafe import Markup

MINUS = "\u2212"

# ASCII punctuation that pandoc's markdown can read as markup (all of it is escapable)
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|$@~^&=:\"'%;-])")

# An empty span. Put between "{{" and "<" (and between ">" and "}}"), it keeps pandoc from making
# one word of them, so no word of the text starts or ends a Quarto shortcode; it shows nothing
# (HTML: an empty <span>; Typst: nothing).
_SPLIT = "[]{}"


def md(text) -> Markup:
    """Escape text for pandoc markdown (every special character backslash-escaped)."""
    if isinstance(text, Markup):
        return text
    s = "" if text is None else str(text)
    s = s.replace("\r", " ").replace("\n", " ")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = re.sub(r"^(\d+)\.", r"\1\\.", s)  # "1. …" would start a list
    # Backslashes already hide "{{<" from Quarto's scan of the raw text; in metadata (the title)
    # Quarto looks for shortcodes in the words pandoc read, escapes gone, so split them there.
    s = s.replace(r"\{\{\<", r"\{\{" + _SPLIT + r"\<").replace(r"\>\}\}", r"\>" + _SPLIT + r"\}\}")
    return Markup(s)


def md_finalize(value):
    """Jinja ``finalize``: every value printed by a template is escaped unless marked safe."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, float):  # a setting or a diagnostic printed as it is, not an effect: 2 decimals
        return md(num(value, 2))
    return md(value)


def _isnan(x) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


#: decimals of an effect-scale number while a document is built (``using_digits``); 2 outside one
EFFECT_DIGITS: contextvars.ContextVar[int] = contextvars.ContextVar("effect_digits", default=2)


def digits_for_scale(sd: float) -> int:
    """Decimals for effects on an outcome whose standard deviation is ``sd``: 2 for outcomes whose SD lies
    between 0.1 and 10 (probabilities, 1-7 scales, standardised outcomes), one fewer per factor of ten above
    (an outcome in dollars with SD 2,000: whole dollars), one more per factor of ten below, at most 4."""
    if _isnan(sd) or float(sd) <= 0:
        return 2
    power = math.floor(math.log10(float(sd)))
    return int(min(4, max(0, 2 - max(power, 0) + max(-power - 1, 0))))


@contextlib.contextmanager
def using_digits(digits: int):
    """Effect-scale numbers formatted without explicit digits use ``digits`` inside the block."""
    token = EFFECT_DIGITS.set(int(digits))
    try:
        yield
    finally:
        EFFECT_DIGITS.reset(token)


def num(x, digits: int | None = None) -> str:
    """An effect-scale number: the document's decimals (2 unless the outcome's scale or report.digits
    says otherwise), a real minus sign, '—' for missing."""
    if _isnan(x):
        return "—"
    digits = EFFECT_DIGITS.get() if digits is None else digits
    s = f"{float(x):,.{digits}f}"
    if s.startswith("-"):
        s = MINUS + s[1:]
    if s.startswith(MINUS) and float(s[1:].replace(",", "")) == 0:  # no "−0.00"
        s = s[1:]
    return s


_PLURAL_ENDINGS_KEPT = ("ss", "us", "is", "ies", "ses", "ches", "shes", "xes", "zes")


@dataclass(frozen=True)
class Unit:
    """An outcome's unit from ``labels.units``, and how it is written next to an effect.

    A currency symbol, alone or after up to three letters ("$", "€", "£", "US$", "R$"), is written
    before the number with no space: "$812", "−$812". Anything else is words written after the number:
    "812 dollars", "0.40 points". After exactly 1 the first regular -s plural among the words loses its s
    ("1 dollar", "1 hour worked"); other plurals are left as written ("1 inches" is not guessed at).

    Plain fields only (``prefix`` is computed from ``text``), so templates see it whole."""

    text: str
    prefix: bool = field(init=False)

    def __post_init__(self):
        t = self.text
        sym = 1 <= len(t) <= 4 and unicodedata.category(t[-1]) == "Sc" and (t[:-1] == "" or (t[:-1].isascii() and t[:-1].isalpha()))
        object.__setattr__(self, "prefix", bool(sym))


def unit_words(unit, number: str) -> str:
    """The unit's words after ``number`` (as printed): after exactly 1, the first word that is a regular -s plural
    loses its s ("1 dollar", "1 hour worked", "1 percentage point", "1 Swiss franc"); other words stay as written."""
    words = unit.text.split(" ")
    if number.lstrip(MINUS) == "1":
        for i, w in enumerate(words):
            if len(w) > 2 and w.endswith("s") and not w.endswith(_PLURAL_ENDINGS_KEPT):
                return " ".join(words[:i] + [w[:-1]] + words[i + 1 :])
    return unit.text


def unit_phrase(unit) -> str:
    """'in dollars', 'in $' (for captions and column headers); '' without a unit."""
    return f"in {unit.text}" if unit is not None else ""


def unit_of(text: str | None) -> Unit | None:
    """The Unit of a ``labels.units`` entry (None when the spec gives none)."""
    return Unit(str(text)) if text else None


def _with_unit(number: str, unit) -> str:
    if unit is None or number == "—":
        return number
    if unit.prefix:
        return MINUS + unit.text + number[1:] if number.startswith(MINUS) else unit.text + number
    return f"{number} {unit_words(unit, number)}"


def effect(x, unit: Unit | None = None, digits: int | None = None) -> str:
    """An effect on the outcome's scale with its unit: '$812', '812 dollars'; without a unit, ``num(x)``."""
    return _with_unit(num(x, digits), unit)


def effect_range(lower, upper, unit: Unit | None = None, digits: int | None = None) -> str:
    """'$100 to $1,500' (a symbol before each number) or '100 to 1,500 dollars' (words once, after the range)."""
    lo, hi = num(lower, digits), num(upper, digits)
    if unit is None:
        return f"{lo} to {hi}"
    if unit.prefix:
        return f"{_with_unit(lo, unit)} to {_with_unit(hi, unit)}"
    return f"{lo} to {_with_unit(hi, unit)}"


def count(n) -> str:
    return "—" if _isnan(n) else f"{int(round(float(n))):,}"


def pct(p, digits: int = 0) -> str:
    """A probability as a percentage; never prints 100% or 0% for a posterior probability."""
    if _isnan(p):
        return "—"
    v = 100 * float(p)
    if digits == 0 and v >= 99.5:
        return ">99%"
    if digits == 0 and 0 < v < 0.5:
        return "<1%"
    if v <= 0:
        return "<0.1%"
    return f"{v:.{digits}f}%"


def share(p) -> str:
    """An observed frequency as a percentage (100% and 0% are possible here)."""
    return "—" if _isnan(p) else f"{100 * float(p):.0f}%"


def interval(iv, sep: str = " to ", unit: Unit | None = None) -> str:
    """'0.31 (0.12 to 0.50)' from an Interval-like object; with a unit, '$812 ($100 to $1,500)' or
    '812 dollars (100 to 1,500 dollars)'."""
    if unit is not None:
        return f"{effect(iv.estimate, unit)} ({effect_range(iv.lower, iv.upper, unit)})"
    return f"{num(iv.estimate)} ({num(iv.lower)}{sep}{num(iv.upper)})"


def ci(lower, upper) -> str:
    return f"{num(lower)} to {num(upper)}"


def pipe_table(
    header: list[str],
    rows: list[list],
    align: str | None = None,
    caption: str | None = None,
    label: str | None = None,
    first_wrap: int = 28,
) -> Markup:
    """A pandoc pipe table. Cells are escaped unless already Markup; ``align`` is one of
    'l', 'r', 'c' per column; the first column's long cells wrap within ``first_wrap`` characters
    (the others' within 28): a wide first column of group names keeps a table of hundreds of rows
    to one or two lines a row."""
    align = align or "l" + "r" * (len(header) - 1)
    esc = lambda v: v if isinstance(v, Markup) else md(num(v, 2) if isinstance(v, float) else v)  # noqa: E731
    head = [str(esc(h)) for h in header]
    body = [[str(esc(v)) for v in r] for r in rows]
    # A table too wide for a line wraps its cells, and pandoc (Quarto too) then sizes each column by
    # the dashes under its header: as many as the column's longest cell (or longest header word)
    # needs plus room for the cell's padding, so a column of group names is not squeezed to the
    # width of a column of numbers, nor a column of numbers until its digits overlap.
    widths = []
    for j, h in enumerate(head):
        cell = max([len(_shown(r[j])) for r in body if j < len(r)], default=0)
        word = max((len(w) for w in _shown(h).split()), default=0)  # a header wraps at spaces only
        # long text wraps within 28 characters; header words are bold, hence wider
        widths.append(max(min(cell, first_wrap if j == 0 else 28), -(-word * 6 // 5), 2) + 3)
    marks = {"l": lambda w: ":" + "-" * w, "r": lambda w: "-" * w + ":", "c": lambda w: ":" + "-" * w + ":"}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(marks[a](w) for a, w in zip(align, widths)) + "|"]
    for r in body:
        lines.append("| " + " | ".join(r) + " |")
    if caption:
        lines.append("")
        lines.append(f": {md(caption)}" + (f" {{#{label}}}" if label else ""))
    return Markup("\n".join(lines))


def _shown(cell: str) -> str:
    """A cell's text roughly as printed: without markdown's backslash escapes (and splits)."""
    return re.sub(r"\\(.)", r"\1", cell.replace(_SPLIT, ""))


def yaml_md(text) -> Markup:
    """A YAML front-matter value: markdown-escaped, then a YAML double-quoted string."""
    import json

    return Markup(json.dumps(str(md(text)), ensure_ascii=False))


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def yaml_date(value) -> Markup:
    """A front-matter ``date:``: a plain ISO date string ("2026-12-06"), which Quarto and pandoc
    both show as a date. Markdown escaping would make it "2026\\-12\\-06", which Quarto cannot
    parse ("Invalid Date"). Anything that is not an ISO date (a hand-edited manifest) is written
    as escaped text instead."""
    import json

    text = "" if value is None else str(value).strip()
    if _ISO_DATE.match(text):
        return Markup(json.dumps(text))
    return yaml_md(text)


_WORD_JOINER = "\u2060"


def code_inert(text: str) -> str:
    """Code text in which Quarto expands no shortcode, shown as ``text`` by both routes.

    Each ``{{< … >}}`` becomes Quarto's literal form ``{{{< … >}}}`` (Quarto prints it as
    ``{{< … >}}``; the builtin route's Lua filter does the same in code). An opening ``{{<`` with
    no ``>}}`` after it cannot be written literally (Quarto would cut the document off there):
    it gets an invisible word joiner (U+2060) between its braces."""
    out, i = [], 0
    while True:
        j = text.find("{{<", i)
        if j < 0:
            out.append(text[i:])
            break
        k = text.find(">}}", j + 3)
        if k < 0:
            out.append(text[i:].replace("{{<", "{" + _WORD_JOINER + "{<"))
            break
        out += [text[i:j], "{", text[j : k + 3], "}"]
        i = k + 3
    return "".join(out)


def code(text) -> Markup:
    """Content for inline code (between single backticks in the template): kept literal;
    a backtick inside is replaced so it cannot close the span; shortcodes stay inert."""
    return Markup(code_inert(str("" if text is None else text).replace("`", "\u2018").replace("\n", " ")))


def code_block(text: str, lang: str = "yaml") -> Markup:
    """A fenced code block whose fence is longer than any backtick run in the text; its text is
    shown as it is (shortcodes inert)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return Markup(f"{fence}{lang}\n{code_inert(text.rstrip())}\n{fence}")


def code_span(text) -> Markup:
    """Inline code with its backticks, safe for any content."""
    body = str(code("" if text is None else text))
    return Markup(f"`{body}`") if body else Markup("")
