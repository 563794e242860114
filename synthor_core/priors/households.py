"""Household priors without records: the ``maxent`` candidate households (DESIGN §8, §10).

The seed prior's candidate households are the sample's own. Without using any sample record, ``maxent``
builds candidates from the controls alone:

1. Every column a control reads is cut into **categories** where the controls on it agree (``NP == 1``,
   ``NP >= 4``, ...; values no control counts form one more category). A category's mass is the maximum-entropy
   solution of the control totals (raking from equal masses: exact when the controls on a column partition it).
2. The **household joint** over the household columns is the maximum-entropy table with those one-way margins
   (summed over the zones of each seed zone) and with structural zeros where a count of members cannot fit in
   the household's size (three workers in a two-person household).
3. Candidate households are drawn from the joint; each is given **members**: as many as its size, the head
   first, the members counted by a count column (workers) chosen at random, each person column of the person
   controls drawn from its categories' shares among all persons.
4. Derived household columns (size, workers, head's age; :class:`synthor_core.units.Derivation`) are then
   computed from the members, so every household agrees with its members by construction.

Balancing and integerization then treat these candidates exactly as sample households. What the sample gives
``maxent``: its column names, which values are integers, and the derivations; never a record's values.

Values inside a category: uniform over its whole numbers (or reals); an open or very wide top category gets an
exponential tail whose mean is the width of the category below it, a very wide bottom category the width of the
category above it (a placeholder until the smooth densities of issue 11).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..errors import Problem, RuleError, TargetValidationError
from ..expressions import compile_condition
from ..units import HOUSEHOLDS, PERSONS, Control, HouseholdProject, SeedSample, derive_from_members

POOL_ID = "hh_id"
POOL_PERSON_NUMBER = "per_num"
PRIOR_COLUMN = "_prior"  # column of the candidates' households naming the prior each came from


@dataclass(frozen=True)
class Category:
    """One category of a column: the pieces of the number line on which the column's conditions agree.

    Attributes
    ----------
    signature : tuple of bool
        Whether each condition on the column holds inside the category (in the order of the conditions).
    pieces : tuple of (low, high, low_closed, high_closed)
        Intervals of float64 bounds (infinite bounds allowed); a point is ``(k, k, True, True)``.
    integer : bool
        Whether the column holds whole numbers.
    """

    signature: tuple[bool, ...]
    pieces: tuple[tuple[float, float, bool, bool], ...]
    integer: bool

    @property
    def low(self) -> float:
        """Smallest value in the category (whole numbers: the smallest whole number)."""
        lo, _, closed, _ = self.pieces[0]
        if not self.integer or not np.isfinite(lo):
            return lo
        return lo if closed else np.floor(lo) + 1

    @property
    def high(self) -> float:
        """Largest value in the category."""
        _, hi, _, closed = self.pieces[-1]
        if not self.integer or not np.isfinite(hi):
            return hi
        return hi if closed else np.ceil(hi) - 1

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in one of the pieces."""
        return any(
            (lo < value or (closed_lo and lo == value)) and (value < hi or (closed_hi and value == hi))
            for lo, hi, closed_lo, closed_hi in self.pieces
        )


def _constants(expression: str) -> list[float]:
    """Every number written in a control expression (``np.inf`` as inf, ``-5`` as -5)."""
    found = []
    tree = ast.parse(expression, mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            if isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
                found.append(-float(node.operand.value))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        ):
            found.append(float(node.value))
        elif isinstance(node, ast.Attribute) and node.attr == "inf":
            found.append(np.inf)
    return found


