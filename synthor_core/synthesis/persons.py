"""The loop for persons (DESIGN §3; LLMSynthor §3): aggregate, measure the gap, ask the prior for proposals,
realize them into records, update the population, repeat; then the finish step calibrates and integerizes
(:mod:`synthor_core.synthesis.finish`).

Pure: no threads, no I/O, no global random state. :func:`synthesize_persons` yields one :class:`IterationEvent` per
iteration and finally one :class:`SynthesisResult`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pandas as pd

from .. import defaults
from ..aggregate import Aggregator
from ..errors import PriorError, TokenBudgetExhausted
from ..metrics import Fit, attribute_gaps, measure_fit, unsupported_cells
from ..priors.base import Guidance, Prior, Proposal, check_proposal, match_conditions
from ..schema import COUNT, Schema
from ..targets.model import Project
from .config import SynthesisConfig
from .events import IterationEvent, SynthesisResult
from .finish import finish_persons


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


class _PersonRun:
    """One person run's state: the population so far, what was rejected and added, and where it came from."""

    def __init__(self, project: Project, prior: Prior, config: SynthesisConfig, rules, fallback, stop, initial):
        self.project, self.prior, self.config, self.rules, self.stop = project, prior, config, rules, stop
        self.schema = project.schema
        self.size = config.size or project.size
        self.paper = config.mode == "paper"
        self.tables = [replace(t, counts=t.counts * (self.size / project.size)) for t in project.tables]
        self.rng = np.random.default_rng(config.seed)
        self.max_proposals = config.max_proposals or (
            defaults.PAPER_MAX_PROPOSALS if self.paper else defaults.FULL_MAX_PROPOSALS
        )
        self.distinct = config.distinct_records or int(prior.distinct_records)
        self.calibrate = (not self.paper) if config.calibrate is None else config.calibrate
        self.warnings = list(project.warnings) + list(prior.notes)
        self.rejected_total: Counter = Counter()
        self.backup = fallback if (fallback is not None and config.fallback and not self.paper) else None
        self.added_by: Counter = Counter()  # persons added per prior over the run
        self.fallback_stats: Counter = Counter()
        self.from_backup: set[tuple] = set()  # value tuples of the records the fallback realized
        self.population = self.schema.empty_population() if initial is None else initial.reset_index(drop=True).copy()
        self.stop_reason: str = "max iterations reached"
        self.error: str | None = None

    def valid_records(self, records: pd.DataFrame, proposal: Proposal, rejected: Counter, origin: str) -> pd.DataFrame:
        """The records (coded) that pass the schema, the proposal's conditions and the rules; the rest counted."""
        encoded, bad = self.schema.encode(records)
        rejected.update({f"{origin}record: {r}": n for r, n in bad.items()})
        inside = match_conditions(encoded, proposal.conditions, self.schema)
        if (~inside).any():
            rejected[f"{origin}record: does not satisfy the proposal's conditions"] += int((~inside).sum())
        for rule in self.rules:
            broken = rule.violates(encoded) & inside
            if broken.any():
                rejected[f"{origin}record: violates {rule.name}"] += int(broken.sum())
                inside &= ~broken
        return encoded.loc[inside]

    def guidance(self, iteration: int, synthetic) -> Guidance:
        config, paper = self.config, self.paper
        total = int(self.population[COUNT].sum())
        under, over = attribute_gaps(
            self.tables, synthetic, self.schema, config.top_k, by="share" if paper else "count"
        )
        batch = min(self.size - total, math.ceil(self.size / config.max_iterations)) if paper else 0
        unsupported = [] if paper else unsupported_cells(self.tables, synthetic, self.schema)
        return Guidance(
            iteration,
            self.size,
            total,
            batch,
            under,
            [] if paper else over,
            config.mode,
            self.max_proposals,
            unsupported,
        )

    def plan(self, guidance: Guidance) -> list[Proposal] | None:
        """The prior's proposals (the fallback's when it cannot plan); None when the prior's failure ends the run."""
        limit = self.max_proposals + len(guidance.unsupported)
        try:
            proposals = self.prior.plan(guidance, self.rng)[:limit]
        except PriorError as exc:
            if self.backup is None or isinstance(exc, TokenBudgetExhausted):
                self.stop_reason, self.error = _prior_stop(exc), _prior_error(exc)
                return None
            if not self.fallback_stats["plans"]:
                self.warnings.append(
                    f'the prior "{self.prior.name}" could not plan ({exc}); {self.backup.name} planned instead'
                )
            proposals = []
        usable = [p for p in proposals if check_proposal(p, self.schema, self.paper) is None]
        if self.backup is not None and not usable:  # none, or none usable (counted as rejected in apply)
            proposals = proposals + self.backup.plan(guidance, self.rng)[:limit]
            self.fallback_stats["plans"] += 1
        return proposals

    def apply(
        self, proposals: list[Proposal], rejected: Counter, guidance: Guidance
    ) -> tuple[list[tuple[Proposal, int]], int]:
        """Removals done at once; add-proposals as ``(proposal, records to realize)``. Returns (requests, removed).

        An iteration removes at most what the guidance calls for: the over-represented cells' excess plus the
        population's excess over N (SmolLM2-135M once proposed removing every person with no condition)."""
        requests: list[tuple[Proposal, int]] = []
        removed = 0
        removable = math.ceil(
            sum(abs(g.count_gap) for g in guidance.over) + max(guidance.current_total - guidance.population_size, 0)
        )
        for proposal in proposals:
            problem = check_proposal(proposal, self.schema, self.paper)
            if problem is None and self.paper and proposal.action == "remove":
                problem = "paper mode is add-only"
            if problem is not None:
                rejected[f"proposal: {problem}"] += 1
            elif proposal.action == "remove":
                if removed >= removable:
                    rejected["proposal: removes more than the guidance's excess"] += 1
                    continue
                mask = match_conditions(self.population, proposal.conditions, self.schema)
                count = min(proposal.count, removable - removed)
                self.population, took = _remove(self.population, mask, count, self.rng)
                removed += took
            else:
                share = math.ceil(self.distinct * proposal.count / self.size)
                requests.append((proposal, min(proposal.count, max(defaults.MIN_RECORDS_PER_PROPOSAL, share))))
        return requests, removed

    def realize(self, requests, rejected: Counter) -> tuple[int, Counter]:
        """Records for the add-requests (the fallback tops up what the prior could not), merged into the population.
        Returns (persons added, persons added per prior)."""
        prior, backup, schema, stop = self.prior, self.backup, self.schema, self.stop
        try:
            realized = prior.realize_batch(requests, self.rng, stop)
        except PriorError as exc:
            realized = []
            if backup is None or isinstance(exc, TokenBudgetExhausted):
                self.stop_reason, self.error = _prior_stop(exc), _prior_error(exc)
            else:
                if not self.fallback_stats["realize_failures"]:
                    self.warnings.append(f'the prior "{prior.name}" failed ({exc}); {backup.name} realized instead')
                self.fallback_stats["realize_failures"] += 1
        new_parts, added = [], 0
        sources: Counter = Counter()
        if backup is not None and not stop():  # requests the prior gave nothing for (its calls failed)
            realized = list(realized) + [pd.DataFrame(columns=schema.names)] * (len(requests) - len(realized))
        for (proposal, k), records in zip(requests, realized):
            encoded = self.valid_records(records, proposal, rejected, "")
            own = len(encoded)
            if backup is not None and own < k and not stop():
                extra = self.valid_records(backup.realize(proposal, k - own, self.rng), proposal, rejected, "fallback ")
                if len(extra):
                    self.fallback_stats["proposals"] += 1
                    self.fallback_stats["records"] += len(extra)
                    self.from_backup.update(extra[schema.names].itertuples(index=False, name=None))
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
        self.added_by.update(sources)
        if new_parts:
            self.population = pd.concat([self.population, *new_parts], ignore_index=True)
        self.population = merge_duplicates(self.population, schema)
        return added, sources

    def should_end(self, iteration: int, proposals, fit: Fit, best: list) -> bool:
        """Whether the loop ends after this iteration (the stop reason set); ``best`` is [best mean TVD, at]."""
        paper = self.paper
        if self.error is not None or self.stop_reason == "token budget reached":
            return True
        if not proposals and paper:
            self.stop_reason = "no proposal"
            return True
        if paper and self.population[COUNT].sum() >= self.size:
            self.stop_reason = "population complete"
            return True
        if not paper and fit.mean_tvd <= self.config.tolerance_tvd:
            self.stop_reason = "tolerance reached"
            return True
        if fit.mean_tvd < best[0] * (1 - 0.01):
            best[0], best[1] = fit.mean_tvd, iteration
        elif not paper and iteration - best[1] >= defaults.PATIENCE_ITERATIONS:
            self.stop_reason = "no further improvement"
            return True
        if self.stop():
            self.stop_reason = "stop requested"
            return True
        return False


