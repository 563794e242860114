"""What a run reports (STYLE rule 8): one typed family of events and results for every project.

A person project's loop yields :class:`IterationEvent` per iteration and ends with a :class:`SynthesisResult`; a
household project's yields :class:`HouseholdIteration` per iteration of each partition, a :class:`PartitionOutcome`
as each partition ends (its households, written before the next partition's) and ends with a
:class:`HouseholdResult`. Every event carries the iteration, its seconds, the proposals and what was rejected; every
result the stop reason, warnings, an error when the prior failed, and where the records came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from ..calibrate.balancing import BalanceResult
from ..calibrate.raking import CalibrationResult
from ..metrics import Fit
from ..priors.base import HouseholdProposal, Proposal
from ..units import Candidates


@dataclass(frozen=True)
class IterationEvent:
    """What happened in one iteration, for charts, logs and the run store.

    Attributes
    ----------
    iteration : int (1-based)
    mean_tvd, max_tvd : float
        Over the target tables, after this iteration's update.
    tvd_by_table, srmse_by_table : dict of table name -> float
    proposals : tuple of Proposal
        As the prior returned them.
    added, removed : int
        Persons added and removed.
    rejected : dict of reason -> int
        Proposals and records dropped this iteration, by reason.
    population_total, distinct_records : int
        Persons and distinct records after the update.
    llm_calls, prompt_tokens, completion_tokens : int
        The prior's cumulative usage.
    seconds, aggregate_seconds : float
        Wall time of the whole iteration and of its aggregation.
    table_counts : dict of table name -> ndarray of float64 shaped like the table
        Synthetic persons per cell after the update (for live target-vs-synthetic charts; not stored).
    cost_usd : float or None
        Estimated LLM cost so far, when the prior knows its prices.
    sources : dict of prior name -> int
        Persons added this iteration by each prior (the run's prior and its fallback).
    """

    iteration: int
    mean_tvd: float
    max_tvd: float
    tvd_by_table: dict[str, float]
    srmse_by_table: dict[str, float]
    proposals: tuple[Proposal, ...]
    added: int
    removed: int
    rejected: dict[str, int]
    population_total: int
    distinct_records: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    aggregate_seconds: float
    table_counts: dict = field(default_factory=dict, repr=False, compare=False)
    cost_usd: float | None = None
    sources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SynthesisResult:
    """The end of a run.

    Attributes
    ----------
    population : DataFrame, one row per distinct record, schema columns (int16 codes / float64) + ``count``
        (int64 > 0) summing to N. ``Schema.decode`` gives labels.
    fit : Fit
        Against every target table, after calibration and integerization.
    loop_fit : Fit or None
        After the last iteration, before calibration.
    iterations : int
    stop_reason : str
        ``"tolerance reached"``, ``"population complete"``, ``"no further improvement"``,
        ``"max iterations reached"`` or ``"stop requested"``.
    calibration : CalibrationResult or None
    seconds : float
    rejected : dict of reason -> int, over the whole run.
    warnings : tuple of str
    error : str or None
        Why the prior failed, when it did (the population built until then is kept and calibrated).
    sources : dict of prior name -> {"added": persons added over the run, "final": persons of the final
        population whose record came from it}
        Empty when the run had no fallback prior.
    fallback : dict of str -> int
        What the fallback did: ``plans`` (iterations planned by it), ``proposals`` (proposals it realized, wholly
        or in part), ``records`` (its records), ``unsupported_cells`` (target cells without a record that it
        filled before calibration), ``support_records`` (records of every kind it added for calibration when the
        loop ended above the tolerance).
    """

    population: pd.DataFrame
    fit: Fit
    loop_fit: Fit | None
    iterations: int
    stop_reason: str
    calibration: CalibrationResult | None
    seconds: float
    rejected: dict[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str | None = None
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HouseholdIteration:
    """One iteration of the household loop in one partition: a slice of balancing sweeps, the gap measured after
    it, and the candidates the proposals added (DESIGN §3, §10).

    Attributes
    ----------
    iteration : int (1-based, per partition)
    partition : str
        ``LEVEL=zone id`` of the partition (``PUMA=600``).
    sweeps : int
        Balancing sweeps done so far.
    max_relative_gap : float
        Largest relative gap between a weighted count and its (relaxed) control in the last sweep.
    pct_rmse : dict of control -> float
        %RMSE of each control over the partition's zones of its level, with the balanced (fractional) weights.
    fit_by_group : dict of group -> float
        Worst %RMSE of each control group (:attr:`~synthor_core.targets.model.Control.group`).
    households_by_source : dict of prior name -> float
        Balanced households whose candidate came from each prior.
    candidates : int
        Candidate households after this iteration's additions.
    added : dict of prior name -> int
        Candidates added this iteration by each prior (the run's prior and its fallback).
    proposals : tuple of HouseholdProposal
        This iteration's proposals (the control-zone pairs targeted).
    rejected : dict of reason -> int
    llm_calls, prompt_tokens, completion_tokens : int
        The prior's cumulative usage.
    seconds : float
        Wall time of the iteration.
    """

    iteration: int
    partition: str
    sweeps: int
    max_relative_gap: float
    pct_rmse: dict[str, float]
    fit_by_group: dict[str, float]
    households_by_source: dict[str, float]
    candidates: int
    added: dict[str, int] = field(default_factory=dict)
    proposals: tuple[HouseholdProposal, ...] = ()
    rejected: dict[str, int] = field(default_factory=dict)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def worst_pct_rmse(self) -> float:
        """Worst %RMSE over the control groups (0 without groups)."""
        return max(self.fit_by_group.values(), default=0.0)


@dataclass(frozen=True)
class PartitionOutcome:
    """One partition's end: its households, or the error that stopped it.

    Attributes
    ----------
    index : int
        Position of the partition among the run's (outputs are written in this order).
    name : str
        ``LEVEL=zone id``.
    zones : ndarray of int64
        Global index of each of its lowest-level zones.
    households : DataFrame
        One row per (zone, candidate) placed at least once: ``zone`` (int64, global lowest-level zone), ``row``
        (int64, row in ``candidates``), ``count`` (int64 >= 1); sorted by zone then row. Survey weighting: every
        sample household once (``count`` 1) with its balanced weight as ``weight`` (float64).
    candidates : Candidates
        The candidates placed (rows of ``households``).
    synthetic : dict of control name -> (zone positions at its level, totals)
        What the partition's households count for every control, per zone of the control's level (global
        positions), to add up over partitions.
    iterations : tuple of HouseholdIteration
    balance : BalanceResult or None
        Without the weights.
    integerize : dict of str -> int
        ``lp_fallbacks`` and ``lp_status_<k>`` (see ``integerize_zone``), ``rounded_zones`` (zones rounded without
        the linear programme after a stop).
    stop_reason : str
    fallback : dict of str -> int
        ``support`` (candidates the fallback added before balancing, for what the prior cannot reach),
        ``proposals``, ``candidates``, ``plans``, ``realize_failures``.
    prior : dict
        The prior's report (``report()``).
    seconds : float
    error : str or None
        The exception's type and message when the partition failed (then ``households`` is empty).
    warnings : tuple of str
    placed : int
        Households placed (kept when ``households`` is let go); survey weighting: the sample households weighted.
    sample_weights : DataFrame or None
        PopulationSim's seed weights of the partition's sample households (:func:`~synthor_core.synthesis.zones.
        synthesize_zones`): the sample id, the seed zone, ``sample_weight``, ``balanced_weight`` (float64),
        ``integer_weight`` (int64, households placed; not for survey weighting), then each control's incidence.
    """

    index: int
    name: str
    zones: npt.NDArray[np.int64]
    households: pd.DataFrame
    candidates: Candidates | None
    synthetic: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = field(default_factory=dict)
    iterations: tuple[HouseholdIteration, ...] = ()
    balance: BalanceResult | None = None
    integerize: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""
    fallback: dict[str, int] = field(default_factory=dict)
    prior: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    warnings: tuple[str, ...] = ()
    placed: int = 0
    sample_weights: pd.DataFrame | None = None


@dataclass(frozen=True)
class HouseholdResult:
    """The end of a household run: how well the households meet the controls, where they came from, how the run
    went. The households themselves were handed over partition by partition (:class:`PartitionOutcome`).

    Attributes
    ----------
    fit : DataFrame
        One row per control (:func:`synthor_core.metrics.control_fit`).
    synthetic : dict of str -> ndarray of float64
        Per control, the synthetic total of every zone of its level (order of ``Geography.zones(level)``).
    households, persons : int
        Placed.
    distinct_households : int
        Distinct candidates placed.
    households_by_prior : dict of prior name -> int
    iterations : tuple of HouseholdIteration
        Every partition's iterations, partitions in order.
    partitions : tuple of PartitionOutcome
        Without their households (name, seconds, error, stop reason, balance, counters).
    stop_reason : str
        ``"controls met"``, ``"soft controls relaxed"``, ``"stationary"``, ``"sweep limit"``, ``"stop requested"``;
        several partitions: the reasons joined.
    balance : BalanceResult
        Merged over partitions, without weights.
    integerize : dict of str -> int
    fallback : dict of str -> int
    prior : dict
        The prior's report, merged over partitions.
    seconds : float
    warnings : tuple of str
    error : str or None
        The first failed partition's error.
    """

    fit: pd.DataFrame
    synthetic: dict[str, npt.NDArray[np.float64]]
    households: int
    persons: int
    distinct_households: int
    households_by_prior: dict[str, int]
    iterations: tuple[HouseholdIteration, ...]
    partitions: tuple[PartitionOutcome, ...]
    stop_reason: str
    balance: BalanceResult
    integerize: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)
    prior: dict = field(default_factory=dict)
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def total_households(self) -> int:
        """Households placed."""
        return self.households


def placed_weights(households: pd.DataFrame) -> npt.NDArray[np.float64]:
    """What each row of a partition's ``households`` (:attr:`PartitionOutcome.households`) stands for: its
    ``count``, or its balanced ``weight`` in survey weighting; float64, shape (n_rows,)."""
    return households["weight" if "weight" in households else "count"].to_numpy(dtype=np.float64)
