"""PopulationSim working directories, read as they are (DESIGN §12).

A PopulationSim project is ``configs/settings.yaml`` (geographies, seed geography, input tables, reserved
column names, output specification), ``configs/controls.csv`` (one control per row: ``target, geography,
seed_table, importance, control_field, expression``) and the files of ``data/`` (seed households and persons,
the geography crosswalk, one control table per geography level, lines starting with ``#`` being comments).

Control expressions are compiled once by :func:`synthor_core.expressions.compile_condition` (a whitelist),
never evaluated. File names from the settings must stay inside the data folder. Every problem is collected and
raised once (:class:`TargetValidationError`) with its file, row and column.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..codebook import mine_rules, sample_codebook, widen_for_controls
from ..errors import Problem, TargetValidationError
from ..geography import Geography, build_geography, flag_rows, shown_value
from ..targets.model import Control, HouseholdProject
from ..targets.tables import MAX_TABLE_COLUMNS, inside_folder
from ..units import HOUSEHOLDS, PERSONS, Sample, infer_derivations
from .controls import (
    ControlEntry,
    check_zone_column,
    keep_zones_with_controls,
    number_column,
    output_files,
    output_tables,
    read_control,
    repop_problems,
    total_control_problems,
)

SETTINGS_FILE = "settings.yaml"
MAX_SETTINGS_BYTES = 1_000_000  # a settings.yaml larger than this is refused
CONTROL_COLUMNS = ("target", "geography", "seed_table", "importance", "control_field", "expression")


def is_populationsim_project(folder: str | Path, configs: str = "configs") -> bool:
    """True when ``folder/configs/settings.yaml`` exists (a PopulationSim working directory)."""
    return (Path(folder) / configs / SETTINGS_FILE).is_file()


def read_settings(configs: Path, shown: str) -> dict:
    """PopulationSim's ``settings.yaml`` in ``configs`` as a mapping (``yaml.safe_load``; at most
    ``MAX_SETTINGS_BYTES``). Raises TargetValidationError naming ``shown`` when it is missing, too large, not YAML
    or not a mapping."""
    import yaml

    path = configs / SETTINGS_FILE
    try:
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            raise TargetValidationError([Problem(shown, f"larger than {MAX_SETTINGS_BYTES:,} bytes")])
        settings = _load_yaml(path.read_text(encoding="utf-8"), shown)
    except RecursionError:
        raise TargetValidationError([Problem(shown, "nested too deeply to be read as settings")]) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TargetValidationError(
            [
                Problem(
                    shown,
                    f"could not be read as YAML ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                )
            ]
        ) from None
    if not isinstance(settings, dict):
        raise TargetValidationError([Problem(shown, "expected a mapping of settings")])
    return settings


# Every settings.yaml key PopulationSim documents (docs/application_configuration.rst, v0.10.0), with what Synthor
# does with it. HONOURED keys are read and act as PopulationSim's; the others are named in the project's warnings
# (report.json, the CLI) when present, never ignored without a word (issue 22). The README's table lists the same.
REPOP_SETTINGS = {  # honoured by run --base PREVIOUS_OUT (repop mode); a base run names them in a warning
    "repop": "repop mode's steps: expand_households.repop;replace or ;append (run --base PREVIOUS_OUT)",
    "repop_control_file_name": "the controls of the zones to repopulate (run --base PREVIOUS_OUT)",
    "repop_input_table_list": "the input tables of repop mode, replacing those of the same name (run --base)",
}
HONOURED_SETTINGS = {
    "geographies": "the geography levels, top to lowest",
    "seed_geography": "the level of the seed sample's zone",
    "data_dir": "the folder of the input tables (--data overrides it)",
    "input_table_list": "the input tables: tablename, filename, index_col, rename_columns, drop_columns",
    "household_weight_col": "the seed sample's weight column",
    "household_id_col": "the seed households' id column",
    "total_hh_control": "the control of households per zone (at the lowest level)",
    "control_file_name": "the control specification (configs/controls.csv by default)",
    "max_expansion_factor": "the upper bound of a seed household's weight, times its sample weight",
    "min_expansion_factor": "the lower bound of a seed household's weight, times its sample weight",
    "absolute_upper_bound": "the upper bound of a seed household's weight in households (survey weighting)",
    "absolute_lower_bound": "the lower bound of a seed household's weight in households (survey weighting)",
    "NO_INTEGERIZATION_EVER": "survey weighting with the seed prior: a float weight per seed household in each "
    "zone (households.csv with balanced_weight, <SEED>_weights in output_tables), no integerization",
    **REPOP_SETTINGS,
    "output_tables": "PopulationSim's tables <SEED>_weights, summary_hh_weights, expanded_household_ids, "
    "incidence_table and summary_<GEOGRAPHY>, under its prefix (final_ by default)",
    "output_synthetic_population": "the files, id column and columns of synthetic_households.csv / _persons.csv",
}
SETTINGS_NOT_NEEDED = {  # how PopulationSim computes; Synthor's own way gives what they ask for
    "INTEGERIZE_WITH_BACKSTOPPED_CONTROLS": "Synthor balances every level at once and integerizes per zone",
    "SUB_BALANCE_WITH_FLOAT_SEED_WEIGHTS": "Synthor balances every level at once",
    "GROUP_BY_INCIDENCE_SIGNATURE": "Synthor groups households by their incidence (a weight per household in "
    "survey weighting)",
    "USE_SIMUL_INTEGERIZER": "Synthor integerizes with its own controlled rounding",
    "USE_CVXPY": "Synthor uses no external solver",
    "USE_NUMBA": "Synthor uses NumPy",
    "NUMBA_PRECISION": "Synthor computes in float64",
    "INTEGERIZER_TIMEOUT": "Synthor's integerization has no solver to time out",
    "MAX_BALANCE_ITERATIONS_SIMULTANEOUS": "Synthor's sweeps are set by run --max-sweeps",
    "MAX_BALANCE_ITERATIONS_SEQUENTIAL": "Synthor's sweeps are set by run --max-sweeps",
    "trace_geography": "Synthor writes every zone's fit to zone_fit.csv",
    "models": "Synthor runs its own steps",
    "run_list": "Synthor runs its own steps (a repop step's replace or append is read by run --base)",
    "resume_after": "Synthor runs from the start; its runs keep checkpoints instead",
    "inherit_settings": "Synthor reads this settings.yaml alone",
    "multiprocess": "Synthor's processes are set by run --workers or --scheduler",
    "multiprocess_steps": "Synthor's processes are set by run --workers or --scheduler",
    "num_processes": "Synthor's processes are set by run --workers",
    "slice_geography": "Synthor's partitions are set by run --partition",
    "cleanup_pipeline_after_run": "Synthor keeps no pipeline",
}
SETTINGS_NOT_SUPPORTED = {  # they change the result: a warning each, said plainly
    "USE_HARD_CONSTRAINTS": "the expansion bounds are scaled to the zone's households as without it",
}


def settings_warnings(settings: dict, shown: str) -> list[str]:
    """What Synthor does not do of the keys in ``settings`` (:data:`SETTINGS_NOT_SUPPORTED` one warning each,
    :data:`SETTINGS_NOT_NEEDED` together in one, unknown keys in one)."""
    out = [f"{shown}: {key}: {why}" for key, why in SETTINGS_NOT_SUPPORTED.items() if key in settings]
    needless = [key for key in settings if key in SETTINGS_NOT_NEEDED]
    if needless:
        out.append(
            f"{shown}: not used, Synthor has its own way: "
            + "; ".join(f"{key} ({SETTINGS_NOT_NEEDED[key]})" for key in needless)
        )
    known = HONOURED_SETTINGS.keys() | SETTINGS_NOT_NEEDED.keys() | SETTINGS_NOT_SUPPORTED.keys()
    unknown = [str(key)[:64] for key in settings if key not in known]
    if unknown:
        out.append(f"{shown}: keys PopulationSim does not document, not read: {', '.join(unknown[:20])}")
    return out


MAX_SETTINGS_NODES = 100_000  # values of settings.yaml with every alias expanded ("billion laughs" stop here)
MAX_SETTINGS_DEPTH = 50  # levels of nesting


def _load_yaml(text: str, shown: str):
    """``yaml.safe_load`` of ``text`` after checking its composed node graph: at most ``MAX_SETTINGS_DEPTH`` levels
    and ``MAX_SETTINGS_NODES`` values once aliases are expanded (counted on the graph, never built). Raises
    TargetValidationError naming ``shown``; yaml.YAMLError for text that is not YAML."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        sizes: dict[int, int] = {}
        stack = [(root, 0, False)]  # iterative post-order: a node's size once its children's are known
        while stack:
            node, depth, done = stack.pop()
            if depth > MAX_SETTINGS_DEPTH:
                raise TargetValidationError([Problem(shown, f"nested more than {MAX_SETTINGS_DEPTH} levels deep")])
            children = (
                [c for pair in node.value for c in pair]
                if isinstance(node, yaml.MappingNode)
                else list(node.value)
                if isinstance(node, yaml.SequenceNode)
                else []
            )
            if done:
                sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
                if sizes[id(node)] > MAX_SETTINGS_NODES:
                    raise TargetValidationError(
                        [
                            Problem(
                                shown,
                                f"more than {MAX_SETTINGS_NODES:,} values once its aliases (*name) are expanded: not a "
                                f"settings file",
                            )
                        ]
                    )
            elif id(node) not in sizes:
                stack.append((node, depth, True))
                stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def read_csv_table(path: Path, shown: str, problems: list[Problem]) -> pd.DataFrame | None:
    """A CSV whose lines starting with ``#`` are comments; numbers stay numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(shown, f"is not UTF-8 text (byte {exc.start})"))
        return None
    except OSError as exc:
        problems.append(Problem(shown, f"could not be read ({exc.strerror})"))
        return None
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    width = lines[0].count(",") + 1 if lines else 0
    if width > MAX_TABLE_COLUMNS:  # pandas takes minutes over a header of a million columns
        problems.append(
            Problem(shown, f"has {width:,} columns in its header; expected at most {MAX_TABLE_COLUMNS:,}", row=1)
        )
        return None
    try:
        frame = pd.read_csv(io.StringIO("\n".join(lines)), low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        problems.append(Problem(shown, f"could not be read as CSV ({str(exc).splitlines()[0]})"))
        return None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _input_tables(
    settings: dict, data: Path, shown: str, problems: list[Problem]
) -> dict[str, tuple[pd.DataFrame, str, dict]]:
    """Every ``input_table_list`` entry: tablename -> (frame after renames and drops, file name, entry); a problem
    naming the tables PopulationSim needs (households, persons, geo_cross_walk) that the list lacks, with what to do
    when it is a repop project's list."""
    entries = settings.get("input_table_list")
    if not isinstance(entries, list) or not entries:
        problems.append(
            Problem(
                shown,
                "expected input_table_list: a list of tables with tablename and filename",
                column="input_table_list",
            )
        )
        return {}
    tables = {}
    for i, entry in enumerate(entries, start=1):
        key = f"input_table_list[{i}]"
        if not isinstance(entry, dict) or "tablename" not in entry or "filename" not in entry:
            problems.append(Problem(shown, "expected tablename and filename", column=key))
            continue
        path = inside_folder(data, entry["filename"], shown, f"{key}.filename", problems)
        if path is None:
            continue
        frame = read_csv_table(path, f"{data.name}/{entry['filename']}", problems)
        if frame is None:
            continue
        renames = entry.get("rename_columns") or {}
        if not isinstance(renames, dict):
            problems.append(Problem(shown, "expected rename_columns: a mapping old -> new", column=key))
            renames = {}
        frame = frame.rename(columns={str(k): str(v) for k, v in renames.items()})
        drops = [c for c in (entry.get("drop_columns") or []) if c in frame.columns]
        frame = frame.drop(columns=drops).copy()
        tables[str(entry["tablename"])] = (frame, f"{data.name}/{entry['filename']}", entry)
    missing = [name for name in ("households", "persons", "geo_cross_walk") if name not in tables]
    if missing:
        repop_keys = [key for key in REPOP_SETTINGS if key in settings]
        problems.append(
            Problem(
                shown,
                f"expected input tables named {', '.join(map(repr, missing))}"
                + (
                    f" (a repop project, {repop_keys[0]}: PopulationSim reads the seed sample and the crosswalk from "
                    f"its base run's pipeline; Synthor reads them from input_table_list, so list the base project's "
                    f"files there and run it with --base PREVIOUS_OUT)"
                    if repop_keys
                    else ""
                ),
                column="input_table_list",
            )
        )
    return tables


