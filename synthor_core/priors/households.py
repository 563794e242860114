"""The ``maxent`` prior of households: candidate households built from the controls alone (DESIGN §8, §10).

Without using any sample record, ``maxent`` builds candidates from the controls:

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

In the loop (:class:`HouseholdMaxEnt`), the first candidates come from each block's joint (``support``); a proposal
for households meeting a control in a zone is realized from the joint of that zone's own margins, the control's
category fixed (``realize``): candidates made for the zones the first ones cannot reach.

Values inside a category: uniform over its whole numbers (or reals); an open or very wide top category gets an
exponential tail whose mean is the width of the category below it, a very wide bottom category the width of the
category above it (a placeholder until the smooth densities of issue 11).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..calibrate.raking import rake_counts
from ..codebook import widen_for_controls
from ..errors import Problem, TargetValidationError
from ..expressions import compile_condition, expression_constants
from ..targets.model import HouseholdProject
from ..units import (
    HOUSEHOLD_ROW,
    HOUSEHOLDS,
    MEMBER,
    PERSONS,
    Candidates,
    Derivation,
    HouseholdRule,
    infer_derivations,
)
from .base import HouseholdGuidance, HouseholdProposal, PriorBase, plan_from_gaps
from .records import (
    Piece,
    allowed_pieces,
    column_pieces,
    draw_pieces,
    piece_values,
    with_tails,
)


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
    points = sorted(
        {abs(v) if v == -0.0 else v for e in expressions for v in expression_constants(e) if np.isfinite(v)}
    )
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
    """The n-way table ``joint`` raked to its one-way margins (None: that axis is free; zeros stay zero), summing
    to ``total`` (:func:`~synthor_core.calibrate.raking.rake_counts` over its cells)."""
    joint = joint * (total / max(joint.sum(), 1e-300))
    axes = [axis for axis, margin in enumerate(margins) if margin is not None]
    if not axes:
        return joint
    cells = np.indices(joint.shape).reshape(joint.ndim, -1)
    raked = rake_counts([cells[axis] for axis in axes], [margins[axis] for axis in axes], joint.reshape(-1))
    return raked.counts.reshape(joint.shape)


@dataclass(frozen=True)
class _Column:
    name: str
    table: str
    categories: list[Category]
    controls: list[int]  # indices of project.controls on this column, in signature order


@dataclass(frozen=True)
class _Layout:
    """What ``maxent`` reads from a project once: the columns the controls cut into categories, the household axes of
    the joint, the derivations, and the person categories that get concentrated candidates."""

    columns: dict[tuple[str, str], _Column]
    household_axes: list[tuple[str, str]]
    derived: dict[str, Derivation]
    size_column: str | None
    derivation_categories: dict[str, tuple[str, list[Category]]]
    concentrated: list[tuple[tuple[str, str], int]]
    integer: dict[tuple[str, str], bool]  # per (unit, column) of the candidates: whole numbers in the sample
    pieces: dict[tuple[str, str], list[Piece]]  # every column with a domain (the codebook), cut where rules change
    piece_category: dict[tuple[str, str], npt.NDArray[np.int64]]  # category of each piece (controlled columns)
    codebook: dict  # (unit, column) -> Domain: the project's, widened for its controls as they are now
    person_order: list[str]  # person columns with a domain, in the order they are drawn
    extra_household: list[str]  # household columns with a domain that no control reads and no member gives
    rules: tuple[HouseholdRule, ...]
    compatible: dict[tuple[str, str], np.ndarray]  # household axes (a, b): pieces of a x categories of b allowed


def _single_column(project: HouseholdProject) -> tuple[dict[tuple[str, str], list[int]], list[Problem]]:
    by_column: dict[tuple[str, str], list[int]] = {}
    problems = []
    for i, c in enumerate(project.controls):
        if c.total_of is not None:
            continue  # a numeric control cuts no category: calibration fits it on the candidates' values
        columns = c.columns
        if len(columns) != 1:
            problems.append(
                Problem(
                    "controls",
                    f"the maxent prior needs controls on one column each; control "
                    f'"{c.name}" reads {", ".join(columns) or "no column"}',
                    column="expression",
                )
            )
            continue
        by_column.setdefault((c.unit, columns[0]), []).append(i)
    return by_column, problems


def _layout(project: HouseholdProject) -> _Layout:
    """The columns, categories, axes and derivations of ``maxent`` for a project (see the module docstring).

    Raises TargetValidationError when a control reads several columns (or a numeric control's total), a derivation
    counts over several person columns, or the household joint would exceed ``HOUSEHOLD_MAXENT_MAX_CELLS``."""
    sample = project.sample
    by_column, problems = _single_column(project)
    if problems:
        raise TargetValidationError(problems)
    integer = {
        (unit, c): is_integer_column(frame, c)
        for unit, frame in ((HOUSEHOLDS, sample.households), (PERSONS, sample.persons))
        for c in frame.columns
    }
    codebook = widen_for_controls(project.codebook, project.controls)
    household_columns = [col for (unit, col) in by_column if unit == HOUSEHOLDS]
    derived = {d.column: d for d in (project.derived or infer_derivations(sample, household_columns))}
    size_column = next((d.column for d in derived.values() if d.how == "size"), None)
    columns: dict[tuple[str, str], _Column] = {}
    for (unit, col), idx in by_column.items():
        expressions = [project.controls[i].expression for i in idx]
        categories = column_categories(col, unit, expressions, integer.get((unit, col), True))
        if col == size_column:
            categories = [c for c in categories if c.high >= 1]
        columns[(unit, col)] = _Column(col, unit, categories, idx)
    derivation_categories = {}
    for d in derived.values():
        if d.how == "count" and d.condition is not None:
            person_column = d.condition.columns
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
                    person_column[0], PERSONS, [d.expression or ""], integer.get((PERSONS, person_column[0]), True)
                ),
            )
    # every household column a control reads is an axis of the joint (the total control's too: its one category
    # takes every household), except the weight column, which the candidates' weights fill
    household_axes = [key for key in columns if key[0] == HOUSEHOLDS and key[1] != sample.weight]
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
    concentrated = [
        (key, k)
        for key, spec in columns.items()
        if key[0] == PERSONS
        for k, c in enumerate(spec.categories)
        if any(c.signature)
    ]
    pieces, piece_category = _pieces(project, codebook, columns, derived)
    counts = [d for d in derived.values() if d.how == "count" and d.column in derivation_categories]
    person_order = _person_order(project, columns, counts, pieces)
    extra_household = [
        col
        for (unit, col) in pieces
        if unit == HOUSEHOLDS
        and (HOUSEHOLDS, col) not in household_axes
        and col not in derived
        and col != sample.weight
    ]
    return _Layout(
        columns,
        household_axes,
        derived,
        size_column,
        derivation_categories,
        concentrated,
        integer,
        pieces,
        piece_category,
        codebook,
        person_order,
        extra_household,
        tuple(project.rules),
        _axis_compatibility(project, columns, household_axes, pieces, piece_category),
    )


def _axis_compatibility(project, columns, household_axes, pieces, piece_category) -> dict[tuple[str, str], np.ndarray]:
    """For every ordered pair of household axes (a, b) with pieces: whether each piece of a leaves some piece of each
    category of b that the household rules on the two allow; shape (pieces of a, categories of b)."""
    rules = [r for r in project.rules if r.unit == HOUSEHOLDS]
    out = {}
    for key_a in household_axes:
        for key_b in household_axes:
            if key_a == key_b or key_a not in pieces or key_b not in pieces:
                continue
            probes = pd.DataFrame({key_a[1]: [p.probe for p in pieces[key_a]]})
            given = {key_a[1]: np.ones(len(probes), dtype=bool)}
            pairs = allowed_pieces(probes, key_b[1], pieces[key_b], rules, given)  # (pieces of a, pieces of b)
            categories = len(columns[key_b].categories)
            of_b = piece_category[key_b]
            out[(key_a[1], key_b[1])] = np.column_stack(
                [pairs[:, of_b == c].any(axis=1) for c in range(categories)]
            ).reshape(len(pieces[key_a]), categories)
    return out


def _person_order(project: HouseholdProject, columns: dict, counts: list[Derivation], pieces: dict) -> list[str]:
    """The order person columns are drawn in: the controlled columns whose every value leaves a counted member and
    an uncounted one possible (students before workers), then the columns counts are taken over (workers), then the
    other controlled columns (an occupation, which the rules tie to working), then the coded columns, then the
    ranges; so that a member's column drawn early never leaves none of the values a later one needs."""
    rules = [r for r in project.rules if r.unit == PERSONS]
    sources = {d.condition.columns[0]: d.condition for d in counts if d.condition is not None}

    def free(col: str) -> bool:
        for source, condition in sources.items():
            if (PERSONS, source) not in pieces:
                continue
            probes = pd.DataFrame({col: [p.probe for p in pieces[(PERSONS, col)]]})
            target = pieces[(PERSONS, source)]
            allow = allowed_pieces(probes, source, target, rules, {col: np.ones(len(probes), dtype=bool)})
            counted = condition(pd.DataFrame({source: [p.probe for p in target]}))
            if not ((allow & counted).any(axis=1) & (allow & ~counted).any(axis=1)).all():
                return False
        return True

    def rank(col: str) -> tuple[int, bool]:
        controlled = (PERSONS, col) in columns
        first = (
            0 if controlled and col not in sources and free(col) else 1 if col in sources else 2 if controlled else 3
        )
        return first, project.codebook[(PERSONS, col)].codes is None

    return sorted((col for (unit, col) in pieces if unit == PERSONS), key=rank)


def _pieces(project: HouseholdProject, codebook: dict, columns: dict, derived: dict):
    """The pieces of every column of the codebook (:func:`~synthor_core.priors.records.column_pieces`, cut at the
    constants of the controls, rules and count derivations reading it) and, for a controlled column, the category each
    piece lies in (matched by the controls' truth values on its probe; a wide top category gets its tail)."""
    pieces, piece_category = {}, {}
    for (unit, col), domain in codebook.items():
        texts = (
            [project.controls[i].expression for i in columns[(unit, col)].controls] if (unit, col) in columns else []
        )
        texts += [r.expression for r in project.rules if r.unit == unit and col in r.condition.columns]
        texts += [d.expression for d in derived.values() if d.condition is not None and col in d.condition.columns]
        cuts = [v for text in texts for v in expression_constants(text)]
        found = column_pieces(domain, cuts)
        category = np.zeros(len(found), dtype=np.int64)
        if (unit, col) in columns:
            spec = columns[(unit, col)]
            probe = pd.DataFrame({col: [p.probe for p in found]})
            tests = [project.controls[i].condition(probe) for i in spec.controls]
            signatures = [tuple(bool(t[k]) for t in tests) for k in range(len(found))]
            index = {c.signature: j for j, c in enumerate(spec.categories)}
            category = np.array([index.get(s, -1) for s in signatures], dtype=np.int64)
            found = with_tails(found, category)
        pieces[(unit, col)] = found
        piece_category[(unit, col)] = category
    return pieces, piece_category


def _share_totals(project: HouseholdProject, control, per_zone: np.ndarray, zones: np.ndarray) -> float:
    """A control's total over a set of lowest-level zones: each zone gets its group's total in proportion to its
    households (an upper-level total is shared by households per zone)."""
    parent = project.geography.parent_index(control.level)
    households_of_group = np.bincount(parent, weights=per_zone.astype(np.float64), minlength=control.totals.size)
    share = np.divide(
        per_zone[zones],
        households_of_group[parent[zones]],
        out=np.zeros(zones.size),
        where=households_of_group[parent[zones]] > 0,
    )
    return float((control.totals[parent[zones]] * share).sum())


@dataclass(frozen=True)
class _Draw:
    """Households drawn from one joint: cells, how many, and which person category (if any) every member of each
    takes (-1: none forced; j: ``concentrated[j]``)."""

    cells: npt.NDArray[np.int64]
    focus: npt.NDArray[np.int64]


class HouseholdMaxEnt(PriorBase):
    """The ``maxent`` prior of households (a :class:`~synthor_core.priors.base.HouseholdPrior`).

    Parameters
    ----------
    project : HouseholdProject
        Its sample gives column names, whole-number columns and the derivations (``project.derived``, else
        :func:`synthor_core.units.infer_derivations`); no sample value is copied.
    pool : int
        First candidates per block (sample-level zone), before the concentrated ones.

    Raises
    ------
    TargetValidationError
        When a control reads several columns, or a joint of household columns would exceed
        ``defaults.HOUSEHOLD_MAXENT_MAX_CELLS`` cells.
    """

    name = "maxent"

    def __init__(self, project: HouseholdProject, pool: int = defaults.HOUSEHOLD_MAXENT_POOL):
        super().__init__()
        self.project = project
        self.layout = _layout(project)
        self.pool = pool
        self.per_zone = project.households_per_zone()
        self.block_of_zone = project.geography.parent_index(project.sample.seed_level)
        self.total_index = next(i for i, c in enumerate(project.controls) if c.name == project.total_control)
        self.written = 0  # candidate households built so far
        self.left_out = 0  # of them, left out: a unit no allowed value was left for, or a rule broken

    # ------------------------------------------------------------------------------------------------- contract
    @property
    def notes(self) -> list[str]:
        if self.layout.size_column is None and any(unit == HOUSEHOLDS for unit, _ in self.layout.columns):
            return [
                "no household column of the sample equals its number of members, so the candidates' numbers of "
                "members are drawn apart from their household columns (a size control is not met through the members)"
            ]
        return []

    def report(self) -> dict:
        """What the report says about the prior: candidates built, derivations, categories, joint cells."""
        layout = self.layout
        return {
            "candidates": self.written,
            "left_out": self.left_out,
            "rules": len(layout.rules),
            "warnings": self.notes,
            "derived": {d.column: d.describe() for d in layout.derived.values()},
            "categories": {f"{unit}.{col}": len(c.categories) for (unit, col), c in layout.columns.items()},
            "joint_cells": int(np.prod([len(layout.columns[k].categories) for k in layout.household_axes]))
            if layout.household_axes
            else 1,
        }

    def support(self, rng: np.random.Generator) -> Candidates:
        """``pool`` candidates per block with households to place, drawn from the block's joint, plus the
        concentrated ones (every member in one person category: a hall of students)."""
        sample = self.project.sample
        parts = []
        blocks = self.project.geography.zones(sample.seed_level)
        for b in range(len(blocks)):
            zones = np.flatnonzero(self.block_of_zone == b)
            totals = self._totals(zones)
            households_here = totals[self.total_index]
            if households_here <= 0:
                continue
            joint = self._joint(totals, households_here)
            shares = joint.reshape(-1) / joint.sum()
            cells = [_cells_of_candidates(shares, self.pool, rng)]
            extra = int(round(self.pool * defaults.HOUSEHOLD_CONCENTRATED_SHARE))
            focus = [np.full(self.pool, -1)]
            if self.layout.concentrated and extra:
                # households whose members all fall in one person category (a hall of students, a family of
                # nurses): without them no zone far from the average mix of persons could be reached
                cells += [_cells_of_candidates(shares, extra, rng) for _ in self.layout.concentrated]
                focus += [np.full(extra, j) for j in range(len(self.layout.concentrated))]
            draw = _Draw(np.concatenate(cells), np.concatenate(focus))
            parts.append(self._candidates(b, joint.shape, draw, totals, households_here, rng, households_here))
        if not parts:
            raise TargetValidationError([Problem("controls", "no zone has households: nothing to synthesize")])
        out = parts[0]
        for part in parts[1:]:
            out = out.concat(part)
        return out

    def plan(self, guidance: HouseholdGuidance, rng: np.random.Generator) -> list[HouseholdProposal]:
        """One proposal per under-reached control-zone pair (:func:`~synthor_core.priors.base.plan_from_gaps`)."""
        return plan_from_gaps(guidance)

    def realize(self, proposal: HouseholdProposal, k: int, rng: np.random.Generator) -> Candidates:
        """``k`` households for the proposal's zones, drawn from the joint of those zones' own margins with the
        control's category fixed: a household control's category on its axis, a person control's category for
        every member."""
        control = next(i for i, c in enumerate(self.project.controls) if c.name == proposal.control)
        zones = np.asarray(proposal.zones, dtype=np.int64)
        totals = self._totals(zones)
        households_here = max(totals[self.total_index], 1.0)
        joint = self._joint(totals, households_here)
        c = self.project.controls[control]
        key = (c.unit, c.columns[0])
        spec = self.layout.columns[key]
        held = [k for k, cat in enumerate(spec.categories) if cat.signature[spec.controls.index(control)]]
        focus = np.full(k, -1)
        if c.unit == HOUSEHOLDS and key in self.layout.household_axes:
            axis = self.layout.household_axes.index(key)
            allowed = np.zeros(joint.shape[axis], dtype=bool)
            allowed[held] = True
            shape = [1] * joint.ndim
            shape[axis] = -1
            joint = joint * allowed.reshape(shape)
        elif c.unit == PERSONS:
            concentrated = [j for j, (kk, cat) in enumerate(self.layout.concentrated) if kk == key and cat in held]
            if concentrated:
                focus = np.full(k, concentrated[0])
        if joint.sum() <= 0:
            return self._candidates(
                proposal.block, joint.shape, _Draw(np.zeros(0, np.int64), focus[:0]), totals, 1.0, rng, 0.0
            )
        draw = _Draw(_cells_of_candidates(joint.reshape(-1) / joint.sum(), k, rng), focus)
        return self._candidates(proposal.block, joint.shape, draw, totals, households_here, rng, proposal.count)

    # ------------------------------------------------------------------------------------------------- drawing
    def _totals(self, zones: np.ndarray) -> list[float]:
        """Every control's total over the lowest-level ``zones``."""
        return [_share_totals(self.project, c, self.per_zone, zones) for c in self.project.controls]

    def _joint(self, totals: list[float], households: float) -> np.ndarray:
        """The maximum-entropy household joint with these controls' totals as one-way margins."""
        layout = self.layout
        margins, axes_categories = [], []
        for key in layout.household_axes:
            spec = layout.columns[key]
            margin = _category_masses(spec.categories, np.array([totals[i] for i in spec.controls]), households)
            margins.append(margin if margin.sum() > 0 else None)  # controls all 0 here: no information
            axes_categories.append(spec.categories)
        structure = _structural_zeros(
            np.ones([len(c) for c in axes_categories]) if axes_categories else np.ones(()),
            layout.household_axes,
            axes_categories,
            layout.derived,
            layout.size_column,
        )
        for a, key_a in enumerate(layout.household_axes):
            for b, key_b in enumerate(layout.household_axes):
                if a < b and (key_a[1], key_b[1]) in layout.compatible:
                    # pairs of categories no piece of the two lets the household rules hold in: structural zeros
                    pieces_ok = layout.compatible[(key_a[1], key_b[1])]
                    of_a = layout.piece_category[key_a]
                    possible = np.stack([pieces_ok[of_a == c].any(axis=0) for c in range(structure.shape[a])])
                    shape = [1] * structure.ndim
                    shape[a], shape[b] = possible.shape
                    structure = structure * possible.reshape(shape)
        joint = _rake_joint(structure, margins, households) if margins else structure
        return joint if joint.sum() > 0 else structure  # margins no cell can meet together: the structure alone

    def _candidates(
        self,
        block: int,
        shape: tuple[int, ...],
        draw: _Draw,
        totals: list[float],
        households_here: float,
        rng: np.random.Generator,
        stands_for: float,
    ) -> Candidates:
        """Households of the drawn cells with their members, as candidates of ``block`` (each standing for
        ``stands_for / n`` households). A household with a unit no allowed value was left for is left out (counted
        in ``self.left_out``); one still breaking a rule (the lookahead is pairwise) is left out by the loop's
        check of every candidate (:func:`synthor_core.synthesis.zones.synthesize_zones`), counted there."""
        layout, sample = self.layout, self.project.sample
        n = draw.cells.size
        which = np.unravel_index(draw.cells, shape) if layout.household_axes else ()
        households = pd.DataFrame(index=range(n))
        households[sample.seed_level] = self.project.geography.zones(sample.seed_level)[block]
        mean_persons = _persons_per_household(self.project, totals, households_here)
        values, stuck = self._household_values(which, n, rng, mean_persons)
        size = values.get(layout.size_column) if layout.size_column is not None else None
        if size is None:
            mean_persons = _persons_per_household(self.project, totals, households_here)
            size = 1 + rng.poisson(max(mean_persons - 1, 0.0), n)
        size = np.where(np.isnan(size), 1, size).astype(np.int64)
        persons, stuck_members = _Members(layout, self.project, totals, households_here).draw(
            size, values, draw.focus, rng
        )
        stuck |= stuck_members
        for col, v in values.items():
            if col not in layout.derived:
                households[col] = v
        for d in layout.derived.values():
            households[d.column] = d.values(persons, n)
        stuck |= self._extra_household_values(households, rng)
        for unit, frame in ((HOUSEHOLDS, households), (PERSONS, persons)):
            for col in frame.columns:
                if (
                    col not in (HOUSEHOLD_ROW, sample.weight)
                    and frame[col].dtype == np.float64
                    and frame[col].notna().all()
                    and layout.integer.get((unit, col), True)
                    and (frame[col] == np.floor(frame[col])).all()
                ):
                    frame[col] = frame[col].astype(np.int64)
        kept = int(n - stuck.sum())
        households[sample.weight] = stands_for / max(kept, 1)
        self.written += n
        self.left_out += n - kept
        everything = Candidates(
            households,
            persons,
            np.full(n, block, dtype=np.int64),
            np.full(n, stands_for / max(kept, 1)),
            np.full(n, self.name, dtype=object),
            sample.household_id,
            np.zeros(n, dtype=bool),
        )
        return everything.take(np.flatnonzero(~stuck)) if stuck.any() else everything

    def _household_values(
        self, which, n: int, rng: np.random.Generator, mean_persons: float = 0.0
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """A value of every household axis inside its drawn category (the size first: counts stay within it), among
        the values its domain and the household rules allow given the axes drawn before; and where none was left."""
        layout = self.layout
        values: dict[str, np.ndarray] = {}
        stuck = np.zeros(n, dtype=bool)
        axes = list(enumerate(layout.household_axes))
        size_column = layout.size_column
        axes.sort(key=lambda item: item[1][1] != size_column)
        frame = pd.DataFrame(index=range(n))
        assigned: dict[str, np.ndarray] = {}
        for a, key in axes:
            col = key[1]
            high = None
            if col == size_column:
                high = np.full(n, float(defaults.HOUSEHOLD_MAX_SIZE))
            elif size_column in values and col in layout.derived and layout.derived[col].how == "count":
                high = values[size_column]
            if key in layout.pieces:
                pieces = layout.pieces[key]
                if col == size_column:
                    pieces = _size_tail(pieces, layout.piece_category[key], which[a], mean_persons)
                restrict = layout.piece_category[key][None, :] == which[a][:, None]
                lows = np.array([p.low if not p.empty else np.inf for p in pieces])
                if col == size_column:
                    restrict &= (lows >= 1)[None, :]
                if high is not None:
                    restrict &= lows[None, :] <= high[:, None]
                for b, later in axes:
                    if later[1] not in values and later != key and (col, later[1]) in layout.compatible:
                        restrict &= layout.compatible[(col, later[1])][:, which[b]].T
                allow = allowed_pieces(
                    frame, col, pieces, _of(layout.rules, HOUSEHOLDS), assigned, _known(layout, HOUSEHOLDS)
                )
                allow &= restrict
                weights = allow * np.array([p.mass for p in pieces])[None, :]
                drawn = draw_pieces(weights, rng)
                stuck |= drawn < 0
                values[col] = piece_values(pieces, drawn, rng)
            else:
                categories = layout.columns[key].categories
                low = np.ones(n) if col == size_column else None
                values[col] = _draw_in(categories, which[a], rng, low=low, high=high)
            frame[col] = values[col]
            assigned[col] = np.ones(n, dtype=bool)
        return values, stuck

    def _extra_household_values(self, households: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """The household columns no control reads and no member gives, drawn among the values the rules allow given
        the others (in place); returns where none was left."""
        layout = self.layout
        n = len(households)
        stuck = np.zeros(n, dtype=bool)
        assigned = {c: np.ones(n, dtype=bool) for c in households.columns}
        for col in layout.extra_household:
            pieces = layout.pieces[(HOUSEHOLDS, col)]
            allow = allowed_pieces(
                households, col, pieces, _of(layout.rules, HOUSEHOLDS), assigned, _known(layout, HOUSEHOLDS)
            )
            drawn = draw_pieces(allow * np.array([p.mass for p in pieces])[None, :], rng)
            stuck |= drawn < 0
            households[col] = piece_values(pieces, drawn, rng)
            assigned[col] = np.ones(n, dtype=bool)
        return stuck


def _size_tail(pieces: list[Piece], category: np.ndarray, drawn: np.ndarray, mean_persons: float) -> list[Piece]:
    """The size pieces with the open top category's tail made longer when the person controls imply more members
    (``mean_persons`` per household, a lower bound: the largest total over one person column) than its default tail
    gives: its mean above the floor becomes what the smaller sizes leave to the top category's households."""
    tail = [k for k, p in enumerate(pieces) if p.scale > 0]
    if not tail or mean_persons <= 1.0 or not drawn.size:
        return pieces
    top = category[tail[0]]
    in_top = drawn == top
    if not in_top.any():
        return pieces
    others = [k for k, p in enumerate(pieces) if category[k] != top and not p.empty and category[k] >= 0]
    known = 0.0
    for c in np.unique(drawn[~in_top]):
        sizes = [pieces[k].low for k in others if category[k] == c]
        known += (drawn == c).sum() * (float(np.mean(sizes)) if sizes else 1.0)
    above = (mean_persons * drawn.size - known) / in_top.sum() - pieces[tail[0]].origin
    if above <= pieces[tail[0]].scale:
        return pieces
    return [Piece(p.low, p.high, p.integer, p.origin, above) if k in tail else p for k, p in enumerate(pieces)]


def _known(layout: _Layout, unit: str) -> dict[str, list[Piece]]:
    """The pieces of every column of one unit (to stand for its values when rules are checked)."""
    return {col: pieces for (u, col), pieces in layout.pieces.items() if u == unit}


def _of(rules, unit: str) -> list[HouseholdRule]:
    """The rules about one unit."""
    return [r for r in rules if r.unit == unit]


def _persons_per_household(project: HouseholdProject, totals: list[float], households_here: float) -> float:
    """Persons per household implied by the person controls (largest sum over one column), at least 1."""
    by_column: dict[str, float] = {}
    for i, c in enumerate(project.controls):
        if c.unit == PERSONS and len(c.columns) == 1 and c.total_of is None:
            by_column[c.columns[0]] = by_column.get(c.columns[0], 0.0) + float(totals[i])
    return max([1.0] + [v / max(households_here, 1e-9) for v in by_column.values()])


class _Members:
    """Members of candidate households: the head first, the members counted by a count column (workers) chosen at
    random, then every person column in turn (:attr:`_Layout.person_order`), each among the values its domain and the
    person rules allow given the columns drawn before, in proportion to its categories' shares among the persons of
    the zones drawn for (a column no control reads: to the values' widths)."""

    def __init__(self, layout: _Layout, project: HouseholdProject, totals: list[float], households_here: float):
        self.layout, self.project, self.totals, self.households_here = layout, project, totals, households_here

    def draw(
        self, size: np.ndarray, values: dict[str, np.ndarray], focus: np.ndarray, rng: np.random.Generator
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """One row per member (``_household``, ``per_num`` and the person columns), and the households with a
        member no allowed value was left for; ``focus[i] = j >= 0``: every member of household ``i`` takes category
        ``concentrated[j]`` of its column where the rules let it."""
        layout = self.layout
        n = size.size
        owner = np.repeat(np.arange(n), size)
        number = np.arange(owner.size) - np.repeat(np.cumsum(size) - size, size) + 1
        persons = pd.DataFrame({HOUSEHOLD_ROW: owner.astype(np.int64), MEMBER: number.astype(np.int64)})
        assigned: dict[str, np.ndarray] = {MEMBER: np.ones(owner.size, dtype=bool)}
        stuck = np.zeros(owner.size, dtype=bool)
        for d in layout.derived.values():
            if d.how == "first" and d.source and d.column in values:
                column = np.full(owner.size, np.nan)
                column[number == 1] = values[d.column]
                persons[d.source] = column
                assigned[d.source] = number == 1
        counted: dict[str, tuple[np.ndarray, Derivation]] = {}
        for d in layout.derived.values():
            if d.how == "count" and d.column in values and d.column in layout.derivation_categories:
                counted[layout.derivation_categories[d.column][0]] = (self._chosen(d, size, owner, values, rng), d)
        for col in layout.person_order:
            stuck |= self._column(col, persons, owner, n, focus, counted.get(col), assigned, rng)
        for (unit, col), spec in layout.columns.items():
            if unit == PERSONS and (unit, col) not in layout.pieces:  # a column without a domain: its categories
                given = persons[col].to_numpy(dtype=np.float64) if col in persons.columns else None
                persons[col] = self._person_column((unit, col), spec, owner, n, focus, given, rng)
        return persons, np.bincount(owner, weights=stuck, minlength=n) > 0

    def _chosen(self, d: Derivation, size, owner, values, rng: np.random.Generator) -> np.ndarray:
        """The members a count column counts: the first ``NWESR`` of a random order within each household."""
        wanted = np.minimum(np.nan_to_num(values[d.column]).astype(np.int64), size)
        rank = np.lexsort((rng.random(owner.size), owner))
        position = np.empty(owner.size, np.int64)
        position[rank] = np.arange(owner.size) - np.repeat(np.cumsum(size) - size, size)
        return position < wanted[owner]

    def _column(self, col, persons, owner, n, focus, counted, assigned, rng: np.random.Generator) -> np.ndarray:
        """Draw one person column in place (values already given, a head's age, stay); returns the members for whom
        no value was allowed."""
        layout, key = self.layout, (PERSONS, col)
        pieces, category = layout.pieces[key], layout.piece_category[key]
        mass = np.array([p.mass for p in pieces])
        if key in layout.columns:
            spec = layout.columns[key]
            totals = np.array([self.totals[i] for i in spec.controls])
            share = _category_masses(spec.categories, totals, owner.size * self.households_here / max(n, 1))
            if share.sum() <= 0:  # controls all 0 here: equal shares
                share = np.ones(len(spec.categories))
            inside = np.bincount(category[category >= 0], weights=mass[category >= 0], minlength=share.size)
            base = np.where(
                category >= 0,
                share[np.maximum(category, 0)] * mass / np.maximum(inside[np.maximum(category, 0)], 1e-300),
                0.0,
            )
            if base.sum() <= 0:  # the controls leave no value of the domain here (all 0): the values' widths
                base = mass
        else:
            base = mass
        allow = allowed_pieces(persons, col, pieces, _of(layout.rules, PERSONS), assigned, _known(layout, PERSONS))
        if counted is not None:
            chosen, d = counted
            counts = d.condition(pd.DataFrame({col: [p.probe for p in pieces]}))
            allow &= counts[None, :] == chosen[:, None]
        weights = allow * base[None, :]
        for j, (focused, k) in enumerate(layout.concentrated):
            if focused == key:
                rows = focus[owner] == j
                preferred = weights[rows] * (category == k)[None, :]
                keep = preferred.sum(axis=1) > 0
                weights[np.flatnonzero(rows)[keep]] = preferred[keep]
        drawn = draw_pieces(weights, rng)
        value = piece_values(pieces, drawn, rng)
        given = assigned.get(col)
        if given is not None and col in persons.columns:
            value = np.where(given, persons[col].to_numpy(dtype=np.float64), value)
            drawn = np.where(given, 0, drawn)
        persons[col] = value
        assigned[col] = np.ones(len(persons), dtype=bool)
        return drawn < 0

    def _person_column(self, key, spec: _Column, owner, n: int, focus, given, rng: np.random.Generator) -> np.ndarray:
        """A person column drawn from its categories' masses (every member of a focused household in its category);
        values already given (a head's age) stay."""
        totals = np.array([self.totals[i] for i in spec.controls])
        share = _category_masses(spec.categories, totals, owner.size * self.households_here / max(n, 1))
        # controls all 0 here: every person in the category no control counts, else equal shares
        if share.sum() <= 0:
            share = np.array([0.0 if any(c.signature) else 1.0 for c in spec.categories])
            share = share if share.sum() > 0 else np.ones(len(spec.categories))
        share = share / share.sum()
        which = rng.choice(len(spec.categories), size=owner.size, p=share)
        for j, (focused, k) in enumerate(self.layout.concentrated):
            if focused == key:
                which[focus[owner] == j] = k
        drawn = _draw_in(spec.categories, which, rng)
        return drawn if given is None else np.where(np.isnan(given), drawn, given)


def is_integer_column(frame: pd.DataFrame, column: str) -> bool:
    """Whether a sample column holds whole numbers only (True for a column the frame lacks); only this fact about
    the sample's values is used by the priors that build households without copying them."""
    if column not in frame.columns:
        return True
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    return bool(np.all(values == np.floor(values)))


def _cells_of_candidates(shares: npt.NDArray[np.float64], n: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """``n`` cells of the joint by systematic sampling (random start, random order of cells): every cell with
    share s gets floor(s n) or ceil(s n) candidates, so no likely cell is left out by chance."""
    order = rng.permutation(shares.size)
    cumulative = np.cumsum(shares[order])
    points = (rng.random() + np.arange(n)) / n * cumulative[-1]
    return order[np.minimum(np.searchsorted(cumulative, points, side="right"), shares.size - 1)]


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
