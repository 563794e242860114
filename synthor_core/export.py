"""Writing a household synthesis: one row per household and per person, PopulationSim's files, the report.

Files are written to a temporary name in the output folder and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import defaults
from .expressions import compile_condition
from .schema import spreadsheet_safe
from .synthesis.households import (
    PRIOR_COLUMN,
    HouseholdConfig,
    HouseholdResult,
    check_rules,
    member_consistency,
    realism_tables,
    worst_zones,
    zone_fit_table,
)
from .units import HouseholdProject

HOUSEHOLD_ID = "household_id"
PERSON_NUMBER = "per_num"


def household_columns(project: HouseholdProject) -> list[str]:
    """Seed household columns written out: every column a household control reads, then the output settings'."""
    seed = project.seed
    wanted = [col for c in project.controls if c.unit == "households" for col in c.columns]
    wanted += [str(c) for c in (project.output.get("households") or {}).get("columns", []) or []]
    return [c for c in dict.fromkeys(wanted) if c in seed.households.columns and c not in project.geography.levels]


def person_columns(project: HouseholdProject) -> list[str]:
    """Seed person columns written out: every column a person control reads, then the output settings'."""
    seed = project.seed
    wanted = [col for c in project.controls if c.unit == "persons" for col in c.columns]
    wanted += [str(c) for c in (project.output.get("persons") or {}).get("columns", []) or []]
    wanted += [d.source for d in project.derived if d.source]  # the members' columns derived ones come from
    wanted += [
        col
        for d in project.derived
        if d.expression
        for col in compile_condition(d.expression, "persons", seed.persons.columns, d.column).columns
    ]
    skip = {PERSON_NUMBER, seed.household_id, "_household", *project.geography.levels}
    return [c for c in dict.fromkeys(wanted) if c in seed.persons.columns and c not in skip]


