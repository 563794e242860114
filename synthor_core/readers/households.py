"""Synthor household projects: households with their members in zones, declared in one ``synthor.toml``.

A household project folder holds ``synthor.toml`` and the CSV files it names (paths relative to the folder,
never leaving it). It is told apart from a person-only project (:mod:`synthor_core.targets`, same file name) by
its ``[geography]`` table or ``[[controls]]`` entries::

    [project]
    name = "example_calm"
    total_control = "num_hh"            # the control of households per zone
    max_expansion_factor = 30           # optional; also min_expansion_factor, absolute_upper_bound, _lower_bound
    survey_weighting = false            # optional: PopulationSim's NO_INTEGERIZATION_EVER (float weights)
    [geography]
    file = "data/geo_cross_walk.csv"    # crosswalk: one row per lowest-level zone, one column per level
    levels = ["REGION", "PUMA", "TRACT", "TAZ"]   # top to lowest
    seed_level = "PUMA"
    [seed]
    households = "data/seed_households.csv"
    persons = "data/seed_persons.csv"
    household_id = "hh_id"              # in both files
    person_number = "per_num"           # optional (default: per_num when the persons file has it)
    weight = "WGTP"
    [[derived]]                         # household columns computed from the members; optional
    column = "NP"
    how = "size"                        # size | count (needs expression) | first (needs source)
    [[controls]]
    name = "hh_size_1"
    unit = "households"                 # or persons
    level = "TAZ"
    table = "data/control_totals_taz.csv"   # one row per zone of level, a column named as the level
    column = "HHSIZE1"
    expression = "households.NP == 1"   # the control dialect of expressions.compile_condition
    importance = 5000
    [output]                            # optional: PopulationSim's output_synthetic_population
    [output_tables]                     # optional: PopulationSim's output_tables (tables, action, prefix)
    household_id = "household_id"

:func:`load_household_project` reads it as the same :class:`~synthor_core.units.HouseholdProject` that
:func:`~synthor_core.readers.populationsim.load_populationsim` returns, so synthesis and export do not know where a
project came from. :func:`convert_populationsim` writes a PopulationSim working directory in this form. Every
problem is collected and raised once (:class:`TargetValidationError`); in ``synthor.toml`` a problem names the
key, entries of ``[[controls]]`` and ``[[derived]]`` counted from 1 (``controls[3].expression``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..codebook import Domain, widen_for_controls
from ..errors import Problem, RuleError, TargetValidationError
from ..expressions import compile_condition
from ..geography import Geography, build_geography, read_zone_shapes
from ..targets.model import PROJECT_FILE, Control, HouseholdProject
from ..targets.tables import inside_folder, pydantic_problems
from ..toml_files import parse_toml
from ..units import HOUSEHOLDS, MEMBER, PERSONS, Derivation, HouseholdRule, Sample
from .controls import (
    ControlEntry,
    check_zone_column,
    keep_zones_with_controls,
    output_files,
    output_tables,
    read_control,
    repop_problems,
    total_control_problems,
)
from .populationsim import read_csv_table, seed_sample_from_tables, with_codebook
from .project import read_project_toml

DECLARED_ID = "household_id"  # id column of a project without a sample (no record carries it)
DECLARED_WEIGHT = "weight"  # weight column of a project without a sample


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProjectSection(_Section):
    """``[project]``: name, the control of households per zone, and the bound on household weights."""

    name: str = Field(min_length=1)
    description: str = ""
    total_control: str = Field(min_length=1)
    max_expansion_factor: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_expansion_factor: float | None = Field(None, gt=0, allow_inf_nan=False)
    absolute_upper_bound: float | None = Field(None, gt=0, allow_inf_nan=False)
    absolute_lower_bound: float | None = Field(None, ge=0, allow_inf_nan=False)
    survey_weighting: bool = False  # PopulationSim's NO_INTEGERIZATION_EVER: weights, not whole households
    repop: Literal["replace", "append"] | None = None  # PopulationSim's repop mode: run --base PREVIOUS_OUT


class GeographySection(_Section):
    """``[geography]``: the crosswalk file, its levels (top to lowest) and the level the seed households carry."""

    file: str = Field(min_length=1)
    levels: list[str] = Field(min_length=1)
    seed_level: str = Field(min_length=1)
    shapes: str | None = Field(None, min_length=1)  # a GeoJSON of the zones of shapes_level, for maps
    shapes_level: str | None = Field(None, min_length=1)  # default: the lowest level
    shapes_id: str | None = Field(None, min_length=1)  # the feature property naming the zone; default: the level


class SeedSection(_Section):
    """``[seed]``: the sample households and persons files and their reserved columns."""

    households: str = Field(min_length=1)
    persons: str = Field(min_length=1)
    household_id: str = Field(min_length=1)
    person_number: str | None = None
    weight: str = Field(min_length=1)


class DerivedSpec(_Section):
    """One ``[[derived]]`` entry: a household column computed from the members (:class:`Derivation`)."""

    column: str = Field(min_length=1)
    how: Literal["size", "count", "first"]
    expression: str | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _needs_its_argument(self) -> DerivedSpec:
        if self.how == "count" and not self.expression:
            raise ValueError('how = "count" needs expression, a condition over persons')
        if self.how == "first" and not self.source:
            raise ValueError('how = "first" needs source, a person column')
        if self.how != "count" and self.expression is not None:
            raise ValueError(f'expression is only for how = "count", not "{self.how}"')
        if self.how != "first" and self.source is not None:
            raise ValueError(f'source is only for how = "first", not "{self.how}"')
        return self


class ControlSpec(_Section):
    """One ``[[controls]]`` entry: units meeting ``expression``, totals in ``table``'s ``column`` per zone.

    ``total_of`` makes it a numeric control: the total of that column over the units meeting ``expression`` (all
    units with a value of it when there is no expression), e.g. the households' total income per TRACT.
    """

    name: str = Field(min_length=1)
    unit: Literal["households", "persons"]
    level: str = Field(min_length=1)
    table: str = Field(min_length=1)
    column: str = Field(min_length=1)
    expression: str | None = Field(None, min_length=1)
    total_of: str | None = Field(None, min_length=1)
    importance: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _needs_a_condition(self) -> ControlSpec:
        if self.expression is None and self.total_of is None:
            raise ValueError("a control needs expression (which units count), or total_of (a numeric control)")
        return self

    @property
    def condition(self) -> str:
        """The condition as written, or, for a numeric control without one, every unit with a value."""
        return self.expression or f"{self.unit}.{self.total_of}.notna()"


class RuleSpec(_Section):
    """One ``[[rules]]`` entry: a condition every household (or person) of the result must meet."""

    name: str = Field(min_length=1)
    unit: Literal["households", "persons"]
    expression: str = Field(min_length=1)
    empty_is_value: bool = False  # true: an empty value is checked like any other (rules found on the sample)


class OutputTableSpec(_Section):
    """``[output.households]`` / ``[output.persons]``: PopulationSim's file name and columns."""

    filename: str | None = None
    columns: list[str] | None = None


