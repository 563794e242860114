"""Discrepancy measures between target and synthetic tables, and attribution of the gap to cells.

All functions take counts or shares as numpy arrays of the same shape (one entry per cell).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from .schema import Schema
from .targets.model import TargetTable


def _shares(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    a = np.asarray(counts, dtype=np.float64).reshape(-1)
    total = a.sum()
    return a / total if total > 0 else np.zeros_like(a)


def tvd(target: npt.ArrayLike, synthetic: npt.ArrayLike) -> float:
    """Total variation distance ``1/2 * sum |p - q|`` between the shares of two tables, in [0, 1].

    Parameters
    ----------
    target, synthetic : array-like of float, same shape, counts or shares per cell (each is normalized).
        An all-zero ``synthetic`` (empty population) has distance 1.

    Source: DESIGN §2; LLMSynthor §4 (TVD for categorical marginals).
    """
    q = np.asarray(synthetic, dtype=np.float64)
    if q.sum() <= 0:
        return 1.0
    return float(0.5 * np.abs(_shares(target) - _shares(q)).sum())


def srmse(target: npt.ArrayLike, synthetic: npt.ArrayLike) -> float:
    """Standardized root mean square error over the cells of a table.

    ``SRMSE = sqrt(mean_c (t_c - s_c)^2) / mean_c t_c`` with the synthetic table scaled to the target total,
    so it does not depend on the population size; 0 is a perfect fit.

    Source: Knudsen & Fotheringham (1986), "Matrix comparison, goodness-of-fit, and spatial interaction
    modeling", as used in population synthesis (e.g. Müller & Axhausen 2011).
    """
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    s = np.asarray(synthetic, dtype=np.float64).reshape(-1)
    total = t.sum()
    s_scaled = s * (total / s.sum()) if s.sum() > 0 else s
    return float(np.sqrt(np.mean((t - s_scaled) ** 2)) / (total / t.size))


def cpc(target: npt.ArrayLike, synthetic: npt.ArrayLike) -> float:
    """Common part of commuters between two OD matrices (or any two tables of counts), in [0, 1]; 1 is identical.

    ``CPC = 2 * sum_c min(t_c, s_c) / (sum_c t_c + sum_c s_c)``, on the counts as they are (not rescaled: a
    synthetic matrix with other totals scores lower). Two empty tables score 0.

    Parameters
    ----------
    target, synthetic : array-like of float, same shape (a dense matrix, or the same sparse cells in the same order)

    Source: Lenormand, Huet, Gargiulo & Deffuant (2012), "A universal model of commuting networks", PLoS ONE 7(10);
    the commuting-OD benchmark of the data's source (Rong et al. 2024, arXiv 2407.15823).
    """
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    s = np.asarray(synthetic, dtype=np.float64).reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"the two tables have {t.size} and {s.size} cells; CPC compares the same cells")
    total = t.sum() + s.sum()
    return float(2.0 * np.minimum(t, s).sum() / total) if total > 0 else 0.0


def jsd(target: npt.ArrayLike, synthetic: npt.ArrayLike) -> float:
    """Jensen-Shannon divergence between the shares of two tables, natural log, in [0, ln 2]."""
    p, q = _shares(target), _shares(synthetic)
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(0.5 * (kl_p + kl_q))


def wasserstein(values_a, values_b, weights_a=None, weights_b=None) -> float:
    """Wasserstein-1 (earth mover's) distance between two samples of a numeric variable, in its unit.

    Parameters
    ----------
    values_a, values_b : array-like of float, the values of each sample
    weights_a, weights_b : array-like of float >= 0, optional, e.g. record counts

    Source: scipy.stats.wasserstein_distance; LLMSynthor §4 (Wasserstein for age and price).
    """
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(values_a, values_b, weights_a, weights_b))


def cramers_v(table: npt.ArrayLike) -> float:
    """Cramér's V of a two-way contingency table of counts, in [0, 1]; 0 when a margin has one category.

    ``V = sqrt(chi2 / (n (min(r, c) - 1)))`` over the rows and columns with a positive total.
    Source: Cramér (1946), *Mathematical Methods of Statistics*, §21.9; chi2 from
    scipy.stats.chi2_contingency without continuity correction (counts may be weighted, not whole).
    """
    from scipy.stats import chi2_contingency

    t = np.asarray(table, dtype=np.float64)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if min(t.shape) < 2:
        return 0.0
    chi2 = chi2_contingency(t, correction=False)[0]
    return float(np.sqrt(chi2 / (t.sum() * (min(t.shape) - 1))))


@dataclass(frozen=True)
class TableFit:
    """Fit of one target table: ``tvd`` and ``srmse`` as defined above."""

    tvd: float
    srmse: float


def numeric_statistic(cell_ids, values, weights, n_cells: int, mean: bool) -> npt.NDArray[np.float64]:
    """Total (or mean) of a numeric variable per cell over weighted records.

    Parameters
    ----------
    cell_ids : ndarray of int64, shape (n_records,)
    values : ndarray of float64, shape (n_records,)
    weights : ndarray of float64, shape (n_records,) (persons per record)
    n_cells : int
    mean : bool

    Returns
    -------
    ndarray of float64, shape (n_cells,): the weighted total, or mean (NaN for a cell without persons).
    """
    total = np.bincount(cell_ids, weights=weights * values, minlength=n_cells).astype(np.float64)
    if not mean:
        return total
    count = np.bincount(cell_ids, weights=weights, minlength=n_cells)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def relative_error(synthetic, goals) -> npt.NDArray[np.float64]:
    """``|synthetic - goal| / |goal|`` elementwise (the absolute error where the goal is 0; inf where the
    synthetic value is NaN: a mean over no person)."""
    synthetic, goals = np.asarray(synthetic, dtype=np.float64), np.asarray(goals, dtype=np.float64)
    scale = np.where(goals != 0, np.abs(goals), 1.0)
    return np.where(np.isnan(synthetic), np.inf, np.abs(synthetic - goals) / scale)


@dataclass(frozen=True)
class NumericFit:
    """Fit of one numeric control (a total or mean of a numeric variable per cell).

    Attributes
    ----------
    of : str
        The variable.
    statistic : {"total", "mean"}
    goals, synthetic : ndarray of float64, shaped like the control's cells
        The control's values and the population's (in the variable's unit).
    relative_errors : ndarray of float64, same shape, see :func:`relative_error`.
    cells : tuple of dict of variable -> label, one per cell (flat C order); ``({},)`` without variables.
    """

    of: str
    statistic: str
    goals: npt.NDArray[np.float64]
    synthetic: npt.NDArray[np.float64]
    relative_errors: npt.NDArray[np.float64]
    cells: tuple[dict[str, str], ...] = ()

    @property
    def max_relative_error(self) -> float:
        """The largest relative error over the control's cells."""
        return float(self.relative_errors.max(initial=0.0))

    @property
    def mean_relative_error(self) -> float:
        """The mean relative error over the control's cells."""
        return float(self.relative_errors.mean()) if self.relative_errors.size else 0.0


@dataclass(frozen=True)
class Fit:
    """Fit of a population to all target tables.

    Attributes
    ----------
    tables : dict of table name -> TableFit, in target order.
    mean_tvd, max_tvd : float
        Mean and maximum of the per-table TVD (numeric controls are not in them).
    numeric : dict of control name -> NumericFit
        Numeric controls, when the project has any.
    """

    tables: dict[str, TableFit]
    mean_tvd: float
    max_tvd: float
    numeric: dict[str, NumericFit] = field(default_factory=dict)


def measure_fit(tables, synthetic_counts) -> Fit:
    """Per-table TVD and SRMSE, and their summary.

    Parameters
    ----------
    tables : sequence of TargetTable
    synthetic_counts : sequence of ndarray, one per table, shaped like ``table.counts``.
    """
    per = {t.name: TableFit(tvd(t.counts, s), srmse(t.counts, s)) for t, s in zip(tables, synthetic_counts)}
    values = [f.tvd for f in per.values()]
    return Fit(per, float(np.mean(values)), float(np.max(values)))


@dataclass(frozen=True)
class CellGap:
    """One cell of one target table and how far the population is from its target.

    Attributes
    ----------
    table : str
    flat_index : int
        Position of the cell in ``table.counts`` (C order).
    labels : dict of variable -> label
        ``{"age": "[17, 25)", "sex": "Female"}``.
    target_share, synthetic_share : float
        Share of the table's total in this cell.
    target_count : float
        Persons the target puts in the cell (table scaled to N).
    synthetic_count : float
        Persons the population currently has in the cell.
    """

    table: str
    flat_index: int
    labels: dict[str, str]
    target_share: float
    synthetic_share: float
    target_count: float
    synthetic_count: float

    @property
    def share_gap(self) -> float:
        """Signed discrepancy ``target share - synthetic share`` (positive: under-represented)."""
        return self.target_share - self.synthetic_share

    @property
    def count_gap(self) -> float:
        """Signed persons missing from the cell, ``target_count - synthetic_count``."""
        return self.target_count - self.synthetic_count

    def describe(self) -> str:
        """Plain words: ``age_by_sex: age = [17, 25), sex = Female: target 7.8 %, synthetic 5.1 %``."""
        cell = ", ".join(f"{k} = {v}" for k, v in self.labels.items())
        return (
            f"{self.table}: {cell}: target {self.target_share:.2%} ({self.target_count:,.0f}), synthetic "
            f"{self.synthetic_share:.2%} ({self.synthetic_count:,.0f})"
        )


def _cell_gap(table: TargetTable, synthetic, cell: int, schema: Schema) -> CellGap:
    s = np.asarray(synthetic).reshape(-1)
    total = s.sum()
    target = table.counts.reshape(-1)
    return CellGap(
        table.name,
        cell,
        table.cell_label(schema, cell),
        float(target[cell] / target.sum()),
        float(s[cell] / total) if total > 0 else 0.0,
        float(target[cell]),
        float(s[cell]),
    )


def unsupported_cells(
    tables, synthetic_counts, schema: Schema, min_count: float = 0.5, limit: int = 100
) -> list[CellGap]:
    """Cells with a target of at least ``min_count`` persons and no record at all, largest target first.

    Calibration can only reweight records that exist, so these cells need the prior before it can fit them.
    Returns at most ``limit`` cells (none while the population is empty).
    """
    found = []
    for t, s in zip(tables, synthetic_counts):
        s = np.asarray(s).reshape(-1)
        if s.sum() <= 0:
            return []
        target = t.counts.reshape(-1)
        found += [(float(target[c]), t, s, int(c)) for c in np.flatnonzero((target >= min_count) & (s == 0))]
    found.sort(key=lambda f: -f[0])
    return [_cell_gap(t, s, c, schema) for _, t, s, c in found[:limit]]


def attribute_gaps(
    tables, synthetic_counts, schema: Schema, top_k: int, by: str = "count"
) -> tuple[list[CellGap], list[CellGap]]:
    """The most under- and over-represented cells across all tables.

    Parameters
    ----------
    tables : sequence of TargetTable
    synthetic_counts : sequence of ndarray shaped like each ``table.counts`` (persons per cell).
    schema : Schema
    top_k : int
        Cells returned per direction.
    by : {"count", "share"}
        Rank by persons (``count_gap``, for a population whose total is already N) or by share points
        (``share_gap``, for a growing population, as the paper's guidance does).

    Returns
    -------
    under, over : list of CellGap, most off first; ``under`` has positive gaps only, ``over`` negative only.

    Source: LLMSynthor §3 (discrepancy-guided proposals); DESIGN §3 step 2.
    """
    candidates: list[tuple[float, int, int]] = []
    for ti, (t, s) in enumerate(zip(tables, synthetic_counts)):
        ts, ss = _shares(t.counts), _shares(s)
        gaps = (t.counts.reshape(-1) - np.asarray(s).reshape(-1)) if by == "count" else ts - ss
        candidates += [(float(g), ti, int(c)) for c, g in enumerate(gaps) if g != 0]
    under = sorted((c for c in candidates if c[0] > 0), key=lambda c: (-c[0], c[1], c[2]))[:top_k]
    over = sorted((c for c in candidates if c[0] < 0), key=lambda c: (c[0], c[1], c[2]))[:top_k]

    return (
        [_cell_gap(tables[ti], synthetic_counts[ti], cell, schema) for _, ti, cell in under],
        [_cell_gap(tables[ti], synthetic_counts[ti], cell, schema) for _, ti, cell in over],
    )


# --- households in zones (DESIGN §9) ---------------------------------------------------------------------------------


def pct_rmse(synthetic: npt.ArrayLike, control: npt.ArrayLike) -> float:
    """PopulationSim's validation measure: 100 x RMSE(synthetic - control) / mean control, over zones.

    Parameters
    ----------
    synthetic, control : array-like of float64, shape (n_zones,)

    Returns
    -------
    float (0 when the mean control is 0 and the synthetic totals are all 0; inf when only the control is 0).

    Source: PopulationSim's validation summary (ActivitySim/populationsim, ``scripts/validation``): %RMSE of a
    control over the zones of its geography.
    """
    s = np.asarray(synthetic, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    if s.size == 0:
        return 0.0
    rmse = float(np.sqrt(np.mean((s - c) ** 2)))
    mean = float(c.mean())
    if mean == 0:
        return 0.0 if rmse == 0 else float("inf")
    return 100.0 * rmse / mean


def control_totals(
    controls, geography, zone: npt.ArrayLike, counts: npt.ArrayLike, incidence: npt.ArrayLike
) -> dict[str, npt.NDArray[np.float64]]:
    """Synthetic total of every control in every zone of its level.

    Parameters
    ----------
    controls : sequence of Control
    geography : Geography
    zone : array-like of int64, shape (n,)
        Lowest-level zone of each placed household (or household-zone weight).
    counts : array-like of float64, shape (n,)
        Households (whole, or balanced weights).
    incidence : array-like of float64, shape (n, len(controls))
        What each of them counts for each control.

    Returns
    -------
    dict of control name -> ndarray of float64, shape (n zones of its level,)
    """
    zone = np.asarray(zone, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    incidence = np.asarray(incidence, dtype=np.float64).reshape(zone.size, len(controls))
    out = {}
    for i, c in enumerate(controls):
        groups = geography.parent_index(c.level)[zone]
        # weighted: float64 (numpy's stubs type every bincount as integer)
        out[c.name] = np.bincount(groups, weights=counts * incidence[:, i], minlength=c.totals.size).astype(
            np.float64, copy=False
        )
    return out


def control_fit(controls, synthetic: dict) -> pd.DataFrame:
    """The fit of every control over the zones of its level.

    Returns
    -------
    DataFrame, one row per control: ``control, group, level, unit, importance, control_total, synthetic_total,
    pct_rmse, total_abs_error, max_abs_error, zones``.
    """
    rows = []
    for c in controls:
        values = np.asarray(synthetic[c.name], dtype=np.float64)
        diff = values - c.totals
        rows.append(
            {
                "control": c.name,
                "group": c.group,
                "level": c.level,
                "unit": c.unit,
                "importance": c.importance,
                "control_total": float(c.totals.sum()),
                "synthetic_total": float(values.sum()),
                "pct_rmse": pct_rmse(values, c.totals),
                "total_abs_error": float(np.abs(diff).sum()),
                "max_abs_error": float(np.abs(diff).max()) if diff.size else 0.0,
                "zones": int(c.totals.size),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "control",
            "group",
            "level",
            "unit",
            "importance",
            "control_total",
            "synthetic_total",
            "pct_rmse",
            "total_abs_error",
            "max_abs_error",
            "zones",
        ],
    )


def worst_by_group(fit: pd.DataFrame) -> dict[str, float]:
    """The worst %RMSE of each control group (:attr:`Control.group`), groups in the order of the controls."""
    return {str(g): float(v) for g, v in fit.groupby("group", sort=False)["pct_rmse"].max().items()}


@dataclass(frozen=True)
class ZoneGap:
    """A control in one zone of its level and how far the households are from it (DESIGN §10: the loop's guidance for
    households in zones).

    Attributes
    ----------
    control : str
    level : str
    zone : str
        The zone id as written in the crosswalk (text).
    index : int
        Position of the zone in ``Geography.zones(level)``.
    target, synthetic : float
        Households or persons the control asks for in the zone, and what the weights give now.
    mean_target : float
        The control's mean over the zones of its level (the scale of its %RMSE).
    """

    control: str
    level: str
    zone: str
    index: int
    target: float
    synthetic: float
    mean_target: float

    @property
    def count_gap(self) -> float:
        """Units missing in the zone, ``target - synthetic`` (negative: too many)."""
        return self.target - self.synthetic

    @property
    def score(self) -> float:
        """The gap on the scale of the control's %RMSE (gap / mean control): how much it weighs in the fit."""
        return self.count_gap / max(self.mean_target, 1e-9)

    def describe(self) -> str:
        """``hh_size_1 in TAZ 301: target 120, synthetic 98``."""
        return f"{self.control} in {self.level} {self.zone}: target {self.target:,.0f}, synthetic {self.synthetic:,.1f}"


def zone_gaps(controls, geography, synthetic: dict, top_k: int, skip=()) -> tuple[list[ZoneGap], list[ZoneGap]]:
    """The control-zone pairs most under- and over-reached, weighed as in %RMSE (gap / mean control).

    Parameters
    ----------
    controls : sequence of Control
    geography : Geography
    synthetic : dict of control name -> ndarray (totals per zone of its level)
    top_k : int
        Pairs per direction.
    skip : collection of str
        Controls left out (the total of households, which balancing holds).

    Returns
    -------
    under, over : list of ZoneGap, most off first.
    """
    found: list[tuple[float, int, int]] = []
    for ci, c in enumerate(controls):
        if c.name in skip:
            continue
        mean = float(c.totals.mean()) if c.totals.size else 0.0
        gaps = (c.totals - synthetic[c.name]) / max(mean, 1e-9)
        found += [(float(g), ci, int(z)) for z, g in enumerate(gaps) if abs(g) > 1e-9]

    def gap(ci: int, z: int) -> ZoneGap:
        c = controls[ci]
        zone = geography.zones(c.level)[z]
        return ZoneGap(
            c.name,
            c.level,
            str(zone.item() if hasattr(zone, "item") else zone),
            z,
            float(c.totals[z]),
            float(synthetic[c.name][z]),
            float(c.totals.mean()),
        )

    under = sorted((f for f in found if f[0] > 0), key=lambda f: (-f[0], f[1], f[2]))[:top_k]
    over = sorted((f for f in found if f[0] < 0), key=lambda f: (f[0], f[1], f[2]))[:top_k]
    return [gap(ci, z) for _, ci, z in under], [gap(ci, z) for _, ci, z in over]
