"""Geographies: nested zones (DESIGN §9).

A **crosswalk** maps every zone of the lowest level (e.g. TAZ) to its zone at every level above (TRACT, PUMA,
REGION). Levels are listed from the top (largest zones) to the bottom. Zone ids are kept as they are in the
files (whole numbers or text); inside the library a zone is its position in the sorted ids of its level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from .errors import Problem

SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")  # a level or output name that is also a file name part


def shown_value(value) -> str:
    """A value from a file as the user wrote it: ``2`` (not ``np.int64(2)``), ``'A1'`` for text."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


MAX_ROWS_SHOWN = 5  # rows listed per check of a file (the first that fail it)


def flag_rows(problems: list[Problem], positions, shown: str, column: str, message, first_row: int = 2) -> None:
    """Append one problem for each of the first :data:`MAX_ROWS_SHOWN` rows that fail a check.

    ``positions``: 0-based row positions in the frame (array of int); ``message(position)`` says what is wrong in
    that row; the problem names the file ``shown``, the file's row ``first_row + position`` and ``column``.
    """
    for i in np.asarray(positions)[:MAX_ROWS_SHOWN]:
        problems.append(Problem(shown, message(int(i)), row=first_row + int(i), column=column))


@dataclass(frozen=True)
class Geography:
    """Nested geography levels and the crosswalk of their zones.

    Attributes
    ----------
    levels : tuple of str
        Level names from the top to the lowest, e.g. ``("REGION", "PUMA", "TRACT", "TAZ")``.
    crosswalk : DataFrame
        One row per lowest-level zone (sorted by its id), one column per level holding the zone id at that level.
    """

    levels: tuple[str, ...]
    crosswalk: pd.DataFrame

    @property
    def lowest(self) -> str:
        """The lowest level (where households are placed)."""
        return self.levels[-1]

    @property
    def n_zones(self) -> int:
        """Number of lowest-level zones."""
        return len(self.crosswalk)

    def zones(self, level: str) -> pd.Index:
        """Zone ids of ``level``, sorted (their positions are the zone indices used by the library)."""
        return self._zones[level]

    def parent_index(self, level: str) -> npt.NDArray[np.int64]:
        """For every lowest-level zone, the position of its zone at ``level`` in :meth:`zones` (shape (n_zones,))."""
        return self._parents[level]

    @cached_property
    def _zones(self) -> dict[str, pd.Index]:
        return {level: pd.Index(sorted(self.crosswalk[level].unique())) for level in self.levels}

    @cached_property
    def _parents(self) -> dict[str, np.ndarray]:
        return {level: self._zones[level].get_indexer(self.crosswalk[level]).astype(np.int64) for level in self.levels}


def build_geography(
    frame: pd.DataFrame, levels: list[str], shown: str, first_row: int = 2
) -> tuple[Geography | None, list[Problem]]:
    """Check a crosswalk table and build the :class:`Geography`.

    Parameters
    ----------
    frame : DataFrame
        The crosswalk as read (one row per lowest-level zone; extra columns are ignored).
    levels : list of str
        Level names, top to lowest; each must be a column of ``frame``.
    shown : str
        File name for messages.
    first_row : int
        Spreadsheet row number of ``frame``'s first row (2 when the header is row 1).

    Returns
    -------
    (Geography or None, list of Problem)
        Problems name the file, row and column: a missing level column, a level name that is not a plain name
        (:data:`SAFE_NAME`: it names output files), an empty zone id, a zone with two parents at a level above it.
        Rows finer than the lowest level (one per TAZ under levels that stop at a cluster of TAZs) reduce to one
        row per lowest-level zone, as PopulationSim reads them.
    """
    problems: list[Problem] = []
    missing = [level for level in levels if level not in frame.columns]
    if missing:
        return None, [
            Problem(
                shown,
                f"expected a column for the geography level {m!r} (columns: {', '.join(map(str, frame.columns))})",
                row=1,
                column=m,
            )
            for m in missing
        ]
    if not levels:
        return None, [Problem(shown, "expected at least one geography level")]
    twice = sorted({str(level) for level in levels if list(levels).count(level) > 1})
    if twice:
        return None, [
            Problem(shown, f"the geography level {t!r} is listed twice (each level once, top to lowest)") for t in twice
        ]
    unsafe = [level for level in levels if not SAFE_NAME.fullmatch(str(level))]
    if unsafe:
        return None, [
            Problem(
                shown,
                f"expected a geography level name of letters, digits, _ or - (at most 64; it "
                f"names output files such as summary_<LEVEL>.csv), got {str(u)[:80]!r}",
                row=1,
                column=str(u)[:80],
            )
            for u in unsafe
        ]
    table = frame[list(levels)].copy()
    for level in levels:
        empty = np.flatnonzero(table[level].isna().to_numpy())
        flag_rows(problems, empty, shown, level, lambda i: "expected a zone id, got an empty cell", first_row)
    if problems:
        return None, problems
    lowest = levels[-1]
    # rows finer than the lowest level listed (one per TAZ when the levels stop at a cluster of them) reduce to the
    # levels listed, as PopulationSim reads them; a zone is refused only when it has two parents
    table = table.reset_index(drop=True).drop_duplicates()
    for k, level in enumerate(levels):
        for upper in levels[:k]:
            parents = table.groupby(level, sort=True)[upper].nunique()
            for zone in parents[parents > 1].index[:MAX_ROWS_SHOWN]:
                rows = np.flatnonzero((table[level] == zone).to_numpy())
                values = table[upper].iloc[rows].unique()
                second = table.index[rows[np.flatnonzero((table[upper].iloc[rows] != values[0]).to_numpy())[0]]]
                problems.append(
                    Problem(
                        shown,
                        f"the {level} zone {shown_value(zone)} has two parents at {upper}: "
                        f"{shown_value(values[0])} and {shown_value(values[1])} (each zone lies in one zone of "
                        f"every level above it)",
                        row=first_row + int(second),
                        column=upper,
                    )
                )
    if problems:
        return None, problems
    table = table.sort_values(lowest, kind="stable").reset_index(drop=True)
    return Geography(tuple(levels), table), []


