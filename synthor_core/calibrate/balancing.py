"""List balancing: weights of candidate households in many zones fitted to household and person controls at every
geography level at once (PopulationSim's list balancer, extended to many zones and levels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import defaults


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
