"""The one way results are written (DESIGN §5, §8, §12): a person population as ``population.csv`` and
``population.parquet``; households with their members as ``households.csv``, ``persons.csv`` (and Parquet),
``zone_fit.csv``, PopulationSim's files for its projects, and ``report.json``.

Files are written to a temporary name in the output folder and renamed, so a reader never sees half a file. CSV cells
never start a spreadsheet formula (:func:`~synthor_core.schema.spreadsheet_safe`). Households are written partition by
partition (:class:`HouseholdWriter`), so a run's memory does not grow with its region.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from . import defaults
from .aggregate import quote_ident
from .evaluate.households import HOUSEHOLD_ID, PERSON_NUMBER, HouseholdEvaluation, worst_zones, zone_fit_table
from .evaluate.report import household_report
from .schema import FORMULA_PREFIXES, spreadsheet_safe
from .synthesis.config import SynthesisConfig
from .synthesis.events import HouseholdResult, PartitionOutcome
from .synthesis.trips import TRIP_COLUMNS
from .targets.model import HouseholdProject
from .units import HOUSEHOLDS, PERSONS

PERSON_ID = "person_id"  # first column of population.csv: 1..N in row order

# a text cell a spreadsheet would run as a formula (schema.FORMULA_PREFIXES, as a regular expression; "-" first)
_FORMULA_START = "^[" + "".join(sorted(FORMULA_PREFIXES, key=lambda ch: ch != "-")) + "]"


class FileBatch:
    """Files of one result written under temporary names beside their targets and renamed together once every one
    is written (:meth:`commit`): a write that fails (a full disk) leaves the folder as it was, so a checkpoint and
    its report, or a final population and its report, never mix. Use as a context manager: leaving it without
    :meth:`commit` (an exception) removes the temporary files.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def add(self, path: Path, write, folder: Path | None = None) -> Path:
        """Call ``write(temporary_path)`` for a temporary file beside ``path``; returns ``path``.

        Raises ValueError when ``folder`` is given and ``path`` does not lie directly in it (a name from a project
        file must never lead elsewhere); OSError when the file cannot be written (DuckDB's I/O errors are raised
        as OSError with their errno).
        """
        path = Path(path)
        if folder is not None and path.resolve().parent != Path(folder).resolve():
            raise ValueError(f"refusing to write {path}: not a file of {folder}")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(handle)
        self.pending.append((Path(temporary), path))
        try:
            write(temporary)
        except duckdb.IOException as exc:
            raise _os_error(exc, path) from exc
        os.chmod(temporary, defaults.FILE_MODE)  # mkstemp makes it private; the final file gets the usual umask mode
        return path

    def adopt(self, temporary: Path, path: Path) -> None:
        """Rename ``temporary`` (a file written by other means, in ``path``'s folder) with the batch."""
        self.pending.append((Path(temporary), Path(path)))

    def commit(self) -> None:
        """Rename every file to its final name (renames need no space)."""
        for temporary, path in self.pending:
            os.replace(temporary, path)
        self.pending.clear()

    def abandon(self) -> None:
        """Remove the temporary files."""
        for temporary, _ in self.pending:
            temporary.unlink(missing_ok=True)
        self.pending.clear()

    def __enter__(self) -> FileBatch:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abandon()


def _os_error(exc: Exception, path: Path) -> OSError:
    """DuckDB's I/O error as the OSError it wraps (``"errno":"28"`` in its message: No space left on device)."""
    found = re.search(r'"errno":\s*"?(\d+)', str(exc))
    if found:
        number = int(found.group(1))
        return OSError(number, os.strerror(number), str(path))
    return OSError(f"could not write {path}: {exc}")


