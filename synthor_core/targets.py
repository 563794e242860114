"""Target tables: reading a project folder (``synthor.toml`` + table files), validating, harmonizing totals.

A project folder holds ``synthor.toml`` (population, variables, tables) and the table files it names. Tables
are ``long`` (one column per variable plus a count column) or ``crosstab`` (first column the ``rows`` variable's
categories, header the ``columns`` variable's categories), in CSV (UTF-8), Excel (``.xlsx``) or Parquet.
Numeric variables enter a table through bin edges (``[tables.bins]``); cell labels are ``"[17, 25)"``.

Every problem is collected before anything is raised (:class:`TargetValidationError`), each naming the file,
row and column and what was expected.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import defaults
from .errors import Problem, TargetValidationError
from .schema import Bins, CategoricalVariable, NumericVariable, Schema, Variable
from .toml_files import parse_toml

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

    Fitted by calibration (generalized raking, :func:`synthor_core.calibrate.rake_counts`), reported by the
    relative error of each cell (:func:`synthor_core.metrics.measure_numeric`). Never scaled by harmonization:
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


# ------------------------------------------------------------------------------------------------ reading


def pydantic_problems(file: str, err: ValidationError) -> list[Problem]:
    """One Problem per pydantic error of ``file``: the location as row/column, pydantic's message in plain words."""
    problems = []
    for e in err.errors():
        loc = ""
        for part in e["loc"]:
            if isinstance(part, int):
                loc += f"[{part + 1}]"
            elif part in ("categorical", "numeric"):
                continue  # discriminator tag in the location
            else:
                loc += ("." if loc else "") + str(part)
        got = e.get("input")
        got_text = "" if isinstance(got, (dict, list)) else f", got {got!r}"
        problems.append(Problem(file=file, column=loc or None, message=f"{e['msg']}{got_text}"))
    return problems


def _read_frame(path: Path, shown: str, sheet: str | None) -> tuple[pd.DataFrame | None, int, list[Problem]]:
    """Read a table file as strings. Returns (frame, number of the first data row in the file, problems)."""
    if not path.is_file():
        return None, 2, [Problem(shown, "file not found")]
    return read_table_bytes(path.read_bytes(), shown, sheet)


def read_table_bytes(
    raw: bytes, shown: str, sheet: str | None = None
) -> tuple[pd.DataFrame | None, int, list[Problem]]:
    """Read the bytes of a table file (CSV UTF-8, TSV, XLSX, Parquet, told apart by the suffix of ``shown``) as
    strings.

    Returns
    -------
    (DataFrame of str or None, number of the first data row in the file, list of Problem): a problem names
    ``shown`` and says why: not UTF-8 (with the row), damaged or of another format, an unknown suffix.
    """
    suffix = Path(shown).suffix.lower()
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = raw[: exc.start].count(b"\n") + 1
                return (
                    None,
                    2,
                    [
                        Problem(
                            shown,
                            f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x} (save the file as CSV UTF-8)",
                            row=line,
                        )
                    ],
                )
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep, skipinitialspace=True)
            return frame, 2, []
        if suffix in (".xlsx", ".xlsm"):
            frame = pd.read_excel(
                io.BytesIO(raw), sheet_name=sheet if sheet is not None else 0, dtype=str, keep_default_na=False
            )
            return frame, 2, []
        if suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
            return frame.astype("string").fillna(""), 1, []
    except Exception as exc:  # a damaged file: pandas' and zipfile's errors, openpyxl's InvalidFileException and kin
        readers = (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, pd.errors.ParserError)
        if not isinstance(exc, readers) and type(exc).__module__.split(".")[0] not in (
            "openpyxl",
            "pyarrow",
            "zipfile",
        ):
            raise
        message = (
            f"could not be read as {suffix.lstrip('.')} ({type(exc).__name__}: {exc}); "
            f"the file is damaged or of another format"
        )
        return None, 2, [Problem(shown, message)]
    return None, 2, [Problem(shown, f"expected a .csv, .xlsx or .parquet file, got {suffix or 'no extension'}")]


_THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+(\.\d*)?")  # 12,345 or 1,234,567.5: commas group thousands


