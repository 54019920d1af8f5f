"""A small, safe expression language for ``data.derive`` and ``data.filter``.

A study spec may define new columns and a row filter with one-line
expressions such as ``"pref >= 4"`` or ``"gender != 8 and not is_missing(pref)"``.
A spec is *data*: nothing in an expression can run code. The text is parsed
with :func:`ast.parse` (which only builds a syntax tree) and every node is
checked against the whitelist below before anything is evaluated; the tree is
then interpreted by hand on numpy arrays. There is no ``eval``/``exec``, no
attribute lookup by a user-given name and no ``DataFrame.eval``/``query``.

Language
--------
* Names: column names of the frame (valid Python identifiers, not starting
  with ``_``).
* Literals: integers, floats, quoted text, ``True``/``False`` (1/0).
  ``None`` is not allowed; use ``is_missing(x)``.
* Arithmetic: ``+ - * / // % **`` and unary ``-``/``+`` (numbers only).
* Comparisons: ``== != < <= > >=``, chained (``1 <= x < 5``).
* Logic: ``and``, ``or``, ``not`` (Kleene three-valued logic).
* Membership: ``x in [1, 2, 3]``, ``x not in (1, 2)`` (list/tuple of literals).
* Functions::

      abs(x)  log(x)  exp(x)  sqrt(x)  round(x)  round(x, digits)
      is_missing(x)  if_else(cond, yes, no)  min(a, b)  max(a, b)
      coalesce(a, b)  cut(x, [breaks...])  cut(x, [breaks...], labels=[...])
      map(x, {old: new, ...})  map(x, {old: new, ...}, default=value)

  Arguments may also be passed by their names above (``digits=``,
  ``labels=``, ``default=``, ...); any other keyword is refused.

Semantics
---------
* Every value is a column of the frame's length: float64 for numbers and
  logical values, object (``str`` with NaN) for text. Literals broadcast.
* Missing stays missing: NaN, None and pd.NA in the input (also in nullable
  Int64/Float64/boolean/string columns) are missing, and every operator and
  function returns missing where an input is missing -- ``NaN >= 6`` is
  missing, not False. ``is_missing(x)`` is the only way to turn missing into
  1/0, and ``coalesce(a, b)`` the only way to fill it.
* Comparisons and logic return 1.0 / 0.0 / NaN. ``and``/``or`` follow Kleene
  logic (False and missing = False, True or missing = True, otherwise
  missing); ``not missing`` is missing. Operands of ``and``/``or``/``not`` and
  the condition of ``if_else`` must be 0/1 (or missing): a 1/2-coded column
  used as a condition is an error rather than silently "all true".
* Text compares with text (``==``, ``!=`` and alphabetical ``<`` etc.).
  ``==``/``!=`` between text and a number is simply unequal; ordering text
  against numbers, arithmetic on text, and numeric functions of text are
  errors naming the column.
* Division (``/ // %``) by zero, ``log`` of values <= 0, ``sqrt`` of negative
  values and overflow to +-infinity give missing. The rows where overflow or
  division by zero did so are counted (``Series.attrs["nonfinite_rows"]``):
  ``data.derive`` warns about them, and a derived column missing in every row
  is an error.
* Names are matched exactly as written: Python's parser would fold full-width
  and other compatibility characters (``ｍ1`` to ``m1``), so each name is
  taken from the source text instead.
* ``round`` is numpy's round-half-to-even (``round(2.5) == 2``), as in Python
  and R.
* ``cut(x, [b0, b1, ..., bk])`` gives bin numbers 1..k (float) for the bins
  ``[b0, b1], (b1, b2], ..., (bk-1, bk]``; values outside ``[b0, bk]`` are
  missing; ``labels=[...]`` (k texts) gives the labels instead.
* ``map(x, {...})``: keys match numerically (``1`` matches ``1.0``) or as
  exact text; unmapped values become missing unless ``default=`` is given;
  missing stays missing. A key that can never match (text key for a numeric
  column, or the reverse) is an error, as it is in ``x in [...]``.
* ``if_else`` branches and ``coalesce`` arguments must both be numbers or both
  be text; ``map`` values (and ``default``) likewise.

Limits: at most :data:`MAX_LENGTH` characters and :data:`MAX_DEPTH` levels of
syntax-tree nesting. Every problem is a :class:`~hetreport.errors.SpecError`
naming the spec path (``where``) and quoting the offending piece.
"""

from __future__ import annotations

import ast
import numbers
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hetreport.errors import SpecError, shorten, suggest

__all__ = ["Expression", "compile_expr", "evaluate", "FUNCTIONS", "MAX_LENGTH", "MAX_DEPTH"]

