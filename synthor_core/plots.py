"""Plotly figures and display frames built from a run's events; pages only draw them (STYLE.md rule 11)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .metrics import Fit
from .schema import Schema
from .synthesis.events import IterationEvent
from .synthesis.trips import DISTANCE_BANDS_KM, departure_minutes
from .targets.model import TargetTable


def tvd_by_iteration(
    events, tables_named: int = 5, final: tuple[float, float] | None = None, calibrated: bool = True
) -> go.Figure:
    """Line chart of mean and max TVD per iteration (log y), with one thin line per target table.

    Parameters
    ----------
    events : sequence of IterationEvent
    tables_named : int, the tables worst at the last iteration get a legend entry each; the others are drawn as
        one legend group ("other tables (k)") that toggles together.
    final : (mean TVD, max TVD) of the final population, optional: marked at the last iteration as stars (values
        on hover), so the chart ends where the headline does.
    calibrated : bool, whether ``final`` is the fit after calibration (full mode) or as the loop left it (paper
        mode); it names the stars in the legend.
    """
    x = [e.iteration for e in events]
    fig = go.Figure()
    if events:
        last = events[-1].tvd_by_table
        ranked = sorted(last, key=lambda n: -last[n])
        for rank, name in enumerate(ranked):
            named = rank < tables_named
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[max(e.tvd_by_table[name], 1e-6) for e in events],
                    name=_label(name) if named else f"other tables ({len(ranked) - tables_named})",
                    legendgroup=f"table-{rank}" if named else "other-tables",
                    showlegend=named or rank == tables_named,
                    hovertext=_label(name),
                    mode="lines",
                    line={"width": 1.5 if named else 1},  # legible beside the mean and max (width 3)
                    opacity=0.7 if named else 0.35,
                )
            )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[max(e.max_tvd, 1e-6) for e in events],
            name="max TVD",
            mode="lines+markers",
            line={"width": 3, "color": "#d62728"},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[max(e.mean_tvd, 1e-6) for e in events],
            name="mean TVD",
            mode="lines+markers",
            line={"width": 3, "color": "#1f77b4"},
        )
    )
    if final is not None and events:
        fig.add_trace(
            go.Scatter(
                # half an iteration after the last: on it, the stars hid the last iteration's markers
                x=[x[-1] + 0.5, x[-1] + 0.5],
                y=[max(final[0], 1e-6), max(final[1], 1e-6)],
                name="final (calibrated)" if calibrated else "final (not calibrated)",
                mode="markers",  # values on hover: a text label would lie on the lines it marks
                text=[f"final mean TVD {final[0]:.4f}", f"final max TVD {final[1]:.4f}"],
                hoverinfo="text",
                marker={
                    "symbol": "star",
                    "size": 14,
                    "color": ["#1f77b4", "#d62728"],
                    "line": {"width": 1, "color": "black"},
                },
            )
        )
    # one tick per power of ten, written as plain numbers (0.001, 0.01, 0.1), not "2, 5, 100μ"
    fig.update_yaxes(dtick=1, tickformat="~g", minor={"showgrid": True})
    # whole iterations on the x axis (plotly put ticks at 1.5, 2.5 for a short run), at most about ten of them
    fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(len(x) / 10)), tickformat="d")
    fig.update_layout(
        xaxis_title="iteration",
        yaxis_title="TVD (log scale)",
        yaxis_type="log",
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"font": {"size": 10}},
    )
    return fig


def fit_frame(fit: Fit, threshold: float | None = None) -> pd.DataFrame:
    """One row per target table: ``table``, ``tvd``, ``srmse`` (and ``passes`` when a threshold is given)."""
    frame = pd.DataFrame([{"table": name, "tvd": f.tvd, "srmse": f.srmse} for name, f in fit.tables.items()])
    if threshold is not None:
        frame["passes"] = frame["tvd"] <= threshold
    return frame


def numeric_fit_frame(fit: Fit) -> pd.DataFrame:
    """One row per cell of every numeric control: ``control``, ``cell`` (labels as text), ``statistic`` (e.g.
    "mean of hours_per_week"), ``goal``, ``synthetic``, ``relative error``; empty (same columns) without any."""
    rows = [
        {
            "control": name,
            "cell": ", ".join(f"{k} = {v}" for k, v in cell.items()) or "(all persons)",
            "statistic": f"{f.statistic} of {f.of}",
            "goal": float(goal),
            "synthetic": float(value),
            "relative error": float(error),
        }
        for name, f in fit.numeric.items()
        for cell, goal, value, error in zip(
            f.cells or [{}] * f.goals.size, f.goals.reshape(-1), f.synthetic.reshape(-1), f.relative_errors.reshape(-1)
        )
    ]
    return pd.DataFrame(rows, columns=["control", "cell", "statistic", "goal", "synthetic", "relative error"])


def proposals_frame(event: IterationEvent) -> pd.DataFrame:
    """The proposals of one iteration: ``action``, ``count``, ``conditions`` (as text), ``reason``."""

    def value(v) -> str:
        if isinstance(v, str):
            return v
        items = list(v)
        if len(items) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
            return f"[{items[0]:g}, {items[1]:g}]"  # an inclusive range, as written: [17, 24], not [17.0, 24.0]
        return " or ".join(str(x) for x in items)

    def text(conditions):
        return ", ".join(f"{k} = {value(v)}" for k, v in conditions.items()) or "(any)"

    return pd.DataFrame(
        [
            {"action": p.action, "count": p.count, "conditions": text(p.conditions), "reason": p.reason}
            for p in event.proposals
        ],
        columns=["action", "count", "conditions", "reason"],
    )


def table_comparison(table: TargetTable, synthetic: np.ndarray, schema: Schema) -> go.Figure:
    """Real (target) vs synthetic shares for one table: grouped bars for one variable, heatmaps of target,
    synthetic and difference (percentage points, on its own scale symmetric around 0, as wide as the largest
    difference) for two; more variables are shown flattened as bars."""
    target = table.shares
    total = synthetic.sum()
    synth = synthetic / total if total > 0 else np.zeros_like(target)
    labels = [[_label(v) for v in axis] for axis in table.axis_labels(schema)]  # names from project files
    if len(table.variables) == 2:
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=("target share", "synthetic share", "synthetic - target (points)"),
            shared_yaxes=True,
        )
        zmax = float(max(target.max(), synth.max()))
        difference = (synth - target) * 100
        # the difference gets its own symmetric scale (points), not the shares' (at least 0.01 point wide)
        dmax = max(float(np.abs(difference).max()), 0.01)
        share_bar = {"title": {"text": "share"}, "x": 0.645, "len": 0.9, "thickness": 12}
        for col, (z, scale) in enumerate([(target, "Blues"), (synth, "Blues"), (difference, "RdBu")], start=1):
            kwargs = (
                {"zmin": 0, "zmax": zmax, "colorbar": share_bar}
                if col < 3
                else {"zmin": -dmax, "zmax": dmax, "colorbar": {"title": {"text": "points"}, "thickness": 12}}
            )
            fig.add_trace(
                go.Heatmap(z=z, x=labels[1], y=labels[0], colorscale=scale, showscale=col >= 2, **kwargs),
                row=1,
                col=col,
            )
        fig.update_layout(height=max(300, 22 * len(labels[0]) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10})
        return fig
    names = [_label(" | ".join(map(str, table.cell_label(schema, i).values()))) for i in range(target.size)]
    fig = go.Figure(
        [go.Bar(x=names, y=target.reshape(-1), name="target"), go.Bar(x=names, y=synth.reshape(-1), name="synthetic")]
    )
    fig.update_layout(barmode="group", yaxis_title="share", height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


LEVEL_COLOURS = ("#1f77b4", "#7f7f7f", "#17becf", "#9467bd", "#8c564b")  # blue, grey, teal, purple, brown


def household_fit_figure(fit: pd.DataFrame, bars: dict[str, float] | None = None) -> go.Figure:
    """Horizontal bars of each control's %RMSE over the zones of its level, coloured by level.

    Parameters
    ----------
    fit : DataFrame
        One row per control with ``control``, ``level``, ``pct_rmse`` (``HouseholdResult.fit`` or report.json's
        ``controls``).
    bars : dict of control -> float, optional
        A reference value per control (e.g. PopulationSim's %RMSE), drawn as a black tick.
    """
    # names come from project files: escaped, since plotly reads <a href>, <b>, ... in labels and legends
    frame = fit.assign(
        pct_rmse=fit["pct_rmse"].astype(float), control=fit["control"].map(_label), level=fit["level"].map(_label)
    ).iloc[::-1]
    bars = {_label(k): v for k, v in (bars or {}).items()}
    fig = go.Figure()
    for k, level in enumerate(dict.fromkeys(frame["level"])):
        part = frame[frame["level"] == level]
        fig.add_trace(
            go.Bar(
                x=part["pct_rmse"],
                y=part["control"],
                orientation="h",
                name=level,
                # a level is not good or bad: neutral colours (plotly's second colour, red, read as "failing")
                marker_color=LEVEL_COLOURS[k % len(LEVEL_COLOURS)],
                customdata=part[["level"]].to_numpy(),
                hovertemplate="%{y}: %{x:.2f} %RMSE<extra>%{customdata[0]}</extra>",
            )
        )
    if bars:
        known = frame[frame["control"].isin(list(bars))]
        fig.add_trace(
            go.Scatter(
                x=[bars[c] for c in known["control"]],
                y=known["control"],
                mode="markers",
                marker={"symbol": "line-ns-open", "size": 14, "color": "black"},
                name="reference",
            )
        )
    fig.update_layout(
        xaxis_title="%RMSE over the zones of the control's level (100 x RMSE / mean control)",
        height=max(320, 18 * len(frame) + 80),
        barmode="group",
        legend_title_text="level",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"categoryorder": "array", "categoryarray": list(frame["control"])},
    )
    return fig


def household_convergence(events, final: dict[str, float] | None = None) -> go.Figure:
    """The gap shrinking in a household run: the worst %RMSE of each control group per iteration (one line per
    group, log y), the iterations numbered over the partitions (a partition's start marked), and, when given, the
    final worst %RMSE per group after integerization as stars at the last iteration.

    Parameters
    ----------
    events : sequence of HouseholdIteration
    final : dict of group -> float, optional
    """
    x = list(range(1, len(events) + 1))
    fig = go.Figure()
    groups = list(dict.fromkeys(g for e in events for g in e.fit_by_group))
    for g in groups:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[max(e.fit_by_group.get(g, 0.0), 1e-3) for e in events],
                name=_label(g),
                mode="lines+markers",
                line={"width": 2},
                marker={"size": 5},
            )
        )
    if final and events:
        fig.add_trace(
            go.Scatter(
                x=[x[-1]] * len(final),
                y=[max(v, 1e-3) for v in final.values()],
                name="final (integerized)",
                mode="markers",
                text=[f"{_label(g)}: final %RMSE {v:.2f}" for g, v in final.items()],
                hoverinfo="text",
                marker={"symbol": "star", "size": 12, "color": "black"},
            )
        )
    starts = [i + 1 for i, e in enumerate(events) if i == 0 or e.partition != events[i - 1].partition]
    if len(starts) > 1:
        for i in starts[1:]:
            fig.add_vline(x=i - 0.5, line={"width": 1, "dash": "dot", "color": "grey"})
    fig.update_yaxes(dtick=1, tickformat="~g", minor={"showgrid": True})
    fig.update_layout(
        xaxis_title="iteration (a slice of balancing sweeps"
        + (", partitions one after the other)" if len(starts) > 1 else ")"),
        yaxis_title="worst %RMSE of the group (log scale)",
        yaxis_type="log",
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"font": {"size": 10}},
    )
    fig.update_xaxes(dtick=1 if len(x) <= 30 else None)
    return fig


def sources_by_iteration(events) -> go.Figure:
    """Share of the balanced households whose candidate came from each prior, per iteration (stacked areas)."""
    x = list(range(1, len(events) + 1))
    sources = list(dict.fromkeys(s for e in events for s in e.households_by_source))
    fig = go.Figure()
    for source in sources:
        shares = []
        for e in events:
            total = sum(e.households_by_source.values()) or 1.0
            shares.append(e.households_by_source.get(source, 0.0) / total)
        fig.add_trace(go.Scatter(x=x, y=shares, name=_label(source), mode="lines", stackgroup="one"))
    fig.update_layout(
        xaxis_title="iteration",
        yaxis_title="share of households",
        yaxis_tickformat=".0%",
        height=260,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return fig


def _label(value) -> str:
    """A name from a project file as plotly shows it literally (its pseudo-HTML and ``%{...}`` escaped)."""
    import html

    return html.escape(str(value)).replace("%{", "%&#123;")


# classes of a zone's % difference (synthetic against control), from far below to far above, and their colours
# (a diverging palette: blue below, red above, pale near zero; ColorBrewer RdBu)
ZONE_CLASSES = (-math.inf, -20.0, -10.0, -5.0, -1.0, 1.0, 5.0, 10.0, 20.0, math.inf)
ZONE_COLOURS = ("#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b")


def zone_map(shapes, values: pd.Series, title: str) -> go.Figure:
    """The zones as filled polygons coloured by a value per zone (a % difference), on plain axes: no map tiles, no
    request to any server (the app runs offline).

    Parameters
    ----------
    shapes : ZoneShapes
        Outer rings per zone id.
    values : Series of float, indexed by zone id
        The % difference of each zone (synthetic - control) / control x 100; zones without a value are grey.
    title : str
        Shown above the map (escaped).

    Returns
    -------
    Figure: one trace per class of ``ZONE_CLASSES`` that has zones (legend "-10 to -5 %"), grey for zones without a
    value, and an invisible point per zone whose hover names it and its value. Longitude and latitude (coordinates
    within +-180, +-90) are drawn with the aspect of the mean latitude.
    """
    known = values.dropna()
    fig = go.Figure()
    groups: dict[int, list] = {}
    for zone, rings in shapes.rings.items():
        value = known.get(zone)
        k = -1 if value is None else int(np.searchsorted(ZONE_CLASSES, float(value), side="right") - 1)
        groups.setdefault(min(k, len(ZONE_COLOURS) - 1), []).extend(rings)
    for k in sorted(groups):
        xs: list = []
        ys: list = []
        for ring in groups[k]:
            xs += [*ring[:, 0], None]
            ys += [*ring[:, 1], None]
        lo, hi = (ZONE_CLASSES[k], ZONE_CLASSES[k + 1]) if k >= 0 else (math.nan, math.nan)
        name = (
            "no value"
            if k < 0
            else f"below {hi:g} %"
            if lo == -math.inf
            else f"above {lo:g} %"
            if hi == math.inf
            else f"{lo:g} to {hi:g} %"
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                fill="toself",
                mode="lines",
                line={"width": 0.5, "color": "#555555"},
                fillcolor="#cccccc" if k < 0 else ZONE_COLOURS[k],
                name=name,
                hoverinfo="skip",
            )
        )
    centres = {z: np.concatenate(r).mean(axis=0) for z, r in shapes.rings.items() if r}
    fig.add_trace(
        go.Scatter(
            x=[c[0] for c in centres.values()],
            y=[c[1] for c in centres.values()],
            mode="markers",
            marker={"size": 6, "opacity": 0},
            text=[f"{_label(z)}: " + (f"{known[z]:+.1f} %" if z in known.index else "no value") for z in centres],
            hoverinfo="text",
            showlegend=False,
        )
    )
    ratio = 1.0
    if shapes.rings:
        points = np.concatenate([np.concatenate(r) for r in shapes.rings.values() if r])
        if np.abs(points[:, 0]).max() <= 180 and np.abs(points[:, 1]).max() <= 90:  # longitude and latitude
            ratio = 1 / math.cos(math.radians(float(points[:, 1].mean())))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=ratio)
    fig.update_layout(
        title={"text": _label(title), "font": {"size": 13}},
        height=520,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"title": {"text": "synthetic vs control"}},
        plot_bgcolor="white",
    )
    return fig


# --- trips (DESIGN §13) ---------------------------------------------------------------------------------------------


def trip_fit_frame(trip_report: dict) -> pd.DataFrame:
    """One row per trip table of a run's ``report["trips"]``: its variables, TVD, SRMSE and CPC (text with 4 decimals
    for OD tables, empty otherwise: a table shows no "None") and where its figures come from."""
    rows = [
        {
            "table": name,
            "variables": " x ".join(fit["variables"]),
            "TVD": fit["tvd"],
            "SRMSE": fit["srmse"],
            "CPC": f"{fit['cpc']:.4f}" if "cpc" in fit else "",
            "source": fit.get("source", ""),
        }
        for name, fit in trip_report.get("tables", {}).items()
    ]
    return pd.DataFrame(rows, columns=["table", "variables", "TVD", "SRMSE", "CPC", "source"])


def trip_table_comparison(name: str, labels, target: np.ndarray, synthetic: np.ndarray) -> go.Figure:
    """Target vs synthetic trips of one trip table: grouped bars of shares for a table of one variable; for more
    (an OD table), each cell's synthetic count against its target count (log axes, the diagonal a perfect fit).

    Parameters
    ----------
    name : str, the table's name (escaped)
    labels : tuple of tuple of str, the cell labels along each axis
    target, synthetic : ndarray of float, the table's shape
    """
    if target.ndim == 1:
        t = target / target.sum() if target.sum() > 0 else target
        s = synthetic / synthetic.sum() if synthetic.sum() > 0 else synthetic
        names = [_label(v) for v in labels[0]]
        fig = go.Figure([go.Bar(x=names, y=t, name="target"), go.Bar(x=names, y=s, name="synthetic")])
        fig.update_layout(
            barmode="group",
            yaxis_title="share of trips",
            height=360,
            title={"text": _label(name), "font": {"size": 13}},
            margin={"l": 10, "r": 10, "t": 40, "b": 10},
        )
        return fig
    counted = (target > 0) | (synthetic > 0)
    t, s = target[counted] + 0.5, synthetic[counted] + 0.5  # + 0.5: empty cells show on log axes
    top = float(max(t.max(), s.max())) if t.size else 1.0
    fig = go.Figure(
        [
            go.Scattergl(x=t, y=s, mode="markers", marker={"size": 4, "opacity": 0.4}, name="cells", hoverinfo="skip"),
            go.Scatter(
                x=[0.5, top], y=[0.5, top], mode="lines", line={"color": "#7f7f7f", "dash": "dot"}, name="equal"
            ),
        ]
    )
    fig.update_xaxes(type="log", dtick=1, title="target trips per cell (+0.5)")  # ticks at 1, 10, 100, ...
    fig.update_yaxes(type="log", dtick=1, title="synthetic trips per cell (+0.5)")
    fig.update_layout(
        height=420, title={"text": _label(name), "font": {"size": 13}}, margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    return fig


def od_heatmap(trips: pd.DataFrame, zones, depart: tuple[int, int] | None = None, purpose: str | None = None):
    """Trips from each origin (rows) to each destination (columns), as a heatmap; the zones in their project order.

    Parameters
    ----------
    trips : DataFrame with ``origin``, ``destination``, ``depart`` (``HH:MM``), ``purpose``
    zones : sequence of str, the zone ids
    depart : (start, end) minutes after midnight, optional: trips departing in [start, end) only
    purpose : str, optional: trips of this purpose only

    Returns
    -------
    Figure; trip counts on a square-root colour scale (a few large cells would hide the rest), hover gives counts.
    """
    chosen = trips
    if purpose is not None:
        chosen = chosen[chosen["purpose"] == purpose]
    if depart is not None:
        minutes = departure_minutes(chosen) % (24 * 60)
        chosen = chosen[(minutes >= depart[0]) & (minutes < depart[1])]
    index = {z: i for i, z in enumerate(zones)}
    counts = np.zeros((len(index), len(index)))
    o = chosen["origin"].map(index).to_numpy()
    d = chosen["destination"].map(index).to_numpy()
    np.add.at(counts, (o, d), 1)
    names = [_label(z) for z in zones]
    fig = go.Figure(
        go.Heatmap(
            z=np.sqrt(counts),
            x=names,
            y=names,
            customdata=counts,
            colorscale="Blues",
            colorbar={"title": {"text": "trips (sqrt)"}, "thickness": 12},
            hovertemplate="from %{y} to %{x}: %{customdata:,.0f} trips<extra></extra>",
        )
    )
    # zone ids as categories: numeric-looking ids (tract GEOIDs) would otherwise be placed as numbers
    fig.update_xaxes(title="destination", showticklabels=False, type="category")
    fig.update_yaxes(title="origin", showticklabels=False, autorange="reversed", type="category")
    fig.update_layout(
        height=560,
        title={"text": f"{len(chosen):,} trips", "font": {"size": 13}},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def flow_map(
    trips: pd.DataFrame, centroids: pd.DataFrame, shapes=None, top: int = 300, purpose: str | None = None
) -> go.Figure:
    """The largest flows between zones as lines between their centroids, over the zones' outlines when given; plain
    longitude / latitude axes: no map tiles, nothing fetched.

    Parameters
    ----------
    trips : DataFrame with ``origin``, ``destination`` (and ``purpose``)
    centroids : DataFrame indexed by zone id with ``lon`` and ``lat`` (degrees)
    shapes : ZoneShapes, optional, drawn as grey outlines
    top : int, the flows drawn (largest first; intrazonal trips are dots sized by their count)
    purpose : str, optional
    """
    chosen = trips if purpose is None else trips[trips["purpose"] == purpose]
    flows = chosen.groupby(["origin", "destination"]).size().sort_values(ascending=False)
    fig = go.Figure()
    if shapes is not None:
        xs: list = []
        ys: list = []
        for rings in shapes.rings.values():
            for ring in rings:
                xs += [*ring[:, 0], None]
                ys += [*ring[:, 1], None]
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines", line={"width": 0.5, "color": "#bbbbbb"}, hoverinfo="skip", name="zones"
            )
        )
    between = flows[[o != d for o, d in flows.index]].head(top)
    largest = float(between.max()) if len(between) else 1.0
    # flows in five width classes (one trace each: plotly draws one width per trace)
    classes = np.minimum((between.to_numpy() / largest * 5).astype(int), 4)
    for k in range(5):
        xs, ys, texts = [], [], []
        for (o, d), n in between[classes == k].items():
            if o in centroids.index and d in centroids.index:
                xs += [centroids.at[o, "lon"], centroids.at[d, "lon"], None]
                ys += [centroids.at[o, "lat"], centroids.at[d, "lat"], None]
                texts += [f"{_label(o)} -> {_label(d)}: {n:,} trips"] * 2 + [None]
        if xs:
            low, high = int(largest * k / 5), int(largest * (k + 1) / 5)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"width": 0.6 + 1.4 * k, "color": "#b2182b"},
                    opacity=0.35 + 0.13 * k,
                    text=texts,
                    hoverinfo="text",
                    name=f"{low:,}-{high:,} trips",
                )
            )
    inside = flows[[o == d for o, d in flows.index]]
    inside = inside[[z in centroids.index for z, _ in inside.index]]
    if len(inside):
        zones = [z for z, _ in inside.index]
        fig.add_trace(
            go.Scatter(
                x=centroids.loc[zones, "lon"],
                y=centroids.loc[zones, "lat"],
                mode="markers",
                marker={"size": 4 + 12 * np.sqrt(inside.to_numpy() / inside.max()), "color": "#2166ac", "opacity": 0.5},
                text=[
                    f"{_label(z)}: {n:,} trips inside the zone" for z, n in zip(zones, inside.to_numpy(), strict=True)
                ],
                hoverinfo="text",
                name="within a zone",
            )
        )
    ratio = 1 / math.cos(math.radians(float(centroids["lat"].mean()))) if len(centroids) else 1.0
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=ratio)
    fig.update_layout(
        height=560,
        plot_bgcolor="white",
        title={"text": f"the {len(between):,} largest flows between zones", "font": {"size": 13}},
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    return fig


def departure_purpose_heatmap(trips: pd.DataFrame) -> go.Figure:
    """Trips by hour of departure (columns; hours past 24 are the next morning) and purpose (rows), as counts."""
    hours = departure_minutes(trips) // 60
    top = max(int(hours.max()) + 1, 24) if len(hours) else 24
    purposes = list(dict.fromkeys(trips["purpose"]))
    counts = np.zeros((len(purposes), top))
    index = {p: i for i, p in enumerate(purposes)}
    np.add.at(counts, (trips["purpose"].map(index).to_numpy(), hours), 1)
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=[f"{h:02d}" for h in range(top)],
            y=[_label(p) for p in purposes],
            colorscale="Blues",
            colorbar={"title": {"text": "trips"}, "thickness": 12},
            hovertemplate="%{y}, departing %{x}:00-%{x}:59: %{z:,.0f} trips<extra></extra>",
        )
    )
    fig.update_xaxes(title="hour of departure")
    fig.update_layout(height=260, margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return fig


def mode_by_distance(trips: pd.DataFrame, modes, bands=DISTANCE_BANDS_KM) -> go.Figure:
    """The share of each mode among the trips of each distance band (stacked bars, each band 100 %), trips per band
    in the hover."""
    band = np.searchsorted(np.asarray(bands), trips["distance_km"].to_numpy(), side="right") - 1
    names = [f"{a:g}-{b:g} km" if math.isfinite(b) else f"{a:g} km or more" for a, b in zip(bands[:-1], bands[1:])]
    table = pd.crosstab(band, trips["mode"]).reindex(index=range(len(names)), columns=list(modes), fill_value=0)
    shares = table.div(table.sum(axis=1).replace(0, 1), axis=0)
    fig = go.Figure(
        [
            go.Bar(
                x=names,
                y=shares[m],
                name=_label(m),
                customdata=table[m],
                hovertemplate="%{x}: %{y:.1%} (%{customdata:,} trips)<extra>" + _label(m) + "</extra>",
            )
            for m in modes
        ]
    )
    fig.update_layout(
        barmode="stack",
        yaxis={"title": "share of the band's trips", "tickformat": ".0%"},
        height=360,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
    )
    return fig


def event_comparison(event: dict, name: str) -> go.Figure:
    """Trips arriving in an event's zone per hour of departure, the base day beside the day with the event (a run
    report's ``trips.events[name]``)."""
    hours = event["trips_to_zone_by_hour"]
    labels = [f"{h:02d}" for h in hours["hour"]]
    fig = go.Figure(
        [
            go.Bar(x=labels, y=hours["base"], name="base day", marker_color="#7f7f7f"),
            go.Bar(x=labels, y=hours["scenario"], name=f"with {_label(name)}", marker_color="#b2182b"),
        ]
    )
    fig.update_layout(
        barmode="group",
        xaxis_title="hour of departure",
        yaxis_title=f"trips to {_label(event['zone'])}",
        height=340,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
    )
    return fig