def _parse_count(text: str) -> float | None:
    """A count as written in a table: ``1234``, ``1,234`` (thousands), ``12.5``; None for anything else,
    including a decimal comma (``110,5`` is not 1105)."""
    plain = str(text).strip()
    if "," in plain:
        if not _THOUSANDS.fullmatch(plain):
            return None
        plain = plain.replace(",", "")
    try:
        return float(plain)
    except ValueError:
        return None


def _axis_lookup(var, bins: Bins | None) -> tuple[int, Callable[[Any], int | None]]:
    """(number of cells, label -> index or None) for one table axis."""
    if var.type == "categorical":
        index = {c: i for i, c in enumerate(var.categories)}
        return var.size, lambda label: index.get(str(label).strip())
    assert bins is not None  # a numeric variable of a table has bins (checked when the spec is read)
    return len(bins), lambda label: bins.parse_label(label)


def _expected_labels(var, bins: Bins | None) -> str:
    if var.type == "categorical":
        labels = list(var.categories)
    else:
        assert bins is not None  # a numeric variable of a table has bins (checked when the spec is read)
        labels = bins.labels
    shown = ", ".join(f'"{x}"' for x in labels[:12])
    return f"one of {shown}{', ...' if len(labels) > 12 else ''}"


def _parse_long(frame, spec, schema, bins, shown, first_row, problems) -> np.ndarray | None:
    variables = spec.table_variables
    missing = [c for c in (*variables, spec.count_column) if c not in frame.columns]
    if missing:
        for c in missing:
            what = "count column" if c == spec.count_column else "column for variable"
            problems.append(
                Problem(
                    shown,
                    f'missing {what} "{c}"; the file has columns {", ".join(repr(x) for x in frame.columns)}',
                    row=1,
                    column=c,
                )
            )
        return None
    axes = [_axis_lookup(schema[v], bins.get(v)) for v in variables]
    counts = np.zeros([n for n, _ in axes], dtype=np.float64)
    seen: dict[tuple, int] = {}
    ok = True
    for i, row in enumerate(frame.itertuples(index=False)):
        file_row = first_row + i
        values = dict(zip(frame.columns, row))
        idx = []
        for v, (_, lookup) in zip(variables, axes):
            j = lookup(values[v])
            if j is None:
                problems.append(
                    Problem(
                        shown,
                        f'expected {_expected_labels(schema[v], bins.get(v))}, got "{values[v]}"',
                        row=file_row,
                        column=v,
                    )
                )
                ok = False
            idx.append(j)
        count = _check_count(
            values[spec.count_column], shown, file_row, spec.count_column, problems, _signed(spec, schema)
        )
        if count is None or None in idx:
            ok = False
            continue
        key = tuple(idx)
        if key in seen:
            problems.append(Problem(shown, f"duplicate cell (same as row {seen[key]})", row=file_row))
            ok = False
            continue
        seen[key] = file_row
        counts[key] = count
    return counts if ok else None


def _check_count(text, shown, row, column, problems, signed: bool = False) -> float | None:
    """The number in a cell of a table file, or None and a problem naming file, row and column. Counts are
    >= 0; ``signed`` (a numeric control of a variable that may be negative) also takes ``-12.5``."""
    plain = str(text).strip()
    negative = signed and plain.startswith("-")
    value = _parse_count(plain[1:] if negative else plain)
    if value is None or math.isnan(value) or math.isinf(value) or value < 0:
        hint = (
            " (write decimals with a point: 110.5; commas may only group thousands: 1,105)" if "," in str(text) else ""
        )
        expected = "a number" if signed else "a number >= 0"
        problems.append(Problem(shown, f'expected {expected}, got "{text}"{hint}', row=row, column=column))
        return None
    return -value if negative else value


def _signed(spec: TableSpec, schema: Schema) -> bool:
    """Whether the table's values may be negative: a numeric control of a variable whose range includes < 0."""
    of = spec.numeric_of
    return of is not None and of in schema and schema[of].type == "numeric" and float(schema[of].min) < 0


