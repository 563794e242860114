"""Plausibility rules: named conditions that no realistic record meets (the paper's rejection rules).

A rules file is TOML::

    [[rules]]
    name = "married child"
    condition = 'age < 16 and marital_status == "Married-civ-spouse"'

A record **violates** a rule when its condition is true. Conditions are a small language parsed with ``ast``
and checked against a whitelist, never evaluated by Python: variable names of the schema, string and number
literals, lists of literals, comparisons (``== != < <= > >= in, not in``; chains like ``18 <= age < 65``),
``and``, ``or``, ``not`` and parentheses. Categories must exist in the schema; order comparisons on a
categorical variable need ``ordered = true`` and compare positions on its scale. Anything else (calls,
attributes, subscripts, arithmetic, lambdas, comprehensions, dunder names) is refused with a message naming
the rule and what is not allowed.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import Problem, TargetValidationError
from .schema import Schema
from .toml_files import parse_toml

MAX_CONDITION_LENGTH = 2_000  # characters of one condition
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


class RuleError(ValueError):
    """A condition uses something the rule language does not allow (or names an unknown variable/category)."""


@dataclass(frozen=True)
class Rule:
    """A named plausibility rule.

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
    violates: Callable[[pd.DataFrame], np.ndarray]


def _literal(node: ast.AST, rule: str):
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (str, int, float))
        and not isinstance(node.value, bool)
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, rule) for e in node.elts]
    raise RuleError(
        f'rule "{rule}": {_describe(node)} is not allowed (use variable names, "strings", numbers, '
        f"lists of them, comparisons, and, or, not)"
    )


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


class _Compiler:
    def __init__(self, schema: Schema, rule: str):
        self.schema, self.rule = schema, rule
        self.used: list[str] = []

    def variable(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            if node.id not in self.schema:
                raise RuleError(
                    f'rule "{self.rule}": "{node.id}" is not a variable (known: {", ".join(self.schema.names)})'
                )
            if node.id not in self.used:
                self.used.append(node.id)
            return node.id
        return None

    def value(self, var: str, literal, op: type | None):
        """A literal as the coded value of ``var`` (category position, or the number)."""
        v = self.schema[var]
        if v.type == "categorical":
            if isinstance(literal, list):
                return [self.value(var, x, None) for x in literal]
            if not isinstance(literal, str) or literal not in v.categories:
                raise RuleError(
                    f'rule "{self.rule}": {literal!r} is not a category of "{var}" (one of '
                    f"{', '.join(repr(c) for c in v.categories[:8])}{', ...' if v.size > 8 else ''})"
                )
            if op in (ast.Lt, ast.LtE, ast.Gt, ast.GtE) and not v.ordered:
                raise RuleError(f'rule "{self.rule}": "{var}" is not ordered, so "<" and ">" do not apply')
            return v.categories.index(literal)
        if isinstance(literal, list):
            return [self.value(var, x, None) for x in literal]
        if isinstance(literal, str):
            raise RuleError(f'rule "{self.rule}": "{var}" is numeric, compare it with a number, not {literal!r}')
        return float(literal)

    def compile(self, node: ast.AST):
        if isinstance(node, ast.BoolOp):
            parts = [self.compile(v) for v in node.values]
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return lambda f: _reduce(combine, [p(f) for p in parts])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.compile(node.operand)
            return lambda f: ~inner(f)
        if isinstance(node, ast.Compare):
            terms = [node.left, *node.comparators]
            checks = [self.comparison(a, op, b) for a, op, b in zip(terms, node.ops, terms[1:])]
            return lambda f: _reduce(np.logical_and, [c(f) for c in checks])
        raise RuleError(f'rule "{self.rule}": {_describe(node)} is not allowed here (expected a comparison)')

    def comparison(self, left: ast.AST, op: ast.cmpop, right: ast.AST):
        var_left, var_right = self.variable(left), self.variable(right)
        if var_left and var_right:
            raise RuleError(f'rule "{self.rule}": compare a variable with a value, not two variables')
        if not var_left and not var_right:
            for side in (left, right):
                _literal(side, self.rule)  # names what is not allowed (a call, an attribute ...) first
            raise RuleError(f'rule "{self.rule}": a comparison needs a variable')
        var = var_left or var_right
        assert var is not None  # one side is a variable: checked just above
        other = right if var_left else left
        literal = _literal(other, self.rule)
        if isinstance(op, (ast.In, ast.NotIn)):
            if not var_left or not isinstance(literal, list):
                raise RuleError(f'rule "{self.rule}": use "variable in [values]"')
            codes = self.value(var, literal, None)
            negate = isinstance(op, ast.NotIn)
            return lambda f: np.isin(f[var].to_numpy(), codes) != negate
        if type(op) not in _COMPARE or isinstance(literal, list):
            raise RuleError(f'rule "{self.rule}": the operator {type(op).__name__} is not allowed')
        coded = self.value(var, literal, type(op))
        fn = _COMPARE[type(op)]
        if var_left:
            return lambda f: fn(f[var].to_numpy(), coded)
        return lambda f: fn(coded, f[var].to_numpy())


def _reduce(combine, arrays):
    out = arrays[0]
    for a in arrays[1:]:
        out = combine(out, a)
    return np.asarray(out, dtype=bool)


def _parse_condition(text: object, owner: str, what: str) -> ast.Expression:
    """Parse a condition into an ``ast`` expression; empty, too long or invalid text raises :class:`RuleError`.

    ``owner`` names it in messages (``rule "married child"``, ``control "hh_size_1"``); ``what`` is the word for
    the text (``condition``, ``expression``).
    """
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"{owner}: the {what} is empty")
    if len(text) > MAX_CONDITION_LENGTH:
        raise RuleError(f"{owner}: the {what} is longer than {MAX_CONDITION_LENGTH} characters")
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"{owner}: not a valid {what} ({exc.msg} at character {exc.offset})") from None


