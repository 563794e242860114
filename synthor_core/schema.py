"""Variables and the schema: what one synthetic record looks like.

A record has one value per variable. Categorical values are strings from the variable's ``categories``;
numeric values are floats in ``[min, max]`` (whole numbers when ``integer`` is true) in the variable's ``unit``.
Inside the library a population frame stores categorical values as ``int16`` codes (position in
``categories``) and numeric values as ``float64``; labels appear only at the edges (files, UI, LLM).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

COUNT = "count"  # name of the multiplicity column of a population frame (int64 >= 0)


class CategoricalVariable(BaseModel):
    """A variable whose values are labels from a fixed list.

    Parameters
    ----------
    name : str
        Column name; letters, digits and ``_``.
    categories : list of str
        Allowed labels, unique, in display order (the order of an ordinal scale when ``ordered``).
    ordered : bool
        True for ordinal variables (education level, income band).
    description : str
        Plain words for people and for the LLM prior.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["categorical"] = "categorical"
    categories: tuple[str, ...] = Field(min_length=1)
    ordered: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _check_categories(self) -> CategoricalVariable:
        seen: set[str] = set()
        for label in self.categories:
            if label.strip() != label or not label:
                raise ValueError(f"category {label!r} is empty or has leading/trailing spaces")
            if label in seen:
                raise ValueError(f"category {label!r} is listed twice")
            seen.add(label)
        return self

    @property
    def size(self) -> int:
        """Number of categories."""
        return len(self.categories)


class NumericVariable(BaseModel):
    """A variable whose values are numbers in a closed range ``[min, max]``.

    Parameters
    ----------
    name : str
        Column name.
    min, max : float
        Inclusive range, ``min < max``, in ``unit``.
    integer : bool
        True when values are whole numbers (age in completed years).
    unit : str
        Unit of the values ("years", "hours per week", "USD").
    description : str
        Plain words for people and for the LLM prior.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["numeric"] = "numeric"
    min: float
    max: float
    integer: bool = False
    unit: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _check_range(self) -> NumericVariable:
        if not (math.isfinite(self.min) and math.isfinite(self.max)) or not self.min < self.max:
            raise ValueError(f"expected min < max (finite numbers), got min={self.min}, max={self.max}")
        if self.integer and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError(f"integer variable needs whole-number min and max, got {self.min}, {self.max}")
        return self


Variable = Annotated[CategoricalVariable | NumericVariable, Field(discriminator="type")]


def format_edge(value: float) -> str:
    """Format a bin edge as the shortest exact text: ``17.0 -> "17"``, ``2.5 -> "2.5"``."""
    return f"{value:g}" if float(value) != int(value) or abs(value) >= 1e15 else str(int(value))


_INTERVAL = re.compile(r"^\s*\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*([\])])\s*$")


class Bins:
    """Bin edges of a numeric variable in one target table.

    Bins are ``[e0, e1), [e1, e2), ..., [e_{m-1}, e_m]``: left-closed, the last one closed on both sides, so
    ``e0 = min`` and ``e_m = max`` cover the whole range. Labels are ``"[17, 25)"`` ... ``"[65, 90]"``.

    Parameters
    ----------
    edges : sequence of float, length m + 1 >= 2, strictly increasing.
    """

    def __init__(self, edges: npt.ArrayLike):
        self.edges = np.asarray(edges, dtype=np.float64)
        if self.edges.ndim != 1 or len(self.edges) < 2 or not np.all(np.diff(self.edges) > 0):
            raise ValueError(f"bin edges must be at least two strictly increasing numbers, got {edges!r}")

    def __len__(self) -> int:
        return len(self.edges) - 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Bins) and np.array_equal(self.edges, other.edges)

    def __repr__(self) -> str:
        return f"Bins({[format_edge(e) for e in self.edges]})"

    @property
    def labels(self) -> list[str]:
        """Cell labels, one per bin, e.g. ``["[17, 25)", ..., "[65, 90]"]``."""
        e = [format_edge(x) for x in self.edges]
        return [f"[{e[i]}, {e[i + 1]}{']' if i == len(self) - 1 else ')'}" for i in range(len(self))]

    def locate(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Bin index of each value, shape like ``values``, int64; values must lie in ``[e0, e_m]``."""
        idx = np.searchsorted(self.edges, np.asarray(values, dtype=np.float64), side="right") - 1
        return np.clip(idx, 0, len(self) - 1)

    def parse_label(self, label: str) -> int | None:
        """Index of the bin whose label is ``label`` (spaces and number formatting are free), or None."""
        m = _INTERVAL.match(str(label))
        if not m:
            return None
        try:
            lo, hi = float(m.group(1)), float(m.group(2))
        except ValueError:
            return None
        for i in range(len(self)):
            if lo == self.edges[i] and hi == self.edges[i + 1]:
                closed_right = m.group(3) == "]"
                if closed_right == (i == len(self) - 1):
                    return i
        return None


