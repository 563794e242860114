"""The finish step of a person run (DESIGN §3, after the loop): the fallback fills target cells without a record,
calibration rakes the counts to every table (and numeric control), integerization rounds them to N whole persons,
and the fit is measured on the result.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd

from .. import defaults
from ..aggregate import Aggregator
from ..calibrate.integerizing import integerize_trs, repair_rounding
from ..calibrate.raking import NumericTarget, rake_counts
from ..metrics import Fit, NumericFit, measure_fit, numeric_statistic, relative_error, unsupported_cells
from ..priors.base import Proposal, gap_conditions
from ..schema import COUNT
from ..targets.model import Project
from .events import SynthesisResult


def finish_persons(
    run, aggregator: Aggregator, loop_fit: Fit | None, iteration: int, started: float
) -> SynthesisResult:
    """Fill, calibrate, integerize and measure the population of a person run after its loop (``run``: the loop's
    state, ``synthesis.persons._PersonRun``); returns its :class:`SynthesisResult`."""
    project, schema, tables, size, rng = run.project, run.schema, run.tables, run.size, run.rng
    backup, population = run.backup, run.population
    if backup is not None and run.calibrate:
        parts = _fallback_support(run, aggregator, loop_fit)
        if any(len(part) for part in parts):
            population = _merged(pd.concat([population, *parts], ignore_index=True), schema.names)
    calibration = None
    weights = population[COUNT].to_numpy(dtype=np.float64)
    cell_ids = aggregator.cell_ids(population)
    numeric = numeric_targets(project, population, size)
    if run.calibrate:
        calibration = rake_counts(cell_ids, [t.counts for t in tables], weights, numeric=numeric)
        weights = calibration.counts
        if not calibration.converged:
            run.warnings.append(
                f"calibration did not converge in {calibration.iterations} sweeps (largest share "
                f"error {calibration.max_abs_error:.2e}"
                + (
                    f", largest relative error of a numeric control {calibration.max_relative_error_numeric:.2e}"
                    if numeric
                    else ""
                )
                + "): some target cells have no record or the tables contradict each other"
            )
    # controlled rounding: records ordered by their cell of the most detailed table, in random order inside it
    # (nested orders over several tables put every cell's first records at the same phase of the systematic
    # draw: on the e-commerce network one price bin came out 22 persons short of 333, TVD 0.012)
    detailed = max(range(len(tables)), key=lambda i: tables[i].counts.size)
    order = np.lexsort((rng.random(len(population)), cell_ids[detailed]))
    rounded = integerize_trs(weights, size, rng, order=order)
    goals = [
        np.bincount(ids, weights=weights * (size / weights.sum()), minlength=t.counts.size)
        for ids, t in zip(cell_ids, tables)
    ]
    # then persons moved between records until every cell is within about one person of the fractional counts
    # (and the numeric controls' totals as close, when calibration fitted them)
    rounded = repair_rounding(rounded, cell_ids, goals, numeric if run.calibrate else ())
    population = population.assign(**{COUNT: rounded})
    population = population[population[COUNT] > 0].reset_index(drop=True)
    fit = measure_fit(tables, aggregator.aggregate(population))
    if project.numeric_controls:
        fit = replace(fit, numeric=measure_numeric(project, population, size))
    return SynthesisResult(
        population,
        fit,
        loop_fit,
        iteration,
        run.stop_reason,
        calibration,
        time.perf_counter() - started,
        dict(run.rejected_total),
        tuple(run.warnings),
        run.error,
        _sources(run, population),
        dict(run.fallback_stats),
    )


def _merged(population: pd.DataFrame, names) -> pd.DataFrame:
    live = population[population[COUNT] > 0]
    merged = live.groupby(names, sort=True, as_index=False, observed=True)[COUNT].sum()
    return merged.astype({COUNT: np.int64})


def _fallback_support(run, aggregator: Aggregator, loop_fit: Fit | None) -> list[pd.DataFrame]:
    """Records from the fallback for target cells without a record and, when the loop ended above the tolerance,
    of every kind (a tenth of N), so that calibration has the support it needs."""
    backup, schema = run.backup, run.schema

    def from_fallback(proposal: Proposal, k: int) -> pd.DataFrame:
        """``k`` valid records of the fallback for ``proposal``, sharing its count; marked as the fallback's."""
        records = run.valid_records(backup.realize(proposal, k, run.rng), proposal, Counter(), "fallback ")
        if len(records):
            records[COUNT] = _split(proposal.count, len(records))
            run.from_backup.update(records[schema.names].itertuples(index=False, name=None))
        return records

    parts = _fill_unsupported(run.population, run.tables, aggregator, from_fallback, run.fallback_stats)
    if loop_fit is not None and loop_fit.mean_tvd > run.config.tolerance_tvd:
        # the prior left the fit far off (a careless model's proposals): records of every kind from the
        # fallback, a tenth of N, give calibration the support it needs to fit every table
        support = from_fallback(
            Proposal(conditions={}, count=max(1, run.size // 10), reason="support for calibration"), run.distinct
        )
        run.fallback_stats["support_records"] += len(support)
        parts.append(support)
    return parts


def _split(count: int, n: int) -> np.ndarray:
    out = np.full(n, count // n, dtype=np.int64)
    out[: count % n] += 1
    return out


def _sources(run, population: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Persons added over the run and persons of the final population, per prior (the run's and its fallback)."""
    if run.backup is None:
        return {}
    mask = np.fromiter(
        (r in run.from_backup for r in population[run.schema.names].itertuples(index=False, name=None)),
        dtype=bool,
        count=len(population),
    )
    final = population[COUNT].to_numpy()
    prior, backup = run.prior, run.backup
    return {
        prior.name: {"added": int(run.added_by[prior.name]), "final": int(final[~mask].sum())},
        backup.name: {"added": int(run.added_by[backup.name]), "final": int(final[mask].sum())},
    }


def _fill_unsupported(population, tables, aggregator, from_fallback, stats) -> list[pd.DataFrame]:
    """Records from the fallback prior for every target cell that has none (calibration can only reweight records
    that exist): one proposal per cell, conditions = the cell, ``MIN_RECORDS_PER_PROPOSAL`` records sharing its
    target count (``from_fallback(proposal, k)``). Returns the frames to merge into the population; counts the cells
    filled in ``stats["unsupported_cells"]``."""
    schema = aggregator.schema
    tables_by_name = {t.name: t for t in tables}
    parts = []
    for gap in unsupported_cells(tables, aggregator.aggregate(population), schema):
        proposal = Proposal(
            conditions=gap_conditions(gap, schema, tables_by_name),
            count=max(1, round(gap.target_count)),
            reason="a target cell with no record, filled by the fallback before calibration",
        )
        records = from_fallback(proposal, defaults.MIN_RECORDS_PER_PROPOSAL)
        if len(records):
            parts.append(records)
            stats["unsupported_cells"] += 1
    return parts


def _numeric_cells(project: Project, population: pd.DataFrame) -> list[np.ndarray]:
    """Cell of each record in each numeric control of ``project`` (int64, shape (len(population),) each)."""
    with Aggregator(project.schema, [c.cells() for c in project.numeric_controls]) as cells:
        return cells.cell_ids(population)


def numeric_targets(project: Project, population: pd.DataFrame, size: int) -> list[NumericTarget]:
    """The project's numeric controls for calibrating ``population`` (coded records), totals scaled from the
    project's population size to ``size`` persons (means as they are)."""
    if not project.numeric_controls:
        return []
    scale = size / project.size
    return [
        NumericTarget(
            ids,
            population[c.of].to_numpy(dtype=np.float64),
            c.values.reshape(-1) * (1.0 if c.statistic == "mean" else scale),
            c.statistic == "mean",
            _companion(project, c),
        )
        for c, ids in zip(project.numeric_controls, _numeric_cells(project, population))
    ]


def _companion(project: Project, control) -> int | None:
    """Index of the count table raked together with a numeric control (:func:`synthor_core.calibrate.raking._tilt`): the
    table over the control's variable with the most cells, when the joint Newton system stays small."""
    candidates = [
        (t.counts.size, i)
        for i, t in enumerate(project.tables)
        if control.of in t.variables
        and (t.counts.size + control.values.size) ** 2 <= defaults.RAKE_MAX_COMPANION_SYSTEM
    ]
    return max(candidates)[1] if candidates else None


def measure_numeric(project: Project, population: pd.DataFrame, size: int | None = None) -> dict[str, NumericFit]:
    """Fit of ``population`` (coded records + ``count``) to each numeric control of ``project``: control name ->
    :class:`NumericFit` (totals compared after scaling the control from the project's size to ``size``)."""
    size = size or project.size
    weights = population[COUNT].to_numpy(dtype=np.float64)
    out = {}
    for control, target in zip(project.numeric_controls, numeric_targets(project, population, size)):
        synthetic = numeric_statistic(target.cell_ids, target.values, weights, target.goals.size, target.mean)
        out[control.name] = NumericFit(
            control.of,
            control.statistic,
            target.goals.reshape(control.values.shape),
            synthetic.reshape(control.values.shape),
            relative_error(synthetic, target.goals).reshape(control.values.shape),
            tuple(control.cells().cell_label(project.schema, i) for i in range(control.values.size)),
        )
    return out
