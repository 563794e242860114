"""The loop for households in zones (DESIGN §3, §8-§10), for one partition of a household project.

1. **Support**: the prior's first candidate households (the sample's, or ``maxent``'s, or the LLM's); the fallback
   adds candidates for what they cannot reach (a block without candidates, a control no candidate of a block meets).
2. **Calibrate**: list balancing (:class:`~synthor_core.calibrate.balancing.ListBalancer`) weighs the candidates in
   every zone against the household and person controls of every level at once; households with the same incidence
   on every control are one profile group (PopulationSim's ``GROUP_BY_INCIDENCE_SIGNATURE``).
3. **Measure** after a slice of sweeps (one iteration): every control in every zone, %RMSE per control and group.
4. **Plan and realize**: the prior turns the control-zone pairs worst off into proposals, and realizes them as new
   candidate households for those zones (what it cannot, the fallback does); they join the balancing from where it
   stood. Repeat until balancing ends (controls met, stationary, sweep limit), the worst %RMSE stops falling once
   proposals have ended (``fit stationary``), or a stop is asked.
5. **Integerize** zone by zone (:func:`~synthor_core.calibrate.integerizing.integerize_zone`), carrying the rounding
   of upper-level controls from one zone to the next (there count controls weigh ``INTEGERIZE_UPPER_WEIGHT`` of
   their importance, the last zone of a group ``INTEGERIZE_LAST_ZONE_BOOST`` times it), then draw each group's whole
   households among its members.

Pure like the person loop: no threads, no I/O; :func:`synthesize_zones` yields :class:`HouseholdIteration` events,
then one :class:`PartitionOutcome`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..calibrate.balancing import BalanceResult, BalanceState, ListBalancer
from ..calibrate.integerizing import integerize_trs, integerize_zone
from ..errors import PriorError, TokenBudgetExhausted
from ..metrics import control_fit, worst_by_group, zone_gaps
from ..priors.base import HouseholdGuidance, HouseholdPrior, HouseholdProposal, ZoneTarget
from ..targets.model import HouseholdProject, incidence_matrix
from ..units import HOUSEHOLD_ROW, HOUSEHOLDS, Candidates, empty_candidates
from .config import SynthesisConfig
from .events import HouseholdIteration, PartitionOutcome, placed_weights


@dataclass
class _Block:
    """The candidates of one block (a zone of the sample level) and their balanced weights in its zones.

    ``rows``: candidate rows (int64); ``zones``: lowest-level zones with households (int64); ``group``: each row's
    profile group; ``signatures``: each group's incidence (float64, (groups, controls)); ``weights``: each group's
    weight in each zone (float64, (groups, zones)); ``caps`` and ``floors``: each group's upper and lower bound per
    zone (inf and 0: none).
    """

    rows: npt.NDArray[np.int64]
    zones: npt.NDArray[np.int64]
    group: npt.NDArray[np.int64]
    signatures: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64]
    caps: npt.NDArray[np.float64]
    floors: npt.NDArray[np.float64]


class _Pool:
    """The partition's candidates, their incidence on every control and the blocks balancing works on."""

    def __init__(self, project: HouseholdProject, config: SynthesisConfig, weighting: bool = False):
        self.project, self.config = project, config
        self.weighting = weighting  # survey weighting: a weight per sample household, no integerization
        geography = project.geography
        self.controls = project.controls
        self.per_zone = project.households_per_zone()
        self.block_of_zone = geography.parent_index(project.sample.seed_level)
        self.zone_groups = np.vstack([geography.parent_index(c.level) for c in self.controls])
        self.master = next(i for i, c in enumerate(self.controls) if c.name == project.total_control)
        self.candidates = empty_candidates(project.sample.household_id)
        self.incidence = np.zeros((0, len(self.controls)))
        # a numeric control (total income) is balanced in units of its mean counted value, so that its incidence is
        # about 1 as a count's is (gamma ** 60,000 would underflow); totals and synthetic in its own unit outside
        self.scale = np.ones(len(self.controls))
        self.targeted: list[npt.NDArray[np.int64] | None] = []  # per candidate: the zones it was made for, or None
        self.blocks: dict[int, _Block] = {}
        self.next_id = 1

    def add(self, candidates: Candidates, zones: npt.NDArray[np.int64] | None = None) -> None:
        """Append candidates (of one block when ``zones`` is given: made for those zones only)."""
        self.add_all([(candidates, zones)])

    def add_all(self, parts: Sequence[tuple[Candidates, npt.NDArray[np.int64] | None]]) -> None:
        """Append candidates, each part made for its zones (None: the whole block): ids, the sample level's zone and
        the weight column set, incidence computed, their blocks' groups rebuilt once (the weights of groups already
        there kept)."""
        parts = [(self._labelled(c), z) for c, z in parts if len(c)]
        if not parts:
            return
        candidates = Candidates.join([c for c, _ in parts])
        targeted = [z for c, z in parts for _ in range(len(c))]
        first = len(self.candidates)
        self.candidates = self.candidates.concat(candidates)
        new = incidence_matrix(self.controls, candidates)
        if first == 0:
            for i, c in enumerate(self.controls):
                counted = new[:, i][new[:, i] > 0]
                if c.total_of is not None and counted.size:
                    self.scale[i] = float(counted.mean())
        self.incidence = np.vstack([self.incidence, new])
        self.targeted += targeted
        for b in np.unique(candidates.block):
            self._regroup(int(b), np.arange(first, len(self.candidates))[candidates.block == b])

    def _labelled(self, candidates: Candidates) -> Candidates:
        """The candidates with their ids, the sample level's zone and the weight column set."""
        sample = self.project.sample
        households = candidates.households.copy()
        households[sample.household_id] = self._ids(candidates)
        households[sample.seed_level] = self.project.geography.zones(sample.seed_level)[candidates.block]
        given = households[sample.weight].to_numpy() if sample.weight in households else candidates.weight
        households[sample.weight] = np.where(candidates.source == "seed", given, candidates.weight)
        return replace(candidates, households=households)

    def _ids(self, candidates: Candidates) -> np.ndarray:
        """The sample's ids for its households; the next whole numbers (or ``source-n``) for the others."""
        column = self.project.sample.household_id
        existing = self.project.sample.households[column]
        numeric = pd.api.types.is_numeric_dtype(existing)
        if self.next_id == 1 and numeric and len(existing):
            self.next_id = int(existing.max()) + 1
        ids = np.empty(len(candidates), dtype=object)
        own = candidates.source == "seed"
        ids[own] = candidates.households[column].to_numpy()[own] if column in candidates.households else None
        others = np.flatnonzero(~own)
        if numeric:
            ids[others] = np.arange(self.next_id, self.next_id + others.size)
        else:
            ids[others] = [f"{candidates.source[i]}-{self.next_id + k}" for k, i in enumerate(others)]
        self.next_id += others.size
        return ids.astype(np.int64) if numeric else ids

    def _regroup(self, b: int, new_rows: npt.NDArray[np.int64]) -> None:
        """Rebuild block ``b``'s profile groups with ``new_rows`` added; weights of groups already there kept, new
        groups start from their candidates' share (the whole block's zones, or the zones they were made for)."""
        zones = np.flatnonzero((self.block_of_zone == b) & (self.per_zone > 0))
        old = self.blocks.get(b)
        rows = new_rows if old is None else np.concatenate([old.rows, new_rows])
        if self.weighting:  # a weight per household (PopulationSim: GROUP_BY_INCIDENCE_SIGNATURE off)
            signatures, group = self.incidence[rows] / self.scale, np.arange(rows.size)
        else:
            signatures, group = np.unique(self.incidence[rows] / self.scale, axis=0, return_inverse=True)
            group = group.reshape(-1)
        initial = self._initial(rows, group, len(signatures), zones)
        weights = initial.copy()
        if old is not None:
            index = {sig.tobytes(): g for g, sig in enumerate(old.signatures)}
            for g, sig in enumerate(signatures):
                kept = index.get(sig.tobytes())
                if kept is not None:
                    weights[g] = old.weights[kept]
        caps, floors = self._bounds(rows, group, initial)
        self.blocks[b] = _Block(rows, zones, group, signatures, weights, caps, floors)

    def _initial(self, rows, group, n_groups: int, zones) -> npt.NDArray[np.float64]:
        """Each group's starting weight per zone: block-wide candidates share every zone's households by weight;
        a candidate made for some zones puts its weight there, by their households. With the LLM's candidates in the
        pool, the fallback's start at ``HOUSEHOLD_FALLBACK_START`` of their weight: balancing stays closest to its
        start, so the LLM's households keep the weight wherever they can meet the controls."""
        weight = self.candidates.weight[rows]
        source = np.asarray(self.candidates.source)
        if (source == "llm").any():  # the fallback's candidates fill what the LLM's cannot reach: they start lighter
            weight = np.where(source[rows] == "llm", weight, weight * defaults.HOUSEHOLD_FALLBACK_START)
        wide = np.array([self.targeted[r] is None for r in rows], dtype=bool)
        out = np.zeros((n_groups, zones.size))
        total_wide = weight[wide].sum()
        if total_wide > 0:
            share = np.bincount(group[wide], weights=weight[wide], minlength=n_groups) / total_wide
            out += share[:, None] * self.per_zone[zones][None, :].astype(np.float64)
        position = {int(z): k for k, z in enumerate(zones)}
        for i in np.flatnonzero(~wide):
            made_for = [z for z in self.targeted[rows[i]] if int(z) in position]  # type: ignore[union-attr]
            households = self.per_zone[made_for].astype(np.float64)
            if households.sum() > 0:
                for z, h in zip(made_for, households):
                    out[group[i], position[int(z)]] += weight[i] * h / households.sum()
        return out

    def _bounds(self, rows, group, initial) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each group's upper and lower bound per zone, for groups of sample households only (inf and 0 otherwise):
        ``max_expansion_factor`` and ``min_expansion_factor`` x the starting weight (the sample weight scaled to the
        zone's households, as PopulationSim's ``ub_ratio`` and ``lb_ratio``). Survey weighting (a group per household)
        takes PopulationSim's rounding of the upper bound (whole, at least 1) and its absolute bounds."""
        project = self.project
        caps = np.full_like(initial, np.inf)
        floors = np.zeros_like(initial)
        model = np.bincount(group, weights=(~self.candidates._sample()[rows]).astype(float), minlength=len(initial))
        sample = model == 0
        if project.max_expansion_factor:
            caps[sample] = initial[sample] * project.max_expansion_factor
            if self.weighting:
                caps[sample] = np.maximum(np.rint(caps[sample]), 1.0)
        if project.min_expansion_factor:
            floors[sample] = initial[sample] * project.min_expansion_factor
        if self.weighting:
            if project.absolute_upper_bound is not None:
                caps[sample] = np.minimum(caps[sample], project.absolute_upper_bound)
            if project.absolute_lower_bound is not None:
                floors[sample] = np.maximum(floors[sample], project.absolute_lower_bound)
        return caps, floors

    def balancer(self, state: BalanceState | None) -> ListBalancer:
        """A list balancer over the blocks as they are now, going on from ``state``."""
        blocks = [self.blocks[b] for b in sorted(self.blocks)]
        bounded = any(np.isfinite(blk.caps).any() for blk in blocks)
        caps = [blk.caps for blk in blocks] if bounded else None
        floors = [blk.floors for blk in blocks] if any(blk.floors.any() for blk in blocks) else None
        return ListBalancer(
            [blk.signatures for blk in blocks],
            [blk.weights for blk in blocks],
            [blk.zones for blk in blocks],
            self.zone_groups,
            self.totals(),
            [c.importance for c in self.controls],
            master=self.master,
            caps=caps,
            state=state,
            floors=floors,
        )

    def totals(self) -> list[npt.NDArray[np.float64]]:
        """Every control's totals in balancing units (a numeric control's divided by its scale)."""
        return [c.totals / s for c, s in zip(self.controls, self.scale)]

    def take_weights(self, balance: BalanceResult) -> None:
        """Keep the balanced weights (one array per block, in block order)."""
        for b, w in zip(sorted(self.blocks), balance.weights):
            self.blocks[b].weights = np.asarray(w, dtype=np.float64)

    def synthetic(self) -> dict[str, npt.NDArray[np.float64]]:
        """Every control's weighted total in every zone of its level."""
        out = {c.name: np.zeros(c.totals.size) for c in self.controls}
        for blk in self.blocks.values():
            contribution = (blk.signatures.T @ blk.weights) * self.scale[:, None]  # (controls, zones of block)
            for i, c in enumerate(self.controls):
                out[c.name] += np.bincount(
                    self.zone_groups[i, blk.zones], weights=contribution[i], minlength=c.totals.size
                )
        return out

    def balanced_households(self) -> npt.NDArray[np.float64]:
        """Each candidate's balanced households over its block's zones: its group's weight shared among the group's
        members by their weights, shape (n_candidates,)."""
        out = np.zeros(len(self.candidates))
        for blk in self.blocks.values():
            weight = self.candidates.weight[blk.rows]
            per_group = np.bincount(blk.group, weights=weight, minlength=len(blk.signatures))
            share = np.divide(weight, per_group[blk.group], out=np.zeros_like(weight), where=per_group[blk.group] > 0)
            out[blk.rows] = blk.weights.sum(axis=1)[blk.group] * share
        return out

    def households_by_source(self) -> dict[str, float]:
        """Balanced households by the prior their candidate came from (:meth:`balanced_households`)."""
        households = self.balanced_households()
        out: dict[str, float] = {}
        for blk in self.blocks.values():
            sources = self.candidates.source[blk.rows]
            for source in np.unique(sources):
                share_of_source = float(households[blk.rows][sources == source].sum())
                out[str(source)] = out.get(str(source), 0.0) + share_of_source
        return dict(sorted(out.items()))

    def target(self, gap) -> ZoneTarget | None:
        """Where households for a control-zone pair go: the block holding most of the zone's households, and the
        zone's lowest-level zones in it; None when the zone has no household to place (its control cannot be met
        by adding candidates)."""
        control = next(i for i, c in enumerate(self.controls) if c.name == gap.control)
        inside = np.flatnonzero((self.zone_groups[control] == gap.index) & (self.per_zone > 0))
        if not inside.size:
            return None
        blocks = self.block_of_zone[inside]
        households = np.bincount(blocks, weights=self.per_zone[inside].astype(float))
        block = int(np.argmax(households))
        return ZoneTarget(gap, block, tuple(int(z) for z in inside[blocks == block]))


