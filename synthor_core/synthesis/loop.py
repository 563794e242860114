"""The synthesis loop (DESIGN §3; LLMSynthor §3): aggregate, measure the gap, ask the prior for proposals,
realize them into records, update the population, repeat; then calibrate and integerize.

The engine is pure: no threads, no I/O, no global random state. ``run_synthesis`` yields one
:class:`IterationEvent` per iteration and finally one :class:`SynthesisResult`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .. import defaults
from ..aggregate import Aggregator
from ..calibrate.integerizing import integerize_trs, repair_rounding
from ..calibrate.raking import CalibrationResult, NumericTarget, rake_counts
from ..errors import PriorError, TokenBudgetExhausted
from ..metrics import Fit, NumericFit, attribute_gaps, measure_fit, numeric_statistic, relative_error, unsupported_cells
from ..priors.base import Guidance, Prior, Proposal, check_proposal, gap_conditions, match_conditions
from ..schema import COUNT, Schema
from ..targets.model import Project


class SynthesisConfig(BaseModel):
    """Settings of one run. Closed and frozen: a misspelt setting is an error, never a silent default.

    Attributes
    ----------
    size : int or None
        Population size N; None takes the project's ``[population] size``.
    mode : {"full", "paper"}
        ``paper``: LLMSynthor as published (add-only, at most 5 fully specified proposals per iteration, uniform
        numerics, no calibration). ``full``: removals, realistic fill, calibration and integerization.
    seed : int
        Seed of the run's only random generator; same inputs and seed give the same population.
    max_iterations : int
        Iterations of the loop at most.
    tolerance_tvd : float
        The loop stops when the mean TVD over the target tables is at or below it (full mode).
    distinct_records : int or None
        Distinct records the population aims at (a proposal of ``c`` persons gets about
        ``distinct_records * c / N`` of them); None takes the prior's default. Independent of N, so memory and
        LLM cost do not grow with N (DESIGN §3, "Why profiles with counts").
    top_k : int
        Under- and over-represented cells handed to the prior per iteration.
    max_proposals : int or None
        Proposals used per iteration; None: 5 in paper mode, ``FULL_MAX_PROPOSALS`` in full mode.
    calibrate : bool or None
        Rake the counts to all tables after the loop; None: on in full mode, off in paper mode.
    fallback : bool
        Full mode, when the run is given a fallback prior (``maxent`` or the seed behind the LLM): realize from it
        what the prior could not (its records broke the schema, the proposal's conditions or the rules, or its
        calls failed), plan from it when the prior cannot plan, and give it the target cells with no record before
        calibration. Off: pure output of the prior, however poor.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    size: int | None = Field(None, gt=0, le=defaults.MAX_POPULATION)
    mode: Literal["full", "paper"] = "full"
    seed: int = Field(0, ge=0)
    max_iterations: int = Field(defaults.MAX_ITERATIONS, ge=1, le=100_000)
    tolerance_tvd: float = Field(defaults.TOLERANCE_TVD, gt=0, lt=1)
    distinct_records: int | None = Field(None, ge=1)
    top_k: int = Field(defaults.ATTRIBUTION_TOP_K, ge=1)
    max_proposals: int | None = Field(None, ge=1)
    calibrate: bool | None = None
    fallback: bool = True


