"""Households at scale (issue #12): CALM repeated K times as K PUMAs, 1 and 2 local workers, and Dask.

Builds, from the bundled ``examples/calm`` household project, a project of K copies of CALM side by side: copy k
has PUMA 600 + k, its own TRACT and TAZ ids and its own copy of the seed sample (ids shifted), and the REGION
controls multiplied by K (K x 62,041 households, K x 930 TAZ). Then runs ``python -m synthor_core run`` on it with
``--workers 1``, ``--workers 2`` and, with ``--dask``, on a ``dask scheduler`` with two ``dask worker`` processes
started from this environment, and prints households, wall seconds, households per second per worker, peak
memory (max RSS of the run's process tree, from ``os.wait4``), the ratio 2 workers / 1 worker, and whether the
outputs are byte-identical.

Run: ``python benchmarks/scale_households.py [--k 1 8] [--dask] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from populationsim_calm import GROUPS  # the same control groups as the side-by-side benchmark (this folder)

ROOT = Path(__file__).resolve().parents[1]
CALM = ROOT / "examples" / "calm"
TAZ_STEP, TRACT_STEP, ID_STEP = 100_000, 10_000_000, 10_000_000


def build_calm_times(k: int, folder: Path) -> Path:
    """Write CALM x k into ``folder`` (a Synthor household project) and return it."""
    shutil.copytree(CALM, folder, ignore=shutil.ignore_patterns("*.py", "README.md"))
    data = folder / "data"

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(CALM / "data" / name, comment="#")

    def copies(frame: pd.DataFrame, shift) -> pd.DataFrame:
        return pd.concat([shift(frame.copy(), i) for i in range(k)], ignore_index=True)

    def zones(frame: pd.DataFrame, i: int) -> pd.DataFrame:
        if "TAZ" in frame:
            frame["TAZ"] += i * TAZ_STEP
        if "TRACT" in frame:
            frame["TRACT"] += i * TRACT_STEP
        if "PUMA" in frame:
            frame["PUMA"] += i
        return frame

    copies(read("geo_cross_walk.csv"), zones).to_csv(data / "geo_cross_walk.csv", index=False)
    copies(read("control_totals_taz.csv"), zones).to_csv(data / "control_totals_taz.csv", index=False)
    copies(read("control_totals_tract.csv"), zones).to_csv(data / "control_totals_tract.csv", index=False)
    meta = read("scaled_control_totals_meta.csv")
    for column in meta.columns:
        if column != "REGION":
            meta[column] = meta[column] * k
    meta.to_csv(data / "scaled_control_totals_meta.csv", index=False)

    def seed(frame: pd.DataFrame, i: int) -> pd.DataFrame:
        frame["hh_id"] += i * ID_STEP
        if "PUMA" in frame:
            frame["PUMA"] += i
        return frame

    copies(read("seed_households.csv"), seed).to_csv(data / "seed_households.csv", index=False)
    copies(read("seed_persons.csv"), seed).to_csv(data / "seed_persons.csv", index=False)
    return folder


def timed(command: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run a child; returns (wall seconds, peak MiB of it and the children it waited for, its stdout)."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        log.seek(0)
        text = log.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-3000:]}")
    return seconds, usage.ru_maxrss / 1024.0, text


def digest(out: Path) -> str:
    """sha256 of households.csv and persons.csv together (first 12 hex digits)."""
    h = hashlib.sha256()
    for name in ("households.csv", "persons.csv"):
        h.update((out / name).read_bytes())
    return h.hexdigest()[:12]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_cluster(workers: int = 2):
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes from this environment; (address, stop)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen(
        [*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    procs = [scheduler] + [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    from dask.distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=60)

    def stop():
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)

    return address, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dask", action="store_true", help="also run on a dask scheduler with two workers")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows, fits = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.k:
            project = build_calm_times(k, Path(tmp) / f"calm_x{k}")
            runs = [("1 worker", 1, []), ("2 workers", 2, ["--workers", "2"])]
            stop = None
            if args.dask:
                address, stop = dask_cluster(2)
                runs.append(("dask, 2 workers", 2, ["--scheduler", address]))
            try:
                base = None
                for label, workers, extra in runs:
                    out = Path(tmp) / f"out_{k}_{workers}_{len(extra)}"
                    seconds, peak, _ = timed(
                        [
                            sys.executable,
                            "-m",
                            "synthor_core",
                            "run",
                            str(project),
                            "--seed",
                            str(args.seed),
                            "--out",
                            str(out),
                            "--quiet",
                            *extra,
                        ]
                    )
                    households = sum(1 for _ in open(out / "households.csv", encoding="utf-8")) - 1
                    same = digest(out)
                    if workers == 1:
                        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
                        pct = {c["control"]: c["pct_rmse"] for c in report["controls"]}
                        fits[k] = {g: max(pct[c] for c in controls) for g, controls in GROUPS.items()}
                    base = base or (seconds, same)
                    rows.append(
                        {
                            "K": k,
                            "households": households,
                            "run": label,
                            "seconds": seconds,
                            "households/s/worker": households / seconds / workers,
                            "peak MiB": peak,
                            "time / 1 worker": seconds / base[0],
                            "same bytes as 1 worker": "yes" if same == base[1] else "NO",
                        }
                    )
                    shutil.rmtree(out)
                    print(f"K={k} {label}: {households:,} households, {seconds:.1f} s", file=sys.stderr, flush=True)
            finally:
                if stop:
                    stop()
            shutil.rmtree(project)
    frame = pd.DataFrame(rows)
    print(f"CALM x K ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; peak = max RSS of the run's processes)\n")
    print("| K | households | run | seconds | households/s/worker | peak MiB | time / 1 worker | same bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['K']} | {r['households']:,} | {r['run']} | {r['seconds']:.1f} | "
            f"{r['households/s/worker']:,.0f} | {r['peak MiB']:,.0f} | {r['time / 1 worker']:.2f} | "
            f"{r['same bytes as 1 worker']} |"
        )
    print("\nWorst %RMSE per control group (1 worker; REGION controls split over the K PUMAs first)\n")
    print("| control group | " + " | ".join(f"K = {k}" for k in fits) + " |")
    print("|---" * (len(fits) + 1) + "|")
    for group in GROUPS:
        print(f"| {group} | " + " | ".join(f"{fits[k][group]:.2f}" for k in fits) + " |")
    one = frame[frame["run"] == "1 worker"]
    rate = float(one["households/s/worker"].iloc[-1])
    print(
        f"\nProjection: a 6,000,000-household state on 16 workers at {rate:,.0f} households/s/worker "
        f"(largest K above): {6_000_000 / (rate * 16) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
