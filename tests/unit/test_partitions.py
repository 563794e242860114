"""Partitioned household runs (issue #12): split controls over partitions, same bytes for any way of running."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.readers.populationsim import load_populationsim
from synthor_core.synthesis.households import (
    HouseholdConfig,
    HouseholdResult,
    candidate_households,
    synthesize_households,
)
from synthor_core.synthesis.partitions import merge_outcomes, partition_tasks, run_partition, synthesize_partitioned

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "populationsim"
pytestmark = pytest.mark.skipif(not (EXAMPLES / "example_test").is_dir(), reason="shared/data/populationsim absent")


@pytest.fixture(scope="module")
def candidates():
    project = load_populationsim(EXAMPLES / "example_test")  # DISTRICT 3 > PUMA 7 > TRACT 13 > TAZ 37
    config = HouseholdConfig(seed=3)
    return candidate_households(project, config)[0], config


def test_one_task_per_seed_zone_with_households_and_upper_controls_split_exactly(candidates):
    project, config = candidates
    tasks = partition_tasks(project, config)
    assert [t.name for t in tasks] == [f"PUMA={p}" for p in (600, 601, 602, 603, 604, 605)]  # 606 has no zone
    assert np.concatenate([t.zones for t in tasks]).tolist() == sorted(np.concatenate([t.zones for t in tasks]))
    covered = np.concatenate([t.zones for t in tasks])
    assert len(set(covered)) == covered.size  # no zone in two partitions
    assert set(np.flatnonzero(project.households_per_zone() > 0)) <= set(covered)
    for i, control in enumerate(project.controls):
        if control.level == "DISTRICT":  # spans PUMAs: each district's total is shared out, none lost
            split = {}
            for t in tasks:
                district = t.project.geography.zones("DISTRICT")
                for zone, total in zip(district, t.project.controls[i].totals):
                    split[zone] = split.get(zone, 0.0) + total
            expected = dict(zip(project.geography.zones("DISTRICT"), control.totals))
            assert split == pytest.approx({z: expected[z] for z in split})
        else:  # TAZ and TRACT totals are the partition's own
            for t in tasks:
                groups = project.geography.zones(control.level).get_indexer(t.project.geography.zones(control.level))
                np.testing.assert_array_equal(t.project.controls[i].totals, control.totals[groups])


def test_a_partition_level_below_the_seed_level_is_refused(candidates):
    project, config = candidates
    with pytest.raises(
        TargetValidationError, match="the partition level must be the seed level PUMA or one above it, got 'TRACT'"
    ):
        partition_tasks(project, config, "TRACT")
    assert [t.name for t in partition_tasks(project, config, "DISTRICT")] == ["DISTRICT=1", "DISTRICT=2", "DISTRICT=3"]


def test_a_failing_partition_names_itself_and_the_others_are_kept(candidates):
    project, config = candidates
    tasks = partition_tasks(project, config)
    broken = tasks[2].project.controls[1]
    tasks[2] = replace(
        tasks[2],
        project=replace(
            tasks[2].project,
            controls=[
                *tasks[2].project.controls[:1],
                replace(broken, incidence=broken.incidence[:-1]),
                *tasks[2].project.controls[2:],
            ],
        ),
    )
    outcomes = [run_partition(t) for t in tasks]
    assert outcomes[2].error is not None and outcomes[2].name == "PUMA=602"
    assert outcomes[2].error.startswith("ValueError")
    result, ordered = merge_outcomes(project, reversed(outcomes))
    assert [o.name for o in ordered] == [t.name for t in tasks]
    placed = result.households.groupby("zone")["count"].sum()
    assert not set(tasks[2].zones) & set(placed.index)
    assert placed.sum() == sum(int(o.households["count"].sum()) for o in outcomes if o.error is None) > 0


def test_one_partition_is_the_whole_run_with_the_partition_generator(candidates):
    project, config = candidates
    merged, _ = synthesize_partitioned(project, config, level="DISTRICT")
    assert merged.total_households == 1500
    task = partition_tasks(project, config, "DISTRICT")[0]
    alone = [
        e
        for e in synthesize_households(task.project, config, rng=np.random.default_rng([config.seed, 2, task.position]))
        if isinstance(e, HouseholdResult)
    ][0]
    mine = merged.households[np.isin(merged.households["zone"], task.zones)]
    assert int(mine["count"].sum()) == alone.total_households
    assert mine["seed_row"].tolist() == task.seed_rows[alone.households["seed_row"]].tolist()


def test_upper_totals_are_split_into_whole_households_that_add_up(candidates):
    project, config = candidates
    tasks = partition_tasks(project, config)
    for i, control in enumerate(project.controls):
        if control.level != "DISTRICT":
            continue
        parts = {}
        for t in tasks:
            (total,) = t.project.controls[i].totals
            assert total == np.floor(total)  # whole households or persons
            (district,) = t.project.geography.zones("DISTRICT")
            parts[district] = parts.get(district, 0.0) + total
        expected = dict(zip(project.geography.zones("DISTRICT"), control.totals))
        assert parts == {d: expected[d] for d in parts}


def test_a_partition_without_candidates_fails_by_name_and_an_unreachable_scheduler_is_an_error(candidates, monkeypatch):
    from synthor_core import defaults
    from synthor_core.errors import SchedulerError
    from synthor_core.synthesis.partitions import run_partitions

    project, config = candidates
    tasks = partition_tasks(project, config)
    empty = tasks[0].project.seed
    hollow = replace(
        tasks[0],
        project=replace(
            tasks[0].project, seed=replace(empty, households=empty.households.iloc[:0], persons=empty.persons.iloc[:0])
        ),
    )
    outcome = run_partition(hollow)
    assert outcome.error == (
        "ValueError: no candidate household lies in this partition (its seed zones have no "
        "sample household and maxent could not fill them)"
    )
    merged, _ = merge_outcomes(project, [outcome])
    assert (merged.balance.converged, merged.balance.stop) == (False, "every partition failed")
    monkeypatch.setattr(defaults, "DASK_CONNECT_TIMEOUT_S", 2)
    with pytest.raises(SchedulerError, match="the Dask scheduler tcp://127.0.0.1:9 cannot be reached"):
        list(run_partitions(tasks[:1], scheduler="tcp://127.0.0.1:9"))