def compile_rule(name: str, condition: str, schema: Schema) -> Rule:
    """Parse and check one condition; returns a :class:`Rule`.

    Raises
    ------
    RuleError
        On a syntax error or anything outside the rule language, naming the rule.
    """
    tree = _parse_condition(condition, f'rule "{name}"', "condition")
    compiler = _Compiler(schema, name)
    violates = compiler.compile(tree.body)
    return Rule(name, condition, tuple(compiler.used), violates)


def load_rules(path: str | Path, schema: Schema) -> list[Rule]:
    """Read a rules TOML file (``[[rules]]`` with ``name`` and ``condition``).

    Raises
    ------
    TargetValidationError
        With every problem (file, the rule's position, what is wrong).
    """
    path = Path(path)
    shown = path.name
    try:
        raw, problems = parse_toml(path.read_text(encoding="utf-8"), shown)
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetValidationError([Problem(shown, f"could not be read as UTF-8 text ({exc})")]) from None
    if raw is None:
        raise TargetValidationError(problems)
    rules, problems = [], []
    entries = raw.get("rules")
    if not isinstance(entries, list) or not entries:
        raise TargetValidationError([Problem(shown, "expected [[rules]] entries with name and condition")])
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or set(entry) - {"name", "condition", "description"} or "condition" not in entry:
            problems.append(
                Problem(shown, "expected name and condition (and optionally description)", column=f"rules[{i}]")
            )
            continue
        try:
            rules.append(compile_rule(str(entry.get("name", f"rule {i}")), entry["condition"], schema))
        except RuleError as exc:
            problems.append(Problem(shown, str(exc), column=f"rules[{i}]"))
    if problems:
        raise TargetValidationError(problems)
    return rules


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


# --- PopulationSim control expressions -----------------------------------------------------------------------------
# controls.csv gives each control as a pandas expression over one seed table, e.g.
# ``(households.AGEHOH > 24) & (households.AGEHOH <= 54)``. The same whitelist idea as above, in pandas' dialect:
# columns as ``table.COLUMN``, comparisons, ``&``, ``|``, ``~``, numbers, strings, ``np.inf``,
# ``.isin([...])``, ``.isna()``, ``.notna()``, ``.between(a, b)``. Never ``eval``.

_NUMPY_CONSTANTS = {"inf": np.inf, "nan": np.nan}