def column_categories(column: str, table: str, expressions: list[str], integer: bool) -> list[Category]:
    """Cut a column into categories on which every given condition is constant.

    Parameters
    ----------
    column : str
    table : {"households", "persons"}
    expressions : list of str
        Conditions reading only ``column`` (control expressions, or a derivation's count condition).
    integer : bool

    Returns
    -------
    list of Category, ordered by their smallest value; empty pieces (no whole number inside) left out.

    Raises
    ------
    RuleError
        When an expression is outside the whitelist.
    """
    points = sorted({abs(v) if v == -0.0 else v for e in expressions for v in _constants(e) if np.isfinite(v)})
    pieces = []
    bounds = [-np.inf] + points + [np.inf]
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        if i > 0:
            pieces.append((lo, lo, True, True))
        pieces.append((lo, hi, False, False))
    probes, kept = [], []
    for lo, hi, closed_lo, closed_hi in pieces:
        if lo == hi:
            probe = lo
        elif not np.isfinite(lo) and not np.isfinite(hi):
            probe = 0.0
        elif not np.isfinite(lo):
            probe = np.ceil(hi) - 1 if integer else hi - 1
        elif not np.isfinite(hi):
            probe = np.floor(lo) + 1 if integer else lo + 1
        elif integer:
            if np.floor(lo) + 1 > np.ceil(hi) - 1:
                continue
            probe = np.floor(lo) + 1
        else:
            probe = (lo + hi) / 2
        if integer and not float(probe).is_integer():
            continue
        probes.append(probe)
        kept.append((lo, hi, closed_lo, closed_hi))
    frame = pd.DataFrame({column: np.asarray(probes, dtype=np.float64)})
    tests = [compile_condition(e, table, [column], column) for e in expressions]
    signatures = (
        [tuple(bool(v) for v in row) for row in np.column_stack([t(frame) for t in tests])]
        if tests
        else [() for _ in probes]
    )
    order: dict[tuple[bool, ...], list] = {}
    for signature, piece in zip(signatures, kept):
        order.setdefault(signature, []).append(piece)
    return [Category(s, tuple(p), integer) for s, p in order.items()]


def _draw_values(
    category: Category, n: int, rng: np.random.Generator, below: float | None, above: float | None
) -> npt.NDArray[np.float64]:
    """``n`` values inside a category (see the module docstring); ``below``/``above``: neighbours' widths."""
    if n == 0:
        return np.zeros(0)
    lo, hi = category.low, category.high
    if not any(category.signature):
        # values no condition counts: one plain value (0 when allowed, else the category's edge)
        return np.full(n, 0.0 if category.contains(0.0) else (lo if np.isfinite(lo) else hi))
    width = hi - lo
    wide_top = not np.isfinite(hi) or (below is not None and width > defaults.HOUSEHOLD_WIDE_BIN * below)
    wide_bottom = not np.isfinite(lo) or (above is not None and width > defaults.HOUSEHOLD_WIDE_BIN * above)
    if wide_top and np.isfinite(lo):
        # exponential tail above the category's floor, truncated at HOUSEHOLD_TAIL_CAP means
        scale = below or 1.0
        u = rng.random(n)
        draws = lo - scale * np.log1p(-u * (1 - np.exp(-defaults.HOUSEHOLD_TAIL_CAP)))
        return np.floor(draws) if category.integer else draws
    if wide_bottom and np.isfinite(hi):
        lo = max(lo, hi - (above or 1.0) + (1 if category.integer else 0))
    if not np.isfinite(lo):
        return np.full(n, hi)
    if category.integer:
        if int(hi) - int(lo) + 1 <= defaults.HOUSEHOLD_MAX_ENUMERATED:
            values = np.arange(int(lo), int(hi) + 1, dtype=np.float64)
            values = values[[category.contains(v) for v in values]]
            return rng.choice(values, n)
        return rng.integers(int(lo), int(hi) + 1, n).astype(np.float64)
    points = [p[0] for p in category.pieces if p[0] == p[1]]
    if len(points) == len(category.pieces):
        return rng.choice(np.asarray(points, dtype=np.float64), n)
    return rng.uniform(lo, hi, n)


