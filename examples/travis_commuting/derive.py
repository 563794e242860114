"""Build examples/travis_commuting from the commuting data of ../shared/data/commuting/48453_travis_tx.

Run from the repository root: ``python examples/travis_commuting/derive.py [SOURCE_FOLDER]``. It writes the files of
``data/`` (the same bytes on every run); ``synthor.toml``, ``rules.toml`` and ``README.md`` are written by hand.

Sources (README.md has the details and the licence):
- tracts, ACS tables, LODES 2018 OD matrix, distances and polygons: CommutingODGen-Dataset (MIT), as prepared in
  ../shared/data/commuting (its README);
- departure times: Census 2000 (SF3), time leaving home to go to work, United States, percent of workers;
- modes: ACS 2005 Transportation Profile of the Austin-Round Rock TX Metro Area (FHWA), table 4, workers by mode.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[1].parent / "shared" / "data" / "commuting" / "48453_travis_tx"
AGE_BANDS = [
    ("under_5_years", 0, 5),
    ("5_to_9_years", 5, 10),
    ("10_to_14_years", 10, 15),
    ("15_to_19_years", 15, 20),
    ("20_to_24_years", 20, 25),
    ("25_to_29_years", 25, 30),
    ("30_to_34_years", 30, 35),
    ("35_to_39_years", 35, 40),
    ("40_to_44_years", 40, 45),
    ("45_to_49_years", 45, 50),
    ("50_to_54_years", 50, 55),
    ("55_to_59_years", 55, 60),
    ("60_to_64_years", 60, 65),
    ("65_to_69_years", 65, 70),
    ("70_to_74_years", 70, 75),
    ("75_to_79_years", 75, 80),
    ("80_to_84_years", 80, 85),
    ("85_years_and_over", 85, 99),
]
# Census 2000 SF3, "Time leaving home to go to work", United States, % of workers 16+ (the row "United States" of
# http://www.sccommunityprofiles.org/tables/timewk00p.asp); "work from home" (3.3 %) left out: every LODES worker
# of the example travels.
DEPARTURE_PERCENT = [
    ("00:00-05:00", 3.3),
    ("05:00-05:30", 2.9),
    ("05:30-06:00", 4.4),
    ("06:00-06:30", 8.4),
    ("06:30-07:00", 10.4),
    ("07:00-07:30", 14.5),
    ("07:30-08:00", 15.3),
    ("08:00-08:30", 10.5),
    ("08:30-09:00", 5.1),
    ("09:00-10:00", 5.3),
    ("10:00-11:00", 2.2),
    ("11:00-12:00", 1.1),
    ("12:00-16:00", 6.6),
    ("16:00-24:00", 6.6),
]
# ACS 2005 Transportation Profile, Austin-Round Rock TX Metro Area, table 4 "Mode to work by vehicles available",
# all households, workers (https://www.fhwa.dot.gov/planning/census_issues/american_community_survey/products/
# 2005_transportation_profiles/table_3_to_table_8/numbers/austin_round_rock_tx_metro_area.cfm); "worked at home"
# (35,981) left out.
MODE_WORKERS = [
    ("drove alone", 550_839),
    ("carpooled", 82_482),
    ("public transportation", 19_750),
    ("other means", 26_771),
]


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``shares`` summing to ``total`` (largest remainders, ties by position)."""
    if total <= 0 or shares.sum() <= 0:
        return np.zeros(shares.size, dtype=np.int64)
    quota = shares / shares.sum() * total
    base = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - base), kind="stable")
    base[order[: total - base.sum()]] += 1
    return base


def derive(source: Path, out: Path) -> None:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    ids = {"tract_geoid": str, "origin_geoid": str, "destination_geoid": str}
    tracts = pd.read_csv(source / "tracts.csv", dtype=ids)
    od = pd.read_csv(source / "od.csv", dtype=ids)
    workers = od.groupby("origin_geoid")["workers"].sum().reindex(tracts["tract_geoid"]).fillna(0).astype(int)
    workers.index = tracts["tract_geoid"]

    zones = tracts[["tract_geoid", "centroid_lon", "centroid_lat", "area_km2", "total_population"]].rename(
        columns={"tract_geoid": "home_tract", "centroid_lon": "lon", "centroid_lat": "lat"}
    )
    zones.to_csv(data / "tracts.csv", index=False)

    # persons by tract, sex and age: the ACS age shares of each sex times the tract's men and women (integers per
    # tract that sum to them). LODES counts jobs: where a tract's LODES resident workers outnumber its ACS residents
    # who may work (aged 20+, and 4 in 5 of those 15-19: the rule says 16), the missing persons are added aged 20-64
    # as the county's persons of 20-64 (the airport tract of Travis, ACS 0 and 46 workers; 13 tracts of Manhattan)
    county = {}
    for sex, column in (("male", "male_population"), ("female", "female_population")):
        shares = tracts[[f"{name}_{sex}" for name, _, _ in AGE_BANDS]].to_numpy(dtype=float)
        weights = shares * tracts[column].to_numpy(dtype=float)[:, None]
        county[sex] = weights.sum(axis=0)
    working_age = np.concatenate([county["male"][4:13], county["female"][4:13]])  # ages 20-64, men then women
    rows = []
    commuters = []
    for _, tract in tracts.iterrows():
        tract_id = tract["tract_geoid"]
        counts = {}
        for sex, column in (("male", "male_population"), ("female", "female_population")):
            shares = np.array([tract[f"{name}_{sex}"] for name, _, _ in AGE_BANDS], dtype=float)
            counts[sex] = _largest_remainder(shares, int(tract[column]))
        resident_workers = int(workers[tract_id])
        may_work = sum(int(c[4:].sum()) + int(0.8 * c[3]) for c in counts.values())
        if resident_workers > may_work:
            extra = _largest_remainder(working_age, resident_workers - may_work)
            counts["male"][4:13] += extra[:9]
            counts["female"][4:13] += extra[9:]
        for sex in ("male", "female"):
            for (_, low, high), n in zip(AGE_BANDS, counts[sex], strict=True):
                closing = "]" if high == 99 else ")"  # the last band holds the variable's max
                rows.append((tract_id, sex, f"[{low}, {high}{closing}", int(n)))
        people = {sex: int(c.sum()) for sex, c in counts.items()}
        total = people["male"] + people["female"]
        commuters += [(tract_id, "yes", resident_workers), (tract_id, "no", total - resident_workers)]
    pd.DataFrame(rows, columns=["home_tract", "sex", "age", "count"]).to_csv(
        data / "persons_by_tract_sex_age.csv", index=False
    )
    pd.DataFrame(commuters, columns=["home_tract", "commuter", "count"]).to_csv(
        data / "commuters_by_tract.csv", index=False
    )
    od.rename(columns={"origin_geoid": "origin", "destination_geoid": "destination"}).to_csv(
        data / "od_home_to_work.csv", index=False
    )
    distance = pd.read_csv(source / "distance.csv", dtype=ids)
    distance.rename(columns={"origin_geoid": "origin", "destination_geoid": "destination"}).to_csv(
        data / "distance.csv", index=False
    )
    pd.DataFrame(DEPARTURE_PERCENT, columns=["depart", "percent"]).to_csv(data / "departure.csv", index=False)
    pd.DataFrame(MODE_WORKERS, columns=["mode", "workers"]).to_csv(data / "mode.csv", index=False)
    shutil.copyfile(source / "tracts.geojson", data / "tracts.geojson")
    shutil.copyfile(source.parent / "LICENSE.txt", out / "LICENSE.txt")


if __name__ == "__main__":
    derive(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE, HERE)
