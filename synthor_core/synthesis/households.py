"""Households with their members in many zones (DESIGN §8-§10): the seed prior, list balancing, integerization.

The seed prior realizes households from a real micro-sample: every sample household of a seed zone (PUMA) is a
candidate profile in each lowest-level zone (TAZ) of that seed zone. Balancing decides how many of each profile
every zone gets, against household and person controls at every level at once
(:func:`synthor_core.calibrate.balancing.balance_zones`); integerization then places whole households zone by zone
(:func:`synthor_core.calibrate.integerizing.integerize_zone`), carrying the rounding of upper-level controls
(TRACT, REGION) from one zone to the next so that their totals stay met. Members come with their household, so person
variables always agree with household ones.

Pure like the engine: no threads, no I/O; ``synthesize_households`` yields :class:`HouseholdEvent` progress
events, then one :class:`HouseholdResult`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from .. import defaults
from ..calibrate.balancing import BalanceResult, balance_zones
from ..calibrate.integerizing import integerize_zone
from ..errors import Problem, TargetValidationError
from ..expressions import compile_condition
from ..priors.households import POOL_PERSON_NUMBER as POOL_PERSON
from ..priors.households import PRIOR_COLUMN, maxent_households
from ..units import HOUSEHOLDS, PERSONS, HouseholdProject, SeedSample, derive_from_members


class HouseholdConfig(BaseModel):
    """Settings of one household synthesis. Closed and frozen.

    Attributes
    ----------
    seed : int
        Seed of the run's only random generator; same inputs and seed give the same households.
    prior : {"seed", "maxent", "llm"}
        Where candidate households come from: the seed sample's, ``maxent`` built from the controls alone
        (:func:`synthor_core.priors.households.maxent_households`), or an LLM writing whole households cell by cell
        (:func:`synthor_core.priors.llm_households.llm_households`).
    fallback : bool
        ``llm``: keep the ``maxent`` candidates the LLM did not replace (default), else drop them.
    max_sweeps : int
        Balancing sweeps at most.
    tolerance : float
        Balancing stops when every balancing factor is within this of 1.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    seed: int = Field(0, ge=0)
    prior: Literal["seed", "maxent", "llm"] = "seed"
    fallback: bool = True
    max_sweeps: int = Field(defaults.BALANCE_MAX_SWEEPS, gt=0, le=100_000)
    tolerance: float = Field(defaults.BALANCE_TOLERANCE, gt=0, lt=1)


@dataclass(frozen=True)
class HouseholdEvent:
    """Progress of a household synthesis: ``stage`` ("balance" or "integerize"), ``done`` of ``total`` steps."""

    stage: str
    done: int
    total: int
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class HouseholdResult:
    """The synthetic households and how well they meet the controls.

    Attributes
    ----------
    households : DataFrame
        One row per (zone, seed household) placed at least once: ``zone`` (int64, lowest-level zone index),
        ``seed_row`` (int64, row in ``project.seed.households``), ``count`` (int64 >= 1). Sorted by zone then
        seed row.
    fit : DataFrame
        One row per control: ``control, level, unit, importance, control_total, synthetic_total, pct_rmse,
        total_abs_error, max_abs_error, zones``.
    synthetic : dict of str -> ndarray of float64
        Per control, the synthetic total of every zone of its level (order of ``Geography.zones(level)``).
    balance : BalanceResult
        Without the weights (released once integerized).
    seconds : dict of str -> float
        Seconds of each stage (``balance``, ``integerize``); for a merged partitioned run, ``partitions`` (summed
        over the partitions).
    integerize : dict of str -> int
        ``lp_fallbacks``: zones whose linear programme ended without an optimum, and ``lp_status_<k>``: how many
        ended with HiGHS status ``k`` (see ``integerize_zone``).
    """

    households: pd.DataFrame
    fit: pd.DataFrame
    synthetic: dict[str, npt.NDArray[np.float64]]
    balance: BalanceResult
    seconds: dict[str, float]
    integerize: dict[str, int] = field(default_factory=dict)

    @property
    def total_households(self) -> int:
        """Households placed."""
        return int(self.households["count"].sum())


