"""Trips (issue 24): the gravity model and IPF over trip cells against known answers, the [trips] reader's messages,
and tours chained by construction on a small project synthesized end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.metrics import cpc
from synthor_core.priors.maxent import MaxEntPrior
from synthor_core.priors.trips import CellTarget, deterrence, fit_cells, fit_gravity, furness
from synthor_core.readers.project import load_project
from synthor_core.synthesis.trips import synthesize_trips
from synthor_testing import (
    FREQUENCY,
    TRIP_ZONES,
    trip_persons_known,
    trip_population,
    write_frequency_project,
    write_trip_project,
)


def _plane(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 30, (n, 2))
    cost = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1]) + np.eye(n)
    o = rng.integers(100, 1000, n).astype(float)
    d = rng.integers(100, 1000, n).astype(float)
    return cost, o, d * o.sum() / d.sum()


def test_furness_meets_both_margins_and_leaves_an_unreachable_zone_empty():
    cost, o, d = _plane(25, 1)
    o[3] = 0.0
    t = furness(o, d, deterrence(cost, "exponential", 0.15))
    np.testing.assert_allclose(t.sum(axis=1), o, rtol=1e-6)
    np.testing.assert_allclose(t.sum(axis=0), d * o.sum() / d.sum(), rtol=1e-6)
    assert t[3].sum() == 0.0


@pytest.mark.parametrize(("form", "beta"), [("exponential", 0.12), ("power", 1.7)])
def test_fit_gravity_recovers_the_deterrence_of_a_gravity_matrix(form, beta):
    cost, o, d = _plane(40, 2)
    truth = furness(o, d, deterrence(cost, form, beta))
    mean = float((truth * cost).sum() / truth.sum())
    fitted = fit_gravity(truth.sum(axis=1), truth.sum(axis=0), cost, mean, form)
    assert fitted.beta == pytest.approx(beta, rel=1e-5)
    assert cpc(truth, fitted.trips) > 0.9999
    assert fitted.mean_cost == pytest.approx(mean, rel=1e-6)


def test_fit_cells_meets_separable_targets_in_one_sweep_and_stops_when_targets_disagree():
    pairs, bins = 6, 3
    keys_pair = np.repeat(np.arange(pairs), bins)
    keys_bin = np.tile(np.arange(bins), pairs)
    od = np.array([5.0, 1, 2, 8, 3, 1])
    times = np.array([10.0, 6, 4])
    w, sweeps, error = fit_cells(
        np.ones(pairs * bins), [CellTarget("od", keys_pair, od), CellTarget("t", keys_bin, times)]
    )
    assert sweeps == 1 and error < 1e-9
    np.testing.assert_allclose(w.reshape(pairs, bins), np.outer(od, times / times.sum()))
    # two tables over the same cells that disagree: IPF stops on the stall, far before its sweep limit
    w, sweeps, error = fit_cells(
        np.ones(4),
        [
            CellTarget("a", np.array([0, 0, 1, 1]), np.array([3.0, 1])),
            CellTarget("b", np.array([0, 0, 1, 1]), np.array([1.0, 3])),
        ],
    )
    assert sweeps < 100 and error > 0.5


def test_cpc_known_values():
    assert cpc([2, 0], [1, 1]) == pytest.approx(0.5)
    assert cpc([3, 4], [3, 4]) == 1.0
    assert cpc([1, 0], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="same cells"):
        cpc([1, 2], [1, 2, 3])


def test_reader_builds_distances_from_centroids_and_zone_areas(tmp_path):
    project = load_project(write_trip_project(tmp_path))
    trips = project.trips
    assert trips is not None and trips.zones == TRIP_ZONES
    # A-B: 0.05 deg of latitude and longitude at 30 N, great circle
    assert trips.distance[0, 1] == pytest.approx(7.35, abs=0.05)
    assert trips.distance[0, 1] == trips.distance[1, 0]
    # intrazonal: mean distance of two points of a 2 km² disc, 128 r / (45 pi)
    assert trips.distance[0, 0] == pytest.approx(128 / (45 * np.pi) * np.sqrt(2 / np.pi))
    assert list(trips.depart_edges) == [0, 360, 480, 600, 1440]
    assert [r.name for r in project.rules] == ["young commuter"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"od.csv": "origin,destination,workers\nA,B,5\nA,Z,3\n"},
            "od.csv row 3, column \"destination\": unknown zone 'Z'",
        ),
        (
            {"departure.csv": "depart,percent\n00:00-06:00,10\n6h-8h,50\n"},
            'departure.csv row 3, column "depart": expected a departure interval HH:MM-HH:MM',
        ),
        ({"departure.csv": "depart,percent\n00:00-06:00,10\n07:00-24:00,50\n"}, "must tile the day"),
        ({"mode.csv": "mode,workers\ncar,80\ntram,20\n"}, "mode.csv row 3, column \"mode\": unknown mode 'tram'"),
        (
            {"od.csv": "origin,destination,workers\nA,B,five\n"},
            "od.csv row 2, column \"workers\": expected a number >= 0, got 'five'",
        ),
        ({"od.csv": "origin,destination,workers\nA,B,5\nA,B,3\n"}, "od.csv: a cell is listed twice"),
    ],
)
def test_reader_names_file_row_and_column(tmp_path, change, message):
    with pytest.raises(TargetValidationError) as caught:
        load_project(write_trip_project(tmp_path, **change))
    assert message in str(caught.value)


def test_trips_need_zones_and_a_speed_for_every_mode(tmp_path):
    root = write_trip_project(tmp_path)
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    (root / "synthor.toml").write_text(text.replace("bus = 15.0\n", ""), encoding="utf-8")
    with pytest.raises(TargetValidationError, match=r"expected a speed \(km/h\) for every mode; missing \['bus'\]"):
        load_project(root)
    no_zones = text.replace('[zones]\nfile = "zones.csv"\nlevel = "zone"\n', "")
    (root / "synthor.toml").write_text(no_zones, encoding="utf-8")
    with pytest.raises(TargetValidationError):
        load_project(root)


def test_tours_chain_fit_the_od_table_exactly_and_go_to_the_commuters_only(tmp_path):
    project = load_project(write_trip_project(tmp_path))
    population = trip_population(project)
    result = synthesize_trips(project, population, seed=3)
    trips = result.trips
    assert len(trips) == 2 * 300 and set(trips["trip_num"]) == {1, 2}
    # person ids as the persons file numbers them: record k's persons after those of records 0..k-1
    first = np.cumsum(population["count"]) - population["count"]
    commuters = set()
    for k in np.flatnonzero(population["commuter"].to_numpy() == 0):
        commuters |= set(range(first[k] + 1, first[k] + population["count"][k] + 1))
    assert set(trips["person_id"]) == commuters
    out = trips[trips["trip_num"] == 1]
    back = trips[trips["trip_num"] == 2]
    od = pd.read_csv(tmp_path / "od.csv")
    got = out.groupby(["origin", "destination"]).size()
    want = od.set_index(["origin", "destination"])["workers"]
    assert got.reindex(want.index).fillna(0).astype(int).tolist() == want.tolist()  # the OD equals its table
    assert (back["origin"].to_numpy() == out["destination"].to_numpy()).all()
    assert (back["destination"].to_numpy() == out["origin"].to_numpy()).all()
    assert (back["depart"].map(_minutes).to_numpy() > out["depart"].map(_minutes).to_numpy() + 8 * 60).all()
    assert result.report["chains"] == {"persons": 300, "broken": 0, "consistent_share": 1.0}
    assert result.report["tables"]["od"]["cpc"] == 1.0
    shares = out["mode"].value_counts(normalize=True)
    assert shares["car"] == pytest.approx(0.8, abs=0.02)
    morning = out["depart"].map(_minutes).between(360, 479).mean()
    assert morning == pytest.approx(0.5, abs=0.02)
    assert (result.per_person["commute_km"].to_numpy() == out["distance_km"].to_numpy()).all()


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def test_without_an_od_table_the_trips_follow_productions_attractions_and_the_distance_decay(tmp_path):
    root = write_trip_project(tmp_path, **{"attractions.csv": "destination,workers\nA,70\nB,170\nC,60\n"})
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    text = text.replace(
        'name = "od"\nfile = "od.csv"\nvariables = ["origin", "destination"]',
        'name = "jobs"\nfile = "attractions.csv"\nvariables = ["destination"]',
    )
    text = text.replace("stay_hours = 8.5", "stay_hours = 8.5\nmean_km = 5.0")
    (root / "synthor.toml").write_text(text, encoding="utf-8")
    project = load_project(root)
    result = synthesize_trips(project, trip_population(project), seed=1)
    out = result.trips[result.trips["trip_num"] == 1]
    assert out.groupby("destination").size().to_dict() == {"A": 70, "B": 170, "C": 60}
    assert out.groupby("origin").size().to_dict() == {"A": 150, "B": 100, "C": 50}
    assert out["distance_km"].mean() == pytest.approx(5.0, abs=0.5)
    decay = result.report["prior"]["distance_decay"]
    assert decay["form"] == "exponential" and decay["beta"] > 0 and decay["chosen_by"].startswith("default")


def _within_zone_project(tmp_path, lengths: str):
    root = write_trip_project(
        tmp_path,
        **{"attractions.csv": "destination,workers\nA,70\nB,170\nC,60\n", "lengths.csv": lengths},
    )
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    text = text.replace(
        'name = "od"\nfile = "od.csv"\nvariables = ["origin", "destination"]',
        'name = "jobs"\nfile = "attractions.csv"\nvariables = ["destination"]',
    )
    text += '[[trips.tables]]\nname = "lengths"\nfile = "lengths.csv"\nvariables = ["distance"]\nbins = [0, 100]\n'
    text += 'count_column = "workers"\n'
    (root / "synthor.toml").write_text(text, encoding="utf-8")
    return root


def test_a_trip_length_distribution_may_count_the_trips_within_a_zone_apart_from_its_bands(tmp_path):
    """A survey's intrazonal share: the ``within zone`` row of a distance table counts the trips that stay in their
    zone, the bands the others; both are met, and the fit is reported per row."""
    lengths = 'distance,workers\n"[0, 100)",240\nwithin zone,60\n'
    project = load_project(_within_zone_project(tmp_path, lengths))
    table = next(t for t in project.trips.tables if t.name == "lengths")
    assert table.within_zone and table.labels == (("[0, 100)", "within zone"),)
    result = synthesize_trips(project, trip_population(project), seed=1)
    out = result.trips[result.trips["trip_num"] == 1]
    stay = int((out["origin"] == out["destination"]).sum())
    assert abs(stay - 60) <= 2  # integer trips per origin: each OD pair within one trip of its fitted value
    assert out.groupby("destination").size().to_dict() == {"A": 70, "B": 170, "C": 60}
    assert result.report["tables"]["lengths"]["tvd"] <= 2 / 300
    # without the row as many stay in their zone as the margins alone make them (102 of 300 with seed 1)
    (tmp_path / "plain").mkdir()
    plain = load_project(_within_zone_project(tmp_path / "plain", 'distance,workers\n"[0, 100)",300\n'))
    unconstrained = synthesize_trips(plain, trip_population(plain), seed=1).trips
    first = unconstrained[unconstrained["trip_num"] == 1]
    assert int((first["origin"] == first["destination"]).sum()) > 80


def test_a_distance_row_that_is_no_band_names_the_within_zone_row(tmp_path):
    root = _within_zone_project(tmp_path, 'distance,workers\n"[0, 100)",240\ninside,60\n')
    with pytest.raises(TargetValidationError) as info:
        load_project(root)
    assert (
        "lengths.csv row 3, column \"distance\": expected a distance band among ['[0, 100)'] or 'within zone', got "
        "'inside'" in [str(p) for p in info.value.problems]
    )


def test_the_decay_form_is_the_one_whose_gravity_model_meets_the_trip_length_distribution():
    from synthor_core.expressions import compile_rule
    from synthor_core.schema import CategoricalVariable, Schema
    from synthor_core.synthesis.trips import fit_trip_cells
    from synthor_core.targets.trips import TripProject, TripTable

    cost, o, d = _plane(40, 4)
    bins = np.array([0, 2, 4, 6, 8, 10, 15, 20, 30, 50.0])
    band = np.searchsorted(bins, cost.reshape(-1), side="right") - 1
    zones = tuple(f"z{i}" for i in range(40))
    schema = Schema((CategoricalVariable(name="zone", categories=zones),))
    for form, beta in (("power", 1.6), ("exponential", 0.15)):
        truth = furness(o, d, deterrence(cost, form, beta))
        tables = (
            TripTable("P", ("origin",), truth.sum(axis=1), (zones,)),
            TripTable("A", ("destination",), truth.sum(axis=0), (zones,)),
            TripTable("TLD", ("distance",), np.bincount(band, truth.reshape(-1), bins.size - 1), (("",) * 9,), bins),
        )
        trips = TripProject(
            who=compile_rule("all", 'zone != "z0"', schema),  # unused here
            tour=("work", "home"),
            zones=zones,
            distance=cost,
            modes=("car",),
            speed_kmh=np.array([30.0]),
            depart_edges=np.array([0, 1440]),
            stay_minutes=480,
            tables=tables,
            mean_km=float((truth * cost).sum() / truth.sum()),
        )
        cells, weights, note = fit_trip_cells(trips, truth.sum(axis=1))
        assert note["distance_decay"]["form"] == form
        assert note["distance_decay"]["beta"] == pytest.approx(beta, rel=1e-3)
        od = np.zeros((40, 40))
        np.add.at(od, (cells.o, cells.d), weights)
        assert cpc(truth, od) > 0.999


def test_an_event_adds_its_tours_to_persons_at_home_and_the_report_compares_it_with_the_base_day(tmp_path):
    root = write_trip_project(tmp_path)
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    event = '[[trips.events]]\nname = "concert"\nzone = "C"\ndepart = "19:00-20:00"\ntrips = 120\nwho = "age >= 16"\n'
    (root / "synthor.toml").write_text(text + "\n" + event, encoding="utf-8")
    project = load_project(root)
    result = synthesize_trips(project, trip_population(project), seed=2)
    trips = result.trips
    concert = trips[trips["purpose"] == "concert"]
    assert len(concert) == 120 and (concert["destination"] == "C").all()
    assert concert["depart"].map(_minutes).between(19 * 60, 20 * 60 - 1).all()
    # only persons aged 16 or more (the commuters here) at home by 19:00 go; their day still chains
    goers = set(concert["person_id"])
    work = trips[trips["purpose"] == "work"]
    assert goers <= set(work["person_id"])
    back = trips[
        (trips["purpose"] == "home") & ~trips["person_id"].isin(concert["person_id"]) | (trips["trip_num"] == 2)
    ]
    home_by = back[back["trip_num"] == 2].set_index("person_id")["depart"].map(_minutes)
    assert (home_by.reindex(sorted(goers)) < 19 * 60).all()
    assert set(trips.loc[trips["person_id"].isin(goers), "trip_num"]) == {1, 2, 3, 4}
    assert result.report["chains"]["broken"] == 0
    report = result.report["events"]["concert"]
    assert report["persons"] == 120 and report["zone"] == "C"
    by_hour = report["trips_to_zone_by_hour"]
    assert by_hour["scenario"][19] - by_hour["base"][19] == 120
    living_there = trips[(trips["purpose"] == "concert") & (trips["origin"] == "C")]
    assert sum(by_hour["scenario"]) - sum(by_hour["base"]) == 120 + len(living_there)  # and their trips home
    # the persons file: 4 trips for the goers, the commute is the work trip's distance, not the concert's
    per_person = result.per_person.set_index("person_id")
    assert (per_person.loc[sorted(goers), "trips"] == 4).all()
    np.testing.assert_allclose(
        per_person.loc[sorted(goers), "commute_km"], work.set_index("person_id").loc[sorted(goers), "distance_km"]
    )


def test_an_event_in_an_unknown_zone_is_named(tmp_path):
    root = write_trip_project(tmp_path)
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    event = '\n[[trips.events]]\nname = "concert"\nzone = "Q"\ndepart = "19:00-27:00"\ntrips = 10\n'
    (root / "synthor.toml").write_text(text + event, encoding="utf-8")
    with pytest.raises(TargetValidationError) as caught:
        load_project(root)
    assert "column \"trips.events[1].zone\": unknown zone 'Q'" in str(caught.value)
    assert 'column "trips.events[1].depart": expected a departure interval HH:MM-HH:MM' in str(caught.value)


def test_the_separable_fit_equals_the_fit_over_every_cell(tmp_path):
    from synthor_core.synthesis.trips import fit_trip_cells

    root = write_trip_project(tmp_path, **{"attractions.csv": "destination,workers\nA,70\nB,170\nC,60\n"})
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    text = text.replace(
        'name = "od"\nfile = "od.csv"\nvariables = ["origin", "destination"]',
        'name = "jobs"\nfile = "attractions.csv"\nvariables = ["destination"]',
    )
    (root / "synthor.toml").write_text(text.replace("stay_hours = 8.5", "stay_hours = 8.5\nmean_km = 5.0"), "utf-8")
    project = load_project(root)
    productions = np.array([150.0, 100, 50])
    cells, weights, note = fit_trip_cells(project.trips, productions)
    assert note["separable"] is True
    targets = [CellTarget("travellers", cells.o, productions)]
    targets += [CellTarget(t.name, cells.keys(t), t.counts.reshape(-1)) for t in project.trips.tables]
    decay = note["distance_decay"]
    joint, _, _ = fit_cells(deterrence(cells.km, decay["form"], decay["beta"]), targets, tolerance=1e-12)
    np.testing.assert_allclose(weights, joint, rtol=1e-5)


def test_the_first_stop_s_purpose_follows_a_departure_x_purpose_table_and_its_stay(tmp_path):
    root = write_trip_project(
        tmp_path,
        **{
            "purpose.csv": "depart,purpose,count\n"
            + "".join(
                f"{b},{p},{n}\n"
                for b, counts in (
                    ("00:00-06:00", (30, 0)),
                    ("06:00-08:00", (140, 10)),
                    ("08:00-10:00", (60, 30)),
                    ("10:00-24:00", (0, 30)),
                )
                for p, n in zip(("work", "shopping"), counts, strict=True)
            )
        },
    )
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    text = text.replace('tour = ["work", "home"]', 'tour = ["activity", "home"]\npurposes = ["work", "shopping"]')
    text = text.replace("stay_hours = 8.5", "stay_hours = 8.5\nstay_hours_by_purpose = { shopping = 1.0 }")
    text += '\n[[trips.tables]]\nname = "purpose"\nfile = "purpose.csv"\nvariables = ["depart", "purpose"]\n'
    (root / "synthor.toml").write_text(text, encoding="utf-8")
    project = load_project(root)
    result = synthesize_trips(project, trip_population(project), seed=5)
    out = result.trips[result.trips["trip_num"] == 1]
    back = result.trips[result.trips["trip_num"] == 2].set_index("person_id")
    # purposes spread within each OD cell by systematic sampling: the margin within a few trips of 230 / 70
    assert abs(out["purpose"].value_counts()["shopping"] - 70) <= 9
    assert set(back["purpose"]) == {"home"}
    stay = back["depart"].map(_minutes) - out.set_index("person_id")["depart"].map(_minutes)
    shopping = out.set_index("person_id")["purpose"] == "shopping"
    assert stay[shopping].max() < 3 * 60 and stay[~shopping].min() > 8 * 60  # an hour shopping, 8.5 h at work
    assert result.report["tables"]["purpose"]["tvd"] < 0.02
    assert result.report["chains"]["broken"] == 0
    assert not result.report["prior"].get("warnings")


def test_trip_tables_that_disagree_are_warned_about(tmp_path):
    project = load_project(write_trip_project(tmp_path, **{"mode.csv": "mode,workers\ncar,80\nbus,20\n"}))
    root = tmp_path
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    text += (
        '\n[[trips.tables]]\nname = "jobs"\nfile = "jobs.csv"\nvariables = ["destination"]\ncount_column = "workers"\n'
    )
    (root / "jobs.csv").write_text(
        "destination,workers\nA,10\nB,10\nC,280\n", encoding="utf-8"
    )  # the OD says 70/170/60
    (root / "synthor.toml").write_text(text, encoding="utf-8")
    project = load_project(root)
    result = synthesize_trips(project, trip_population(project), seed=1)
    (warning,) = result.report["prior"]["warnings"]
    assert warning.startswith("the trip tables disagree (IPF stopped with a cell")


def test_a_travel_diary_seeds_what_no_table_says(tmp_path):
    """The tables say nothing of mode by distance; a diary where trips within a zone go by bus and the others by car
    carries that into the synthesized trips (maximum entropy alone would give every OD cell the same mode shares)."""
    rows = ["origin,destination,depart,mode"]
    for o, d in (("A", "A"), ("B", "B"), ("C", "C")):
        rows += [f"{o},{d},07:10,bus"] * 5
    for o, d in (("A", "B"), ("A", "C"), ("B", "A"), ("C", "B")):
        rows += [f"{o},{d},07:40,car"] * 5
    root = write_trip_project(tmp_path, **{"diary.csv": "\n".join(rows) + "\n"})
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    (root / "synthor.toml").write_text(
        text.replace("stay_hours = 8.5", 'stay_hours = 8.5\nsample = "diary.csv"'), "utf-8"
    )
    project = load_project(root)
    result = synthesize_trips(project, trip_population(project), seed=4)
    out = result.trips[result.trips["trip_num"] == 1]
    # the mode table wants 60 bus trips of 300, 130 trips stay in their zone: the buses go there
    bus = out[out["mode"] == "bus"]
    assert (bus["origin"] == bus["destination"]).mean() > 0.7  # without the diary about 130 / 300
    assert result.report["tables"]["mode"]["tvd"] < 0.02 and result.report["tables"]["od"]["cpc"] == 1.0
    assert result.report["prior"]["sample"] == {"file": "diary.csv", "trips": 35, "in_cells": 35, "spread": 0.05}
    # without the diary, the modes do not know the distance
    (root / "synthor.toml").write_text(text, "utf-8")
    plain = synthesize_trips(load_project(root), trip_population(project), seed=4).trips
    plain = plain[plain["trip_num"] == 1]
    bus = plain[plain["mode"] == "bus"]
    assert (bus["origin"] == bus["destination"]).mean() < 0.6  # about 130 / 300


def test_a_diary_row_that_is_no_trip_is_named(tmp_path):
    root = write_trip_project(
        tmp_path, **{"diary.csv": "origin,destination,depart,mode\nA,B,7h10,car\nA,Z,07:00,tram\n"}
    )
    text = (root / "synthor.toml").read_text(encoding="utf-8")
    (root / "synthor.toml").write_text(
        text.replace("stay_hours = 8.5", 'stay_hours = 8.5\nsample = "diary.csv"'), "utf-8"
    )
    with pytest.raises(TargetValidationError) as caught:
        load_project(root)
    message = str(caught.value)
    assert "diary.csv row 2, column \"depart\": expected a time HH:MM of the day, got '7h10'" in message
    assert "diary.csv row 3, column \"destination\": unknown zone 'Z'" in message
    assert "diary.csv row 3, column \"mode\": unknown mode 'tram'" in message


def test_when_no_one_travels_there_are_no_trips_and_the_report_says_why(tmp_path):
    project = load_project(write_trip_project(tmp_path))
    population = trip_population(project).assign(commuter=1)  # nobody commutes
    result = synthesize_trips(project, population, seed=1)
    assert result.trips.empty and list(result.trips.columns)[:3] == ["person_id", "trip_num", "origin"]
    assert result.report["travellers"] == 0 and result.per_person.empty
    assert result.report["prior"]["warnings"] == ['no person meets the trips\' condition (commuter == "yes"): no trips']


def _llm_client(endpoint):
    from synthor_core.priors.llm import LLMClient, LLMSettings

    return LLMClient(LLMSettings(base_url=endpoint.url, model="bn-oracle", max_retries=0, backoff_s=0.01))


def test_days_the_llm_writes_seed_what_no_table_says(tmp_path):
    """The LLM writes 60 travellers' days (issue 24: the LLM prior of trips): the test endpoint's "model" sends those
    who stay in their zone by bus and the others by car; the mode table says nothing of distance, so the buses go to
    the trips within a zone, as with a travel diary; the tables are met all the same."""
    from llm_endpoint.server import TestEndpoint
    from synthor_core.priors.llm_trips import CLOCK_PATTERN, llm_days

    project = load_project(write_trip_project(tmp_path))
    population = trip_population(project)
    with TestEndpoint(seed=3) as endpoint:
        sample, report = llm_days(_llm_client(endpoint), project, population, np.random.default_rng(1))
        asked = [e for e in endpoint.log if e["task"] == "write_days"]
    assert report == {"persons_asked": 60, "days_written": 60, "days_valid": 60, "rejected": {}, "calls": 6}
    assert len(asked) == 6 and asked[0]["response_format"] == "json_schema"
    # the schema holds a small model under constrained decoding to the persons asked and to a time of day
    day = asked[0]["json_schema"]["schema"]["properties"]["days"]["items"]["properties"]
    assert day["person"]["enum"] == list(range(1, 11)) and day["depart"]["pattern"] == CLOCK_PATTERN
    # only travellers were asked (the commuters), from their home zones in proportion: 30 / 20 / 10
    assert np.bincount(sample.cells["origin"], minlength=3).tolist() == [30, 20, 10]
    result = synthesize_trips(project, population, seed=4, sample=sample)
    out = result.trips[result.trips["trip_num"] == 1]
    bus = out[out["mode"] == "bus"]
    assert (bus["origin"] == bus["destination"]).mean() > 0.7  # without the days about 130 / 300 (the diary test)
    assert result.report["tables"]["mode"]["tvd"] < 0.02 and result.report["tables"]["od"]["cpc"] == 1.0
    assert result.report["prior"]["sample"]["file"] == "llm"


def test_days_of_a_careless_model_are_checked_and_counted_and_the_trips_still_fit(tmp_path):
    """A weak model's days (random but schema-valid) are hostile input: each is checked against the person it names,
    that person's destinations and the clock, and what fails is counted by reason."""
    from llm_endpoint.server import TestEndpoint
    from synthor_core.priors.llm_trips import llm_days

    project = load_project(write_trip_project(tmp_path))
    population = trip_population(project)
    with TestEndpoint(seed=3, careless=True) as endpoint:
        sample, report = llm_days(_llm_client(endpoint), project, population, np.random.default_rng(1))
    assert report["persons_asked"] == 60 and report["calls"] == 6 and report["days_written"] > 0
    # the schema holds persons and zones to those asked, but its times are random text: no day is used, the trips
    # come from maxent
    assert report["days_valid"] == 0 and sample is None
    rejected = report["rejected"]
    assert set(rejected) <= {"person without a day", "second day of a person", "departure not a time of the day"}
    assert (
        rejected["departure not a time of the day"] + rejected.get("second day of a person", 0)
        == (report["days_written"])
    )
    result = synthesize_trips(project, population, seed=4, sample=sample)
    assert result.report["tables"]["od"]["cpc"] == 1.0 and result.report["chains"]["consistent_share"] == 1.0


