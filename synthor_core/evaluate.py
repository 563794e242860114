"""Evaluation: the fit report of a run (``report.json``); holdout comparisons and plausibility rules build on it.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import Aggregator
from .engine import SynthesisConfig, SynthesisResult
from .metrics import attribute_gaps, tvd
from .priors.base import PriorUsage
from .schema import COUNT, Bins, expand_records
from .targets import Project, TargetTable

PAPER_PROTOCOL = ("LLMSynthor paper protocol: add-only, at most 5 proposals per iteration, each fixing one category "
                  "per categorical variable and one [min, max] range per numeric variable, numeric values drawn "
                  "uniformly in the range, no calibration (counts scaled to N and integerized)")


def run_report(result: SynthesisResult, config: SynthesisConfig, prior_name: str, usage: PriorUsage,
               dollars: float | None = None) -> dict[str, Any]:
    """The ``report.json`` of a run: fit, cost and settings.

    Returns
    -------
    dict with keys ``mean_tvd``, ``max_tvd``, ``tables`` (name -> ``tvd``, ``srmse``), ``iterations``,
    ``seconds``, ``records`` (N), ``distinct_records``, ``prior``, ``mode``, ``seed``, ``warnings``, ``llm``
    (``calls``, ``prompt_tokens``, ``completion_tokens``, ``cached_calls``, ``failures`` by kind, ``dollars`` when
    prices are configured, and ``calls_per_1000_records``), and ``stop_reason``, ``error`` (why the prior
    failed, or null), ``loop`` (fit before calibration), ``calibration``, ``rejected``, ``settings``,
    ``protocol``, ``python``.
    """
    population = result.population
    calibration = None
    if result.calibration is not None:
        calibration = {"converged": result.calibration.converged, "iterations": result.calibration.iterations,
                       "max_abs_error": result.calibration.max_abs_error}
    return {
        "mean_tvd": result.fit.mean_tvd,
        "max_tvd": result.fit.max_tvd,
        "tables": {name: {"tvd": f.tvd, "srmse": f.srmse} for name, f in result.fit.tables.items()},
        "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "records": int(population["count"].sum()),
        "distinct_records": int(len(population)),
        "prior": prior_name,
        "mode": config.mode,
        "seed": config.seed,
        "warnings": list(result.warnings),
        "llm": {"calls": usage.calls, "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens, "cached_calls": usage.cached_calls,
                "failures": dict(usage.failures), **({"dollars": round(dollars, 6)} if dollars is not None else {}),
                "calls_per_1000_records": round(usage.calls * 1000 / max(int(population["count"].sum()), 1), 4)},
        "stop_reason": result.stop_reason,
        "error": result.error,
        "loop": None if result.loop_fit is None else {"mean_tvd": result.loop_fit.mean_tvd,
                                                      "max_tvd": result.loop_fit.max_tvd},
        "calibration": calibration,
        "rejected": result.rejected,
        "settings": config.model_dump(),
        "protocol": PAPER_PROTOCOL if config.mode == "paper" else "Synthor full mode: add and remove, realistic "
                    "fill from the prior, raking to every target table, controlled-rounding integerization",
        "python": platform.python_version(),
    }


def comparison_table(project: Project, variables: tuple[str, ...], records: pd.DataFrame) -> TargetTable:
    """Counts of labelled micro-records over a combination of variables, as a :class:`TargetTable`.

    Numeric variables are binned with the edges of the first target table that bins them (the "age band" of
    the targets), or a single bin over their range when no table does.

    Parameters
    ----------
    project : Project
    variables : tuple of str, schema variables
    records : DataFrame, one row per person, labels for categoricals and numbers for numerics.

    Raises
    ------
    ValueError
        When a record is outside the schema (its reason and count are named).
    """
    schema = project.schema
    bins = {}
    for v in variables:
        if schema[v].type == "numeric":
            found = next((t.bins[v] for t in project.tables if v in t.bins), None)
            bins[v] = found or Bins([schema[v].min, schema[v].max])
    shape = tuple(schema[v].size if schema[v].type == "categorical" else len(bins[v]) for v in variables)
    empty = TargetTable("_".join(variables), tuple(variables), bins, np.ones(shape), "records")
    encoded, rejected = schema.encode(records)
    if rejected:
        raise ValueError(f"records outside the schema: {rejected}")
    encoded[COUNT] = np.ones(len(encoded), dtype=np.int64)
    with Aggregator(schema, [empty]) as aggregator:
        (counts,) = aggregator.aggregate(encoded)
    return TargetTable(empty.name, empty.variables, bins, counts, "records")


def compare_tables(project: Project, population: pd.DataFrame, real_records: pd.DataFrame,
                   combinations) -> dict[tuple[str, ...], float]:
    """TVD between real micro-records and a synthetic population on tables that need not be targets.

    Parameters
    ----------
    project : Project
    population : DataFrame, coded population with ``count`` (as in :class:`SynthesisResult`).
    real_records : DataFrame, labelled real persons (held-out data).
    combinations : iterable of tuple of str, e.g. ``[("age", "education", "income")]``.

    Returns
    -------
    dict of combination -> TVD (0 = identical shares), in the order given.
    """
    out = {}
    for variables in combinations:
        real = comparison_table(project, tuple(variables), real_records)
        with Aggregator(project.schema, [real]) as aggregator:
            (synthetic,) = aggregator.aggregate(population)
        out[tuple(variables)] = tvd(real.counts, synthetic)
    return out


def table_counts(project: Project, population: pd.DataFrame, table: TargetTable) -> np.ndarray:
    """Counts of one target table on a coded population; ndarray of float64 shaped like ``table.counts``."""
    with Aggregator(project.schema, [table]) as aggregator:
        (counts,) = aggregator.aggregate(population)
    return counts


def population_csv(project: Project, population: pd.DataFrame) -> bytes:
    """The population as CSV bytes (UTF-8, one row per person, one column per variable), for downloads."""
    return expand_records(population, project.schema).to_csv(index=False).encode("utf-8")


def worst_cells(project: Project, population: pd.DataFrame, table: TargetTable, k: int = 10) -> pd.DataFrame:
    """The ``k`` cells of one table whose synthetic share is furthest from the target.

    Returns
    -------
    DataFrame, one row per cell, most off first: one column per table variable (labels), ``target_share``,
    ``synthetic_share``, ``difference`` (synthetic - target, share points), ``target_count``,
    ``synthetic_count``.
    """
    counts = table_counts(project, population, table)
    under, over = attribute_gaps([table], [counts], project.schema, top_k=k, by="share")
    gaps = sorted(under + over, key=lambda g: -abs(g.share_gap))[:k]
    return pd.DataFrame([{**g.labels, "target_share": g.target_share, "synthetic_share": g.synthetic_share,
                          "difference": g.synthetic_share - g.target_share, "target_count": g.target_count,
                          "synthetic_count": g.synthetic_count} for g in gaps],
                        columns=[*table.variables, "target_share", "synthetic_share", "difference",
                                 "target_count", "synthetic_count"])


def holdout_comparison(project: Project, population: pd.DataFrame, real_records: pd.DataFrame,
                       max_way: int = 3) -> tuple[pd.DataFrame, dict[str, int]]:
    """TVD between held-out real micro-records and the population on every 2- to ``max_way``-way table over
    binned variables that was not a target table.

    Parameters
    ----------
    project : Project
    population : DataFrame, coded population with ``count``.
    real_records : DataFrame, labelled real persons with one column per schema variable (others are ignored).
    max_way : int, largest number of variables per table (2 or 3).

    Returns
    -------
    tables : DataFrame, one row per variable combination, worst first: ``variables`` (" x "-joined), ``way``,
        ``tvd``.
    dropped : dict of reason -> number of real records left out because they are outside the schema.

    Raises
    ------
    ValueError
        When a schema variable is missing from the real records, or no record is valid.
    """
    from itertools import combinations

    schema = project.schema
    missing = [v for v in schema.names if v not in real_records.columns]
    if missing:
        raise ValueError(f"the real records have no column {', '.join(repr(m) for m in missing)} (expected one "
                         f"column per variable: {', '.join(schema.names)})")
    encoded, dropped = schema.encode(real_records[schema.names])
    if encoded.empty:
        raise ValueError(f"no real record fits the schema (dropped: {dropped})")
    encoded[COUNT] = np.ones(len(encoded), dtype=np.int64)
    targets = {tuple(sorted(t.variables)) for t in project.tables}
    combos = [c for way in range(2, max_way + 1) for c in combinations(schema.names, way)
              if tuple(sorted(c)) not in targets]
    templates = []
    for combo in combos:
        bins = {}
        for v in combo:
            if schema[v].type == "numeric":
                bins[v] = next((t.bins[v] for t in project.tables if v in t.bins), None) or Bins(
                    [schema[v].min, schema[v].max])
        shape = tuple(schema[v].size if schema[v].type == "categorical" else len(bins[v]) for v in combo)
        templates.append(TargetTable(" x ".join(combo), combo, bins, np.ones(shape), "holdout"))
    with Aggregator(schema, templates) as aggregator:
        real = aggregator.aggregate(encoded)
        synthetic = aggregator.aggregate(population)
    frame = pd.DataFrame([{"variables": t.name, "way": len(t.variables), "tvd": tvd(r, s)}
                          for t, r, s in zip(templates, real, synthetic)])
    return frame.sort_values("tvd", ascending=False, kind="stable").reset_index(drop=True), dropped


def rules_report(project: Project, population: pd.DataFrame, rules, real_records: pd.DataFrame | None = None
                 ) -> dict[str, Any]:
    """Violation rates of plausibility rules, and what enforcing them costs in fit.

    Returns
    -------
    dict with ``rules`` (name -> ``condition``, ``violations`` (persons), ``rate``, and ``real_rate`` when real
    records are given), ``any_rate`` (share of persons breaking at least one rule, ``real_any_rate``), and
    ``fit_cost``: the mean and max TVD between the targets and the maximum-entropy joint with and without the
    rules as structural zeros (``with_rules`` - ``without_rules`` is what the rules cost; 0 when they agree with
    the tables).
    """
    from .priors.maxent import MaxEntJoint
    from .rules import violating, violation_counts

    total = max(int(population[COUNT].sum()), 1)
    counts = violation_counts(population, rules)
    weights = population[COUNT].to_numpy()
    out: dict[str, Any] = {"rules": {r.name: {"condition": r.condition, "violations": counts[r.name],
                                              "rate": counts[r.name] / total} for r in rules},
                           "any_rate": float(weights[violating(population, rules)].sum() / total)}
    if real_records is not None:
        real, _ = project.schema.encode(real_records[project.schema.names])
        real_counts = violation_counts(real, rules)
        for r in rules:
            out["rules"][r.name]["real_rate"] = real_counts[r.name] / max(len(real), 1)
        out["real_any_rate"] = float(violating(real, rules).mean()) if len(real) else 0.0
    cost = {}
    for label, joint_rules in (("without_rules", ()), ("with_rules", rules)):
        joint = MaxEntJoint(project.schema, project.tables, joint_rules)
        tvds = [tvd(t.shares, joint.table_shares(i)) for i, t in enumerate(joint.tables)]
        cost[label] = {"mean_tvd": float(np.mean(tvds)), "max_tvd": float(np.max(tvds))}
    out["fit_cost"] = cost
    return out