def pct_rmse(synthetic: npt.ArrayLike, control: npt.ArrayLike) -> float:
    """PopulationSim's validation measure: 100 x RMSE(synthetic - control) / mean control, over zones.

    Parameters
    ----------
    synthetic, control : array-like of float64, shape (n_zones,)

    Returns
    -------
    float (0 when the mean control is 0 and the synthetic totals are all 0; inf when only the control is 0).

    Source: PopulationSim's validation summary (ActivitySim/populationsim, ``scripts/validation``): %RMSE of a
    control over the zones of its geography.
    """
    s = np.asarray(synthetic, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    if s.size == 0:
        return 0.0
    rmse = float(np.sqrt(np.mean((s - c) ** 2)))
    mean = float(c.mean())
    if mean == 0:
        return 0.0 if rmse == 0 else float("inf")
    return 100.0 * rmse / mean


def _incidence_matrix(project: HouseholdProject) -> np.ndarray:
    return np.column_stack([c.incidence for c in project.controls]).astype(np.float64)


def synthesize_households(
    project: HouseholdProject, config: HouseholdConfig, rng: np.random.Generator | None = None
) -> Iterator[HouseholdEvent | HouseholdResult]:
    """Place whole seed households in every zone so that all controls are met as closely as possible.

    Parameters
    ----------
    project : HouseholdProject
    config : HouseholdConfig
    rng : numpy Generator, optional
        The run's only generator (default: ``numpy.random.default_rng(config.seed)``; a partition passes its own).

    Yields
    ------
    HouseholdEvent
        After balancing, and as zones are integerized (about 20 events).
    HouseholdResult
        Last.
    """
    rng = np.random.default_rng(config.seed) if rng is None else rng
    geography, seed = project.geography, project.seed
    controls = project.controls
    per_zone = project.households_per_zone()
    incidence = _incidence_matrix(project)
    importance = np.array([c.importance for c in controls])
    master = next(i for i, c in enumerate(controls) if c.name == project.total_control)
    zone_groups = np.vstack([geography.parent_index(c.level) for c in controls])
    seed_zone_of_zone = geography.parent_index(seed.seed_level)
    seed_zone_of_household = geography.zones(seed.seed_level).get_indexer(seed.households[seed.seed_level])
    weight = seed.households[seed.weight].to_numpy(dtype=np.float64)

    started = time.perf_counter()
    # Households with the same incidence on every control are interchangeable for balancing and integerization
    # (PopulationSim's GROUP_BY_INCIDENCE_SIGNATURE): they are balanced as one profile group, and the group's
    # whole households are then drawn among its members by their seed weights.
    block_rows, block_zones, block_groups, block_incidence, initial = [], [], [], [], []
    for s in range(len(geography.zones(seed.seed_level))):
        rows = np.flatnonzero((seed_zone_of_household == s) & (weight > 0))
        zones = np.flatnonzero((seed_zone_of_zone == s) & (per_zone > 0))
        if not zones.size or not rows.size:
            continue  # reported through the fit: the zones of a seed zone without sample households stay empty
        signatures, group_of_row = np.unique(incidence[rows], axis=0, return_inverse=True)
        group_weight = np.bincount(group_of_row.reshape(-1), weights=weight[rows], minlength=len(signatures))
        share = group_weight / group_weight.sum()
        block_rows.append(rows)
        block_zones.append(zones)
        block_groups.append(group_of_row.reshape(-1))
        block_incidence.append(signatures)
        initial.append(share[:, None] * per_zone[zones][None, :].astype(np.float64))
    balance = balance_zones(
        block_incidence,
        initial,
        block_zones,
        zone_groups,
        [c.totals for c in controls],
        importance,
        master=master,
        max_iter=config.max_sweeps,
        tolerance=config.tolerance,
        max_ratio=project.max_expansion_factor,
    )
    balance_seconds = time.perf_counter() - started
    yield HouseholdEvent(
        "balance",
        balance.iterations,
        config.max_sweeps,
        balance_seconds,
        f"balanced {sum(z.size for z in block_zones):,} zones in {balance.iterations} sweeps "
        f"(largest relative gap to a control: {balance.max_relative_gap:.2e})",
    )

    started = time.perf_counter()
    lowest = geography.lowest
    upper = [i for i, c in enumerate(controls) if c.level != lowest]
    remaining_target = {i: controls[i].totals.astype(np.float64).copy() for i in upper}
    remaining_relaxed = {i: np.zeros(controls[i].totals.size) for i in upper}
    relaxed_by_zone = []
    for signatures, zones, w in zip(block_incidence, block_zones, balance.weights):
        contribution = signatures.T @ w  # (controls, zones of block)
        relaxed_by_zone.append(contribution)
        for i in upper:
            np.add.at(remaining_relaxed[i], zone_groups[i, zones], contribution[i])
    pieces = []
    lp_stats: dict[str, int] = {"lp_fallbacks": 0}
    n_zones_total = sum(z.size for z in block_zones)
    placed_zones = np.concatenate(block_zones) if block_zones else np.zeros(0, np.int64)
    zones_left = {i: np.bincount(zone_groups[i, placed_zones], minlength=controls[i].totals.size) for i in upper}
    done = 0
    report_every = max(1, n_zones_total // 20)
    for rows, groups, inc, zones, w, contribution in zip(
        block_rows, block_groups, block_incidence, block_zones, balance.weights, relaxed_by_zone
    ):
        members = _members_by_group(groups, weight[rows])
        # smallest zones first: the rounding carried for upper-level controls ends in the largest zones, whose
        # many households can absorb it (a tiny last zone could not)
        for k in np.argsort(per_zone[zones], kind="stable"):
            zone = zones[k]
            targets = np.empty(len(controls))
            for i, c in enumerate(controls):
                g = zone_groups[i, zone]
                if c.level == lowest:
                    targets[i] = c.totals[g]
                else:
                    left = remaining_relaxed[i][g]
                    targets[i] = remaining_target[i][g] * (contribution[i, k] / left) if left > 1e-12 else 0.0
            # the last zone of a group must settle what is left of the group's upper-level controls
            zone_importance = importance.copy()
            for i in upper:
                if zones_left[i][zone_groups[i, zone]] == 1:
                    zone_importance[i] *= defaults.INTEGERIZE_LAST_ZONE_BOOST
            counts = integerize_zone(w[:, k], inc, targets, zone_importance, int(per_zone[zone]), rng, lp_stats)
            placed = counts @ inc
            for i in upper:
                g = zone_groups[i, zone]
                remaining_target[i][g] -= placed[i]
                remaining_relaxed[i][g] -= contribution[i, k]
                zones_left[i][g] -= 1
            chosen, times = _draw_members(counts, members, rng)
            pieces.append(
                pd.DataFrame(
                    {
                        "zone": np.full(chosen.size, zone, dtype=np.int64),
                        "seed_row": rows[chosen].astype(np.int64),
                        "count": times,
                    }
                )
            )
            done += 1
            if done % report_every == 0 or done == n_zones_total:
                yield HouseholdEvent(
                    "integerize",
                    done,
                    n_zones_total,
                    time.perf_counter() - started,
                    f"{done:,} of {n_zones_total:,} zones integerized",
                )
    integerize_seconds = time.perf_counter() - started
    households = (
        pd.concat(pieces, ignore_index=True)
        if pieces
        else pd.DataFrame(
            {"zone": np.zeros(0, np.int64), "seed_row": np.zeros(0, np.int64), "count": np.zeros(0, np.int64)}
        )
    )
    households = households.sort_values(["zone", "seed_row"], kind="stable").reset_index(drop=True)
    fit, synthetic = measure_controls(project, households)
    light = BalanceResult(
        (),
        balance.converged,
        balance.iterations,
        balance.max_relative_gap,
        balance.relaxation,
        balance.stop,
        balance.max_relative_change,
    )
    yield HouseholdResult(
        households,
        fit,
        synthetic,
        light,
        {"balance": round(balance_seconds, 3), "integerize": round(integerize_seconds, 3)},
        lp_stats,
    )


def _members_by_group(groups: np.ndarray, weight: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each profile group: its members (positions in the block) and their cumulative weight shares."""
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(groups.max() + 2 if groups.size else 1))
    out = []
    for g in range(len(bounds) - 1):
        idx = order[bounds[g] : bounds[g + 1]]
        cumulative = np.cumsum(weight[idx])
        out.append((idx, cumulative / cumulative[-1]))
    return out


def _draw_members(counts: np.ndarray, members, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Spread each group's whole households over its members: systematic draws by seed weight, random start.

    Returns the members placed (positions in the block, ascending) and how many times each (int64 >= 1).
    """
    picked = []
    for g in np.flatnonzero(counts):
        idx, cumulative = members[g]
        n = int(counts[g])
        if idx.size == 1:
            picked.append(np.full(n, idx[0]))
            continue
        points = (rng.random() + np.arange(n)) / n
        picked.append(idx[np.minimum(np.searchsorted(cumulative, points, side="right"), idx.size - 1)])
    if not picked:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chosen, times = np.unique(np.concatenate(picked), return_counts=True)
    return chosen.astype(np.int64), times.astype(np.int64)


def measure_controls(
    project: HouseholdProject, households: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, npt.NDArray[np.float64]]]:
    """Synthetic total of every control in every zone of its level, and the fit per control.

    Parameters
    ----------
    project : HouseholdProject
    households : DataFrame with ``zone``, ``seed_row``, ``count`` (see :class:`HouseholdResult`)

    Returns
    -------
    (DataFrame, dict)
        The fit (one row per control: ``control, level, unit, importance, control_total, synthetic_total,
        pct_rmse, total_abs_error, max_abs_error, zones``) and per control the synthetic totals by zone.
    """
    geography = project.geography
    zone = households["zone"].to_numpy()
    seed_row = households["seed_row"].to_numpy()
    count = households["count"].to_numpy(dtype=np.float64)
    rows, synthetic = [], {}
    for c in project.controls:
        groups = geography.parent_index(c.level)[zone]
        # weighted: float64 (numpy's stubs type every bincount as integer)
        values = np.bincount(groups, weights=count * c.incidence[seed_row], minlength=c.totals.size).astype(
            np.float64, copy=False
        )
        synthetic[c.name] = values
        diff = values - c.totals
        rows.append(
            {
                "control": c.name,
                "level": c.level,
                "unit": c.unit,
                "importance": c.importance,
                "control_total": float(c.totals.sum()),
                "synthetic_total": float(values.sum()),
                "pct_rmse": pct_rmse(values, c.totals),
                "total_abs_error": float(np.abs(diff).sum()),
                "max_abs_error": float(np.abs(diff).max()) if diff.size else 0.0,
                "zones": int(c.totals.size),
            }
        )
    return pd.DataFrame(rows), synthetic


def worst_zones(
    project: HouseholdProject, result: HouseholdResult, control: str, k: int = defaults.PCT_RMSE_WORST_ZONES
) -> list[dict]:
    """The ``k`` zones of a control's level farthest from its control (zone id, control, synthetic, difference)."""
    c = next(x for x in project.controls if x.name == control)
    values = result.synthetic[control]
    diff = values - c.totals
    order = np.argsort(-np.abs(diff), kind="stable")[:k]
    zones = project.geography.zones(c.level)
    return [
        {
            "zone": _plain(zones[i]),
            "control": float(c.totals[i]),
            "synthetic": float(values[i]),
            "difference": float(diff[i]),
        }
        for i in order
        if diff[i] != 0
    ]


def zone_fit_table(project: HouseholdProject, result: HouseholdResult) -> pd.DataFrame:
    """Every control in every zone of its level: target vs synthetic.

    Returns
    -------
    DataFrame with one row per (control, zone): ``control`` (str), ``level`` (str), ``zone`` (the zone id as in
    the crosswalk), ``control_total`` and ``synthetic`` (float64, households or persons), ``difference``
    (synthetic - control) and ``pct_difference`` (100 x difference / control; NaN where the control is 0). In the
    order of the project's controls, then of the zones.
    """
    frames = []
    for c in project.controls:
        values = np.asarray(result.synthetic[c.name], dtype=np.float64)
        totals = np.asarray(c.totals, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(totals > 0, 100.0 * (values - totals) / totals, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "control": c.name,
                    "level": c.level,
                    "zone": project.geography.zones(c.level),
                    "control_total": totals,
                    "synthetic": values,
                    "difference": values - totals,
                    "pct_difference": pct,
                }
            )
        )
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=["control", "level", "zone", "control_total", "synthetic", "difference", "pct_difference"]
        )
    )


