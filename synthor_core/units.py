"""Units: households and their members (DESIGN §8), the sample, and candidate households.

A household project declares a chain ``households ⊃ persons``; every control counts one unit. A household is one row
of a household table; its members are the rows of the person table pointing to it. Person controls reach households
through the **incidence**: the number of a household's members meeting the control's condition (PopulationSim's list
balancer). The chain is a tuple of unit names, so a third unit under persons (trips) is one more link, not a new code
path.

Two collections of households share that shape: the :class:`Sample` (the micro-data a project may bring: ACS PUMS, a
travel survey) and the :class:`Candidates` (the distinct profiles a synthesis weighs and places: the sample's
households, or households a prior built). Derived household variables are computed from the members
(:func:`derive_from_members`), never drawn on their own, so a household always agrees with its members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from .expressions import Condition, compile_condition

HOUSEHOLDS = "households"
PERSONS = "persons"
UNIT_CHAIN = (HOUSEHOLDS, PERSONS)  # top unit first; each unit's rows name their parent's id
HOUSEHOLD_ROW = "_household"  # column of a person table: the row of the person's household (int64)
MEMBER = "per_num"  # column of a candidate person: the member's number in the household, 1 for the head
MINED_PREFIX = "sample: "  # name prefix of the rules found on a sample (codebook.mine_rules)


@dataclass(frozen=True)
class Sample:
    """A micro-sample of households with their members (ACS PUMS, a travel survey): PopulationSim's seed.

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
        Geography level whose zone id ``households`` carry (PopulationSim's seed geography, a PUMA): a sample
        household is placed only in zones of its zone.
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

    def numbered_persons(self) -> pd.DataFrame:
        """The persons with ``per_num`` numbering the members (the sample's ``person_number`` renamed, or 1, 2, ...
        in the sample's order within each household)."""
        persons = self.persons
        if self.person_number and self.person_number != MEMBER:
            return persons.drop(columns=[MEMBER], errors="ignore").rename(columns={self.person_number: MEMBER})
        if MEMBER in persons.columns:
            return persons
        rows = persons[HOUSEHOLD_ROW].to_numpy()
        return persons.assign(**{MEMBER: np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") + 1})


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
    condition : Condition or None
        For ``count``: a condition over persons in the table dialect (``persons.ESR.isin([1, 2, 4, 5])``), compiled
        once.
    source : str or None
        For ``first``: the person column (``AGEP``).
    """

    column: str
    how: Literal["size", "count", "first"]
    condition: Condition | None = None
    source: str | None = None

    @property
    def expression(self) -> str | None:
        """The ``count`` condition as written."""
        return self.condition.expression if self.condition is not None else None

    def values(self, persons: pd.DataFrame, n_households: int) -> npt.NDArray:
        """The column for ``n_households`` households from their members (``persons`` with ``_household`` and
        ``per_num``); see :func:`derive_from_members`."""
        return derive_from_members(
            persons, n_households, how=self.how, condition=self.condition, column=self.source, order=MEMBER
        )

    def describe(self) -> str:
        """``NWESR = count of persons.ESR.isin([1, 2, 4])`` in words."""
        if self.how == "size":
            return "number of members"
        if self.how == "count":
            return f"members meeting {self.expression}"
        return f"the head's {self.source}"


@dataclass(frozen=True)
class HouseholdRule:
    """A condition every unit of a household population must meet (a householder is 15 or older).

    Attributes
    ----------
    name : str
    unit : {"households", "persons"}
    condition : Condition
        In the table dialect (``households.AGEHOH >= 15``), compiled once.
    empty_is_value : bool
        False (a project's rule): a unit whose columns the rule reads are unknown (empty) is not checked. True (a rule
        found on the sample, :func:`synthor_core.codebook.mine_rules`): an empty value is one of the column's values
        and is checked like any other.
    """

    name: str
    unit: str
    condition: Condition
    empty_is_value: bool = False

    @property
    def expression(self) -> str:
        """The condition as written."""
        return self.condition.expression

    @property
    def mined(self) -> bool:
        """Whether the rule was found on the sample (:func:`synthor_core.codebook.mine_rules`)."""
        return self.empty_is_value and self.name.startswith(MINED_PREFIX)

    def broken(self, frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Where a unit of ``frame`` (households or persons, as ``unit``) breaks the rule; a unit whose columns the
        rule reads are unknown (empty) breaks nothing. A frame without one of those columns breaks nothing either."""
        columns = list(self.condition.columns)
        if any(c not in frame.columns for c in columns):
            return np.zeros(len(frame), dtype=bool)
        if self.empty_is_value:
            return ~self.condition(frame)
        known = frame[columns].notna().all(axis=1).to_numpy()
        return ~self.condition(frame) & known


@dataclass(frozen=True)
class Candidates:
    """Candidate households with their members: the distinct profiles a synthesis weighs and places (DESIGN §8, §10).

    The sample's households are the seed prior's candidates; ``maxent`` and the LLM build others. A candidate is
    placed only in zones of its **block** (its zone at the sample's level, PopulationSim's seed geography).

    Attributes
    ----------
    households : DataFrame
        One row per candidate, index 0..n-1: the household id column (the sample's id, or an id given by the prior)
        and the household columns.
    persons : DataFrame
        One row per member, sorted by household then member: person columns, ``_household`` (int64, the row of its
        household) and ``per_num`` (int64, 1 for the head).
    block : ndarray of int64, shape (n,)
        Position of each candidate's zone at the sample level (``Geography.zones(level)``).
    weight : ndarray of float64, shape (n,)
        Starting weight: the sample weight, or the households a model candidate stands for (> 0).
    source : ndarray of object (str), shape (n,)
        The prior each candidate came from (``"seed"``, ``"maxent"``, ``"llm"``).
    household_id : str
        The id column of ``households``.
    sample : bool, shape (n,)
        Whether each candidate is a real sample household (its weight bounded by ``max_expansion_factor``).
    """

    households: pd.DataFrame
    persons: pd.DataFrame
    block: npt.NDArray[np.int64]
    weight: npt.NDArray[np.float64]
    source: npt.NDArray[np.object_]
    household_id: str
    sample: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __len__(self) -> int:
        return len(self.households)

    def frame(self, unit: str) -> pd.DataFrame:
        """The households or the persons."""
        return self.households if unit == HOUSEHOLDS else self.persons

    def members_per_household(self) -> npt.NDArray[np.int64]:
        """Number of members of each candidate, shape (n,)."""
        return np.bincount(self.persons[HOUSEHOLD_ROW].to_numpy(), minlength=len(self)).astype(np.int64)

    def take(self, rows: npt.ArrayLike) -> Candidates:
        """The candidates at ``rows`` (int64 positions, ascending) with their members, renumbered 0..k-1."""
        rows = np.asarray(rows, dtype=np.int64)
        position = np.full(len(self), -1, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        owner = position[self.persons[HOUSEHOLD_ROW].to_numpy()]
        persons = self.persons[owner >= 0].assign(**{HOUSEHOLD_ROW: owner[owner >= 0]})
        return replace(
            self,
            households=self.households.iloc[rows].reset_index(drop=True),
            persons=persons.reset_index(drop=True),
            block=self.block[rows],
            weight=self.weight[rows],
            source=self.source[rows],
            sample=self._sample()[rows],
        )

    def _sample(self) -> npt.NDArray[np.bool_]:
        return self.sample if self.sample.size == len(self) else np.zeros(len(self), dtype=bool)

    @staticmethod
    def join(parts: list[Candidates]) -> Candidates:
        """Several collections of candidates as one, in order (one concatenation; members renumbered)."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            raise ValueError("join needs at least one candidate")
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        persons = [
            p.persons.assign(**{HOUSEHOLD_ROW: p.persons[HOUSEHOLD_ROW].to_numpy() + k}) for p, k in zip(parts, offsets)
        ]
        first = parts[0]
        return replace(
            first,
            households=pd.concat([p.households for p in parts], ignore_index=True),
            persons=pd.concat(persons, ignore_index=True),
            block=np.concatenate([p.block for p in parts]),
            weight=np.concatenate([p.weight for p in parts]),
            source=np.concatenate([p.source for p in parts]),
            sample=np.concatenate([p._sample() for p in parts]),
        )

    def concat(self, other: Candidates) -> Candidates:
        """These candidates, then ``other``'s (members renumbered; columns missing on one side left empty)."""
        if not len(other):
            return self
        if not len(self):
            return other
        n = len(self)
        persons = other.persons.assign(**{HOUSEHOLD_ROW: other.persons[HOUSEHOLD_ROW].to_numpy() + n})
        return replace(
            self,
            households=pd.concat([self.households, other.households], ignore_index=True),
            persons=pd.concat([self.persons, persons], ignore_index=True),
            block=np.concatenate([self.block, other.block]),
            weight=np.concatenate([self.weight, other.weight]),
            source=np.concatenate([self.source, other.source]),
            sample=np.concatenate([self._sample(), other._sample()]),
        )


def empty_candidates(household_id: str) -> Candidates:
    """No candidate (a prior that wrote nothing valid)."""
    return Candidates(
        pd.DataFrame({household_id: pd.Series(dtype=np.int64)}),
        pd.DataFrame({HOUSEHOLD_ROW: pd.Series(dtype=np.int64), MEMBER: pd.Series(dtype=np.int64)}),
        np.zeros(0, np.int64),
        np.zeros(0),
        np.zeros(0, dtype=object),
        household_id,
        np.zeros(0, dtype=bool),
    )


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


def infer_derivations(seed: Sample, columns, max_values: int = 40) -> list[Derivation]:
    """Find which household columns are computed from the members, by checking every sample household.

    A column is ``size`` when it equals the number of members of every household; ``first`` when it equals a
    person column of the member numbered first (``person_number``); ``count`` when it equals the number of
    members whose value of one person column (at most ``max_values`` distinct values) lies in a set. A household
    column that matches none of these on every household is not derived. Only the formula is learned here; no
    record is copied.

    Parameters
    ----------
    seed : Sample
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
            condition = compile_condition(f"persons.{c}.isin([{values}])", PERSONS, persons.columns, column)
            found.append(Derivation(column, "count", condition=condition))
            break
    return found
