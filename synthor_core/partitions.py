"""Partitioned household runs (DESIGN §11): one independent task per zone of a partition level.

Zones of one partition (by default a seed zone, e.g. a PUMA) are synthesized from their own candidate households
and controls, so partitions can run one after the other, in a local process pool or on a Dask distributed
cluster, and give the same bytes whichever: each partition's random generator is derived from the run seed and
the partition's position, and results are merged in partition order.

Controls of a level above the partition level (a REGION control over many PUMAs) are split over the partitions
first, in proportion to what each partition's candidate households would count at their weights scaled to the
partition's households (PopulationSim's meta-control factoring does the same with its seed balancing); the fit of
every control is then measured on the merged result against the original totals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt
import pandas as pd

from . import defaults
from .calibrate import BalanceResult
from .errors import Problem, TargetValidationError
from .geography import Geography
from .households import HouseholdConfig, HouseholdEvent, HouseholdResult, measure_controls, synthesize_households
from .units import HouseholdProject


@dataclass(frozen=True)
class PartitionTask:
    """One partition's share of a run: a self-contained project and the maps back to the whole.

    Attributes
    ----------
    index : int
        Position of the partition (its zone's position among the partition level's zones with households).
    name : str
        ``LEVEL=zone id``, for progress lines and errors.
    project : HouseholdProject
        The partition's zones, candidate households and controls (upper-level ones split).
    zones : ndarray of int64, shape (n_zones of the partition,)
        Global index of each of its lowest-level zones.
    seed_rows : ndarray of int64, shape (n_candidates of the partition,)
        Global row of each of its candidate households.
    config : HouseholdConfig
    """

    index: int
    name: str
    project: HouseholdProject
    zones: npt.NDArray[np.int64]
    seed_rows: npt.NDArray[np.int64]
    config: HouseholdConfig


@dataclass(frozen=True)
class PartitionOutcome:
    """What one partition returns: its households in global indices, or the error that stopped it.

    ``households``: ``zone``, ``seed_row``, ``count`` (int64, global indices), sorted; ``error``: the
    exception's type and message when the partition failed (then ``households`` is empty).
    """

    index: int
    name: str
    households: pd.DataFrame
    balance: BalanceResult | None
    integerize: dict[str, int]
    seconds: float
    error: str | None = None


def partition_level(project: HouseholdProject, level: str | None) -> str:
    """The partition level: ``level`` if given, else the seed level.

    Raises
    ------
    TargetValidationError
        When ``level`` is not a level of the geography or lies below the seed level (a seed zone's candidates
        would be shared by several partitions).
    """
    levels = project.geography.levels
    chosen = level or project.seed.seed_level
    if chosen not in levels:
        raise TargetValidationError([Problem("--partition", f"expected one of the geography levels "
                                                            f"{', '.join(levels)}, got {chosen!r}")])
    if levels.index(chosen) > levels.index(project.seed.seed_level):
        raise TargetValidationError([Problem("--partition", f"the partition level must be the seed level "
                                                            f"{project.seed.seed_level} or one above it, got "
                                                            f"{chosen!r}")])
    return chosen


def partition_tasks(project: HouseholdProject, config: HouseholdConfig, level: str | None = None
                    ) -> list[PartitionTask]:
    """Split a project (whose seed holds its candidate households) into independent partition tasks.

    Parameters
    ----------
    project : HouseholdProject
        After :func:`synthor_core.households.candidate_households`.
    config : HouseholdConfig
    level : str, optional
        The partition level (default: the seed level).

    Returns
    -------
    list of PartitionTask, in the order of the level's zone ids; zones of a partition without households to
    place are left out.
    """
    level = partition_level(project, level)
    geography, seed = project.geography, project.seed
    per_zone = project.households_per_zone()
    of_zone = geography.parent_index(level)
    seed_zone_of_candidate = geography.zones(seed.seed_level).get_indexer(seed.households[seed.seed_level])
    partition_of_seed_zone = np.full(len(geography.zones(seed.seed_level)), -1, dtype=np.int64)
    partition_of_seed_zone[geography.parent_index(seed.seed_level)] = of_zone
    partition_of_candidate = partition_of_seed_zone[seed_zone_of_candidate]
    weight = seed.households[seed.weight].to_numpy(dtype=np.float64)
    households_of_partition = np.bincount(of_zone, weights=per_zone.astype(np.float64),
                                          minlength=len(geography.zones(level)))
    depth = geography.levels.index(level)
    upper = [i for i, c in enumerate(project.controls) if geography.levels.index(c.level) < depth]
    shares = _upper_shares(project, upper, of_zone, partition_of_candidate, weight, households_of_partition)
    tasks = []
    for p, zone_id in enumerate(geography.zones(level)):
        if households_of_partition[p] <= 0:
            continue
        zones = np.flatnonzero(of_zone == p)
        rows = np.flatnonzero(partition_of_candidate == p)
        sub_geography = Geography(geography.levels, geography.crosswalk.iloc[zones].reset_index(drop=True))
        controls = []
        for i, c in enumerate(project.controls):
            groups = geography.zones(c.level).get_indexer(sub_geography.zones(c.level))
            totals = c.totals[groups] * (shares[i][p] if i in shares else 1.0)
            controls.append(replace(c, incidence=c.incidence[rows], totals=totals))
        persons = seed.persons[np.isin(seed.persons["_household"].to_numpy(), rows)].copy()
        persons["_household"] = np.searchsorted(rows, persons["_household"].to_numpy())
        sub_seed = replace(seed, households=seed.households.iloc[rows].reset_index(drop=True),
                           persons=persons.reset_index(drop=True))
        sub_project = replace(project, geography=sub_geography, seed=sub_seed, controls=controls)
        tasks.append(PartitionTask(len(tasks), f"{level}={_plain(zone_id)}", sub_project, zones.astype(np.int64),
                                   rows.astype(np.int64), config))
    return tasks


def _upper_shares(project, upper, of_zone, partition_of_candidate, weight, households_of_partition
                  ) -> dict[int, npt.NDArray[np.float64]]:
    """For each upper-level control, each partition's share of its group's total (shares of a group sum to 1)."""
    n_partitions = households_of_partition.size
    shares = {}
    scale = np.zeros(n_partitions)
    candidate_weight = np.bincount(partition_of_candidate[partition_of_candidate >= 0],
                                   weights=weight[partition_of_candidate >= 0], minlength=n_partitions)
    np.divide(households_of_partition, candidate_weight, out=scale, where=candidate_weight > 0)
    inside = partition_of_candidate >= 0
    for i in upper:
        c = project.controls[i]
        # the group (zone of the control's level) each partition lies in
        group_of_partition = np.zeros(n_partitions, dtype=np.int64)
        group_of_partition[of_zone] = project.geography.parent_index(c.level)
        expected = np.bincount(partition_of_candidate[inside], weights=(c.incidence * weight)[inside],
                               minlength=n_partitions) * scale
        share = np.zeros(n_partitions)
        for g in np.unique(group_of_partition[households_of_partition > 0]):
            members = (group_of_partition == g) & (households_of_partition > 0)
            basis = expected[members] if expected[members].sum() > 0 else households_of_partition[members]
            share[members] = basis / basis.sum()
        shares[i] = share
    return shares


def run_partition(task: PartitionTask, progress: Callable[[str, HouseholdEvent], None] | None = None
                  ) -> PartitionOutcome:
    """Synthesize one partition (in this process or a worker's); never raises: a failure is returned.

    The random generator is ``numpy.random.default_rng([config.seed, task.index])``; BLAS runs on one thread
    (threadpoolctl), so the arithmetic is the same in every process. ``progress(name, event)`` is called with
    each :class:`~synthor_core.households.HouseholdEvent` (in-process runs only).
    """
    from threadpoolctl import threadpool_limits

    _keep_freed_memory()
    started = time.perf_counter()
    try:
        rng = np.random.default_rng([task.config.seed, task.index])
        result = None
        # one BLAS thread everywhere: a sum's order (so its last bit, so an integerization) must not depend on
        # the threads of the process a partition runs in (a Dask worker runs with one, this process with more)
        with threadpool_limits(limits=1):
            events = list(_events(task, rng, progress))
        for event in events:
            if isinstance(event, HouseholdResult):
                result = event
        households = result.households.assign(zone=task.zones[result.households["zone"].to_numpy()],
                                              seed_row=task.seed_rows[result.households["seed_row"].to_numpy()])
        return PartitionOutcome(task.index, task.name, households, result.balance, dict(result.integerize),
                                time.perf_counter() - started)
    except Exception as exc:  # reported by name and message with the partition; the others go on
        return PartitionOutcome(task.index, task.name, _empty(), None, {}, time.perf_counter() - started,
                                f"{type(exc).__name__}: {exc}")


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


def _events(task: PartitionTask, rng: np.random.Generator, progress) -> Iterator:
    """The partition's events, each handed to ``progress`` as it comes."""
    for event in synthesize_households(task.project, task.config, rng=rng):
        if progress is not None and not isinstance(event, HouseholdResult):
            progress(task.name, event)
        yield event


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"zone": np.zeros(0, np.int64), "seed_row": np.zeros(0, np.int64),
                         "count": np.zeros(0, np.int64)})