def _parse_crosstab(frame, spec, schema, bins, shown, first_row, problems) -> np.ndarray | None:
    rows_var, cols_var = schema[spec.rows], schema[spec.columns]
    (n_rows, row_lookup), (n_cols, col_lookup) = (
        _axis_lookup(rows_var, bins.get(spec.rows)),
        _axis_lookup(cols_var, bins.get(spec.columns)),
    )
    counts = np.zeros((n_rows, n_cols), dtype=np.float64)
    ok = True
    header = list(frame.columns)
    col_index: list[int | None] = []
    seen_cols: dict[int, str] = {}
    for name in header[1:]:
        j = col_lookup(name)
        if j is None:
            problems.append(
                Problem(
                    shown,
                    f"header: expected {_expected_labels(cols_var, bins.get(spec.columns))}"
                    f' for variable "{spec.columns}", got "{name}"',
                    row=1,
                    column=name,
                )
            )
            ok = False
        elif j in seen_cols:
            problems.append(
                Problem(shown, f'duplicate column category "{name}" (also column "{seen_cols[j]}")', row=1, column=name)
            )
            ok = False
        else:
            seen_cols[j] = name
        col_index.append(j)
    seen_rows: dict[int, int] = {}
    for i, row in enumerate(frame.itertuples(index=False)):
        file_row = first_row + i
        label = row[0]
        r = row_lookup(label)
        if r is None:
            problems.append(
                Problem(
                    shown,
                    f"expected {_expected_labels(rows_var, bins.get(spec.rows))} for "
                    f'variable "{spec.rows}", got "{label}"',
                    row=file_row,
                    column=header[0],
                )
            )
            ok = False
        elif r in seen_rows:
            problems.append(
                Problem(
                    shown, f'duplicate row category "{label}" (also row {seen_rows[r]})', row=file_row, column=header[0]
                )
            )
            ok = False
            r = None
        else:
            seen_rows[r] = file_row
        for name, j, text in zip(header[1:], col_index, row[1:]):
            value = _check_count(text, shown, file_row, name, problems, _signed(spec, schema))
            if value is None:
                ok = False
            elif r is not None and j is not None:
                counts[r, j] = value
    return counts if ok else None


def _check_table_spec(spec: TableSpec, schema: Schema, where: str) -> tuple[dict[str, Bins], list[Problem]]:
    problems: list[Problem] = []
    bins: dict[str, Bins] = {}
    if spec.format == "long" and not spec.variables and not (spec.numeric_of and spec.variables is not None):
        problems.append(Problem(where, "a long table needs variables = [...]", column="variables"))
    if spec.total_of and spec.mean_of:
        problems.append(Problem(where, "give total_of or mean_of, not both", column="mean_of"))
    if spec.numeric_of is not None:
        key = "total_of" if spec.total_of else "mean_of"
        if spec.numeric_of not in schema:
            problems.append(
                Problem(
                    where,
                    f'{key} = "{spec.numeric_of}" is not in [[variables]] (known: {", ".join(schema.names)})',
                    column=key,
                )
            )
        elif schema[spec.numeric_of].type != "numeric":
            problems.append(
                Problem(where, f'{key} needs a numeric variable; "{spec.numeric_of}" is categorical', column=key)
            )
    if spec.format == "crosstab":
        for key in ("rows", "columns"):
            if not getattr(spec, key):
                problems.append(Problem(where, f'a crosstab table needs {key} = "variable"', column=key))
        if spec.variables:
            problems.append(
                Problem(where, "a crosstab table takes rows and columns, not variables", column="variables")
            )
    variables = spec.table_variables
    if len(set(variables)) != len(variables):
        problems.append(Problem(where, f"a variable appears twice in {list(variables)}", column="variables"))
    for v in variables:
        if v not in schema:
            problems.append(
                Problem(
                    where,
                    f'variable "{v}" is not in [[variables]] (known: {", ".join(schema.names)})',
                    column="variables",
                )
            )
            continue
        var = schema[v]
        if var.type == "numeric":
            edges = spec.bins.get(v)
            if edges is None:
                problems.append(
                    Problem(
                        where,
                        f'numeric variable "{v}" needs bin edges: [tables.bins] {v} = [{var.min:g}, ..., {var.max:g}]',
                        column=f"bins.{v}",
                    )
                )
                continue
            e = np.asarray(edges, dtype=float)
            if len(e) < 2 or not np.all(np.diff(e) > 0):
                problems.append(
                    Problem(
                        where,
                        f'bin edges of "{v}" must be at least two strictly increasing numbers, got {list(edges)}',
                        column=f"bins.{v}",
                    )
                )
            elif e[0] != var.min or e[-1] != var.max:
                problems.append(
                    Problem(
                        where,
                        f'bin edges of "{v}" must start at min = {var.min:g} and end at '
                        f"max = {var.max:g}, got {list(edges)}",
                        column=f"bins.{v}",
                    )
                )
            else:
                bins[v] = Bins(e)
    for v in spec.bins:
        if v not in variables:
            problems.append(
                Problem(where, f'bins given for "{v}", which is not a variable of this table', column=f"bins.{v}")
            )
        elif v in schema and schema[v].type != "numeric":
            problems.append(Problem(where, f'bins given for categorical variable "{v}"', column=f"bins.{v}"))
    return bins, problems


