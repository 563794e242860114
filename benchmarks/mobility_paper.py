"""The paper's mobility task as a controlled benchmark (issue #24; PAPER.md §5.3: 30,000 trips on a 2 km grid, 7 time
bins, OD matrices per time bin from one source and time x activity from another, a what-if concert).

**The known generator** (written here, documented, no real data): a 24 x 16 km study area in 2 km cells (96 zones,
placed at Tokyo's latitude so maps read as maps); residents in a ring 7 km around the centre, jobs in a central
business district and a sub-centre, shops and restaurants where jobs and residents meet, schools where residents
are, leisure everywhere plus a stadium. 15,000 residents each make one tour: home -> activity -> home (30,000 trips).
The activity (work, school, shopping, eating, leisure, errand) has fixed shares; the departure bin depends on the
activity; the destination is drawn with weights = the activity's attraction x exp(-beta_activity x km); the mode
depends on the distance band (walk, bicycle, bus, train, car); the stay at the activity has a fixed length per
activity. Every probability is a constant below, so every table's expected counts (the **truth**) are exact.

**Targets** (what an analyst would have): persons per zone and the OD matrix of the outbound trips per time bin from
one sample of the generator (source 1), departure bin x activity from a second, independent sample (source 2), and
mode x distance band from the generator's published shares (a national travel survey's role), each harmonized to
source 1's totals as an analyst would. **Scored** on tables that were **not** targets: OD x mode and activity x
distance band (CPC, SRMSE), against the trips the tables came from (source 1: the 'real' day) and against the
generator's expectation, beside the baseline a planner without the OD matrix uses: the doubly-constrained gravity
model (fitted to the productions, the attractions and the mean trip length of source 1) with departure x activity
and mode x distance raked onto it (IPF). **What-if**: a concert at the stadium (20:00-24:00: 4,000 persons
departing 20:00-21:00, 3 h): the trips to the stadium's zone by hour, base and scenario.

Writes the paper's figures (departure x activity heatmap, the morning-peak OD, the flows, mode by distance, the
concert) as PNG through Chromium (``--figures``, default ``test-artifacts/mobility``; needs /usr/bin/chromium and
Playwright, else HTML only). Run: ``python benchmarks/mobility_paper.py [--seed 1] [--figures DIR] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthor_core.metrics import cpc, srmse  # noqa: E402
from synthor_core.priors.trips import CellTarget, fit_cells, fit_gravity  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402

COLUMNS, ROWS, CELL_KM = 12, 8, 2.0
LAT0, LON0 = 35.60, 139.62  # south-west corner (Tokyo's latitude)
N_PERSONS = 15_000
BINS = ["00:00-06:00", "06:00-09:00", "09:00-12:00", "12:00-15:00", "15:00-18:00", "18:00-21:00", "21:00-24:00"]
EDGES = [0, 360, 540, 720, 900, 1080, 1260, 1440]
ACTIVITIES = ["work", "school", "shopping", "eating", "leisure", "errand"]
SHARE = np.array([0.35, 0.12, 0.18, 0.12, 0.13, 0.10])
BETA = np.array([0.12, 0.60, 0.45, 0.35, 0.20, 0.50])  # 1/km
STAY_HOURS = {"work": 9.0, "school": 7.0, "shopping": 1.5, "eating": 1.5, "leisure": 3.0, "errand": 1.0}
DEPART = np.array(  # P(departure bin | activity), rows ACTIVITIES
    [
        [0.04, 0.70, 0.12, 0.05, 0.04, 0.03, 0.02],
        [0.00, 0.92, 0.06, 0.02, 0.00, 0.00, 0.00],
        [0.00, 0.03, 0.30, 0.30, 0.25, 0.10, 0.02],
        [0.01, 0.05, 0.10, 0.40, 0.06, 0.33, 0.05],
        [0.01, 0.04, 0.20, 0.25, 0.20, 0.22, 0.08],
        [0.00, 0.10, 0.35, 0.25, 0.22, 0.07, 0.01],
    ]
)
MODES = ["walk", "bicycle", "bus", "train", "car"]
SPEED = {"walk": 4.5, "bicycle": 12.0, "bus": 15.0, "train": 30.0, "car": 25.0}
BANDS = [0.0, 2.0, 5.0, 10.0, 100.0]
MODE_BY_BAND = np.array(  # P(mode | distance band)
    [
        [0.55, 0.25, 0.05, 0.05, 0.10],
        [0.10, 0.30, 0.20, 0.20, 0.20],
        [0.01, 0.07, 0.17, 0.45, 0.30],
        [0.0, 0.01, 0.09, 0.55, 0.35],
    ]
)
STADIUM = (8, 5)  # column, row of the stadium's cell


def zones() -> pd.DataFrame:
    """The 96 cells: id, centre (km), lon / lat, area, residents, jobs and the attraction of each activity."""
    cx, cy = np.meshgrid(np.arange(COLUMNS) * CELL_KM + 1, np.arange(ROWS) * CELL_KM + 1)
    x, y = cx.reshape(-1), cy.reshape(-1)
    centre = np.hypot(x - 12, y - 8)
    residents = 1 + 3 * np.exp(-((centre - 7) ** 2) / (2 * 3.0**2))
    jobs = 0.5 + 12 * np.exp(-(centre**2) / (2 * 2.0**2)) + 4 * np.exp(-(np.hypot(x - 19, y - 11) ** 2) / (2 * 1.5**2))
    stadium = (x == STADIUM[0] * CELL_KM + 1) & (y == STADIUM[1] * CELL_KM + 1)
    attraction = np.column_stack(
        [jobs, residents, np.sqrt(jobs * residents), np.sqrt(jobs * residents) + 0.3 * jobs, 1 + 4 * stadium, residents]
    )
    frame = pd.DataFrame(
        {
            "zone": [f"z{r:02d}{c:02d}" for r in range(ROWS) for c in range(COLUMNS)],
            "x_km": x,
            "y_km": y,
            "lon": LON0 + x / (111.320 * math.cos(math.radians(LAT0))),
            "lat": LAT0 + y / 110.574,
            "area": CELL_KM**2,
            "residents": residents,
            "jobs": jobs,
        }
    )
    for k, name in enumerate(ACTIVITIES):
        frame[f"attract_{name}"] = attraction[:, k]
    return frame


def distances(z: pd.DataFrame) -> np.ndarray:
    """km between centres; within a cell, the mean distance of two points of a disc of its area (128 r / 45 pi)."""
    d = np.hypot(
        z["x_km"].to_numpy()[:, None] - z["x_km"].to_numpy()[None, :],
        z["y_km"].to_numpy()[:, None] - z["y_km"].to_numpy()[None, :],
    )
    np.fill_diagonal(d, 128 / (45 * math.pi) * math.sqrt(CELL_KM**2 / math.pi))
    return d


def truth(z: pd.DataFrame, d: np.ndarray) -> np.ndarray:
    """Expected outbound trips, shape (home, activity, departure bin, destination, mode), summing to N_PERSONS."""
    home = z["residents"].to_numpy() / z["residents"].sum()
    dest = np.stack([z[f"attract_{a}"].to_numpy()[None, :] * np.exp(-BETA[k] * d) for k, a in enumerate(ACTIVITIES)], 1)
    dest /= dest.sum(axis=2, keepdims=True)  # (home, activity, destination)
    band = np.searchsorted(BANDS, d, side="right") - 1
    mode = MODE_BY_BAND[band]  # (home, destination, mode)
    t = N_PERSONS * home[:, None, None, None, None] * SHARE[None, :, None, None, None] * DEPART[None, :, :, None, None]
    return t * dest[:, :, None, :, None] * mode[:, None, None, :, :]


def sample(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One sample of N_PERSONS tours from the expected counts: a multinomial draw, same shape."""
    p = expected.reshape(-1) / expected.sum()
    return rng.multinomial(N_PERSONS, p).reshape(expected.shape).astype(np.float64)