def write_atomic(path: Path, write, folder: Path | None = None, batch: FileBatch | None = None) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path`` (same folder): at once (a
    :class:`FileBatch` of one file), or with the other files of ``batch`` when it is given. Raises as
    :meth:`FileBatch.add`."""
    if batch is not None:
        batch.add(path, write, folder)
        return
    with FileBatch() as alone:
        alone.add(path, write, folder)


def write_json(path: Path, content: dict, batch: FileBatch | None = None) -> None:
    """``content`` as indented JSON, written atomically (or into ``batch``)."""

    def write(p) -> None:
        Path(p).write_text(json.dumps(content, indent=2), encoding="utf-8")

    write_atomic(path, write, batch=batch)


def write_llm_calls(calls, path: Path, batch: FileBatch | None = None) -> None:
    """Every LLM call of the run as JSON lines (kind, model, prompt, reply, tokens, latency, outcome); no key."""
    from dataclasses import asdict

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            for call in calls:
                handle.write(json.dumps(asdict(call), ensure_ascii=False) + "\n")

    write_atomic(path, write, batch=batch)


# --- persons ---------------------------------------------------------------------------------------------------------


def write_population(
    population: pd.DataFrame,
    folder: Path,
    parquet: bool = True,
    batch: FileBatch | None = None,
    name: str = "population",
    per_person: pd.DataFrame | None = None,
    zero_for: tuple[str, ...] = (),
) -> list[Path]:
    """A person population as ``population.csv`` (UTF-8, one row per person: ``person_id`` from 1, then one column
    per variable; rows in id order) and ``population.parquet`` in ``folder``. A variable called ``person_id`` keeps
    its name; the id column is then ``person_id_``.

    Parameters
    ----------
    population : DataFrame
        Distinct records as labels (``Schema.decode``) with ``count`` (int64 >= 0).
    folder : Path
    parquet : bool
    batch : FileBatch, optional
        Write into this batch (renamed when the caller commits it) instead of renaming each file at once.
    name : str
        The files' name before the suffix (``persons`` for a project with trips).
    per_person : DataFrame, optional
        More columns for some persons: ``person_id`` (int64, as numbered here) and the columns, appended after the
        variables; empty for the persons it does not list, 0 for the columns of ``zero_for`` (counts: ``trips``).
    zero_for : tuple of str

    Returns
    -------
    The paths written.

    Source: rows are expanded from the distinct records by DuckDB (``range(count)``, sorted by id: the same bytes
    for the same population), so ten million persons never sit in memory as a frame.
    """
    written = []
    columns = [c for c in population.columns if c != "count"]
    id_name = PERSON_ID if PERSON_ID not in columns else f"{PERSON_ID}_"  # a variable may be called person_id
    kinds = {c: not pd.api.types.is_numeric_dtype(population[c]) for c in columns}
    counts = population["count"].to_numpy(dtype=np.int64)
    rename = {c: f"c{i}" for i, c in enumerate(columns)}  # plain names inside the query, whatever a variable's name
    records = pd.DataFrame({rename[c]: population[c].reset_index(drop=True) for c in columns})
    # the persons of record k are numbered from first[k] + 1 (the counts before it)
    records["n"], records["first"] = counts, np.cumsum(counts) - counts
    safe = ", ".join(
        f"CASE WHEN regexp_matches({rename[c]}::VARCHAR, '{_FORMULA_START}') THEN chr(39) || "
        f"{rename[c]}::VARCHAR ELSE {rename[c]}::VARCHAR END AS {quote_ident(c)}"
        if kinds[c]
        else f"{rename[c]} AS {quote_ident(c)}"
        for c in columns
    )
    plain = ", ".join(f"{rename[c]} AS {quote_ident(c)}" for c in columns)
    more, join = "", ""
    if per_person is not None:
        extra = [c for c in per_person.columns if c != PERSON_ID]
        more = "".join(
            f", COALESCE(x.{quote_ident(c)}, 0) AS {quote_ident(c)}" if c in zero_for else f", x.{quote_ident(c)}"
            for c in extra
        )
        join = f" LEFT JOIN per_person x ON x.{quote_ident(PERSON_ID)} = p.first + r.range + 1"
    con = _connection()
    try:
        con.register("distinct_records", records)
        if per_person is not None:
            con.register("per_person", per_person)
        for file, select, options in (
            (f"{name}.csv", safe, CSV_OPTIONS),
            *(((f"{name}.parquet", plain, PARQUET_OPTIONS),) if parquet else ()),
        ):
            expand = (
                f"SELECT p.first + r.range + 1 AS {quote_ident(id_name)}, {select}{more} FROM distinct_records p "
                f"CROSS JOIN range(p.n) r{join} ORDER BY 1"  # rows in id order (the join alone keeps no order)
            )
            written.append(_copy(con, expand, folder / file, options, batch))
    finally:
        con.close()
    return written


CSV_OPTIONS, PARQUET_OPTIONS = "FORMAT csv, HEADER true", "FORMAT parquet"


def csv_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    """What writes ``frame`` to a path as CSV (no index; text a spreadsheet would take for a formula prefixed with
    ``'``, :func:`~synthor_core.schema.spreadsheet_safe`), for :meth:`FileBatch.add` and :func:`write_atomic`."""
    return lambda path: spreadsheet_safe(frame).to_csv(path, index=False)


def _connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for writing files: no access to Python variables by name, one thread (the
    same work, and the same bytes, on every machine)."""
    con = duckdb.connect()
    con.execute("SET python_enable_replacements = false")
    con.execute("SET threads TO 1")
    return con


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path, options: str, batch: FileBatch | None) -> Path:
    """The rows of ``query`` written to ``path`` by DuckDB's ``COPY`` (``options``: its format), through
    :func:`write_atomic`; returns ``path``."""

    def copy(temporary: str) -> None:
        con.execute(f"COPY ({query}) TO '{temporary.replace(chr(39), chr(39) * 2)}' ({options})")

    write_atomic(path, copy, batch=batch)
    return path


def write_persons_and_trips(
    population: pd.DataFrame,
    trips: pd.DataFrame,
    per_person: pd.DataFrame,
    folder: Path,
    parquet: bool = True,
    batch: FileBatch | None = None,
) -> list[Path]:
    """The files of a run of a project with trips: ``persons.csv`` / ``.parquet`` (:func:`write_population`, with
    each person's ``per_person`` columns: ``trips``, 0 for a person without, and ``commute_km``) and ``trips.csv`` /
    ``.parquet`` (:func:`write_trips`). Returns the paths written."""
    written = write_population(
        population, folder, parquet, batch, name="persons", per_person=per_person, zero_for=("trips",)
    )
    return written + write_trips(trips, folder, parquet, batch)


def write_trips(trips: pd.DataFrame, folder: Path, parquet: bool = True, batch: FileBatch | None = None) -> list[Path]:
    """Trips as ``trips.csv`` (UTF-8, one row per trip, in person then trip order; text a spreadsheet would take for
    a formula prefixed with ``'``) and ``trips.parquet``.

    Parameters
    ----------
    trips : DataFrame, ``synthesis.trips.TRIP_COLUMNS`` (more columns are left out)
    folder : Path
    parquet : bool
    batch : FileBatch, optional

    Returns
    -------
    The paths written.
    """
    frame = trips[list(TRIP_COLUMNS)]
    con = _connection()
    try:
        con.register("safe_trips", spreadsheet_safe(frame))
        con.register("trips", frame)
        written = [_copy(con, "SELECT * FROM safe_trips", folder / "trips.csv", CSV_OPTIONS, batch)]
        if parquet:
            written.append(_copy(con, "SELECT * FROM trips", folder / "trips.parquet", PARQUET_OPTIONS, batch))
    finally:
        con.close()
    return written


# --- households ------------------------------------------------------------------------------------------------------


def _typed(frame: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Each column typed as the sample's: whole numbers as nullable integers (``30``, not ``30.0``), other numbers
    as float64, text as text; the same types in every partition (one header, one Parquet schema)."""
    for column in frame.columns:
        values = frame[column]
        source = reference[column] if column in reference.columns else values
        if pd.api.types.is_numeric_dtype(source) or pd.api.types.is_numeric_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
            known = pd.to_numeric(source, errors="coerce").dropna().to_numpy(dtype=np.float64)
            whole = (not known.size or np.all(known == np.floor(known))) and np.all(
                numbers.dropna().to_numpy() == np.floor(numbers.dropna().to_numpy())
            )
            frame[column] = numbers.astype("Int64") if whole and numbers.abs().max(skipna=True) < 2**53 else numbers
        else:
            frame[column] = values.astype(object)
    return frame


def expand_households(
    project: HouseholdProject, outcome: PartitionOutcome, prior: str, first_id: int = 1, origin: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per household and one per person of a partition.

    Returns
    -------
    (households, persons)
        ``households``: ``household_id`` (int64 from ``first_id``), one column per geography level (zone ids), the
        candidate's id as ``<prior>_<id column>`` (the sample's id for sample households), ``prior`` (the prior each
        came from; when ``origin``), ``balanced_weight`` (float64; survey weighting: the households each stands
        for), then the household ``record_columns`` of the project (the sample weight, when
        listed, is 1 for households the sample did not give: each stands for itself). ``persons``:
        ``household_id``, ``per_num`` (int64 from 1 within the household), then the persons' ``record_columns``.
        Ordered by zone, then candidate, so the
        same inputs and seed give the same rows.
    """
    sample, geography = project.sample, project.geography
    candidates = outcome.candidates
    assert candidates is not None  # a failed partition has no households to expand
    counts = outcome.households["count"].to_numpy()
    rows = np.repeat(outcome.households["row"].to_numpy(), counts)
    zones = np.repeat(outcome.households["zone"].to_numpy(), counts)
    n = rows.size
    households = pd.DataFrame({HOUSEHOLD_ID: np.arange(first_id, first_id + n, dtype=np.int64)})
    for level in geography.levels:
        households[level] = geography.crosswalk[level].to_numpy()[zones]
    households[f"{prior}_{sample.household_id}"] = candidates.households[sample.household_id].to_numpy()[rows]
    if origin:
        households["prior"] = candidates.source[rows]
    if "weight" in outcome.households:  # survey weighting: each sample household once, with its balanced weight
        households["balanced_weight"] = np.repeat(outcome.households["weight"].to_numpy(dtype=np.float64), counts)
    for column in project.record_columns(HOUSEHOLDS):
        values = candidates.households[column] if column in candidates.households else None
        households[column] = values.to_numpy()[rows] if values is not None else np.nan
    if sample.weight in households.columns:
        # a maxent or llm household has no sample weight: it stands for itself (its balancing weight means nothing
        # outside the run)
        households.loc[~candidates._sample()[rows], sample.weight] = 1.0
    members = candidates.members_per_household()
    starts = np.concatenate(([0], np.cumsum(members)[:-1]))
    sizes = members[rows]
    owner = np.repeat(np.arange(n), sizes)
    within = np.arange(owner.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    person_rows = starts[rows][owner] + within
    persons = pd.DataFrame(
        {HOUSEHOLD_ID: owner.astype(np.int64) + first_id, PERSON_NUMBER: within.astype(np.int64) + 1}
    )
    for column in project.record_columns(PERSONS):
        values = candidates.persons[column] if column in candidates.persons else None
        persons[column] = values.to_numpy()[person_rows] if values is not None else np.nan
    return _typed(households, sample.households), _typed(persons, sample.persons)


class _Appender:
    """One output table written partition by partition: a CSV and (optionally) a Parquet file under temporary names,
    renamed when done."""

    def __init__(self, folder: Path, name: str, parquet: bool = True):
        self.folder, self.name, self.parquet = folder, name, parquet
        self.csv_path = folder / f".{name}.csv.partial"
        self.parquet_path = folder / f".{name}.parquet.partial"
        self.writer: Any = None
        self.started = False

    def add(self, frame: pd.DataFrame) -> None:
        spreadsheet_safe(frame).to_csv(
            self.csv_path, mode="a" if self.started else "w", header=not self.started, index=False
        )
        if self.parquet:
            import pyarrow as pa  # type: ignore[import-untyped]
            import pyarrow.parquet as pq  # type: ignore[import-untyped]

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.parquet_path, table.schema)
            writer = self.writer
            writer.write_table(table.cast(writer.schema))
        self.started = True

    def seal(self, columns: list[str], batch: FileBatch) -> None:
        """Finish writing (an empty table gets its header) and hand the files to ``batch`` for their final names."""
        if not self.started:
            pd.DataFrame(columns=columns).to_csv(self.csv_path, index=False)
        os.chmod(self.csv_path, defaults.FILE_MODE)
        batch.adopt(self.csv_path, self.folder / f"{self.name}.csv")
        if self.parquet:
            if self.writer is None:
                pd.DataFrame(columns=columns).to_parquet(self.parquet_path, index=False)
            else:
                writer, self.writer = self.writer, None
                writer.close()
            os.chmod(self.parquet_path, defaults.FILE_MODE)
            batch.adopt(self.parquet_path, self.folder / f"{self.name}.parquet")

    def abandon(self) -> None:
        """Remove the partial files. Closing the Parquet writer may fail for the same reason the write did (a full
        disk): that error is not raised again, the one that stopped the write is the caller's."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass  # the file is removed below; the caller raises the error that stopped the write
        self.csv_path.unlink(missing_ok=True)
        self.parquet_path.unlink(missing_ok=True)


class HouseholdWriter:
    """Writes a household run's outputs as its partitions end (:meth:`add`), then the fit and the report
    (:meth:`finish`).

    ``households.csv``, ``persons.csv`` (and both as Parquet), for PopulationSim projects its
    ``synthetic_households.csv`` / ``synthetic_persons.csv`` (file names and columns from its settings); at the end
    ``zone_fit.csv`` (every control in every zone), PopulationSim's ``summary_<GEOGRAPHY>.csv`` and ``report.json``.

    Parameters
    ----------
    project : HouseholdProject
    folder : Path
        The output folder (created).
    prior : str
        The run's prior (the name of the candidate id column).
    origin : bool
        Write the ``prior`` column (the prior each household came from): runs whose candidates may come from
        several priors.
    """

    def __init__(self, project: HouseholdProject, folder: Path, prior: str, origin: bool = True):
        self.project, self.folder, self.prior, self.origin = project, Path(folder), prior, origin
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tables = {"households": _Appender(self.folder, "households"), "persons": _Appender(self.folder, "persons")}
        output = project.output
        if output is not None:
            self.tables["synthetic_households"] = _Appender(self.folder, Path(output.households_file).stem, False)
            self.tables["synthetic_persons"] = _Appender(self.folder, Path(output.persons_file).stem, False)
        self.evaluation = HouseholdEvaluation(project)
        self.next_id = 1
        self.columns: dict[str, list[str]] = {}
        self.sample_weights: list[pd.DataFrame] = []  # PopulationSim's seed weights, for its output tables
        tables = project.output_tables
        if tables is not None and "expanded_household_ids" in tables.tables:  # a row per household: written as it goes
            sample, levels = project.sample, project.geography.levels
            self.tables["expanded_household_ids"] = _Appender(
                self.folder, f"{tables.prefix}expanded_household_ids", False
            )
            self.columns["expanded_household_ids"] = [*levels[levels.index(sample.seed_level) :], sample.household_id]

    def add(self, outcome: PartitionOutcome) -> None:
        """Write one partition's households and persons (after the partitions before it)."""
        if outcome.error is not None or outcome.candidates is None:
            return
        households, persons = expand_households(self.project, outcome, self.prior, self.next_id, self.origin)
        self.next_id += len(households)
        if outcome.sample_weights is not None:  # a row per sample household: kept for the tables and the report
            self.sample_weights.append(outcome.sample_weights)
        self.evaluation.add(households, persons)
        parts = {"households": households, "persons": persons, **synthetic_files(self.project, households, persons)}
        if "expanded_household_ids" in self.tables and "weight" not in outcome.households:  # none when weighting
            *below, hh_id = self.columns["expanded_household_ids"]
            parts["expanded_household_ids"] = households[[*below, f"{self.prior}_{hh_id}"]].rename(
                columns={f"{self.prior}_{hh_id}": hh_id}
            )
        for key, frame in parts.items():
            self.columns.setdefault(key, list(frame.columns))
            self.tables[key].add(frame)

    def abandon(self) -> None:
        """Remove what was started (a failed write)."""
        for table in self.tables.values():
            table.abandon()

    def finish(
        self, result: HouseholdResult, config: SynthesisConfig, seconds: float, extra: dict | None = None
    ) -> dict[str, Any]:
        """Rename the tables to their final names, write ``zone_fit.csv``, PopulationSim's summaries and
        ``report.json`` (:func:`~synthor_core.evaluate.report.household_report`, with ``extra``); returns the report."""
        with FileBatch() as batch:  # every file renamed at the end, or none (a full disk): no report without tables
            return self._write_final(result, config, seconds, extra, batch)

    def _write_final(self, result, config, seconds, extra, batch: FileBatch) -> dict[str, Any]:
        for key, table in self.tables.items():
            table.seal(self.columns.get(key, [HOUSEHOLD_ID]), batch)
        zone_fit = zone_fit_table(self.project, result.synthetic)
        batch.add(self.folder / "zone_fit.csv", csv_writer(zone_fit))
        if self.project.output is not None:
            for level, table in summary_tables(self.project, result.synthetic).items():
                batch.add(
                    self.folder / f"summary_{level}.csv",
                    csv_writer(table),
                    self.folder,
                )
        if self.project.output_tables is not None:
            for name, table in populationsim_tables(self.project, result.synthetic, self.sample_weights).items():
                batch.add(
                    self.folder / f"{self.project.output_tables.prefix}{name}.csv",
                    csv_writer(table),
                    self.folder,
                )
        evaluation = self.evaluation
        realism = evaluation.realism()
        realism_all = evaluation.realism_all()
        columns = evaluation.columns()
        report = household_report(
            self.project,
            result,
            config,
            self.prior,
            seconds,
            {
                "member_consistency": evaluation.member_consistency(),
                **({"rules": evaluation.rules()} if self.project.rules else {}),
                "realism": {
                    "mean_tvd": round(float(realism["tvd"].mean()), 4) if len(realism) else 0.0,
                    "tables": [{**r, "tvd": round(float(r["tvd"]), 4)} for r in realism.to_dict("records")],
                },
                "realism_all": {
                    "mean_tvd": round(float(realism_all["tvd"].mean()), 4) if len(realism_all) else 0.0,
                    "tables": [{**r, "tvd": round(float(r["tvd"]), 4)} for r in realism_all.to_dict("records")],
                },
                "columns": columns,
                **(extra or {}),
            },
            worst={c.name: worst_zones(self.project, result.synthetic, c.name) for c in self.project.controls},
        )
        report["warnings"] = list(report.get("warnings", [])) + column_warnings(columns)
        weighting = survey_weighting_summary(self.sample_weights)
        if weighting is not None:
            report["survey_weighting"] = weighting
        write_json(self.folder / "report.json", report, batch)
        return report


def synthetic_files(project: HouseholdProject, households: pd.DataFrame, persons: pd.DataFrame) -> dict:
    """PopulationSim's ``synthetic_households`` and ``synthetic_persons`` (its ``output_synthetic_population``) of
    the rows of ``households.csv`` and ``persons.csv``: its id column, the geography levels and the columns it lists
    (``balanced_weight`` too when weighting); empty when the project has no output settings."""
    output = project.output
    if output is None:
        return {}
    id_name = output.household_id
    hh_cols = [c for c in output.household_columns if c in households.columns]
    hh_cols += ["balanced_weight"] if "balanced_weight" in households else []  # survey weighting
    p_cols = [c for c in output.person_columns if c in persons.columns and c != PERSON_NUMBER]
    return {
        "synthetic_households": households[[HOUSEHOLD_ID, *project.geography.levels, *hh_cols]].rename(
            columns={HOUSEHOLD_ID: id_name}
        ),
        "synthetic_persons": persons[[HOUSEHOLD_ID, PERSON_NUMBER, *p_cols]].rename(columns={HOUSEHOLD_ID: id_name}),
    }


class RepopError(ValueError):
    """A repop run's base (``run --base``) cannot be read: the message names repop, the folder and what is missing."""


def read_base_run(
    project: HouseholdProject, base: Path, header_only: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The households and persons of a previous run in ``base``: Synthor's ``households.parquet`` /
    ``persons.parquet`` (or their CSVs), else PopulationSim's output files of the project's output settings (its id
    column read as ``household_id``); with ``header_only`` their columns without rows (a check before a run).
    Raises RepopError naming what is missing."""
    from .schema import spreadsheet_unescape

    rows = 0 if header_only else None

    def csv(path: Path) -> pd.DataFrame:
        return pd.read_csv(path, low_memory=False, nrows=rows)

    def read(name: str) -> pd.DataFrame | None:
        if (base / f"{name}.parquet").is_file():
            path = base / f"{name}.parquet"
            if header_only:
                import pyarrow.parquet as pq  # type: ignore[import-untyped]

                return pd.DataFrame(columns=pq.read_schema(path).names)
            return pd.read_parquet(path)
        if (base / f"{name}.csv").is_file():
            return spreadsheet_unescape(csv(base / f"{name}.csv"))
        return None

    households, persons = read("households"), read("persons")
    output = project.output
    if households is None and output is not None and (base / output.households_file).is_file():
        households = csv(base / output.households_file).rename(columns={output.household_id: HOUSEHOLD_ID})
        persons = (
            csv(base / output.persons_file).rename(columns={output.household_id: HOUSEHOLD_ID})
            if (base / output.persons_file).is_file()
            else None
        )
    if not base.is_dir():
        raise RepopError(f"repop: --base {base}: no such folder (expected a previous run's output folder)")
    if households is None or persons is None:
        named = " or ".join(
            ["households.csv and persons.csv"]
            + ([f"{output.households_file} and {output.persons_file}"] if output else [])
        )
        raise RepopError(f"repop: --base {base}: expected {named} of a previous run, found neither")
    lowest = project.geography.lowest
    missing = [c for c in (HOUSEHOLD_ID, lowest) if c not in households.columns]
    missing += [f"persons {c}" for c in (HOUSEHOLD_ID, PERSON_NUMBER) if c not in persons.columns]
    if missing:
        raise RepopError(f"repop: --base {base}: the base run's households or persons lack {', '.join(missing)}")
    return households, persons


def merge_repop(project: HouseholdProject, base: Path, out: Path, report: dict) -> dict:
    """Put the repop run just written in ``out`` on top of the base run in ``base`` (PopulationSim's
    ``expand_households.repop;replace`` or ``;append``): with ``replace`` the base households of the repopulated zones
    (the project's lowest-level zones) and their persons go; the base's other households are kept as they were, the
    new ones follow with ids after the base's largest. A column only one side has is filled from the seed sample by
    the sample household id where the row came from the sample (``seed_hh_id``). ``households`` and ``persons``
    (CSV and Parquet), PopulationSim's synthetic files and ``report.json`` (with ``repop``) are rewritten in ``out``.

    Returns the ``repop`` summary: mode, base, zones, base_households, dropped, added, households, persons, and
    ``empty_columns`` (columns left empty in some rows: neither side nor the sample had them).

    Raises RepopError when the base cannot be read; OSError when the files cannot be written (the run's own files
    stay as they were).
    """
    base = Path(base)
    old_households, old_persons = read_base_run(project, base)
    households, persons = read_base_run(project, out)
    lowest = project.geography.lowest
    zones = set(project.geography.zones(lowest).tolist())
    kept = ~old_households[lowest].isin(zones) if project.repop == "replace" else np.ones(len(old_households), bool)
    gone = old_households.loc[~kept, HOUSEHOLD_ID]
    shift = int(old_households[HOUSEHOLD_ID].max()) if len(old_households) else 0
    households = households.assign(**{HOUSEHOLD_ID: households[HOUSEHOLD_ID] + shift})
    persons = persons.assign(**{HOUSEHOLD_ID: persons[HOUSEHOLD_ID] + shift})
    merged_households = pd.concat([old_households[kept], households], ignore_index=True)
    merged_persons = pd.concat([old_persons[~old_persons[HOUSEHOLD_ID].isin(gone)], persons], ignore_index=True)
    if "prior" in merged_households:  # a run of one prior writes no prior column: its id column names it
        for column in [c for c in merged_households.columns if c.endswith(f"_{project.sample.household_id}")]:
            named = merged_households["prior"].isna() & merged_households[column].notna()
            merged_households.loc[named, "prior"] = column[: -len(project.sample.household_id) - 1]
    merged_households, merged_persons, empty = _fill_from_sample(project, merged_households, merged_persons)
    summary = {
        "mode": project.repop,
        "base": str(base),
        "zones": len(zones),
        "base_households": int(len(old_households)),
        "dropped": int(len(gone)),
        "added": int(len(households)),
        "households": int(len(merged_households)),
        "persons": int(len(merged_persons)),
        "empty_columns": empty,
    }
    sample = project.sample
    merged_households = _typed(merged_households, sample.households)
    merged_persons = _typed(merged_persons, sample.persons)
    with FileBatch() as batch:
        parts = {"households": merged_households, "persons": merged_persons}
        for name, frame in parts.items():
            batch.add(out / f"{name}.csv", csv_writer(frame), out)
            batch.add(out / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False), out)
        files = synthetic_files(project, merged_households, merged_persons)
        if files and project.output is not None:
            for key, file in (
                ("synthetic_households", project.output.households_file),
                ("synthetic_persons", project.output.persons_file),
            ):
                batch.add(out / file, csv_writer(files[key]), out)
        write_json(out / "report.json", {**report, "repop": summary}, batch)
    return summary


def _fill_from_sample(project: HouseholdProject, households: pd.DataFrame, persons: pd.DataFrame):
    """Empty cells of sample columns filled from the seed sample where the household came from it (its id in
    ``seed_hh_id``; persons by that id and ``per_num``); returns the frames and the columns still empty somewhere."""
    sample = project.sample
    source = f"seed_{sample.household_id}"
    empty: list[str] = []
    if source in households:
        by_id = sample.households.set_index(sample.household_id)
        ids = households[source]
        for column in households.columns:
            if column in by_id.columns and column not in project.geography.levels and households[column].isna().any():
                lookup = by_id[column].reindex(ids.to_numpy()).to_numpy()
                households[column] = households[column].where(households[column].notna(), lookup)
        numbered = sample.numbered_persons()
        key = pd.MultiIndex.from_arrays([numbered[sample.household_id], numbered[PERSON_NUMBER]])
        owner = households.set_index(HOUSEHOLD_ID)[source].reindex(persons[HOUSEHOLD_ID].to_numpy()).to_numpy()
        wanted = pd.MultiIndex.from_arrays([owner, persons[PERSON_NUMBER].to_numpy()])
        for column in persons.columns:
            if column in numbered.columns and column != sample.household_id and persons[column].isna().any():
                lookup = pd.Series(numbered[column].to_numpy(), index=key).reindex(wanted).to_numpy()
                persons[column] = persons[column].where(persons[column].notna(), lookup)
    for unit, frame in ((HOUSEHOLDS, households), (PERSONS, persons)):
        domain = {col for (u, col) in project.codebook if u == unit}
        empty += [
            f"{unit}.{c}"
            for c in frame.columns
            if c in domain and frame[c].isna().any() and not _may_be_empty(project, unit, c)
        ]
    return households, persons, empty


def _may_be_empty(project: HouseholdProject, unit: str, column: str) -> bool:
    domain = project.codebook.get((unit, column))
    return bool(getattr(domain, "empty", False))


def column_warnings(columns: list[dict]) -> list[str]:
    """A warning per column of the records with empty values or values outside its domain
    (:meth:`~synthor_core.evaluate.households.HouseholdEvaluation.columns`): incomplete records are a problem even
    when every control fits."""
    out = []
    for c in columns:
        if c["units"] and c["empty"] == c["units"]:
            out.append(f"{c['unit']} column {c['column']} is empty in every record (expected {c['domain']})")
        elif c["outside"]:
            out.append(
                f"{c['unit']} column {c['column']}: {c['outside']:,} of {c['units']:,} values are outside its domain "
                f"(expected {c['domain']})"
            )
    return out


def summary_tables(project: HouseholdProject, synthetic: dict) -> dict[str, pd.DataFrame]:
    """PopulationSim's ``summary_<GEOGRAPHY>``: one row per zone of each level with controls (the zones with a row in
    its control table), ``geography``, ``id``, then every control's ``<name>_control``, then every ``<name>_result``,
    then every ``<name>_diff``, in PopulationSim's column order (``steps/summarize.summarize_geography``)."""
    tables = {}
    for level in project.geography.levels:
        controls = [c for c in project.controls if c.level == level]
        if not controls:
            continue
        zones = project.geography.zones(level)
        columns: dict[str, object] = {"geography": level, "id": zones.to_numpy()}
        columns.update({f"{c.name}_control": c.totals for c in controls})
        columns.update({f"{c.name}_result": synthetic[c.name] for c in controls})
        columns.update({f"{c.name}_diff": synthetic[c.name] - c.totals for c in controls})
        tables[level] = pd.DataFrame(columns)
    return tables


def populationsim_tables(
    project: HouseholdProject, synthetic: dict, sample_weights: list[pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """PopulationSim's output tables the project's ``output_tables`` lists (``steps/output.write_tables``), by name.

    ``<SEED>_weights``: the sample id, the seed zone, ``preliminary_balanced_weight`` (Synthor balances every level at
    once: the same as ``balanced_weight``), ``sample_weight``, ``balanced_weight``, ``integer_weight`` (integerized
    runs); ``summary_hh_weights``: the id, ``<SEED>_balanced_weight`` (and ``<SEED>_integer_weight``);
    ``incidence_table``: the id, each control's incidence, the levels from the top to the seed level,
    ``sample_weight``; ``summary_<LEVEL>``: :func:`summary_tables`. ``expanded_household_ids`` (the levels from the
    seed level down and the sample id, a row per household; empty for survey weighting, as PopulationSim's) is
    written partition by partition by :class:`HouseholdWriter`, as ``households.csv`` is.

    ``sample_weights``: the partitions' :attr:`~synthor_core.synthesis.events.PartitionOutcome.sample_weights`.
    """
    chosen = project.output_tables.tables if project.output_tables is not None else ()
    sample, levels = project.sample, project.geography.levels
    hh_id, seed = sample.household_id, sample.seed_level
    weights = pd.concat(sample_weights, ignore_index=True) if sample_weights else pd.DataFrame()
    if len(weights):
        weights = weights.sort_values([seed, hh_id], kind="stable").reset_index(drop=True)
    integer = ["integer_weight"] if "integer_weight" in weights else []
    out: dict[str, pd.DataFrame] = {}
    if f"{seed}_weights" in chosen:
        table = weights.reindex(columns=[hh_id, seed, "balanced_weight", "sample_weight", *integer]).copy()
        table.insert(2, "preliminary_balanced_weight", table["balanced_weight"])
        out[f"{seed}_weights"] = table[
            [hh_id, seed, "preliminary_balanced_weight", "sample_weight", "balanced_weight", *integer]
        ]
    if "summary_hh_weights" in chosen:
        renamed = {"balanced_weight": f"{seed}_balanced_weight", "integer_weight": f"{seed}_integer_weight"}
        out["summary_hh_weights"] = weights.reindex(columns=[hh_id, "balanced_weight", *integer]).rename(
            columns=renamed
        )
    if "incidence_table" in chosen:
        above = levels[: levels.index(seed) + 1]
        table = weights.reindex(columns=[hh_id, *(c.name for c in project.controls), seed, "sample_weight"]).copy()
        crosswalk = project.geography.crosswalk.drop_duplicates(seed).set_index(seed)
        for level in above:
            if level != seed:
                table[level] = crosswalk[level].reindex(table[seed].to_numpy()).to_numpy()
        out["incidence_table"] = table[[hh_id, *(c.name for c in project.controls), *above[::-1], "sample_weight"]]
    for level, table in summary_tables(project, synthetic).items():
        if f"summary_{level}" in chosen:
            out[f"summary_{level}"] = table
    return out


def survey_weighting_summary(sample_weights: list[pd.DataFrame]) -> dict | None:
    """What survey weighting did to the sample weights, for ``report.json``: ``sample_households``, ``households``
    (the sum of the balanced weights) and ``ratio_to_sample_weight`` (min, median, max of balanced / sample weight
    over the households with a sample weight above 0); None for an integerized run (its tables have
    ``integer_weight``) or without sample households."""
    if not sample_weights:
        return None
    weights = pd.concat(sample_weights, ignore_index=True)
    if "integer_weight" in weights or not len(weights):
        return None
    given = weights["sample_weight"].to_numpy(dtype=np.float64)
    ratio = weights["balanced_weight"].to_numpy(dtype=np.float64)[given > 0] / given[given > 0]
    return {
        "sample_households": int(len(weights)),
        "households": round(float(weights["balanced_weight"].sum()), 3),
        "ratio_to_sample_weight": {
            "min": round(float(ratio.min()), 4) if ratio.size else None,
            "median": round(float(np.median(ratio)), 4) if ratio.size else None,
            "max": round(float(ratio.max()), 4) if ratio.size else None,
        },
    }
