"""Raking: the counts of the population's records fitted to every target table at once (iterative proportional
fitting over records), and to numeric controls (generalized raking) (DESIGN §3, after the loop).

Calibration never invents combinations: the prior decides which records exist, raking decides how many of each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import defaults
from ..metrics import numeric_statistic, relative_error


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
    max_relative_error_numeric : float
        Largest relative error of a numeric control's cell at the end (0 without numeric controls).
    """

    counts: npt.NDArray[np.float64]
    converged: bool
    iterations: int
    max_abs_error: float
    max_relative_error_numeric: float = 0.0


@dataclass(frozen=True)
class NumericTarget:
    """A numeric control as calibration sees it (see :class:`synthor_core.targets.model.NumericControl`).

    Attributes
    ----------
    cell_ids : ndarray of int64, shape (n_records,)
        Cell of each record.
    values : ndarray of float64, shape (n_records,)
        Each record's value of the controlled variable.
    goals : ndarray of float64, shape (n_cells,)
        Total of the variable per cell (in its unit), or its mean when ``mean``.
    mean : bool
    companion : int or None
        Index (among the count tables raked with it) of a table fitted together with the control in each sweep:
        the one over the same variable with the most cells (see :func:`_tilt`).
    """

    cell_ids: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    goals: npt.NDArray[np.float64]
    mean: bool = False
    companion: int | None = None

    def relative_errors(self, weights: np.ndarray) -> npt.NDArray[np.float64]:
        """Relative error of each cell's total (or mean) under ``weights``, shape (n_cells,)
        (:func:`synthor_core.metrics.relative_error`)."""
        synthetic = numeric_statistic(self.cell_ids, self.values, weights, self.goals.size, self.mean)
        return relative_error(synthetic, self.goals)


def _tilt(
    weights: np.ndarray,
    target: NumericTarget,
    companion: tuple[np.ndarray, np.ndarray] | None = None,
    newton_steps: int = defaults.RAKE_NEWTON_STEPS,
) -> None:
    """Multiply the weights by ``exp(b_c y + a_k)`` so that ``sum w y = g_c`` in every cell ``c`` of the control
    and, with a ``companion`` table, every cell ``k`` of it holds its target count at the same time.

    ``y`` is the value (``g_c`` the cell's total) or the value minus the cell's mean (``g_c = 0``). The result is the
    exact Kullback-Leibler projection of the weights on the control's constraints and the companion's together (the
    raking form of Deville & Särndal 1992), found by Newton's method on the dual (``y`` scaled by the cell's
    largest ``|y|``; steps damped so that no weight moves by more than a factor e). Fitting the companion (a
    count table over the same variable, e.g. its bins) in the same step matters: tilted alone, a total of income is
    mostly undone by the raking of the income brackets that follows, and the cycle crawls (income benchmark: 2e-5
    relative error after 500 sweeps; with the companion, 1e-9 in a few). A cell that cannot reach its goal (every
    value on one side of the mean) is moved towards it as far as the steps allow, then reported by the error.

    Parameters
    ----------
    weights : ndarray of float64, shape (n_records,), changed in place
    target : NumericTarget
    companion : (cell_ids, counts) or None
        A count table: cell of each record (int64, shape (n_records,)) and target counts (float64, flat).
    """
    ids, n = target.cell_ids, target.goals.size
    y = target.values - target.goals[ids] if target.mean else target.values.astype(np.float64)
    goal = np.zeros(n) if target.mean else target.goals
    live = weights > 0
    scale = np.zeros(n)
    np.maximum.at(scale, ids[live], np.abs(y[live]))
    scale = np.where(scale > 0, scale, 1.0)
    z = y / scale[ids]
    k_ids, k_goal = companion if companion is not None else (np.zeros(len(weights), dtype=np.int64), np.zeros(0))
    k = k_goal.size
    size = k + n
    lam = np.zeros(size)
    w0 = weights.copy()
    goals = np.concatenate([k_goal, goal / scale])
    for _ in range(newton_steps):
        eta = lam[k + ids] * z + (lam[k_ids] if k else 0.0)
        w = w0 * np.exp(eta)
        gradient = (
            np.concatenate(
                [np.bincount(k_ids, weights=w, minlength=k)[:k], np.bincount(ids, weights=w * z, minlength=n)]
            )
            - goals
        )
        hessian = np.zeros((size, size))
        hessian[k:, k:] = np.diag(np.bincount(ids, weights=w * z * z, minlength=n))
        if k:
            hessian[:k, :k] = np.diag(np.bincount(k_ids, weights=w, minlength=k))
            cross = np.bincount(k_ids * n + ids, weights=w * z, minlength=k * n).reshape(k, n)
            hessian[:k, k:], hessian[k:, :k] = cross, cross.T
        delta = -np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        move = float(np.abs(delta[k + ids] * z + (delta[k_ids] if k else 0.0)).max(initial=0.0))
        if move > 1.0:
            delta /= move
        lam += delta
        if move < 1e-12:
            break
    weights[:] = w0 * np.exp(lam[k + ids] * z + (lam[k_ids] if k else 0.0))


