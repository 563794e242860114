"""Controls per zone, read the same way from a PopulationSim ``controls.csv`` and from a Synthor household project's
``[[controls]]`` (DESIGN §9, §12): the condition compiled once against the sample's table, the totals of every zone
of the control's level read from its control table, and PopulationSim's output settings checked.

Each problem names where the control was written (``configs/controls.csv row 3, column "expression"``, or
``synthor.toml column "controls[3].expression"``) or the control table's file, row and column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import defaults
from ..errors import Problem, RuleError
from ..expressions import compile_condition
from ..geography import Geography, flag_rows, shown_value
from ..targets.model import Control, OutputFiles, OutputTables
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
    frame: pd.DataFrame,
    column: str,
    shown: str,
    problems: list[Problem],
    minimum: float = 0.0,
    first_row: int = 2,
    maximum: float = defaults.MAX_POPULATION,
) -> np.ndarray | None:
    """``frame[column]`` as float64, shape (len(frame),), or None after adding a problem (file ``shown``, row,
    column) for each of the first cells that is not a number from ``minimum`` to ``maximum`` (by default the
    largest population Synthor builds: a larger total is a typo, and would overflow the counts)."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < minimum) | (values > maximum))
    flag_rows(
        problems,
        bad,
        shown,
        column,
        lambda i: f"expected a number from {minimum:g} to {maximum:,.0f}, got {shown_value(frame[column].iloc[i])}",
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


MAX_ZONES_SHOWN = 5  # zones named in one message


def keep_zones_with_controls(
    geography: Geography, sample: Sample, tables: list[tuple[str, pd.DataFrame, str]]
) -> tuple[Geography, Sample, list[str], list[Problem]]:
    """Leave out the zones a control table has no row for, as PopulationSim does (``build_crosswalk_table`` and
    ``setup_data_structures``: the crosswalk keeps the zones of every level's control table), saying so: a zone
    without its row would otherwise get controls of 0 without a word.

    Parameters
    ----------
    geography : Geography
    sample : Sample
        Households of a seed zone left out go too (PopulationSim's ``filter_households``).
    tables : list of (level, control table, file shown)

    Returns
    -------
    (geography, sample, warnings, problems): a problem when no zone is left.
    """
    crosswalk = geography.crosswalk
    keep = np.ones(len(crosswalk), dtype=bool)
    warnings = []
    for level, frame, shown in sorted(
        tables, key=lambda t: geography.levels.index(t[0]) if t[0] in geography.levels else 0
    ):
        if level not in frame.columns or level not in geography.levels:
            continue  # named by check_zone_column
        present = crosswalk[level].isin(frame[level]).to_numpy()
        absent = pd.unique(crosswalk.loc[~present, level])
        if len(absent):
            warnings.append(
                f"{len(absent):,} {level} zone(s) of the crosswalk have no row in {shown} ("
                + ", ".join(shown_value(z) for z in absent[:MAX_ZONES_SHOWN])
                + (" ..." if len(absent) > MAX_ZONES_SHOWN else "")
                + "): left out, no household is placed there, as PopulationSim does (give the zone a row of 0s to "
                "keep it)"
            )
        keep &= present
    if keep.all():
        return geography, sample, warnings, []
    if not keep.any():
        return geography, sample, warnings, [Problem(tables[0][2], "no zone of the crosswalk has a row here")]
    kept = Geography(geography.levels, crosswalk[keep].reset_index(drop=True))
    households = sample.households
    in_zone = households[sample.seed_level].isin(kept.zones(sample.seed_level)).to_numpy()
    if not in_zone.all():
        row_of = np.full(len(households), -1, dtype=np.int64)
        row_of[in_zone] = np.arange(int(in_zone.sum()))
        persons = sample.persons[in_zone[sample.persons["_household"].to_numpy()]].copy()
        persons["_household"] = row_of[persons["_household"].to_numpy()]
        sample = replace(
            sample, households=households[in_zone].reset_index(drop=True), persons=persons.reset_index(drop=True)
        )
    return kept, sample, warnings, []


def total_control_problems(controls, total: str, lowest: str, locate: Callable[[str], Problem]) -> list[Problem]:
    """Problems of the total control (PopulationSim's ``total_hh_control``): it counts households (not persons,
    not a column's total) at the lowest geography level, where households are placed; given higher, every zone
    would get its parent's total. ``locate(message)`` places each problem where the total control is named."""
    found = [c for c in controls if c.name == total]
    if not found:
        return []
    control = found[0]
    problems = []
    if control.unit != HOUSEHOLDS or control.total_of is not None:
        what = f"the total of {control.total_of}" if control.total_of else control.unit
        problems.append(locate(f'the total control "{total}" counts {what}; expected a control counting households'))
    if control.level != lowest:
        problems.append(
            locate(
                f'the total control "{total}" is given at {control.level}; expected the lowest geography level '
                f"{lowest} (households are placed per {lowest} zone)"
            )
        )
    return problems


def repop_problems(
    controls, geography: Geography, mode: str, locate: Callable[[str], Problem]
) -> tuple[list[Problem], str]:
    """Repop mode's check and note (PopulationSim's ``repop_balancing`` balances the lowest geography's zones only):
    a problem per control at another level (``locate(message)`` places it), and the warning naming the zones
    repopulated (the project's: those the repop controls list) with ``mode``."""
    problems = [
        locate(
            f"repop balances the lowest geography's zones only ({geography.lowest}, as PopulationSim's "
            f"repop_balancing): the control {c.name!r} is at {c.level}"
        )
        for c in controls
        if c.level != geography.lowest
    ]
    note = (
        f"repop ({mode}): {geography.n_zones:,} {geography.lowest} zone(s) repopulated on top of the base run; "
        f"the others keep its households"
    )
    return problems, note


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


POPULATIONSIM_TABLES = ("summary_hh_weights", "expanded_household_ids", "incidence_table")  # besides the per-level


def output_tables(
    spec: object,
    seed_level: str,
    geography: Geography,
    controls,
    shown: str,
    key: str,
    problems: list[Problem],
    warnings: list[str],
) -> OutputTables | None:
    """PopulationSim's ``output_tables`` (``action`` include or skip, ``tables`` as names or ``{tablename: ...}``,
    ``prefix``) as :class:`~synthor_core.targets.model.OutputTables`, or None when not given.

    The tables Synthor writes: ``<seed_level>_weights``, ``summary_hh_weights``, ``expanded_household_ids``,
    ``incidence_table`` and ``summary_<LEVEL>`` for each level of ``geography`` some of ``controls`` are at. A listed
    table outside these (PopulationSim's pipeline tables) is named in ``warnings``; a bad action, table entry or prefix
    is a problem (``shown``, ``key``).
    """
    if spec is None:
        return None
    if not isinstance(spec, dict):
        problems.append(Problem(shown, "expected a mapping with action and tables", column=key))
        return None
    action = spec.get("action", "include")
    if action not in ("include", "skip"):
        problems.append(Problem(shown, f"expected action include or skip, got {str(action)[:40]!r}", column=key))
        return None
    listed = spec.get("tables")
    if listed is not None and not isinstance(listed, list):
        problems.append(Problem(shown, "expected tables: a list of table names", column=f"{key}.tables"))
        return None
    names = []
    for i, entry in enumerate(listed or [], start=1):
        name = entry.get("tablename") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or not name:
            problems.append(Problem(shown, "expected a table name", column=f"{key}.tables[{i}]"))
            continue
        names.append(name)
    prefix = spec.get("prefix", "final_")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_-]{0,40}", prefix):
        problems.append(
            Problem(shown, "expected a prefix of at most 40 letters, digits, _ or -", column=f"{key}.prefix")
        )
        return None
    levels = [level for level in geography.levels if any(c.level == level for c in controls)]
    known = [f"{seed_level}_weights", *POPULATIONSIM_TABLES, *(f"summary_{level}" for level in levels)]
    if action == "include":
        chosen = known if listed is None else [n for n in dict.fromkeys(names) if n in known]
        others = [n for n in names if n not in known]
        if others:
            warnings.append(
                f"{shown}: {key}: {', '.join(n[:64] for n in others[:10])}: PopulationSim's own pipeline tables, "
                f"which Synthor does not keep: not written (Synthor writes {', '.join(known)})"
            )
    else:
        chosen = [n for n in known if n not in names]
    if spec.get("h5_store"):
        warnings.append(f"{shown}: {key}.h5_store: Synthor writes CSV files, not an HDF5 store")
    return OutputTables(tuple(chosen), prefix)
