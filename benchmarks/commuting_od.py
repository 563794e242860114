"""Commuting OD matrices of two real counties: Synthor's trips against LODES 2018 and the gravity model (issue #24).

For each county of ``../shared/data/commuting`` (Travis County TX, 218 tracts; Manhattan, 288 tracts) a person
project is derived the way ``examples/travis_commuting`` is (its ``derive.py`` on the county's folder, its
``synthor.toml`` with the county's population size), and ``python -m synthor_core run`` synthesizes persons and their
home -> work -> home tours. Every run is its own subprocess, one after the other; wall seconds and peak memory (max
RSS of that child, from ``os.wait4``) are measured here. Measured:

- **full OD**: the LODES home -> work matrix is a target. CPC and SRMSE of the synthesized home -> work matrix
  (first trips of ``trips.csv``, dense n x n over the tracts, SRMSE over all n * n cells) are recomputed here from
  the files, and every commuter's tour is checked for a chain (first trip leaves home, the second leaves where the
  first arrived and returns home, departing later; ``HH:MM`` past 24:00 counts as the next day);
- **held out**: the OD matrix is not a target; the project gets only what a planner has without it, all from
  LODES: productions (row sums, ``origin``), attractions (column sums, ``destination``), a trip-length
  distribution (``distance`` bands) and / or ``[trips] mean_km`` (the LODES mean trip length on the distance matrix
  the reader builds, intrazonal pairs at the within-disc estimate). Variants: P + A + mean km (maximum entropy with
  a distance cost: the exponential gravity model), P + A + TLD, P + A + TLD + mean km, and the last with the trips
  within a tract counted apart from the bands (a ``within zone`` row of the TLD: the intrazonal share a travel survey
  gives; the bands then count the trips between tracts);
- **baselines**: the doubly-constrained gravity model (:func:`synthor_core.priors.trips.fit_gravity`, exponential
  and power deterrence) on the same productions, attractions, distances and mean trip length, scored as the
  real-valued matrix (the synthesized matrices are integers; the matrix rounded to integers per origin is scored
  too).

Scores: CPC (common part of commuters, :func:`synthor_core.metrics.cpc`) and SRMSE
(:func:`synthor_core.metrics.srmse`) against the LODES matrix. Prints one markdown table per county and the
acceptance checks (full-OD CPC >= 0.99; Manhattan's full-OD run <= 2 minutes and < 2 GiB).

Run: ``python benchmarks/commuting_od.py [--seed 1] [--county travis manhattan] [--json PATH] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from populationsim_calm import timed  # noqa: E402  (a child's wall seconds and peak memory; this folder)

from synthor_core.metrics import cpc, srmse  # noqa: E402
from synthor_core.priors.trips import fit_gravity  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "commuting"
EXAMPLE = ROOT / "examples" / "travis_commuting"
COUNTIES = {  # key: (source folder, name, short name)
    "travis": ("48453_travis_tx", "Travis County, Texas (Austin)", "Travis County TX"),
    "manhattan": ("36061_new_york_ny", "New York County, New York (Manhattan)", "New York County NY (Manhattan)"),
}
BANDS_KM = [*range(31), 35, 40, 50, 60, 80]  # trip-length bands; the last edge is raised above the longest pair
VARIANTS = {  # held-out runs: the tables (and mean km) replacing the OD table; whether the TLD counts the trips
    # within a tract apart from its bands (a "within zone" row: a survey's intrazonal share)
    "P + A + mean km": (("productions", "attractions"), True, False),
    "P + A + TLD": (("productions", "attractions", "trip_lengths"), False, False),
    "P + A + TLD + mean km": (("productions", "attractions", "trip_lengths"), True, False),
    "P + A + TLD with intrazonal + mean km": (("productions", "attractions", "trip_lengths"), True, True),
}
ACCEPT_CPC, ACCEPT_SECONDS, ACCEPT_MIB = 0.99, 120.0, 2048.0


def _derive_module():
    spec = importlib.util.spec_from_file_location("travis_commuting_derive", EXAMPLE / "derive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project(key: str, folder: Path) -> int:
    """Derive the county's project into ``folder`` (data/ from derive.py, synthor.toml from the example with the
    county's size and wording); returns the population size."""
    source, name, short = COUNTIES[key]
    _derive_module().derive(DATA / source, folder)
    size = int(pd.read_csv(folder / "data" / "persons_by_tract_sex_age.csv", usecols=["count"])["count"].sum())
    text = (EXAMPLE / "synthor.toml").read_text(encoding="utf-8")
    header = (
        f"# Synthor person project with trips: the residents of {name} by census tract,\n"
        "# and every commuter's day: home to work and back. Written by benchmarks/commuting_od.py from\n"
        f"# examples/travis_commuting (its derive.py on ../shared/data/commuting/{source}); departure times\n"
        "# (United States), modes and speeds (Austin) are the example's, kept as they are.\n"
    )
    text = re.sub(r"\A(#[^\n]*\n)+", lambda _: header, text)
    text = re.sub(r"(?m)^size = \d+$", f"size = {size}", text, count=1)
    text = re.sub(
        r'(?m)^description = "Residents of Travis County TX by census tract[^\n]*$',
        lambda _: f'description = "Residents of {short} by census tract (ACS), commuters\' work trips (LODES 2018)"',
        text,
        count=1,
    )
    text = text.replace("Works in Travis County and lives there", f"Works in {short} and lives there")
    spec = tomllib.loads(text)
    assert spec["population"]["size"] == size and short in spec["population"]["description"]
    (folder / "synthor.toml").write_text(text, encoding="utf-8")
    return size