def _draw_in(
    categories: list[Category],
    which: npt.NDArray[np.int64],
    rng: np.random.Generator,
    low: npt.NDArray[np.float64] | None = None,
    high: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """A value for every entry of ``which`` (category index), optionally clipped to [low, high] per entry."""
    out = np.zeros(which.size)
    widths = [c.high - c.low + (1 if c.integer else 0) for c in categories]
    finite = [w if np.isfinite(w) else None for w in widths]
    for k, category in enumerate(categories):
        at = np.flatnonzero(which == k)
        below = next((finite[j] for j in range(k - 1, -1, -1) if finite[j] and any(categories[j].signature)), None)
        above = next(
            (finite[j] for j in range(k + 1, len(categories)) if finite[j] and any(categories[j].signature)), None
        )
        out[at] = _draw_values(category, at.size, rng, below, above)
    if low is not None:
        out = np.maximum(out, low)
    if high is not None:
        out = np.minimum(out, high)
    return out


def _category_masses(
    categories: list[Category],
    totals: npt.NDArray[np.float64],
    total: float,
    allowed: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.float64]:
    """Maximum-entropy masses of the categories: sum over the categories a condition holds in = its total.

    Raking from equal masses over the allowed categories, with the grand ``total`` as one more condition.
    """
    k = len(categories)
    member = np.array([c.signature for c in categories], dtype=bool).reshape(k, -1)
    mass = np.ones(k) if allowed is None else allowed.astype(np.float64)
    mass *= total / max(mass.sum(), 1e-300)
    for _ in range(defaults.RAKE_MAX_ITER):
        before = mass.copy()
        for j in range(member.shape[1]):
            current = mass[member[:, j]].sum()
            if current > 0:
                mass[member[:, j]] *= totals[j] / current
        outside = ~member.any(axis=1)
        counted = mass[~outside].sum()
        if outside.any() and mass[outside].sum() > 0:
            mass[outside] *= max(total - counted, 0.0) / mass[outside].sum()
        elif mass.sum() > 0:
            mass *= total / mass.sum()
        if np.abs(mass - before).max() <= 1e-9 * max(total, 1.0):
            break
    return mass


def _rake_joint(joint: np.ndarray, margins: list[npt.NDArray[np.float64] | None], total: float) -> np.ndarray:
    """Iterative proportional fitting of an n-way table to its one-way margins (None: that axis is free; zeros
    stay zero), the table summing to ``total``."""
    joint = joint * (total / max(joint.sum(), 1e-300))
    for _ in range(defaults.RAKE_MAX_ITER):
        worst = 0.0
        for axis, margin in enumerate(margins):
            if margin is None:
                continue
            other = tuple(a for a in range(joint.ndim) if a != axis)
            current = joint.sum(axis=other)
            factor = np.divide(margin, current, out=np.zeros_like(margin), where=current > 0)
            shape = [1] * joint.ndim
            shape[axis] = -1
            joint = joint * factor.reshape(shape)
            worst = max(worst, float(np.abs(current - margin).max()))
        if worst <= 1e-6 * max(total, 1.0):
            break
    return joint


@dataclass(frozen=True)
class _Column:
    name: str
    table: str
    categories: list[Category]
    controls: list[int]  # indices of project.controls on this column, in signature order


def _single_column(project: HouseholdProject) -> tuple[dict[tuple[str, str], list[int]], list[Problem]]:
    by_column: dict[tuple[str, str], list[int]] = {}
    problems = []
    for i, c in enumerate(project.controls):
        if len(c.columns) != 1:
            problems.append(
                Problem(
                    "controls",
                    f"the maxent prior needs controls on one column each; control "
                    f'"{c.name}" reads {", ".join(c.columns) or "no column"}',
                    column="expression",
                )
            )
            continue
        by_column.setdefault((c.unit, c.columns[0]), []).append(i)
    return by_column, problems


def is_integer_column(frame: pd.DataFrame, column: str) -> bool:
    """Whether a sample column holds whole numbers only (True for a column the frame lacks); only this fact about
    the sample's values is used by the priors that build households without copying them."""
    if column not in frame.columns:
        return True
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    return bool(np.all(values == np.floor(values)))


def _zone_totals(
    project: HouseholdProject,
    control: Control,
    per_zone: npt.NDArray[np.int64],
    seed_zone_of_zone: npt.NDArray[np.int64],
    n_seed_zones: int,
) -> npt.NDArray[np.float64]:
    """A control's totals summed per seed zone (upper-level totals shared by households per zone)."""
    parent = project.geography.parent_index(control.level)
    households_of_group = np.bincount(parent, weights=per_zone.astype(np.float64), minlength=control.totals.size)
    share = np.divide(
        per_zone, households_of_group[parent], out=np.zeros(per_zone.size), where=households_of_group[parent] > 0
    )
    # weighted: float64 (numpy's stubs type every bincount as integer)
    return np.bincount(seed_zone_of_zone, weights=control.totals[parent] * share, minlength=n_seed_zones).astype(
        np.float64, copy=False
    )


def maxent_households(
    project: HouseholdProject, rng: np.random.Generator, pool: int = defaults.HOUSEHOLD_MAXENT_POOL
) -> tuple[HouseholdProject, dict]:
    """The project with its seed sample replaced by ``maxent`` candidate households (see the module docstring).

    Parameters
    ----------
    project : HouseholdProject
        Its seed sample gives column names, whole-number columns and the derivations (``project.derived``, else
        :func:`synthor_core.units.infer_derivations`); no sample value is copied.
    rng : numpy Generator
    pool : int
        Candidate households per seed zone.

    Returns
    -------
    (HouseholdProject, dict)
        The project whose ``seed`` holds the candidates (``hh_id`` from 1, weight column = households they stand
        for, seed zone, every household column a control or derivation reads; persons with ``per_num`` from 1
        and every person column a control or derivation reads) and whose controls' incidence is recomputed on
        them; and notes for the report (categories per column, derivations, candidates).

    Raises
    ------
    TargetValidationError
        When a control reads several columns, or a joint of household columns would exceed
        ``defaults.HOUSEHOLD_MAXENT_MAX_CELLS`` cells.
    """
    from ..units import infer_derivations

    seed, geography = project.seed, project.geography
    by_column, problems = _single_column(project)
    if problems:
        raise TargetValidationError(problems)
    household_columns = [col for (unit, col) in by_column if unit == HOUSEHOLDS]
    derived = {d.column: d for d in (project.derived or infer_derivations(seed, household_columns))}
    size_column = next((d.column for d in derived.values() if d.how == "size"), None)
    columns: dict[tuple[str, str], _Column] = {}
    for (unit, col), idx in by_column.items():
        frame = seed.households if unit == HOUSEHOLDS else seed.persons
        expressions = [project.controls[i].expression for i in idx]
        categories = column_categories(col, unit, expressions, is_integer_column(frame, col))
        if col == size_column:
            categories = [c for c in categories if c.high >= 1]
        columns[(unit, col)] = _Column(col, unit, categories, idx)
    derivation_categories = {}
    for d in derived.values():
        if d.how == "count" and d.expression:
            person_column = compile_condition(d.expression, PERSONS, seed.persons.columns, d.column).columns
            if len(person_column) != 1:
                raise TargetValidationError(
                    [
                        Problem(
                            "derived",
                            f"the maxent prior needs a count over one person column; {d.column} counts {d.expression}",
                            column=d.column,
                        )
                    ]
                )
            derivation_categories[d.column] = (
                person_column[0],
                column_categories(
                    person_column[0], PERSONS, [d.expression], is_integer_column(seed.persons, person_column[0])
                ),
            )

    per_zone = project.households_per_zone()
    seed_zones = geography.zones(seed.seed_level)
    seed_zone_of_zone = geography.parent_index(seed.seed_level)
    total_index = next(i for i, c in enumerate(project.controls) if c.name == project.total_control)
    # every household column a control reads is an axis of the joint (the total control's too: its one
    # category takes every household), except the weight column, which the candidates' weights fill
    household_axes = [key for key in columns if key[0] == HOUSEHOLDS and key[1] != seed.weight]
    cells = int(np.prod([len(columns[k].categories) for k in household_axes])) if household_axes else 1
    if cells > defaults.HOUSEHOLD_MAXENT_MAX_CELLS:
        raise TargetValidationError(
            [
                Problem(
                    "controls",
                    f"the maxent household joint would have {cells:,} cells (at most "
                    f"{defaults.HOUSEHOLD_MAXENT_MAX_CELLS:,}); use the seed prior",
                )
            ]
        )
    zone_totals = [_zone_totals(project, c, per_zone, seed_zone_of_zone, len(seed_zones)) for c in project.controls]

    households_parts, persons_parts = [], []
    next_id = 1
    for s, zone_id in enumerate(seed_zones):
        households_here = float(zone_totals[total_index][s])
        if households_here <= 0:
            continue
        margins, axes_categories = [], []
        for key in household_axes:
            axis_column = columns[key]
            totals = np.array([zone_totals[i][s] for i in axis_column.controls])
            margin = _category_masses(axis_column.categories, totals, households_here)
            margins.append(margin if margin.sum() > 0 else None)  # controls all 0 here: no information
            axes_categories.append(axis_column.categories)
        joint = np.ones([len(c) for c in axes_categories]) if axes_categories else np.ones(())
        joint = _structural_zeros(joint, household_axes, axes_categories, derived, size_column)
        joint = _rake_joint(joint, margins, households_here) if margins else joint
        if joint.sum() <= 0:  # margins that no cell can meet together: fall back to the structure alone
            joint = _structural_zeros(np.ones_like(joint), household_axes, axes_categories, derived, size_column)
        cell = _cells_of_candidates(joint.reshape(-1) / joint.sum(), pool, rng)
        concentrated = [
            (key, k)
            for key, spec in columns.items()
            if key[0] == PERSONS
            for k, c in enumerate(spec.categories)
            if any(c.signature)
        ]
        extra = int(round(pool * defaults.HOUSEHOLD_CONCENTRATED_SHARE))
        if concentrated and extra:
            # households whose members all fall in one person category (a hall of students, a family of
            # nurses): without them no zone far from the average mix of persons could be reached
            cell = np.concatenate(
                [cell] + [_cells_of_candidates(joint.reshape(-1) / joint.sum(), extra, rng) for _ in concentrated]
            )
        n = cell.size
        focus = (
            np.concatenate([np.full(pool, -1)] + [np.full(extra, j) for j in range(len(concentrated))])
            if (concentrated and extra)
            else np.full(n, -1)
        )
        which = np.unravel_index(cell, joint.shape) if axes_categories else ()
        households = pd.DataFrame({POOL_ID: np.arange(next_id, next_id + n, dtype=np.int64)})
        households[seed.seed_level] = zone_id
        households[seed.weight] = households_here / n
        values = {}
        if size_column is not None and (HOUSEHOLDS, size_column) in household_axes:
            a = household_axes.index((HOUSEHOLDS, size_column))
            values[size_column] = _draw_in(
                axes_categories[a], which[a], rng, low=np.ones(n), high=np.full(n, defaults.HOUSEHOLD_MAX_SIZE)
            )
        for a, key in enumerate(household_axes):
            col = key[1]
            if col == size_column:
                continue
            high = (
                values[size_column]
                if (size_column in values and col in derived and derived[col].how == "count")
                else None
            )
            values[col] = _draw_in(axes_categories[a], which[a], rng, high=high)
        size: np.ndarray | None = values.get(size_column) if size_column is not None else None
        if size is None:
            mean_persons = _persons_per_household(project, zone_totals, s, households_here)
            size = 1 + rng.poisson(max(mean_persons - 1, 0.0), n)
        size = size.astype(np.int64)
        persons = _members(
            project,
            size,
            values,
            derived,
            derivation_categories,
            columns,
            zone_totals,
            s,
            households_here,
            rng,
            focus,
            concentrated,
        )
        persons[POOL_ID] += next_id - 1
        for col, v in values.items():
            if col not in derived:
                households[col] = v
        persons_parts.append(persons)
        households_parts.append(households)
        next_id += n
    if not households_parts:
        raise TargetValidationError([Problem("controls", "no zone has households: nothing to synthesize")])
    households = pd.concat(households_parts, ignore_index=True)
    persons = pd.concat(persons_parts, ignore_index=True)
    persons["_household"] = (persons[POOL_ID] - 1).astype(np.int64)
    derive_household_columns(households, persons, derived.values())
    for frame in (households, persons):
        for col in frame.columns:
            if (
                col != "_household"
                and frame[col].dtype == np.float64
                and frame[col].notna().all()
                and (frame[col] == np.floor(frame[col])).all()
                and is_integer_column(seed.households if frame is households else seed.persons, col)
                and col != seed.weight
            ):
                frame[col] = frame[col].astype(np.int64)
    sample = SeedSample(households, persons, POOL_ID, POOL_PERSON_NUMBER, seed.weight, seed.seed_level)
    controls = [with_incidence(c, sample) for c in project.controls]
    warnings = []
    if size_column is None and any(unit == HOUSEHOLDS for unit, _ in by_column):
        warnings.append(
            "no household column of the sample equals its number of members, so the candidates' "
            "numbers of members are drawn apart from their household columns (a size control is not "
            "met through the members)"
        )
    notes = {
        "candidates": int(len(households)),
        "candidate_persons": int(len(persons)),
        "warnings": warnings,
        "derived": {
            d.column: d.how + (f" {d.expression}" if d.expression else "") + (f" of {d.source}" if d.source else "")
            for d in derived.values()
        },
        "categories": {f"{unit}.{col}": len(c.categories) for (unit, col), c in columns.items()},
        "joint_cells": cells,
    }
    # max_expansion_factor guards against leaning on one real sample household; a candidate is already a draw
    # of the model, so it does not apply
    return replace(
        project, seed=sample, controls=controls, derived=tuple(derived.values()), max_expansion_factor=None
    ), notes


def derive_household_columns(households: pd.DataFrame, persons: pd.DataFrame, derived) -> None:
    """Set every derived household column (:class:`~synthor_core.units.Derivation`: size, count of members meeting
    a condition, the head's value) from the members, in place. ``persons`` has ``_household`` (int64, the row of
    its household) and ``POOL_PERSON_NUMBER`` (1 for the head)."""
    for d in derived:
        condition = (
            compile_condition(d.expression, PERSONS, persons.columns, d.column)
            if d.how == "count" and d.expression
            else None
        )
        households[d.column] = derive_from_members(
            persons, len(households), how=d.how, condition=condition, column=d.source, order=POOL_PERSON_NUMBER
        )


def _cells_of_candidates(shares: npt.NDArray[np.float64], n: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """``n`` cells of the joint by systematic sampling (random start, random order of cells): every cell with
    share s gets floor(s n) or ceil(s n) candidates, so no likely cell is left out by chance."""
    order = rng.permutation(shares.size)
    cumulative = np.cumsum(shares[order])
    points = (rng.random() + np.arange(n)) / n * cumulative[-1]
    return order[np.minimum(np.searchsorted(cumulative, points, side="right"), shares.size - 1)]


def _persons_per_household(project, zone_totals, s, households_here) -> float:
    """Persons per household implied by the person controls (largest sum over one column), at least 1."""
    by_column: dict[str, float] = {}
    for i, c in enumerate(project.controls):
        if c.unit == PERSONS and len(c.columns) == 1:
            by_column[c.columns[0]] = by_column.get(c.columns[0], 0.0) + float(zone_totals[i][s])
    return max([1.0] + [v / households_here for v in by_column.values()])


def _structural_zeros(joint, axes, categories, derived, size_column) -> np.ndarray:
    """Zero the cells where a count of members exceeds the household size."""
    if size_column is None or (HOUSEHOLDS, size_column) not in axes:
        return joint
    a = axes.index((HOUSEHOLDS, size_column))
    largest = np.array([c.high for c in categories[a]], dtype=np.float64)
    for b, (_, col) in enumerate(axes):
        if col in derived and derived[col].how == "count":
            smallest = np.array([c.low for c in categories[b]], dtype=np.float64)
            possible = smallest[None, :] <= largest[:, None]
            shape = [1] * joint.ndim
            shape[a], shape[b] = possible.shape
            joint = joint * possible.reshape(shape)
    return joint


def _members(
    project,
    size,
    values,
    derived,
    derivation_categories,
    columns,
    zone_totals,
    s,
    households_here,
    rng,
    focus,
    concentrated,
) -> pd.DataFrame:
    """Members of the candidate households: head first, counted members at random, person columns drawn.

    ``focus[i] = j >= 0``: every member of household ``i`` takes category ``concentrated[j]`` of its column.
    """
    n = size.size
    owner = np.repeat(np.arange(n), size)
    number = np.arange(owner.size) - np.repeat(np.cumsum(size) - size, size) + 1
    persons = pd.DataFrame({POOL_ID: owner.astype(np.int64) + 1, POOL_PERSON_NUMBER: number.astype(np.int64)})
    assigned: dict[str, np.ndarray] = {}
    for d in derived.values():
        if d.how == "first" and d.source and d.column in values:
            column = np.full(owner.size, np.nan)
            column[number == 1] = values[d.column]
            assigned[d.source] = column
    for d in derived.values():
        if d.how != "count" or d.column not in values or d.column not in derivation_categories:
            continue
        source, categories = derivation_categories[d.column]
        counted = [k for k, c in enumerate(categories) if c.signature and c.signature[0]]
        other = [k for k, c in enumerate(categories) if not (c.signature and c.signature[0])]
        wanted = np.minimum(values[d.column].astype(np.int64), size)
        # a random order of members within each household; the first `wanted` of them are counted
        rank = np.lexsort((rng.random(owner.size), owner))
        position = np.empty(owner.size, np.int64)
        position[rank] = np.arange(owner.size) - np.repeat(np.cumsum(size) - size, size)
        chosen = position < wanted[owner]
        column = assigned.get(source, np.full(owner.size, np.nan)).copy()
        free = np.isnan(column)
        if counted:
            pick = rng.choice(counted, size=owner.size)
            column[free & chosen] = _draw_in(categories, pick, rng)[free & chosen]
        if other:
            pick = rng.choice(other, size=owner.size)
            column[free & ~chosen] = _draw_in(categories, pick, rng)[free & ~chosen]
        assigned[source] = column
    for (unit, col), spec in columns.items():
        if unit != PERSONS:
            continue
        totals = np.array([zone_totals[i][s] for i in spec.controls])
        share = _category_masses(spec.categories, totals, owner.size * households_here / n)
        # controls all 0 in this seed zone: every person in the category no control counts, else equal shares
        if share.sum() <= 0:
            share = np.array([0.0 if any(c.signature) else 1.0 for c in spec.categories])
            share = share if share.sum() > 0 else np.ones(len(spec.categories))
        share = share / share.sum()
        which = rng.choice(len(spec.categories), size=owner.size, p=share)
        for j, (key, k) in enumerate(concentrated):
            if key == (unit, col):
                which[focus[owner] == j] = k
        drawn = _draw_in(spec.categories, which, rng)
        if col in assigned:
            drawn = np.where(np.isnan(assigned[col]), drawn, assigned[col])
        assigned[col] = drawn
    for col, column in assigned.items():
        persons[col] = column
    return persons


def with_incidence(control: Control, sample: SeedSample) -> Control:
    """The control with its incidence evaluated on the candidate households."""
    frame = sample.households if control.unit == HOUSEHOLDS else sample.persons
    try:
        mask = compile_condition(control.expression, control.unit, frame.columns, control.name)(frame)
    except RuleError as exc:
        raise TargetValidationError([Problem("controls", str(exc), column="expression")]) from exc
    return replace(control, incidence=sample.incidence(control.unit, mask))