# --- zone shapes ------------------------------------------------------------------------------------------------------

MAX_SHAPES_BYTES = 50_000_000  # a GeoJSON of zones larger than this is refused
MAX_SHAPE_POINTS = 5_000_000  # vertices over all zones


@dataclass(frozen=True)
class ZoneShapes:
    """Polygons of the zones of one level, for maps drawn without tiles (:func:`synthor_core.plots.zone_map`).

    Attributes
    ----------
    level : str
        The geography level the shapes are zones of.
    rings : dict of zone id -> list of ndarray of float64, shape (n points, 2)
        Each zone's outer rings (longitude, latitude, or any plane coordinates); holes are not drawn.
    """

    level: str
    rings: dict


def read_zone_shapes(
    raw: bytes, level: str, zones: pd.Index, id_property: str, shown: str
) -> tuple[ZoneShapes | None, list[Problem]]:
    """Zone polygons from a GeoJSON FeatureCollection: each feature's ``properties[id_property]`` names its zone of
    ``level`` (matched to ``zones`` as text, so ``48453000101`` and ``"48453000101"`` agree); Polygon and MultiPolygon
    geometries, outer rings only.

    Returns
    -------
    (ZoneShapes or None, list of Problem)
        Problems name ``shown``: larger than ``MAX_SHAPES_BYTES``, not JSON or not a FeatureCollection, a feature
        without the id property or with an id that is no zone, more than ``MAX_SHAPE_POINTS`` vertices. Zones
        without a shape are allowed (they are not drawn).
    """
    import json

    if len(raw) > MAX_SHAPES_BYTES:
        return None, [Problem(shown, f"larger than {MAX_SHAPES_BYTES:,} bytes")]
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, [Problem(shown, f"could not be read as GeoJSON ({type(exc).__name__})")]
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        return None, [Problem(shown, 'expected a GeoJSON FeatureCollection (a "features" list)')]
    by_text = {str(z): z for z in zones}
    rings: dict = {}
    problems: list[Problem] = []
    points = 0
    for i, feature in enumerate(features, start=1):
        props = feature.get("properties") if isinstance(feature, dict) else None
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(props, dict) or id_property not in props:
            problems.append(Problem(shown, f"feature {i} has no property {id_property!r} naming its {level} zone"))
            continue
        zone = by_text.get(str(props[id_property]))
        if zone is None:
            problems.append(Problem(shown, f"feature {i}: {str(props[id_property])[:40]!r} is no {level} zone"))
            continue
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
        polygons = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else None
        if not isinstance(polygons, list):
            problems.append(Problem(shown, f"feature {i}: expected a Polygon or MultiPolygon, got {str(kind)[:30]}"))
            continue
        try:
            outer = [np.asarray(polygon[0], dtype=np.float64)[:, :2] for polygon in polygons if polygon]
        except (TypeError, ValueError, IndexError):
            problems.append(Problem(shown, f"feature {i}: coordinates are not lists of [x, y] points"))
            continue
        points += sum(len(r) for r in outer)
        if points > MAX_SHAPE_POINTS:
            return None, [Problem(shown, f"more than {MAX_SHAPE_POINTS:,} points")]
        rings.setdefault(zone, []).extend(outer)
        if len(problems) >= MAX_ROWS_SHOWN:
            break
    if problems:
        return None, problems
    return ZoneShapes(level, rings), []
