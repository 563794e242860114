"""Trip targets (DESIGN §13): the ``[trips]`` section of a person project and the tables of trips it names.

Trips are the unit under persons. A project with ``[trips]`` gives each person meeting ``who`` one tour a day (or,
with ``[trips.frequency]``, 0 to ``MAX_TOURS`` tours by person type, one after the other): the trips of ``tour`` in
order (``["work", "home"]``: out to work, back home), the first leaving the person's zone, each leaving where the last
arrived, the last arriving home. Trip tables count the tours' **first trips** (the outbound trips: a commuting OD
matrix counts home-to-work trips) over their variables:

- ``origin``, ``destination``: zone ids of the project's ``[zones]`` (an OD table has both, long and sparse:
  ``origin, destination, count``; cells not listed hold no trip);
- ``depart``: departure time, rows labelled ``HH:MM-HH:MM`` (``07:00-07:30``), the intervals tiling the day;
- ``mode``: one of ``modes``;
- ``purpose``: one of ``purposes`` (the first stop's activity, when the project lists them);
- ``distance``: km between the zones, in the bands of ``bins`` (a trip-length distribution); a row ``within zone``
  counts the trips whose origin is their destination apart from the bands (a survey's intrazonal share).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from ..expressions import Rule

TRIP_VARIABLES = ("origin", "destination", "depart", "mode", "purpose", "distance")
WITHIN_ZONE = "within zone"  # a distance table's row of the trips that stay in their zone (counted apart from bands)
MINUTES_PER_DAY = 24 * 60


class TripTableSpec(BaseModel):
    """One ``[[trips.tables]]`` entry: a long table of trips (one row per cell, a count column)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    file: str = Field(min_length=1)
    variables: tuple[str, ...] = Field(min_length=1)
    count_column: str = "count"
    bins: tuple[float, ...] = ()  # km: the distance bands (with "distance" among the variables)
    source: str = ""  # where the figures come from, shown in the report


class EventSpec(BaseModel):
    """One ``[[trips.events]]`` entry: a what-if scenario as a target edit (DESIGN §13): ``trips`` persons go to
    ``zone`` departing in ``depart`` (``HH:MM-HH:MM``), stay ``stay_hours`` and return home."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_ .-]*$")
    zone: str = Field(min_length=1)
    depart: str = Field(min_length=1)
    trips: int = Field(gt=0)
    stay_hours: float = Field(default=3.0, gt=0, le=24)
    who: str | None = None


class FrequencySpec(BaseModel):
    """``[trips.frequency]``: how many tours a day the persons who travel make, by person type. A long table: the
    categorical person variables ``by`` (none: one distribution for everyone), the number of tours
    (``tours_column``, 0 to ``MAX_TOURS``) and the persons (``count_column``, counts or shares) of each."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    file: str = Field(min_length=1)
    by: tuple[str, ...] = ()
    tours_column: str = "tours"
    count_column: str = "count"
    source: str = ""


