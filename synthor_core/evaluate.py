"""Evaluation: the fit report of a run (``report.json``); holdout comparisons and plausibility rules build on it.
"""

from __future__ import annotations

import platform
from typing import Any

import numpy as np
import pandas as pd

from .aggregate import Aggregator
from .engine import SynthesisConfig, SynthesisResult
from .metrics import tvd
from .priors.base import PriorUsage
from .schema import COUNT, Bins, expand_records
from .targets import Project, TargetTable

PAPER_PROTOCOL = ("LLMSynthor paper protocol: add-only, at most 5 proposals per iteration, each fixing one category "
                  "per categorical variable and one [min, max] range per numeric variable, numeric values drawn "
                  "uniformly in the range, no calibration (counts scaled to N and integerized)")


def run_report(result: SynthesisResult, config: SynthesisConfig, prior_name: str, usage: PriorUsage) -> dict[str, Any]:
    """The ``report.json`` of a run: fit, cost and settings.

    Returns
    -------
    dict with keys ``mean_tvd``, ``max_tvd``, ``tables`` (name -> ``tvd``, ``srmse``), ``iterations``,
    ``seconds``, ``records`` (N), ``distinct_records``, ``prior``, ``mode``, ``seed``, ``warnings``, ``llm``
    (``calls``, ``prompt_tokens``, ``completion_tokens``, ``cached_calls``, ``failures`` by kind), and
    ``stop_reason``, ``loop`` (fit before calibration), ``calibration``, ``rejected``, ``settings``,
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
                "failures": dict(usage.failures)},
        "stop_reason": result.stop_reason,
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