def expand_households(
    project: HouseholdProject, result: HouseholdResult, prior: str = "seed"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per synthetic household and one per synthetic person.

    Returns
    -------
    (households, persons)
        ``households``: ``household_id`` (int64 from 1), one column per geography level (zone ids), the seed
        household id as ``seed_<id column>`` (``maxent_<id column>`` for the maxent prior's candidates), ``prior``
        ("seed" or "maxent") when the seed prior was filled from maxent, then :func:`household_columns`.
        ``persons``: ``household_id``, ``per_num`` (int64 from 1 within the household), then
        :func:`person_columns`. Ordered by zone, then seed household, so the same inputs and seed give the same
        rows.
    """
    seed, geography = project.seed, project.geography
    counts = result.households["count"].to_numpy()
    seed_rows = np.repeat(result.households["seed_row"].to_numpy(), counts)
    zones = np.repeat(result.households["zone"].to_numpy(), counts)
    n = seed_rows.size
    households = pd.DataFrame({HOUSEHOLD_ID: np.arange(1, n + 1, dtype=np.int64)})
    for level in geography.levels:
        households[level] = geography.crosswalk[level].to_numpy()[zones]
    households[f"{prior}_{seed.household_id}"] = seed.households[seed.household_id].to_numpy()[seed_rows]
    origin = seed.households[PRIOR_COLUMN] if PRIOR_COLUMN in seed.households.columns else None
    if origin is not None and (origin.nunique() > 1 or set(origin.unique()) != {prior}):
        # the seed prior filled from maxent, the llm prior's fallback: say which household came from which
        households["prior"] = origin.to_numpy()[seed_rows]
    for column in household_columns(project):
        households[column] = seed.households[column].to_numpy()[seed_rows]
    if origin is not None and seed.weight in households.columns:
        # a maxent or llm candidate has no sample weight (its balancing weight means nothing outside the run)
        households.loc[(origin.to_numpy()[seed_rows] != "seed"), seed.weight] = np.nan
    members = seed.members_per_household()
    starts = np.concatenate(([0], np.cumsum(members)[:-1]))
    sizes = members[seed_rows]
    owner = np.repeat(np.arange(n), sizes)
    within = np.arange(owner.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    person_rows = starts[seed_rows][owner] + within
    persons = pd.DataFrame({HOUSEHOLD_ID: owner.astype(np.int64) + 1, PERSON_NUMBER: within.astype(np.int64) + 1})
    for column in person_columns(project):
        persons[column] = seed.persons[column].to_numpy()[person_rows]
    return _whole_numbers(households), _whole_numbers(persons)


def _whole_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """Float columns holding only whole numbers (and blanks) as nullable integers, so ``30`` is not ``30.0``."""
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind == "f":
            known = values.dropna().to_numpy()
            if (
                known.size
                and np.all(np.isfinite(known))
                and np.all(known == np.floor(known))
                and np.all(np.abs(known) < 2**53)
            ):
                frame[column] = values.astype("Int64")
    return frame


def write_atomic(path: Path, write, folder: Path | None = None) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path`` (same folder).

    Raises ValueError when ``folder`` is given and ``path`` does not lie directly in it (a name from a project
    file must never lead elsewhere).
    """
    if folder is not None and Path(path).resolve().parent != Path(folder).resolve():
        raise ValueError(f"refusing to write {path}: not a file of {folder}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, defaults.FILE_MODE)  # mkstemp makes it private; the final file gets the usual umask mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def household_report(
    project: HouseholdProject,
    result: HouseholdResult,
    config: HouseholdConfig,
    n_persons: int,
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``report.json`` of a household run: per control its level, totals, %RMSE over zones, errors, worst zones.

    ``extra`` (the prior's notes, realism tables, member consistency) is added as it is.
    """
    controls = []
    for row in result.fit.itertuples(index=False):
        controls.append(
            {
                "control": row.control,
                "level": row.level,
                "unit": row.unit,
                "importance": row.importance,
                "control_total": row.control_total,
                "synthetic_total": row.synthetic_total,
                "pct_rmse": round(float(row.pct_rmse), 4),
                "total_abs_error": row.total_abs_error,
                "max_abs_error": row.max_abs_error,
                "zones": row.zones,
                "worst_zones": worst_zones(project, result, row.control),
            }
        )
    return {
        "project": project.name,
        "source": project.source,
        "prior": config.prior,
        "seed": config.seed,
        "households": result.total_households,
        "persons": n_persons,
        "distinct_households": int(result.households["seed_row"].nunique()),
        "geographies": {level: len(project.geography.zones(level)) for level in project.geography.levels},
        "balance": {
            "converged": result.balance.converged,
            "stop": result.balance.stop,
            "sweeps": result.balance.iterations,
            "max_relative_gap": result.balance.max_relative_gap,
            "max_relative_change": result.balance.max_relative_change,
        },
        "integerize": dict(result.integerize),
        "seconds": round(seconds, 3),
        "stage_seconds": result.seconds,
        "worst_pct_rmse": round(float(result.fit["pct_rmse"].max()), 4) if len(result.fit) else 0.0,
        "controls": controls,
        "warnings": list(project.warnings),
        "settings": config.model_dump(),
        **(extra or {}),
    }


def summary_tables(project: HouseholdProject, result: HouseholdResult) -> dict[str, pd.DataFrame]:
    """PopulationSim's ``summary_<GEOGRAPHY>``: per zone of each level with controls, control, result, difference."""
    tables = {}
    for level in project.geography.levels:
        controls = [c for c in project.controls if c.level == level]
        if not controls:
            continue
        zones = project.geography.zones(level)
        frame = pd.DataFrame({"geography": level, "id": zones.to_numpy()})
        for c in controls:
            frame[f"{c.name}_control"] = c.totals
            frame[f"{c.name}_result"] = result.synthetic[c.name]
            frame[f"{c.name}_diff"] = result.synthetic[c.name] - c.totals
        tables[level] = frame
    return tables


def write_household_outputs(
    project: HouseholdProject,
    result: HouseholdResult,
    config: HouseholdConfig,
    out: Path,
    seconds: float,
    reference: HouseholdProject | None = None,
    prior_notes: dict | None = None,
    partitions=None,
) -> dict[str, Any]:
    """Write ``households.csv``, ``persons.csv`` (and both as Parquet), ``zone_fit.csv`` (every control in every
    zone: :func:`~synthor_core.synthesis.households.zone_fit_table`), ``report.json``, and PopulationSim's files for its
    projects.

    Parameters
    ----------
    project : HouseholdProject
        The project the households were placed from (its seed holds the prior's candidates).
    reference : HouseholdProject, optional
        The project with its real seed sample: the report then gains ``realism`` (TVD of the tables no control
        fixes, :func:`synthor_core.synthesis.households.realism_tables`).
    prior_notes : dict, optional
        What the prior says about its candidates (``candidate_households``), reported under ``prior_notes``.
    partitions : list of PartitionOutcome, optional
        Reported under ``partitions`` (name, households, seconds, error of each).

    Returns the report (as written).
    """
    households, persons = expand_households(project, result, config.prior)
    write_atomic(out / "households.csv", lambda p: spreadsheet_safe(households).to_csv(p, index=False))
    write_atomic(out / "persons.csv", lambda p: spreadsheet_safe(persons).to_csv(p, index=False))
    write_atomic(out / "households.parquet", lambda p: households.to_parquet(p, index=False))
    write_atomic(out / "persons.parquet", lambda p: persons.to_parquet(p, index=False))
    zone_fit = zone_fit_table(project, result)
    write_atomic(out / "zone_fit.csv", lambda p: spreadsheet_safe(zone_fit).to_csv(p, index=False))
    if project.output:  # PopulationSim's output settings (an imported or converted PopulationSim project)
        spec = project.output
        id_name = str(spec.get("household_id") or HOUSEHOLD_ID)
        hh_spec, p_spec = spec.get("households") or {}, spec.get("persons") or {}
        hh_cols = [c for c in hh_spec.get("columns", []) or [] if c in households.columns]
        synthetic_hh = households[[HOUSEHOLD_ID, *project.geography.levels, *hh_cols]].rename(
            columns={HOUSEHOLD_ID: id_name}
        )
        p_cols = [c for c in p_spec.get("columns", []) or [] if c in persons.columns and c != PERSON_NUMBER]
        synthetic_p = persons[[HOUSEHOLD_ID, PERSON_NUMBER, *p_cols]].rename(columns={HOUSEHOLD_ID: id_name})
        hh_file = Path(str(hh_spec.get("filename") or "synthetic_households.csv")).name
        p_file = Path(str(p_spec.get("filename") or "synthetic_persons.csv")).name
        write_atomic(out / hh_file, lambda p: spreadsheet_safe(synthetic_hh).to_csv(p, index=False), out)
        write_atomic(out / p_file, lambda p: spreadsheet_safe(synthetic_p).to_csv(p, index=False), out)
        for level, table in summary_tables(project, result).items():
            write_atomic(
                out / f"summary_{level}.csv", lambda p, t=table: spreadsheet_safe(t).to_csv(p, index=False), out
            )
    by_prior = (
        households["prior"].value_counts().sort_index().to_dict()
        if "prior" in households.columns
        else {config.prior: len(households)}
    )
    extra: dict[str, Any] = {
        "prior_notes": prior_notes or {},
        "households_by_prior": {k: int(v) for k, v in by_prior.items()},
        "member_consistency": member_consistency(project, households, persons),
    }
    if partitions is not None:
        extra["partitions"] = [
            {
                "partition": o.name,
                "households": int(o.households["count"].sum()),
                "seconds": round(o.seconds, 3),
                "error": o.error,
            }
            for o in partitions
        ]
    if project.rules:
        extra["rules"] = check_rules(reference if reference is not None else project, households, persons)
    if reference is not None and len(reference.seed.households):
        realism = realism_tables(reference, project, result)
        extra["realism"] = {
            "mean_tvd": round(float(realism["tvd"].mean()), 4) if len(realism) else 0.0,
            "tables": [{**r, "tvd": round(float(r["tvd"]), 4)} for r in realism.to_dict("records")],
        }
    report = household_report(project, result, config, len(persons), seconds, extra)
    write_atomic(out / "report.json", lambda p: Path(p).write_text(json.dumps(report, indent=2), encoding="utf-8"))
    return report