def test_a_run_with_the_llm_prior_asks_it_for_the_travellers_days(tmp_path):
    """Through the runner (the CLI's and the app's runs): the LLM prior writes the persons and the travellers' days;
    the report says what the days gave."""
    from llm_endpoint.server import TestEndpoint
    from synthor_core.priors.llm import LLMPrior, LLMSettings
    from synthor_core.runner import execute
    from synthor_core.synthesis.config import SynthesisConfig

    project = load_project(write_trip_project(tmp_path))
    pool = trip_persons_known(project)  # the persons the "model" knows
    with TestEndpoint(seed=3, pool=pool, groups=[["zone", "commuter"], ["age"]]) as endpoint:
        prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle", max_retries=0))
        prior.fallback = MaxEntPrior(project)
        output = execute(project, prior, SynthesisConfig(seed=2, max_iterations=3), tmp_path / "out")
        days = [e for e in endpoint.log if e["task"] == "write_days"]
    written = output.report["trips"]["llm_days"]
    assert written["persons_asked"] == 60 and written["days_valid"] == 60 and len(days) == 6
    assert output.report["trips"]["prior"]["sample"]["file"] == "llm"
    trips = pd.read_csv(tmp_path / "out" / "trips.csv")
    first = trips[trips["trip_num"] == 1]
    bus = first[first["mode"] == "bus"]
    assert (bus["origin"] == bus["destination"]).mean() > 0.7


