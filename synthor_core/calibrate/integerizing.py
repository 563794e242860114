"""Integerizing: fractional counts to whole persons or households (truncate-replicate-sample with controlled
rounding for flat populations; a linear programme per zone for households in zones).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .. import defaults


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
