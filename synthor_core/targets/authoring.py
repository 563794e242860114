"""Building a project from its table files: the variables, categories, ranges and table settings an uploaded table
shows, and templates for typing a marginal by hand.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from ..schema import Bins, Schema
from .tables import _parse_count

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


def not_a_table_of_counts(frame: pd.DataFrame) -> str | None:
    """Why an uploaded file is not a table of counts (a letter or a list saved as .csv), or None.

    A table of counts has at least two columns (a variable and its counts, or a cross-tabulation's row labels and
    one column per category) and a column whose cells are counts (:func:`~synthor_core.targets.tables._parse_count`
    on at least 80 % of its non-empty cells).
    """
    columns = [str(c) for c in frame.columns]
    shown = ", ".join(f'"{c[:30]}"' for c in columns[:3]) + (" ..." if len(columns) > 3 else "")
    if len(columns) < 2:
        return (
            f"it has one column ({shown}): expected a table of counts, a column per variable and one of counts, or "
            f"a cross-tabulation"
        )

    def counts(column) -> bool:
        cells = [str(x).strip() for x in frame[column].head(200) if str(x).strip()]
        return bool(cells) and sum(_parse_count(x) is not None for x in cells) >= 0.8 * len(cells)

    if not any(counts(c) for c in frame.columns):
        return f"no column of counts among its columns ({shown}): expected numbers of persons in one or more columns"
    return None


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