class OutputSpec(_Section):
    """``[output]``: PopulationSim's ``output_synthetic_population`` (its files are written when present)."""

    household_id: str | None = None
    households: OutputTableSpec | None = None
    persons: OutputTableSpec | None = None


class OutputTablesSpec(_Section):
    """``[output_tables]``: PopulationSim's ``output_tables`` (which of its tables to write, under which prefix)."""

    tables: list[str] | None = None  # None: every table Synthor writes
    action: Literal["include", "skip"] = "include"
    prefix: str = "final_"


class VariableSpec(_Section):
    """One ``[[variables]]`` entry: a household or person column and its domain (issue 21: complete records).

    ``codes`` (the values a coded column takes) or ``low`` and ``high`` (a range); ``integer``: whole numbers;
    ``empty``: the column may be empty (a child's employment status). A declared domain replaces the one read from
    the sample; a project without ``[seed]`` declares every column its records have.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    unit: Literal["households", "persons"]
    codes: list[float] | None = Field(None, min_length=1)
    low: float | None = Field(None, allow_inf_nan=False)
    high: float | None = Field(None, allow_inf_nan=False)
    integer: bool = True
    empty: bool = False

    @model_validator(mode="after")
    def _codes_or_a_range(self) -> VariableSpec:
        if self.codes is not None and (self.low is not None or self.high is not None):
            raise ValueError("give codes or low and high, not both")
        if self.codes is None and (self.low is None or self.high is None):
            raise ValueError("give codes (a list of numbers) or low and high (a range)")
        if self.codes is not None and not all(np.isfinite(c) for c in self.codes):
            raise ValueError("codes must be finite numbers")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low:g}) is above high ({self.high:g})")
        return self

    def domain(self) -> Domain:
        """The declared :class:`~synthor_core.codebook.Domain`."""
        if self.codes is not None:
            codes = tuple(sorted({float(c) for c in self.codes}))
            return Domain(self.name, self.unit, codes, codes[0], codes[-1], self.integer, self.empty)
        assert self.low is not None and self.high is not None  # checked above
        return Domain(self.name, self.unit, None, float(self.low), float(self.high), self.integer, self.empty)


class HouseholdProjectSpec(_Section):
    """The whole ``synthor.toml`` of a household project."""

    project: ProjectSection
    geography: GeographySection
    seed: SeedSection | None = None
    variables: list[VariableSpec] = Field(default_factory=list)
    derived: list[DerivedSpec] = Field(default_factory=list)
    controls: list[ControlSpec] = Field(min_length=1)
    rules: list[RuleSpec] = Field(default_factory=list)
    output: OutputSpec | None = None
    output_tables: OutputTablesSpec | None = None

    @model_validator(mode="after")
    def _a_sample_or_declared_variables(self) -> HouseholdProjectSpec:
        if self.seed is None and not self.variables:
            raise ValueError(
                "a household project needs [seed] (the sample households and persons) or [[variables]] (each "
                "column of the records with its codes or range)"
            )
        return self


def is_household_project(folder: str | Path) -> bool:
    """True when ``folder/synthor.toml`` is valid TOML with a ``[geography]`` table or ``[[controls]]`` entries."""
    raw = read_project_toml(folder)
    return "geography" in raw or "controls" in raw


def _read_spec(root: Path) -> HouseholdProjectSpec:
    path = root / PROJECT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetValidationError(
            [Problem(PROJECT_FILE, f"not found in {root.name}/ (a household project folder has a {PROJECT_FILE})")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetValidationError(
            [Problem(PROJECT_FILE, f"could not be read as UTF-8 text ({type(exc).__name__})")]
        ) from None
    raw, problems = parse_toml(text, PROJECT_FILE)
    if raw is None:
        raise TargetValidationError(problems)
    try:
        return HouseholdProjectSpec.model_validate(raw)
    except ValidationError as exc:
        raise TargetValidationError(pydantic_problems(PROJECT_FILE, exc)) from None


def _check_names(spec: HouseholdProjectSpec) -> list[Problem]:
    """Problems found in ``synthor.toml`` alone: levels, control names and levels, derived columns."""
    problems = []
    levels = spec.geography.levels
    for level in sorted({x for x in levels if levels.count(x) > 1}):
        problems.append(Problem(PROJECT_FILE, f"the level {level!r} is listed twice", column="geography.levels"))
    if spec.geography.seed_level not in levels:
        problems.append(
            Problem(
                PROJECT_FILE,
                f"expected one of the levels {', '.join(levels)}, got {spec.geography.seed_level!r}",
                column="geography.seed_level",
            )
        )
    names: dict[str, int] = {}
    for i, control in enumerate(spec.controls, start=1):
        if control.name in names:
            problems.append(
                Problem(
                    PROJECT_FILE,
                    f"the control name {control.name!r} is used twice (also controls[{names[control.name]}])",
                    column=f"controls[{i}].name",
                )
            )
        names.setdefault(control.name, i)
        if control.level not in levels:
            problems.append(
                Problem(
                    PROJECT_FILE,
                    f"expected one of the geography levels {', '.join(levels)}, got {control.level!r}",
                    column=f"controls[{i}].level",
                )
            )
    if spec.project.total_control not in names:
        problems.append(
            Problem(
                PROJECT_FILE,
                f"expected the name of a control, got {spec.project.total_control!r}",
                column="project.total_control",
            )
        )
    derived: dict[str, int] = {}
    for i, entry in enumerate(spec.derived, start=1):
        if entry.column in derived:
            problems.append(
                Problem(
                    PROJECT_FILE,
                    f"the column {entry.column!r} is derived twice (also derived[{derived[entry.column]}])",
                    column=f"derived[{i}].column",
                )
            )
        derived.setdefault(entry.column, i)
    return problems


def _shown(name: str) -> str:
    """A file name of ``synthor.toml`` as messages show it (``data/seed_households.csv``)."""
    return Path(name).as_posix()


def _derivations(spec: HouseholdProjectSpec, persons: pd.DataFrame, problems: list[Problem]) -> tuple[Derivation, ...]:
    found = []
    for i, entry in enumerate(spec.derived, start=1):
        condition = None
        if entry.how == "count" and entry.expression:  # DerivedSpec: how = "count" always has its expression
            try:
                condition = compile_condition(entry.expression, PERSONS, persons.columns, f"derived {entry.column}")
            except RuleError as exc:
                problems.append(Problem(PROJECT_FILE, str(exc), column=f"derived[{i}].expression"))
                continue
        if entry.how == "first" and entry.source not in persons.columns:
            where = _shown(spec.seed.persons) if spec.seed is not None else "the [[variables]] of unit persons"
            problems.append(
                Problem(
                    PROJECT_FILE, f"expected a column of {where}, got {entry.source!r}", column=f"derived[{i}].source"
                )
            )
            continue
        found.append(Derivation(entry.column, entry.how, condition, entry.source))
    return tuple(found)


def _rules(spec: HouseholdProjectSpec, sample: Sample, problems: list[Problem]) -> tuple[HouseholdRule, ...]:
    """The ``[[rules]]``, each compiled against its sample table's columns (a problem per bad one)."""
    found = []
    for i, entry in enumerate(spec.rules, start=1):
        frame = sample.households if entry.unit == HOUSEHOLDS else sample.persons
        columns = list(frame.columns) + ([MEMBER] if entry.unit == PERSONS else [])
        try:
            condition = compile_condition(entry.expression, entry.unit, columns, entry.name)
        except RuleError as exc:
            problems.append(Problem(PROJECT_FILE, str(exc), column=f"rules[{i}].expression"))
            continue
        found.append(HouseholdRule(entry.name, entry.unit, condition, entry.empty_is_value))
    return tuple(found)


