"""The LLM prior against a real model (issue 25, DESIGN §14): the bundled SmolLM2-135M-Instruct (xllamacpp on
127.0.0.1, 1 decoding thread, prompts read with every core) against the knowing test endpoint (tests/llm_endpoint:
an "LLM" answering from the e-commerce network or the CALM sample) and against maxent, through the CLI as a user
runs it.

E-commerce (the paper's controlled network, targets: its six marginals, N 1,000, 3 iterations, 6 proposals a plan,
30 distinct records, 10 a call, temperature 0): mean TVD after calibration; rejection rate (records the engine
refused: outside the schema, the proposal's conditions or the rules, over the records written, as the paper's
Tables 5-6); realism on tables that were not targets (mean TVD of [age, gender, category], [category, price,
payment], [location, payment, category] against 200,000 other records of the network); LLM calls, tokens, the
check's tokens/s, seconds, and the share of the final persons that came from the LLM (the rest: maxent).

CALM (households, 4 LLM households, 1 a call): worst %RMSE, realism over all pairs of columns against the sample,
households the model wrote / that were valid, calls, seconds, share from the LLM.

Run: ``python benchmarks/local_model.py`` (about 8 minutes on 2 cores); prints markdown tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llm_endpoint.network import sample_network, write_ecommerce_project  # noqa: E402
from llm_endpoint.server import TestEndpoint  # noqa: E402
from synthor_core.evaluate.holdout import compare_tables  # noqa: E402
from synthor_core.priors.llm import salvage_items  # noqa: E402
from synthor_core.priors.local_model import LocalModel  # noqa: E402
from synthor_core.readers.households import load_household_project  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402

MARGINALS = [("age",), ("gender",), ("location",), ("category",), ("price",), ("payment",)]
NON_TARGETS = [("age", "gender", "category"), ("category", "price", "payment"), ("location", "payment", "category")]
CALM = ROOT / "examples" / "calm"


def cli(project: Path, out: Path, *args: str) -> tuple[dict, float, int]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(project), "--out", str(out), "--seed", "1", "--quiet", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1) or not (out / "report.json").is_file():
        raise RuntimeError(done.stderr)
    return json.loads((out / "report.json").read_text(encoding="utf-8")), seconds, done.returncode


def records_written(calls: Path) -> int:
    """Records the LLM wrote in its realize replies (the whole ones of a reply cut short included)."""
    if not calls.is_file():
        return 0
    total = 0
    for line in calls.read_text(encoding="utf-8").splitlines():
        call = json.loads(line)
        if call["kind"] == "realize" and call["outcome"] in ("ok", "truncated", "cached") and call["reply"]:
            total += len(salvage_items(call["reply"], "records"))
    return total


def llm_args(url: str, model: str, *extra: str) -> list[str]:
    return ["--prior", "llm", "--base-url", url, "--model", model, "--api-key-env", "SYNTHOR_NO_KEY", *extra]


def ecommerce(folder: Path, model: LocalModel) -> list[str]:
    project_dir = write_ecommerce_project(
        folder / "ecommerce", sample_network(20_000, np.random.default_rng(0)), MARGINALS, 20_000
    )
    project = load_project(project_dir)
    truth = sample_network(200_000, np.random.default_rng(99))
    common = ["--n", "1000", "--max-iterations", "3", "--max-proposals", "6"]
    llm = ["--distinct-records", "30", "--records-per-call", "10", "--temperature", "0", "--concurrency", "1"]
    rows = []
    with TestEndpoint(seed=1) as knowing:
        runs = [
            ("maxent", [*common, "--prior", "maxent"]),
            ("knowing test endpoint", [*common, *llm_args(knowing.url, "bn-oracle", *llm)]),
            ("SmolLM2-135M (bundled)", [*common, *llm_args(model.base_url, model.model, *llm, "--timeout", "300")]),
        ]
        for name, args in runs:
            out = folder / name.split()[0]
            report, seconds, code = cli(project_dir, out, *args)
            people = pd.read_csv(out / "population.csv")
            population, _ = project.schema.encode(people)
            population["count"] = 1
            realism = compare_tables(project, population, truth, NON_TARGETS)
            refused = sum(n for reason, n in report.get("rejected", {}).items() if reason.startswith("record:"))
            written = records_written(out / "llm_calls.jsonl")
            llm_report = report["llm"]
            check = llm_report.get("check", {})
            rows.append(
                f"| {name} | {report['mean_tvd']:.4f} | "
                + (f"{refused / max(written, 1):.1%} of {written:,}" if name != "maxent" else "-")
                + f" | {np.mean(list(realism.values())):.3f} | {llm_report['calls']:,} | "
                f"{llm_report['prompt_tokens'] + llm_report['completion_tokens']:,} | "
                + (f"{check['tokens_per_s']:,.0f}" if check.get("tokens_per_s") else "-")
                + f" | {seconds:.0f} | "
                + (f"{report['llm_share']:.1%}" if "llm_share" in report else "-")
                + f" | {code} |"
            )
    head = (
        "| prior | mean TVD | rejected records | realism (not targets) | LLM calls | tokens | tokens/s | seconds | "
        "share from the LLM | exit |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    return [head, *rows]


def calm(folder: Path, model: LocalModel) -> list[str]:
    project = load_household_project(CALM)
    rows = []
    sample = (project.sample.households, project.sample.persons)
    llm = ["--distinct-records", "4", "--records-per-call", "1", "--temperature", "0", "--concurrency", "1"]
    with TestEndpoint(seed=1, households=sample) as knowing:
        runs = [
            ("maxent", ["--prior", "maxent"]),
            ("knowing test endpoint", llm_args(knowing.url, "bn-oracle", *llm)),
            ("SmolLM2-135M (bundled)", llm_args(model.base_url, model.model, *llm, "--timeout", "300")),
        ]
        for name, args in runs:
            report, seconds, code = cli(CALM, folder / ("calm-" + name.split()[0]), *args)
            notes = report.get("prior_notes", {}).get("llm", {})
            rows.append(
                f"| {name} | {report['worst_pct_rmse']:.2f} | {report['realism_all']['mean_tvd']:.3f} | "
                + (f"{notes['households_written']} / {notes['households_valid']}" if notes else "-")
                + f" | {notes.get('calls', 0)} | {seconds:.0f} | "
                + (f"{report['llm_share']:.2%}" if "llm_share" in report else "-")
                + f" | {code} |"
            )
    head = (
        "| prior | worst %RMSE | realism (all pairs) | LLM households written / valid | LLM calls | seconds | "
        "share from the LLM | exit |\n|---|---|---|---|---|---|---|---|"
    )
    return [head, *rows]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalModel() as model:
        folder = Path(tmp)
        print("E-commerce network, N 1,000, 3 iterations (persons):\n")
        print("\n".join(ecommerce(folder, model)))
        print("\nCALM, 4 LLM households (households; exit 1: the LLM contributed no valid household):\n")
        print("\n".join(calm(folder, model)))


if __name__ == "__main__":
    main()