def _held_out(full: Path, folder: Path, tables: tuple[str, ...], mean_km: float | None, bands: list[float]) -> None:
    """A copy of the project whose OD table is replaced by the LODES tables named in ``tables`` (and mean_km)."""
    shutil.copytree(full, folder, ignore=shutil.ignore_patterns("od_home_to_work.csv"))
    text = (full / "synthor.toml").read_text(encoding="utf-8")
    text, removed = re.subn(
        r'\[\[trips\.tables\]\]\nname = "od_home_to_work"\n.*?\n\n(?=\[\[trips\.tables\]\])', "", text, flags=re.S
    )
    assert removed == 1, "the OD table block of synthor.toml was not found"
    if mean_km is not None:
        text, added = re.subn(r"(?m)^\[trips\]\n", lambda m: f"{m.group(0)}mean_km = {mean_km!r}\n", text)
        assert added == 1
    source = "LODES 2018 via CommutingODGen-Dataset, MIT; held-out benchmark"
    blocks = {
        "productions": ('["origin"]', ""),
        "attractions": ('["destination"]', ""),
        "trip_lengths": ('["distance"]', f"bins = [{', '.join(f'{b:g}' for b in bands)}]\n"),
    }
    for name in tables:
        variables, extra = blocks[name]
        text += (
            f'\n[[trips.tables]]\nname = "{name}"\nfile = "data/{name}.csv"\nvariables = {variables}\n{extra}'
            f'count_column = "workers"\nsource = "{source}"\n'
        )
    names = [t["name"] for t in tomllib.loads(text)["trips"]["tables"]]
    assert names == ["departure", "mode", *tables], names
    (folder / "synthor.toml").write_text(text, encoding="utf-8")


def _bands(distance: np.ndarray) -> list[float]:
    """BANDS_KM up to the longest zone pair, the last edge above it (every pair, so every trip, in a band)."""
    longest = float(distance.max())
    edges = [b for b in BANDS_KM if b <= longest]
    above = [b for b in BANDS_KM if b > longest]
    return [*edges, above[0] if above else float(np.floor(longest) + 1)]


