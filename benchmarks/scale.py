"""Scale: how time and memory grow with the population size N (Adult targets, maxent prior, full mode).

Each N runs in a fresh subprocess so that its peak memory (max RSS) is its own. Columns: seconds per iteration
for the aggregation alone and for the whole iteration (median), total seconds, peak memory, distinct records.
A second table times the aggregation of a population of 10^6 *distinct* records (the worst case: every record
different) over 15 target tables with DuckDB, against pandas ``groupby`` on the same frame in the same run.

Run: ``python benchmarks/scale.py [--sizes 10000 100000 1000000 10000000]``; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthor_core.aggregate import Aggregator  # noqa: E402
from synthor_core.priors.maxent import MaxEntPrior  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import IterationEvent
from synthor_core.synthesis.loop import run_synthesis  # noqa: E402

EXAMPLE = ROOT / "examples" / "adult"


def child(size: int) -> None:
    """Run one synthesis of ``size`` persons and print its measurements as JSON."""
    project = load_project(EXAMPLE)
    started = time.perf_counter()
    events, result = [], None
    for event in run_synthesis(project, MaxEntPrior(project), SynthesisConfig(size=size, seed=1)):
        if isinstance(event, IterationEvent):
            events.append(event)
        else:
            result = event
    total = time.perf_counter() - started
    print(
        json.dumps(
            {
                "size": size,
                "iterations": len(events),
                "total_s": total,
                "aggregate_s": statistics.median(e.aggregate_seconds for e in events),
                "iteration_s": statistics.median(e.seconds for e in events[1:] or events),
                "first_iteration_s": events[0].seconds,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "distinct": len(result.population),
                "persons": int(result.population["count"].sum()),
                "mean_tvd": result.fit.mean_tvd,
                "max_tvd": result.fit.max_tvd,
            }
        )
    )


def aggregation_table(n_records: int = 1_000_000, n_tables: int = 15, repeats: int = 5) -> None:
    """Time DuckDB aggregation of ``n_records`` distinct records over ``n_tables`` tables against pandas."""
    project = load_project(EXAMPLE)
    tables = project.tables[:n_tables]
    rng = np.random.default_rng(0)
    population = MaxEntPrior(project).joint.values(MaxEntPrior(project).joint.sample_cells(n_records, {}, rng), {}, rng)
    population, _ = project.schema.encode(population)
    population["count"] = rng.integers(1, 5, size=len(population))
    with Aggregator(project.schema, tables) as aggregator:
        aggregator.aggregate(population)  # warm-up
        duck = []
        for _ in range(repeats):
            t = time.perf_counter()
            aggregator.aggregate(population)
            duck.append(time.perf_counter() - t)
    pandas_s = []
    for _ in range(repeats):
        t = time.perf_counter()
        for table in tables:
            keys = [
                population[v]
                if v not in table.bins
                else np.clip(
                    np.searchsorted(table.bins[v].edges, population[v], side="right") - 1, 0, len(table.bins[v]) - 1
                )
                for v in table.variables
            ]
            population.groupby(keys)["count"].sum()
        pandas_s.append(time.perf_counter() - t)
    d, p = statistics.median(duck), statistics.median(pandas_s)
    print(f"\nAggregation of {len(population):,} records over {len(tables)} tables (median of {repeats}):\n")
    print("| engine | seconds | ratio to pandas |")
    print("|---|---|---|")
    print(f"| DuckDB (Synthor) | {d:.3f} | {d / p:.2f} |")
    print(f"| pandas groupby (baseline) | {p:.3f} | 1.00 |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = []
    for size in args.sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(size)], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("Scale, Adult targets (19 tables), maxent prior, full mode, seed 1, 2 cores\n")
    print(
        "| N | iterations | s/iteration: aggregation | s/iteration: whole | first iteration s | total s | "
        "peak MiB | distinct records | mean TVD | max TVD |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']:,} | {r['iterations']} | {r['aggregate_s']:.4f} | {r['iteration_s']:.3f} | "
            f"{r['first_iteration_s']:.2f} | {r['total_s']:.1f} | {r['peak_mib']:.0f} | {r['distinct']:,} | "
            f"{r['mean_tvd']:.4f} | {r['max_tvd']:.4f} |"
        )
    aggregation_table()


if __name__ == "__main__":
    main()