def _control_table(
    path: Path,
    shown: str,
    level: str,
    geography: Geography,
    frames: dict[Path, pd.DataFrame | None],
    problems: list[Problem],
) -> pd.DataFrame | None:
    """The table of a control at ``level``: read once, its zone column checked against the crosswalk."""
    if path not in frames:
        frames[path] = read_csv_table(path, shown, problems)
    frame = frames[path]
    if frame is None:
        return None
    return frame if check_zone_column(frame, level, geography, shown, problems) else None


def _controls(
    spec: HouseholdProjectSpec,
    root: Path,
    geography: Geography,
    sample: Sample,
    problems: list[Problem],
    frames: dict[Path, pd.DataFrame | None],
) -> tuple[list[Control], list[str]]:
    """Every ``[[controls]]`` entry as a :class:`Control` (:func:`~synthor_core.readers.controls.read_control`);
    ``frames`` holds the control tables read so far (each file is read once)."""
    checked: dict[tuple[Path, str], pd.DataFrame | None] = {}
    controls: list[Control] = []
    warnings: list[str] = []
    for i, entry in enumerate(spec.controls, start=1):
        key = f"controls[{i}]"

        def locate(field: str, message: str, key: str = key) -> Problem:
            return Problem(PROJECT_FILE, message, column=f"{key}.{field}")

        path = inside_folder(root, entry.table, PROJECT_FILE, f"{key}.table", problems)
        table = None
        if path is not None:
            shown = _shown(entry.table)
            if (path, entry.level) not in checked:
                checked[(path, entry.level)] = _control_table(path, shown, entry.level, geography, frames, problems)
            frame = checked[(path, entry.level)]
            table = (frame, shown) if frame is not None else None
        written = ControlEntry(
            entry.name, entry.unit, entry.level, entry.importance, entry.column, entry.condition, entry.total_of
        )
        control = read_control(written, table, geography, sample, locate, problems, warnings)
        if control is not None:
            controls.append(control)
    return controls, warnings


