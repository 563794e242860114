"""The LLMSynthor controlled benchmark: the e-commerce Bayesian network (shared/benchmarks/ecommerce_bn.md).

Per seed: 2,000 reference records from the network. Targets (no micro-records): the six marginals and the three
family tables [age, gender, category], [category, price], [location, payment]. Age and price enter the family
tables through 6 quantile bins (the paper's binning) and the marginals through those bins split into 8 equal
sub-bins each (the paper splits the worst bin into 8 sub-bins per iteration; here every bin is split up front).
Every row synthesizes 2,000 persons and is compared with the reference records.

A last table puts age and price in the 6 quantile bins everywhere (no sub-bins), where the values inside a bin
come from the within-bin density alone, and compares W1 with uniform-within-bin IPF on the same targets.

Rows: Synthor full / paper with maxent; Synthor full with maxent and the plausibility rules as constraints;
Synthor full with the LLM prior against the local test endpoint (tests/llm_endpoint, an "LLM" that knows the
network), and against the same endpoint playing a careless model (random valid JSON, a quarter of the calls
failing) with the maxent fallback; classical IPF over the cross-product from a uniform seed; independent
marginals; resampling the reference records (micro-data, which the others never see). A second table gives
targets = six marginals only; a third, tables that were not targets.

Metrics (lower is better): Wasserstein-1 of age (years) and price; TVD of the categorical marginals; JSD (natural
log) of the three family groups with age and price in the 6 quantile bins; the gap |accuracy - 0.5| of a
HistGradientBoosting classifier telling synthetic from reference records (70/30 split); the rejection rate under
rules R1 price < 10 for Electronics or Furniture & Appliances, R2 age < 22 buying Food & Beverages for more than
1,000, R3 age >= 70 buying Electronics for more than 1,500 (the paper gives no thresholds).

Run: ``python benchmarks/ecommerce_bn.py [--seeds 1 2 3]``; prints markdown tables (means over seeds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from baselines import independent_marginals, ipf_cross_product, resample_records  # noqa: E402

from llm_endpoint.network import quantile_edges, sample_network, write_ecommerce_project  # noqa: E402
from llm_endpoint.server import TestEndpoint  # noqa: E402
from synthor_core.aggregate import Aggregator  # noqa: E402
from synthor_core.evaluate.holdout import classifier_two_sample, combination_templates  # noqa: E402
from synthor_core.expressions import (
    compile_rule,  # noqa: E402
    violating,  # noqa: E402
)
from synthor_core.metrics import jsd, tvd, wasserstein  # noqa: E402
from synthor_core.priors.llm import LLMPrior, LLMSettings  # noqa: E402
from synthor_core.priors.maxent import MaxEntPrior  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import SynthesisResult
from synthor_core.synthesis.loop import run_synthesis  # noqa: E402

N = 2000
GROUPS = [("age", "gender", "category"), ("category", "price"), ("location", "payment")]
NON_TARGETS = [("age", "category", "payment"), ("gender", "price", "location"), ("age", "price")]
RULES = {
    "R1": 'category in ["Electronics", "Furniture & Appliances"] and price < 10',
    "R2": 'age < 22 and category == "Food & Beverages" and price > 1000',
    "R3": 'age >= 70 and category == "Electronics" and price > 1500',
}
PAPER = {
    "age W1": 1.13,
    "price W1": 12.762,
    "gender TVD": 0.002,
    "location TVD": 0.002,
    "category TVD": 0.010,
    "payment TVD": 0.003,
    "JSD age x gender x category": 0.071,
    "JSD category x price": 0.134,
    "JSD location x payment": 0.007,
    "rejection": "0.3-0.5 %",
}
PAPER_IPF = {
    "age W1": 5.27,
    "price W1": 139.957,
    "JSD age x gender x category": 0.117,
    "JSD category x price": 0.504,
    "JSD location x payment": 0.113,
}


def write_targets(folder: Path, reference: pd.DataFrame, family: bool, sub_bins: bool = True) -> Path:
    """The benchmark's project folder: marginals (fine bins, or the 6 quantile bins without ``sub_bins``) and,
    with ``family``, the three family tables."""
    coarse = {
        "age": quantile_edges(reference["age"], 18, 90, integer=True),
        "price": quantile_edges(reference["price"], 0, 2000),
    }
    fine = {}
    for var, edges in coarse.items():
        split = []
        for a, b in zip(edges, edges[1:]):
            sub = np.linspace(a, b, 9 if sub_bins else 2)
            split += list(np.round(sub[:-1]) if var == "age" else np.round(sub[:-1], 2))
        fine[var] = sorted(set(split)) + [edges[-1]]
    tables = [((v,), fine if v in fine else {}) for v in ("age", "gender", "location", "category", "price", "payment")]
    if family:
        tables += [(g, coarse) for g in GROUPS]
    return write_ecommerce_project(folder, reference, tables, N)


def measure(project, family_project, records: pd.DataFrame, reference: pd.DataFrame, rules, seed: int) -> dict:
    """Every metric of one synthetic sample (labelled records) against the reference records."""
    schema = project.schema
    synth, rejected = schema.encode(records)
    assert not rejected, rejected
    synth["count"] = 1
    ref, _ = schema.encode(reference)
    ref["count"] = 1
    out = {
        "age W1": wasserstein(reference["age"], records["age"]),
        "price W1": wasserstein(reference["price"], records["price"]),
    }
    for var in ("gender", "location", "category", "payment"):
        out[f"{var} TVD"] = tvd(
            reference[var].value_counts(),
            records[var].value_counts().reindex(reference[var].value_counts().index, fill_value=0),
        )
    coarse = {
        v: next(t.bins[v] for t in family_project.tables if len(t.variables) > 1 and v in t.bins)
        for v in ("age", "price")
    }  # the family tables' 6 quantile bins
    groups = [
        replace(
            t,
            bins={v: coarse[v] for v in t.bins},
            counts=np.ones(tuple(len(coarse[v]) if v in coarse else schema[v].size for v in t.variables)),
        )
        for t in combination_templates(family_project, GROUPS + NON_TARGETS)
    ]
    with Aggregator(schema, groups) as aggregator:
        real_counts, synth_counts = aggregator.aggregate(ref), aggregator.aggregate(synth)
    for t, r, s in zip(groups, real_counts, synth_counts):
        out[f"JSD {t.name}"] = jsd(r, s)
    with Aggregator(schema, project.tables) as aggregator:
        out["mean TVD targets"] = float(
            np.mean([tvd(t.counts, c) for t, c in zip(project.tables, aggregator.aggregate(synth))])
        )
    c2 = classifier_two_sample(project, synth, ref, np.random.default_rng(seed))
    out["classifier gap"] = c2["gap"]
    out["rejection"] = float(violating(synth, rules).mean())
    return out


def synthor(project, mode: str, seed: int, prior=None, rules=(), fallback=None) -> tuple[pd.DataFrame, dict]:
    prior = prior or MaxEntPrior(project, mode=mode, rules=rules)
    started = time.perf_counter()
    result = list(run_synthesis(project, prior, SynthesisConfig(mode=mode, seed=seed), rules=rules, fallback=fallback))[
        -1
    ]
    assert isinstance(result, SynthesisResult)
    seconds = time.perf_counter() - started
    people = project.schema.decode(result.population)
    people = people.loc[people.index.repeat(people["count"])].drop(columns=["count"]).reset_index(drop=True)
    return people, {"seconds": seconds, "LLM calls": prior.usage.calls}


def rows_for(project, family_project, reference, seed, with_llm: bool, rules, paper: bool = True) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    rows: dict[str, tuple[pd.DataFrame, dict]] = {}
    rows["Synthor full, maxent"] = synthor(project, "full", seed)
    rows["Synthor full, maxent + rules"] = synthor(project, "full", seed, rules=rules)
    if paper:
        rows["Synthor paper, maxent"] = synthor(project, "paper", seed)
    else:
        uniform = MaxEntPrior(project, within_bin="uniform")
        rows["Synthor full, maxent, uniform within bins"] = synthor(project, "full", seed, prior=uniform)
    if with_llm:
        with TestEndpoint(seed=seed) as endpoint:
            prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle"))
            rows["Synthor full, LLM (test endpoint)"] = synthor(project, "full", seed, prior=prior)
        faults = ("rate_limit", "server_error", "connection", "malformed_json", "truncated", "empty", "refusal")
        with TestEndpoint(seed=seed, careless=True, fault_rate=0.25, fault_kinds=faults) as endpoint:
            settings = LLMSettings(base_url=endpoint.url, model="careless", max_retries=1, timeout_s=5.0)
            prior = LLMPrior(project, settings)
            rows["Synthor full, careless LLM (random valid JSON, 25 % failed calls) + maxent fallback"] = synthor(
                project, "full", seed, prior=prior, fallback=MaxEntPrior(project)
            )
    for name, build in (
        ("IPF, uniform seed (cross-product)", lambda: ipf_cross_product(project, N, rng)),
        ("independent marginals", lambda: independent_marginals(project, N, rng)),
        ("resampled reference records (micro-data)", lambda: resample_records(reference, N, rng)),
    ):
        started = time.perf_counter()
        records = build()
        rows[name] = (records, {"seconds": time.perf_counter() - started, "LLM calls": 0})
    return {
        name: {**measure(project, family_project, records, reference, rules, seed), **cost}
        for name, (records, cost) in rows.items()
    }


def print_table(title: str, results: list[dict[str, dict]], columns: list[str], extra_rows=()) -> None:
    print(f"\n{title}\n")
    print("| row | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in results[0]:
        cells = []
        for c in columns:
            values = [r[name][c] for r in results]
            mean = float(np.mean(values))
            cells.append(
                f"{mean:.2%}"
                if c == "rejection"
                else f"{mean:,.0f}"
                if c == "LLM calls"
                else f"{mean:.3f}"
                if c in ("age W1", "price W1", "seconds")
                else f"{mean:.4f}"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, values in extra_rows:
        print(f"| {name} | " + " | ".join(str(values.get(c, "")) for c in columns) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--no-llm", action="store_true", help="leave out the LLM row")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="synthor-ecommerce-"))
    full, marginals, six_bins, reference_rates = [], [], [], []
    for seed in args.seeds:
        reference = sample_network(N, np.random.default_rng(seed))
        family = load_project(write_targets(workdir / f"family-{seed}", reference, family=True))
        only = load_project(write_targets(workdir / f"marginals-{seed}", reference, family=False))
        coarse = load_project(write_targets(workdir / f"six-{seed}", reference, family=True, sub_bins=False))
        rules = [compile_rule(name, condition, family.schema) for name, condition in RULES.items()]
        ref, _ = family.schema.encode(reference)
        reference_rates.append(float(violating(ref, rules).mean()))
        full.append(rows_for(family, family, reference, seed, not args.no_llm, rules))
        marginals.append(rows_for(only, family, reference, seed, not args.no_llm, rules))
        six_bins.append(rows_for(coarse, family, reference, seed, False, rules, paper=False))
    print(
        f"E-commerce network, N = {N:,}, seeds {args.seeds} (means); reference records' own rejection rate "
        f"{np.mean(reference_rates):.2%} (R1 price < 10 for Electronics/Furniture, R2 age < 22 Food > 1,000, "
        f"R3 age >= 70 Electronics > 1,500); classifier: HistGradientBoosting, 70/30 split; JSD natural log"
    )
    main_cols = [
        "age W1",
        "price W1",
        "gender TVD",
        "location TVD",
        "category TVD",
        "payment TVD",
        "JSD age x gender x category",
        "JSD category x price",
        "JSD location x payment",
        "classifier gap",
        "rejection",
        "seconds",
        "LLM calls",
    ]
    print_table(
        "Targets: six marginals + three family tables (the paper's tables 1, 2 and 4)",
        full,
        main_cols,
        [("LLMSynthor, paper (GPT-4.1-nano, 100 iterations)", PAPER), ("IPF, paper's macro-only baseline", PAPER_IPF)],
    )
    print_table("Targets: six marginals only", marginals, main_cols)
    print_table(
        "Tables that were not targets (JSD against the reference; targets = marginals + family tables)",
        full,
        ["JSD age x category x payment", "JSD gender x price x location", "JSD age x price"],
    )
    print_table(
        "Targets: six marginals + three family tables, age and price in the paper's 6 quantile bins everywhere "
        "(no sub-bins): values inside a bin come from the within-bin density alone",
        six_bins,
        ["mean TVD targets", *main_cols],
        [("LLMSynthor, paper (GPT-4.1-nano, 100 iterations)", PAPER)],
    )
    ipf = "IPF, uniform seed (cross-product)"
    print("\nW1 against uniform-within-bin IPF on the same targets (6 bins, no sub-bins; ratio of the means)\n")
    print("| row | age W1 / IPF | price W1 / IPF |")
    print("|---|---|---|")
    for name in six_bins[0]:
        ratios = [
            np.mean([r[name][c] for r in six_bins]) / np.mean([r[ipf][c] for r in six_bins])
            for c in ("age W1", "price W1")
        ]
        print(f"| {name} | {ratios[0]:.2f} | {ratios[1]:.2f} |")


if __name__ == "__main__":
    main()
