"""Adult: fit to the targets and fidelity beyond them, against the real records.

Targets: the 19 tables of examples/adult (9 marginals + 10 two-way cross-tabulations, all 48,842 persons).
Beyond the targets: TVD against the real persons on three-way tables that were not targets.
Rows: Synthor full and paper mode (maxent prior), and independent marginals (the maximum-entropy joint of the
nine marginals alone, i.e. every variable drawn independently from its marginal).

Run: ``python benchmarks/adult.py [--seeds 1 2 3]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthor_core.engine import SynthesisConfig, SynthesisResult, run_synthesis  # noqa: E402
from synthor_core.evaluate import compare_tables  # noqa: E402
from synthor_core.priors.maxent import MaxEntPrior  # noqa: E402
from synthor_core.targets import load_project  # noqa: E402

NON_TARGETS = [("age", "education", "income"), ("sex", "occupation", "income"), ("marital_status", "age", "sex"),
               ("education", "occupation", "sex"), ("workclass", "hours_per_week", "income")]


def _read_real():
    spec = importlib.util.spec_from_file_location("adult_derive", ROOT / "examples" / "adult" / "derive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_adult_records("all")


def _run(project, mode, seed):
    started = time.perf_counter()
    result = list(run_synthesis(project, MaxEntPrior(project, mode=mode), SynthesisConfig(mode=mode, seed=seed)))[-1]
    assert isinstance(result, SynthesisResult)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    project = load_project(ROOT / "examples" / "adult")
    marginals = dataclasses.replace(project, tables=tuple(t for t in project.tables if len(t.variables) == 1))
    real = _read_real()
    rows = {"Synthor full (maxent)": (project, "full"), "Synthor paper (maxent)": (project, "paper"),
            "independent marginals": (marginals, "full")}
    results = {}
    for label, (targets, mode) in rows.items():
        per_seed = []
        for seed in args.seeds:
            result, seconds = _run(targets, mode, seed)
            fit = project_fit(project, result.population)
            beyond = compare_tables(project, result.population, real, NON_TARGETS)
            per_seed.append((fit, beyond, seconds, len(result.population), result.iterations))
        results[label] = per_seed
    header = ["row", "mean TVD (targets)", "max TVD (targets)"] + ["TVD " + " x ".join(c) for c in NON_TARGETS] + [
        "mean TVD non-target 3-way", "seconds", "distinct records", "iterations"]
    print(f"Adult, N = {project.size:,}, seeds {args.seeds} (mean over seeds; targets: 19 tables of examples/adult)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, per_seed in results.items():
        mean = lambda values: float(np.mean(values))  # noqa: E731
        fits = [f for f, *_ in per_seed]
        cells = [label, f"{mean([f.mean_tvd for f in fits]):.4f}", f"{mean([f.max_tvd for f in fits]):.4f}"]
        cells += [f"{mean([b[c] for _, b, *_ in per_seed]):.4f}" for c in NON_TARGETS]
        cells += [f"{mean([np.mean(list(b.values())) for _, b, *_ in per_seed]):.4f}",
                  f"{mean([s for *_, s, _, _ in per_seed]):.1f}", f"{mean([d for *_, d, _ in per_seed]):,.0f}",
                  f"{mean([i for *_, i in per_seed]):.0f}"]
        print("| " + " | ".join(cells) + " |")


def project_fit(project, population):
    """Fit of a population to all 19 target tables of the full project."""
    from synthor_core.aggregate import Aggregator
    from synthor_core.metrics import measure_fit
    with Aggregator(project.schema, project.tables) as aggregator:
        return measure_fit(project.tables, aggregator.aggregate(population))


if __name__ == "__main__":
    main()