MAX_LENGTH = 2000
#: Syntax-tree nesting allowed. Generous enough for a 90-item sum
#: ``q1 + q2 + ... + q90`` (each ``+`` nests one level).
MAX_DEPTH = 100

ALLOWED = (
    "Expressions may use column names, numbers, quoted text, True/False, "
    "arithmetic (+ - * / // % **), comparisons (== != < <= > >=), and/or/not, "
    "`x in [...]`, and the functions abs, round, log, exp, sqrt, is_missing, "
    "if_else, cut, map, min, max and coalesce."
)


# --------------------------------------------------------------------------
# The whitelist
# --------------------------------------------------------------------------

# Kinds of function parameters. VALUE is any expression; the others must be
# written as literals in the expression itself.
VALUE = "value"
INTEGER = "an integer such as 2"
NUMBERS = "a list of numbers such as [18, 30, 45]"
TEXTS = "a list of quoted texts such as ['low', 'high']"
MAPPING = "a dict of literals such as {1: 'Dem', 2: 'Rep'}"
LITERAL = "a number or quoted text"


@dataclass(frozen=True)
class _Param:
    name: str
    kind: str = VALUE
    required: bool = True


FUNCTIONS: dict[str, tuple[_Param, ...]] = {
    "abs": (_Param("x"),),
    "round": (_Param("x"), _Param("digits", INTEGER, required=False)),
    "log": (_Param("x"),),
    "exp": (_Param("x"),),
    "sqrt": (_Param("x"),),
    "is_missing": (_Param("x"),),
    "if_else": (_Param("cond"), _Param("yes"), _Param("no")),
    "cut": (_Param("x"), _Param("breaks", NUMBERS), _Param("labels", TEXTS, required=False)),
    "map": (_Param("x"), _Param("values", MAPPING), _Param("default", LITERAL, required=False)),
    "min": (_Param("a"), _Param("b")),
    "max": (_Param("a"), _Param("b")),
    "coalesce": (_Param("a"), _Param("b")),
}

_ARITHMETIC = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.FloorDiv: ("//", np.floor_divide),
    ast.Mod: ("%", np.mod),
    ast.Pow: ("**", np.power),
}

_COMPARISONS = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}
_ORDERINGS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)

# Operators Python knows but this language refuses, with a hint.
_REFUSED_OPERATORS = {
    ast.BitAnd: "`&` is not allowed; use `and`",
    ast.BitOr: "`|` is not allowed; use `or`",
    ast.Invert: "`~` is not allowed; use `not`",
    ast.BitXor: "`^` is not allowed (for powers use `**`)",
    ast.LShift: "`<<` is not allowed",
    ast.RShift: "`>>` is not allowed",
    ast.MatMult: "`@` is not allowed",
    ast.Is: "`is` is not allowed; use `==`, or is_missing(x) to test for missing",
    ast.IsNot: "`is not` is not allowed; use `!=`, or is_missing(x) to test for missing",
}

# Python constructs that are refused, with a readable name.
_REFUSED_NODES = {
    ast.Attribute: "attribute access (`.`)",
    ast.Subscript: "indexing (`[...]` after a value)",
    ast.Slice: "slicing",
    ast.Lambda: "lambda",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.Starred: "starred (`*`) unpacking",
    ast.NamedExpr: "assignment (`:=`)",
    ast.IfExp: "`a if cond else b` (use if_else(cond, a, b))",
    ast.Set: "a set `{...}` (use a list `[...]`)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A checked expression: built once by :func:`compile_expr` (never
    directly), evaluated on any frame that has the columns in :attr:`names`.

    ``text`` is the expression as parsed (surrounding whitespace removed) and
    ``where`` the spec path used in every error message."""

    text: str
    names: frozenset[str]
    where: str
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, frame: pd.DataFrame) -> pd.Series:
        """The expression's value for every row of ``frame``: float64 for
        numbers and logical values (1.0/0.0), object dtype for text, NaN for
        missing, indexed like ``frame``."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"evaluate() needs a pandas DataFrame, got {type(frame).__name__}")
        _check_names(self.names, list(frame.columns), self.text, self.where)
        evaluator = _Evaluator(self.text, self.where, frame)
        try:
            with np.errstate(all="ignore"):
                values = evaluator.value(self._tree.body)
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise SpecError(
                f"`{shorten(self.text)}` could not be evaluated on the data: {shorten(exc, 200)}. "
                f"Check that the columns it uses hold the kind of values the operators expect.",
                where=self.where,
            ) from exc
        out = pd.Series(values, index=frame.index, dtype=values.dtype)
        out.attrs["nonfinite_rows"] = int((evaluator.nonfinite & _missing(values)).sum())
        return out


