"""The maximum-entropy prior for trips (DESIGN §13): the gravity model and IPF over trip cells.

A trip cell is one combination of origin zone, destination zone, departure-time bin and mode. Without an OD table,
the entropy-maximizing distribution of trips given the productions of each origin, the attractions of each
destination and a total travel cost is the doubly-constrained gravity model ``T_ij = a_i O_i b_j D_j f(c_ij)`` with
``f(c) = exp(-beta c)`` (Wilson 1967, "A statistical theory of spatial distribution models", Transportation
Research 1); its balancing factors are found by the Furness iteration (row and column scaling in turn). Given
more tables (an OD table, departure times, modes, a trip-length distribution), the maximum-entropy distribution
closest to a prior is found by iterative proportional fitting over every table at once (Deming & Stephan 1940;
the tri-proportional fit of a trip-length distribution: Ortúzar & Willumsen, *Modelling Transport*, ch. 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from .. import defaults

Deterrence = Literal["exponential", "power"]


def deterrence(cost: npt.ArrayLike, form: Deterrence, beta: float) -> npt.NDArray[np.float64]:
    """The deterrence function of a gravity model: ``exp(-beta c)`` or ``c^-beta``.

    Parameters
    ----------
    cost : array-like of float >= 0 (km; a power law floors it at 0.1 km so intrazonal zeros stay finite)
    form : "exponential" or "power"
    beta : float >= 0

    Returns
    -------
    ndarray of float64, the shape of ``cost``.
    """
    c = np.asarray(cost, dtype=np.float64)
    if form == "exponential":
        return np.exp(-beta * c)
    if form == "power":
        return np.maximum(c, 0.1) ** -beta
    raise ValueError(f"unknown deterrence {form!r}: expected 'exponential' or 'power'")


def furness(
    productions: npt.ArrayLike,
    attractions: npt.ArrayLike,
    weights: npt.ArrayLike,
    max_sweeps: int = defaults.GRAVITY_MAX_SWEEPS,
    tolerance: float = defaults.GRAVITY_TOLERANCE,
) -> npt.NDArray[np.float64]:
    """The doubly-constrained trip matrix closest to ``weights`` whose row sums are the productions and column sums
    the attractions (Furness 1965; Wilson 1967): rows and columns scaled in turn.

    Parameters
    ----------
    productions : array-like of float >= 0, shape (n,): trips leaving each zone
    attractions : array-like of float >= 0, shape (m,): trips arriving in each zone (scaled to the productions'
        total when the totals differ)
    weights : array-like of float >= 0, shape (n, m): the prior (a deterrence matrix, or a seed matrix)
    max_sweeps, tolerance : stop after this many sweeps, or when every row and column total is within this
        relative error

    Returns
    -------
    ndarray of float64, shape (n, m). A zone whose row (column) of weights is all zero gets no trips.
    """
    o = np.asarray(productions, dtype=np.float64)
    d = np.asarray(attractions, dtype=np.float64)
    if d.sum() > 0:
        d = d * (o.sum() / d.sum())
    w = np.asarray(weights, dtype=np.float64)
    a = np.ones(w.shape[0])
    b = np.ones(w.shape[1])
    for _ in range(max_sweeps):
        row = w @ b
        a = np.divide(o, row, out=np.zeros_like(o), where=row > 0)
        col = a @ w
        b = np.divide(d, col, out=np.zeros_like(d), where=col > 0)
        rows = (w @ b) * a
        reached = (o > 0) & (rows > 0)
        if not reached.any() or np.max(np.abs(rows[reached] / o[reached] - 1.0)) < tolerance:
            break
    return a[:, None] * w * b[None, :]


@dataclass(frozen=True)
class Gravity:
    """A doubly-constrained gravity model fitted to a mean trip length.

    Attributes
    ----------
    trips : ndarray of float64, shape (n, n)
    form : "exponential" or "power"
    beta : float, the deterrence parameter (1/km for the exponential)
    mean_cost : float, the mean trip length of ``trips`` (km)
    """

    trips: npt.NDArray[np.float64]
    form: Deterrence
    beta: float
    mean_cost: float


def fit_gravity(
    productions: npt.ArrayLike,
    attractions: npt.ArrayLike,
    cost: npt.ArrayLike,
    mean_cost: float,
    form: Deterrence = "exponential",
) -> Gravity:
    """The doubly-constrained gravity model whose mean trip length is ``mean_cost``: the planners' baseline.

    The mean trip length falls as ``beta`` grows, so ``beta`` is found by bisection (Hyman 1969, "The calibration
    of trip distribution models", Environment and Planning 1, fits beta to the observed mean cost).

    Parameters
    ----------
    productions, attractions : array-like of float, shape (n,)
    cost : array-like of float >= 0, shape (n, n): km between zone centroids (intrazonal: a within-zone distance)
    mean_cost : float > 0, km
    form : "exponential" or "power"

    Returns
    -------
    Gravity
    """
    c = np.asarray(cost, dtype=np.float64)

    def model(beta: float) -> tuple[npt.NDArray[np.float64], float]:
        t = furness(productions, attractions, deterrence(c, form, beta))
        return t, float((t * c).sum() / t.sum()) if t.sum() > 0 else 0.0

    low, high = 0.0, 1.0
    while model(high)[1] > mean_cost and high < 1e3:  # widen until the mean falls below the goal
        low, high = high, high * 4
    for _ in range(defaults.GRAVITY_BISECTION_STEPS):
        middle = (low + high) / 2
        if model(middle)[1] > mean_cost:
            low = middle
        else:
            high = middle
        if high - low < 1e-9 * max(high, 1e-9):
            break
    beta = (low + high) / 2
    trips, mean = model(beta)
    return Gravity(trips, form, beta, mean)


@dataclass(frozen=True)
class CellTarget:
    """One target over the trip cells: the cells grouped by ``keys`` and the trips each group must hold.

    Attributes
    ----------
    name : str
    keys : ndarray of int64, shape (n_cells,): the group of each cell (0..len(counts)-1); -1 leaves a cell out
    counts : ndarray of float64, shape (n_groups,): trips per group
    """

    name: str
    keys: npt.NDArray[np.int64]
    counts: npt.NDArray[np.float64]


def fit_cells(
    prior: npt.ArrayLike,
    targets: Sequence[CellTarget],
    max_sweeps: int = defaults.TRIP_IPF_MAX_SWEEPS,
    tolerance: float = defaults.TRIP_IPF_TOLERANCE,
) -> tuple[npt.NDArray[np.float64], int, float]:
    """The maximum-entropy distribution of trips over cells, closest to ``prior`` and meeting every target: IPF
    (Deming & Stephan 1940), each target's groups scaled in turn.

    Parameters
    ----------
    prior : array-like of float >= 0, shape (n_cells,): relative weights (a deterrence, or ones)
    targets : sequence of CellTarget, each with the total of the others (targets of other totals are scaled to the
        first's)
    max_sweeps, tolerance : stop after this many sweeps, or when every group holding trips is within this relative
        error of its count, or when ``TRIP_IPF_STALL_SWEEPS`` sweeps gained less than ``TRIP_IPF_STALL`` (relative)

    Returns
    -------
    (weights, sweeps, largest relative error): weights of float64, shape (n_cells,), summing to the first target's
    total. A group whose cells all have zero prior stays empty (its error counted in the largest relative error).
    """
    w = np.asarray(prior, dtype=np.float64).copy()
    if not targets:
        return w, 0, 0.0
    total = targets[0].counts.sum()
    goals = [t.counts * (total / t.counts.sum()) if t.counts.sum() > 0 else t.counts for t in targets]
    error = np.inf
    history: list[float] = []
    sweeps = 0
    outside = np.zeros(w.size, dtype=bool)
    for target in targets:
        outside |= target.keys < 0
    w[outside] = 0.0  # a cell outside a target's groups holds no trip
    groups = [(np.where(t.keys >= 0, t.keys, 0), goal) for t, goal in zip(targets, goals, strict=True)]
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007 (the count is returned)
        for keys, goal in groups:
            have = np.bincount(keys, weights=w, minlength=goal.size)
            factor = np.divide(goal, have, out=np.zeros_like(goal), where=have > 0)
            w *= factor[keys]
        error = _largest_error(w, groups)
        history.append(error)
        stalled = len(history) > defaults.TRIP_IPF_STALL_SWEEPS and error > history[
            -1 - defaults.TRIP_IPF_STALL_SWEEPS
        ] * (1 - defaults.TRIP_IPF_STALL)
        if error < tolerance or stalled:  # stalled: the targets disagree (another total per origin, a contradiction)
            break
    return w, sweeps, error


def _largest_error(w, groups) -> float:
    worst = 0.0
    for keys, goal in groups:
        have = np.bincount(keys, weights=w, minlength=goal.size)
        counted = goal > 0
        if counted.any():
            worst = max(worst, float(np.max(np.abs(have[counted] / goal[counted] - 1.0))))
    return worst
