"""Trips of a synthetic population (DESIGN §8, §13): every traveller's tour, fitted to the trip tables.

The outbound trips are distributed over trip cells (origin, destination, departure bin, mode) by the maximum-entropy
prior (:mod:`synthor_core.priors.trips`): IPF over the travellers of each origin zone and every trip table, starting
from a distance decay when no OD table is given. They are integerized per origin (the zone's travellers exactly;
each OD cell within one trip of its fitted value), spread over departure bins and modes within each OD cell by
systematic sampling, and handed to the travellers of their origin at random. Each tour is then chained by
construction: the first trip leaves home, each next one leaves where the last arrived after the stay, the last
returns home, departure times increase.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..metrics import cpc, srmse, tvd
from ..priors.trips import CellTarget, Deterrence, deterrence, fit_cells, fit_gravity
from ..targets.model import Project
from ..targets.trips import TripProject, TripTable, clock

TRIP_COLUMNS = ("person_id", "trip_num", "origin", "destination", "depart", "mode", "purpose", "distance_km")


@dataclass
class TripResult:
    """The trips of a population and how well they fit.

    Attributes
    ----------
    trips : DataFrame, one row per trip, columns ``TRIP_COLUMNS`` (``person_id`` int64 as the persons file numbers
        persons, ``trip_num`` from 1, zone ids, ``depart`` ``HH:MM`` (past 24:00 on the next day), mode, purpose,
        ``distance_km`` float64) plus ``depart_minutes`` (int64), sorted by person then trip
    per_person : DataFrame, one row per traveller: ``person_id``, ``trips`` (int64), ``commute_km`` (float64)
    report : dict, the fit of every trip table (TVD, SRMSE; CPC for an OD table), the chain check, the IPF
    """

    trips: pd.DataFrame
    per_person: pd.DataFrame
    report: dict = field(default_factory=dict)


class _Cells:
    """The trip cells: OD pairs x departure bins x modes, flattened in that order."""

    def __init__(self, trips: TripProject, origins_with_travellers: npt.NDArray[np.bool_]):
        n = len(trips.zones)
        od = next((t for t in trips.tables if set(t.variables) == {"origin", "destination"}), None)
        allowed = np.ones((n, n), dtype=bool)
        if od is not None:
            matrix = od.counts if od.variables == ("origin", "destination") else od.counts.T
            allowed = matrix > 0
        allowed &= origins_with_travellers[:, None]
        self.pair_o, self.pair_d = np.nonzero(allowed)
        self.n_pairs = self.pair_o.size
        self.n_bins = trips.depart_edges.size - 1
        self.n_modes = len(trips.modes)
        self.per_pair = self.n_bins * self.n_modes
        size = self.n_pairs * self.per_pair
        pair = np.repeat(np.arange(self.n_pairs), self.per_pair)
        self.o = self.pair_o[pair]
        self.d = self.pair_d[pair]
        inner = np.tile(np.arange(self.per_pair), self.n_pairs)
        self.bin, self.mode = inner // self.n_modes, inner % self.n_modes
        self.km = trips.distance[self.o, self.d]
        assert self.o.size == size

    def axis(self, variable: str, table: TripTable) -> npt.NDArray[np.int64]:
        if variable == "origin":
            return self.o
        if variable == "destination":
            return self.d
        if variable == "depart":
            return self.bin
        if variable == "mode":
            return self.mode
        assert table.bins is not None  # distance tables carry their bands
        band = np.searchsorted(table.bins, self.km, side="right") - 1
        return np.where((band >= 0) & (band < table.bins.size - 1), band, -1)

    def keys(self, table: TripTable) -> npt.NDArray[np.int64]:
        axes = [self.axis(v, table) for v in table.variables]
        outside = np.zeros(self.o.size, dtype=bool)
        for a in axes:
            outside |= a < 0
        flat = np.ravel_multi_index(tuple(np.where(outside, 0, a) for a in axes), table.counts.shape)
        return np.where(outside, -1, flat).astype(np.int64)


def fit_trip_cells(trips: TripProject, productions: npt.NDArray[np.float64]) -> tuple[_Cells, np.ndarray, dict]:
    """The maximum-entropy outbound trips over the trip cells (float64 weights) and a note of the fit."""
    cells = _Cells(trips, productions > 0)
    targets = [CellTarget(t.name, cells.keys(t), t.counts.reshape(-1)) for t in trips.tables]
    if not any("origin" in t.variables for t in trips.tables):  # else the tables say how origins differ; the
        # travellers of each origin are met exactly when the trips are integerized
        targets.insert(0, CellTarget("travellers per origin", cells.o, productions))
    has_od = any(set(t.variables) == {"origin", "destination"} for t in trips.tables)
    note: dict = {"cells": int(cells.o.size), "od_pairs": int(cells.n_pairs)}
    prior = np.ones(cells.o.size)
    if not has_od and trips.mean_km is not None:
        form, beta, note["distance_decay"] = _distance_decay(trips, productions)
        prior = deterrence(cells.km, form, beta)
    weights, sweeps, error = fit_cells(prior, targets)
    note.update({"ipf_sweeps": sweeps, "ipf_largest_relative_error": error})
    return cells, weights, note


def _distance_decay(trips: TripProject, productions: npt.NDArray[np.float64]) -> tuple[Deterrence, float, dict]:
    """The prior's distance decay when no OD table is given: the gravity model (Wilson 1967) on the productions
    (a table of origins, else the travellers), the attractions (a table of destinations, else the productions) and
    the distances, its parameter fitted to ``mean_km``. Its form is ``exp(-beta d)`` (entropy maximized under a mean
    distance) or ``d^-beta`` (under a mean log distance): with a trip-length distribution among the tables, the form
    whose gravity model comes closer to it (TVD), else the exponential."""
    assert trips.mean_km is not None  # called with a mean trip length
    produced = next((t.counts for t in trips.tables if t.variables == ("origin",)), productions)
    attracted = next((t.counts for t in trips.tables if t.variables == ("destination",)), produced)
    lengths = next((t for t in trips.tables if t.variables == ("distance",)), None)
    forms: tuple[Deterrence, ...] = ("exponential", "power") if lengths is not None else ("exponential",)
    fitted = {}
    for form in forms:
        gravity = fit_gravity(produced, attracted, trips.distance, trips.mean_km, form)
        gap = 0.0
        if lengths is not None:
            assert lengths.bins is not None  # a distance table carries its bands
            band = np.searchsorted(lengths.bins, trips.distance.reshape(-1), side="right") - 1
            inside = (band >= 0) & (band < lengths.counts.size)
            have = np.bincount(band[inside], weights=gravity.trips.reshape(-1)[inside], minlength=lengths.counts.size)
            gap = tvd(lengths.counts, have)
        fitted[form] = (gap, gravity.beta)
    form = min(fitted, key=lambda f: fitted[f][0])
    note = {
        "form": form,
        "beta": round(fitted[form][1], 6),
        "chosen_by": "the trip-length distribution (TVD of each form's gravity model: "
        + ", ".join(f"{f} {g:.4f}" for f, (g, _) in fitted.items())
        + ")"
        if lengths is not None
        else "default (no trip-length distribution)",
    }
    return form, fitted[form][1], note


def _round_rows(values: np.ndarray, rows: np.ndarray, totals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integers per entry, ``values`` rounded so that each row (``rows``: the row of each entry) sums to its total
    (largest remainders; ties broken at random)."""
    row_sum = np.bincount(rows, weights=values, minlength=totals.size)
    scale = np.divide(totals, row_sum, out=np.zeros_like(totals), where=row_sum > 0)
    quota = values * scale[rows]
    base = np.floor(quota)
    short = (totals - np.bincount(rows, weights=base, minlength=totals.size)).round().astype(np.int64)
    remainder = quota - base
    order = np.lexsort((rng.random(values.size), -remainder, rows))
    first = np.searchsorted(rows[order], np.arange(totals.size))
    rank = np.arange(values.size) - first[rows[order]]
    extra = np.zeros(values.size, dtype=np.int64)
    extra[order] = (rank < short[rows[order]]).astype(np.int64)
    return base.astype(np.int64) + extra