def write_project(folder: Path, z: pd.DataFrame, d: np.ndarray, source1: np.ndarray, source2: np.ndarray) -> None:
    """A Synthor person project with trips from the two sources and the published mode shares."""
    data = folder / "data"
    data.mkdir(parents=True)
    ids = z["zone"].to_numpy()
    z[["zone", "lon", "lat", "area"]].to_csv(data / "zones.csv", index=False)
    i, j = np.indices(d.shape).reshape(2, -1)  # the generator's km (a centroid distance on lon / lat would put pairs
    # 2.000 km apart on either side of a band's edge)
    pd.DataFrame({"origin": ids[i], "destination": ids[j], "distance_km": d[i, j].round(6)}).to_csv(
        data / "distance.csv", index=False
    )
    persons = source1.sum(axis=(1, 2, 3, 4))
    pd.DataFrame({"zone": ids, "travels": "yes", "count": persons.astype(int)}).to_csv(
        data / "persons.csv", index=False
    )
    od = source1.sum(axis=(1, 4))  # (home, bin, destination)
    h, b, j = np.nonzero(od)
    pd.DataFrame(
        {"origin": ids[h], "destination": ids[j], "depart": np.array(BINS)[b], "count": od[h, b, j].astype(int)}
    ).to_csv(data / "od_by_time.csv", index=False)
    # source 2 harmonized as an analyst would: its activity shares within each bin times source 1's trips per bin
    ta = source2.sum(axis=(0, 3, 4))  # (activity, bin)
    ta = ta / np.maximum(ta.sum(axis=0, keepdims=True), 1) * source1.sum(axis=(0, 1, 3, 4))[None, :]
    a, b = np.nonzero(np.ones_like(ta))
    pd.DataFrame({"depart": np.array(BINS)[b], "purpose": np.array(ACTIVITIES)[a], "count": ta[a, b].round(3)}).to_csv(
        data / "time_activity.csv", index=False
    )
    # the published mode shares within each distance band, times source 1's trips per band (its OD and distances)
    band = np.searchsorted(BANDS, d, side="right") - 1
    trips_per_band = np.array([od.sum(axis=1)[band == k].sum() for k in range(len(BANDS) - 1)])
    by_band = MODE_BY_BAND * trips_per_band[:, None]
    rows = [
        (m, f"[{BANDS[k]:g}, {BANDS[k + 1]:g})", round(float(by_band[k, i]), 3))
        for k in range(len(BANDS) - 1)
        for i, m in enumerate(MODES)
    ]
    pd.DataFrame(rows, columns=["mode", "distance", "count"]).to_csv(data / "mode_distance.csv", index=False)
    stay = "\n".join(f"{k} = {v}" for k, v in STAY_HOURS.items())
    speed = "\n".join(f"{k} = {v}" for k, v in SPEED.items())
    (folder / "synthor.toml").write_text(
        f"""# The mobility benchmark's project (benchmarks/mobility_paper.py): written from its generator's samples.
[population]
size = {int(persons.sum())}

[zones]
file = "data/zones.csv"
level = "zone"

[[variables]]
name = "travels"
type = "categorical"
categories = ["yes"]

[[tables]]
name = "persons"
file = "data/persons.csv"
variables = ["zone", "travels"]

[trips]
who = 'travels == "yes"'
tour = ["activity", "home"]
purposes = {json.dumps(ACTIVITIES)}
modes = {json.dumps(MODES)}
distances = "data/distance.csv"

[trips.stay_hours_by_purpose]
{stay}

[trips.speed_kmh]
{speed}

[[trips.tables]]
name = "od_by_time"
file = "data/od_by_time.csv"
variables = ["origin", "destination", "depart"]
source = "source 1: the generator's first sample"

[[trips.tables]]
name = "time_activity"
file = "data/time_activity.csv"
variables = ["depart", "purpose"]
source = "source 2: the generator's second sample"

[[trips.tables]]
name = "mode_distance"
file = "data/mode_distance.csv"
variables = ["mode", "distance"]
bins = {json.dumps(BANDS)}
source = "the generator's mode shares by distance (a national survey's role)"
""",
        encoding="utf-8",
    )


