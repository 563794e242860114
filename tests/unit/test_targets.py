"""Reading, validating and harmonizing target tables: one test per kind of bad input."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.readers.project import load_project, validate_project
from synthor_testing import SMALL_FILES, SMALL_TOML, write_project


def _with(file: str, content) -> dict:
    files = dict(SMALL_FILES)
    files[file] = content
    return files


def _problems(tmp_path, toml=SMALL_TOML, files=None) -> list[str]:
    folder = write_project(tmp_path / "p", toml, files)
    return [str(p) for p in validate_project(folder)]


def test_valid_project_loads_with_cells_in_schema_order(small_project_dir):
    project = load_project(small_project_dir)
    assert project.size == 1000
    assert [t.name for t in project.tables] == ["age_by_sex", "sex_by_employed", "age_by_employed"]
    age_by_sex = project.tables[0]
    assert age_by_sex.counts.shape == (3, 2)
    assert age_by_sex.counts.tolist() == [[110, 120], [300, 290], [100, 80]]
    assert project.tables[1].counts.tolist() == [[260, 250], [200, 290]]
    assert project.tables[2].counts[1].tolist() == [30, 300]
    assert project.warnings == ()


def test_missing_count_column(tmp_path):
    problems = _problems(tmp_path, files=_with("tables/age_by_sex.csv", 'age,sex,n\n"[0, 18)",Female,110\n'))
    assert problems == [
        'tables/age_by_sex.csv row 1, column "count": missing count column "count"; the file has '
        "columns 'age', 'sex', 'n'"
    ]


def test_non_numeric_count(tmp_path):
    problems = _problems(
        tmp_path, files=_with("tables/age_by_sex.csv", 'age,sex,count\n"[0, 18)",Female,110\n"[0, 18)",Male,many\n')
    )
    assert problems == ['tables/age_by_sex.csv row 3, column "count": expected a number >= 0, got "many"']


@pytest.mark.parametrize("bad", ["-3", "NaN", ""])
def test_negative_or_nan_or_empty_count(tmp_path, bad):
    problems = _problems(
        tmp_path, files=_with("tables/age_by_sex.csv", f'age,sex,count\n"[0, 18)",Female,{bad}\n"[0, 18)",Male,4\n')
    )
    assert problems == [f'tables/age_by_sex.csv row 2, column "count": expected a number >= 0, got "{bad}"']


def test_category_not_in_schema(tmp_path):
    problems = _problems(
        tmp_path, files=_with("tables/sex_by_employed.csv", "sex,no,yes\nFemale,260,250\nMen,200,290\n")
    )
    assert problems == [
        'tables/sex_by_employed.csv row 3, column "sex": expected one of "Female", "Male" for variable "sex", got "Men"'
    ]


def test_bin_label_not_in_table_bins(tmp_path):
    problems = _problems(tmp_path, files=_with("tables/age_by_sex.csv", 'age,sex,count\n"[0, 20)",Female,110\n'))
    assert problems == [
        'tables/age_by_sex.csv row 2, column "age": expected one of "[0, 18)", "[18, 65)", "[65, 99]", got "[0, 20)"'
    ]


def test_table_variable_not_in_schema(tmp_path):
    toml = SMALL_TOML.replace('variables = ["age", "employed"]', 'variables = ["age", "income"]')
    problems = _problems(tmp_path, toml=toml)
    assert problems == [
        'synthor.toml [[tables]] "age_by_employed" column "variables": variable "income" is not in '
        "[[variables]] (known: age, sex, employed)"
    ]


def test_bin_edges_not_increasing(tmp_path):
    toml = SMALL_TOML.replace("age = [0, 18, 65, 99]", "age = [0, 65, 18, 99]")
    assert _problems(tmp_path, toml=toml) == [
        'synthor.toml [[tables]] "age_by_sex" column "bins.age": bin edges of "age" must be at least two strictly '
        "increasing numbers, got [0.0, 65.0, 18.0, 99.0]"
    ]


def test_bin_edges_outside_range(tmp_path):
    toml = SMALL_TOML.replace("age = [0, 18, 65, 99]", "age = [0, 18, 65, 120]")
    assert _problems(tmp_path, toml=toml) == [
        'synthor.toml [[tables]] "age_by_sex" column "bins.age": bin edges of "age" must start at min = 0 and end at '
        "max = 99, got [0.0, 18.0, 65.0, 120.0]"
    ]


def test_empty_table(tmp_path):
    problems = _problems(tmp_path, files=_with("tables/age_by_sex.csv", "age,sex,count\n"))
    assert problems == ["tables/age_by_sex.csv: the table is empty: expected at least one row of counts"]


def test_crosstab_duplicate_row_and_column_categories(tmp_path):
    problems = _problems(
        tmp_path, files=_with("tables/sex_by_employed.csv", "sex,no,yes,yes\nFemale,260,250,1\nFemale,200,290,1\n")
    )
    assert problems == [
        'tables/sex_by_employed.csv row 1, column "yes": "yes" heads more than one column (columns 3, 4): each '
        "category or variable needs one column"
    ]
    problems = _problems(
        tmp_path, files=_with("tables/sex_by_employed.csv", "sex,no,yes\nFemale,260,250\nFemale,2,9\n")
    )
    assert any('duplicate row category "Female" (also row 2)' in p and "row 3" in p for p in problems)


def test_crosstab_duplicate_column_category_is_named(tmp_path):
    """A second "no" (with a space, or not: pandas read an exact repeat as a column "no.1") is named as such."""
    for header in ("sex,no,yes,no \n", "sex,no,yes,no\n"):
        problems = _problems(tmp_path, files=_with("tables/sex_by_employed.csv", header + "Female,1,2,3\n"))
        assert problems == [
            'tables/sex_by_employed.csv row 1, column "no": "no" heads more than one column (columns 2, 4): each '
            "category or variable needs one column"
        ]
    workbook = tmp_path / "dup.xlsx"
    pd.DataFrame([["Female", 1, 2, 3]], columns=["sex", "no", "yes", "no "]).to_excel(workbook, index=False)
    toml = SMALL_TOML.replace("tables/sex_by_employed.csv", "tables/sex_by_employed.xlsx")
    problems = _problems(tmp_path, toml, _with("tables/sex_by_employed.xlsx", workbook.read_bytes()))
    assert problems[0].startswith('tables/sex_by_employed.xlsx row 1, column "no": "no" heads more than one column')


def test_long_duplicate_cell(tmp_path):
    problems = _problems(
        tmp_path, files=_with("tables/age_by_sex.csv", 'age,sex,count\n"[0, 18)",Female,1\n"[0,18)",Female,2\n')
    )
    assert problems == ["tables/age_by_sex.csv row 3: duplicate cell (same as row 2)"]


def test_non_utf8_file(tmp_path):
    content = b"sex,no,yes\nFemale,260,250\nMale,200,290\n" + "Männer,1,2\n".encode("latin-1")
    problems = _problems(tmp_path, files=_with("tables/sex_by_employed.csv", content))
    assert problems == [
        "tables/sex_by_employed.csv row 4: expected UTF-8 text, found byte 0xe4 (save the file as CSV UTF-8)"
    ]


def test_malformed_toml(tmp_path):
    toml = SMALL_TOML.replace("size = 1000", 'size = 1000\nbroken = "no closing quote')
    problems = _problems(tmp_path, toml=toml)
    assert len(problems) == 1
    assert problems[0].startswith("synthor.toml row 4: is not valid TOML: Illegal character")


def test_misspelt_key_and_bad_values_are_all_reported(tmp_path):
    toml = SMALL_TOML.replace("size = 1000", "size = -5").replace('count_column = "count"', 'count_colum = "count"')
    problems = _problems(tmp_path, toml=toml)
    assert any(
        p.startswith('synthor.toml column "population.size": Input should be greater than 0, got -5') for p in problems
    )
    assert any('column "tables[1].count_colum": Extra inputs are not permitted' in p for p in problems)


def test_validate_lists_problems_of_every_file_at_once(tmp_path):
    files = _with("tables/age_by_sex.csv", 'age,sex,count\n"[0, 18)",Female,-1\n"[0, 18)",Other,2\n')
    files["tables/sex_by_employed.csv"] = "sex,no,yes\nFemale,x,250\n"
    folder = write_project(tmp_path / "p", SMALL_TOML, files)
    with pytest.raises(TargetValidationError, match=re.escape("3 problem(s) in the project:")) as info:
        load_project(folder)
    assert [str(p) for p in info.value.problems] == [
        'tables/age_by_sex.csv row 2, column "count": expected a number >= 0, got "-1"',
        'tables/age_by_sex.csv row 3, column "sex": expected one of "Female", "Male", got "Other"',
        'tables/sex_by_employed.csv row 2, column "no": expected a number >= 0, got "x"',
    ]


def test_missing_file_is_reported(tmp_path):
    files = dict(SMALL_FILES)
    del files["tables/age_by_employed.csv"]
    assert _problems(tmp_path, files=files) == [
        'synthor.toml column "[[tables]] "age_by_employed" file": the file \'tables/age_by_employed.csv\' was not '
        "found in p/"
    ]


@pytest.mark.parametrize("where", ["../secret.csv", "tables/../../secret.csv", "ABSOLUTE", "tables/link.csv"])
def test_table_files_outside_the_project_are_never_read(tmp_path, where):
    """A table file must resolve inside the project folder: a relative escape, an absolute path or a symbolic link
    pointing out of the folder is refused by name, and the outside file's rows are never shown."""
    secret = tmp_path / "secret.csv"
    secret.write_text("age,employed,count\nTOPSECRET,no,1\n", encoding="utf-8")
    folder = write_project(tmp_path / "p")
    if where == "tables/link.csv":
        (folder / "tables" / "link.csv").symlink_to(secret)
    shown = str(secret) if where == "ABSOLUTE" else where
    toml = (folder / "synthor.toml").read_text(encoding="utf-8").replace('"tables/age_by_employed.csv"', f'"{shown}"')
    (folder / "synthor.toml").write_text(toml, encoding="utf-8")
    problems = [str(p) for p in validate_project(folder)]
    assert problems == [
        f'synthor.toml column "[[tables]] "age_by_employed" file": the file {shown!r} lies outside '
        "the folder p/ (file names must stay inside the project)"
    ]
    assert not any("TOPSECRET" in p for p in problems)


