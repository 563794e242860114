"""Synthor: synthetic populations whose aggregates match the target tables (LLMSynthor, arXiv 2505.14752).

The library never imports Streamlit. Typical use::

    project = load_project("examples/adult")
    prior = MaxEntPrior(project)
    for event in run_synthesis(project, prior, SynthesisConfig(seed=1)):
        ...
"""

from .errors import SynthorError, TargetValidationError
from .priors import MaxEntPrior, Prior, Proposal
from .readers.project import load_project
from .schema import Schema, expand_records
from .synthesis.config import SynthesisConfig
from .synthesis.events import IterationEvent, SynthesisResult
from .synthesis.loop import run_synthesis
from .targets.model import Project

__all__ = [
    "IterationEvent",
    "MaxEntPrior",
    "Prior",
    "Project",
    "Proposal",
    "Schema",
    "SynthesisConfig",
    "SynthesisResult",
    "SynthorError",
    "TargetValidationError",
    "expand_records",
    "load_project",
    "run_synthesis",
]
