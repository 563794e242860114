"""Households in zones evaluated (DESIGN §7, §8, §9): fit per zone, realism against the sample on tables no control
fixes, members agreeing with their households, and the project's rules.

The checks read the households and persons as written (one row each), partition by partition
(:class:`HouseholdEvaluation`), so a run's memory does not grow with its region.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..targets.model import HouseholdProject
from ..units import HOUSEHOLD_ROW, HOUSEHOLDS, PERSONS, derive_from_members

HOUSEHOLD_ID = "household_id"
PERSON_NUMBER = "per_num"


def worst_zones(
    project: HouseholdProject, synthetic: dict, control: str, k: int = defaults.PCT_RMSE_WORST_ZONES
) -> list[dict]:
    """The ``k`` zones of a control's level farthest from its control (zone id, control, synthetic, difference)."""
    c = next(x for x in project.controls if x.name == control)
    values = synthetic[control]
    diff = values - c.totals
    order = np.argsort(-np.abs(diff), kind="stable")[:k]
    zones = project.geography.zones(c.level)
    return [
        {
            "zone": _plain(zones[i]),
            "control": float(c.totals[i]),
            "synthetic": float(values[i]),
            "difference": float(diff[i]),
        }
        for i in order
        if diff[i] != 0
    ]


def zone_fit_table(project: HouseholdProject, synthetic: dict) -> pd.DataFrame:
    """Every control in every zone of its level: target vs synthetic.

    Returns
    -------
    DataFrame with one row per (control, zone): ``control`` (str), ``level`` (str), ``zone`` (the zone id as in
    the crosswalk), ``control_total`` and ``synthetic`` (float64, households or persons), ``difference``
    (synthetic - control) and ``pct_difference`` (100 x difference / control; NaN where the control is 0). In the
    order of the project's controls, then of the zones.
    """
    frames = []
    for c in project.controls:
        values = np.asarray(synthetic[c.name], dtype=np.float64)
        totals = np.asarray(c.totals, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(totals > 0, 100.0 * (values - totals) / totals, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "control": c.name,
                    "level": c.level,
                    "zone": project.geography.zones(c.level),
                    "control_total": totals,
                    "synthetic": values,
                    "difference": values - totals,
                    "pct_difference": pct,
                }
            )
        )
    columns = ["control", "level", "zone", "control_total", "synthetic", "difference", "pct_difference"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _plain(value):
    """A zone id as a JSON-friendly Python value."""
    return value.item() if hasattr(value, "item") else value


def _groups(project: HouseholdProject, unit: str) -> dict[str, list[int]]:
    """Controls of one unit grouped by the one column they read (the total control and numeric controls left out)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(project.controls):
        if c.unit == unit and len(c.columns) == 1 and c.name != project.total_control and c.total_of is None:
            groups.setdefault(c.columns[0], []).append(i)
    return groups


def _categories(project: HouseholdProject, frame: pd.DataFrame, group: list[int]) -> np.ndarray:
    """Category of every row: the first control of the group it meets, or len(group) when none."""
    masks = np.column_stack([project.controls[i].condition(frame) for i in group])
    return np.where(masks.any(axis=1), masks.argmax(axis=1), len(group))


def _binnings(project: HouseholdProject) -> dict[tuple[str, str], tuple[int, Any]]:
    """How every column of the records (the codebook's) is tabulated for realism over all variables: a controlled
    column by its controls' categories; a coded one by its codes (and empty); a range by the sample's quintiles (and
    empty). Per (unit, column): (number of categories, function frame -> int64 category per row)."""
    sample = project.sample
    out: dict[tuple[str, str], tuple[int, Any]] = {}
    if not len(sample.households):  # no sample to compare with (a project of declared variables)
        return out
    for (unit, col), domain in project.codebook.items():
        group = _groups(project, unit).get(col)
        if group is not None:
            out[(unit, col)] = (len(group) + 1, lambda frame, g=group: _categories(project, frame, g))
            continue
        if domain.codes is not None:
            edges = np.asarray(domain.codes, dtype=np.float64)
            out[(unit, col)] = (len(edges) + 1, lambda frame, c=col, e=edges: _coded(frame[c], e))
            continue
        reference = sample.households if unit == HOUSEHOLDS else sample.persons
        values = pd.to_numeric(reference[col], errors="coerce").dropna().to_numpy(dtype=np.float64)
        cuts = np.unique(np.quantile(values, [0.2, 0.4, 0.6, 0.8]))
        out[(unit, col)] = (len(cuts) + 2, lambda frame, c=col, e=cuts: _binned(frame[c], e))
    return out


def _coded(values: pd.Series, codes: np.ndarray) -> np.ndarray:
    """Position of each value among ``codes``; empty or another value: len(codes)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    at = np.searchsorted(codes, v)
    found = (at < codes.size) & (codes[np.minimum(at, codes.size - 1)] == v)
    return np.where(found, at, codes.size).astype(np.int64)


def _binned(values: pd.Series, cuts: np.ndarray) -> np.ndarray:
    """Bin of each value between ``cuts`` (right-closed); empty: len(cuts) + 1."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isnan(v), cuts.size + 1, np.searchsorted(cuts, v, side="left")).astype(np.int64)


class HouseholdEvaluation:
    """The checks of written households and persons, added up partition by partition.

    Parameters
    ----------
    project : HouseholdProject
        Its controls define the realism tables, its ``derived`` the member consistency, its ``rules`` the rules;
        its sample is the reference (weighted by the sample weights).
    max_way : int
        Realism: household tables of 2 up to this many control groups (person tables: pairs only).
    """

    def __init__(self, project: HouseholdProject, max_way: int = 3):
        self.project = project
        self.tables = self._table_list(max_way)
        self.counts = {key: np.zeros(cells) for key, cells, _ in self.tables}
        self.binnings = _binnings(project)
        self.pairs = [
            (a, b)
            for a, b in combinations(self.binnings, 2)
            if a[0] == b[0]  # within one unit
        ]
        self.pair_counts = {
            pair: np.zeros(self.binnings[pair[0]][0] * self.binnings[pair[1]][0]) for pair in self.pairs
        }
        self.outside: dict[tuple[str, str], int] = {key: 0 for key in project.codebook}
        self.empty: dict[tuple[str, str], int] = {key: 0 for key in project.codebook}
        self.persons = 0
        self.households = 0
        self.agree: dict[str, int] = {}
        self.with_members = 0
        self.broken = {r.name: [0, 0] for r in project.rules}  # rule -> [broken, checked]
        self.missing: dict[str, str] = {}
        self.units = {r.name: 0 for r in project.rules}

    def _table_list(self, max_way: int) -> list[tuple[tuple[str, tuple[str, ...]], int, list[int]]]:
        out = []
        for unit in (HOUSEHOLDS, PERSONS):
            groups = _groups(self.project, unit)
            ways = range(2, max_way + 1) if unit == HOUSEHOLDS else [2]
            for way in ways:
                for combo in combinations(groups, way):
                    sizes = [len(groups[c]) + 1 for c in combo]
                    out.append(((unit, combo), int(np.prod(sizes)), sizes))
        return out

    def _tabulate(self, unit: str, frame: pd.DataFrame, weight: np.ndarray) -> dict:
        groups = _groups(self.project, unit)
        cats = {col: _categories(self.project, frame, g) for col, g in groups.items()}
        out = {}
        for (u, combo), cells, sizes in self.tables:
            if u == unit:
                cell = np.ravel_multi_index([cats[c] for c in combo], sizes)
                out[(u, combo)] = np.bincount(cell, weights=weight, minlength=cells)
        return out

    def add(self, households: pd.DataFrame, persons: pd.DataFrame) -> None:
        """Add one partition's households and persons as written (``household_id``; persons also ``per_num``)."""
        n = len(households)
        self.households += n
        self.persons += len(persons)
        if not n:
            return
        frames = {HOUSEHOLDS: households, PERSONS: persons}
        for key, domain in self.project.codebook.items():
            frame = frames[key[0]]
            if key[1] in frame.columns:
                values = frame[key[1]].to_numpy()
                self.outside[key] += int((~domain.inside(values)).sum())
                self.empty[key] += int(pd.isna(values).sum())
            else:
                self.empty[key] += len(frame)
        for a, b in self.pairs:
            frame = frames[a[0]]
            if a[1] in frame.columns and b[1] in frame.columns:
                cell = self.binnings[a][1](frame) * self.binnings[b][0] + self.binnings[b][1](frame)
                self.pair_counts[(a, b)] += np.bincount(cell, minlength=self.pair_counts[(a, b)].size)
        for unit, frame in ((HOUSEHOLDS, households), (PERSONS, persons)):
            known = all(
                col in frame.columns
                for g in _groups(self.project, unit).values()
                for i in g
                for col in self.project.controls[i].columns
            )
            if known:
                for key, table in self._tabulate(unit, frame, np.ones(len(frame))).items():
                    self.counts[key] += table
        position = pd.Series(np.arange(n), index=households[HOUSEHOLD_ID].to_numpy())
        members = persons.assign(**{HOUSEHOLD_ROW: position.reindex(persons[HOUSEHOLD_ID].to_numpy()).to_numpy()})
        members = members[members[HOUSEHOLD_ROW].notna()].astype({HOUSEHOLD_ROW: np.int64})
        self.with_members += int((np.bincount(members[HOUSEHOLD_ROW], minlength=n) > 0).sum())
        for d in self.project.derived:
            if d.column not in households.columns or (d.source and d.source not in persons.columns):
                continue
            if d.condition is not None and not set(d.condition.columns) <= set(members.columns):
                continue
            derived = derive_from_members(
                members, n, how=d.how, condition=d.condition, column=d.source, order=PERSON_NUMBER
            )
            given = pd.to_numeric(households[d.column], errors="coerce").to_numpy(dtype=np.float64)
            derived = np.asarray(derived, dtype=np.float64)
            agree = (derived == given) | (np.isnan(derived) & np.isnan(given))
            self.agree[d.column] = self.agree.get(d.column, 0) + int(agree.sum())
        for rule in self.project.rules:
            frame = households if rule.unit == HOUSEHOLDS else persons
            missing = [c for c in rule.condition.columns if c not in frame.columns]
            if missing:
                self.missing[rule.name] = f"the output has no column {', '.join(missing)}"
                continue
            known_rows = (
                np.ones(len(frame), dtype=bool)
                if rule.empty_is_value
                else frame[list(rule.condition.columns)].notna().all(axis=1).to_numpy()
            )
            self.broken[rule.name][0] += int(rule.broken(frame).sum())
            self.broken[rule.name][1] += int(known_rows.sum())
            self.units[rule.name] += len(frame)

    def member_consistency(self) -> dict[str, float]:
        """Share of households with at least one member (``with_members``) and, per derived column, agreeing with
        what their members give (DESIGN §8); 1.0 when there is no household."""
        n = max(self.households, 1)
        out = {"with_members": self.with_members / n if self.households else 1.0}
        out.update({k: v / n if self.households else 1.0 for k, v in self.agree.items()})
        return out

    def rules(self) -> list[dict]:
        """Per rule: ``rule``, ``unit``, ``expression``, ``units``, ``checked`` (units whose columns the rule reads are
        known), ``broken``, ``broken_share`` (of the checked) and ``seed_broken_share`` (the sample's, weighted;
        None when no sample unit has the columns known), or ``not_checked`` (why)."""
        sample = self.project.sample
        weight = sample.households[sample.weight].to_numpy(dtype=np.float64)
        out: list[dict[str, Any]] = []
        for rule in self.project.rules:
            entry = {"rule": rule.name, "unit": rule.unit, "expression": rule.expression}
            if rule.name in self.missing:
                out.append({**entry, "not_checked": self.missing[rule.name]})
                continue
            reference = sample.households if rule.unit == HOUSEHOLDS else sample.persons
            w = weight if rule.unit == HOUSEHOLDS else weight[sample.persons[HOUSEHOLD_ROW].to_numpy()]
            seed_known = (
                np.ones(len(reference), dtype=bool)
                if rule.empty_is_value or any(c not in reference.columns for c in rule.condition.columns)
                else reference[list(rule.condition.columns)].notna().all(axis=1).to_numpy()
            )
            seed_broken = rule.broken(reference)
            broken, checked = self.broken[rule.name]
            seed_share = float(w[seed_broken].sum() / w[seed_known].sum()) if seed_known.any() else None
            out.append(
                {
                    **entry,
                    "units": self.units[rule.name],
                    "checked": checked,
                    "broken": broken,
                    "broken_share": broken / checked if checked else 0.0,
                    "seed_broken_share": seed_share,
                }
            )
        return out

    def realism(self) -> pd.DataFrame:
        """How far the households are from the sample on tables no control fixes: every pair and triple of household
        control groups (a group: the controls on one column, e.g. the four household sizes) and every pair of person
        control groups, tabulated over the groups' categories; the reference is the sample weighted by its weights.

        Returns
        -------
        DataFrame, one row per table: ``unit``, ``table`` ("NP x NWESR"), ``cells``, ``tvd`` (0-1); no row without a
        sample to compare with.
        """
        sample = self.project.sample
        if not len(sample.households):
            return pd.DataFrame(columns=["unit", "table", "cells", "tvd"])
        weight = sample.households[sample.weight].to_numpy(dtype=np.float64)
        reference = {
            **self._tabulate(HOUSEHOLDS, sample.households, weight),
            **self._tabulate(PERSONS, sample.persons, weight[sample.persons[HOUSEHOLD_ROW].to_numpy()]),
        }
        rows = []
        for key, cells, _ in self.tables:
            shares = [_shares(reference[key]), _shares(self.counts[key])]
            rows.append(
                {
                    "unit": key[0],
                    "table": " x ".join(key[1]),
                    "cells": cells,
                    "tvd": float(0.5 * np.abs(shares[0] - shares[1]).sum()),
                }
            )
        return pd.DataFrame(rows, columns=["unit", "table", "cells", "tvd"])

    def realism_all(self) -> pd.DataFrame:
        """Realism over all variables: every pair of columns of one unit (households, persons) the records have,
        tabulated by :func:`_binnings`, against the sample weighted by its weights.

        Returns
        -------
        DataFrame, one row per pair: ``unit``, ``table`` ("AGEP x ESR"), ``cells``, ``tvd`` (0-1); a pair the
        output lacks a column of is left out.
        """
        sample = self.project.sample
        weight = sample.households[sample.weight].to_numpy(dtype=np.float64)
        frames = {
            HOUSEHOLDS: (sample.households, weight),
            PERSONS: (sample.persons, weight[sample.persons[HOUSEHOLD_ROW].to_numpy()]),
        }
        rows = []
        for a, b in self.pairs:
            counts = self.pair_counts[(a, b)]
            frame, w = frames[a[0]]
            if counts.sum() == 0 or a[1] not in frame.columns or b[1] not in frame.columns:
                continue
            cell = self.binnings[a][1](frame) * self.binnings[b][0] + self.binnings[b][1](frame)
            reference = np.bincount(cell, weights=w, minlength=counts.size).astype(np.float64)
            tvd = 0.5 * np.abs(_shares(reference) - _shares(counts)).sum()
            rows.append({"unit": a[0], "table": f"{a[1]} x {b[1]}", "cells": int(counts.size), "tvd": float(tvd)})
        return pd.DataFrame(rows, columns=["unit", "table", "cells", "tvd"])

    def columns(self) -> list[dict]:
        """Per column of the records (the codebook's): ``unit``, ``column``, ``domain`` (in words), ``outside``
        (values outside the domain: an empty value where none is allowed counts), ``empty`` (empty values) and
        ``units``; a column the output lacks counts every unit empty."""
        units = {HOUSEHOLDS: self.households, PERSONS: self.persons}
        return [
            {
                "unit": unit,
                "column": col,
                "domain": domain.describe(),
                "outside": self.outside[(unit, col)],
                "empty": self.empty[(unit, col)],
                "units": units[unit],
            }
            for (unit, col), domain in self.project.codebook.items()
        ]


def _shares(table: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return table / table.sum() if table.sum() > 0 else table