def load_populationsim(
    folder: str | Path, configs: str = "configs", data: str | None = None, repop: bool = False
) -> HouseholdProject:
    """Read a PopulationSim working directory as a :class:`HouseholdProject`.

    Parameters
    ----------
    folder : path
        The working directory (holding ``configs/`` and ``data/``).
    configs : str
        Name of the configs folder inside ``folder`` (``configs_flex`` for example_test's flexible variant).
    data : str or None
        Name of the data folder; default the settings' ``data_dir``, else ``data``.
    repop : bool
        Repop mode (``run --base``): the controls of ``repop_control_file_name`` (at the lowest geography, for the
        zones its control table lists: the project's zones are those), the input tables of
        ``repop_input_table_list`` replacing those of the same name, and the project's ``repop`` set to
        ``"replace"`` or ``"append"`` from the ``expand_households.repop;...`` step of its steps.

    Returns
    -------
    HouseholdProject

    Raises
    ------
    TargetValidationError
        With every problem found: settings missing or of the wrong type, a file outside the project, a control
        expression outside the whitelist (naming the control and the construct), a control column missing from
        its table, a zone of a control table missing from the crosswalk, a crosswalk zone with two parents, a
        person whose household is not in the seed sample, weights or controls that are not numbers >= 0.
    """
    root = Path(folder)
    configs_dir = root / configs
    settings_shown = f"{configs}/{SETTINGS_FILE}"
    if not (configs_dir / SETTINGS_FILE).is_file():
        raise TargetValidationError(
            [
                Problem(
                    settings_shown,
                    f"not found in {root.name}/ (a PopulationSim working directory has {configs}/{SETTINGS_FILE})",
                )
            ]
        )
    settings = read_settings(configs_dir, settings_shown)
    problems: list[Problem] = []
    mode: Literal["replace", "append"] | None = None
    if repop:
        settings, mode = repop_settings(settings, settings_shown)
    data_name = data or str(settings.get("data_dir") or "data")
    data_dir = root / data_name
    if not data_dir.resolve().is_relative_to(root.resolve()) or not data_dir.is_dir():
        raise TargetValidationError(
            [
                Problem(
                    settings_shown,
                    f"the data folder {data_name!r} was not found inside {root.name}/",
                    column="data_dir",
                )
            ]
        )
    levels, seed_level, reserved = _level_settings(settings, settings_shown, problems)
    tables = _input_tables(settings, data_dir, settings_shown, problems)
    control_key = "repop_control_file_name" if repop else "control_file_name"
    control_file = str(settings.get(control_key) or "controls.csv")
    control_path = inside_folder(configs_dir, control_file, settings_shown, control_key, problems)
    if problems or control_path is None:
        raise TargetValidationError(problems)

    crosswalk, crosswalk_file, _ = tables["geo_cross_walk"]
    geography, geo_problems = build_geography(crosswalk, levels, crosswalk_file)
    if geo_problems or geography is None:
        raise TargetValidationError(geo_problems)
    sample, sample_problems = seed_sample_from_tables(tables, reserved, seed_level, geography)
    problems += sample_problems
    if problems or sample is None:
        raise TargetValidationError(problems)
    level_tables = [(lvl, *tables[f"{lvl}_control_data"][:2]) for lvl in levels if f"{lvl}_control_data" in tables]
    geography, sample, left_out, zone_problems = keep_zones_with_controls(geography, sample, level_tables)
    if zone_problems:
        raise TargetValidationError(zone_problems)
    controls, warnings = _controls(control_path, f"{configs}/{control_file}", tables, geography, sample, problems)
    if mode is not None:  # the zones the repop controls list are the project's; the others keep the base run's
        repop_found, note = repop_problems(
            controls, geography, mode, lambda message: Problem(f"{configs}/{control_file}", message, column="geography")
        )
        problems += repop_found
        left_out = [note]
    elif any(key in settings for key in REPOP_SETTINGS):
        left_out.append(
            f"{settings_shown}: {next(k for k in REPOP_SETTINGS if k in settings)}: the repop controls are read by run "
            f"--base PREVIOUS_OUT (repop on top of a previous run); this run is a base run"
        )
    warnings = left_out + warnings
    if problems:
        raise TargetValidationError(problems)
    if reserved["total_hh_control"] not in {c.name for c in controls}:
        raise TargetValidationError(
            [
                Problem(
                    settings_shown,
                    f"total_hh_control names {reserved['total_hh_control']!r}"
                    f", which is not a control in {control_file}",
                    column="total_hh_control",
                )
            ]
        )
    problems += total_control_problems(
        controls,
        reserved["total_hh_control"],
        geography.lowest,
        lambda message: Problem(settings_shown, message, column="total_hh_control"),
    )
    bounds = {key: _bound(settings, key, settings_shown, problems) for key in BOUND_SETTINGS}
    weighting = settings.get("NO_INTEGERIZATION_EVER", False)
    if not isinstance(weighting, bool):
        problems.append(Problem(settings_shown, "expected True or False", column="NO_INTEGERIZATION_EVER"))
    tables_out = output_tables(
        settings.get("output_tables"),
        str(seed_level),
        geography,
        controls,
        settings_shown,
        "output_tables",
        problems,
        warnings,
    )
    output = output_files(
        settings.get("output_synthetic_population"), settings_shown, "output_synthetic_population", problems
    )
    if problems:
        raise TargetValidationError(problems)
    project = HouseholdProject(
        name=root.resolve().name,
        geography=geography,
        sample=sample,
        controls=controls,
        total_control=reserved["total_hh_control"],
        max_expansion_factor=bounds["max_expansion_factor"],
        min_expansion_factor=bounds["min_expansion_factor"],
        absolute_upper_bound=bounds["absolute_upper_bound"],
        absolute_lower_bound=bounds["absolute_lower_bound"],
        survey_weighting=weighting is True and not repop,  # repop expands whole households, as PopulationSim
        output_tables=tables_out,
        repop=mode,
        output=output,
        source="populationsim",
        warnings=settings_warnings(settings, settings_shown) + warnings,
        root=root,
        derived=tuple(
            infer_derivations(sample, dict.fromkeys(col for c in controls if c.unit == HOUSEHOLDS for col in c.columns))
        ),
    )
    return with_codebook(project, mine=True)


