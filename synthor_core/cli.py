"""Headless runs: ``python -m synthor_core run|convert|validate ...``.

``run`` writes, for a person project, ``OUT/population.csv`` (one row per person, ``person_id`` then one column per
variable, exactly N rows), ``population.parquet`` and ``OUT/report.json`` (see
:func:`synthor_core.evaluate.report.run_report`); for a household project ``households.csv``, ``persons.csv`` and
the rest (:class:`synthor_core.export.HouseholdWriter`).
Both go through :func:`synthor_core.runner.execute`, the run the app starts. ``validate`` prints every problem of a
project folder at once; ``convert`` writes a PopulationSim working directory as a Synthor household project
folder (:func:`synthor_core.readers.convert.convert_populationsim`). Exit codes: 0 success, 1 the run failed, 2
bad input or settings.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from .errors import Problem, SynthorError, TargetValidationError
from .evaluate.holdout import evaluate_population, format_evaluation
from .export import FileBatch, RepopError, column_warnings, merge_repop, read_base_run, write_json, write_population
from .priors.base import Prior
from .priors.maxent import MaxEntPrior
from .readers.convert import convert_populationsim
from .readers.households import load_household_project
from .readers.open import is_zoned_project, open_project
from .readers.project import load_project, validate_project
from .readers.rules import load_rules
from .runner import RunHooks, execute
from .schema import COUNT, spreadsheet_unescape
from .store import CHECKPOINT_INTERVAL_S
from .synthesis.config import SynthesisConfig
from .synthesis.events import HouseholdIteration, HouseholdResult, IterationEvent, PartitionOutcome, SynthesisResult
from .synthesis.loop import Partitioning
from .synthesis.partitions import PriorSpec
from .targets.model import HouseholdProject, Project
from .targets.tables import size_problem


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m synthor_core", description="Synthor: synthetic populations from aggregate tables."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="synthesize a population for a project folder")
    run.add_argument(
        "project",
        type=Path,
        help="folder holding synthor.toml, or a PopulationSim working directory "
        "(configs/settings.yaml, configs/controls.csv, data/)",
    )
    run.add_argument("--n", type=int, default=None, help="population size N (default: [population] size)")
    run.add_argument(
        "--prior",
        choices=["maxent", "llm", "seed"],
        default=None,
        help="where records come from (default: seed for a project with a seed sample, else maxent)",
    )
    run.add_argument("--configs", default="configs", help="PopulationSim projects: the configs folder's name")
    run.add_argument(
        "--data",
        default=None,
        help="PopulationSim projects: the data folder's name (default: the settings' data_dir, else data)",
    )
    run.add_argument("--max-sweeps", type=int, default=None, help="households: list-balancing sweeps at most")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="households: local processes running partitions (default 1: in this process)",
    )
    run.add_argument(
        "--scheduler",
        default=None,
        help="households: address of a running dask.distributed scheduler (tcp://host:8786)",
    )
    run.add_argument(
        "--partition",
        default=None,
        help="households: the geography level whose zones are the partitions (default: the seed's)",
    )
    run.add_argument(
        "--base",
        type=Path,
        default=None,
        help="PopulationSim repop: a previous run's output folder; the zones of the project's repop controls are "
        "synthesized again and replace (or are added to) its households there, the others are kept",
    )
    run.add_argument("--mode", choices=["full", "paper"], default="full")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out", type=Path, required=True, help="output folder (created)")
    run.add_argument("--max-iterations", type=int, default=None)
    run.add_argument("--max-proposals", type=int, default=None, help="proposals one plan may make (default 24)")
    run.add_argument("--tolerance", type=float, default=None, help="mean TVD at which the loop stops")
    run.add_argument(
        "--within-bin",
        choices=["smooth", "uniform"],
        default="smooth",
        help="numeric values inside a bin: a smooth density through the bins (monotone spline of the CDF; default) "
        "or uniform (the paper's protocol; paper mode always uses it)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument(
        "--rules",
        type=Path,
        default=None,
        help="plausibility rules (TOML) enforced as hard constraints (structural zeros)",
    )
    llm = run.add_argument_group("LLM prior (--prior llm): any OpenAI-compatible endpoint")
    llm.add_argument("--base-url", help="e.g. https://api.openai.com/v1, http://localhost:11434/v1 (Ollama)")
    llm.add_argument(
        "--local-model",
        action="store_true",
        help="the bundled small model (SmolLM2-135M, requirements-local-model.txt) served on 127.0.0.1 for this run "
        "instead of --base-url and --model; implies --prior llm (defaults: --timeout 300 --concurrency 1 "
        "--records-per-call 10 --max-proposals 6)",
    )
    llm.add_argument("--model", help="model name at the endpoint")
    llm.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (never a command-line value)",
    )
    llm.add_argument("--temperature", type=float, default=None)
    llm.add_argument("--max-tokens", type=int, default=None, help="per reply")
    llm.add_argument("--timeout", type=float, default=None, help="seconds per request")
    llm.add_argument("--concurrency", type=int, default=None, help="requests in flight at once")
    llm.add_argument("--token-budget", type=int, default=None, help="stop cleanly after this many tokens")
    llm.add_argument("--structured-output", choices=["json_schema", "json_object", "text"], default=None)
    llm.add_argument("--max-retries", type=int, default=None)
    llm.add_argument(
        "--unreachable-after",
        type=float,
        default=None,
        help="seconds of continuous connection failures after which the run stops",
    )
    llm.add_argument("--records-per-call", type=int, default=None)
    llm.add_argument(
        "--distinct-records",
        type=int,
        default=None,
        help="distinct records (households, for a household project) the LLM writes in all, whatever N",
    )
    llm.add_argument("--cache", default=None, help="folder of the reply cache (replays identical requests)")
    llm.add_argument("--scenario", default=None, help="free text added to every prompt")
    llm.add_argument("--price-prompt", type=float, default=None, help="USD per million prompt tokens")
    llm.add_argument("--price-completion", type=float, default=None, help="USD per million completion tokens")
    llm.add_argument(
        "--no-fallback",
        action="store_true",
        help="pure LLM output: no maxent for what the LLM cannot realize (its records break the schema, the "
        "proposal or the rules, its calls fail) nor for target cells left without a record",
    )
    local = sub.add_parser(
        "local-llm", help="serve the bundled small model on 127.0.0.1 (an OpenAI-compatible endpoint) until Ctrl-C"
    )
    local.add_argument("--port", type=int, default=0, help="default: a free port")
    local.add_argument("--threads", type=int, default=None, help="decoding threads (default: 1 up to 4 cores)")
    local.add_argument("--slots", type=int, default=1, help="requests decoded at once")
    conv = sub.add_parser("convert", help="write a PopulationSim working directory as a Synthor household project")
    conv.add_argument(
        "project",
        type=Path,
        help="PopulationSim working directory (configs/settings.yaml, configs/controls.csv, data/)",
    )
    conv.add_argument("out", type=Path, help="the Synthor project folder to write (new or empty)")
    conv.add_argument("--configs", default="configs", help="the configs folder's name")
    conv.add_argument(
        "--repop",
        action="store_true",
        help="convert the project's repop mode (repop controls and tables): run the result with --base PREVIOUS_OUT",
    )
    conv.add_argument(
        "--data", default=None, help="the data folder's name (default: the settings' data_dir, else data)"
    )
    val = sub.add_parser("validate", help="check a project folder and print every problem")
    val.add_argument("project", type=Path)
    val.add_argument("--configs", default="configs", help="a PopulationSim folder's configs folder")
    val.add_argument("--data", default=None, help="a PopulationSim folder's data folder")
    ev = sub.add_parser("evaluate", help="evaluate a population against its targets, held-out records and rules")
    ev.add_argument("population", type=Path, help="population.csv (one row per person)")
    ev.add_argument("--project", type=Path, required=True)
    ev.add_argument("--holdout", type=Path, default=None, help="real micro-records (CSV) not used for the targets")
    ev.add_argument("--rules", type=Path, default=None, help="plausibility rules (TOML)")
    ev.add_argument("--label", default=None, help="categorical variable for train-on-synthetic / test-on-real")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write the JSON report (default: evaluation.json beside the population)",
    )
    return parser


def _print_setting_errors(exc: ValidationError) -> None:
    """One line per bad setting: its name, what is allowed, what was given."""
    for e in exc.errors():
        message = str(e["msg"]).removeprefix("Value error, ")
        print(f"error: setting {'.'.join(map(str, e['loc']))}: {message}, got {e.get('input')!r}", file=sys.stderr)


def _progress(event: IterationEvent) -> str:
    return (
        f"iteration {event.iteration:4d}  mean TVD {event.mean_tvd:.4f}  max TVD {event.max_tvd:.4f}  "
        f"+{event.added:,} -{event.removed:,} persons  {event.population_total:,} persons in "
        f"{event.distinct_records:,} distinct records  {event.seconds:.2f} s"
    )


def _config(args: argparse.Namespace, households: bool) -> SynthesisConfig | None:
    """The run's settings from the command line, or None after printing why they are wrong."""
    settings: dict = {"seed": args.seed, "fallback": not args.no_fallback}
    if households:
        if args.max_sweeps is not None:
            settings["max_sweeps"] = args.max_sweeps
    else:
        settings.update({"mode": args.mode, "size": args.n})
        if args.max_iterations is not None:
            settings["max_iterations"] = args.max_iterations
        if args.max_proposals is not None:
            settings["max_proposals"] = args.max_proposals
        if args.tolerance is not None:
            settings["tolerance_tvd"] = args.tolerance
    try:
        return SynthesisConfig(**settings)
    except ValidationError as exc:
        _print_setting_errors(exc)
        return None


