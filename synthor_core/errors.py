"""Exception types of Synthor. Every error carries where it happened (file, row, column) and what was expected.

Style: SDV's ``errors.py`` (one module, typed errors) and ``InvalidDataError(errors)`` which collects every
problem before raising once (STYLE.md, rule 14).
"""

from __future__ import annotations

from dataclasses import dataclass


class SynthorError(Exception):
    """Base class of every error Synthor raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in the user's input.

    Parameters
    ----------
    file : str
        Path of the file as the user named it (``synthor.toml``, ``tables/age.csv``), or ``""`` for UI input.
    message : str
        What was expected and what was found.
    row : int or None
        1-based row number in the file as a spreadsheet shows it (the header is row 1), or None.
    column : str or None
        Column name (or TOML key) at fault, or None.
    """

    file: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = self.file or "input"
        if self.row is not None:
            where += f" row {self.row}"
        if self.column is not None:
            where += f', column "{self.column}"' if self.row is not None else f' column "{self.column}"'
        return f"{where}: {self.message}"


class TargetFileError(SynthorError):
    """A single problem in one target file, with its location.

    Message format: ``age.csv row 7, column "count": expected integer >= 0, got "-3"``.
    """

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None):
        self.problem = Problem(file=file, message=message, row=row, column=column)
        super().__init__(str(self.problem))


class TargetValidationError(SynthorError):
    """Every problem found in a project, raised once after all files were checked.

    Attributes
    ----------
    problems : list of Problem
        In the order they were found (files in the order of ``synthor.toml``).
    """

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the project:\n{lines}")


class RuleError(SynthorError, ValueError):
    """A condition (a plausibility rule, a control expression) uses something its language does not allow, or names
    an unknown variable, column or category; the message names the rule or control and what is wrong."""


class StoreBusyError(SynthorError):
    """The run store file is held by another process for longer than the store waits for it."""


class ConfigError(SynthorError):
    """A run setting is not allowed (names the setting, what is allowed and what was given)."""


class SchedulerError(SynthorError):
    """A Dask scheduler named for a run that cannot be reached."""


class PriorError(SynthorError):
    """A prior could not produce proposals or records (for example an LLM endpoint unreachable)."""


class TokenBudgetExhausted(PriorError):
    """The run's LLM token budget is spent; the run stops cleanly with what it has."""
