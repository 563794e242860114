"""Units: households and their members (DESIGN §8), controls per zone, and the seed sample.

A project with units declares a chain ``households ⊃ persons``; every control counts one unit. A household is
one row of the seed's household table; its members are the rows of the person table with its id. Person
controls reach households through the **incidence**: the number of a household's members meeting the control's
condition (PopulationSim's list balancer). The chain is a tuple of unit names, so a third unit under persons
(trips) is one more link, not a new code path.

Derived household variables are computed from the members (:func:`derive_from_members`), never drawn on their
own, so a household always agrees with its members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from .geography import Geography

HOUSEHOLDS = "households"
PERSONS = "persons"
UNIT_CHAIN = (HOUSEHOLDS, PERSONS)  # top unit first; each unit's rows name their parent's id


@dataclass(frozen=True)
class SeedSample:
    """A micro-sample of households with their members (ACS PUMS, a travel survey): the seed prior's records.

    Attributes
    ----------
    households : DataFrame
        One row per sample household, indexed 0..n-1 in the order of the file; columns as in the file.
    persons : DataFrame
        One row per sample person, sorted by household then ``person_number``; columns as in the file plus
        ``_household`` (int64, the row of its household in ``households``).
    household_id : str
        Column of ``households`` holding the household id (and of ``persons`` naming the person's household).
    person_number : str or None
        Column of ``persons`` numbering members within a household (``per_num``), if any.
    weight : str
        Column of ``households`` holding the sample weight (float64 > 0).
    seed_level : str
        Geography level whose zone id ``households`` carry (households are placed only in zones of that zone).
    """

    households: pd.DataFrame
    persons: pd.DataFrame
    household_id: str
    person_number: str | None
    weight: str
    seed_level: str

    def incidence(self, unit: str, mask: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Units of each household meeting a condition: ``mask`` over the households (1/0) or over the persons
        (members meeting it, PopulationSim's incidence). Returns float64, shape (n_households,)."""
        meets = np.asarray(mask, dtype=bool).astype(np.float64)
        if unit == HOUSEHOLDS:
            return meets
        # weighted: float64 (numpy's stubs type every bincount as integer)
        return np.bincount(self.persons["_household"].to_numpy(), weights=meets, minlength=len(self.households)).astype(
            np.float64, copy=False
        )

    def members_per_household(self) -> npt.NDArray[np.int64]:
        """Number of persons of each household, shape (n_households,)."""
        return np.bincount(self.persons["_household"].to_numpy(), minlength=len(self.households)).astype(np.int64)


@dataclass(frozen=True)
class Control:
    """One control: the number of units meeting a condition, given for every zone of one geography level.

    Attributes
    ----------
    name : str
        The control's name (``hh_size_1``).
    unit : {"households", "persons"}
        What it counts.
    level : str
        Geography level of its totals.
    importance : float > 0
        Weight against other controls when they cannot all be met (PopulationSim's ``importance``).
    column : str
        Column of the level's control table holding the totals (``HHSIZE1``).
    expression : str
        The condition as written.
    columns : tuple of str
        Seed columns the condition reads.
    incidence : ndarray of float64, shape (n_households,)
        Units of each seed household counted (1/0 for households, members meeting the condition for persons).
    totals : ndarray of float64, shape (n_zones of ``level``,)
        Control total of each zone, in the order of ``Geography.zones(level)``.
    """

    name: str
    unit: str
    level: str
    importance: float
    column: str
    expression: str
    columns: tuple[str, ...]
    incidence: npt.NDArray[np.float64]
    totals: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Derivation:
    """A household column computed from its members (DESIGN §8), as :func:`derive_from_members` computes it.

    Attributes
    ----------
    column : str
        The household column (``NP``, ``NWESR``, ``AGEHOH``).
    how : {"size", "count", "first"}
        ``size``: number of members; ``count``: members meeting ``expression``; ``first``: the value of the
        person column ``source`` of the member numbered first (the head).
    expression : str or None
        For ``count``: a condition over persons in the control dialect (``persons.ESR.isin([1, 2, 4, 5])``).
    source : str or None
        For ``first``: the person column (``AGEP``).
    """

    column: str
    how: Literal["size", "count", "first"]
    expression: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class HouseholdRule:
    """A condition every unit of a household population must meet (a householder is 15 or older).

    Attributes
    ----------
    name : str
    unit : {"households", "persons"}
    expression : str
        In the control dialect (``households.AGEHOH >= 15``); a unit whose columns it reads are unknown (empty) is
        not checked.
    """

    name: str
    unit: str
    expression: str


@dataclass(frozen=True)
class HouseholdProject:
    """Everything a household synthesis needs: zones, controls per zone, and (optionally) a seed sample.

    Attributes
    ----------
    name : str
        Shown in reports.
    geography : Geography
    seed : SeedSample
    controls : list of Control
        In the order of the control file.
    total_control : str
        Name of the control giving households per zone (PopulationSim's ``total_hh_control``).
    max_expansion_factor : float or None
        Upper bound of a household's weight as a multiple of its seed weight share, if given.
    output : dict
        PopulationSim's ``output_synthetic_population`` (file names and columns), empty for other projects.
    source : {"populationsim", "synthor"}
    warnings : list of str
    derived : tuple of Derivation
        Household columns computed from the members, when the project declares them (a Synthor project's
        ``[[derived]]``); empty otherwise (then :func:`infer_derivations` finds them in the seed).
    rules : tuple of HouseholdRule
        Conditions the synthetic households and persons are checked against (a Synthor project's ``[[rules]]``).
    """

    name: str
    geography: Geography
    seed: SeedSample
    controls: list[Control]
    total_control: str
    max_expansion_factor: float | None = None
    output: dict = field(default_factory=dict)
    source: Literal["populationsim", "synthor"] = "synthor"
    warnings: list[str] = field(default_factory=list)
    derived: tuple[Derivation, ...] = ()
    rules: tuple[HouseholdRule, ...] = ()

    @property
    def total(self) -> Control:
        """The control of households per zone."""
        return next(c for c in self.controls if c.name == self.total_control)

    def households_per_zone(self) -> npt.NDArray[np.int64]:
        """Households of every lowest-level zone (rounded total control), shape (n_zones,)."""
        total = self.total
        per_zone = total.totals[self.geography.parent_index(total.level)]
        return np.rint(per_zone).astype(np.int64)


def derive_from_members(
    persons: pd.DataFrame,
    n_households: int,
    household: str = "_household",
    how: Literal["size", "count", "first"] = "size",
    condition: Callable[[pd.DataFrame], np.ndarray] | None = None,
    column: str | None = None,
    order: str | None = None,
) -> npt.NDArray:
    """A household variable computed from its members (DESIGN §8: consistency by construction).

    Parameters
    ----------
    persons : DataFrame, one row per member, with ``household`` (int64 row of its household)
    n_households : int
    how : {"size", "count", "first"}
        ``size``: number of members; ``count``: members meeting ``condition`` (workers); ``first``: ``column``
        of the member that sorts first by ``order`` (the head's age when ``order`` is the person number).
    condition : callable, persons frame -> ndarray of bool, for ``count``
    column, order : str, for ``first``

    Returns
    -------
    ndarray, shape (n_households,): int64 for size and count; the column's dtype for ``first`` (NaN where a
    household has no member).
    """
    rows = persons[household].to_numpy()
    if how == "size":
        return np.bincount(rows, minlength=n_households).astype(np.int64)
    if how == "count":
        if condition is None:
            raise ValueError("derive_from_members(how='count') needs a condition")
        return np.bincount(rows, weights=condition(persons).astype(np.float64), minlength=n_households).astype(np.int64)
    if column is None:
        raise ValueError("derive_from_members(how='first') needs a column")
    ordered = persons.sort_values([household] + ([order] if order else []), kind="stable")
    first = ordered.drop_duplicates(household)
    out = pd.Series(
        np.nan,
        index=range(n_households),
        dtype="float64" if pd.api.types.is_numeric_dtype(persons[column]) else "object",
    )
    out.iloc[first[household].to_numpy()] = first[column].to_numpy()
    return out.to_numpy()


def _value_text(value) -> str:
    """A person value as written in a control expression (integral floats as integers)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return repr(value.item() if hasattr(value, "item") else value)


def infer_derivations(seed: SeedSample, columns, max_values: int = 40) -> list[Derivation]:
    """Find which household columns are computed from the members, by checking every sample household.

    A column is ``size`` when it equals the number of members of every household; ``first`` when it equals a
    person column of the member numbered first (``person_number``); ``count`` when it equals the number of
    members whose value of one person column (at most ``max_values`` distinct values) lies in a set. A household
    column that matches none of these on every household is not derived. Only the formula is learned here; no
    record is copied.

    Parameters
    ----------
    seed : SeedSample
    columns : iterable of str
        Household columns to examine (those the controls read); missing or non-numeric ones are skipped.
    max_values : int
        Person columns with more distinct values are not tried for ``count``.

    Returns
    -------
    list of Derivation, in the order of ``columns``.
    """
    households, persons = seed.households, seed.persons
    n = len(households)
    if n == 0 or persons.empty:
        return []
    rows = persons["_household"].to_numpy()
    size = np.bincount(rows, minlength=n)
    skip = {seed.household_id, "_household", seed.person_number, seed.seed_level, seed.weight}
    person_columns = [c for c in persons.columns if c not in skip and pd.api.types.is_numeric_dtype(persons[c])]
    first_rows = persons.drop_duplicates("_household")  # persons are sorted by household then person number
    first = {c: pd.Series(np.nan, index=range(n)) for c in person_columns}
    for c in person_columns:
        first[c].iloc[first_rows["_household"].to_numpy()] = first_rows[c].to_numpy(dtype=np.float64)
    indicator = {}
    for c in person_columns:
        values = persons[c].to_numpy(dtype=np.float64)
        distinct = np.unique(values[~np.isnan(values)])
        if 0 < distinct.size <= max_values:
            indicator[c] = (
                distinct,
                np.column_stack(
                    [np.bincount(rows, weights=(values == v).astype(np.float64), minlength=n) for v in distinct]
                ),
            )
    found = []
    for column in columns:
        if column not in households.columns or column in skip or not pd.api.types.is_numeric_dtype(households[column]):
            continue
        target = households[column].to_numpy(dtype=np.float64)
        if np.array_equal(target, size):
            found.append(Derivation(column, "size"))
            continue
        match = next((c for c in person_columns if np.array_equal(first[c].to_numpy(), target, equal_nan=True)), None)
        if match is not None:
            found.append(Derivation(column, "first", source=match))
            continue
        if np.isnan(target).any():
            continue
        for c, (distinct, counts) in indicator.items():
            x, *_ = np.linalg.lstsq(counts, target, rcond=None)
            chosen = np.rint(x) == 1
            if not chosen.any() or chosen.all() or not np.array_equal(counts[:, chosen].sum(axis=1), target):
                continue
            values = ", ".join(_value_text(v) for v in distinct[chosen])
            found.append(Derivation(column, "count", expression=f"persons.{c}.isin([{values}])"))
            break
    return found


RESERVED_OUTPUTS = ("households.csv", "persons.csv", "report.json")  # Synthor's own output files


def output_problems(output: dict, shown: str, key: str) -> list:
    """Problems of PopulationSim's output settings: each file name must be a plain ``name.csv`` (no folder, not
    one of Synthor's own outputs nor a ``summary_`` file), since outputs are written beside each other.

    Parameters
    ----------
    output : dict
        ``output_synthetic_population`` (``households``/``persons`` each with ``filename`` and ``columns``).
    shown, key : str
        The file and the key named in the problems.
    """
    import re

    from .errors import Problem

    problems = []
    for unit in ("households", "persons"):
        spec = output.get(unit) if isinstance(output, dict) else None
        name = spec.get("filename") if isinstance(spec, dict) else None
        if name is None:
            continue
        text = str(name)
        if (
            not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.csv", text)
            or text.lower() in RESERVED_OUTPUTS
            or text.lower().startswith("summary_")
        ):  # case-blind: Households.csv is households.csv elsewhere
            problems.append(
                Problem(
                    shown,
                    f"expected a plain file name ending in .csv, not "
                    f"{', '.join(RESERVED_OUTPUTS)} nor summary_*.csv, got {text[:80]!r}",
                    column=f"{key}.{unit}.filename",
                )
            )
    return problems