def _plain(value):
    """A zone id as a JSON-friendly Python value."""
    return value.item() if hasattr(value, "item") else value


def candidate_households(
    project: HouseholdProject, config: HouseholdConfig, llm_settings=None, api_key: str | None = None
) -> tuple[HouseholdProject, dict]:
    """The project whose seed holds the prior's candidate households, and notes on them for the report.

    ``maxent``: candidates built from the controls alone (no sample record used), drawn with a generator derived
    from the run seed (so the same seed gives the same candidates). ``seed``: the sample's households, plus
    ``maxent`` candidates where the sample cannot reach (DESIGN §10): every candidate of a seed zone that has
    households to place but no sample household, and, in a seed zone whose zones ask for a control (at the seed
    level or below) that none of its sample households meets (a household size its sample lacks), the
    candidates of that seed zone that meet it. Both kinds are listed in the notes
    (``filled_from_maxent``); the candidates' households carry :data:`PRIOR_COLUMN` ("seed" or "maxent").
    When the maxent prior cannot serve the project (a control on several columns), the notes say why and the
    sample's households are used alone.

    Parameters
    ----------
    project : HouseholdProject
        As loaded (its seed is the sample).
    config : HouseholdConfig
        ``prior``, ``seed`` and ``fallback`` are used.
    llm_settings : LLMSettings, optional
        Needed for ``prior = "llm"`` (with ``api_key``, see :class:`~synthor_core.priors.llm.LLMClient`).

    Returns
    -------
    (HouseholdProject, dict)
        The project whose seed holds the candidates (controls' incidence evaluated on them), and notes for the
        report (``candidates``, ``candidate_persons``, and ``filled_from_maxent`` or the maxent prior's notes).

    Raises
    ------
    TargetValidationError
        When the controls ask for more than ``defaults.MAX_HOUSEHOLDS`` households; ``maxent`` only: when it
        cannot serve the project (see :func:`maxent_households`).
    """
    to_place = int(project.households_per_zone().sum())
    if to_place > defaults.MAX_HOUSEHOLDS:
        raise TargetValidationError(
            [
                Problem(
                    "controls",
                    f"the control of households per zone asks for "
                    f"{to_place:,} households; one run places at most "
                    f"{defaults.MAX_HOUSEHOLDS:,}",
                    column=project.total_control,
                )
            ]
        )
    rng = np.random.default_rng([config.seed, 1])
    if config.prior == "llm":
        from ..priors.llm_households import llm_households

        if llm_settings is None:
            raise ValueError("the llm prior needs LLM settings (base URL and model)")
        candidates, notes, _ = llm_households(project, rng, llm_settings, api_key, fallback=config.fallback)
        return candidates, notes
    if config.prior == "maxent":
        candidates, notes = maxent_households(project, rng)
        households = candidates.seed.households.assign(**{PRIOR_COLUMN: "maxent"})
        return replace(candidates, seed=replace(candidates.seed, households=households)), notes
    seed = project.seed
    notes = {"candidates": int(len(seed.households)), "candidate_persons": int(len(seed.persons))}
    per_zone = project.households_per_zone()
    seed_zones = project.geography.zones(seed.seed_level)
    of_zone = project.geography.parent_index(seed.seed_level)
    of_household = seed_zones.get_indexer(seed.households[seed.seed_level])
    weight = seed.households[seed.weight].to_numpy(dtype=np.float64)
    has_sample = np.bincount(of_household[weight > 0], minlength=len(seed_zones)) > 0
    needs = np.bincount(of_zone, weights=per_zone.astype(np.float64), minlength=len(seed_zones)) > 0
    empty = np.flatnonzero(needs & ~has_sample)
    # (control, seed zone) pairs the seed zone's own sample cannot reach although its zones ask for some; a
    # control above the seed level can be met in other seed zones and is left to them
    depth = project.geography.levels.index(seed.seed_level)
    unreached: dict[int, list[int]] = {}
    for i, c in enumerate(project.controls):
        if project.geography.levels.index(c.level) < depth:
            # above the seed level: met anywhere is enough; met nowhere, every seed zone's candidates may help
            if c.totals.sum() > 0 and not ((c.incidence > 0) & (weight > 0)).any():
                unreached[i] = np.flatnonzero(has_sample & needs).tolist()
            continue
        parent = project.geography.parent_index(c.level)
        groups = np.unique(np.column_stack([parent, of_zone]), axis=0)  # each group lies in one seed zone
        asked = np.bincount(groups[:, 1], weights=c.totals[groups[:, 0]], minlength=len(seed_zones))
        reached = np.bincount(of_household[(c.incidence > 0) & (weight > 0)], minlength=len(seed_zones)) > 0
        zones = np.flatnonzero((asked > 0) & ~reached & has_sample)
        if zones.size:
            unreached[i] = zones.tolist()
    if not empty.size and not unreached:
        return replace(project, seed=replace(seed, households=seed.households.assign(**{PRIOR_COLUMN: "seed"}))), notes
    try:
        filler, filler_notes = maxent_households(project, rng)
    except TargetValidationError as exc:
        notes["filled_from_maxent"] = {"candidates": 0, "not_possible": str(exc)}
        return replace(project, seed=replace(seed, households=seed.households.assign(**{PRIOR_COLUMN: "seed"}))), notes
    pool = filler.seed
    pool_zone = seed_zones.get_indexer(pool.households[seed.seed_level])
    incidence = np.column_stack([c.incidence for c in filler.controls])
    keep = np.isin(pool_zone, empty)
    for i, unreached_zones in unreached.items():
        keep |= (incidence[:, i] > 0) & np.isin(pool_zone, unreached_zones)
    combined, controls = _append_candidates(project, filler, np.flatnonzero(keep))
    notes["filled_from_maxent"] = {
        "candidates": int(keep.sum()),
        "seed_zones_without_sample": [_plain(seed_zones[i]) for i in empty],
        "unreached_controls": [project.controls[i].name for i in unreached],
        "unreached_in": {
            project.controls[i].name: [_plain(seed_zones[z]) for z in zones] for i, zones in unreached.items()
        },
    }
    return replace(project, seed=combined, controls=controls), notes


