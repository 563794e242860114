"""Evaluation: the fit report of a run (``report.json``); holdout comparisons and plausibility rules build on it.
"""

from __future__ import annotations

import platform
from typing import Any

from .engine import SynthesisConfig, SynthesisResult
from .priors.base import PriorUsage

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
