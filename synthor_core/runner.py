"""Runs: the one orchestration of a run shared by the CLI and the app (:func:`execute`), and the background runs of
the app (:class:`Runner`; DESIGN §6; STYLE.md rule 10).

:func:`execute` builds the priors, drives the loop, writes the outputs (:mod:`synthor_core.export`) and the report,
for a person project or a household project alike. Only this module has threads: the :class:`Runner` runs
:func:`execute` in a daemon thread per run and appends its events to the run under a lock; pages read a copy with
:meth:`Runner.snapshot`. A thread never calls Streamlit.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from . import defaults
from .errors import PriorError, SynthorError
from .evaluate.report import run_report
from .evaluate.rules import rules_fit_cost, rules_report
from .export import (
    FileBatch,
    HouseholdWriter,
    write_json,
    write_llm_calls,
    write_persons_and_trips,
    write_population,
)
from .priors.base import Prior
from .priors.maxent import MaxEntPrior
from .store import CHECKPOINT_INTERVAL_S, RunStore, person_exports
from .synthesis.config import SynthesisConfig
from .synthesis.events import HouseholdIteration, HouseholdResult, IterationEvent, PartitionOutcome, SynthesisResult
from .synthesis.loop import Partitioning, run_synthesis
from .synthesis.partitions import PriorSpec
from .synthesis.trips import TripResult, synthesize_trips
from .targets.model import HouseholdProject, Project

STORE_INTERVAL_S = 1.0  # a run's iterations reach the store at most this often (each write opens the file)

PRIORS = {
    "maxent": "maxent: embedded maximum-entropy model (offline, no API key)",
    "llm": "llm: a large language model at any OpenAI-compatible endpoint",
}
HOUSEHOLD_PRIORS = {
    "seed": "the sample's households (maxent fills what it cannot reach)",
    "maxent": "built from the controls alone; no sample record used",
    "llm": "an LLM writes whole households with their members, aimed at the zones worst off (maxent writes what it "
    "cannot)",
}


def maxent_prior(project: Project, config: SynthesisConfig, rules=()) -> Prior:
    """The default prior factory: the embedded ``maxent`` prior in the run's mode, rules as structural zeros."""
    return MaxEntPrior(project, mode=config.mode, rules=rules)


_FACTORIES = {"maxent": maxent_prior}


def llm_prior_factory(settings, api_key: str | None = None) -> Callable[..., Prior]:
    """A factory of the LLM prior with these :class:`~synthor_core.priors.llm.LLMSettings`; the key stays in
    memory (it comes from the environment or Streamlit secrets) and is never stored."""
    from .priors.llm import LLMPrior

    def make(project: Project, config: SynthesisConfig, rules=()) -> Prior:
        prior = LLMPrior(project, settings, mode=config.mode, api_key=api_key)  # the engine drops rule breakers
        # what the LLM cannot realize comes from maxent (SynthesisConfig.fallback), built when the run starts
        prior.fallback = MaxEntPrior(project, mode=config.mode, rules=rules)
        return prior

    return make


def household_prior_factory(name: str, settings=None, api_key: str | None = None) -> Callable[..., PriorSpec]:
    """A factory of a household project's prior (``seed``, ``maxent``, ``llm`` with its settings and key), built in
    each partition for its own zones."""
    if name not in HOUSEHOLD_PRIORS:
        raise KeyError(f"unknown prior {name!r}; known: {', '.join(HOUSEHOLD_PRIORS)}")

    def make(project: HouseholdProject, config: SynthesisConfig, rules=()) -> PriorSpec:
        return PriorSpec(name, settings, api_key)

    return make


