"""The run store on a real DuckDB file, written by a real runner thread."""

from __future__ import annotations

import io
import json
import zipfile

import duckdb
import pandas as pd
import pytest

from synthor_core.errors import SynthorError
from synthor_core.readers.project import load_project
from synthor_core.runner import Runner
from synthor_core.store import RunStore
from synthor_core.synthesis.config import SynthesisConfig


def test_a_run_is_recorded_and_exported(tmp_path, small_project_dir):
    project = load_project(small_project_dir)
    with RunStore(tmp_path / "runs.duckdb") as store:
        runner = Runner(store)
        run_id = runner.start(project, SynthesisConfig(seed=4), label="small")
        snap = runner.wait(run_id, timeout_s=60)
        assert snap.status == "finished"
        runs = store.runs()
        assert runs.loc[0, "run_id"] == run_id and runs.loc[0, "status"] == "finished"
        assert runs.loc[0, "prior"] == "maxent" and runs.loc[0, "project_label"] == "small"
        assert runs.loc[0, "iterations"] == len(snap.events)
        events = store.iterations(run_id)
        assert [e.iteration for e in events] == [e.iteration for e in snap.events]
        assert events[0].proposals == snap.events[0].proposals
        assert events[-1].tvd_by_table == snap.events[-1].tvd_by_table
        files = store.exports(run_id)
        people = pd.read_csv(io.BytesIO(files["population.csv"]))
        assert list(people.columns) == ["person_id", "age", "sex", "employed"] and len(people) == 1000
        assert people["person_id"].tolist() == list(range(1, 1001))  # an id per person, rows in id order
        assert len(pd.read_parquet(io.BytesIO(files["population.parquet"]))) == 1000
        assert json.loads(files["report.json"])["records"] == 1000
        names = zipfile.ZipFile(io.BytesIO(files["project.zip"])).namelist()
        assert {"synthor.toml", "tables/age_by_sex.csv", "RUN.md"} <= set(names)
        run_md = zipfile.ZipFile(io.BytesIO(files["project.zip"])).read("RUN.md").decode()
        assert "python -m synthor_core run PROJECT --n 1000 --prior maxent --mode full --seed 4" in run_md
        store.delete_run(run_id)
        assert store.runs().empty and store.population(run_id) is None


def test_a_failed_run_keeps_its_error(tmp_path, small_project_dir):
    project = load_project(small_project_dir)

    def broken_prior(project, config, rules):
        raise RuntimeError("endpoint unreachable")

    with RunStore(tmp_path / "runs.duckdb") as store:
        runner = Runner(store)
        run_id = runner.start(project, SynthesisConfig(), prior_factory=broken_prior)
        snap = runner.wait(run_id, timeout_s=30)
        assert snap.status == "failed" and snap.error.startswith("RuntimeError: endpoint unreachable")
        assert store.runs().loc[0, "error"] == "RuntimeError: endpoint unreachable"
        assert store.exports(run_id) == {}


def test_a_store_from_a_newer_version_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "runs.duckdb"
    RunStore(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(
        SynthorError, match="was written by a newer Synthor \\(store version 99, this version reads up to 3\\)"
    ):
        RunStore(path)
    with RunStore(tmp_path / "other.duckdb") as store:  # a store from this version reopens
        assert store.runs().empty


def test_a_run_stopped_before_its_first_iteration_is_stopped_not_failed(tmp_path, small_project_dir):
    import time

    from synthor_core.priors.maxent import MaxEntPrior

    class SlowPrior(MaxEntPrior):
        def plan(self, guidance, rng):
            time.sleep(1.0)
            return super().plan(guidance, rng)

    project = load_project(small_project_dir)
    with RunStore(tmp_path / "runs.duckdb") as store:
        runner = Runner(store)
        run_id = runner.start(project, SynthesisConfig(), prior_factory=lambda p, c, r: SlowPrior(p))
        runner.stop(run_id)
        snap = runner.wait(run_id, timeout_s=30)
        assert (snap.status, snap.error, snap.events) == ("stopped", None, ())
        row = store.runs().iloc[0]
        assert row["status"] == "stopped"
        assert (
            row["stop_reason"] == "stopped: stopped on request after iteration 0; the run had saved no population yet"
        )
        assert store.exports(run_id) == {}


def test_the_rules_fit_cost_is_computed_once_per_project_and_rules(tmp_path, small_project_dir):
    import time

    from synthor_core.readers.rules import load_rules

    project = load_project(small_project_dir)
    (tmp_path / "rules.toml").write_text(
        '[[rules]]\nname = "child worker"\ncondition = "age < 16 and employed == \'yes\'"\n'
    )
    rules = load_rules(tmp_path / "rules.toml", project.schema)
    with RunStore(tmp_path / "runs.duckdb") as store:
        runner = Runner(store)
        ids = [runner.start(project, SynthesisConfig(seed=s), rules=rules) for s in (1, 2)]
        for run_id in ids:
            assert runner.wait(run_id, timeout_s=60).status == "finished"
        deadline = time.monotonic() + 30  # the cost is added to the report after the run ends
        while time.monotonic() < deadline and not all(store.report(r)["rules"]["fit_cost"] for r in ids):
            time.sleep(0.1)
        costs = [store.report(r)["rules"]["fit_cost"] for r in ids]
    assert costs[0] == costs[1] and set(costs[0]) == {"without_rules", "with_rules"}
    assert len(runner._fit_costs) == 1
