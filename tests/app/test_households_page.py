"""The Households page (AppTest): the bundled CALM project, a run with its fit and downloads, a PopulationSim
folder, a broken project's problems; uploads expanded within limits."""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import app_session
from app_session import as_text
from synthor_testing import ROOT

APP = str(ROOT / "app.py")
EXAMPLES = ROOT.parent / "shared" / "data" / "populationsim"
needs_examples = pytest.mark.skipif(
    not (EXAMPLES / "example_test").is_dir(), reason="shared/data/populationsim not present"
)


def _frame(at: AppTest, column: str):
    """The first table on the page with this column (tables have no key in AppTest's tree)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _page(project_dir: Path | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if project_dir is not None:
        at.session_state["hh.project_dir"] = str(project_dir)
        at.session_state["hh.project_label"] = "uploaded.zip"
    at.run()
    at.switch_page("app_pages/households.py").run()
    assert not at.exception
    return at


def test_calm_opens_with_its_levels_and_a_seed_run_shows_the_fit_and_downloads():
    at = _page()
    assert [m.value for m in at.metric] == ["4,841", "11,734", "31", "62,041"]
    levels = _frame(at, "zones")
    assert levels[["level", "zones", "controls"]].values.tolist() == [
        ["REGION", 1, 8],
        ["PUMA", 1, 0],
        ["TRACT", 35, 8],
        ["TAZ", 930, 15],
    ]
    assert _frame(at, "household column")["household column"].tolist() == ["NP", "AGEHOH", "NWESR"]
    assert "No household run yet" in at.info[0].value
    at.radio(key="hh.prior").set_value("seed")
    next(b for b in at.button if b.label == "Synthesize households").click().run()
    assert not at.exception
    run_id = at.session_state["hh.run_id"]
    runner = app_session.get_runner()
    assert runner.wait(run_id, timeout_s=300).status == "finished"  # the run went on in the background
    at.run()
    assert not at.exception
    run_dir = runner.store.folder(run_id)
    assert [m.value for m in at.metric][4:6] == ["62,041", f"{json_persons(run_dir):,}"]
    fit = _frame(at, "synthetic_total")
    assert len(fit) == 31 and fit.loc[fit["control"] == "num_hh", "pct_rmse"].item() == 0.0
    assert fit["pct_rmse"].max() < 26.7  # PopulationSim's worst on CALM (students)
    assert any(c.value.startswith("100.0 % of households agree with their members") for c in at.caption)
    assert {
        "households.csv",
        "persons.csv",
        "report.json",
        "summary_TAZ.csv",
        "households.parquet",
        "persons.parquet",
        "zone_fit.csv",
    } <= {p.name for p in run_dir.iterdir()}
    assert run_dir.parent == runner.folder and run_dir.name == run_id
    # zones: every control in every zone of its level; the failing ones listed by the thresholds set, downloadable
    import pandas as pd

    zone_fit = pd.read_csv(run_dir / "zone_fit.csv")
    assert len(zone_fit) == 8 * 1 + 8 * 35 + 15 * 930
    at.number_input(key="hh.zone_pct").set_value(20.0)
    at.number_input(key="hh.zone_abs").set_value(2.0).run()
    off = zone_fit["difference"].abs()
    expected = zone_fit[(off > 2) & (off > 0.2 * zone_fit["control_total"])]
    (caption,) = [c.value for c in at.caption if "control-zone pairs fail" in c.value]
    assert caption.startswith(f"{len(expected):,} of {len(zone_fit):,} control-zone pairs fail")
    zone_tables = [d.value for d in at.dataframe if "pct_difference" in d.value.columns]
    assert len(expected) > 0 and len(zone_tables[0]) == len(expected)  # failing zones first, then the chosen control
    assert any(b.proto.label == "Failing zones (CSV)" for b in at.get("download_button"))
    at.selectbox(key="hh.zone_control").set_value("hh_size_1").run()
    per_zone = [d.value for d in at.dataframe if "pct_difference" in d.value.columns][-1]
    assert len(per_zone) == 930 and set(per_zone["level"]) == {"TAZ"}
    report = json.loads((run_dir / "report.json").read_text())
    households = pd.read_parquet(run_dir / "households.parquet")
    assert len(households) == report["households"] == len(pd.read_csv(run_dir / "households.csv"))
    assert len(pd.read_parquet(run_dir / "persons.parquet")) == report["persons"]
    assert len(report["iterations"]) >= 2 and all(e["fit_by_group"] for e in report["iterations"])
    # the run is listed on the Runs page with its iterations, opens there again and is deleted with its folder
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    listed = next(d.value for d in at.dataframe if "worst_pct_rmse" in d.value.columns)
    mine = listed[listed["run_id"] == run_id].iloc[0]
    assert mine["size"] == 62_041 and mine["kind"] == "households in zones" and mine["iterations"] > 1
    at.selectbox(key="runs.chosen").set_value(run_id).run()
    assert any("iterations: the worst %RMSE of each control group" in c.value for c in at.caption)
    at.button(key="runs.delete").click().run()
    assert not at.exception and not run_dir.exists()


def json_persons(run_dir: Path) -> int:
    return json.loads((run_dir / "report.json").read_text())["persons"]


@needs_examples
def test_a_populationsim_folder_opens_as_it_is(tmp_path):
    root = tmp_path / "example_test"
    shutil.copytree(EXAMPLES / "example_test", root)
    at = _page(root)
    # 60 of its 61 seed households: PUMA 606 has no controls and goes, as PopulationSim drops it
    assert [m.value for m in at.metric] == ["60", "250", "10", "1,500"]
    (warnings,) = [m.value for m in at.markdown if m.value.startswith("- ")]  # one list, each warning whole
    tract = "1 TRACT zone(s) of the crosswalk have no row in data/tract_controls.csv (72)"
    assert f"- {as_text(tract)}" in warnings
    assert f"- {as_text('configs/settings.yaml: output_tables: TAZ_weights, TRACT_weights')}" in warnings
    assert _frame(at, "zones")["level"].tolist() == ["DISTRICT", "PUMA", "TRACT", "TAZ"]
    # NP is the number of members in every household kept (the one that broke it was PUMA 606's)
    assert _frame(at, "household column").to_dict("records") == [
        {"household column": "NP", "computed as": "size", "from": "number of members"}
    ]


@needs_examples
def test_a_broken_project_lists_its_problems_and_offers_no_run(tmp_path):
    root = tmp_path / "example_test"
    shutil.copytree(EXAMPLES / "example_test", root)
    controls = root / "configs" / "controls.csv"
    controls.write_text(controls.read_text().replace("households.NP == 1", "households.NP.__class__"))
    at = _page(root)
    assert at.error[0].value == "1 problem(s) in this project: fix them in its files and open it again."
    problems = _frame(at, "problem")
    assert problems[["file", "row", "column"]].values.tolist() == [["configs/controls.csv", 3, "expression"]]
    assert not [b for b in at.button if b.label == "Synthesize households"]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_uploads_expand_inside_their_folder_and_within_limits(tmp_path, monkeypatch):
    app_session.extract_zip(_zip({"p/synthor.toml": b"x", "../escape.txt": b"no"}), tmp_path / "a")
    assert (tmp_path / "a" / "p" / "synthor.toml").read_bytes() == b"x"
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(app_session.UploadError, match="this file is not a zip archive"):
        app_session.extract_zip(b"not a zip", tmp_path / "b")
    assert not (tmp_path / "b").exists()
    monkeypatch.setattr(app_session, "MAX_ZIP_EXPANDED_BYTES", 1 << 20)
    bomb = _zip({"zeros.csv": b"0" * (4 << 20)})  # 4 MiB of zeros, a few KiB zipped
    assert len(bomb) < 50_000
    with pytest.raises(app_session.UploadError, match="the zip expands to more than 1 MiB"):
        app_session.extract_zip(bomb, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    monkeypatch.setattr(app_session, "MAX_ZIP_MEMBERS", 3)
    with pytest.raises(app_session.UploadError, match="the zip holds 4 files; at most 3 are accepted"):
        app_session.extract_zip(_zip({f"f{i}.csv": b"1" for i in range(4)}), tmp_path / "d")


def test_user_text_is_escaped_before_streamlit_renders_markdown():
    shown = app_session.as_text("![x](http://example.invalid/a.png) :red[hi] **b**")
    assert shown == "\\!\\[x\\]\\(http\\://example\\.invalid/a\\.png\\) \\:red\\[hi\\] \\*\\*b\\*\\*"


def test_a_zip_that_cannot_be_expanded_is_an_upload_error(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a", b"a file")
        archive.writestr("a/b", b"and a folder of the same name")
    with pytest.raises(app_session.UploadError, match="the zip cannot be expanded"):
        app_session.extract_zip(buffer.getvalue(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@needs_examples
def test_a_prior_that_cannot_serve_the_project_says_why_on_the_page(tmp_path):
    root = tmp_path / "example_test"
    shutil.copytree(EXAMPLES / "example_test", root)
    controls = root / "configs" / "controls.csv"
    controls.write_text(
        controls.read_text().replace("households.NP == 1", "(households.NP == 1) & (households.HTYPE == 1)")
    )
    at = _page(root)
    at.radio(key="hh.prior").set_value("maxent")
    next(b for b in at.button if b.label == "Synthesize households").click().run(timeout=120)
    assert not at.exception
    assert at.error[0].value == "This run cannot start (maxent prior):"
    problem = _frame(at, "problem")["problem"].item()
    assert problem == 'the maxent prior needs controls on one column each; control "hh_size_1" reads NP, HTYPE'


def test_names_from_project_files_are_shown_literally_in_the_fit_chart():
    import pandas as pd

    from synthor_core.plots import household_fit_figure

    figure = household_fit_figure(
        pd.DataFrame(
            {
                "control": ["<a href='https://example.invalid'>c</a>", "b"],
                "level": ["TAZ", "%{x}"],
                "pct_rmse": [1.0, 2.0],
            }
        )
    )
    assert [t.name for t in figure.data] == ["%&#123;x}", "TAZ"]
    # levels in neutral colours: none red (issue 23 item 6: a level's bars read as failing)
    assert [t.marker.color for t in figure.data] == ["#1f77b4", "#7f7f7f"]
    assert list(figure.data[1].y) == ["&lt;a href=&#x27;https://example.invalid&#x27;&gt;c&lt;/a&gt;"]


def test_the_llm_prior_writes_households_from_the_page_and_says_how_many_it_kept():
    """Issue 13 in the app: the LLM prior (the local endpoint answering from CALM's sample) writes households for the
    zones worst off; the page says how many were valid and how many households of each prior the run placed."""
    from llm_endpoint.server import TestEndpoint
    from synthor_core.readers.households import load_household_project

    sample = load_household_project(ROOT / "examples" / "calm").sample
    with TestEndpoint(seed=1, households=(sample.households, sample.persons)) as endpoint:
        at = _page()
        at.radio(key="hh.prior").set_value("llm").run()
        at.text_input(key="hh.base_url").set_value(endpoint.url)
        at.text_input(key="hh.model").set_value("calm")
        at.number_input(key="hh.distinct").set_value(400)
        at.run()
        next(b for b in at.button if b.label == "Synthesize households").click().run()
        assert app_session.get_runner().wait(at.session_state["hh.run_id"], timeout_s=300).status == "finished"
        asked = sum(1 for e in endpoint.log if e["task"] == "realize_households")
    at.run()
    assert not at.exception
    assert [m.value for m in at.metric][4] == "62,041"
    (by_prior,) = [c.value for c in at.caption if c.value.startswith("Households by prior: ")]
    llm = int(re.search(r"llm ([\d,]+)", by_prior).group(1).replace(",", ""))
    maxent = int(re.search(r"maxent ([\d,]+)", by_prior).group(1).replace(",", ""))
    assert llm + maxent == 62_041 and llm > 0 and maxent > 0
    (line,) = [c.value for c in at.caption if c.value.startswith("LLM: ")]
    assert re.match(rf"LLM: [\d,]+ of [\d,]+ households it wrote were valid \([\d,]+ asked, {asked:,} calls\)", line)


def test_the_settings_stay_when_the_page_is_left_and_opened_again():
    """Issue 23 item 1, on the Households page: the prior and the model chosen are there again after another page,
    without Streamlit's warning of a value set twice."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/households.py").run()
    at.radio(key="hh.prior").set_value("llm").run()
    at.text_input(key="hh.model").set_value("mistral").run()
    at.switch_page("app_pages/runs.py").run()
    at.switch_page("app_pages/households.py").run()
    assert not at.exception and not at.warning
    assert at.radio(key="hh.prior").value == "llm" and at.text_input(key="hh.model").value == "mistral"


def test_a_project_with_zone_shapes_maps_the_difference_of_each_zone(tmp_path):
    """Issue 23 item 10: the Zones tab draws the chosen control's % difference per zone on the project's shapes,
    beside the table of zones worst off first; no tiles (plain axes)."""
    import json

    from synthor_testing import project_with_shapes, squares_geojson

    at = _page(project_with_shapes(tmp_path, squares_geojson([1, 2, 3, 4])))
    at.radio(key="hh.prior").set_value("maxent")
    next(b for b in at.button if b.label == "Synthesize households").click().run()
    assert app_session.get_runner().wait(at.session_state["hh.run_id"], timeout_s=120).status == "finished"
    at.run()
    assert not at.exception
    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id and "hh.zone_map" in c.proto.id]
    spec = json.loads(chart.proto.spec)
    assert {t.get("fill") for t in spec["data"]} >= {"toself"} and spec["layout"]["xaxis"]["visible"] is False
    table = [d.value for d in at.dataframe if "pct_difference" in d.value.columns][-1]  # the chosen control's
    assert len(table) == 4
    assert table["pct_difference"].abs().fillna(0).is_monotonic_decreasing  # worst off first
