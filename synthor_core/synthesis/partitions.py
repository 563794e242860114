"""How the engine runs a household project (DESIGN §11): one independent task per zone of a partition level.

Zones of one partition (by default a zone of the sample level, e.g. a PUMA) are synthesized by the household loop
(:func:`~synthor_core.synthesis.zones.synthesize_zones`) from their own controls with their own priors, so partitions
run one after the other in this process (their iterations reported as they come), in a local process pool or on a
Dask distributed cluster, and give the same bytes whichever: each partition's random generator is derived from the
run seed and the partition's position, and outcomes are handed over in partition order.

Controls of a level above the partition level (a REGION control over many PUMAs) are split over the partitions
first, in proportion to what each partition's sample households count at their weights scaled to the partition's
households (PopulationSim's meta-control factoring does the same with its seed balancing) for the seed prior, in
proportion to its households for the priors that do not read the sample's records; the fit of every control is then
measured on the merged result against the original totals.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..calibrate.balancing import BalanceResult
from ..errors import Problem, SchedulerError, TargetValidationError
from ..geography import Geography
from ..metrics import control_fit
from ..priors.base import HouseholdPrior
from ..priors.households import HouseholdMaxEnt
from ..priors.sample import SamplePrior
from ..targets.model import HouseholdProject
from .config import SynthesisConfig
from .events import HouseholdIteration, HouseholdResult, PartitionOutcome, placed_weights
from .zones import synthesize_zones

PRIORS = ("seed", "maxent", "llm")


@dataclass(frozen=True)
class PriorSpec:
    """Which household prior a run uses, built in each partition for its own zones (picklable).

    Attributes
    ----------
    name : {"seed", "maxent", "llm"}
    llm : LLMSettings or None
        For ``llm``.
    api_key : str or None
        For ``llm`` (kept in memory; LLM partitions run in the calling process only).
    """

    name: str
    llm: object | None = None
    api_key: str | None = field(default=None, repr=False)

    def build(
        self, project: HouseholdProject, share: float = 1.0
    ) -> tuple[HouseholdPrior, HouseholdPrior | None, list]:
        """(prior, fallback, warnings) for one partition's project; ``share`` of the LLM's ``distinct_records``.

        The seed prior falls back on ``maxent`` (none, with a warning, when ``maxent`` cannot serve the project);
        ``maxent`` is its own fallback; the LLM falls back on the ``maxent`` it starts from.
        """
        if self.name == "maxent":
            prior = HouseholdMaxEnt(project)
            return prior, prior, []
        if self.name == "llm":
            from ..priors.llm_households import LLMHouseholdPrior

            maxent = HouseholdMaxEnt(project)
            settings = self.llm
            distinct = max(1, int(round(settings.distinct_records * share)))  # type: ignore[attr-defined]
            settings = settings.model_copy(update={"distinct_records": distinct})  # type: ignore[attr-defined]
            return LLMHouseholdPrior(project, settings, self.api_key, maxent), maxent, []
        try:
            fallback: HouseholdPrior | None = HouseholdMaxEnt(project)
            warnings = []
        except TargetValidationError as exc:
            fallback = None
            warnings = [f"the sample cannot reach every control and maxent cannot fill in: {exc.problems[0].message}"]
        return SamplePrior(project), fallback, warnings


def prior_problems(project: HouseholdProject, prior: str) -> list[Problem]:
    """Why ``prior`` cannot serve the project (checked before a run starts), or nothing: ``maxent`` and the LLM
    (which starts from ``maxent``) need controls on one column each and a household joint of bounded size."""
    if prior not in PRIORS:
        return [Problem("prior", f"expected one of {', '.join(PRIORS)}, got {prior!r}")]
    if prior == "seed":
        return []
    try:
        HouseholdMaxEnt(project)
    except TargetValidationError as exc:
        return list(exc.problems)
    return []


@dataclass(frozen=True)
class PartitionTask:
    """One partition's share of a run: a self-contained project and the maps back to the whole.

    Attributes
    ----------
    index : int
        Position of the partition among the tasks (partition level's zones with households, in id order).
    position : int
        Its zone's position among all zones of the partition level: the key of its random generator, so a zone's
        draws do not change when another zone has no households.
    name : str
        ``LEVEL=zone id``, for progress lines and errors.
    project : HouseholdProject
        The partition's zones, sample households and controls (upper-level ones split).
    zones : ndarray of int64, shape (n_zones of the partition,)
        Global index of each of its lowest-level zones.
    config : SynthesisConfig
    prior : PriorSpec
    share : float
        The partition's share of the run's households.
    """

    index: int
    position: int
    name: str
    project: HouseholdProject
    zones: npt.NDArray[np.int64]
    config: SynthesisConfig
    prior: PriorSpec
    share: float = 1.0


def partition_level(project: HouseholdProject, level: str | None) -> str:
    """The partition level: ``level`` if given, else the sample level.

    Raises
    ------
    TargetValidationError
        When ``level`` is not a level of the geography or lies below the sample level (a block's candidates would
        be shared by several partitions).
    """
    levels = project.geography.levels
    chosen = level or project.sample.seed_level
    if chosen not in levels:
        raise TargetValidationError(
            [Problem("--partition", f"expected one of the geography levels {', '.join(levels)}, got {chosen!r}")]
        )
    if levels.index(chosen) > levels.index(project.sample.seed_level):
        raise TargetValidationError(
            [
                Problem(
                    "--partition",
                    f"the partition level must be the seed level {project.sample.seed_level} or one above it, got "
                    f"{chosen!r}",
                )
            ]
        )
    return chosen


def partition_tasks(
    project: HouseholdProject, config: SynthesisConfig, prior: PriorSpec, level: str | None = None
) -> list[PartitionTask]:
    """Split a project into independent partition tasks.

    Returns
    -------
    list of PartitionTask, in the order of the level's zone ids; zones of a partition without households to place
    are left out.

    Raises
    ------
    TargetValidationError
        A level that is no partition level (:func:`partition_level`), or controls asking for more than
        ``defaults.MAX_HOUSEHOLDS`` households.
    """
    level = partition_level(project, level)
    geography, sample = project.geography, project.sample
    per_zone = project.households_per_zone()
    if int(per_zone.sum()) > defaults.MAX_HOUSEHOLDS:
        raise TargetValidationError(
            [
                Problem(
                    "controls",
                    f"the control of households per zone asks for {int(per_zone.sum()):,} households; one run places "
                    f"at most {defaults.MAX_HOUSEHOLDS:,}",
                    column=project.total_control,
                )
            ]
        )
    of_zone = geography.parent_index(level)
    block_of_household = geography.zones(sample.seed_level).get_indexer(sample.households[sample.seed_level])
    partition_of_block = np.full(len(geography.zones(sample.seed_level)), -1, dtype=np.int64)
    partition_of_block[geography.parent_index(sample.seed_level)] = of_zone
    partition_of_household = np.where(
        block_of_household >= 0, partition_of_block[np.maximum(block_of_household, 0)], -1
    )
    households_of_partition = np.bincount(
        of_zone, weights=per_zone.astype(np.float64), minlength=len(geography.zones(level))
    )
    depth = geography.levels.index(level)
    upper = [i for i, c in enumerate(project.controls) if geography.levels.index(c.level) < depth]
    shares = _upper_shares(project, upper, of_zone, partition_of_household, households_of_partition, prior.name)
    split = {
        i: _split_whole(project.controls[i], shares[i], of_zone, geography, households_of_partition) for i in shares
    }
    total = max(float(households_of_partition.sum()), 1.0)
    tasks: list[PartitionTask] = []
    for p, zone_id in enumerate(geography.zones(level)):
        if households_of_partition[p] <= 0:
            continue
        zones = np.flatnonzero(of_zone == p)
        rows = np.flatnonzero(partition_of_household == p)
        sub_geography = Geography(geography.levels, geography.crosswalk.iloc[zones].reset_index(drop=True))
        controls = []
        for i, c in enumerate(project.controls):
            groups = geography.zones(c.level).get_indexer(sub_geography.zones(c.level))
            controls.append(replace(c, totals=split[i][p][None] if i in split else c.totals[groups]))
        sub_project = replace(project, geography=sub_geography, sample=_sample_rows(project, rows), controls=controls)
        name = f"{level}={_plain(zone_id)}"
        share = float(households_of_partition[p]) / total
        tasks.append(PartitionTask(len(tasks), p, name, sub_project, zones.astype(np.int64), config, prior, share))
    return tasks


def _sample_rows(project: HouseholdProject, rows: np.ndarray):
    """The sample's households at ``rows`` with their members (renumbered)."""
    sample = project.sample
    persons = sample.persons[np.isin(sample.persons["_household"].to_numpy(), rows)].copy()
    persons["_household"] = np.searchsorted(rows, persons["_household"].to_numpy())
    return replace(
        sample, households=sample.households.iloc[rows].reset_index(drop=True), persons=persons.reset_index(drop=True)
    )


def _upper_shares(
    project, upper, of_zone, partition_of_household, households_of_partition, prior: str
) -> dict[int, npt.NDArray[np.float64]]:
    """For each upper-level control, each partition's share of its group's total (shares of a group sum to 1): what
    the partition's sample households count at their weights scaled to its households (seed prior), else its
    households."""
    sample = project.sample
    n_partitions = households_of_partition.size
    weight = sample.households[sample.weight].to_numpy(dtype=np.float64)
    inside = partition_of_household >= 0  # households of a block outside the crosswalk belong to none
    scale = np.zeros(n_partitions)
    sample_weight = np.bincount(partition_of_household[inside], weights=weight[inside], minlength=n_partitions)
    np.divide(households_of_partition, sample_weight, out=scale, where=sample_weight > 0)
    shares = {}
    for i in upper:
        c = project.controls[i]
        group_of_partition = np.zeros(n_partitions, dtype=np.int64)
        group_of_partition[of_zone] = project.geography.parent_index(c.level)
        if prior == "seed":
            frame = sample.households if c.unit == "households" else sample.persons
            incidence = sample.incidence(c.unit, c.condition(frame))
            expected = (
                np.bincount(
                    partition_of_household[inside], weights=(incidence * weight)[inside], minlength=n_partitions
                )
                * scale
            )
        else:
            expected = households_of_partition.astype(np.float64)
        share = np.zeros(n_partitions)
        for g in np.unique(group_of_partition[households_of_partition > 0]):
            members = (group_of_partition == g) & (households_of_partition > 0)
            basis = expected[members] if expected[members].sum() > 0 else households_of_partition[members]
            share[members] = basis / basis.sum()
        shares[i] = share
    return shares


def _split_whole(control, share, of_zone, geography: Geography, households_of_partition) -> npt.NDArray[np.float64]:
    """Each partition's part of an upper-level control's group total: ``total x share``, whole numbers by largest
    remainder when the total is whole (ties to the earlier partition), so the parts add up to the total."""
    n = households_of_partition.size
    group_of_partition = np.zeros(n, dtype=np.int64)
    group_of_partition[of_zone] = geography.parent_index(control.level)
    part = control.totals[group_of_partition] * share
    for g in np.unique(group_of_partition[households_of_partition > 0]):
        total = float(control.totals[g])
        if total != np.floor(total):
            continue
        members = np.flatnonzero((group_of_partition == g) & (households_of_partition > 0))
        whole = np.floor(part[members] + 1e-9)
        missing = int(round(total - whole.sum()))
        if missing > 0:
            order = np.lexsort((members, -(part[members] - whole)))[:missing]
            whole[order] += 1
        part[members] = whole
    return part


def run_partition(
    task: PartitionTask, should_stop: Callable[[], bool] | None = None
) -> Iterator[HouseholdIteration | PartitionOutcome]:
    """Synthesize one partition in this process: its iterations as they come, then its outcome (households in global
    zone indices); a failure is returned as an outcome with ``error``, never raised.

    The random generator is ``numpy.random.default_rng([config.seed, 2, task.position])``. BLAS runs on one thread
    while a partition runs (threadpoolctl), and partitions of one process run one at a time (a lock), so the
    arithmetic, hence the bytes, are the same in any process and with any number of threads per Dask worker.
    """
    started = time.perf_counter()
    try:
        from threadpoolctl import threadpool_limits

        prior, fallback, warnings = task.prior.build(task.project, task.share)
        rng = np.random.default_rng([task.config.seed, 2, task.position])
        with _ONE_AT_A_TIME, threadpool_limits(limits=1):
            for event in synthesize_zones(task.project, prior, task.config, rng, task.name, should_stop, fallback):
                if isinstance(event, PartitionOutcome):
                    households = event.households.assign(zone=task.zones[event.households["zone"].to_numpy()])
                    synthetic = {
                        c.name: _global(task, c.level, *event.synthetic[c.name]) for c in task.project.controls
                    }
                    yield replace(
                        event,
                        index=task.index,
                        zones=task.zones[event.zones],
                        households=households,
                        synthetic=synthetic,
                        warnings=tuple(warnings) + event.warnings,
                    )
                else:
                    yield event
    except Exception as exc:  # reported by name and message with the partition; the others go on
        yield _failed(task, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)


def _global(task: PartitionTask, level: str, positions: np.ndarray, totals: np.ndarray):
    """A partition's totals of a control at ``level`` with the zone ids (positions of the whole geography are found
    by :class:`_Tally`)."""
    return np.asarray(task.project.geography.zones(level)[positions]), totals


def run_partition_in_worker(task: PartitionTask) -> PartitionOutcome:
    """:func:`run_partition` in a pool or Dask worker process (whose allocator is first set to keep freed memory,
    see :func:`_keep_freed_memory`): its outcome, the iterations inside."""
    _keep_freed_memory()
    outcome = None
    for event in run_partition(task):
        if isinstance(event, PartitionOutcome):
            outcome = event
    assert outcome is not None  # run_partition always ends with its outcome
    return outcome


def _failed(task: PartitionTask, error: str, seconds: float = 0.0) -> PartitionOutcome:
    return PartitionOutcome(task.index, task.name, task.zones, _empty(), None, seconds=seconds, error=error)


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse in this process (a no-op elsewhere).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also fixes glibc's mmap threshold:
    every large array is then mapped and unmapped afresh, and a partition took 23 s instead of 14.5 s on CALM
    (measured). ``mallopt`` restores thresholds that suit repeated large arrays.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or "libc" not in name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, defaults.PARTITION_MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, defaults.PARTITION_TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: its own allocator's defaults stand
        return


_ONE_AT_A_TIME = threading.Lock()  # partitions of one process run one at a time (threadpool limits are global)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"zone": np.zeros(0, np.int64), "row": np.zeros(0, np.int64), "count": np.zeros(0, np.int64)})


def run_partitions(
    tasks: list[PartitionTask],
    workers: int = 1,
    scheduler: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[HouseholdIteration | PartitionOutcome]:
    """Run the tasks one after the other in this process (iterations reported as they come), in a local process pool,
    or on a Dask distributed scheduler (each partition's iterations inside its outcome).

    Parameters
    ----------
    tasks : list of PartitionTask
    workers : int >= 1
        Local processes (1: in this process).
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (``tcp://host:8786``); ``workers`` is then ignored.
    should_stop : callable, optional
        Polled by partitions run in this process; in a pool or on Dask, partitions not yet started are cancelled.

    Yields
    ------
    HouseholdIteration, PartitionOutcome
        Outcomes as partitions finish (not in order); a partition whose worker died comes back failed, named.

    Raises
    ------
    SchedulerError
        When ``scheduler`` cannot be reached within ``defaults.DASK_CONNECT_TIMEOUT_S``.
    """
    stop = should_stop or (lambda: False)
    if scheduler:
        yield from _on_dask(tasks, scheduler)
        return
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield from run_partition(task, stop)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import as_completed as finished

    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=multiprocessing.get_context("spawn"))
    try:
        pending = {pool.submit(run_partition_in_worker, task): task for task in tasks}
        for done in finished(pending):
            try:
                yield done.result()
            except Exception as exc:  # a worker process died (killed, out of memory): named, the others go on
                yield _failed(pending[done], f"{type(exc).__name__}: {exc}")
            if stop():
                for future in pending:
                    future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _on_dask(tasks: list[PartitionTask], scheduler: str) -> Iterator[PartitionOutcome]:
    from dask.distributed import Client, as_completed

    try:
        client = Client(scheduler, timeout=defaults.DASK_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"the Dask scheduler {scheduler} cannot be reached ({type(exc).__name__}: {exc})") from exc
    with client:
        futures = client.map(run_partition_in_worker, tasks, pure=False)
        task_of = {f.key: t for f, t in zip(futures, tasks)}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # a worker lost or killed: this partition fails, the others go on
                yield _failed(task_of[future.key], f"{type(exc).__name__}: {exc}")


def in_order(
    events: Iterable[HouseholdIteration | PartitionOutcome],
) -> Iterator[HouseholdIteration | PartitionOutcome]:
    """The events with outcomes handed over in partition order (an outcome that finished early waits for those before
    it), so that outputs written outcome by outcome have the same bytes whatever the order partitions finished in."""
    waiting: dict[int, PartitionOutcome] = {}
    following = 0
    for event in events:
        if not isinstance(event, PartitionOutcome):
            yield event
            continue
        waiting[event.index] = event
        while following in waiting:
            yield waiting.pop(following)
            following += 1
    for index in sorted(waiting):
        yield waiting.pop(index)


class _Tally:
    """What the merged result needs from each outcome, taken as it is handed over (its households are then let go,
    so a run's memory does not grow with its partitions)."""

    def __init__(self, project: HouseholdProject):
        self.project = project
        self.synthetic = {c.name: np.zeros(c.totals.size) for c in project.controls}
        self.households: float = 0.0
        self.persons: float = 0.0
        self.distinct = 0
        self.by_prior: dict[str, float] = {}
        self.outcomes: list[PartitionOutcome] = []

    def add(self, o: PartitionOutcome) -> None:
        if o.error is None and o.candidates is not None:
            for c in self.project.controls:
                ids, totals = o.synthetic[c.name]
                np.add.at(self.synthetic[c.name], self.project.geography.zones(c.level).get_indexer(ids), totals)
            counts = placed_weights(o.households)  # float: survey weights are rounded once the run is added up
            rows = o.households["row"].to_numpy()
            self.households += float(counts.sum())
            self.persons += float((o.candidates.members_per_household()[rows] * counts).sum())
            self.distinct += len(o.candidates)
            for source in np.unique(o.candidates.source):
                share = float(counts[o.candidates.source[rows] == source].sum())
                self.by_prior[str(source)] = self.by_prior.get(str(source), 0.0) + share
        self.outcomes.append(replace(o, households=_empty(), candidates=None, synthetic={}, sample_weights=None))

    def result(self, seconds: float) -> HouseholdResult:
        """The whole run's result: every control's fit against the project's own (unsplit) totals, counters added."""
        ordered = sorted(self.outcomes, key=lambda o: o.index)
        balances = [o.balance for o in ordered if o.balance is not None]
        stops = sorted({o.stop_reason for o in ordered if o.error is None})
        if "stop requested" in stops:  # a stop ends the run, whatever the partitions done before said
            stops = ["stop requested"]
        balance = BalanceResult(
            (),
            bool(balances) and all(b.converged for b in balances),
            max((b.iterations for b in balances), default=0),
            max((b.max_relative_gap for b in balances), default=0.0),
            (),
            ", ".join(sorted({b.stop for b in balances})) if balances else "every partition failed",
            max((b.max_relative_change for b in balances if np.isfinite(b.max_relative_change)), default=0.0),
        )
        failed = [o for o in ordered if o.error]
        return HouseholdResult(
            fit=control_fit(self.project.controls, self.synthetic),
            synthetic=self.synthetic,
            households=int(round(self.households)),
            persons=int(round(self.persons)),
            distinct_households=self.distinct,
            households_by_prior={k: int(round(v)) for k, v in sorted(self.by_prior.items())},
            iterations=tuple(e for o in ordered for e in o.iterations),
            partitions=tuple(ordered),
            stop_reason=", ".join(stops) if stops else "every partition failed",
            balance=balance,
            integerize=_sum_counters(o.integerize for o in ordered),
            fallback=_sum_counters(o.fallback for o in ordered),
            prior=_merge_reports([o.prior for o in ordered]),
            seconds=seconds,
            warnings=tuple(dict.fromkeys(w for o in ordered for w in o.warnings)),
            error=f"partition {failed[0].name}: {failed[0].error}" if failed else None,
        )


def _sum_counters(dicts) -> dict[str, int]:
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def _merge_reports(reports: list[dict]) -> dict:
    """Partitions' prior reports as one: numbers added, lists joined, dicts merged key by key."""
    merged: dict = {}
    for report in reports:
        for key, value in report.items():
            if key not in merged:
                merged[key] = value
            elif isinstance(value, dict) and isinstance(merged[key], dict):
                merged[key] = _merge_reports([merged[key], value])
            elif isinstance(value, list) and isinstance(merged[key], list):
                merged[key] = merged[key] + value
            elif isinstance(value, (int, float)) and isinstance(merged[key], (int, float)):
                merged[key] = merged[key] + value
    return merged


def synthesize_households(
    project: HouseholdProject,
    prior: PriorSpec,
    config: SynthesisConfig,
    level: str | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[HouseholdIteration | PartitionOutcome | HouseholdResult]:
    """A whole household run: split into partitions, run them (here, in a pool or on Dask), hand over each
    partition's outcome in partition order, then the merged :class:`HouseholdResult`.

    The same inputs and seed give the same outcomes for any ``workers`` and on Dask. The LLM prior runs its
    partitions in this process (its client, key and budget stay here).

    Raises
    ------
    TargetValidationError
        When the prior cannot serve the project (:func:`prior_problems`), or the partition level is not one.
    """
    started = time.perf_counter()
    problems = prior_problems(project, prior.name)
    if problems:  # before any work
        raise TargetValidationError(problems)
    tasks = partition_tasks(project, config, prior, level)
    if prior.name == "llm":
        workers, scheduler = 1, None
    tally = _Tally(project)
    for event in in_order(run_partitions(tasks, workers, scheduler, should_stop)):
        yield event
        if isinstance(event, PartitionOutcome):
            tally.add(event)
    yield tally.result(time.perf_counter() - started)


def _plain(value):
    return value.item() if hasattr(value, "item") else value
