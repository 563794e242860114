"""Never lose a run: a process killed mid-run (kill -9) leaves a readable store whose run is marked interrupted
with the population it had saved; that population downloads, resumes and deletes. The store is shared by two
processes at once (the killed one writes while this one reads)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

from synthor_core.runner import Runner
from synthor_core.store import RunStore

ROOT = Path(__file__).resolve().parents[2]

SLOW_RUN = textwrap.dedent("""
    import sys, time
    from synthor_core.synthesis.loop import SynthesisConfig
    from synthor_core.priors.maxent import MaxEntPrior
    from synthor_core.runner import Runner
    from synthor_core.store import RunStore
    from synthor_core.readers.project import load_project

    class SlowPrior(MaxEntPrior):  # an LLM-like prior: each plan takes a while
        def plan(self, guidance, rng):
            time.sleep(0.4)
            return super().plan(guidance, rng)

    project = load_project(sys.argv[2])
    runner = Runner(RunStore(sys.argv[1]))
    config = SynthesisConfig(seed=3, max_iterations=200, tolerance_tvd=1e-6, max_proposals=2)
    run_id = runner.start(project, config, lambda p, c, r: SlowPrior(p, mode=c.mode), label="slow", owner="alice")
    print(run_id, flush=True)
    runner.wait(run_id)
""")


def test_a_killed_process_leaves_an_interrupted_run_that_downloads_resumes_and_deletes(tmp_path, small_project_dir):
    path = tmp_path / "data" / "runs.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, str(path), str(small_project_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        run_id = child.stdout.readline().strip()
        assert len(run_id) == 12
        store = RunStore(path)  # a second process opens the same store while the first one writes to it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(store.iterations(run_id)) < 3:
            time.sleep(0.2)
        assert store.runs().loc[0, "status"] == "running"
        assert Runner(store).interrupted == []  # the run's process lives: it is not touched
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    runner = Runner(RunStore(path))  # as the app does when it starts again
    assert runner.interrupted == [run_id]
    row = runner.store.runs().iloc[0]
    assert row["status"] == "interrupted" and row["owner"] == "alice"
    assert row["stop_reason"].startswith("interrupted: the process ended after iteration ")
    assert row["stop_reason"].endswith("is kept, not calibrated")
    saved = runner.store.population(run_id)
    events = runner.store.iterations(run_id)
    assert saved is not None and int(saved["count"].sum()) == events[0].population_total  # iteration 1's checkpoint
    people = pd.read_csv(io.BytesIO(runner.store.exports(run_id)["population.csv"]))
    assert len(people) == int(saved["count"].sum()) and list(people.columns) == ["person_id", "age", "sex", "employed"]
    assert runner.store.report(run_id)["status"] == "interrupted"

    try:
        runner.resume(run_id, tmp_path / "resumed", owner="bob")
        raise AssertionError("another owner resumed the run")
    except PermissionError as exc:
        assert str(exc) == f"run {run_id} belongs to another user of this server"
    resumed = runner.resume(run_id, tmp_path / "resumed", owner="alice")
    snap = runner.wait(resumed, timeout_s=120)
    assert snap.status == "finished" and int(snap.result.population["count"].sum()) == 1000
    assert snap.events[0].population_total >= int(saved["count"].sum())  # it went on from what was saved
    assert runner.store.runs(owner="alice")["project_label"].tolist() == [f"slow (resumed from {run_id})", "slow"]
    try:
        runner.store.delete_run(run_id, owner="bob")
        raise AssertionError("another owner deleted the run")
    except PermissionError:
        pass
    runner.store.delete_run(run_id, owner="alice")
    assert runner.store.runs()["run_id"].tolist() == [resumed]


def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_a_readable_store(tmp_path, small_project_dir, monkeypatch):
    """The disk fills after the first checkpoint: the run fails with the reason, the store stays readable, and the
    population saved at iteration 1 is the failed run's population, complete and downloadable."""
    import errno

    from synthor_core.readers.project import load_project
    from synthor_core.synthesis.config import SynthesisConfig

    saves = []
    real_save = RunStore.save_checkpoint

    def full_disk(self, run_id, iteration, population):
        saves.append(iteration)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(self, run_id, iteration, population)

    monkeypatch.setattr(RunStore, "save_checkpoint", full_disk)
    monkeypatch.setattr("synthor_core.runner.CHECKPOINT_INTERVAL_S", 0.0)  # a checkpoint every iteration
    runner = Runner(RunStore(tmp_path / "runs.duckdb"))
    project = load_project(small_project_dir)
    run_id = runner.start(project, SynthesisConfig(seed=2, tolerance_tvd=1e-9, max_iterations=50))
    snap = runner.wait(run_id, timeout_s=60)
    assert snap.status == "failed" and snap.error == "OSError: [Errno 28] No space left on device"
    row = RunStore(tmp_path / "runs.duckdb").runs().iloc[0]  # another opening of the file: readable
    assert row["status"] == "failed" and row["stop_reason"].startswith("failed: an error stopped it after iteration")
    assert row["stop_reason"].endswith("the population saved at iteration 1 is kept, not calibrated")
    people = pd.read_csv(io.BytesIO(runner.store.exports(run_id)["population.csv"]))
    assert len(people) == runner.store.report(run_id)["records"] == snap.events[0].population_total
