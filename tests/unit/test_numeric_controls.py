"""Numeric controls (issue 11): tables giving the total or mean of a numeric variable per cell."""

from __future__ import annotations

import numpy as np
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.priors.base import Proposal
from synthor_core.priors.maxent import MaxEntPrior
from synthor_core.readers.project import load_project
from synthor_core.schema import expand_records
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import SynthesisResult
from synthor_core.synthesis.loop import run_synthesis
from synthor_testing import SMALL_FILES, SMALL_TOML, write_project

MEAN_AGE = """
[[tables]]
name = "mean_age_by_sex"
file = "tables/mean_age_by_sex.csv"
variables = ["sex"]
mean_of = "age"
count_column = "mean"
"""

TOTAL_AGE = """
[[tables]]
name = "total_age"
file = "tables/total_age.csv"
variables = []
total_of = "age"
count_column = "total"
"""


def _project(tmp_path, extra: str, files: dict):
    return write_project(tmp_path / "p", SMALL_TOML + extra, {**SMALL_FILES, **files})


def test_a_mean_and_a_grand_total_are_read_and_fitted_by_the_run(tmp_path):
    """Mean age 40 for women and 33 for men, and a total of 36,570 years over the 1,000 persons (510 women,
    490 men: the same total): the population meets all three within 0.3 % after integerization, and its age
    tables still fit."""
    folder = _project(
        tmp_path,
        MEAN_AGE + TOTAL_AGE,
        {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,40\nMale,33\n", "tables/total_age.csv": "total\n36570\n"},
    )
    project = load_project(folder)
    assert [c.name for c in project.numeric_controls] == ["mean_age_by_sex", "total_age"]
    assert [t.name for t in project.tables] == ["age_by_sex", "sex_by_employed", "age_by_employed"]
    result = [e for e in run_synthesis(project, MaxEntPrior(project), SynthesisConfig(seed=3))][-1]
    assert isinstance(result, SynthesisResult)
    people = expand_records(result.population, project.schema)
    means = people.groupby("sex", observed=True)["age"].mean()
    assert means["Female"] == pytest.approx(40.0, rel=0.003) and means["Male"] == pytest.approx(33.0, rel=0.003)
    assert people["age"].sum() == pytest.approx(36570, rel=0.003)
    assert result.fit.numeric["total_age"].max_relative_error < 0.003
    assert result.fit.numeric["mean_age_by_sex"].cells == ({"sex": "Female"}, {"sex": "Male"})
    assert result.fit.mean_tvd <= 0.005
    assert result.calibration is not None and result.calibration.max_relative_error_numeric < 1e-6


def test_a_run_of_another_size_scales_totals_not_means(tmp_path):
    folder = _project(
        tmp_path,
        MEAN_AGE + TOTAL_AGE,
        {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,40\nMale,33\n", "tables/total_age.csv": "total\n36570\n"},
    )
    project = load_project(folder)
    result = [e for e in run_synthesis(project, MaxEntPrior(project), SynthesisConfig(seed=1, size=3000))][-1]
    people = expand_records(result.population, project.schema)
    assert len(people) == 3000
    assert people["age"].sum() == pytest.approx(109710, rel=0.003)
    assert people.loc[people["sex"] == "Female", "age"].mean() == pytest.approx(40.0, rel=0.003)


@pytest.mark.parametrize(
    ("extra", "files", "message"),
    [
        (
            MEAN_AGE.replace('mean_of = "age"', 'mean_of = "sex"'),
            {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,40\nMale,33\n"},
            'mean_of needs a numeric variable; "sex" is categorical',
        ),
        (
            MEAN_AGE.replace('mean_of = "age"', 'mean_of = "agee"'),
            {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,40\nMale,33\n"},
            'mean_of = "agee" is not in [[variables]]',
        ),
        (
            MEAN_AGE.replace('mean_of = "age"', 'mean_of = "age"\ntotal_of = "age"'),
            {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,40\nMale,33\n"},
            "give total_of or mean_of, not both",
        ),
        (
            MEAN_AGE,
            {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,140\nMale,33\n"},
            "the mean of age for sex Female is 140, outside its range [0, 99]",
        ),
        (
            TOTAL_AGE,
            {"tables/total_age.csv": "total\n120000\n"},
            "the total of age for the whole population is 120000: 1,000 persons with age in [0, 99] cannot reach it",
        ),
        (
            MEAN_AGE,
            {"tables/mean_age_by_sex.csv": "sex,mean\nFemale,-4\nMale,33\n"},
            'expected a number >= 0, got "-4"',
        ),
    ],
)
def test_bad_numeric_controls_are_named(tmp_path, extra, files, message):
    folder = _project(tmp_path, extra, files)
    with pytest.raises(TargetValidationError) as info:
        load_project(folder)
    assert message in str(info.value)


def test_a_stated_mean_of_the_top_bin_shapes_the_values_drawn_there(tmp_path):
    """Issue 11: a control giving the mean age of each age bin (as published for income brackets) states the
    top bin's mean, 70.0 in [65, 99]; the maxent prior's draws there have it (the spline alone: 75.6)."""
    extra = """
[[tables]]
name = "mean_age_by_age"
file = "tables/mean_age_by_age.csv"
variables = ["age"]
mean_of = "age"
count_column = "mean"
[tables.bins]
age = [0, 18, 65, 99]
"""
    folder = _project(
        tmp_path, extra, {"tables/mean_age_by_age.csv": 'age,mean\n"[0, 18)",9\n"[18, 65)",40\n"[65, 99]",70\n'}
    )
    project = load_project(folder)
    draws = {}
    for name, p in (("stated", project), ("spline", load_project(_project(tmp_path / "plain", "", {})))):
        prior = MaxEntPrior(p)
        records = prior.realize(Proposal(conditions={"age": (65, 99)}, count=20000), 20000, np.random.default_rng(0))
        draws[name] = records["age"].mean()
    assert draws["stated"] == pytest.approx(70.0, abs=0.2)
    assert abs(draws["spline"] - 70.0) > 3.0, draws