def _level_settings(settings: dict, shown: str, problems: list[Problem]) -> tuple[list[str], object, dict]:
    """The geography levels (top to lowest), the seed geography and the reserved column names
    (``household_weight_col``, ``household_id_col``, ``total_hh_control``) of the settings; a problem for each one
    missing or of the wrong type is appended to ``problems``."""
    levels = settings.get("geographies")
    seed_level = settings.get("seed_geography")
    if not isinstance(levels, list) or not levels or not all(isinstance(x, str) for x in levels):
        problems.append(
            Problem(shown, "expected geographies: a list of level names, top to lowest", column="geographies")
        )
        levels = []
    for level in sorted({x for x in levels if levels.count(x) > 1}):
        problems.append(
            Problem(
                shown,
                f"the geography level {level!r} is listed twice (each level once, top to lowest)",
                column="geographies",
            )
        )
    if seed_level not in levels:
        problems.append(
            Problem(
                shown,
                f"expected seed_geography to be one of the geographies "
                f"({', '.join(map(str, levels))}), got {seed_level!r}",
                column="seed_geography",
            )
        )
    reserved = {}
    for key in ("household_weight_col", "household_id_col", "total_hh_control"):
        value = settings.get(key)
        if not isinstance(value, str) or not value:
            problems.append(Problem(shown, "expected a column name", column=key))
        reserved[key] = value
    return levels, seed_level, reserved