def _concert(folder: Path) -> None:
    with (folder / "synthor.toml").open("a", encoding="utf-8") as f:
        z = f"z{STADIUM[1]:02d}{STADIUM[0]:02d}"
        event = f'name = "concert"\nzone = "{z}"\ndepart = "20:00-21:00"\ntrips = 4000\nstay_hours = 3\n'
        f.write(f"\n[[trips.events]]\n{event}")


def tables_of(trips: pd.DataFrame, ids, d) -> dict[str, np.ndarray]:
    """The scored tables of a run's trips.csv: OD x mode and activity x distance band (outbound trips)."""
    index = {z: i for i, z in enumerate(ids)}
    out = trips[trips["trip_num"] == 1]
    o, j = out["origin"].map(index).to_numpy(), out["destination"].map(index).to_numpy()
    m = out["mode"].map({x: i for i, x in enumerate(MODES)}).to_numpy()
    a = out["purpose"].map({x: i for i, x in enumerate(ACTIVITIES)}).to_numpy()
    odm = np.zeros((len(ids), len(ids), len(MODES)))
    np.add.at(odm, (o, j, m), 1)
    band = np.searchsorted(BANDS, d[o, j], side="right") - 1
    ad = np.zeros((len(ACTIVITIES), len(BANDS) - 1))
    np.add.at(ad, (a, band), 1)
    return {"od_mode": odm, "activity_distance": ad}