class Schema:
    """The ordered list of variables of a population.

    Parameters
    ----------
    variables : sequence of CategoricalVariable | NumericVariable, names unique.

    Raises
    ------
    ValueError
        When two variables share a name.
    """

    def __init__(self, variables):
        self.variables: tuple = tuple(variables)
        self._by_name = {v.name: v for v in self.variables}
        if len(self._by_name) != len(self.variables):
            raise ValueError("variable names must be unique")
        if COUNT in self._by_name:
            raise ValueError(f'"{COUNT}" is reserved for the multiplicity column; rename the variable')

    @property
    def names(self) -> list[str]:
        """Variable names in schema order."""
        return [v.name for v in self.variables]

    def __getitem__(self, name: str):
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.variables)

    def empty_population(self) -> pd.DataFrame:
        """A population frame with no records: schema columns (int16 codes / float64) + ``count`` int64."""
        cols = {
            v.name: pd.Series([], dtype=np.int16 if v.type == "categorical" else np.float64) for v in self.variables
        }
        cols[COUNT] = pd.Series([], dtype=np.int64)
        return pd.DataFrame(cols)

    def encode(self, records: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
        """Check labelled records against the schema and encode the valid ones.

        Parameters
        ----------
        records : DataFrame, one row per record, one column per variable (labels for categoricals, numbers for
            numerics); an optional ``count`` column is kept.

        Returns
        -------
        encoded : DataFrame, the valid rows only, columns as in ``empty_population`` (``count`` if given).
        rejected : dict, reason -> number of rows dropped (``"missing variable"``, ``"age out of range"`` ...).
            Rows are dropped, never clipped or patched (DESIGN §3, step 4).
        """
        n = len(records)
        keep = np.ones(n, dtype=bool)
        rejected: dict[str, int] = {}
        out: dict[str, np.ndarray] = {}
        for v in self.variables:
            if v.name not in records.columns:
                if n:
                    rejected[f"missing {v.name}"] = n
                keep[:] = False
                out[v.name] = np.zeros(n, dtype=np.int16 if v.type == "categorical" else np.float64)
                continue
            col = records[v.name]
            if v.type == "categorical":
                codes = pd.Index(list(v.categories)).get_indexer(col.astype("string").str.strip())
                bad = (codes < 0) & keep
                out[v.name] = codes.astype(np.int16)
            else:
                num = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                bad = ~np.isfinite(num) | (num < v.min) | (num > v.max)
                if v.integer:
                    bad |= np.isfinite(num) & (np.round(num) != num)
                bad &= keep
                out[v.name] = num
            if bad.any():
                rejected[f"{v.name} outside schema"] = int(bad.sum())
                keep &= ~bad
        frame = pd.DataFrame(out)
        if COUNT in records.columns:
            frame[COUNT] = pd.to_numeric(records[COUNT]).to_numpy(dtype=np.int64)
        return frame.loc[keep].reset_index(drop=True), rejected

    def decode(self, population: pd.DataFrame) -> pd.DataFrame:
        """Turn a coded population frame into labels: categoricals as ``pandas.Categorical`` of the labels,
        integer numerics as int64, other numerics float64; other columns (``count``) unchanged."""
        out = {}
        for col in population.columns:
            if col in self._by_name:
                v = self._by_name[col]
                if v.type == "categorical":
                    out[col] = pd.Categorical.from_codes(
                        population[col].to_numpy(), categories=list(v.categories), ordered=v.ordered
                    )
                elif v.integer:
                    out[col] = population[col].to_numpy().round().astype(np.int64)
                else:
                    out[col] = population[col].to_numpy()
            else:
                out[col] = population[col].to_numpy()
        return pd.DataFrame(out, index=population.index)


def expand_records(population: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """One row per person: each distinct record repeated ``count`` times, labels decoded.

    Parameters
    ----------
    population : DataFrame, schema columns coded + ``count`` (int64 >= 0).

    Returns
    -------
    DataFrame of ``population["count"].sum()`` rows, one column per variable in schema order (categoricals as
    labels, integer numerics int64, other numerics float64), index 0..N-1.
    """
    repeats = population[COUNT].to_numpy(dtype=np.int64)
    expanded = population.iloc[np.repeat(np.arange(len(population)), repeats)][schema.names]
    return schema.decode(expanded.reset_index(drop=True))


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` for CSV exports in which no text cell starts a spreadsheet formula: text starting with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP, "CSV Injection"). Numbers,
    negative ones included, are left alone; :func:`spreadsheet_unescape` reverses it when a file is read back."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype == object or isinstance(column.dtype, (pd.StringDtype, pd.CategoricalDtype)):
            text = column.astype("string")
            risky = text.str.startswith(FORMULA_PREFIXES).fillna(False)
            if risky.any():
                out[name] = text.where(~risky, "'" + text).astype(object)
    return out


def spreadsheet_unescape(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`spreadsheet_safe` on a frame read from CSV as text: ``'=x`` is ``=x`` again."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object or isinstance(out[name].dtype, pd.StringDtype):
            text = out[name].astype("string")
            escaped = (text.str.startswith("'") & text.str[1:].str.startswith(FORMULA_PREFIXES)).fillna(False)
            if escaped.any():
                out[name] = text.where(~escaped, text.str[1:]).astype(object)
    return out


SCHEMA_COLUMNS = ["name", "type", "categories", "ordered", "min", "max", "integer", "unit", "description"]


def variables_frame(raw_variables: list[dict]) -> pd.DataFrame:
    """Raw ``[[variables]]`` entries as an editable frame, one row per variable, columns ``SCHEMA_COLUMNS``;
    categories joined with ``" | "``."""
    rows = []
    for v in raw_variables:
        rows.append(
            {
                "name": v.get("name", ""),
                "type": v.get("type", "categorical"),
                "categories": " | ".join(v.get("categories", [])),
                "ordered": bool(v.get("ordered", False)),
                "min": v.get("min"),
                "max": v.get("max"),
                "integer": bool(v.get("integer", False)),
                "unit": v.get("unit", ""),
                "description": v.get("description", ""),
            }
        )
    return pd.DataFrame(rows, columns=SCHEMA_COLUMNS)


def variables_from_frame(frame: pd.DataFrame) -> list[dict]:
    """The inverse of :func:`variables_frame`: raw ``[[variables]]`` entries (not validated here; loading the
    project reports what is wrong, per variable). Rows without a name are skipped."""
    out = []
    for row in frame.to_dict("records"):
        name = str(row.get("name") or "").strip()
        if not name:
            continue
        if row.get("type") == "numeric":
            entry: dict[str, Any] = {"name": name, "type": "numeric"}
            for key in ("min", "max"):
                if row.get(key) is not None and not pd.isna(row.get(key)):
                    entry[key] = float(row[key])
            entry["integer"] = bool(row.get("integer"))
            if row.get("unit"):
                entry["unit"] = str(row["unit"])
        else:
            cats = [c.strip() for c in str(row.get("categories") or "").split("|") if c.strip()]
            entry = {"name": name, "type": "categorical", "categories": cats, "ordered": bool(row.get("ordered"))}
        if row.get("description"):
            entry["description"] = str(row["description"])
        out.append(entry)
    return out
