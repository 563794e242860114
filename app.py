"""Synthor, the app: bring aggregate tables, synthesize a population, watch the gap close, download it.

Start: ``streamlit run app.py`` (opens on the bundled UCI Adult example; no API key needed).
"""

from pathlib import Path

import streamlit as st

from app_session import as_text, count_of, current_project, get_runner, init_state, owner_id
from synthor_core.errors import SynthorError

# the favicon is served by the app itself: a material icon here is fetched from fonts.gstatic.com (the app runs
# offline, and a shared server tells no one who uses it)
st.set_page_config(page_title="Synthor", page_icon=str(Path(__file__).parent / "static" / "favicon.png"), layout="wide")
init_state()
owner_id()  # a private workspace keeps this browser's key in the address on every page
try:
    get_runner()
except SynthorError as exc:  # an unwritable or foreign data folder: say which, and what to do
    st.error(
        f"Synthor cannot open its data folder: {as_text(exc)}. Set SYNTHOR_DATA_DIR to a folder this server "
        f"may write to.",
        icon=":material/error:",
    )
    st.stop()


def run_status() -> None:
    """The session's run in the sidebar: a fragment redrawn every 2 s while the run was going on at the page's last
    full redraw (the page itself may not be redrawn meanwhile), drawn once otherwise. It never reruns the page
    itself: the Synthesize page does so when the run ends, and a second rerun there would delay the final view."""
    run_id = st.session_state["synth.run_id"]
    if run_id is None or run_id not in get_runner().run_ids():
        return
    running = get_runner().snapshot(run_id).status == "running"

    def draw() -> None:
        snap = get_runner().snapshot(run_id)
        st.caption(f"Run {run_id}: {snap.status}, {count_of(len(snap.events), 'iteration')}")

    st.fragment(draw, run_every=2.0 if running else None)()


page = st.navigation(
    [
        st.Page("app_pages/data.py", title="Data", icon=":material/table_chart:", default=True),
        st.Page("app_pages/synthesize.py", title="Synthesize", icon=":material/play_circle:"),
        st.Page("app_pages/evaluate.py", title="Evaluate & export", icon=":material/fact_check:"),
        st.Page("app_pages/households.py", title="Households in zones", icon=":material/holiday_village:"),
        st.Page("app_pages/trips.py", title="Trips", icon=":material/commute:"),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
    ]
)

with st.sidebar:
    st.markdown("**Synthor**: synthetic populations from aggregate tables")
    project, problems = current_project()
    st.caption(f"Project: {as_text(st.session_state['data.project_label'])}")
    if project is not None:
        st.caption(
            f"{count_of(project.size, 'person')}, {count_of(len(project.schema.names), 'variable')}, "
            f"{count_of(len(project.tables), 'table')}"
        )
    else:
        st.caption(f":red[{count_of(len(problems), 'problem')} to fix on the Data page:]")
        for problem in problems[:3]:  # what they are, on every page (issue 23: the count alone told nothing)
            st.caption(f"- {as_text(str(problem)[:160])}")
        if len(problems) > 3:
            st.caption(f"and {len(problems) - 3:,} more")
    run_status()

page.run()
