"""Runs: every run in the store (running ones too), reopen one's chart and downloads, delete one."""

import streamlit as st

from app_session import get_runner, show_downloads
from synthor_core.plots import tvd_by_iteration

st.title("Runs")
store = get_runner().store
runs = store.runs()
if runs.empty:
    st.info("No run yet: start one on the Synthesize page.")
    st.stop()

st.dataframe(runs.drop(columns=["error"]), hide_index=True, width="stretch", key="runs.table",
             column_config={"started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
                            "ended_at": None, "mean_tvd": st.column_config.NumberColumn(format="%.4f"),
                            "max_tvd": st.column_config.NumberColumn(format="%.4f")})
chosen = st.selectbox("Open a run", runs["run_id"].tolist(), key="runs.chosen",
                      format_func=lambda r: f"{r} ({runs.set_index('run_id').loc[r, 'status']})")
row = runs.set_index("run_id").loc[chosen]
if row["status"] == "failed":
    st.error(f"This run failed: {row['error']}")
events = store.iterations(chosen)
if events:
    st.plotly_chart(tvd_by_iteration(events), key="runs.chart", width="stretch")
if row["status"] != "running":
    show_downloads(chosen, key="runs.downloads")
if row["status"] != "running" and st.button("Delete this run", key="runs.delete"):
    store.delete_run(chosen)
    st.rerun()
