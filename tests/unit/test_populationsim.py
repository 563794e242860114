"""PopulationSim working directories read as they are; every bad input named by file, row and column."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthor_core.errors import RuleError, TargetValidationError
from synthor_core.expressions import compile_condition
from synthor_core.geography import build_geography
from synthor_core.priors.sample import sample_candidates
from synthor_core.readers.populationsim import load_populationsim
from synthor_core.units import derive_from_members

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "populationsim"
EXAMPLE_TEST = EXAMPLES / "example_test"
needs_examples = pytest.mark.skipif(not EXAMPLE_TEST.is_dir(), reason="shared/data/populationsim not present")


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "example_test"
    shutil.copytree(EXAMPLE_TEST, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def _problems_after_edit(tmp_path: Path, file: str, old: str, new: str) -> list[str]:
    """Copy example_test, replace ``old`` by ``new`` once in ``file``, load it: the problems it raises, as text."""
    root = _copy(tmp_path)
    path = root / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(TargetValidationError) as info:
        load_populationsim(root)
    return [str(p) for p in info.value.problems]


@needs_examples
@pytest.mark.parametrize(
    "configs, data, levels, zones",
    [
        ("configs", "data", ("DISTRICT", "PUMA", "TRACT", "TAZ"), 36),
        ("configs_flex", "data_flex", ("REGION", "PUMA", "DISTRICT", "TRACT", "TAZ"), 36),
    ],
)
def test_example_test_reads_with_every_geography_level(configs, data, levels, zones):
    project = load_populationsim(EXAMPLE_TEST, configs=configs, data=data)
    assert project.geography.levels == levels
    # TAZ 700 (TRACT 72, PUMA 606) has no controls: left out, as PopulationSim does
    assert project.geography.n_zones == zones
    if configs == "configs":
        zones = [w for w in project.warnings if "crosswalk" in w]
        assert zones == [
            "1 TRACT zone(s) of the crosswalk have no row in data/tract_controls.csv (72): left out, no household is "
            "placed there, as PopulationSim does (give the zone a row of 0s to keep it)",
            "1 TAZ zone(s) of the crosswalk have no row in data/taz_controls.csv (700): left out, no household is "
            "placed there, as PopulationSim does (give the zone a row of 0s to keep it)",
        ]
        assert 606 not in project.sample.households["PUMA"].tolist()  # its seed household goes with it
    assert [c.name for c in project.controls][:2] == ["num_hh", "hh_size_1"]
    assert project.households_per_zone().sum() == 1500
    occ = next(c for c in project.controls if c.name == "persons_occ_1")
    # person control: incidence = members of each household with OCCP == 1
    persons = project.sample.persons
    expected = np.bincount(
        persons["_household"], weights=(persons["OCCP"] == 1).astype(float), minlength=len(project.sample.households)
    )
    np.testing.assert_array_equal(occ.incidence(sample_candidates(project)), expected)


@needs_examples
def test_a_control_zone_missing_from_the_crosswalk_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, "data/taz_controls.csv", "\n101,1,600,1,", "\n999,1,600,1,")
    assert 'data/taz_controls.csv row 3, column "TAZ": the TAZ zone 999 is not in the crosswalk' in problems


@needs_examples
def test_a_crosswalk_zone_with_two_parents_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, "data/geo_cross_walk.csv", "\n102,1,600,1", "\n102,1,601,1")
    assert any(
        re.fullmatch(
            r'data/geo_cross_walk\.csv row 4, column "PUMA": the TRACT zone 1 has two parents at '
            r"PUMA: 600 and 601 .*",
            m,
        )
        for m in problems
    ), problems


@needs_examples
def test_a_person_whose_household_is_not_in_the_sample_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, "data/seed_persons.csv", "\n2,1,600,", "\n77777,1,600,")
    assert (
        'data/seed_persons.csv row 3, column "hh_id": the person\'s household 77777 is not in the seed households'
    ) in problems


@needs_examples
def test_a_control_expression_outside_the_whitelist_is_named(tmp_path):
    problems = _problems_after_edit(
        tmp_path, "configs/controls.csv", "households.NP == 1", "__import__('os').system('true') == 1"
    )
    assert (
        'configs/controls.csv row 3, column "expression": control "hh_size_1": a function call is not allowed '
        "(use households.COLUMN, comparisons, &, |, ~, numbers, np.inf, .isin([...]), .isna(), .between(a, b))"
    ) in problems


@needs_examples
def test_a_control_column_missing_from_its_table_is_named(tmp_path):
    problems = _problems_after_edit(tmp_path, "configs/controls.csv", ",HHSIZE2,", ",HHSIZE9,")
    message = next(m for m in problems if "HHSIZE9" in m)
    assert message.startswith(
        "configs/controls.csv row 4, column \"control_field\": the control column 'HHSIZE9' "
        "is not in data/taz_controls.csv"
    )


@needs_examples
def test_a_table_file_outside_the_project_is_refused(tmp_path):
    (tmp_path / "secret.csv").write_text("TAZ,HHBASE\n100,1\n", encoding="utf-8")
    problems = _problems_after_edit(
        tmp_path, "configs/settings.yaml", "filename : taz_controls.csv", "filename : ../../secret.csv"
    )
    assert any("the file '../../secret.csv' lies outside the folder data/" in m for m in problems)


def test_geography_with_a_duplicated_lowest_zone_and_an_empty_id():
    frame = pd.DataFrame({"TAZ": [1, 2, 2, 3], "TRACT": [10, 10, 10, None]})
    geography, problems = build_geography(frame, ["TRACT", "TAZ"], "xwalk.csv")
    assert geography is None
    assert [str(p) for p in problems] == ['xwalk.csv row 5, column "TRACT": expected a zone id, got an empty cell']
    # rows finer than the lowest level listed (issue 22: one row per TAZ under [REGION, SUBREGCluster]) reduce to it
    geography, problems = build_geography(frame.fillna(11), ["TRACT", "TAZ"], "xwalk.csv")
    assert problems == [] and geography.zones("TAZ").tolist() == [1, 2, 3]
    geography, problems = build_geography(frame.fillna(11), ["TRACT"], "xwalk.csv")
    assert problems == [] and geography.zones("TRACT").tolist() == [10, 11] and len(geography.crosswalk) == 2
    frame.loc[2, "TRACT"] = 12  # now TAZ 2 lies in two tracts: refused
    geography, problems = build_geography(frame.fillna(11), ["TRACT", "TAZ"], "xwalk.csv")
    assert [str(p) for p in problems] == [
        'xwalk.csv row 4, column "TRACT": the TAZ zone 2 has two parents at TRACT: 10 and 12 (each zone lies in one '
        "zone of every level above it)"
    ]


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("(households.AGEHOH > 24) & (households.AGEHOH <= 54)", [False, True, False]),
        ("(households.WGTP > 0) & (households.WGTP < np.inf)", [True, False, True]),
        ("households.NP.isin([1, 2]) | ~(households.AGEHOH <= 65)", [True, True, True]),
        ("households.AGEHOH.between(20, 30)", [True, True, False]),
        ("households.NP.isna()", [False, False, False]),
    ],
)
def test_seed_expressions_in_pandas_dialect(expression, expected):
    frame = pd.DataFrame({"NP": [1, 2, 4], "AGEHOH": [20, 30, 70], "WGTP": [1.0, 0.0, 3.0]})
    condition = compile_condition(expression, "households", frame.columns, "c")
    assert condition(frame).tolist() == expected


@pytest.mark.parametrize(
    "expression, message",
    [
        ("households.NP.__class__ == 1", 'control "c": the attribute ".__class__" is not allowed'),
        ("households.NP + 1 > 2", 'control "c": arithmetic is not allowed'),
        ("households.NP.apply(len)", 'control "c": the call ".apply(...)" is not allowed'),
        (
            "persons.AGEP > 1",
            'control "c": "persons.AGEP" refers to the table "persons", but this control counts '
            "households (seed_table)",
        ),
        ("households.XYZ > 1", 'control "c": the households seed has no column "XYZ"'),
        ("lambda: 1", 'control "c": a Lambda expression is not allowed'),
    ],
)
def test_seed_expressions_outside_the_whitelist(expression, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        compile_condition(expression, "households", ["NP", "AGEHOH"], "c")


@needs_examples
def test_household_variables_derived_from_members_agree_with_the_calm_seed():
    """Size, workers and the head's age computed from the members equal PUMS's own NP, NWESR and AGEHOH."""
    project = load_populationsim(EXAMPLES / "example_calm")
    households, persons = project.sample.households, project.sample.persons
    n = len(households)
    np.testing.assert_array_equal(derive_from_members(persons, n, how="size"), households["NP"])
    head_age = derive_from_members(persons, n, how="first", column="AGEP", order="per_num")
    np.testing.assert_array_equal(head_age, households["AGEHOH"].astype(float))
    workers = derive_from_members(persons, n, how="count", condition=lambda p: p["ESR"].isin([1, 2, 4, 5]).to_numpy())
    np.testing.assert_array_equal(workers, households["NWESR"])  # employed: ESR 1, 2 (civilian), 4, 5 (armed forces)


BOMB = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ngeographies: *f\n"
)


@needs_examples
@pytest.mark.parametrize(
    "file, old, new, expected",
    [  # issue 26 item 8: structure, bounds and depth, each named where it was written
        (
            "configs/settings.yaml",
            "geographies: [DISTRICT, PUMA, TRACT, TAZ]",
            "geographies: [DISTRICT, PUMA, TRACT, TRACT, TAZ]",
            "configs/settings.yaml column \"geographies\": the geography level 'TRACT' is listed twice (each level "
            "once, top to lowest)",
        ),
        (
            "configs/controls.csv",
            "num_hh,TAZ,",
            "num_hh,TRACT,",
            'configs/settings.yaml column "total_hh_control": the total control "num_hh" is given at TRACT; expected '
            "the lowest geography level TAZ (households are placed per TAZ zone)",
        ),
        (
            "configs/controls.csv",
            "num_hh,TAZ,households,1000000000,HHBASE,(households.WGTP > 0) & (households.WGTP < np.inf)",
            "num_hh,TAZ,persons,1000000000,HHBASE,persons.PUMA > 0",
            'configs/settings.yaml column "total_hh_control": the total control "num_hh" counts persons; expected a '
            "control counting households",
        ),
        (
            "data/taz_controls.csv",
            "100,1,600,1,25,",
            "100,1,600,1,9223372036854775807,",
            'data/taz_controls.csv row 2, column "HHBASE": expected a number from 0 to 2,000,000,000, got '
            "9223372036854775807",
        ),
        (
            "configs/controls.csv",
            "households.NP == 1",
            "~" * 300 + "(households.NP == 1)",
            'configs/controls.csv row 3, column "expression": control "hh_size_1": the expression is nested more than '
            "200 levels deep",
        ),
        (
            "configs/settings.yaml",
            "trace_geography:",
            "deep: " + "[" * 20000 + "]" * 20000 + "\ntrace_geography:",
            "configs/settings.yaml: nested too deeply to be read as settings",
        ),
        (
            "configs/settings.yaml",
            "geographies: [DISTRICT, PUMA, TRACT, TAZ]\n",
            BOMB,
            "configs/settings.yaml: more than 100,000 values once its aliases (*name) are expanded: not a settings "
            "file",
        ),
        (
            "data/taz_controls.csv",
            "TAZ,TRACT,PUMA,DISTRICT,",
            ",".join(f"c{i}" for i in range(20_000)) + ",TAZ,TRACT,PUMA,DISTRICT,",
            "data/taz_controls.csv row 1: has 20,011 columns in its header; expected at most 10,000",
        ),
    ],
    ids=[
        "level twice",
        "total above",
        "total of persons",
        "overflow",
        "deep expression",
        "deep yaml",
        "yaml bomb",
        "wide header",
    ],
)
def test_a_broken_structure_is_named_before_any_arithmetic(tmp_path, file, old, new, expected):
    assert expected in _problems_after_edit(tmp_path, file, old, new)


@needs_examples
def test_an_empty_seed_sample_and_an_out_folder_holding_the_inputs_are_refused(tmp_path, capsys):
    from synthor_core import cli

    root = _copy(tmp_path)
    for name in ("seed_households.csv", "seed_persons.csv"):
        path = root / "data" / name
        path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(TargetValidationError) as info:
        load_populationsim(root)
    assert [str(p) for p in info.value.problems] == [
        "data/seed_households.csv: the seed sample has no households: the seed is the sample the "
        "households are drawn from (a project without one is a Synthor household project declaring its variables)"
    ]
    root = _copy(tmp_path / "intact")
    before = {p.name: p.read_bytes() for p in (root / "data").iterdir()}
    assert cli.main(["run", str(root), "--out", str(root / "data"), "--quiet"]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: --out {root / 'data'} holds the project's own files (geo_cross_walk.csv, region_controls.csv, "
        f"repop_taz_controls.csv and 4 more): the run would overwrite or mix with them; choose a folder for the "
        f"results, such as {root.resolve() / 'output'}\n"
    )
    assert {p.name: p.read_bytes() for p in (root / "data").iterdir()} == before


@needs_examples
def test_every_settings_key_is_honoured_or_named():
    """Issue 22 item 4: each key of settings.yaml is read, or named in the project's warnings (report.json, the
    CLI) with what Synthor does instead; the README's table lists every key PopulationSim documents."""
    from synthor_core.readers.populationsim import HONOURED_SETTINGS, SETTINGS_NOT_NEEDED, SETTINGS_NOT_SUPPORTED

    project = load_populationsim(EXAMPLE_TEST)
    named = " ".join(project.warnings)
    settings = __import__("yaml").safe_load((EXAMPLE_TEST / "configs" / "settings.yaml").read_text())
    for key in settings:
        assert key in HONOURED_SETTINGS or f"{key} (" in named or f"{key}: " in named, key
    # survey weighting's settings are honoured (issue 22 item 3): read into the project, not warned about
    assert "NO_INTEGERIZATION_EVER" not in named and "min_expansion_factor" not in named
    assert project.survey_weighting and (project.min_expansion_factor, project.max_expansion_factor) == (0.2, 5.0)
    assert project.output_tables.tables == ("PUMA_weights", "summary_hh_weights", "summary_TAZ")
    assert project.output_tables.prefix == "final_"
    assert (
        "configs/settings.yaml: output_tables: TAZ_weights, TRACT_weights, trace_TAZ_weights, trace_TRACT_weights: "
        "PopulationSim's own pipeline tables, which Synthor does not keep: not written (Synthor writes PUMA_weights, "
        "summary_hh_weights, expanded_household_ids, incidence_table, summary_DISTRICT, summary_TRACT, summary_TAZ)"
    ) in project.warnings
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for key in (*HONOURED_SETTINGS, *SETTINGS_NOT_NEEDED, *SETTINGS_NOT_SUPPORTED):
        assert f"| `{key}` |" in readme, key
