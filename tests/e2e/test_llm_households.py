"""Issue 13: the LLM prior writes whole households with their members, and a careless model cannot spoil a run.
The endpoint (tests/llm_endpoint, on 127.0.0.1) answers household requests from CALM's seed sample (a stand-in
for a model's knowledge) or, careless, with random instances of the request's JSON schema and a quarter of its
calls failing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llm_endpoint.server import TestEndpoint
from synthor_core.priors.llm import LLMSettings
from synthor_core.priors.llm_households import LLMHouseholdPrior
from synthor_core.readers.households import load_household_project
from synthor_testing import POPULATIONSIM_CALM_WORST_PCT_RMSE, ROOT, run_households

CALM = ROOT / "examples" / "calm"
FAULTS = ("rate_limit", "server_error", "connection", "malformed_json", "truncated", "empty", "refusal")


@pytest.fixture(scope="module")
def calm():
    return load_household_project(CALM)


def test_households_from_a_knowing_endpoint_aim_at_the_zones_worst_off(calm, tmp_path):
    sample = calm.sample
    with TestEndpoint(seed=1, households=(sample.households, sample.persons)) as endpoint:
        settings = LLMSettings(base_url=endpoint.url, model="calm", max_retries=1, distinct_records=400)
        report, result, households, persons = run_households(calm, "llm", 1, tmp_path / "out", llm=settings)
        requests = [e for e in endpoint.log if e["task"] == "realize_households"]
    llm = report["prior_notes"]["llm"]
    assert llm["calls"] == len(requests) and llm["households_asked"] <= settings.distinct_records
    # the first iterations' proposals name the control-zone pairs worst off after balancing; the LLM was asked for
    # households meeting those controls, in those zones
    targeted = [t for entry in report["iterations"] for t in entry["targeted"]]
    assert targeted and set(llm["targeted"]) <= set(targeted)
    asked = [r for r in requests if r["conditions"] or r["member_condition"]]
    assert asked, "no request carried a proposal's condition"
    # the endpoint answers with sample households meeting the request as the sample records them; the prior
    # recomputes size, head's age and workers from the members, and keeps those that meet the request
    assert llm["households_valid"] + sum(llm["rejected"].values()) == llm["households_written"]
    assert llm["households_valid"] > 0.5 * llm["households_written"]
    assert report["households_by_prior"]["llm"] > 0 and sum(report["households_by_prior"].values()) == 62_041
    from_llm = households[households["prior"] == "llm"]
    members = persons.groupby("household_id").size()
    assert (members.loc[from_llm["household_id"]].to_numpy() == from_llm["NP"].to_numpy()).all()
    # the schema sent: household columns the controls read (derived ones left out) and an array of members
    schema = requests[0]["json_schema"]["schema"]["properties"]["households"]["items"]
    assert set(schema["required"]) == {"HHINCADJ", "HTYPE", "members"}
    assert set(schema["properties"]["members"]["items"]["required"]) == {"AGEP", "ESR", "OSUTAG", "OCCP"}
    # the chart's history: households per source in every iteration, the LLM's among them
    assert all("llm" in entry["households_by_source"] for entry in report["iterations"])
    # the sample's structure beyond the controls comes through: closer to the sample than maxent alone (0.219 on
    # CALM with seed 1, benchmarks/populationsim_calm.py). Maxent's fallback candidates start lighter than the LLM's,
    # so the LLM's households keep the weight where they meet the controls: measured 0.140 and 32,414 households
    # from the LLM here (400 from the endpoint); 0.191 and 11,773 when both started alike
    assert report["realism"]["mean_tvd"] < 0.16
    assert report["households_by_prior"]["llm"] > 0.4 * 62_041


def test_a_careless_endpoint_cannot_spoil_the_calm_run(tmp_path):
    """Random households (valid JSON, wrong everything) and 25 % failed calls: nearly every one is rejected or lost
    and maxent's candidates carry the run: 62,041 households agreeing with their members, every control group at or
    below PopulationSim's worst %RMSE, and the report says where the households came from."""
    out = tmp_path / "out"
    with TestEndpoint(seed=5, careless=True, fault_rate=0.25, fault_kinds=FAULTS) as endpoint:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "synthor_core",
                "run",
                str(CALM),
                "--prior",
                "llm",
                "--base-url",
                endpoint.url,
                "--model",
                "careless",
                "--api-key-env",
                "SYNTHOR_TEST_NO_KEY",
                "--max-retries",
                "1",
                # one call at a time: the random answers come in a fixed order, so the households the LLM gets
                # through (a few) are the same in every run; with 4 in flight some runs got none and, as a run the
                # LLM never fed, failed (issue 26)
                "--concurrency",
                "1",
                "--seed",
                "1",
                "--out",
                str(out),
                "--quiet",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    households = pd.read_csv(out / "households.csv")
    persons = pd.read_csv(out / "persons.csv")
    assert report["households"] == len(households) == 62_041
    members = persons.groupby("household_id").size().reindex(households["household_id"], fill_value=0)
    assert (members.to_numpy() == households["NP"].to_numpy()).all()
    assert all(v == 1.0 for v in report["member_consistency"].values())
    fit = {c["control"]: c for c in report["controls"]}
    for group, (controls, bar) in POPULATIONSIM_CALM_WORST_PCT_RMSE.items():
        # at or below PopulationSim's, or one unit off in one zone (one of occupation 7's 129 persons is 0.78 %)
        assert all(fit[c]["pct_rmse"] <= bar or fit[c]["max_abs_error"] <= 1 for c in controls), group
    llm = report["prior_notes"]["llm"]
    # random households almost never meet a cell (a random one may, by chance: it is then a valid candidate)
    assert llm["households_valid"] <= 0.01 * llm["households_written"] and llm["households_written"] > 200
    # the endpoint fails a quarter of its answers at random, some retried: 15 failed calls of 107 measured (29 of 118
    # before the fallback's candidates started lighter; the draws follow the calls made)
    assert sum(llm["failures"].values()) > 0.1 * llm["calls"] and len(llm["failures"]) >= 5
    assert report["households_by_prior"]["maxent"] >= 0.95 * 62_041
    assert sum(report["households_by_prior"].values()) == 62_041
    assert (households["prior"] == "maxent").mean() >= 0.95
    assert f"llm: {llm['households_valid']:,} of {llm['households_written']:,} households written were valid" in (
        done.stdout
    )