class TripsSpec(BaseModel):
    """``[trips]``: who travels, the tour of a day, zone distances, modes and the tables of trips.

    ``distances`` names a long file ``origin, destination, distance_km``; pairs it does not list (and every pair
    when it is omitted) are measured on the zones' centroids (``lon`` / ``lat`` columns of the zones file, great
    circle), and a zero intrazonal distance becomes the mean distance of two points of a disc of the zone's area
    (``area`` column, km²; 128 r / 45 pi). ``speed_kmh`` gives the door-to-door speed of each mode (travel times);
    ``stay_hours`` the time spent at each stop of the tour before the next trip (``stay_hours_by_purpose`` for the
    first stop's purposes that differ). ``purposes`` (optional) lists the
    activities the first stop may be (work, school, shopping, ...): the first trip's purpose is then one of them, a
    variable of the trip tables, and ``tour[0]`` names that stop in the tour (``["activity", "home"]``). ``sample``
    names a travel diary (one row per trip from home: ``origin``, ``destination``, ``depart`` as ``HH:MM``, ``mode``,
    and ``purpose`` with purposes; ``sample_weight`` its weight column): the prior starts from its trips.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    who: str = Field(min_length=1)
    tour: tuple[str, ...] = Field(min_length=2)
    modes: tuple[str, ...] = Field(min_length=1)
    purposes: tuple[str, ...] = ()
    tables: tuple[TripTableSpec, ...] = Field(min_length=1)
    distances: str | None = None
    lon: str = "lon"
    lat: str = "lat"
    area: str | None = None
    speed_kmh: dict[str, float] = Field(default_factory=dict)
    stay_hours: float = Field(default=8.0, gt=0, le=24)
    stay_hours_by_purpose: dict[str, float] = Field(default_factory=dict)
    mean_km: float | None = Field(default=None, gt=0)
    events: tuple[EventSpec, ...] = ()
    sample: str | None = None
    sample_weight: str | None = None
    frequency: FrequencySpec | None = None


MAX_TOURS = 6  # tours a day a person may make (``[trips.frequency]``)


@dataclass(frozen=True)
class TourFrequency:
    """Tours a day of the persons who travel, by person type (``[trips.frequency]``).

    Attributes
    ----------
    by : tuple of str, categorical person variables (schema names); empty: one type
    sizes : tuple of int, the number of categories of each variable of ``by``
    shares : ndarray of float64, shape (n_types, max tours + 1): each type's share of persons making 0, 1, ...
        tours (rows sum to 1); types in ``np.ravel_multi_index`` order of their category codes along ``by``
    source : str, the file and where its figures come from
    """

    by: tuple[str, ...]
    sizes: tuple[int, ...]
    shares: npt.NDArray[np.float64]
    source: str = ""

    def types(self, population) -> npt.NDArray[np.int64]:
        """The type of each coded record (``population`` holds the ``by`` columns as category codes): int64."""
        if not self.by:
            return np.zeros(len(population), dtype=np.int64)
        codes = tuple(population[v].to_numpy(dtype=np.int64) for v in self.by)
        return np.ravel_multi_index(codes, self.sizes).astype(np.int64)


@dataclass(frozen=True)
class TripSample:
    """A travel-diary sample of trips (the tours' first trips), the seed of the trip prior.

    Attributes
    ----------
    cells : dict of str -> ndarray of int64, shape (n,): ``origin``, ``destination`` (zone indices), ``bin``
        (departure bin), ``mode``, ``purpose`` (index in the first stop's purposes; 0 without purposes)
    weight : ndarray of float64, shape (n,), >= 0
    source : str, the file
    """

    cells: dict
    weight: npt.NDArray[np.float64]
    source: str = ""


@dataclass(frozen=True)
class TripEvent:
    """A what-if event: ``persons`` persons meeting ``who`` (everyone when None) leave home for zone ``zone`` (its
    index) departing in [``start``, ``end``) minutes after midnight, stay ``stay_minutes`` and return home."""

    name: str
    zone: int
    start: int
    end: int
    persons: int
    stay_minutes: int
    who: Rule | None = None


@dataclass(frozen=True)
class TripTable:
    """One table of outbound trips.

    Attributes
    ----------
    name : str
    variables : tuple of str, each in ``TRIP_VARIABLES``; the axis order of ``counts``
    counts : ndarray of float64, one axis per variable (zones, departure bins, modes or distance bands)
    labels : tuple of tuple of str, the cell labels along each axis
    bins : ndarray of float64 or None, the distance band edges (km) when ``distance`` is a variable
    source : str, the file it came from and where its figures come from
    within_zone : bool, the distance axis ends with a category ``"within zone"`` (``WITHIN_ZONE``): the trips whose
        origin is their destination, counted apart from the bands (a survey's intrazonal trips)
    """

    name: str
    variables: tuple[str, ...]
    counts: npt.NDArray[np.float64]
    labels: tuple[tuple[str, ...], ...]
    bins: npt.NDArray[np.float64] | None = None
    source: str = ""
    within_zone: bool = False

    def distance_band(
        self, km: npt.ArrayLike, origin: npt.ArrayLike, destination: npt.ArrayLike
    ) -> npt.NDArray[np.int64]:
        """Each trip's category on the distance axis: its band, or the within-zone category when the table has one
        and the trip stays in its zone; -1 for a trip beyond the last band.

        Parameters
        ----------
        km : array of float, trip lengths (km)
        origin, destination : arrays broadcasting to the shape of ``km``, zone codes or ids (compared only when the
            table has a within-zone row)
        """
        assert self.bins is not None  # distance tables carry their bands
        band = np.searchsorted(self.bins, np.asarray(km, dtype=np.float64), side="right") - 1
        band = np.where((band >= 0) & (band < self.bins.size - 1), band, -1)
        if self.within_zone:
            band = np.where(np.asarray(origin) == np.asarray(destination), self.bins.size - 1, band)
        return band.astype(np.int64)


@dataclass(frozen=True)
class TripProject:
    """The trips of a person project, read and checked.

    Attributes
    ----------
    who : Rule, true for the persons who travel (schema dialect, on coded records)
    tour : tuple of str, the purposes of a traveller's trips in order; the last trip returns home
    purposes : tuple of str, the first stop's possible purposes (``(tour[0],)`` when the project lists none)
    zones : tuple of str, the zone ids (the categories of the project's zone variable, in order)
    distance : ndarray of float64, shape (n_zones, n_zones), km from origin (row) to destination (column)
    modes : tuple of str
    speed_kmh : ndarray of float64, shape (n_modes,), door-to-door km per hour
    depart_edges : ndarray of int64, minutes after midnight, the departure bins of the outbound trip
        (``depart_edges[0] == 0``, ``depart_edges[-1] == 1440``)
    stay_minutes : int, time at each stop before the next trip
    stay_by_purpose : dict of str -> int, minutes at the first stop for the purposes whose stay differs
    tables : tuple of TripTable
    mean_km : float or None, a mean trip length the prior's distance decay is fitted to (no OD table; its form,
        exponential or power, is the one closer to a trip-length distribution among the tables)
    centroids : ndarray of float64, shape (n_zones, 2), or None: each zone's longitude and latitude (degrees), when
        the zones file gives them (flow maps)
    events : tuple of TripEvent, the what-if events added to the day's trips
    sample : TripSample or None, a travel-diary sample seeding the prior
    frequency : TourFrequency or None, tours a day by person type (None: one tour for every person who travels)
    """

    who: Rule
    tour: tuple[str, ...]
    zones: tuple[str, ...]
    distance: npt.NDArray[np.float64]
    modes: tuple[str, ...]
    speed_kmh: npt.NDArray[np.float64]
    depart_edges: npt.NDArray[np.int64]
    stay_minutes: int
    tables: tuple[TripTable, ...]
    mean_km: float | None = None
    centroids: npt.NDArray[np.float64] | None = None
    events: tuple[TripEvent, ...] = ()
    purposes: tuple[str, ...] = ()
    stay_by_purpose: dict = field(default_factory=dict)
    sample: TripSample | None = None
    frequency: TourFrequency | None = None

    @property
    def first_purposes(self) -> tuple[str, ...]:
        """The purposes the first trip of a tour may have: ``purposes``, or the tour's first stop."""
        return self.purposes or (self.tour[0],)

    @property
    def commute_purpose(self) -> str:
        """The purpose whose first trip's distance is a person's commute: ``work`` when it is one of the first
        stop's purposes, else the first of them."""
        return "work" if "work" in self.first_purposes else self.first_purposes[0]

    def depart_labels(self) -> tuple[str, ...]:
        """``HH:MM-HH:MM`` for each departure bin."""
        return tuple(
            f"{clock(a)}-{clock(b)}" for a, b in zip(self.depart_edges[:-1], self.depart_edges[1:], strict=True)
        )


_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def minutes_of_day(text: object) -> int | None:
    """``HH:MM`` of the day (00:00-23:59) as minutes after midnight, or None for anything else (``7h10``, ``24:00``,
    ``07:75``)."""
    match = _CLOCK.match(str(text))
    if not match or int(match.group(2)) >= 60:
        return None
    value = int(match.group(1)) * 60 + int(match.group(2))
    return value if 0 <= value < MINUTES_PER_DAY else None


def clock(minutes: int | float) -> str:
    """Minutes after midnight as ``HH:MM``; hours go past 24 for the next day (``25:10``, as GTFS writes times)."""
    m = int(minutes)
    return f"{m // 60:02d}:{m % 60:02d}"
