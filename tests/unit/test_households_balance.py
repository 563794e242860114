"""List balancing over zones and integerization per zone (calibrate.balance_zones, calibrate.integerize_zone)."""

from __future__ import annotations

import numpy as np
import pytest

from synthor_core.calibrate.balancing import balance_zones
from synthor_core.calibrate.integerizing import integerize_zone

KONDURI_INCIDENCE = np.array(
    [
        [1, 1, 1, 0, 0, 0, 0, 0],  # hh_1
        [0, 0, 0, 1, 1, 1, 1, 1],  # hh_2
        [1, 1, 2, 1, 0, 1, 2, 1],  # p1
        [1, 0, 1, 0, 2, 1, 1, 1],  # p2
        [1, 1, 0, 2, 1, 0, 2, 0],  # p3
    ],
    dtype=float,
).T
KONDURI_CONTROLS = [35, 65, 91, 65, 104]
KONDURI_PUBLISHED_WEIGHTS = np.array([1.36, 25.66, 7.98, 27.79, 18.45, 8.64, 1.47, 8.64])


def test_konduri_published_list_balancing_case():
    """Konduri et al. (2016), TRR 2563, as in PopulationSim's test_Konduri: 8 households, 2 household and 3 person
    controls; the weighted sums meet the controls and the published weights' sums to one decimal."""
    result = balance_zones(
        [KONDURI_INCIDENCE],
        [np.ones((8, 1))],
        [np.array([0])],
        np.zeros((5, 1), dtype=int),
        [np.array([float(t)]) for t in KONDURI_CONTROLS],
        np.full(5, 1e5),
        max_iter=10_000,
        tolerance=1e-7,
    )
    assert result.converged
    sums = KONDURI_INCIDENCE.T @ result.weights[0][:, 0]
    np.testing.assert_almost_equal(sums, KONDURI_CONTROLS, decimal=1)
    np.testing.assert_almost_equal(sums, KONDURI_INCIDENCE.T @ KONDURI_PUBLISHED_WEIGHTS, decimal=1)


def test_zones_and_an_upper_level_control_are_fitted_together():
    """Two zones with their own household totals and a control over both (their REGION) that neither zone has:
    each zone meets its total and the region meets its count of large households."""
    incidence = np.array([[1, 0], [1, 1], [1, 0], [1, 1]], dtype=float)  # columns: total, large household
    initial = np.full((4, 2), 1.0)
    groups = np.array([[0, 1], [0, 0]])  # total per zone; "large" over the region
    result = balance_zones(
        [incidence],
        [initial],
        [np.array([0, 1])],
        groups,
        [np.array([10.0, 30.0]), np.array([12.0])],
        np.array([1e9, 1e4]),
        master=0,
        max_iter=2_000,
        tolerance=1e-9,
    )
    w = result.weights[0]
    np.testing.assert_allclose(w.sum(axis=0), [10.0, 30.0], rtol=1e-6)
    assert (incidence[:, 1] @ w).sum() == pytest.approx(12.0, rel=1e-3)


def test_contradicting_controls_give_way_by_importance_and_the_total_holds():
    """Households = 10 but 'size 1' asks for 14 of them: the total (master) holds, the soft control is relaxed."""
    incidence = np.array([[1, 1], [1, 0], [1, 0]], dtype=float)
    result = balance_zones(
        [incidence],
        [np.ones((3, 1))],
        [np.array([0])],
        np.zeros((2, 1), dtype=int),
        [np.array([10.0]), np.array([14.0])],
        np.array([1e9, 10.0]),
        master=0,
        max_iter=500,
    )
    w = result.weights[0][:, 0]
    assert w.sum() == pytest.approx(10.0, rel=1e-6)
    assert 9.0 < w[0] <= 10.0
    assert result.relaxation[1][0] < 1.0


def test_integerize_zone_places_exactly_the_total_and_meets_feasible_controls():
    rng = np.random.default_rng(0)
    incidence = np.column_stack([np.ones(200), rng.integers(0, 2, 200), rng.integers(0, 3, 200)]).astype(float)
    weights = rng.dirichlet(np.ones(200)) * 37
    chosen = np.zeros(200)
    chosen[rng.choice(200, 37, replace=False)] = 1
    targets = chosen @ incidence  # a whole-household solution exists
    counts = integerize_zone(weights, incidence, targets, np.array([1e9, 500.0, 500.0]), 37, rng)
    assert counts.dtype == np.int64 and counts.sum() == 37 and counts.min() >= 0
    np.testing.assert_array_equal(counts @ incidence, targets)