def inside_folder(root: Path, name: object, shown: str, key: str, problems: list[Problem]) -> Path | None:
    """``root / name`` when it is a plain relative path that stays inside ``root`` and names a file; else None and
    a problem appended to ``problems`` naming ``shown`` (the config file) and ``key`` (its setting). Symbolic links
    are resolved first, so a link inside the project pointing outside it is refused too."""
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(shown, f"expected a file name, got {name!r}", column=key))
        return None
    candidate = (root / name).resolve()
    if Path(name).is_absolute() or not candidate.is_relative_to(root.resolve()):
        problems.append(
            Problem(
                shown,
                f"the file {name!r} lies outside the folder {root.name}/ (file names must stay inside the project)",
                column=key,
            )
        )
        return None
    if not candidate.is_file():
        problems.append(Problem(shown, f"the file {name!r} was not found in {root.name}/", column=key))
        return None
    return candidate


def read_table(
    spec: TableSpec, schema: Schema, root: Path, where: str = PROJECT_FILE, size: int | None = None
) -> tuple[TargetTable | NumericControl | None, list[Problem]]:
    """Read and check one target table file (a :class:`NumericControl` when the spec has ``total_of``/``mean_of``).

    Parameters
    ----------
    spec : TableSpec
    schema : Schema
    root : Path
        Folder that ``spec.file`` is relative to.
    where : str
        Name of the config the spec came from, for problems in the spec itself.
    size : int or None
        The population size, to check that a numeric control's totals are reachable.

    Returns
    -------
    table : TargetTable, NumericControl or None
        None when any problem was found; counts are as in the file (not harmonized). A numeric control's mean
        must lie in its variable's range, its total be reachable by N persons (between N x min and N x max).
    problems : list of Problem
    """
    bins, problems = _check_table_spec(spec, schema, f'{where} [[tables]] "{spec.name}"')
    if problems:
        return None, problems
    path = inside_folder(root, spec.file, where, f'[[tables]] "{spec.name}" file', problems)
    if path is None:
        return None, problems
    frame, first_row, read_problems = _read_frame(path, spec.file, spec.sheet)
    if frame is None:
        return None, read_problems
    if len(frame) == 0 or (spec.format == "crosstab" and len(frame.columns) < 2):
        return None, [Problem(spec.file, "the table is empty: expected at least one row of counts")]
    frame.columns = [str(c).strip() for c in frame.columns]
    parse = _parse_long if spec.format == "long" else _parse_crosstab
    counts = parse(frame, spec, schema, bins, spec.file, first_row, problems)
    if counts is None:
        return None, problems
    if spec.numeric_of is not None:
        return _numeric_control(spec, schema, bins, counts, size)
    if counts.sum() <= 0:
        return None, [Problem(spec.file, "all counts are 0: expected a positive total")]
    return TargetTable(spec.name, spec.table_variables, bins, counts, spec.file), problems