def test_excel_and_parquet_tables_read_like_csv(tmp_path):
    folder = write_project(tmp_path / "p")
    pd.read_csv(folder / "tables/sex_by_employed.csv").to_excel(
        folder / "tables/sex_by_employed.xlsx", index=False, sheet_name="counts"
    )
    pd.read_csv(folder / "tables/age_by_sex.csv").to_parquet(folder / "tables/age_by_sex.parquet")
    toml = (
        SMALL_TOML.replace("tables/sex_by_employed.csv", "tables/sex_by_employed.xlsx")
        .replace('columns = "employed"', 'columns = "employed"\nsheet = "counts"')
        .replace("tables/age_by_sex.csv", "tables/age_by_sex.parquet")
    )
    (folder / "synthor.toml").write_text(toml, encoding="utf-8")
    project = load_project(folder)
    assert project.tables[0].counts.tolist() == [[110, 120], [300, 290], [100, 80]]
    assert project.tables[1].counts.tolist() == [[260, 250], [200, 290]]


def test_harmonize_scales_totals_and_reports_disagreeing_marginals(tmp_path):
    files = _with("tables/sex_by_employed.csv", "sex,no,yes\nFemale,130,125\nMale,100,145\n")  # total 500
    files["tables/age_by_employed.csv"] = (
        'age,employed,count\n"[0, 18)",no,230\n"[18, 40)",no,30\n"[18, 40)",'
        'yes,300\n"[40, 65)",no,40\n"[40, 65)",yes,220\n"[65, 99]",no,100\n'
        '"[65, 99]",yes,80\n'
    )
    project = load_project(write_project(tmp_path / "p", SMALL_TOML, files))
    assert project.tables[1].counts.sum() == pytest.approx(1000)
    assert project.tables[1].counts.tolist() == [[260, 250], [200, 290]]
    assert project.warnings[0] == ('table "sex_by_employed" totals 500, not the population size 1,000; scaled by 2')
    # employed: sex_by_employed implies no=460, yes=540; age_by_employed implies no=400, yes=600
    assert (
        'employed = "no": table "sex_by_employed" implies 460.0, table "age_by_employed" implies 400.0 '
        "(13.0% apart)" in project.warnings
    )
    # age [65, 99]: both tables imply 180 -> no warning for age
    assert not any(w.startswith("age =") for w in project.warnings)
    assert np.isclose(project.tables[2].counts.sum(), 1000)