class _Accounts:
    """What the run's prior and its fallback added and what was rejected, for events and the report."""

    def __init__(self) -> None:
        self.fallback: Counter = Counter()
        self.added: Counter = Counter()
        self.warnings: list[str] = []


def _meets(project: HouseholdProject, proposal: HouseholdProposal, found: Candidates) -> npt.NDArray[np.bool_]:
    """Which households of ``found`` meet the proposal's control (a household control: the household; a person
    control: at least one member)."""
    control = next(c for c in project.controls if c.name == proposal.control)
    if control.unit == HOUSEHOLDS:
        return control.condition(found.households)
    hit = control.condition(found.persons)
    return np.bincount(found.persons[HOUSEHOLD_ROW].to_numpy()[hit], minlength=len(found)) > 0


def _valid(
    project: HouseholdProject, proposal: HouseholdProposal | None, found: Candidates, rejected: Counter, origin: str
) -> Candidates:
    """The households that meet the proposal and break none of the project's rules; the others counted."""
    if not len(found):
        return found
    keep = np.ones(len(found), dtype=bool)
    if proposal is not None:
        meets = _meets(project, proposal, found)
        if (~meets).any():
            rejected[f"{origin}household: does not meet the proposal's control"] += int((~meets).sum())
        keep &= meets
    for rule in project.rules:
        broken = rule.broken(found.frame(rule.unit))
        if rule.unit != HOUSEHOLDS:
            broken = np.bincount(found.persons[HOUSEHOLD_ROW].to_numpy()[broken], minlength=len(found)) > 0
        broken &= keep
        if broken.any():
            rejected[f"{origin}household: breaks {rule.name}"] += int(broken.sum())
            keep &= ~broken
    return found if keep.all() else found.take(np.flatnonzero(keep))


