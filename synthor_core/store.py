"""The run store: one DuckDB file holding runs, iteration metrics, proposals, LLM calls (never secrets),
the project each run used, and final populations (DESIGN §5; STYLE.md rule 13).

Tables: ``meta`` (schema version), ``runs``, ``iterations``, ``proposals``, ``llm_calls``, and one
``population_<run_id>`` table per person run (schema columns as labels + ``count``): the final population, or the
last checkpoint of a running or interrupted run. A household run (``kind`` "households") keeps its households and
persons as files in its ``folder``, written partition by partition; its iterations carry the fit per control group.
Runs have an owner (a browser's identity in a private workspace) and the process that runs them, so that runs of a
process that died are marked "interrupted".
"""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from .aggregate import quote_ident
from .errors import StoreBusyError, SynthorError
from .export import write_persons_and_trips, write_population
from .synthesis.config import SynthesisConfig
from .synthesis.events import HouseholdIteration, IterationEvent
from .synthesis.trips import TRIP_COLUMNS, per_person_columns
from .targets.model import HouseholdProject, Project

SCHEMA_VERSION = 3  # 2: runs.owner, process, checkpoint_iteration; status "interrupted". 3: household runs in runs
_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS runs (run_id VARCHAR PRIMARY KEY, status VARCHAR, prior VARCHAR, mode VARCHAR,
       seed BIGINT, size BIGINT, settings VARCHAR, project_label VARCHAR, project_zip BLOB, started_at DOUBLE,
       ended_at DOUBLE, iterations INTEGER, mean_tvd DOUBLE, max_tvd DOUBLE, stop_reason VARCHAR, error VARCHAR,
       report VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS iterations (run_id VARCHAR, iteration INTEGER, mean_tvd DOUBLE, max_tvd DOUBLE,
       tvd_by_table VARCHAR, srmse_by_table VARCHAR, added BIGINT, removed BIGINT, rejected VARCHAR,
       population_total BIGINT, distinct_records BIGINT, llm_calls BIGINT, prompt_tokens BIGINT,
       completion_tokens BIGINT, seconds DOUBLE, aggregate_seconds DOUBLE, PRIMARY KEY (run_id, iteration))""",
    """CREATE TABLE IF NOT EXISTS proposals (run_id VARCHAR, iteration INTEGER, position INTEGER, action VARCHAR,
       count BIGINT, conditions VARCHAR, reason VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS llm_calls (run_id VARCHAR, call INTEGER, kind VARCHAR, model VARCHAR,
       prompt VARCHAR, reply VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, latency_s DOUBLE,
       outcome VARCHAR)""",
]


_MIGRATIONS = [  # from version 1
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS process VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS checkpoint_iteration INTEGER",
    # from version 2: household runs are runs (kind, folder, worst %RMSE); their iterations carry the fit by group
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'persons'",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS folder VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS worst_pct_rmse DOUBLE",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS partitions INTEGER",
    "ALTER TABLE iterations ADD COLUMN IF NOT EXISTS partition_name VARCHAR",
    "ALTER TABLE iterations ADD COLUMN IF NOT EXISTS fit VARCHAR",
    "ALTER TABLE iterations ADD COLUMN IF NOT EXISTS sources VARCHAR",
]
_OLD_HOUSEHOLD_RUNS = [  # version 2 kept household runs apart: they move into runs
    """INSERT INTO runs (run_id, status, prior, seed, project_label, started_at, ended_at, owner, kind, folder,
       worst_pct_rmse)
       SELECT h.run_id, 'finished', h.prior, h.seed, h.project_label, h.started_at, h.started_at + h.seconds, h.owner,
              'households', h.folder, h.worst_pct_rmse
       FROM household_runs h WHERE h.run_id NOT IN (SELECT run_id FROM runs)""",
    "DROP TABLE household_runs",
]


def default_data_dir() -> Path:
    """Where the app keeps its store: ``$SYNTHOR_DATA_DIR``, else the user's data folder
    (``$XDG_DATA_HOME/synthor`` or ``~/.local/share/synthor``), never the repository."""
    if os.environ.get("SYNTHOR_DATA_DIR"):
        return Path(os.environ["SYNTHOR_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "synthor"


def zip_project_folder(folder: Path) -> bytes:
    """The project folder (``synthor.toml`` and every file below it) as zip bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py":
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def process_identity() -> str:
    """This process as ``host:pid:start`` (``start`` from ``/proc/<pid>/stat``, so a reused pid is told apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def _process_start(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 (starttime), counted after the command name


def process_alive(identity: str | None) -> bool:
    """Whether the process named by :func:`process_identity` still runs. A process on another host is taken as
    alive (it cannot be checked from here); an identity from this host is alive when its pid exists and started
    at the recorded time."""
    if not identity:
        return False
    host, _, rest = identity.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, OverflowError, ProcessLookupError):
        return False
    except PermissionError:  # it exists, under another user
        pass
    return not start or _process_start(pid) == start


RUN_RULES = "run-rules.toml"  # the plausibility rules a run enforced, in its project zip

LOCK_WAIT_S = 20.0  # how long an operation waits for another process to release the store file
CHECKPOINT_INTERVAL_S = 5.0  # a running run's population is saved at most this often (and after iteration 1)


class RunStore:
    """A DuckDB file of runs, opened for each operation and closed after it, so that several processes (two app
    servers, the app and a script) can share one data folder: DuckDB lets one process hold the file at a time,
    and an operation waits up to :data:`LOCK_WAIT_S` for the other to finish. Within a process operations are
    serialized by a lock.

    Parameters
    ----------
    path : str or Path
        The ``.duckdb`` file (created with its folder when missing).

    Raises
    ------
    SynthorError
        When the file was written by a newer Synthor (its schema version is higher than this one's), or cannot be
        created (the message names the file and the reason).
    StoreBusyError
        From any operation, when another process holds the file for longer than :data:`LOCK_WAIT_S`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SynthorError(f"cannot create the data folder {self.path.parent}: {exc.strerror or exc}") from None
        with self._connect() as con:
            for statement in _DDL:
                con.execute(statement)
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise SynthorError(
                    f"the run store {self.path} was written by a newer Synthor (store version "
                    f"{row[0]}, this version reads up to {SCHEMA_VERSION}); upgrade Synthor or "
                    f"choose another data directory"
                )
            for statement in _MIGRATIONS:
                con.execute(statement)
            if self._has_table(con, "household_runs"):
                for statement in _OLD_HOUSEHOLD_RUNS:
                    con.execute(statement)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def close(self) -> None:
        """Nothing stays open between operations; kept so that ``with RunStore(...)`` reads naturally."""

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation (waiting while another process holds the file), closed after it."""
        with self._lock:
            deadline = time.monotonic() + LOCK_WAIT_S
            while True:
                try:
                    con = duckdb.connect(str(self.path))
                    break
                except duckdb.IOException as exc:
                    if "lock" not in str(exc).lower():
                        raise SynthorError(f"cannot open the run store {self.path}: {exc}") from None
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"the run store {self.path} is held by another process for more than {LOCK_WAIT_S:.0f} s "
                            f"({str(exc).split(':', 1)[-1].strip()[:200]}); wait for it or give each server its own "
                            f"SYNTHOR_DATA_DIR"
                        ) from None
                    time.sleep(0.05)
            try:
                con.execute("SET python_enable_replacements = false")
                yield con
            finally:
                con.close()

    # ------------------------------------------------------------------------------------------- writes
    def add_run(
        self,
        run_id: str,
        config: SynthesisConfig,
        prior: str,
        project: Project | HouseholdProject,
        label: str,
        started_at: float,
        owner: str | None = None,
        folder: Path | None = None,
        rules=(),
    ) -> None:
        """Record a started run with its settings, its project folder (with the run's plausibility ``rules`` as
        ``RUN_RULES``, so that its export repeats it), its owner (a browser's identity in a private workspace, else
        None) and this process (so that a run whose process died is found); a household run (``kind``
        "households") with the ``folder`` its outputs go to."""
        households = isinstance(project, HouseholdProject)
        project_zip = zip_project_folder(project.root) if project.root is not None else None
        if project_zip is not None and rules:
            import tomli_w

            text = tomli_w.dumps({"rules": [{"name": r.name, "condition": r.condition} for r in rules]})
            buffer = io.BytesIO(project_zip)
            with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(RUN_RULES, "# The plausibility rules this run enforced\n" + text)
            project_zip = buffer.getvalue()
        if isinstance(project, HouseholdProject):
            size = int(project.households_per_zone().sum())
        else:
            size = config.size or project.size
        with self._connect() as cur:
            cur.execute(
                "INSERT INTO runs (run_id, status, prior, mode, seed, size, settings, project_label, "
                "project_zip, started_at, owner, process, kind, folder) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    prior,
                    config.mode,
                    config.seed,
                    size,
                    json.dumps(config.model_dump()),
                    label,
                    project_zip,
                    started_at,
                    owner,
                    process_identity(),
                    "households" if households else "persons",
                    str(folder) if folder is not None else None,
                ],
            )

    def add_iteration(self, run_id: str, event: IterationEvent) -> None:
        """Record one iteration's metrics and proposals."""
        self.add_iterations(run_id, [event])

    def add_iterations(self, run_id: str, events) -> None:
        """Record several iterations' metrics and proposals at once (one opening of the file): a person run's
        :class:`IterationEvent` or a household run's :class:`HouseholdIteration` (numbered in the order recorded,
        over its partitions)."""
        if not events:
            return
        with self._connect() as cur:
            row = cur.execute("SELECT count(*) FROM iterations WHERE run_id = ?", [run_id]).fetchone()
            done = int(row[0]) if row else 0
            rows, proposals = [], []
            for k, e in enumerate(events, start=done + 1):
                if isinstance(e, HouseholdIteration):
                    rows.append(_household_row(run_id, k, e))
                    proposals += [
                        [run_id, k, i, "add", p.count, json.dumps(p.conditions), p.reason]
                        for i, p in enumerate(e.proposals)
                    ]
                else:
                    rows.append(_person_row(run_id, e))
                    proposals += [
                        [run_id, e.iteration, i, p.action, p.count, json.dumps(p.conditions), p.reason]
                        for i, p in enumerate(e.proposals)
                    ]
            cur.executemany(
                "INSERT INTO iterations (run_id, iteration, mean_tvd, max_tvd, tvd_by_table, srmse_by_table, added, "
                "removed, rejected, population_total, distinct_records, llm_calls, prompt_tokens, completion_tokens, "
                "seconds, aggregate_seconds, partition_name, fit, sources) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if proposals:
                cur.executemany("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?)", proposals)

    def save_partitions(self, run_id: str, done: int) -> None:
        """A household run has written ``done`` partitions' households to its folder."""
        with self._connect() as cur:
            cur.execute("UPDATE runs SET partitions = ? WHERE run_id = ?", [done, run_id])

    def save_checkpoint(self, run_id: str, iteration: int, population: pd.DataFrame) -> None:
        """Save a running run's population so far (labels + ``count``, not calibrated) as its population; an
        interrupted run keeps it. One transaction: a kill leaves the previous checkpoint or this one."""
        with self._connect() as cur:
            cur.execute("BEGIN TRANSACTION")
            cur.register("checkpoint_population", population)
            cur.execute(
                f"CREATE OR REPLACE TABLE {quote_ident('population_' + run_id)} AS SELECT * FROM checkpoint_population"
            )
            cur.unregister("checkpoint_population")
            cur.execute("UPDATE runs SET checkpoint_iteration = ? WHERE run_id = ?", [iteration, run_id])
            cur.execute("COMMIT")

    def finish_run(
        self,
        run_id: str,
        status: str,
        ended_at: float,
        report: dict | None = None,
        population: pd.DataFrame | None = None,
        error: str | None = None,
        trips: pd.DataFrame | None = None,
    ) -> None:
        """Record the end of a run: status, report, the population (labels + ``count``) and its trips (the columns
        of ``trips.csv``, :data:`~synthor_core.synthesis.trips.TRIP_COLUMNS`), in one transaction."""
        with self._connect() as cur:
            cur.execute("BEGIN TRANSACTION")
            if population is not None:
                cur.register("final_population", population)
                cur.execute(
                    f"CREATE OR REPLACE TABLE {quote_ident('population_' + run_id)} AS SELECT * FROM final_population"
                )
                cur.unregister("final_population")
            if trips is not None:
                cur.register("final_trips", trips[list(TRIP_COLUMNS)])
                cur.execute(f"CREATE OR REPLACE TABLE {quote_ident('trips_' + run_id)} AS SELECT * FROM final_trips")
                cur.unregister("final_trips")
            iterations = report.get("iterations") if report else None
            cur.execute(
                "UPDATE runs SET status = ?, ended_at = ?, error = ?, report = ?, iterations = ?, "
                "mean_tvd = ?, max_tvd = ?, stop_reason = ?, prior = coalesce(?, prior), "
                "worst_pct_rmse = ? WHERE run_id = ?",
                [
                    status,
                    ended_at,
                    error,
                    json.dumps(report) if report else None,
                    len(iterations) if isinstance(iterations, list) else iterations,
                    report.get("mean_tvd") if report else None,
                    report.get("max_tvd") if report else None,
                    report.get("stop_reason") if report else None,
                    report.get("prior") if report else None,
                    report.get("worst_pct_rmse") if report else None,
                    run_id,
                ],
            )
            cur.execute("COMMIT")

    def update_report(self, run_id: str, report: dict) -> None:
        """Replace a finished run's ``report.json`` content (a part computed after the run ended)."""
        with self._connect() as cur:
            cur.execute("UPDATE runs SET report = ? WHERE run_id = ?", [json.dumps(report), run_id])

    def mark_interrupted(self) -> list[str]:
        """Mark every run still "running" whose process is gone (killed, crashed, the server restarted) as
        "interrupted": its recorded iterations stay, its last checkpoint becomes its population (uncalibrated), and
        a report says where it stopped. Runs of live processes are left alone. Returns the ids marked."""
        with self._connect() as cur:
            rows = cur.execute(
                "SELECT run_id, process, prior, mode, seed, size, settings, checkpoint_iteration "
                "FROM runs WHERE status = 'running'"
            ).fetchall()
        marked = []
        for run_id, process, *_ in rows:
            if process_alive(process):
                continue
            self.end_unfinished(run_id, "interrupted", "the process ended")
            marked.append(run_id)
        return marked

    def end_unfinished(self, run_id: str, status: str, why: str, error: str | None = None) -> None:
        """End a run that could not finish (``status`` "interrupted" or "failed", ``why`` in words): its recorded
        iterations stay, its last checkpoint stays as its population (uncalibrated), and a report says where it
        stopped, so that what was computed can still be downloaded."""
        with self._connect() as cur:
            row = cur.execute(
                "SELECT prior, mode, seed, size, settings, checkpoint_iteration FROM runs WHERE run_id = ?", [run_id]
            ).fetchone()
        if row is None:
            return
        prior, mode, seed, size, settings, saved = row
        with self._connect() as cur:  # the last iteration and the saved population's size, not their contents
            last = cur.execute(
                "SELECT iteration, mean_tvd, max_tvd FROM iterations WHERE run_id = ? ORDER BY iteration DESC LIMIT 1",
                [run_id],
            ).fetchone()
            saved_size = (
                cur.execute(f"SELECT sum(count), count(*) FROM {quote_ident('population_' + run_id)}").fetchone()
                if self._has_population(cur, run_id)
                else None
            )
        reason = f"{status}: {why} after iteration {last[0] if last else 0}; the " + (
            f"population saved at iteration {saved} is kept, not calibrated"
            if saved_size is not None
            else "run had saved no population yet"
        )
        report = {
            "status": status,
            "prior": prior or "unknown",
            "iterations": saved or 0,
            "records": int(saved_size[0] or 0) if saved_size is not None else 0,
            "distinct_records": int(saved_size[1]) if saved_size is not None else 0,
            "mean_tvd": last[1] if last else None,
            "max_tvd": last[2] if last else None,
            "stop_reason": reason,
            "error": error,
            "settings": json.loads(settings) if settings else {"mode": mode, "seed": seed, "size": size},
        }
        self.finish_run(run_id, status, time.time(), report, error=error)

    def add_llm_calls(self, run_id: str, calls) -> None:
        """Record a run's LLM calls (kind, model, prompt, reply, tokens, latency, outcome); never a key."""
        if not calls:
            return
        with self._connect() as cur:
            cur.executemany(
                "INSERT INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        run_id,
                        i,
                        c.kind,
                        c.model,
                        c.prompt,
                        c.reply,
                        c.prompt_tokens,
                        c.completion_tokens,
                        c.latency_s,
                        c.outcome,
                    ]
                    for i, c in enumerate(calls)
                ],
            )

    def llm_calls(self, run_id: str) -> pd.DataFrame:
        """The recorded LLM calls of a run, in order."""
        with self._connect() as cur:
            return cur.execute("SELECT * FROM llm_calls WHERE run_id = ? ORDER BY call", [run_id]).df()

    def delete_run(self, run_id: str, owner: str | None = None) -> str | None:
        """Remove a run and everything recorded for it; returns a household run's output folder for the caller to
        remove (None otherwise). With ``owner`` given, only a run of that owner is removed (PermissionError
        otherwise); a running run whose process lives is never removed (ValueError)."""
        with self._connect() as cur:
            row = cur.execute("SELECT owner, status, process, folder FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                return None
            if owner is not None and row[0] != owner:
                raise PermissionError(f"run {run_id} belongs to another user of this server")
            if row[1] == "running" and process_alive(row[2]):
                raise ValueError(f"run {run_id} is still running: stop it first")
            cur.execute("BEGIN TRANSACTION")
            for table in ("runs", "iterations", "proposals", "llm_calls"):
                cur.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident('population_' + run_id)}")
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident('trips_' + run_id)}")
            cur.execute("COMMIT")
        return row[3]

    # -------------------------------------------------------------------------------------------- reads
    def runs(self, owner: str | None = None) -> pd.DataFrame:
        """Every run (only ``owner``'s when given), newest first: run_id, kind ("persons" or "households"), status,
        prior, mode, seed, size (persons or households), project_label, started_at, ended_at, iterations, mean_tvd,
        max_tvd (persons), worst_pct_rmse (households), stop_reason, error, owner, folder, settings (JSON text)."""
        where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        with self._connect() as cur:
            return cur.execute(
                "SELECT run_id, coalesce(kind, 'persons') AS kind, status, prior, mode, seed, size, project_label, "
                "started_at, ended_at, iterations, mean_tvd, max_tvd, worst_pct_rmse, stop_reason, error, owner, "
                f"folder, settings FROM runs {where} ORDER BY started_at DESC",
                params,
            ).df()

    def kind(self, run_id: str) -> str | None:
        """``"persons"`` or ``"households"``; None for an unknown run."""
        with self._connect() as cur:
            row = cur.execute("SELECT coalesce(kind, 'persons') FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return row[0] if row else None

    def folder(self, run_id: str) -> Path | None:
        """A household run's output folder."""
        with self._connect() as cur:
            row = cur.execute("SELECT folder FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return Path(row[0]) if row and row[0] else None

    def owner(self, run_id: str) -> str | None:
        """The owner recorded for a run (None for runs of a shared workspace or the CLI)."""
        with self._connect() as cur:
            row = cur.execute("SELECT owner FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return row[0] if row else None

    def iterations(self, run_id: str) -> list:
        """The recorded iteration events of a run (proposals included), in order: :class:`IterationEvent` for a
        person run, :class:`HouseholdIteration` for a household run (its ``iteration`` numbered over its
        partitions)."""
        with self._connect() as cur:
            rows = cur.execute("SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration", [run_id]).df()
            props = cur.execute(
                "SELECT iteration, action, count, conditions, reason FROM proposals WHERE run_id = ? "
                "ORDER BY iteration, position",
                [run_id],
            ).df()
        from .priors.base import HouseholdProposal, Proposal

        households = self.kind(run_id) == "households"
        by_iteration: dict[int, list] = {}
        for p in props.itertuples(index=False):
            conditions = json.loads(p.conditions)
            proposal: HouseholdProposal | Proposal
            if households:
                level, _, zone = str(conditions.get("zone", "")).partition(" ")
                proposal = HouseholdProposal(
                    control=conditions.get("meets", ""),
                    level=level,
                    zone=zone,
                    block=0,
                    zones=(),
                    count=int(p.count),
                    reason=p.reason,
                )
            else:
                proposal = Proposal(conditions=conditions, count=int(p.count), action=p.action, reason=p.reason)
            by_iteration.setdefault(int(p.iteration), []).append(proposal)
        if households:
            out = []
            for r in rows.itertuples(index=False):
                fit = json.loads(r.fit or "{}")
                out.append(
                    HouseholdIteration(
                        iteration=int(r.iteration),
                        partition=r.partition_name or "",
                        sweeps=int(fit.get("sweeps", 0)),
                        max_relative_gap=float(fit.get("max_relative_gap", 0.0)),
                        pct_rmse=fit.get("pct_rmse", {}),
                        fit_by_group=fit.get("fit_by_group", {}),
                        households_by_source=json.loads(r.sources or "{}"),
                        candidates=int(fit.get("candidates", 0)),
                        added=fit.get("added", {}),
                        proposals=tuple(by_iteration.get(int(r.iteration), [])),
                        rejected=json.loads(r.rejected),
                        llm_calls=int(r.llm_calls),
                        prompt_tokens=int(r.prompt_tokens),
                        completion_tokens=int(r.completion_tokens),
                        seconds=r.seconds,
                    )
                )
            return out
        return [
            IterationEvent(
                iteration=int(r.iteration),
                mean_tvd=r.mean_tvd,
                max_tvd=r.max_tvd,
                tvd_by_table=json.loads(r.tvd_by_table),
                srmse_by_table=json.loads(r.srmse_by_table),
                proposals=tuple(by_iteration.get(int(r.iteration), [])),
                added=int(r.added),
                removed=int(r.removed),
                rejected=json.loads(r.rejected),
                population_total=int(r.population_total),
                distinct_records=int(r.distinct_records),
                llm_calls=int(r.llm_calls),
                prompt_tokens=int(r.prompt_tokens),
                completion_tokens=int(r.completion_tokens),
                seconds=r.seconds,
                aggregate_seconds=r.aggregate_seconds,
            )
            for r in rows.itertuples(index=False)
        ]

    def report(self, run_id: str) -> dict | None:
        """The run's ``report.json`` content, or None while running or after a failure."""
        with self._connect() as cur:
            row = cur.execute("SELECT report FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def settings(self, run_id: str) -> dict | None:
        """The run's :class:`SynthesisConfig` settings as recorded at its start."""
        with self._connect() as cur:
            row = cur.execute("SELECT settings FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def project_zip(self, run_id: str) -> bytes | None:
        """The project folder the run used, as zip bytes."""
        with self._connect() as cur:
            row = cur.execute("SELECT project_zip FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def population(self, run_id: str) -> pd.DataFrame | None:
        """The population of a run (labels + ``count``): the final one, or the last checkpoint of a running or
        interrupted run; None when it has none."""
        with self._connect() as cur:
            if not self._has_population(cur, run_id):
                return None
            return cur.execute(f"SELECT * FROM {quote_ident('population_' + run_id)}").df()

    def trips(self, run_id: str) -> pd.DataFrame | None:
        """The trips of a finished run of a project with trips (the columns of ``trips.csv``, in person and trip
        order), or None. Trips stored before tours were numbered (one tour a person) get ``tour_num`` 1."""
        with self._connect() as cur:
            if not self._has_table(cur, f"trips_{run_id}"):
                return None
            trips = cur.execute(f"SELECT * FROM {quote_ident('trips_' + run_id)} ORDER BY person_id, trip_num").df()
        if "tour_num" not in trips.columns:
            trips["tour_num"] = 1
        return trips

    @classmethod
    def _has_population(cls, cur: duckdb.DuckDBPyConnection, run_id: str) -> bool:
        """Whether the run has a population table (final or checkpoint)."""
        return cls._has_table(cur, f"population_{run_id}")

    @staticmethod
    def _has_table(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
        found = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()
        return bool(found and found[0])

    def exports(self, run_id: str) -> dict[str, bytes]:
        """Download files of a run.

        Returns
        -------
        dict of file name -> bytes. A person run: ``population.csv`` (UTF-8, one row per person, one column per
        variable), ``population.parquet`` (:func:`synthor_core.export.write_population`, the same files as the CLI
        writes), ``report.json``, and ``project.zip`` (the project folder plus ``RUN.md`` with the command that
        repeats the run from the CLI). A household run: the files of its folder (``households.csv``,
        ``persons.csv``, both as Parquet, ``zone_fit.csv``, PopulationSim's files, ``report.json``). Empty when the
        run has no population.
        """
        if self.kind(run_id) == "households":
            folder = self.folder(run_id)
            if folder is None or not folder.is_dir():
                return {}
            return {
                p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
            }
        population = self.population(run_id)
        if population is None:
            return {}
        return person_exports(population, self.report(run_id), self.project_zip(run_id), run_id, self.trips(run_id))


def person_exports(
    population: pd.DataFrame,
    report: dict | None,
    project: bytes | None = None,
    run_id: str = "",
    trips: pd.DataFrame | None = None,
) -> dict[str, bytes]:
    """Download files of a person run: ``population.csv``, ``population.parquet``
    (:func:`synthor_core.export.write_population`), ``report.json`` (when given) and, with the project's zip bytes
    and a report, ``project.zip`` with ``RUN.md`` (the command that repeats the run from the CLI). With ``trips``
    (a project with ``[trips]``): ``persons.csv`` / ``.parquet`` (each person's trips and commute) and ``trips.csv`` /
    ``.parquet`` instead of ``population.*``, the files the CLI writes.

    Parameters
    ----------
    population : DataFrame
        Distinct records as labels with ``count``.
    report : dict or None
    project : bytes or None
        The project folder as zip bytes (:func:`zip_project_folder`).
    run_id : str
    """
    with tempfile.TemporaryDirectory(prefix="synthor-export-") as scratch:
        if trips is None:
            written = write_population(population, Path(scratch))
        else:
            assert report is not None  # trips are stored with the report of the run that made them
            per_person = per_person_columns(trips, report["trips"]["commute_purpose"])
            written = write_persons_and_trips(population, trips, per_person, Path(scratch))
        out = {p.name: p.read_bytes() for p in written}
    if report is not None:
        out["report.json"] = json.dumps(report, indent=2).encode("utf-8")
    if project is not None and report is not None:  # a running run (checkpoint) has no report yet
        settings = report["settings"]
        with zipfile.ZipFile(io.BytesIO(project)) as archive:
            with_rules = RUN_RULES in archive.namelist()
        command = (
            f"python -m synthor_core run PROJECT --n {report['records']} --prior {report['prior']} "
            f"--mode {settings['mode']} --seed {settings['seed']} --max-iterations "
            f"{settings['max_iterations']} --tolerance {settings['tolerance_tvd']}"
            + (f" --rules PROJECT/{RUN_RULES}" if with_rules else "")
            + " --out OUT"
        )
        buffer = io.BytesIO(project)
        with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "RUN.md",
                f"# Run {run_id}\n\nUnzip into a folder PROJECT and repeat the run with:"
                f"\n\n    {command}\n\nSettings: {json.dumps(settings)}\n",
            )
        out["project.zip"] = buffer.getvalue()
    return out


def _person_row(run_id: str, e: IterationEvent) -> list:
    return [
        run_id,
        e.iteration,
        e.mean_tvd,
        e.max_tvd,
        json.dumps(e.tvd_by_table),
        json.dumps(e.srmse_by_table),
        e.added,
        e.removed,
        json.dumps(e.rejected),
        e.population_total,
        e.distinct_records,
        e.llm_calls,
        e.prompt_tokens,
        e.completion_tokens,
        e.seconds,
        e.aggregate_seconds,
        None,
        None,
        None,
    ]


def _household_row(run_id: str, k: int, e: HouseholdIteration) -> list:
    """A household iteration in the iterations table: its fit (per control and per group, sweeps, largest gap,
    candidates and what was added) in ``fit``, its households by source in ``sources``; the person columns empty."""
    fit = {
        "pct_rmse": e.pct_rmse,
        "fit_by_group": e.fit_by_group,
        "sweeps": e.sweeps,
        "max_relative_gap": e.max_relative_gap,
        "candidates": e.candidates,
        "added": e.added,
        "iteration": e.iteration,
    }
    return [
        run_id,
        k,
        None,
        None,
        "{}",
        "{}",
        sum(e.added.values()),
        0,
        json.dumps(e.rejected),
        0,
        e.candidates,
        e.llm_calls,
        e.prompt_tokens,
        e.completion_tokens,
        e.seconds,
        0.0,
        e.partition,
        json.dumps(fit),
        json.dumps(e.households_by_source),
    ]
