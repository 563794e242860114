"""The loop on a small project: both modes, rejects, stop requests, reproducibility."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthor_core.errors import PriorError
from synthor_core.priors.base import PriorBase, Proposal
from synthor_core.priors.maxent import MaxEntPrior
from synthor_core.readers.project import load_project
from synthor_core.schema import expand_records
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import IterationEvent, SynthesisResult
from synthor_core.synthesis.loop import run_synthesis


def _run(project, prior, config, should_stop=None, rules=()):
    events = list(run_synthesis(project, prior, config, should_stop, rules))
    assert isinstance(events[-1], SynthesisResult)
    return events[:-1], events[-1]


def test_full_mode_fits_every_table_and_returns_exactly_n_valid_persons(small_project_dir):
    project = load_project(small_project_dir)
    events, result = _run(project, MaxEntPrior(project), SynthesisConfig(seed=2))
    assert all(isinstance(e, IterationEvent) for e in events)
    assert result.population["count"].sum() == 1000
    assert result.fit.max_tvd < 0.005
    assert result.calibration.converged
    people = expand_records(result.population, project.schema)
    assert len(people) == 1000
    assert people["age"].between(0, 99).all() and people["age"].dtype == np.int64
    assert set(people["sex"]) <= {"Female", "Male"}


def test_paper_mode_follows_the_paper_protocol(small_project_dir):
    project = load_project(small_project_dir)
    events, result = _run(
        project, MaxEntPrior(project, mode="paper"), SynthesisConfig(mode="paper", seed=2, max_iterations=40)
    )
    assert result.calibration is None
    assert result.population["count"].sum() == 1000
    assert len(events) == 40 and result.stop_reason == "population complete"
    for event in events:
        assert 1 <= len(event.proposals) <= 5
        assert event.removed == 0
        assert sum(p.count for p in event.proposals) == event.added == 25  # N / max_iterations per iteration
        for p in event.proposals:
            assert p.action == "add"
            assert set(p.conditions) == {"age", "sex", "employed"}
            assert isinstance(p.conditions["sex"], str) and len(p.conditions["age"]) == 2
    assert events[-1].population_total == 1000
    assert result.fit.mean_tvd < 0.1


class _HalfBrokenPrior(PriorBase):
    """A real prior whose realize returns, for every second record, an age outside the schema."""

    name = "half-broken"

    def __init__(self, project):
        super().__init__()
        self.inner = MaxEntPrior(project)

    def plan(self, guidance, rng):
        return self.inner.plan(guidance, rng) + [Proposal(conditions={"sex": "Unknown"}, count=5)]

    def realize(self, proposal, k, rng):
        records = self.inner.realize(proposal, k, rng)
        records.loc[records.index[::2], "age"] = 150
        return records


def test_invalid_records_and_proposals_are_dropped_and_counted_never_fixed(small_project_dir):
    project = load_project(small_project_dir)
    events, result = _run(project, _HalfBrokenPrior(project), SynthesisConfig(seed=1, max_iterations=3))
    first = events[0]
    assert first.rejected["record: age outside schema"] == 500  # the first proposal asks for N = 1000 records
    assert first.rejected["proposal: category not in schema"] == 1
    assert first.added == 1000  # the count is carried by the 500 valid records
    people = expand_records(result.population, project.schema)
    assert people["age"].max() <= 99


def test_stop_request_ends_the_loop_and_keeps_what_was_built(small_project_dir):
    project = load_project(small_project_dir)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    events, result = _run(project, MaxEntPrior(project), SynthesisConfig(seed=1, tolerance_tvd=1e-6), stop)
    assert result.stop_reason == "stop requested"
    assert len(events) == 1
    assert result.population["count"].sum() == 1000


class _EmptyPrior(PriorBase):
    name = "empty"

    def plan(self, guidance, rng):
        return [Proposal(conditions={}, count=10)]

    def realize(self, proposal, k, rng):
        return pd.DataFrame({"age": [500] * k, "sex": ["Female"] * k, "employed": ["no"] * k})


def test_a_prior_that_never_produces_a_valid_record_is_an_error(small_project_dir):
    project = load_project(small_project_dir)
    with pytest.raises(PriorError, match='the prior "empty" produced no valid record in 2 iteration'):
        _run(project, _EmptyPrior(), SynthesisConfig(seed=1, max_iterations=2))


def test_same_seed_same_population_other_seed_other_population(small_project_dir):
    project = load_project(small_project_dir)
    a = _run(project, MaxEntPrior(project), SynthesisConfig(seed=7))[1].population
    b = _run(project, MaxEntPrior(project), SynthesisConfig(seed=7))[1].population
    c = _run(project, MaxEntPrior(project), SynthesisConfig(seed=8))[1].population
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_config_rejects_misspelt_and_out_of_range_settings():
    with pytest.raises(ValueError, match="max_iteration\n  Extra inputs are not permitted"):
        SynthesisConfig(max_iteration=3)
    with pytest.raises(ValueError, match="tolerance_tvd\n  Input should be greater than 0"):
        SynthesisConfig(tolerance_tvd=0)
    with pytest.raises(ValueError, match="mode\n  Input should be 'full' or 'paper'"):
        SynthesisConfig(mode="fast")


def test_records_breaking_a_rule_are_dropped_and_counted_whatever_the_prior(small_project_dir):
    from synthor_core.expressions import compile_rule

    project = load_project(small_project_dir)
    rule = compile_rule("old worker", 'age >= 65 and employed == "yes"', project.schema)
    events, result = _run(project, MaxEntPrior(project), SynthesisConfig(seed=1, max_iterations=3), rules=[rule])
    # the prior knows nothing of the rule (the targets say 20 persons aged 65+ are employed): the engine drops them
    assert events[0].rejected["record: violates old worker"] > 0
    people, _ = project.schema.encode(expand_records(result.population, project.schema))
    assert not rule.violates(people).any()


def test_removals_do_not_depend_on_the_records_sort_order():
    """Issue 11: with records of equal counts, the ones first in sort order used to lose every person (ages 18-19
    vanished from [18, 23)); now each loses in proportion to its count, whatever its position."""
    import numpy as np
    import pandas as pd

    from synthor_core.synthesis.persons import _remove

    population = pd.DataFrame({"age": [18.0, 19.0, 20.0, 21.0, 22.0], "count": [1, 1, 1, 1, 1]})
    rng = np.random.default_rng(0)
    removed = np.zeros(5)
    for _ in range(4000):
        out, took = _remove(population, np.ones(5, dtype=bool), 2, rng)
        assert took == 2 and int(out["count"].sum()) == 3 and (out["count"] >= 0).all()
        removed += 1 - out["count"].to_numpy()
    assert np.allclose(removed / 4000, 0.4, atol=0.03), removed / 4000  # each record: 2 of 5
    mean_age_left = []
    for _ in range(2000):  # the mean age of who stays keeps its expected value (20)
        out, _ = _remove(population, np.ones(5, dtype=bool), 2, rng)
        mean_age_left.append(float(np.average(out["age"], weights=out["count"])))
    assert abs(np.mean(mean_age_left) - 20.0) < 0.05
    weighted = pd.DataFrame({"age": [30.0, 40.0], "count": [9, 3]})
    share = np.mean([9 - _remove(weighted, np.ones(2, dtype=bool), 2, rng)[0]["count"][0] for _ in range(4000)])
    assert abs(share - 1.5) < 0.05  # 2 x 9/12 expected from the larger record
