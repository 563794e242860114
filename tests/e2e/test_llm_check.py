"""Issue 26, item 1: an LLM run checks its endpoint with one cheap call before any work. An endpoint down from the
start, answering HTTP 500 to every call, answering prose or slower than the timeout ends the CLI at once with a
message naming the endpoint and the cause, exit 1, and nothing synthesized; a run the LLM never fed fails, and one
it fed little says "degraded" in its last line."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_endpoint.server import TestEndpoint
from synthor_core.runner import judge_llm_share
from synthor_testing import ROOT


class ProseEndpoint:
    """Answers every chat completion with a friendly sentence instead of JSON (a model without structured output)."""

    def __init__(self):
        endpoint = self
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                endpoint.calls += 1
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "chatty",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "Sure! Happy to help with your population."},
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19},
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def _dead_port() -> int:
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(project, out, url, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "synthor_core",
            "run",
            str(project),
            "--out",
            str(out),
            "--prior",
            "llm",
            "--base-url",
            url,
            "--model",
            "m",
            "--api-key-env",
            "SYNTHOR_TEST_NO_KEY",
            "--max-retries",
            "1",
            "--seed",
            "1",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("fault", ["down", "server_error", "prose", "slow"])
def test_an_endpoint_failing_the_check_ends_the_run_before_any_work(small_project_dir, tmp_path, fault):
    """Down (connection refused), HTTP 500 to every call, prose, or no answer within --timeout: exit 1 with the
    endpoint, the model and the cause named after 4 attempts (--max-retries 1: the check retries at least 3
    times); no population written."""
    extra: tuple[str, ...] = ()
    endpoint = prose = None
    if fault == "down":
        url, cause = f"http://127.0.0.1:{_dead_port()}/v1", "connection (ConnectError: [Errno 111] Connection refused)"
    elif fault == "prose":
        prose = ProseEndpoint()
        url, cause = prose.url, "malformed_json (it answered 'Sure! Happy to help with your population.')"
    else:
        kind = "server_error" if fault == "server_error" else "timeout"
        endpoint = TestEndpoint(seed=1, fault_rate=1.0, fault_kinds=(kind,), timeout_sleep_s=3).start()
        url = endpoint.url
        cause = "server_error (HTTP 50" if fault == "server_error" else "timeout (no answer within 1 s)"
        extra = ("--timeout", "1") if fault == "slow" else ()
    try:
        done = _run(small_project_dir, tmp_path / "out", url, *extra)
    finally:
        for server in (endpoint, prose):
            if server is not None:
                server.close() if server is prose else server.stop()
    assert done.returncode == 1, done.stderr
    assert f"error: the LLM endpoint {url} (model 'm') failed the check before the run after 4 attempt(s): " in (
        done.stderr
    )
    assert cause in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "population.csv").exists()
    if endpoint is not None:  # the check and its retry, nothing else
        assert [e["task"] for e in endpoint.log] == ["check_endpoint"] * 4
    if prose is not None:
        assert prose.calls == 4


def test_the_llm_share_decides_failed_degraded_or_fed():
    """No LLM record: failed with the causes; under 10 %: degraded with its share; else nothing said."""
    base = {"llm": {"failures": {"timeout": 7, "server_error": 2}}, "rejected": {"record: age outside schema": 40}}
    none = {**base, "sources": {"llm": {"final": 0}, "maxent": {"final": 500}}}
    judge_llm_share(none)
    assert none["status"] == "failed" and none["llm_share"] == 0
    assert none["llm_error"] == (
        "the LLM contributed no valid record: all 500 persons came from maxent (9 failed calls (timeout 7, "
        "server_error 2); 40 records rejected (record: age outside schema 40))"
    )
    little = {**base, "sources": {"llm": {"final": 30}, "maxent": {"final": 470}}}
    judge_llm_share(little)
    assert little["llm_degraded"].startswith("degraded: only 6.0% of the persons came from the LLM")
    assert "llm_error" not in little and "status" not in little
    fed = {**base, "sources": {"llm": {"final": 60}, "maxent": {"final": 440}}}
    judge_llm_share(fed)
    assert fed["llm_share"] == 0.12 and "llm_degraded" not in fed and "llm_error" not in fed
    households = {
        "households_by_prior": {"maxent": 900},
        "prior_notes": {"llm": {"failures": {}, "rejected": {"falls in no cell the controls define": 14}}},
    }
    judge_llm_share(households)
    assert households["llm_error"].startswith(
        "the LLM contributed no valid record: all 900 households came from maxent"
    )
    assert "14 records rejected (falls in no cell the controls define 14)" in households["llm_error"]
