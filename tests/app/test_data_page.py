"""The Data page: open a project zip, add an uploaded table (with detection and its problems), save a marginal by
hand; the bundled example is never edited in place."""

from __future__ import annotations


from streamlit.testing.v1 import AppTest

from app_session import as_text
from synthor_core.store import zip_project_folder
from synthor_core.targets import read_project_toml
from synthor_testing import ROOT, write_project

APP = str(ROOT / "app.py")
EXAMPLE_TOML = (ROOT / "examples" / "adult" / "synthor.toml").read_text()


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def _uploader(at, label_start):
    (found,) = [u for u in at.get("file_uploader") if u.label.startswith(label_start)]
    return found


def test_opening_a_project_zip(tmp_path):
    content = zip_project_folder(write_project(tmp_path / "small"))
    at = _app()
    _uploader(at, "Open a project folder").set_value(("small.zip", content, "application/zip"))
    at.run()
    assert not at.exception
    assert at.success[0].value.startswith(as_text("small.zip") + ": 1,000 persons, 3 variables, 3 target tables.")


def test_adding_a_broken_table_lists_its_problems_on_a_copy_of_the_example():
    at = _app()
    bad = 'sex,count\nFemale,16192\nMen,32650\n'.encode()
    _uploader(at, "A table file").set_value(("sex_again.csv", bad, "text/csv"))
    at.run()
    assert not at.exception
    assert at.text_input(key="data.new_table_name").value == "sex_again"
    assert at.selectbox(key="data.new_table_format").value == "long"
    assert at.selectbox(key="data.new_table_count").value == "count"
    assert at.selectbox(key="data.map.sex").value == "sex"
    at.button(key="data.add_table").click().run()
    assert not at.exception
    assert at.error[0].value.startswith("1 problem(s): fix them below")
    problems = at.dataframe[0].value
    assert problems.to_dict("records") == [{
        "file": "tables/sex_again.csv", "row": 3, "column": "sex",
        "problem": 'expected one of "Female", "Male", got "Men"'}]
    assert at.session_state["data.project_label"].endswith("(edited copy)")
    assert (ROOT / "examples" / "adult" / "synthor.toml").read_text() == EXAMPLE_TOML


def test_a_crosstab_upload_is_detected_and_added():
    at = _app()
    crosstab = "race,Female,Male\nWhite,13027,28735\nBlack,2308,2377\nAsian-Pac-Islander,517,1002\n" \
               "Amer-Indian-Eskimo,185,285\nOther,155,251\n".encode()
    _uploader(at, "A table file").set_value(("race_by_sex.csv", crosstab, "text/csv"))
    at.run()
    assert at.selectbox(key="data.new_table_format").value == "crosstab"
    assert at.selectbox(key="data.new_table_rows").value == "race"
    assert at.selectbox(key="data.new_table_columns").value == "sex"
    at.button(key="data.add_table").click().run()
    assert not at.exception
    assert at.success[0].value.endswith("48,842 persons, 9 variables, 20 target tables.")
    raw = read_project_toml(at.session_state["data.project_dir"])
    assert raw["tables"][-1] == {"name": "race_by_sex", "file": "tables/race_by_sex.csv", "format": "crosstab",
                                 "rows": "race", "columns": "sex"}


def test_a_marginal_by_hand_is_saved_and_an_all_zero_one_is_refused():
    at = _app()
    at.selectbox(key="data.marginal_variable").set_value("income").run()
    at.text_input(key="data.marginal_name").set_value("income_again").run()
    at.button(key="data.save_marginal").click().run()
    assert not at.exception
    assert at.error[0].value.startswith("1 problem(s)")
    assert at.dataframe[0].value.to_dict("records") == [{
        "file": "tables/income_again.csv", "row": None, "column": None,
        "problem": "all counts are 0: expected a positive total"}]
    folder = at.session_state["data.project_dir"]
    with open(f"{folder}/tables/income_again.csv") as handle:
        assert handle.read().splitlines() == ["income,count", "<=50K,0.0", ">50K,0.0"]
    # removing the table makes the project valid again, and the folder downloads as a zip
    at.selectbox(key="data.remove_choice").set_value("income_again").run()
    at.button(key="data.remove").click().run()
    assert at.success[0].value.endswith("19 target tables.")
    button = at.get("download_button")[0]
    assert button.proto.label == "Download the project folder (.zip)"
