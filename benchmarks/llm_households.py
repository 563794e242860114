"""The LLM prior of households on CALM: calls against N, rejection rates, fit and realism next to seed and maxent.

Data: examples/calm (PopulationSim's CALM example, ACS PUMS seed households and persons, BSD-3-Clause). The "LLM"
is the local test endpoint (tests/llm_endpoint): it answers household requests with seed households meeting the
request's conditions, with their members (a stand-in for a model that knows the region), or, careless, with
random instances of the JSON schema and a quarter of its calls failing in seven ways.

Part 1, cost against N: every control total scaled so that about 10^4, 10^5 and 10^6 households are placed; the
LLM writes at most ``LLMSettings.distinct_records`` households in a run (typical households first, then households
for the control-zone pairs worst off, iteration by iteration), so calls and tokens do not follow N.

Part 2, CALM as it is (62,041 households), one full run per prior (``python -m synthor_core run``): worst %RMSE
per control group next to PopulationSim 0.10.0's own (shared/data/populationsim/README.md), the households the
LLM wrote and how many were rejected (the paper's household rejection rate, 13.3 % for GPT-4.1-nano, §5.5
Table 6; its person rejection rate, 6.3 %, is the share of written members breaking a person rule: here "a worker
is 16 or older"), the final population's rule breaches, and realism (mean TVD of every pair and triple of control
groups against the seed sample; lower = closer to the real joint).

Part 3, complete records (issue 21): realism over every pair of columns the records have (not only the control
groups), persons without an age, values outside the sample's codebook, households whose workers (NWESR) are not
the members with an occupation (OCCP != 999; in the sample they always are), households without a member aged 15
or older; maxent with and without the rules the sample's support implies (examples/calm lists them as
``[[rules]]`` named ``sample: ...``; the run without them drops those entries from a copy of the project).

Run: ``python benchmarks/llm_households.py``; prints markdown tables (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llm_endpoint.server import TestEndpoint  # noqa: E402
from synthor_core.priors.llm import LLMSettings  # noqa: E402
from synthor_core.readers.households import load_household_project  # noqa: E402
from synthor_testing import POPULATIONSIM_CALM_WORST_PCT_RMSE as POPULATIONSIM  # noqa: E402
from synthor_testing import run_households  # noqa: E402

CALM = ROOT / "examples" / "calm"
FAULTS = ("rate_limit", "server_error", "connection", "malformed_json", "truncated", "empty", "refusal")


def scaled(project, households: float):
    """The project with every control total scaled so that about ``households`` households are placed."""
    factor = households / float(project.households_per_zone().sum())
    return replace(project, controls=[replace(c, totals=np.round(c.totals * factor)) for c in project.controls])


def cost_against_n(project) -> None:
    seed = project.sample
    print("\nPart 1: LLM calls and tokens against N (distinct_records = 1,000; knowing endpoint)\n")
    print("| households N | asked | written | valid | calls | prompt tokens | completion tokens | calls per 1,000 |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (1e4, 1e5, 1e6):
        target = scaled(project, n)
        placed = int(target.households_per_zone().sum())
        with TestEndpoint(seed=1, households=(seed.households, seed.persons)) as endpoint:
            settings = LLMSettings(base_url=endpoint.url, model="calm", max_retries=1)
            with tempfile.TemporaryDirectory(prefix="synthor-llm-cost-") as tmp:
                report, _, _, _ = run_households(target, "llm", 1, Path(tmp), llm=settings)
        llm = report["prior_notes"]["llm"]
        print(
            f"| {placed:,} | {llm['households_asked']:,} | {llm['households_written']:,} | "
            f"{llm['households_valid']:,} | {llm['calls']:,} | {llm['prompt_tokens']:,} | "
            f"{llm['completion_tokens']:,} | {llm['calls'] * 1000 / placed:.3f} |"
        )


def run(prior: str, out: Path, *extra: str, project: Path = CALM) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(project), "--prior", prior, "--seed", "1", "--out", str(out)]
        + ["--quiet", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    # exit 1 with its population written: the LLM contributed no valid household (issue 26), a result of the row
    if done.returncode != 0 and not (done.returncode == 1 and (out / "report.json").is_file()):
        raise RuntimeError(done.stderr)
    seconds = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    report["_records"] = records(out)
    report["_exit"] = done.returncode
    return report, seconds


def records(out: Path) -> dict:
    """The record checks of Part 3 on a run's households.csv and persons.csv."""
    households = pd.read_csv(out / "households.csv")
    persons = pd.read_csv(out / "persons.csv")
    members = persons.groupby("household_id")
    ids = households["household_id"]
    occupied = members["OCCP"].agg(lambda s: int((s != 999).sum())).reindex(ids, fill_value=0).to_numpy()
    adult = members["AGEP"].max().reindex(ids).to_numpy() >= 15
    return {
        "no_age": float(persons["AGEP"].isna().mean()),
        "workers_occupied": float((occupied == households["NWESR"].to_numpy()).mean()),
        "adult": float(np.mean(adult)),
    }


