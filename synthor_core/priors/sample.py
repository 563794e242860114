"""The seed prior: the sample's own households are the candidates (DESIGN §10).

PopulationSim's approach: every household of the sample (ACS PUMS) is a candidate in each zone of its block (its
PUMA). A sample cannot write new households, so what it cannot reach (a block without sample households, a control
none of its households meets, a zone far from the block's mix) is realized by the run's fallback prior (``maxent``),
counted and reported.
"""

from __future__ import annotations

import numpy as np

from ..targets.model import HouseholdProject
from ..units import Candidates, empty_candidates
from .base import HouseholdGuidance, HouseholdProposal, PriorBase, plan_from_gaps


def sample_candidates(project: HouseholdProject) -> Candidates:
    """The sample's households with a weight > 0 as candidates: every column of the sample, members numbered
    ``per_num`` from 1 in the sample's order, source ``"seed"``, marked as sample households."""
    sample = project.sample
    weight = sample.households[sample.weight].to_numpy(dtype=np.float64)
    keep = np.flatnonzero(weight > 0)
    persons = sample.numbered_persons()
    blocks = project.geography.zones(sample.seed_level).get_indexer(sample.households[sample.seed_level])
    everything = Candidates(
        sample.households,
        persons,
        blocks.astype(np.int64),
        weight,
        np.full(len(weight), "seed", dtype=object),
        sample.household_id,
        np.ones(len(weight), dtype=bool),
    )
    return everything if keep.size == len(weight) else everything.take(keep)


class SamplePrior(PriorBase):
    """The seed prior (a :class:`~synthor_core.priors.base.HouseholdPrior`): the sample's households as candidates.

    ``realize`` writes nothing (a sample has no other households), so every proposal goes to the run's fallback.
    """

    name = "seed"

    def __init__(self, project: HouseholdProject):
        super().__init__()
        self.project = project

    def support(self, rng: np.random.Generator) -> Candidates:
        """The sample's households (weight > 0)."""
        return sample_candidates(self.project)

    def plan(self, guidance: HouseholdGuidance, rng: np.random.Generator) -> list[HouseholdProposal]:
        """One proposal per under-reached control-zone pair (:func:`~synthor_core.priors.base.plan_from_gaps`)."""
        return plan_from_gaps(guidance)

    def realize(self, proposal: HouseholdProposal, k: int, rng: np.random.Generator) -> Candidates:
        """No household: the sample's are all candidates already."""
        return empty_candidates(self.project.sample.household_id)

    def report(self) -> dict:
        """The sample's size, for the report."""
        return {"candidates": int(len(self.project.sample.households))}
