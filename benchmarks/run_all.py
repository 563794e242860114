"""Run every benchmark, one after another, and write benchmarks/RESULTS.md with the machine and the date.

Run: ``python benchmarks/run_all.py`` (about 32 minutes on 2 cores; each benchmark stays under 10).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ("adult.py", "Adult: targets from the training split, fidelity on the held-out test split"),
    ("ecommerce_bn.py", "The paper's controlled e-commerce network"),
    ("income.py", "Household income inside coarse brackets (ACS PUMS, CALM)"),
    ("scale.py", "Time and memory against N"),
    ("llm_scale.py", "LLM calls and tokens against N"),
    ("llm_households.py", "The LLM prior of households on CALM"),
    (
        "local_model.py",
        "The LLM prior against a real model: the bundled SmolLM2-135M, the knowing test endpoint, maxent",
    ),
    ("one_engine.py", "One engine against two: CALM through the household loop and through the version it replaced"),
    ("app_responsiveness.py", "App responsiveness"),
    ("commuting_od.py", "Commuting OD: Travis County and Manhattan against LODES 2018 and the gravity model"),
    ("mobility_paper.py", "The paper's mobility task: a known generator, OD per time bin and time x activity"),
]


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(
            next(
                line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
            ).split()[1]
        )
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; Python "
        f"{platform.python_version()}"
    )


def main() -> None:
    parts = [
        "# Benchmark results",
        "",
        f"Regenerate with `python benchmarks/run_all.py`. Machine: {_machine()}. Date: "
        f"{datetime.date.today().isoformat()}.",
        "",
    ]
    for script, title in BENCHMARKS:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - started
        output = (
            proc.stdout.strip()
            if proc.returncode == 0
            else f"FAILED (exit {proc.returncode}):\n\n```\n{proc.stderr.strip()[-3000:]}\n```"
        )
        parts += [f"## {title} (`benchmarks/{script}`, {seconds:.0f} s)", "", output, ""]
        print(f"{script}: {seconds:.0f} s, exit {proc.returncode}", flush=True)
    (HERE / "RESULTS.md").write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
