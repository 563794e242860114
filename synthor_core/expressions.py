"""One compiler for conditions (DESIGN §5, §12): text parsed with ``ast``, checked against a whitelist, compiled once
into a function of a frame; never evaluated by Python. Two dialects:

**schema** (plausibility rules of a person project)::

    age < 16 and marital_status == "Married-civ-spouse"

Variable names of the schema, string and number literals, lists of them, comparisons (``== != < <= > >= in, not
in``; chains like ``18 <= age < 65``), ``and``, ``or``, ``not`` and parentheses. Categories must exist in the schema;
order comparisons on a categorical variable need ``ordered = true`` and compare positions on its scale. The compiled
condition reads coded frames (category positions, numbers).

**table** (PopulationSim's control expressions, and the controls, derivations and rules of household projects)::

    (households.AGEHOH > 24) & (households.AGEHOH <= 54)
    persons.OCCP.isin([1, 2])

Columns as ``table.COLUMN`` of the one table the condition counts, comparisons, ``&``, ``|``, ``~``, numbers,
strings, ``np.inf``/``np.nan``, ``.isin([...])``, ``.isna()``, ``.notna()``, ``.between(a, b)``, and a bare column
(true where non-zero). The compiled condition reads the table itself (any frame with those columns).

Anything else (calls, attributes, subscripts, arithmetic, lambdas, comprehensions, dunder names) is refused with a
:class:`~synthor_core.errors.RuleError` naming the rule or control and what is not allowed.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .errors import RuleError
from .schema import Schema

MAX_CONDITION_LENGTH = 2_000  # characters of one condition
MAX_CONDITION_DEPTH = 200  # syntax tree levels (a chain of & adds one per term): the compilers recurse over the tree
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_NUMPY_CONSTANTS = {"inf": np.inf, "nan": np.nan}
_METHODS = {"isin", "isna", "notna", "between"}
Mask = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class Condition:
    """A compiled condition: call it on a frame to get where it holds.

    Attributes
    ----------
    expression : str
        As written.
    columns : tuple of str
        The columns (schema variables, or the table's columns) it reads, in order of first use.
    test : callable, frame -> ndarray of bool, shape (len(frame),)

    Two conditions are equal when they are written alike (same expression, same columns).
    """

    expression: str
    columns: tuple[str, ...]
    test: Mask = field(compare=False)
    source: tuple = field(default=(), compare=False, repr=False)  # (table, allowed columns, name) to compile again

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.test(frame), dtype=bool)

    def __reduce__(self):
        """Pickled as its text, compiled again where it is loaded (a partition run in another process)."""
        return (compile_condition, (self.expression, *self.source))


@dataclass(frozen=True)
class Rule:
    """A named plausibility rule of a person project (schema dialect).

    Attributes
    ----------
    name : str
    condition : str, as written
    variables : tuple of str, the schema variables it reads
    violates : callable, coded population frame -> ndarray of bool (True where a record violates the rule)
    """

    name: str
    condition: str
    variables: tuple[str, ...]
    violates: Mask


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Attribute):
        return f'the attribute ".{node.attr}"'
    if isinstance(node, ast.Subscript):
        return "indexing"
    if isinstance(node, ast.BinOp):
        return "arithmetic"
    if isinstance(node, ast.Name):
        return f'the name "{node.id}"'
    return f"a {type(node).__name__} expression"


def _reduce(combine, arrays) -> np.ndarray:
    out = arrays[0]
    for a in arrays[1:]:
        out = combine(out, a)
    return np.asarray(out, dtype=bool)


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    series = frame[column]
    return (
        series.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_numeric_dtype(series)
        else series.to_numpy()
    )


class _Compiler:
    """Compiles one condition's ``ast`` in one dialect; ``used`` collects the columns it reads.

    ``schema`` dialect: ``schema`` given, names are variables, literals are coded by the schema. ``table`` dialect:
    ``table`` and ``columns`` given, ``table.COLUMN`` names a column, literals stay as written.
    """

    def __init__(
        self,
        dialect: Literal["schema", "table"],
        owner: str,
        schema: Schema | None = None,
        table: str = "",
        columns=(),
    ):
        self.dialect, self.owner = dialect, owner
        self.schema, self.table, self.columns = schema, table, set(columns)
        self.used: list[str] = []

    # ------------------------------------------------------------------------------------------ messages
    def refuse(self, node: ast.AST, here: bool = False) -> RuleError:
        """What is not allowed, said the dialect's way."""
        what = _describe(node)
        if self.dialect == "schema":
            return RuleError(
                f"{self.owner}: {what} is not allowed here (expected a comparison)"
                if here
                else f'{self.owner}: {what} is not allowed (use variable names, "strings", numbers, lists of them, '
                f"comparisons, and, or, not)"
            )
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            what = f'"{node.value.id}.{node.attr}"'
        return self.fail(what)

    def fail(self, what: str) -> RuleError:
        return RuleError(
            f"{self.owner}: {what} is not allowed (use {self.table}.COLUMN, comparisons, "
            f"&, |, ~, numbers, np.inf, .isin([...]), .isna(), .between(a, b))"
        )

    # ------------------------------------------------------------------------------------------ leaves
    def column(self, node: ast.AST) -> str | None:
        """The column (variable) a node names, or None when it names none."""
        if self.dialect == "schema":
            if not isinstance(node, ast.Name):
                return None
            assert self.schema is not None  # the schema dialect is always built with its schema
            if node.id not in self.schema:
                raise RuleError(f'{self.owner}: "{node.id}" is not a variable (known: {", ".join(self.schema.names)})')
            name = node.id
        else:
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id != "np"):
                return None
            if node.value.id != self.table:
                raise RuleError(
                    f'{self.owner}: "{node.value.id}.{node.attr}" refers to the table "{node.value.id}", but this '
                    f"control counts {self.table} (seed_table)"
                )
            if node.attr not in self.columns:
                raise RuleError(f'{self.owner}: the {self.table} seed has no column "{node.attr}"')
            name = node.attr
        if name not in self.used:
            self.used.append(name)
        return name

    def literal(self, node: ast.AST):
        """A number, a string, a list of them (and ``np.inf``/``np.nan`` in the table dialect)."""
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float, str))
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            operand = node.operand
            if self.dialect == "schema":
                if (
                    isinstance(operand, ast.Constant)
                    and isinstance(operand.value, (int, float))
                    and not isinstance(operand.value, bool)
                ):
                    return -operand.value
            else:
                value = self.literal(operand)
                if isinstance(value, (int, float)):
                    return -value
        if (
            self.dialect == "table"
            and isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "np"
            and node.attr in _NUMPY_CONSTANTS
        ):
            return _NUMPY_CONSTANTS[node.attr]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.literal(e) for e in node.elts]
        raise self.refuse(node)

    def coded(self, variable: str, literal, op: type | None):
        """A literal as the schema codes ``variable`` (category position, or the number); schema dialect only."""
        assert self.schema is not None  # the schema dialect is always built with its schema
        v = self.schema[variable]
        if isinstance(literal, list):
            return [self.coded(variable, x, None) for x in literal]
        if v.type == "categorical":
            if not isinstance(literal, str) or literal not in v.categories:
                raise RuleError(
                    f'{self.owner}: {literal!r} is not a category of "{variable}" (one of '
                    f"{', '.join(repr(c) for c in v.categories[:8])}{', ...' if v.size > 8 else ''})"
                )
            if op in (ast.Lt, ast.LtE, ast.Gt, ast.GtE) and not v.ordered:
                raise RuleError(f'{self.owner}: "{variable}" is not ordered, so "<" and ">" do not apply')
            return v.categories.index(literal)
        if isinstance(literal, str):
            raise RuleError(f'{self.owner}: "{variable}" is numeric, compare it with a number, not {literal!r}')
        return float(literal)

    # ------------------------------------------------------------------------------------------ structure
    def compile(self, node: ast.AST) -> Mask:
        schema = self.dialect == "schema"
        if schema and isinstance(node, ast.BoolOp):
            parts = [self.compile(v) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return lambda f: _reduce(combine, [p(f) for p in parts])
        if not schema and isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            left, right = self.compile(node.left), self.compile(node.right)
            both = np.logical_and if isinstance(node.op, ast.BitAnd) else np.logical_or
            return lambda f: both(left(f), right(f))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not if schema else ast.Invert):
            inner = self.compile(node.operand)
            return lambda f: ~inner(f)
        if isinstance(node, ast.Compare):
            terms = [node.left, *node.comparators]
            checks = [self.comparison(a, op, b) for a, op, b in zip(terms, node.ops, terms[1:])]
            return lambda f: _reduce(np.logical_and, [c(f) for c in checks])
        if not schema:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                return self.method(node)
            name = self.column(node)
            if name:  # a bare column counts where it is true / non-zero
                return lambda f: _values(f, name) != 0
            raise self.fail(_describe(node))
        raise self.refuse(node, here=True)

    def method(self, node: ast.Call) -> Mask:
        """``.isin([...])``, ``.isna()``, ``.notna()``, ``.between(a, b)`` on a column (table dialect)."""
        assert isinstance(node.func, ast.Attribute)  # compile() hands over method calls only
        name = self.column(node.func.value)
        method = node.func.attr
        if name is None or method not in _METHODS or node.keywords:
            raise self.fail(f'the call ".{method}(...)"' if name else _describe(node))
        args = [self.literal(a) for a in node.args]
        if method in {"isna", "notna"} and not args:
            negate = method == "notna"
            return lambda f: pd.isna(f[name]).to_numpy() != negate
        if method == "isin" and len(args) == 1 and isinstance(args[0], list):
            allowed = args[0]
            return lambda f: f[name].isin(allowed).to_numpy()
        if method == "between" and len(args) == 2 and not any(isinstance(a, list) for a in args):
            low, high = args
            return lambda f: (_values(f, name) >= low) & (_values(f, name) <= high)
        raise RuleError(
            f"{self.owner}: .{method}() got the wrong arguments (isin([values]), isna(), notna(), between(low, high))"
        )

    def comparison(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> Mask:
        schema = self.dialect == "schema"
        if not schema and type(op) not in _COMPARE:
            raise self.fail(f"the operator {type(op).__name__}")
        name_left, name_right = self.column(left), self.column(right)
        thing = "variable" if schema else "column"
        if name_left and name_right:
            raise RuleError(f"{self.owner}: compare a {thing} with a value, not two {thing}s")
        if not name_left and not name_right:
            for side in (left, right):
                self.literal(side)  # names what is not allowed (a call, arithmetic ...) first
            raise RuleError(
                f"{self.owner}: a comparison needs a variable"
                if schema
                else f"{self.owner}: a comparison needs a column ({self.table}.COLUMN)"
            )
        name = name_left or name_right
        assert name is not None  # one side names a column: checked just above
        literal = self.literal(right if name_left else left)
        if schema and isinstance(op, (ast.In, ast.NotIn)):
            if not name_left or not isinstance(literal, list):
                raise RuleError(f'{self.owner}: use "variable in [values]"')
            codes = self.coded(name, literal, None)
            negate = isinstance(op, ast.NotIn)
            return lambda f: np.isin(f[name].to_numpy(), codes) != negate
        if type(op) not in _COMPARE or (schema and isinstance(literal, list)):
            raise RuleError(f"{self.owner}: the operator {type(op).__name__} is not allowed")
        if isinstance(literal, list):
            raise self.fail("a list in a comparison (use .isin([...]))")
        fn = _COMPARE[type(op)]
        if schema:
            value = self.coded(name, literal, type(op))
            if name_left:
                return lambda f: fn(f[name].to_numpy(), value)
            return lambda f: fn(value, f[name].to_numpy())
        if name_left:
            return lambda f: np.asarray(fn(_values(f, name), literal), dtype=np.bool_)
        return lambda f: np.asarray(fn(literal, _values(f, name)), dtype=np.bool_)


def _parse(text: object, owner: str, what: str) -> ast.Expression:
    """Parse a condition into an ``ast`` expression; empty, too long or invalid text raises :class:`RuleError`.

    ``owner`` names it in messages (``rule "married child"``, ``control "hh_size_1"``); ``what`` is the word for
    the text (``condition``, ``expression``).
    """
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"{owner}: the {what} is empty")
    if len(text) > MAX_CONDITION_LENGTH:
        raise RuleError(f"{owner}: the {what} is longer than {MAX_CONDITION_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"{owner}: not a valid {what} ({exc.msg} at character {exc.offset})") from None
    except RecursionError:
        raise RuleError(f"{owner}: the {what} is nested too deeply") from None
    stack: list[tuple[ast.AST, int]] = [
        (tree, 0)
    ]  # depth measured without recursion: the compilers recurse over the tree
    while stack:
        node, depth = stack.pop()
        if depth > MAX_CONDITION_DEPTH:
            raise RuleError(f"{owner}: the {what} is nested more than {MAX_CONDITION_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def compile_rule(name: str, condition: str, schema: Schema) -> Rule:
    """Compile a plausibility rule (schema dialect).

    Parameters
    ----------
    name : str
    condition : str
        True where a record is implausible (``age < 16 and employed == "yes"``).
    schema : Schema

    Returns
    -------
    Rule
        ``violates(coded frame) -> ndarray of bool``.

    Raises
    ------
    RuleError
        On a syntax error or anything outside the dialect, naming the rule.
    """
    owner = f'rule "{name}"'
    tree = _parse(condition, owner, "condition")
    compiler = _Compiler("schema", owner, schema=schema)
    violates = compiler.compile(tree.body)
    return Rule(name, condition, tuple(compiler.used), violates)


def compile_condition(expression: str, table: str, columns, name: str) -> Condition:
    """Compile a condition over one table (table dialect): a control, a derivation or a household rule.

    Parameters
    ----------
    expression : str
        E.g. ``(households.AGEHOH > 24) & (households.AGEHOH <= 54)`` or ``persons.OCCP.isin([1, 2])``.
    table : str
        The table the condition counts (``households`` or ``persons``, PopulationSim's ``seed_table``); the
        expression may refer to it only.
    columns : collection of str
        Columns of that table.
    name : str
        The control's (or rule's) name, for messages.

    Returns
    -------
    Condition
        Callable ``frame -> ndarray of bool, shape (len(frame),)``.

    Raises
    ------
    RuleError
        Naming the control and the construct outside the whitelist, or the missing column.
    """
    owner = f'control "{name}"'
    tree = _parse(expression, owner, "expression")
    allowed = tuple(str(c) for c in columns)
    compiler = _Compiler("table", owner, table=table, columns=allowed)
    test = compiler.compile(tree.body)
    return Condition(expression, tuple(compiler.used), test, (table, allowed, name))


def violation_counts(population: pd.DataFrame, rules) -> dict[str, int]:
    """Persons violating each rule in a coded population with ``count`` (all records count 1 without it)."""
    weights = population["count"].to_numpy() if "count" in population else np.ones(len(population))
    return {r.name: int(weights[r.violates(population)].sum()) for r in rules}


def violating(population: pd.DataFrame, rules) -> np.ndarray:
    """Boolean mask of records violating at least one rule."""
    mask = np.zeros(len(population), dtype=bool)
    for r in rules:
        mask |= r.violates(population)
    return mask


def expression_constants(expression: str) -> list[float]:
    """Every number written in a table-dialect condition (``np.inf`` as inf, ``-5`` as -5): the points where a
    column's conditions may change (:func:`synthor_core.priors.households.column_categories`)."""
    found = []
    tree = ast.parse(expression, mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            if isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
                found.append(-float(node.operand.value))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        ):
            found.append(float(node.value))
        elif isinstance(node, ast.Attribute) and node.attr == "inf":
            found.append(np.inf)
    return found