def repop_settings(settings: dict, shown: str) -> tuple[dict, Literal["replace", "append"]]:
    """The settings of repop mode: ``input_table_list`` with the ``repop_input_table_list`` entries replacing those
    of the same tablename, and the mode (``replace`` or ``append``) of the ``expand_households.repop;<mode>`` step in
    ``repop.steps`` or ``run_list.steps``. Raises TargetValidationError naming repop and what is missing."""
    if not isinstance(settings.get("repop_control_file_name"), str):
        raise TargetValidationError(
            [
                Problem(
                    shown,
                    "repop (run --base) needs repop_control_file_name: the controls of the zones to repopulate",
                    column="repop_control_file_name",
                )
            ]
        )
    entries = [e for e in settings.get("input_table_list") or [] if isinstance(e, dict)]
    extra = [e for e in settings.get("repop_input_table_list") or [] if isinstance(e, dict)]
    replaced = {e.get("tablename") for e in extra}
    merged = [e for e in entries if e.get("tablename") not in replaced] + extra
    modes = set()
    for key in ("repop", "run_list"):
        steps = settings.get(key, {}).get("steps") if isinstance(settings.get(key), dict) else None
        for step in steps if isinstance(steps, list) else []:
            text = str(step)
            if text.startswith("expand_households") and "repop" in text:
                modes |= {m for m in ("replace", "append") if m in text}
    if len(modes) != 1:
        raise TargetValidationError(
            [
                Problem(
                    shown,
                    "repop (run --base) needs one step expand_households.repop;replace or expand_households.repop;"
                    f"append in repop.steps or run_list.steps, got {' and '.join(sorted(modes)) or 'none'}",
                    column="repop",
                )
            ]
        )
    return {**settings, "input_table_list": merged}, "append" if modes == {"append"} else "replace"


