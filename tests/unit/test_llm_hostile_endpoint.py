"""The LLM prior against a hostile OpenAI-compatible endpoint (a tiny server on 127.0.0.1, here): counts of
10**30 persons, replies nested 200,000 levels deep, 5 MB replies, model listings of millions of entries and
endless error texts are bounded, counted by kind, and never crash the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from synthor_core.priors import llm
from synthor_core.priors.base import Guidance
from synthor_core.priors.llm import LLMPrior, LLMSettings
from synthor_core.readers.project import load_project
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import IterationEvent, SynthesisResult
from synthor_core.synthesis.loop import run_synthesis
from synthor_testing import ROOT

N = 1000  # the small project's population size


class HostileEndpoint:
    """Answers ``/v1/chat/completions`` by task: ``plan_replies`` (the next one each time, the last one repeated)
    for plans, ``{"groups": []}`` for dependencies, ``k`` valid records for realization; ``/v1/models`` with
    ``models`` entries streamed lazily (or ``models_error`` as a 500 error message)."""

    def __init__(
        self,
        plan_replies=('{"proposals": []}',),
        models: int = 1,
        models_error: str | None = None,
        retry_after: str | None = None,
    ):
        self.plan_replies = list(plan_replies)
        self.models, self.models_error, self.retry_after = models, models_error, retry_after
        self.log: list[dict] = []
        self.listing_bytes_sent = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                if self.models_path():
                    endpoint.answer_models(self)
                else:
                    endpoint.send(self, 404, json.dumps({"error": {"message": "not found"}}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                endpoint.answer_chat(self, body)

            def models_path(self) -> bool:
                return self.path.rstrip("/").endswith("/models")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> HostileEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def send(handler, status: int, data: bytes, headers: dict | None = None) -> None:
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except OSError:  # the client hung up
            pass

    def answer_chat(self, handler, body: dict) -> None:
        user = str(body["messages"][-1]["content"])
        task = re.search(r'"task": ?"(\w+)"', user).group(1)
        with self._lock:
            self.log.append({"task": task})
        if self.retry_after is not None:
            return self.send(
                handler,
                429,
                json.dumps({"error": {"message": "slow down"}}).encode(),
                {"retry-after": self.retry_after},
            )
        with self._lock:
            if task == "plan_proposals":
                content = self.plan_replies.pop(0) if len(self.plan_replies) > 1 else self.plan_replies[0]
        if task == "infer_dependencies":
            content = json.dumps({"groups": []})
        elif task == "realize_records":
            k = int(re.search(r'"k": ?(\d+)', user).group(1))
            self.log[-1]["k"] = k
            content = json.dumps(
                {
                    "records": [
                        {"age": 20 + i % 60, "sex": ("Female", "Male")[i % 2], "employed": ("no", "yes")[i % 3 == 0]}
                        for i in range(k)
                    ]
                }
            )
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "hostile"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        self.send(handler, 200, json.dumps(payload).encode("utf-8"))

    def answer_models(self, handler) -> None:
        if self.models_error is not None:
            return self.send(handler, 500, json.dumps({"error": {"message": self.models_error}}).encode())
        entry = '{"id": "model-%09d", "object": "model", "owned_by": "hostile"}'
        head, tail = b'{"object": "list", "data": [', b"]}"
        size = len(head) + len(tail) + self.models * (len(entry % 0) + 2) - 2
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(size))
        handler.end_headers()
        try:  # lazily, 10,000 entries at a time: a client that stops reading stops the server too
            handler.wfile.write(head)
            for start in range(0, self.models, 10_000):
                stop = min(start + 10_000, self.models)
                chunk = ", ".join(entry % i for i in range(start, stop)) + (", " if stop < self.models else "")
                handler.wfile.write(chunk.encode())
                self.listing_bytes_sent += len(chunk)
            handler.wfile.write(tail)
        except OSError:
            handler.close_connection = True


@pytest.fixture
def project(small_project_dir):
    return load_project(small_project_dir)


def _prior(project, url: str, **settings) -> LLMPrior:
    values = {"model": "hostile", "max_retries": 2, "backoff_s": 0.0, "timeout_s": 5.0, **settings}
    return LLMPrior(project, LLMSettings(base_url=url, **values), api_key="not-a-key")


def _guidance(mode: str = "full") -> Guidance:
    return Guidance(
        iteration=1,
        population_size=N,
        current_total=0,
        batch_size=N if mode == "paper" else 0,
        under=[],
        over=[],
        mode=mode,
        max_proposals=24,
    )


def _plan(items) -> str:
    return json.dumps({"proposals": items})


def test_a_plan_asking_for_10_to_the_30_persons_is_bounded_by_the_population_size(project):
    huge = _plan(
        [
            {"conditions": {}, "count": 10**30, "action": "add", "reason": "everyone"},
            {"conditions": {"sex": "Male"}, "count": 10**30, "action": "remove", "reason": "no one"},
            {"conditions": {}, "count": 1e30, "action": "add", "reason": "a float"},
        ]
    )
    with HostileEndpoint(plan_replies=[huge]) as endpoint:
        prior = _prior(project, endpoint.url, records_per_call=200, distinct_records=50)
        proposals = prior.plan(_guidance(), np.random.default_rng(0))
        assert [(p.count, p.action) for p in proposals] == [(N, "add"), (N, "remove"), (N, "add")]
        assert prior.usage.failures == {}
        events = list(run_synthesis(project, prior, SynthesisConfig(size=N, seed=1, max_iterations=2)))
    result = events[-1]
    assert isinstance(result, SynthesisResult) and result.error is None
    assert result.population["count"].sum() == N
    for event in events[:-1]:
        assert isinstance(event, IterationEvent)
        assert all(p.count <= N for p in event.proposals) and event.added <= 2 * N
    realized = [e["k"] for e in endpoint.log if e["task"] == "realize_records"]
    assert realized and max(realized) <= 50  # records asked per proposal: distinct_records, never 10**30


@pytest.mark.parametrize(
    "count", ["1e400", "NaN", "-Infinity", "-5", "0", "2.5", '"12"', "true", "null", '"1e30"', "[100]"]
)
def test_a_count_that_is_not_a_whole_number_of_at_least_one_is_rejected_as_invalid_count(project, count):
    reply = (
        '{"proposals": [{"conditions": {}, "count": ' + count + ', "action": "add", "reason": "odd"}, '
        '{"conditions": {}, "count": 7, "action": "add", "reason": "fine"}]}'
    )
    with HostileEndpoint(plan_replies=[reply]) as endpoint:
        prior = _prior(project, endpoint.url, infer_dependencies=False)
        proposals = prior.plan(_guidance(), np.random.default_rng(0))
    assert [p.count for p in proposals] == [7]
    assert prior.usage.failures == {"invalid_count": 1}
    rejected = [c for c in prior.calls if c.outcome == "invalid_count"]
    assert len(rejected) == 1 and rejected[0].reply.startswith("count ")


DEEP = "[" * 200_000


@pytest.mark.parametrize(
    "structured_output, reply",
    [
        ("json_schema", DEEP),
        ("json_schema", '{"proposals": ' + DEEP),
        ("json_object", "{" + '"a": {' * 100_000),
        # the first {...} block of a plain-text reply is deep although the whole text is one string and a word
        ("text", '" {"a": ' + DEEP + " }"),
    ],
    ids=["bare", "in-object", "objects", "text-block"],
)
def test_a_reply_nested_200000_levels_deep_is_a_failed_call_and_the_plan_goes_on(project, structured_output, reply):
    good = _plan([{"conditions": {"sex": "Female"}, "count": 12, "action": "add", "reason": "fine"}])
    with HostileEndpoint(plan_replies=[reply, good]) as endpoint:
        prior = _prior(project, endpoint.url, infer_dependencies=False, structured_output=structured_output)
        proposals = prior.plan(_guidance(), np.random.default_rng(0))
    assert [p.count for p in proposals] == [12]  # retried as any malformed reply
    assert prior.usage.failures == {"reply_too_deep": 1}
    assert [c.outcome for c in prior.calls] == ["reply_too_deep", "ok"]
    assert len(endpoint.log) == 2


def test_a_reply_always_nested_too_deep_ends_the_plan_empty_without_an_exception(project):
    with HostileEndpoint(plan_replies=[DEEP]) as endpoint:
        prior = _prior(project, endpoint.url, infer_dependencies=False, max_retries=2)
        assert prior.plan(_guidance(), np.random.default_rng(0)) == []
    assert prior.usage.failures == {"reply_too_deep": 3} and len(endpoint.log) == 3


def test_nesting_up_to_64_levels_is_parsed_and_brackets_inside_strings_do_not_count(project):
    # 64 levels in all: the object, "proposals", one proposal, and 61 levels of "pad"
    deep_ok = (
        '{"proposals": [{"conditions": {}, "count": 3, "reason": "'
        + '[{\\"' * 10_000
        + '", "pad": '
        + "[" * 61
        + "]" * 61
        + "}]}"
    )
    with HostileEndpoint(plan_replies=[deep_ok]) as endpoint:
        prior = _prior(project, endpoint.url, infer_dependencies=False)
        proposals = prior.plan(_guidance(), np.random.default_rng(0))
    assert [p.count for p in proposals] == [3] and prior.usage.failures == {}
    assert len(proposals[0].reason) == 500 and proposals[0].reason.endswith("…")  # cut to MAX_REASON_CHARS


def test_65_levels_are_one_too_many():
    llm.check_reply_size("[" * 64 + "]" * 64)
    with pytest.raises(llm.ReplyRefused, match="nested 65 levels deep, more than 64") as refused:
        llm.check_reply_size("[" * 65 + "]" * 65)
    assert refused.value.kind == "reply_too_deep"


def test_a_fenced_reply_of_100000_spaces_is_parsed_in_linear_time():
    # the old pattern ^```(?:json)?\s*(.*?)\s*```$ took cubic time here (2,000 spaces: 3 s); run apart, so that a
    # regular expression that holds the interpreter cannot hang the test session
    code = (
        "import time; from synthor_core.priors.llm import _extract_json\n"
        "started = time.monotonic()\n"
        "try:\n    _extract_json('```' + ' ' * 100_000 + 'x')\nexcept ValueError:\n    pass\n"
        "print(time.monotonic() - started)"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=8, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("parsing a fenced reply of 100,000 spaces took more than 8 s")
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 1.0


def test_a_5_mb_reply_is_a_failed_call_of_kind_reply_too_large(project):
    # valid JSON with a valid plan: only its size is wrong
    large = '{"proposals": [], "padding": "' + "x" * 5_000_000 + '"}'
    good = _plan([{"conditions": {}, "count": 4, "action": "add", "reason": "fine"}])
    with HostileEndpoint(plan_replies=[large, good]) as endpoint:
        prior = _prior(project, endpoint.url, infer_dependencies=False)
        started = time.monotonic()
        proposals = prior.plan(_guidance(), np.random.default_rng(0))
        seconds = time.monotonic() - started
    assert [p.count for p in proposals] == [4]
    assert prior.usage.failures == {"reply_too_large": 1}
    assert [c.outcome for c in prior.calls] == ["reply_too_large", "ok"]
    assert len(prior.calls[0].reply) <= 400  # the call log keeps only the start (MAX_ERROR_CHARS = 300)
    assert seconds < 5


def test_a_listing_of_two_million_models_is_refused_after_a_bounded_read(project):
    with HostileEndpoint(models=2_000_000) as endpoint:
        prior = _prior(project, endpoint.url)
        started = time.monotonic()
        answer = prior.test_connection()
        seconds = time.monotonic() - started
    assert answer.startswith(f"cannot use {endpoint.url}: the model listing is larger than ")
    assert seconds < 5
    assert endpoint.listing_bytes_sent < 2_000_000 * 60 / 4  # most of the listing was never produced


def test_a_long_listing_is_checked_up_to_max_listed_models(project, monkeypatch):
    monkeypatch.setattr(llm, "MAX_LISTED_MODELS", 100, raising=False)
    with HostileEndpoint(models=5_000) as endpoint:
        answer = _prior(project, endpoint.url, model="model-000000050").test_connection()
        missed = _prior(project, endpoint.url, model="model-000004000").test_connection()
    assert answer == (
        f"connected to {endpoint.url}: more than 100 model(s) listed, the first 100 checked; 'model-000000050' found"
    )
    assert missed.endswith("the first 100 checked; 'model-000004000' not listed")


def test_endpoint_error_text_in_messages_is_truncated(project):
    with HostileEndpoint(models_error="overloaded " * 100_000) as endpoint:
        answer = _prior(project, endpoint.url).test_connection()
    assert answer.startswith(f"cannot reach {endpoint.url}: InternalServerError: ")
    assert len(answer) <= len(f"cannot reach {endpoint.url}: InternalServerError: ") + 300  # MAX_ERROR_CHARS
    assert answer.endswith("…")


@pytest.mark.parametrize("retry_after", ["1e12", "inf", "-5"])
def test_a_retry_after_header_of_a_lifetime_is_cut(project, retry_after, monkeypatch):
    monkeypatch.setattr(llm, "MAX_RETRY_AFTER_S", 0.2, raising=False)
    done = threading.Event()
    with HostileEndpoint(retry_after=retry_after) as endpoint:
        prior = _prior(project, endpoint.url, infer_dependencies=False, max_retries=2, backoff_s=0.1)

        def plan():
            prior.plan(_guidance(), np.random.default_rng(0))
            done.set()

        threading.Thread(target=plan, daemon=True).start()
        finished = done.wait(5)
        prior._abort.set()  # frees a worker still waiting (the old code waited 10**12 s)
    assert finished, f"Retry-After: {retry_after} held the plan for more than 5 s"
    assert prior.usage.failures == {"rate_limit": 3}
    assert all(0 <= c.waited_s <= 0.4 + 1e-9 for c in prior.calls)