def synthesize_trips(project: Project, population: pd.DataFrame, seed: int | None) -> TripResult:
    """The trips of every traveller of a person population.

    Parameters
    ----------
    project : Project, with ``trips`` and ``zone_level``
    population : DataFrame, coded distinct records with ``count`` (int64), in the order the persons file numbers
        them (record k's persons are numbered after the persons of records 0..k-1, from 1)
    seed : int or None, the run's seed

    Returns
    -------
    TripResult

    Source: DESIGN §13; the prior and its fit: :mod:`synthor_core.priors.trips`.
    """
    started = time.perf_counter()
    trips = project.trips
    assert trips is not None and project.zone_level is not None  # called for projects with [trips]
    rng = np.random.default_rng(None if seed is None else [seed, 13])
    counts = population["count"].to_numpy(dtype=np.int64)
    meets = np.asarray(trips.who.violates(population), dtype=bool) & (counts > 0)
    zone = population[project.zone_level].to_numpy(dtype=np.int64)
    productions = np.bincount(zone[meets], weights=counts[meets], minlength=len(trips.zones)).astype(np.float64)
    cells, weights, note = fit_trip_cells(trips, productions)

    # 1. integer trips per OD pair: each origin's travellers exactly
    pair_weight = weights.reshape(cells.n_pairs, cells.per_pair).sum(axis=1)
    pair_trips = _round_rows(pair_weight, cells.pair_o, productions.round(), rng)
    # 2. within each pair, departure bin x mode by systematic sampling of its conditional distribution
    conditional = weights.reshape(cells.n_pairs, cells.per_pair)
    conditional = conditional / np.where(pair_weight > 0, pair_weight, 1.0)[:, None]
    pair_of_trip = np.repeat(np.arange(cells.n_pairs), pair_trips)
    start = np.cumsum(pair_trips) - pair_trips
    k = np.arange(pair_of_trip.size) - start[pair_of_trip]
    u = rng.random(cells.n_pairs)
    position = pair_of_trip + (k + u[pair_of_trip]) / pair_trips[pair_of_trip]
    ladder = (np.cumsum(conditional, axis=1) + np.arange(cells.n_pairs)[:, None]).reshape(-1)
    cell = np.searchsorted(ladder, position, side="right")
    cell = np.clip(cell, pair_of_trip * cells.per_pair, pair_of_trip * cells.per_pair + cells.per_pair - 1)
    # 3. the travellers of each origin take its trips in random order
    first_id = np.cumsum(counts) - counts  # persons of record k are first_id[k] + 1 ..
    rows = np.flatnonzero(meets)
    person = np.repeat(first_id[rows], counts[rows]) + 1
    person += np.arange(person.size) - np.repeat(np.cumsum(counts[rows]) - counts[rows], counts[rows])
    home = np.repeat(zone[rows], counts[rows])
    by_home = np.lexsort((rng.random(person.size), home))
    by_origin = np.lexsort((rng.random(cell.size), cells.o[cell]))
    person_of_trip = np.empty(cell.size, dtype=np.int64)
    person_of_trip[by_origin] = person[by_home]
    frame = _tours(trips, cells, cell, person_of_trip, rng)
    report = {
        "travellers": int(productions.sum()),
        "trips": len(frame),
        "prior": note,
        "tables": trip_fit(trips, frame),
        "chains": chain_check(frame, dict(zip(person, home, strict=True)), trips),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return TripResult(frame, per_person_columns(frame), report)


def _tours(trips: TripProject, cells: _Cells, cell, person, rng) -> pd.DataFrame:
    """Every traveller's tour from its outbound trip's cell: out to the first stop, on to the next, back home."""
    n = cell.size
    zones = np.asarray(trips.zones, dtype=object)
    o, d, b, m = cells.o[cell], cells.d[cell], cells.bin[cell], cells.mode[cell]
    edges = trips.depart_edges
    depart = edges[b] + np.floor(rng.random(n) * (edges[b + 1] - edges[b])).astype(np.int64)
    stops = len(trips.tour)
    frames = []
    here, there = o, d
    for k in range(stops):
        last = k == stops - 1
        if last:
            there = o  # the last trip returns home
        km = trips.distance[here, there]
        frames.append(
            pd.DataFrame(
                {
                    "person_id": person,
                    "trip_num": np.full(n, k + 1, dtype=np.int64),
                    "origin": zones[here],
                    "destination": zones[there],
                    "depart_minutes": depart,
                    "mode": np.asarray(trips.modes, dtype=object)[m],
                    "purpose": trips.tour[k],
                    "distance_km": np.round(km, 3),
                }
            )
        )
        minutes = np.maximum(1, np.ceil(km / trips.speed_kmh[m] * 60)).astype(np.int64)
        depart = depart + minutes + trips.stay_minutes
        here, there = there, o
    frame = pd.concat(frames, ignore_index=True).sort_values(["person_id", "trip_num"], kind="stable")
    frame.insert(4, "depart", [clock(x) for x in frame["depart_minutes"].to_numpy()])
    return frame.reset_index(drop=True)


def per_person_columns(trips: pd.DataFrame) -> pd.DataFrame:
    """What the persons file adds for each traveller, computed from the trips: ``person_id``, ``trips`` (int64, the
    trips of the day) and ``commute_km`` (float64, the first trip's distance), in person order."""
    ordered = trips.sort_values(["person_id", "trip_num"], kind="stable")
    grouped = ordered.groupby("person_id", sort=True)
    return pd.DataFrame(
        {
            "person_id": grouped.size().index.to_numpy(dtype=np.int64),
            "trips": grouped.size().to_numpy(dtype=np.int64),
            "commute_km": grouped["distance_km"].first().to_numpy(dtype=np.float64),
        }
    )


def table_counts(trips: TripProject, frame: pd.DataFrame, table: TripTable) -> npt.NDArray[np.float64]:
    """The synthetic counts of a trip table: the tours' first trips of ``frame`` (a trips frame or ``trips.csv``
    read back, text columns) over the table's cells; float64, the table's shape. Trips outside every cell (a
    distance beyond the last band) are not counted."""
    first = frame[frame["trip_num"] == 1]
    axes = []
    for variable, labels in zip(table.variables, table.labels, strict=True):
        if variable in ("origin", "destination", "mode"):
            index = {label: i for i, label in enumerate(labels)}
            axes.append(first[variable].astype(str).map(index).fillna(-1).to_numpy(dtype=np.int64))
        elif variable == "depart":
            minutes = _clock_minutes(first["depart"])
            axes.append(np.searchsorted(trips.depart_edges, minutes, side="right").astype(np.int64) - 1)
        else:
            assert table.bins is not None  # distance tables carry their bands
            band = np.searchsorted(table.bins, first["distance_km"].to_numpy(dtype=np.float64), side="right") - 1
            axes.append(np.where(band < table.bins.size - 1, band, -1).astype(np.int64))
    inside = np.ones(len(first), dtype=bool)
    for a, n in zip(axes, table.counts.shape, strict=True):
        inside &= (a >= 0) & (a < n)
    flat = np.ravel_multi_index(tuple(a[inside] for a in axes), table.counts.shape)
    return np.bincount(flat, minlength=table.counts.size).astype(np.float64).reshape(table.counts.shape)


def _clock_minutes(depart: pd.Series) -> npt.NDArray[np.int64]:
    parts = depart.astype(str).str.split(":", n=1, expand=True)
    return (parts[0].astype(np.int64) * 60 + parts[1].astype(np.int64)).to_numpy(dtype=np.int64)


def trip_fit(trips: TripProject, frame: pd.DataFrame) -> dict:
    """The fit of each trip table by the tours' first trips of ``frame``: TVD, SRMSE, and CPC for an OD table."""
    fits = {}
    for table in trips.tables:
        have = table_counts(trips, frame, table).reshape(-1)
        goal = table.counts.reshape(-1)
        entry = {
            "variables": list(table.variables),
            "source": table.source,
            "tvd": round(tvd(goal, have), 6),
            "srmse": round(srmse(goal, have), 6),
        }
        if set(table.variables) == {"origin", "destination"}:
            entry["cpc"] = round(cpc(goal, have), 6)
        fits[table.name] = entry
    return fits


def chain_check(frame: pd.DataFrame, home: dict, trips: TripProject) -> dict:
    """Tours that break a chain: a first trip not leaving home, a trip not leaving where the last one arrived, a
    departure not after the last one, a last trip not ending home, a tour of another length. Checked on the written
    trips (not on how they were built)."""
    f = frame.sort_values(["person_id", "trip_num"], kind="stable")
    person = f["person_id"].to_numpy()
    same = np.r_[False, person[1:] == person[:-1]]
    first = ~same
    last = np.r_[person[1:] != person[:-1], True]
    origin, destination = f["origin"].to_numpy(), f["destination"].to_numpy()
    minutes = f["depart_minutes"].to_numpy()
    homes = np.array([home[p] for p in person])
    zones = np.asarray(trips.zones, dtype=object)[homes]
    broken = np.zeros(len(f), dtype=bool)
    broken |= first & (origin != zones)
    broken[1:] |= same[1:] & (origin[1:] != destination[:-1])
    broken[1:] |= same[1:] & (minutes[1:] <= minutes[:-1])
    broken |= last & (destination != zones)
    tour_length = np.bincount(np.cumsum(first) - 1)
    bad = set(person[broken]) | set(person[first][tour_length != len(trips.tour)])
    persons = int(first.sum())
    return {"persons": persons, "broken": len(bad), "consistent_share": 1.0 - len(bad) / persons if persons else 1.0}
