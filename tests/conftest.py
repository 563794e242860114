"""Fixtures shared by all tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthor_testing import write_project


@pytest.fixture
def small_project_dir(tmp_path: Path) -> Path:
    """A valid three-variable project (age numeric, sex, employed) of 1,000 persons."""
    return write_project(tmp_path / "small")
