"""Figures built for the pages (plots.py): scales that let a reader see what they show."""

from __future__ import annotations

import numpy as np

from synthor_core.plots import table_comparison, tvd_by_iteration
from synthor_core.readers.project import load_project


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


def test_the_convergence_chart_names_the_worst_tables_groups_the_rest_and_marks_the_final_fit():
    from synthor_core.synthesis.events import IterationEvent

    tables = {f"t{i}": 0.01 * (i + 1) for i in range(8)}
    events = [
        IterationEvent(
            iteration=k,
            mean_tvd=0.05 / k,
            max_tvd=0.1 / k,
            tvd_by_table=tables,
            srmse_by_table=tables,
            proposals=(),
            added=0,
            removed=0,
            rejected={},
            population_total=1,
            distinct_records=1,
            llm_calls=0,
            prompt_tokens=0,
            completion_tokens=0,
            seconds=0.0,
            aggregate_seconds=0.0,
        )
        for k in (1, 2, 3)
    ]
    figure = tvd_by_iteration(events, tables_named=5, final=(0.001, 0.004))
    legend = [t.name for t in figure.data if t.showlegend is not False]
    assert legend == ["t7", "t6", "t5", "t4", "t3", "other tables (3)", "max TVD", "mean TVD", "final (calibrated)"]
    assert sum(t.legendgroup == "other-tables" for t in figure.data) == 3
    final = figure.data[-1]
    # half an iteration after the last (on it, the stars hid its markers); whole-number iteration ticks
    assert list(final.x) == [3.5, 3.5] and list(final.y) == [0.001, 0.004]
    assert figure.layout.xaxis.dtick == 1 and figure.layout.xaxis.tickformat == "d"
    long = tvd_by_iteration(events * 15)  # 45 points: a tick every 5 iterations
    assert long.layout.xaxis.dtick == 5
    paper = tvd_by_iteration(events, final=(0.01, 0.04), calibrated=False)  # paper mode: the loop's own fit
    assert paper.data[-1].name == "final (not calibrated)"


def test_proposals_read_as_written():
    """Issue 23 item 6: a range condition as [17, 24] (not [17.0, 24.0]), a choice of categories with "or"."""
    from types import SimpleNamespace

    from synthor_core.plots import proposals_frame
    from synthor_core.priors.base import Proposal

    event = SimpleNamespace(
        proposals=[
            Proposal(count=5, action="add", conditions={"age": (17.0, 24.0), "sex": "Female"}, reason="r"),
            Proposal(count=2, action="add", conditions={"race": ("Black", "Other")}, reason="r"),
            Proposal(count=1, action="add", conditions={}, reason="r"),
        ]
    )
    assert proposals_frame(event)["conditions"].tolist() == [
        "age = [17, 24], sex = Female",
        "race = Black or Other",
        "(any)",
    ]
