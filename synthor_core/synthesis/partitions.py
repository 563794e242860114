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

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..calibrate.balancing import BalanceResult
from ..errors import Problem, SchedulerError, TargetValidationError
from ..geography import Geography
from ..units import HouseholdProject
from .households import HouseholdConfig, HouseholdEvent, HouseholdResult, measure_controls, synthesize_households


@dataclass(frozen=True)
class PartitionTask:
    """One partition's share of a run: a self-contained project and the maps back to the whole.

    Attributes
    ----------
    index : int
        Position of the partition among the tasks (partition level's zones with households, in id order).
    position : int
        Its zone's position among all zones of the partition level: the key of its random generator, so a
        zone's draws do not change when another zone has no households.
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
    position: int
    name: str
    project: HouseholdProject
    zones: npt.NDArray[np.int64]
    seed_rows: npt.NDArray[np.int64]
    config: HouseholdConfig


@dataclass(frozen=True)
class PartitionOutcome:
    """What one partition returns: its households in global indices, or the error that stopped it.

    ``households``: ``zone``, ``seed_row``, ``count`` (int64, global indices), sorted; ``balance``: its
    balancing outcome (weights dropped; None when it failed); ``integerize``: its integerization counters;
    ``seconds``: wall seconds it took; ``error``: the exception's type and message when the partition failed
    (then ``households`` is empty).
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
        raise TargetValidationError(
            [Problem("--partition", f"expected one of the geography levels {', '.join(levels)}, got {chosen!r}")]
        )
    if levels.index(chosen) > levels.index(project.seed.seed_level):
        raise TargetValidationError(
            [
                Problem(
                    "--partition",
                    f"the partition level must be the seed level "
                    f"{project.seed.seed_level} or one above it, got "
                    f"{chosen!r}",
                )
            ]
        )
    return chosen


