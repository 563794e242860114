"""The CLI on the bundled Travis County commuting example (issue 24): persons by tract and every commuter's tour,
scored against the LODES matrix it came from, as a user runs it (a real subprocess, files on disk)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from synthor_core.metrics import cpc
from synthor_testing import ROOT

EXAMPLE = ROOT / "examples" / "travis_commuting"
SOURCE = ROOT.parent / "shared" / "data" / "commuting" / "48453_travis_tx"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("travis") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(EXAMPLE), "--seed", "1", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    persons = pd.read_csv(out / "persons.csv", dtype={"home_tract": str})
    trips = pd.read_csv(out / "trips.csv", dtype={"origin": str, "destination": str})
    return out, done.stdout, persons, trips


def _minutes(clock: pd.Series) -> np.ndarray:
    parts = clock.str.split(":", expand=True).astype(int)
    return (parts[0] * 60 + parts[1]).to_numpy()


def test_the_home_to_work_matrix_is_the_lodes_matrix(run):
    _, stdout, _, trips = run
    od = pd.read_csv(EXAMPLE / "data" / "od_home_to_work.csv", dtype={"origin": str, "destination": str})
    tracts = pd.read_csv(EXAMPLE / "data" / "tracts.csv", dtype={"home_tract": str})["home_tract"].tolist()
    index = {t: i for i, t in enumerate(tracts)}
    want = np.zeros((len(tracts), len(tracts)))
    want[od["origin"].map(index), od["destination"].map(index)] = od["workers"]
    work = trips[trips["trip_num"] == 1]
    got = np.zeros_like(want)
    np.add.at(got, (work["origin"].map(index).to_numpy(), work["destination"].map(index).to_numpy()), 1)
    assert cpc(want, got) >= 0.99
    assert set(work["purpose"]) == {"work"} and len(work) == pytest.approx(394_075, abs=100)
    assert "od_home_to_work CPC" in stdout and "100.00% of the tours chain" in stdout


def test_every_tour_chains_and_belongs_to_a_commuter_aged_16_or_more(run):
    _, _, persons, trips = run
    assert list(trips.columns) == [
        "person_id", "trip_num", "origin", "destination", "depart", "mode", "purpose", "distance_km", "tour_num"
    ]  # fmt: skip
    assert set(trips["tour_num"]) == {1}  # one commute tour a day each
    home = persons.set_index("person_id")["home_tract"]
    one = trips[trips["trip_num"] == 1].set_index("person_id")
    two = trips[trips["trip_num"] == 2].set_index("person_id")
    assert one.index.equals(two.index) and set(trips["trip_num"]) == {1, 2}
    assert (one["origin"] == home.reindex(one.index)).all()
    assert (two["origin"] == one["destination"]).all() and (two["destination"] == one["origin"]).all()
    assert (_minutes(two["depart"]) > _minutes(one["depart"])).all()
    travellers = persons.set_index("person_id").loc[one.index]
    assert (travellers["commuter"] == "yes").all() and travellers["age"].min() >= 16
    assert (persons.loc[persons["commuter"] == "yes", "trips"] == 2).all()
    assert (persons.loc[persons["commuter"] == "no", "trips"] == 0).all()
    assert persons.loc[persons["commuter"] == "no", "commute_km"].isna().all()
    np.testing.assert_allclose(travellers["commute_km"].to_numpy(), one["distance_km"].to_numpy())
    assert (trips["distance_km"] > 0).all()  # intrazonal trips get the within-tract distance, not 0 km


def test_departures_and_modes_fit_their_published_tables(run):
    out, _, _, trips = run
    work = trips[trips["trip_num"] == 1]
    modes = pd.read_csv(EXAMPLE / "data" / "mode.csv").set_index("mode")["workers"]
    got = work["mode"].value_counts(normalize=True).reindex(modes.index)
    np.testing.assert_allclose(got.to_numpy(), (modes / modes.sum()).to_numpy(), atol=0.002)
    departures = pd.read_csv(EXAMPLE / "data" / "departure.csv")
    edges = [0] + [int(b[:2]) * 60 + int(b[3:5]) for b in departures["depart"].str.split("-").str[1]]
    counts = np.histogram(_minutes(work["depart"]), bins=edges)[0]
    np.testing.assert_allclose(counts / counts.sum(), departures["percent"] / departures["percent"].sum(), atol=0.005)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["trips"]["chains"]["broken"] == 0
    assert report["mean_tvd"] < 0.005  # the persons' tables: tract x sex x age, tract x commuter
    assert not (out / "population.csv").exists()


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the shared commuting data is not on this machine")
def test_derive_gives_the_bundled_files(tmp_path):
    spec = importlib.util.spec_from_file_location("travis_derive", EXAMPLE / "derive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.derive(SOURCE, tmp_path)
    for path in sorted((EXAMPLE / "data").iterdir()):
        assert (tmp_path / "data" / path.name).read_bytes() == path.read_bytes(), path.name