def rake_counts(
    cell_ids,
    target_counts,
    initial: npt.ArrayLike,
    max_iter: int = defaults.RAKE_MAX_ITER,
    tolerance: float = defaults.RAKE_TOLERANCE,
    numeric=(),
) -> CalibrationResult:
    """Rake (iterative proportional fitting over records) the records' counts to every target table, and to the
    totals or means of numeric controls (generalized raking).

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
        Stop when the largest absolute share error over all cells is below it, and every numeric control's
        largest relative error too.
    numeric : sequence of NumericTarget
        Numeric controls: before each sweep over the tables, each control's cells are tilted onto their totals
        (or means), with its companion table, by :func:`_tilt`.

    Returns
    -------
    CalibrationResult
        Non-convergence (a target cell with no record, contradictory tables, a mean outside its cell's values) is
        reported, not raised; raking then stops once its errors no longer fall (by ``RAKE_STATIONARY`` over
        ``RAKE_STATIONARY_SWEEPS`` sweeps) or at ``max_iter``.

    Source: Deming & Stephan (1940), "On a least squares adjustment of a sampled frequency table when the expected
    marginal totals are known"; applied to record weights as in PopulationSim's list balancer. With numeric
    controls: the raking method of Deville & Särndal (1992), "Calibration estimators in survey sampling", JASA 87
    (weights ``d exp(x' lambda)`` meeting every total), solved one block of constraints at a time (cyclic
    Kullback-Leibler projections, which converge to the same solution when it exists: Csiszár 1975).
    """
    w = np.asarray(initial, dtype=np.float64).copy()
    targets = [np.asarray(t, dtype=np.float64).reshape(-1) for t in target_counts]
    total = float(targets[0].sum()) if targets else 0.0
    error = np.inf
    iteration = 0
    numeric_error = 0.0
    history: list[tuple[float, float]] = []
    for iteration in range(1, max_iter + 1):
        for control in numeric:
            c = control.companion
            _tilt(w, control, None if c is None else (cell_ids[c], targets[c]))
        for ids, target in zip(cell_ids, targets):
            current = np.bincount(ids, weights=w, minlength=target.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(current > 0, target / current, 0.0)
            w *= factor[ids]
        error = (
            max(
                float(np.abs(np.bincount(ids, weights=w, minlength=t.size) - t).max())
                for ids, t in zip(cell_ids, targets)
            )
            / total
        )
        numeric_error = max((float(c.relative_errors(w).max(initial=0.0)) for c in numeric), default=0.0)
        if error < tolerance and numeric_error < tolerance:
            return CalibrationResult(w, True, iteration, error, numeric_error)
        # stationary: neither error fell by RAKE_STATIONARY (relative) over the last RAKE_STATIONARY_SWEEPS sweeps
        # (a target cell without record, contradictory tables: more sweeps would change nothing)
        history.append((error, numeric_error))
        if len(history) > defaults.RAKE_STATIONARY_SWEEPS:
            before = history.pop(0)
            if all(now >= then * (1.0 - defaults.RAKE_STATIONARY) for now, then in zip(history[-1], before)):
                break
    return CalibrationResult(w, False, iteration, error, numeric_error)
