"""The project zip of an app run repeats it (issue 23 item 3): RUN.md's command, run from the CLI on the unzipped
folder, writes the same population.csv, byte for byte, rules included."""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import zipfile

from synthor_core.readers.project import load_project
from synthor_core.readers.rules import load_rules
from synthor_core.runner import Runner
from synthor_core.store import RunStore
from synthor_core.synthesis.config import SynthesisConfig
from synthor_testing import ROOT


def test_the_command_in_run_md_gives_the_app_s_bytes(tmp_path):
    project = load_project(ROOT / "examples" / "adult")
    rules = load_rules(ROOT / "examples" / "adult" / "rules.toml", project.schema)
    runner = Runner(RunStore(tmp_path / "runs.duckdb"))
    run_id = runner.start(project, SynthesisConfig(size=3000, seed=4, max_iterations=30), rules=rules)
    assert runner.wait(run_id, timeout_s=300).status == "finished"
    files = runner.exports(run_id)
    folder = tmp_path / "PROJECT"
    with zipfile.ZipFile(io.BytesIO(files["project.zip"])) as archive:
        archive.extractall(folder)
    text = (folder / "RUN.md").read_text(encoding="utf-8")
    command = re.search(r"^    (python -m synthor_core run .*)$", text, re.MULTILINE).group(1)
    assert "--rules PROJECT/run-rules.toml" in command  # the rules the app enforced travel with the project
    args = shlex.split(command.replace("PROJECT", str(folder)).replace("OUT", str(tmp_path / "OUT")))
    done = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "OUT" / "population.csv").read_bytes() == files["population.csv"]
