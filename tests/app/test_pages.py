"""Page tests with streamlit.testing.v1.AppTest: the example loads, a maxent run completes and shows its fit,
a broken project lists its problems."""

from __future__ import annotations

import re
import time

from streamlit.testing.v1 import AppTest

from app_session import as_text
from synthor_testing import ROOT, SMALL_FILES, SMALL_TOML, write_project

APP = str(ROOT / "app.py")


FINAL_HEADINGS = ("Fit after calibration", "Final fit (not calibrated)")  # full mode calibrates; paper mode not


def _wait_for_fit(at: AppTest, timeout_s: float) -> None:
    """Rerun the page until the finished run's fit table shows (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not any(h.value in FINAL_HEADINGS for h in at.subheader):
        time.sleep(0.5)
        at.run()
    at.run()  # once more: the run may have ended between the page's live part and its final part


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def test_data_page_opens_on_the_bundled_example():
    at = _app()
    assert at.success[0].value.startswith(
        as_text("UCI Adult, 1994 Current Population Survey (bundled example)") + ": 48,842 "
        "persons, 9 variables, 19 target tables."
    )
    variables = at.dataframe[0].value
    assert variables["variable"].tolist()[:3] == ["age", "sex", "race"]
    assert len(at.dataframe[1].value) == 19
    assert at.dataframe[2].value.to_dict("records") == [
        {
            "control": "mean_hours_by_sex_income",
            "gives": "mean of hours_per_week",
            "per cell of": "sex x income",
            "cells": 4,
            "file": "tables/mean_hours_by_sex_income.csv",
        }
    ]
    assert at.dataframe[3].value["count"].sum() == 48842  # the previewed table


def test_broken_project_lists_every_problem_and_blocks_synthesis(tmp_path):
    files = dict(SMALL_FILES)
    files["tables/age_by_sex.csv"] = 'age,sex,count\n"[0, 18)",Female,-1\n"[0, 18)",Other,2\n'
    folder = write_project(tmp_path / "bad", SMALL_TOML, files)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["data.project_dir"] = str(folder)
    at.session_state["data.project_label"] = "uploaded (4 files)"
    at.run()
    assert not at.exception
    assert at.error[0].value.startswith("2 problem(s): fix them below")
    problems = at.dataframe[0].value
    assert problems.to_dict("records") == [
        {"file": "tables/age_by_sex.csv", "row": 2, "column": "count", "problem": 'expected a number >= 0, got "-1"'},
        {
            "file": "tables/age_by_sex.csv",
            "row": 3,
            "column": "sex",
            "problem": 'expected one of "Female", "Male", got "Other"',
        },
    ]
    at.switch_page("app_pages/synthesize.py").run()
    assert at.warning[0].value == "The project has problems: fix them on the Data page first."
    assert not at.button
    # the sidebar says what they are, on every page (it gave the count alone)
    sidebar = [c.value for c in at.sidebar.caption]
    assert ":red[2 problems to fix on the Data page:]" in sidebar
    assert "- " + as_text('tables/age_by_sex.csv row 2, column "count": expected a number >= 0, got "-1"') in sidebar
    # the table at fault is removed from the problem list itself (on an editable copy: the folder stays as it was)
    at.switch_page("app_pages/data.py").run()
    next(b for b in at.button if b.label == "Remove " + as_text("age_by_sex")).click().run()
    assert not at.exception and not at.error
    assert at.success[0].value.endswith(": 1,000 persons, 3 variables, 2 target tables.")
    assert "age_by_sex" in (folder / "synthor.toml").read_text()


def test_a_maxent_run_completes_and_shows_the_fit_table():
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    assert not at.exception
    at.number_input(key="synth.size").set_value(5000)
    at.number_input(key="synth.seed").set_value(3)
    at.button[0].click().run()  # the form's Start button
    from app_session import get_runner

    text = at.get("progress")[0].proto.text
    if get_runner().snapshot(at.session_state["synth.run_id"]).status == "running" and "iteration 0 " in text:
        assert re.match(r"Run \w+: running \((preparing the prior|iterating)\), iteration 0 ", text), text
    _wait_for_fit(at, 90)
    assert not at.exception
    assert [h.value for h in at.subheader] == ["Fit after calibration"]
    (fit,) = [d.value for d in at.dataframe if "tvd" in d.value.columns]
    assert fit["table"].tolist()[:2] == ["age", "sex"] and len(fit) == 19
    assert fit["tvd"].max() < 0.02
    (numeric,) = [d.value for d in at.dataframe if "relative error" in d.value.columns]
    assert numeric["cell"].tolist() == [
        f"sex = {s}, income = {i}" for s in ("Female", "Male") for i in ("<=50K", ">50K")
    ]
    assert numeric["goal"].tolist() == [35.88, 40.68, 40.72, 46.3] and numeric["relative error"].max() < 0.01
    assert at.get("progress")[0].proto.value == 100  # a finished run's bar is full, whatever iteration it ended at
    (summary,) = [m.value for m in at.markdown if m.value.startswith("Stopped:")]
    assert re.match(r"Stopped: (tolerance reached|no further improvement) after \d+ iterations?", summary), summary
    # one elapsed time: the summary's is the progress line's (the summary counted the loop alone, 16.3 s of 35.9)
    progress = at.get("progress")[0].proto.text
    assert re.search(r", ([\d.]+) s\.", summary).group(1) == re.search(r", ([\d.]+) s$", progress).group(1)
    assert [b.proto.label for b in at.get("download_button")] == [
        "Population (CSV)",
        "Population (Parquet)",
        "report.json",
        "Project folder + run settings (zip)",
    ]
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert runs.iloc[0]["status"] in ("finished", "stopped") and runs.iloc[0]["size"] == 5000
    # a person run has no %RMSE: an empty cell, not "None"; its TVD with 4 decimals
    assert runs.iloc[0]["worst_pct_rmse"] == "" and re.fullmatch(r"0\.\d{4}", runs.iloc[0]["mean_tvd"])
    # the status and the fit come first (visible at 1,400 px), then kind, project and start; the start is a date of
    # this century, not 1970
    assert runs.columns.tolist()[:9] == [
        "run_id",
        "status",
        "mean_tvd",
        "worst_pct_rmse",
        "max_tvd",
        "iterations",
        "kind",
        "project_label",
        "started_at",
    ]
    assert runs.iloc[0]["kind"] == "persons"
    assert runs.iloc[0]["project_label"].startswith("UCI Adult") and runs.iloc[0]["started_at"].year >= 2026


def test_evaluate_page_highlights_tables_over_the_threshold_and_compares_holdout_records(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("adult_derive", ROOT / "examples" / "adult" / "derive.py")
    derive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive)
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    at.number_input(key="synth.size").set_value(20000)
    at.selectbox(key="synth.mode").set_value("paper")
    at.number_input(key="synth.max_iterations").set_value(20)
    at.button[0].click().run()
    _wait_for_fit(at, 90)
    assert [h.value for h in at.subheader] == ["Final fit (not calibrated)"]  # paper mode: no calibration
    (warning,) = [w.value for w in at.warning if w.value.startswith("Not converged")]
    assert warning.startswith("Not converged: the mean TVD 0.")
    run_id = at.session_state["synth.run_id"]
    at.switch_page("app_pages/evaluate.py").run()
    assert not at.exception
    assert at.selectbox(key="eval.run").value == run_id
    at.number_input(key="eval.threshold").set_value(0.05).run()
    fit = at.dataframe[0].value
    assert len(fit) == 19
    failing = int((~fit["passes"]).sum())
    assert failing == int((fit["tvd"] > 0.05).sum()) and failing > 0  # paper mode, 20 iterations: some fail
    assert at.metric[2].value == f"{failing} of 19"
    worst = fit.sort_values("tvd", ascending=False)["table"].iloc[0]
    assert at.selectbox(key="eval.table").value == worst
    real = derive.read_adult_records("test").head(3000)
    at.file_uploader[0].set_value(("test.csv", real.to_csv(index=False).encode(), "text/csv")).run()
    assert not at.exception
    assert [m.label for m in at.metric[3:]] == ["2-way tables (26): mean TVD", "3-way tables (84): mean TVD"]
    assert len(at.dataframe[-1].value) == 110


def test_two_sessions_do_not_see_each_others_runs(monkeypatch):
    """Security: in the default private workspace a second browser neither lists, opens (even with the run's
    address), downloads nor deletes the first one's runs; with the first one's key in the address it does. A
    shared workspace is the operator's explicit choice and the Runs page says so."""
    first, second = _app(), _app()
    first.switch_page("app_pages/synthesize.py").run()
    first.number_input(key="synth.size").set_value(3000)
    first.button[0].click().run()
    run_id = first.session_state["synth.run_id"]
    assert run_id is not None
    _wait_for_fit(first, 90)
    key = first.session_state["app.owner"]
    assert first.query_params["me"] == key and len(key) == 22
    second.query_params["run"] = run_id  # the first one's run address, without its key
    second.switch_page("app_pages/synthesize.py").run()
    assert not second.exception
    assert second.session_state["app.owner"] != key
    assert second.session_state["synth.run_id"] is None
    assert second.info[0].value == "Choose the settings and press Start."
    assert not any(run_id in str(getattr(e, "value", "")) for e in second.main)
    for page in ("app_pages/runs.py", "app_pages/evaluate.py"):
        second.switch_page(page).run()
        assert not second.exception
        assert not any(run_id in str(getattr(e, "value", "")) for e in second.main)
    assert second.info[-1].value.startswith("No ")
    third = AppTest.from_file(APP, default_timeout=60)
    third.query_params["me"] = key  # the first browser's address, reloaded
    third.run()
    third.switch_page("app_pages/runs.py").run()
    assert third.dataframe[0].value["run_id"].tolist()[:1] == [run_id]
    assert third.caption[0].value.startswith("Your runs: this browser's key is in the address")
    monkeypatch.setenv("SYNTHOR_WORKSPACE", "shared")
    shared = _app()
    shared.switch_page("app_pages/runs.py").run()
    assert shared.caption[0].value.startswith("Shared workspace: every user of this server sees")
    # every run of the server is listed (household runs of other tests too, in their own table)
    assert any(run_id in d.value["run_id"].tolist() for d in shared.dataframe if "run_id" in d.value.columns)