@dataclass(frozen=True)
class IterationEvent:
    """What happened in one iteration, for charts, logs and the run store.

    Attributes
    ----------
    iteration : int (1-based)
    mean_tvd, max_tvd : float
        Over the target tables, after this iteration's update.
    tvd_by_table, srmse_by_table : dict of table name -> float
    proposals : tuple of Proposal
        As the prior returned them.
    added, removed : int
        Persons added and removed.
    rejected : dict of reason -> int
        Proposals and records dropped this iteration, by reason.
    population_total, distinct_records : int
        Persons and distinct records after the update.
    llm_calls, prompt_tokens, completion_tokens : int
        The prior's cumulative usage.
    seconds, aggregate_seconds : float
        Wall time of the whole iteration and of its aggregation.
    table_counts : dict of table name -> ndarray of float64 shaped like the table
        Synthetic persons per cell after the update (for live target-vs-synthetic charts; not stored).
    cost_usd : float or None
        Estimated LLM cost so far, when the prior knows its prices.
    sources : dict of prior name -> int
        Persons added this iteration by each prior (the run's prior and its fallback).
    """

    iteration: int
    mean_tvd: float
    max_tvd: float
    tvd_by_table: dict[str, float]
    srmse_by_table: dict[str, float]
    proposals: tuple[Proposal, ...]
    added: int
    removed: int
    rejected: dict[str, int]
    population_total: int
    distinct_records: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    aggregate_seconds: float
    table_counts: dict = field(default_factory=dict, repr=False, compare=False)
    cost_usd: float | None = None
    sources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SynthesisResult:
    """The end of a run.

    Attributes
    ----------
    population : DataFrame, one row per distinct record, schema columns (int16 codes / float64) + ``count``
        (int64 > 0) summing to N. ``Schema.decode`` gives labels.
    fit : Fit
        Against every target table, after calibration and integerization.
    loop_fit : Fit or None
        After the last iteration, before calibration.
    iterations : int
    stop_reason : str
        ``"tolerance reached"``, ``"population complete"``, ``"no further improvement"``,
        ``"max iterations reached"`` or ``"stop requested"``.
    calibration : CalibrationResult or None
    seconds : float
    rejected : dict of reason -> int, over the whole run.
    warnings : tuple of str
    error : str or None
        Why the prior failed, when it did (the population built until then is kept and calibrated).
    sources : dict of prior name -> {"added": persons added over the run, "final": persons of the final
        population whose record came from it}
        Empty when the run had no fallback prior.
    fallback : dict of str -> int
        What the fallback did: ``plans`` (iterations planned by it), ``proposals`` (proposals it realized, wholly
        or in part), ``records`` (its records), ``unsupported_cells`` (target cells without a record that it
        filled before calibration), ``support_records`` (records of every kind it added for calibration when the
        loop ended above the tolerance).
    """

    population: pd.DataFrame
    fit: Fit
    loop_fit: Fit | None
    iterations: int
    stop_reason: str
    calibration: CalibrationResult | None
    seconds: float
    rejected: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)


