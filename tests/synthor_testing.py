"""Test helpers: small project folders written to ``tmp_path`` (no shared files between tests)."""

from __future__ import annotations

import subprocess
import textwrap
from contextlib import contextmanager
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


def contradicting_project(folder: Path, fourth: bool = True, partial: bool = False):
    """A person project whose tables contradict through their zero cells (issue 26 item 5): x = y in one table,
    y = z in another, x != z in a third, every marginal agreeing; a fourth table on w takes no part. With
    ``partial`` only one cell contradicts: z is always a by the second table, the third counts 10 persons with
    x = a, z = b."""
    variables = "".join(
        f'[[variables]]\nname = "{v}"\ntype = "categorical"\ncategories = ["a", "b"]\n\n' for v in "xyzw"
    )
    tables = "".join(
        f'[[tables]]\nname = "{a}{b}"\nfile = "tables/{a}{b}.csv"\nvariables = ["{a}", "{b}"]\n\n'
        for a, b in ("xy", "yz", "xz")
    )
    if fourth:
        tables += '[[tables]]\nname = "w"\nfile = "tables/w.csv"\nvariables = ["w"]\n'
    same = "a,a,50\nb,b,50\na,b,0\nb,a,0\n"
    crossed = "a,a,50\nb,b,0\na,b,0\nb,a,50\n" if partial else "a,a,0\nb,b,0\na,b,50\nb,a,50\n"
    files = {
        "tables/xy.csv": "x,y,count\n" + same,
        "tables/yz.csv": "y,z,count\n" + ("a,a,50\nb,b,0\na,b,0\nb,a,50\n" if partial else same),
        "tables/xz.csv": "x,z,count\n" + crossed,
        "tables/w.csv": "w,count\na,30\nb,70\n",
    }
    if partial:
        files["tables/xz.csv"] = "x,z,count\na,a,40\nb,a,50\na,b,10\nb,b,0\n"
    return write_project(folder, f"[population]\nsize = 100\n\n{variables}{tables}", files)


# PopulationSim 0.10.0's own worst %RMSE per control group on example_calm (shared/data/populationsim/README.md):
# the bar each of Synthor's control groups must meet or beat on CALM.
POPULATIONSIM_CALM_WORST_PCT_RMSE = {
    "household size": (["hh_size_1", "hh_size_2", "hh_size_3", "hh_size_4_plus"], 2.20),
    "head age": (["hh_age_15_24", "hh_age_25_54", "hh_age_55_64", "hh_age_65_plus"], 31.84),
    "income": (["hh_inc_15", "hh_inc_15_30", "hh_inc_30_60", "hh_inc_60_plus"], 3.93),
    "students": (["students_by_family_housing_type", "students_by_nonfamily_housing_type"], 26.73),
    "workers": (["hh_wrks_0", "hh_wrks_1", "hh_wrks_2", "hh_wrks_3_plus"], 2.10),
    "dwelling type": (["hh_by_type_sf", "hh_by_type_mf", "hh_by_type_mh", "hh_by_type_dup"], 1.17),
    "occupation": ([f"persons_occ_{i}" for i in range(1, 9)], 0.38),
}


def run_households(project, prior: str, seed: int, out, **settings):
    """Run a household project through :func:`synthor_core.runner.execute` into ``out``; returns (report, result,
    households, persons) with the two written CSVs read back."""
    import pandas as pd

    from synthor_core.runner import execute
    from synthor_core.synthesis.config import SynthesisConfig
    from synthor_core.synthesis.partitions import PriorSpec

    output = execute(project, PriorSpec(prior, settings.pop("llm", None)), SynthesisConfig(seed=seed, **settings), out)
    return (
        output.report,
        output.result,
        pd.read_csv(out / "households.csv"),
        pd.read_csv(out / "persons.csv"),
    )


