"""Synthor household projects: PopulationSim folders converted, read back as the same project; bad input named."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.priors.sample import sample_candidates
from synthor_core.readers.convert import convert_populationsim
from synthor_core.readers.households import is_household_project, load_household_project
from synthor_core.readers.open import open_project
from synthor_core.readers.populationsim import load_populationsim
from synthor_core.readers.project import load_project
from synthor_core.targets.model import PROJECT_FILE, HouseholdProject, Project

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT.parent / "shared" / "data" / "populationsim"
EXAMPLE_TEST = EXAMPLES / "example_test"
needs_examples = pytest.mark.skipif(not EXAMPLE_TEST.is_dir(), reason="shared/data/populationsim not present")
VARIANTS = [("configs", "data"), ("configs_flex", "data_flex")]


def _converted(tmp_path: Path, configs: str = "configs", data: str = "data") -> Path:
    out = tmp_path / "project"
    convert_populationsim(EXAMPLE_TEST, out, configs=configs, data=data)
    return out


def _problems_after_edit(tmp_path: Path, file: str, old: str, new: str) -> list[str]:
    """Convert example_test, replace ``old`` by ``new`` once in ``file``, load it: the problems, as text."""
    root = _converted(tmp_path)
    path = root / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(TargetValidationError) as info:
        load_household_project(root)
    return [str(p) for p in info.value.problems]


def _assert_same_project(ours, theirs) -> None:
    """Every field of two HouseholdProjects equal (arrays and frames compared by value)."""
    assert ours.name == theirs.name
    assert ours.geography.levels == theirs.geography.levels
    pd.testing.assert_frame_equal(ours.geography.crosswalk, theirs.geography.crosswalk)
    for field in ("household_id", "person_number", "weight", "seed_level"):
        assert getattr(ours.sample, field) == getattr(theirs.sample, field), field
    pd.testing.assert_frame_equal(ours.sample.households, theirs.sample.households)
    pd.testing.assert_frame_equal(ours.sample.persons, theirs.sample.persons)
    assert [c.name for c in ours.controls] == [c.name for c in theirs.controls]
    mine, yours = sample_candidates(ours), sample_candidates(theirs)
    for a, b in zip(ours.controls, theirs.controls):
        for field in ("unit", "level", "importance", "column", "expression", "columns", "condition"):
            assert getattr(a, field) == getattr(b, field), (a.name, field)
        np.testing.assert_array_equal(a.incidence(mine), b.incidence(yours), err_msg=a.name)
        np.testing.assert_array_equal(a.totals, b.totals, err_msg=a.name)
        assert a.totals.dtype == b.totals.dtype
    assert ours.total_control == theirs.total_control
    assert ours.max_expansion_factor == theirs.max_expansion_factor
    assert ours.output == theirs.output
    assert (ours.source, theirs.source) == ("synthor", "populationsim")  # outputs follow `output`, not the source
    # the same, but for the PopulationSim settings Synthor does not use (a converted project has none)
    assert ours.warnings == [w for w in theirs.warnings if "settings.yaml: " not in w]
    assert ours.derived == theirs.derived


@needs_examples
@pytest.mark.parametrize("configs, data", VARIANTS)
def test_a_converted_project_loads_as_the_populationsim_folder_does(tmp_path, configs, data):
    out = _converted(tmp_path, configs, data)
    assert is_household_project(out)
    _assert_same_project(load_household_project(out), load_populationsim(EXAMPLE_TEST, configs=configs, data=data))


@needs_examples
def test_the_converted_folder_names_its_source_and_licence_and_keeps_paths_inside(tmp_path):
    out = _converted(tmp_path)  # the shared example keeps its licence beside it, outside the folder: never read
    text = (out / PROJECT_FILE).read_text(encoding="utf-8")
    assert "from the PopulationSim working directory example_test" in text
    assert "# No licence file was found in the source folder: check the data's terms before sharing." in text
    assert not (out / "LICENSE.txt").exists()
    source = tmp_path / "example_test"
    shutil.copytree(EXAMPLE_TEST, source)
    source.chmod(0o755)
    shutil.copyfile(EXAMPLES / "LICENSE.txt", source / "LICENSE.txt")
    out = tmp_path / "with_licence"
    convert_populationsim(source, out)
    text = (out / PROJECT_FILE).read_text(encoding="utf-8")
    assert (
        "# Licence found with the source (LICENSE.txt): BSD 3-Clause License; copied beside this file as LICENSE.txt."
    ) in text
    assert (out / "LICENSE.txt").read_bytes() == (EXAMPLES / "LICENSE.txt").read_bytes()
    raw = tomllib.loads(text)
    files = [
        raw["geography"]["file"],
        raw["seed"]["households"],
        raw["seed"]["persons"],
        *(c["table"] for c in raw["controls"]),
    ]
    assert all(f.startswith("data/") and (out / f).is_file() for f in files), files
    assert not [p for p in out.rglob(".*")], "no temporary file left behind"
    # renamed as the settings say (SERIALNO -> hh_id, SPORDER -> per_num); unrenamed files copied byte for byte
    lines = (out / "data" / "seed_persons.csv").read_text(encoding="utf-8").splitlines()
    assert next(line for line in lines if not line.startswith("#")) == "hh_id,per_num,PUMA,OSUTAG,OCCP,WGTP"
    assert (out / "data" / "taz_controls.csv").read_bytes() == (EXAMPLE_TEST / "data" / "taz_controls.csv").read_bytes()


@needs_examples
def test_convert_refuses_a_folder_that_is_not_empty(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(TargetValidationError, match=re.escape("expected a new or empty folder for the project")):
        convert_populationsim(EXAMPLE_TEST, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert convert_populationsim(EXAMPLE_TEST, out) == out / PROJECT_FILE


@needs_examples
def test_only_a_household_toml_is_a_household_project(tmp_path, small_project_dir):
    assert not is_household_project(small_project_dir)
    assert not is_household_project(EXAMPLE_TEST)
    assert not is_household_project(tmp_path / "missing")
    assert load_project(small_project_dir).size == 1000  # the person-only format is read as before


@needs_examples
def test_repop_mode_opens_only_a_project_with_repop_settings(tmp_path, small_project_dir):
    """``run --base`` reads its project through open_project(repop=True): a person project, and a household project
    converted without --repop, are refused with a problem naming repop and what it needs."""
    needs = re.escape("repop: --base needs a PopulationSim project whose configs/settings.yaml names")
    with pytest.raises(TargetValidationError, match=needs):
        open_project(small_project_dir, repop=True)
    converted = _converted(tmp_path)
    with pytest.raises(TargetValidationError, match=needs):
        open_project(converted, repop=True)
    assert isinstance(open_project(converted), HouseholdProject)  # the same folder opens as a base run
    assert isinstance(open_project(small_project_dir), Project)


@needs_examples
def test_a_household_project_with_an_empty_seed_sample_is_refused(tmp_path):
    root = _converted(tmp_path)
    for name in ("seed_households.csv", "seed_persons.csv"):
        path = root / "data" / name
        lines = path.read_text(encoding="utf-8").splitlines()
        header = next(i for i, line in enumerate(lines) if not line.startswith("#"))  # after the source comment
        path.write_text("\n".join(lines[: header + 1]) + "\n", encoding="utf-8")
    with pytest.raises(TargetValidationError) as info:
        load_household_project(root)
    assert [str(p) for p in info.value.problems] == [
        "data/seed_households.csv: the seed sample has no households: the seed is the sample the households are "
        "drawn from (a project without one is a Synthor household project declaring its variables)"
    ]


@needs_examples
def test_derived_entries_are_read_and_checked(tmp_path):
    root = _converted(tmp_path)
    path = root / PROJECT_FILE
    own = '[[derived]]\ncolumn = "NP"\nhow = "size"\n\n'  # what convert found (PUMA 606's household is left out)
    text = path.read_text(encoding="utf-8")
    assert own in text
    text = text.replace(own, "")
    derived = (
        '[[derived]]\ncolumn = "NP"\nhow = "size"\n\n[[derived]]\ncolumn = "STUDENTS"\nhow = "count"\n'
        'expression = "persons.OSUTAG.isin([1, 2])"\n\n[[derived]]\ncolumn = "OCCHOH"\nhow = "first"\n'
        'source = "OCCP"\n\n'
    )
    path.write_text(text.replace("[[controls]]", derived + "[[controls]]", 1), encoding="utf-8")
    assert [(d.column, d.how, d.expression, d.source) for d in load_household_project(root).derived] == [
        ("NP", "size", None, None),
        ("STUDENTS", "count", "persons.OSUTAG.isin([1, 2])", None),
        ("OCCHOH", "first", None, "OCCP"),
    ]
    path.write_text(
        text.replace(
            "[[controls]]",
            derived.replace("OSUTAG.isin", "WIZARD.isin")
            .replace('"OCCP"', '"OCCUPATION"')
            .replace('how = "size"', 'how = "first"')
            + "[[controls]]",
            1,
        ),
        encoding="utf-8",
    )
    with pytest.raises(TargetValidationError) as info:
        load_household_project(root)
    problems = [str(p) for p in info.value.problems]
    assert 'synthor.toml column "derived[1]": Value error, how = "first" needs source, a person column' in problems, (
        problems
    )
    path.write_text(
        text.replace(
            "[[controls]]",
            derived.replace("OSUTAG.isin", "WIZARD.isin").replace('"OCCP"', '"OCCUPATION"') + "[[controls]]",
            1,
        ),
        encoding="utf-8",
    )
    with pytest.raises(TargetValidationError) as info:
        load_household_project(root)
    problems = [str(p) for p in info.value.problems]
    assert (
        'synthor.toml column "derived[2].expression": control "derived STUDENTS": the persons seed has no '
        'column "WIZARD"'
    ) in problems, problems
    assert (
        "synthor.toml column \"derived[3].source\": expected a column of data/seed_persons.csv, got 'OCCUPATION'"
    ) in problems, problems


@needs_examples
@pytest.mark.parametrize("table", ["../outside.csv", "/etc/hostname"])
def test_a_file_outside_the_project_is_refused(tmp_path, table):
    problems = _problems_after_edit(tmp_path, PROJECT_FILE, 'table = "data/tract_controls.csv"', f'table = "{table}"')
    assert (
        f'synthor.toml column "controls[7].table": the file {table!r} lies outside the folder project/ (file '
        f"names must stay inside the project)"
    ) in problems, problems


@needs_examples
def test_a_missing_file_is_named(tmp_path):
    problems = _problems_after_edit(
        tmp_path, PROJECT_FILE, 'persons = "data/seed_persons.csv"', 'persons = "data/people.csv"'
    )
    assert problems == ["synthor.toml column \"seed.persons\": the file 'data/people.csv' was not found in project/"]


@needs_examples
def test_an_unknown_level_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, PROJECT_FILE, 'level = "TRACT"', 'level = "BLOCK"')
    assert (
        'synthor.toml column "controls[7].level": expected one of the geography levels DISTRICT, PUMA, TRACT, '
        "TAZ, got 'BLOCK'"
    ) in problems, problems


@needs_examples
def test_a_control_expression_outside_the_whitelist_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, PROJECT_FILE, '"households.NP >= 4"', '"households.NP >= 4 + 0"')
    assert any(
        p.startswith(
            'synthor.toml column "controls[5].expression": control "hh_size_4_plus": arithmetic is not allowed'
        )
        for p in problems
    ), problems


@needs_examples
def test_a_control_column_missing_from_its_table_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, PROJECT_FILE, 'column = "HHSIZE4"', 'column = "HHSIZE9"')
    assert problems == [
        "synthor.toml column \"controls[5].column\": the control column 'HHSIZE9' is not in "
        "data/taz_controls.csv (columns: TRACT, PUMA, DISTRICT, HHBASE, HHSIZE1, HHSIZE2, HHSIZE3, "
        "HHSIZE4, OSUFAM, SF)"
    ]


@needs_examples
def test_a_control_zone_missing_from_the_crosswalk_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, "data/taz_controls.csv", "\n101,1,600,1,", "\n999,1,600,1,")
    assert problems == ['data/taz_controls.csv row 3, column "TAZ": the TAZ zone 999 is not in the crosswalk']


@needs_examples
def test_duplicate_control_names_are_named(tmp_path):
    problems = _problems_after_edit(tmp_path, PROJECT_FILE, 'name = "hh_size_2"', 'name = "hh_size_1"')
    assert problems == [
        "synthor.toml column \"controls[3].name\": the control name 'hh_size_1' is used twice (also controls[2])"
    ]


@needs_examples
def test_an_unknown_unit_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, PROJECT_FILE, 'unit = "persons"', 'unit = "people"')
    assert problems == [
        "synthor.toml column \"controls[6].unit\": Input should be 'households' or 'persons', got 'people'"
    ]


@needs_examples
@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            'total_control = "num_hh"',
            'total_control = "households"',
            "synthor.toml column \"project.total_control\": expected the name of a control, got 'households'",
        ),
        (
            'seed_level = "PUMA"',
            'seed_level = "COUNTY"',
            'synthor.toml column "geography.seed_level": expected one of the levels DISTRICT, PUMA, TRACT, TAZ, got '
            "'COUNTY'",
        ),
        (
            "[project]\n",
            '[project]\ncolour = "red"\n',
            "synthor.toml column \"project.colour\": Extra inputs are not permitted, got 'red'",
        ),
        (
            "importance = 100\n",
            "importance = 0\n",
            'synthor.toml column "controls[7].importance": Input should be greater than 0, got 0',
        ),
        (
            'person_number = "per_num"',
            'person_number = "SPORDER"',
            "data/seed_persons.csv row 1, column \"SPORDER\": expected a column 'SPORDER' numbering the members "
            "(seed.person_number)",
        ),
    ],
)
def test_other_bad_keys_are_named(tmp_path, old, new, expected):
    assert expected in _problems_after_edit(tmp_path, PROJECT_FILE, old, new)


def test_the_bundled_calm_example_is_what_its_script_derives(tmp_path):
    import subprocess
    import sys

    bundled = ROOT / "examples" / "calm"
    project = load_household_project(bundled)
    assert (len(project.sample.households), len(project.sample.persons), len(project.controls)) == (4841, 11734, 31)
    assert [len(project.geography.zones(level)) for level in project.geography.levels] == [1, 1, 35, 930]
    if not (EXAMPLES / "example_calm").is_dir():
        pytest.skip("shared/data/populationsim not present")
    out = tmp_path / "calm"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, str(bundled / "derive.py"), "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    for path in sorted(p for p in bundled.rglob("*") if p.is_file() and p.name not in ("derive.py", "README.md")):
        assert (out / path.relative_to(bundled)).read_bytes() == path.read_bytes(), path.name


def test_rules_are_read_checked_and_counted_on_the_output(tmp_path):
    from synthor_core.evaluate.households import HouseholdEvaluation

    def check_rules(project, households, persons):
        evaluation = HouseholdEvaluation(project)
        evaluation.add(households, persons.assign(per_num=persons.groupby("household_id").cumcount() + 1))
        return [r for r in evaluation.rules() if not r["rule"].startswith("sample: ")]

    project = load_household_project(ROOT / "examples" / "calm")
    # the converted project lists the rules found on the sample (issue 21), then derive.py's two
    mined = [r for r in project.rules if r.name.startswith("sample: ")]
    assert len(mined) == 82 and all(r.empty_is_value for r in mined)
    assert [(r.name, r.unit) for r in project.rules if r not in mined] == [
        ("householder aged 15 or older", "households"),
        ("a worker is 16 or older", "persons"),
    ]
    households = pd.DataFrame({"household_id": [1, 2, 3], "AGEHOH": [14, 40, None]})
    persons = pd.DataFrame({"household_id": [1, 2, 2, 3], "AGEP": [14, 40, 15, None], "ESR": [1, 1, 6, 1]})
    first, second = check_rules(project, households, persons)
    assert (first["checked"], first["broken"], first["seed_broken_share"]) == (2, 1, 0.0)
    assert (second["checked"], second["broken"], round(second["broken_share"], 4)) == (3, 1, 0.3333)
    third = check_rules(project, households.drop(columns="AGEHOH"), persons)[0]
    assert third["not_checked"] == "the output has no column AGEHOH"
    # a rule outside the whitelist is refused with its place in synthor.toml
    root = tmp_path / "calm"
    shutil.copytree(ROOT / "examples" / "calm", root)
    toml = root / "synthor.toml"
    toml.write_text(toml.read_text().replace("households.AGEHOH >= 15", "households.AGEHOH.sum() > 1"))
    with pytest.raises(TargetValidationError) as error:
        load_household_project(root)
    assert [p.column for p in error.value.problems] == ["rules[83].expression"]
    assert "householder aged 15 or older" in str(error.value.problems[0])


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "TAZ",
            "x/../../escape",
            "expected a geography level name of letters, digits, _ or - (at most 64; it names "
            "output files such as summary_<LEVEL>.csv), got 'x/../../escape'",
        ),
        (
            'filename = "synthetic_households.csv"',
            'filename = "households.csv"',
            "expected a plain file name ending in .csv, not households.csv, persons.csv, report.json nor "
            "summary_*.csv, got 'households.csv'",
        ),
        ('filename = "synthetic_persons.csv"', 'filename = "../../x.csv"', "got '../../x.csv'"),
    ],
)
def test_names_that_become_output_files_must_be_plain(tmp_path, old, new, expected):
    root = tmp_path / "calm"
    shutil.copytree(ROOT / "examples" / "calm", root)
    for path in [root / "synthor.toml", *(root / "data").glob("*.csv")]:
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace(f'"{old}"', f'"{new}"').replace(f"{old},", f"{new},").replace(f",{old}\n", f",{new}\n")
            if old == "TAZ"
            else text.replace(old, new),
            encoding="utf-8",
        )
    with pytest.raises(TargetValidationError) as error:
        load_household_project(root)
    assert any(expected in str(p) for p in error.value.problems), [str(p) for p in error.value.problems]
