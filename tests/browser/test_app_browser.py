"""The app in a real browser: ``streamlit run app.py`` on 127.0.0.1, driven by Playwright on Debian's Chromium.

Loads the bundled example, runs it to the end, checks the convergence chart has one point per iteration,
downloads the CSV, then presses Stop on a longer run. Screenshots of each page go to ``test-artifacts/``
(``$SYNTHOR_ARTIFACTS`` to change it).
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from synthor_testing import ROOT

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("SYNTHOR_ARTIFACTS", ROOT / "test-artifacts"))
OUTSIDE: list[str] = []  # requests of the page to anywhere but the app
WAIT_MS = 300_000  # the bound of every wait: tests wait for conditions, this only ends one that never comes
playwright.expect.set_options(timeout=WAIT_MS)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium); .ci/run installs it"
)


def _one(locator):
    """``locator`` once it matches exactly one element: while Streamlit reruns a page, the old element and its
    new copy are both there for a moment, and a strict locator fails on the two (issue 26 item 7)."""
    playwright.expect(locator).to_have_count(1)
    return locator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, SYNTHOR_DATA_DIR=str(tmp_path_factory.mktemp("browser-data")))
    log = open(tmp_path_factory.mktemp("logs") / "streamlit.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("streamlit did not start within 60 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture(scope="module")
def page(app_url):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        # every request the page makes goes to the app itself (issue 23 item 7: it runs offline)
        page.on("request", lambda r: None if r.url.startswith((app_url, "data:", "blob:")) else OUTSIDE.append(r.url))
        # waits follow conditions; this bound only ends a test whose condition never comes (a loaded machine may
        # take minutes where an idle one takes seconds)
        page.set_default_timeout(WAIT_MS)
        page.goto(app_url)
        yield page
        browser.close()


def _iterations_in_chart(page) -> int:
    return page.evaluate("""() => {
        const plots = [...document.querySelectorAll('.js-plotly-plot')];
        for (const plot of plots) {
            const trace = (plot.data || []).find(t => t.name === 'mean TVD');
            if (trace) return trace.x.length;
        }
        return -1;
    }""")


CALM = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm"


_HOUSEHOLD_POINTS = """(() => {
        for (const plot of document.querySelectorAll('.js-plotly-plot')) {
            const title = (((plot.layout || {}).yaxis || {}).title || {}).text || '';
            if (title.startsWith('worst %RMSE')) {
                const trace = (plot.data || [])[0];
                return trace ? trace.x.length : 0;
            }
        }
        return -1;
    })"""


def _household_points(page) -> int:
    """Points of the household run's live chart (-1 while there is none)."""
    return page.evaluate(_HOUSEHOLD_POINTS + "()")