def compile_expr(text: str, *, where: str, columns: Iterable[str] | None = None) -> Expression:
    """Parse and check ``text``; if ``columns`` is given, unknown names are
    refused here. Nothing is evaluated."""
    text = _checked_text(text, where)
    tree = _parse(text, where)
    checker = _Checker(text, where)
    checker.check(tree.body)
    names = frozenset(checker.names)
    if columns is not None:
        _check_names(names, list(columns), text, where)
    return Expression(text=text, names=names, where=where, _tree=tree)


def evaluate(text: str, frame: pd.DataFrame, *, where: str) -> pd.Series:
    """Compile ``text`` against ``frame``'s columns and evaluate it."""
    return compile_expr(text, where=where, columns=list(frame.columns)).evaluate(frame)


# --------------------------------------------------------------------------
# Parsing and checking
# --------------------------------------------------------------------------


def _checked_text(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise SpecError(
            f"an expression must be text, got {type(text).__name__} {text!r}. "
            f'Put the expression in quotes in the YAML file, e.g. "pref >= 4".',
            where=where,
        )
    text = text.strip()
    if not text:
        raise SpecError("the expression is empty. " + ALLOWED, where=where)
    if len(text) > MAX_LENGTH:
        raise SpecError(
            f"the expression is {len(text):,} characters long; at most {MAX_LENGTH:,} are allowed. Split it into several derived columns.",
            where=where,
        )
    return text


def _parse(text: str, where: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpecError(
            f"cannot parse `{shorten(text)}`: {exc.msg}{_syntax_position(text, exc)}. "
            f"Check brackets, quotes and operators (`==` compares, `=` is not allowed). " + ALLOWED,
            where=where,
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise SpecError(
            f"cannot parse `{shorten(text)}`: {shorten(exc or 'too complex', 200)}. Simplify it or split it into several derived columns.",
            where=where,
        ) from None
    if _depth(tree) > MAX_DEPTH:
        raise SpecError(
            f"`{shorten(text)}` is nested too deeply (more than {MAX_DEPTH} levels). Split it into several derived columns.",
            where=where,
        )
    _exact_names(tree, text)
    return tree


def _exact_names(tree: ast.Expression, text: str) -> None:
    """Names as the text spells them. Python's parser NFKC-normalises identifiers (full-width `ｍ1`
    becomes `m1`); a column is matched exactly as the data spells it, so each name and keyword is
    restored from the source text."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            raw = ast.get_source_segment(text, node)
            if raw:
                node.id = raw
        elif isinstance(node, ast.keyword) and node.arg is not None:
            raw = ast.get_source_segment(text, node)
            if raw and "=" in raw:
                node.arg = raw.split("=", 1)[0].strip()


def _syntax_position(text: str, exc: SyntaxError) -> str:
    """' at column 9 (near `>= 4`)', ' at the end', or '' when unknown."""
    lines = text.splitlines() or [""]
    lineno = exc.lineno or 1
    line = lines[lineno - 1] if lineno <= len(lines) else ""
    on_line = f"line {lineno}, " if len(lines) > 1 else ""
    if not exc.offset or exc.offset > len(line):
        return " at the end" if lineno >= len(lines) else f" at the end of line {lineno}"
    near = line[exc.offset - 1 :][:20].rstrip()
    return f" at {on_line}column {exc.offset} (near `{near}`)"


def _signature(name: str) -> str:
    """How to call a function, e.g. 'Use round(x, digits=...).'"""
    params = [p.name if p.required else f"{p.name}=..." for p in FUNCTIONS[name]]
    return f"{name}({', '.join(params)})"


def _in(text: str, piece: str) -> str:
    """'in `whole text`, ' -- or '' when the piece is the whole text."""
    return "" if piece == text else f"in `{shorten(text)}`, "


def _sentence(problem: str) -> str:
    return problem if problem.endswith((".", "?", "!")) else problem + "."


def _depth(tree: ast.AST) -> int:
    """Deepest nesting of the tree, walked without recursion (stops early)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _check_names(names: Iterable[str], columns: list, text: str, where: str) -> None:
    available = [str(c) for c in columns]
    for name in sorted(names):
        if name in columns:
            continue
        shown = ", ".join(available[:8]) + (f", ... ({len(available)} in all)" if len(available) > 8 else "")
        raise SpecError(
            f"`{shorten(text)}` uses `{shorten(name)}`, which is not a column of the data.{spelling_hint(name, available)} "
            f"Available columns: {shown or '(none)'}.",
            where=where,
        )


def spelling_hint(name: str, available: list[str]) -> str:
    """' Did you mean ...?', and for a name that only looks like a column (full-width or other
    compatibility characters) which characters differ."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", name)
    if folded != name and folded in available:
        odd = ", ".join(
            f"'{c}' (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})" for c in dict.fromkeys(name) if unicodedata.normalize("NFKC", c) != c
        )
        return (
            f" It looks like the column `{folded}` but is spelt with {odd}; names are matched exactly as the data "
            f"spells them. Write `{folded}`."
        )
    return suggest(name, available)


def _literal_value(node: ast.AST) -> object:
    """The Python value of a literal node (number, text or bool, possibly with
    a leading sign), or raise ValueError if it is not one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float, str)):
        return node.value
    signed = (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) in (int, float)
    )
    if not signed:
        raise ValueError("not a literal")
    value = node.operand.value
    return -value if isinstance(node.op, ast.USub) else value


