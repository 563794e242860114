"""Survey weighting, Synthor and PopulationSim 0.10.0 side by side on the same projects (issue 22 item 3).

Projects: CALM made a survey-weighting project in PopulationSim's documented format (tests/synthor_testing.py
``calm_survey_weighting_project``: 4,841 PUMS households, every control at the seed geography, bounds 0.5 and 4),
and PopulationSim's own ``examples/example_survey_weighting`` when its folder is given (``--example DIR``, from a
checkout of ActivitySim/populationsim at v0.10.0: 27,980 households in 4 clusters, BSD-3).

Synthor runs ``python -m synthor_core run PROJECT`` (seed prior); PopulationSim runs ``run_populationsim.py`` in a
copy of the project with CALM's run script when the project has none (``--populationsim-python V/bin/python``;
install: ``python -m venv V && V/bin/pip install populationsim==0.10.0 "pyarrow>=20,<22"``). Both are scored by
the same code from their ``final_<SEED>_weights.csv`` and the project's controls: each control's %RMSE over the seed
zones (100 x RMSE / mean control), the weights' ratio to the bounds, and the weights themselves compared household
by household. Each run is its own child process; wall seconds and peak memory (max RSS of that child).

Run: ``python benchmarks/survey_weighting.py [--populationsim-python V/bin/python] [--example DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from populationsim_calm import timed  # noqa: E402

from synthor_core.priors.sample import sample_candidates  # noqa: E402
from synthor_core.readers.populationsim import load_populationsim  # noqa: E402
from synthor_core.targets.model import incidence_matrix  # noqa: E402
from synthor_testing import calm_survey_weighting_project  # noqa: E402

CALM = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm"


def _score(project, weights_file: Path) -> dict:
    """%RMSE per control over the seed zones and the weights' bounds, from a ``final_<SEED>_weights.csv``."""
    sample = project.sample
    weights = pd.read_csv(weights_file)
    weights = weights.loc[:, ~weights.columns.duplicated()]  # PopulationSim writes its id column twice
    by_id = weights.groupby(sample.household_id)["balanced_weight"].sum()
    candidates = sample_candidates(project)  # the households of weight > 0, as both tools weigh them
    households = candidates.households.reset_index(drop=True)
    w = by_id.reindex(households[sample.household_id]).fillna(0.0).to_numpy()
    incidence = incidence_matrix(project.controls, candidates)
    fit = {}
    for i, c in enumerate(project.controls):
        zones = project.geography.zones(c.level)
        owner = zones.get_indexer(
            project.geography.crosswalk.drop_duplicates(sample.seed_level)
            .set_index(sample.seed_level, drop=False)[c.level]
            .reindex(households[sample.seed_level])
            .to_numpy()
        )
        result = np.bincount(owner, weights=w * incidence[:, i], minlength=zones.size)
        fit[c.name] = 100 * float(np.sqrt(np.mean((result - c.totals) ** 2)) / max(np.mean(c.totals), 1e-12))
    seed = sample.seed_level
    scale = households.groupby(seed)[sample.weight].transform("sum").to_numpy()
    total = project.total.totals[
        project.geography.zones(project.total.level).get_indexer(
            project.geography.crosswalk.drop_duplicates(seed)
            .set_index(seed, drop=False)[project.total.level]
            .reindex(households[seed])
            .to_numpy()
        )
    ]
    given = households[sample.weight].to_numpy(dtype=float)
    scaled = given * total / scale
    kept = given > 0
    ratio = w[kept] / scaled[kept]
    return {"fit": fit, "ratio": (float(ratio.min()), float(ratio.max())), "weights": by_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populationsim-python", type=Path, default=None)
    parser.add_argument("--example", type=Path, default=None, help="PopulationSim's example_survey_weighting folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        projects = {"CALM as survey weighting": calm_survey_weighting_project(CALM, Path(tmp) / "calm_weighting")}
        if args.example:
            projects["PopulationSim example_survey_weighting"] = args.example
        for title, folder in projects.items():
            project = load_populationsim(folder)
            seed = project.sample.seed_level
            rows = {}
            out = Path(tmp) / f"synthor_{len(rows)}_{folder.name}"
            seconds, peak = timed(
                [
                    sys.executable,
                    "-m",
                    "synthor_core",
                    "run",
                    str(folder),
                    "--prior",
                    "seed",
                    "--seed",
                    "1",
                    "--out",
                    str(out),
                    "--quiet",
                ],
                ROOT,
            )
            rows["Synthor"] = (_score(project, out / f"final_{seed}_weights.csv"), seconds, peak)
            if args.populationsim_python:
                work = Path(tmp) / f"populationsim_{folder.name}"
                shutil.copytree(folder, work, ignore=shutil.ignore_patterns("output"))
                if not (work / "run_populationsim.py").is_file():
                    shutil.copy(CALM / "run_populationsim.py", work / "run_populationsim.py")
                for path in work.rglob("*"):
                    os.chmod(path, 0o755 if path.is_dir() else 0o644)
                (work / "output").mkdir()
                seconds, peak = timed([str(args.populationsim_python), "run_populationsim.py"], work)
                rows["PopulationSim 0.10.0"] = (
                    _score(project, work / "output" / f"final_{seed}_weights.csv"),
                    seconds,
                    peak,
                )
            names = list(rows)
            print(
                f"\n{title}: {len(project.sample.households):,} sample households, {len(project.controls)} controls, "
                f"{project.geography.zones(seed).size} {seed} zones, bounds {project.min_expansion_factor} and "
                f"{project.max_expansion_factor}\n"
            )
            print("| | " + " | ".join(names) + " |")
            print("|---" * (len(names) + 1) + "|")
            for label, pick in (
                ("worst control %RMSE", lambda r: f"{max(r[0]['fit'].values()):.3f}"),
                ("mean control %RMSE", lambda r: f"{np.mean(list(r[0]['fit'].values())):.3f}"),
                ("%RMSE of the total", lambda r, total=project.total_control: f"{r[0]['fit'][total]:.4f}"),
                ("weight / scaled sample weight, min-max", lambda r: f"{r[0]['ratio'][0]:.3f}-{r[0]['ratio'][1]:.3f}"),
                ("wall seconds", lambda r: f"{r[1]:.1f}"),
                ("peak MiB", lambda r: f"{r[2]:,.0f}"),
            ):
                print(f"| {label} | " + " | ".join(pick(rows[n]) for n in names) + " |")
            if len(rows) == 2:
                a, b = (rows[n][0]["weights"] for n in names)
                a, b = a.align(b, fill_value=0.0)
                both = (a > 0) | (b > 0)
                diff = np.abs(a[both] - b[both]) / np.maximum(b[both], 1e-12)
                print(
                    f"| weights vs PopulationSim's: mean / max relative difference | "
                    f"{diff.mean():.2e} / {diff.max():.2e} | |"
                )
    print(f"\n{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
