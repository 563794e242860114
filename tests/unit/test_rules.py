"""The rule language: what it means, and that hostile input is refused without being run."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from synthor_core.errors import RuleError, TargetValidationError
from synthor_core.expressions import compile_rule, violation_counts
from synthor_core.readers.project import load_project
from synthor_core.readers.rules import load_rules


@pytest.fixture
def schema(small_project_dir):
    return load_project(small_project_dir).schema


def _frame(schema, rows):
    encoded, rejected = schema.encode(pd.DataFrame(rows, columns=["age", "sex", "employed"]))
    assert rejected == {}
    return encoded


def test_conditions_select_the_violating_records(schema):
    people = _frame(schema, [(10, "Female", "yes"), (30, "Male", "yes"), (70, "Male", "no"), (15, "Male", "no")])
    child_worker = compile_rule("child worker", 'age < 16 and employed == "yes"', schema)
    assert child_worker.violates(people).tolist() == [True, False, False, False]
    assert child_worker.variables == ("age", "employed")
    chained = compile_rule("working age", '16 <= age < 65 and not (sex in ["Female"])', schema)
    assert chained.violates(people).tolist() == [False, True, False, False]
    either = compile_rule("either", 'age >= 65 or employed != "no"', schema)
    assert either.violates(people).tolist() == [True, True, True, False]
    assert violation_counts(people.assign(count=[1, 2, 3, 4]), [child_worker, either]) == {
        "child worker": 1,
        "either": 6,
    }


@pytest.mark.parametrize(
    "condition, message",
    [
        ('__import__("os").system("touch {target}")', 'rule "r": a function call is not allowed here'),
        ("open('/etc/passwd').read()", 'rule "r": a function call is not allowed here'),
        ("age.__class__.__bases__", 'rule "r": the attribute ".__bases__" is not allowed here'),
        ("(lambda: 1)() == 1", 'rule "r": a function call is not allowed'),
        ("age < 16 + 2", 'rule "r": arithmetic is not allowed'),
        ("[x for x in ()] == 1", 'rule "r": a ListComp expression is not allowed'),
        ("sex == Female", 'rule "r": "Female" is not a variable'),
        ('sex == "Alien"', 'rule "r": \'Alien\' is not a category of "sex"'),
        ('sex < "Male"', 'rule "r": "sex" is not ordered, so "<" and ">" do not apply'),
        ("age == sex", 'rule "r": compare a variable with a value, not two variables'),
        ("age", 'rule "r": the name "age" is not allowed here (expected a comparison)'),
        ("age <", 'rule "r": not a valid condition'),
        ('age == "old"', 'rule "r": "age" is numeric, compare it with a number'),
    ],
)
def test_hostile_or_wrong_conditions_are_refused(schema, condition, message, tmp_path):
    condition = condition.replace("{target}", str(tmp_path / "pwned"))
    with pytest.raises(RuleError, match=re.escape(message)):
        rule = compile_rule("r", condition, schema)
        rule.violates(schema.empty_population())
    assert not (tmp_path / "pwned").exists()


def test_rules_file_lists_every_problem(schema, tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\nname = "ok"\ncondition = "age < 5 and employed == \\"yes\\""\n'
        '[[rules]]\nname = "bad"\ncondition = "exec(1)"\n[[rules]]\nname = "extra"\ncondition = "age > 1"\n'
        'code = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(TargetValidationError) as info:
        load_rules(path, schema)
    assert [str(p) for p in info.value.problems] == [
        'rules.toml column "rules[2]": rule "bad": a function call is not allowed here (expected a comparison)',
        'rules.toml column "rules[3]": expected name and condition (and optionally description)',
    ]