def test_a_decimal_comma_is_refused_not_read_as_thousands(tmp_path):
    files = _with(
        "tables/age_by_sex.csv",
        'age,sex,count\n"[0, 18)",Female,"110,5"\n"[0, 18)",Male,"1,120"\n'
        '"[18, 65)",Female,300\n"[18, 65)",Male,290\n"[65, 99]",Female,100\n"[65, 99]",Male,80\n',
    )
    assert _problems(tmp_path, files=files) == [
        'tables/age_by_sex.csv row 2, column "count": expected a number >= 0, got "110,5" (write decimals with a '
        "point: 110.5; commas may only group thousands: 1,105)"
    ]


def test_toml_nested_thousands_deep_or_a_huge_population_is_a_problem_not_a_crash(tmp_path):
    assert _problems(tmp_path, toml="a = " + "[" * 5000 + "]" * 5000 + "\n" + SMALL_TOML) == [
        "synthor.toml: is nested too deeply (arrays or tables inside each other hundreds of levels deep): not a "
        "project file"
    ]
    assert _problems(tmp_path, toml=SMALL_TOML.replace("size = 1000", "size = 100000000000000000000")) == [
        'synthor.toml column "population.size": Input should be less than or equal to 2000000000, got '
        "100000000000000000000"
    ]