def test_integerize_zone_keeps_whole_parts_and_handles_empty_zones():
    rng = np.random.default_rng(1)
    incidence = np.ones((3, 1))
    assert integerize_zone(np.array([2.0, 1.0, 0.0]), incidence, np.array([3.0]), np.array([1.0]), 3, rng).tolist() == [
        2,
        1,
        0,
    ]
    assert integerize_zone(
        np.array([0.5, 0.5]), np.ones((2, 1)), np.array([0.0]), np.array([1.0]), 0, rng
    ).tolist() == [0, 0]


def test_integerize_zone_counts_a_solver_that_ends_without_an_optimum(monkeypatch):
    from types import SimpleNamespace

    import scipy.optimize

    monkeypatch.setattr(scipy.optimize, "linprog", lambda *a, **k: SimpleNamespace(status=1, x=None))
    rng = np.random.default_rng(0)
    weights = np.array([0.5, 1.5, 2.5, 0.5])
    incidence = np.array([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    stats = {}
    counts = integerize_zone(weights, incidence, np.array([3.0, 2.0]), np.ones(2), 5, rng, stats)
    assert counts.sum() == 5 and (counts >= np.floor(weights)).all()
    assert stats == {"lp_fallbacks": 1, "lp_status_1": 1}


def test_balancing_says_why_it_stopped():
    met = balance_zones(
        [KONDURI_INCIDENCE],
        [np.ones((8, 1))],
        [np.array([0])],
        np.zeros((5, 1), dtype=int),
        [np.array([float(t)]) for t in KONDURI_CONTROLS],
        np.full(5, 1e5),
        max_iter=10_000,
        tolerance=1e-4,
    )
    assert (met.converged, met.stop) == (True, "controls met") and met.max_relative_gap < 1e-4
    # a soft control asking for 20 households out of 10: met once relaxed to half
    incidence = np.array([[1, 1, 1], [1, 1, 0]], dtype=float)  # total, the impossible one, the first household
    stuck = balance_zones(
        [incidence],
        [np.ones((2, 1))],
        [np.array([0])],
        np.zeros((3, 1), dtype=int),
        [np.array([10.0]), np.array([20.0]), np.array([4.0])],
        np.array([1e9, 10.0, 10.0]),
        master=0,
        max_iter=5000,
        tolerance=1e-6,
    )
    assert (stuck.converged, stuck.stop) == (True, "soft controls relaxed") and stuck.iterations < 5000
    assert stuck.weights[0].sum() == pytest.approx(10.0, abs=1e-3) and stuck.relaxation[1][0] == pytest.approx(
        0.5, abs=1e-4
    )
    limited = balance_zones(
        [incidence],
        [np.ones((2, 1))],
        [np.array([0])],
        np.zeros((3, 1), dtype=int),
        [np.array([10.0]), np.array([20.0]), np.array([4.0])],
        np.array([1e9, 10.0, 10.0]),
        master=0,
        max_iter=5,
        tolerance=1e-6,
    )
    assert (limited.converged, limited.stop, limited.iterations) == (False, "sweep limit", 5)


def test_weight_bounds_hold_and_the_total_is_met_within_them():
    """PopulationSim's lb_weights / ub_weights (min_ and max_expansion_factor): every weight ends inside its bounds
    and the total of households, balanced last, is met exactly; the bounds bind (the unbounded weights leave them)."""
    from synthor_core.calibrate.balancing import ListBalancer

    incidence = np.column_stack([np.ones(8), KONDURI_INCIDENCE])  # a total of households first, then Konduri's
    totals = [np.array([100.0])] + [np.array([float(t)]) for t in KONDURI_CONTROLS]
    initial = np.full((8, 1), 12.5)
    floors, caps = initial * 0.5, initial * 2.0

    def run(**bounds):
        balancer = ListBalancer(
            [incidence], [initial], [np.array([0])], np.zeros((6, 1), dtype=int), totals, np.full(6, 1e4), 0, **bounds
        )
        return balancer.run(2_000, 1e-9).weights[0][:, 0]

    free, bounded = run(), run(caps=[caps], floors=[floors])
    assert ((free < floors[:, 0] - 1e-3) | (free > caps[:, 0] + 1e-3)).any()  # the bounds bind
    assert (bounded >= floors[:, 0] * (1 - 1e-6)).all() and (bounded <= caps[:, 0] * (1 + 1e-6)).all()
    assert bounded.sum() == pytest.approx(100.0, rel=1e-6)
