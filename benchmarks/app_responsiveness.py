"""App responsiveness: chart redraw cost and page interactions while an N = 10^6 maxent run is going.

1. Chart: building the convergence figure (``plots.tvd_by_iteration``) and serializing it to JSON, as Streamlit
   does, for 10 and 100 iterations of events of the Adult example (19 tables); baseline = 10 iterations.
2. Interactions: a Data-page interaction (choosing another table to preview) through
   ``streamlit.testing.v1.AppTest``, timed while idle (baseline) and while a background run of N = 10^6 persons
   (Adult targets, maxent prior, full mode, 60 iterations at most) is in progress in the same process.

Run: ``python benchmarks/app_responsiveness.py``; prints markdown tables.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SYNTHOR_DATA_DIR", tempfile.mkdtemp(prefix="synthor-bench-"))

from streamlit.testing.v1 import AppTest  # noqa: E402

from synthor_core.plots import tvd_by_iteration  # noqa: E402
from synthor_core.priors.maxent import MaxEntPrior  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402
from synthor_core.runner import Runner  # noqa: E402
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import IterationEvent
from synthor_core.synthesis.loop import run_synthesis  # noqa: E402

EXAMPLE = ROOT / "examples" / "adult"


def chart_table() -> None:
    project = load_project(EXAMPLE)
    events = [
        e
        for e in run_synthesis(
            project, MaxEntPrior(project), SynthesisConfig(seed=1, max_iterations=100, tolerance_tvd=1e-9)
        )
        if isinstance(e, IterationEvent)
    ]
    events = (events * (100 // len(events) + 1))[:100]  # 100 iterations of real events
    rows = []
    for n in (10, 100):
        times = []
        for _ in range(7):
            t = time.perf_counter()
            tvd_by_iteration(events[:n]).to_json()
            times.append(time.perf_counter() - t)
        rows.append((n, statistics.median(times)))
    print("Convergence chart: build + JSON (median of 7), 19 tables\n")
    print("| iterations | ms | ratio to 10 iterations |")
    print("|---|---|---|")
    for n, s in rows:
        print(f"| {n} | {s * 1000:.1f} | {s / rows[0][1]:.2f} |")


def _interaction_times(repeats: int = 8) -> list[float]:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    key = f"data.preview.{at.session_state['data.project_no']}"  # the Data page keys its forms by project
    names = [o for o in at.selectbox(key=key).options]
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        at.selectbox(key=key).select(names[(i + 1) % len(names)]).run()
        times.append(time.perf_counter() - t)
    return times


def interaction_table() -> None:
    idle = _interaction_times()
    project = load_project(EXAMPLE)
    runner = Runner()
    run_id = runner.start(project, SynthesisConfig(size=1_000_000, seed=1, max_iterations=60, tolerance_tvd=1e-9))
    time.sleep(1.0)
    busy = _interaction_times()
    snap = runner.snapshot(run_id)
    still_running = snap.status == "running"
    runner.stop(run_id)
    runner.wait(run_id, 30)
    print("\nData-page interaction (select another table), AppTest, seconds\n")
    print("| condition | median s | max s | ratio to idle (median) |")
    print("|---|---|---|---|")
    for label, times in (
        ("idle", idle),
        (
            f"during an N = 10^6 run ({len(snap.events)} iterations done, "
            f"{'still running' if still_running else 'ended'})",
            busy,
        ),
    ):
        print(
            f"| {label} | {statistics.median(times):.3f} | {max(times):.3f} | "
            f"{statistics.median(times) / statistics.median(idle):.2f} |"
        )


if __name__ == "__main__":
    chart_table()
    interaction_table()