def without_sample_rules(folder: Path) -> Path:
    """A copy of examples/calm without the ``[[rules]]`` found on the sample."""
    copy = folder / "calm-without-sample-rules"
    shutil.copytree(CALM, copy)
    spec = tomllib.loads((copy / "synthor.toml").read_text(encoding="utf-8"))
    spec["rules"] = [r for r in spec.get("rules", []) if not r["name"].startswith("sample: ")]
    (copy / "synthor.toml").write_text(tomli_w.dumps(spec), encoding="utf-8")
    return copy


def rows(project, folder: Path) -> list[tuple[str, dict, float]]:
    seed = project.sample
    out = [
        ("Synthor, seed", *run("seed", folder / "seed")),
        ("Synthor, maxent", *run("maxent", folder / "maxent")),
        (
            "Synthor, maxent without the sample's rules",
            *run("maxent", folder / "maxent-plain", project=without_sample_rules(folder)),
        ),
    ]
    llm_args = ["--model", "calm", "--api-key-env", "SYNTHOR_BENCHMARK_NO_KEY", "--max-retries", "1"]
    for name, records, careless in (
        ("Synthor, LLM (knowing endpoint, 1,000 households)", "1000", False),
        ("Synthor, LLM (knowing endpoint, 3,000 households)", "3000", False),
        ("Synthor, LLM (careless endpoint, 25 % failed calls) + maxent", "1000", True),
    ):
        with TestEndpoint(
            seed=1,
            households=(seed.households, seed.persons),
            careless=careless,
            fault_rate=0.25 if careless else 0.0,
            fault_kinds=FAULTS,
        ) as endpoint:
            target = folder / f"llm-{records}-{careless}"
            args = ["--base-url", endpoint.url, *llm_args, "--distinct-records", records]
            out.append((name, *run("llm", target, *args)))
    return out


def person_rejection(report: dict) -> str:
    llm = report.get("prior_notes", {}).get("llm")
    if not llm or not llm["households_written"]:
        return ""
    broken = sum(v for k, v in llm["rejected"].items() if k.startswith("household: breaks"))
    return f"{broken / llm['households_written']:.1%}"


def main() -> None:
    project = load_household_project(CALM)
    cost_against_n(project)
    with tempfile.TemporaryDirectory(prefix="synthor-llm-households-") as tmp:
        results = rows(project, Path(tmp))
    print("\nPart 2: CALM (62,041 households), worst %RMSE per control group (PopulationSim 0.10.0 in brackets)\n")
    groups = list(POPULATIONSIM)
    print("| row | " + " | ".join(f"{g} ({POPULATIONSIM[g][1]})" for g in groups) + " | households | seconds |")
    print("|---|" + "---|" * (len(groups) + 2))
    for name, report, seconds in results:
        if report["_exit"]:
            name += f" (exit {report['_exit']}: the LLM contributed no valid household)"
        fit = {c["control"]: c["pct_rmse"] for c in report["controls"]}
        cells = [f"{max(fit[c] for c in POPULATIONSIM[g][0]):.2f}" for g in groups]
        print(f"| {name} | " + " | ".join(cells) + f" | {report['households']:,} | {seconds:.1f} |")
    print(
        "\nRejection, rule breaches, consistency and realism (paper, GPT-4.1-nano: households 13.3 %, persons 6.3 %)\n"
    )
    print(
        "| row | LLM households written | rejected (household rejection rate) | rejected for a member's rule "
        "| final households from LLM | rule breaches (final) | households agreeing with members | realism mean TVD |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, report, _ in results:
        llm = report.get("prior_notes", {}).get("llm")
        written = llm["households_written"] if llm else 0
        rejected = (written - llm["households_valid"]) if llm else 0
        breaches = sum(r.get("broken", 0) for r in report.get("rules", []))
        from_llm = report["households_by_prior"].get("llm", 0) if llm else 0
        print(
            f"| {name} | {written:,} | "
            + (f"{rejected:,} ({rejected / written:.1%})" if written else "")
            + f" | {person_rejection(report)} | {from_llm / report['households']:.1%} | {breaches:,} | "
            f"{report['member_consistency'].get('with_members', 0):.1%} | {report['realism']['mean_tvd']:.3f} |"
        )
    print("\nPart 3: complete records (realism over all pairs of columns against the sample; lower = closer)\n")
    print(
        "| row | realism, all pairs (mean TVD) | realism, control groups | persons without AGEP | values outside the "
        "codebook | NWESR = members with OCCP != 999 | households with a member 15+ | maxent households left out |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, report, _ in results:
        checks = report["_records"]
        outside = sum(c["outside"] for c in report.get("columns", []))
        maxent = report.get("prior_notes", {})
        left = maxent.get("left_out", maxent.get("maxent", {}).get("left_out", "")) if isinstance(maxent, dict) else ""
        print(
            f"| {name} | {report['realism_all']['mean_tvd']:.3f} | {report['realism']['mean_tvd']:.3f} | "
            f"{checks['no_age']:.1%} | {outside:,} | {checks['workers_occupied']:.1%} | {checks['adult']:.1%} | "
            f"{left if left == '' else f'{left:,}'} |"
        )


if __name__ == "__main__":
    main()
