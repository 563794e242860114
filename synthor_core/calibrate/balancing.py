"""List balancing: weights of candidate households in many zones fitted to household and person controls at every
geography level at once (PopulationSim's list balancer, extended to many zones and levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    caps = None if not max_ratio else [np.asarray(w, dtype=np.float64) * max_ratio for w in initial_weights]
    balancer = ListBalancer(
        incidence, initial_weights, block_zones, zone_groups, control_totals, importance, master, caps=caps
    )
    return balancer.run(max_iter, tolerance)


@dataclass
class BalanceState:
    """Where a :class:`ListBalancer` stands between calls, to go on after its candidates change.

    Attributes
    ----------
    relaxation : list of ndarray of float64, one per control, shape (n_groups,)
    sweeps : int
        Sweeps done so far (the importance of soft controls halves every ``BALANCE_IMPORTANCE_HALVING_SWEEPS``).
    previous : list of ndarray of float64 or None, one per control
        Weighted counts of the last sweep.
    """

    relaxation: list[npt.NDArray[np.float64]]
    sweeps: int = 0
    previous: list[npt.NDArray[np.float64] | None] = field(default_factory=list)


class ListBalancer:
    """The list balancer of :func:`balance_zones`, run a slice of sweeps at a time (:meth:`run`), so that a
    synthesis can measure the gap, add candidate households and go on from where it stood (``state``).

    Parameters
    ----------
    incidence, initial_weights, block_zones, zone_groups, control_totals, importance, master
        As :func:`balance_zones`; ``initial_weights`` are the weights to start from (a warm start).
    caps : sequence of ndarray of float64 or None, shaped as the weights
        Upper bound of each weight (``max_expansion_factor`` x its sample weight; inf: no bound); None: no bound.
    floors : sequence of ndarray of float64 or None, shaped as the weights
        Lower bound of each weight (``min_expansion_factor`` x its sample weight; 0: none); None: no bound. The
        weights a control moves are clipped to ``[floors, caps]`` after its update, as PopulationSim clips to its
        ``lb_weights`` and ``ub_weights`` (``balancers.np_balancer_py``).
    state : BalanceState, optional
        Relaxation factors, sweeps done and last weighted counts of an earlier balancer to go on from.
    """

    def __init__(
        self,
        incidence,
        initial_weights,
        block_zones,
        zone_groups: npt.ArrayLike,
        control_totals,
        importance: npt.ArrayLike,
        master: int | None = None,
        caps=None,
        state: BalanceState | None = None,
        floors=None,
    ):
        self.groups = np.asarray(zone_groups, dtype=np.int64)
        self.totals = [np.asarray(t, dtype=np.float64).reshape(-1) for t in control_totals]
        self.importance = np.asarray(importance, dtype=np.float64)
        self.master = master
        n_controls = len(self.totals)
        # float32 weights (as PopulationSim's NUMBA_PRECISION) halve the memory traffic of the sweeps; sums float64
        self.weights = [np.array(w, dtype=np.float32, copy=True) for w in initial_weights]
        self.caps = None if caps is None else [np.asarray(c, dtype=np.float32) for c in caps]
        self.floors = None if floors is None else [np.asarray(f, dtype=np.float32) for f in floors]
        self.zones = [np.asarray(z, dtype=np.int64) for z in block_zones]
        # per block and control: rows with non-zero incidence, their incidence, and whether it is 0/1
        self.rows, self.values, self.binary = [], [], []
        for inc in incidence:
            inc = np.asarray(inc, dtype=np.float64)
            nonzero = [np.flatnonzero(inc[:, c]) for c in range(n_controls)]
            self.rows.append(nonzero)
            self.values.append([inc[nonzero[c], c].astype(np.float32) for c in range(n_controls)])
            self.binary.append([bool(np.all(inc[nonzero[c], c] == 1.0)) for c in range(n_controls)])
        self.state = state or BalanceState([np.ones_like(t) for t in self.totals], 0, [None] * n_controls)
        self.order = [c for c in range(n_controls) if c != master] + ([master] if master is not None else [])

    def weighted_counts(self, c: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list]:
        """Control ``c``'s weighted count ``x`` and weighted squared incidence ``y`` per group, and each block's
        weights of the rows it counts."""
        n_groups = self.totals[c].size
        x = np.zeros(n_groups)
        y = np.zeros(n_groups)
        picked = []
        for b, w in enumerate(self.weights):
            r = self.rows[b][c]
            block = w[r]
            picked.append(block)
            if not r.size:
                continue
            g = self.groups[c, self.zones[b]]
            v = self.values[b][c]
            counted = np.bincount(g, weights=v @ block, minlength=n_groups)
            x += counted
            y += counted if self.binary[b][c] else np.bincount(g, weights=(v * v) @ block, minlength=n_groups)
        return x, y, picked

    def _sweep(self, adjustment: float) -> tuple[float, float]:
        """One sweep over the controls; returns (largest relative gap, largest relative change)."""
        state = self.state
        deviation, change = 0.0, 0.0
        for c in self.order:
            strength = (
                self.importance[c]
                if c == self.master
                else max(self.importance[c] * adjustment, defaults.BALANCE_MIN_IMPORTANCE)
            )
            x, y, picked = self.weighted_counts(c)
            before = state.previous[c]
            change = (
                max(change, float((np.abs(x - before) / np.maximum(before, 1.0)).max(initial=0)))
                if (before is not None)
                else np.inf
            )
            state.previous[c] = x
            target = np.maximum(self.totals[c] * state.relaxation[c], defaults.BALANCE_MIN_CONTROL)
            with np.errstate(divide="ignore", invalid="ignore"):
                gamma = np.where(x > 0, 1.0 - (x - target) / (y + target / strength), 1.0)
            gamma = np.maximum(gamma, defaults.BALANCE_MIN_GAMMA)
            for b, w in enumerate(self.weights):
                r = self.rows[b][c]
                if not r.size:
                    continue
                factor = gamma[self.groups[c, self.zones[b]]].astype(np.float32)
                if self.binary[b][c]:
                    updated = picked[b] * factor[None, :]
                else:
                    updated = picked[b] * factor[None, :] ** self.values[b][c][:, None]
                if self.caps is not None:  # clipped after each control, as PopulationSim (the last one, the total,
                    np.minimum(updated, self.caps[b][r], out=updated)  # is then met within the bounds)
                if self.floors is not None:
                    np.maximum(updated, self.floors[b][r], out=updated)
                w[r] = updated
            if c != self.master:
                state.relaxation[c] = np.minimum(
                    state.relaxation[c] * gamma ** (-1.0 / strength), defaults.BALANCE_MAX_RELAXATION
                )
            reached = x > 0
            if reached.any():
                off = np.abs(x[reached] - target[reached]) / np.maximum(target[reached], 1.0)
                deviation = max(deviation, float(off.max()))
        return deviation, change

    def run(
        self, max_sweeps: int, tolerance: float = defaults.BALANCE_TOLERANCE, slice_sweeps: int | None = None
    ) -> BalanceResult:
        """Sweep until the controls are met, the counts are stationary or ``max_sweeps`` sweeps are done in all
        (counted since the first balancer of the run); at most ``slice_sweeps`` sweeps in this call.

        Returns
        -------
        BalanceResult
            ``stop`` is ``"slice"`` when the call ended only because its slice was done (call again to go on).
        """
        state = self.state
        deviation, change = np.inf, np.inf
        limit = max_sweeps if slice_sweeps is None else min(max_sweeps, state.sweeps + slice_sweeps)
        while state.sweeps < limit:
            state.sweeps += 1
            halvings = (state.sweeps - 1) // defaults.BALANCE_IMPORTANCE_HALVING_SWEEPS
            deviation, change = self._sweep(0.5**halvings)
            if deviation < tolerance or change < tolerance * defaults.BALANCE_STATIONARY_SHARE:
                relaxed = any(
                    np.abs(state.relaxation[c][self.totals[c] > 0] - 1.0).max(initial=0.0) > tolerance
                    for c in range(len(self.totals))
                    if c != self.master
                )
                stop = (
                    "stationary" if deviation >= tolerance else ("soft controls relaxed" if relaxed else "controls met")
                )
                return self._result(stop != "stationary", deviation, stop, change)
        stop = "sweep limit" if state.sweeps >= max_sweeps else "slice"
        return self._result(False, deviation, stop, change)

    def _result(self, converged: bool, deviation: float, stop: str, change: float) -> BalanceResult:
        return BalanceResult(
            tuple(w.astype(np.float64) for w in self.weights),
            converged,
            self.state.sweeps,
            deviation,
            tuple(self.state.relaxation),
            stop,
            change,
        )
