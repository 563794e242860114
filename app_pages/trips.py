"""Trips: the tours of a finished run of a project with trips (DESIGN §13): fit to every trip table, the OD matrix
per departure time, the largest flows on the zones, departures by purpose, modes by distance, and the downloads."""

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from pydantic import ValidationError

from app_session import as_text, count_of, get_runner, init_state, owner_id, run_population, run_trips, show_downloads
from synthor_core.export import write_trips
from synthor_core.plots import (
    departure_purpose_heatmap,
    event_comparison,
    flow_map,
    mode_by_distance,
    od_heatmap,
    trip_fit_frame,
    trip_table_comparison,
)
from synthor_core.readers.trips import read_event
from synthor_core.synthesis.trips import outbound_trips, synthesize_trips, table_counts
from synthor_core.targets.trips import EventSpec


def trips_csv(frame: pd.DataFrame) -> bytes:
    """``trips.csv`` of a trips frame, as the CLI writes it."""
    with tempfile.TemporaryDirectory(prefix="synthor-trips-") as scratch:
        return write_trips(frame, Path(scratch), parquet=False)[0].read_bytes()


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

days = summary.get("llm_days")
if days and "error" in days:
    st.warning(f"The LLM wrote no day ({as_text(days['error'])}): the trips come from maxent.")
elif days:
    st.subheader("Days the LLM wrote")
    cols = st.columns(4)
    cols[0].metric("travellers asked", f"{days['persons_asked']:,}")
    cols[1].metric("days written", f"{days['days_written']:,}")
    cols[2].metric("days valid", f"{days['days_valid']:,}")
    cols[3].metric("LLM calls", f"{days['calls']:,}")
    st.caption(
        "Each traveller's day (destination among the zones nearest home, departure, mode, purpose) is checked; the "
        "valid ones seed the trip prior as a travel diary would, then the trip tables are fitted as always."
    )
    if days["rejected"]:
        st.dataframe(
            pd.DataFrame({"rejected because": list(days["rejected"]), "days": list(days["rejected"].values())}),
            hide_index=True,
            key="trips.llm_rejected",
        )

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
frequency = summary.get("frequency")
if frequency:
    st.caption(
        f"Tours a day by {as_text(' x '.join(frequency['by']) or 'everyone')} ({as_text(frequency['source'])}): TVD "
        f"{frequency['tvd']:.4f}; {frequency['tours_delayed']:,} of {summary['tours']:,} tours left later than their "
        f"bin so as to follow the person's previous tour (mean {frequency['mean_delay_minutes']:.0f} min)."
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
    purposes = ["all purposes", *dict.fromkeys([*trip_project.first_purposes, *trip_project.tour[1:]])]
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
    first = outbound_trips(trips, trip_project)
    st.plotly_chart(mode_by_distance(first, trip_project.modes), key="trips.modes")
    st.caption(f"{count_of(len(first), 'first trip')} of the tours; mean {np.mean(first['distance_km']):.1f} km.")

st.subheader("What-if: an event")
st.caption(
    "Send persons to one zone at a time of day (a concert, a match) on top of this run's day: they are drawn among "
    "the persons at home then, nearer ones more often (the base day's distance decay), and return home after the stay."
)
with st.form("trips.event_form"):
    cols = st.columns([2, 2, 1, 1])
    attracting = outbound_trips(trips, trip_project)["destination"].value_counts()
    zones = list(trip_project.zones)
    venue = cols[0].selectbox(
        "Zone", zones, index=zones.index(attracting.index[0]) if len(attracting) else 0, key="trips.event_zone"
    )
    window = cols[1].text_input("Departing (HH:MM-HH:MM)", "19:00-20:00", key="trips.event_window")
    persons = cols[2].number_input("Persons", min_value=1, max_value=1_000_000, value=5000, key="trips.event_persons")
    stay = cols[3].number_input("Stay (hours)", min_value=0.5, max_value=12.0, value=3.0, key="trips.event_stay")
    cols = st.columns([2, 4])
    name = cols[0].text_input("Name", "event", key="trips.event_name")
    who = cols[1].text_input("Who may go (a condition on the persons; empty: everyone)", "", key="trips.event_who")
    added = st.form_submit_button("Add the event to this run's day")
if added:
    problems: list = []
    try:
        spec = EventSpec(
            name=name.strip() or "event",
            zone=venue,
            depart=window,
            trips=int(persons),
            stay_hours=stay,
            who=who or None,
        )
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        spec = None
    event = read_event(1, spec, trip_project.zones, project.schema, problems) if spec is not None else None
    if event is None:
        why = "; ".join(getattr(p, "message", str(p)) for p in problems)  # the form's fields, not synthor.toml's keys
        st.error("The event cannot be added: " + as_text(why), icon=":material/error:")
    else:
        with st.spinner("Adding the event to the day"):
            scenario = synthesize_trips(
                replace(project, trips=replace(trip_project, events=(event,))),
                run_population(run_id)[1],
                reports[run_id]["settings"]["seed"],
            )
        st.session_state["trips.scenario"] = (run_id, event.name, scenario)
kept = st.session_state.get("trips.scenario")
if kept is not None and kept[0] == run_id:
    _, event_name, scenario = kept
    outcome = scenario.report["events"][event_name]
    st.markdown(
        f"**{as_text(event_name)}**: {outcome['persons']:,} persons to {as_text(outcome['zone'])} departing "
        f"{outcome['depart']} ({outcome['persons_available']:,} were at home then and could go); "
        f"{scenario.report['chains']['consistent_share']:.2%} of the days chain."
    )
    st.plotly_chart(event_comparison(outcome, event_name), key="trips.event_chart")
    st.dataframe(
        pd.DataFrame({"origin": list(outcome["top_origins"]), "persons": list(outcome["top_origins"].values())}),
        hide_index=True,
        key="trips.event_origins",
    )
    st.download_button(
        "Trips with the event (CSV)",
        data=trips_csv(scenario.trips),
        file_name=f"{run_id}_trips_{event_name}.csv",
        mime="text/csv",
        key="trips.event_download",
        on_click="ignore",
    )

st.subheader("Download")
show_downloads(run_id, key="trips.downloads")
st.caption(f"Run {as_text(run_id)}: persons.csv has each person's trips and commute; trips.csv one row per trip.")