BOUND_SETTINGS = ("max_expansion_factor", "min_expansion_factor", "absolute_upper_bound", "absolute_lower_bound")


def _bound(settings: dict, key: str, shown: str, problems: list[Problem]) -> float | None:
    """A weight bound of the settings: a number > 0 (``absolute_lower_bound`` >= 0), or None when not given."""
    value = settings.get(key)
    if value is None:
        return None
    lowest = 0.0 if key == "absolute_lower_bound" else np.nextafter(0.0, 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lowest <= value < np.inf):
        problems.append(
            Problem(shown, f"expected a number {'>=' if lowest == 0 else '>'} 0, got {value!r}", column=key)
        )
        return None
    return float(value)


def with_codebook(project: HouseholdProject, mine: bool) -> HouseholdProject:
    """The project with its codebook read from the sample (:func:`~synthor_core.codebook.sample_codebook`, over the
    columns its records have) and, when ``mine``, the sample's support rules added to its rules
    (:func:`~synthor_core.codebook.mine_rules`: a PopulationSim import; a converted project lists them). The sample
    weight is left out: it describes the sample, not a household (a built household stands for itself)."""
    weight = project.sample.weight
    households = [c for c in project.record_columns(HOUSEHOLDS) if c != weight]
    codebook = sample_codebook(project.sample, households, project.record_columns(PERSONS))
    widened = widen_for_controls(codebook, project.controls)
    rules = project.rules + tuple(mine_rules(project.sample, codebook, widened=widened)) if mine else project.rules
    return replace(project, codebook=widened, rules=rules, warnings=project.warnings + unknown_output_columns(project))