def _fill_support(pool: _Pool, fallback: HouseholdPrior, rng: np.random.Generator, accounts: _Accounts) -> None:
    """Candidates from the fallback for what the support cannot reach: every block with households to place but no
    candidate (as many as ``maxent`` makes per block), and each control a block's zones ask for that none of its
    candidates meets."""
    project = pool.project
    total = project.total
    for b in np.unique(pool.block_of_zone[pool.per_zone > 0]):
        zones = np.flatnonzero((pool.block_of_zone == b) & (pool.per_zone > 0))
        name = f"{project.sample.seed_level} {project.geography.zones(project.sample.seed_level)[b]}"
        here = pool.blocks.get(int(b))
        asks: list[tuple[str, int, int]] = []
        if here is None:
            asks.append((total.name, int(pool.per_zone[zones].sum()), defaults.HOUSEHOLD_MAXENT_POOL))
        else:
            reached = pool.incidence[here.rows] > 0
            for i, c in enumerate(pool.controls):
                asked = c.totals[np.unique(pool.zone_groups[i, zones])].sum()
                if i != pool.master and asked > 0 and not reached[:, i].any():
                    asks.append((c.name, max(1, int(round(asked))), defaults.HOUSEHOLD_PROPOSAL_CANDIDATES))
        for control, count, k in asks:
            proposal = HouseholdProposal(
                control=control,
                level=project.sample.seed_level,
                zone=name.split(" ", 1)[1],
                block=int(b),
                zones=tuple(int(z) for z in zones),
                count=count,
                reason=f"no candidate of {name} reaches {control}",
            )
            wanted = proposal if control != total.name else None
            found = _valid(project, wanted, fallback.realize(proposal, k, rng), Counter(), "fallback ")
            if len(found):
                pool.add(found, None if control == total.name else np.asarray(proposal.zones))
                accounts.fallback["support"] += len(found)
                accounts.added[fallback.name] += len(found)


