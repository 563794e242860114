"""Figures built for the pages (plots.py): scales that let a reader see what they show."""

from __future__ import annotations

import numpy as np

from synthor_core.plots import table_comparison, tvd_by_iteration
from synthor_core.targets import load_project


def test_the_difference_heatmap_has_its_own_symmetric_scale(small_project_dir):
    project = load_project(small_project_dir)
    table = next(t for t in project.tables if t.name == "age_by_sex")
    synthetic = table.counts.astype(float).copy()
    synthetic.reshape(-1)[0] += 10.0  # one cell 10 persons over: about 1 point of share
    figure = table_comparison(table, synthetic, project.schema)
    target, synth, difference = figure.data
    share_top = max(np.max(target.z), np.max(synth.z))
    assert (target.zmin, target.zmax) == (0, share_top) and (synth.zmin, synth.zmax) == (0, share_top)
    widest = float(np.abs(np.asarray(difference.z)).max())
    assert 0.5 < widest < 2.0 and (difference.zmin, difference.zmax) == (-widest, widest)
    assert difference.colorbar.title.text == "points" and synth.colorbar.title.text == "share"


def test_the_convergence_chart_has_one_plain_tick_per_power_of_ten():
    figure = tvd_by_iteration([])
    assert figure.layout.yaxis.type == "log" and figure.layout.yaxis.dtick == 1
    assert figure.layout.yaxis.tickformat == "~g"