def load_household_project(folder: str | Path) -> HouseholdProject:
    """Read a Synthor household project folder (``synthor.toml`` with ``[geography]`` and ``[[controls]]``).

    Parameters
    ----------
    folder : path
        The folder holding ``synthor.toml``; every file it names lies inside it.

    Returns
    -------
    HouseholdProject
        ``controls`` in the order of ``[[controls]]``, each with its condition compiled and ``totals`` (float64,
        shape (n zones of its level,), zones missing from its table 0); ``derived`` from ``[[derived]]``; ``rules``
        from ``[[rules]]``; ``output`` from ``[output]`` (None when absent; when given, PopulationSim's files are
        written beside ``households.csv``); ``source`` ``"synthor"``.

    Raises
    ------
    TargetValidationError
        With every problem found, each naming the file, row and column (in ``synthor.toml``: the key, such as
        ``controls[3].expression``): ``synthor.toml`` missing, not TOML, a key unknown or missing, a unit other
        than households or persons; a file path outside the folder (``../x.csv``, absolute) or not found; a level
        listed twice, an unknown level or seed level; a control name used twice; a control expression outside
        the whitelist (naming the control and the construct); a control column missing from its table; a zone of
        a control table missing from the crosswalk or listed twice; a crosswalk zone with two parents; a person
        whose household is not in the seed; weights or totals that are not numbers >= 0; a ``[[derived]]``
        entry whose expression or source does not fit the persons file.
    """
    root = Path(folder)
    spec = _read_spec(root)
    problems = _check_names(spec)
    if spec.seed is None:
        return _declared_project(root, spec, problems)
    paths: dict[str, Path] = {}
    for key, name in (
        ("geography.file", spec.geography.file),
        ("seed.households", spec.seed.households),
        ("seed.persons", spec.seed.persons),
    ):
        path = inside_folder(root, name, PROJECT_FILE, key, problems)
        if path is not None:
            paths[key] = path
    if problems:
        raise TargetValidationError(problems)
    crosswalk, households, persons = (
        read_csv_table(paths[key], _shown(name), problems)
        for key, name in (
            ("geography.file", spec.geography.file),
            ("seed.households", spec.seed.households),
            ("seed.persons", spec.seed.persons),
        )
    )
    if problems or crosswalk is None or households is None or persons is None:
        raise TargetValidationError(problems)
    households, persons = households.copy(), persons.copy()  # one block per dtype (as populationsim's tables)
    geography, geo_problems = build_geography(crosswalk, list(spec.geography.levels), _shown(spec.geography.file))
    if geo_problems or geography is None:
        raise TargetValidationError(geo_problems)
    number = spec.seed.person_number
    if number is not None and number not in persons.columns:
        raise TargetValidationError(
            [
                Problem(
                    _shown(spec.seed.persons),
                    f"expected a column {number!r} numbering the members (seed.person_number)",
                    row=1,
                    column=number,
                )
            ]
        )
    tables: dict[str, tuple[pd.DataFrame, str, dict]] = {
        HOUSEHOLDS: (households, _shown(spec.seed.households), {}),
        PERSONS: (persons, _shown(spec.seed.persons), {}),
    }
    reserved = {"household_id_col": spec.seed.household_id, "household_weight_col": spec.seed.weight}
    sample, sample_problems = seed_sample_from_tables(tables, reserved, spec.geography.seed_level, geography)
    if sample_problems or sample is None:
        raise TargetValidationError(sample_problems)
    if number is not None and number != sample.person_number:
        ordered = sample.persons.sort_values(["_household", number], kind="stable").reset_index(drop=True)
        sample = Sample(sample.households, ordered, sample.household_id, number, sample.weight, sample.seed_level)
    return _assemble(root, spec, geography, sample, problems)


