"""The Trips page (issue 24) with AppTest: the commuting example's trip tables on the Data page, a run from the
Synthesize page, then its fit, OD matrix, flows, departures, modes and downloads on the Trips page."""

from __future__ import annotations

import io
import time

import pandas as pd
from streamlit.testing.v1 import AppTest

from app_session import as_text
from synthor_testing import ROOT

APP = str(ROOT / "app.py")


def test_the_commuting_example_runs_from_the_app_and_its_trips_are_shown_and_downloaded():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.button(key="data.open_trips_example").click().run()
    assert not at.exception
    (trip_tables,) = [d.value for d in at.dataframe if "trip table" in d.value.columns]
    assert trip_tables["trip table"].tolist() == ["od_home_to_work", "departure", "mode"]
    assert trip_tables["cells with trips"].tolist() == [34_053, 14, 4] and trip_tables["total"][0] == 394_075
    at.switch_page("app_pages/synthesize.py").run()
    assert at.number_input(key="synth.size").value == 1_121_691
    at.number_input(key="synth.max_iterations").set_value(5)
    at.button[0].click().run()
    from app_session import get_runner

    run_id = at.session_state["synth.run_id"]
    deadline = time.monotonic() + 300
    while get_runner().snapshot(run_id).status == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert get_runner().snapshot(run_id).status in ("finished", "stopped"), get_runner().snapshot(run_id).error
    at.switch_page("app_pages/trips.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["travellers"].replace(",", "")) == int(metrics["trips"].replace(",", "")) // 2
    assert abs(int(metrics["travellers"].replace(",", "")) - 394_075) < 100
    assert float(metrics["OD CPC"]) >= 0.99 and metrics["tours that chain"] == "100.00%"
    (fit,) = [d.value for d in at.dataframe if "CPC" in d.value.columns]
    assert fit["table"].tolist() == ["od_home_to_work", "departure", "mode"] and fit["TVD"].max() < 0.01
    assert len(at.get("plotly_chart")) == 5  # comparison, OD matrix, flows, departures, modes
    at.selectbox(key="trips.od_bin").set_value("07:00-07:30").run()
    assert not at.exception
    # what-if: 5,000 persons to the zone with the most jobs, 19:00-20:00, on top of this run's day
    at.text_input(key="trips.event_name").set_value("concert")
    at.number_input(key="trips.event_persons").set_value(5000)
    at.button(key="FormSubmitter:trips.event_form-Add the event to this run's day").click().run()
    assert not at.exception and not at.error
    (summary,) = [m.value for m in at.markdown if m.value.startswith("**concert**")]
    assert "5,000 persons to" in summary and "departing 19:00-20:00" in summary and "100.00% of the days" in summary
    assert len(at.get("plotly_chart")) == 6
    scenario = at.session_state["trips.scenario"][2]
    hours = scenario.report["events"]["concert"]["trips_to_zone_by_hour"]
    assert hours["scenario"][19] - hours["base"][19] == 5000
    at.text_input(key="trips.event_window").set_value("19:00-25:00")
    at.button(key="FormSubmitter:trips.event_form-Add the event to this run's day").click().run()
    assert at.error[0].value == "The event cannot be added: " + as_text(
        "expected a departure interval HH:MM-HH:MM within 00:00-24:00, got '19:00-25:00'"
    )
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[0] == "Trips with the event (CSV)" and labels[1:3] == ["Persons (CSV)", "Trips (CSV)"]
    files = get_runner().exports(run_id)
    trips = pd.read_csv(io.BytesIO(files["trips.csv"]), dtype={"origin": str, "destination": str})
    persons = pd.read_csv(io.BytesIO(files["persons.csv"]), usecols=["person_id", "commuter", "trips"])
    assert len(trips) == int(metrics["trips"].replace(",", ""))
    assert (persons.loc[persons["commuter"] == "yes", "trips"] == 2).all()
    assert "population.csv" not in files
