"""Session state and shared resources of the Streamlit app: pointers in ``st.session_state``, the runner in
``st.cache_resource`` (shared by every session, thread-safe), projects loaded once per folder."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from synthor_core.errors import Problem
from synthor_core.runner import Runner
from synthor_core.store import RunStore, default_data_dir
from synthor_core.targets import Project, load_project, validate_project

EXAMPLE_DIR = Path(__file__).resolve().parent / "examples" / "adult"
EXAMPLE_LABEL = "UCI Adult, 1994 Current Population Survey (bundled example)"


def init_state() -> None:
    """Namespaced defaults: the bundled example is the project until the user brings another."""
    st.session_state.setdefault("data.project_dir", str(EXAMPLE_DIR))
    st.session_state.setdefault("data.project_label", EXAMPLE_LABEL)
    st.session_state.setdefault("synth.run_id", None)


@st.cache_resource
def get_runner() -> Runner:
    """The process-wide runner with its run store (``$SYNTHOR_DATA_DIR/runs.duckdb``, default in the user's data
    folder); runs outlive page reloads."""
    return Runner(RunStore(default_data_dir() / "runs.duckdb"))


def adopt_run_from_url() -> None:
    """After a reload (a new session), pick up the run named in the URL (``?run=ID``) if it is known."""
    wanted = st.query_params.get("run")
    if st.session_state["synth.run_id"] is None and wanted and wanted in get_runner().run_ids():
        st.session_state["synth.run_id"] = wanted


def show_downloads(run_id: str, key: str) -> None:
    """Download buttons for a finished run: population CSV and Parquet, report.json, the project folder."""
    files = _exports(run_id)
    if not files:
        st.info("This run has no population to download.")
        return
    cols = st.columns(4)
    labels = {"population.csv": ("Population (CSV)", "text/csv"),
              "population.parquet": ("Population (Parquet)", "application/octet-stream"),
              "report.json": ("report.json", "application/json"),
              "project.zip": ("Project folder + run settings (zip)", "application/zip")}
    for col, (name, (label, mime)) in zip(cols, labels.items()):
        if name in files:
            col.download_button(label, data=files[name], file_name=f"{run_id}_{name}", mime=mime,
                                key=f"{key}.{name}")


@st.cache_data(max_entries=4, show_spinner="Preparing downloads")
def _exports(run_id: str) -> dict[str, bytes]:
    return get_runner().store.exports(run_id)


@st.cache_resource(max_entries=16)
def _load(path: str, stamp: float) -> tuple[Project | None, list[Problem]]:
    problems = validate_project(path)
    return (None, problems) if problems else (load_project(path), [])


def current_project() -> tuple[Project | None, list[Problem]]:
    """The session's project (loaded once per folder and modification time) and its problems."""
    path = Path(st.session_state["data.project_dir"])
    stamp = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
    return _load(str(path), stamp)
