"""The CLI runs partitions in this process, in 2 local processes and on a Dask LocalCluster: the same bytes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT.parent / "shared" / "data" / "populationsim" / "example_test"
pytestmark = pytest.mark.skipif(not EXAMPLE.is_dir(), reason="shared/data/populationsim not present")


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(EXAMPLE), "--seed", "5", "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done


def _digest(out: Path) -> list[str]:
    return [hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("households.csv", "persons.csv")]


def test_same_bytes_for_one_worker_two_workers_and_dask(tmp_path):
    from dask.distributed import LocalCluster

    one = _run(tmp_path / "one")
    lines = [line for line in one.stdout.splitlines() if line.startswith("partition ")]
    assert [line.split(" (")[0] for line in lines] == [f"partition PUMA={p}" for p in range(600, 606)]
    _run(tmp_path / "two", "--workers", "2")
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = _run(tmp_path / "dask", "--scheduler", cluster.scheduler_address)
    assert f"running partitions on {cluster.scheduler_address}" in dask.stdout
    assert _digest(tmp_path / "one") == _digest(tmp_path / "dask")


def test_bad_partition_settings_exit_2(tmp_path):
    for extra, message in (
        (["--workers", "0"], "error: --workers must be 1 or more, got 0"),
        (["--partition", "TAZ"], "the partition level must be the seed level PUMA or one above it, got 'TAZ'"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "synthor_core", "run", str(EXAMPLE), "--out", str(tmp_path / "o"), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2 and message in done.stderr