def _with_declared(project: HouseholdProject, spec: HouseholdProjectSpec) -> HouseholdProject:
    """The project with its ``[[variables]]`` domains in the codebook (replacing those read from the sample)."""
    if not spec.variables:
        return project
    codebook = dict(project.codebook)
    codebook.update({(v.unit, v.name): v.domain() for v in spec.variables})
    return replace(project, codebook=widen_for_controls(codebook, project.controls))


def _declared_project(root: Path, spec: HouseholdProjectSpec, problems: list[Problem]) -> HouseholdProject:
    """A project without a sample: its records' columns are the ``[[variables]]``; only the priors that build
    households (maxent, the LLM) serve it. The sample is empty (no record), with those columns."""
    path = inside_folder(root, spec.geography.file, PROJECT_FILE, "geography.file", problems)
    if problems or path is None:
        raise TargetValidationError(problems)
    crosswalk = read_csv_table(path, _shown(spec.geography.file), problems)
    if problems or crosswalk is None:
        raise TargetValidationError(problems)
    geography, geo_problems = build_geography(crosswalk, list(spec.geography.levels), _shown(spec.geography.file))
    if geo_problems or geography is None:
        raise TargetValidationError(geo_problems)
    level = spec.geography.seed_level  # one of the levels (_check_names)
    names = {unit: [v.name for v in spec.variables if v.unit == unit] for unit in (HOUSEHOLDS, PERSONS)}
    households = pd.DataFrame(
        {c: pd.Series(dtype=np.float64) for c in [DECLARED_ID, level, DECLARED_WEIGHT, *names[HOUSEHOLDS]]}
    )
    persons = pd.DataFrame(
        {c: pd.Series(dtype=np.float64) for c in [DECLARED_ID, MEMBER, *names[PERSONS]]}
        | {"_household": pd.Series(dtype=np.int64)}
    )
    sample = Sample(households, persons, DECLARED_ID, MEMBER, DECLARED_WEIGHT, level)
    return _assemble(root, spec, geography, sample, problems)