def _append_candidates(
    project: HouseholdProject, filler: HouseholdProject, rows: np.ndarray
) -> tuple[SeedSample, list]:
    """The sample with the filler's candidate households ``rows`` (and their members) after it."""
    seed, pool = project.seed, filler.seed
    n = len(seed.households)
    ids = seed.households[seed.household_id]
    extra = pool.households.iloc[rows].reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(ids):
        new_ids = int(ids.max()) + np.arange(1, len(extra) + 1) if len(ids) else np.arange(1, len(extra) + 1)
    else:
        new_ids = np.array([f"maxent-{i}" for i in range(1, len(extra) + 1)], dtype=object)
    position = np.full(len(pool.households), -1, dtype=np.int64)
    position[rows] = np.arange(rows.size)
    members = pool.persons[position[pool.persons["_household"].to_numpy()] >= 0].copy()
    members["_household"] = position[members["_household"].to_numpy()] + n
    members[seed.household_id] = new_ids[members["_household"].to_numpy() - n]
    if seed.person_number and seed.person_number != POOL_PERSON:
        members = members.rename(columns={POOL_PERSON: seed.person_number})
    extra = extra.drop(columns=[pool.household_id]).assign(**{seed.household_id: new_ids})
    households = pd.concat(
        [seed.households.assign(**{PRIOR_COLUMN: "seed"}), extra.assign(**{PRIOR_COLUMN: "maxent"})], ignore_index=True
    )
    persons = pd.concat([seed.persons, members], ignore_index=True)
    controls = [
        replace(c, incidence=np.concatenate([c.incidence, f.incidence[rows]]))
        for c, f in zip(project.controls, filler.controls)
    ]
    return replace(seed, households=households, persons=persons), controls


