"""Runs: every run in the store (running ones too), reopen one's chart and downloads, delete one."""

import pandas as pd
import streamlit as st

from app_session import as_text, get_runner, show_downloads
from synthor_core.plots import tvd_by_iteration

st.title("Runs")
store = get_runner().store
runs = store.runs()
if runs.empty:
    st.info("No run yet: start one on the Synthesize page.")
    st.stop()

# started_at is seconds since the epoch (a number would be read as milliseconds: 1970-01-21)
shown = runs.assign(started_at=pd.to_datetime(runs["started_at"], unit="s"))
shown = shown[["run_id", "project_label", "status", "started_at", "iterations", "mean_tvd", "max_tvd", "prior",
               "mode", "size", "seed", "stop_reason"]]
st.dataframe(shown, hide_index=True, width="stretch", key="runs.table",
             column_config={"run_id": "run", "project_label": "project",
                            "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
                            "mean_tvd": st.column_config.NumberColumn("mean TVD", format="%.4f"),
                            "max_tvd": st.column_config.NumberColumn("max TVD", format="%.4f"),
                            "stop_reason": "stop reason"})
chosen = st.selectbox("Open a run", runs["run_id"].tolist(), key="runs.chosen",
                      format_func=lambda r: f"{r} ({runs.set_index('run_id').loc[r, 'status']})")
row = runs.set_index("run_id").loc[chosen]
if row["status"] == "failed":
    st.error(f"This run failed: {as_text(row['error'])}")
events = store.iterations(chosen)
if events:
    st.plotly_chart(tvd_by_iteration(events), key="runs.chart", width="stretch")
if row["status"] != "running":
    show_downloads(chosen, key="runs.downloads")
if row["status"] != "running" and st.button("Delete this run", key="runs.delete"):
    store.delete_run(chosen)
    st.rerun()