def test_llm_prior_from_the_page_against_the_local_endpoint(tmp_path):
    import numpy as np

    from llm_endpoint.network import sample_network, write_ecommerce_project
    from llm_endpoint.server import TestEndpoint

    records = sample_network(5000, np.random.default_rng(0))
    folder = write_ecommerce_project(
        tmp_path / "ecommerce", records, [("age",), ("gender",), ("category",), ("age", "gender")], 5000
    )
    with TestEndpoint(seed=1) as endpoint:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["data.project_dir"] = str(folder)
        at.session_state["data.project_label"] = "e-commerce"
        at.run()
        at.switch_page("app_pages/synthesize.py").run()
        at.selectbox(key="synth.prior").set_value("llm").run()
        at.text_input(key="synth.base_url").set_value(endpoint.url)
        at.text_input(key="synth.model").set_value("bn-oracle")
        at.run()
        assert at.caption[0].value.startswith("API key: none")
        at.button(key="synth.test_connection").click().run()
        from app_session import as_text  # the reply is shown as text (markdown escaped)

        assert at.info[0].value == as_text(f"connected to {endpoint.url}: 1 model(s); 'bn-oracle' found")
        at.number_input(key="synth.size").set_value(1000)
        at.number_input(key="synth.price_in").set_value(0.1)
        at.number_input(key="synth.price_out").set_value(0.4)
        at.button(key="FormSubmitter:synth.settings-Start").click().run()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(h.value in FINAL_HEADINGS for h in at.subheader):
            time.sleep(0.5)
            at.run()
    assert not at.exception
    (llm_line,) = [c.value for c in at.caption if c.value.startswith("LLM: ")]
    assert re.match(r"LLM: [\d,]+ calls, [\d,]+ prompt \+ [\d,]+ completion tokens, about \d+\.\d{4} USD", llm_line)
    from app_session import get_runner  # the same process: the page's runner and store

    run_id = at.session_state["synth.run_id"]
    calls = get_runner().store.llm_calls(run_id)
    assert len(calls) == len(endpoint.log) and set(calls["outcome"]) == {"ok"}
    report = get_runner().store.report(run_id)
    assert report["llm"]["dollars"] > 0
    # the fallback is on by default and the page says where the persons came from (a knowing endpoint: the LLM)
    assert report["settings"]["fallback"] is True and report["sources"]["llm"]["final"] > 900
    (shares,) = [i.value for i in at.info if "of the persons came from llm" in i.value]
    assert shares == as_text(report["source_summary"][:1].upper() + report["source_summary"][1:] + ".")