def _groups(project: HouseholdProject, unit: str) -> dict[str, list[int]]:
    """Controls of one unit grouped by the one column they read (the total control left out)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(project.controls):
        if c.unit == unit and len(c.columns) == 1 and c.name != project.total_control:
            groups.setdefault(c.columns[0], []).append(i)
    return groups


def _categories(project: HouseholdProject, frame: pd.DataFrame, unit: str, group: list[int]) -> np.ndarray:
    """Category of every row: the first control of the group it meets, or len(group) when none."""
    masks = np.column_stack(
        [
            compile_condition(project.controls[i].expression, unit, frame.columns, project.controls[i].name)(frame)
            for i in group
        ]
    )
    return np.where(masks.any(axis=1), masks.argmax(axis=1), len(group))


def realism_tables(
    reference: HouseholdProject, candidates: HouseholdProject, result: HouseholdResult, max_way: int = 3
) -> pd.DataFrame:
    """How far the synthetic households are from the reference sample on tables no control fixes.

    Every pair and triple of household control groups (a group: the controls on one column, e.g. the four
    household sizes), and every pair of person control groups, tabulated over the groups' categories; the
    reference is the seed sample weighted by its weights, the synthetic side the placed households (persons
    weighted by their household's count). Controls fix each group's one-way margin per zone, never these joints.

    Parameters
    ----------
    reference : HouseholdProject
        Its seed sample is the reference.
    candidates : HouseholdProject
        The project the households were placed from (``candidate_households``).
    result : HouseholdResult
    max_way : int
        Household tables of 2 up to this many groups (person tables: pairs only).

    Returns
    -------
    DataFrame
        One row per table: ``unit``, ``table`` ("NP x NWESR"), ``cells``, ``tvd`` (total variation distance of
        the shares, 0-1).
    """
    from itertools import combinations

    counts = np.bincount(
        result.households["seed_row"].to_numpy(),
        weights=result.households["count"].to_numpy(dtype=np.float64),
        minlength=len(candidates.seed.households),
    )
    rows = []
    for unit in (HOUSEHOLDS, PERSONS):
        groups = _groups(reference, unit)
        sides = []
        for project, weight in (
            (reference, reference.seed.households[reference.seed.weight].to_numpy(dtype=np.float64)),
            (candidates, counts),
        ):
            frame = project.seed.households if unit == HOUSEHOLDS else project.seed.persons
            w = weight if unit == HOUSEHOLDS else weight[project.seed.persons["_household"].to_numpy()]
            sides.append(({col: _categories(project, frame, unit, g) for col, g in groups.items()}, w))
        ways = range(2, max_way + 1) if unit == HOUSEHOLDS else [2]
        for way in ways:
            for combo in combinations(groups, way):
                sizes = [len(groups[c]) + 1 for c in combo]
                shares = []
                for cats, w in sides:
                    cell = np.ravel_multi_index([cats[c] for c in combo], sizes)
                    table = np.bincount(cell, weights=w, minlength=int(np.prod(sizes)))
                    shares.append(table / table.sum() if table.sum() > 0 else table)
                rows.append(
                    {
                        "unit": unit,
                        "table": " x ".join(combo),
                        "cells": int(np.prod(sizes)),
                        "tvd": float(0.5 * np.abs(shares[0] - shares[1]).sum()),
                    }
                )
    return pd.DataFrame(rows, columns=["unit", "table", "cells", "tvd"])


def member_consistency(
    project: HouseholdProject,
    households: pd.DataFrame,
    persons: pd.DataFrame,
    household_id: str = "household_id",
    person_number: str = "per_num",
) -> dict[str, float]:
    """Share of output households whose derived columns equal what their members give (DESIGN §8).

    Parameters
    ----------
    project : HouseholdProject
        Its ``derived`` (or, when empty, nothing is checked but the members' presence).
    households, persons : DataFrame
        As written to ``households.csv`` / ``persons.csv`` (one row per household / person).

    Returns
    -------
    dict
        Per derived column the share (0-1) of households that agree; ``with_members``: share with at least one
        member.
    """
    position = pd.Series(np.arange(len(households)), index=households[household_id].to_numpy())
    members = persons.assign(_household=position.reindex(persons[household_id].to_numpy()).to_numpy())
    members = members[members["_household"].notna()].astype({"_household": np.int64})
    n = len(households)
    out = {"with_members": float((np.bincount(members["_household"], minlength=n) > 0).mean()) if n else 1.0}
    for d in project.derived:
        if d.column not in households.columns or (d.source and d.source not in persons.columns):
            continue
        condition = (
            compile_condition(d.expression, PERSONS, members.columns, d.column)
            if d.how == "count" and d.expression
            else None
        )
        if condition is not None and not set(condition.columns) <= set(members.columns):
            continue
        derived = derive_from_members(members, n, how=d.how, condition=condition, column=d.source, order=person_number)
        given = households[d.column].to_numpy(dtype=np.float64)
        out[d.column] = float(np.mean((derived == given) | (np.isnan(derived) & np.isnan(given)))) if n else 1.0
    return out


def check_rules(project: HouseholdProject, households: pd.DataFrame, persons: pd.DataFrame) -> list[dict]:
    """How many synthetic households (or persons) break each of the project's rules, next to the seed sample.

    Parameters
    ----------
    project : HouseholdProject
        Its ``rules``; its seed sample is the reference (weighted by the sample weights).
    households, persons : DataFrame
        As written to ``households.csv`` / ``persons.csv``.

    Returns
    -------
    list of dict, one per rule: ``rule``, ``unit``, ``expression``, ``units`` (households or persons in the
    output), ``checked`` (those whose columns the rule reads are known: an unknown value is never counted as
    broken), ``broken`` (int), ``broken_share`` (0-1, of the checked), ``seed_broken_share`` (the sample's,
    weighted; None when no sample unit has the columns known), or ``not_checked`` (why) when the output lacks a
    column the rule reads.
    """
    out: list[dict[str, Any]] = []
    seed = project.seed
    weight = seed.households[seed.weight].to_numpy(dtype=np.float64)
    for rule in project.rules:
        frame = households if rule.unit == HOUSEHOLDS else persons
        entry = {"rule": rule.name, "unit": rule.unit, "expression": rule.expression}
        reference = seed.households if rule.unit == HOUSEHOLDS else seed.persons
        condition = compile_condition(rule.expression, rule.unit, reference.columns, rule.name)
        missing = [c for c in condition.columns if c not in frame.columns]
        if missing:
            out.append({**entry, "not_checked": f"the output has no column {', '.join(missing)}"})
            continue
        known = frame[list(condition.columns)].notna().all(axis=1).to_numpy()
        broken = ~condition(frame) & known
        w = weight if rule.unit == HOUSEHOLDS else weight[seed.persons["_household"].to_numpy()]
        seed_known = reference[list(condition.columns)].notna().all(axis=1).to_numpy()
        seed_broken = ~condition(reference) & seed_known
        out.append(
            {
                **entry,
                "units": int(len(frame)),
                "checked": int(known.sum()),
                "broken": int(broken.sum()),
                "broken_share": float(broken.sum() / known.sum()) if known.any() else 0.0,
                "seed_broken_share": float(w[seed_broken].sum() / w[seed_known].sum()) if seed_known.any() else None,
            }
        )
    return out
