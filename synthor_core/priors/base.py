"""The Prior protocol, proposals, guidance, and what every prior shares (DESIGN §2–4).

A prior turns guidance (the most under- and over-represented cells) into proposals, and a proposal into
records. Conditions use labels: a categorical variable is fixed to one category (``"Female"``) or a list of
categories; a numeric variable to an inclusive range ``[min, max]`` in its unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ..defaults import MAXENT_RECORDS_PER_PROPOSAL
from ..metrics import CellGap, ZoneGap
from ..schema import Bins, Schema
from ..units import Candidates

Condition = str | list[str] | tuple[float, float]


class Proposal(BaseModel):
    """``{conditions, count, action, reason}``: add or remove ``count`` persons satisfying ``conditions``.

    Attributes
    ----------
    conditions : dict of variable -> category | list of categories | (min, max)
        Variables not named are free (the prior fills them). Numeric ranges are inclusive, in the unit.
    count : int > 0
        Persons to add or remove.
    action : {"add", "remove"}
    reason : str
        Why, citing the guidance (shown in the UI and stored).

    Source: LLMSynthor §3 ("proposal": one category or range per variable, a count ``num`` and a ``reason``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    conditions: dict[str, str | list[str] | tuple[float, float]] = Field(default_factory=dict)
    count: int = Field(gt=0)
    action: Literal["add", "remove"] = "add"
    reason: str = ""


@dataclass(frozen=True)
class Guidance:
    """What the prior is told at one iteration.

    Attributes
    ----------
    iteration : int (1-based)
    population_size : int
        N, the size the population must reach.
    current_total : int
        Persons in the population now.
    batch_size : int
        Persons to add this iteration in paper mode (the counts of the proposals sum to it); 0 in full mode.
    under, over : list of CellGap
        Most under- and over-represented cells across all target tables, most off first.
    mode : {"paper", "full"}
    max_proposals : int
    unsupported : list of CellGap
        Cells with a target but no record at all (full mode), which calibration cannot reach.
    """

    iteration: int
    population_size: int
    current_total: int
    batch_size: int
    under: list[CellGap]
    over: list[CellGap]
    mode: str
    max_proposals: int
    unsupported: list[CellGap] = field(default_factory=list)


@dataclass
class PriorUsage:
    """Calls and tokens a prior has used so far (zeros for ``maxent``)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Prior(Protocol):
    """Where records come from (STYLE.md rule 9).

    ``plan(guidance, rng) -> list[Proposal]`` and ``realize(proposal, k, rng) -> DataFrame`` with at most ``k``
    records as labels (one column per schema variable). The engine checks every record against the schema
    and the proposal's conditions and counts rejects; a prior never patches values into range.

    Every member below is part of the contract (:class:`PriorBase` gives the defaults): ``distinct_records`` (the
    distinct records it aims at, whatever N), ``notes`` (what the report should say about it), ``calls`` (its LLM
    calls, for the run's log), ``fallback`` (the prior that realizes what it cannot, or None), ``dollars()`` (cost so
    far, None when unknown) and ``realize_batch`` (several realizations at once, in parallel where it can).
    """

    name: str
    usage: PriorUsage

    @property
    def distinct_records(self) -> int: ...

    @property
    def notes(self) -> list[str]: ...

    @property
    def calls(self) -> list: ...

    @property
    def fallback(self) -> Prior | None: ...

    def plan(self, guidance: Guidance, rng: np.random.Generator) -> list[Proposal]: ...

    def realize(self, proposal: Proposal, k: int, rng: np.random.Generator) -> pd.DataFrame: ...

    def realize_batch(self, requests, rng: np.random.Generator, should_stop) -> list[pd.DataFrame]: ...

    def dollars(self) -> float | None: ...


class PriorBase:
    """Defaults of the optional parts of the :class:`Prior` and :class:`HouseholdPrior` contracts: no notes, no
    LLM call, no cost, realizations one after the other."""

    name = "prior"
    distinct_records = MAXENT_RECORDS_PER_PROPOSAL
    fallback = None

    def __init__(self) -> None:
        self.usage = PriorUsage()

    @property
    def notes(self) -> list[str]:
        """What the run's warnings should say about the prior (nothing by default)."""
        return []

    @property
    def calls(self) -> list:
        """The prior's LLM calls (none by default)."""
        return []

    def realize(self, proposal, k: int, rng: np.random.Generator):
        raise NotImplementedError

    def realize_batch(self, requests, rng: np.random.Generator, should_stop) -> list:
        """``realize(proposal, k, rng)`` for each ``(proposal, k)`` in order, until ``should_stop()``."""
        out = []
        for proposal, k in requests:
            if should_stop():
                break
            out.append(self.realize(proposal, k, rng))
        return out

    def dollars(self) -> float | None:
        """Cost so far in USD; None when the prior has no prices (every prior but a priced LLM)."""
        return None


# --- households in zones (DESIGN §8-§10) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneTarget:
    """A control-zone pair the loop asks the prior about: the gap, and where households for it may go.

    Attributes
    ----------
    gap : ZoneGap
        The control in one zone of its level, target vs synthetic.
    block : int
        The zone at the sample level (PopulationSim's seed geography) where new households would go.
    zones : tuple of int
        The lowest-level zones of ``gap``'s zone inside ``block`` (positions in ``Geography.zones(lowest)``).
    """

    gap: ZoneGap
    block: int
    zones: tuple[int, ...]


@dataclass(frozen=True)
class HouseholdGuidance:
    """What a household prior is told at one iteration.

    Attributes
    ----------
    iteration : int (1-based)
    households : int
        Households the partition places.
    under : list of ZoneTarget
        The control-zone pairs most under-reached (weighed as their %RMSE), most off first.
    max_proposals : int
    """

    iteration: int
    households: int
    under: list[ZoneTarget]
    max_proposals: int


class HouseholdProposal(BaseModel):
    """Households to add: ``count`` households (or, for a person control, persons) meeting ``control`` in ``zone``.

    Attributes
    ----------
    control : str
        The control whose condition the new households meet (a household control: the household meets it; a
        person control: members of it meet it).
    level, zone : str
        The control's level and the zone id there (``TAZ``, ``"301"``).
    block : int
        The sample-level zone the households go to.
    zones : tuple of int
        The lowest-level zones they may be placed in.
    count : int > 0
        Households (household control) or persons (person control) missing.
    reason : str
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    control: str
    level: str
    zone: str
    block: int = Field(ge=0)
    zones: tuple[int, ...]
    count: int = Field(gt=0)
    reason: str = ""

    @property
    def conditions(self) -> dict:
        """The proposal as stored with the run (``{"meets": control, "zone": "TAZ 301"}``)."""
        return {"meets": self.control, "zone": f"{self.level} {self.zone}"}


def plan_from_gaps(guidance: HouseholdGuidance) -> list[HouseholdProposal]:
    """The deterministic plan: one proposal per under-reached control-zone pair, as many units as are missing.

    Source: LLMSynthor §3 (discrepancy-guided proposals), with the cells of the paper as control-zone pairs.
    """
    return [
        HouseholdProposal(
            control=t.gap.control,
            level=t.gap.level,
            zone=t.gap.zone,
            block=t.block,
            zones=t.zones,
            count=max(1, int(round(t.gap.count_gap))),
            reason=f"under-reached: {t.gap.describe()}",
        )
        for t in guidance.under[: guidance.max_proposals]
        if t.gap.count_gap > 0
    ]


@runtime_checkable
class HouseholdPrior(Protocol):
    """Where candidate households come from (DESIGN §10): the sample, ``maxent``, an LLM.

    ``support(rng)`` gives the first candidates (before any gap is known); ``plan(guidance, rng)`` turns the most
    under-reached control-zone pairs into proposals; ``realize(proposal, k, rng)`` writes at most ``k`` distinct
    households for one (:class:`~synthor_core.units.Candidates` in the proposal's block; none when it cannot). The
    loop checks each household against the proposal and the project's rules and counts rejects. Optional parts as
    :class:`Prior`'s (:class:`PriorBase`).
    """

    name: str
    usage: PriorUsage

    @property
    def distinct_records(self) -> int: ...

    @property
    def notes(self) -> list[str]: ...

    @property
    def calls(self) -> list: ...

    def support(self, rng: np.random.Generator) -> Candidates: ...

    def plan(self, guidance: HouseholdGuidance, rng: np.random.Generator) -> list[HouseholdProposal]: ...

    def realize(self, proposal: HouseholdProposal, k: int, rng: np.random.Generator) -> Candidates: ...

    def realize_batch(self, requests, rng: np.random.Generator, should_stop) -> list[Candidates]: ...

    def dollars(self) -> float | None: ...

    def report(self) -> dict: ...


def bin_condition(var, bins: Bins, index: int) -> tuple[float, float]:
    """The inclusive range condition of bin ``index``: ``[25, 35)`` -> ``(25, 34)`` for an integer variable,
    ``(25.0, 35.0)`` otherwise; the last bin keeps its upper edge."""
    lo, hi = float(bins.edges[index]), float(bins.edges[index + 1])
    last = index == len(bins) - 1
    if var.integer and not last:
        hi = math.ceil(hi) - 1.0
    return (lo, hi)


def gap_conditions(gap: CellGap, schema: Schema, tables_by_name: dict) -> dict[str, Condition]:
    """Conditions that select the records of one cell of a target table."""
    table = tables_by_name[gap.table]
    idx = np.unravel_index(gap.flat_index, table.counts.shape)
    out: dict[str, Condition] = {}
    for v, i in zip(table.variables, idx):
        var = schema[v]
        out[v] = var.categories[i] if var.type == "categorical" else bin_condition(var, table.bins[v], int(i))
    return out


def check_proposal(proposal: Proposal, schema: Schema, paper: bool) -> str | None:
    """Why a proposal cannot be used (a short reason, for counting), or None when it is valid.

    In paper mode every variable must be fixed: one category per categorical variable and one range per
    numeric variable (LLMSynthor §3).
    """
    for name, cond in proposal.conditions.items():
        if name not in schema:
            return "unknown variable"
        var = schema[name]
        if var.type == "categorical":
            labels = [cond] if isinstance(cond, str) else list(cond) if isinstance(cond, list) else None
            if not labels or any(not isinstance(x, str) or x not in var.categories for x in labels):
                return "category not in schema"
            if paper and len(labels) != 1:
                return "paper mode needs one category"
        else:
            if isinstance(cond, str) or len(cond) != 2:
                return "numeric condition is not [min, max]"
            lo, hi = float(cond[0]), float(cond[1])
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo > var.max or hi < var.min:
                return "numeric range outside schema"
            if var.integer and math.ceil(max(lo, var.min)) > math.floor(min(hi, var.max)):
                return "numeric range holds no whole number"
    if paper and set(proposal.conditions) != set(schema.names):
        return "paper mode needs every variable"
    return None


def match_conditions(encoded: pd.DataFrame, conditions: dict[str, Condition], schema: Schema) -> np.ndarray:
    """Boolean mask of the rows of a coded population frame that satisfy ``conditions``.

    Parameters
    ----------
    encoded : DataFrame, schema columns coded (int16 codes / float64).
    conditions : as in :class:`Proposal` (already checked with :func:`check_proposal`).

    Returns
    -------
    ndarray of bool, shape (len(encoded),)
    """
    mask = np.ones(len(encoded), dtype=bool)
    for name, cond in conditions.items():
        var = schema[name]
        col = encoded[name].to_numpy()
        if var.type == "categorical":
            labels = [cond] if isinstance(cond, str) else list(cond)
            mask &= np.isin(col, [var.categories.index(x) for x in labels])
        else:
            mask &= (col >= float(cond[0])) & (col <= float(cond[1]))
    return mask


def sample_uniform_records(schema: Schema, proposal: Proposal, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """Paper-style realization: ``k`` records with the proposal's categories as fixed and every numeric
    variable drawn uniformly in its range (whole numbers for integer variables).

    Parameters
    ----------
    proposal : Proposal fixing every variable (see :func:`check_proposal` with ``paper=True``).

    Returns
    -------
    DataFrame of k rows, one column per variable (labels / numbers).

    Source: LLMSynthor §3, step 4 ("numerics drawn uniformly in the range").
    """
    cols = {}
    for var in schema:
        cond = proposal.conditions[var.name]
        if var.type == "categorical":
            cols[var.name] = np.full(k, cond if isinstance(cond, str) else cond[0], dtype=object)
        else:
            lo, hi = max(float(cond[0]), var.min), min(float(cond[1]), var.max)
            if var.integer:
                cols[var.name] = rng.integers(math.ceil(lo), math.floor(hi) + 1, size=k).astype(np.float64)
            else:
                cols[var.name] = rng.uniform(lo, hi, size=k)
    return pd.DataFrame(cols)