def test_a_damaged_workbook_is_named(tmp_path):
    files = dict(SMALL_FILES)
    files["tables/sex_by_employed.xlsx"] = b"PK\x03\x04 not really a workbook"
    toml = SMALL_TOML.replace("tables/sex_by_employed.csv", "tables/sex_by_employed.xlsx")
    assert _problems(tmp_path, toml=toml, files=files) == [
        "tables/sex_by_employed.xlsx: could not be read as xlsx (BadZipFile: File is not a zip file); the file is "
        "damaged or of another format"
    ]


def test_a_workbook_that_is_not_one_or_has_its_table_on_another_sheet_says_so(tmp_path):
    import io
    import zipfile

    toml = SMALL_TOML.replace("tables/sex_by_employed.csv", "tables/sex_by_employed.xlsx")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "hello")
    assert _problems(tmp_path / "zip", toml, _with("tables/sex_by_employed.xlsx", archive.getvalue())) == [
        "tables/sex_by_employed.xlsx: a zip archive, not an Excel workbook (it holds notes.txt); expected a .xlsx "
        "file saved by a spreadsheet"
    ]
    old = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    assert _problems(tmp_path / "xls", toml, _with("tables/sex_by_employed.xlsx", old)) == [
        "tables/sex_by_employed.xlsx: an Excel 97-2003 workbook (.xls): save it as .xlsx (Excel Workbook) or CSV UTF-8"
    ]
    workbook = io.BytesIO()
    with pd.ExcelWriter(workbook) as writer:
        pd.DataFrame().to_excel(writer, sheet_name="About")
        pd.read_csv(io.StringIO(SMALL_FILES["tables/sex_by_employed.csv"])).to_excel(
            writer, sheet_name="Data", index=False
        )
    files = _with("tables/sex_by_employed.xlsx", workbook.getvalue())
    assert _problems(tmp_path / "sheets", toml, files) == [
        'tables/sex_by_employed.xlsx: the first sheet "About" holds no table; the workbook has sheets "About", '
        '"Data": name the one with the table with sheet = "..." in the table\'s entry of synthor.toml'
    ]
    named = toml.replace('columns = "employed"', 'columns = "employed"\nsheet = "Counts"')
    assert _problems(tmp_path / "named", named, files) == [
        'tables/sex_by_employed.xlsx column "sheet": no sheet named "Counts"; the workbook has "About", "Data"'
    ]
    assert _problems(tmp_path / "right", named.replace('"Counts"', '"Data"'), files) == []