def prior_factory(name: str) -> Callable[..., Prior]:
    """The factory of a prior listed in ``PRIORS``. Raises KeyError naming the known priors."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown prior {name!r}; known: {', '.join(_FACTORIES)}")
    return _FACTORIES[name]


# --- one run ---------------------------------------------------------------------------------------------------------


@dataclass
class RunHooks:
    """What a caller of :func:`execute` hears: each iteration's event, each partition written, and checkpoints of a
    person population (every hook optional)."""

    on_event: Callable[[IterationEvent | HouseholdIteration], None] | None = None
    on_partition: Callable[[PartitionOutcome, int], None] | None = None
    checkpoint: Callable[[int, Any], None] | None = None
    on_check: Callable[[dict], None] | None = None  # the LLM endpoint checked (llm_check's dict), before any work


def llm_check(client, calls: int, tokens_per_call: int) -> dict:
    """Check an LLM endpoint before a run and estimate the LLM part (issue 25, issue 26): one cheap call
    (:meth:`~synthor_core.priors.llm.LLMClient.check_endpoint`), then ``calls`` calls of ``tokens_per_call`` tokens
    at its measured rate, ``concurrency`` at a time.

    Returns
    -------
    dict with ``seconds`` (the check's answer), ``tokens_per_s`` (None when the endpoint reports no tokens),
    ``planned_calls``, ``tokens_per_call``, ``estimated_seconds`` (None when unknown), ``text`` (one line).

    Raises
    ------
    PriorError
        When the endpoint fails the check (named, with the cause): nothing else has been done.
    """
    check = client.check_endpoint()
    concurrency = client.settings.concurrency
    estimate = check.seconds_for(calls, tokens_per_call, concurrency)
    rate = check.tokens_per_s
    text = f"LLM endpoint {client.settings.base_url} answered the check in {check.seconds:.1f} s" + (
        f" (~{rate:,.0f} tokens/s)" if rate else ""
    )
    if estimate is not None:
        text += (
            f"; the LLM part: about {calls:,} calls of ~{tokens_per_call:,} tokens, {concurrency} at a time, roughly "
            + (f"{estimate / 60:,.0f} min" if estimate >= 90 else f"{estimate:,.0f} s")
        )
    return {
        "seconds": round(check.seconds, 3),
        "tokens_per_s": None if rate is None else round(rate, 1),
        "planned_calls": calls,
        "tokens_per_call": tokens_per_call,
        "estimated_seconds": None if estimate is None else round(estimate, 1),
        "text": text,
    }


@dataclass
class RunOutput:
    """What :func:`execute` leaves: the result, the report written, the prior it ran with and the files written."""

    result: SynthesisResult | HouseholdResult
    report: dict
    prior: Any
    files: list[Path] = field(default_factory=list)
    trips: TripResult | None = None  # a person project with [trips], written to a folder


def execute(
    project: Project | HouseholdProject,
    prior,
    config: SynthesisConfig,
    out: Path | None,
    should_stop: Callable[[], bool] | None = None,
    rules=(),
    hooks: RunHooks | None = None,
    initial=None,
    partitioning: Partitioning | None = None,
    rules_fit_cost_now: bool = True,
) -> RunOutput:
    """Run the loop on a project and write its outputs into ``out`` (the CLI and the app's runs alike).

    Parameters
    ----------
    project : Project or HouseholdProject
    prior : Prior (persons; its ``fallback`` used when ``config.fallback``) or PriorSpec (households)
    config : SynthesisConfig
    out : Path or None
        Persons: ``population.csv``, ``population.parquet``, ``report.json`` and ``llm_calls.jsonl`` (LLM prior);
        with ``[trips]``: ``persons.csv`` / ``.parquet`` (with each person's trips and commute) and ``trips.csv`` /
        ``.parquet`` instead of ``population.*``;
        None: nothing written (the app keeps a person population in its run store). Households (required):
        ``households.csv``, ``persons.csv`` (and Parquet, written partition by partition), ``zone_fit.csv``,
        PopulationSim's files for its projects, ``report.json``.
    should_stop, rules, initial, partitioning
        See :func:`~synthor_core.synthesis.loop.run_synthesis`.
    hooks : RunHooks, optional
    rules_fit_cost_now : bool
        Persons with rules: compute what the rules cost in fit (seconds) into the report now; False leaves it empty
        for the caller to add once the run shows as ended.

    Returns
    -------
    RunOutput

    Raises
    ------
    PriorError
        When the prior produced nothing (persons).
    TargetValidationError
        When the prior cannot serve the household project (checked before any work).
    OSError
        When an output cannot be written (a full disk): what was written before stays.
    """
    hooks = hooks or RunHooks()
    if isinstance(project, HouseholdProject):
        if out is None:
            raise ValueError("a household run needs an output folder")
        return _execute_households(project, prior, config, out, should_stop, hooks, partitioning)
    return _execute_persons(project, prior, config, out, should_stop, rules, hooks, initial, rules_fit_cost_now)


def _execute_persons(
    project, prior, config, out, should_stop, rules, hooks: RunHooks, initial, fit_cost_now: bool
) -> RunOutput:
    result = None
    check = None
    if hasattr(prior, "check_endpoint"):  # the LLM: its endpoint answers before any work, or the run fails now
        check = llm_check(prior, *prior.planned_calls(config))
        if hooks.on_check is not None:
            hooks.on_check(check)
    for event in run_synthesis(
        project,
        prior,
        config,
        should_stop,
        rules,
        checkpoint=hooks.checkpoint,
        initial=initial,
        fallback=prior.fallback,
    ):
        if isinstance(event, SynthesisResult):
            result = event
        elif isinstance(event, IterationEvent) and hooks.on_event is not None:
            hooks.on_event(event)
    assert result is not None  # the person loop always ends with its SynthesisResult (or raises)
    report = run_report(result, config, prior.name, prior.usage, prior.dollars())
    report["status"] = "failed" if result.error else "stopped" if result.stop_reason == "stop requested" else "finished"
    if check is not None:
        report["llm"]["check"] = check
        judge_llm_share(report)
    if rules:
        report["rules"] = rules_report(project, result.population, rules, fit_cost=None if fit_cost_now else {})
    output = RunOutput(result, report, prior)
    trips = None
    if project.trips is not None and not result.error and int(result.population["count"].sum()) > 0:
        days, written = None, None
        if getattr(prior, "name", None) == "llm":  # the LLM writes travellers' days: a diary seeding the trip prior
            from .priors.llm_trips import llm_days  # with the LLM prior only (openai is loaded then)

            try:
                days, written = llm_days(prior, project, result.population, np.random.default_rng([config.seed, 14]))
            except PriorError as exc:  # the budget spent or the endpoint gone: the trips go on from maxent
                written = {"error": f"{type(exc).__name__}: {exc}"}
        trips = synthesize_trips(project, result.population, config.seed, sample=days)
        if written is not None:
            trips.report["llm_days"] = written
        report["trips"] = trips.report
        output.trips = trips
    if out is None:
        return output
    with FileBatch() as batch:  # renamed together: a full disk leaves the last checkpoint and its report as they were
        decoded = project.schema.decode(result.population)
        if trips is None:
            output.files = write_population(decoded, out, batch=batch)
        else:
            output.files = write_persons_and_trips(decoded, trips.trips, trips.per_person, out, batch=batch)
        write_json(out / "report.json", report, batch)
        output.files.append(out / "report.json")
        if prior.calls:
            write_llm_calls(prior.calls, out / "llm_calls.jsonl", batch)
            output.files.append(out / "llm_calls.jsonl")
    return output


def _execute_households(project, spec, config, out, should_stop, hooks: RunHooks, partitioning) -> RunOutput:
    started = time.perf_counter()
    check = None
    if spec.name == "llm":  # the endpoint answers before any work, or the run fails now
        from .priors.llm import LLMClient
        from .priors.llm_households import planned_calls

        check = llm_check(LLMClient(spec.llm, spec.api_key), *planned_calls(project, spec.llm))
        if hooks.on_check is not None:
            hooks.on_check(check)
    writer: HouseholdWriter | None = None
    result = None
    written = 0
    try:
        for event in run_synthesis(project, spec, config, should_stop, partitioning=partitioning):
            if isinstance(event, HouseholdIteration):
                if hooks.on_event is not None:
                    hooks.on_event(event)
            elif isinstance(event, PartitionOutcome):
                writer = writer or HouseholdWriter(project, out, spec.name, origin=spec.name != "maxent")
                writer.add(event)
                written += 1
                if hooks.on_partition is not None:
                    hooks.on_partition(event, written)
            elif isinstance(event, HouseholdResult):
                result = event
        assert result is not None  # the household loop always ends with its HouseholdResult
        writer = writer or HouseholdWriter(project, out, spec.name, origin=spec.name != "maxent")
        extra = None
        if check is not None:  # the LLM's share judged before report.json is written (once)
            extra = {"households_by_prior": dict(result.households_by_prior), "prior_notes": result.prior}
            judge_llm_share(extra)  # adds llm_share, and llm_error (with status) or llm_degraded
            del extra["households_by_prior"], extra["prior_notes"]  # the report has them already
            extra["llm_check"] = check
        report = writer.finish(result, config, time.perf_counter() - started, extra)
    except BaseException:
        if writer is not None:
            writer.abandon()  # partial files go; files of an earlier run in the folder stay as they were
        raise
    files = sorted(p for p in Path(out).iterdir() if p.is_file() and not p.name.startswith("."))
    return RunOutput(result, report, spec, files)


def judge_llm_share(report: dict) -> None:
    """What the LLM contributed to a run with the LLM prior and its fallback, into ``report`` (issue 26: the
    fallback is for degradation, not for substitution): ``llm_share`` (of the final persons, or households, that
    came from the LLM), and ``llm_error`` when it is 0 (the run failed: its population came from the fallback
    alone; nothing is discarded) or ``llm_degraded`` when it is below ``defaults.LLM_DEGRADED_SHARE``, each naming
    the causes (failed calls by kind, records rejected by reason, most frequent first)."""
    if "households_by_prior" in report:  # a household run
        by_prior, unit = report["households_by_prior"], "households"
        llm = (report.get("prior_notes") or {}).get("llm", {})
        failures, rejected = llm.get("failures", {}), llm.get("rejected", {})
    else:
        by_prior = {name: s["final"] for name, s in (report.get("sources") or {}).items()}
        unit, failures, rejected = "persons", report["llm"]["failures"], report.get("rejected", {})
    total = sum(by_prior.values())
    if total <= 0:
        return
    share = by_prior.get("llm", 0) / total
    report["llm_share"] = round(share, 6)
    if share >= defaults.LLM_DEGRADED_SHARE:
        return
    causes = [f"{sum(failures.values()):,} failed calls ({_top(failures)})"] if failures else []
    causes += [f"{sum(rejected.values()):,} records rejected ({_top(rejected)})"] if rejected else []
    cause = "; ".join(causes) or "no cause recorded"
    others = ", ".join(name for name in by_prior if name != "llm")
    if share == 0:
        report["llm_error"] = (
            f"the LLM contributed no valid record: all {int(total):,} {unit} came from {others} ({cause})"
        )
        report["status"] = "failed"
    else:
        report["llm_degraded"] = (
            f"degraded: only {share:.1%} of the {unit} came from the LLM, the rest from {others} ({cause})"
        )


def _top(counts: dict, shown: int = 3) -> str:
    """The ``shown`` largest counts as "reason 12, other 3" (the rest summed)."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} {v:,}" for k, v in ranked[:shown])
    rest = sum(v for _, v in ranked[shown:])
    return text + (f", others {rest:,}" if rest else "")


# --- background runs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSnapshot:
    """A copy of one run's state, safe to read from any thread.

    Attributes
    ----------
    run_id : str
    status : {"running", "finished", "stopped", "failed"} (the store also knows "interrupted": a run whose
        process ended without finishing it)
    events : tuple of IterationEvent (persons) or HouseholdIteration (households), one per finished iteration
    result : SynthesisResult, HouseholdResult or None (set when the run ended without error)
    error : str or None (the message of a failed run)
    config : SynthesisConfig
    prior : str
    started_at, ended_at : float (seconds since the epoch), ended_at None while running
    project : Project or HouseholdProject
    folder : Path or None
        Where a household run writes its outputs.
    partitions : int
        Partitions of a household run written so far.
    stage : str
        What the run is doing now (``"preparing candidates"``, ``"balancing"``, ``"integerizing"``, ...).
    report : dict or None
        The run's ``report.json`` content once it ended.
    store_error : str or None
        Why the run store could not record the ended run (a full disk): its result is kept in this process
        (:meth:`Runner.exports`) until it ends.
    trips : TripResult or None
        The trips of a person run of a project with ``[trips]``, once it ended.
    """

    run_id: str
    status: str
    events: tuple[Any, ...]
    result: Any
    error: str | None
    config: SynthesisConfig
    prior: str
    started_at: float
    ended_at: float | None
    project: Any
    folder: Path | None = None
    partitions: int = 0
    stage: str = ""
    report: dict | None = None
    store_error: str | None = None
    trips: TripResult | None = None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the start (to the end once ended)."""
        return (self.ended_at or time.time()) - self.started_at

    @property
    def households(self) -> bool:
        """Whether this is a household run."""
        return isinstance(self.project, HouseholdProject)


@dataclass
class _Run:
    snapshot: RunSnapshot
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


# what the run store raises when it cannot write or read its file (a full disk, a file another process holds): a run
# keeps its result in this process and the app stays usable
STORE_ERRORS = (OSError, SynthorError, duckdb.Error)


class Runner:
    """Registry of runs, each in its own daemon thread. Thread-safe; share one per process.

    Parameters
    ----------
    store : RunStore or None
        When given, every run, iteration, proposal, checkpoint and final population is recorded there, and runs
        the store lists as running whose process is gone are marked "interrupted" at once
        (:meth:`RunStore.mark_interrupted`).
    folder : Path or None
        Where household runs write their outputs (one folder per run); default: ``runs/`` beside the store, or a
        temporary folder without a store.
    """

    def __init__(self, store: RunStore | None = None, folder: Path | None = None):
        self.store = store
        self.folder = folder or (store.path.parent / "runs" if store is not None else None)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._fit_costs: dict[tuple, tuple[Project, dict]] = {}  # (project id, rules) -> (project kept alive, cost)
        self.interrupted: list[str] = store.mark_interrupted() if store is not None else []

    def start(
        self,
        project: Project | HouseholdProject,
        config: SynthesisConfig,
        prior_factory: Callable[..., Any] | None = None,
        label: str = "",
        rules=(),
        owner: str | None = None,
        initial=None,
    ) -> str:
        """Start a run in a background thread; returns its id at once.

        ``prior_factory(project, config, rules)`` builds the prior in the run's thread (default: ``maxent`` for a
        person project, the seed prior for a household project: :func:`household_prior_factory`); ``label`` names
        the project in the run store (e.g. "bundled example"); ``rules`` are plausibility rules enforced as hard
        constraints (persons); ``owner`` is recorded with the run (a browser's identity in a private workspace);
        ``initial`` is a coded population to start from (see :meth:`resume`). A person run's population so far is
        saved in the store after the first iteration and then at most every ``CHECKPOINT_INTERVAL_S`` seconds; a
        household run's outputs are written partition by partition into its folder.
        """
        households = isinstance(project, HouseholdProject)
        factory = prior_factory or (household_prior_factory("seed") if households else maxent_prior)
        run_id = uuid.uuid4().hex[:12]
        folder = self._folder(run_id) if households else None
        snapshot = RunSnapshot(
            run_id, "running", (), None, None, config, "", time.time(), None, project, folder, 0, "starting"
        )
        run = _Run(snapshot)
        if self.store is not None:
            self.store.add_run(
                run_id,
                config,
                "",
                project,
                label or getattr(project, "description", "") or getattr(project, "name", ""),
                snapshot.started_at,
                owner=owner,
                folder=folder,
                rules=rules,
            )
        with self._lock:
            self._runs[run_id] = run
        run.thread = threading.Thread(
            target=self._work, args=(run, factory, tuple(rules), initial), name=f"synthor-{run_id}", daemon=True
        )
        run.thread.start()
        return run_id

    def _folder(self, run_id: str) -> Path:
        if self.folder is None:
            import tempfile

            self.folder = Path(tempfile.mkdtemp(prefix="synthor-runs-"))
        return self.folder / run_id

    def resume(self, run_id: str, folder: Path, owner: str | None = None) -> str:
        """Start a new run that goes on from an interrupted person run's saved population, with its project and
        settings and the ``maxent`` prior; returns the new run's id. ``folder`` receives the run's project (it must
        not exist yet).

        Raises
        ------
        KeyError
            When the store has no such run, or it saved no population.
        PermissionError
            When ``owner`` is given and the run belongs to someone else.
        """
        from .readers.project import load_project

        if self.store is None:
            raise KeyError("this runner has no run store")
        if owner is not None and self.store.owner(run_id) != owner:
            raise PermissionError(f"run {run_id} belongs to another user of this server")
        saved, project_zip = self.store.population(run_id), self.store.project_zip(run_id)
        if saved is None or project_zip is None:
            raise KeyError(f"run {run_id} saved no population to resume from")
        with zipfile.ZipFile(io.BytesIO(project_zip)) as archive:
            folder.mkdir(parents=True)
            for member in archive.infolist():  # our own zip, still: never write outside the folder
                if not member.is_dir() and (folder / member.filename).resolve().is_relative_to(folder.resolve()):
                    archive.extract(member, folder)
        project = load_project(folder)
        initial, _ = project.schema.encode(saved.drop(columns=["count"]))
        initial["count"] = saved["count"].to_numpy()
        settings = self.store.settings(run_id)
        if settings is None:
            raise KeyError(f"run {run_id} recorded no settings to resume with")
        config = SynthesisConfig(**settings)
        label = self.store.runs().set_index("run_id").loc[run_id, "project_label"]
        return self.start(
            project,
            config,
            maxent_prior,
            label=f"{label} (resumed from {run_id})",
            owner=owner,
            initial=initial[initial["count"] > 0].reset_index(drop=True),
        )

    def _update(self, run: _Run, **changes) -> None:
        with self._lock:
            run.snapshot = replace(run.snapshot, **changes)

    def _work(self, run: _Run, prior_factory, rules, initial) -> None:
        snap = run.snapshot
        prior = None
        saved_at = -math.inf
        pending: list = []  # iterations not yet in the store: written with the next checkpoint or every second
        written_at = time.monotonic()

        def flush() -> None:
            nonlocal written_at
            if self.store is not None and pending:
                self.store.add_iterations(snap.run_id, pending)
                pending.clear()
            written_at = time.monotonic()

        def on_event(event) -> None:
            pending.append(event)
            if time.monotonic() - written_at >= STORE_INTERVAL_S:
                flush()
            stage = "balancing" if isinstance(event, HouseholdIteration) else "iterating"
            with self._lock:
                run.snapshot = replace(run.snapshot, events=run.snapshot.events + (event,), stage=stage)

        def on_partition(outcome: PartitionOutcome, done: int) -> None:
            flush()
            if self.store is not None:
                self.store.save_partitions(snap.run_id, done)
            self._update(run, partitions=done)

        def checkpoint(iteration: int, population) -> None:
            nonlocal saved_at
            if self.store is not None and time.monotonic() - saved_at >= CHECKPOINT_INTERVAL_S:
                flush()
                self.store.save_checkpoint(snap.run_id, iteration, snap.project.schema.decode(population))
                saved_at = time.monotonic()

        try:
            self._update(run, stage="preparing the prior")
            prior = prior_factory(snap.project, snap.config, rules)
            self._update(run, prior=prior.name, stage="preparing candidates" if snap.households else "iterating")
            output = execute(
                snap.project,
                prior,
                snap.config,
                snap.folder,
                run.stop.is_set,
                rules,
                RunHooks(on_event, on_partition, checkpoint),
                initial,
                rules_fit_cost_now=False,
            )
            self._finish(run, output, rules, flush)
        except PriorError as exc:
            if not (run.stop.is_set() and not run.snapshot.events):
                self._fail(run, prior, exc, flush)
                return
            # stopped before its first iteration ended: nothing was built, and that is not a failure
            ended = time.time()
            if self.store is not None:
                flush()
                self.store.end_unfinished(snap.run_id, "stopped", "stopped on request")
            self._update(run, status="stopped", ended_at=ended, error=None)
        except Exception as exc:  # a failed run is reported on the page and in the store; the app stays usable
            self._fail(run, prior, exc, flush)

    def _finish(self, run: _Run, output: RunOutput, rules, flush) -> None:
        """Record a run that ended: its report, its population (persons) in the store, its status."""
        snap = run.snapshot
        result, report, prior = output.result, output.report, output.prior
        flush()
        error = result.error or report.get("llm_error")
        status = "failed" if error else "stopped" if result.stop_reason == "stop requested" else "finished"
        ended = time.time()
        store_error = None
        if self.store is not None:
            try:
                population = None
                if isinstance(result, SynthesisResult):
                    population = snap.project.schema.decode(result.population)
                    self.store.add_llm_calls(snap.run_id, list(prior.calls))
                else:
                    self.store.add_llm_calls(snap.run_id, [])
                trips = output.trips.trips if output.trips is not None else None
                self.store.finish_run(snap.run_id, status, ended, report, population, error, trips)
            except STORE_ERRORS as exc:  # a full disk: the result stays in this process
                logging.getLogger("synthor").error(
                    "run %s: the store could not record the ended run\n%s", snap.run_id, traceback.format_exc()
                )
                store_error = f"the run store could not record it ({_cause(exc)})"
        self._update(
            run,
            result=result,
            trips=output.trips,
            status=status,
            ended_at=ended,
            error=error,
            stage="ended",
            report=report,
            store_error=store_error,
        )
        if self.store is not None and store_error is None and rules and isinstance(result, SynthesisResult):
            # what the rules cost in fit takes seconds: added to the report once the run shows as ended
            report["rules"]["fit_cost"] = self._rules_fit_cost(snap.project, rules)
            try:
                self.store.update_report(snap.run_id, report)
            except STORE_ERRORS as exc:  # the run is recorded; only this addition is lost
                logging.getLogger("synthor").error("run %s: the rules' fit cost was not stored: %s", snap.run_id, exc)

    def _rules_fit_cost(self, project: Project, rules) -> dict:
        """What the rules cost in fit (:func:`~synthor_core.evaluate.rules.rules_fit_cost`, seconds of work), computed
        once per project object and rules: every run of the same project with the same rules shares it."""
        key = (id(project), tuple((r.name, r.condition) for r in rules))
        with self._lock:
            cached = self._fit_costs.get(key)
        if cached is not None and cached[0] is project:
            return cached[1]
        cost = rules_fit_cost(project, rules)
        with self._lock:
            if len(self._fit_costs) >= 8:  # a few projects at a time: the oldest goes
                self._fit_costs.pop(next(iter(self._fit_costs)))
            self._fit_costs[key] = (project, cost)
        return cost

    def _fail(self, run: _Run, prior, exc: Exception, flush) -> None:
        """Record a run that an error stopped: the message for the page, the traceback for the log, and what was
        saved stays in the store."""
        snap = run.snapshot
        error = f"{type(exc).__name__}: {exc}"
        ended = time.time()
        # the user reads the message; the traceback goes to the server's log, never to the page
        logging.getLogger("synthor").error("run %s failed\n%s", snap.run_id, traceback.format_exc())
        if self.store is not None:
            try:  # what was saved stays: the last checkpoint becomes the failed run's population
                flush()
                self.store.add_llm_calls(snap.run_id, list(getattr(prior, "calls", []) or []))
                self.store.end_unfinished(snap.run_id, "failed", "an error stopped it", error=error)
            except STORE_ERRORS as store_exc:  # a full disk: the store keeps its state
                logging.getLogger("synthor").error(
                    "run %s: the store could not record the failure: %s", snap.run_id, store_exc
                )
                error += f" (and the run store could not record it: {store_exc})"
        self._update(run, status="failed", ended_at=ended, error=error, stage="ended")

    def exports(self, run_id: str) -> dict[str, bytes]:
        """Download files of a run (:meth:`RunStore.exports`); for a person run the store could not record
        (``store_error``), the files of its result kept in this process, so nothing computed is lost."""
        with self._lock:
            run = self._runs.get(run_id)
        snap = run.snapshot if run is not None else None
        if snap is not None and snap.store_error and isinstance(snap.result, SynthesisResult):
            project = None
            if self.store is not None:
                try:  # recorded when the run started; a store that cannot be read now only costs the project zip
                    project = self.store.project_zip(run_id)
                except STORE_ERRORS as exc:
                    logging.getLogger("synthor").error("run %s: project zip not read from the store: %s", run_id, exc)
            trips = snap.trips.trips if snap.trips is not None else None
            return person_exports(
                snap.project.schema.decode(snap.result.population), snap.report, project, run_id, trips
            )
        return self.store.exports(run_id) if self.store is not None else {}

    def stop(self, run_id: str) -> None:
        """Ask a run to stop; it ends within one iteration and keeps what it built."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            run.stop.set()

    def wait(self, run_id: str, timeout_s: float | None = None) -> RunSnapshot:
        """Block until the run's thread ends (or the timeout); returns its snapshot."""
        with self._lock:
            run = self._runs[run_id]
        if run.thread is not None:
            run.thread.join(timeout_s)
        return self.snapshot(run_id)

    def snapshot(self, run_id: str) -> RunSnapshot:
        """A copy of the run's state taken under the lock. Raises KeyError for an unknown id."""
        with self._lock:
            return self._runs[run_id].snapshot

    def run_ids(self) -> list[str]:
        """Ids of every run, oldest first."""
        with self._lock:
            return list(self._runs)


def _cause(exc: BaseException) -> str:
    """A storage error in a few words: the OS's reason (``No space left on device``) when there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return "No space left on device" if "No space left on device" in text else text.splitlines()[0][:200]