class _SeedExpression:
    def __init__(self, table: str, columns, control: str):
        self.table, self.columns, self.control = table, set(columns), control
        self.used: list[str] = []

    def fail(self, what: str) -> RuleError:
        return RuleError(
            f'control "{self.control}": {what} is not allowed (use {self.table}.COLUMN, comparisons, '
            f"&, |, ~, numbers, np.inf, .isin([...]), .isna(), .between(a, b))"
        )

    def column(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id != "np":
            if node.value.id != self.table:
                raise RuleError(
                    f'control "{self.control}": "{node.value.id}.{node.attr}" refers to the table '
                    f'"{node.value.id}", but this control counts {self.table} (seed_table)'
                )
            if node.attr not in self.columns:
                raise RuleError(f'control "{self.control}": the {self.table} seed has no column "{node.attr}"')
            if node.attr not in self.used:
                self.used.append(node.attr)
            return node.attr
        return None

    def constant(self, node: ast.AST):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float, str))
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.constant(node.operand)
            if isinstance(value, (int, float)):
                return -value
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "np"
            and node.attr in _NUMPY_CONSTANTS
        ):
            return _NUMPY_CONSTANTS[node.attr]
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.constant(e) for e in node.elts]
        raise self.fail(
            _describe(node)
            if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Name)
            else f'"{node.value.id}.{node.attr}"'
        )

    def compile(self, node: ast.AST):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            left, right = self.compile(node.left), self.compile(node.right)
            combine = np.logical_and if isinstance(node.op, ast.BitAnd) else np.logical_or
            return lambda f: combine(left(f), right(f))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            inner = self.compile(node.operand)
            return lambda f: ~inner(f)
        if isinstance(node, ast.Compare):
            terms = [node.left, *node.comparators]
            checks = [self.comparison(a, op, b) for a, op, b in zip(terms, node.ops, terms[1:])]
            return lambda f: _reduce(np.logical_and, [c(f) for c in checks])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return self.method(node)
        name = self.column(node)
        if name:  # a bare column counts where it is true / non-zero
            return lambda f: _values(f, name) != 0
        raise self.fail(_describe(node))

    def method(self, node: ast.Call):
        if not isinstance(node.func, ast.Attribute):
            raise self.fail(_describe(node))
        name = self.column(node.func.value)
        method = node.func.attr
        if name is None or method not in {"isin", "isna", "notna", "between"} or node.keywords:
            raise self.fail(f'the call ".{method}(...)"' if name else _describe(node))
        args = [self.constant(a) for a in node.args]
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
            f'control "{self.control}": .{method}() got the wrong arguments '
            f"(isin([values]), isna(), notna(), between(low, high))"
        )

    def comparison(self, left: ast.AST, op: ast.cmpop, right: ast.AST):
        if type(op) not in _COMPARE:
            raise self.fail(f"the operator {type(op).__name__}")
        col_left, col_right = self.column(left), self.column(right)
        if col_left and col_right:
            raise RuleError(f'control "{self.control}": compare a column with a value, not two columns')
        if not col_left and not col_right:
            for side in (left, right):
                self.constant(side)  # names what is not allowed (arithmetic, a call ...) first
            raise RuleError(f'control "{self.control}": a comparison needs a column ({self.table}.COLUMN)')
        name = col_left or col_right
        assert name is not None  # one side is a column: checked just above
        value = self.constant(right if col_left else left)
        if isinstance(value, list):
            raise self.fail("a list in a comparison (use .isin([...]))")
        fn = _COMPARE[type(op)]
        if col_left:
            return lambda f: np.asarray(fn(_values(f, name), value), dtype=np.bool_)
        return lambda f: np.asarray(fn(value, _values(f, name)), dtype=np.bool_)


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    series = frame[column]
    return (
        series.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_numeric_dtype(series)
        else series.to_numpy()
    )


@dataclass(frozen=True)
class SeedCondition:
    """A compiled control expression: call it on the seed table; ``columns`` are the seed columns it reads."""

    expression: str
    columns: tuple[str, ...]
    test: Callable[[pd.DataFrame], np.ndarray]

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.test(frame), dtype=bool)


def compile_seed_expression(expression: str, table: str, columns, control: str) -> SeedCondition:
    """Parse one PopulationSim control expression into a function of the seed table.

    Parameters
    ----------
    expression : str
        E.g. ``(households.AGEHOH > 24) & (households.AGEHOH <= 54)`` or ``persons.OCCP.isin([1, 2])``.
    table : str
        The control's ``seed_table`` (``households`` or ``persons``); the expression may refer to it only.
    columns : collection of str
        Columns of that seed table.
    control : str
        The control's name, for messages.

    Returns
    -------
    SeedCondition
        Callable ``frame -> ndarray of bool, shape (len(frame),)``: where a row meets the condition.

    Raises
    ------
    RuleError
        Naming the control and the construct outside the whitelist, or the missing column.
    """
    tree = _parse_condition(expression, f'control "{control}"', "expression")
    compiler = _SeedExpression(table, columns, control)
    test = compiler.compile(tree.body)
    return SeedCondition(expression, tuple(compiler.used), test)