@contextmanager
def small_disk(folder: Path, size: str):
    """A real tmpfs of ``size`` (e.g. ``"560k"``) mounted on ``folder`` for the duration: writes beyond it fail with
    ENOSPC as on a full disk. Skips the test where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def squares_geojson(zones, id_property: str = "TAZ") -> bytes:
    """A GeoJSON of a unit square per zone, side by side."""
    import json

    features = [
        {
            "type": "Feature",
            "properties": {id_property: z},
            "geometry": {"type": "Polygon", "coordinates": [[[i, 0], [i + 1, 0], [i + 1, 1], [i, 1], [i, 0]]]},
        }
        for i, z in enumerate(zones)
    ]
    return json.dumps({"type": "FeatureCollection", "features": features}).encode()


def project_with_shapes(tmp_path, geojson: bytes, extra: str = ""):
    """A copy of tests/projects/declared whose [geography] names ``geojson`` as its zone shapes."""
    import shutil

    root = tmp_path / "declared"
    shutil.copytree(ROOT / "tests" / "projects" / "declared", root)
    (root / "data" / "zones.geojson").write_bytes(geojson)
    toml = root / "synthor.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('seed_level = "PUMA"', f'seed_level = "PUMA"\nshapes = "data/zones.geojson"{extra}'))
    return root


# the input tables of CALM's seed sample and crosswalk, as its settings.yaml lists them (settings.yaml lines)
CALM_SEED_TABLES = """\
  - tablename: households
    filename : seed_households.csv
    index_col: hh_id
    rename_columns:
      hhnum: hh_id
  - tablename: persons
    filename : seed_persons.csv
    rename_columns:
      hhnum: hh_id
      SPORDER: per_num
  - tablename: geo_cross_walk
    filename : geo_cross_walk.csv
    rename_columns:
      TRACTCE: TRACT
"""
SURVEY_WEIGHTING_SETTINGS = (
    """\
NO_INTEGERIZATION_EVER: True
GROUP_BY_INCIDENCE_SIGNATURE: False
max_expansion_factor: 4
min_expansion_factor: 0.5
geographies: [REGION, PUMA]
seed_geography: PUMA
data_dir: data
input_table_list:
"""
    + CALM_SEED_TABLES
    + """\
  - tablename: PUMA_control_data
    filename : control_totals_puma.csv
  - tablename: REGION_control_data
    filename : scaled_control_totals_meta.csv
household_weight_col: WGTP
household_id_col: hh_id
total_hh_control: num_hh
output_tables:
  action: include
  tables:
    - PUMA_weights
    - summary_hh_weights
    - expanded_household_ids
    - incidence_table
    - summary_PUMA
    - household_groups
run_list:
  steps:
    - input_pre_processor
    - setup_data_structures
    - initial_seed_balancing
    - meta_control_factoring
    - final_seed_balancing
    - write_tables