def _is_number(value: object) -> bool:
    return isinstance(value, (numbers.Real, np.bool_)) and not isinstance(value, str)


def _normalize(value: object) -> object:
    """Key used to match values: numbers as float (so 1 matches 1.0), text as is."""
    return value if isinstance(value, str) else float(value)


class _Checker:
    """Walks the tree once, refusing anything outside the whitelist and
    collecting the column names read."""

    def __init__(self, text: str, where: str):
        self.text = text
        self.where = where
        self.names: set[str] = set()

    def refuse(self, node: ast.AST, problem: str, hint: str = ALLOWED) -> SpecError:
        piece = ast.get_source_segment(self.text, node) or self.text
        positioned = isinstance(node, (ast.expr, ast.keyword)) and piece != self.text
        at = f" (column {node.col_offset + 1})" if positioned else ""
        return SpecError(f"{_in(self.text, piece)}`{shorten(piece)}`{at}: {_sentence(problem)} {hint}", where=self.where)

    def check(self, node: ast.AST) -> None:
        """Check a node that produces a value."""
        if isinstance(node, ast.Constant):
            self.check_constant(node)
        elif isinstance(node, ast.Name):
            self.check_name(node)
        elif isinstance(node, ast.UnaryOp):
            self.check_operator(node, node.op)
            self.check(node.operand)
        elif isinstance(node, ast.BinOp):
            self.check_operator(node, node.op)
            self.check(node.left)
            self.check(node.right)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.check(value)
        elif isinstance(node, ast.Compare):
            self.check_compare(node)
        elif isinstance(node, ast.Call):
            self.check_call(node)
        elif isinstance(node, (ast.List, ast.Tuple)):
            raise self.refuse(node, "a list can only follow `in` or be the breaks/labels of cut()")
        elif isinstance(node, ast.Dict):
            raise self.refuse(node, "a dict `{...}` can only be the second argument of map()")
        else:
            what = _REFUSED_NODES.get(type(node), f"a {type(node).__name__} construct")
            raise self.refuse(node, f"{what} is not allowed")

    def check_constant(self, node: ast.Constant) -> None:
        value = node.value
        if value is None:
            raise self.refuse(node, "None is not allowed", "Use is_missing(x) to test for missing values.")
        if not isinstance(value, (bool, int, float, str)):
            raise self.refuse(node, f"a {type(value).__name__} literal is not allowed")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                finite = np.isfinite(float(value))
            except OverflowError:
                finite = False
            if not finite:
                raise self.refuse(node, "this number is too large", "Use a number below 1e308.")

    def check_name(self, node: ast.Name) -> None:
        if node.id.startswith("_"):
            raise self.refuse(node, "names starting with `_` are not allowed")
        self.names.add(node.id)

    def check_operator(self, node: ast.AST, op: ast.AST) -> None:
        if type(op) in _REFUSED_OPERATORS:
            raise self.refuse(node, _REFUSED_OPERATORS[type(op)])

    def check_compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            self.check_operator(node, op)
        if any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if len(node.ops) != 1:
                raise self.refuse(node, "`in` cannot be chained with other comparisons", "Combine them with `and`.")
            self.check(node.left)
            self.check_literal_list(node.comparators[0], "the right side of `in`", numbers_only=False)
            return
        self.check(node.left)
        for comparator in node.comparators:
            self.check(comparator)

    def check_literal_list(self, node: ast.AST, role: str, *, numbers_only: bool) -> list:
        what = "numbers" if numbers_only else "numbers or quoted texts"
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.refuse(node, f"{role} must be a list of {what}", "For example [1, 2, 3].")
        values = []
        for element in node.elts:
            values.append(self.literal(element, f"each item of {role}"))
            if numbers_only and not _is_number(values[-1]):
                raise self.refuse(element, f"each item of {role} must be a number")
        return values

    def literal(self, node: ast.AST, role: str) -> object:
        """The value of a literal argument (e.g. a map() key), or refuse."""
        constant = node.operand if isinstance(node, ast.UnaryOp) else node
        if isinstance(constant, ast.Constant):
            self.check_constant(constant)  # specific messages for None, bytes, huge numbers
        try:
            return _literal_value(node)
        except ValueError:
            raise self.refuse(
                node, f"{role} must be a number or quoted text", "Column names and calculations are not allowed here."
            ) from None

    def check_call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute):
            raise self.refuse(node.func, "attribute access (`.`) is not allowed, so no method can be called")
        if not isinstance(node.func, ast.Name):
            raise self.refuse(node, "only the listed functions can be called, by name")
        name = node.func.id
        if name.startswith("_") or name not in FUNCTIONS:
            raise self.refuse(node, f"`{name}` is not an allowed function.{suggest(name, FUNCTIONS)}")
        args = self.bind(node, name)
        for param in FUNCTIONS[name]:
            if param.name not in args:
                continue
            if param.kind == VALUE:
                self.check(args[param.name])
            else:
                self.check_literal_argument(name, param, args[param.name])
        if name == "cut":
            self.check_cut(node, args)
        if name == "map":
            self.check_map(node, args)

    def bind(self, node: ast.Call, name: str) -> dict[str, ast.AST]:
        """Match the call's arguments to the function's parameters."""
        params = FUNCTIONS[name]
        signature = _signature(name)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg, "starred (`*`) arguments are not allowed", f"Use {signature}.")
        if len(node.args) > len(params):
            raise self.refuse(node, f"{name}() takes at most {len(params)} arguments", f"Use {signature}.")
        args = {param.name: arg for param, arg in zip(params, node.args)}
        allowed = [p.name for p in params]
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.refuse(node, "`**` arguments are not allowed", f"Use {signature}.")
            if keyword.arg not in allowed:
                raise self.refuse(keyword, f"{name}() has no argument `{keyword.arg}`.{suggest(keyword.arg, allowed)}", f"Use {signature}.")
            if keyword.arg in args:
                raise self.refuse(keyword, f"{name}() got `{keyword.arg}` twice", f"Use {signature}.")
            args[keyword.arg] = keyword.value
        for param in params:
            if param.required and param.name not in args:
                raise self.refuse(node, f"{name}() needs the argument `{param.name}`", f"Use {signature}.")
        return args

    def check_literal_argument(self, name: str, param: _Param, node: ast.AST) -> None:
        role = f"`{param.name}` of {name}()"
        hint = f"Use {_signature(name)}."
        if param.kind == INTEGER:
            value = self.literal(node, role)
            if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 15:
                raise self.refuse(node, f"{role} must be {INTEGER} between -15 and 15", hint)
        elif param.kind == NUMBERS:
            self.check_literal_list(node, role, numbers_only=True)
        elif param.kind == TEXTS:
            for value, element in zip(self.check_literal_list(node, role, numbers_only=False), node.elts):
                if not isinstance(value, str):
                    raise self.refuse(element, f"{role} must be {TEXTS}", hint)
        elif param.kind == MAPPING:
            if not isinstance(node, ast.Dict):
                raise self.refuse(node, f"{role} must be {MAPPING}", hint)
            for key, value in zip(node.keys, node.values):
                if key is None:
                    raise self.refuse(value, "`**` inside a dict is not allowed", hint)
                self.literal(key, f"each key of {role}")
                self.literal(value, f"each value of {role}")
        elif param.kind == LITERAL:
            self.literal(node, role)

    def check_cut(self, node: ast.Call, args: dict[str, ast.AST]) -> None:
        hint = "For example cut(age, [18, 30, 45, 65, 120], labels=['18-30', '31-45', '46-65', '66+'])."
        breaks = [_literal_value(e) for e in args["breaks"].elts]
        if len(breaks) < 2:
            raise self.refuse(args["breaks"], "cut() needs at least two breaks", hint)
        if any(later <= earlier for earlier, later in zip(breaks, breaks[1:])):
            raise self.refuse(args["breaks"], "the breaks of cut() must be strictly increasing", hint)
        if "labels" in args:
            n_labels, n_bins = len(args["labels"].elts), len(breaks) - 1
            if n_labels != n_bins:
                raise self.refuse(
                    args["labels"], f"cut() with {len(breaks)} breaks makes {n_bins} bin(s), but {n_labels} label(s) were given", hint
                )

    def check_map(self, node: ast.Call, args: dict[str, ast.AST]) -> None:
        hint = "For example map(pid7, {1: 'Dem', 2: 'Dem', 6: 'Rep', 7: 'Rep'}, default='Ind')."
        mapping = args["values"]
        seen: dict[object, ast.AST] = {}
        for key in mapping.keys:
            normalized = _normalize(_literal_value(key))
            if normalized in seen:
                raise self.refuse(key, "this key appears twice in the map() dict", hint)
            seen[normalized] = key
        outputs = [_literal_value(v) for v in mapping.values]
        if "default" in args:
            outputs.append(_literal_value(args["default"]))
        if len({isinstance(v, str) for v in outputs}) > 1:
            raise self.refuse(mapping, "the values of map() (and its default) must be all numbers or all quoted texts, not a mix", hint)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.float64:
        return np.isnan(values)
    return np.asarray(pd.isna(values), dtype=bool)


