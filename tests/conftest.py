"""Fixtures shared by all tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthor_testing import write_project


@pytest.fixture
def small_project_dir(tmp_path: Path) -> Path:
    """A valid three-variable project (age numeric, sex, employed) of 1,000 persons."""
    return write_project(tmp_path / "small")


@pytest.fixture(autouse=True, scope="session")
def _data_dir_in_tmp(tmp_path_factory):
    """The app's run store goes to a temporary folder, never the user's data folder."""
    import os

    os.environ["SYNTHOR_DATA_DIR"] = str(tmp_path_factory.mktemp("synthor-data"))
    yield