def merge_duplicates(population: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Merge records with equal values into one row, summing ``count``; drop rows with count 0.

    Returns a frame sorted by the schema columns (a deterministic order), index 0..n-1.
    """
    live = population[population[COUNT] > 0]
    merged = live.groupby(schema.names, sort=True, as_index=False, observed=True)[COUNT].sum()
    return merged.astype({COUNT: np.int64})


def _split_count(count: int, n: int) -> np.ndarray:
    """``count`` persons over ``n`` records as evenly as possible (the first ``count % n`` get one more)."""
    out = np.full(n, count // n, dtype=np.int64)
    out[: count % n] += 1
    return out


def _remove(
    population: pd.DataFrame, mask: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, int]:
    """Take ``count`` persons (at most all) from the records in ``mask``, in proportion to their counts.

    Each record loses the whole part of its share ``count * n_i / sum(n)`` and, with probability equal to the
    fractional part, one person more: systematic sampling with a random start over a random order of the records,
    so which records lose persons never depends on their sort order (a record's expected loss is its share exactly;
    the total is exactly ``count``). Source: systematic PPS sampling (Madow 1949); issue 11 (no bias from removals).
    """
    idx = np.flatnonzero(mask)
    have = population[COUNT].to_numpy()[idx]
    available = int(have.sum())
    take = min(count, available)
    if take <= 0:
        return population, 0
    raw = have * (take / available)
    cut = np.floor(raw).astype(np.int64)
    need = take - int(cut.sum())
    if need > 0:
        fraction = raw - cut
        order = rng.permutation(len(fraction))
        cumulative = np.cumsum(fraction[order]) + rng.random()
        picks = np.diff(np.floor(np.concatenate([[cumulative[0] - fraction[order][0]], cumulative]))).astype(np.int64)
        extra = np.zeros(len(fraction), dtype=np.int64)
        extra[order] = np.clip(picks, 0, 1)
        missing = need - int(extra.sum())  # rounding of the float sums: mend by the largest fractions left
        if missing > 0:
            free = np.flatnonzero((extra == 0) & (cut < have))
            extra[free[np.argsort(-fraction[free], kind="stable")[:missing]]] = 1
        elif missing < 0:
            chosen = np.flatnonzero(extra)
            extra[chosen[np.argsort(fraction[chosen], kind="stable")[:-missing]]] = 0
        cut += extra
    counts = population[COUNT].to_numpy().copy()
    counts[idx] -= np.minimum(cut, have)
    out = population.copy()
    out[COUNT] = counts
    return out, take


def run_synthesis(
    project: Project,
    prior: Prior,
    config: SynthesisConfig,
    should_stop: Callable[[], bool] | None = None,
    rules=(),
    checkpoint: Callable[[int, pd.DataFrame], None] | None = None,
    initial: pd.DataFrame | None = None,
    fallback: Prior | None = None,
) -> Iterator[IterationEvent | SynthesisResult]:
    """Run the loop; yield an :class:`IterationEvent` per iteration, then the :class:`SynthesisResult`.

    Parameters
    ----------
    project : Project
        Validated, harmonized targets.
    prior : Prior
    config : SynthesisConfig
    should_stop : callable returning bool, optional
        Polled once per iteration and between proposals; when true the loop ends and what was built is
        calibrated and returned (stop reason ``"stop requested"``).
    rules : sequence of Rule, optional
        Plausibility rules as hard constraints: a record that violates one is dropped and counted
        (``"record: violates <rule>"``), whatever the prior.
    checkpoint : callable (iteration, population), optional
        Called after every iteration with the population so far (coded, schema columns + ``count``, not yet
        calibrated), before the iteration's event is yielded, so that a caller can save it (a crash or a kill
        then loses at most what came after its last save).
    initial : DataFrame, optional
        A coded population to start from (a saved checkpoint of an interrupted run) instead of an empty one.
    fallback : Prior, optional
        Used in full mode when ``config.fallback``: realizes what ``prior`` could not, plans when it cannot, and
        fills target cells without a record before calibration (issue 13: the fit never depends on an LLM's
        compliance). Its share is counted per iteration (``IterationEvent.sources``) and for the run.

    Raises
    ------
    PriorError
        When the prior produced no valid record at all.

    Source: LLMSynthor §3 (update, discrepancy, proposal, sampling, merge); DESIGN §3 (removal, calibration).
    """
    started = time.perf_counter()
    schema = project.schema
    size = config.size or project.size
    paper = config.mode == "paper"
    tables = [replace(t, counts=t.counts * (size / project.size)) for t in project.tables]
    rng = np.random.default_rng(config.seed)
    max_proposals = config.max_proposals or (defaults.PAPER_MAX_PROPOSALS if paper else defaults.FULL_MAX_PROPOSALS)
    distinct = config.distinct_records or int(getattr(prior, "distinct_records", defaults.MAXENT_RECORDS_PER_PROPOSAL))
    calibrate = (not paper) if config.calibrate is None else config.calibrate
    stop = should_stop or (lambda: False)
    warnings = list(project.warnings) + list(getattr(prior, "notes", []))
    rejected_total: Counter = Counter()
    backup = fallback if (fallback is not None and config.fallback and not paper) else None
    added_by: Counter = Counter()  # persons added per prior over the run
    fallback_stats: Counter = Counter()
    from_backup: set[tuple] = set()  # value tuples of the records the fallback realized

    def valid_records(records: pd.DataFrame, proposal: Proposal, rejected: Counter, origin: str) -> pd.DataFrame:
        """The records (coded) that pass the schema, the proposal's conditions and the rules; the rest counted."""
        encoded, bad = schema.encode(records)
        rejected.update({f"{origin}record: {r}": n for r, n in bad.items()})
        inside = match_conditions(encoded, proposal.conditions, schema)
        if (~inside).any():
            rejected[f"{origin}record: does not satisfy the proposal's conditions"] += int((~inside).sum())
        for rule in rules:
            broken = rule.violates(encoded) & inside
            if broken.any():
                rejected[f"{origin}record: violates {rule.name}"] += int(broken.sum())
                inside &= ~broken
        return encoded.loc[inside]

    population = schema.empty_population() if initial is None else initial.reset_index(drop=True).copy()
    with Aggregator(schema, tables) as aggregator:
        synthetic = aggregator.aggregate(population)
        loop_fit: Fit | None = None
        best, best_at, stop_reason, iteration, error = math.inf, 0, "max iterations reached", 0, None
        for iteration in range(1, config.max_iterations + 1):
            if stop():
                stop_reason, iteration = "stop requested", iteration - 1
                break
            t0 = time.perf_counter()
            total = int(population[COUNT].sum())
            under, over = attribute_gaps(tables, synthetic, schema, config.top_k, by="share" if paper else "count")
            batch = min(size - total, math.ceil(size / config.max_iterations)) if paper else 0
            unsupported = [] if paper else unsupported_cells(tables, synthetic, schema)
            guidance = Guidance(
                iteration, size, total, batch, under, [] if paper else over, config.mode, max_proposals, unsupported
            )
            try:
                proposals = prior.plan(guidance, rng)[: max_proposals + len(unsupported)]
            except PriorError as exc:
                if backup is None or isinstance(exc, TokenBudgetExhausted):
                    stop_reason, error, iteration = _prior_stop(exc), _prior_error(exc), iteration - 1
                    break
                if not fallback_stats["plans"]:
                    warnings.append(f'the prior "{prior.name}" could not plan ({exc}); {backup.name} planned instead')
                proposals = []
            if backup is not None and not proposals:
                proposals = backup.plan(guidance, rng)[: max_proposals + len(unsupported)]
                fallback_stats["plans"] += 1
            rejected: Counter = Counter()
            requests: list[tuple[Proposal, int]] = []
            removed = 0
            for proposal in proposals:
                problem = check_proposal(proposal, schema, paper)
                if problem is None and paper and proposal.action == "remove":
                    problem = "paper mode is add-only"
                if problem is not None:
                    rejected[f"proposal: {problem}"] += 1
                elif proposal.action == "remove":
                    population, took = _remove(
                        population, match_conditions(population, proposal.conditions, schema), proposal.count, rng
                    )
                    removed += took
                else:
                    requests.append(
                        (
                            proposal,
                            min(
                                proposal.count,
                                max(defaults.MIN_RECORDS_PER_PROPOSAL, math.ceil(distinct * proposal.count / size)),
                            ),
                        )
                    )
            try:
                if hasattr(prior, "realize_batch"):
                    realized = prior.realize_batch(requests, rng, stop)
                else:
                    realized = []
                    for proposal, k in requests:
                        if stop():
                            break
                        realized.append(prior.realize(proposal, k, rng))
            except PriorError as exc:
                realized = []
                if backup is None or isinstance(exc, TokenBudgetExhausted):
                    stop_reason, error = _prior_stop(exc), _prior_error(exc)
                else:
                    if not fallback_stats["realize_failures"]:
                        warnings.append(f'the prior "{prior.name}" failed ({exc}); {backup.name} realized instead')
                    fallback_stats["realize_failures"] += 1
            new_parts, added = [], 0
            sources: Counter = Counter()
            if backup is not None and not stop():  # requests the prior gave nothing for (its calls failed)
                realized = list(realized) + [pd.DataFrame(columns=schema.names)] * (len(requests) - len(realized))
            for (proposal, k), records in zip(requests, realized):
                encoded = valid_records(records, proposal, rejected, "")
                own = len(encoded)
                if backup is not None and own < k and not stop():
                    extra = valid_records(backup.realize(proposal, k - own, rng), proposal, rejected, "fallback ")
                    if len(extra):
                        fallback_stats["proposals"] += 1
                        fallback_stats["records"] += len(extra)
                        from_backup.update(extra[schema.names].itertuples(index=False, name=None))
                        encoded = pd.concat([encoded, extra], ignore_index=True) if own else extra
                if len(encoded) == 0:
                    rejected["proposal: no valid record"] += 1
                    continue
                encoded[COUNT] = _split_count(proposal.count, len(encoded))
                new_parts.append(encoded)
                added += proposal.count
                if backup is not None:
                    sources[prior.name] += int(encoded[COUNT].to_numpy()[:own].sum())
                    sources[backup.name] += int(encoded[COUNT].to_numpy()[own:].sum())
            added_by.update(sources)
            if new_parts:
                population = pd.concat([population, *new_parts], ignore_index=True)
            population = merge_duplicates(population, schema)
            t_agg = time.perf_counter()
            synthetic = aggregator.aggregate(population)
            aggregate_seconds = time.perf_counter() - t_agg
            loop_fit = measure_fit(tables, synthetic)
            rejected_total.update(rejected)
            usage = prior.usage
            if checkpoint is not None:
                checkpoint(iteration, population)
            yield IterationEvent(
                iteration=iteration,
                mean_tvd=loop_fit.mean_tvd,
                max_tvd=loop_fit.max_tvd,
                tvd_by_table={k: v.tvd for k, v in loop_fit.tables.items()},
                srmse_by_table={k: v.srmse for k, v in loop_fit.tables.items()},
                proposals=tuple(proposals),
                added=added,
                removed=removed,
                rejected=dict(rejected),
                population_total=int(population[COUNT].sum()),
                distinct_records=len(population),
                llm_calls=usage.calls,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                seconds=time.perf_counter() - t0,
                aggregate_seconds=aggregate_seconds,
                table_counts={t.name: c for t, c in zip(tables, synthetic)},
                cost_usd=prior.dollars() if hasattr(prior, "dollars") else None,
                sources=dict(sources),
            )
            if error is not None or stop_reason == "token budget reached":
                break
            if not proposals and paper:
                stop_reason = "no proposal"
                break
            if paper and population[COUNT].sum() >= size:
                stop_reason = "population complete"
                break
            if not paper and loop_fit.mean_tvd <= config.tolerance_tvd:
                stop_reason = "tolerance reached"
                break
            if loop_fit.mean_tvd < best * (1 - 0.01):
                best, best_at = loop_fit.mean_tvd, iteration
            elif not paper and iteration - best_at >= defaults.PATIENCE_ITERATIONS:
                stop_reason = "no further improvement"
                break
            if stop():
                stop_reason = "stop requested"
                break

        if population[COUNT].sum() <= 0:
            raise PriorError(
                f'the prior "{prior.name}" produced no valid record in {iteration} iteration(s); '
                f"rejected: {dict(rejected_total) or 'nothing'}"
                + _failure_text(prior.usage)
                + (f"; {error}" if error else "")
            )
        if backup is not None and calibrate:

            def from_fallback(proposal: Proposal, k: int) -> pd.DataFrame:
                """``k`` valid records of the fallback for ``proposal``, sharing its count; marked as the fallback's."""
                records = valid_records(backup.realize(proposal, k, rng), proposal, Counter(), "fallback ")
                if len(records):
                    records[COUNT] = _split_count(proposal.count, len(records))
                    from_backup.update(records[schema.names].itertuples(index=False, name=None))
                return records

            parts = _fill_unsupported(population, tables, aggregator, from_fallback, fallback_stats)
            if loop_fit is not None and loop_fit.mean_tvd > config.tolerance_tvd:
                # the prior left the fit far off (a careless model's proposals): records of every kind from the
                # fallback, a tenth of N, give calibration the support it needs to fit every table
                support = from_fallback(
                    Proposal(conditions={}, count=max(1, size // 10), reason="support for calibration"), distinct
                )
                fallback_stats["support_records"] += len(support)
                parts.append(support)
            if any(len(part) for part in parts):
                population = merge_duplicates(pd.concat([population, *parts], ignore_index=True), schema)
        calibration = None
        weights = population[COUNT].to_numpy(dtype=np.float64)
        cell_ids = aggregator.cell_ids(population)
        numeric = numeric_targets(project, population, size)
        if calibrate:
            calibration = rake_counts(cell_ids, [t.counts for t in tables], weights, numeric=numeric)
            weights = calibration.counts
            if not calibration.converged:
                warnings.append(
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
        rounded = repair_rounding(rounded, cell_ids, goals, numeric if calibrate else ())
        population = population.assign(**{COUNT: rounded})
        population = population[population[COUNT] > 0].reset_index(drop=True)
        fit = measure_fit(tables, aggregator.aggregate(population))
        sources_report: dict[str, dict[str, int]] = {}
        if backup is not None:
            mask = np.fromiter(
                (r in from_backup for r in population[schema.names].itertuples(index=False, name=None)),
                dtype=bool,
                count=len(population),
            )
            final = population[COUNT].to_numpy()
            sources_report = {
                prior.name: {"added": int(added_by[prior.name]), "final": int(final[~mask].sum())},
                backup.name: {"added": int(added_by[backup.name]), "final": int(final[mask].sum())},
            }
        if project.numeric_controls:
            fit = replace(fit, numeric=measure_numeric(project, population, size))
    yield SynthesisResult(
        population,
        fit,
        loop_fit,
        iteration,
        stop_reason,
        calibration,
        time.perf_counter() - started,
        dict(rejected_total),
        tuple(warnings),
        error,
        sources_report,
        dict(fallback_stats),
    )


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


def _failure_text(usage) -> str:
    """The prior's failed calls by kind, for an error message ("; 40 failed calls: server_error 28, ...")."""
    failures = getattr(usage, "failures", None) or {}
    if not failures:
        return ""
    kinds = sorted(failures.items(), key=lambda kv: -kv[1])
    return f"; {sum(failures.values()):,} failed calls of {usage.calls:,}: " + ", ".join(
        f"{kind} {n:,}" for kind, n in kinds
    )


def _prior_stop(exc: PriorError) -> str:
    return "token budget reached" if isinstance(exc, TokenBudgetExhausted) else f"prior failed: {exc}"


def _prior_error(exc: PriorError) -> str | None:
    return None if isinstance(exc, TokenBudgetExhausted) else str(exc)
