"""The settings of a run (STYLE rule 4): closed and frozen, checked when built."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .. import defaults


class SynthesisConfig(BaseModel):
    """Settings of one run. Closed and frozen: a misspelt setting is an error, never a silent default.

    Attributes
    ----------
    size : int or None
        Population size N; None takes the project's ``[population] size``.
    mode : {"full", "paper"}
        ``paper``: LLMSynthor as published (add-only, at most 5 fully specified proposals per iteration, uniform
        numerics, no calibration). ``full``: removals, realistic fill, calibration and integerization.
    seed : int
        Seed of the run's only random generator; same inputs and seed give the same population.
    max_iterations : int
        Iterations of the loop at most.
    tolerance_tvd : float
        The loop stops when the mean TVD over the target tables is at or below it (full mode).
    distinct_records : int or None
        Distinct records the population aims at (a proposal of ``c`` persons gets about
        ``distinct_records * c / N`` of them); None takes the prior's default. Independent of N, so memory and
        LLM cost do not grow with N (DESIGN §3, "Why profiles with counts").
    top_k : int
        Under- and over-represented cells handed to the prior per iteration.
    max_proposals : int or None
        Proposals used per iteration; None: 5 in paper mode, ``FULL_MAX_PROPOSALS`` in full mode.
    calibrate : bool or None
        Rake the counts to all tables after the loop; None: on in full mode, off in paper mode.
    fallback : bool
        Full mode, when the run is given a fallback prior (``maxent`` or the seed behind the LLM): realize from it
        what the prior could not (its records broke the schema, the proposal's conditions or the rules, or its
        calls failed), plan from it when the prior cannot plan, and give it the target cells with no record before
        calibration. Off: pure output of the prior, however poor.
    max_sweeps : int
        Households in zones: list-balancing sweeps at most, over the whole loop.
    balance_tolerance : float
        Households in zones: balancing (and the loop) stops when every balancing factor is within this of 1.
    sweeps_per_iteration : int
        Households in zones: balancing sweeps between two measurements of the gap (one iteration of the loop).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    size: int | None = Field(None, gt=0, le=defaults.MAX_POPULATION)
    mode: Literal["full", "paper"] = "full"
    seed: int = Field(0, ge=0)
    max_iterations: int = Field(defaults.MAX_ITERATIONS, ge=1, le=100_000)
    tolerance_tvd: float = Field(defaults.TOLERANCE_TVD, gt=0, lt=1)
    distinct_records: int | None = Field(None, ge=1)
    top_k: int = Field(defaults.ATTRIBUTION_TOP_K, ge=1)
    max_proposals: int | None = Field(None, ge=1)
    calibrate: bool | None = None
    fallback: bool = True
    max_sweeps: int = Field(defaults.BALANCE_MAX_SWEEPS, gt=0, le=100_000)
    balance_tolerance: float = Field(defaults.BALANCE_TOLERANCE, gt=0, lt=1)
    sweeps_per_iteration: int = Field(defaults.BALANCE_SWEEPS_PER_ITERATION, gt=0, le=100_000)
