"""The report of a run (``report.json``): fit, cost, settings and where the records came from."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from ..priors.base import PriorUsage
from ..synthesis.loop import SynthesisConfig, SynthesisResult

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
