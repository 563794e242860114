"""Evaluation against what was not a target: held-out real records (tables that were not targets, association,
Wasserstein, a classifier two-sample test, train-on-synthetic test-on-real) and the worst cells of a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..aggregate import Aggregator
from ..metrics import attribute_gaps, srmse, tvd, wasserstein
from ..schema import COUNT, Bins
from ..targets.model import Project, TargetTable
from .rules import rules_report


def combination_templates(project: Project, combinations) -> list[TargetTable]:
    """Empty tables (counts of ones) over combinations of variables, numerics binned with the edges of the first
    target table that bins them (the "age band" of the targets) or one bin over the range; for aggregating
    tables that were not targets."""
    schema = project.schema
    out = []
    for combo in combinations:
        combo = tuple(combo)
        bins = {
            v: next((t.bins[v] for t in project.tables if v in t.bins), None) or Bins([schema[v].min, schema[v].max])
            for v in combo
            if schema[v].type == "numeric"
        }
        shape = tuple(schema[v].size if schema[v].type == "categorical" else len(bins[v]) for v in combo)
        out.append(TargetTable(" x ".join(combo), combo, bins, np.ones(shape), "records"))
    return out


def _aggregate_combinations(project: Project, combinations, real: pd.DataFrame, population: pd.DataFrame):
    """(templates, real counts, synthetic counts) over combinations of variables, in one DuckDB pass each.

    ``real`` is coded (one row per person, no ``count``); ``population`` is coded with ``count``.
    """
    templates = combination_templates(project, combinations)
    with Aggregator(project.schema, templates) as aggregator:
        return (
            templates,
            aggregator.aggregate(real.assign(**{COUNT: np.ones(len(real), dtype=np.int64)})),
            aggregator.aggregate(population),
        )


def compare_tables(
    project: Project, population: pd.DataFrame, real_records: pd.DataFrame, combinations
) -> dict[tuple[str, ...], float]:
    """TVD between real micro-records and a synthetic population on tables that need not be targets.

    Parameters
    ----------
    project : Project
    population : DataFrame, coded population with ``count`` (as in :class:`SynthesisResult`).
    real_records : DataFrame, labelled real persons (held-out data), one column per schema variable.
    combinations : iterable of tuple of str, e.g. ``[("age", "education", "income")]``; numeric variables are
        binned with the edges of the first target table that bins them (see :func:`combination_templates`).

    Returns
    -------
    dict of combination -> TVD (0 = identical shares), in the order given.

    Raises
    ------
    ValueError
        When a real record is outside the schema (the reasons and counts are named).
    """
    real, rejected = project.schema.encode(real_records)
    if rejected:
        raise ValueError(f"records outside the schema: {rejected}")
    combinations = [tuple(c) for c in combinations]
    _, real_counts, synthetic = _aggregate_combinations(project, combinations, real, population)
    return {c: tvd(r, s) for c, r, s in zip(combinations, real_counts, synthetic)}


def table_counts(project: Project, population: pd.DataFrame, table: TargetTable) -> np.ndarray:
    """Counts of one target table on a coded population; ndarray of float64 shaped like ``table.counts``."""
    with Aggregator(project.schema, [table]) as aggregator:
        (counts,) = aggregator.aggregate(population)
    return counts


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
    return pd.DataFrame(
        [
            {
                **g.labels,
                "target_share": g.target_share,
                "synthetic_share": g.synthetic_share,
                "difference": g.synthetic_share - g.target_share,
                "target_count": g.target_count,
                "synthetic_count": g.synthetic_count,
            }
            for g in gaps
        ],
        columns=[*table.variables, "target_share", "synthetic_share", "difference", "target_count", "synthetic_count"],
    )


def holdout_comparison(
    project: Project, population: pd.DataFrame, real_records: pd.DataFrame, max_way: int = 3
) -> tuple[pd.DataFrame, dict[str, int]]:
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
        raise ValueError(
            f"the real records have no column {', '.join(repr(m) for m in missing)} (expected one "
            f"column per variable: {', '.join(schema.names)})"
        )
    encoded, dropped = schema.encode(real_records[schema.names])
    if encoded.empty:
        raise ValueError(f"no real record fits the schema (dropped: {dropped})")
    targets = {tuple(sorted(t.variables)) for t in project.tables}
    combos = [
        c for way in range(2, max_way + 1) for c in combinations(schema.names, way) if tuple(sorted(c)) not in targets
    ]
    templates, real, synthetic = _aggregate_combinations(project, combos, encoded, population)
    frame = pd.DataFrame(
        [
            {"variables": t.name, "way": len(t.variables), "tvd": tvd(r, s)}
            for t, r, s in zip(templates, real, synthetic)
        ]
    )
    return frame.sort_values("tvd", ascending=False, kind="stable").reset_index(drop=True), dropped


def _sample_records(population: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` persons drawn from a coded population in proportion to the records' counts (schema columns)."""
    weights = population[COUNT].to_numpy(dtype=np.float64)
    idx = rng.choice(len(population), size=n, p=weights / weights.sum())
    return population.iloc[idx].drop(columns=[COUNT]).reset_index(drop=True)