def _numeric_control(
    spec: TableSpec, schema: Schema, bins: dict[str, Bins], values: np.ndarray, size: int | None
) -> tuple[NumericControl | None, list[Problem]]:
    """The :class:`NumericControl` of a parsed table, or None and a problem per value out of reach."""
    assert spec.numeric_of is not None
    of = schema[spec.numeric_of]
    lo, hi = float(of.min), float(of.max)  # type: ignore[union-attr]  # a numeric variable (checked with the spec)
    statistic: Literal["total", "mean"] = "total" if spec.total_of else "mean"
    control = NumericControl(spec.name, spec.table_variables, bins, of.name, statistic, values, spec.file)
    cells = control.cells()
    problems: list[Problem] = []
    for flat, value in enumerate(values.reshape(-1).tolist()):
        cell = (
            ", ".join(f"{v} {label}" for v, label in cells.cell_label(schema, flat).items()) or "the whole population"
        )
        if statistic == "mean" and not lo <= value <= hi:
            problems.append(
                Problem(spec.file, f"the mean of {of.name} for {cell} is {value:g}, outside its range [{lo:g}, {hi:g}]")
            )
        elif statistic == "total" and size is not None and not size * min(lo, 0.0) <= value <= size * max(hi, 0.0):
            problems.append(
                Problem(
                    spec.file,
                    f"the total of {of.name} for {cell} is {value:g}: {size:,} persons with {of.name} in "
                    f"[{lo:g}, {hi:g}] cannot reach it",
                )
            )
    return (None, problems) if problems else (control, [])


def harmonize(tables: list[TargetTable], size: int, schema: Schema) -> tuple[list[TargetTable], list[str]]:
    """Scale every table to the population size and report marginals on which tables disagree.

    Parameters
    ----------
    tables : list of TargetTable
    size : int
        Population size N; every returned table sums to N.
    schema : Schema

    Returns
    -------
    tables : list of TargetTable, counts scaled by ``size / total``.
    warnings : list of str
        One per scaled table (its total and the factor) and one per category whose implied marginal differs by
        more than ``defaults.MARGINAL_DISAGREEMENT`` (relative) between two tables.
    """
    warnings: list[str] = []
    scaled = []
    for t in tables:
        total = float(t.counts.sum())
        if abs(total - size) > defaults.TOTAL_MISMATCH * size:
            warnings.append(
                f'table "{t.name}" totals {total:,.6g}, not the population size {size:,}; scaled by {size / total:.6g}'
            )
        scaled.append(TargetTable(t.name, t.variables, t.bins, t.counts * (size / total), t.source))
    warnings += _marginal_disagreements(scaled, schema)
    return scaled, warnings


def _marginal(table: TargetTable, var: str) -> np.ndarray:
    axis = table.variables.index(var)
    other = tuple(i for i in range(table.counts.ndim) if i != axis)
    return table.counts.sum(axis=other)


def _marginal_disagreements(tables: list[TargetTable], schema: Schema) -> list[str]:
    warnings = []
    for var in schema.names:
        having = [t for t in tables if var in t.variables]
        for a_i in range(len(having)):
            for b in having[a_i + 1 :]:
                a = having[a_i]
                ma, mb, labels = _marginal(a, var), _marginal(b, var), None
                if schema[var].type == "numeric":
                    common = np.intersect1d(a.bins[var].edges, b.bins[var].edges)
                    coarse = Bins(common)
                    ma = np.bincount(coarse.locate(a.bins[var].edges[:-1]), weights=ma, minlength=len(coarse))
                    mb = np.bincount(coarse.locate(b.bins[var].edges[:-1]), weights=mb, minlength=len(coarse))
                    labels = coarse.labels
                else:
                    labels = list(schema[var].categories)
                for label, x, y in zip(labels, ma, mb):
                    if abs(x - y) >= 0.5 and abs(x - y) > defaults.MARGINAL_DISAGREEMENT * max(x, y):
                        warnings.append(
                            f'{var} = "{label}": table "{a.name}" implies {x:,.1f}, table "{b.name}" '
                            f"implies {y:,.1f} ({abs(x - y) / max(x, y):.1%} apart)"
                        )
    return warnings


def load_project(path: str | Path) -> Project:
    """Read, validate and harmonize a project folder.

    Parameters
    ----------
    path : str or Path
        The folder holding ``synthor.toml`` (or the ``synthor.toml`` file itself).

    Returns
    -------
    Project

    Raises
    ------
    TargetValidationError
        With every problem found, each naming the file, row and column.
    """
    project, problems = _load(Path(path))
    if problems or project is None:
        raise TargetValidationError(problems)
    return project


def validate_project(path: str | Path) -> list[Problem]:
    """Every problem of a project folder (empty list when it is valid); never raises for bad input."""
    return _load(Path(path))[1]


