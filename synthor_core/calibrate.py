"""Calibration: raking the counts of the population's records to every target table at once, then
integerization to exactly N persons (DESIGN §3, after the loop).

Calibration never invents combinations: the prior decides which records exist, raking decides how many of each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import defaults


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`rake_counts`.

    Attributes
    ----------
    counts : ndarray of float64, shape (n_records,)
        Calibrated (fractional) count of each record.
    converged : bool
        True when every table matched to ``tolerance`` (share of the table total).
    iterations : int
        Sweeps over all tables.
    max_abs_error : float
        Largest absolute share error over all cells of all tables at the end.
    """

    counts: npt.NDArray[np.float64]
    converged: bool
    iterations: int
    max_abs_error: float


def rake_counts(cell_ids, target_counts, initial: npt.ArrayLike, max_iter: int = defaults.RAKE_MAX_ITER,
                tolerance: float = defaults.RAKE_TOLERANCE) -> CalibrationResult:
    """Rake (iterative proportional fitting over records) the records' counts to every target table.

    Parameters
    ----------
    cell_ids : sequence of ndarray of int64, one per table, shape (n_records,)
        Cell of each record in each table (C order over the table's cells).
    target_counts : sequence of ndarray of float64, one per table, flat, length = cells of the table
        Target persons per cell; every table has the same total N.
    initial : array-like of float64, shape (n_records,), >= 0
        Starting counts (the loop's counts act as prior weights).
    max_iter : int
        Sweeps at most.
    tolerance : float
        Stop when the largest absolute share error over all cells is below it.

    Returns
    -------
    CalibrationResult
        Non-convergence (a target cell with no record, contradictory tables) is reported, not raised.

    Source: Deming & Stephan (1940), "On a least squares adjustment of a sampled frequency table when the expected
    marginal totals are known"; applied to record weights as in PopulationSim's list balancer.
    """
    w = np.asarray(initial, dtype=np.float64).copy()
    targets = [np.asarray(t, dtype=np.float64).reshape(-1) for t in target_counts]
    total = float(targets[0].sum()) if targets else 0.0
    error = np.inf
    iteration = 0
    for iteration in range(1, max_iter + 1):
        for ids, target in zip(cell_ids, targets):
            current = np.bincount(ids, weights=w, minlength=target.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(current > 0, target / current, 0.0)
            w *= factor[ids]
        error = max(float(np.abs(np.bincount(ids, weights=w, minlength=t.size) - t).max())
                    for ids, t in zip(cell_ids, targets)) / total
        if error < tolerance:
            return CalibrationResult(w, True, iteration, error)
    return CalibrationResult(w, False, iteration, error)


def integerize_trs(counts: npt.ArrayLike, total: int, rng: np.random.Generator,
                   order: npt.ArrayLike | None = None) -> npt.NDArray[np.int64]:
    """Integerize fractional counts to whole persons summing to exactly ``total``.

    Truncate, replicate, sample: every record keeps the whole part of its (rescaled) count; the persons still
    missing are given to records drawn without replacement with probability proportional to their fractional
    parts. With ``order``, that draw is systematic along the given order of records (one random start, then
    every whole step of the cumulative fractional parts): each run of consecutive records, such as the records
    of one cell when ordered by cell, then receives its fractional total rounded up or down, never more off.

    Parameters
    ----------
    counts : array-like of float64, shape (n_records,), >= 0, positive sum
    total : int, the population size N
    rng : numpy Generator
    order : array-like of int, shape (n_records,), optional
        A permutation of the records for systematic sampling (e.g. ``np.lexsort`` of their cells).

    Returns
    -------
    ndarray of int64, shape (n_records,), summing to ``total``.

    Source: Lovelace & Ballas (2013), "'Truncate, replicate, sample': a method for creating integer weights for
    spatial microsimulation", Computers, Environment and Urban Systems 41.
    """
    w = np.asarray(counts, dtype=np.float64)
    w = w * (total / w.sum())
    whole = np.floor(w).astype(np.int64)
    missing = int(total - whole.sum())
    frac = w - whole
    if missing > 0 and order is not None:
        order = np.asarray(order)
        cumulative = np.concatenate(([0.0], np.cumsum(frac[order])))
        cumulative *= missing / cumulative[-1]
        points = rng.random() + np.arange(missing)
        hits = np.searchsorted(cumulative, points, side="right") - 1
        np.add.at(whole, order[np.clip(hits, 0, len(order) - 1)], 1)
    elif missing > 0:
        candidates = np.flatnonzero(frac > 0)
        chosen = rng.choice(candidates, size=missing, replace=False, p=frac[candidates] / frac[candidates].sum())
        whole[chosen] += 1
    return whole