def _write_planner_tables(
    folder: Path, zones: tuple[str, ...], od: np.ndarray, distance: np.ndarray, bands, within_zone: bool = False
) -> None:
    """Productions, attractions and the trip-length distribution of ``od`` as the held-out project's tables; with
    ``within_zone`` the trips within a tract are a row of their own (``within zone``), not in the bands."""
    data = folder / "data"
    pd.DataFrame({"origin": zones, "workers": od.sum(axis=1).astype(np.int64)}).to_csv(
        data / "productions.csv", index=False
    )
    pd.DataFrame({"destination": zones, "workers": od.sum(axis=0).astype(np.int64)}).to_csv(
        data / "attractions.csv", index=False
    )
    edges = np.asarray(bands, dtype=np.float64)
    band = np.searchsorted(edges, distance, side="right") - 1
    assert band.min() >= 0 and band.max() < edges.size - 1, "a zone pair outside the trip-length bands"
    labels = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])]
    if within_zone:
        band = np.where(np.eye(len(zones), dtype=bool), edges.size - 1, band)
        labels.append("within zone")
    workers = np.bincount(band.reshape(-1), weights=od.reshape(-1), minlength=len(labels)).astype(np.int64)
    pd.DataFrame({"distance": labels, "workers": workers}).to_csv(data / "trip_lengths.csv", index=False)


def _lodes(key: str, zones: tuple[str, ...]) -> np.ndarray:
    ids = {"origin_geoid": str, "destination_geoid": str}
    od = pd.read_csv(DATA / COUNTIES[key][0] / "od.csv", dtype=ids)
    index = pd.Index(zones)
    o, d = index.get_indexer(od["origin_geoid"]), index.get_indexer(od["destination_geoid"])
    assert (o >= 0).all() and (d >= 0).all()
    matrix = np.zeros((len(zones), len(zones)))
    np.add.at(matrix, (o, d), od["workers"].to_numpy(dtype=np.float64))
    return matrix