def test_a_population_too_small_for_its_tables_is_a_problem(tmp_path, capsys):
    from synthor_core import cli

    assert _problems(tmp_path, SMALL_TOML.replace("size = 1000", "size = 1")) == [
        'synthor.toml column "population.size": a population of 1 cannot fit the tables: table "age_by_employed" '
        "counts persons in 7 cells, so N must be at least 7 (the table totals 1,000)"
    ]
    folder = write_project(tmp_path / "n")
    assert cli.main(["run", str(folder), "--n", "6", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.endswith(
        'error: --n 6: a population of 6 cannot fit the tables: table "age_by_employed" counts persons in 7 cells, '
        "so N must be at least 7 (the table totals 1,000)\n"
    )


def test_a_variable_may_be_named_like_the_aggregation_s_own_columns(tmp_path):
    """A variable named ``cell`` (or t, n) once failed in DuckDB's binder."""
    from synthor_core.priors.maxent import MaxEntPrior
    from synthor_core.synthesis.config import SynthesisConfig
    from synthor_core.synthesis.events import SynthesisResult
    from synthor_core.synthesis.loop import run_synthesis

    toml = SMALL_TOML.replace("employed", "cell")
    files = {k.replace("employed", "cell"): v.replace("employed", "cell") for k, v in SMALL_FILES.items()}
    project = load_project(write_project(tmp_path / "p", toml, files))
    result = [
        e
        for e in run_synthesis(project, MaxEntPrior(project), SynthesisConfig(seed=1))
        if isinstance(e, SynthesisResult)
    ][0]
    assert result.population["count"].sum() == 1000 and result.fit.mean_tvd < 0.005


def test_rules_that_forbid_every_record_say_so(tmp_path, small_project_dir):
    from synthor_core.errors import ConfigError
    from synthor_core.priors.maxent import MaxEntPrior
    from synthor_core.readers.rules import load_rules

    project = load_project(small_project_dir)
    (tmp_path / "rules.toml").write_text('[[rules]]\nname = "nobody"\ncondition = "age >= 0"\n', encoding="utf-8")
    rules = load_rules(tmp_path / "rules.toml", project.schema)
    with pytest.raises(ConfigError, match="the rules forbid every record the target tables allow"):
        MaxEntPrior(project, rules=rules)


@pytest.mark.parametrize(
    "written, expected",
    [
        ("", "expected type = one of 'categorical', 'numeric' (the key type is missing)"),
        ('type = "categoric"\n', "expected type = one of 'categorical', 'numeric', got 'categoric'"),
    ],
)
def test_a_variable_without_a_known_type_is_told_what_is_expected(tmp_path, written, expected):
    """Not pydantic's "Unable to extract tag using discriminator 'type'" (issue 26 item 6)."""
    toml = SMALL_TOML.replace('type = "categorical"\n', written, 1)
    assert toml != SMALL_TOML
    problems = _problems(tmp_path, toml=toml)
    assert len(problems) == 1 and problems[0].endswith(expected) and "discriminator" not in problems[0]


def test_real_files_semicolons_a_typo_and_a_binary_file(tmp_path):
    """Issue 23 item 5: a CSV saved with ";" (a spreadsheet set to decimal commas) reads; a category typed wrong is
    named with the nearest one; a binary file named .csv is said to be one."""
    files = _with("tables/sex_by_employed.csv", "sex;no;yes\nFemale;260;250\nMale;200;290\n")
    assert _problems(tmp_path / "semicolon", files=files) == []
    files = _with("tables/sex_by_employed.csv", "sex,no,yes\nFemal,260,250\nMale,200,290\n")
    assert _problems(tmp_path / "typo", files=files) == [
        'tables/sex_by_employed.csv row 2, column "sex": expected one of "Female", "Male" for variable "sex", got '
        '"Femal" (did you mean "Female"?)'
    ]
    files = _with("tables/sex_by_employed.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert _problems(tmp_path / "binary", files=files) == [
        "tables/sex_by_employed.csv: is not a text table (it holds binary data): expected CSV text"
    ]
