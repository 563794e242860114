"""The maxent prior for households without a sample record (issue #9): categories, masses, derivations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.expressions import compile_condition
from synthor_core.priors.households import HouseholdMaxEnt, _category_masses, _draw_in, column_categories
from synthor_core.readers.populationsim import load_populationsim
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.partitions import PriorSpec, synthesize_households
from synthor_core.units import HOUSEHOLD_ROW, Derivation, infer_derivations
from synthor_testing import run_households

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "populationsim"
needs_examples = pytest.mark.skipif(
    not (EXAMPLES / "example_calm").is_dir(), reason="shared/data/populationsim not present"
)

SIZES = ["households.NP == 1", "households.NP == 2", "households.NP == 3", "households.NP >= 4"]


def test_household_sizes_cut_into_one_category_per_control_and_one_for_the_rest():
    categories = column_categories("NP", "households", SIZES, integer=True)
    counted = [c for c in categories if any(c.signature)]
    assert [(c.low, c.high) for c in counted] == [(1, 1), (2, 2), (3, 3), (4, np.inf)]
    assert [c.signature.index(True) for c in counted] == [0, 1, 2, 3]
    rest = [c for c in categories if not any(c.signature)]
    assert len(rest) == 1 and rest[0].contains(0) and not rest[0].contains(1) and not rest[0].contains(4)


def test_a_set_of_codes_is_one_category_and_draws_never_leave_it():
    # workers: ESR 1, 2 or 4 (3 = unemployed sits between them and must never be drawn as a worker)
    categories = column_categories("ESR", "persons", ["persons.ESR.isin([1, 2, 4])"], integer=True)
    worker = next(k for k, c in enumerate(categories) if c.signature == (True,))
    draws = _draw_in(categories, np.full(5000, worker), np.random.default_rng(0))
    assert set(np.unique(draws)) == {1.0, 2.0, 4.0}
    other = next(k for k, c in enumerate(categories) if c.signature == (False,))
    assert set(np.unique(_draw_in(categories, np.full(10, other), np.random.default_rng(0)))) == {0.0}


def test_an_open_top_bin_gets_a_decaying_tail_and_a_wide_bottom_bin_a_neighbour_wide_range():
    incomes = [
        "(households.I > -999999999) & (households.I <= 20000)",
        "(households.I > 20000) & (households.I <= 40000)",
        "(households.I > 40000) & (households.I <= 999999999)",
    ]
    categories = column_categories("I", "households", incomes, integer=False)
    counted = [k for k, c in enumerate(categories) if any(c.signature)]
    rng = np.random.default_rng(3)
    bottom = _draw_in(categories, np.full(20000, counted[0]), rng)
    top = _draw_in(categories, np.full(20000, counted[2]), rng)
    assert bottom.min() >= 0 and bottom.max() <= 20000  # 20,000 wide, as the bin above it
    assert top.min() > 40000 and top.max() <= 40000 + 4 * 20000  # truncated exponential, mean 20,000 above
    assert 55000 < top.mean() < 60000  # truncated at 4 means: 40,000 + 20,000 x (1 - 5 e^-4)/(1 - e^-4) = 58,509


def test_category_masses_meet_partitioning_controls_and_leave_the_rest_to_the_other_category():
    categories = column_categories("NP", "households", SIZES, integer=True)
    totals = np.array([30.0, 40.0, 20.0, 5.0])
    mass = _category_masses(categories, totals, 100.0)
    counted = {c.signature.index(True): m for c, m in zip(categories, mass) if any(c.signature)}
    np.testing.assert_allclose([counted[i] for i in range(4)], totals)
    np.testing.assert_allclose(mass.sum(), 100.0)


@needs_examples
def test_derivations_of_calm_are_found_in_its_sample():
    project = load_populationsim(EXAMPLES / "example_calm")
    workers = compile_condition("persons.ESR.isin([1, 2, 4])", "persons", project.sample.persons.columns, "NWESR")
    assert [(d.column, d.how, d.expression, d.source) for d in project.derived] == [
        ("NP", "size", None, None),
        ("AGEHOH", "first", None, "AGEP"),
        ("NWESR", "count", workers.expression, None),
    ]
    assert project.derived[0] == Derivation("NP", "size")
    # example_test's persons were made up: NP is the number of listed members except in its household of PUMA 606,
    # left out with that PUMA's only zone (it has no controls); HTYPE is not derived from members
    assert infer_derivations(load_populationsim(EXAMPLES / "example_test").sample, ["NP", "HTYPE"]) == [
        Derivation("NP", "size")
    ]


@needs_examples
def test_maxent_candidates_agree_with_their_members_and_copy_no_sample_value():
    project = load_populationsim(EXAMPLES / "example_calm")
    prior = HouseholdMaxEnt(project)
    candidates = prior.support(np.random.default_rng(2))
    hh, persons = candidates.households, candidates.persons
    # 2,000 from the joint + 5 % for each of 10 person categories; those with a unit no value the sample's rules
    # allow was left for are left out (about 1 %)
    assert prior.written == 3000 and len(hh) == 3000 - prior.left_out and 0 < prior.left_out < 90
    members = np.bincount(persons[HOUSEHOLD_ROW], minlength=len(hh))
    assert (members == hh["NP"].to_numpy()).all() and members.min() >= 1
    head = persons[persons["per_num"] == 1].set_index(HOUSEHOLD_ROW)["AGEP"]
    assert (head.reindex(range(len(hh))).to_numpy() == hh["AGEHOH"].to_numpy()).all()
    workers = np.bincount(persons[HOUSEHOLD_ROW], weights=persons["ESR"].isin([1, 2, 4]), minlength=len(hh))
    assert (workers == hh["NWESR"].to_numpy()).all()
    assert (hh["NWESR"] <= hh["NP"]).all()
    assert not np.isin(hh["HHINCADJ"].to_numpy(), project.sample.households["HHINCADJ"].to_numpy()).any()
    # the same seed gives the same candidates
    again = HouseholdMaxEnt(project).support(np.random.default_rng(2))
    assert again.households.equals(hh) and again.persons.equals(persons)


@needs_examples
def test_maxent_fits_example_test_and_refuses_a_control_on_two_columns(tmp_path):
    project = load_populationsim(EXAMPLES / "example_test")
    report, result, _, _ = run_households(project, "maxent", 1, tmp_path / "out")
    assert result.households == 1500
    # household sizes are the sample's codes (1-5 and 10): 2.03, where the seed prior reaches 7.17
    assert result.fit["pct_rmse"].max() < 2.5
    two_columns = compile_condition(
        "(households.NP == 1) & (households.HTYPE == 1)", "households", project.sample.households.columns, "hh_size_1"
    )
    two = replace(project.controls[1], condition=two_columns)
    broken = replace(project, controls=[project.controls[0], two, *project.controls[2:]])
    with pytest.raises(TargetValidationError, match='control "hh_size_1" reads NP, HTYPE'):
        HouseholdMaxEnt(broken)


def _example_without(tmp_path, example: str, id_column: str, drop) -> Path:
    """A copy of an example whose seed lacks the households ``drop(households)`` selects (and their persons).

    Files are read and written as text, so every other cell stays as it was.
    """
    import shutil

    import pandas as pd

    root = tmp_path / example
    shutil.copytree(EXAMPLES / example, root)
    households = pd.read_csv(root / "data" / "seed_households.csv", dtype=str, keep_default_na=False)
    persons = pd.read_csv(root / "data" / "seed_persons.csv", dtype=str, keep_default_na=False)
    gone = households.loc[drop(households), id_column]
    households[~households[id_column].isin(gone)].to_csv(root / "data" / "seed_households.csv", index=False)
    persons[~persons[id_column].isin(gone)].to_csv(root / "data" / "seed_persons.csv", index=False)
    return root


def _run_seed(root):
    # example_test asks for survey weighting (NO_INTEGERIZATION_EVER: True); these tests are about whole households
    project = replace(load_populationsim(root), survey_weighting=False)
    report, result, households, _ = run_households(project, "seed", 1, root / "out")
    return project, report, result, households


@needs_examples
def test_the_seed_prior_fills_a_household_size_its_sample_lacks_from_maxent(tmp_path):
    # CALM's sample without its 4+ person households: PopulationSim could not place any of the 12,660 such
    # households its controls ask for
    root = _example_without(tmp_path, "example_calm", "hhnum", lambda h: h["NP"].astype(float) >= 4)
    project, report, result, households = _run_seed(root)
    assert any("hh_size_4_plus" in w for w in project.warnings)  # the sample alone cannot reach it
    assert report["fallback"]["support"] > 0  # maxent candidates for the control no sample household meets
    fit = result.fit.set_index("control")
    assert fit.loc["hh_size_4_plus", "synthetic_total"] == fit.loc["hh_size_4_plus", "control_total"] == 12_660
    assert fit.loc[[f"hh_size_{k}" for k in ("1", "2", "3", "4_plus")], "pct_rmse"].max() < 0.5
    big = households["NP"] >= 4
    assert big.sum() == 12_660
    assert (households.loc[big, "prior"] == "maxent").all()
    # the loop's proposals add maxent households where zones are worst off; the sample's stay the great majority
    assert (households.loc[~big, "prior"] == "seed").mean() > 0.95
    assert report["households_by_prior"] == households["prior"].value_counts().sort_index().to_dict()


@needs_examples
def test_the_seed_prior_fills_a_seed_zone_without_sample_from_maxent(tmp_path):
    root = _example_without(tmp_path, "example_test", "SERIALNO", lambda h: h["PUMA"] == "601")
    project, report, result, households = _run_seed(root)
    assert report["fallback"]["support"] >= 1000  # a whole block of maxent candidates for PUMA 601
    assert result.total_households == 1500
    in_601 = households["PUMA"] == 601
    assert in_601.any() and (households.loc[in_601, "prior"] == "maxent").all()
    # example_test's sample is ten households a PUMA: maxent's candidates made for the zones worst off take a share
    # elsewhere too, counted in the report
    assert report["households_by_prior"] == households["prior"].value_counts().sort_index().to_dict()
    assert result.fit.set_index("control")["pct_rmse"]["num_hh"] == 0.0


def test_fractional_cut_points_on_a_whole_number_column_still_give_categories():
    categories = column_categories("AGEP", "persons", ["persons.AGEP < 17.5", "persons.AGEP >= 17.5"], integer=True)
    assert [(c.low, c.high, c.signature) for c in categories] == [
        (-np.inf, 17, (True, False)),
        (18, np.inf, (False, True)),
    ]


@needs_examples
def test_maxent_serves_a_total_control_on_a_household_column_and_person_controls_that_are_all_zero(tmp_path):
    project = load_populationsim(EXAMPLES / "example_test")
    households, persons = project.sample.households.columns, project.sample.persons.columns
    controls = list(project.controls)
    total = next(i for i, c in enumerate(controls) if c.name == project.total_control)
    controls[total] = replace(
        controls[total], condition=compile_condition("households.NP > 0", "households", households, "t")
    )
    # two person controls covering every occupation code, both 0: no category is left for the persons
    occupations = [i for i, c in enumerate(controls) if c.name.startswith("persons_occ")]
    for k, text in ((0, "persons.OCCP < 2"), (1, "persons.OCCP >= 2")):
        c = controls[occupations[k]]
        controls[occupations[k]] = replace(
            c, condition=compile_condition(text, "persons", persons, c.name), totals=np.zeros_like(c.totals)
        )
    controls = [c for i, c in enumerate(controls) if i != occupations[2]]
    changed = replace(project, controls=controls)
    assert (HouseholdMaxEnt(changed).support(np.random.default_rng(1)).households["NP"] >= 1).all()
    _, result, _, _ = run_households(changed, "maxent", 1, tmp_path / "out")
    assert result.total_households == 1500
    assert result.fit.set_index("control").loc["num_hh", "pct_rmse"] == 0.0


@needs_examples
def test_the_fill_looks_at_each_seed_zone_own_sample(tmp_path):
    import pandas as pd

    # PUMA 600 loses its 4+ person households; other PUMAs keep theirs, so the sample as a whole still has some
    root = _example_without(
        tmp_path,
        "example_test",
        "SERIALNO",
        lambda h: (h["PUMA"] == "600") & (pd.to_numeric(h["NP"], errors="coerce") >= 4),
    )
    project, report, result, households = _run_seed(root)
    in_600 = households[households["PUMA"] == 600]
    big = in_600["NP"] >= 4
    assert big.sum() > 0 and (in_600.loc[big, "prior"] == "maxent").all()
    assert report["fallback"]["support"] > 0


@needs_examples
def test_a_control_file_asking_for_too_many_households_is_refused():
    project = load_populationsim(EXAMPLES / "example_test")
    total = next(i for i, c in enumerate(project.controls) if c.name == project.total_control)
    huge = list(project.controls)
    huge[total] = replace(huge[total], totals=huge[total].totals * 1e7)
    with pytest.raises(
        TargetValidationError,
        match="the control of households per zone asks for 15,000,000,000 "
        "households; one run places at most 50,000,000",
    ):
        next(synthesize_households(replace(project, controls=huge), PriorSpec("seed"), SynthesisConfig(seed=1)))


@needs_examples
def test_an_upper_level_control_no_sample_household_meets_is_filled_in_every_seed_zone(tmp_path):
    project = load_populationsim(EXAMPLES / "example_test")
    i = next(k for k, c in enumerate(project.controls) if c.name == "persons_occ_2")  # DISTRICT level
    unmet = list(project.controls)
    never = compile_condition("persons.OCCP == -7", "persons", project.sample.persons.columns, "persons_occ_2")
    unmet[i] = replace(unmet[i], condition=never)
    integerized = replace(project, controls=unmet, survey_weighting=False)  # whole households, not survey weights
    report, result, households, persons = run_households(integerized, "seed", 1, tmp_path / "o")
    per_partition = report["fallback"]["support"]
    assert per_partition >= 6  # maxent candidates meeting it in each of the six PUMAs with households
    assert set(households.loc[households["prior"] == "maxent", "PUMA"]) <= {600, 601, 602, 603, 604, 605}
