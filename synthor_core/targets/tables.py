"""Target tables read from their files (long or cross-tab; CSV, Excel, Parquet), checked and harmonized.

Tables are ``long`` (one column per variable plus a count column) or ``crosstab`` (first column the ``rows`` variable's
categories, header the ``columns`` variable's categories). Numeric variables enter a table through bin edges
(``[tables.bins]``); cell labels are ``"[17, 25)"``. Every problem is collected before anything is raised
(:class:`TargetValidationError`), each naming the file, row and column and what was expected.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from .. import defaults
from ..errors import Problem
from ..schema import Bins, Schema
from .model import PROJECT_FILE, NumericControl, TableSpec, TargetTable


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
        message = str(e["msg"])
        if e["type"] in ("union_tag_not_found", "union_tag_invalid"):  # a discriminated union: say what is expected
            tags = e.get("ctx", {}).get("expected_tags") or "'categorical', 'numeric'"
            given = e.get("ctx", {}).get("tag")
            message = f"expected type = one of {tags}" + (f", got {given!r}" if given else " (the key type is missing)")
            got_text = ""
        problems.append(Problem(file=file, column=loc or None, message=f"{message}{got_text}"))
    return problems


def _read_frame(path: Path, shown: str, sheet: str | None) -> tuple[pd.DataFrame | None, int, list[Problem]]:
    """Read a table file as strings. Returns (frame, number of the first data row in the file, problems)."""
    if not path.is_file():
        return None, 2, [Problem(shown, "file not found")]
    return read_table_bytes(path.read_bytes(), shown, sheet)


MAX_TABLE_COLUMNS = 10_000  # columns of one table file (a cross-tabulation of 10,000 categories is not a table)


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
            if b"\x00" in raw[:4096]:  # an image, a workbook, a zip named .csv: not text at all
                return None, 2, [Problem(shown, "is not a text table (it holds binary data): expected CSV text")]
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
            first = text[: text.find("\n") if "\n" in text else len(text)]
            # a spreadsheet saved with a decimal comma separates its cells with ";": told apart by the header
            sep = "\t" if suffix == ".tsv" else ";" if ";" in first and "," not in first else ","
            width = first.count(sep) + 1
            if width > MAX_TABLE_COLUMNS:  # pandas takes minutes over a header of a million columns
                wide = Problem(shown, f"has {width:,} columns; expected at most {MAX_TABLE_COLUMNS:,}", row=1)
                return None, 2, [wide]
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep, skipinitialspace=True)
            header = next(csv.reader(io.StringIO(text), delimiter=sep, skipinitialspace=True), [])
            return _unless_duplicated(frame, header, shown)
        if suffix in (".xlsx", ".xlsm"):
            problem = _not_a_workbook(raw)
            if problem:
                return None, 2, [Problem(shown, problem)]
            workbook = pd.ExcelFile(io.BytesIO(raw))
            names = [str(n) for n in workbook.sheet_names]
            listed = ", ".join(f'"{n}"' for n in names)
            if sheet is not None and sheet not in names:
                return None, 2, [Problem(shown, f'no sheet named "{sheet}"; the workbook has {listed}', column="sheet")]
            chosen = sheet if sheet is not None else names[0]
            frame = pd.read_excel(workbook, sheet_name=chosen, dtype=str, keep_default_na=False)
            if frame.empty and sheet is None and len(names) > 1:
                return (
                    None,
                    2,
                    [
                        Problem(
                            shown,
                            f'the first sheet "{chosen}" holds no table; the workbook has sheets {listed}: name the '
                            f'one with the table with sheet = "..." in the table\'s entry of synthor.toml',
                        )
                    ],
                )
            if frame.columns.empty:
                return frame, 2, []  # an empty sheet: said as an empty table
            first = pd.read_excel(workbook, sheet_name=chosen, header=None, nrows=1, dtype=str)
            header = [str(c) for c in first.iloc[0].tolist()]
            return _unless_duplicated(frame, header, shown)
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


def _unless_duplicated(frame: pd.DataFrame, header: list[str], shown: str) -> tuple[pd.DataFrame | None, int, list]:
    """``(frame, 2, [])``, or a problem when a name appears twice in the header (pandas would read the second
    ``no`` as a column ``no.1``)."""
    names = [str(h).strip() for h in header]
    twice = sorted({n for n in names if n and names.count(n) > 1}, key=names.index)
    if not twice:
        return frame, 2, []
    problems = [
        Problem(
            shown,
            f'"{n}" heads more than one column (columns '
            + ", ".join(str(i + 1) for i, h in enumerate(names) if h == n)
            + "): each category or variable needs one column",
            row=1,
            column=n,
        )
        for n in twice
    ]
    return None, 2, problems


def _not_a_workbook(raw: bytes) -> str | None:
    """Why bytes named .xlsx are not an Excel workbook (an old .xls, a zip of other files), or None."""
    if raw[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        return "an Excel 97-2003 workbook (.xls): save it as .xlsx (Excel Workbook) or CSV UTF-8"
    if raw[:2] != b"PK":
        return None  # read as usual: the reader names what it found
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            inside = archive.namelist()
    except zipfile.BadZipFile:
        return None
    if "xl/workbook.xml" in inside:
        return None
    shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3:,} more" if len(inside) > 3 else "")
    return (
        f"a zip archive, not an Excel workbook (it holds {shown or 'nothing'}); expected a .xlsx file saved by a "
        f"spreadsheet"
    )


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


def _suggest(var, bins: Bins | None, got) -> str:
    """`` (did you mean "Male"?)`` for a label close to one of a categorical variable's (difflib, case ignored),
    else ``""`` (a bin that is not the table's is a matter of bins, not of spelling)."""
    import difflib

    if var.type != "categorical":
        return ""
    lowered = {str(x).lower(): str(x) for x in var.categories}
    close = difflib.get_close_matches(str(got).strip().lower(), list(lowered), n=1, cutoff=0.6)
    return f' (did you mean "{lowered[close[0]]}"?)' if close else ""


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
                        f'expected {_expected_labels(schema[v], bins.get(v))}, got "{values[v]}"'
                        + _suggest(schema[v], bins.get(v), values[v]),
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
                    f' for variable "{spec.columns}", got "{name}"' + _suggest(cols_var, bins.get(spec.columns), name),
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
                    f'variable "{spec.rows}", got "{label}"' + _suggest(rows_var, bins.get(spec.rows), label),
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


def size_problem(size: int, tables) -> str | None:
    """Why a population of ``size`` persons cannot fit ``tables``, or None: it must have at least one person for
    each cell a table counts persons in (a population of 1 cannot show two sexes).

    Parameters
    ----------
    size : int
        Population size N.
    tables : sequence of TargetTable
    """
    if not tables:
        return None
    widest = max(tables, key=lambda t: int(np.count_nonzero(t.counts)))
    cells = int(np.count_nonzero(widest.counts))
    if size >= cells:
        return None
    total = float(widest.counts.sum())
    return (
        f'a population of {size:,} cannot fit the tables: table "{widest.name}" counts persons in {cells:,} cells, '
        f"so N must be at least {cells:,} (the table totals {total:,.0f})"
    )


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
