"""Raking and integerization."""

from __future__ import annotations

import numpy as np
import pytest

from synthor_core.calibrate import integerize_trs, rake_counts


def test_raking_a_2x2_table_preserves_the_seed_cross_product_ratio():
    """Published property with a closed-form answer: IPF keeps the odds ratio of the seed table (Mosteller 1968,
    "Association and estimation in contingency tables", JASA 63). Seed [[1, 2], [3, 4]] has odds ratio 2/3; with
    rows (60, 40) and columns (50, 50), x = cell (0, 0) solves x (x - 10) = 2/3 (60 - x)(50 - x)."""
    records_row = np.array([0, 0, 1, 1])
    records_col = np.array([0, 1, 0, 1])
    seed = np.array([1.0, 2.0, 3.0, 4.0])
    result = rake_counts([records_row, records_col], [np.array([60.0, 40.0]), np.array([50.0, 50.0])], seed)
    # (1/3) x^2 + (220/3 - 10) x - 2000 = 0  ->  x^2 + 190 x - 6000 = 0
    x = (-190 + np.sqrt(190**2 + 4 * 6000)) / 2
    assert result.converged
    assert result.counts == pytest.approx([x, 60 - x, 50 - x, x - 10], rel=1e-6)
    a, b, c, d = result.counts
    assert (a * d) / (b * c) == pytest.approx(2 / 3, rel=1e-6)


def test_raking_reports_non_convergence_when_a_target_cell_has_no_record():
    result = rake_counts([np.array([0, 0])], [np.array([5.0, 5.0])], np.array([1.0, 1.0]), max_iter=20)
    assert not result.converged
    assert result.iterations == 20
    assert result.max_abs_error == pytest.approx(0.5)


def test_trs_integerizes_to_the_exact_total():
    rng = np.random.default_rng(3)
    weights = rng.random(1000) * 3
    out = integerize_trs(weights, 1234, rng)
    assert out.dtype == np.int64 and out.sum() == 1234
    scaled = weights * 1234 / weights.sum()
    assert np.all(out >= np.floor(scaled)) and np.all(out <= np.floor(scaled) + 1)


def test_systematic_trs_rounds_each_ordered_run_to_within_one():
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 20, size=2000)
    weights = rng.random(2000) * 2
    out = integerize_trs(weights, 2000, rng, order=np.argsort(cells, kind="stable"))
    assert out.sum() == 2000
    expected = np.bincount(cells, weights=weights * 2000 / weights.sum(), minlength=20)
    got = np.bincount(cells, weights=out, minlength=20)
    assert np.abs(got - expected).max() < 1.0 + 1e-9
