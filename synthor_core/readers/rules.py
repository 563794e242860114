"""Plausibility rules files: named conditions that no realistic record meets (the paper's rejection rules).

A rules file is TOML::

    [[rules]]
    name = "married child"
    condition = 'age < 16 and marital_status == "Married-civ-spouse"'

A record **violates** a rule when its condition is true. Conditions are written in the schema dialect of
:mod:`synthor_core.expressions` (parsed against a whitelist, never evaluated).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Problem, RuleError, TargetValidationError
from ..expressions import Rule, compile_rule
from ..schema import Schema
from ..toml_files import parse_toml


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