def _plan(prior, fallback, guidance, rng, accounts: _Accounts) -> list[HouseholdProposal]:
    """The prior's proposals; the fallback's when the prior cannot plan (counted, warned once)."""
    try:
        proposals = prior.plan(guidance, rng)
    except TokenBudgetExhausted:
        return []
    except PriorError as exc:
        if fallback is None:
            raise
        if not accounts.fallback["plans"]:
            accounts.warnings.append(
                f'the prior "{prior.name}" could not plan ({exc}); {fallback.name} planned instead'
            )
        proposals = []
    if not proposals and fallback is not None and fallback is not prior:
        proposals = fallback.plan(guidance, rng)
        accounts.fallback["plans"] += 1
    return proposals[: guidance.max_proposals]


def _realize(
    pool: _Pool, prior, fallback, proposals, rng, should_stop, accounts: _Accounts, rejected: Counter
) -> Counter:
    """Realize the proposals as candidates (the prior, then the fallback for what it did not write) and add them;
    returns the candidates added by source."""
    project = pool.project
    households = max(int(pool.per_zone.sum()), 1)
    requests = [
        (
            p,
            min(
                p.count,
                defaults.HOUSEHOLD_PROPOSAL_CANDIDATES,
                max(defaults.MIN_RECORDS_PER_PROPOSAL, math.ceil(prior.distinct_records * p.count / households)),
            ),
        )
        for p in proposals
    ]
    try:
        realized = prior.realize_batch(requests, rng, should_stop)
    except PriorError as exc:
        if fallback is None or isinstance(exc, TokenBudgetExhausted):
            realized = []
        else:
            if not accounts.fallback["realize_failures"]:
                accounts.warnings.append(f'the prior "{prior.name}" failed ({exc}); {fallback.name} realized instead')
            accounts.fallback["realize_failures"] += 1
            realized = []
    realized = list(realized) + [empty_candidates(project.sample.household_id)] * (len(requests) - len(realized))
    added: Counter = Counter()
    parts = []
    # new candidates start with a share of the gap: balancing grows them where the others cannot reach
    start = defaults.HOUSEHOLD_PROPOSAL_START
    for (proposal, k), found in zip(requests, realized):
        zones = np.asarray(proposal.zones, dtype=np.int64)
        own = _valid(project, proposal, found, rejected, "")
        if len(own):
            parts.append((replace(own, weight=np.full(len(own), start * proposal.count / len(own))), zones))
            added[prior.name] += len(own)
        if fallback is not None and fallback is not prior and len(own) < k and not should_stop():
            extra = _valid(project, proposal, fallback.realize(proposal, k - len(own), rng), rejected, "fallback ")
            if len(extra):
                parts.append(
                    (
                        replace(extra, weight=np.full(len(extra), start * proposal.count / (len(extra) + len(own)))),
                        zones,
                    )
                )
                added[fallback.name] += len(extra)
                accounts.fallback["proposals"] += 1
                accounts.fallback["candidates"] += len(extra)
        if not len(own) and (fallback is None or fallback is prior):
            rejected["proposal: no valid household"] += 1
    pool.add_all(parts)
    accounts.added.update(added)
    return added