def test_the_readme_journey_example_run_watch_export_households_runs(page, tmp_path):
    """The README's journey in one browser session (issue 23): the bundled example, a run watched to its end, its
    population downloaded, a longer run stopped, Evaluate and Runs; then households in zones: CALM opened as a zip,
    run with the seed prior to the end, its fit per control and failing zones, households.csv and persons.csv whose
    row counts match the report, and the run on the Runs page with its iterations."""
    page.get_by_text("48,842 persons, 9 variables, 19 target tables").first.wait_for()
    page.locator('[data-testid="stDataFrame"] canvas').first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "1-data.png"), full_page=True)

    _one(page.get_by_role("link", name="Synthesize")).click()
    _one(page.get_by_role("button", name="Start")).wait_for()
    _one(page.get_by_role("button", name="Start")).click()
    summary = page.get_by_text(re.compile(r"^Stopped: .* after \d+ iterations?")).first
    summary.wait_for()
    iterations = int(re.search(r"after (\d+) iterations?", summary.inner_text()).group(1))
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
    assert _iterations_in_chart(page) == iterations
    page.screenshot(path=str(ARTIFACTS / "2-synthesize-finished.png"), full_page=True)

    with page.expect_download() as info:
        _one(page.get_by_role("button", name="Population (CSV)")).click()
    path = tmp_path / "population.csv"
    info.value.save_as(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "person_id",
        "age",
        "sex",
        "race",
        "education",
        "marital_status",
        "occupation",
        "workclass",
        "hours_per_week",
        "income",
    ]
    assert len(rows) - 1 == 48842

    # a longer run (paper mode, 3,000 iterations of 17 persons), stopped after a few seconds
    mode = _one(page.get_by_role("combobox", name="Mode"))
    mode.click()
    mode.fill("paper")
    mode.press("Enter")
    iterations_box = _one(page.get_by_label("Max iterations"))
    iterations_box.fill("3000")
    _one(page.get_by_role("button", name="Start")).click()
    _one(page.get_by_role("button", name="Stop")).wait_for()
    page.get_by_text(re.compile(r"iteration (\d{2,}) of at most 3000")).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "3-synthesize-running.png"), full_page=True)
    _one(page.get_by_role("button", name="Stop")).click()
    status = page.get_by_text(re.compile(r"^Run \w+: stopped, iteration \d+ of at most 3000, [\d.]+ s")).first
    status.wait_for()
    stopped_at = int(re.search(r"iteration (\d+) of", status.inner_text()).group(1))
    assert stopped_at < 3000  # it ended on the request, long before its last iteration (timing: benchmarks/)
    page.get_by_text(re.compile(r"^Stopped: stop requested after \d+ iterations?")).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "4-synthesize-stopped.png"), full_page=True)

    _one(page.get_by_role("link", name="Evaluate & export")).click()
    page.get_by_text("Fit to the target tables").first.wait_for()
    page.get_by_text(re.compile(r"^\d+ of 19$")).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "5-evaluate.png"), full_page=True)

    _one(page.get_by_role("link", name="Runs")).click()
    page.get_by_text("Open a run").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "6-runs.png"), full_page=True)
    assert OUTSIDE == []  # the favicon was fetched from fonts.gstatic.com

    # households in zones (issue 14, 20)
    import json
    import zipfile

    bundle = tmp_path / "example_calm.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(CALM.rglob("*")):
            if path.is_file() and path.suffix != ".py":
                archive.write(path, Path("example_calm") / path.relative_to(CALM))
    _one(page.get_by_role("link", name="Households in zones")).click()
    page.get_by_text("Households to place").first.wait_for()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(bundle))
    # the project's label (not the uploader's file chip) says the zip was opened
    page.locator('[data-testid="stText"]', has_text="example_calm.zip").first.wait_for()
    page.get_by_text("62,041").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "9-households.png"), full_page=True)
    _one(page.get_by_role("button", name="Synthesize households")).click()
    # this run's own status line (the stopped run before it left its result on the page until the rerun)
    finished = page.get_by_text(re.compile(r"^Run \w+: finished")).first
    finished.wait_for()
    run_id = re.search(r"Run (\w+): finished", finished.inner_text()).group(1)
    page.get_by_text("Result: seed prior, seed 1").first.wait_for()
    page.get_by_text(re.compile(r"^100\.0 % of households agree with their members")).first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(p => (p.data || []).some(t => t.name === 'TAZ'))"
    )
    page.wait_for_function(_HOUSEHOLD_POINTS + ".call() > 1")
    iterations = _household_points(page)
    page.screenshot(path=str(ARTIFACTS / "10-households-result.png"), full_page=True)
    _one(page.get_by_role("tab", name="Zones")).click()
    page.get_by_text(re.compile(r"^[\d,]+ of 14,2\d\d control-zone pairs fail")).first.wait_for()
    _one(page.get_by_role("button", name="Failing zones (CSV)")).wait_for()
    page.screenshot(path=str(ARTIFACTS / "11-households-zones.png"), full_page=True)
    _one(page.get_by_role("tab", name="Download")).click()
    files = {}
    for name in ("report.json", "households.csv", "persons.csv"):
        with page.expect_download() as info:
            _one(page.get_by_role("button", name=name, exact=True)).click()
        files[name] = tmp_path / name
        info.value.save_as(files[name])
    report = json.loads(files["report.json"].read_text())
    assert len(report["iterations"]) == iterations
    with open(files["households.csv"], newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:6] == ["household_id", "REGION", "PUMA", "TRACT", "TAZ", "seed_hh_id"]
    assert len(rows) - 1 == report["households"] == 62_041
    with open(files["persons.csv"], newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in handle) - 1 == report["persons"]
    # the finished run is on the Runs page with its iterations
    _one(page.get_by_role("link", name="Runs")).click()
    page.get_by_text("Open a run").first.wait_for()
    chosen = _one(page.get_by_role("combobox", name="Open a run"))
    chosen.click()
    chosen.fill(run_id)
    chosen.press("Enter")
    page.get_by_text(f"{iterations} iterations: the worst %RMSE of each control group").first.wait_for()
    page.wait_for_function(_HOUSEHOLD_POINTS + f".call() == {iterations}")
    page.screenshot(path=str(ARTIFACTS / "12-runs-households.png"), full_page=True)
    assert OUTSIDE == []


