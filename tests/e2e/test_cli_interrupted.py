"""Never lose a CLI run: kill -9, Ctrl-C and a full disk each leave a complete, valid population of what was done
so far, and a bad ``--out`` is refused before any work starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from synthor_core import cli
from synthor_testing import ROOT

VARIABLES = ["age", "sex", "race", "education", "marital_status", "occupation", "workclass", "hours_per_week", "income"]
SLOW = ["run", "examples/adult", "--n", "200000", "--tolerance", "0.00001", "--max-iterations", "80", "--seed", "2"]


def _start(out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "synthor_core", *SLOW, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(out, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if (out / "report.json").exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint before the run ended: {child.communicate()}")


def _valid_population(out) -> tuple[pd.DataFrame, dict]:
    report = json.loads((out / "report.json").read_text())
    people = pd.read_csv(out / "population.csv")
    assert list(people.columns) == ["person_id", *VARIABLES] and len(people) == report["records"]
    assert people.notna().all().all() and people["age"].between(17, 90).all()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    return people, report


def test_kill_9_mid_run_leaves_the_last_checkpoint_complete(tmp_path):
    out = tmp_path / "out"
    child = _start(out)
    try:
        _wait_for_checkpoint(out, child)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    people, report = _valid_population(out)
    assert report["status"] == "checkpoint" and report["iterations"] >= 1
    assert report["stop_reason"].startswith(
        f"not finished: population.csv holds the population saved at iteration {report['iterations']} (not calibrated)"
    )


def test_ctrl_c_calibrates_and_writes_what_was_built(tmp_path):
    out = tmp_path / "out"
    child = _start(out)
    try:
        _wait_for_checkpoint(out, child)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    assert "stopping (SIGINT): the population built so far is calibrated and written" in stderr
    assert f"stopped on request: the population built so far is calibrated and written to {out}" in stderr
    people, report = _valid_population(out)
    assert report["status"] == "stopped" and report["stop_reason"] == "stop requested"
    assert len(people) == 200000  # calibrated and integerized to N
    assert stdout.count("iteration ") == report["iterations"] < 80


def test_a_bad_out_folder_is_refused_before_the_run(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    started = time.monotonic()
    assert cli.main(["run", str(ROOT / "examples/adult"), "--out", str(blocker)]) == 2
    assert capsys.readouterr().err == f"error: --out {blocker}: a file of that name exists; expected a folder\n"
    assert cli.main(["run", str(ROOT / "examples/adult"), "--out", str(blocker / "sub")]) == 2
    assert capsys.readouterr().err == f"error: --out {blocker / 'sub'}: cannot write there (Not a directory)\n"
    assert time.monotonic() - started < 20  # refused at once, not after a synthesis