def parse_project_text(text: str, where: str = PROJECT_FILE) -> tuple[ProjectSpec | None, Schema | None, list[Problem]]:
    """Parse and check the text of a ``synthor.toml``: (spec, schema, problems)."""
    raw, problems = parse_toml(text, where)
    if raw is None:
        return None, None, problems
    try:
        spec = ProjectSpec.model_validate(raw)
    except ValidationError as exc:
        return None, None, pydantic_problems(where, exc)
    try:
        schema = Schema(spec.variables)
    except ValueError as exc:
        return None, None, [Problem(where, str(exc), column="variables")]
    names = [t.name for t in spec.tables]
    problems = [
        Problem(where, f'table name "{n}" is used twice', column="tables")
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    return spec, schema, problems


def _load(path: Path) -> tuple[Project | None, list[Problem]]:
    toml_path = path if path.is_file() else path / PROJECT_FILE
    root = toml_path.parent
    if not toml_path.is_file():
        return None, [
            Problem(
                PROJECT_FILE,
                "not found: a project folder needs a synthor.toml at its top (or in one folder inside the zip)",
            )
        ]
    raw = toml_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            Problem(
                PROJECT_FILE,
                f"expected UTF-8 text, found byte 0x{raw[exc.start]:02x}",
                row=raw[: exc.start].count(b"\n") + 1,
            )
        ]
    spec, schema, problems = parse_project_text(text)
    if spec is None or schema is None:
        return None, problems
    tables, numeric = [], []
    for tspec in spec.tables:
        table, table_problems = read_table(tspec, schema, root, size=spec.population.size)
        problems += table_problems
        if isinstance(table, NumericControl):
            numeric.append(table)
        elif table is not None:
            tables.append(table)
    if not problems and not tables:
        problems.append(
            Problem(
                PROJECT_FILE, "every table is a numeric control (total_of / mean_of): add at least one table of counts"
            )
        )
    if problems:
        return None, problems
    tables, warnings = harmonize(tables, spec.population.size, schema)
    return Project(
        spec.population.size,
        spec.population.description,
        schema,
        tuple(tables),
        tuple(warnings),
        spec,
        root,
        tuple(numeric),
    ), []


__all__ = [
    "CategoricalVariable",
    "NumericControl",
    "NumericVariable",
    "PopulationSpec",
    "Project",
    "ProjectSpec",
    "TableSpec",
    "TargetTable",
    "harmonize",
    "load_project",
    "read_table",
    "validate_project",
    "parse_project_text",
]


# ------------------------------------------------------------------------------------------------ editing
# The app edits a project as its folder: a raw ``synthor.toml`` dict (possibly not valid yet) plus table files.

COUNT_COLUMN_NAMES = (
    "count",
    "n",
    "freq",
    "frequency",
    "persons",
    "people",
    "total",
    "value",
    "weight",
    "population",
    "number",
)


def read_project_toml(folder: str | Path) -> dict:
    """The raw content of ``folder/synthor.toml`` (an empty dict when missing or not valid TOML)."""
    path = Path(folder) / PROJECT_FILE
    try:
        raw, _ = parse_toml(path.read_text(encoding="utf-8"), PROJECT_FILE)
    except (OSError, UnicodeDecodeError):
        return {}
    return raw or {}


def write_project_toml(folder: str | Path, raw: dict) -> None:
    """Write a raw project dict as ``folder/synthor.toml`` (None values and empty bins are left out)."""
    import tomli_w

    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None and not (k == "bins" and not v)}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    text = "# Synthor project (written by the Synthor app)\n" + tomli_w.dumps(clean(raw))
    (Path(folder) / PROJECT_FILE).write_text(text, encoding="utf-8")


def edges_from_labels(labels) -> list[float] | None:
    """Bin edges (list of float, increasing) from interval labels ``"[17, 25)" ... "[65, 90]"`` in any order, or
    None when they are not contiguous intervals."""
    pairs = []
    for label in labels:
        m = _INTERVAL_LABEL.match(str(label))
        if not m:
            return None
        pairs.append((float(m.group(1)), float(m.group(2))))
    pairs = sorted(set(pairs))
    if not pairs or any(a[1] != b[0] for a, b in zip(pairs, pairs[1:])):
        return None
    return [p[0] for p in pairs] + [pairs[-1][1]]