def _features(project: Project, frame: pd.DataFrame, drop: str | None = None):
    names = [v for v in project.schema.names if v != drop]
    categorical = [project.schema[v].type == "categorical" for v in names]
    return frame[names].to_numpy(dtype=np.float64), categorical


def classifier_two_sample(
    project: Project, population: pd.DataFrame, real: pd.DataFrame, rng: np.random.Generator, n_max: int = 5000
) -> dict[str, Any]:
    """How well a classifier tells real from synthetic records (0.5 accuracy = indistinguishable).

    Equal samples of real and synthetic persons (at most ``n_max`` each), 70/30 split, scikit-learn's
    HistGradientBoostingClassifier with native categorical features. Returns ``accuracy``, ``gap``
    (|accuracy - 0.5|), ``n_per_class`` and ``classifier``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    n = min(n_max, len(real), int(population[COUNT].sum()))
    synthetic = _sample_records(population, n, rng)
    real_part = real.iloc[rng.choice(len(real), size=n, replace=False)]
    x_real, categorical = _features(project, real_part)
    x_synth, _ = _features(project, synthetic)
    x = np.vstack([x_real, x_synth])
    y = np.r_[np.ones(n), np.zeros(n)]
    seed = int(rng.integers(2**31))
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    model = HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed).fit(x_train, y_train)
    accuracy = float((model.predict(x_test) == y_test).mean())
    return {
        "accuracy": accuracy,
        "gap": abs(accuracy - 0.5),
        "n_per_class": n,
        "classifier": "HistGradientBoostingClassifier (scikit-learn), 70/30 split",
    }


def train_synthetic_test_real(
    project: Project,
    population: pd.DataFrame,
    real: pd.DataFrame,
    label: str,
    rng: np.random.Generator,
    n_max: int = 20000,
) -> dict[str, Any]:
    """Accuracy predicting ``label`` on half of the real records, trained on synthetic persons (TSTR) and on
    the other real half (TRTR, the reference). HistGradientBoostingClassifier.

    Raises
    ------
    ValueError
        When ``label`` is not a categorical variable of the schema.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if label not in project.schema or project.schema[label].type != "categorical":
        raise ValueError(
            f'label "{label}" must be a categorical variable (one of '
            f"{', '.join(v.name for v in project.schema if v.type == 'categorical')})"
        )
    order = rng.permutation(len(real))
    half = len(real) // 2
    real_train, real_test = real.iloc[order[:half]], real.iloc[order[half:]]
    synthetic = _sample_records(population, min(n_max, max(len(real_train), 1)), rng)
    x_test, categorical = _features(project, real_test, drop=label)
    scores = {}
    seed = int(rng.integers(2**31))
    for name, train in (("tstr_accuracy", synthetic), ("trtr_accuracy", real_train)):
        x_train, _ = _features(project, train, drop=label)
        model = HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed)
        model.fit(x_train, train[label].to_numpy())
        scores[name] = float((model.predict(x_test) == real_test[label].to_numpy()).mean())
    return {"label": label, **scores, "test_records": len(real_test)}