def command_run(args: argparse.Namespace) -> int:
    """Run a synthesis of a person or a household project and write its outputs and ``report.json`` into ``--out``
    (:func:`synthor_core.runner.execute`, the same run the app starts); returns the exit code. With
    ``--local-model`` the bundled model is served for the run (:class:`~synthor_core.priors.local_model.LocalModel`)
    and stopped after it."""
    if not args.local_model:
        return _command_run(args)
    from .priors.local_model import LOCAL_RUN_DEFAULTS, LocalModel, LocalModelUnavailable

    if args.prior not in (None, "llm") or args.base_url or args.model:
        print(
            "error: --local-model serves its own endpoint for the LLM prior: leave out --base-url, --model and "
            f"--prior {args.prior or ''}".rstrip(),
            file=sys.stderr,
        )
        return 2
    try:
        local = LocalModel().start()
    except LocalModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if not args.quiet:
            print(f"local model {local.model} at {local.base_url} ({local.threads} thread(s))", flush=True)
        args.prior, args.base_url, args.model = "llm", local.base_url, local.model
        for name, value in LOCAL_RUN_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        return _command_run(args)
    finally:
        local.close()


def command_local_llm(args: argparse.Namespace) -> int:
    """Serve the bundled small model on 127.0.0.1 until Ctrl-C or SIGTERM; returns the exit code."""
    from .priors.local_model import LocalModel, LocalModelUnavailable

    try:
        local = LocalModel(threads=args.threads, slots=args.slots, port=args.port).start()
    except (LocalModelUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(
            f"serving {local.model} at {local.base_url} ({local.threads} thread(s), {local.slots} slot(s)); use it "
            f"with: --prior llm --base-url {local.base_url} --model {local.model}; Ctrl-C stops",
            flush=True,
        )
        with _StopOnSignal() as stop:
            while not stop.requested():
                time.sleep(0.2)
    finally:
        local.close()
    return 0


def _command_run(args: argparse.Namespace) -> int:
    llm_settings = None
    if args.prior == "llm":
        llm_settings = _llm_settings(args)
        if llm_settings is None:
            return 2
    started = time.perf_counter()
    project = open_project(args.project, args.configs, args.data, repop=args.base is not None)
    households = isinstance(project, HouseholdProject)
    if not households and args.prior == "seed":
        print(
            "error: --prior seed needs a seed sample of households (a PopulationSim working directory)", file=sys.stderr
        )
        return 2
    if households and args.workers < 1:
        print(f"error: --workers must be 1 or more, got {args.workers}", file=sys.stderr)
        return 2
    config = _config(args, households)
    if config is None:
        return 2
    if args.base is not None:
        assert isinstance(project, HouseholdProject)  # open_project(repop=True) reads one or raises
        if args.out.resolve() == args.base.resolve():
            print(
                "error: repop: --out must be another folder than --base (the base run stays as it was)", file=sys.stderr
            )
            return 2
        try:
            read_base_run(project, args.base, header_only=True)  # the base is read whole once the run is done
        except RepopError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for warning in project.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    small = size_problem(config.size, project.tables) if config.size and isinstance(project, Project) else None
    if small:
        print(f"error: --n {config.size}: {small}", file=sys.stderr)
        return 2
    written = (
        {Path(project.output.households_file).name, Path(project.output.persons_file).name}
        if isinstance(project, HouseholdProject) and project.output is not None
        else set()
    )
    problem = output_folder_problem(args.out, args.project, written)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if isinstance(project, HouseholdProject):
        return _run_households(args, project, config, llm_settings, started)
    return _run_persons(args, project, config, llm_settings, started)


def _run_persons(args: argparse.Namespace, project, config: SynthesisConfig, llm_settings, started: float) -> int:
    rules = load_rules(args.rules, project.schema) if args.rules else list(project.rules)
    maxent = MaxEntPrior(project, mode=config.mode, rules=rules, within_bin=args.within_bin)
    prior: Prior
    if llm_settings is not None:
        from .priors.llm import LLMPrior

        prior = LLMPrior(project, llm_settings, mode=config.mode)
        prior.fallback = maxent
    else:
        prior = maxent
    saver = _CheckpointWriter(
        args.out, project.schema, config, prior.name, "persons" if project.trips is not None else "population"
    )

    def line(event) -> None:
        if args.quiet:
            return
        text = _progress(event)
        if event.llm_calls:
            text += f"  {event.llm_calls:,} LLM calls, {event.prompt_tokens + event.completion_tokens:,} tokens"
        if event.sources.get("maxent"):
            text += f"  ({event.sources['maxent']:,} added persons from maxent)"
        if planned[0]:
            text += f"  (LLM calls planned: about {planned[0]:,})"
        print(text, flush=True)

    planned = [0]

    def check_line(check: dict) -> None:
        planned[0] = check["planned_calls"]
        if not args.quiet:
            print(check["text"], flush=True)

    with _StopOnSignal() as stop:
        try:
            hooks = RunHooks(line, None, saver, check_line)
            output = execute(project, prior, config, args.out, stop.requested, rules, hooks)
        except OSError as exc:
            kept = (
                f"the population saved at iteration {saver.saved_iteration} (not calibrated) is still there"
                if saver.saved_iteration
                else "nothing was saved"
            )
            print(f"error: could not write the results to {args.out} ({exc.strerror or exc}); {kept}", file=sys.stderr)
            return 1
    result, report = output.result, output.report
    assert isinstance(result, SynthesisResult)  # a person project's run ends with its SynthesisResult
    print(
        f"done: {report['records']:,} persons ({report['distinct_records']:,} distinct records), mean TVD "
        f"{report['mean_tvd']:.4f}, max TVD {report['max_tvd']:.4f}, {report['iterations']} iterations "
        f"({result.stop_reason}), {report['seconds']:.1f} s -> {args.out}"
    )
    if report.get("source_summary"):
        print(f"sources: {report['source_summary']}")
    if "trips" in report:
        trips = report["trips"]
        fits = ", ".join(
            f"{name} " + (f"CPC {fit['cpc']:.4f}" if "cpc" in fit else f"TVD {fit['tvd']:.4f}")
            for name, fit in trips["tables"].items()
        )
        print(
            f"trips: {trips['trips']:,} trips of {trips['travellers']:,} travellers ({fits}); "
            f"{trips['chains']['consistent_share']:.2%} of the tours chain; {trips['seconds']:.1f} s -> "
            f"{args.out / 'persons.csv'}, {args.out / 'trips.csv'}"
        )
        frequency = trips.get("frequency")
        if frequency:
            print(
                f"trips: {trips['tours']:,} tours a day by {' x '.join(frequency['by']) or 'everyone'} "
                f"(TVD {frequency['tvd']:.4f}); {frequency['tours_delayed']:,} tours delayed until the one before was "
                f"back (mean {frequency['mean_delay_minutes']:.0f} min)"
            )
        for warning in trips["prior"].get("warnings", []):
            print(f"warning: trips: {warning}", file=sys.stderr)
        days = trips.get("llm_days")
        if days and "error" in days:
            print(
                f"warning: trips: the LLM wrote no day ({days['error']}); the trips come from maxent", file=sys.stderr
            )
        elif days:
            rejected = ", ".join(f"{k} {v:,}" for k, v in days["rejected"].items())
            print(
                f"trips: the LLM wrote {days['days_valid']:,} valid days of {days['persons_asked']:,} travellers asked "
                f"({days['calls']:,} calls"
                + (f"; rejected: {rejected}" if rejected else "")
                + "), seeding the trip prior"
            )
        for name, event in trips.get("events", {}).items():
            hours = event["trips_to_zone_by_hour"]
            added = sum(hours["scenario"]) - sum(hours["base"])
            print(
                f"event {name}: {event['persons']:,} persons to zone {event['zone']} departing {event['depart']} "
                f"({added:+,} trips arriving in the zone over the day)"
            )
        print(f"run: {time.perf_counter() - started:.1f} s in all, peak memory {_peak_mib():,.0f} MiB")
    for name, numeric in report.get("numeric_controls", {}).items():
        worst = numeric["max_relative_error"]
        print(
            f"numeric control {name} ({numeric['statistic']} of {numeric['of']}): largest relative error "
            + ("none (a cell has no person)" if worst is None else f"{worst:.2%}")
        )
    if result.error:
        print(
            f"error: the run stopped early: {result.error}; the population built so far and the report are "
            f"in {args.out}",
            file=sys.stderr,
        )
        return 1
    if _llm_verdict(report, args.out):
        return 1
    if stop.requested():
        print(
            f"stopped on request: the population built so far is calibrated and written to {args.out}", file=sys.stderr
        )
        return STOPPED_EXIT
    if report["mean_tvd"] > config.tolerance_tvd:
        far = report["mean_tvd"] > max(NOT_CONVERGED_FACTOR * config.tolerance_tvd, NOT_CONVERGED_TVD)
        print(
            f"{'error' if far else 'warning'}: the run did not reach the tolerance: mean TVD "
            f"{report['mean_tvd']:.4f} > {config.tolerance_tvd:g} ({result.stop_reason})"
            + (
                "; the population does not fit its targets: check the tables for contradictions, give more "
                "iterations or another prior"
                if far
                else ""
            ),
            file=sys.stderr,
        )
        return 3 if far else 0
    return 0


def _run_households(args: argparse.Namespace, project: HouseholdProject, config, llm_settings, started) -> int:
    """Households with their members in every zone: ``households.csv``, ``persons.csv``, PopulationSim's
    ``synthetic_households.csv``, ``synthetic_persons.csv`` and ``summary_<GEOGRAPHY>.csv``, ``zone_fit.csv`` and
    ``report.json`` (per control: level, totals, %RMSE over zones, worst zones; the per-iteration history)."""
    prior = PriorSpec(args.prior or "seed", llm_settings)
    if not args.quiet:
        print(
            f"{project.name}: {len(project.sample.households):,} sample households, {len(project.controls)} controls, "
            f"{project.geography.n_zones:,} {project.geography.lowest} zones, "
            f"{int(project.households_per_zone().sum()):,} households to place",
            flush=True,
        )
        if args.workers > 1 or args.scheduler:
            print(f"running partitions on {args.scheduler or f'{args.workers} local processes'}", flush=True)

    def iteration_line(event) -> None:
        if not args.quiet and isinstance(event, HouseholdIteration):
            added = ", ".join(f"+{v:,} {k}" for k, v in event.added.items() if v)
            print(
                f"{event.partition} iteration {event.iteration:3d}  {event.sweeps:4d} sweeps  worst %RMSE "
                f"{event.worst_pct_rmse:.2f}  {event.candidates:,} candidates"
                + (f" ({added})" if added else "")
                + f"  {event.seconds:.1f} s",
                flush=True,
            )

    def partition_line(outcome: PartitionOutcome, done: int) -> None:
        if outcome.error:
            print(
                f"error: partition {outcome.name} failed ({outcome.error}); the other partitions go on",
                file=sys.stderr,
                flush=True,
            )
        elif not args.quiet:
            print(
                f"partition {outcome.name} ({done}): {outcome.placed:,} households in {outcome.seconds:.1f} s",
                flush=True,
            )

    def check_line(check: dict) -> None:
        if not args.quiet:
            print(check["text"], flush=True)

    how = Partitioning(args.partition, args.workers, args.scheduler)
    with _StopOnSignal() as stop:
        try:
            output = execute(
                project,
                prior,
                config,
                args.out,
                stop.requested,
                hooks=RunHooks(iteration_line, partition_line, on_check=check_line),
                partitioning=how,
            )
        except OSError as exc:
            print(
                f"error: could not write the results to {args.out} ({exc.strerror or exc}); the files begun were "
                f"removed and any earlier results in the folder are as they were: free some space and run again",
                file=sys.stderr,
            )
            return 1
    result, report = output.result, output.report
    assert isinstance(result, HouseholdResult)  # a household project's run ends with its HouseholdResult
    repop = None
    if project.repop is not None and not result.error and not stop.requested():
        try:
            repop = merge_repop(project, args.base, args.out, report)
        except OSError as exc:
            print(f"error: repop: could not write the merged households to {args.out} ({exc})", file=sys.stderr)
            return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for warning in column_warnings(report.get("columns", [])):
        print(f"warning: {warning}", file=sys.stderr)
    notes = report.get("prior_notes", {}).get("llm")
    if notes:
        print(
            f"llm: {notes['households_valid']:,} of {notes['households_written']:,} households written were valid "
            f"({notes['households_asked']:,} asked, {notes['calls']:,} calls"
            + (f", {sum(notes['failures'].values()):,} failed: " if notes["failures"] else "")
            + ", ".join(f"{k} {v:,}" for k, v in notes["failures"].items())
            + ")",
            flush=True,
        )
    worst = result.fit[result.fit["control"] != project.total_control].sort_values("pct_rmse", ascending=False)
    weighting = report.get("survey_weighting")
    made = (
        f"survey weighting: {weighting['sample_households']:,} sample households weigh {report['households']:,} "
        f"households, {report['persons']:,} persons (weights {weighting['ratio_to_sample_weight']['min']:.3g}-"
        f"{weighting['ratio_to_sample_weight']['max']:.3g} x the sample weight)"
        if weighting
        else f"{report['households']:,} households, {report['persons']:,} persons "
        f"({report['distinct_households']:,} distinct households; by prior: "
        + ", ".join(f"{k} {v:,}" for k, v in report["households_by_prior"].items())
        + ")"
    )
    print(
        f"done: {made}; {len(result.iterations)} iterations ({result.stop_reason}); worst %RMSE: "
        + ", ".join(f"{r.control} ({r.level}) {r.pct_rmse:.2f}" for r in worst.head(3).itertuples())
        + f"; {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    if repop is not None:
        print(
            f"repop ({repop['mode']}): {repop['base_households']:,} base households, {repop['dropped']:,} dropped in "
            f"{repop['zones']:,} {project.geography.lowest} zone(s), {repop['added']:,} added: {repop['households']:,} "
            f"households, {repop['persons']:,} persons -> {args.out}"
        )
        if repop["empty_columns"]:
            print(
                f"warning: repop: {', '.join(repop['empty_columns'])} empty in some households of one run and not in "
                f"the other (not in the seed sample to fill them)",
                file=sys.stderr,
            )
    failed = [o for o in result.partitions if o.error]
    if failed:
        print(
            f"error: {len(failed)} of {len(result.partitions)} partitions failed: "
            + "; ".join(f"{o.name}: {o.error}" for o in failed)
            + ". The other partitions' households are written.",
            file=sys.stderr,
        )
        return 1
    if stop.requested():
        print(f"stopped on request: the households placed so far are written to {args.out}", file=sys.stderr)
        return STOPPED_EXIT
    return 1 if _llm_verdict(report, args.out) else 0


def _llm_verdict(report: dict, out: Path) -> bool:
    """Print what the LLM contributed when it was little (``llm_degraded``, the last line) or nothing
    (``llm_error``); True when it was nothing: the run failed (its population is written all the same)."""
    if report.get("llm_error"):
        print(f"error: {report['llm_error']}; the population is written to {out} all the same", file=sys.stderr)
        return True
    if report.get("llm_degraded"):
        print(f"warning: {report['llm_degraded']}", file=sys.stderr)
    return False


NOT_CONVERGED_FACTOR, NOT_CONVERGED_TVD = 10, 0.05  # a final mean TVD above both: "did not converge", status 3
STOPPED_EXIT = 130  # Ctrl-C or SIGTERM: what was built is written, and the exit status says it was cut short


# files a run writes (a folder holding only these is a previous run's: it may be written again)
RUN_FILES = re.compile(
    r"(population|households|persons|synthetic_\w+|summary_\w+|zone_fit|report|llm_calls|evaluation)"
    r"\.(csv|parquet|json|jsonl)"
)
INPUT_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".parquet", ".yaml", ".yml", ".toml", ".json")


def output_folder_problem(out: Path, project: Path | None = None, written: set[str] | None = None) -> str | None:
    """Why results cannot be written to ``out`` (checked before a run starts, so that no work is lost), or None.

    Refused: a file of that name; a folder that cannot be written (a probe file is written and removed); a folder
    inside the ``project`` folder (or the folder itself) holding data files that are not a run's (``RUN_FILES``,
    or the names in ``written``): the project's own inputs, which the run's files would overwrite or mix with.
    The folder is created when missing."""
    if project is not None and out.is_dir():
        root, target = Path(project).resolve(), out.resolve()
        if root.is_file():
            root = root.parent
        if target == root or root in target.parents:
            inputs = sorted(
                p.name
                for p in target.iterdir()
                if p.is_file()
                and p.suffix.lower() in INPUT_SUFFIXES
                and not RUN_FILES.fullmatch(p.name)
                and p.name not in (written or set())
            )
            if inputs:
                shown = ", ".join(inputs[:3]) + (f" and {len(inputs) - 3:,} more" if len(inputs) > 3 else "")
                return (
                    f"--out {out} holds the project's own files ({shown}): the run would overwrite or mix with them; "
                    f"choose a folder for the results, such as {root / 'output'}"
                )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".synthor-probe-"):
            pass
    except FileExistsError:
        return f"--out {out}: a file of that name exists; expected a folder"
    except OSError as exc:
        return f"--out {out}: cannot write there ({exc.strerror or exc})"
    return None


