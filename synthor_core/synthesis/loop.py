"""The one entry of a synthesis run (DESIGN §3, §5, §8, §10): one loop for every project.

Measure the gap between the population and its targets, ask the prior for proposals aimed at the largest residuals,
realize them as records or candidate households, calibrate, repeat to the tolerance; then integerize. A person
project runs it over flat tables (raking: :mod:`~synthor_core.synthesis.persons`); a household project over controls
in zones, partition by partition (list balancing: :mod:`~synthor_core.synthesis.zones`,
:mod:`~synthor_core.synthesis.partitions`). Both report the same family of events and results
(:mod:`~synthor_core.synthesis.events`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pandas as pd

from ..priors.base import Prior
from ..targets.model import HouseholdProject, Project
from .config import SynthesisConfig
from .events import HouseholdIteration, HouseholdResult, IterationEvent, PartitionOutcome, SynthesisResult
from .partitions import PriorSpec, synthesize_households
from .persons import synthesize_persons

RunEvent = IterationEvent | SynthesisResult | HouseholdIteration | PartitionOutcome | HouseholdResult


@dataclass(frozen=True)
class Partitioning:
    """How a household project's partitions run (DESIGN §11).

    Attributes
    ----------
    level : str or None
        The geography level whose zones are the partitions (default: the sample's level).
    workers : int
        Local processes (1: in this process, iterations reported as they come).
    scheduler : str or None
        Address of a running ``dask.distributed`` scheduler.
    """

    level: str | None = None
    workers: int = 1
    scheduler: str | None = None


def run_synthesis(
    project: Project | HouseholdProject,
    prior: Prior | PriorSpec | str,
    config: SynthesisConfig,
    should_stop: Callable[[], bool] | None = None,
    rules=(),
    checkpoint: Callable[[int, pd.DataFrame], None] | None = None,
    initial: pd.DataFrame | None = None,
    fallback: Prior | None = None,
    partitioning: Partitioning | None = None,
) -> Iterator[RunEvent]:
    """Run the loop; yield its events, then its result.

    Parameters
    ----------
    project : Project or HouseholdProject
        A person project (validated, harmonized target tables) or a household project (controls in zones).
    prior : Prior, or for a household project a PriorSpec or a prior name (``seed``, ``maxent``, ``llm``)
        A household project's priors are built in each partition for its own zones.
    config : SynthesisConfig
    should_stop : callable returning bool, optional
        Polled once per iteration (and between proposals, zones); when true the loop ends and what was built is
        calibrated (persons) or integerized (households) and returned (stop reason ``"stop requested"``).
    rules : sequence of Rule, optional
        Persons: plausibility rules as hard constraints (a record that violates one is dropped and counted). A
        household project's rules are its own (``[[rules]]``).
    checkpoint : callable (iteration, population), optional
        Persons: called after every iteration with the population so far (coded, schema columns + ``count``, not
        yet calibrated), before the iteration's event is yielded.
    initial : DataFrame, optional
        Persons: a coded population to start from (a saved checkpoint) instead of an empty one.
    fallback : Prior, optional
        Persons: used in full mode when ``config.fallback``: realizes what ``prior`` could not, plans when it cannot,
        and fills target cells without a record before calibration. A household project's fallback is ``maxent``,
        built with its prior.
    partitioning : Partitioning, optional
        Households: partition level, local workers, Dask scheduler.

    Yields
    ------
    Persons: :class:`IterationEvent` per iteration, then :class:`SynthesisResult`. Households:
    :class:`HouseholdIteration` per iteration of each partition (in this process), :class:`PartitionOutcome` per
    partition in partition order (write its households before the next arrives), then :class:`HouseholdResult`.

    Raises
    ------
    PriorError
        Persons: when the prior produced no valid record at all.
    TargetValidationError
        Households: a partition level that is not one.
    SchedulerError
        Households: when the Dask scheduler cannot be reached.

    Source: LLMSynthor §3 (update, discrepancy, proposal, sampling, merge); DESIGN §3 (removal, calibration), §10.
    """
    if isinstance(project, HouseholdProject):
        spec = prior if isinstance(prior, PriorSpec) else PriorSpec(str(prior))
        how = partitioning or Partitioning()
        return synthesize_households(project, spec, config, how.level, how.workers, how.scheduler, should_stop)
    if isinstance(prior, (PriorSpec, str)):
        raise TypeError(f"a person project needs a Prior object, got {prior!r}")
    return synthesize_persons(project, prior, config, should_stop, rules, checkpoint, initial, fallback)