def _finite(values: np.ndarray) -> np.ndarray:
    """Results of +-infinity (division by zero, overflow) become missing."""
    values[np.isinf(values)] = np.nan
    return values


def _kleene_and(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(len(a), np.nan)
    out[(a == 1) & (b == 1)] = 1.0
    out[(a == 0) | (b == 0)] = 0.0
    return out


def _kleene_or(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(len(a), np.nan)
    out[(a == 0) & (b == 0)] = 0.0
    out[(a == 1) | (b == 1)] = 1.0
    return out


def _column_values(series: pd.Series) -> np.ndarray:
    """A column as float64 (numbers, booleans) or object (text) with NaN for
    every kind of missing; raise ValueError for other kinds of values."""
    dtype = series.dtype
    if pd.api.types.is_complex_dtype(dtype):
        raise ValueError("it holds complex numbers")
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan, copy=True)
    values = np.array(series.astype(object), dtype=object)
    missing = np.asarray(pd.isna(values), dtype=bool)
    values[missing] = np.nan
    present = values[~missing]
    has_text = False
    for value in present:
        if isinstance(value, str):
            has_text = True
        elif not _is_number(value):
            raise ValueError(
                f"it holds values of type {type(value).__name__} (e.g. {value!r}), and expressions work with numbers and text only"
            )
    if not has_text:
        return values.astype("float64")
    values[~missing] = [v if isinstance(v, str) else float(v) for v in present]
    return values


class _Evaluator:
    """Interprets a checked tree on one frame."""

    def __init__(self, text: str, where: str, frame: pd.DataFrame):
        self.text = text
        self.where = where
        self.frame = frame
        self.n = len(frame)
        #: rows where a step overflowed to +-infinity or divided by zero (made missing)
        self.nonfinite = np.zeros(self.n, dtype=bool)

    def finite(self, values: np.ndarray, inputs_present: np.ndarray) -> np.ndarray:
        """Results of +-infinity or NaN from present inputs (overflow, division by zero) become
        missing, and are counted for the message of a derived column that came out missing."""
        self.nonfinite |= ~np.isfinite(values) & inputs_present
        return _finite(values)

    # -- messages ----------------------------------------------------------

    def fail(self, problem: str, node: ast.AST | None = None) -> SpecError:
        piece = ast.get_source_segment(self.text, node) if node is not None else None
        return SpecError(f"{_in(self.text, piece)}{problem}", where=self.where)

    def label(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return f"column `{node.id}`"
        return f"`{shorten(ast.get_source_segment(self.text, node) or self.text)}`"

    def numbers(self, values: np.ndarray, node: ast.AST, purpose: str) -> np.ndarray:
        if values.dtype != np.float64:
            example = next((v for v in values if isinstance(v, str)), "")
            raise self.fail(f"{self.label(node)} holds text (e.g. {example!r}), but {purpose} needs numbers.")
        return values

    def logical(self, values: np.ndarray, node: ast.AST, purpose: str) -> np.ndarray:
        values = self.numbers(values, node, purpose)
        odd = values[~np.isnan(values) & (values != 0) & (values != 1)]
        if odd.size:
            raise self.fail(
                f"{self.label(node)} is used as true/false by {purpose}, but it holds values other "
                f"than 0 and 1 (e.g. {odd[0]:g}). Compare it explicitly, e.g. "
                f"`{shorten(ast.get_source_segment(self.text, node))} == 1`."
            )
        return values

    def same_kind(self, a: np.ndarray, b: np.ndarray, nodes: tuple, purpose: str) -> None:
        if (a.dtype == np.float64) != (b.dtype == np.float64):
            raise self.fail(
                f"{purpose} needs {self.label(nodes[0])} and {self.label(nodes[1])} to be both numbers "
                f"or both text, but one is text and the other numbers."
            )

    # -- nodes -------------------------------------------------------------

    def value(self, node: ast.AST) -> np.ndarray:
        if isinstance(node, ast.Constant):
            return self.broadcast(node.value)
        if isinstance(node, ast.Name):
            return self.column(node.id)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.BoolOp):
            return self.boolean(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise AssertionError(f"unchecked node {type(node).__name__}")  # the checker refuses these

    def broadcast(self, value: object) -> np.ndarray:
        if isinstance(value, str):
            return np.full(self.n, value, dtype=object)
        return np.full(self.n, float(value))

    def column(self, name: str) -> np.ndarray:
        series = self.frame[name]
        if isinstance(series, pd.DataFrame):
            raise self.fail(f"the data has more than one column named `{name}`; rename them first.")
        try:
            return _column_values(series)
        except (ValueError, TypeError) as exc:
            raise self.fail(f"column `{name}` cannot be used: {exc}.") from None

    def unary(self, node: ast.UnaryOp) -> np.ndarray:
        operand = self.value(node.operand)
        if isinstance(node.op, ast.Not):
            values = self.logical(operand, node.operand, "`not`")
            return 1.0 - values
        values = self.numbers(operand, node.operand, "unary minus or plus")
        return -values if isinstance(node.op, ast.USub) else values.copy()

    def binary(self, node: ast.BinOp) -> np.ndarray:
        symbol, function = _ARITHMETIC[type(node.op)]
        left = self.numbers(self.value(node.left), node.left, f"`{symbol}`")
        right = self.numbers(self.value(node.right), node.right, f"`{symbol}`")
        return self.finite(function(left, right), ~(np.isnan(left) | np.isnan(right)))

    def boolean(self, node: ast.BoolOp) -> np.ndarray:
        word = "`and`" if isinstance(node.op, ast.And) else "`or`"
        combine = _kleene_and if isinstance(node.op, ast.And) else _kleene_or
        result = self.logical(self.value(node.values[0]), node.values[0], word)
        for operand in node.values[1:]:
            result = combine(result, self.logical(self.value(operand), operand, word))
        return result

    def compare(self, node: ast.Compare) -> np.ndarray:
        if isinstance(node.ops[0], (ast.In, ast.NotIn)):
            return self.membership(node)
        nodes = [node.left, *node.comparators]
        values = [self.value(n) for n in nodes]
        result = None
        for i, op in enumerate(node.ops):
            pair = self.compare_pair(op, values[i], values[i + 1], node)
            result = pair if result is None else _kleene_and(result, pair)
        return result

    def compare_pair(self, op: ast.cmpop, left: np.ndarray, right: np.ndarray, node: ast.AST) -> np.ndarray:
        symbol, function = _COMPARISONS[type(op)]
        keep = ~(_missing(left) | _missing(right))
        out = np.full(self.n, np.nan)
        if left.dtype == np.float64 and right.dtype == np.float64:
            out[keep] = function(left[keep], right[keep])
            return out
        pairs = list(zip(left[keep], right[keep]))
        if isinstance(op, _ORDERINGS):
            kinds = {isinstance(v, str) for pair in pairs for v in pair}
            if len(kinds) > 1:
                raise self.fail(
                    f"`{shorten(ast.get_source_segment(self.text, node))}` orders text against numbers with "
                    f"`{symbol}`. Text can only be ordered against text, and numbers against "
                    f"numbers; to test for a text value use `==` (e.g. party == 'Dem').",
                    node,
                )
        out[keep] = [bool(function(a, b)) for a, b in pairs]
        return out

    def membership(self, node: ast.Compare) -> np.ndarray:
        values = self.value(node.left)
        keys = [_literal_value(e) for e in node.comparators[0].elts]
        self.check_key_kinds(values, keys, node.left, "the list after `in`")
        wanted = {_normalize(k) for k in keys}
        keep = ~_missing(values)
        out = np.full(self.n, np.nan)
        out[keep] = [_normalize(v) in wanted for v in values[keep]]
        if isinstance(node.ops[0], ast.NotIn):
            out = 1.0 - out
        return out

    def check_key_kinds(self, values: np.ndarray, keys: list, node: ast.AST, role: str) -> None:
        """Refuse keys that can never match: text keys for a numeric column, or
        number keys for a column of text."""
        present = values[~_missing(values)]
        if values.dtype == np.float64:
            bad = [k for k in keys if isinstance(k, str)]
            if bad:
                raise self.fail(
                    f"{self.label(node)} holds numbers, but {role} has text keys such as "
                    f"{bad[0]!r}, which can never match. Write numbers without quotes."
                )
        elif present.size and all(isinstance(v, str) for v in present):
            bad = [k for k in keys if not isinstance(k, str)]
            if bad:
                raise self.fail(
                    f"{self.label(node)} holds text, but {role} has number keys such as "
                    f"{bad[0]!r}, which can never match. Put them in quotes, e.g. '{bad[0]}'."
                )

    # -- functions ---------------------------------------------------------

    def call(self, node: ast.Call) -> np.ndarray:
        name = node.func.id
        params = FUNCTIONS[name]
        args = {param.name: arg for param, arg in zip(params, node.args)}
        args.update({keyword.arg: keyword.value for keyword in node.keywords})
        if name in ("abs", "log", "exp", "sqrt"):
            return self.math(name, args["x"])
        if name == "round":
            digits = _literal_value(args["digits"]) if "digits" in args else 0
            return np.round(self.numbers(self.value(args["x"]), args["x"], "round()"), digits)
        if name == "is_missing":
            return _missing(self.value(args["x"])).astype("float64")
        if name in ("min", "max"):
            a = self.numbers(self.value(args["a"]), args["a"], f"{name}()")
            b = self.numbers(self.value(args["b"]), args["b"], f"{name}()")
            return np.minimum(a, b) if name == "min" else np.maximum(a, b)
        if name == "if_else":
            return self.if_else(args)
        if name == "coalesce":
            return self.coalesce(args)
        if name == "cut":
            return self.cut(args)
        return self.map(args)

    def math(self, name: str, node: ast.AST) -> np.ndarray:
        x = self.numbers(self.value(node), node, f"{name}()")
        if name == "abs":
            return np.abs(x)
        if name == "exp":
            return self.finite(np.exp(x), ~np.isnan(x))
        result = np.log(x) if name == "log" else np.sqrt(x)
        outside = ~(x > 0) if name == "log" else ~(x >= 0)
        result[outside] = np.nan
        return result

    def if_else(self, args: dict[str, ast.AST]) -> np.ndarray:
        cond = self.logical(self.value(args["cond"]), args["cond"], "if_else()")
        yes, no = self.value(args["yes"]), self.value(args["no"])
        self.same_kind(yes, no, (args["yes"], args["no"]), "if_else()")
        out = np.full(self.n, np.nan, dtype=yes.dtype)
        out[cond == 1] = yes[cond == 1]
        out[cond == 0] = no[cond == 0]
        return out

    def coalesce(self, args: dict[str, ast.AST]) -> np.ndarray:
        a, b = self.value(args["a"]), self.value(args["b"])
        self.same_kind(a, b, (args["a"], args["b"]), "coalesce()")
        out = a.copy()
        fill = _missing(a)
        out[fill] = b[fill]
        return out

    def cut(self, args: dict[str, ast.AST]) -> np.ndarray:
        x = self.numbers(self.value(args["x"]), args["x"], "cut()")
        breaks = np.array([float(_literal_value(e)) for e in args["breaks"].elts])
        n_bins = len(breaks) - 1
        # searchsorted(side="left") puts x in (b[i-1], b[i]] at i; the lowest
        # break itself belongs to bin 1; NaN sorts past the end.
        bins = np.searchsorted(breaks, x, side="left")
        bins[x == breaks[0]] = 1
        inside = (bins >= 1) & (bins <= n_bins) & ~np.isnan(x)
        if "labels" not in args:
            return np.where(inside, bins, np.nan).astype("float64")
        labels = [_literal_value(e) for e in args["labels"].elts]
        out = np.full(self.n, np.nan, dtype=object)
        out[inside] = [labels[i - 1] for i in bins[inside]]
        return out

    def map(self, args: dict[str, ast.AST]) -> np.ndarray:
        values = self.value(args["x"])
        mapping = args["values"]
        keys = [_literal_value(k) for k in mapping.keys]
        self.check_key_kinds(values, keys, args["x"], "the map() dict")
        lookup = {}
        for key, new in zip(keys, (_literal_value(v) for v in mapping.values)):
            lookup[_normalize(key)] = _normalize(new)
        fallback = _normalize(_literal_value(args["default"])) if "default" in args else np.nan
        text = any(isinstance(v, str) for v in [*lookup.values(), fallback])
        out = np.full(self.n, np.nan, dtype=object if text else "float64")
        keep = ~_missing(values)
        out[keep] = [lookup.get(_normalize(v), fallback) for v in values[keep]]
        return out
