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


def test_the_days_the_llm_wrote_are_shown_with_their_rejections(tmp_path):
    """Issue 24: a run with the LLM prior asks it for the travellers' days; the Trips page says how many it was
    asked, wrote and how many were valid, and why the others were refused."""
    from app_session import get_runner
    from llm_endpoint.server import TestEndpoint
    from synthor_core.priors.llm import LLMPrior, LLMSettings
    from synthor_core.priors.maxent import MaxEntPrior
    from synthor_core.readers.project import load_project
    from synthor_core.synthesis.config import SynthesisConfig
    from synthor_testing import trip_persons_known, write_trip_project

    project = load_project(write_trip_project(tmp_path))
    pool = trip_persons_known(project)  # the persons the "model" knows
    owner = "trips-page-llm-days-01"  # 22 characters, as the app makes them
    # a careless "model": schema-valid days with random times, none of them usable
    with TestEndpoint(seed=3, pool=pool, groups=[["zone", "commuter"], ["age"]], careless=True) as endpoint:

        def factory(project, config, rules):
            prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle", max_retries=0))
            prior.fallback = MaxEntPrior(project)
            return prior

        run_id = get_runner().start(
            project, SynthesisConfig(seed=2, max_iterations=3), factory, label="three zones", owner=owner
        )
        assert get_runner().wait(run_id, timeout_s=300).status == "finished", get_runner().snapshot(run_id).error
        calls = sum(1 for e in endpoint.log if e["task"] == "write_days")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["me"] = owner
    at.run()
    at.switch_page("app_pages/trips.py").run()
    at.selectbox(key="trips.run").set_value(run_id).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["travellers asked"] == "60" and metrics["LLM calls"] == str(calls) == "6"
    assert metrics["days valid"] == "0" and int(metrics["days written"]) > 0
    (rejected,) = [d.value for d in at.dataframe if "rejected because" in d.value.columns]
    assert "departure not a time of the day" in rejected["rejected because"].tolist()
    days = get_runner().store.report(run_id)["trips"]["llm_days"]
    assert rejected.set_index("rejected because")["days"].to_dict() == days["rejected"]
    assert metrics["OD CPC"] == "1.0000"  # the trips come from maxent and still fit


def test_the_data_page_says_how_many_tours_a_day_each_type_makes(tmp_path):
    """[trips.frequency] on the Data page: the trips caption names the tours a day by person type and their source."""
    from synthor_testing import write_frequency_project

    root = write_frequency_project(tmp_path)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["data.project_dir"] = str(root)
    at.run()
    assert not at.exception
    (line,) = [c.value for c in at.caption if c.value.startswith("Persons meeting")]
    assert "make 0 to 2 tours a day by commuter (tours\\.csv\\: a survey)" in line, line
