"""The target model of a person project: its settings (``synthor.toml``), target tables and numeric controls."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from .. import defaults
from ..schema import Bins, Schema, Variable

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


class ProjectSpec(BaseModel):
    """The whole ``synthor.toml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    population: PopulationSpec
    variables: list[Variable] = Field(min_length=1)
    tables: list[TableSpec] = Field(min_length=1)


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
    """

    size: int
    description: str
    schema: Schema
    tables: tuple[TargetTable, ...]
    warnings: tuple[str, ...] = ()
    spec: ProjectSpec | None = None
    root: Path | None = field(default=None, compare=False)
    numeric_controls: tuple[NumericControl, ...] = ()