def test_the_server_key_goes_only_to_endpoints_the_operator_allows(tmp_path, monkeypatch):
    """Security: a user can neither name an environment variable to send as the key (a database password
    worked before) nor send the operator's key to a URL of their choice; the caption never says which variables
    exist."""
    from llm_endpoint.server import TestEndpoint

    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("SYNTHOR_LLM_API_KEY", "sk-operator")
    with TestEndpoint(seed=1, pool_size=10) as endpoint:
        at = _app()
        at.switch_page("app_pages/synthesize.py").run()
        at.selectbox(key="synth.prior").set_value("llm").run()
        assert "synth.key_env" not in [w.key for w in at.text_input]
        at.text_input(key="synth.base_url").set_value(endpoint.url).run()  # no allow-list: any URL, no server key
        assert at.caption[0].value.startswith("API key: none")
        at.button(key="synth.test_connection").click().run()
        at.text_input(key="synth.api_key").set_value("sk-mine").run()  # the user's own key, this session only
        assert at.caption[0].value.startswith("API key: yours")
        at.button(key="synth.test_connection").click().run()
        assert endpoint.authorizations == ["Bearer not-needed", "Bearer sk-mine"]

        monkeypatch.setenv("SYNTHOR_LLM_ENDPOINTS", f"http://127.0.0.1:1/v1, {endpoint.url}/")
        at = _app()
        at.switch_page("app_pages/synthesize.py").run()
        at.selectbox(key="synth.prior").set_value("llm").run()
        assert "synth.base_url" not in [w.key for w in at.text_input]  # only the listed endpoints
        assert at.selectbox(key="synth.endpoint").options == ["http://127.0.0.1:1/v1", endpoint.url]
        at.selectbox(key="synth.endpoint").set_value(endpoint.url).run()
        assert at.caption[0].value.startswith("API key: the server's")
        at.button(key="synth.test_connection").click().run()
        assert not at.exception
    assert endpoint.authorizations[2:] == ["Bearer sk-operator"]
    assert not any("hunter2" in a or "sk-from-the-environment" in a for a in endpoint.authorizations)


