"""PopulationSim's own CALM example, Synthor and PopulationSim side by side on the same machine (issue #9).

Synthor runs ``python -m synthor_core run example_calm`` with the seed prior and with the maxent prior (no
sample record used); PopulationSim 0.10.0, when an environment
holding it is given (``--populationsim-python V/bin/python``; install: ``python -m venv V && V/bin/pip install
populationsim==0.10.0 "pyarrow>=20,<22"``), runs ``run_populationsim.py`` on a copy of the example. Both are
scored by the same code: PopulationSim's expanded household ids are mapped back to its seed households and
measured with :func:`synthor_core.metrics.control_totals`, so each control's %RMSE over zones
(100 x RMSE / mean control, PopulationSim's validation measure) is computed identically for both tools.

Each run is its own subprocess, one after the other; wall seconds and peak memory (max RSS of that child, from
``os.wait4``) are measured here. Prints a markdown table per control group (worst %RMSE of the group) with the
ratios to PopulationSim, then the realism of Synthor's households on tables no control fixes (TVD against the
seed sample weighted by its weights) and the share of households agreeing with their members.

Run: ``python benchmarks/populationsim_calm.py [--populationsim-python V/bin/python] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthor_core.metrics import control_fit, control_totals  # noqa: E402
from synthor_core.readers.populationsim import load_populationsim  # noqa: E402
from synthor_core.targets.model import incidence_matrix  # noqa: E402
from synthor_core.units import Candidates  # noqa: E402

EXAMPLE = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm"
GROUPS = {
    "household size (TAZ)": ["hh_size_1", "hh_size_2", "hh_size_3", "hh_size_4_plus"],
    "head age (TAZ)": ["hh_age_15_24", "hh_age_25_54", "hh_age_55_64", "hh_age_65_plus"],
    "income (TAZ)": ["hh_inc_15", "hh_inc_15_30", "hh_inc_30_60", "hh_inc_60_plus"],
    "students (TAZ)": ["students_by_family_housing_type", "students_by_nonfamily_housing_type"],
    "workers (TRACT)": ["hh_wrks_0", "hh_wrks_1", "hh_wrks_2", "hh_wrks_3_plus"],
    "dwelling type (TRACT)": ["hh_by_type_sf", "hh_by_type_mf", "hh_by_type_mh", "hh_by_type_dup"],
    "occupation (REGION)": [f"persons_occ_{i}" for i in range(1, 9)],
}


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run a child; returns (wall seconds, its peak memory in MiB)."""
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{log.read().decode(errors='replace')[-3000:]}")
    return seconds, usage.ru_maxrss / 1024.0


def _fit_from_synthor(out: Path) -> dict[str, float]:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return {c["control"]: c["pct_rmse"] for c in report["controls"]}


def _fit_from_populationsim(project, output: Path) -> dict[str, float]:
    expanded = pd.read_csv(output / "final_expanded_household_ids.csv")
    seed = project.sample
    seed_row = pd.Series(np.arange(len(seed.households)), index=seed.households[seed.household_id].to_numpy())
    zone = project.geography.zones(project.geography.lowest).get_indexer(expanded["TAZ"])
    frame = pd.DataFrame({"zone": zone, "seed_row": seed_row.reindex(expanded["hh_id"]).to_numpy()})
    households = frame.groupby(["zone", "seed_row"]).size().rename("count").reset_index()
    sample = Candidates(
        seed.households,
        seed.persons,
        np.zeros(len(seed.households), np.int64),
        np.ones(len(seed.households)),
        np.full(len(seed.households), "seed", dtype=object),
        seed.household_id,
    )
    incidence = incidence_matrix(project.controls, sample)[households["seed_row"].to_numpy()]
    synthetic = control_totals(project.controls, project.geography, households["zone"], households["count"], incidence)
    fit = control_fit(project.controls, synthetic)
    return dict(zip(fit["control"], fit["pct_rmse"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populationsim-python", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    project = load_populationsim(EXAMPLE)
    rows, reports = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for prior in ("seed", "maxent"):
            out = Path(tmp) / prior
            seconds, peak = timed(
                [
                    sys.executable,
                    "-m",
                    "synthor_core",
                    "run",
                    str(EXAMPLE),
                    "--prior",
                    prior,
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(out),
                    "--quiet",
                ],
                ROOT,
            )
            households = len(pd.read_csv(out / "households.csv", usecols=["household_id"]))
            rows[f"Synthor, {prior}"] = (_fit_from_synthor(out), seconds, peak, households)
            reports[f"Synthor, {prior}"] = json.loads((out / "report.json").read_text(encoding="utf-8"))
        if args.populationsim_python:
            work = Path(tmp) / "example_calm"
            shutil.copytree(EXAMPLE, work)
            for path in work.rglob("*"):
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            (work / "output").mkdir()
            seconds, peak = timed([str(args.populationsim_python), "run_populationsim.py"], work)
            fit = _fit_from_populationsim(project, work / "output")
            households = len(pd.read_csv(work / "output" / "final_expanded_household_ids.csv"))
            rows["PopulationSim 0.10.0"] = (fit, seconds, peak, households)
    names = list(rows)
    anchor = "PopulationSim 0.10.0" if "PopulationSim 0.10.0" in rows else None
    mine = [n for n in names if n != anchor]
    ratio_names = [f"{n.split(', ')[1]} / PopulationSim" for n in mine] if anchor else []

    def ratios(values: list[float]) -> str:
        if not anchor:
            return ""
        base = values[names.index(anchor)]
        return "".join(f" | {values[names.index(n)] / base:.2f}" if base > 0 else " | -" for n in mine)

    print(
        f"CALM (example_calm): {project.geography.n_zones} TAZ, {len(project.controls)} controls, "
        f"{len(project.sample.households):,} seed households; worst %RMSE over zones per control group\n"
    )
    print("| control group | " + " | ".join(names + ratio_names) + " |")
    print("|---" * (len(names) + len(ratio_names) + 1) + "|")
    for group, controls in GROUPS.items():
        worst = [max(rows[n][0][c] for c in controls) for n in names]
        print(f"| {group} | " + " | ".join(f"{w:.2f}" for w in worst) + ratios(worst) + " |")
    for label, k, fmt in (("households", 3, "{:,.0f}"), ("wall seconds", 1, "{:.1f}"), ("peak MiB", 2, "{:,.0f}")):
        values = [rows[n][k] for n in names]
        print(f"| {label} | " + " | ".join(fmt.format(v) for v in values) + ratios(values) + " |")
    print(f"\n{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; ratio = Synthor / PopulationSim\n")
    print(
        "Realism on tables no control fixes: TVD against the seed sample (weighted), and households agreeing "
        "with their members\n"
    )
    print("| table | " + " | ".join(mine) + " |")
    print("|---" * (len(mine) + 1) + "|")
    tables = {n: {t["table"]: t["tvd"] for t in reports[n]["realism"]["tables"]} for n in mine}
    for table in ("NP x NWESR x HTYPE", "NP x AGEHOH", "AGEHOH x HHINCADJ", "OSUTAG x OCCP"):
        print(f"| {table} | " + " | ".join(f"{tables[n].get(table, float('nan')):.3f}" for n in mine) + " |")
    print(
        "| mean over all pairs and triples | "
        + " | ".join(f"{reports[n]['realism']['mean_tvd']:.3f}" for n in mine)
        + " |"
    )
    print(
        "| households agreeing with members | "
        + " | ".join(f"{100 * min(reports[n]['member_consistency'].values()):.1f} %" for n in mine)
        + " |"
    )


if __name__ == "__main__":
    main()
