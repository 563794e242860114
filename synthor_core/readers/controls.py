"""Controls per zone, read the same way from a PopulationSim ``controls.csv`` and from a Synthor household project's
``[[controls]]`` (DESIGN §9, §12): the condition compiled once against the sample's table, the totals of every zone
of the control's level read from its control table, and PopulationSim's output settings checked.

Each problem names where the control was written (``configs/controls.csv row 3, column "expression"``, or
``synthor.toml column "controls[3].expression"``) or the control table's file, row and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import Problem, RuleError
from ..expressions import compile_condition
from ..geography import Geography, flag_rows, shown_value
from ..targets.model import Control, OutputFiles
from ..units import HOUSEHOLDS, Sample

RESERVED_OUTPUTS = ("households.csv", "persons.csv", "report.json")  # Synthor's own output files


@dataclass(frozen=True)
class ControlEntry:
    """One control as written: its name, unit, level, importance, the totals' column and the condition.

    ``total_of`` (Synthor projects only) makes it a numeric control: the total of that column over the units
    meeting the condition.
    """

    name: str
    unit: str
    level: str
    importance: float
    column: str
    expression: str
    total_of: str | None = None


Locate = Callable[[str, str], Problem]  # (key of the entry, message) -> the problem, located where it was written


def number_column(
    frame: pd.DataFrame, column: str, shown: str, problems: list[Problem], minimum: float = 0.0, first_row: int = 2
) -> np.ndarray | None:
    """``frame[column]`` as float64, shape (len(frame),), or None after adding a problem (file ``shown``, row,
    column) for each of the first cells that is not a number >= ``minimum``."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < minimum))
    flag_rows(
        problems,
        bad,
        shown,
        column,
        lambda i: f"expected a number >= {minimum:g}, got {shown_value(frame[column].iloc[i])}",
        first_row,
    )
    return None if bad.size else values


def check_zone_column(
    frame: pd.DataFrame, level: str, geography: Geography, shown: str, problems: list[Problem]
) -> bool:
    """Whether the control table ``frame`` has a column ``level`` naming zones of the crosswalk, each once;
    otherwise False after adding problems (file ``shown``, row, column): the column missing, the first zones not
    in the crosswalk, the first zones listed twice."""
    if level not in frame.columns:
        problems.append(Problem(shown, f"expected a column {level!r} with the zone ids", row=1, column=level))
        return False
    values = frame[level]
    known = values.isin(geography.zones(level)).to_numpy()
    flag_rows(
        problems,
        np.flatnonzero(~known),
        shown,
        level,
        lambda i: f"the {level} zone {shown_value(values.iloc[i])} is not in the crosswalk",
    )
    duplicated = values.duplicated().to_numpy()
    flag_rows(
        problems,
        np.flatnonzero(duplicated),
        shown,
        level,
        lambda i: f"the {level} zone {shown_value(values.iloc[i])} is listed twice",
    )
    return bool(known.all() and not duplicated.any())


def read_control(
    entry: ControlEntry,
    table: tuple[pd.DataFrame, str] | None,
    geography: Geography,
    sample: Sample,
    locate: Locate,
    problems: list[Problem],
    warnings: list[str],
) -> Control | None:
    """One control: its condition compiled against the sample's ``unit`` table, its totals per zone of its level.

    Parameters
    ----------
    entry : ControlEntry
    table : (DataFrame, file shown) or None
        The level's control table, its zone column already checked (:func:`check_zone_column`); None when it could
        not be read (its problems are listed already).
    geography : Geography
    sample : Sample
        Its columns are the columns a condition may read; a control no sample household meets is warned about.
    locate : callable (key, message) -> Problem
        Where the entry was written; keys ``expression``, ``column``, ``total_of``.
    problems, warnings : list
        Appended to.

    Returns
    -------
    Control, or None after adding its problems.
    """
    frame = sample.households if entry.unit == HOUSEHOLDS else sample.persons
    if entry.total_of is not None and entry.total_of not in frame.columns:
        problems.append(locate("total_of", f"expected a column of the {entry.unit} sample, got {entry.total_of!r}"))
        return None
    try:
        condition = compile_condition(entry.expression, entry.unit, frame.columns, entry.name)
    except RuleError as exc:
        problems.append(locate("expression", str(exc)))
        return None
    if table is None:
        return None
    totals_frame, table_file = table
    if entry.column not in totals_frame.columns:
        problems.append(
            locate(
                "column",
                f"the control column {entry.column!r} is not in {table_file} (columns: "
                f"{', '.join(c for c in totals_frame.columns if c != entry.level)})",
            )
        )
        return None
    values = number_column(totals_frame, entry.column, table_file, problems)
    if values is None:
        return None
    zones = geography.zones(entry.level)
    totals = np.zeros(len(zones))
    totals[zones.get_indexer(totals_frame[entry.level])] = values
    reached = sample.incidence(entry.unit, condition(frame)) > 0
    has_sample = len(sample.households) > 0  # a project without a sample: its priors build the households
    if has_sample and not (reached & (sample.households[sample.weight].to_numpy() > 0)).any() and totals.sum() > 0:
        warnings.append(
            f'control "{entry.name}": no seed household meets "{entry.expression}", so its total '
            f"{totals.sum():,.0f} cannot be reached"
        )
    every_household = entry.unit == HOUSEHOLDS and entry.total_of is None and condition.columns == (sample.weight,)
    return Control(
        entry.name,
        entry.unit,
        entry.level,
        float(entry.importance),
        entry.column,
        condition,
        totals,
        entry.total_of,
        every_household,
    )


def output_files(output: object, shown: str, key: str, problems: list[Problem]) -> OutputFiles | None:
    """PopulationSim's ``output_synthetic_population`` (``household_id``, ``households``/``persons`` each with
    ``filename`` and ``columns``) as :class:`OutputFiles`, or None when not given.

    Each file name must be a plain ``name.csv`` (no folder, not one of Synthor's own outputs nor a ``summary_``
    file), since outputs are written beside each other; a problem (``shown``, ``key``) is added per bad name.
    """
    if not isinstance(output, dict) or not output:
        return None
    names, columns = {}, {}
    for unit in ("households", "persons"):
        spec = output.get(unit)
        spec = spec if isinstance(spec, dict) else {}
        columns[unit] = tuple(str(c) for c in spec.get("columns") or [])
        name = spec.get("filename")
        if name is None:
            continue
        text = str(name)
        if (
            not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.csv", text)
            or text.lower() in RESERVED_OUTPUTS
            or text.lower().startswith("summary_")
        ):  # case-blind: Households.csv is households.csv elsewhere
            problems.append(
                Problem(
                    shown,
                    f"expected a plain file name ending in .csv, not "
                    f"{', '.join(RESERVED_OUTPUTS)} nor summary_*.csv, got {text[:80]!r}",
                    column=f"{key}.{unit}.filename",
                )
            )
        names[unit] = text
    defaults = OutputFiles()
    return OutputFiles(
        household_id=str(output.get("household_id") or defaults.household_id),
        households_file=names.get("households", defaults.households_file),
        persons_file=names.get("persons", defaults.persons_file),
        household_columns=columns["households"],
        person_columns=columns["persons"],
    )
