"""Calibration: raking the counts of the population's records to every target table at once, then
integerization to exactly N persons (DESIGN §3, after the loop).

Calibration never invents combinations: the prior decides which records exist, raking decides how many of each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import defaults
from .metrics import numeric_statistic, relative_error


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
    """A numeric control as calibration sees it (see :class:`synthor_core.targets.NumericControl`).

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


def integerize_trs(
    counts: npt.ArrayLike, total: int, rng: np.random.Generator, order: npt.ArrayLike | None = None
) -> npt.NDArray[np.int64]:
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


def repair_rounding(
    counts: npt.ArrayLike,
    cell_ids,
    goals,
    numeric=(),
    max_moves: int = defaults.REPAIR_MAX_MOVES,
) -> npt.NDArray[np.int64]:
    """Move whole persons from one record to another while that lowers the tables' total absolute error.

    Rounding fractional counts to integers (:func:`integerize_trs`) leaves each table's cells off by up to a few
    persons (more on coarse tables: errors of the records of a cell add up). Each move takes one person from a
    record and gives it to another (N unchanged): for each of the ``REPAIR_GIVERS`` records whose loss of a person
    helps most (or hurts least), the record whose gain of it then lowers the total error most; the best such pair
    moves. The total error is ``sum over tables and cells of |goal - rounded|`` plus, for each numeric control,
    ``sum over cells of |goal - rounded| / s`` on its constraint ``sum w y = g`` (:class:`NumericTarget`), ``s``
    the cell's mean ``|y|``: an error of one typical person's value weighs as one person. It stops when no pair
    helps, when every constraint's summed absolute error is below ``2 N REPAIR_TVD`` (a TVD no one could see: with
    millions of persons rounding never matters), or after ``max_moves`` moves and at most ``REPAIR_WORK / (records x
    constraints)`` (each move scans every record of every constraint: e-commerce, 2,000 records x 9 tables, all
    moves it needs; Adult, 19,000 records x 20, about 40 moves, 1 s). A greedy form of controlled rounding
    (Cox 1987, "A constructive procedure for unbiased controlled rounding", JASA 82), like the swaps that end
    :func:`integerize_zone`.

    Parameters
    ----------
    counts : array-like of int64, shape (n_records,), >= 0
    cell_ids : sequence of ndarray of int64, one per table, shape (n_records,)
    goals : sequence of ndarray of float64, one per table, flat, length = cells of the table
        What each cell should hold (the calibrated fractional counts summed per cell).
    numeric : sequence of NumericTarget
    max_moves : int

    Returns
    -------
    ndarray of int64, shape (n_records,), same sum as ``counts``.
    """
    x = np.asarray(counts, dtype=np.int64).copy()
    # every constraint as (cell of each record, what one person of each record adds to its cell, residual per cell)
    ids = [np.asarray(i, dtype=np.int64) for i in cell_ids]
    units = [np.ones(len(x)) for _ in ids]
    residual = [
        np.asarray(g, dtype=np.float64) - np.bincount(i, weights=x, minlength=len(g)) for i, g in zip(ids, goals)
    ]
    for control in numeric:
        n = control.goals.size
        y = control.values - control.goals[control.cell_ids] if control.mean else control.values
        goal = np.zeros(n) if control.mean else control.goals
        persons = np.bincount(control.cell_ids, weights=x, minlength=n)
        spread = np.bincount(control.cell_ids, weights=x * np.abs(y), minlength=n)
        scale = np.where(spread > 0, spread / np.maximum(persons, 1.0), 1.0)
        ids.append(control.cell_ids)
        units.append(y / scale[control.cell_ids])
        residual.append(goal / scale - np.bincount(control.cell_ids, weights=x * units[-1], minlength=n))
    k = defaults.REPAIR_GIVERS
    enough = 2.0 * defaults.REPAIR_TVD * float(x.sum())  # |residual| summed over a table's cells that is fine
    # a move costs about records x constraints: at most REPAIR_WORK of that in all (deterministic, unlike a clock)
    max_moves = min(max_moves, int(defaults.REPAIR_WORK // max(len(x) * len(ids), 1)))
    for _ in range(max_moves):
        if all(float(np.abs(r).sum()) <= enough for r in residual):
            break
        # change of |residual| in each record's cell of each constraint when it gains or loses a person
        gain = np.stack([np.abs(r[i] - u) - np.abs(r[i]) for i, u, r in zip(ids, units, residual)])
        loss = np.stack([np.abs(r[i] + u) - np.abs(r[i]) for i, u, r in zip(ids, units, residual)])
        drop = np.where(x > 0, loss.sum(axis=0), np.inf)
        best, giver, taker = -1e-9, -1, -1
        for g in np.argsort(drop, kind="stable")[:k]:
            if not np.isfinite(drop[g]):
                break
            # a cell the giver and the taker share changes by the difference of their units
            change = np.sum(
                [
                    np.where(i == i[g], np.abs(r[i] - u + u[g]) - np.abs(r[i]), gain[c] + loss[c, g])
                    for c, (i, u, r) in enumerate(zip(ids, units, residual))
                ],
                axis=0,
            )
            change[g] = np.inf
            j = int(np.argmin(change))
            if change[j] < best:
                best, giver, taker = float(change[j]), int(g), j
        if giver < 0:
            break
        x[giver] -= 1
        x[taker] += 1
        for i, u, r in zip(ids, units, residual):
            r[i[giver]] += u[giver]
            r[i[taker]] -= u[taker]
    return x


# --- households: list balancing over zones, integerization per zone ----------------------------------------------


@dataclass(frozen=True)
class BalanceResult:
    """Outcome of :func:`balance_zones`.

    Attributes
    ----------
    weights : tuple of ndarray of float64, one per block, shape (n_households_in_block, n_zones_in_block)
        Balanced (fractional) weight of each seed household in each zone of its block.
    converged : bool
        True when every relative gap (below) fell under ``tolerance``, against the controls as given or as
        relaxed. Balancing also stops, not converged, when the weighted counts are stationary (none moved by
        more than ``tolerance x BALANCE_STATIONARY_SHARE`` relative over a sweep) or at the sweep limit.
    iterations : int
        Sweeps over all controls.
    max_relative_gap : float
        Largest relative gap ``|x - t'| / max(t', 1)`` between a weighted count and its (relaxed) control in the
        last sweep (0 when fitted exactly).
    relaxation : tuple of ndarray of float64, one per control, shape (n_groups,)
        Factor by which each soft control was relaxed in each of its zones (1: met as given).
    stop : {"controls met", "soft controls relaxed", "stationary", "sweep limit"}
        Why balancing stopped: every control met as given; met after relaxing soft controls that contradict the
        others (``relaxation`` says by how much); weighted counts no longer moving; or ``max_iter`` reached.
    max_relative_change : float
        Largest relative change ``|x - x_previous| / max(x_previous, 1)`` of a weighted count over the last sweep.
    """

    weights: tuple[npt.NDArray[np.float64], ...]
    converged: bool
    iterations: int
    max_relative_gap: float
    relaxation: tuple[npt.NDArray[np.float64], ...]
    stop: str = "sweep limit"
    max_relative_change: float = float("inf")


def balance_zones(
    incidence,
    initial_weights,
    block_zones,
    zone_groups: npt.ArrayLike,
    control_totals,
    importance: npt.ArrayLike,
    master: int | None = None,
    max_iter: int = defaults.BALANCE_MAX_SWEEPS,
    tolerance: float = defaults.BALANCE_TOLERANCE,
    max_ratio: float | None = None,
) -> BalanceResult:
    """List-balance seed households' weights in many zones at once, against controls at any geography level.

    The households of a block (the seed geography, e.g. one PUMA) can be placed in the zones of that block only.
    A control counts units (households, or persons through the incidence) meeting a condition, summed over the
    zones of a group (its zone at its own level: the TAZ itself, the TRACT a TAZ lies in, the REGION); so TAZ,
    TRACT and REGION controls are all fitted together, not one level after the other. Soft controls are relaxed
    by their importance when they contradict each other; ``master`` (the total of households) never is.

    Parameters
    ----------
    incidence : sequence of ndarray of float64, one per block, shape (n_households_in_block, n_controls)
        Units of each household that each control counts (1/0 for a household condition; number of members
        meeting the condition for a person control).
    initial_weights : sequence of ndarray of float64, one per block, shape (n_households_in_block, n_zones_in_block)
        Starting weights (usually the seed weight scaled to each zone's number of households), >= 0.
    block_zones : sequence of ndarray of int64, one per block, shape (n_zones_in_block,)
        Index of each block column among all lowest-level zones.
    zone_groups : array-like of int64, shape (n_controls, n_zones)
        For each control, the group (its zone at the control's level, 0-based) of each lowest-level zone.
    control_totals : sequence of ndarray of float64, one per control, shape (n_groups,)
        Control total of each group, in units.
    importance : array-like of float64, shape (n_controls,), > 0
        PopulationSim's importance: the weight of a control against the others when they cannot all be met.
    master : int or None
        Index of the control of total households (balanced last in each sweep, never relaxed).
    max_iter, tolerance : int, float
        Sweeps at most; stop when every relative gap ``|x - t'| / max(t', 1)`` is below ``tolerance``, or when no
        weighted count ``x`` changes by more than ``tolerance x defaults.BALANCE_STATIONARY_SHARE`` relative
        (``/ max(x, 1)``) over a sweep.
    max_ratio : float or None
        Upper bound of a weight as a multiple of its initial weight (PopulationSim's ``max_expansion_factor``).

    Returns
    -------
    BalanceResult
        Non-convergence is reported, not raised.

    Source: the list balancer of PopulationSim (``np_balancer_py``: the balancing factor
    ``gamma = 1 - (x - t') / (y + t' / importance)`` with ``x`` the weighted count, ``y`` the weighted squared
    incidence and ``t'`` the relaxed control; relaxation factors updated by ``gamma^(-1/importance)``), itself
    the IPU of Ye, Konduri, Pendyala, Sana & Waddell (2009), "A methodology to match distributions of both
    household and person attributes in the generation of synthetic populations", TRB 88th Annual Meeting;
    Konduri et al. (2016), TRR 2563. Extended here to many zones and levels at once.
    """
    groups = np.asarray(zone_groups, dtype=np.int64)
    totals = [np.asarray(t, dtype=np.float64).reshape(-1) for t in control_totals]
    imp = np.asarray(importance, dtype=np.float64)
    n_controls = len(totals)
    # float32 weights (as PopulationSim's NUMBA_PRECISION) halve the memory traffic of the sweeps; sums are float64
    weights = [np.array(w, dtype=np.float32, copy=True) for w in initial_weights]
    initial = [w.copy() for w in weights] if max_ratio else None
    zones = [np.asarray(z, dtype=np.int64) for z in block_zones]
    # per block and control: rows with non-zero incidence, their incidence, and whether it is 0/1
    rows, values, binary = [], [], []
    for inc in incidence:
        inc = np.asarray(inc, dtype=np.float64)
        nonzero = [np.flatnonzero(inc[:, c]) for c in range(n_controls)]
        rows.append(nonzero)
        values.append([inc[nonzero[c], c].astype(np.float32) for c in range(n_controls)])
        binary.append([bool(np.all(inc[nonzero[c], c] == 1.0)) for c in range(n_controls)])
    relaxation = [np.ones_like(t) for t in totals]
    order = [c for c in range(n_controls) if c != master] + ([master] if master is not None else [])
    adjustment = 1.0
    deviation = np.inf
    change = np.inf
    previous: list[np.ndarray | None] = [None] * n_controls
    iteration = 0
    for iteration in range(1, max_iter + 1):
        if iteration > 1 and (iteration - 1) % defaults.BALANCE_IMPORTANCE_HALVING_SWEEPS == 0:
            adjustment /= 2.0
        deviation = 0.0
        change = 0.0
        for c in order:
            strength = imp[c] if c == master else max(imp[c] * adjustment, defaults.BALANCE_MIN_IMPORTANCE)
            n_groups = totals[c].size
            x = np.zeros(n_groups)
            y = np.zeros(n_groups)
            picked = []
            for b, w in enumerate(weights):
                r = rows[b][c]
                block = w[r]
                picked.append(block)
                if not r.size:
                    continue
                g = groups[c, zones[b]]
                v = values[b][c]
                counted = np.bincount(g, weights=v @ block, minlength=n_groups)
                x += counted
                y += counted if binary[b][c] else np.bincount(g, weights=(v * v) @ block, minlength=n_groups)
            before = previous[c]
            if before is not None:
                change = max(change, float((np.abs(x - before) / np.maximum(before, 1.0)).max(initial=0)))
            else:
                change = np.inf
            previous[c] = x
            target = np.maximum(totals[c] * relaxation[c], defaults.BALANCE_MIN_CONTROL)
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = np.where(x > 0, 1.0 - (x - target) / (y + target / strength), 1.0)
            gamma = np.maximum(gamma, defaults.BALANCE_MIN_GAMMA)
            for b, w in enumerate(weights):
                r = rows[b][c]
                if not r.size:
                    continue
                factor = gamma[groups[c, zones[b]]].astype(np.float32)
                if binary[b][c]:
                    w[r] = picked[b] * factor[None, :]
                else:
                    w[r] = picked[b] * factor[None, :] ** values[b][c][:, None]
            if c != master:
                relaxation[c] = np.minimum(relaxation[c] * gamma ** (-1.0 / strength), defaults.BALANCE_MAX_RELAXATION)
            reached = x > 0
            if reached.any():
                off = np.abs(x[reached] - target[reached]) / np.maximum(target[reached], 1.0)
                deviation = max(deviation, float(off.max()))
        if initial is not None and max_ratio:
            for w, w0 in zip(weights, initial):
                np.minimum(w, w0 * max_ratio, out=w)
        if deviation < tolerance or change < tolerance * defaults.BALANCE_STATIONARY_SHARE:
            relaxed = any(
                np.abs(relaxation[c][totals[c] > 0] - 1.0).max(initial=0.0) > tolerance
                for c in range(n_controls)
                if c != master
            )
            stop = "stationary" if deviation >= tolerance else ("soft controls relaxed" if relaxed else "controls met")
            return BalanceResult(
                tuple(w.astype(np.float64) for w in weights),
                stop != "stationary",
                iteration,
                deviation,
                tuple(relaxation),
                stop,
                change,
            )
    return BalanceResult(
        tuple(w.astype(np.float64) for w in weights),
        False,
        iteration,
        deviation,
        tuple(relaxation),
        "sweep limit",
        change,
    )


def integerize_zone(
    weights: npt.ArrayLike,
    incidence: npt.ArrayLike,
    targets: npt.ArrayLike,
    importance: npt.ArrayLike,
    total: int,
    rng: np.random.Generator,
    stats: dict[str, int] | None = None,
) -> npt.NDArray[np.int64]:
    """Whole households for one zone: exactly ``total`` of them, controls met as closely as integers allow.

    Every household keeps the whole part of its balanced weight; the households still missing are chosen
    among a pool drawn by fractional weight (systematic sampling, random start) by a linear programme that
    minimizes the importance-weighted absolute deviation from every control, preferring households with larger
    fractional weights (HiGHS dual simplex through :func:`scipy.optimize.linprog`); the basis leaves at most about
    one fractional value per control, which are rounded to the household count, and pairwise swaps (one placed
    household for one left out) then lower the deviation while they can. Deterministic given ``rng``.

    Parameters
    ----------
    weights : array-like of float64, shape (n_households,), >= 0
        Balanced weights of the zone's candidate (seed) households; rescaled to sum to ``total``.
    incidence : array-like of float64, shape (n_households, n_controls)
    targets : array-like of float64, shape (n_controls,)
        What each control should count in this zone (may be fractional: a share of an upper-level control).
    importance : array-like of float64, shape (n_controls,), > 0
    total : int >= 0
        Households of the zone.
    rng : numpy Generator (the pool's random start)
    stats : dict, optional
        Counters updated in place: ``lp_fallbacks`` (zones where the solver did not report an optimum, so the
        households with the largest fractional weights were taken instead; HiGHS status in ``lp_status_<k>``).

    Returns
    -------
    ndarray of int64, shape (n_households,), summing to ``total``.

    Source: the integerization step of PopulationSim (Paul, Doyle, Stabler, Freedman & Bettinardi 2018,
    "Multi-level population synthesis using entropy maximization-based simultaneous list balancing", TRB 97th
    Annual Meeting), which solves a similar programme with CVXPY.
    """
    from scipy.optimize import linprog
    from scipy.sparse import csc_matrix, hstack, identity, vstack

    w = np.asarray(weights, dtype=np.float64)
    a = np.asarray(incidence, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    result = np.zeros(w.size, dtype=np.int64)
    if total <= 0 or w.size == 0:
        return result
    if w.sum() <= 0:
        w = np.ones_like(w)
    w = w * (total / w.sum())
    whole = np.floor(w)
    frac = w - whole
    missing = int(round(total - whole.sum()))
    result += whole.astype(np.int64)
    if missing <= 0:
        return result
    pool = _draw_pool(frac, max(defaults.INTEGERIZE_MIN_POOL, defaults.INTEGERIZE_POOL_FACTOR * missing), rng)
    n, n_controls = pool.size, t.size
    imp = np.asarray(importance, dtype=np.float64)
    imp = np.minimum(imp / imp.min(), defaults.INTEGERIZE_MAX_IMPORTANCE)
    rhs = t - whole @ a
    block = csc_matrix(a[pool].T)
    # variables: y (pool, 0..1), s+ (controls), s- (controls); A y + s+ - s- = rhs, sum y = missing
    matrix = hstack([block, identity(n_controls), -identity(n_controls)], format="csc")
    count_row = csc_matrix(np.concatenate([np.ones(n), np.zeros(2 * n_controls)])[None, :])
    full = vstack([matrix, count_row], format="csc")
    rhs_full = np.concatenate([rhs, [missing]])
    bonus = 0.5 / max(missing, 1)
    cost = np.concatenate([-bonus * frac[pool] / max(frac[pool].max(), 1e-12), imp, imp])
    upper = np.concatenate([np.ones(n), np.full(2 * n_controls, np.inf)])
    lp = linprog(
        cost, A_eq=full, b_eq=rhs_full, bounds=np.column_stack([np.zeros(cost.size), upper]), method="highs-ds"
    )
    if lp.status != 0:  # free slacks make it feasible; an iteration limit or numerical trouble is counted
        if stats is not None:
            stats["lp_fallbacks"] = stats.get("lp_fallbacks", 0) + 1
            stats[f"lp_status_{lp.status}"] = stats.get(f"lp_status_{lp.status}", 0) + 1
        chosen = pool[np.argsort(-frac[pool], kind="stable")[:missing]]
        result[chosen] += 1
        return result
    y = lp.x[:n]
    chosen = _improve_by_swaps(_round_to_count(y, missing), a[pool], rhs, imp)
    result[pool[chosen > 0.5]] += 1
    # guard: exactly `total` households whatever the solver returned
    short = total - int(result.sum())
    if short != 0:
        candidates = pool[chosen <= 0.5] if short > 0 else pool[chosen > 0.5]
        ranked = candidates[np.argsort(-frac[candidates] if short > 0 else frac[candidates], kind="stable")]
        result[ranked[: abs(short)]] += 1 if short > 0 else -1
    return result


def _improve_by_swaps(
    chosen: np.ndarray,
    incidence: np.ndarray,
    target: np.ndarray,
    importance: np.ndarray,
    max_moves: int = defaults.INTEGERIZE_MAX_SWAPS,
) -> np.ndarray:
    """Swap one chosen candidate for one left out while that lowers the importance-weighted absolute deviation.

    Deterministic: the best pair among the ``INTEGERIZE_SWAP_SHORTLIST`` best single removals and additions.

    Parameters
    ----------
    chosen : ndarray of float64 (0/1), shape (n,)
    incidence : ndarray of float64, shape (n, n_controls)
    target : ndarray of float64, shape (n_controls,)
    importance : ndarray of float64, shape (n_controls,)
    """
    chosen = chosen.copy()
    residual = chosen @ incidence - target
    k = defaults.INTEGERIZE_SWAP_SHORTLIST
    for _ in range(max_moves):
        base = np.abs(residual) @ importance
        inside, outside = np.flatnonzero(chosen > 0.5), np.flatnonzero(chosen <= 0.5)
        if not inside.size or not outside.size or base <= 1e-9:
            break
        drop = np.abs(residual[None, :] - incidence[inside]) @ importance
        add = np.abs(residual[None, :] + incidence[outside]) @ importance
        drop_short = inside[np.argsort(drop, kind="stable")[:k]]
        add_short = outside[np.argsort(add, kind="stable")[:k]]
        pairs = residual[None, None, :] - incidence[drop_short][:, None, :] + incidence[add_short][None, :, :]
        cost = np.abs(pairs) @ importance
        i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        if cost[i, j] >= base - 1e-9:
            break
        chosen[drop_short[i]], chosen[add_short[j]] = 0.0, 1.0
        residual = pairs[i, j]
    return chosen


def _round_to_count(values: np.ndarray, count: int) -> np.ndarray:
    """0/1 for each value: the ``count`` largest get 1."""
    out = np.zeros(values.size)
    if count > 0:
        out[np.argsort(-values, kind="stable")[:count]] = 1.0
    return out


def _draw_pool(frac: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``size`` households drawn systematically with probability proportional to ``frac``.

    Households whose fractional weight alone exceeds one draw's step are always in; the draw walks the
    households in index order from one random start, so a household's chance follows its fractional weight.
    """
    positive = np.flatnonzero(frac > 0)
    if positive.size <= size:
        return positive
    cumulative = np.concatenate(([0.0], np.cumsum(frac[positive])))
    step = cumulative[-1] / size
    points = (rng.random() + np.arange(size)) * step
    hits = np.searchsorted(cumulative, points, side="right") - 1
    return positive[np.unique(np.clip(hits, 0, positive.size - 1))]
