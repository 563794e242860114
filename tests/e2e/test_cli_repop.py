"""PopulationSim's repop mode (issue 22 item 2): ``run PROJECT --base PREVIOUS_OUT --out OUT`` re-synthesizes the
zones listed by the repop controls on top of a previous CALM run, with PopulationSim's ``replace`` and ``append``
(``expand_households.repop;replace`` / ``;append``); the households of every other zone are kept as they were.

The repop controls and totals are those of PopulationSim's ``examples/example_calm_repop`` (v0.10.0, BSD-3:
bedrooms and tenure in TAZ 314-317), added to a copy of CALM in its documented format (``repop_control_file_name``,
``repop_input_table_list``, the repop steps).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
CALM = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm"
pytestmark = pytest.mark.skipif(not CALM.is_dir(), reason="shared/data/populationsim not present")

REPOP_CONTROLS = """\
target,geography,seed_table,importance,control_field,expression
num_hh,TAZ,households,1000000000,HHBASE,(households.WGTP > 0) & (households.WGTP < np.inf)
bds_0,TAZ,households,1000,BDS_0,households.BDS==0
bds_1,TAZ,households,1000,BDS_1,households.BDS==1
bds_2_3,TAZ,households,1000,BDS_2_3,(households.BDS==2) | (households.BDS==3)
bds_4plus,TAZ,households,1000,BDS_4PL,households.BDS>3
own_loan,TAZ,households,1000,OWN_LOAN,households.TEN==1
own_free,TAZ,households,1000,OWN_FREE,households.TEN==2
rented,TAZ,households,1000,RENTED,households.TEN==3
occupied,TAZ,households,1000,OCCUPIED,households.TEN==4
"""
REPOP_TOTALS = """\
TAZ,BDS_0,BDS_1,BDS_2_3,BDS_4PL,OWN_LOAN,OWN_FREE,RENTED,OCCUPIED,HHBASE
314,1,3,16,5,11,5,8,1,25
315,22,83,488,157,335,142,261,12,750
316,7,25,146,47,101,42,78,4,225
317,6,22,130,42,89,38,69,4,200
"""
ZONES = [314, 315, 316, 317]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", *args, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _repop_project(folder: Path, mode: str) -> Path:
    shutil.copytree(CALM, folder, ignore=shutil.ignore_patterns("output"))
    (folder / "configs" / "repop_controls.csv").write_text(REPOP_CONTROLS)
    (folder / "data" / "repop_control_totals_taz.csv").write_text(REPOP_TOTALS)
    with open(folder / "configs" / "settings.yaml", "a", encoding="utf-8") as settings:
        settings.write(
            "\nrepop_control_file_name: repop_controls.csv\n"
            "repop_input_table_list:\n  - filename : repop_control_totals_taz.csv\n    tablename: TAZ_control_data\n"
            "repop:\n  steps:\n    - input_pre_processor.table_list=repop_input_table_list\n"
            "    - repop_setup_data_structures\n    - initial_seed_balancing.final=true\n"
            "    - integerize_final_seed_weights.repop\n    - repop_balancing\n"
            f"    - expand_households.repop;{mode}\n    - write_synthetic_population.repop\n"
        )
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "out"
    # 60 sweeps: the base's fit is not what these tests measure (every zone still gets its households), half the time
    done = _run(str(CALM), "--prior", "seed", "--seed", "1", "--max-sweeps", "60", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_repop_on_top_of_a_calm_run(tmp_path, base, mode):
    project = _repop_project(tmp_path / "calm_repop", mode)
    out = tmp_path / "out"
    done = _run(str(project), "--base", str(base), "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    before = pd.read_csv(base / "households.csv")
    after = pd.read_csv(out / "households.csv")
    persons = pd.read_csv(out / "persons.csv")
    in_zones = before["TAZ"].isin(ZONES)
    asked = pd.read_csv(project / "data" / "repop_control_totals_taz.csv").set_index("TAZ")
    added = after[after["household_id"] > before["household_id"].max()]
    # the repop zones get the households their controls ask for, meeting bedrooms and tenure
    assert added.groupby("TAZ").size().to_dict() == asked["HHBASE"].to_dict()
    for taz, row in asked.iterrows():
        mine = added[added["TAZ"] == taz]
        assert (mine["BDS"] == 0).sum() == row["BDS_0"] and (mine["TEN"] == 3).sum() == row["RENTED"], taz
    kept = before if mode == "append" else before[~in_zones]
    assert len(after) == len(kept) + len(added)
    # every other household is kept as it was: same id, zone and values
    pd.testing.assert_frame_equal(
        after[after["household_id"].isin(kept["household_id"])][before.columns].reset_index(drop=True),
        kept.reset_index(drop=True),
        check_dtype=False,
    )
    assert after["household_id"].is_unique and persons["household_id"].isin(after["household_id"]).all()
    base_persons = pd.read_csv(base / "persons.csv")
    assert (
        len(persons)
        == (base_persons["household_id"].isin(kept["household_id"])).sum()
        + (persons["household_id"].isin(added["household_id"])).sum()
    )
    # the base's sample households got the repop controls' columns from the seed sample; the few maxent made for
    # the base (the seed prior's fill) have no bedrooms or tenure to take, and the warning says so
    from_sample = after["prior"] == "seed"
    assert after.loc[from_sample, ["BDS", "TEN"]].notna().all().all() and from_sample.mean() > 0.99
    assert after.loc[~from_sample, "BDS"].isna().all()
    assert "warning: repop: households.BDS, households.TEN empty in some households" in done.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["repop"]["mode"] == mode and report["repop"]["zones"] == 4
    assert report["repop"]["dropped"] == (0 if mode == "append" else int(in_zones.sum()))
    assert f"repop ({mode}): 62,041 base households" in done.stdout
    synthetic = pd.read_csv(out / "synthetic_households.csv")
    assert len(synthetic) == len(after)


def test_a_repop_run_without_its_base_or_its_controls_says_what_is_missing(tmp_path):
    project = _repop_project(tmp_path / "calm_repop", "replace")
    done = _run(str(project), "--base", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.endswith(
        f"error: repop: --base {tmp_path / 'nowhere'}: no such folder (expected a previous run's output folder)\n"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _run(str(project), "--base", str(empty), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert (
        f"error: repop: --base {empty}: expected households.csv and persons.csv or synthetic_households.csv and "
        "synthetic_persons.csv of a previous run, found neither" in done.stderr
    )
    done = _run(str(CALM), "--base", str(empty), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "repop (run --base) needs repop_control_file_name" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_repop_project_converted_validates_and_repopulates_to_the_same_bytes(tmp_path, base):
    project = _repop_project(tmp_path / "calm_repop", "append")
    converted = tmp_path / "converted"
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "convert", str(project), str(converted), "--repop"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert 'repop = "append"' in (converted / "synthor.toml").read_text()
    assert f"run it with: python -m synthor_core run {converted} --base PREVIOUS_OUT --out OUT" in done.stdout
    checked = subprocess.run(
        [sys.executable, "-m", "synthor_core", "validate", str(converted)], cwd=ROOT, capture_output=True, text=True
    )
    assert checked.returncode == 0 and "1,200 households to place" in checked.stdout, checked.stdout
    for folder, name in ((project, "a"), (converted, "b")):
        done = _run(str(folder), "--base", str(base), "--seed", "1", "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
    for file in ("households.csv", "persons.csv", "synthetic_households.csv", "synthetic_persons.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_repop_on_top_of_populationsim_s_own_output_files(tmp_path, base):
    """A base run known only by PopulationSim's synthetic_households.csv / synthetic_persons.csv (as PopulationSim
    writes them): repop reads its households there."""
    populationsim_out = tmp_path / "populationsim_out"
    populationsim_out.mkdir()
    for name in ("synthetic_households.csv", "synthetic_persons.csv"):
        shutil.copy(base / name, populationsim_out / name)
    project = _repop_project(tmp_path / "calm_repop", "append")
    out = tmp_path / "out"
    done = _run(str(project), "--base", str(populationsim_out), "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    before = pd.read_csv(populationsim_out / "synthetic_households.csv")
    after = pd.read_csv(out / "households.csv")
    assert len(after) == len(before) + 1200  # append: the 4 zones' 25 + 750 + 225 + 200 households added
    assert after["household_id"].is_unique
    kept = after[after["household_id"] <= before["household_id"].max()]
    pd.testing.assert_frame_equal(
        kept[before.columns].reset_index(drop=True), before.reset_index(drop=True), check_dtype=False
    )
