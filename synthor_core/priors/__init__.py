"""Priors: where records come from (DESIGN §4). ``maxent`` is embedded and needs nothing."""

from .base import Guidance, Prior, Proposal
from .maxent import MaxEntPrior

__all__ = ["Guidance", "MaxEntPrior", "Prior", "Proposal"]
