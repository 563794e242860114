"""Runs: this browser's runs in the store (every run in a shared workspace), running ones too; reopen one's chart
and downloads, resume an interrupted one, delete one."""

import shutil
from pathlib import Path

import pandas as pd
import streamlit as st

from app_session import (
    as_text,
    drafts_dir,
    get_runner,
    household_runs_dir,
    init_state,
    owner_id,
    shared_workspace,
    show_downloads,
)
from synthor_core.errors import SynthorError
from synthor_core.plots import tvd_by_iteration

init_state()  # on a fresh server Streamlit may run a page of pages/ before app.py has set the state
st.title("Runs")
runner = get_runner()
store = runner.store
owner = owner_id()
st.caption(
    "Shared workspace: every user of this server sees, downloads and deletes every run (set by the operator "
    "with SYNTHOR_WORKSPACE=shared)."
    if shared_workspace()
    else "Your runs: this browser's key is in the address (`?me=`); keep the address to find them again. Other "
    "users of this server do not see them."
)
runs = store.runs(owner=owner)
household_runs = store.household_runs(owner=owner)
if not household_runs.empty:
    with st.expander(f"Household runs ({len(household_runs)})", expanded=runs.empty, icon=":material/holiday_village:"):
        shown = household_runs.assign(started_at=pd.to_datetime(household_runs["started_at"], unit="s"))
        st.dataframe(
            shown[
                [
                    "run_id",
                    "project_label",
                    "prior",
                    "seed",
                    "started_at",
                    "households",
                    "persons",
                    "worst_pct_rmse",
                    "seconds",
                ]
            ],
            hide_index=True,
            width="stretch",
            key="runs.households",
            column_config={
                "run_id": "run",
                "project_label": "project",
                "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
                "worst_pct_rmse": st.column_config.NumberColumn("worst %RMSE", format="%.2f"),
            },
        )
        chosen_hh = st.selectbox("Household run", household_runs["run_id"].tolist(), key="runs.household_chosen")
        cols = st.columns(4)
        folder = Path(household_runs.set_index("run_id").loc[chosen_hh, "folder"])
        if cols[0].button("Open on the Households page", key="runs.household_open"):
            st.session_state["hh.run_dir"] = str(folder)
            st.switch_page("app_pages/households.py")
        if cols[1].button("Delete this household run", key="runs.household_delete"):
            removed = store.delete_household_run(chosen_hh, owner=owner)
            if removed and Path(removed).resolve().parent == household_runs_dir().resolve():  # only our own folders
                shutil.rmtree(removed, ignore_errors=True)
            st.rerun()
if runs.empty:
    st.info(
        "No run yet: start one on the Synthesize page."
        if household_runs.empty
        else "No person run yet: start one on the Synthesize page."
    )
    st.stop()

# started_at is seconds since the epoch (a number would be read as milliseconds: 1970-01-21)
shown = runs.assign(started_at=pd.to_datetime(runs["started_at"], unit="s"))
shown = shown[
    [
        "run_id",
        "project_label",
        "status",
        "started_at",
        "iterations",
        "mean_tvd",
        "max_tvd",
        "prior",
        "mode",
        "size",
        "seed",
        "stop_reason",
    ]
]
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    key="runs.table",
    column_config={
        "run_id": "run",
        "project_label": "project",
        "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
        "mean_tvd": st.column_config.NumberColumn("mean TVD", format="%.4f"),
        "max_tvd": st.column_config.NumberColumn("max TVD", format="%.4f"),
        "stop_reason": "stop reason",
    },
)
if runner.interrupted and not runs[runs["run_id"].isin(runner.interrupted)].empty:
    st.warning(
        f"{len(runs[runs['run_id'].isin(runner.interrupted)])} run(s) were interrupted when the server "
        f"stopped: their population saved so far can be downloaded, resumed or deleted."
    )
chosen = st.selectbox(
    "Open a run",
    runs["run_id"].tolist(),
    key="runs.chosen",
    format_func=lambda r: f"{r} ({runs.set_index('run_id').loc[r, 'status']})",
)
row = runs.set_index("run_id").loc[chosen]
if row["status"] == "failed":
    st.error(f"This run failed: {as_text(row['error'])}")
if row["status"] == "interrupted":
    st.warning(as_text(row["stop_reason"]))
events = store.iterations(chosen)
if events:
    final = (row["mean_tvd"], row["max_tvd"]) if row["status"] in ("finished", "stopped") else None
    figure = tvd_by_iteration(events, final=final, calibrated=row["mode"] != "paper")
    st.plotly_chart(figure, key="runs.chart", width="stretch")
if row["status"] != "running":
    show_downloads(chosen, key="runs.downloads")
cols = st.columns(4)
if (
    row["status"] == "interrupted"
    and store.population(chosen) is not None
    and cols[0].button("Resume (maxent prior)", key="runs.resume", help="A new run goes on from the saved population")
):
    import uuid

    folder = drafts_dir() / f"resume-{uuid.uuid4().hex[:12]}"
    resumed = runner.resume(chosen, folder, owner=owner)
    # the session follows the resumed run: its project (the run's own copy) and the run itself
    st.session_state["data.project_dir"] = str(folder)
    st.session_state["data.project_label"] = f"{row['project_label']} (resumed from {chosen})"
    st.session_state["synth.run_id"] = st.session_state["synth.form_run"] = resumed
    st.session_state["synth.run_project"] = str(folder.resolve())
    st.query_params["run"] = resumed
    st.switch_page("app_pages/synthesize.py")
if row["status"] != "running" and cols[1].button("Delete this run", key="runs.delete"):
    try:
        store.delete_run(chosen, owner=owner)
    except (PermissionError, ValueError, SynthorError) as exc:
        st.error(as_text(exc))
    else:
        st.rerun()
