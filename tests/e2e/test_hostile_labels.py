"""Labels a hostile or unlucky user may give: cells that a spreadsheet would run as formulas are neutralized in
every CSV export (OWASP CSV injection), and Synthor reads its own output back exactly (a category named "None" is
a label, not a missing value)."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd

from synthor_core import cli
from synthor_core.readers.project import load_project
from synthor_core.runner import Runner
from synthor_core.schema import FORMULA_PREFIXES, spreadsheet_safe, spreadsheet_unescape
from synthor_core.store import RunStore
from synthor_core.synthesis.config import SynthesisConfig
from synthor_testing import SMALL_FILES, SMALL_TOML, write_project

LABELS = {"Female": '=HYPERLINK("http://attacker.example/x","click")', "Male": "None", "no": "@SUM(A1)", "yes": "-yes"}


def _hostile_project(folder):
    toml = SMALL_TOML
    files = dict(SMALL_FILES)
    for plain, hostile in LABELS.items():
        toml = toml.replace(f'"{plain}"', json.dumps(hostile))
        quoted = '"' + hostile.replace('"', '""') + '"'
        files = {
            name: text.replace(f",{plain},", f",{quoted},")
            .replace(f",{plain}\n", f",{quoted}\n")
            .replace(f"\n{plain},", f"\n{quoted},")
            for name, text in files.items()
        }
    return write_project(folder, toml, files)


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def test_spreadsheet_safe_quotes_formula_text_and_leaves_numbers():
    frame = pd.DataFrame({"label": ["=1+1", "+x", "-y", "@z", "\tt", "plain", "'=kept"], "n": [-1, 2, 3, 4, 5, 6, 7]})
    safe = spreadsheet_safe(frame)
    assert safe["label"].tolist() == ["'=1+1", "'+x", "'-y", "'@z", "'\tt", "plain", "'=kept"]
    assert safe["n"].tolist() == [-1, 2, 3, 4, 5, 6, 7]
    assert spreadsheet_unescape(safe.astype({"n": str}))["label"].tolist() == [
        "=1+1",
        "+x",
        "-y",
        "@z",
        "\tt",
        "plain",
        "=kept",
    ]


def test_cli_exports_are_spreadsheet_safe_and_read_back_exactly(tmp_path):
    folder = _hostile_project(tmp_path / "p")
    out = tmp_path / "out"
    assert cli.main(["run", str(folder), "--seed", "1", "--quiet", "--out", str(out)]) == 0
    text = (out / "population.csv").read_text(encoding="utf-8")
    cells = _cells(text)
    assert not [c for c in cells if c.startswith(FORMULA_PREFIXES)]
    assert "'" + LABELS["Female"] in cells and "'@SUM(A1)" in cells and "'-yes" in cells and "None" in cells
    report = json.loads((out / "report.json").read_text())
    assert (
        cli.main(
            ["evaluate", str(out / "population.csv"), "--project", str(folder), "--json", str(tmp_path / "e.json")]
        )
        == 0
    )  # every row read back, "None" included (else: an error)
    evaluation = json.loads((tmp_path / "e.json").read_text())
    assert abs(evaluation["mean_tvd"] - report["mean_tvd"]) < 1e-9


def test_app_downloads_are_spreadsheet_safe(tmp_path):
    project = load_project(_hostile_project(tmp_path / "p"))
    with RunStore(tmp_path / "runs.duckdb") as store:
        runner = Runner(store)
        run_id = runner.start(project, SynthesisConfig(seed=2))
        assert runner.wait(run_id, timeout_s=60).status == "finished"
        files = store.exports(run_id)
    cells = _cells(files["population.csv"].decode("utf-8"))
    assert not [c for c in cells if c.startswith(FORMULA_PREFIXES)]
    assert "'" + LABELS["Female"] in cells and "None" in cells
    parquet = pd.read_parquet(io.BytesIO(files["population.parquet"]))  # not a spreadsheet format: as stored
    assert set(parquet["sex"]) == {LABELS["Female"], "None"} and len(parquet) == 1000
