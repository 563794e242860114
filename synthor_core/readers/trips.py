"""Read the ``[trips]`` section of a person project (DESIGN §13) into a :class:`~synthor_core.targets.trips.
TripProject`: zone distances, departure bins, modes and the trip tables, every problem naming file, row and column.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import defaults
from ..errors import Problem, RuleError
from ..expressions import compile_rule
from ..schema import Schema
from ..targets.model import PROJECT_FILE
from ..targets.tables import inside_folder, read_table_bytes
from ..targets.trips import (
    MAX_TOURS,
    MINUTES_PER_DAY,
    TRIP_VARIABLES,
    WITHIN_ZONE,
    EventSpec,
    FrequencySpec,
    TourFrequency,
    TripEvent,
    TripProject,
    TripSample,
    TripsSpec,
    TripTable,
    TripTableSpec,
    clock,
    minutes_of_day,
)

_INTERVAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


def read_trips(
    spec: TripsSpec, schema: Schema, zone_level: str | None, zones_file: str | None, root: Path
) -> tuple[TripProject | None, list[Problem]]:
    """Read and check the trips of a project.

    Parameters
    ----------
    spec : TripsSpec
    schema : Schema, with the zone level among its variables
    zone_level : str or None, the project's ``[zones]`` level (trips need zones)
    zones_file : str or None, the zones file (centroids and areas are read from it)
    root : Path, the project folder

    Returns
    -------
    (TripProject or None, list of Problem): None when any problem was found.
    """
    where = f"{PROJECT_FILE} [trips]"
    problems: list[Problem] = []
    if zone_level is None or zones_file is None:
        return None, [Problem(PROJECT_FILE, "trips need zones: add a [zones] section (file and level)", column="trips")]
    zones = tuple(schema[zone_level].categories)  # type: ignore[union-attr]
    try:
        who = compile_rule("trips.who", spec.who, schema)
    except RuleError as exc:
        problems.append(Problem(PROJECT_FILE, str(exc), column="trips.who"))
        who = None
    strange = sorted(set(spec.stay_hours_by_purpose) - set(spec.purposes or spec.tour[:1]))
    if strange or any(not 0 < v <= 24 for v in spec.stay_hours_by_purpose.values()):
        problems.append(
            Problem(
                PROJECT_FILE,
                f"expected hours in (0, 24] for purposes of the first stop; got {dict(spec.stay_hours_by_purpose)}",
                column="trips.stay_hours_by_purpose",
            )
        )
    if len(set(spec.purposes)) != len(spec.purposes):
        problems.append(Problem(PROJECT_FILE, "a purpose is listed twice", column="trips.purposes"))
    if len(set(spec.modes)) != len(spec.modes):
        problems.append(Problem(PROJECT_FILE, "a mode is listed twice", column="trips.modes"))
    unknown = sorted(set(spec.speed_kmh) - set(spec.modes))
    if unknown:
        problems.append(Problem(PROJECT_FILE, f"speed of unknown mode(s) {unknown}", column="trips.speed_kmh"))
    missing = [m for m in spec.modes if m not in spec.speed_kmh]
    if missing:
        problems.append(
            Problem(
                PROJECT_FILE, f"expected a speed (km/h) for every mode; missing {missing}", column="trips.speed_kmh"
            )
        )
    if any(not np.isfinite(v) or v <= 0 for v in spec.speed_kmh.values()):
        problems.append(Problem(PROJECT_FILE, "speeds must be positive km/h", column="trips.speed_kmh"))
    distance, centroids = _distances(spec, zones, zone_level, zones_file, root, problems)
    frames: list[tuple[TripTableSpec, pd.DataFrame, int]] = []
    for table in spec.tables:
        frame, first_row = _read(root, table.file, f"{where} table {table.name!r}", problems)
        if frame is not None:
            frames.append((table, frame, first_row))
    edges = _depart_edges(frames, problems)
    tables = [_table(t, f, r, zones, spec.modes, spec.purposes, edges, problems) for t, f, r in frames]
    events = [read_event(i, e, zones, schema, problems) for i, e in enumerate(spec.events, start=1)]
    sample = _sample(spec, root, zones, edges, problems) if spec.sample is not None else None
    frequency = _frequency(spec.frequency, schema, root, problems) if spec.frequency is not None else None
    if problems or who is None or distance is None:
        return None, problems
    return (
        TripProject(
            who=who,
            tour=spec.tour,
            purposes=spec.purposes,
            zones=zones,
            distance=distance,
            modes=spec.modes,
            speed_kmh=np.array([spec.speed_kmh[m] for m in spec.modes], dtype=np.float64),
            depart_edges=edges,
            stay_minutes=round(spec.stay_hours * 60),
            stay_by_purpose={k: round(v * 60) for k, v in spec.stay_hours_by_purpose.items()},
            tables=tuple(t for t in tables if t is not None),
            mean_km=spec.mean_km,
            centroids=centroids,
            events=tuple(e for e in events if e is not None),
            sample=sample,
            frequency=frequency,
        ),
        [],
    )


def _read(root: Path, name: str, key: str, problems: list[Problem]) -> tuple[pd.DataFrame | None, int]:
    path = inside_folder(root, name, PROJECT_FILE, key, problems)
    if path is None:
        return None, 2
    if not path.is_file():
        problems.append(Problem(name, "file not found"))
        return None, 2
    frame, first_row, read_problems = read_table_bytes(path.read_bytes(), name)
    problems += read_problems
    return frame, first_row


def _numbers(
    frame: pd.DataFrame, column: str, file: str, first_row: int, problems: list[Problem], signed: bool = False
) -> np.ndarray:
    """The numbers of a column (float64); a problem for each empty, non-numeric (or, unless ``signed``, negative)
    cell, the first three named with their rows."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | ((values < 0) & (not signed)))
    for i in bad[:3]:
        problems.append(
            Problem(
                file,
                f"expected a number{'' if signed else ' >= 0'}, got {frame[column].iloc[i]!r}",
                row=first_row + int(i),
                column=column,
            )
        )
    if bad.size > 3:
        problems.append(Problem(file, f"{bad.size - 3} more rows like these", column=column))
    return np.where(np.isfinite(values), values, 0.0)