def test_households_breaking_a_rule_or_their_cell_are_rejected_and_counted(calm):
    """The endpoint's "knowledge" made wrong: every worker aged 10 (the rule: a worker is 16 or older; the rules the
    sample implies say so first: ``sample: OCCP 1 -> AGEP`` ...). Those households are rejected by reason, and no kept
    member breaks the rule."""
    households, persons = calm.sample.households, calm.sample.persons.copy()
    persons.loc[persons["ESR"].isin([1, 2, 4]) & (persons["per_num"] > 1), "AGEP"] = 10
    spoiled = set(persons.loc[(persons["AGEP"] == 10) & persons["ESR"].isin([1, 2, 4]), "_household"])
    with TestEndpoint(seed=1, households=(households, persons)) as endpoint:
        settings = LLMSettings(base_url=endpoint.url, model="calm", max_retries=1, distinct_records=300)
        prior = LLMHouseholdPrior(calm, settings, api_key="")
        candidates = prior.support(np.random.default_rng(2))
    llm = prior.report()["llm"]
    broken = sum(
        n
        for reason, n in llm["rejected"].items()
        if reason == "household: breaks a worker is 16 or older"
        or (reason.startswith("household: breaks sample: ") and reason.endswith(" -> AGEP"))
    )
    assert broken > 0 and llm["households_valid"] + sum(llm["rejected"].values()) == llm["households_written"]
    assert len(spoiled) > 0.2 * len(households)  # a fair share of the sample was spoiled
    kept = candidates.persons
    workers = kept["ESR"].isin([1, 2, 4])
    assert not (workers & (kept["AGEP"] < 16)).any()