def _measured(pool: _Pool, balance: BalanceResult, iteration: int, name: str, prior, synthetic) -> dict:
    """The fields of an iteration's event that the balanced weights give."""
    fit = control_fit(pool.controls, synthetic)
    usage = prior.usage
    return {
        "iteration": iteration,
        "partition": name,
        "sweeps": balance.iterations,
        "max_relative_gap": float(balance.max_relative_gap),
        "pct_rmse": {r.control: float(r.pct_rmse) for r in fit.itertuples()},
        "fit_by_group": worst_by_group(fit[fit["control"] != pool.project.total_control]),
        "households_by_source": pool.households_by_source(),
        "llm_calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }


def synthesize_zones(
    project: HouseholdProject,
    prior: HouseholdPrior,
    config: SynthesisConfig,
    rng: np.random.Generator,
    name: str = "",
    should_stop: Callable[[], bool] | None = None,
    fallback: HouseholdPrior | None = None,
) -> Iterator[HouseholdIteration | PartitionOutcome]:
    """Run the household loop on one project (a partition): yield a :class:`HouseholdIteration` per iteration, then
    the :class:`PartitionOutcome` (its ``households`` in the project's own zone indices, ``index`` 0).

    Parameters
    ----------
    project : HouseholdProject
    prior : HouseholdPrior
        Where candidates come from (``support``, ``plan``, ``realize``).
    config : SynthesisConfig
        ``max_sweeps``, ``balance_tolerance``, ``sweeps_per_iteration``, ``top_k`` (control-zone pairs handed to the
        prior), ``max_proposals``, ``fallback``.
    rng : numpy Generator
        The partition's only generator.
    name : str
        The partition's name in events.
    should_stop : callable returning bool, optional
        Polled between iterations and zones; when true balancing ends, the zones not yet integerized are rounded
        without the linear programme, and what was built is returned (stop reason ``"stop requested"``).
    fallback : HouseholdPrior, optional
        Used when ``config.fallback``: realizes what the prior cannot reach or write, plans when it cannot.

    Raises
    ------
    PriorError
        When the prior gives no candidate and there is no fallback.
    """
    stop = should_stop or (lambda: False)
    backup = fallback if (fallback is not None and config.fallback) else None
    started = time.perf_counter()
    # survey weighting (PopulationSim's NO_INTEGERIZATION_EVER) weighs the sample's own households where they are
    weighting = project.survey_weighting and prior.name == "seed"
    pool = _Pool(project, config, weighting)
    accounts = _Accounts()
    if project.survey_weighting and not weighting:
        accounts.warnings.append(
            f"NO_INTEGERIZATION_EVER (survey weighting) weighs the seed sample's households; the {prior.name} prior "
            f"builds households from the controls: whole households written"
        )
    try:
        pool.add(_valid(project, None, prior.support(rng), Counter(), ""))
    except PriorError as exc:
        if backup is None:
            raise
        accounts.warnings.append(f'the prior "{prior.name}" gave no candidate ({exc}); {backup.name} did instead')
        pool.add(_valid(project, None, backup.support(rng), Counter(), "fallback "))
    accounts.added[prior.name] += len(pool.candidates)
    if backup is not None and backup is not prior and not weighting:
        _fill_support(pool, backup, rng, accounts)
    if not len(pool.candidates):
        raise PriorError(f'the prior "{prior.name}" gave no candidate household for {name or project.name}')
    iterations: list[HouseholdIteration] = []
    state, stop_reason, iteration = None, "", 0
    max_sweeps, per_slice = config.max_sweeps, config.sweeps_per_iteration
    if weighting:  # no proposals between slices: balance to convergence as PopulationSim does, a few events
        max_sweeps = max(max_sweeps, defaults.SURVEY_WEIGHTING_MAX_SWEEPS)
        per_slice = max(per_slice, defaults.SURVEY_WEIGHTING_SLICE)
    max_proposals = config.max_proposals or defaults.FULL_MAX_PROPOSALS
    while True:
        iteration += 1
        t0 = time.perf_counter()
        balancer = pool.balancer(state)
        balance = balancer.run(max_sweeps, config.balance_tolerance, per_slice)
        state = balancer.state
        pool.take_weights(balance)
        done = balance.stop != "slice"
        synthetic = pool.synthetic()
        measured = _measured(pool, balance, iteration, name, prior, synthetic)
        proposals: list[HouseholdProposal] = []
        added: Counter = Counter()
        rejected: Counter = Counter()
        if (
            not done
            and not stop()
            and not weighting
            and balance.iterations <= config.max_sweeps * defaults.HOUSEHOLD_PROPOSAL_SWEEPS
        ):
            # a control over the whole partition (a REGION total) is balancing's to meet, not a zone's to reach
            levels = project.geography.levels
            depth = levels.index(project.sample.seed_level)
            skip = {project.total_control} | {
                c.name for c in pool.controls if levels.index(c.level) < depth or c.total_of is not None
            }
            under, _ = zone_gaps(pool.controls, project.geography, synthetic, config.top_k, skip=skip)
            found = [pool.target(g) for g in under if g.count_gap >= defaults.HOUSEHOLD_PROPOSAL_MIN_GAP]
            targets = [t for t in found if t is not None]
            guidance = HouseholdGuidance(iteration, int(pool.per_zone.sum()), targets, max_proposals)
            proposals = _plan(prior, backup, guidance, rng, accounts) if targets else []
            added = _realize(pool, prior, backup, proposals, rng, stop, accounts, rejected)
        event = HouseholdIteration(
            **measured,
            candidates=len(pool.candidates),
            added=dict(added),
            proposals=tuple(proposals),
            rejected=dict(rejected),
            seconds=time.perf_counter() - t0,
        )
        iterations.append(event)
        yield event
        if done or stop():
            stop_reason = "stop requested" if stop() else balance.stop
            break
        if not weighting and _fit_stationary(iterations, max_sweeps * defaults.HOUSEHOLD_PROPOSAL_SWEEPS):
            stop_reason = "fit stationary"
            break
    placed, stats = _weighted(pool) if weighting else _integerize(pool, rng, stop)
    yield _outcome(pool, placed, stats, balance, tuple(iterations), stop_reason, prior, accounts, name, started)


def _fit_stationary(iterations: list[HouseholdIteration], proposal_sweeps: float) -> bool:
    """Whether balancing may end before its sweep limit: no proposals any more (past ``proposal_sweeps``), and the
    last ``HOUSEHOLD_STALL_ITERATIONS`` iterations did not lower the worst %RMSE by ``HOUSEHOLD_STALL`` (relative)
    below the best before them."""
    k = defaults.HOUSEHOLD_STALL_ITERATIONS
    if k <= 0 or len(iterations) <= k or iterations[-1].sweeps <= proposal_sweeps:
        return False
    before = min(i.worst_pct_rmse for i in iterations[:-k])
    return min(i.worst_pct_rmse for i in iterations[-k:]) > before * (1 - defaults.HOUSEHOLD_STALL)


def _integerize(pool: _Pool, rng: np.random.Generator, stop: Callable[[], bool]) -> tuple[pd.DataFrame, dict]:
    """Whole households zone by zone, as :func:`integerize_zone` (rounded by truncate-replicate-sample once a stop
    is asked), the rounding of upper-level controls carried from one zone to the next; then each group's households
    drawn among its members by their weights. Returns ``zone``, ``row``, ``count`` (int64), sorted."""
    geography, controls = pool.project.geography, pool.controls
    lowest = geography.lowest
    importance = np.array([c.importance for c in controls])
    upper = [i for i, c in enumerate(controls) if c.level != lowest]
    totals = pool.totals()  # balancing units, as the signatures
    remaining_target = {i: totals[i].astype(np.float64).copy() for i in upper}
    remaining_relaxed = {i: np.zeros(controls[i].totals.size) for i in upper}
    blocks = [pool.blocks[b] for b in sorted(pool.blocks)]
    contributions = []
    for blk in blocks:
        contribution = blk.signatures.T @ blk.weights  # (controls, zones of block)
        contributions.append(contribution)
        for i in upper:
            np.add.at(remaining_relaxed[i], pool.zone_groups[i, blk.zones], contribution[i])
    placed_zones = np.concatenate([blk.zones for blk in blocks]) if blocks else np.zeros(0, np.int64)
    zones_left = {i: np.bincount(pool.zone_groups[i, placed_zones], minlength=controls[i].totals.size) for i in upper}
    stats: dict[str, int] = {"lp_fallbacks": 0}
    pieces = []
    for blk, contribution in zip(blocks, contributions):
        members = _members_by_group(blk.group, pool.candidates.weight[blk.rows])
        # smallest zones first: the rounding carried for upper-level controls ends in the largest zones, whose
        # many households can absorb it (a tiny last zone could not)
        for k in np.argsort(pool.per_zone[blk.zones], kind="stable"):
            zone = blk.zones[k]
            targets = np.empty(len(controls))
            for i, c in enumerate(controls):
                g = pool.zone_groups[i, zone]
                if c.level == lowest:
                    targets[i] = totals[i][g]
                else:
                    left = remaining_relaxed[i][g]
                    targets[i] = remaining_target[i][g] * (contribution[i, k] / left) if left > 1e-12 else 0.0
            # an upper-level count control's miss in this zone is rounding carried to the group's next zones (their
            # targets are shares of what is left), so it weighs little here; the last zone of a group settles the
            # rest. A numeric control keeps its importance: its misses are sums of values chosen zone after zone,
            # which can drift one way further than the last zone absorbs (the income-total test: 17 %RMSE, not 0.8)
            zone_importance = importance.copy()
            for i in upper:
                if zones_left[i][pool.zone_groups[i, zone]] == 1:
                    zone_importance[i] *= defaults.INTEGERIZE_LAST_ZONE_BOOST
                elif controls[i].total_of is None:
                    zone_importance[i] *= defaults.INTEGERIZE_UPPER_WEIGHT
            households = int(pool.per_zone[zone])
            w = blk.weights[:, k]
            if stop():
                counts = integerize_trs(w if w.sum() > 0 else np.ones_like(w), households, rng) if households else w * 0
                counts = np.asarray(counts, dtype=np.int64)
                stats["rounded_zones"] = stats.get("rounded_zones", 0) + 1
            else:
                counts = integerize_zone(w, blk.signatures, targets, zone_importance, households, rng, stats)
            placed = counts @ blk.signatures
            for i in upper:
                g = pool.zone_groups[i, zone]
                remaining_target[i][g] -= placed[i]
                remaining_relaxed[i][g] -= contribution[i, k]
                zones_left[i][g] -= 1
            chosen, times = _draw_members(counts, members, rng)
            pieces.append(
                pd.DataFrame(
                    {"zone": np.full(chosen.size, zone, dtype=np.int64), "row": blk.rows[chosen], "count": times}
                )
            )
    households = pd.concat(pieces, ignore_index=True) if pieces else _no_households()
    return households.sort_values(["zone", "row"], kind="stable").reset_index(drop=True), stats


def _weighted(pool: _Pool) -> tuple[pd.DataFrame, dict]:
    """Survey weighting: every candidate once in each zone of its block where its balanced (float) weight is above 0,
    that weight as ``weight`` (a group is one household). Returns ``zone``, ``row``, ``count`` (1), ``weight``,
    sorted."""
    pieces = []
    for b in sorted(pool.blocks):
        blk = pool.blocks[b]
        for k, zone in enumerate(blk.zones):
            weight = blk.weights[blk.group, k]
            kept = np.flatnonzero(weight > 0)
            pieces.append(
                pd.DataFrame(
                    {
                        "zone": np.full(kept.size, zone, dtype=np.int64),
                        "row": blk.rows[kept],
                        "count": np.ones(kept.size, dtype=np.int64),
                        "weight": weight[kept],
                    }
                )
            )
    if not pieces:
        return _no_households().assign(weight=np.zeros(0)), {}
    households = pd.concat(pieces, ignore_index=True)
    return households.sort_values(["zone", "row"], kind="stable").reset_index(drop=True), {}


def _no_households() -> pd.DataFrame:
    return pd.DataFrame({"zone": np.zeros(0, np.int64), "row": np.zeros(0, np.int64), "count": np.zeros(0, np.int64)})


def _members_by_group(groups: np.ndarray, weight: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each profile group: its members (positions in the block) and their cumulative weight shares."""
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(groups.max() + 2 if groups.size else 1))
    out = []
    for g in range(len(bounds) - 1):
        idx = order[bounds[g] : bounds[g + 1]]
        cumulative = np.cumsum(weight[idx])
        out.append((idx, cumulative / cumulative[-1] if cumulative.size and cumulative[-1] > 0 else cumulative))
    return out


def _draw_members(counts: np.ndarray, members, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Spread each group's whole households over its members: systematic draws by weight, random start.

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


def _outcome(pool: _Pool, placed, stats, balance, iterations, stop_reason, prior, accounts, name, started):
    """The partition's outcome: its households (candidate rows renumbered over the placed ones), what they count
    for every control, and how the run went."""
    rows = np.unique(placed["row"].to_numpy())
    candidates = pool.candidates.take(rows)
    households = placed.assign(row=np.searchsorted(rows, placed["row"].to_numpy()).astype(np.int64))
    incidence = pool.incidence[rows][households["row"].to_numpy()]
    counts = placed_weights(households)
    zone = households["zone"].to_numpy()
    synthetic = {}
    for i, c in enumerate(pool.controls):
        groups = pool.zone_groups[i, zone]
        at = np.unique(groups)
        totals = np.bincount(groups, weights=counts * incidence[:, i], minlength=c.totals.size)
        synthetic[c.name] = (at.astype(np.int64), totals[at].astype(np.float64))
    light = replace(balance, weights=())
    report = prior.report()
    return PartitionOutcome(
        index=0,
        name=name,
        zones=np.flatnonzero(pool.per_zone > 0).astype(np.int64),
        households=households,
        candidates=candidates,
        synthetic=synthetic,
        iterations=iterations,
        balance=light,
        integerize=stats,
        stop_reason=stop_reason,
        fallback=dict(accounts.fallback),
        prior=report,
        seconds=time.perf_counter() - started,
        warnings=tuple(accounts.warnings),
        placed=int(households["count"].sum()),
        # for PopulationSim's output tables and the survey-weighting report only (they go to the writer)
        sample_weights=_sample_weights(pool, placed)
        if pool.weighting or pool.project.output_tables is not None
        else None,
    )


def _sample_weights(pool: _Pool, placed: pd.DataFrame) -> pd.DataFrame:
    """PopulationSim's seed weights table for the partition's sample households: the sample id, the seed zone,
    ``sample_weight``, ``balanced_weight`` (their group's balanced weight over the block's zones, shared by sample
    weight), ``integer_weight`` (households placed; not for survey weighting), then each control's incidence."""
    project = pool.project
    sample = project.sample
    balanced = pool.balanced_households()
    rows = np.flatnonzero(pool.candidates._sample())
    households = pool.candidates.households
    out = pd.DataFrame(
        {
            sample.household_id: households[sample.household_id].to_numpy()[rows],
            sample.seed_level: households[sample.seed_level].to_numpy()[rows],
            "sample_weight": pool.candidates.weight[rows],
            "balanced_weight": balanced[rows],
        }
    )
    if not pool.weighting:
        placed_rows = placed["row"].to_numpy()
        counts = np.bincount(placed_rows, weights=placed["count"].to_numpy(), minlength=len(pool.candidates))
        out["integer_weight"] = counts[rows].astype(np.int64)
    for i, c in enumerate(pool.controls):
        if c.name not in out.columns:
            out[c.name] = pool.incidence[rows, i]
    return out
