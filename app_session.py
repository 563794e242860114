"""Session state and shared resources of the Streamlit app: pointers in ``st.session_state``, the runner in
``st.cache_resource`` (shared by every session, thread-safe), projects loaded once per folder."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from synthor_core.errors import Problem
from synthor_core.runner import Runner
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
    """The process-wide runner; runs outlive page reloads."""
    return Runner()


@st.cache_resource(max_entries=16)
def _load(path: str, stamp: float) -> tuple[Project | None, list[Problem]]:
    problems = validate_project(path)
    return (None, problems) if problems else (load_project(path), [])


def current_project() -> tuple[Project | None, list[Problem]]:
    """The session's project (loaded once per folder and modification time) and its problems."""
    path = Path(st.session_state["data.project_dir"])
    stamp = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
    return _load(str(path), stamp)