def _assemble(
    root: Path, spec: HouseholdProjectSpec, geography: Geography, sample: Sample, problems: list[Problem]
) -> HouseholdProject:
    """The project from its geography and sample (read, or empty with the declared columns): derivations, rules,
    controls and output read against the sample's columns, then its codebook (the sample's, then the declared
    ``[[variables]]``). Raises TargetValidationError with every problem found so far."""
    frames: dict[Path, pd.DataFrame | None] = {}  # each control table read once, here and by _controls
    level_tables = []
    for level, table in dict.fromkeys((c.level, c.table) for c in spec.controls):
        path = inside_folder(root, table, PROJECT_FILE, "controls.table", [])  # its problems: named by _controls
        if path is None or not path.is_file():
            continue  # named by _controls
        if path not in frames:
            frames[path] = read_csv_table(path, _shown(table), problems)
        if frames[path] is not None:
            level_tables.append((level, frames[path], _shown(table)))
    geography, sample, left_out, zone_problems = keep_zones_with_controls(geography, sample, level_tables)
    problems += zone_problems
    derived = _derivations(spec, sample.persons, problems)
    rules = _rules(spec, sample, problems)
    controls, warnings = _controls(spec, root, geography, sample, problems, frames)
    if spec.project.repop is not None:  # the zones the repop controls list are the project's
        repop, note = repop_problems(
            controls,
            geography,
            spec.project.repop,
            lambda message: Problem(PROJECT_FILE, message, column="controls.level"),
        )
        problems += repop
        left_out = [note]
    warnings = left_out + warnings
    problems += total_control_problems(
        controls,
        spec.project.total_control,
        geography.lowest,
        lambda message: Problem(PROJECT_FILE, message, column="project.total_control"),
    )
    if problems:
        raise TargetValidationError(problems)
    tables_out = (
        output_tables(
            spec.output_tables.model_dump(),
            sample.seed_level,
            geography,
            controls,
            PROJECT_FILE,
            "output_tables",
            problems,
            warnings,
        )
        if spec.output_tables is not None
        else None
    )
    output = (
        output_files(spec.output.model_dump(exclude_none=True), PROJECT_FILE, "output", problems)
        if spec.output is not None
        else None
    )
    if problems:
        raise TargetValidationError(problems)
    shapes = _shapes(spec, root, geography, problems)
    if problems:
        raise TargetValidationError(problems)
    project = HouseholdProject(
        name=spec.project.name,
        geography=geography,
        sample=sample,
        controls=controls,
        total_control=spec.project.total_control,
        max_expansion_factor=spec.project.max_expansion_factor,
        min_expansion_factor=spec.project.min_expansion_factor,
        absolute_upper_bound=spec.project.absolute_upper_bound,
        absolute_lower_bound=spec.project.absolute_lower_bound,
        survey_weighting=spec.project.survey_weighting,
        output_tables=tables_out,
        repop=spec.project.repop,
        output=output,
        source="synthor",
        warnings=warnings,
        derived=derived,
        rules=rules,
        root=root,
        shapes=shapes,
    )
    return _with_declared(with_codebook(project, mine=False), spec)


def _shapes(spec: HouseholdProjectSpec, root: Path, geography: Geography, problems: list[Problem]):
    """``[geography] shapes``: the zone polygons (:func:`~synthor_core.geography.read_zone_shapes`), or None."""
    section = spec.geography
    if section.shapes is None:
        return None
    level = section.shapes_level or geography.lowest
    if level not in geography.levels:
        problems.append(
            Problem(
                PROJECT_FILE,
                f"expected one of the geography levels {', '.join(geography.levels)}, got {level!r}",
                column="geography.shapes_level",
            )
        )
        return None
    path = inside_folder(root, section.shapes, PROJECT_FILE, "geography.shapes", problems)
    if path is None:
        return None
    if not path.is_file():
        problems.append(Problem(_shown(section.shapes), "file not found"))
        return None
    shapes, found = read_zone_shapes(
        path.read_bytes(), level, geography.zones(level), section.shapes_id or level, _shown(section.shapes)
    )
    problems += found
    return shapes
