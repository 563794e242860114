"""Group quarters as PopulationSim projects model them (issue 22 item 5): a household type column (PUMS ``TYPE``: 1 a
housing unit, 3 non-institutional group quarters), each GQ resident a one-person unit counted by the total control
(MTC's ``numhh_gq``: households plus GQ persons), household controls restricted to ``TYPE == 1``, and a person
control per GQ type (``persons.gqtype == 1``, university), as in BayAreaMetro/populationsim's ``hh_gq`` controls.

Built from CALM's real data: the seed gets one GQ unit per OSU student the sample has in non-family housing
(``OSUTAG == 2``, 432 persons, their own records and person weights); the controls are CALM's TAZ controls summed to
its 35 tracts, and the university GQ residents of a tract a third of its students in non-family housing
(``OSUNFAM``; the share is this test's assumption, CALM gives no GQ count).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthor_testing import CALM_SEED_TABLES

ROOT = Path(__file__).resolve().parents[2]
CALM = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm"
pytestmark = pytest.mark.skipif(not CALM.is_dir(), reason="shared/data/populationsim not present")

CONTROLS = """\
target,geography,seed_table,importance,control_field,expression
num_hh,TRACT,households,1000000000,HHGQ,(households.WGTP > 0) & (households.WGTP < np.inf)
hh_size_1_gq,TRACT,households,5000,HHSIZE1GQ,households.NP == 1
hh_size_2,TRACT,households,5000,HHSIZE2,households.NP == 2
hh_size_3,TRACT,households,5000,HHSIZE3,households.NP == 3
hh_size_4_plus,TRACT,households,5000,HHSIZE4,households.NP >= 4
hh_inc_15,TRACT,households,500,HHINC1,(households.TYPE == 1) & (households.HHINCADJ <= 21297)
hh_inc_15_30,TRACT,households,500,HHINC2,(households.TYPE==1)&(households.HHINCADJ>21297)&(households.HHINCADJ<=42593)
hh_inc_30_60,TRACT,households,500,HHINC3,(households.TYPE==1)&(households.HHINCADJ>42593)&(households.HHINCADJ<=85185)
hh_inc_60_plus,TRACT,households,500,HHINC4,(households.TYPE == 1) & (households.HHINCADJ > 85185)
gq_type_univ,TRACT,persons,1000000,GQUNIV,persons.gqtype == 1
"""

SETTINGS = (
    """\
geographies: [REGION, PUMA, TRACT]
seed_geography: PUMA
data_dir: data
input_table_list:
"""
    + CALM_SEED_TABLES
    + """\
  - tablename: TRACT_control_data
    filename : control_totals_tract_gq.csv
household_weight_col: WGTP
household_id_col: hh_id
total_hh_control: num_hh
max_expansion_factor: 30
"""
)


def _gq_project(root: Path) -> Path:
    shutil.copytree(CALM, root, ignore=shutil.ignore_patterns("output"))
    (root / "configs" / "settings.yaml").write_text(SETTINGS)
    (root / "configs" / "controls.csv").write_text(CONTROLS)
    data = root / "data"
    households = pd.read_csv(data / "seed_households.csv", low_memory=False)
    persons = pd.read_csv(data / "seed_persons.csv", low_memory=False).copy()  # one block: assign without warnings
    students = persons[persons["OSUTAG"] == 2].copy()
    ids = np.arange(households["hhnum"].max() + 1, households["hhnum"].max() + 1 + len(students))
    gq = pd.DataFrame({c: np.nan for c in households.columns}, index=range(len(students)))
    gq["hhnum"], gq["PUMA"], gq["TYPE"], gq["NP"] = ids, 600, 3, 1
    gq["WGTP"] = students["PWGTP"].to_numpy()
    gq["AGEHOH"] = students["AGEP"].to_numpy()
    gq["NWESR"] = students["ESR"].isin([1, 2, 4]).astype(int).to_numpy()
    residents = students.assign(hhnum=ids, SPORDER=1, RELP=17, gqtype=1)
    pd.concat([households, gq], ignore_index=True).to_csv(data / "seed_households.csv", index=False)
    pd.concat([persons.assign(gqtype=0), residents], ignore_index=True).to_csv(data / "seed_persons.csv", index=False)
    taz = pd.read_csv(data / "control_totals_taz.csv")
    tract = taz.groupby("TRACTCE")[["HHBASE", "HHSIZE1", "HHSIZE2", "HHSIZE3", "HHSIZE4", "OSUNFAM"]].sum()
    tract = tract.join(taz.groupby("TRACTCE")[["HHINC1", "HHINC2", "HHINC3", "HHINC4"]].sum())
    tract["GQUNIV"] = np.rint(tract["OSUNFAM"] / 3).astype(int)
    tract["HHGQ"] = tract["HHBASE"] + tract["GQUNIV"]
    tract["HHSIZE1GQ"] = tract["HHSIZE1"] + tract["GQUNIV"]
    tract.rename_axis("TRACT").reset_index().to_csv(data / "control_totals_tract_gq.csv", index=False)
    return root


def test_group_quarters_are_one_person_units_counted_by_their_own_controls(tmp_path):
    root = _gq_project(tmp_path / "calm_gq")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(root), "--seed", "1", "--out", str(out), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    totals = pd.read_csv(root / "data" / "control_totals_tract_gq.csv").set_index("TRACT")
    households = pd.read_csv(out / "households.csv")
    persons = pd.read_csv(out / "persons.csv")
    gq = households["TYPE"] == 3
    # every tract gets its households and its university GQ residents, each GQ unit one person of gqtype 1
    assert households.groupby("TRACT").size().to_dict() == totals["HHGQ"].to_dict()
    placed = households[gq].groupby("TRACT").size().reindex(totals.index, fill_value=0)
    assert (placed - totals["GQUNIV"]).abs().max() <= 1 and placed.sum() == pytest.approx(totals["GQUNIV"].sum(), 0.01)
    members = persons.groupby("household_id").size()
    assert (households.loc[gq, "NP"] == 1).all() and (members.loc[households.loc[gq, "household_id"]] == 1).all()
    in_gq = persons["household_id"].isin(households.loc[gq, "household_id"])
    assert (persons.loc[in_gq, "gqtype"] == 1).all() and (persons.loc[~in_gq, "gqtype"] == 0).all()
    # household controls count housing units only (TYPE == 1): met as PopulationSim's CALM run meets income
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    fit = {c["control"]: c["pct_rmse"] for c in report["controls"]}
    assert fit["num_hh"] == 0 and fit["gq_type_univ"] < 0.5
    # measured: income at most 0.06 %RMSE over the tracts, the sizes 0 (PopulationSim's CALM run: 3.93 at TAZ)
    assert max(fit[f"hh_inc_{k}"] for k in ("15", "15_30", "30_60", "60_plus")) < 0.5
    assert max(fit[f"hh_size_{k}"] for k in ("1_gq", "2", "3", "4_plus")) < 0.5
