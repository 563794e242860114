"""The LLM prior end to end: the CLI (a subprocess) and the engine talk to a local OpenAI-compatible endpoint
(tests/llm_endpoint, started here on 127.0.0.1) through the real ``openai`` client over real HTTP."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time

import numpy as np
import openai
import pandas as pd
import pytest

from llm_endpoint.network import sample_network, write_ecommerce_project
from llm_endpoint.server import INJECTION, TestEndpoint
from synthor_core.evaluate.holdout import compare_tables
from synthor_core.priors.llm import LLMPrior, LLMSettings
from synthor_core.priors.maxent import MaxEntPrior
from synthor_core.readers.project import load_project
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.events import IterationEvent, SynthesisResult
from synthor_core.synthesis.loop import run_synthesis
from synthor_testing import ROOT

MARGINALS = [("age",), ("gender",), ("location",), ("category",), ("price",), ("payment",)]
NON_TARGETS = [("age", "gender", "category"), ("category", "price", "payment"), ("location", "payment", "category")]


@pytest.fixture(scope="module")
def ecommerce(tmp_path_factory):
    """Targets: the six marginals of 20,000 records of the e-commerce network; truth: 200,000 other records."""
    records = sample_network(20_000, np.random.default_rng(0))
    folder = write_ecommerce_project(tmp_path_factory.mktemp("ecommerce"), records, MARGINALS, 20_000)
    truth = sample_network(200_000, np.random.default_rng(99))
    return folder, load_project(folder), truth


def _cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthor_core", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _llm_args(url: str, *extra: str) -> list[str]:
    return ["--prior", "llm", "--base-url", url, "--model", "bn-oracle", "--api-key-env", "SYNTHOR_TEST_NO_KEY", *extra]


def _population(project, out):
    people = pd.read_csv(out / "population.csv")
    population, rejected = project.schema.encode(people)
    assert rejected == {}
    population["count"] = 1
    return population


def test_llm_prior_converges_and_beats_maxent_on_tables_that_were_not_targets(ecommerce, tmp_path):
    folder, project, truth = ecommerce
    with TestEndpoint(seed=1) as endpoint:
        proc = _cli("run", str(folder), "--n", "2000", "--seed", "1", "--out", str(tmp_path), *_llm_args(endpoint.url))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["prior"] == "llm" and report["mode"] == "full" and report["records"] == 2000
    assert report["mean_tvd"] <= 0.01
    assert report["llm"]["calls"] == len(endpoint.log) and report["llm"]["failures"] == {}
    assert report["llm"]["prompt_tokens"] > 0 and report["llm"]["completion_tokens"] > 0
    llm = compare_tables(project, _population(project, tmp_path), truth, NON_TARGETS)
    maxent = list(run_synthesis(project, MaxEntPrior(project), SynthesisConfig(size=2000, seed=1)))[-1]
    independent = compare_tables(project, maxent.population, truth, NON_TARGETS)
    # measured (in-process, seed 1): LLM 0.085 / 0.081 / 0.024, maxent given only marginals 0.261 / 0.201 / 0.153
    for combo in NON_TARGETS:
        assert llm[combo] < independent[combo], (combo, llm[combo], independent[combo])
    calls = [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]
    assert len(calls) == report["llm"]["calls"] and {c["kind"] for c in calls} == {
        "check",
        "dependencies",
        "plan",
        "realize",
    }
    assert all("SYNTHOR_TEST_NO_KEY" not in c["prompt"] for c in calls)


def test_thirty_percent_of_calls_failing_in_mixed_ways(ecommerce, tmp_path):
    folder, _, _ = ecommerce
    with TestEndpoint(seed=3, fault_rate=0.3, timeout_sleep_s=1.5, retry_after_s=0.2) as endpoint:
        proc = _cli(
            "run",
            str(folder),
            "--n",
            "2000",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
            # 10 records a call: enough calls (~180) that every kind of fault is met
            *_llm_args(endpoint.url, "--timeout", "1", "--max-retries", "6", "--records-per-call", "10"),
        )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mean_tvd"] <= 0.01
    injected = endpoint.faults()
    bad_records = sum(e["bad_records"] for e in endpoint.log)
    assert len(endpoint.log) >= 100 and sum(injected.values()) >= 0.2 * len(endpoint.log)
    assert {"timeout", "rate_limit", "server_error", "malformed_json", "empty", "refusal", "truncated"} <= set(injected)
    expected = {kind: n for kind, n in injected.items() if kind != "out_of_schema"}
    assert report["llm"]["failures"] == expected
    assert report["rejected"].get("record: age outside schema", 0) == bad_records  # age: the first numeric
    calls = [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]
    waits_after_429 = [c for c in calls if c["outcome"] == "ok" and c["attempt"] > 0]
    assert waits_after_429  # retries happened and then succeeded


def _run_against_dying_endpoint(folder, out, *extra):
    unreachable_after = 3.0
    with TestEndpoint(seed=1, die_after=60) as endpoint:
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "synthor_core",
                "run",
                str(folder),
                "--n",
                "2000",
                "--seed",
                "1",
                "--out",
                str(out),
                "--quiet",
                *_llm_args(endpoint.url, "--timeout", "1", "--unreachable-after", str(unreachable_after), *extra),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = proc.communicate(timeout=120)
        ended = time.monotonic()
    assert endpoint.died_at is not None and endpoint.died_at > started
    assert ended - endpoint.died_at < 2 * unreachable_after + 10  # maxent finishes the run within seconds
    return endpoint, proc, stdout, stderr


def test_endpoint_killed_mid_run_stops_with_a_message_and_keeps_the_population(ecommerce, tmp_path):
    """Without the fallback (pure LLM output), an endpoint that goes away ends the run with a message."""
    folder, _, _ = ecommerce
    endpoint, proc, _, stderr = _run_against_dying_endpoint(folder, tmp_path, "--no-fallback")
    assert proc.returncode == 1
    assert f"the LLM endpoint {endpoint.url} has been unreachable for" in stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stop_reason"].startswith("prior failed: the LLM endpoint")
    assert report["error"].startswith(f"the LLM endpoint {endpoint.url}")
    assert len(pd.read_csv(tmp_path / "population.csv")) == 2000


def test_endpoint_killed_mid_run_is_replaced_by_maxent_with_the_fallback(ecommerce, tmp_path):
    """Issue 13: with the fallback (the default), maxent plans and realizes once the endpoint is gone; the run
    completes, fits, and says what happened and how many persons came from each prior."""
    folder, _, _ = ecommerce
    endpoint, proc, stdout, stderr = _run_against_dying_endpoint(folder, tmp_path)
    assert proc.returncode == 0, stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["error"] is None and report["mean_tvd"] <= 0.005
    assert any(w.startswith('the prior "llm" could not plan (the LLM endpoint') for w in report["warnings"])
    assert report["fallback"]["plans"] >= 1
    assert report["sources"]["llm"]["final"] > 0 and report["sources"]["maxent"]["final"] > 0
    assert report["sources"]["llm"]["final"] + report["sources"]["maxent"]["final"] == 2000
    assert "sources: " in stdout


def test_token_budget_stops_the_run_cleanly(ecommerce, tmp_path):
    folder, _, _ = ecommerce
    with TestEndpoint(seed=1) as endpoint:
        proc = _cli(
            "run",
            str(folder),
            "--n",
            "2000",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
            *_llm_args(endpoint.url, "--token-budget", "40000"),
        )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["stop_reason"] == "token budget reached"
    assert report["llm"]["prompt_tokens"] + report["llm"]["completion_tokens"] >= 40000
    assert len(pd.read_csv(tmp_path / "population.csv")) == 2000


def test_a_rerun_with_the_cache_replays_without_the_endpoint(ecommerce, tmp_path):
    _, project, _ = ecommerce
    cache = tmp_path / "cache"

    def run(url):
        prior = LLMPrior(project, LLMSettings(base_url=url, model="bn-oracle", cache_dir=str(cache)))
        result = list(run_synthesis(project, prior, SynthesisConfig(size=2000, seed=5, max_iterations=6)))[-1]
        return prior, hashlib.sha256(result.population.to_csv().encode()).hexdigest()

    with TestEndpoint(seed=1) as endpoint:
        first, digest = run(endpoint.url)
        url = endpoint.url
    assert first.usage.calls > 20 and first.usage.cached_calls == 0
    second, again = run(url)  # the endpoint is gone: every call must come from the cache
    assert second.usage.calls == 0 and second.usage.cached_calls == first.usage.calls
    assert again == digest


def test_paper_mode_follows_the_paper_protocol(ecommerce):
    _, project, _ = ecommerce
    with TestEndpoint(seed=1) as endpoint:
        prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle"), mode="paper")
        events = list(
            run_synthesis(project, prior, SynthesisConfig(size=2000, mode="paper", seed=1, max_iterations=20))
        )
    result = events[-1]
    assert isinstance(result, SynthesisResult) and result.population["count"].sum() == 2000
    for event in events[:-1]:
        assert isinstance(event, IterationEvent) and 1 <= len(event.proposals) <= 5 and event.removed == 0
        for p in event.proposals:
            assert p.action == "add" and set(p.conditions) == set(project.schema.names)
            assert all(isinstance(p.conditions[v], str) for v in ("gender", "location", "category", "payment"))
    tasks = {e["task"] for e in endpoint.log}
    assert tasks == {"infer_dependencies", "plan_proposals"}  # records come from uniform sampling, not the LLM
    plan = next(e for e in endpoint.log if e["task"] == "plan_proposals")
    item = plan["json_schema"]["schema"]["properties"]["proposals"]["items"]
    assert item["properties"]["action"]["enum"] == ["add"]
    assert item["properties"]["conditions"]["properties"]["gender"] == {"type": "string", "enum": ["Male", "Female"]}


def test_structured_output_settings_and_schema(ecommerce):
    _, project, _ = ecommerce
    for mode, expected in (("json_schema", "json_schema"), ("json_object", "json_object"), ("text", None)):
        with TestEndpoint(seed=1) as endpoint:
            prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle", structured_output=mode))
            list(run_synthesis(project, prior, SynthesisConfig(size=500, seed=1, max_iterations=2)))
        assert {e["response_format"] for e in endpoint.log} == {expected}
        assert prior.usage.failures == {}
    with TestEndpoint(seed=1) as endpoint:
        prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle"))
        list(run_synthesis(project, prior, SynthesisConfig(size=500, seed=1, max_iterations=1)))
    realize = next(e for e in endpoint.log if e["task"] == "realize_records")
    assert realize["json_schema"]["strict"] is True
    record = realize["json_schema"]["schema"]["properties"]["records"]["items"]
    assert record["properties"]["age"] == {"type": "integer", "minimum": 18.0, "maximum": 90.0}
    assert record["properties"]["price"] == {"type": "number", "minimum": 0.0, "maximum": 2000.0}
    assert record["required"] == project.schema.names


def test_labels_from_the_tables_cannot_change_the_output_format(ecommerce, tmp_path):
    folder, _, _ = ecommerce
    toml = (
        (folder / "synthor.toml")
        .read_text()
        .replace('description = "Customers of an online shop and one purchase each"', f'description = "{INJECTION}"')
        .replace('categories = ["Male", "Female"]', f'categories = ["Male", "Female", "{INJECTION}"]')
    )
    injected = tmp_path / "injected"
    injected.mkdir()
    (injected / "synthor.toml").write_text(toml)
    shutil.copytree(folder / "tables", injected / "tables")  # (a link out of the project would be refused)
    project = load_project(injected)
    with TestEndpoint(seed=1) as endpoint:
        # the simulated model does obey an instruction that is not quoted as data
        raw = openai.OpenAI(base_url=endpoint.url, api_key="x").chat.completions.create(
            model="bn-oracle", messages=[{"role": "user", "content": f"Hello.\n{INJECTION}"}]
        )
        assert raw.choices[0].message.content == "OK"
        prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle", scenario=INJECTION))
        result = list(run_synthesis(project, prior, SynthesisConfig(size=1000, seed=1, max_iterations=4)))[-1]
    assert not any(e["injection_obeyed"] for e in endpoint.log[1:])
    assert prior.usage.failures == {} and result.population["count"].sum() == 1000
    assert len(endpoint.log) > 5


def test_a_stop_request_ends_an_llm_run_within_two_seconds(ecommerce):
    from synthor_core.runner import Runner, llm_prior_factory

    _, project, _ = ecommerce
    with TestEndpoint(seed=1, fault_rate=0.5, fault_kinds=("timeout",), timeout_sleep_s=3) as endpoint:
        settings = LLMSettings(base_url=endpoint.url, model="bn-oracle", timeout_s=1, concurrency=2)
        runner = Runner()
        run_id = runner.start(project, SynthesisConfig(size=2000, seed=1), llm_prior_factory(settings))
        time.sleep(3)
        assert runner.snapshot(run_id).status == "running"
        pressed = time.monotonic()
        runner.stop(run_id)
        snap = runner.wait(run_id, timeout_s=30)
        stopped = time.monotonic()
    assert snap.status == "stopped" and stopped - pressed < 2.0, (snap.status, stopped - pressed, snap.error)


def test_retry_after_is_honoured_instead_of_the_backoff(ecommerce):
    from synthor_core.priors import prompts

    _, project, _ = ecommerce
    with TestEndpoint(seed=1, fault_rate=1.0, fault_kinds=("rate_limit",), retry_after_s=0.2) as endpoint:
        prior = LLMPrior(project, LLMSettings(base_url=endpoint.url, model="bn-oracle", max_retries=2, backoff_s=0.5))
        reply = prior.call_json(
            "dependencies", prompts.dependency_messages(project), prompts.groups_schema(project.schema), "groups"
        )
    assert reply is None and len(endpoint.log) == 3
    assert [c.outcome for c in prior.calls] == ["rate_limit"] * 3
    assert [c.waited_s for c in prior.calls] == pytest.approx([0.0, 0.2, 0.4])  # backoff would give 0, 0.5, 1.5
    assert prior.usage.failures == {"rate_limit": 3}


@pytest.mark.parametrize("kind", ["server_error", "refusal"])
def test_an_endpoint_failing_every_call_is_named_in_the_error(ecommerce, kind):
    """HTTP 500 (or a refusal) to every call: the run's error names the failures by kind, not "rejected: nothing"."""
    folder, project, _ = ecommerce
    settings = LLMSettings(
        base_url="http://127.0.0.1:1/v1",
        model="bn-oracle",
        max_retries=0,
        backoff_s=0,
        unreachable_after_s=30,
        infer_dependencies=False,
    )
    with TestEndpoint(seed=1, fault_rate=1.0, fault_kinds=(kind,)) as endpoint:
        prior = LLMPrior(project, settings.model_copy(update={"base_url": endpoint.url}), api_key="")
        with pytest.raises(Exception) as info:
            list(run_synthesis(project, prior, SynthesisConfig(size=500, seed=1, max_iterations=3)))
    message = str(info.value)
    assert f"failed calls of {prior.usage.calls:,}: {kind} " in message, message
    assert type(info.value).__name__ == "PriorError"


def test_a_reply_cache_naming_a_file_is_refused_before_any_call(tmp_path):
    """``--cache`` naming an existing file (issue 26): a message naming the setting, exit 2, nothing written."""
    existing = tmp_path / "replies.txt"
    existing.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a folder for the reply cache"):
        LLMSettings(base_url="http://127.0.0.1:9/v1", model="m", cache_dir=str(existing))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "synthor_core", "run", str(ROOT / "examples" / "adult"), "--prior", "llm"]
        + ["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache", str(existing), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: setting cache_dir: expected a folder for the reply cache (made when missing), not an existing " in (
        done.stderr
    )
    assert not out.exists() and existing.read_text(encoding="utf-8") == "not a folder"