def synthesize_persons(
    project: Project,
    prior: Prior,
    config: SynthesisConfig,
    should_stop: Callable[[], bool] | None = None,
    rules=(),
    checkpoint: Callable[[int, pd.DataFrame], None] | None = None,
    initial: pd.DataFrame | None = None,
    fallback: Prior | None = None,
) -> Iterator[IterationEvent | SynthesisResult]:
    """Run the loop for a person project; yield an :class:`IterationEvent` per iteration, then the
    :class:`SynthesisResult` (see :func:`synthor_core.synthesis.loop.run_synthesis` for the parameters).

    Raises
    ------
    PriorError
        When the prior produced no valid record at all.

    Source: LLMSynthor §3 (update, discrepancy, proposal, sampling, merge); DESIGN §3 (removal, calibration).
    """
    started = time.perf_counter()
    stop = should_stop or (lambda: False)
    run = _PersonRun(project, prior, config, rules, fallback, stop, initial)
    with Aggregator(run.schema, run.tables) as aggregator:
        synthetic = aggregator.aggregate(run.population)
        loop_fit: Fit | None = None
        best, iteration = [math.inf, 0], 0
        for iteration in range(1, config.max_iterations + 1):
            if stop():
                run.stop_reason, iteration = "stop requested", iteration - 1
                break
            t0 = time.perf_counter()
            guidance = run.guidance(iteration, synthetic)
            proposals = run.plan(guidance)
            if proposals is None:
                iteration -= 1
                break
            rejected: Counter = Counter()
            requests, removed = run.apply(proposals, rejected, guidance)
            added, sources = run.realize(requests, rejected)
            t_agg = time.perf_counter()
            synthetic = aggregator.aggregate(run.population)
            aggregate_seconds = time.perf_counter() - t_agg
            loop_fit = measure_fit(run.tables, synthetic)
            run.rejected_total.update(rejected)
            usage = prior.usage
            if checkpoint is not None:
                checkpoint(iteration, run.population)
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
                population_total=int(run.population[COUNT].sum()),
                distinct_records=len(run.population),
                llm_calls=usage.calls,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                seconds=time.perf_counter() - t0,
                aggregate_seconds=aggregate_seconds,
                table_counts={t.name: c for t, c in zip(run.tables, synthetic)},
                cost_usd=prior.dollars(),
                sources=dict(sources),
            )
            if run.should_end(iteration, proposals, loop_fit, best):
                break
        if run.population[COUNT].sum() <= 0:
            raise PriorError(
                f'the prior "{prior.name}" produced no valid record in {iteration} iteration(s); '
                f"rejected: {dict(run.rejected_total) or 'nothing'}"
                + _failure_text(prior.usage)
                + (f"; {run.error}" if run.error else "")
            )
        yield finish_persons(run, aggregator, loop_fit, iteration, started)


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