def test_rules_uploaded_on_the_synthesize_page_are_enforced_or_their_problems_listed():
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    uploader = [u for u in at.get("file_uploader") if u.label.startswith("Plausibility rules")][0]
    uploader.set_value(("bad.toml", b'[[rules]]\nname = "x"\ncondition = "__import__(1)"\n', "text/plain")).run()
    assert at.error[0].value.startswith(f"1 problem(s) in {as_text('bad.toml')}: nothing runs until they are fixed.")
    assert at.dataframe[0].value["problem"].tolist() == [
        'rule "x": a function call is not allowed here (expected a comparison)'
    ]
    rules = (ROOT / "examples" / "adult" / "rules.toml").read_bytes()
    uploader = [u for u in at.get("file_uploader") if u.label.startswith("Plausibility rules")][0]
    uploader.set_value(("rules.toml", rules, "text/plain")).run()
    assert not at.exception
    assert [c.value for c in at.caption if " rules: " in c.value][-1].startswith("6 rules: married before 18")
    at.number_input(key="synth.size").set_value(5000)
    at.button(key="FormSubmitter:synth.settings-Start").click().run()
    _wait_for_fit(at, 90)
    from app_session import get_runner

    report = get_runner().store.report(at.session_state["synth.run_id"])
    assert report["rules"]["any_rate"] == 0.0 and len(report["rules"]["rules"]) == 6
    # every warning of the run reaches the page, not only report.json (issue 23 item 4); with the rules,
    # calibration stops short of the tables (the rules forbid cells they count)
    assert report["warnings"][0].startswith("calibration did not converge")
    shown = [w.value for w in at.warning]
    for warning in report["warnings"]:
        assert as_text(warning[:1].upper() + warning[1:]) in shown, (warning, shown)


