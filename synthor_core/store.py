"""The run store: one DuckDB file holding runs, iteration metrics, proposals, LLM calls (never secrets),
the project each run used, and final populations (DESIGN §5; STYLE.md rule 13).

Tables: ``meta`` (schema version), ``runs``, ``iterations``, ``proposals``, ``llm_calls``, and one
``population_<run_id>`` table per finished run (schema columns as labels + ``count``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import zipfile
from pathlib import Path

import duckdb
import pandas as pd

from .aggregate import quote_ident
from .engine import IterationEvent, SynthesisConfig
from .errors import SynthorError
from .targets import Project

SCHEMA_VERSION = 1
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


class RunStore:
    """A DuckDB file of runs. Owns one connection; each thread works on its own ``cursor()``.

    Parameters
    ----------
    path : str or Path
        The ``.duckdb`` file (created with its folder when missing).

    Raises
    ------
    SynthorError
        When the file was written by a newer Synthor (its schema version is higher than this one's).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path))
        self._con.execute("SET python_enable_replacements = false")
        self._write = threading.Lock()
        for statement in _DDL:
            self._con.execute(statement)
        row = self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        elif int(row[0]) > SCHEMA_VERSION:
            self._con.close()
            raise SynthorError(f"the run store {self.path} was written by a newer Synthor (store version {row[0]}, "
                               f"this version reads up to {SCHEMA_VERSION}); upgrade Synthor or choose another "
                               f"data directory")

    def close(self) -> None:
        """Close the connection."""
        self._con.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for the calling thread (DuckDB connections are not thread-safe)."""
        cur = self._con.cursor()
        cur.execute("SET python_enable_replacements = false")
        return cur

    # ------------------------------------------------------------------------------------------- writes
    def add_run(self, run_id: str, config: SynthesisConfig, prior: str, project: Project, label: str,
                started_at: float) -> None:
        """Record a started run with its settings and its project folder."""
        project_zip = zip_project_folder(project.root) if project.root is not None else None
        with self._write:
            cur = self.cursor()
            cur.execute("INSERT INTO runs (run_id, status, prior, mode, seed, size, settings, project_label, "
                        "project_zip, started_at) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, prior, config.mode, config.seed, config.size or project.size,
                         json.dumps(config.model_dump()), label, project_zip, started_at])
            cur.close()

    def add_iteration(self, run_id: str, event: IterationEvent) -> None:
        """Record one iteration's metrics and proposals."""
        with self._write:
            cur = self.cursor()
            cur.execute("INSERT INTO iterations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, event.iteration, event.mean_tvd, event.max_tvd, json.dumps(event.tvd_by_table),
                         json.dumps(event.srmse_by_table), event.added, event.removed, json.dumps(event.rejected),
                         event.population_total, event.distinct_records, event.llm_calls, event.prompt_tokens,
                         event.completion_tokens, event.seconds, event.aggregate_seconds])
            if event.proposals:
                cur.executemany("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?)", [
                    [run_id, event.iteration, i, p.action, p.count, json.dumps(p.conditions), p.reason]
                    for i, p in enumerate(event.proposals)])
            cur.close()

    def finish_run(self, run_id: str, status: str, ended_at: float, report: dict | None = None,
                   population: pd.DataFrame | None = None, error: str | None = None) -> None:
        """Record the end of a run: status, report, and the population (labels + ``count``)."""
        with self._write:
            cur = self.cursor()
            if population is not None:
                cur.register("final_population", population)
                cur.execute(f"CREATE OR REPLACE TABLE {quote_ident('population_' + run_id)} AS "
                            "SELECT * FROM final_population")
                cur.unregister("final_population")
            cur.execute("UPDATE runs SET status = ?, ended_at = ?, error = ?, report = ?, iterations = ?, "
                        "mean_tvd = ?, max_tvd = ?, stop_reason = ?, prior = coalesce(?, prior) WHERE run_id = ?",
                        [status, ended_at, error, json.dumps(report) if report else None,
                         report and report["iterations"], report and report["mean_tvd"],
                         report and report["max_tvd"], report and report["stop_reason"], report and report["prior"],
                         run_id])
            cur.close()

    def add_llm_calls(self, run_id: str, calls) -> None:
        """Record a run's LLM calls (kind, model, prompt, reply, tokens, latency, outcome); never a key."""
        if not calls:
            return
        with self._write:
            cur = self.cursor()
            cur.executemany("INSERT INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                [run_id, i, c.kind, c.model, c.prompt, c.reply, c.prompt_tokens, c.completion_tokens, c.latency_s,
                 c.outcome] for i, c in enumerate(calls)])
            cur.close()

    def llm_calls(self, run_id: str) -> pd.DataFrame:
        """The recorded LLM calls of a run, in order."""
        cur = self.cursor()
        try:
            return cur.execute("SELECT * FROM llm_calls WHERE run_id = ? ORDER BY call", [run_id]).df()
        finally:
            cur.close()

    def delete_run(self, run_id: str) -> None:
        """Remove a run and everything recorded for it."""
        with self._write:
            cur = self.cursor()
            for table in ("runs", "iterations", "proposals", "llm_calls"):
                cur.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident('population_' + run_id)}")
            cur.close()

    # -------------------------------------------------------------------------------------------- reads
    def runs(self) -> pd.DataFrame:
        """Every run, newest first: run_id, status, prior, mode, seed, size, project_label, started_at,
        ended_at, iterations, mean_tvd, max_tvd, stop_reason, error."""
        cur = self.cursor()
        try:
            return cur.execute("SELECT run_id, status, prior, mode, seed, size, project_label, started_at, ended_at, "
                               "iterations, mean_tvd, max_tvd, stop_reason, error FROM runs "
                               "ORDER BY started_at DESC").df()
        finally:
            cur.close()

    def iterations(self, run_id: str) -> list[IterationEvent]:
        """The recorded iteration events of a run (proposals included), in order."""
        cur = self.cursor()
        try:
            rows = cur.execute("SELECT * FROM iterations WHERE run_id = ? ORDER BY iteration", [run_id]).df()
            props = cur.execute("SELECT iteration, action, count, conditions, reason FROM proposals WHERE run_id = ? "
                                "ORDER BY iteration, position", [run_id]).df()
        finally:
            cur.close()
        from .priors.base import Proposal
        by_iteration: dict[int, list] = {}
        for p in props.itertuples(index=False):
            by_iteration.setdefault(int(p.iteration), []).append(
                Proposal(conditions=json.loads(p.conditions), count=int(p.count), action=p.action, reason=p.reason))
        return [IterationEvent(
            iteration=int(r.iteration), mean_tvd=r.mean_tvd, max_tvd=r.max_tvd, tvd_by_table=json.loads(r.tvd_by_table),
            srmse_by_table=json.loads(r.srmse_by_table), proposals=tuple(by_iteration.get(int(r.iteration), [])),
            added=int(r.added), removed=int(r.removed), rejected=json.loads(r.rejected),
            population_total=int(r.population_total), distinct_records=int(r.distinct_records),
            llm_calls=int(r.llm_calls), prompt_tokens=int(r.prompt_tokens), completion_tokens=int(r.completion_tokens),
            seconds=r.seconds, aggregate_seconds=r.aggregate_seconds) for r in rows.itertuples(index=False)]

    def report(self, run_id: str) -> dict | None:
        """The run's ``report.json`` content, or None while running or after a failure."""
        cur = self.cursor()
        try:
            row = cur.execute("SELECT report FROM runs WHERE run_id = ?", [run_id]).fetchone()
        finally:
            cur.close()
        return json.loads(row[0]) if row and row[0] else None

    def project_zip(self, run_id: str) -> bytes | None:
        """The project folder the run used, as zip bytes."""
        cur = self.cursor()
        try:
            row = cur.execute("SELECT project_zip FROM runs WHERE run_id = ?", [run_id]).fetchone()
        finally:
            cur.close()
        return bytes(row[0]) if row and row[0] is not None else None

    def population(self, run_id: str) -> pd.DataFrame | None:
        """The final population of a run (labels + ``count``), or None when it has none."""
        cur = self.cursor()
        try:
            exists = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                                 [f"population_{run_id}"]).fetchone()[0]
            if not exists:
                return None
            return cur.execute(f"SELECT * FROM {quote_ident('population_' + run_id)}").df()
        finally:
            cur.close()

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
        if self.population(run_id) is None:
            return {}
        out: dict[str, bytes] = {}
        cur = self.cursor()
        try:
            with tempfile.TemporaryDirectory(prefix="synthor-export-") as folder:
                expand = f'SELECT p.* EXCLUDE ("count") FROM {table} p, range(p."count")'
                for name, options in (("population.csv", "FORMAT csv, HEADER true"),
                                      ("population.parquet", "FORMAT parquet")):
                    target = str(Path(folder) / name).replace("'", "''")
                    cur.execute(f"COPY ({expand}) TO '{target}' ({options})")
                    out[name] = (Path(folder) / name).read_bytes()
        finally:
            cur.close()
        report = self.report(run_id)
        out["report.json"] = json.dumps(report, indent=2).encode("utf-8")
        project = self.project_zip(run_id)
        if project is not None:
            settings = report["settings"]
            command = (f"python -m synthor_core run PROJECT --n {report['records']} --prior {report['prior']} "
                       f"--mode {settings['mode']} --seed {settings['seed']} --max-iterations "
                       f"{settings['max_iterations']} --tolerance {settings['tolerance_tvd']} --out OUT")
            buffer = io.BytesIO(project)
            with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("RUN.md", f"# Run {run_id}\n\nUnzip into a folder PROJECT and repeat the run with:"
                                           f"\n\n    {command}\n\nSettings: {json.dumps(settings)}\n")
            out["project.zip"] = buffer.getvalue()
        return out
