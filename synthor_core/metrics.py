"""Discrepancy measures between target and synthetic tables, and attribution of the gap to cells.

All functions take counts or shares as numpy arrays of the same shape (one entry per cell).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

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