def cramers_v_error(project: Project, population: pd.DataFrame, real: pd.DataFrame) -> dict[str, Any]:
    """Mean and max absolute difference of Cramér's V over every pair of variables (numerics binned as in the
    targets), real (coded records, one per person) vs synthetic; with the worst pair."""
    from itertools import combinations

    from ..metrics import cramers_v

    templates, real_counts, synthetic = _aggregate_combinations(
        project, list(combinations(project.schema.names, 2)), real, population
    )
    diffs = {t.name: abs(cramers_v(r) - cramers_v(s)) for t, r, s in zip(templates, real_counts, synthetic)}
    worst = max(diffs, key=diffs.__getitem__)
    return {
        "mean_abs_error": float(np.mean(list(diffs.values()))),
        "max_abs_error": diffs[worst],
        "worst_pair": worst,
        "pairs": len(templates),
    }


def evaluate_population(
    project: Project,
    population: pd.DataFrame,
    holdout: pd.DataFrame | None = None,
    rules=(),
    label: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every evaluation of a population (DESIGN §7), as one JSON-ready dict.

    Parameters
    ----------
    project : Project
    population : DataFrame, coded population with ``count``.
    holdout : DataFrame, optional, labelled real persons not used for the targets.
    rules : sequence of Rule, optional
    label : str, optional, a categorical variable for train-on-synthetic / test-on-real.
    seed : int, for the classifiers' samples and splits.

    Returns
    -------
    dict: ``targets`` (per table ``tvd``, ``srmse`` and ``cells``: target, synthetic, difference per cell),
    ``mean_tvd``, ``max_tvd``; with a holdout, ``holdout`` (``non_target_tables`` by way: mean, max, worst five;
    ``cramers_v``; ``wasserstein`` per numeric variable; ``classifier_two_sample``; ``tstr`` when a label is
    given); with rules, ``rules`` (see :func:`rules_report`).
    """
    rng = np.random.default_rng(seed)
    schema = project.schema
    with Aggregator(schema, project.tables) as aggregator:
        synthetic = aggregator.aggregate(population)
    per_table: dict[str, dict[str, Any]] = {}
    for t, s in zip(project.tables, synthetic):
        cells = []
        total = s.sum()
        for i in range(t.counts.size):
            target_count = float(t.counts.reshape(-1)[i])
            synthetic_count = float(s.reshape(-1)[i] * (t.counts.sum() / total)) if total else 0.0
            cells.append(
                {
                    **t.cell_label(schema, i),
                    "target": target_count,
                    "synthetic": synthetic_count,
                    "difference": synthetic_count - target_count,
                }
            )
        per_table[t.name] = {"tvd": tvd(t.counts, s), "srmse": srmse(t.counts, s), "cells": cells}
    tvds = [v["tvd"] for v in per_table.values()]
    report: dict[str, Any] = {
        "targets": per_table,
        "mean_tvd": float(np.mean(tvds)),
        "max_tvd": float(np.max(tvds)),
        "records": int(population[COUNT].sum()),
        "distinct_records": len(population),
    }
    if holdout is not None:
        tables, dropped = holdout_comparison(project, population, holdout)
        real, _ = schema.encode(holdout[schema.names])
        by_way = {}
        for way, group in tables.groupby("way"):
            by_way[f"{way}-way"] = {
                "tables": len(group),
                "mean_tvd": float(group["tvd"].mean()),
                "max_tvd": float(group["tvd"].max()),
                "worst": group.head(5)[["variables", "tvd"]].to_dict("records"),
            }
        weights = population[COUNT].to_numpy(dtype=np.float64)
        report["holdout"] = {
            "records": len(real),
            "dropped": dropped,
            "non_target_tables": by_way,
            "cramers_v": cramers_v_error(project, population, real),
            "wasserstein": {
                v.name: wasserstein(real[v.name], population[v.name], None, weights)
                for v in schema
                if v.type == "numeric"
            },
            "classifier_two_sample": classifier_two_sample(project, population, real, rng),
        }
        if label:
            report["holdout"]["tstr"] = train_synthetic_test_real(project, population, real, label, rng)
    if rules:
        report["rules"] = rules_report(project, population, rules, holdout)
    return report


def format_evaluation(report: dict[str, Any]) -> str:
    """A human-readable summary of :func:`evaluate_population`'s report (plain text, one fact per line)."""
    lines = [
        f"Population: {report['records']:,} persons in {report['distinct_records']:,} distinct records",
        f"Fit to {len(report['targets'])} target tables: mean TVD {report['mean_tvd']:.4f}, max TVD "
        f"{report['max_tvd']:.4f}",
    ]
    for name, fit in sorted(report["targets"].items(), key=lambda kv: -kv[1]["tvd"])[:5]:
        worst = max(fit["cells"], key=lambda c: abs(c["difference"]))
        cell = ", ".join(f"{k} = {v}" for k, v in worst.items() if k not in ("target", "synthetic", "difference"))
        lines.append(
            f"  {name}: TVD {fit['tvd']:.4f}, SRMSE {fit['srmse']:.4f}; most off: {cell} "
            f"({worst['synthetic']:,.0f} vs target {worst['target']:,.0f})"
        )
    holdout = report.get("holdout")
    if holdout:
        lines.append(f"Against {holdout['records']:,} held-out real records:")
        for way, info in holdout["non_target_tables"].items():
            worst = "; ".join(f"{w['variables']} {w['tvd']:.3f}" for w in info["worst"][:3])
            lines.append(
                f"  {info['tables']} {way} tables that were not targets: mean TVD {info['mean_tvd']:.4f}, "
                f"max {info['max_tvd']:.4f} (worst: {worst})"
            )
        cv = holdout["cramers_v"]
        lines.append(
            f"  Cramér's V error over {cv['pairs']} pairs: mean {cv['mean_abs_error']:.4f}, max "
            f"{cv['max_abs_error']:.4f} ({cv['worst_pair']})"
        )
        for name, value in holdout["wasserstein"].items():
            lines.append(f"  Wasserstein-1 of {name}: {value:.3f}")
        c2 = holdout["classifier_two_sample"]
        lines.append(
            f"  Real vs synthetic classifier: accuracy {c2['accuracy']:.3f} (gap {c2['gap']:.3f} from 0.5; "
            f"{c2['classifier']}, {c2['n_per_class']:,} per class)"
        )
        if "tstr" in holdout:
            t = holdout["tstr"]
            lines.append(
                f"  Predicting {t['label']}: trained on synthetic {t['tstr_accuracy']:.3f}, trained on "
                f"real {t['trtr_accuracy']:.3f} (tested on {t['test_records']:,} real records)"
            )
    rules = report.get("rules")
    if rules:
        real = f", real data {rules['real_any_rate']:.2%}" if "real_any_rate" in rules else ""
        lines.append(f"Plausibility rules: {rules['any_rate']:.2%} of persons break at least one{real}")
        for name, info in rules["rules"].items():
            real_rate = f" (real {info['real_rate']:.2%})" if "real_rate" in info else ""
            lines.append(f"  {name}: {info['violations']:,} persons, {info['rate']:.2%}{real_rate}")
        cost = rules["fit_cost"]
        lines.append(
            f"  Fit cost of the rules (max-entropy joint vs targets): mean TVD "
            f"{cost['without_rules']['mean_tvd']:.5f} without, {cost['with_rules']['mean_tvd']:.5f} with"
        )
    return "\n".join(lines)