def test_households_run_in_the_background_with_a_live_chart_stop_and_reload(page):
    """Issue 20: the Households page on the bundled CALM: within 3 s of Synthesize a Stop button and a live chart
    that gains points; Stop ends the run and keeps what was built; a reload shows the run again."""
    _one(page.get_by_role("link", name="Households in zones")).click()
    page.get_by_text("Households to place").first.wait_for()
    _one(page.get_by_role("button", name="Synthesize households")).click()
    # the page is not blocked by the run: its Stop button and live chart come while the run goes on
    _one(page.get_by_role("button", name="Stop")).wait_for()
    page.get_by_text(re.compile(r"^Run \w+: running")).first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(p => "
        "((((p.layout || {}).yaxis || {}).title || {}).text || '').startsWith('worst %RMSE'))"
    )
    first = max(_household_points(page), 0)
    page.wait_for_function(_HOUSEHOLD_POINTS + f".call() > {first}")  # the chart gains points while the run goes on
    page.screenshot(path=str(ARTIFACTS / "7-households-running.png"), full_page=True)
    _one(page.get_by_role("button", name="Stop")).click()
    page.get_by_text(re.compile(r"^Run \w+: stopped")).first.wait_for()
    page.get_by_text("Stopped on request").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "8-households-stopped.png"), full_page=True)
    # the address holds the run: a reload shows it again
    assert "hhrun=" in page.url
    page.reload()
    page.get_by_text(re.compile(r"^Run \w+: stopped")).first.wait_for()
    page.get_by_text("Result: seed prior, seed 1").first.wait_for()


