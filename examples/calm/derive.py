"""Derive the bundled CALM household project from PopulationSim's own example (``example_calm``).

Converts ``../shared/data/populationsim/example_calm`` (PopulationSim v0.10.0, BSD-3-Clause; seed records from the
US Census Bureau's ACS PUMS, public domain) into a Synthor household project with
:func:`synthor_core.readers.convert.convert_populationsim`, then keeps only the seed columns the project uses
(ids, weight, seed zone, every column a control, a derivation or the output settings read): 8.6 MB of seed files
become about 0.4 MB, every kept cell unchanged; then adds two household rules (``RULES``). Run from the repository root:
``python examples/calm/derive.py [--source DIR] [--out examples/calm]``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from synthor_core.readers.convert import convert_populationsim
from synthor_core.readers.households import load_household_project  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "populationsim" / "example_calm"
# Household rules in the spirit of the paper's population protocol (PAPER.md §5.5), checked on every run
RULES = """
# Rules every synthetic household and person is checked against (report.json "rules"), added by derive.py
[[rules]]
name = "householder aged 15 or older"
unit = "households"
expression = "households.AGEHOH >= 15"

[[rules]]
name = "a worker is 16 or older"
unit = "persons"
expression = "~persons.ESR.isin([1, 2, 4]) | (persons.AGEP >= 16)"
"""


def _used_columns(project) -> tuple[set[str], set[str]]:
    """Seed household and person columns the project reads."""
    seed = project.sample
    households = {seed.household_id, seed.weight, seed.seed_level}
    persons = {seed.household_id, "_household"} | ({seed.person_number} if seed.person_number else set())
    for control in project.controls:
        (households if control.unit == "households" else persons).update(control.columns)
    for d in project.derived:
        households.add(d.column)
        if d.source:
            persons.add(d.source)
        if d.expression:
            persons.update(re.findall(r"persons\.(\w+)", d.expression))
    if project.output is not None:
        households.update(project.output.household_columns)
        persons.update(project.output.person_columns)
    return households, persons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # the shared examples keep PopulationSim's licence beside them; convert reads nothing outside the folder
        staged = Path(tmp) / args.source.name
        shutil.copytree(args.source, staged)
        staged.chmod(0o755)
        if (args.source.parent / "LICENSE.txt").is_file() and not (staged / "LICENSE.txt").exists():
            shutil.copyfile(args.source.parent / "LICENSE.txt", staged / "LICENSE.txt")
        converted = Path(tmp) / "calm"
        convert_populationsim(staged, converted)
        project = load_household_project(converted)
        households, persons = _used_columns(project)
        for name, keep in (("seed_households.csv", households), ("seed_persons.csv", persons)):
            path = converted / "data" / name
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
            frame[[c for c in frame.columns if c in keep]].to_csv(path, index=False)
        toml = converted / "synthor.toml"
        toml.write_text(toml.read_text(encoding="utf-8") + RULES, encoding="utf-8")
        before = load_household_project(converted)
        for item in converted.iterdir():
            target = args.out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
    print(f"wrote {args.out}: {len(before.sample.households):,} seed households, {len(before.controls)} controls")


if __name__ == "__main__":
    main()