def partition_tasks(
    project: HouseholdProject, config: HouseholdConfig, level: str | None = None
) -> list[PartitionTask]:
    """Split a project (whose seed holds its candidate households) into independent partition tasks.

    Parameters
    ----------
    project : HouseholdProject
        After :func:`synthor_core.synthesis.households.candidate_households`.
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
    partition_of_candidate = np.where(
        seed_zone_of_candidate >= 0, partition_of_seed_zone[np.maximum(seed_zone_of_candidate, 0)], -1
    )
    weight = seed.households[seed.weight].to_numpy(dtype=np.float64)
    households_of_partition = np.bincount(
        of_zone, weights=per_zone.astype(np.float64), minlength=len(geography.zones(level))
    )
    depth = geography.levels.index(level)
    upper = [i for i, c in enumerate(project.controls) if geography.levels.index(c.level) < depth]
    shares = _upper_shares(project, upper, of_zone, partition_of_candidate, weight, households_of_partition)
    split = {
        i: _split_whole(project.controls[i], shares[i], of_zone, geography, households_of_partition) for i in shares
    }
    tasks: list[PartitionTask] = []
    for p, zone_id in enumerate(geography.zones(level)):
        if households_of_partition[p] <= 0:
            continue
        zones = np.flatnonzero(of_zone == p)
        rows = np.flatnonzero(partition_of_candidate == p)
        sub_geography = Geography(geography.levels, geography.crosswalk.iloc[zones].reset_index(drop=True))
        controls = []
        for i, c in enumerate(project.controls):
            groups = geography.zones(c.level).get_indexer(sub_geography.zones(c.level))
            totals = split[i][p][None] if i in split else c.totals[groups]
            controls.append(replace(c, incidence=c.incidence[rows], totals=totals))
        persons = seed.persons[np.isin(seed.persons["_household"].to_numpy(), rows)].copy()
        persons["_household"] = np.searchsorted(rows, persons["_household"].to_numpy())
        sub_seed = replace(
            seed, households=seed.households.iloc[rows].reset_index(drop=True), persons=persons.reset_index(drop=True)
        )
        sub_project = replace(project, geography=sub_geography, seed=sub_seed, controls=controls)
        tasks.append(
            PartitionTask(
                len(tasks),
                p,
                f"{level}={_plain(zone_id)}",
                sub_project,
                zones.astype(np.int64),
                rows.astype(np.int64),
                config,
            )
        )
    return tasks


def _upper_shares(
    project, upper, of_zone, partition_of_candidate, weight, households_of_partition
) -> dict[int, npt.NDArray[np.float64]]:
    """For each upper-level control, each partition's share of its group's total (shares of a group sum to 1)."""
    n_partitions = households_of_partition.size
    shares = {}
    scale = np.zeros(n_partitions)
    candidate_weight = np.bincount(
        partition_of_candidate[partition_of_candidate >= 0],
        weights=weight[partition_of_candidate >= 0],
        minlength=n_partitions,
    )
    np.divide(households_of_partition, candidate_weight, out=scale, where=candidate_weight > 0)
    inside = partition_of_candidate >= 0  # candidates of a seed zone outside the crosswalk belong to none
    for i in upper:
        c = project.controls[i]
        # the group (zone of the control's level) each partition lies in
        group_of_partition = np.zeros(n_partitions, dtype=np.int64)
        group_of_partition[of_zone] = project.geography.parent_index(c.level)
        expected = (
            np.bincount(partition_of_candidate[inside], weights=(c.incidence * weight)[inside], minlength=n_partitions)
            * scale
        )
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
    task: PartitionTask, progress: Callable[[str, HouseholdEvent], None] | None = None
) -> PartitionOutcome:
    """Synthesize one partition (in this process or a worker's); never raises: a failure is returned.

    The random generator is ``numpy.random.default_rng([config.seed, 2, task.position])`` (``[seed, 1]`` draws
    the maxent candidates). BLAS runs on one thread while a partition runs (threadpoolctl), and partitions of one
    process run one at a time (a lock), so the arithmetic, hence the bytes, are the same in any process and with
    any number of threads per Dask worker. ``progress(name, event)`` is called with each
    :class:`~synthor_core.synthesis.households.HouseholdEvent` (in-process runs only).
    """
    started = time.perf_counter()
    try:
        from threadpoolctl import threadpool_limits

        if len(task.project.seed.households) == 0:
            raise ValueError(
                "no candidate household lies in this partition (its seed zones have no sample "
                "household and maxent could not fill them)"
            )
        rng = np.random.default_rng([task.config.seed, 2, task.position])
        with _ONE_AT_A_TIME, threadpool_limits(limits=1):
            events = list(_events(task, rng, progress))
        result = next(e for e in events if isinstance(e, HouseholdResult))
        households = result.households.assign(
            zone=task.zones[result.households["zone"].to_numpy()],
            seed_row=task.seed_rows[result.households["seed_row"].to_numpy()],
        )
        return PartitionOutcome(
            task.index, task.name, households, result.balance, dict(result.integerize), time.perf_counter() - started
        )
    except Exception as exc:  # reported by name and message with the partition; the others go on
        return _failed(task, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)


def _failed(task: PartitionTask, error: str, seconds: float = 0.0) -> PartitionOutcome:
    return PartitionOutcome(task.index, task.name, _empty(), None, {}, seconds, error)


def run_partition_in_worker(task: PartitionTask) -> PartitionOutcome:
    """:func:`run_partition` in a pool or Dask worker process, whose allocator is first set to keep freed
    memory (see :func:`_keep_freed_memory`; never done to the caller's own process)."""
    _keep_freed_memory()
    return run_partition(task)


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


_ONE_AT_A_TIME = threading.Lock()  # partitions of one process run one at a time (threadpool limits are global)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {"zone": np.zeros(0, np.int64), "seed_row": np.zeros(0, np.int64), "count": np.zeros(0, np.int64)}
    )


def run_partitions(
    tasks: list[PartitionTask],
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[str, HouseholdEvent], None] | None = None,
) -> Iterator[PartitionOutcome]:
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
        As partitions finish (not in order: merge with :func:`merge_outcomes`); a partition whose worker died
        comes back failed, named.

    Raises
    ------
    SchedulerError
        When ``scheduler`` cannot be reached within ``defaults.DASK_CONNECT_TIMEOUT_S``.
    """
    if scheduler:
        from dask.distributed import Client, as_completed

        try:
            client = Client(scheduler, timeout=defaults.DASK_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise SchedulerError(
                f"the Dask scheduler {scheduler} cannot be reached ({type(exc).__name__}: {exc})"
            ) from exc
        with client:
            futures = client.map(run_partition_in_worker, tasks, pure=False)
            task_of = {f.key: t for f, t in zip(futures, tasks)}
            for future in as_completed(futures):
                try:
                    yield future.result()
                except Exception as exc:  # a worker lost or killed: this partition fails, the others go on
                    yield _failed(task_of[future.key], f"{type(exc).__name__}: {exc}")
        return
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield run_partition(task, progress)
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
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def merge_outcomes(
    project: HouseholdProject, outcomes: Iterable[PartitionOutcome]
) -> tuple[HouseholdResult, list[PartitionOutcome]]:
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
    balance = BalanceResult(
        (),
        bool(balances) and all(b.converged for b in balances),
        max((b.iterations for b in balances), default=0),
        max((b.max_relative_gap for b in balances), default=0.0),
        (),
        ", ".join(stops) if stops else "every partition failed",
        max((b.max_relative_change for b in balances if np.isfinite(b.max_relative_change)), default=0.0),
    )
    integerize: dict[str, int] = {}
    for o in ordered:
        for k, v in o.integerize.items():
            integerize[k] = integerize.get(k, 0) + v
    seconds = {"partitions": round(sum(o.seconds for o in ordered), 3)}  # summed over partitions
    return HouseholdResult(households, fit, synthetic, balance, seconds, integerize), ordered


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def synthesize_partitioned(
    project: HouseholdProject,
    config: HouseholdConfig,
    level: str | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    on_partition: Callable[[PartitionOutcome, int, int], None] | None = None,
    progress: Callable[[str, HouseholdEvent], None] | None = None,
) -> tuple[HouseholdResult, list[PartitionOutcome]]:
    """A whole household run as partition tasks: split, run (here, in a pool or on Dask), merge.

    Parameters
    ----------
    project : HouseholdProject
        After :func:`synthor_core.synthesis.households.candidate_households`.
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
