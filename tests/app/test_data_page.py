"""The Data page: open a project zip, add an uploaded table (with detection and its problems), save a marginal by
hand; the bundled example is never edited in place."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from app_session import as_text
from synthor_core.readers.project import read_project_toml
from synthor_core.store import zip_project_folder
from synthor_testing import ROOT, write_project

APP = str(ROOT / "app.py")
EXAMPLE_TOML = (ROOT / "examples" / "adult" / "synthor.toml").read_text()


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def _k(at: AppTest, key: str) -> str:
    """A Data page widget's key: the form of an uploaded table ends in its file's number, the project's forms in
    the project's (new widgets for a new file or project, so a browser never sends stale answers back)."""
    table_form = key.startswith(("data.new_table_", "data.map.", "data.replace_table", "data.bins."))
    return f"{key}.{at.session_state['data.form_no' if table_form else 'data.project_no']}"


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
    bad = b"sex,count\nFemale,16192\nMen,32650\n"
    _uploader(at, "A table file").set_value(("sex_again.csv", bad, "text/csv"))
    at.run()
    assert not at.exception
    assert at.text_input(key=_k(at, "data.new_table_name")).value == "sex_again"
    assert at.selectbox(key=_k(at, "data.new_table_format")).value == "long"
    assert at.selectbox(key=_k(at, "data.new_table_count")).value == "count"
    assert at.selectbox(key=_k(at, "data.map.sex")).value == "sex"
    assert (
        at.warning[-1].value
        == "Labels the project's variables lack: " + as_text("sex: 1 labels not among its categories (Men)") + "."
    )
    assert (
        at.checkbox(key=_k(at, "data.new_table_extend")).value is False
    )  # a typo is a problem unless the user says so
    at.button(key="data.add_table").click().run()
    assert not at.exception
    assert at.error[0].value.startswith("1 problem(s): fix them below")
    problems = at.dataframe[0].value
    assert problems.to_dict("records") == [
        {
            "file": "tables/sex_again.csv",
            "row": 3,
            "column": "sex",
            "problem": 'expected one of "Female", "Male", got "Men"',
        }
    ]
    assert at.session_state["data.project_label"].endswith("(edited copy)")
    assert (ROOT / "examples" / "adult" / "synthor.toml").read_text() == EXAMPLE_TOML


def test_a_crosstab_upload_is_detected_and_added():
    at = _app()
    crosstab = (
        b"race,Female,Male\nWhite,13027,28735\nBlack,2308,2377\nAsian-Pac-Islander,517,1002\n"
        b"Amer-Indian-Eskimo,185,285\nOther,155,251\n"
    )
    _uploader(at, "A table file").set_value(("race_by_sex.csv", crosstab, "text/csv"))
    at.run()
    assert at.selectbox(key=_k(at, "data.new_table_format")).value == "crosstab"
    assert at.text_input(key=_k(at, "data.new_table_rows")).value == "race"
    assert at.text_input(key=_k(at, "data.new_table_columns")).value == "sex"
    at.button(key="data.add_table").click().run()
    assert not at.exception
    assert at.success[0].value.endswith("48,842 persons, 9 variables, 20 target tables.")
    raw = read_project_toml(at.session_state["data.project_dir"])
    assert raw["tables"][-1] == {
        "name": "race_by_sex",
        "file": "tables/race_by_sex.csv",
        "format": "crosstab",
        "rows": "race",
        "columns": "sex",
    }


def test_a_marginal_by_hand_is_saved_and_an_all_zero_one_is_refused():
    at = _app()
    at.selectbox(key=_k(at, "data.marginal_variable")).set_value("income").run()
    at.text_input(key=_k(at, "data.marginal_name")).set_value("income_again").run()
    at.button(key="data.save_marginal").click().run()
    assert not at.exception
    assert at.error[0].value.startswith("1 problem(s)")
    assert at.dataframe[0].value.to_dict("records") == [
        {
            "file": "tables/income_again.csv",
            "row": None,
            "column": None,
            "problem": "all counts are 0: expected a positive total",
        }
    ]
    folder = at.session_state["data.project_dir"]
    with open(f"{folder}/tables/income_again.csv") as handle:
        assert handle.read().splitlines() == ["income,count", "<=50K,0.0", ">50K,0.0"]
    # removing the table makes the project valid again, and the folder downloads as a zip
    at.selectbox(key=_k(at, "data.remove_choice")).set_value("income_again").run()
    at.button(key="data.remove").click().run()
    assert at.success[0].value.endswith("19 target tables.")
    button = at.get("download_button")[0]
    assert button.proto.label == "Download the project folder (.zip)"


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
    "age_by_income.csv",
]


