"""Adult: targets from the training split, fidelity beyond them on the held-out test split.

Targets: the 19 tables of examples/adult (9 marginals + 10 two-way cross-tabulations) derived from
``adult.data`` (32,561 persons). Held out: ``adult.test`` (16,281 persons), never seen by any row but the
micro-data reference. N = 32,561 per row, 3 seeds.

Rows: Synthor full / paper mode with maxent; Synthor full with maxent and examples/adult/rules.toml as
constraints; Synthor full with the LLM prior against the local test endpoint (tests/llm_endpoint; its "model"
knows the training persons, as an LLM knows what realistic adults look like; 6,000 distinct records, 30 per
call); classical IPF over the full
cross-product (12.7 million cells) from a uniform seed; independent marginals; resampling the training persons
(micro-data, which the others never see).

Columns: fit to the targets; against the test split, mean TVD of the 84 three-way and 26 two-way tables that
were not targets, Cramér's V error over 36 pairs, Wasserstein-1 of age and hours per week, the classifier
two-sample gap, income accuracy trained on synthetic / tested on real (TSTR), and the plausibility rules'
violation rate (the test split's own rate is printed); seconds and LLM calls.

Run: ``python benchmarks/adult.py [--seeds 1 2 3]``; prints markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from baselines import IPFCrossProduct, independent_marginals, resample_records  # noqa: E402

from llm_endpoint.server import TestEndpoint  # noqa: E402
from synthor_core.evaluate.holdout import evaluate_population  # noqa: E402
from synthor_core.expressions import violating  # noqa: E402
from synthor_core.priors.llm import LLMPrior, LLMSettings  # noqa: E402
from synthor_core.priors.maxent import MaxEntPrior  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402
from synthor_core.readers.rules import load_rules
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import SynthesisResult
from synthor_core.synthesis.loop import run_synthesis  # noqa: E402

ADULT_GROUPS = [
    ["age", "marital_status", "income"],
    ["education", "occupation", "income"],
    ["sex", "occupation", "hours_per_week"],
]


def _derive():
    spec = importlib.util.spec_from_file_location("adult_derive", ROOT / "examples" / "adult" / "derive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _coded(project, records):
    population, rejected = project.schema.encode(records)
    assert not rejected, rejected
    population["count"] = 1
    return population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--no-llm", action="store_true")
    args = parser.parse_args()
    derive = _derive()
    train, test = derive.read_adult_records("train"), derive.read_adult_records("test")
    folder = Path(tempfile.mkdtemp(prefix="synthor-adult-"))
    derive.write_project(train, folder, "train")
    project = load_project(folder)
    rules = load_rules(ROOT / "examples" / "adult" / "rules.toml", project.schema)
    size = project.size
    real_rate = float(violating(project.schema.encode(test)[0], rules).mean())
    started = time.perf_counter()
    ipf = IPFCrossProduct(project)
    ipf_seconds = time.perf_counter() - started
    results: dict[str, list[dict]] = {}

    def add(name, population, seconds, calls, seed):
        report = evaluate_population(project, population, test, rules, "income", seed)
        h = report["holdout"]
        results.setdefault(name, []).append(
            {
                "mean TVD targets": report["mean_tvd"],
                "max TVD targets": report["max_tvd"],
                "3-way non-target TVD": h["non_target_tables"]["3-way"]["mean_tvd"],
                "2-way non-target TVD": h["non_target_tables"]["2-way"]["mean_tvd"],
                "Cramér's V error": h["cramers_v"]["mean_abs_error"],
                "age W1": h["wasserstein"]["age"],
                "hours W1": h["wasserstein"]["hours_per_week"],
                "classifier gap": h["classifier_two_sample"]["gap"],
                "TSTR income": h["tstr"]["tstr_accuracy"],
                "TRTR income": h["tstr"]["trtr_accuracy"],
                "rule violations": report["rules"]["any_rate"],
                "seconds": seconds,
                "LLM calls": calls,
            }
        )

    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        counts_only = replace(project, numeric_controls=())  # what IPF sees: the count tables
        for name, mode, prior_rules, targets in (
            ("Synthor full, maxent", "full", (), project),
            ("Synthor full, maxent, count tables only (no numeric control)", "full", (), counts_only),
            ("Synthor full, maxent + rules", "full", rules, project),
            ("Synthor paper, maxent", "paper", (), project),
        ):
            t0 = time.perf_counter()
            prior = MaxEntPrior(targets, mode=mode, rules=prior_rules)
            result = list(run_synthesis(targets, prior, SynthesisConfig(mode=mode, seed=seed), rules=prior_rules))[-1]
            assert isinstance(result, SynthesisResult)
            add(name, result.population, time.perf_counter() - t0, 0, seed)
        if not args.no_llm:
            with TestEndpoint(seed=seed, pool=train, groups=ADULT_GROUPS) as endpoint:
                t0 = time.perf_counter()
                prior = LLMPrior(
                    project,
                    LLMSettings(
                        base_url=endpoint.url, model="adult-oracle", distinct_records=6000, records_per_call=30
                    ),
                )
                result = list(run_synthesis(project, prior, SynthesisConfig(seed=seed)))[-1]
                add(
                    "Synthor full, LLM (test endpoint)",
                    result.population,
                    time.perf_counter() - t0,
                    prior.usage.calls,
                    seed,
                )
        t0 = time.perf_counter()
        sample = ipf.sample(size, rng)
        add(
            "IPF, uniform seed (cross-product)",
            _coded(project, sample),
            ipf_seconds + time.perf_counter() - t0,
            0,
            seed,
        )
        t0 = time.perf_counter()
        add(
            "independent marginals",
            _coded(project, independent_marginals(project, size, rng)),
            time.perf_counter() - t0,
            0,
            seed,
        )
        add(
            "resampled training persons (micro-data)", _coded(project, resample_records(train, size, rng)), 0.0, 0, seed
        )

    columns = list(next(iter(results.values()))[0])
    print(
        f"Adult: targets from adult.data ({size:,} persons, 19 tables + the numeric control of mean hours by sex "
        f"x income), held out adult.test ({len(test):,} "
        f"persons); N = {size:,}; seeds {args.seeds} (mean, and ± one standard deviation over seeds for the "
        f"non-target tables); the test split's own rule violation rate is {real_rate:.2%}; IPF: "
        f"{ipf.sweeps} sweeps, {ipf.joint.size:,} cells\n"
    )
    print("| row | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, runs in results.items():
        cells = []
        for c in columns:
            values = [r[c] for r in runs]
            mean = float(np.mean(values))
            if c == "3-way non-target TVD":
                cells.append(f"{mean:.4f} ± {float(np.std(values)):.4f}")
            elif c == "rule violations":
                cells.append(f"{mean:.2%}")
            elif c in ("seconds", "age W1", "hours W1"):
                cells.append(f"{mean:.2f}")
            elif c == "LLM calls":
                cells.append(f"{mean:,.0f}")
            else:
                cells.append(f"{mean:.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    ipf_row = results["IPF, uniform seed (cross-product)"]
    print("\nW1 against uniform-within-bin IPF on the same count tables (ratio of the means over seeds)\n")
    print("| row | age W1 / IPF | hours W1 / IPF |")
    print("|---|---|---|")
    for name, runs in results.items():
        ratios = [np.mean([r[c] for r in runs]) / np.mean([r[c] for r in ipf_row]) for c in ("age W1", "hours W1")]
        print(f"| {name} | {ratios[0]:.2f} | {ratios[1]:.2f} |")


if __name__ == "__main__":
    main()