def unknown_output_columns(project: HouseholdProject) -> list[str]:
    """A warning per column the output settings list that the records do not have (it would be left out without a
    word): neither a sample (or declared) column nor an id, zone level or member number."""
    output = project.output
    if output is None:
        return []
    sample = project.sample
    known = {sample.household_id, output.household_id, *project.geography.levels}
    out = []
    for unit, listed, frame in (
        (HOUSEHOLDS, output.household_columns, sample.households),
        (PERSONS, output.person_columns, sample.persons),
    ):
        extra = {"per_num"} if unit == PERSONS else set()
        missing = [c for c in listed if c not in frame.columns and c not in known | extra]
        if missing:
            out.append(
                f"the output settings list {unit} column{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                f"which the {unit} have not: not written"
            )
    return out


def seed_sample_from_tables(tables, reserved, seed_level, geography: Geography) -> tuple[Sample | None, list[Problem]]:
    """The seed sample from the read ``households`` and ``persons`` tables (frame, file shown, spec).

    ``reserved`` names the id and weight columns (``household_id_col``, ``household_weight_col``). Returns the
    sample, or None with the problems (missing columns, duplicate ids, weights, unknown seed zones, persons whose
    household is not in the sample, no household at all), each naming file, row and column.
    """
    problems: list[Problem] = []
    households, hh_file, _ = tables["households"]
    persons, p_file, _ = tables["persons"]
    hh_id, weight = reserved["household_id_col"], reserved["household_weight_col"]
    for column in (hh_id, weight, seed_level):
        if column not in households.columns:
            problems.append(
                Problem(
                    hh_file,
                    f"expected a column {column!r} (columns: {', '.join(list(households.columns)[:12])}, ...)",
                    row=1,
                    column=column,
                )
            )
    if hh_id not in persons.columns:
        problems.append(
            Problem(p_file, f"expected a column {hh_id!r} naming each person's household", row=1, column=hh_id)
        )
    if problems:
        return None, problems
    duplicated = np.flatnonzero(households[hh_id].duplicated().to_numpy())
    flag_rows(
        problems,
        duplicated,
        hh_file,
        hh_id,
        lambda i: f"the household id {shown_value(households[hh_id].iloc[i])} is listed twice",
    )
    number_column(households, weight, hh_file, problems)
    zones = geography.zones(seed_level)
    unknown = np.flatnonzero(~households[seed_level].isin(zones).to_numpy())
    flag_rows(
        problems,
        unknown,
        hh_file,
        seed_level,
        lambda i: f"the {seed_level} zone {shown_value(households[seed_level].iloc[i])} is not in the crosswalk",
    )
    position = pd.Series(np.arange(len(households)), index=households[hh_id].to_numpy())
    if duplicated.size:
        return None, problems
    rows = position.reindex(persons[hh_id].to_numpy()).to_numpy()
    orphans = np.flatnonzero(np.isnan(rows))
    flag_rows(
        problems,
        orphans,
        p_file,
        hh_id,
        lambda i: f"the person's household {shown_value(persons[hh_id].iloc[i])} is not in the seed households",
    )
    if households.empty:
        problems.append(
            Problem(
                hh_file,
                "the seed sample has no households: the seed is the sample the households are drawn from "
                "(a project without one is a Synthor household project declaring its variables)",
            )
        )
    if problems:
        return None, problems
    persons = persons.assign(_household=rows.astype(np.int64))
    number = "per_num" if "per_num" in persons.columns else None
    persons = persons.sort_values(["_household"] + ([number] if number else []), kind="stable")
    households = households.reset_index(drop=True)
    households[weight] = pd.to_numeric(households[weight])
    return Sample(households, persons.reset_index(drop=True), hh_id, number, weight, seed_level), []