def test_the_synthesize_page_follows_its_run_and_its_project(tmp_path):
    """Issue 14: the example's rules are offered and on; after a reload the form shows the settings the run used;
    a run of another project is not shown as this project's."""
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    assert at.checkbox(key="synth.own_rules").value is True
    (rules_line,) = [c.value for c in at.caption if " rules: " in c.value]
    assert rules_line.startswith("6 rules: married before 18")
    at.number_input(key="synth.size").set_value(4000)
    at.selectbox(key="synth.mode").set_value("paper")
    at.number_input(key="synth.max_iterations").set_value(7)
    at.number_input(key="synth.seed").set_value(5)
    at.button(key="FormSubmitter:synth.settings-Start").click().run()
    run_id = at.session_state["synth.run_id"]
    _wait_for_fit(at, 90)
    report = get_runner_report(run_id)
    assert len(report["rules"]["rules"]) == 6
    assert all(rule["violations"] == 0 for rule in report["rules"]["rules"].values())  # e.g. no married 17-year-old

    reloaded = AppTest.from_file(APP, default_timeout=60)
    reloaded.query_params["me"] = at.session_state["app.owner"]
    reloaded.query_params["run"] = run_id
    reloaded.run()
    reloaded.switch_page("app_pages/synthesize.py").run()
    assert reloaded.session_state["synth.run_id"] == run_id
    assert (
        reloaded.number_input(key="synth.size").value,
        reloaded.selectbox(key="synth.mode").value,
        reloaded.number_input(key="synth.max_iterations").value,
        reloaded.number_input(key="synth.seed").value,
    ) == (4000, "paper", 7, 5)

    at.session_state["data.project_dir"] = str(write_project(tmp_path / "other"))
    at.session_state["data.project_label"] = "another project"
    at.run()
    assert at.session_state["synth.run_id"] is None
    assert at.info[0].value == "Choose the settings and press Start."


def get_runner_report(run_id: str) -> dict:
    from app_session import get_runner

    return get_runner().store.report(run_id)


def test_an_interrupted_run_is_listed_downloaded_and_resumed_from_the_runs_page(monkeypatch):
    """A run whose process died (here: a run recorded by a process id that does not exist) shows as interrupted
    with its saved population; Resume starts a new run from it, on the run's own copy of the project."""
    import pandas as pd

    from app_session import get_runner
    from synthor_core import store as store_module
    from synthor_core.readers.project import load_project
    from synthor_core.synthesis.config import SynthesisConfig

    at = _app()
    owner = at.session_state["app.owner"]
    store = get_runner().store
    project = load_project(ROOT / "examples" / "adult")
    import socket

    gone = f"{socket.gethostname()}:4194300:0"  # this host, a process id no process has
    monkeypatch.setattr(store_module, "process_identity", lambda: gone)
    store.add_run("deadbeef0001", SynthesisConfig(size=3000, seed=4), "maxent", project, "crashed run", 1.0, owner)
    monkeypatch.undo()
    saved = pd.DataFrame(
        {
            name: [
                project.schema[name].categories[0]
                if project.schema[name].type == "categorical"
                else project.schema[name].min
            ]
            for name in project.schema.names
        }
    )
    store.save_checkpoint("deadbeef0001", 3, saved.assign(count=[1200]))
    assert "deadbeef0001" in store.mark_interrupted()
    at.switch_page("app_pages/runs.py").run()
    at.selectbox(key="runs.chosen").set_value("deadbeef0001").run()
    assert not at.exception
    assert at.warning[-1].value.startswith(
        as_text("interrupted: the process ended after iteration 0; the population saved at iteration 3 is kept")
    )
    assert [b.proto.label for b in at.get("download_button")][:1] == ["Population (CSV)"]
    at.button(key="runs.resume").click().run()
    assert not at.exception
    resumed = at.session_state["synth.run_id"]
    assert resumed != "deadbeef0001" and at.session_state["data.project_label"].startswith("crashed run (resumed")
    snap = get_runner().wait(resumed, timeout_s=90)
    assert snap.status == "finished" and int(snap.result.population["count"].sum()) == 3000