def _codes(frame, column, labels, file, first_row, problems, unknown, more: str | None = None) -> np.ndarray:
    """The index of each cell of ``column`` (stripped) among ``labels``: int64, -1 where it is none of them. The
    first three such cells get a problem with their row (``unknown(value)`` says what was expected), and ``more``
    (``"unknown zones"``) counts the rest when given."""
    values = frame[column].str.strip()
    codes = values.map({label: i for i, label in enumerate(labels)})
    bad = np.flatnonzero(codes.isna().to_numpy())
    for i in bad[:3]:
        problems.append(Problem(file, unknown(values.iloc[i]), row=first_row + int(i), column=column))
    if more is not None and bad.size > 3:
        problems.append(Problem(file, f"{bad.size - 3} more {more}", column=column))
    return codes.fillna(-1).to_numpy(dtype=np.int64)


def _zone_codes(frame, column, zones, file, first_row, problems) -> np.ndarray:
    return _codes(
        frame,
        column,
        zones,
        file,
        first_row,
        problems,
        lambda z: f"unknown zone {z!r}: not in the zones file",
        "unknown zones",
    )


def _category_codes(frame, column, categories, file, first_row, problems) -> np.ndarray:
    return _codes(
        frame,
        column,
        categories,
        file,
        first_row,
        problems,
        lambda v: f"unknown {column} {v!r}: expected one of {list(categories)}",
    )


