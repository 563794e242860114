"""Trips: the tours of a finished run of a project with trips (DESIGN §13): fit to every trip table, the OD matrix
per departure time, the largest flows on the zones, departures by purpose, modes by distance, and the downloads."""

import numpy as np
import pandas as pd
import streamlit as st

from app_session import as_text, count_of, get_runner, init_state, owner_id, run_population, run_trips, show_downloads
from synthor_core.plots import (
    departure_purpose_heatmap,
    flow_map,
    mode_by_distance,
    od_heatmap,
    trip_fit_frame,
    trip_table_comparison,
)
from synthor_core.synthesis.trips import table_counts

init_state()  # on a fresh server Streamlit may run a page of pages/ before app.py has set the state
st.title("Trips")
store = get_runner().store
runs = store.runs(owner=owner_id())
done = runs[runs["mean_tvd"].notna() & ~runs["stop_reason"].fillna("").str.startswith(("interrupted:", "failed:"))]
reports = {r: store.report(r) for r in done["run_id"]}
ids = [r for r, report in reports.items() if report and "trips" in report]
if not ids:
    st.info(
        "No run with trips yet: open a project with trips (the Data page's commuting example) and start a run on "
        "the Synthesize page."
    )
    st.stop()
current = st.session_state.get("synth.run_id")
labels = done.set_index("run_id")["project_label"]
run_id = st.selectbox(
    "Run",
    ids,
    index=ids.index(current) if current in ids else 0,
    key="trips.run",
    format_func=lambda r: f"{r}: {labels.get(r, '')}",
)
summary = reports[run_id]["trips"]
project, _ = run_population(run_id)
trips = run_trips(run_id)
if project.trips is None or trips is None:
    st.warning("This run's project or trips could not be read back from the run store.")
    st.stop()
trip_project = project.trips

cols = st.columns(4)
cols[0].metric("travellers", f"{summary['travellers']:,}")
cols[1].metric("trips", f"{summary['trips']:,}")
od_fits = [fit["cpc"] for fit in summary["tables"].values() if "cpc" in fit]
cols[2].metric("OD CPC", f"{od_fits[0]:.4f}" if od_fits else "no OD table", help="common part of commuters: 1 is equal")
cols[3].metric("tours that chain", f"{summary['chains']['consistent_share']:.2%}")

st.subheader("Fit to the trip tables")
st.caption("Each table counts the tours' first trips; TVD and SRMSE of the shares, CPC of the counts (OD tables).")
st.dataframe(
    trip_fit_frame(summary),
    hide_index=True,
    width="stretch",
    key="trips.fit",
    column_config={
        "TVD": st.column_config.NumberColumn(format="%.4f"),
        "SRMSE": st.column_config.NumberColumn(format="%.4f"),
    },
)
names = [t.name for t in trip_project.tables]
chosen = st.selectbox("Target vs synthetic", names, key="trips.table")
table = trip_project.tables[names.index(chosen)]
st.plotly_chart(
    trip_table_comparison(table.name, table.labels, table.counts, table_counts(trip_project, trips, table)),
    key="trips.comparison",
)

od_tab, flows_tab, time_tab, mode_tab = st.tabs(
    ["OD matrix by departure time", "Flows on the map", "Departures by purpose", "Modes by distance"]
)
with od_tab:
    bins = ["all day", *trip_project.depart_labels()]
    cols = st.columns(2)
    when = cols[0].selectbox("Departing", bins, key="trips.od_bin")
    purposes = ["all purposes", *dict.fromkeys(trip_project.tour)]
    purpose = cols[1].selectbox("Purpose", purposes, key="trips.od_purpose")
    window = None
    if when != "all day":
        k = bins.index(when) - 1
        window = (int(trip_project.depart_edges[k]), int(trip_project.depart_edges[k + 1]))
    st.plotly_chart(
        od_heatmap(trips, trip_project.zones, window, None if purpose == "all purposes" else purpose),
        key="trips.od",
    )
with flows_tab:
    if trip_project.centroids is None:
        st.info("The zones file gives no centroids (lon and lat columns): no flow map.")
    else:
        centroids = pd.DataFrame(trip_project.centroids, index=list(trip_project.zones), columns=["lon", "lat"])
        cols = st.columns(2)
        top = cols[0].slider("Flows drawn", 50, 1000, 300, step=50, key="trips.top")
        purpose = cols[1].selectbox("Purpose", purposes, key="trips.flow_purpose")
        st.plotly_chart(
            flow_map(
                trips,
                centroids,
                project.zone_shapes,
                top=top,
                purpose=None if purpose == "all purposes" else purpose,
            ),
            key="trips.flows",
        )
with time_tab:
    st.plotly_chart(departure_purpose_heatmap(trips), key="trips.departures")
    st.caption("Hours past 24 are the next morning (a return from a night shift).")
with mode_tab:
    first = trips[trips["trip_num"] == 1]
    st.plotly_chart(mode_by_distance(first, trip_project.modes), key="trips.modes")
    st.caption(f"{count_of(len(first), 'first trip')} of the tours; mean {np.mean(first['distance_km']):.1f} km.")

st.subheader("Download")
show_downloads(run_id, key="trips.downloads")
st.caption(f"Run {as_text(run_id)}: persons.csv has each person's trips and commute; trips.csv one row per trip.")