def _synthesized(out: Path, zones: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """The home -> work matrix of a run (first trips of trips.csv) and the share of commuters whose tour chains."""
    index = pd.Index(zones)
    trips = pd.read_csv(
        out / "trips.csv",
        usecols=["person_id", "trip_num", "origin", "destination", "depart"],
        dtype={"origin": str, "destination": str, "depart": str},
    )
    persons = pd.read_csv(out / "persons.csv", usecols=["person_id", "commuter", "home_tract"], dtype=str)
    persons["person_id"] = persons["person_id"].astype(np.int64)
    first = trips[trips["trip_num"] == 1]
    o, d = index.get_indexer(first["origin"]), index.get_indexer(first["destination"])
    assert (o >= 0).all() and (d >= 0).all()
    matrix = np.zeros((len(zones), len(zones)))
    np.add.at(matrix, (o, d), 1.0)

    clock = trips["depart"].str.split(":", expand=True).astype(np.int64)
    trips["minutes"] = clock[0] * 60 + clock[1]
    travellers = persons.loc[persons["commuter"] == "yes", ["person_id", "home_tract"]].set_index("person_id")
    one = trips[trips["trip_num"] == 1].set_index("person_id")
    two = trips[trips["trip_num"] == 2].set_index("person_id")
    n_trips = trips.groupby("person_id").size()
    second = two[["origin", "destination", "minutes"]].add_suffix("_2")
    t = travellers.join(one[["origin", "destination", "minutes"]]).join(second)
    t["n"] = n_trips.reindex(t.index).fillna(0)
    chained = (
        (t["n"] == 2)
        & (t["origin"] == t["home_tract"])
        & (t["origin_2"] == t["destination"])
        & (t["destination_2"] == t["home_tract"])
        & (t["minutes_2"] > t["minutes"])
    )
    strangers = np.setdiff1d(trips["person_id"].unique(), travellers.index.to_numpy()).size  # trips of non-commuters
    assert strangers == 0, f"{strangers} persons who are not commuters have trips"
    return matrix, float(chained.mean()) if len(t) else 1.0


def _score(lodes: np.ndarray, matrix: np.ndarray, distance: np.ndarray) -> dict:
    return {
        "cpc": cpc(lodes, matrix),
        "srmse": srmse(lodes, matrix),
        "mean_km": float((matrix * distance).sum() / matrix.sum()),
        "total": float(matrix.sum()),
    }


def _rounded(matrix: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``matrix`` rounded to integers per row, each row summing to its total (largest remainders)."""
    base = np.floor(matrix)
    short = (totals - base.sum(axis=1)).round().astype(np.int64)
    order = np.argsort(-(matrix - base), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(matrix.shape[1])[None, :].repeat(matrix.shape[0], axis=0), axis=1)
    return base + (rank < short[:, None])


def _run(folder: Path, out: Path, seed: int) -> tuple[float, float, dict]:
    """One run of the CLI: (wall seconds, peak MiB, what is kept of its report: trips, warnings, person fit)."""
    command = [sys.executable, "-m", "synthor_core", "run", str(folder), "--seed", str(seed), "--out", str(out)]
    seconds, peak = timed([*command, "--quiet"], ROOT)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    kept = {"warnings": report["warnings"], "persons_max_tvd": report["max_tvd"], "stop_reason": report["stop_reason"]}
    return seconds, peak, {**report["trips"], "run": kept}


def county(key: str, work: Path, seed: int) -> dict:
    folder = work / key / "full_od"
    size = _project(key, folder)
    project = load_project(folder)
    zones, distance = project.trips.zones, project.trips.distance
    lodes = _lodes(key, zones)
    mean_km = float((lodes * distance).sum() / lodes.sum())
    bands = _bands(distance)
    rows: dict[str, dict] = {}

    out = work / key / "out_full_od"
    seconds, peak, fit = _run(folder, out, seed)
    matrix, chains = _synthesized(out, zones)
    rows["Synthor, OD table as target"] = {
        **_score(lodes, matrix, distance),
        "seconds": seconds,
        "peak_mib": peak,
        "chains": chains,
        "report_cpc": fit["tables"]["od_home_to_work"]["cpc"],
        "report_srmse": fit["tables"]["od_home_to_work"]["srmse"],
        "report_chains": fit["chains"]["consistent_share"],
        "trips_report": fit,
    }
    shutil.rmtree(out)
    held = {}
    for label, (tables, with_mean, within_zone) in VARIANTS.items():
        variant = work / key / re.sub(r"\W+", "_", label.lower()).strip("_")
        _held_out(folder, variant, tables, mean_km if with_mean else None, bands)
        _write_planner_tables(variant, zones, lodes, distance, bands, within_zone)
        out = variant.with_name(variant.name + "_out")
        seconds, peak, fit = _run(variant, out, seed)
        matrix, chains = _synthesized(out, zones)
        held[label] = matrix
        rows[f"Synthor, {label} (OD held out)"] = {
            **_score(lodes, matrix, distance),
            "seconds": seconds,
            "peak_mib": peak,
            "chains": chains,
            "report_chains": fit["chains"]["consistent_share"],
            "trips_report": fit,
        }
        shutil.rmtree(out)
    productions, attractions = lodes.sum(axis=1), lodes.sum(axis=0)
    gravity = {}
    for form in ("exponential", "power"):
        started = time.perf_counter()
        model = fit_gravity(productions, attractions, distance, mean_km, form)
        seconds = time.perf_counter() - started
        gravity[form] = model
        rows[f"gravity, {form} (real-valued)"] = {
            **_score(lodes, model.trips, distance),
            "seconds": seconds,
            "beta": model.beta,
        }
        rows[f"gravity, {form}, rounded per origin"] = _score(lodes, _rounded(model.trips, productions), distance)
    exp_beta = (
        rows["Synthor, P + A + mean km (OD held out)"]["trips_report"]["prior"].get("distance_decay", {}).get("beta")
    )
    return {
        "county": COUNTIES[key][1],
        "folder": COUNTIES[key][0],
        "tracts": len(zones),
        "persons": size,
        "lodes_workers": int(lodes.sum()),
        "lodes_mean_km": mean_km,
        "bands_km": bands,
        "rows": rows,
        "check_maxent_equals_gravity": {
            "cpc_synthor_vs_exp_gravity": cpc(gravity["exponential"].trips, held["P + A + mean km"]),
            "synthor_decay_per_km": exp_beta,
            "gravity_beta_per_km": gravity["exponential"].beta,
        },
    }


def _print(result: dict) -> None:
    print(
        f"{result['county']}: {result['tracts']} tracts, {result['persons']:,} persons, "
        f"{result['lodes_workers']:,} LODES workers, LODES mean trip {result['lodes_mean_km']:.2f} km (intrazonal "
        f"pairs at the within-disc estimate); trip-length bands {result['bands_km'][0]:g}..{result['bands_km'][-1]:g} "
        f"km ({len(result['bands_km']) - 1} bands)\n"
    )
    print("| method | CPC | SRMSE | mean km | trips | chains consistent | seconds | peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in result["rows"].items():
        chains = f"{100 * r['chains']:.2f} %" if "chains" in r else "-"
        seconds = (f"{r['seconds']:.1f}" if r["seconds"] >= 1 else f"{r['seconds']:.3f}") if "seconds" in r else "-"
        peak = f"{r['peak_mib']:,.0f}" if "peak_mib" in r else "-"
        print(
            f"| {name} | {r['cpc']:.4f} | {r['srmse']:.4f} | {r['mean_km']:.2f} | {r['total']:,.0f} | {chains} | "
            f"{seconds} | {peak} |"
        )
    warned: dict[str, list[str]] = {}
    for name, r in result["rows"].items():
        for warning in r.get("trips_report", {}).get("run", {}).get("warnings", []):
            warned.setdefault(warning, []).append(name)
    for warning, names in warned.items():
        print(f"\nWarning of {len(names)} run(s) ({'; '.join(names)}): {warning}")
    full = result["rows"]["Synthor, OD table as target"]
    check = result["check_maxent_equals_gravity"]
    print(
        f"\nFull-OD run: {full['seconds']:.1f} s, peak {full['peak_mib']:,.0f} MiB, CPC {full['cpc']:.4f} (report.json "
        f"{full['report_cpc']:.4f}), SRMSE {full['srmse']:.4f} (report.json {full['report_srmse']:.4f}), "
        f"{100 * full['chains']:.2f} % of commuters' tours chain (report.json {100 * full['report_chains']:.2f} %). "
        f"P + A + mean km against the exponential gravity model: CPC {check['cpc_synthor_vs_exp_gravity']:.4f}, "
        f"decay {check['synthor_decay_per_km']} / km (gravity beta {check['gravity_beta_per_km']:.6f} / km). "
        "Gravity seconds: in this process (fit_gravity only); gravity rows are not integers, 'rounded per origin' "
        "rounds them to integers summing to each origin's workers (largest remainders).\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--county", nargs="+", choices=list(COUNTIES), default=list(COUNTIES))
    parser.add_argument("--json", type=Path, default=None, help="write the numbers to this file")
    parser.add_argument("--work", type=Path, default=None, help="keep the derived projects here (default: a temp dir)")
    args = parser.parse_args()
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for key in args.county:
            results[key] = county(key, work, args.seed)
            _print(results[key])
    print("Acceptance\n")
    print("| check | value | met |")
    print("|---|---|---|")
    for key, result in results.items():
        full = result["rows"]["Synthor, OD table as target"]
        seconds, peak = full["seconds"], full["peak_mib"]
        rows = result["rows"]
        held = max((r["cpc"], name) for name, r in rows.items() if "(OD held out)" in name)
        gravity = max((r["cpc"], name) for name, r in rows.items() if name.startswith("gravity"))
        checks = [
            (f"full-OD CPC >= {ACCEPT_CPC}", f"{full['cpc']:.4f}", full["cpc"] >= ACCEPT_CPC),
            ("tours chained", f"{100 * full['chains']:.2f} %", full["chains"] == 1.0),
            (
                "held out: Synthor's best CPC >= the gravity model's best",
                f"{held[0]:.4f} ({held[1]}) vs {gravity[0]:.4f} ({gravity[1]})",
                held[0] >= gravity[0],
            ),
        ]
        if key == "manhattan":
            checks += [
                (f"full-OD run <= {ACCEPT_SECONDS:.0f} s (wall)", f"{seconds:.1f} s", seconds <= ACCEPT_SECONDS),
                (f"full-OD peak < {ACCEPT_MIB:,.0f} MiB", f"{peak:,.0f} MiB", peak < ACCEPT_MIB),
            ]
        for check, value, met in checks:
            print(f"| {key}: {check} | {value} | {'yes' if met else 'NO'} |")
    total = time.perf_counter() - started
    print(f"\n{os.cpu_count()} cores; seed {args.seed}; {time.strftime('%Y-%m-%d')}; {total:.0f} s in all")
    if args.json:
        args.json.write_text(
            json.dumps({"seed": args.seed, "seconds": total, "counties": results}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