def run_partitions(tasks: list[PartitionTask], workers: int = 1, scheduler: str | None = None,
                   progress: Callable[[str, HouseholdEvent], None] | None = None) -> Iterator[PartitionOutcome]:
    """Run the tasks one after the other, in a local process pool, or on a Dask distributed scheduler.

    Parameters
    ----------
    tasks : list of PartitionTask
    workers : int >= 1
        Local processes (1: in this process).
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (``tcp://host:8786``); ``workers`` is then ignored.
    progress : callable, optional
        Given to :func:`run_partition` when partitions run in this process.

    Yields
    ------
    PartitionOutcome
        As partitions finish (not in order: merge with :func:`merge_outcomes`).
    """
    if scheduler:
        from dask.distributed import Client, as_completed

        with Client(scheduler) as client:
            futures = client.map(run_partition, tasks, pure=False)
            for future in as_completed(futures):
                yield future.result()
        return
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield run_partition(task, progress)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed as finished

    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_partition, task) for task in tasks]
        for future in finished(futures):
            yield future.result()


def merge_outcomes(project: HouseholdProject, outcomes: Iterable[PartitionOutcome]) -> tuple[
        HouseholdResult, list[PartitionOutcome]]:
    """The whole run's result from its partitions' (in partition order, whatever order they finished in).

    Returns
    -------
    (HouseholdResult, list of PartitionOutcome)
        The merged result, its fit measured against the project's own (unsplit) totals; and every outcome in
        partition order (failed ones carry ``error``).
    """
    ordered = sorted(outcomes, key=lambda o: o.index)
    frames = [o.households for o in ordered if o.error is None]
    households = pd.concat(frames, ignore_index=True) if frames else _empty()
    households = households.sort_values(["zone", "seed_row"], kind="stable").reset_index(drop=True)
    fit, synthetic = measure_controls(project, households)
    balances = [o.balance for o in ordered if o.balance is not None]
    stops = sorted({b.stop for b in balances})
    balance = BalanceResult((), all(b.converged for b in balances), max((b.iterations for b in balances), default=0),
                            max((b.max_relative_gap for b in balances), default=0.0), (),
                            ", ".join(stops) if stops else "no partition ran",
                            max((b.max_relative_change for b in balances), default=0.0))
    integerize: dict[str, int] = {}
    for o in ordered:
        for k, v in o.integerize.items():
            integerize[k] = integerize.get(k, 0) + v
    seconds = {"partitions": round(sum(o.seconds for o in ordered), 3)}
    return HouseholdResult(households, fit, synthetic, balance, seconds, integerize), ordered


