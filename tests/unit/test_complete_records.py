"""Complete records (issue 21): each column's domain from the sample's codebook, the rules its support implies, open
bins bounded, the total control on the sample weight, and the report's column checks."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthor_core.codebook import Domain, column_domain, widen
from synthor_core.evaluate.households import HouseholdEvaluation
from synthor_core.export import column_warnings
from synthor_core.expressions import compile_condition
from synthor_core.priors.households import HouseholdMaxEnt
from synthor_core.priors.records import Piece, column_pieces, piece_values, with_tails
from synthor_core.readers.populationsim import load_populationsim
from synthor_testing import run_households

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "populationsim"
needs_examples = pytest.mark.skipif(
    not (EXAMPLES / "example_calm").is_dir(), reason="shared/data/populationsim not present"
)


@needs_examples
def test_calm_codebook_and_the_rules_its_sample_implies():
    project = load_populationsim(EXAMPLES / "example_calm")
    book = project.codebook
    assert book[("persons", "ESR")].describe() == "codes 1, 2, 3, 4, 6 or empty"
    assert book[("persons", "OCCP")].describe() == "codes 1, 2, 3, 4, 5, 6, 7, 8, 999"
    assert book[("persons", "AGEP")].describe() == "whole numbers 0 to 94"
    assert ("households", "WGTP") not in book  # the sample weight describes the sample, not a household
    rules = {r.name: r for r in project.rules}
    assert rules["sample: ESR empty -> AGEP"].expression == "(persons.ESR.notna()) | persons.AGEP.between(0, 15)"
    assert rules["sample: OCCP 999 -> ESR"].expression == (
        "(persons.OCCP != 999) | persons.ESR.isin([3, 6]) | persons.ESR.isna()"
    )
    assert rules["sample: the head -> AGEP"].expression.endswith("persons.AGEP.between(17, 94)")
    # every rule holds on every sample record, by construction
    persons = project.sample.numbered_persons()
    for rule in project.rules:
        frame = project.sample.households if rule.unit == "households" else persons
        assert not rule.broken(frame).any(), rule.name
    # a sample of 61 households is too small for its support to be evidence: no rule
    assert load_populationsim(EXAMPLES / "example_test").rules == ()


@needs_examples
def test_a_category_the_sample_lacks_widens_the_domain_and_no_rule_forbids_it(tmp_path):
    root = tmp_path / "calm"
    shutil.copytree(EXAMPLES / "example_calm", root)
    households = pd.read_csv(root / "data" / "seed_households.csv", dtype=str, keep_default_na=False)
    persons = pd.read_csv(root / "data" / "seed_persons.csv", dtype=str, keep_default_na=False)
    gone = households.loc[households["NP"].astype(int) >= 4, "hhnum"]
    households[~households["hhnum"].isin(gone)].to_csv(root / "data" / "seed_households.csv", index=False)
    persons[~persons["hhnum"].isin(gone)].to_csv(root / "data" / "seed_persons.csv", index=False)
    project = load_populationsim(root)
    assert project.codebook[("households", "NP")].codes == (1.0, 2.0, 3.0, 4.0)  # NP >= 4 asks for 4
    frame = pd.DataFrame({"NP": [4] * 7, "NWESR": range(7), "HTYPE": [1] * 7, "AGEHOH": [40] * 7})
    frame["HHINCADJ"] = 50_000.0
    for rule in project.rules:
        if rule.unit == "households":
            broken = rule.broken(frame)
            assert not broken[:4].any(), rule.name  # a household of 4 with 0-3 workers stays possible
    candidates = HouseholdMaxEnt(project).support(np.random.default_rng(1))
    assert (candidates.households["NP"] == 4).sum() > 100


def test_widen_adds_the_nearest_value_a_condition_needs():
    sizes = Domain("NP", "households", (1.0, 2.0, 3.0), 1.0, 3.0, True, False)
    four_plus = compile_condition("households.NP >= 4", "households", ["NP"], "c")
    assert widen(sizes, [four_plus]).codes == (1.0, 2.0, 3.0, 4.0)
    above = compile_condition("households.NP > 3", "households", ["NP"], "c")
    assert widen(sizes, [above]).codes == (1.0, 2.0, 3.0, 4.0)
    ages = Domain("AGEP", "persons", None, 0.0, 94.0, True, False)
    old = compile_condition("persons.AGEP >= 100", "persons", ["AGEP"], "c")
    assert (widen(ages, [old]).low, widen(ages, [old]).high) == (0.0, 100.0)
    inside = compile_condition("persons.AGEP > 64", "persons", ["AGEP"], "c")
    assert widen(ages, [inside]) == ages
    assert column_domain(pd.Series([np.nan, np.nan]), "X", "persons") is None


def test_an_open_top_bin_gives_finite_values_inside_the_domain_with_a_decaying_tail():
    income = Domain("HHINCADJ", "households", None, -723.0, 328_799.0, False, False)
    pieces = column_pieces(income, [21_297, 42_593, 85_185, np.inf])
    probe = np.array([p.probe for p in pieces])
    category = np.searchsorted([21_297, 42_593, 85_185], probe, side="left")
    tails = with_tails(pieces, category)
    top = [k for k, p in enumerate(tails) if p.scale > 0]
    assert top and all(tails[k].low > 85_185 for k in top)
    which = np.full(20_000, top[-1])
    values = piece_values(tails, which, np.random.default_rng(1))
    assert np.isfinite(values).all() and values.min() > 85_185 and values.max() <= 328_799
    # the exponential with the width below as its mean, not a uniform up to the domain's largest value
    assert values.mean() < 85_185 + 1.2 * 42_592 < (85_185 + 328_799) / 2
    # a coded column's open top (4 or more members): the codes fall off
    sizes = [Piece(float(c), float(c), True) for c in (1, 2, 3, 4, 5, 6, 7, 10)]
    tails = with_tails(sizes, np.array([0, 1, 2, 3, 3, 3, 3, 3]))
    masses = np.array([p.mass for p in tails[3:]])
    assert (np.diff(masses) < 0).all() and masses[0] > 0.5 * masses.sum()


@needs_examples
def test_an_open_income_bin_without_upper_bound_stays_inside_the_sample_range():
    project = load_populationsim(EXAMPLES / "example_calm")
    controls = [
        replace(c, condition=compile_condition("households.HHINCADJ > 85185", "households", ["HHINCADJ"], c.name))
        if c.name == "hh_inc_60_plus"
        else c
        for c in project.controls
    ]
    candidates = HouseholdMaxEnt(replace(project, controls=controls)).support(np.random.default_rng(3))
    income = candidates.households["HHINCADJ"].to_numpy()
    assert np.isfinite(income).all() and income.max() <= 328_799.66 and (income > 85_185).sum() > 100
    assert candidates.persons["AGEP"].notna().all() and candidates.persons["AGEP"].max() <= 94


@needs_examples
def test_a_total_control_on_the_sample_weight_counts_every_household(tmp_path):
    project = load_populationsim(EXAMPLES / "example_test")
    total = next(i for i, c in enumerate(project.controls) if c.name == project.total_control)
    assert project.controls[total].every_household  # (households.WGTP > 0) & (households.WGTP < np.inf)
    columns = project.sample.households.columns
    weight_one = compile_condition("households.WGTP == 1", "households", columns, "num_hh")
    controls = list(project.controls)
    controls[total] = replace(controls[total], condition=weight_one)
    _, result, households, _ = run_households(replace(project, controls=controls), "maxent", 1, tmp_path / "out")
    fit = result.fit.set_index("control")
    assert fit.loc["num_hh", "synthetic_total"] == fit.loc["num_hh", "control_total"] == len(households) == 1500
    assert fit.loc["num_hh", "pct_rmse"] == 0.0


@needs_examples
def test_the_report_flags_a_column_of_empty_values_and_values_outside_the_domain():
    project = load_populationsim(EXAMPLES / "example_calm")
    evaluation = HouseholdEvaluation(project)
    households = pd.DataFrame(
        {"household_id": [1, 2], "NP": [1, 1], "AGEHOH": [40, 50], "HHINCADJ": [1e4, 2e4], "NWESR": [1, 0]}
    )
    households["HTYPE"] = [1, 7]  # 7 is no code of the sample
    persons = pd.DataFrame(
        {"household_id": [1, 2], "per_num": [1, 1], "OSUTAG": [0, 0], "OCCP": [3, 999], "ESR": [1, 6]}
    )
    persons["AGEP"] = np.nan
    evaluation.add(households, persons)
    columns = {(c["unit"], c["column"]): c for c in evaluation.columns()}
    assert columns[("persons", "AGEP")]["empty"] == 2 and columns[("persons", "AGEP")]["outside"] == 2
    assert columns[("households", "HTYPE")]["outside"] == 1
    warnings = column_warnings(evaluation.columns())
    assert warnings == [
        "households column HTYPE: 1 of 2 values are outside its domain (expected codes 1, 2, 3, 4)",
        "persons column AGEP is empty in every record (expected whole numbers 0 to 94)",
    ]


DECLARED = Path(__file__).resolve().parents[1] / "projects" / "declared"


def test_a_project_without_a_sample_declares_its_variables_and_gets_complete_records(tmp_path):
    from synthor_core.readers.households import load_household_project

    project = load_household_project(DECLARED)
    assert len(project.sample.households) == 0 and project.codebook[("persons", "AGE")].describe() == (
        "whole numbers 0 to 99"
    )
    report, result, households, persons = run_households(project, "maxent", 1, tmp_path / "out")
    assert result.households == len(households) == 460 and result.fit["pct_rmse"].max() < 1.0
    # every declared column of every record inside its domain; the rules hold record by record
    assert set(households.columns) >= {"NP", "WORKERS", "TENURE"} and set(persons.columns) >= {"AGE", "EMPLOYED"}
    assert households["NP"].isin(range(1, 7)).all() and households["TENURE"].isin([1, 2]).all()
    assert persons["AGE"].between(0, 99).all() and persons["AGE"].notna().all()
    assert (persons["EMPLOYED"].isna() == (persons["AGE"] < 16)).all()
    assert persons.loc[persons["per_num"] == 1, "AGE"].min() >= 18
    workers = persons.groupby("household_id")["EMPLOYED"].sum().reindex(households["household_id"]).to_numpy()
    assert (workers == households["WORKERS"].to_numpy()).all()
    assert report["warnings"] == [] and all(c["outside"] == 0 for c in report["columns"])
    assert report["realism"]["tables"] == [] and report["realism_all"]["tables"] == []  # nothing to compare with


def test_a_project_needs_a_sample_or_declared_variables_each_with_codes_or_a_range(tmp_path):
    from synthor_core.errors import TargetValidationError
    from synthor_core.readers.households import load_household_project

    root = tmp_path / "declared"
    shutil.copytree(DECLARED, root)
    toml = root / "synthor.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace("low = 0\nhigh = 99", "low = 0\nhigh = 99\ncodes = [1, 2]"), encoding="utf-8")
    with pytest.raises(TargetValidationError, match="give codes or low and high, not both"):
        load_household_project(root)
    head, _, rest = text.partition("[[variables]]")
    toml.write_text(head + "[[derived]]" + rest.split("[[derived]]", 1)[1], encoding="utf-8")
    with pytest.raises(TargetValidationError, match=r"needs \[seed\] .* or \[\[variables\]\]"):
        load_household_project(root)


@needs_examples
def test_an_output_column_the_records_lack_is_named_not_dropped_silently(tmp_path):
    root = tmp_path / "example_test"
    shutil.copytree(EXAMPLES / "example_test", root)
    settings = root / "configs" / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace("      - OCCP\n", "      - OCCP\n      - SCHOOL\n      - JOB\n", 1), encoding="utf-8"
    )
    project = load_populationsim(root)
    assert [w for w in project.warnings if w.startswith("the output settings")] == [
        "the output settings list persons columns SCHOOL, JOB, which the persons have not: not written"
    ]
