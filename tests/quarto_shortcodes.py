"""What Quarto's shortcode processing would make of a .qmd file, checked without Quarto.

Written for hetreport from Quarto's documented shortcode syntax (no Quarto code is used):

- a shortcode is ``{{<`` optional whitespace, a name, arguments (words, quoted strings,
  ``key=value``), optional whitespace, ``>}}``
  (https://quarto.org/docs/extensions/shortcodes.html, "Creating Shortcodes");
- ``{{{< … >}}}`` is the escaped form and is shown as ``{{< … >}}``; older documentation gives
  ``{{</* … */>}}`` as the escaped form too, shown the same way; a code block with the attribute
  ``shortcodes=false`` is left alone in its code pass
  (https://quarto.org/docs/authoring/shortcodes-and-filters.html, "Escaping");
- Quarto looks for shortcodes in the raw document text before pandoc reads it (include is
  resolved there, see quarto-cli issue 5902), in the text of code, and in metadata values.

The checker is deliberately stricter than Quarto where the documentation leaves a case open: a
``>}}`` glued to an argument (``{{<env HOME>}}``) closes the shortcode, and an opening ``{{<`` (or
an escaped opener) that is never closed counts as the point where the raw scan gives up.

:func:`as_quarto` returns a dict:

``lost``
    characters of the document from the first opener that is never closed to the end (what the
    raw scan would drop); 0 if every opener is closed;
``raw``
    the unescaped shortcodes found in the raw text (escaped ones are not listed);
``code``
    the text of every code block and inline code as Quarto shows it: escaped forms replaced by
    ``{{< … >}}``, each shortcode that would run replaced by ``<<SHORTCODE {{< … >}}>>``;
``meta``
    the words (Str) of metadata values that start or end with a shortcode delimiter, which
    Quarto's metadata pass would read as (part of) a shortcode.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPEN, CLOSE = "{{<", ">}}"
ESCAPES = (("{{{<", ">}}}"), ("{{</*", "*/>}}"))  # escaped opener, its closer
DELIMITERS = (OPEN, CLOSE) + tuple(d for pair in ESCAPES for d in pair)
_SPACE = " \t\r\n"


@dataclass
class Piece:
    kind: str  # "text", "escaped" (inner text), "shortcode" (whole source text), "unclosed"
    text: str
    start: int


def _shortcode_end(text: str, i: int) -> int | None:
    """Index just past the shortcode that opens at ``text[i:]`` (which starts with "{{<"), or
    None if it is never closed. A quoted argument (a quote at the start of an argument or value)
    may hold ">}}"; a nested shortcode (as a value) is skipped as a whole."""
    j = i + len(OPEN)
    while j < len(text):
        if text.startswith(CLOSE, j):
            return j + len(CLOSE)
        c = text[j]
        if c in "\"'" and (text[j - 1] in _SPACE + "=" or j == i + len(OPEN)):  # a quoted argument
            k = text.find(c, j + 1)
            if k < 0:
                return None
            j = k + 1
        elif text.startswith(OPEN, j):
            end = _shortcode_end(text, j)
            if end is None:
                return None
            j = end
        else:
            j += 1
    return None


def scan(text: str) -> list[Piece]:
    """Split text into plain text, escaped shortcodes, shortcodes and (last) an unclosed opener
    with everything after it."""
    pieces: list[Piece] = []
    plain_from = i = 0

    def flush(upto: int) -> None:
        if upto > plain_from:
            pieces.append(Piece("text", text[plain_from:upto], plain_from))

    while i < len(text):
        if text[i] != "{":
            i += 1
            continue
        escaped = next(((o, c) for o, c in ESCAPES if text.startswith(o, i)), None)
        if escaped:
            o, c = escaped
            k = text.find(c, i + len(o))
            if k >= 0:
                flush(i)
                pieces.append(Piece("escaped", text[i + len(o) : k], i))
                i = plain_from = k + len(c)
                continue
            if o == ESCAPES[0][0]:  # "{{{<" never closed: the scan stops here
                flush(i)
                pieces.append(Piece("unclosed", text[i:], i))
                return pieces
            # "{{</*" never closed as a comment: read it as an ordinary shortcode below
        if text.startswith(OPEN, i):
            end = _shortcode_end(text, i)
            flush(i)
            if end is None:
                pieces.append(Piece("unclosed", text[i:], i))
                return pieces
            pieces.append(Piece("shortcode", text[i:end], i))
            i = plain_from = end
            continue
        i += 1
    flush(len(text))
    return pieces


def shown_in_code(text: str) -> str:
    """Code text as Quarto's code pass shows it."""
    out = []
    for p in scan(text):
        if p.kind == "escaped":
            out.append(OPEN + p.text + CLOSE)
        elif p.kind == "shortcode":
            out.append(f"<<SHORTCODE {p.text}>>")
        else:
            out.append(p.text)  # an unclosed opener is left as it is in code (the raw scan reports it)
    return "".join(out)


def _walk(node, found: dict) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, found)
    elif isinstance(node, dict):
        t = node.get("t")
        if t in ("Code", "CodeBlock"):
            (_, _, attrs), body = node["c"]
            off = dict(attrs).get("shortcodes") == "false"
            found["code"].append(body if off else shown_in_code(body))
        elif t == "Str":
            found["str"].append(node["c"])
        elif t == "MetaString":
            found["str"].extend(node["c"].split())
        else:
            _walk(node.get("c", []), found)


def _is_delimiter_word(word: str) -> bool:
    return any(word.startswith(d) or word.endswith(d) for d in DELIMITERS)


def as_quarto(qmd: Path, pandoc: str) -> dict:
    """The four views of ``qmd`` (see the module docstring); ``pandoc`` is the pandoc binary."""
    text = Path(qmd).read_text(encoding="utf-8")
    pieces = scan(text)
    unclosed = [p for p in pieces if p.kind == "unclosed"]
    lost = len(text) - unclosed[0].start if unclosed else 0
    raw = [p.text for p in pieces if p.kind == "shortcode"]
    ast = json.loads(
        subprocess.run(
            [pandoc, str(qmd), "-f", "markdown", "-t", "json"], capture_output=True, text=True, check=True, encoding="utf-8"
        ).stdout
    )
    body = {"code": [], "str": []}
    _walk(ast["blocks"], body)
    meta = {"code": [], "str": []}
    _walk(list(ast["meta"].values()), meta)
    return {"lost": lost, "raw": raw, "code": body["code"] + meta["code"], "meta": [w for w in meta["str"] if _is_delimiter_word(w)]}
