"""Test helpers: small project folders written to ``tmp_path`` (no shared files between tests)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMALL_TOML = """
[population]
size = 1000
description = "Small test population"

[[variables]]
name = "age"
type = "numeric"
unit = "years"
min = 0
max = 99
integer = true

[[variables]]
name = "sex"
type = "categorical"
categories = ["Female", "Male"]

[[variables]]
name = "employed"
type = "categorical"
categories = ["no", "yes"]

[[tables]]
name = "age_by_sex"
file = "tables/age_by_sex.csv"
format = "long"
variables = ["age", "sex"]
count_column = "count"
[tables.bins]
age = [0, 18, 65, 99]

[[tables]]
name = "sex_by_employed"
file = "tables/sex_by_employed.csv"
format = "crosstab"
rows = "sex"
columns = "employed"

[[tables]]
name = "age_by_employed"
file = "tables/age_by_employed.csv"
format = "long"
variables = ["age", "employed"]
[tables.bins]
age = [0, 18, 40, 65, 99]
"""

SMALL_FILES = {
    "tables/age_by_sex.csv": 'age,sex,count\n"[0, 18)",Female,110\n"[0, 18)",Male,120\n"[18, 65)",Female,300\n'
    '"[18, 65)",Male,290\n"[65, 99]",Female,100\n"[65, 99]",Male,80\n',
    "tables/sex_by_employed.csv": "sex,no,yes\nFemale,260,250\nMale,200,290\n",
    "tables/age_by_employed.csv": 'age,employed,count\n"[0, 18)",no,230\n"[18, 40)",no,30\n"[18, 40)",yes,300\n'
    '"[40, 65)",no,40\n"[40, 65)",yes,220\n"[65, 99]",no,160\n"[65, 99]",yes,20\n',
}


def write_project(folder: Path, toml: str = SMALL_TOML, files: dict | None = None) -> Path:
    """Write ``synthor.toml`` and table files (str -> text, bytes -> raw) into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "synthor.toml").write_text(toml, encoding="utf-8")
    for name, content in (SMALL_FILES if files is None else files).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder
