"""The LLM writes travellers' days (issue 24, DESIGN §13): for a systematic sample of the travellers, the first trip of
their tour (the destination among the zones nearest their home, the departure time, the mode, the first stop's
purpose), from each person's attributes, the distances, the modes' speeds and the project's scenario text.

The days are a synthetic travel diary: they seed the trip prior as a diary sample does
(:func:`synthor_core.synthesis.trips.synthesize_trips`, ``TRIP_SAMPLE_SPREAD`` of the weight left to the maximum
entropy prior), and the trip tables are then met by IPF, so what the model knows shapes what the tables do not say
(mode by distance, purpose by time) and cannot break what they say. A reply is hostile input: every day is checked
against the person it names, that person's destinations, the clock and the modes and purposes of the project;
what fails is counted by reason, never used.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from .. import defaults
from ..targets.model import Project
from ..targets.trips import TripSample, minutes_of_day
from .llm import LLMClient
from .prompts import SYSTEM, data_block

DAYS_TASK = "write_days"
CLOCK_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"  # HH:MM, 00:00 to 23:59


def day_messages(project: Project, persons: list[dict]) -> list[dict]:
    """The chat messages asking for the days of ``persons`` (each ``person``, ``home``, ``attributes``,
    ``destinations`` of ``zone`` and ``km``): every user-supplied label inside the ``<data>`` block as JSON."""
    trips = project.trips
    assert trips is not None  # called for projects with [trips]
    payload = {
        "task": DAYS_TASK,
        "scenario": project.description,
        "tour": list(trips.tour),
        "modes": [{"mode": m, "speed_kmh": float(v)} for m, v in zip(trips.modes, trips.speed_kmh, strict=True)],
        "purposes": list(trips.first_purposes),
        "persons": persons,
    }
    user = (
        "Write the day of each person below: the first trip of their tour, from home to its first stop. For each "
        "person give: person (its number), destination (one of the zones listed for that person, with their distance "
        "from home in km), depart (the departure time, HH:MM between 00:00 and 23:59), mode (one of the modes) and "
        "purpose (one of the purposes). Make each day plausible for that person: their attributes, the distance, the "
        "modes' speeds and the scenario. One day per person.\n" + data_block(payload)
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def days_schema(project: Project, persons: list[dict]) -> dict:
    """The JSON schema of a reply: ``{"days": [{person, destination, depart, mode, purpose}]}``, the persons among
    ``persons``' numbers, the destinations among the zones listed for them, ``depart`` matching ``CLOCK_PATTERN``, at
    most one day per person (a small model under grammar-constrained decoding cannot write anything else)."""
    trips = project.trips
    assert trips is not None  # called for projects with [trips]
    zones = sorted({d["zone"] for p in persons for d in p["destinations"]})
    day = {
        "type": "object",
        "properties": {
            "person": {"type": "integer", "enum": [p["person"] for p in persons]},
            "destination": {"type": "string", "enum": zones},
            # a pattern, so that grammar-constrained decoding (llama.cpp) writes a time, not a bin ("06:00-08:00")
            "depart": {"type": "string", "pattern": CLOCK_PATTERN},
            "mode": {"type": "string", "enum": list(trips.modes)},
            "purpose": {"type": "string", "enum": list(trips.first_purposes)},
        },
        "required": ["person", "destination", "depart", "mode", "purpose"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"days": {"type": "array", "items": day, "maxItems": len(persons)}},
        "required": ["days"],
        "additionalProperties": False,
    }


def _travellers(project: Project, population: pd.DataFrame, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of ``population`` for ``n`` travellers drawn systematically by count (random start)."""
    trips = project.trips
    assert trips is not None  # called for projects with [trips]
    counts = population["count"].to_numpy(dtype=np.float64)
    rows = np.flatnonzero(np.asarray(trips.who.violates(population), dtype=bool) & (counts > 0))
    if not rows.size:
        return rows
    n = min(n, int(counts[rows].sum()))
    cumulative = np.cumsum(counts[rows]) / counts[rows].sum()
    points = (rng.random() + np.arange(n)) / n
    return rows[np.minimum(np.searchsorted(cumulative, points, side="right"), rows.size - 1)]


