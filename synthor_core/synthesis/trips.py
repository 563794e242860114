"""Trips of a synthetic population (DESIGN §8, §13): every traveller's tour, fitted to the trip tables.

The outbound trips are distributed over trip cells (origin, destination, departure bin, mode, first-stop purpose) by
the maximum-entropy prior (:mod:`synthor_core.priors.trips`): IPF over the travellers of each origin zone and every
trip table, starting from a distance decay when no OD table is given. They are integerized per origin (the zone's
travellers exactly; each OD cell, or OD cell and departure bin when a table gives the OD per bin, within one trip of
its fitted value), spread over the other variables within each such group by systematic sampling, and handed to
the travellers of their origin at random. Each tour is then chained by construction: the first trip leaves home,
each next one leaves where the last arrived after the stay, the last returns home, departure times increase.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..metrics import cpc, srmse, tvd
from ..priors.trips import CellTarget, Deterrence, deterrence, fit_cells, fit_gravity
from ..targets.model import Project
from ..targets.trips import TripProject, TripSample, TripTable, clock

SPATIAL = frozenset({"origin", "destination", "distance"})  # trip variables of the place (the OD pair)
TEMPORAL = frozenset({"depart", "mode", "purpose"})  # trip variables of the time, the means and the activity
DISTANCE_BANDS_KM = (0.0, 2.0, 5.0, 10.0, 20.0, 40.0, np.inf)  # bands of mode by distance (charts, event modes)
TRIP_COLUMNS = (
    "person_id",
    "trip_num",
    "origin",
    "destination",
    "depart",
    "mode",
    "purpose",
    "distance_km",
    "tour_num",
)


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
    """The trip cells: OD pairs x departure bins x modes x first-stop purposes, flattened in that order."""

    def __init__(self, trips: TripProject, origins_with_travellers: npt.NDArray[np.bool_]):
        n = len(trips.zones)
        allowed = np.ones((n, n), dtype=bool)
        for table in trips.tables:  # an OD table (per departure bin, mode, ...) leaves out the pairs it gives no trip
            if {"origin", "destination"} <= set(table.variables):
                i, j = table.variables.index("origin"), table.variables.index("destination")
                others = tuple(k for k in range(table.counts.ndim) if k not in (i, j))
                matrix = table.counts.sum(axis=others) if others else table.counts
                allowed &= (matrix if i < j else matrix.T) > 0
        allowed &= origins_with_travellers[:, None]
        self.pair_o, self.pair_d = np.nonzero(allowed)
        self.n_pairs = self.pair_o.size
        self.n_bins = trips.depart_edges.size - 1
        self.n_modes = len(trips.modes)
        self.n_purposes = len(trips.first_purposes)
        self.per_pair = self.n_bins * self.n_modes * self.n_purposes
        size = self.n_pairs * self.per_pair
        pair = np.repeat(np.arange(self.n_pairs), self.per_pair)
        self.o = self.pair_o[pair]
        self.d = self.pair_d[pair]
        inner = np.tile(np.arange(self.per_pair), self.n_pairs)
        self.bin = inner // (self.n_modes * self.n_purposes)
        self.mode = (inner // self.n_purposes) % self.n_modes
        self.purpose = inner % self.n_purposes
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
        if variable == "purpose":
            return self.purpose
        return table.distance_band(self.km, self.o, self.d)

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
    where = [frozenset(t.variables) for t in trips.tables]
    if not any("origin" in t.variables for t in trips.tables):  # else the tables say how origins differ; the
        # travellers of each origin are met exactly when the trips are integerized
        targets.insert(0, CellTarget("travellers per origin", cells.o, productions))
        where.insert(0, frozenset({"origin"}))
    has_od = any({"origin", "destination"} <= set(t.variables) for t in trips.tables)
    note: dict = {"cells": int(cells.o.size), "od_pairs": int(cells.n_pairs)}
    prior = np.ones(cells.o.size)
    if not has_od and trips.mean_km is not None:
        form, beta, note["distance_decay"] = _distance_decay(trips, productions)
        prior = deterrence(cells.km, form, beta)
    if trips.sample is not None:
        prior, note["sample"] = _seeded(trips, cells, prior)
    if trips.sample is None and all(v <= SPATIAL or v <= TEMPORAL for v in where):
        # no table ties departure or mode to the place: the maximum-entropy trips are the product of the OD pairs'
        # fit and the departure x mode fit (the same result, fitted on n_pairs + bins x modes cells)
        spatial = [t for t, v in zip(targets, where, strict=True) if v <= SPATIAL]
        temporal = [t for t, v in zip(targets, where, strict=True) if not v <= SPATIAL]
        first = np.arange(cells.n_pairs) * cells.per_pair  # the first cell of each pair
        od, sweeps, error = fit_cells(prior[first], [CellTarget(t.name, t.keys[first], t.counts) for t in spatial])
        inner = np.arange(cells.per_pair)  # the cells of the first pair: every departure bin x mode
        timing, sweeps_t, error_t = fit_cells(
            np.ones(cells.per_pair), [CellTarget(t.name, t.keys[inner], t.counts) for t in temporal]
        )
        weights = np.outer(od, timing / timing.sum()).reshape(-1)
        sweeps, error = max(sweeps, sweeps_t), max(error, error_t)
        note["separable"] = True
    else:
        weights, sweeps, error = fit_cells(prior, targets)
    note.update({"ipf_sweeps": sweeps, "ipf_largest_relative_error": error})
    if error > defaults.TRIP_TABLES_DISAGREE:
        note.setdefault("warnings", []).append(
            f"the trip tables disagree (IPF stopped with a cell {error:.1%} off its count): the trips are a "
            "compromise between them; give tables with the same totals per shared variable"
        )
    return cells, weights, note


def joined_samples(first: TripSample, second: TripSample) -> TripSample:
    """Two diary samples as one (their trips one after the other; ``source`` both names)."""
    cells = {k: np.concatenate([first.cells[k], second.cells[k]]) for k in first.cells}
    return TripSample(cells, np.concatenate([first.weight, second.weight]), f"{first.source} + {second.source}")


def _seeded(trips: TripProject, cells: _Cells, prior: np.ndarray) -> tuple[np.ndarray, dict]:
    """The prior seeded by a travel-diary sample: the share of its trips in each cell, with ``TRIP_SAMPLE_SPREAD``
    of the weight spread as ``prior`` (a diary never covers every cell; IPF then keeps the sample's structure where
    the tables say nothing, as PopulationSim starts from its seed)."""
    sample = trips.sample
    assert sample is not None  # called with a sample
    n = len(trips.zones)
    pair_key = cells.pair_o * n + cells.pair_d  # ascending: np.nonzero walks rows first
    key = sample.cells["origin"] * n + sample.cells["destination"]
    pair = np.searchsorted(pair_key, key)
    known = (pair < pair_key.size) & (pair_key[np.minimum(pair, pair_key.size - 1)] == key)
    cell = (
        pair * cells.per_pair
        + sample.cells["bin"] * (cells.n_modes * cells.n_purposes)
        + sample.cells["mode"] * cells.n_purposes
        + sample.cells["purpose"]
    )
    counts = np.bincount(cell[known], weights=sample.weight[known], minlength=cells.o.size)
    note = {
        "file": sample.source,
        "trips": int(sample.weight.size),
        "in_cells": int(known.sum()),
        "spread": defaults.TRIP_SAMPLE_SPREAD,
    }
    if counts.sum() <= 0:
        return prior, note
    seeded = (
        1 - defaults.TRIP_SAMPLE_SPREAD
    ) * counts / counts.sum() + defaults.TRIP_SAMPLE_SPREAD * prior / prior.sum()
    return seeded, note


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
            zone = np.arange(len(trips.zones))
            band = lengths.distance_band(trips.distance, zone[:, None], zone[None, :]).reshape(-1)
            inside = band >= 0
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


def synthesize_trips(
    project: Project, population: pd.DataFrame, seed: int | None, sample: TripSample | None = None
) -> TripResult:
    """The trips of every traveller of a person population.

    Parameters
    ----------
    project : Project, with ``trips`` and ``zone_level``
    population : DataFrame, coded distinct records with ``count`` (int64), in the order the persons file numbers
        them (record k's persons are numbered after the persons of records 0..k-1, from 1)
    seed : int or None, the run's seed
    sample : TripSample or None
        More diary trips seeding the prior (the days the LLM wrote, :func:`~synthor_core.priors.llm_trips.
        llm_days`), joined to the project's diary when it has one.

    Returns
    -------
    TripResult

    Source: DESIGN §13; the prior and its fit: :mod:`synthor_core.priors.trips`.
    """
    started = time.perf_counter()
    trips = project.trips
    assert trips is not None and project.zone_level is not None  # called for projects with [trips]
    if sample is not None:
        trips = replace(trips, sample=sample if trips.sample is None else joined_samples(trips.sample, sample))
    rng = np.random.default_rng(None if seed is None else [seed, 13])
    counts = population["count"].to_numpy(dtype=np.int64)
    meets = np.asarray(trips.who.violates(population), dtype=bool) & (counts > 0)
    zone = population[project.zone_level].to_numpy(dtype=np.int64)
    person, home = _persons(counts, zone, meets)
    tours = kind = None
    if trips.frequency is not None:  # its own generator: the trips of projects without it keep their bytes
        frequency_rng = np.random.default_rng(None if seed is None else [seed, 15])
        kind = np.repeat(trips.frequency.types(population), counts)[np.repeat(meets, counts)]  # each person's type
        tours = _tour_counts(trips.frequency, kind, home, frequency_rng)
    productions = np.bincount(home, weights=None if tours is None else tours, minlength=len(trips.zones)).astype(
        np.float64
    )
    if productions.sum() <= 0:  # no one travels: no trips, said in the report
        empty = pd.DataFrame(
            {c: pd.Series(dtype=np.int64 if c.endswith(("_id", "_num")) else object) for c in TRIP_COLUMNS}
        )
        why = (
            f"no person meets the trips' condition ({trips.who.condition})"
            if not meets.any()
            else "every person who travels makes 0 tours ([trips.frequency])"
        )
        note = {"warnings": [f"{why}: no trips"]}
        report = {"tour": list(trips.tour), "travellers": 0, "trips": 0, "prior": note, "tables": {}, "seconds": 0.0}
        report["chains"] = {"persons": 0, "broken": 0, "consistent_share": 1.0}
        return TripResult(empty, per_person_columns(empty, trips.commute_purpose), report)
    cells, weights, note = fit_trip_cells(trips, productions)

    # 1. integer trips per OD pair (per OD pair and departure bin when a table gives the OD per departure bin): each
    # origin's travellers exactly, each group within one trip of its fitted value
    timed = any({"origin", "destination", "depart"} <= set(t.variables) for t in trips.tables)
    size = cells.n_modes * cells.n_purposes if timed else cells.per_pair  # cells of one group (contiguous)
    groups = cells.o.size // size
    group_weight = weights.reshape(groups, size).sum(axis=1)
    group_trips = _round_rows(group_weight, cells.o[::size], productions.round(), rng)
    # 2. within each group, the other variables by systematic sampling of its conditional distribution
    conditional = weights.reshape(groups, size) / np.where(group_weight > 0, group_weight, 1.0)[:, None]
    group_of_trip = np.repeat(np.arange(groups), group_trips)
    start = np.cumsum(group_trips) - group_trips
    k = np.arange(group_of_trip.size) - start[group_of_trip]
    u = rng.random(groups)
    position = group_of_trip + (k + u[group_of_trip]) / group_trips[group_of_trip]
    ladder = (np.cumsum(conditional, axis=1) + np.arange(groups)[:, None]).reshape(-1)
    cell = np.searchsorted(ladder, position, side="right")
    cell = np.clip(cell, group_of_trip * size, group_of_trip * size + size - 1)
    # 3. the travellers of each origin take its trips in random order (with several tours, spread over the day)
    if tours is None:
        by_home = np.lexsort((rng.random(person.size), home))
        by_origin = np.lexsort((rng.random(cell.size), cells.o[cell]))
        person_of_trip = np.empty(cell.size, dtype=np.int64)
        person_of_trip[by_origin] = person[by_home]
        frame = _tours(trips, cells, cell, person_of_trip, rng).assign(tour_num=np.int64(1))
    else:
        frame, delays = _days(trips, cells, cell, person, home, tours, rng)
        assert trips.frequency is not None and kind is not None  # tours are drawn from it
        frequency = frequency_fit(trips.frequency, kind, person, frame, delays)
        travels = tours > 0
        person, home = person[travels], home[travels]
    homes = dict(zip(person, home, strict=True))
    events = {}
    for event in trips.events:
        frame, events[event.name] = _add_event(trips, event, frame, population, project.zone_level, homes, note, rng)
    report = {
        "tour": list(trips.tour),
        "commute_purpose": trips.commute_purpose,
        "travellers": int(person.size),
        "tours": int(productions.sum()),
        "trips": len(frame),
        "prior": note,
        "tables": trip_fit(trips, frame),
        "chains": chain_check(frame, homes, trips),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if events:
        report["events"] = events
    if tours is not None:
        report["frequency"] = frequency
    return TripResult(frame, per_person_columns(frame, trips.commute_purpose), report)


def _tour_counts(frequency, kind: np.ndarray, home: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tours a day of each person who travels (``kind``: each one's type, ``home``: zone, in :func:`_persons`
    order), int64: each type's persons given 0, 1, ... tours in its shares, rounded by largest remainders (each count
    within one person of its share, :func:`_round_rows`). The counts are interleaved evenly (the i-th of the n persons
    making k tours at ``(i + u) / n``) and dealt to the type's persons ordered by home zone, so each zone's persons of
    a type get the shares within about one person too."""
    n_types, width = frequency.shares.shape
    per_type = np.bincount(kind, minlength=n_types).astype(np.float64)
    type_of_entry = np.repeat(np.arange(n_types), width)
    whole = _round_rows(frequency.shares.reshape(-1), type_of_entry, per_type, rng).reshape(n_types, width)
    tours = np.empty(kind.size, dtype=np.int64)
    for t in np.unique(kind):
        mine = np.flatnonzero(kind == t)
        n = whole[t]
        value = np.repeat(np.arange(width), n)
        place = (np.arange(value.size) - np.repeat(np.cumsum(n) - n, n) + rng.random(width)[value]) / n[value]
        dealt = value[np.argsort(place, kind="stable")]
        tours[mine[np.lexsort((rng.random(mine.size), home[mine]))]] = dealt
    return tours


def _days(trips: TripProject, cells: _Cells, cell, person, home, tours, rng) -> tuple[pd.DataFrame, np.ndarray]:
    """The day of each person making ``tours`` tours (0 or more): the origin's outbound trips ordered by departure
    bin are handed to its persons' tours ordered by a point of the day (a person with k tours takes points
    ``(j + u) / k``, j = 0..k-1, u one random number: tours spread over the day); each tour is built as
    :func:`_tours` builds one, then a person's tours follow each other, a tour leaving before the last one is back
    delayed until it is (chains hold; the departure tables may then be off by those trips). Returns (trips with
    ``tour_num``, the minutes each tour was delayed, one per outbound trip)."""
    slot_person, slot_home = np.repeat(person, tours), np.repeat(home, tours)
    j = np.arange(slot_person.size) - np.repeat(np.cumsum(tours) - tours, tours)
    point = (j + np.repeat(rng.random(person.size), tours)) / np.repeat(np.maximum(tours, 1), tours)
    by_home = np.lexsort((point, slot_home))
    by_origin = np.lexsort((rng.random(cell.size), cells.bin[cell], cells.o[cell]))
    person_of_trip = np.empty(cell.size, dtype=np.int64)
    person_of_trip[by_origin] = slot_person[by_home]
    legs = _tours(trips, cells, cell, person_of_trip, rng, tour_id=np.arange(cell.size))
    outbound = legs[legs["trip_num"] == 1]
    back = legs.groupby("tour_id", sort=True)["arrive_minutes"].max()
    tour = outbound[["tour_id", "person_id", "depart_minutes"]].sort_values(
        ["person_id", "depart_minutes", "tour_id"], kind="stable"
    )
    p, start = tour["person_id"].to_numpy(), tour["depart_minutes"].to_numpy()
    end = back.reindex(tour["tour_id"]).to_numpy()
    rank = np.arange(p.size) - np.searchsorted(p, p, side="left")
    delay = np.zeros(p.size, dtype=np.int64)
    for r in range(1, int(rank.max()) + 1 if rank.size else 1):
        at = np.flatnonzero(rank == r)
        delay[at] = np.maximum(0, end[at - 1] + delay[at - 1] - start[at])
    by_tour = pd.DataFrame({"delay": delay, "tour_num": rank + 1}, index=tour["tour_id"].to_numpy())
    shift = by_tour["delay"].reindex(legs["tour_id"]).to_numpy()
    legs["tour_num"] = by_tour["tour_num"].reindex(legs["tour_id"]).to_numpy(dtype=np.int64)
    moved = shift > 0
    legs["depart_minutes"] += shift
    legs["arrive_minutes"] += shift
    legs.loc[moved, "depart"] = [clock(x) for x in legs.loc[moved, "depart_minutes"]]
    legs["trip_num"] = (legs["tour_num"] - 1) * len(trips.tour) + legs["trip_num"]
    legs = legs.drop(columns="tour_id").sort_values(["person_id", "trip_num"], kind="stable")
    return legs.reset_index(drop=True), delay


def frequency_fit(frequency, kind: np.ndarray, person: np.ndarray, frame: pd.DataFrame, delays) -> dict:
    """The tours a day of the persons who may travel (``person`` ids, ``kind`` their types) in the trips of ``frame``
    against ``[trips.frequency]``: per type, persons making 0, 1, ... tours (target scaled to the type's persons,
    synthetic), TVD over all types; the tours delayed so a person's tours follow each other (count and mean
    minutes)."""
    made = frame.groupby("person_id")["tour_num"].max().reindex(person, fill_value=0)
    n_types, width = frequency.shares.shape
    have = np.zeros((n_types, width))
    np.add.at(have, (kind, np.minimum(made.to_numpy(dtype=np.int64), width - 1)), 1)
    goal = frequency.shares * have.sum(axis=1, keepdims=True)
    late = delays[delays > 0]
    return {
        "source": frequency.source,
        "by": list(frequency.by),
        "tvd": round(tvd(goal.reshape(-1), have.reshape(-1)), 6),
        "persons_by_tours": {"target": goal.round(2).tolist(), "synthetic": have.astype(np.int64).tolist()},
        "tours_delayed": int(late.size),
        "mean_delay_minutes": round(float(late.mean()), 1) if late.size else 0.0,
    }


def _persons(counts: np.ndarray, zone: np.ndarray, meets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person ids, home zones) of the persons of the records where ``meets`` holds, as the persons file numbers
    them (record k's persons after those of records 0..k-1, from 1); int64, in record order."""
    first_id = np.cumsum(counts) - counts
    rows = np.flatnonzero(meets & (counts > 0))
    person = np.repeat(first_id[rows], counts[rows]) + 1
    person += np.arange(person.size) - np.repeat(np.cumsum(counts[rows]) - counts[rows], counts[rows])
    return person, np.repeat(zone[rows], counts[rows])


def _add_event(trips: TripProject, event, frame, population, zone_level, homes: dict, note: dict, rng):
    """The day's trips with an event's tours added (DESIGN §13, what-if as a target edit): ``event.persons`` persons
    who meet its ``who`` and are at home when it starts go there departing in its window, stay, and return home.

    They are drawn without replacement with weights ``exp(-d / L)``, d the distance from their home to the venue
    and L the mean distance of the base day's first trips (a gravity model with the base day's decay); modes as the
    base day's first trips of the same distance band. Returns (trips, the event's report: persons, the trips
    arriving in the venue's zone per hour of departure in the base day and with the event, the origins sending
    most)."""
    counts = population["count"].to_numpy(dtype=np.int64)
    zone = population[zone_level].to_numpy(dtype=np.int64)
    meets = np.ones(len(population), dtype=bool) if event.who is None else np.asarray(event.who.violates(population))
    person, home = _persons(counts, zone, meets)
    # at home at the event's start: no trip yet, or back home before it (arrival of the last trip of the day)
    last = frame.groupby("person_id")["arrive_minutes"].max()
    back = last.reindex(person).to_numpy()
    free = np.isnan(back) | (back <= event.start)
    person, home = person[free], home[free]
    first = outbound_trips(frame, trips)
    reach = float(first["distance_km"].mean()) if len(first) else 10.0
    weight = np.exp(-trips.distance[home, event.zone] / reach)
    goers = min(event.persons, int(person.size))
    # a weighted sample without replacement (Efraimidis & Spirakis 2006): the largest log(u) / w
    keys = np.log(rng.random(person.size)) / np.maximum(weight, 1e-300)
    chosen = np.sort(np.argpartition(-keys, goers - 1)[:goers]) if goers else np.zeros(0, dtype=np.int64)
    chosen_person, origin = person[chosen], home[chosen]
    km = trips.distance[origin, event.zone]
    bands = np.asarray(DISTANCE_BANDS_KM)
    band_of_first = np.searchsorted(bands, first["distance_km"].to_numpy(), side="right") - 1
    band_of_goer = np.searchsorted(bands, km, side="right") - 1
    mode_index = {m: i for i, m in enumerate(trips.modes)}
    first_modes = first["mode"].map(mode_index).to_numpy(dtype=np.int64)
    mode = np.zeros(goers, dtype=np.int64)
    for b in np.unique(band_of_goer):
        shares = np.bincount(first_modes[band_of_first == b], minlength=len(trips.modes)).astype(np.float64)
        if shares.sum() == 0:
            shares = np.bincount(first_modes, minlength=len(trips.modes)).astype(np.float64) + 1e-12
        where = np.flatnonzero(band_of_goer == b)
        mode[where] = rng.choice(len(trips.modes), size=where.size, p=shares / shares.sum())
    depart = event.start + np.floor(rng.random(goers) * (event.end - event.start)).astype(np.int64)
    so_far = frame.groupby("person_id")[["trip_num", "tour_num"]].max().reindex(chosen_person).fillna(0)
    done = so_far["trip_num"].to_numpy(dtype=np.int64)
    tour_num = so_far["tour_num"].to_numpy(dtype=np.int64) + 1  # the event is a tour of its own
    at_venue = np.full(goers, event.zone)
    there = _leg(trips, chosen_person, done + 1, origin, at_venue, depart, mode, event.name, km)
    leave_venue = there["arrive_minutes"].to_numpy() + event.stay_minutes
    back = _leg(trips, chosen_person, done + 2, at_venue, origin, leave_venue, mode, "home", km)
    legs = [there.assign(tour_num=tour_num), back.assign(tour_num=tour_num)]
    for p, z in zip(chosen_person, origin, strict=True):
        homes.setdefault(int(p), int(z))
    venue = trips.zones[event.zone]
    hours = np.arange(24)

    def to_venue(f: pd.DataFrame) -> list[int]:
        arriving = f[f["destination"] == venue]
        return np.bincount((arriving["depart_minutes"].to_numpy() // 60) % 24, minlength=24).tolist()

    scenario = pd.concat([frame, *legs], ignore_index=True).sort_values(["person_id", "trip_num"], kind="stable")
    origins = there["origin"].value_counts().head(10)
    report = {
        "zone": venue,
        "depart": f"{clock(event.start)}-{clock(event.end)}",
        "persons": goers,
        "asked": event.persons,
        "persons_available": int(person.size),
        "trips_to_zone_by_hour": {"hour": hours.tolist(), "base": to_venue(frame), "scenario": to_venue(scenario)},
        "top_origins": {str(k): int(v) for k, v in origins.items()},
    }
    if goers < event.persons:
        note.setdefault("warnings", []).append(
            f"event {event.name}: {event.persons:,} persons asked, {goers:,} were at home and met its condition"
        )
    return scenario.reset_index(drop=True), report


def _tours(trips: TripProject, cells: _Cells, cell, person, rng, tour_id=None) -> pd.DataFrame:
    """Every traveller's tour from its outbound trip's cell: out to the first stop, on to the next, back home
    (``trip_num`` 1 to the tour's length; with ``tour_id``, one per cell, a ``tour_id`` column naming each leg's
    tour)."""
    n = cell.size
    o, d, b, m = cells.o[cell], cells.d[cell], cells.bin[cell], cells.mode[cell]
    first_purpose = np.asarray(trips.first_purposes, dtype=object)[cells.purpose[cell]]
    edges = trips.depart_edges
    depart = edges[b] + np.floor(rng.random(n) * (edges[b + 1] - edges[b])).astype(np.int64)
    stops = len(trips.tour)
    frames = []
    here, there = o, d
    for k in range(stops):
        if k == stops - 1:
            there = o  # the last trip returns home
        km = trips.distance[here, there]
        purpose = first_purpose if k == 0 else trips.tour[k]
        frames.append(_leg(trips, person, np.full(n, k + 1, dtype=np.int64), here, there, depart, m, purpose, km))
        stay = trips.stay_minutes
        if k == 0 and trips.stay_by_purpose:
            stay = np.array([trips.stay_by_purpose.get(p, trips.stay_minutes) for p in trips.first_purposes])[
                cells.purpose[cell]
            ]
        depart = frames[-1]["arrive_minutes"].to_numpy() + stay
        here, there = there, o
    if tour_id is not None:
        frames = [f.assign(tour_id=tour_id) for f in frames]
    frame = pd.concat(frames, ignore_index=True).sort_values(["person_id", "trip_num"], kind="stable")
    return frame.reset_index(drop=True)


def _leg(trips: TripProject, person, trip_num, origin, destination, depart, mode, purpose, km) -> pd.DataFrame:
    """One trip of each person: ``TRIP_COLUMNS`` (``depart`` as ``HH:MM``) and its departure and arrival in minutes
    after midnight (``depart_minutes``, ``arrive_minutes``); zones and modes given as indices, the purpose as one
    label or one per trip."""
    zones = np.asarray(trips.zones, dtype=object)
    return pd.DataFrame(
        {
            "person_id": person,
            "trip_num": trip_num,
            "origin": zones[origin],
            "destination": zones[destination],
            "depart": [clock(x) for x in depart],
            "mode": np.asarray(trips.modes, dtype=object)[mode],
            "purpose": purpose,
            "distance_km": np.round(km, 3),
            "depart_minutes": depart,
            "arrive_minutes": depart + _travel_minutes(km, trips.speed_kmh[mode]),
        }
    )


def _travel_minutes(km: np.ndarray, speed_kmh) -> np.ndarray:
    """Door-to-door minutes of trips of ``km`` at ``speed_kmh`` (at least 1), int64."""
    return np.maximum(1, np.ceil(km / speed_kmh * 60)).astype(np.int64)


def per_person_columns(trips: pd.DataFrame, commute: str) -> pd.DataFrame:
    """What the persons file adds for each person with trips, computed from them: ``person_id``, ``trips`` (int64,
    the trips of the day) and ``commute_km`` (float64, the distance of the person's first trip of purpose
    ``commute``, the tour's first stop; NaN for a person who makes no such trip), in person order."""
    ordered = trips.sort_values(["person_id", "trip_num"], kind="stable")
    grouped = ordered.groupby("person_id", sort=True)
    commutes = ordered[ordered["purpose"] == commute].groupby("person_id", sort=True)["distance_km"].first()
    ids = grouped.size().index
    return pd.DataFrame(
        {
            "person_id": ids.to_numpy(dtype=np.int64),
            "trips": grouped.size().to_numpy(dtype=np.int64),
            "commute_km": commutes.reindex(ids).to_numpy(dtype=np.float64),
        }
    )


def table_counts(trips: TripProject, frame: pd.DataFrame, table: TripTable) -> npt.NDArray[np.float64]:
    """The synthetic counts of a trip table: the tours' first trips (:func:`outbound_trips`) of ``frame`` (a trips
    frame or ``trips.csv`` read back, text columns) over the table's cells; float64, the table's shape. Trips outside
    every cell (a distance beyond the last band) are not counted."""
    return _cell_counts(trips, outbound_trips(frame, trips), table)


def _cell_counts(trips: TripProject, first: pd.DataFrame, table: TripTable) -> npt.NDArray[np.float64]:
    """:func:`table_counts` of outbound trips already picked (``first``)."""
    axes = []
    for variable, labels in zip(table.variables, table.labels, strict=True):
        if variable in ("origin", "destination", "mode", "purpose"):
            index = {label: i for i, label in enumerate(labels)}
            axes.append(first[variable].astype(str).map(index).fillna(-1).to_numpy(dtype=np.int64))
        elif variable == "depart":
            minutes = departure_minutes(first)
            axes.append(np.searchsorted(trips.depart_edges, minutes, side="right").astype(np.int64) - 1)
        else:
            km = first["distance_km"].to_numpy(dtype=np.float64)
            axes.append(table.distance_band(km, first["origin"].to_numpy(), first["destination"].to_numpy()))
    inside = np.ones(len(first), dtype=bool)
    for a, n in zip(axes, table.counts.shape, strict=True):
        inside &= (a >= 0) & (a < n)
    flat = np.ravel_multi_index(tuple(a[inside] for a in axes), table.counts.shape)
    return np.bincount(flat, minlength=table.counts.size).astype(np.float64).reshape(table.counts.shape)


def outbound_trips(frame: pd.DataFrame, trips: TripProject) -> pd.DataFrame:
    """The tours' first trips of a day, what the trip tables count: the first trip of each tour (``tour_num``) whose
    purpose is a first stop's, so an event's tour (its trip named after the event) is not counted; ``trip_num`` 1
    for trips without ``tour_num`` (a run stored before tours were numbered)."""
    if "tour_num" not in frame.columns:
        return frame[frame["trip_num"] == 1]
    tour = frame["tour_num"].to_numpy()
    if (tour == 1).all():  # one tour a person (no event): its first trip
        first = frame["trip_num"].to_numpy() == 1
    else:
        first = frame.groupby(["person_id", "tour_num"], sort=False)["trip_num"].transform("min") == frame["trip_num"]
        first = first.to_numpy()
    return frame[first & frame["purpose"].isin(trips.first_purposes).to_numpy()]


def departure_minutes(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Each trip's departure in minutes after midnight: the ``depart_minutes`` column of a synthesized frame, else
    ``depart`` (``HH:MM``, a file read back) parsed."""
    if "depart_minutes" in frame.columns:
        return frame["depart_minutes"].to_numpy(dtype=np.int64)
    parts = frame["depart"].astype(str).str.split(":", n=1, expand=True)
    return (parts[0].astype(np.int64) * 60 + parts[1].astype(np.int64)).to_numpy(dtype=np.int64)


def trip_fit(trips: TripProject, frame: pd.DataFrame) -> dict:
    """The fit of each trip table by the tours' first trips of ``frame``: TVD, SRMSE, and CPC for an OD table."""
    fits = {}
    first = outbound_trips(frame, trips)  # once for every table
    for table in trips.tables:
        have = _cell_counts(trips, first, table).reshape(-1)
        goal = table.counts.reshape(-1)
        entry = {
            "variables": list(table.variables),
            "source": table.source,
            "tvd": round(tvd(goal, have), 6),
            "srmse": round(srmse(goal, have), 6),
        }
        if {"origin", "destination"} <= set(table.variables):
            entry["cpc"] = round(cpc(goal, have), 6)
        fits[table.name] = entry
    return fits


def chain_check(frame: pd.DataFrame, home: dict, trips: TripProject) -> dict:
    """Persons whose day breaks a chain: a first trip not leaving home, a trip not leaving where the last one arrived,
    a departure before the last arrival, a last trip not ending home. Checked on the trips as written (not on how
    they were built): ``{"persons", "broken", "consistent_share"}``."""
    f = frame.sort_values(["person_id", "trip_num"], kind="stable")
    person = f["person_id"].to_numpy()
    same = np.r_[False, person[1:] == person[:-1]]
    first = ~same
    last = np.r_[person[1:] != person[:-1], True]
    origin, destination = f["origin"].to_numpy(), f["destination"].to_numpy()
    minutes = departure_minutes(f)
    arrive = f["arrive_minutes"].to_numpy() if "arrive_minutes" in f.columns else minutes + 1
    zones = np.asarray(trips.zones, dtype=object)[np.array([home[p] for p in person], dtype=np.int64)]
    broken = np.zeros(len(f), dtype=bool)
    broken |= first & (origin != zones)
    broken[1:] |= same[1:] & (origin[1:] != destination[:-1])
    broken[1:] |= same[1:] & (minutes[1:] < arrive[:-1])
    broken |= last & (destination != zones)
    bad = np.unique(person[broken]).size
    persons = int(first.sum())
    return {"persons": persons, "broken": bad, "consistent_share": 1.0 - bad / persons if persons else 1.0}
