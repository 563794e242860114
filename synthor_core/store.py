"""The run store: one DuckDB file holding runs, iteration metrics, proposals, LLM calls (never secrets),
the project each run used, and final populations (DESIGN §5; STYLE.md rule 13).

Tables: ``meta`` (schema version), ``runs``, ``iterations``, ``proposals``, ``llm_calls``, and one
``population_<run_id>`` table per run (schema columns as labels + ``count``): the final population, or the
last checkpoint of a running or interrupted run. Runs have an owner (a browser's identity in a private
workspace) and the process that runs them, so that runs of a process that died are marked "interrupted".
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
from .schema import FORMULA_PREFIXES
from .synthesis.loop import IterationEvent, SynthesisConfig
from .targets.model import Project

SCHEMA_VERSION = 2  # 2: runs.owner, runs.process, runs.checkpoint_iteration; status "interrupted"
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
    """CREATE TABLE IF NOT EXISTS household_runs (run_id VARCHAR PRIMARY KEY, owner VARCHAR, project_label VARCHAR,
       prior VARCHAR, seed BIGINT, started_at DOUBLE, seconds DOUBLE, households BIGINT, persons BIGINT,
       worst_pct_rmse DOUBLE, folder VARCHAR)""",
]


_MIGRATIONS = [  # from version 1
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS process VARCHAR",
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS checkpoint_iteration INTEGER",
]


# a text cell a spreadsheet would run as a formula (schema.FORMULA_PREFIXES, as a regular expression; "-" first)
_FORMULA_START = "^[" + "".join(sorted(FORMULA_PREFIXES, key=lambda ch: ch != "-")) + "]"


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
        project: Project,
        label: str,
        started_at: float,
        owner: str | None = None,
    ) -> None:
        """Record a started run with its settings, its project folder, its owner (a browser's identity in a
        private workspace, else None) and this process (so that a run whose process died is found)."""
        project_zip = zip_project_folder(project.root) if project.root is not None else None
        with self._connect() as cur:
            cur.execute(
                "INSERT INTO runs (run_id, status, prior, mode, seed, size, settings, project_label, "
                "project_zip, started_at, owner, process) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    prior,
                    config.mode,
                    config.seed,
                    config.size or project.size,
                    json.dumps(config.model_dump()),
                    label,
                    project_zip,
                    started_at,
                    owner,
                    process_identity(),
                ],
            )

    def add_iteration(self, run_id: str, event: IterationEvent) -> None:
        """Record one iteration's metrics and proposals."""
        self.add_iterations(run_id, [event])

    def add_iterations(self, run_id: str, events) -> None:
        """Record several iterations' metrics and proposals at once (one opening of the file)."""
        if not events:
            return
        with self._connect() as cur:
            cur.executemany(
                "INSERT INTO iterations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
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
                    ]
                    for e in events
                ],
            )
            proposals = [
                [run_id, e.iteration, i, p.action, p.count, json.dumps(p.conditions), p.reason]
                for e in events
                for i, p in enumerate(e.proposals)
            ]
            if proposals:
                cur.executemany("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?)", proposals)

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
    ) -> None:
        """Record the end of a run: status, report, and the population (labels + ``count``)."""
        with self._connect() as cur:
            cur.execute("BEGIN TRANSACTION")
            if population is not None:
                cur.register("final_population", population)
                cur.execute(
                    f"CREATE OR REPLACE TABLE {quote_ident('population_' + run_id)} AS SELECT * FROM final_population"
                )
                cur.unregister("final_population")
            cur.execute(
                "UPDATE runs SET status = ?, ended_at = ?, error = ?, report = ?, iterations = ?, "
                "mean_tvd = ?, max_tvd = ?, stop_reason = ?, prior = coalesce(?, prior) WHERE run_id = ?",
                [
                    status,
                    ended_at,
                    error,
                    json.dumps(report) if report else None,
                    report and report["iterations"],
                    report and report["mean_tvd"],
                    report and report["max_tvd"],
                    report and report["stop_reason"],
                    report and report["prior"],
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

    def delete_run(self, run_id: str, owner: str | None = None) -> None:
        """Remove a run and everything recorded for it. With ``owner`` given, only a run of that owner is removed
        (PermissionError otherwise); a running run whose process lives is never removed (ValueError)."""
        with self._connect() as cur:
            row = cur.execute("SELECT owner, status, process FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                return
            if owner is not None and row[0] != owner:
                raise PermissionError(f"run {run_id} belongs to another user of this server")
            if row[1] == "running" and process_alive(row[2]):
                raise ValueError(f"run {run_id} is still running: stop it first")
            cur.execute("BEGIN TRANSACTION")
            for table in ("runs", "iterations", "proposals", "llm_calls"):
                cur.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident('population_' + run_id)}")
            cur.execute("COMMIT")

    def add_household_run(
        self, run_id: str, folder: Path, report: dict, label: str, started_at: float, owner: str | None = None
    ) -> None:
        """Record a finished household run whose files (``households.csv``, ``persons.csv``, ``report.json``, ...)
        are in ``folder``."""
        with self._connect() as cur:
            cur.execute(
                "INSERT INTO household_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    owner,
                    label,
                    report.get("prior"),
                    report.get("seed"),
                    started_at,
                    report.get("seconds"),
                    report.get("households"),
                    report.get("persons"),
                    report.get("worst_pct_rmse"),
                    str(folder),
                ],
            )

    def household_runs(self, owner: str | None = None) -> pd.DataFrame:
        """Household runs (only ``owner``'s when given), newest first: run_id, project_label, prior, seed,
        started_at, seconds, households, persons, worst_pct_rmse, folder, owner."""
        where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        with self._connect() as cur:
            return cur.execute(
                "SELECT run_id, project_label, prior, seed, started_at, seconds, households, persons, "
                f"worst_pct_rmse, folder, owner FROM household_runs {where} "
                "ORDER BY started_at DESC",
                params,
            ).df()

    def delete_household_run(self, run_id: str, owner: str | None = None) -> str | None:
        """Forget a household run; returns its folder (for the caller to remove), None when unknown. With
        ``owner`` given, only that owner's run (PermissionError otherwise)."""
        with self._connect() as cur:
            row = cur.execute("SELECT owner, folder FROM household_runs WHERE run_id = ?", [run_id]).fetchone()
            if row is None:
                return None
            if owner is not None and row[0] != owner:
                raise PermissionError(f"run {run_id} belongs to another user of this server")
            cur.execute("DELETE FROM household_runs WHERE run_id = ?", [run_id])
        return row[1]

    # -------------------------------------------------------------------------------------------- reads
    def runs(self, owner: str | None = None) -> pd.DataFrame:
        """Every run (only ``owner``'s when given), newest first: run_id, status, prior, mode, seed, size,
        project_label, started_at, ended_at, iterations, mean_tvd, max_tvd, stop_reason, error, owner."""
        where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        with self._connect() as cur:
            return cur.execute(
                "SELECT run_id, status, prior, mode, seed, size, project_label, started_at, ended_at, "
                f"iterations, mean_tvd, max_tvd, stop_reason, error, owner FROM runs {where} "
                "ORDER BY started_at DESC",
                params,
            ).df()

    def owner(self, run_id: str) -> str | None:
        """The owner recorded for a run (None for runs of a shared workspace or the CLI)."""
        with self._connect() as cur:
            row = cur.execute("SELECT owner FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return row[0] if row else None

    def iterations(self, run_id: str) -> list[IterationEvent]:
        """The recorded iteration events of a run (proposals included), in order."""
        with self._connect() as cur:
            rows = cur.execute("SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration", [run_id]).df()
            props = cur.execute(
                "SELECT iteration, action, count, conditions, reason FROM proposals WHERE run_id = ? "
                "ORDER BY iteration, position",
                [run_id],
            ).df()
        from .priors.base import Proposal

        by_iteration: dict[int, list] = {}
        for p in props.itertuples(index=False):
            by_iteration.setdefault(int(p.iteration), []).append(
                Proposal(conditions=json.loads(p.conditions), count=int(p.count), action=p.action, reason=p.reason)
            )
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

    @staticmethod
    def _has_population(cur: duckdb.DuckDBPyConnection, run_id: str) -> bool:
        """Whether the run has a population table (final or checkpoint)."""
        found = cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [f"population_{run_id}"]
        ).fetchone()
        return bool(found and found[0])

    def exports(self, run_id: str) -> dict[str, bytes]:
        """Download files of a finished run.

        Returns
        -------
        dict of file name -> bytes: ``population.csv`` (UTF-8, one row per person, one column per variable),
        ``population.parquet``, ``report.json``, and ``project.zip`` (the project folder plus ``RUN.md`` with the
        command that repeats the run from the CLI). Empty when the run has no population.

        Source: rows are expanded from the stored distinct records by DuckDB (``range(count)``), in stored order.
        """
        table = quote_ident("population_" + run_id)
        out: dict[str, bytes] = {}
        with self._connect() as cur:
            if not self._has_population(cur, run_id):  # checked, not loaded: COPY below reads the table itself
                return {}
            with tempfile.TemporaryDirectory(prefix="synthor-export-") as folder:
                columns = cur.execute(f"DESCRIBE {table}").fetchall()
                # CSV cells never start a spreadsheet formula (spreadsheet_safe's rule, in SQL); Parquet as stored
                safe = ", ".join(
                    f"CASE WHEN regexp_matches({quote_ident(c)}::VARCHAR, '{_FORMULA_START}') THEN chr(39) || "
                    f"{quote_ident(c)}::VARCHAR ELSE {quote_ident(c)}::VARCHAR END AS {quote_ident(c)}"
                    if kind == "VARCHAR" or kind.startswith("ENUM")
                    else quote_ident(c)
                    for c, kind, *_ in columns
                    if c != "count"
                )
                plain = ", ".join(quote_ident(c) for c, *_ in columns if c != "count")
                for name, select, options in (
                    ("population.csv", safe, "FORMAT csv, HEADER true"),
                    ("population.parquet", plain, "FORMAT parquet"),
                ):
                    expand = f'SELECT {select} FROM {table} p, range(p."count")'
                    target = str(Path(folder) / name).replace("'", "''")
                    cur.execute(f"COPY ({expand}) TO '{target}' ({options})")
                    out[name] = (Path(folder) / name).read_bytes()
        report = self.report(run_id)
        out["report.json"] = json.dumps(report, indent=2).encode("utf-8")
        project = self.project_zip(run_id)
        if project is not None and report is not None:  # a running run (checkpoint) has no report yet
            settings = report["settings"]
            command = (
                f"python -m synthor_core run PROJECT --n {report['records']} --prior {report['prior']} "
                f"--mode {settings['mode']} --seed {settings['seed']} --max-iterations "
                f"{settings['max_iterations']} --tolerance {settings['tolerance_tvd']} --out OUT"
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