_INTERVAL_LABEL = re.compile(r"^\s*\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*[\])]\s*$")


def _matching_variable(values, schema: Schema | None, taken: set) -> str | None:
    if schema is None:
        return None
    values = {str(v).strip() for v in values if str(v).strip()}
    if not values:
        return None
    best, best_share = None, 0.0
    for var in schema:
        if var.name in taken:
            continue
        if var.type == "categorical":
            share = len(values & set(var.categories)) / len(values)
        else:  # intervals inside the variable's range (hours 1-99 are not ages 17-90)
            edges = edges_from_labels(values)
            share = 1.0 if edges and var.min <= edges[0] and edges[-1] <= var.max else 0.0
        if share > best_share:
            best, best_share = var.name, share
    return best if best_share >= 0.8 else None


def table_file_name(name: str, suffix: str = ".csv") -> str:
    """Where a table named ``name`` is stored inside a project folder: ``tables/<name><suffix>`` with every
    character other than letters, digits, ``_`` and ``-`` replaced by ``_`` (at most 64), so a typed or uploaded
    name such as ``../../etc/x`` can never place a file outside the project."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", str(name))[:64].strip("_") or "table"
    return f"tables/{stem}{suffix if suffix in ('.csv', '.xlsx', '.parquet') else '.csv'}"


def suggest_table_spec(frame: pd.DataFrame, schema: Schema | None, name: str, file: str) -> dict:
    """Guess how an uploaded table maps to the schema: its format, variables, count column and bins.

    Parameters
    ----------
    frame : DataFrame as read (strings), header = first row.
    schema : Schema or None (a column may be named after a variable, or hold its categories).
    name, file : the table's name and its path inside the project folder.

    Returns
    -------
    dict, a raw ``[[tables]]`` entry (``format`` "long" or "crosstab"); a guess for the user to confirm, never
    validated here. A long table has a count column (named like ``count``, ``n``, ``persons`` ...); otherwise,
    when the header after the first column holds one variable's categories, the table is a crosstab.
    """
    columns = [str(c).strip() for c in frame.columns]
    count = next((c for c in columns if c.lower() in COUNT_COLUMN_NAMES), None)
    spec: dict = {"name": name, "file": file}
    bins: dict[str, list[float]] = {}
    if count is not None or len(columns) < 2:
        taken: set = set()
        variables = []
        for col in columns:
            if col == count:
                continue
            var = col if schema is not None and col in schema else _matching_variable(frame[col], schema, taken)
            var = var or col
            taken.add(var)
            variables.append(var)
            edges = edges_from_labels(frame[col].unique())
            if edges and (schema is None or (var in schema and schema[var].type == "numeric")):
                bins[var] = edges
        spec.update(format="long", variables=variables, count_column=count or "count")
    else:
        rows = (
            columns[0]
            if schema is not None and columns[0] in schema
            else (_matching_variable(frame.iloc[:, 0], schema, set()) or columns[0])
        )
        cols = _matching_variable(columns[1:], schema, {rows}) or "columns"
        spec.update(format="crosstab", rows=rows, columns=cols)
        for var, labels in ((rows, frame.iloc[:, 0].unique()), (cols, columns[1:])):
            edges = edges_from_labels(labels)
            if edges:
                bins[var] = edges
    if bins:
        spec["bins"] = bins
    return spec


def table_labels(frame: pd.DataFrame, spec: dict) -> dict[str, list[str]]:
    """The labels each variable of an uploaded table takes, in the table's order (first appearance), keyed by the
    variable names of ``spec`` (a raw ``[[tables]]`` entry as :func:`suggest_table_spec` gives, after the user's
    corrections: long ``variables`` in column order without the count column, or crosstab ``rows`` and
    ``columns``). Empty labels are left out."""
    columns = [str(c).strip() for c in frame.columns]

    def ordered(values) -> list[str]:
        return [v for v in dict.fromkeys(str(x).strip() for x in values) if v]

    if spec.get("format") == "crosstab":
        return {spec["rows"]: ordered(frame.iloc[:, 0]), spec["columns"]: ordered(columns[1:])}
    others = [c for c in columns if c != spec.get("count_column", "count")]
    return {var: ordered(frame.iloc[:, columns.index(col)]) for var, col in zip(spec.get("variables", []), others)}


def table_total(frame: pd.DataFrame, spec: dict) -> int | None:
    """Persons an uploaded table counts (rounded), or None when a count is not a number: the count column of a
    long table, every cell right of the first column of a crosstab."""
    if spec.get("format") == "crosstab":
        cells = frame.iloc[:, 1:].to_numpy().reshape(-1)
    else:
        column = spec.get("count_column", "count")
        if column not in frame.columns:
            return None
        cells = frame[column].to_numpy()
    values = [_parse_count(v) for v in cells]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return round(sum(v for v in values if v is not None))  # all numbers here: checked just above


def infer_variables(
    labels: dict[str, list[str]], variables: list[dict], extend_known: bool = True
) -> tuple[list[dict], list[str]]:
    """The project's raw ``[[variables]]`` extended by what one table shows (the schema is read from the tables,
    then reviewed by the user).

    Parameters
    ----------
    labels : dict of variable name -> labels in the table's order (:func:`table_labels`).
    variables : list of dict, the project's raw ``[[variables]]`` so far (not changed).
    extend_known : bool
        Whether a known categorical variable gains the labels it lacks; when False they are only noted (the
        table's rows with them are then problems of the project, as a typo should be).

    Returns
    -------
    (variables, notes): a new list in which a variable the project lacks is added, numeric when its labels are
    contiguous intervals such as ``"[17, 25)" ... "[75, 90]"`` (min and max from the edges, integer when every
    edge is a whole number) and categorical otherwise (categories in the table's order); a known categorical
    variable gains the categories it lacked (appended), a known numeric one widens its range to the edges. Notes
    say what changed, one line per variable, for the user to review.
    """
    out = [dict(v) for v in variables]
    by_name = {v.get("name"): v for v in out}
    notes = []
    for name, values in labels.items():
        if not values:
            continue
        edges = edges_from_labels(values)
        known = by_name.get(name)
        if known is None:
            if edges:
                known = {
                    "name": name,
                    "type": "numeric",
                    "min": edges[0],
                    "max": edges[-1],
                    "integer": all(float(e).is_integer() for e in edges),
                }
                notes.append(f"new numeric variable {name}: {edges[0]:g} to {edges[-1]:g}")
            else:
                known = {"name": name, "type": "categorical", "categories": list(values)}
                notes.append(f"new categorical variable {name}: {len(values)} categories")
            out.append(known)
            by_name[name] = known
        elif known.get("type", "categorical") == "categorical":
            missing = [v for v in values if v not in known.get("categories", [])]
            if missing:
                shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
                if extend_known:
                    known["categories"] = list(known.get("categories", [])) + missing
                    notes.append(f"{name}: {len(missing)} new categories ({shown})")
                else:
                    notes.append(f"{name}: {len(missing)} labels not among its categories ({shown})")
        elif edges and (edges[0] < known.get("min", edges[0]) or edges[-1] > known.get("max", edges[-1])):
            known["min"], known["max"] = min(edges[0], known["min"]), max(edges[-1], known["max"])
            notes.append(f"{name}: range widened to {known['min']:g} to {known['max']:g}")
    return out, notes


def marginal_template(schema: Schema, variable: str, edges=None) -> pd.DataFrame:
    """An editable marginal: one row per category (or bin, for a numeric variable with ``edges``) and a
    ``count`` column of zeros; DataFrame with columns ``[variable, "count"]``.

    Raises
    ------
    ValueError
        When a numeric variable has no edges, or the edges are not increasing from its min to its max.
    """
    var = schema[variable]
    if var.type == "categorical":
        labels = list(var.categories)
    else:
        if edges is None:
            raise ValueError(f'numeric variable "{variable}" needs bin edges from {var.min:g} to {var.max:g}')
        bins = Bins(edges)
        if bins.edges[0] != var.min or bins.edges[-1] != var.max:
            raise ValueError(f'bin edges of "{variable}" must start at {var.min:g} and end at {var.max:g}')
        labels = bins.labels
    return pd.DataFrame({variable: labels, "count": [0.0] * len(labels)})
