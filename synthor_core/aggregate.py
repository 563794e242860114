"""Population -> target-table counts, with DuckDB.

The population is a frame of distinct records with an integer ``count`` (DESIGN §3, "Why profiles with
counts"); every target table is a ``GROUP BY`` over a cell number computed in SQL, weighted by ``count``.
One SQL expression per table gives each record's cell number (C order over the table's ``counts``), and the
same expression serves both the per-table counts and the per-record cell numbers used by calibration.
"""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd

from .schema import COUNT, Schema
from .targets.model import TargetTable


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB SQL: ``age`` -> ``"age"``, embedded quotes doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def _axis_expression(schema: Schema, table: TargetTable, var: str) -> str:
    col = quote_ident(var)
    if schema[var].type == "categorical":
        return f"CAST({col} AS BIGINT)"
    edges = table.bins[var].edges
    whens = " ".join(f"WHEN {col} < {float(e)!r} THEN {i}" for i, e in enumerate(edges[1:-1]))
    return f"(CASE {whens} ELSE {len(edges) - 2} END)" if whens else "0"


def cell_expression(schema: Schema, table: TargetTable) -> str:
    """SQL expression giving a record's cell number in ``table`` (C order over ``table.counts``)."""
    strides = np.cumprod((1,) + table.counts.shape[::-1])[:-1][::-1]
    parts = [f"{_axis_expression(schema, table, v)} * {int(s)}" for v, s in zip(table.variables, strides)]
    return " + ".join(parts) or "0"  # a table without variables (a numeric control's grand total): one cell


class Aggregator:
    """Computes every target table on a population with one DuckDB query.

    Parameters
    ----------
    schema : Schema
    tables : sequence of TargetTable

    Notes
    -----
    Owns one in-memory DuckDB connection with ``python_enable_replacements`` off; frames are registered
    explicitly. A connection is not thread-safe: use one Aggregator per thread.
    """

    def __init__(self, schema: Schema, tables):
        self.schema = schema
        self.tables = tuple(tables)
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET python_enable_replacements = false")
        self._con.execute("SET threads = 2")
        self._expressions = [cell_expression(schema, t) for t in self.tables]
        self._group_sql = " UNION ALL ".join(
            f"SELECT {i} AS t, {expr} AS cell, SUM({quote_ident(COUNT)})::DOUBLE AS n FROM population GROUP BY 2"
            for i, expr in enumerate(self._expressions)
        )

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._con.close()

    def __enter__(self) -> Aggregator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def aggregate(self, population: pd.DataFrame) -> list[npt.NDArray[np.float64]]:
        """Counts of every target table on ``population``.

        Parameters
        ----------
        population : DataFrame, one row per distinct record, schema columns (int16 codes / float64) +
            ``count`` (int64 >= 0, or float64 weights).

        Returns
        -------
        list of ndarray of float64, one per table, each shaped like ``table.counts``: persons per cell.
        """
        out = [np.zeros(t.counts.shape, dtype=np.float64) for t in self.tables]
        if len(population) == 0:
            return out
        self._con.register("population", population)
        try:
            result = self._con.execute(self._group_sql).fetchnumpy()
        finally:
            self._con.unregister("population")
        t_idx, cells, n = result["t"], result["cell"], result["n"]
        for i in range(len(self.tables)):
            sel = t_idx == i
            flat = out[i].reshape(-1)
            flat[cells[sel].astype(np.int64)] = n[sel]
        return out

    def cell_ids(self, population: pd.DataFrame) -> list[npt.NDArray[np.int64]]:
        """Cell number of every record in every table.

        Returns
        -------
        list of ndarray of int64, one per table, each of shape (len(population),), values in
        ``[0, table.counts.size)``.
        """
        if len(population) == 0:
            return [np.zeros(0, dtype=np.int64) for _ in self.tables]
        select = ", ".join(f"{expr} AS c{i}" for i, expr in enumerate(self._expressions))
        self._con.register("population", population)
        try:
            result = self._con.execute(f"SELECT {select} FROM population").fetchnumpy()
        finally:
            self._con.unregister("population")
        return [np.asarray(result[f"c{i}"], dtype=np.int64) for i in range(len(self.tables))]