def test_a_project_is_built_from_its_table_files_alone():
    """Issue 14: an empty project, 12 real table files uploaded one by one (9 variables, 2 numeric, 2 cross-tabs),
    no category typed: the variables come from the tables, N from the first table, every table equals its file;
    a name clash asks before replacing; the project runs."""
    at = _app()
    at.button(key="data.new").click().run()
    assert not at.exception and not at.error
    assert at.info[0].value.startswith("**Build the project in three steps.**")
    assert at.number_input(key=_k(at, "data.size")).value == 1000  # the new project's, not the example's 48,842
    tables = ROOT / "examples" / "adult" / "tables"
    for i, name in enumerate(BUILD_ORDER):
        _uploader(at, "A table file").set_value((name, (tables / name).read_bytes(), "text/csv")).run()
        assert not at.exception
        assert at.text_input(key=_k(at, "data.new_table_name")).value == name.removesuffix(".csv")  # follows each file
        if name == "education_by_occupation.csv":
            assert at.text_input(key=_k(at, "data.new_table_columns")).value == ""  # a variable no table has shown yet
            assert at.button(key="data.add_table").disabled
            at.text_input(key=_k(at, "data.new_table_columns")).set_value("occupation").run()
        at.button(key="data.add_table").click().run()
        assert not at.exception
        assert len(read_project_toml(at.session_state["data.project_dir"])["tables"]) == i + 1
        assert not at.error, (name, [e.value for e in at.error], at.dataframe[0].value)
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value.endswith("48,842 persons, 9 variables, 12 target tables.")
    raw = read_project_toml(at.session_state["data.project_dir"])
    variables = {v["name"]: v for v in raw["variables"]}
    assert variables["age"] == {"name": "age", "type": "numeric", "min": 17.0, "max": 90.0, "integer": True}
    assert variables["hours_per_week"]["type"] == "numeric"
    assert variables["sex"]["categories"] == ["Female", "Male"]
    example = read_project_toml(ROOT / "examples" / "adult")
    for var in example["variables"]:
        if var["type"] == "categorical":
            assert set(variables[var["name"]]["categories"]) == set(var["categories"]), var["name"]
    folder = at.session_state["data.project_dir"]
    for spec in raw["tables"]:  # every table is its uploaded file, byte for byte
        assert (ROOT / folder / spec["file"]).read_bytes() == (tables / f"{spec['name']}.csv").read_bytes()
    assert [t["format"] for t in raw["tables"]].count("crosstab") == 2

    # the same file again: the name moves aside; typing the taken name asks before replacing
    _uploader(at, "A table file").set_value(("sex.csv", (tables / "sex.csv").read_bytes(), "text/csv")).run()
    assert at.text_input(key=_k(at, "data.new_table_name")).value == "sex_2"
    at.text_input(key=_k(at, "data.new_table_name")).set_value("sex").run()
    assert at.button(key="data.add_table").disabled
    assert at.checkbox(key=_k(at, "data.replace_table")).label.startswith("A table named sex exists: replace it")
    at.checkbox(key=_k(at, "data.replace_table")).check().run()
    assert not at.button(key="data.add_table").disabled


def test_counts_and_changes_read_as_an_analyst_writes_them(tmp_path):
    """Issue 23 item 6: "1 variable" (not "1 variables"), thousands separated, a change that rounds to zero never
    shows as -0.0000; a one-variable project says so on the page."""
    from app_session import count_of, signed

    assert [count_of(1, "variable"), count_of(2, "variable"), count_of(48842, "person")] == [
        "1 variable",
        "2 variables",
        "48,842 persons",
    ]
    assert [signed(-0.00001), signed(0.0), signed(-0.0012), signed(0.00126)] == [
        "0.0000",
        "0.0000",
        "-0.0012",
        "+0.0013",
    ]
    toml = '[population]\nsize = 10\n\n[[variables]]\nname = "sex"\ntype = "categorical"\ncategories = ["F", "M"]\n\n'
    toml += '[[tables]]\nname = "sex"\nfile = "tables/sex.csv"\nvariables = ["sex"]\n'
    content = zip_project_folder(write_project(tmp_path / "one", toml, {"tables/sex.csv": "sex,count\nF,4\nM,6\n"}))
    at = _app()
    _uploader(at, "Open a project folder").set_value(("one.zip", content, "application/zip"))
    at.run()
    assert at.success[0].value == as_text("one.zip") + ": 10 persons, 1 variable, 1 target table."


def test_a_run_of_a_project_built_by_hand_has_a_name_on_the_runs_page(small_project_dir):
    """Issue 23 item 8: every project built by hand was "new project" on the Runs page."""
    from app_session import run_label
    from synthor_core.readers.project import load_project

    project = load_project(small_project_dir)
    assert run_label("UCI Adult (bundled example)", project) == "UCI Adult (bundled example)"
    assert run_label("new project", project) == "Small test population"  # its description
    from dataclasses import replace

    assert run_label("new project", replace(project, description="")) == (
        "new project: age_by_sex, sex_by_employed, age_by_employed"
    )
