"""Runs: this browser's runs in the store (every run in a shared workspace), running ones too; reopen one's chart
and downloads, resume an interrupted one, delete one."""

import json
import math
import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from app_session import (
    as_text,
    drafts_dir,
    get_runner,
    init_state,
    owner_id,
    shared_workspace,
    show_downloads,
)
from synthor_core.errors import SynthorError
from synthor_core.plots import household_convergence, tvd_by_iteration

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
if runs.empty:
    st.info("No run yet: start one on the Synthesize page (persons) or the Households page.")
    st.stop()

# started_at is seconds since the epoch (a number would be read as milliseconds: 1970-01-21), shown in the server's
# time zone with its offset
ZONE = datetime.now().astimezone().tzinfo


def _tolerance(settings: object) -> float:
    try:
        return float(json.loads(str(settings)).get("tolerance_tvd", "nan"))
    except (ValueError, TypeError, AttributeError):
        return math.nan


far = (
    (runs["status"] == "finished")
    & (runs["kind"] == "persons")
    & (runs["mean_tvd"] > runs["settings"].map(_tolerance))  # NaN (unknown) compares False
)
shown = runs.assign(
    started_at=pd.to_datetime(runs["started_at"], unit="s", utc=True).dt.tz_convert(ZONE),
    kind=runs["kind"].map({"persons": "persons", "households": "households in zones"}),
    status=runs["status"].where(~far, "did not converge"),  # ended, but above its tolerance
)
shown = shown[  # the fit right after the status: at 1,400 px it fell off the right edge behind long project names
    [
        "run_id",
        "status",
        "mean_tvd",
        "worst_pct_rmse",
        "max_tvd",
        "iterations",
        "kind",
        "project_label",
        "started_at",
        "prior",
        "size",
        "seed",
        "stop_reason",
    ]
]
# a person run has no %RMSE and a household run no TVD: an empty cell, not "None" (the table draws a missing number
# as "None" whatever its format); as text of one width, so sorting still orders them
shown = shown.assign(
    **{
        column: [pattern.format(v) if pd.notna(v) else "" for v in shown[column]]
        for column, pattern in (("mean_tvd", "{:.4f}"), ("worst_pct_rmse", "{:8.2f}"), ("max_tvd", "{:.4f}"))
    }
)
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    key="runs.table",
    column_config={
        "run_id": "run",
        "project_label": st.column_config.TextColumn("project", width="medium"),
        "started_at": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss Z"),
        "mean_tvd": st.column_config.TextColumn("mean TVD"),
        "max_tvd": st.column_config.TextColumn("max TVD"),
        "worst_pct_rmse": st.column_config.TextColumn("worst %RMSE"),
        "size": st.column_config.NumberColumn("persons or households", format="localized"),  # 48,842
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
households = row["kind"] == "households"
if row["status"] == "failed":
    st.error(f"This run failed: {as_text(row['error'])}")
if row["status"] == "interrupted":
    st.warning(as_text(row["stop_reason"]))
events = store.iterations(chosen)
if events and households:
    st.plotly_chart(household_convergence(events), key="runs.chart", width="stretch")
    st.caption(f"{len(events)} iterations: the worst %RMSE of each control group after each slice of sweeps.")
elif events:
    final = (row["mean_tvd"], row["max_tvd"]) if row["status"] in ("finished", "stopped") else None
    figure = tvd_by_iteration(events, final=final, calibrated=row["mode"] != "paper")
    st.plotly_chart(figure, key="runs.chart", width="stretch")
if row["status"] != "running" and not households:
    show_downloads(chosen, key="runs.downloads")
cols = st.columns(4)
if households and cols[0].button("Open on the Households page", key="runs.household_open"):
    st.session_state["hh.run_id"] = chosen
    st.query_params["hhrun"] = chosen
    st.switch_page("app_pages/households.py")
if (
    row["status"] == "interrupted"
    and not households
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
        removed = store.delete_run(chosen, owner=owner)
    except (PermissionError, ValueError, SynthorError) as exc:
        st.error(as_text(exc))
    else:
        if removed and runner.folder is not None and Path(removed).resolve().parent == runner.folder.resolve():
            shutil.rmtree(removed, ignore_errors=True)  # only the runner's own folders
        if st.session_state.get("hh.run_id") == chosen:
            st.session_state["hh.run_id"] = None
            st.query_params.pop("hhrun", None)
        st.rerun()
