"""Raking and integerization."""

from __future__ import annotations

import numpy as np
import pytest

from synthor_core.calibrate.integerizing import integerize_trs
from synthor_core.calibrate.raking import rake_counts


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


def test_rounding_repair_brings_every_table_within_one_person_of_its_goal():
    """Issue 11: rounding along the finest table's cells leaves coarse tables several persons off (the errors of
    a cell's records add up); moving persons between records brings every cell of every table within one person of
    the calibrated (fractional) counts, N unchanged. Records: the 4 x 3 x 5 cross of three variables, two records
    per combination with weights near 1 (as after raking a population of single persons)."""
    from synthor_core.calibrate.integerizing import repair_rounding

    rng = np.random.default_rng(11)
    a, b, c = (g.reshape(-1).repeat(2) for g in np.meshgrid(np.arange(4), np.arange(3), np.arange(5), indexing="ij"))
    tables = [a * 3 + b, b * 5 + c, a, c]  # A x B, B x C, A, C
    weights = rng.uniform(0.6, 1.4, a.size)
    goals = [np.bincount(ids, weights=weights) for ids in tables]
    rounded = integerize_trs(weights, int(round(weights.sum())), rng, order=np.lexsort((rng.random(a.size), tables[0])))
    before = max(np.abs(np.bincount(ids, weights=rounded, minlength=g.size) - g).max() for ids, g in zip(tables, goals))
    repaired = repair_rounding(rounded, tables, goals)
    after = [np.abs(np.bincount(ids, weights=repaired, minlength=g.size) - g).max() for ids, g in zip(tables, goals)]
    assert before > 1.5  # rounding alone is off by 2 or more somewhere
    assert max(after) < 1.0, after
    assert repaired.sum() == rounded.sum() and repaired.min() >= 0 and repaired.dtype == np.int64


def test_a_total_income_per_cell_pins_the_weights_with_the_counts():
    """Issue 11, numeric controls, a known answer: two records per household size, incomes 10 and 30 (size 1) and
    20 and 50 (size 2). Counts 100 and 50 with total incomes 2,400 and 1,600 leave one solution:
    w1 + w2 = 100, 10 w1 + 30 w2 = 2,400 -> (30, 70); w3 + w4 = 50, 20 w3 + 50 w4 = 1,600 -> (30, 20).
    A mean of 24 and 32 per size is the same control. Raking the counts alone would leave (50, 50, 25, 25)."""
    from synthor_core.calibrate.raking import NumericTarget

    size_cell = np.array([0, 0, 1, 1])
    income = np.array([10.0, 30.0, 20.0, 50.0])
    counts = [np.array([100.0, 50.0])]
    for target in (
        NumericTarget(size_cell, income, np.array([2400.0, 1600.0])),
        NumericTarget(size_cell, income, np.array([24.0, 32.0]), mean=True),
    ):
        result = rake_counts([size_cell], counts, np.ones(4), numeric=[target])
        assert result.converged, result
        assert result.counts == pytest.approx([30.0, 70.0, 30.0, 20.0], rel=1e-6)
        assert result.max_relative_error_numeric < 1e-7
    assert rake_counts([size_cell], counts, np.ones(4)).counts == pytest.approx([50.0, 50.0, 25.0, 25.0])


def test_generalized_raking_keeps_the_exponential_form_and_meets_counts_and_totals_together():
    """Deville & Särndal (1992) raking: the calibrated weight of each record is its starting weight times
    exp(a_cell + b x) for the cells of the count tables it is in and its value x, so log(w / d) is linear in x
    inside a cell of a single table. Five records of one cell, a total income, a two-cell second table."""
    from synthor_core.calibrate.raking import NumericTarget

    rng = np.random.default_rng(2)
    x = np.array([5.0, 12.0, 20.0, 33.0, 41.0])
    start = rng.uniform(0.5, 2.0, 5)
    cell = np.zeros(5, dtype=np.int64)
    result = rake_counts([cell], [np.array([10.0])], start, numeric=[NumericTarget(cell, x, np.array([300.0]))])
    assert result.converged
    assert result.counts.sum() == pytest.approx(10.0) and result.counts @ x == pytest.approx(300.0)
    slope, intercept = np.polyfit(x, np.log(result.counts / start), 1)
    assert np.log(result.counts / start) == pytest.approx(intercept + slope * x, abs=1e-8)
    assert slope > 0  # mean 30 > the starting weights' mean (about 22): weight moves to larger incomes


def test_a_mean_outside_its_cell_s_values_is_reported_not_met():
    from synthor_core.calibrate.raking import NumericTarget

    cell = np.zeros(3, dtype=np.int64)
    target = NumericTarget(cell, np.array([1.0, 2.0, 3.0]), np.array([5.0]), mean=True)
    result = rake_counts([cell], [np.array([30.0])], np.ones(3), numeric=[target], max_iter=30)
    assert not result.converged
    assert result.counts.sum() == pytest.approx(30.0)
    assert result.max_relative_error_numeric == pytest.approx((5.0 - 3.0) / 5.0, abs=0.01)  # all weight on 3
