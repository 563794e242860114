"""Household income inside coarse bins: Synthor's within-bin density against IPF's uniform draws, on real ACS data.

Source: the PopulationSim "example_calm" seed households (``seed_households.csv``), American Community Survey
Public Use Microdata Sample (ACS PUMS) households of the Corvallis-Albany-Lebanon area, Oregon, as shipped with
PopulationSim (https://github.com/ActivitySim/populationsim), licence BSD-3-Clause. Read from
``../shared/data/populationsim/example_calm/data/seed_households.csv`` beside the repository (``--data`` to change
it; the bundled examples/calm keeps only the columns its project reads, without HINCP).

Records: one per household ("person" in Synthor's vocabulary), unweighted (WGTP ignored). Households with an
empty or negative HINCP are dropped, as are those with an empty VEH or TEN (the header says how many). Variables:
``income`` (HINCP, USD, integer, 0 to the largest HINCP of all kept households), ``persons`` (NP: 1, 2, 3, 4, 5+),
``vehicles`` (VEH: 0, 1, 2, 3+), ``tenure`` (TEN: owned with mortgage, owned free and clear, rented, occupied
without rent).

Split: the households shuffled with ``numpy.random.default_rng(0)``; the first half ("train") gives the targets,
the second ("test") is held out and only used to measure. Targets (long format, income in the 16 ACS B19001
brackets): the four marginals and income x persons, income x tenure, persons x vehicles. Variants add a numeric
control: the aggregate income of all households (as ACS table B19025 publishes it; ``total_of``), or the mean
income per B19001 bracket (``mean_of``; the top bracket's mean shapes the smooth density's tail).

Rows: Synthor full mode with the maxent prior (smooth within-bin density, the default), the same with values
uniform inside bins, the two numeric-control variants, classical IPF on the full cross-product from a uniform seed
with values uniform inside cells (benchmarks/baselines.py), and resampling the training households (micro-data,
which no other row sees). N = number of training households; seeds 1, 2, 3.

Columns, against the test half: Wasserstein-1 distance of income (USD) and its ratio to the IPF row; mean income
and its relative error (signed); median income and its error (signed, USD); share of households with income
>= 200,000 (the top bracket) and their mean income; mean TVD to the target tables (Synthor rows); the largest
relative error of the numeric control (where present); seconds.

Run: ``python benchmarks/income.py [--seeds 1 2 3]`` from the repository root; prints markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from baselines import ipf_cross_product, resample_records  # noqa: E402

from synthor_core.priors.maxent import MaxEntPrior  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402
from synthor_core.schema import Bins, expand_records  # noqa: E402
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import SynthesisResult
from synthor_core.synthesis.loop import run_synthesis  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm" / "data" / "seed_households.csv"
# ACS table B19001 (household income in the past 12 months) brackets; the last edge is the data's maximum
B19001 = [
    0,
    10000,
    15000,
    20000,
    25000,
    30000,
    35000,
    40000,
    45000,
    50000,
    60000,
    75000,
    100000,
    125000,
    150000,
    200000,
]
TOP = 200000
PERSONS = ["1", "2", "3", "4", "5+"]
VEHICLES = ["0", "1", "2", "3+"]
TENURE = {1: "owned with mortgage", 2: "owned free and clear", 3: "rented", 4: "occupied without rent"}
TABLES = [
    ("income",),
    ("persons",),
    ("vehicles",),
    ("tenure",),
    ("income", "persons"),
    ("income", "tenure"),
    ("persons", "vehicles"),
]
VARIANTS = ("none", "aggregate income", "mean income per bracket")


def read_households(path: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """The kept households as labelled records (income int64, the others str), and how many were dropped why."""
    raw = pd.read_csv(path, usecols=["HINCP", "NP", "VEH", "TEN"])
    income = pd.to_numeric(raw["HINCP"], errors="coerce")
    dropped = {
        "empty HINCP": int(income.isna().sum()),
        "negative HINCP": int((income < 0).sum()),
    }
    keep = income.ge(0)
    dropped["empty VEH or TEN (of the rest)"] = int((keep & (raw["VEH"].isna() | raw["TEN"].isna())).sum())
    keep &= raw["VEH"].notna() & raw["TEN"].notna()
    raw = raw[keep]
    records = pd.DataFrame(
        {
            "income": income[keep].round().astype(np.int64),
            "persons": np.asarray(PERSONS)[np.clip(raw["NP"].astype(int) - 1, 0, 4)],
            "vehicles": np.asarray(VEHICLES)[np.clip(raw["VEH"].astype(int), 0, 3)],
            "tenure": raw["TEN"].astype(int).map(TENURE),
        }
    )
    assert records["tenure"].notna().all(), "a TEN code outside 1-4"
    return records.reset_index(drop=True), dropped


def _toml_list(values) -> str:
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else f"{v:g}" for v in values) + "]"


def write_project(records: pd.DataFrame, folder: Path, edges: list[float], income_max: int, variant: str) -> Path:
    """A Synthor project folder (``synthor.toml`` + ``tables/*.csv``) whose targets are computed on ``records``."""
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    bins = Bins(edges)
    binned = records.copy()
    binned["income"] = np.asarray(bins.labels)[bins.locate(records["income"])]
    lines = [
        "# Synthor project: households of the PopulationSim example_calm ACS PUMS seed (training half).",
        "",
        "[population]",
        f"size = {len(records)}",
        'description = "Households, Corvallis-Albany-Lebanon (ACS PUMS seed of PopulationSim example_calm)"',
        "",
        "[[variables]]",
        'name = "income"',
        'type = "numeric"',
        'unit = "USD"',
        "min = 0",
        f"max = {income_max}",
        "integer = true",
        'description = "Household income in the past 12 months (HINCP)"',
        "",
        "[[variables]]",
        'name = "persons"',
        'type = "categorical"',
        f"categories = {_toml_list(PERSONS)}",
        "ordered = true",
        'description = "Persons in the household (NP)"',
        "",
        "[[variables]]",
        'name = "vehicles"',
        'type = "categorical"',
        f"categories = {_toml_list(VEHICLES)}",
        "ordered = true",
        'description = "Vehicles available (VEH)"',
        "",
        "[[variables]]",
        'name = "tenure"',
        'type = "categorical"',
        f"categories = {_toml_list(TENURE.values())}",
        'description = "Tenure (TEN)"',
        "",
    ]
    for variables in TABLES:
        name = "_by_".join(variables)
        path = f"tables/{name}.csv"
        counts = binned.groupby(list(variables)).size().rename("count").reset_index()
        counts.to_csv(folder / path, index=False)
        lines += [
            "[[tables]]",
            f'name = "{name}"',
            f'file = "{path}"',
            'format = "long"',
            f"variables = {_toml_list(variables)}",
            'count_column = "count"',
        ]
        if "income" in variables:
            lines += ["[tables.bins]", f"income = {_toml_list(edges)}"]
        lines.append("")
    if variant == "aggregate income":
        (folder / "tables" / "aggregate_income.csv").write_text(f"total\n{int(records['income'].sum())}\n")
        lines += [
            "[[tables]]",
            'name = "aggregate_income"',
            'file = "tables/aggregate_income.csv"',
            "variables = []",
            'total_of = "income"',
            'count_column = "total"',
            "",
        ]
    elif variant == "mean income per bracket":
        means = records.groupby(binned["income"].rename("bracket"))["income"].mean().round(2)
        means.rename_axis("income").rename("mean").reset_index().to_csv(
            folder / "tables" / "mean_income.csv", index=False
        )
        lines += [
            "[[tables]]",
            'name = "mean_income"',
            'file = "tables/mean_income.csv"',
            'format = "long"',
            'variables = ["income"]',
            'mean_of = "income"',
            'count_column = "mean"',
            "[tables.bins]",
            f"income = {_toml_list(edges)}",
            "",
        ]
    (folder / "synthor.toml").write_text("\n".join(lines), encoding="utf-8")
    return folder


def income_metrics(income: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Distribution of ``income`` against the held-out incomes ``test``."""
    income = np.asarray(income, dtype=np.float64)
    top = income[income >= TOP]
    return {
        "W1": float(wasserstein_distance(income, test)),
        "mean": float(income.mean()),
        "mean rel. error": float(income.mean() / test.mean() - 1),
        "median": float(np.median(income)),
        "median error": float(np.median(income) - np.median(test)),
        "share >= 200k": float(len(top) / len(income)),
        "mean >= 200k": float(top.mean()) if len(top) else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    households, dropped = read_households(args.data)
    order = np.random.default_rng(0).permutation(len(households))
    half = len(households) // 2
    train = households.iloc[order[:half]].reset_index(drop=True)
    test = households.iloc[order[half:]].reset_index(drop=True)
    income_max = int(households["income"].max())
    edges = [*B19001, income_max]
    test_income = test["income"].to_numpy(dtype=np.float64)
    root = Path(tempfile.mkdtemp(prefix="synthor-income-"))
    projects = {
        v: load_project(write_project(train, root / v.replace(" ", "_"), edges, income_max, v)) for v in VARIANTS
    }
    project = projects["none"]
    size = project.size

    rows: dict[str, list[dict]] = {}

    def add(name, seed, income, seconds, fit=None):
        m = income_metrics(income, test_income)
        m["mean TVD targets"] = fit.mean_tvd if fit is not None else float("nan")
        numeric = list(fit.numeric.values()) if fit is not None else []
        m["numeric control max rel. error"] = max(n.max_relative_error for n in numeric) if numeric else float("nan")
        m["seconds"] = seconds
        rows.setdefault(name, []).append(m)

    synthor_rows = [
        ("Synthor full, maxent", "none", "smooth"),
        ("Synthor full, maxent, uniform within bins", "none", "uniform"),
        ("Synthor full, maxent, with aggregate income", "aggregate income", "smooth"),
        ("Synthor full, maxent, with mean income per bracket", "mean income per bracket", "smooth"),
    ]
    errors: list[str] = []
    for seed in args.seeds:
        for name, variant, within in synthor_rows:
            p = projects[variant]
            t0 = time.perf_counter()
            result = list(run_synthesis(p, MaxEntPrior(p, within_bin=within), SynthesisConfig(seed=seed)))[-1]
            assert isinstance(result, SynthesisResult)
            if result.error:
                errors.append(f"{name}, seed {seed}: prior failed: {result.error}")
            errors += [f"{name}, seed {seed}: {w}" for w in result.warnings]
            records = expand_records(result.population, p.schema)
            add(name, seed, records["income"].to_numpy(), time.perf_counter() - t0, result.fit)
        t0 = time.perf_counter()
        ipf = ipf_cross_product(project, size, np.random.default_rng(seed))
        add(
            "IPF, uniform seed (cross-product), uniform within bins",
            seed,
            ipf["income"].to_numpy(),
            time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
        sample = resample_records(train, size, np.random.default_rng(seed))
        add("resampled training households (micro-data)", seed, sample["income"].to_numpy(), time.perf_counter() - t0)

    ipf_w1 = float(np.mean([r["W1"] for r in rows["IPF, uniform seed (cross-product), uniform within bins"]]))
    reference = income_metrics(test_income, test_income)
    train_w1 = income_metrics(train["income"].to_numpy(), test_income)["W1"]
    print(
        f"Household income: PopulationSim example_calm ACS PUMS seed, {len(households):,} households kept "
        f"(dropped: {', '.join(f'{v} {k}' for k, v in dropped.items())}); train {len(train):,} (targets: "
        f"{len(TABLES)} tables, income in {len(edges) - 1} B19001 brackets, top [200000, {income_max}]), "
        f"test {len(test):,} held out; N = {size:,}; seeds {args.seeds}, means over seeds. Test half: mean "
        f"{reference['mean']:,.0f}, median {reference['median']:,.0f}, {reference['share >= 200k']:.2%} at "
        f">= 200,000 with mean {reference['mean >= 200k']:,.0f}. W1 of the train half itself vs test: "
        f"{train_w1:,.0f} USD (the sampling-noise floor).\n"
    )
    extra = [k for k in reference if k != "W1"]
    columns = ["W1", "W1 / IPF", *extra, "mean TVD targets", "numeric control max rel. error", "seconds"]
    print("| row | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, runs in [*rows.items(), ("test half (real, held out)", [reference])]:
        cells = []
        for c in columns:
            if c == "W1 / IPF":
                value = float(np.mean([r["W1"] for r in runs])) / ipf_w1
            else:
                value = float(np.mean([r.get(c, np.nan) for r in runs]))
            if np.isnan(value):
                cells.append("–")
            elif c in ("mean rel. error", "share >= 200k"):
                cells.append(f"{value:+.2%}" if c == "mean rel. error" else f"{value:.2%}")
            elif c in ("W1 / IPF", "mean TVD targets"):
                cells.append(f"{value:.4f}" if c == "mean TVD targets" else f"{value:.3f}")
            elif c == "numeric control max rel. error":
                cells.append(f"{value:.2e}")
            elif c == "seconds":
                cells.append(f"{value:.2f}")
            elif c == "median error":
                cells.append(f"{value:+,.0f}")
            else:
                cells.append(f"{value:,.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")

    for metric, fmt in (("W1", "{:,.0f}"), ("mean rel. error", "{:+.2%}"), ("mean >= 200k", "{:,.0f}")):
        print(f"\n{metric} of income per seed:\n")
        print("| row | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
        print("|---|" + "---|" * len(args.seeds))
        for name, runs in rows.items():
            print(f"| {name} | " + " | ".join(fmt.format(r[metric]) for r in runs) + " |")
    if errors:
        print("\nRun warnings and errors:\n" + "\n".join(f"- {e}" for e in errors))


if __name__ == "__main__":
    main()
