"""Plausibility rules in a population: violations per rule, against real records, and what the rules cost in fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..metrics import tvd
from ..schema import COUNT
from ..targets.model import Project


def rules_fit_cost(project: Project, rules) -> dict[str, dict[str, float]]:
    """Mean and max TVD between the targets and the maximum-entropy joint without and with the rules as
    structural zeros: ``{"without_rules": {...}, "with_rules": {...}}`` (a few seconds on the Adult example: the
    runner computes it beside the run)."""
    from ..priors.maxent import MaxEntJoint

    cost = {}
    for label, joint_rules in (("without_rules", ()), ("with_rules", rules)):
        joint = MaxEntJoint(project.schema, project.tables, joint_rules)
        tvds = [tvd(t.shares, joint.table_shares(i)) for i, t in enumerate(joint.tables)]
        cost[label] = {"mean_tvd": float(np.mean(tvds)), "max_tvd": float(np.max(tvds))}
    return cost


def rules_report(
    project: Project,
    population: pd.DataFrame,
    rules,
    real_records: pd.DataFrame | None = None,
    fit_cost: dict | None = None,
) -> dict[str, Any]:
    """Violation rates of plausibility rules, and what enforcing them costs in fit.

    Returns
    -------
    dict with ``rules`` (name -> ``condition``, ``violations`` (persons), ``rate``, and ``real_rate`` when real
    records are given), ``any_rate`` (share of persons breaking at least one rule, ``real_any_rate``), and
    ``fit_cost``: the mean and max TVD between the targets and the maximum-entropy joint with and without the
    rules as structural zeros (``with_rules`` - ``without_rules`` is what the rules cost; 0 when they agree with
    the tables; :func:`rules_fit_cost`, unless ``fit_cost`` gives it already).
    """
    from ..expressions import violating, violation_counts

    total = max(int(population[COUNT].sum()), 1)
    counts = violation_counts(population, rules)
    weights = population[COUNT].to_numpy()
    out: dict[str, Any] = {
        "rules": {
            r.name: {"condition": r.condition, "violations": counts[r.name], "rate": counts[r.name] / total}
            for r in rules
        },
        "any_rate": float(weights[violating(population, rules)].sum() / total),
    }
    if real_records is not None:
        real, _ = project.schema.encode(real_records[project.schema.names])
        real_counts = violation_counts(real, rules)
        for r in rules:
            out["rules"][r.name]["real_rate"] = real_counts[r.name] / max(len(real), 1)
        out["real_any_rate"] = float(violating(real, rules).mean()) if len(real) else 0.0
    out["fit_cost"] = fit_cost if fit_cost is not None else rules_fit_cost(project, rules)
    return out