def _plain(value):
    return value.item() if hasattr(value, "item") else value



def synthesize_partitioned(project: HouseholdProject, config: HouseholdConfig, level: str | None = None,
                           workers: int = 1, scheduler: str | None = None,
                           on_partition: Callable[[PartitionOutcome, int, int], None] | None = None,
                           progress: Callable[[str, HouseholdEvent], None] | None = None) -> tuple[
        HouseholdResult, list[PartitionOutcome]]:
    """A whole household run as partition tasks: split, run (here, in a pool or on Dask), merge.

    Parameters
    ----------
    project : HouseholdProject
        After :func:`synthor_core.households.candidate_households`.
    config : HouseholdConfig
    level, workers, scheduler
        See :func:`partition_tasks` and :func:`run_partitions`.
    on_partition : callable, optional
        Called as ``on_partition(outcome, done, total)`` when each partition ends (for progress lines).
    progress : callable, optional
        Per-zone progress of partitions run in this process.

    Returns
    -------
    (HouseholdResult, list of PartitionOutcome), as :func:`merge_outcomes`. The same inputs and seed give the
    same result for any ``workers`` and on Dask.
    """
    tasks = partition_tasks(project, config, level)
    outcomes = []
    for outcome in run_partitions(tasks, workers, scheduler, progress):
        outcomes.append(outcome)
        if on_partition is not None:
            on_partition(outcome, len(outcomes), len(tasks))
    return merge_outcomes(project, outcomes)