def _plain(value):
    """A value for JSON: numpy scalars as Python numbers, a missing value as None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else str(value) if not isinstance(value, (int, float)) else value


def llm_days(
    client: LLMClient,
    project: Project,
    population: pd.DataFrame,
    rng: np.random.Generator,
    persons: int = defaults.LLM_TRIP_PERSONS,
    per_call: int = defaults.LLM_TRIP_PERSONS_PER_CALL,
    destinations: int = defaults.LLM_TRIP_DESTINATIONS,
) -> tuple[TripSample | None, dict]:
    """Ask the LLM for the days of ``persons`` travellers, ``per_call`` a call, each choosing among the
    ``destinations`` zones nearest their home.

    Parameters
    ----------
    client : LLMClient
        The run's client (its budget, cache, retries and call log).
    project : Project, with ``trips`` and ``zone_level``
    population : DataFrame, coded distinct records with ``count`` (int64)
    rng : numpy Generator

    Returns
    -------
    (TripSample or None, dict)
        The valid days as a diary sample (``source`` "llm"; None when none is valid) and the report:
        ``persons_asked``, ``days_written``, ``days_valid``, ``rejected`` (reason -> days), ``calls``.

    Raises
    ------
    TokenBudgetExhausted, PriorError
        As :meth:`~synthor_core.priors.llm.LLMClient.call_json` (the budget spent, the endpoint unreachable).
    """
    trips = project.trips
    assert trips is not None and project.zone_level is not None  # called for projects with [trips]
    rows = _travellers(project, population, persons, rng)
    decoded = project.schema.decode(population.iloc[rows].drop(columns=["count"]).reset_index(drop=True))
    home = population[project.zone_level].to_numpy(dtype=np.int64)[rows]
    people = []
    for k in range(rows.size):
        near = np.argsort(trips.distance[home[k]], kind="stable")[:destinations]
        attributes = {c: _plain(decoded[c].iloc[k]) for c in decoded.columns if c != project.zone_level}
        people.append(
            {
                "person": k + 1,
                "home": trips.zones[home[k]],
                "attributes": attributes,
                "destinations": [
                    {"zone": trips.zones[z], "km": round(float(trips.distance[home[k], z]), 1)} for z in near
                ],
            }
        )
    zone_index = {z: i for i, z in enumerate(trips.zones)}
    purposes = trips.first_purposes
    found: list[tuple[int, int, int, int, int]] = []
    rejected: Counter = Counter()
    written = calls = 0
    for start in range(0, len(people), per_call):
        batch = {p["person"]: p for p in people[start : start + per_call]}
        reply = client.call_json(
            DAYS_TASK, day_messages(project, list(batch.values())), days_schema(project, list(batch.values())), "days"
        )
        calls += 1
        if reply is None:
            rejected["call failed"] += len(batch)
            continue
        days = reply.get("days") if isinstance(reply, dict) else None
        done: set[int] = set()
        for day in days if isinstance(days, list) else []:
            written += 1
            reason, cell = _check(day, batch, done, trips, zone_index, purposes)
            if reason:
                rejected[reason] += 1
            else:
                found.append(cell)
        rejected["person without a day"] += len(set(batch) - done)
    report = {
        "persons_asked": len(people),
        "days_written": written,
        "days_valid": len(found),
        "rejected": dict(sorted((k, v) for k, v in rejected.items() if v)),
        "calls": calls,
    }
    if not found:
        return None, report
    columns = np.array(found, dtype=np.int64).T
    cells = dict(zip(("origin", "destination", "bin", "mode", "purpose"), columns, strict=True))
    return TripSample(cells, np.ones(len(found)), "llm"), report


def _check(day, batch: dict, done: set, trips, zone_index: dict, purposes) -> tuple[str, tuple]:
    """Why a day of a reply cannot be used (empty when it can) and its cell (origin, destination, departure bin,
    mode, purpose)."""
    if not isinstance(day, dict):
        return "not a day", ()
    person = day.get("person")
    if not isinstance(person, int) or isinstance(person, bool) or person not in batch:
        return "unknown person", ()
    if person in done:
        return "second day of a person", ()
    allowed = {d["zone"] for d in batch[person]["destinations"]}
    if day.get("destination") not in allowed:
        return "destination not among the person's", ()
    minutes = minutes_of_day(day.get("depart"))
    edges = trips.depart_edges
    if minutes is None or not edges[0] <= minutes < edges[-1]:
        return "departure not a time of the day", ()
    if day.get("mode") not in trips.modes:
        return "unknown mode", ()
    if day.get("purpose") not in purposes:
        return "unknown purpose", ()
    done.add(person)
    return "", (
        zone_index[batch[person]["home"]],
        zone_index[day["destination"]],
        int(np.searchsorted(edges, minutes, side="right") - 1),
        trips.modes.index(day["mode"]),
        purposes.index(day["purpose"]),
    )
