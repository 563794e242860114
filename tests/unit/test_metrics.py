"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthor_core.metrics import attribute_gaps, jsd, srmse, tvd
from synthor_core.readers.project import load_project


def test_tvd_by_hand():
    # shares (0.5, 0.3, 0.2) vs (0.4, 0.4, 0.2): 1/2 (0.1 + 0.1 + 0) = 0.1
    assert tvd([50, 30, 20], [4, 4, 2]) == pytest.approx(0.1)
    assert tvd([1, 0], [0, 1]) == pytest.approx(1.0)
    assert tvd([1, 2], [0, 0]) == 1.0  # empty population


def test_srmse_by_hand():
    # t = (10, 30), s = (20, 20) scaled to total 40 -> (20, 20); RMSE = 10; mean t = 20 -> 0.5
    assert srmse([10, 30], [20, 20]) == pytest.approx(0.5)
    assert srmse([10, 30], [1, 3]) == pytest.approx(0.0)


def test_jsd_by_hand_natural_log():
    # p = (1, 0), q = (0, 1): m = (1/2, 1/2), JSD = ln 2
    assert jsd([1, 0], [0, 1]) == pytest.approx(math.log(2))
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    m = (p + q) / 2
    expected = 0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(q / m)).sum()
    assert jsd(p, q) == pytest.approx(expected)


def test_attribution_ranks_cells_by_persons_missing(small_project_dir):
    project = load_project(small_project_dir)
    synthetic = [t.counts.copy() for t in project.tables]
    synthetic[0][0, 0] -= 40  # age [0, 18) Female: 40 persons short
    synthetic[0][1, 1] += 25  # age [18, 65) Male: 25 too many
    synthetic[2][3, 0] -= 10  # age [65, 99] not employed: 10 short
    under, over = attribute_gaps(project.tables, synthetic, project.schema, top_k=5)
    assert [(g.table, g.labels, g.count_gap) for g in under] == [
        ("age_by_sex", {"age": "[0, 18)", "sex": "Female"}, 40.0),
        ("age_by_employed", {"age": "[65, 99]", "employed": "no"}, 10.0),
    ]
    assert [(g.table, g.labels, g.count_gap) for g in over] == [
        ("age_by_sex", {"age": "[18, 65)", "sex": "Male"}, -25.0)
    ]
    assert (
        under[0].describe() == "age_by_sex: age = [0, 18), sex = Female: target 11.00% (110), synthetic 7.11% (70)"
    )  # 70 of 985


def test_wasserstein_by_hand():
    from synthor_core.metrics import wasserstein

    assert wasserstein([0, 1], [1, 2]) == pytest.approx(1.0)  # every unit of mass moves by 1
    # weights: (0: 3/4, 10: 1/4) vs (0: 1/4, 10: 3/4): half the mass moves 10 units -> 5
    assert wasserstein([0, 10], [0, 10], [3, 1], [1, 3]) == pytest.approx(5.0)


def test_cramers_v_by_hand():
    from synthor_core.metrics import cramers_v

    assert cramers_v([[10, 0], [0, 10]]) == pytest.approx(1.0)
    assert cramers_v([[5, 5], [5, 5]]) == pytest.approx(0.0)
    # n = 60, every expected count 15, chi2 = 4 * 5^2 / 15 = 20/3, V = sqrt((20/3) / 60) = 1/3
    assert cramers_v([[20, 10], [10, 20]]) == pytest.approx(1 / 3)
    assert cramers_v([[3, 4, 0]]) == 0.0
