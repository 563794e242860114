"""The report of a run (``report.json``): fit, cost, settings and where the records came from."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from ..priors.base import PriorUsage
from ..synthesis.config import SynthesisConfig
from ..synthesis.events import SynthesisResult

PAPER_PROTOCOL = (
    "LLMSynthor paper protocol: add-only, at most 5 proposals per iteration, each fixing one category "
    "per categorical variable and one [min, max] range per numeric variable, numeric values drawn "
    "uniformly in the range, no calibration (counts scaled to N and integerized)"
)


def numeric_report(numeric: dict) -> dict[str, Any]:
    """The numeric controls' part of ``report.json``: control name -> ``of``, ``statistic``,
    ``max_relative_error``, ``mean_relative_error`` and ``cells`` (one per cell, flat C order: ``cell`` (variable ->
    label), ``goal``, ``synthetic``, ``relative_error``; NaN/inf written as null)."""

    def number(x: float) -> float | None:
        return float(x) if np.isfinite(x) else None

    return {
        name: {
            "of": f.of,
            "statistic": f.statistic,
            "max_relative_error": number(f.max_relative_error),
            "mean_relative_error": number(f.mean_relative_error),
            "cells": [
                {"cell": cell, "goal": number(g), "synthetic": number(v), "relative_error": number(e)}
                for cell, g, v, e in zip(
                    f.cells or [{}] * f.goals.size,
                    f.goals.reshape(-1),
                    f.synthetic.reshape(-1),
                    f.relative_errors.reshape(-1),
                )
            ],
        }
        for name, f in numeric.items()
    }


def source_summary(result: SynthesisResult, usage: PriorUsage) -> str:
    """One sentence on where the final population's persons came from and which calls failed, e.g. "62.0 % of
    the persons came from llm, 38.0 % from maxent (its fallback); 41 of 300 calls failed: server_error 20, ...".
    Empty when the run had no fallback prior."""
    if not result.sources:
        return ""
    (main, first), (backup, second) = list(result.sources.items())[:2]
    total = max(first["final"] + second["final"], 1)
    text = (
        f"{first['final'] / total:.1%} of the persons came from {main}, {second['final'] / total:.1%} from "
        f"{backup} (its fallback)"
    )
    failures = dict(usage.failures)
    if failures:
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(failures.items(), key=lambda kv: -kv[1]))
        text += f"; {sum(failures.values()):,} of {usage.calls:,} calls failed: {kinds}"
    return text


def run_report(
    result: SynthesisResult, config: SynthesisConfig, prior_name: str, usage: PriorUsage, dollars: float | None = None
) -> dict[str, Any]:
    """The ``report.json`` of a run: fit, cost and settings.

    Returns
    -------
    dict with keys ``mean_tvd``, ``max_tvd``, ``tables`` (name -> ``tvd``, ``srmse``), ``numeric_controls`` (when
    the project has any: :func:`numeric_report`), ``sources``, ``fallback`` and ``source_summary`` (when the run had a
    fallback prior: :attr:`SynthesisResult.sources`, :func:`source_summary`), ``iterations``,
    ``seconds``, ``records`` (N), ``distinct_records``, ``prior``, ``mode``, ``seed``, ``warnings``, ``llm``
    (``calls``, ``prompt_tokens``, ``completion_tokens``, ``cached_calls``, ``failures`` by kind, ``dollars`` when
    prices are configured, and ``calls_per_1000_records``), and ``stop_reason``, ``error`` (why the prior
    failed, or null), ``loop`` (fit before calibration), ``calibration``, ``rejected``, ``settings``,
    ``protocol``, ``python``.
    """
    population = result.population
    calibration = None
    if result.calibration is not None:
        calibration = {
            "converged": result.calibration.converged,
            "iterations": result.calibration.iterations,
            "max_abs_error": result.calibration.max_abs_error,
            "max_relative_error_numeric": result.calibration.max_relative_error_numeric,
        }
    return {
        "mean_tvd": result.fit.mean_tvd,
        "max_tvd": result.fit.max_tvd,
        "tables": {name: {"tvd": f.tvd, "srmse": f.srmse} for name, f in result.fit.tables.items()},
        **({"numeric_controls": numeric_report(result.fit.numeric)} if result.fit.numeric else {}),
        **(
            {"sources": result.sources, "fallback": result.fallback, "source_summary": source_summary(result, usage)}
            if result.sources
            else {}
        ),
        "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "records": int(population["count"].sum()),
        "distinct_records": int(len(population)),
        "prior": prior_name,
        "mode": config.mode,
        "seed": config.seed,
        "warnings": list(result.warnings),
        "llm": {
            "calls": usage.calls,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_calls": usage.cached_calls,
            "failures": dict(usage.failures),
            **({"dollars": round(dollars, 6)} if dollars is not None else {}),
            "calls_per_1000_records": round(usage.calls * 1000 / max(int(population["count"].sum()), 1), 4),
        },
        "stop_reason": result.stop_reason,
        "error": result.error,
        "loop": None
        if result.loop_fit is None
        else {"mean_tvd": result.loop_fit.mean_tvd, "max_tvd": result.loop_fit.max_tvd},
        "calibration": calibration,
        "rejected": result.rejected,
        "settings": config.model_dump(),
        "protocol": PAPER_PROTOCOL
        if config.mode == "paper"
        else "Synthor full mode: add and remove, realistic "
        "fill from the prior, raking to every target table, controlled-rounding integerization",
        "python": platform.python_version(),
    }


def household_iterations(iterations) -> list[dict[str, Any]]:
    """The per-iteration history of a household run, as the live chart draws it: per iteration of each partition,
    its sweeps, the worst %RMSE of each control group, the balanced households per source, the candidates added by
    source and the control-zone pairs its proposals targeted."""
    return [
        {
            "partition": e.partition,
            "iteration": e.iteration,
            "sweeps": e.sweeps,
            "seconds": round(e.seconds, 3),
            "max_relative_gap": e.max_relative_gap,
            "worst_pct_rmse": round(e.worst_pct_rmse, 4),
            "fit_by_group": {g: round(v, 4) for g, v in e.fit_by_group.items()},
            "households_by_source": {k: round(v, 1) for k, v in e.households_by_source.items()},
            "candidates": e.candidates,
            "added": dict(e.added),
            "targeted": [f"{p.control} in {p.level} {p.zone}" for p in e.proposals],
            "rejected": dict(e.rejected),
            "llm_calls": e.llm_calls,
        }
        for e in iterations
    ]


def household_report(
    project, result, config, prior: str, seconds: float, extra: dict | None = None, worst: dict | None = None
) -> dict[str, Any]:
    """``report.json`` of a household run: per control its level, totals, %RMSE over zones, errors and worst zones;
    the worst %RMSE per control group; the per-iteration history (``iterations``); households per prior; balancing,
    integerization, partitions, the prior's notes and warnings. ``extra`` (member consistency, rules, realism) is
    added as it is; ``worst``: control name -> its worst zones."""
    controls = []
    for row in result.fit.itertuples(index=False):
        controls.append(
            {
                "control": row.control,
                "group": row.group,
                "level": row.level,
                "unit": row.unit,
                "importance": row.importance,
                "control_total": row.control_total,
                "synthetic_total": row.synthetic_total,
                "pct_rmse": round(float(row.pct_rmse), 4),
                "total_abs_error": row.total_abs_error,
                "max_abs_error": row.max_abs_error,
                "zones": row.zones,
                "worst_zones": (worst or {}).get(row.control, []),
            }
        )
    soft = result.fit[result.fit["control"] != project.total_control]
    by_group = {str(g): round(float(v), 4) for g, v in soft.groupby("group", sort=False)["pct_rmse"].max().items()}
    total = max(result.households, 1)
    return {
        "status": "failed" if result.error else "stopped" if result.stop_reason == "stop requested" else "finished",
        "project": project.name,
        "source": project.source,
        "prior": prior,
        "seed": config.seed,
        "households": result.households,
        "persons": result.persons,
        "distinct_households": result.distinct_households,
        "geographies": {level: len(project.geography.zones(level)) for level in project.geography.levels},
        "iterations": household_iterations(result.iterations),
        "stop_reason": result.stop_reason,
        "balance": {
            "converged": result.balance.converged,
            "stop": result.balance.stop,
            "sweeps": result.balance.iterations,
            "max_relative_gap": result.balance.max_relative_gap,
            "max_relative_change": result.balance.max_relative_change,
        },
        "integerize": dict(result.integerize),
        "seconds": round(seconds, 3),
        "worst_pct_rmse": round(float(soft["pct_rmse"].max()), 4) if len(soft) else 0.0,
        "worst_pct_rmse_by_group": by_group,
        "controls": controls,
        "households_by_prior": dict(result.households_by_prior),
        "source_summary": ", ".join(f"{v / total:.1%} {k}" for k, v in result.households_by_prior.items()),
        "fallback": dict(result.fallback),
        "prior_notes": result.prior,
        "partitions": [
            {
                "partition": o.name,
                "households": o.placed,
                "iterations": len(o.iterations),
                "stop_reason": o.stop_reason,
                "seconds": round(o.seconds, 3),
                "error": o.error,
            }
            for o in result.partitions
        ],
        "warnings": list(dict.fromkeys(list(project.warnings) + list(result.warnings))),
        "error": result.error,
        "settings": config.model_dump(),
        **(extra or {}),
    }