"""
)


def calm_survey_weighting_project(calm: Path, root: Path) -> Path:
    """PopulationSim's CALM example (folder ``calm``) turned into a survey-weighting project at ``root``, written in
    PopulationSim's documented format (``docs/application_configuration.rst``, survey weighting): every control moved
    to the seed geography (PUMA), its totals the sums of CALM's TAZ and TRACT control tables; the crosswalk keeps its
    rows per TAZ. Returns ``root``. Used by tests/e2e/test_cli_survey_weighting.py and benchmarks/survey_weighting.py.
    """
    import shutil

    import pandas as pd

    shutil.copytree(calm, root, ignore=shutil.ignore_patterns("output"))
    (root / "configs" / "settings.yaml").write_text(SURVEY_WEIGHTING_SETTINGS)
    controls = pd.read_csv(root / "configs" / "controls.csv")
    controls["geography"] = controls["geography"].replace({"TAZ": "PUMA", "TRACT": "PUMA"})
    controls.to_csv(root / "configs" / "controls.csv", index=False)
    taz = pd.read_csv(root / "data" / "control_totals_taz.csv")
    tract = pd.read_csv(root / "data" / "control_totals_tract.csv")
    columns = [c for c in controls["control_field"] if c in taz.columns or c in tract.columns]
    totals = {c: (taz if c in taz.columns else tract)[c].sum() for c in columns}
    pd.DataFrame([{"PUMA": 600, **totals}]).to_csv(root / "data" / "control_totals_puma.csv", index=False)
    return root


TRIP_ZONES = ("A", "B", "C")


def write_trip_project(root: Path, **change: str) -> Path:
    """A person project with trips in ``root``: three zones, 600 persons, 300 commuters; an OD table, departures,
    modes. ``change`` replaces files by name (``**{"mode.csv": "..."}``)."""
    files = {
        "zones.csv": "zone,lon,lat,area\nA,-97.70,30.30,2.0\nB,-97.75,30.25,3.0\nC,-97.60,30.40,1.5\n",
        "persons.csv": "zone,commuter,count\nA,yes,150\nA,no,150\nB,yes,100\nB,no,100\nC,yes,50\nC,no,50\n",
        "ages.csv": 'age,count\n"[0, 16)",150\n"[16, 65)",350\n"[65, 99]",100\n',
        "od.csv": "origin,destination,workers\nA,A,30\nA,B,100\nA,C,20\nB,A,40\nB,B,60\nC,B,10\nC,C,40\n",
        "departure.csv": "depart,percent\n00:00-06:00,10\n06:00-08:00,50\n08:00-10:00,30\n10:00-24:00,10\n",
        "mode.csv": "mode,workers\ncar,80\nbus,20\n",
    }
    files.update(change)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "synthor.toml").write_text(
        textwrap.dedent(
            """
            [population]
            size = 600
            [zones]
            file = "zones.csv"
            level = "zone"
            [[variables]]
            name = "age"
            type = "numeric"
            min = 0
            max = 99
            integer = true
            [[variables]]
            name = "commuter"
            type = "categorical"
            categories = ["yes", "no"]
            [[tables]]
            name = "persons"
            file = "persons.csv"
            variables = ["zone", "commuter"]
            [[tables]]
            name = "ages"
            file = "ages.csv"
            variables = ["age"]
            [tables.bins]
            age = [0, 16, 65, 99]
            [[rules]]
            name = "young commuter"
            condition = 'commuter == "yes" and age < 16'
            [trips]
            who = 'commuter == "yes"'
            tour = ["work", "home"]
            modes = ["car", "bus"]
            area = "area"
            stay_hours = 8.5
            [trips.speed_kmh]
            car = 30.0
            bus = 15.0
            [[trips.tables]]
            name = "od"
            file = "od.csv"
            variables = ["origin", "destination"]
            count_column = "workers"
            [[trips.tables]]
            name = "departure"
            file = "departure.csv"
            variables = ["depart"]
            count_column = "percent"
            [[trips.tables]]
            name = "mode"
            file = "mode.csv"
            variables = ["mode"]
            count_column = "workers"
            """
        ),
        encoding="utf-8",
    )
    return root


def trip_population(project):
    """Coded distinct records: every combination of zone x commuter x two ages, counts from the persons table."""
    import pandas as pd

    rows = []
    zone_codes = {z: i for i, z in enumerate(project.schema["zone"].categories)}
    for zone, yes, no in (("A", 150, 150), ("B", 100, 100), ("C", 50, 50)):
        rows.append({"zone": zone_codes[zone], "commuter": 0, "age": 40.0, "count": yes})
        rows.append({"zone": zone_codes[zone], "commuter": 1, "age": 10.0, "count": no})
    return pd.DataFrame(rows)


def trip_persons_known(project):
    """The persons of :func:`trip_population` one per row, labelled (``zone`` and ``commuter`` as text): the pool a
    test endpoint's "model" knows."""
    known = project.schema.decode(trip_population(project))
    pool = known.loc[known.index.repeat(known.pop("count"))].reset_index(drop=True)
    pool["zone"], pool["commuter"] = pool["zone"].astype(str), pool["commuter"].astype(str)
    return pool


TOURS = "commuter,tours,persons\nyes,1,70\nyes,2,30\nno,0,40\nno,1,50\nno,2,10\n"
FREQUENCY = """
[trips.frequency]
file = "tours.csv"
by = ["commuter"]
count_column = "persons"
source = "a survey"
"""


def write_frequency_project(root: Path, tours: str = TOURS, section: str = FREQUENCY) -> Path:
    """The small trip project where everyone may travel, commuters making 1 or 2 tours a day and the others 0 to 2,
    and an OD table of the 600 tours that gives."""
    od = "origin,destination,workers\nA,A,60\nA,B,200\nA,C,40\nB,A,80\nB,B,120\nC,B,20\nC,C,80\n"
    write_trip_project(root, **{"od.csv": od, "tours.csv": tours})
    toml = root / "synthor.toml"
    text = toml.read_text(encoding="utf-8").replace("who = 'commuter == \"yes\"'", "who = 'age >= 0'")
    toml.write_text(text + section, encoding="utf-8")
    return root
