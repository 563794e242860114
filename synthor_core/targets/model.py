"""The target model (DESIGN §2, §8, §9): a person project's target tables and numeric controls, and a household
project's controls per zone; each condition compiled once, each incidence computed on the candidates of the moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .. import defaults
from ..expressions import Condition, Rule
from ..geography import Geography, ZoneShapes
from ..schema import Bins, Schema, Variable
from ..units import HOUSEHOLD_ROW, HOUSEHOLDS, MEMBER, Candidates, Derivation, HouseholdRule, Sample
from .trips import TripProject, TripsSpec

PROJECT_FILE = "synthor.toml"


class PopulationSpec(BaseModel):
    """``[population]``: the size N of the synthetic population and what one record is."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    size: int = Field(gt=0, le=defaults.MAX_POPULATION)
    description: str = ""


class TableSpec(BaseModel):
    """One ``[[tables]]`` entry of ``synthor.toml``.

    ``format = "long"`` needs ``variables`` (and ``count_column``); ``format = "crosstab"`` needs ``rows`` and
    ``columns``. ``bins`` maps each numeric variable of the table to its edges. ``sheet`` picks an Excel sheet.
    ``total_of = "income"`` (or ``mean_of``) makes the table a **numeric control**: its values are the total (the
    mean) of that numeric variable over the persons of each cell, not counts of persons; a long numeric control
    may have ``variables = []`` (one row: the total over the whole population).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    file: str = Field(min_length=1)
    format: Literal["long", "crosstab"] = "long"
    variables: tuple[str, ...] | None = None
    count_column: str = "count"
    rows: str | None = None
    columns: str | None = None
    bins: dict[str, tuple[float, ...]] = Field(default_factory=dict)
    sheet: str | None = None
    total_of: str | None = None
    mean_of: str | None = None

    @property
    def numeric_of(self) -> str | None:
        """The numeric variable whose total or mean the table gives per cell (a numeric control), or None."""
        return self.total_of or self.mean_of

    @property
    def table_variables(self) -> tuple[str, ...]:
        """The variables of the table, in axis order (``rows`` then ``columns`` for a crosstab)."""
        if self.format == "crosstab":
            return tuple(v for v in (self.rows, self.columns) if v)
        return tuple(self.variables or ())


class ZonesSpec(BaseModel):
    """``[zones]``: the zones of a person project (DESIGN §9): a file listing them, one row each, in a column named
    ``level``. The level becomes a categorical variable of every person (its categories the zone ids), so a table
    per zone is a table with the level among its variables (``variables = ["region", "age", "sex"]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    file: str = Field(min_length=1)
    level: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    shapes: str | None = None  # a GeoJSON of the zones' polygons, for maps
    shapes_id: str | None = None  # the feature property naming the zone (default: the level)


class RuleSpec(BaseModel):
    """One ``[[rules]]`` entry of ``synthor.toml``: a plausibility rule every run of the project enforces (the
    condition is true for an implausible record; schema dialect, as in a rules file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)
    condition: str = Field(min_length=1)
    description: str = ""


class ProjectSpec(BaseModel):
    """The whole ``synthor.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    population: PopulationSpec
    variables: list[Variable] = Field(min_length=1)
    tables: list[TableSpec] = Field(min_length=1)
    zones: ZonesSpec | None = None
    trips: TripsSpec | None = None
    rules: list[RuleSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class TargetTable:
    """One target table: counts over the cells of its variables.

    Attributes
    ----------
    name : str
    variables : tuple of str
        Axis order of ``counts``.
    bins : dict of str -> Bins
        Bin edges of each numeric variable of the table.
    counts : ndarray of float64, shape (cells of variables[0], cells of variables[1], ...)
        Persons per cell, harmonized so that ``counts.sum()`` equals the population size.
    source : str
        The file the table came from (or ``"ui"``).
    """

    name: str
    variables: tuple[str, ...]
    bins: dict[str, Bins]
    counts: npt.NDArray[np.float64]
    source: str = ""

    @property
    def shares(self) -> npt.NDArray[np.float64]:
        """``counts / counts.sum()``, same shape."""
        return self.counts / self.counts.sum()

    def axis_labels(self, schema: Schema) -> list[list[str]]:
        """Cell labels along each axis: a categorical's categories, or a numeric variable's bin labels."""
        return [
            list(schema[v].categories) if schema[v].type == "categorical" else self.bins[v].labels
            for v in self.variables
        ]

    def cell_label(self, schema: Schema, flat_index: int) -> dict[str, str]:
        """``{variable: label}`` of the cell at ``flat_index`` (C order over ``counts``)."""
        idx = np.unravel_index(flat_index, self.counts.shape)
        return {v: labels[i] for v, labels, i in zip(self.variables, self.axis_labels(schema), idx)}


@dataclass(frozen=True)
class NumericControl:
    """A numeric control: the total or the mean of a numeric variable over the persons of each cell.

    Fitted by calibration (generalized raking, :func:`synthor_core.calibrate.raking.rake_counts`), reported by the
    relative error of each cell (:func:`synthor_core.synthesis.loop.measure_numeric`). Never scaled by harmonization:
    a total is for the population of ``[population] size`` persons (a run of another size scales totals, not
    means).

    Attributes
    ----------
    name : str
    variables : tuple of str
        The cells' variables, in axis order of ``values`` (may be empty: one cell, the whole population).
    bins : dict of str -> Bins
        Bin edges of each numeric variable among ``variables``.
    of : str
        The numeric variable totalled or averaged (may also be one of ``variables``, binned: e.g. the mean
        income of each income bracket).
    statistic : {"total", "mean"}
    values : ndarray of float64, shape (cells of variables[0], ...) (``()`` without variables)
        Total (in the variable's unit) or mean of ``of`` per cell.
    source : str
    """

    name: str
    variables: tuple[str, ...]
    bins: dict[str, Bins]
    of: str
    statistic: Literal["total", "mean"]
    values: npt.NDArray[np.float64]
    source: str = ""

    def cells(self) -> TargetTable:
        """A table over the same cells (counts all 1), for computing each record's cell."""
        return TargetTable(self.name, self.variables, self.bins, np.ones(self.values.shape), self.source)


@dataclass(frozen=True)
class Project:
    """A validated, harmonized project: the schema, the population size and the target tables.

    Attributes
    ----------
    size : int
        N, the number of records of the synthetic population.
    description : str
    schema : Schema
    tables : tuple of TargetTable
    warnings : tuple of str
        What harmonization changed or found (scaled totals, disagreeing marginals).
    spec : ProjectSpec or None
        The ``synthor.toml`` content it was read from, to save it back.
    root : Path or None
        The project folder.
    numeric_controls : tuple of NumericControl
        Tables giving the total or mean of a numeric variable per cell (``total_of`` / ``mean_of``).
    zone_level : str or None
        With ``[zones]``: the categorical variable holding each person's zone.
    trips : TripProject or None
        With ``[trips]``: the trips the travellers make and their tables (DESIGN §13).
    rules : tuple of Rule
        The project's own plausibility rules (``[[rules]]``), enforced in every run unless a rules file is given.
    zone_shapes : ZoneShapes or None
        With ``[zones] shapes``: the zones' polygons, for maps.
    """

    size: int
    description: str
    schema: Schema
    tables: tuple[TargetTable, ...]
    warnings: tuple[str, ...] = ()
    spec: ProjectSpec | None = None
    root: Path | None = field(default=None, compare=False)
    numeric_controls: tuple[NumericControl, ...] = ()
    zone_level: str | None = None
    trips: TripProject | None = None
    rules: tuple[Rule, ...] = ()
    zone_shapes: ZoneShapes | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Control:
    """One control: the units meeting a condition (or the total of a column over them), for every zone of one level.

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
    condition : Condition
        Which units count, compiled once (table dialect: ``households.NP == 1``).
    totals : ndarray of float64, shape (n_zones of ``level``,)
        Control total of each zone, in the order of ``Geography.zones(level)``.
    total_of : str or None
        A numeric control: the total of this column of ``unit`` (household income) over the units meeting the
        condition, instead of their number.
    every_household : bool
        The condition reads only the sample weight (``households.WGTP > 0``, ``households.weight == 1``): a
        household control that counts every household, as PopulationSim's total control does (the weight is the
        sample's, not a household's).
    """

    name: str
    unit: str
    level: str
    importance: float
    column: str
    condition: Condition
    totals: npt.NDArray[np.float64]
    total_of: str | None = None
    every_household: bool = False

    @property
    def expression(self) -> str:
        """The condition as written."""
        return self.condition.expression

    @property
    def columns(self) -> tuple[str, ...]:
        """The unit columns the control reads: the condition's, then ``total_of``."""
        extra = (self.total_of,) if self.total_of and self.total_of not in self.condition.columns else ()
        return self.condition.columns + extra

    @property
    def group(self) -> str:
        """The control's group in reports: the unit and the columns it reads (``households.NP``); the controls of
        one group split one variable into categories (the four household sizes)."""
        return f"{self.unit}.{'+'.join(self.condition.columns) or '(all)'}" + (
            f" total of {self.total_of}" if self.total_of else ""
        )

    def incidence(self, candidates: Candidates) -> npt.NDArray[np.float64]:
        """What each candidate household counts for this control: 1/0 (a household control), its members meeting
        the condition (a person control, PopulationSim's incidence), or the total of ``total_of`` over those.

        Returns
        -------
        ndarray of float64, shape (len(candidates),); NaN values of ``total_of`` count 0.
        """
        frame = candidates.frame(self.unit)
        if self.every_household:
            return np.ones(len(candidates))
        counted = self.condition(frame).astype(np.float64)
        if self.total_of is not None:
            values = pd.to_numeric(frame[self.total_of], errors="coerce").to_numpy(dtype=np.float64)
            counted = counted * np.nan_to_num(values, nan=0.0)
        if self.unit == HOUSEHOLDS:
            return counted
        # weighted: float64 (numpy's stubs type every bincount as integer)
        return np.bincount(
            candidates.persons[HOUSEHOLD_ROW].to_numpy(), weights=counted, minlength=len(candidates)
        ).astype(np.float64, copy=False)


def incidence_matrix(controls, candidates: Candidates) -> npt.NDArray[np.float64]:
    """Every control's incidence on the candidates: float64, shape (len(candidates), len(controls))."""
    if not controls:
        return np.zeros((len(candidates), 0))
    return np.column_stack([c.incidence(candidates) for c in controls]).astype(np.float64)


@dataclass(frozen=True)
class OutputFiles:
    """PopulationSim's ``output_synthetic_population``: its households and persons files and their columns.

    Attributes
    ----------
    household_id : str
        Name of the household id column in both files.
    households_file, persons_file : str
        Plain ``name.csv`` file names.
    household_columns, person_columns : tuple of str
        Columns written after the id (and the geography levels for households, the member number for persons).
    """

    household_id: str = "household_id"
    households_file: str = "synthetic_households.csv"
    persons_file: str = "synthetic_persons.csv"
    household_columns: tuple[str, ...] = ()
    person_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputTables:
    """PopulationSim's ``output_tables`` as Synthor writes them: which tables, under which prefix.

    Attributes
    ----------
    tables : tuple of str
        Table names among ``<SEED>_weights`` (hh id, seed zone, preliminary_balanced_weight, sample_weight,
        balanced_weight, integer_weight when integerized), ``summary_hh_weights``, ``expanded_household_ids``,
        ``incidence_table`` and ``summary_<LEVEL>`` per level with controls; written as ``<prefix><name>.csv``.
    prefix : str
        PopulationSim's ``prefix`` (``final_`` by default).
    """

    tables: tuple[str, ...] = ()
    prefix: str = "final_"


@dataclass(frozen=True)
class HouseholdProject:
    """Everything a household synthesis needs: zones, controls per zone, and a sample (DESIGN §8, §9).

    Attributes
    ----------
    name : str
        Shown in reports.
    geography : Geography
    sample : Sample
        The micro-sample: the seed prior's candidates; for the other priors its column names, codebook and
        derivations (never its records).
    controls : list of Control
        In the order of the control file.
    total_control : str
        Name of the control giving households per zone (PopulationSim's ``total_hh_control``).
    max_expansion_factor, min_expansion_factor : float or None
        Upper and lower bound of a sample household's weight as a multiple of its sample weight scaled to its zone's
        households (PopulationSim's bounds, ``balancing/wrappers.py``), if given.
    absolute_upper_bound, absolute_lower_bound : float or None
        Bounds of a sample household's weight in households, if given (PopulationSim's settings of the same names).
    survey_weighting : bool
        PopulationSim's ``NO_INTEGERIZATION_EVER``: with the seed prior the result is a float weight per sample
        household in each zone of its seed zone (survey weighting), not whole households.
    output_tables : OutputTables or None
        PopulationSim's ``output_tables``: which of its tables to write besides the households and persons.
    repop : {"replace", "append"} or None
        PopulationSim's repop mode (``run --base``): the project's zones are those to repopulate; their households
        replace the base run's there, or are added to them.
    output : OutputFiles or None
        PopulationSim's output files (an imported or converted PopulationSim project), None for other projects.
    source : {"populationsim", "synthor"}
    warnings : list of str
    derived : tuple of Derivation
        Household columns computed from the members (declared, or found in the sample by
        :func:`~synthor_core.units.infer_derivations`).
    rules : tuple of HouseholdRule
        Conditions the synthetic households and persons are checked against (a Synthor project's ``[[rules]]``).
    root : Path or None
        The project folder.
    codebook : dict of (unit, column) -> Domain
        The domain of every column the records have (:meth:`record_columns`): declared, or the sample's codes and
        ranges (:func:`~synthor_core.codebook.sample_codebook`).
    shapes : ZoneShapes or None
        Polygons of the zones of one level (``[geography] shapes``), for maps of the fit per zone.
    """

    name: str
    geography: Geography
    sample: Sample
    controls: list[Control]
    total_control: str
    max_expansion_factor: float | None = None
    min_expansion_factor: float | None = None
    absolute_upper_bound: float | None = None
    absolute_lower_bound: float | None = None
    survey_weighting: bool = False
    output_tables: OutputTables | None = None
    repop: Literal["replace", "append"] | None = None
    output: OutputFiles | None = None
    source: Literal["populationsim", "synthor"] = "synthor"
    warnings: list[str] = field(default_factory=list)
    derived: tuple[Derivation, ...] = ()
    rules: tuple[HouseholdRule, ...] = ()
    root: Path | None = field(default=None, compare=False)
    codebook: dict = field(default_factory=dict, compare=False)
    shapes: ZoneShapes | None = field(default=None, compare=False)

    @property
    def total(self) -> Control:
        """The control of households per zone."""
        return next(c for c in self.controls if c.name == self.total_control)

    def record_columns(self, unit: str) -> list[str]:
        """The columns every synthetic household (``unit`` "households") or person has and the outputs write: those
        the controls read and the codebook describes, then the output settings' (for persons, then the members'
        columns derived household columns come from); sample columns only, the zone levels, ids and member number
        left out, and the sample weight unless the output settings list it (it is the sample's, not a household's)."""
        sample, output = self.sample, self.output
        controls = [col for c in self.controls if c.unit == unit and not c.every_household for col in c.columns]
        controls += [col for (u, col) in self.codebook if u == unit]  # declared [[variables]]
        if unit == HOUSEHOLDS:
            listed = list(output.household_columns) if output is not None else []
            skip = {sample.household_id, *self.geography.levels} | ({sample.weight} - set(listed))
            frame = sample.households
            wanted = controls + listed
        else:
            listed = list(output.person_columns) if output is not None else []
            wanted = controls + listed + [d.source for d in self.derived if d.source]
            wanted += [col for d in self.derived if d.condition is not None for col in d.condition.columns]
            skip = {MEMBER, sample.household_id, HOUSEHOLD_ROW, *self.geography.levels}
            frame = sample.persons
        return [c for c in dict.fromkeys(wanted) if c in frame.columns and c not in skip]

    def households_per_zone(self) -> npt.NDArray[np.int64]:
        """Households of every lowest-level zone (rounded total control), shape (n_zones,)."""
        total = self.total
        per_zone = total.totals[self.geography.parent_index(total.level)]
        return np.rint(per_zone).astype(np.int64)

    def control_groups(self) -> dict[str, list[int]]:
        """Controls by group (:attr:`Control.group`), in the order of the controls; the total control left out."""
        groups: dict[str, list[int]] = {}
        for i, c in enumerate(self.controls):
            if c.name != self.total_control:
                groups.setdefault(c.group, []).append(i)
        return groups
