"""One engine against two (issue 20): CALM through the household loop against the same CALM through the two-engine
version it replaced (a git worktree of commit b3263d7, run side by side in this benchmark), prior by prior.

Rows: the seed and the maxent prior, seeds 1-6 (mean worst %RMSE of each control group and median wall seconds of
``python -m synthor_core run examples/calm``, each version from its own checkout), and the LLM prior against the
local knowing endpoint (tests/llm_endpoint, answering from CALM's sample; 1,000 households), where the calls and
realism (mean TVD of the tables no control fixes, against the sample) are compared too.

Data: examples/calm (PopulationSim's CALM example, ACS PUMS, BSD-3-Clause).
Run: ``python benchmarks/one_engine.py [--seeds 1 2 3]`` from a git clone (about 9 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from populationsim_calm import GROUPS  # noqa: E402

from llm_endpoint.server import TestEndpoint  # noqa: E402
from synthor_core.readers.households import load_household_project  # noqa: E402

BASELINE = "b3263d7"  # the last commit with two engines (households.py beside engine.py)
CALM = "examples/calm"


def checkout(commit: str, folder: Path) -> Path:
    """A detached worktree of ``commit`` in ``folder`` (removed by :func:`remove`)."""
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(folder), commit], cwd=ROOT, check=True, capture_output=True
    )
    return folder


def remove(folder: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, capture_output=True)


def run(code: Path, prior: str, seed: int, out: Path, *extra: str) -> tuple[dict, float]:
    """``python -m synthor_core run`` from checkout ``code``; (report, wall seconds)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(code / CALM), "--prior", prior, "--seed", str(seed)]
        + ["--out", str(out), "--quiet", *extra],
        cwd=code,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{code.name} {prior} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text(encoding="utf-8")), seconds


def worst(report: dict) -> dict[str, float]:
    fit = {c["control"]: c["pct_rmse"] for c in report["controls"]}
    return {group: max(fit[c] for c in controls) for group, controls in GROUPS.items()}


def llm_calls(report: dict) -> int:
    return int(report["prior_notes"]["llm"]["calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"two engines (b3263d7)": checkout(BASELINE, Path(tmp) / "baseline"), "one engine": ROOT}
        try:
            for prior in ("seed", "maxent"):
                for label, code in versions.items():
                    fits, seconds = [], []
                    for seed in args.seeds:
                        report, took = run(code, prior, seed, Path(tmp) / f"{prior}-{seed}-{len(rows)}")
                        fits.append(worst(report))
                        seconds.append(took)
                        print(f"{label} {prior} seed {seed}: {took:.1f} s", file=sys.stderr, flush=True)
                    rows.append(
                        {
                            "prior": prior,
                            "version": label,
                            "fit": {g: statistics.mean(f[g] for f in fits) for g in GROUPS},
                            "per_seed": fits,
                            "seconds": statistics.median(seconds),
                        }
                    )
            sample = load_household_project(ROOT / CALM).sample
            for label, code in versions.items():
                with TestEndpoint(seed=1, households=(sample.households, sample.persons)) as endpoint:
                    report, took = run(
                        code,
                        "llm",
                        1,
                        Path(tmp) / f"llm-{len(rows)}",
                        "--base-url",
                        endpoint.url,
                        "--model",
                        "calm",
                        "--api-key-env",
                        "SYNTHOR_NO_KEY",
                        "--max-retries",
                        "1",
                        "--distinct-records",
                        "1000",
                    )
                rows.append(
                    {
                        "prior": "llm",
                        "version": label,
                        "fit": worst(report),
                        "per_seed": [worst(report)],
                        "seconds": took,
                        "calls": llm_calls(report),
                        "realism": report["realism"]["mean_tvd"],
                        "llm_share": report["households_by_prior"].get("llm", 0) / report["households"],
                    }
                )
        finally:
            remove(versions["two engines (b3263d7)"])
    print(f"CALM (62,041 households), worst %RMSE per control group, mean over seeds {args.seeds} (llm: seed 1)\n")
    print("| prior | version | " + " | ".join(GROUPS) + " | seconds (median) | time / two engines |")
    print("|---|---|" + "---|" * (len(GROUPS) + 2))
    base = {r["prior"]: r["seconds"] for r in rows if r["version"].startswith("two")}
    for r in rows:
        print(
            f"| {r['prior']} | {r['version']} | "
            + " | ".join(f"{r['fit'][g]:.2f}" for g in GROUPS)
            + f" | {r['seconds']:.1f} | {r['seconds'] / base[r['prior']]:.2f} |"
        )
    print("\nWorst %RMSE of the head age and students groups, seed by seed\n")
    print("| prior | version | " + " | ".join(f"seed {s}: head age, students" for s in args.seeds) + " |")
    print("|---|---|" + "---|" * len(args.seeds))
    for r in rows:
        if r["prior"] != "llm":
            print(
                f"| {r['prior']} | {r['version']} | "
                + " | ".join(f"{f['head age (TAZ)']:.2f}, {f['students (TAZ)']:.2f}" for f in r["per_seed"])
                + " |"
            )
    print("\nThe LLM prior (knowing endpoint, 1,000 households): calls, realism and the LLM's share of households\n")
    print("| version | LLM calls | realism mean TVD | households from the LLM |")
    print("|---|---|---|---|")
    for r in rows:
        if r["prior"] == "llm":
            print(f"| {r['version']} | {r['calls']:,} | {r['realism']:.3f} | {r['llm_share']:.1%} |")


if __name__ == "__main__":
    main()