def test_tours_a_day_by_person_type_are_met_and_follow_each_other(tmp_path):
    """Issue 24, trips per person by person type: [trips.frequency] gives the persons of each type making 0, 1, 2
    tours; every type's counts are met exactly, each zone's tours are the OD table's rows, a person's tours follow
    each other (the next leaves home after the last is back), and the tables count every tour's first trip."""
    project = load_project(write_frequency_project(tmp_path))
    assert project.trips.frequency is not None and project.trips.frequency.by == ("commuter",)
    population = trip_population(project)
    result = synthesize_trips(project, population, seed=3)
    report, trips = result.report, result.trips
    frequency = report["frequency"]
    # 300 commuters: 210 make 1 tour, 90 make 2; 300 others: 120 none, 150 one, 30 two
    assert frequency["persons_by_tours"]["synthetic"] == [[0, 210, 90], [120, 150, 30]] and frequency["tvd"] == 0
    assert report["tours"] == 600 and report["travellers"] == 480 and len(trips) == 1200
    assert report["tables"]["od"]["cpc"] == 1.0  # each home zone's persons make exactly its row of the OD table
    assert report["chains"]["consistent_share"] == 1.0
    tours = trips.groupby(["person_id", "tour_num"]).agg(
        start=("depart_minutes", "min"), end=("arrive_minutes", "max"), legs=("trip_num", "size")
    )
    assert (tours["legs"] == 2).all()
    later = tours.groupby(level=0).shift(-1)
    follows = later["start"].dropna() >= tours.loc[later["start"].notna(), "end"]
    assert follows.all() and len(follows) == 120  # the 120 persons making two tours
    per_person = result.per_person.set_index("person_id")["trips"]
    assert per_person.value_counts().to_dict() == {2: 360, 4: 120}
    # 8.5 hours at work: second tours that would leave before the first is back are delayed; the departure table is
    # off by at most those tours
    assert frequency["tours_delayed"] > 0 and frequency["mean_delay_minutes"] > 0
    assert report["tables"]["departure"]["tvd"] <= frequency["tours_delayed"] / 600 + 1e-9


def test_without_tours_in_the_table_a_type_is_an_error_naming_it(tmp_path):
    cases = {
        "yes,1,70\nno,1,0\n": "none for commuter = 'no'",
        "yes,1.5,70\nno,1,5\n": "expected a whole number of tours from 0 to 6, got '1.5'",
        "yes,1,70\nyes,1,5\nno,1,5\n": "the same type and tours as row 2",
        "yes,1,70\nmaybe,1,5\n": "unknown commuter 'maybe'",
    }
    for i, (rows, message) in enumerate(cases.items()):
        root = tmp_path / str(i)
        root.mkdir()
        write_frequency_project(root, tours="commuter,tours,persons\n" + rows)
        with pytest.raises(TargetValidationError, match=message.replace("(", r"\(")) as raised:
            load_project(root)
        assert "tours.csv" in str(raised.value)
    root = tmp_path / "numeric"
    root.mkdir()
    write_frequency_project(root, section=FREQUENCY.replace('by = ["commuter"]', 'by = ["age"]'))
    with pytest.raises(TargetValidationError, match="expected categorical person variables; 'age' is numeric"):
        load_project(root)
