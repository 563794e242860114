"""The habits that keep the code safe to change: ruff's lint and format check over the repository and mypy over
``synthor_core/`` (configuration in pyproject.toml) pass; every finding fails this test with the tool's output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synthor_testing import ROOT


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_code_checks_pass(command):
    done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} found problems:\n{done.stdout}\n{done.stderr}"