def _distances(spec, zones, level, zones_file, root, problems) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(distance matrix in km, shape (n, n), or None after a problem; centroids (lon, lat) in degrees, shape (n, 2),
    or None when the zones file has no centroid columns)."""
    frame, first_row = _read(root, zones_file, f"{PROJECT_FILE} [zones]", problems)
    if frame is None:
        return None, None
    centroids = None
    n = len(zones)
    row_of = {z: i for i, z in enumerate(frame[level].str.strip())}
    order = np.array([row_of[z] for z in zones])
    distance = np.full((n, n), np.nan)
    has_centroids = spec.lon in frame.columns and spec.lat in frame.columns
    if has_centroids:
        centroids = np.column_stack(
            [
                _numbers(frame, spec.lon, zones_file, first_row, problems, signed=True)[order],
                _numbers(frame, spec.lat, zones_file, first_row, problems, signed=True)[order],
            ]
        )
        lon, lat = np.radians(centroids[:, 0]), np.radians(centroids[:, 1])
        # great-circle distance (haversine) between centroids
        h = (
            np.sin((lat[:, None] - lat[None, :]) / 2) ** 2
            + np.cos(lat[:, None]) * np.cos(lat[None, :]) * np.sin((lon[:, None] - lon[None, :]) / 2) ** 2
        )
        distance = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
    if spec.distances is not None:
        table, table_row = _read(root, spec.distances, f"{PROJECT_FILE} [trips] distances", problems)
        if table is not None:
            need = ["origin", "destination", "distance_km"]
            absent = [c for c in need if c not in table.columns]
            if absent:
                problems.append(Problem(spec.distances, f"expected columns {need}; missing {absent}", row=1))
                return None, centroids
            o = _zone_codes(table, "origin", zones, spec.distances, table_row, problems)
            d = _zone_codes(table, "destination", zones, spec.distances, table_row, problems)
            km = _numbers(table, "distance_km", spec.distances, table_row, problems)
            known = (o >= 0) & (d >= 0)
            listed = np.zeros_like(distance, dtype=bool)
            listed[o[known], d[known]] = True
            # a pair listed one way only: the other way is as long (a centroid distance is symmetric)
            reverse = listed.T & ~listed
            distance[o[known], d[known]] = km[known]
            distance[reverse] = distance.T[reverse]
    if np.isnan(distance).any():
        problems.append(
            Problem(
                spec.distances or zones_file,
                f"{int(np.isnan(distance).sum()):,} zone pairs have no distance: list them in the distances file or "
                f"give the zones file centroid columns {spec.lon!r} and {spec.lat!r}",
            )
        )
        return None, centroids
    if spec.area is not None:
        if spec.area not in frame.columns:
            problems.append(Problem(zones_file, f"expected a column {spec.area!r} (km²)", row=1, column="trips.area"))
            return None, centroids
        radius = np.sqrt(_numbers(frame, spec.area, zones_file, first_row, problems)[order] / np.pi)
        inner = np.diag(distance).copy()
        zero = inner <= 0
        inner[zero] = defaults.INTRAZONAL_CIRCLE_FACTOR * radius[zero]
        np.fill_diagonal(distance, inner)
    return distance, centroids


def read_event(i: int, spec: EventSpec, zones, schema: Schema, problems: list[Problem]) -> TripEvent | None:
    """One what-if event checked: None and problems (naming ``trips.events[i]``'s keys) when its zone is unknown, its
    window is no ``HH:MM-HH:MM`` within the day or its ``who`` does not compile."""
    key = f"trips.events[{i}]"
    before = len(problems)
    zone = zones.index(spec.zone) if spec.zone in zones else -1
    if zone < 0:
        problems.append(
            Problem(PROJECT_FILE, f"unknown zone {spec.zone!r}: not in the zones file", column=f"{key}.zone")
        )
    window = _interval(spec.depart)
    if window is None:
        problems.append(
            Problem(
                PROJECT_FILE,
                f"expected a departure interval HH:MM-HH:MM within 00:00-24:00, got {spec.depart!r}",
                column=f"{key}.depart",
            )
        )
    who = None
    if spec.who is not None:
        try:
            who = compile_rule(f"{key}.who", spec.who, schema)
        except RuleError as exc:
            problems.append(Problem(PROJECT_FILE, str(exc), column=f"{key}.who"))
    if len(problems) > before or window is None:
        return None
    return TripEvent(spec.name, zone, window[0], window[1], spec.trips, round(spec.stay_hours * 60), who)


def _sample(spec: TripsSpec, root: Path, zones, edges, problems: list[Problem]) -> TripSample | None:
    """The travel-diary sample: each row a trip from home, named by file, row and column when it is not one."""
    assert spec.sample is not None  # called for projects with a sample
    frame, first_row = _read(root, spec.sample, f"{PROJECT_FILE} [trips] sample", problems)
    if frame is None:
        return None
    file = spec.sample
    need = ["origin", "destination", "depart", "mode", *(["purpose"] if spec.purposes else [])]
    need += [spec.sample_weight] if spec.sample_weight else []
    absent = [c for c in need if c not in frame.columns]
    if absent:
        problems.append(Problem(file, f"expected columns {need}; missing {absent}", row=1))
        return None
    before = len(problems)
    cells = {
        "origin": _zone_codes(frame, "origin", zones, file, first_row, problems),
        "destination": _zone_codes(frame, "destination", zones, file, first_row, problems),
    }
    for column, categories in (("mode", spec.modes), ("purpose", spec.purposes)):
        if column == "purpose" and not spec.purposes:
            cells[column] = np.zeros(len(frame), dtype=np.int64)
            continue
        cells[column] = _category_codes(frame, column, categories, file, first_row, problems)
    minutes = np.full(len(frame), -1, dtype=np.int64)
    for i, text in enumerate(frame["depart"]):
        value = minutes_of_day(text)
        if value is None:
            if len(problems) - before < 3:
                problems.append(
                    Problem(file, f"expected a time HH:MM of the day, got {text!r}", row=first_row + i, column="depart")
                )
            continue
        minutes[i] = value
    cells["bin"] = np.searchsorted(edges, minutes, side="right").astype(np.int64) - 1
    weight = (
        _numbers(frame, spec.sample_weight, file, first_row, problems)
        if spec.sample_weight
        else np.ones(len(frame), dtype=np.float64)
    )
    if len(problems) > before:
        return None
    return TripSample(cells, weight, file)


def _frequency(spec: FrequencySpec, schema: Schema, root: Path, problems: list[Problem]) -> TourFrequency | None:
    """Tours a day by person type: every combination of the ``by`` variables' categories needs persons, each row a
    type, a number of tours (a whole number 0 to ``MAX_TOURS``) and its persons; a problem names file, row and column
    of what is not."""
    key = "trips.frequency.by"
    before = len(problems)
    for name in spec.by:
        if name not in schema:
            problems.append(Problem(PROJECT_FILE, f"unknown person variable {name!r}", column=key))
        elif getattr(schema[name], "categories", None) is None:
            problems.append(
                Problem(PROJECT_FILE, f"expected categorical person variables; {name!r} is numeric", column=key)
            )
    if len(set(spec.by)) != len(spec.by):
        problems.append(Problem(PROJECT_FILE, "a variable is listed twice", column=key))
    frame, first_row = _read(root, spec.file, f"{PROJECT_FILE} [trips.frequency]", problems)
    if frame is None or len(problems) > before:
        return None
    file = spec.file
    need = [*spec.by, spec.tours_column, spec.count_column]
    absent = [c for c in need if c not in frame.columns]
    if absent:
        problems.append(Problem(file, f"expected columns {need}; missing {absent}", row=1))
        return None
    categories = [tuple(schema[name].categories) for name in spec.by]
    codes = [_category_codes(frame, n, c, file, first_row, problems) for n, c in zip(spec.by, categories, strict=True)]
    tours = _numbers(frame, spec.tours_column, file, first_row, problems)
    for i in np.flatnonzero((tours != np.floor(tours)) | (tours > MAX_TOURS))[:3]:
        problems.append(
            Problem(
                file,
                f"expected a whole number of tours from 0 to {MAX_TOURS}, got {frame[spec.tours_column].iloc[i]!r}",
                row=first_row + int(i),
                column=spec.tours_column,
            )
        )
    persons = _numbers(frame, spec.count_column, file, first_row, problems)
    if len(problems) > before:
        return None
    sizes = tuple(len(c) for c in categories)
    types = np.ravel_multi_index(tuple(codes), sizes) if spec.by else np.zeros(len(frame), dtype=np.int64)
    k = tours.astype(np.int64)
    seen: dict[tuple[int, int], int] = {}
    for i, cell in enumerate(zip(types.tolist(), k.tolist(), strict=True)):
        if cell in seen:
            problems.append(
                Problem(
                    file, f"the same type and tours as row {seen[cell]}", row=first_row + i, column=spec.tours_column
                )
            )
            return None
        seen[cell] = first_row + i
    table = np.zeros((int(np.prod(sizes)), int(k.max()) + 1 if k.size else 1))
    np.add.at(table, (types, k), persons)
    empty = np.flatnonzero(table.sum(axis=1) <= 0)
    if empty.size:
        combos = zip(*np.unravel_index(empty[:3], sizes), strict=True) if spec.by else [()]
        names = [
            ", ".join(f"{n} = {c[j]!r}" for n, c, j in zip(spec.by, categories, combo, strict=True)) or "everyone"
            for combo in combos
        ]
        problems.append(
            Problem(
                file,
                f"expected persons for every type (each combination of {list(spec.by)}); none for "
                + "; ".join(names)
                + (f" and {empty.size - 3} more" if empty.size > 3 else ""),
                column=spec.count_column,
            )
        )
        return None
    shares = table / table.sum(axis=1, keepdims=True)
    return TourFrequency(spec.by, sizes, shares, file + (f": {spec.source}" if spec.source else ""))


def _interval(text: object) -> tuple[int, int] | None:
    """``HH:MM-HH:MM`` as (start, end) minutes after midnight, 0 <= start < end <= 1440; None otherwise."""
    match = _INTERVAL.match(str(text))
    if not match:
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    return (start, end) if m1 <= 59 and m2 <= 59 and 0 <= start < end <= MINUTES_PER_DAY else None


def _intervals(frame: pd.DataFrame, file: str, first_row: int, problems: list[Problem]) -> list[tuple[int, int]] | None:
    found = []
    for i, text in enumerate(frame["depart"]):
        window = _interval(text)
        if window is None:
            problems.append(
                Problem(
                    file,
                    f"expected a departure interval HH:MM-HH:MM within 00:00-24:00, got {text!r}",
                    row=first_row + i,
                    column="depart",
                )
            )
            return None
        found.append(window)
    return found


def _depart_edges(frames, problems: list[Problem]) -> np.ndarray:
    """The departure bins: those of the first table with ``depart`` (they must tile the day)."""
    for table, frame, first_row in frames:
        if "depart" in table.variables and "depart" in frame.columns:
            intervals = _intervals(frame, table.file, first_row, problems)
            if intervals is None:
                return np.array([0, MINUTES_PER_DAY])
            cuts = sorted(set(intervals))
            edges = [cuts[0][0]] + [b for _, b in cuts]
            tiles = all(cuts[i][1] == cuts[i + 1][0] for i in range(len(cuts) - 1))
            if edges[0] != 0 or edges[-1] != MINUTES_PER_DAY or not tiles:
                problems.append(
                    Problem(
                        table.file,
                        "the departure intervals must tile the day from 00:00 to 24:00 without gaps or overlaps "
                        f"(found {len(cuts)} intervals from {cuts[0][0] // 60:02d}:{cuts[0][0] % 60:02d})",
                        column="depart",
                    )
                )
            return np.array(edges, dtype=np.int64)
    problems.append(
        Problem(PROJECT_FILE, 'expected a table of departure times (variables including "depart")', column="trips")
    )
    return np.array([0, MINUTES_PER_DAY], dtype=np.int64)


def _table(spec: TripTableSpec, frame, first_row, zones, modes, purposes, edges, problems) -> TripTable | None:
    file = spec.file
    before = len(problems)
    unknown = [v for v in spec.variables if v not in TRIP_VARIABLES]
    if unknown or len(set(spec.variables)) != len(spec.variables):
        problems.append(
            Problem(
                PROJECT_FILE,
                f"table {spec.name!r}: variables must be distinct and among {list(TRIP_VARIABLES)}; got "
                f"{list(spec.variables)}",
                column="trips.tables.variables",
            )
        )
        return None
    absent = [c for c in (*spec.variables, spec.count_column) if c not in frame.columns]
    if absent:
        problems.append(
            Problem(file, f"expected columns {[*spec.variables, spec.count_column]}; missing {absent}", row=1)
        )
        return None
    counts = _numbers(frame, spec.count_column, file, first_row, problems)
    axes, labels = [], []
    bins, within_zone = None, False
    for v in spec.variables:
        if v in ("origin", "destination"):
            axes.append(_zone_codes(frame, v, zones, file, first_row, problems))
            labels.append(zones)
        elif v in ("mode", "purpose"):
            if v == "purpose" and not purposes:
                problems.append(
                    Problem(
                        PROJECT_FILE,
                        f"table {spec.name!r} counts purposes: list them in [trips] purposes",
                        column="trips.purposes",
                    )
                )
                return None
            categories = modes if v == "mode" else purposes
            axes.append(_category_codes(frame, v, categories, file, first_row, problems))
            labels.append(categories)
        elif v == "depart":
            intervals = _intervals(frame, file, first_row, problems)
            starts = {a: i for i, a in enumerate(edges[:-1])}
            codes = np.array(
                [starts.get(a, -1) if (a, b) in zip(edges[:-1], edges[1:]) else -1 for a, b in intervals or []]
            )
            for i in np.flatnonzero(codes < 0)[:3]:
                problems.append(
                    Problem(
                        file,
                        "a departure interval other than those of the departure table",
                        row=first_row + int(i),
                        column=v,
                    )
                )
            axes.append(codes if codes.size else np.full(len(frame), -1))
            labels.append(tuple(f"{clock(a)}-{clock(b)}" for a, b in zip(edges[:-1], edges[1:])))
        else:  # distance: rows labelled by their band's lower edge or "[a, b)"
            if len(spec.bins) < 2 or any(b <= a for a, b in zip(spec.bins, spec.bins[1:])):
                problems.append(
                    Problem(
                        PROJECT_FILE,
                        f"table {spec.name!r}: expected increasing distance bins (km)",
                        column="trips.tables.bins",
                    )
                )
                return None
            bins = np.asarray(spec.bins, dtype=np.float64)
            band_labels = tuple(f"[{a:g}, {b:g})" for a, b in zip(bins[:-1], bins[1:]))
            within_zone = bool((frame[v].str.strip() == WITHIN_ZONE).any())  # a row of the intrazonal trips
            expected = f"expected a distance band among {list(band_labels)} or {WITHIN_ZONE!r}, got "
            band_labels += (WITHIN_ZONE,) if within_zone else ()
            axes.append(_codes(frame, v, band_labels, file, first_row, problems, lambda b, e=expected: f"{e}{b!r}"))
            labels.append(band_labels)
    if len(problems) > before:
        return None
    shape = tuple(len(lab) for lab in labels)
    flat = np.ravel_multi_index(tuple(axes), shape)
    if np.unique(flat).size != flat.size:
        problems.append(Problem(file, "a cell is listed twice (each combination of the variables once)"))
        return None
    dense = np.zeros(int(np.prod(shape)), dtype=np.float64)
    dense[flat] = counts
    return TripTable(
        spec.name,
        spec.variables,
        dense.reshape(shape),
        tuple(labels),
        bins,
        f"{file}" + (f" ({spec.source})" if spec.source else ""),
        within_zone,
    )
