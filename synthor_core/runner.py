"""Runs the engine in background threads: start, stop, progress (DESIGN §6; STYLE.md rule 10).

Only this module has threads. A thread never calls Streamlit: it appends the engine's events to its run under a
lock, and pages read a copy with :meth:`Runner.snapshot`.
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

import duckdb

from .errors import PriorError, SynthorError
from .evaluate.report import run_report
from .evaluate.rules import rules_fit_cost, rules_report
from .priors.base import Prior
from .priors.maxent import MaxEntPrior
from .store import CHECKPOINT_INTERVAL_S, RunStore
from .synthesis.loop import IterationEvent, SynthesisConfig, SynthesisResult, run_synthesis
from .targets.model import Project

STORE_INTERVAL_S = 1.0  # a run's iterations reach the store at most this often (each write opens the file)


@dataclass(frozen=True)
class RunSnapshot:
    """A copy of one run's state, safe to read from any thread.

    Attributes
    ----------
    run_id : str
    status : {"running", "finished", "stopped", "failed"} (the store also knows "interrupted": a run whose
        process ended without finishing it)
    events : tuple of IterationEvent, one per finished iteration
    result : SynthesisResult or None (set when the run ended without error)
    error : str or None (the message of a failed run)
    config : SynthesisConfig
    prior : str
    started_at, ended_at : float (seconds since the epoch), ended_at None while running
    project : Project
    """

    run_id: str
    status: str
    events: tuple[IterationEvent, ...]
    result: SynthesisResult | None
    error: str | None
    config: SynthesisConfig
    prior: str
    started_at: float
    ended_at: float | None
    project: Project

    @property
    def elapsed_s(self) -> float:
        """Seconds since the start (to the end once ended)."""
        return (self.ended_at or time.time()) - self.started_at


@dataclass
class _Run:
    snapshot: RunSnapshot
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


def maxent_prior(project: Project, config: SynthesisConfig, rules=()) -> Prior:
    """The default prior factory: the embedded ``maxent`` prior in the run's mode, rules as structural zeros."""
    return MaxEntPrior(project, mode=config.mode, rules=rules)


PRIORS = {
    "maxent": "maxent: embedded maximum-entropy model (offline, no API key)",
    "llm": "llm: a large language model at any OpenAI-compatible endpoint",
}
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


def prior_factory(name: str) -> Callable[..., Prior]:
    """The factory of a prior listed in ``PRIORS``. Raises KeyError naming the known priors."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown prior {name!r}; known: {', '.join(_FACTORIES)}")
    return _FACTORIES[name]


class Runner:
    """Registry of runs, each in its own daemon thread. Thread-safe; share one per process.

    Parameters
    ----------
    store : RunStore or None
        When given, every run, iteration, proposal, checkpoint and final population is recorded there, and runs
        the store lists as running whose process is gone are marked "interrupted" at once
        (:meth:`RunStore.mark_interrupted`).
    """

    def __init__(self, store: RunStore | None = None):
        self.store = store
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._fit_costs: dict[tuple, tuple[Project, dict]] = {}  # (project id, rules) -> (project kept alive, cost)
        self.interrupted: list[str] = store.mark_interrupted() if store is not None else []

    def start(
        self,
        project: Project,
        config: SynthesisConfig,
        prior_factory: Callable[..., Prior] = maxent_prior,
        label: str = "",
        rules=(),
        owner: str | None = None,
        initial=None,
    ) -> str:
        """Start a run in a background thread; returns its id at once.

        ``prior_factory(project, config, rules)`` builds the prior in the run's thread; ``label`` names the
        project in the run store (e.g. "bundled example"); ``rules`` are plausibility rules enforced as hard
        constraints; ``owner`` is recorded with the run (a browser's identity in a private workspace);
        ``initial`` is a coded population to start from (see :meth:`resume`). The population so far is saved in
        the store after the first iteration and then at most every ``CHECKPOINT_INTERVAL_S`` seconds.
        """
        run_id = uuid.uuid4().hex[:12]
        snapshot = RunSnapshot(run_id, "running", (), None, None, config, "", time.time(), None, project)
        run = _Run(snapshot)
        if self.store is not None:
            self.store.add_run(
                run_id, config, "", project, label or project.description, snapshot.started_at, owner=owner
            )
        with self._lock:
            self._runs[run_id] = run
        run.thread = threading.Thread(
            target=self._work, args=(run, prior_factory, tuple(rules), initial), name=f"synthor-{run_id}", daemon=True
        )
        run.thread.start()
        return run_id

    def resume(self, run_id: str, folder: Path, owner: str | None = None) -> str:
        """Start a new run that goes on from an interrupted run's saved population, with its project and settings
        and the ``maxent`` prior; returns the new run's id. ``folder`` receives the run's project (it must not
        exist yet).

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

        def checkpoint(iteration: int, population) -> None:
            nonlocal saved_at
            if self.store is not None and time.monotonic() - saved_at >= CHECKPOINT_INTERVAL_S:
                flush()
                self.store.save_checkpoint(snap.run_id, iteration, snap.project.schema.decode(population))
                saved_at = time.monotonic()

        try:
            prior = prior_factory(snap.project, snap.config, rules)
            self._update(run, prior=prior.name)
            for event in run_synthesis(
                snap.project,
                prior,
                snap.config,
                run.stop.is_set,
                rules,
                checkpoint=checkpoint,
                initial=initial,
                fallback=getattr(prior, "fallback", None),
            ):
                if isinstance(event, SynthesisResult):
                    flush()
                    status = "stopped" if event.stop_reason == "stop requested" else "finished"
                    ended = time.time()
                    if self.store is not None:
                        dollars = prior.dollars() if hasattr(prior, "dollars") else None
                        report = run_report(event, snap.config, prior.name, prior.usage, dollars)
                        if rules:
                            # what the rules cost in fit takes seconds: added to the report once the run shows
                            # as ended (below)
                            report["rules"] = rules_report(snap.project, event.population, rules, fit_cost={})
                        decoded = snap.project.schema.decode(event.population)
                        self.store.add_llm_calls(snap.run_id, getattr(prior, "calls", []))
                        self.store.finish_run(
                            snap.run_id, "failed" if event.error else status, ended, report, decoded, event.error
                        )
                    self._update(
                        run, result=event, status="failed" if event.error else status, ended_at=ended, error=event.error
                    )
                    if self.store is not None and rules:
                        report["rules"]["fit_cost"] = self._rules_fit_cost(snap.project, rules)
                        self.store.update_report(snap.run_id, report)
                else:
                    pending.append(event)
                    if time.monotonic() - written_at >= STORE_INTERVAL_S:
                        flush()
                    with self._lock:
                        run.snapshot = replace(run.snapshot, events=run.snapshot.events + (event,))
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
                self.store.add_llm_calls(snap.run_id, getattr(prior, "calls", []))
                self.store.end_unfinished(snap.run_id, "failed", "an error stopped it", error=error)
            except (OSError, SynthorError, duckdb.Error) as store_exc:  # a full disk: the store keeps its state
                logging.getLogger("synthor").error(
                    "run %s: the store could not record the failure: %s", snap.run_id, store_exc
                )
                error += f" (and the run store could not record it: {store_exc})"
        self._update(run, status="failed", ended_at=ended, error=error)

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