def test_the_bundled_model_is_offered_beside_your_endpoint_and_answers_from_the_page():
    """Issue 25: with the bundled model installed, the LLM prior offers it; choosing it starts it once in the app's
    process (127.0.0.1), fills the endpoint, and the connection test finds it."""
    import pytest

    from app_session import LOCAL_MODEL_LABEL
    from synthor_core.priors import local_model

    if not local_model.available():
        pytest.skip(f"the bundled model is not installed ({local_model.INSTALL})")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/synthesize.py").run()
    at.selectbox(key="synth.prior").set_value("llm").run()
    assert at.radio(key="synth.llm_source").value == "your endpoint"  # the user's own endpoint stays the default
    at.radio(key="synth.llm_source").set_value(LOCAL_MODEL_LABEL).run()
    assert not at.exception
    (url,) = [
        m.group(1)
        for c in at.caption
        if (m := re.match(r"smollm2-135m-instruct, served by this server at (http://127\.0\.0\.1:\d+/v1) ", c.value))
    ]
    assert at.number_input(key="synth.timeout.local").value == 300.0  # a small model on a CPU: minutes, not seconds
    at.button(key="synth.test_connection").click().run()
    assert at.info[0].value == as_text(f"connected to {url}: 1 model(s); 'smollm2-135m-instruct' found")


def test_the_settings_stay_when_the_page_is_left_and_opened_again():
    """Issue 23 item 1: Streamlit drops the state of widgets it does not draw; leaving Synthesize reset N to 1 (a
    1-person run followed) and the other settings to their defaults."""
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    at.selectbox(key="synth.mode").set_value("paper")
    at.number_input(key="synth.size").set_value(3000)
    at.number_input(key="synth.max_iterations").set_value(7)
    at.number_input(key="synth.seed").set_value(9)
    at.button(key="FormSubmitter:synth.settings-Start").click().run()  # a submitted form: the values are set
    at.switch_page("app_pages/runs.py").run()
    at.switch_page("app_pages/data.py").run()
    at.switch_page("app_pages/synthesize.py").run()
    assert not at.exception
    assert at.number_input(key="synth.size").value == 3000
    assert at.number_input(key="synth.max_iterations").value == 7
    assert at.number_input(key="synth.seed").value == 9
    assert at.selectbox(key="synth.mode").value == "paper"


def test_the_runs_page_tells_a_run_that_did_not_converge_and_its_time_zone():
    """Issue 23 item 8: a run that ended above its tolerance is "did not converge", not "finished"; the start is
    shown with its time zone."""
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    at.number_input(key="synth.size").set_value(2000)
    at.number_input(key="synth.max_iterations").set_value(1)
    at.number_input(key="synth.tolerance").set_value(0.0001)
    at.button(key="FormSubmitter:synth.settings-Start").click().run()
    from app_session import get_runner

    run_id = at.session_state["synth.run_id"]
    assert get_runner().wait(run_id, timeout_s=120).status == "finished"
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    runs = at.dataframe[0].value.set_index("run_id")
    assert runs.loc[run_id, "status"] == "did not converge"
    assert runs.loc[run_id, "started_at"].tzinfo is not None
