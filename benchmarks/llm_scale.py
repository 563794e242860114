"""LLM cost against N: calls and tokens per run for N = 10^4, 10^5, 10^6 with the LLM prior against the local
test endpoint (tests/llm_endpoint, the e-commerce network as the "model"), full mode, targets = the network's
six marginals and its three family tables. The LLM writes distinct profiles and counts carry the size (DESIGN
§3), so calls and tokens should not grow with N. Baseline: N = 10^4 in the same run.

Run: ``python benchmarks/llm_scale.py [--sizes 10000 100000 1000000]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from llm_endpoint.network import sample_network, write_ecommerce_project  # noqa: E402
from llm_endpoint.server import TestEndpoint  # noqa: E402
from synthor_core.priors.llm import LLMPrior, LLMSettings  # noqa: E402
from synthor_core.readers.project import load_project  # noqa: E402
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import SynthesisResult
from synthor_core.synthesis.loop import run_synthesis  # noqa: E402

TABLES = [
    ("age",),
    ("gender",),
    ("location",),
    ("category",),
    ("price",),
    ("payment",),
    ("age", "gender", "category"),
    ("category", "price"),
    ("location", "payment"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    records = sample_network(20_000, np.random.default_rng(0))
    folder = write_ecommerce_project(Path(tempfile.mkdtemp(prefix="synthor-llm-")), records, TABLES, 20_000)
    project = load_project(folder)
    rows = []
    for size in args.sizes:
        with TestEndpoint(seed=1) as endpoint:
            prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle"))
            started = time.perf_counter()
            result = list(run_synthesis(project, prior, SynthesisConfig(size=size, seed=1)))[-1]
            assert isinstance(result, SynthesisResult)
            rows.append(
                (
                    size,
                    prior.usage.calls,
                    prior.usage.prompt_tokens,
                    prior.usage.completion_tokens,
                    result.iterations,
                    len(result.population),
                    result.fit.mean_tvd,
                    time.perf_counter() - started,
                )
            )
    base_calls, base_tokens = rows[0][1], rows[0][2] + rows[0][3]
    print("LLM prior against the local test endpoint, e-commerce targets (9 tables), full mode, seed 1\n")
    print(
        "| N | LLM calls | prompt tokens | completion tokens | calls ratio to N=10^4 | tokens ratio | "
        "calls per 1,000 records | iterations | distinct records | mean TVD | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size, calls, pt, ct, iterations, distinct, tvd, seconds in rows:
        print(
            f"| {size:,} | {calls:,} | {pt:,} | {ct:,} | {calls / base_calls:.2f} | "
            f"{(pt + ct) / base_tokens:.2f} | {calls * 1000 / size:.4f} | {iterations} | {distinct:,} | "
            f"{tvd:.4f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
