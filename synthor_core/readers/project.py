"""Synthor person projects: a folder with ``synthor.toml`` (population, variables, tables) and the table files it
names, read, validated and harmonized into a :class:`~synthor_core.targets.model.Project`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from ..errors import Problem, RuleError, TargetValidationError
from ..expressions import compile_rule
from ..geography import ZoneShapes, flag_rows, read_zone_shapes
from ..schema import CategoricalVariable, Schema
from ..targets.model import PROJECT_FILE, NumericControl, Project, ProjectSpec, ZonesSpec
from ..targets.tables import (
    harmonize,
    inside_folder,
    pydantic_problems,
    read_table,
    read_table_bytes,
    size_problem,
)
from ..toml_files import parse_toml
from .trips import read_trips


def load_project(path: str | Path) -> Project:
    """Read, validate and harmonize a project folder.

    Parameters
    ----------
    path : str or Path
        The folder holding ``synthor.toml`` (or the ``synthor.toml`` file itself).

    Returns
    -------
    Project

    Raises
    ------
    TargetValidationError
        With every problem found, each naming the file, row and column.
    """
    project, problems = _load(Path(path))
    if problems or project is None:
        raise TargetValidationError(problems)
    return project


def validate_project(path: str | Path) -> list[Problem]:
    """Every problem of a project folder (empty list when it is valid); never raises for bad input."""
    return _load(Path(path))[1]


def parse_project_text(text: str, where: str = PROJECT_FILE) -> tuple[ProjectSpec | None, Schema | None, list[Problem]]:
    """Parse and check the text of a ``synthor.toml``: (spec, schema, problems)."""
    raw, problems = parse_toml(text, where)
    if raw is None:
        return None, None, problems
    try:
        spec = ProjectSpec.model_validate(raw)
    except ValidationError as exc:
        return None, None, pydantic_problems(where, exc)
    try:
        schema = Schema(spec.variables)
    except ValueError as exc:
        return None, None, [Problem(where, str(exc), column="variables")]
    names = [t.name for t in spec.tables]
    problems = [
        Problem(where, f'table name "{n}" is used twice', column="tables")
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    return spec, schema, problems


def _load(path: Path) -> tuple[Project | None, list[Problem]]:
    toml_path = path if path.is_file() else path / PROJECT_FILE
    root = toml_path.parent
    if not toml_path.is_file():
        return None, [
            Problem(
                PROJECT_FILE,
                "not found: a project folder needs a synthor.toml at its top (or in one folder inside the zip)",
            )
        ]
    raw = toml_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            Problem(
                PROJECT_FILE,
                f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x}",
                row=raw[: exc.start].count(b"\n") + 1,
            )
        ]
    spec, schema, problems = parse_project_text(text)
    if spec is None or schema is None:
        return None, problems
    if spec.zones is not None:
        schema = _with_zones(spec, schema, root, problems)
        if schema is None:
            return None, problems
    tables, numeric = [], []
    for tspec in spec.tables:
        table, table_problems = read_table(tspec, schema, root, size=spec.population.size)
        problems += table_problems
        if isinstance(table, NumericControl):
            numeric.append(table)
        elif table is not None:
            tables.append(table)
    if not problems and not tables:
        problems.append(
            Problem(
                PROJECT_FILE, "every table is a numeric control (total_of / mean_of): add at least one table of counts"
            )
        )
    small = size_problem(spec.population.size, tables) if not problems else None
    if small:
        problems.append(Problem(PROJECT_FILE, small, column="population.size"))
    if problems:
        return None, problems
    trips = None
    if spec.trips is not None:
        trips, trip_problems = read_trips(
            spec.trips, schema, spec.zones.level if spec.zones else None, spec.zones.file if spec.zones else None, root
        )
        if trip_problems:
            return None, trip_problems
    shapes = None
    if spec.zones is not None and spec.zones.shapes is not None:
        shapes = _zone_shapes(spec.zones, schema, root, problems)
    rules = []
    for i, entry in enumerate(spec.rules, start=1):
        try:
            rules.append(compile_rule(entry.name, entry.condition, schema))
        except RuleError as exc:
            problems.append(Problem(PROJECT_FILE, str(exc), column=f"rules[{i}].condition"))
    if problems:
        return None, problems
    tables, warnings = harmonize(tables, spec.population.size, schema)
    return Project(
        spec.population.size,
        spec.population.description,
        schema,
        tuple(tables),
        tuple(warnings),
        spec,
        root,
        tuple(numeric),
        spec.zones.level if spec.zones is not None else None,
        trips,
        tuple(rules),
        shapes,
    ), []


def _zone_shapes(zones: ZonesSpec, schema: Schema, root: Path, problems: list[Problem]) -> ZoneShapes | None:
    """``[zones] shapes``: the zone polygons (:func:`~synthor_core.geography.read_zone_shapes`), or None."""
    assert zones.shapes is not None  # called when the project names its shapes
    path = inside_folder(root, zones.shapes, PROJECT_FILE, "zones.shapes", problems)
    if path is None:
        return None
    if not path.is_file():
        problems.append(Problem(zones.shapes, "file not found"))
        return None
    ids = pd.Index(schema[zones.level].categories)  # type: ignore[union-attr]
    shapes, found = read_zone_shapes(path.read_bytes(), zones.level, ids, zones.shapes_id or zones.level, zones.shapes)
    problems += found
    return shapes


def _with_zones(spec: ProjectSpec, schema: Schema, root: Path, problems: list[Problem]) -> Schema | None:
    """The schema with the zone level as one more categorical variable (categories: the zone ids of the zones file,
    in its order), or None after adding the problems (file outside the folder or unreadable, the level's column
    missing, a zone listed twice or empty, a variable of the same name)."""
    zones = spec.zones
    assert zones is not None  # called for projects with [zones] only
    if zones.level in schema:
        problems.append(
            Problem(PROJECT_FILE, f"the zone level {zones.level!r} is also a variable's name", column="zones.level")
        )
        return None
    path = inside_folder(root, zones.file, PROJECT_FILE, "zones.file", problems)
    if path is None:
        return None
    frame, _, read_problems = read_table_bytes(path.read_bytes(), zones.file) if path.is_file() else (None, 2, [])
    if frame is None:
        problems += read_problems or [Problem(zones.file, "file not found")]
        return None
    if zones.level not in frame.columns:
        problems.append(Problem(zones.file, f"expected a column {zones.level!r} with the zone ids", row=1))
        return None
    ids = frame[zones.level].astype(str).str.strip()
    flag_rows(
        problems,
        np.flatnonzero(ids.duplicated().to_numpy()),
        zones.file,
        zones.level,
        lambda i: f"the zone {ids.iloc[i]!r} is listed twice",
    )
    flag_rows(
        problems,
        np.flatnonzero((ids == "").to_numpy() | frame[zones.level].isna().to_numpy()),
        zones.file,
        zones.level,
        lambda i: "expected a zone id, got an empty cell",
    )
    if problems:
        return None
    variable = CategoricalVariable(
        name=zones.level, categories=tuple(ids), description=zones.description or f"the person's zone ({zones.level})"
    )
    try:
        return Schema([*schema, variable])
    except ValueError as exc:
        problems.append(Problem(zones.file, str(exc), column=zones.level))
        return None


def read_project_toml(folder: str | Path) -> dict:
    """The raw content of ``folder/synthor.toml`` (an empty dict when missing or not valid TOML)."""
    path = Path(folder) / PROJECT_FILE
    try:
        raw, _ = parse_toml(path.read_text(encoding="utf-8"), PROJECT_FILE)
    except (OSError, UnicodeDecodeError):
        return {}
    return raw or {}


def write_project_toml(folder: str | Path, raw: dict) -> None:
    """Write a raw project dict as ``folder/synthor.toml`` (None values and empty bins are left out)."""
    import tomli_w

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None and not (k == "bins" and not v)}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    text = "# Synthor project (written by the Synthor app)\n" + tomli_w.dumps(clean(raw))
    (Path(folder) / PROJECT_FILE).write_text(text, encoding="utf-8")