@pytest.mark.skipif(not CALM.is_dir(), reason="shared/data/populationsim not present")
def _idle(page) -> None:
    """Wait until the app has no script run in flight (Streamlit shows its status widget while running)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")


BUILD_ORDER = [
    "age.csv",
    "sex.csv",
    "income.csv",
    "education.csv",
    "education_by_occupation.csv",
    "hours_per_week.csv",
    "marital_status.csv",
    "occupation.csv",
    "race.csv",
    "workclass.csv",
    "sex_by_income.csv",
]


def test_a_project_built_by_hand_from_its_table_files_runs(page):
    """Issue 14: an empty project, 11 real table files uploaded through the browser one by one (9 variables, 2
    numeric, 2 cross-tabs), one variable name typed, nothing else; the project's tables are the files; it runs."""
    tables = ROOT / "examples" / "adult" / "tables"
    _one(page.get_by_role("link", name="Data")).click()
    page.get_by_text("Open a project folder").first.wait_for()
    _one(page.get_by_role("button", name="Start a new, empty project")).click()
    page.get_by_text("Build the project in three steps.").first.wait_for()
    _one(page.get_by_role("tab", name="Add a table")).click()
    for name in BUILD_ORDER:
        _idle(page)  # a file given while the page reruns would be lost
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="A table file")
        uploader.locator('input[type="file"]').set_input_files(str(tables / name))
        # the form follows each new file: its name, never the previous file's
        try:
            playwright.expect(page.get_by_role("textbox", name="Table name", exact=True).first).to_have_value(
                name.removesuffix(".csv")
            )
        except AssertionError:
            page.screenshot(path=str(ARTIFACTS / "10-failed.png"), full_page=True)
            raise
        if name == "education_by_occupation.csv":
            columns = _one(page.get_by_role("textbox", name="Columns (header) are variable", exact=True))
            columns.fill("occupation")
            columns.press("Enter")
        _one(page.get_by_role("button", name="Add this table to the project")).click()
        page.get_by_text(re.compile(rf"^Added the table {re.escape(name.removesuffix('.csv'))}")).first.wait_for()
    page.get_by_text("48,842 persons, 9 variables, 11 target tables").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "10-built-by-hand.png"), full_page=True)
    _one(page.get_by_role("link", name="Synthesize")).click()
    _one(page.get_by_label("Population size N")).fill("5000")
    # the settings chosen before (paper mode, 3,000 iterations) stay on the page: back to full mode, 100
    mode = _one(page.get_by_role("combobox", name="Mode"))
    mode.click()
    mode.fill("full")
    mode.press("Enter")
    _one(page.get_by_label("Max iterations")).fill("100")
    _one(page.get_by_role("button", name="Start")).click()
    page.get_by_text(re.compile(r"^Stopped: .* after \d+ iterations?")).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "11-built-by-hand-run.png"), full_page=True)


def test_the_commuting_example_runs_and_its_trips_are_drawn_and_downloaded(page, tmp_path):
    """Issue 24: the commuting example opened from the Data page (its trip tables listed), run from the Synthesize
    page, then the Trips page: fit, target vs synthetic, the OD matrix, the flows over the tracts (no tiles), the
    departures and the modes, each looked at in a screenshot; trips.csv downloaded with one row per trip."""
    _one(page.get_by_role("link", name="Data")).click()
    _one(page.get_by_role("button", name="Open the commuting example (trips)")).click()
    page.get_by_text("1,121,691 persons, 4 variables, 2 target tables").first.wait_for()
    page.get_by_text("The trip tables count each tour's first trip.").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "13-trips-data.png"), full_page=True)
    _one(page.get_by_role("link", name="Synthesize")).click()
    _one(page.get_by_label("Max iterations")).fill("5")
    _one(page.get_by_role("button", name="Start")).click()
    page.get_by_text(re.compile(r"^Stopped: .* after \d+ iterations?")).first.wait_for()
    _one(page.get_by_role("link", name="Trips")).click()
    page.get_by_text("Fit to the trip tables").first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2")
    travellers = int(_one(page.get_by_test_id("stMetricValue").first).inner_text().replace(",", ""))
    assert abs(travellers - 394_075) < 100
    page.screenshot(path=str(ARTIFACTS / "14-trips-fit.png"), full_page=True)
    tabs = ["OD matrix by departure time", "Flows on the map", "Departures by purpose", "Modes by distance"]
    for k, tab in enumerate(tabs, start=15):
        _one(page.get_by_role("tab", name=tab)).click()
        panel = _one(page.get_by_role("tabpanel", name=tab))
        panel.locator(".js-plotly-plot .main-svg").first.wait_for()  # a tab's chart is drawn once it shows
        _idle(page)
        panel.screenshot(path=str(ARTIFACTS / f"{k}-trips-{tab.split()[0].lower()}.png"))
    with page.expect_download() as info:
        _one(page.get_by_role("button", name="Trips (CSV)")).click()
    path = tmp_path / "trips.csv"
    info.value.save_as(path)
    with path.open(encoding="utf-8") as f:
        assert f.readline().strip() == "person_id,trip_num,origin,destination,depart,mode,purpose,distance_km,tour_num"
        assert sum(1 for _ in f) == 2 * travellers
    assert not OUTSIDE, OUTSIDE[:5]