class _StopOnSignal:
    """Ctrl-C (SIGINT) or a polite kill (SIGTERM) asks the run to stop: it calibrates what it built and writes it.
    A second Ctrl-C quits at once (the last checkpoint stays on disk)."""

    def __init__(self):
        self._event = threading.Event()
        self._previous: dict = {}

    def requested(self) -> bool:
        return self._event.is_set()

    def _handle(self, signum, frame) -> None:
        if self._event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._event.set()
        print(
            f"\nstopping ({signal.Signals(signum).name}): the population built so far is calibrated and written; "
            f"press Ctrl-C again to quit at once",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _peak_mib() -> float:
    """This process's peak resident memory so far, MiB (``ru_maxrss``: kB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class _CheckpointWriter:
    """Writes the population so far to ``population.csv`` and a report saying so, together (temporary files renamed
    when both are written, :class:`~synthor_core.export.FileBatch`): after a kill -9, a crash or a full disk the
    folder holds a complete, valid population of the last checkpoint. Writes after iteration 1, then at most every
    ``CHECKPOINT_INTERVAL_S`` seconds and never more than a tenth of the time (a large population takes a while to
    write)."""

    def __init__(self, out: Path, schema, config: SynthesisConfig, prior: str, name: str = "population"):
        self.out, self.schema, self.config, self.prior, self.name = out, schema, config, prior, name
        self.saved_iteration = 0
        self._next = 0.0

    def __call__(self, iteration: int, population: pd.DataFrame) -> None:
        if time.monotonic() < self._next:
            return
        began = time.monotonic()
        records = int(population[COUNT].sum())
        report = {
            "status": "checkpoint",
            "iterations": iteration,
            "records": records,
            "distinct_records": len(population),
            "prior": self.prior,
            "settings": self.config.model_dump(),
            "stop_reason": f"not finished: {self.name}.csv holds the population saved at iteration {iteration} "
            f"(not calibrated{', no trips yet' if self.name == 'persons' else ''}); the process was stopped before "
            "the end",
        }
        with FileBatch() as batch:  # population.csv and its report renamed together
            write_population(self.schema.decode(population), self.out, parquet=False, batch=batch, name=self.name)
            write_json(self.out / "report.json", report, batch)
        self.saved_iteration = iteration
        took = time.monotonic() - began
        self._next = time.monotonic() + max(CHECKPOINT_INTERVAL_S, 10 * took)


def _llm_settings(args: argparse.Namespace):
    """The LLM settings from the command line, or None after printing why they are wrong."""
    from .priors.llm import LLMSettings

    if not args.base_url or not args.model:
        print("error: --prior llm needs --base-url and --model", file=sys.stderr)
        return None
    options = {
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "timeout_s": args.timeout,
        "concurrency": args.concurrency,
        "token_budget": args.token_budget,
        "structured_output": args.structured_output,
        "max_retries": args.max_retries,
        "unreachable_after_s": args.unreachable_after,
        "records_per_call": args.records_per_call,
        "distinct_records": args.distinct_records,
        "cache_dir": args.cache,
        "scenario": args.scenario,
        "price_prompt_per_million": args.price_prompt,
        "price_completion_per_million": args.price_completion,
    }
    try:
        settings = LLMSettings(
            base_url=args.base_url,
            model=args.model,
            api_key_env=args.api_key_env,
            **{k: v for k, v in options.items() if v is not None},
        )
    except ValidationError as exc:
        _print_setting_errors(exc)
        return None
    return settings


def command_convert(args: argparse.Namespace) -> int:
    """Write a PopulationSim working directory as a Synthor household project folder; returns the exit code."""
    path = convert_populationsim(args.project, args.out, configs=args.configs, data=args.data, repop=args.repop)
    project = load_household_project(path.parent)
    files = sorted(p.relative_to(path.parent).as_posix() for p in path.parent.rglob("*") if p.is_file())
    print(
        f"wrote {path.parent}: {len(project.controls)} controls at {', '.join(project.geography.levels)}, "
        f"{len(project.derived)} derived household columns, {len(project.sample.households):,} seed households; "
        f"files: {', '.join(files)}"
    )
    base = " --base PREVIOUS_OUT" if project.repop else ""
    print(f"run it with: python -m synthor_core run {path.parent}{base} --out OUT")
    return 0


def command_validate(args: argparse.Namespace) -> int:
    """Print every problem of a project; returns 0 when there is none, 2 otherwise.

    Household projects (a Synthor household project or a PopulationSim folder) are loaded whole: every problem
    found is printed with its file, row and column.
    """
    if is_zoned_project(args.project, args.configs):
        try:
            project = open_project(args.project, args.configs, args.data)
        except TargetValidationError as exc:
            print(f"{len(exc.problems)} problem(s) in {args.project}:")
            for p in exc.problems:
                print(f"  - {p}")
            return 2
        assert isinstance(project, HouseholdProject)  # a zoned folder reads as a household project
        print(
            f"ok: {len(project.sample.households):,} seed households, {len(project.sample.persons):,} seed persons, "
            f"{len(project.controls)} controls, geography "
            + " > ".join(f"{level} ({len(project.geography.zones(level)):,})" for level in project.geography.levels)
            + f", {int(project.households_per_zone().sum()):,} households to place"
        )
        for warning in project.warnings:
            print(f"warning: {warning}")
        return 0
    problems = validate_project(args.project)
    if not problems:
        from .priors.maxent import contradiction_problems

        problems = contradiction_problems(load_project(args.project))
    if problems:
        print(f"{len(problems)} problem(s) in {args.project}:")
        for p in problems:
            print(f"  - {p}")
        return 2
    person_project = load_project(args.project)
    print(
        f"ok: {len(person_project.schema.names)} variables, {len(person_project.tables)} tables"
        + (f", {len(person_project.numeric_controls)} numeric control(s)" if person_project.numeric_controls else "")
        + f", population size {person_project.size:,}"
    )
    for warning in person_project.warnings:
        print(f"warning: {warning}")
    return 0


def _read_records(path: Path, schema, what: str) -> pd.DataFrame:
    """Labelled records from a CSV with one column per variable; errors name the file and what is wrong."""
    try:  # as text: a category named "None" or "NA" is a label, not a missing value
        frame = spreadsheet_unescape(pd.read_csv(path, dtype=str, keep_default_na=False))
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise TargetValidationError([Problem(str(path), f"could not be read as CSV ({exc})")]) from None
    missing = [v for v in schema.names if v not in frame.columns]
    if missing:
        raise TargetValidationError(
            [Problem(str(path), f"{what} needs one column per variable; missing {', '.join(missing)}", row=1)]
        )
    return frame


def command_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a population CSV; prints the summary and writes the JSON report; returns the exit code."""
    project = load_project(args.project)
    people = _read_records(args.population, project.schema, "the population")
    population, rejected = project.schema.encode(people[project.schema.names])
    if rejected:
        raise TargetValidationError(
            [Problem(str(args.population), f"{n:,} rows: {reason}") for reason, n in rejected.items()]
        )
    population[COUNT] = 1
    holdout = _read_records(args.holdout, project.schema, "the holdout") if args.holdout else None
    rules = load_rules(args.rules, project.schema) if args.rules else []
    report = evaluate_population(project, population, holdout, rules, args.label, args.seed)
    target = args.json or args.population.with_name("evaluation.json")
    target.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(format_evaluation(report))
    print(f"JSON report: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m synthor_core``; returns the exit code."""
    args = _parser().parse_args(argv)
    commands = {
        "run": command_run,
        "local-llm": command_local_llm,
        "convert": command_convert,
        "validate": command_validate,
        "evaluate": command_evaluate,
    }
    try:
        return commands[args.command](args)
    except TargetValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SynthorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