def expected_tables(t: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    odm = t.sum(axis=(1, 2))
    band = np.searchsorted(BANDS, d, side="right") - 1
    per = t.sum(axis=(2, 4))  # (home, activity, destination)
    ad = np.stack([per.transpose(1, 0, 2)[:, band == k].sum(axis=1) for k in range(len(BANDS) - 1)], axis=1)
    return {"od_mode": odm, "activity_distance": ad}


def gravity_baseline(z, d, source1, source2) -> dict[str, np.ndarray]:
    """The planner's baseline: a doubly-constrained gravity model on source 1's productions, attractions and mean
    trip length (exponential), then IPF of departure x activity and mode x distance band onto it."""
    od1 = source1.sum(axis=(1, 2, 4))
    mean = float((od1 * d).sum() / od1.sum())
    g = fit_gravity(od1.sum(axis=1), od1.sum(axis=0), d, mean, "exponential").trips  # (home, destination)
    n, na, nb, nm = len(z), len(ACTIVITIES), len(BINS), len(MODES)
    shape = (n, n, na, nb, nm)
    prior = np.broadcast_to(g[:, :, None, None, None], shape).reshape(-1).copy()
    idx = np.indices(shape).reshape(5, -1)
    band = (np.searchsorted(BANDS, d, side="right") - 1)[idx[0], idx[1]]
    ta = source2.sum(axis=(0, 3, 4))  # (activity, bin)
    modes = expected_by_band(z, d)
    w, _, _ = fit_cells(
        prior,
        [
            CellTarget("od", idx[0] * n + idx[1], g.reshape(-1)),
            CellTarget("time x activity", idx[2] * nb + idx[3], ta.reshape(-1)),
            CellTarget("mode x distance", band * nm + idx[4], modes.reshape(-1)),
        ],
    )
    w = w.reshape(shape)
    per = w.sum(axis=(3, 4))  # (home, destination, activity)
    bands = np.searchsorted(BANDS, d, side="right") - 1
    ad = np.stack([per[bands == k].sum(axis=0) for k in range(len(BANDS) - 1)], axis=1)
    return {"od_mode": w.sum(axis=(2, 3)), "activity_distance": ad}


def expected_by_band(z, d) -> np.ndarray:
    expected = truth(z, d).sum(axis=(1, 2))
    band = np.searchsorted(BANDS, d, side="right") - 1
    return np.stack([expected[band == k].sum(axis=0) for k in range(len(BANDS) - 1)])


def _run(folder: Path, out: Path, seed: int) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(folder), "--seed", str(seed), "--out", str(out), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0,):
        raise SystemExit(f"synthor failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started, json.loads((out / "report.json").read_text(encoding="utf-8"))


def figures(folder: Path, trips: pd.DataFrame, scenario: dict, z: pd.DataFrame, out: Path) -> list[Path]:
    """The paper's figures as HTML (plotly, offline) and PNG (Chromium, when present)."""
    from synthor_core import plots

    project = load_project(folder)
    assert project.trips is not None
    centroids = z.set_index("zone")[["lon", "lat"]]
    morning = trips[(trips["trip_num"] == 1) & trips["depart"].between("06:00", "08:59")]
    figs = {
        "time_activity": plots.departure_purpose_heatmap(trips),
        "morning_od": plots.od_heatmap(morning, project.trips.zones),
        "flows": plots.flow_map(trips[trips["trip_num"] == 1], centroids, top=300),
        "mode_distance": plots.mode_by_distance(trips[trips["trip_num"] == 1], MODES, bands=(0, 2, 5, 10, math.inf)),
        "concert": plots.event_comparison(scenario, "concert"),
    }
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for name, fig in figs.items():
        fig.update_layout(width=1000)
        path = out / f"mobility_{name}.html"
        fig.write_html(path, include_plotlyjs=True, full_html=True)
        pages.append(path)
    written = []
    try:
        from playwright.sync_playwright import sync_playwright  # type: ignore[import-not-found]
    except ImportError:
        from playwright.sync_api import sync_playwright
    if Path("/usr/bin/chromium").exists():
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1040, "height": 640})
            for path in pages:
                page.goto(path.as_uri())
                page.wait_for_selector(".main-svg")
                page.locator(".js-plotly-plot").first.screenshot(path=str(path.with_suffix(".png")))
                written.append(path.with_suffix(".png"))
            browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--figures", type=Path, default=ROOT / "test-artifacts" / "mobility")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    z = zones()
    d = distances(z)
    expected = truth(z, d)
    source1, source2 = sample(expected, rng), sample(expected, rng)
    want = expected_tables(expected, d)
    results = {}
    with tempfile.TemporaryDirectory(prefix="synthor-mobility-") as scratch:
        folder = Path(scratch) / "project"
        write_project(folder, z, d, source1, source2)
        seconds, report = _run(folder, Path(scratch) / "out", args.seed)
        trips = pd.read_csv(Path(scratch) / "out" / "trips.csv")
        got = tables_of(trips, z["zone"].to_numpy(), d)
        _concert(folder)
        seconds_event, report_event = _run(folder, Path(scratch) / "out_event", args.seed)
        concert = report_event["trips"]["events"]["concert"]
        written = figures(folder, trips, concert, z, args.figures)
    base = gravity_baseline(z, d, source1, source2)
    actual = {
        "od_mode": source1.sum(axis=(1, 2)),
        "activity_distance": expected_tables(source1, d)["activity_distance"],
    }
    print(
        f"Mobility benchmark (seed {args.seed}): {len(z)} zones of {CELL_KM:g} km, {N_PERSONS:,} tours, "
        f"{2 * N_PERSONS:,} trips\n"
    )
    print("Targets as fitted (the outbound trips of Synthor's maxent run):\n")
    print("| target table | TVD |\n|---|---|")
    for name, fit in report["trips"]["tables"].items():
        print(f"| {name} | {fit['tvd']:.4f} |")
    print(f"\nChains consistent: {report['trips']['chains']['consistent_share']:.2%}; {seconds:.1f} s\n")
    print(
        "Tables that were not targets, against the trips the tables came from (source 1, the 'real' day) and against "
        "the generator's expectation:\n"
    )
    print("| table | measure | against | Synthor maxent | gravity + IPF |\n|---|---|---|---|---|")
    for name, label in (("od_mode", "OD x mode"), ("activity_distance", "activity x distance band")):
        for against, truth_table in (("source 1", actual[name]), ("expectation", want[name])):
            for measure, f in (("CPC", cpc), ("SRMSE", srmse)):
                scale = truth_table.sum()

                def score(x, t=truth_table, f=f, scale=scale):
                    return f(t, x * (scale / x.sum()))

                r = {"synthor": score(got[name]), "gravity": score(base[name])}
                results[f"{name}_{against}_{measure}"] = r
                print(f"| {label} | {measure} | {against} | {r['synthor']:.4f} | {r['gravity']:.4f} |")
    hours = concert["trips_to_zone_by_hour"]
    print(
        f"\nWhat-if concert at {concert['zone']} (4,000 persons departing 20:00-21:00): trips to the zone departing "
        f"20:00-20:59 {hours['base'][20]:,} -> {hours['scenario'][20]:,}; over the day {sum(hours['base']):,} -> "
        f"{sum(hours['scenario']):,}; {report_event['trips']['chains']['consistent_share']:.2%} of the days chain "
        f"({seconds_event:.1f} s)"
    )
    shown = [str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in written]
    print("\nFigures: " + ", ".join(shown) if written else "\nFigures: HTML only (no Chromium)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "concert": concert, "report": report["trips"]}, indent=1))


if __name__ == "__main__":
    main()