def _controls(
    path: Path, shown: str, tables, geography: Geography, sample: Sample, problems: list[Problem]
) -> tuple[list[Control], list[str]]:
    """Every row of ``controls.csv`` as a :class:`Control` (:func:`~synthor_core.readers.controls.read_control`)."""
    frame = read_csv_table(path, shown, problems)
    warnings: list[str] = []
    if frame is None:
        return [], warnings
    missing = [c for c in CONTROL_COLUMNS if c not in frame.columns]
    if missing:
        problems.append(
            Problem(shown, f"expected the columns {', '.join(CONTROL_COLUMNS)}; missing {', '.join(missing)}", row=1)
        )
        return [], warnings
    controls = []
    level_tables: dict[str, tuple[pd.DataFrame, str] | None] = {}
    names = set()
    keys = {"expression": "expression", "column": "control_field"}
    for i, row in frame.iterrows():
        line = int(i) + 2

        def locate(key: str, message: str, line: int = line) -> Problem:
            return Problem(shown, message, row=line, column=keys.get(key, key))

        name = str(row["target"]).strip()
        if name in names:
            problems.append(Problem(shown, f"the control {name!r} is listed twice", row=line, column="target"))
            continue
        names.add(name)
        level, unit, column = (
            str(row["geography"]).strip(),
            str(row["seed_table"]).strip(),
            str(row["control_field"]).strip(),
        )
        if level not in geography.levels:
            problems.append(
                Problem(
                    shown,
                    f"expected one of the geographies {', '.join(geography.levels)}, got {level!r}",
                    row=line,
                    column="geography",
                )
            )
            continue
        if unit not in (HOUSEHOLDS, PERSONS):
            problems.append(
                Problem(
                    shown, f"expected seed_table households or persons, got {unit!r}", row=line, column="seed_table"
                )
            )
            continue
        importance = pd.to_numeric(pd.Series([row["importance"]]), errors="coerce").iloc[0]
        if not np.isfinite(importance) or importance <= 0:
            problems.append(
                Problem(shown, f"expected an importance > 0, got {row['importance']!r}", row=line, column="importance")
            )
            continue
        if level not in level_tables:
            level_tables[level] = _level_table(level, tables, geography, problems)
        entry = ControlEntry(name, unit, level, float(importance), column, str(row["expression"]))
        control = read_control(entry, level_tables[level], geography, sample, locate, problems, warnings)
        if control is not None:
            controls.append(control)
    return controls, warnings


def _level_table(level: str, tables, geography: Geography, problems: list[Problem]) -> tuple[pd.DataFrame, str] | None:
    key = f"{level}_control_data"
    if key not in tables:
        problems.append(
            Problem(
                "configs/settings.yaml",
                f"controls at {level} need an input table named {key!r}",
                column="input_table_list",
            )
        )
        return None
    frame, shown, _ = tables[key]
    return (frame, shown) if check_zone_column(frame, level, geography, shown, problems) else None
