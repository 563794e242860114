"""The one place that tells a project folder's format and reads it: a Synthor person project, a Synthor household
project, or a PopulationSim working directory (DESIGN §12)."""

from __future__ import annotations

from pathlib import Path

from ..errors import Problem, TargetValidationError
from ..targets.model import HouseholdProject, Project
from .households import is_household_project, load_household_project
from .populationsim import is_populationsim_project, load_populationsim
from .project import load_project


def is_zoned_project(folder: str | Path, configs: str = "configs") -> bool:
    """Whether ``folder`` holds households in zones: a Synthor household project (``synthor.toml`` with
    ``[geography]``) or a PopulationSim working directory (``configs/settings.yaml``)."""
    return is_household_project(folder) or is_populationsim_project(folder, configs)


def open_project(
    folder: str | Path, configs: str = "configs", data: str | None = None, repop: bool = False
) -> Project | HouseholdProject:
    """Read the project in ``folder`` whatever its format.

    Parameters
    ----------
    folder : path
    configs, data : str
        A PopulationSim folder's configs and data folders (see :func:`load_populationsim`).
    repop : bool
        Read it in repop mode (``run --base``): a PopulationSim folder with its repop settings
        (:func:`load_populationsim` with ``repop``), or a Synthor household project converted from one
        (``[project] repop``).

    Returns
    -------
    HouseholdProject for a Synthor household project or a PopulationSim folder, Project for a person project.

    Raises
    ------
    TargetValidationError
        With every problem of the project (file, row, column); in repop mode a problem naming repop when ``folder``
        is neither of the two.
    """
    household = is_household_project(folder)
    populationsim = not household and is_populationsim_project(folder, configs)
    if not household and not populationsim and not repop:
        return load_project(folder)
    project: HouseholdProject | None = None
    if household:
        project = load_household_project(folder)
    elif populationsim:
        project = load_populationsim(folder, configs=configs, data=data, repop=repop)
    if project is not None and (project.repop is not None or not repop):
        return project
    raise TargetValidationError(
        [
            Problem(
                str(folder),
                f"repop: --base needs a PopulationSim project whose {configs}/settings.yaml names "
                f"repop_control_file_name, or a Synthor project converted from one (convert --repop)",
            )
        ]
    )
