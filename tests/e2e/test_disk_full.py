"""A full disk, for real (a small tmpfs mounted by the test, issue 26 item 2): the CLI says what happened and exits
1, no half file is left, and what was there before (the last checkpoint, an earlier run's files) stays whole."""

from __future__ import annotations

import json

import pandas as pd

from synthor_core import cli
from synthor_testing import ROOT, small_disk


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_person_run_on_a_full_disk_keeps_its_last_checkpoint_and_says_so(tmp_path, capsys):
    """560 kB: the checkpoint of iteration 1 (a 358 kB population.csv and its report) fits, the final population
    beside it does not."""
    with small_disk(tmp_path / "disk", "560k") as disk:
        out = disk / "out"
        code = cli.main(
            ["run", str(ROOT / "examples/adult"), "--n", "5000", "--seed", "1", "--quiet", "--out", str(out)]
        )
        err = capsys.readouterr().err
        assert code == 1, err
        assert err == (
            f"error: could not write the results to {out} (No space left on device); the population saved at "
            f"iteration 1 (not calibrated) is still there\n"
        )
        assert _names(out) == ["population.csv", "report.json"]  # no temporary file left behind
        report = json.loads((out / "report.json").read_text())
        assert report["status"] == "checkpoint" and report["iterations"] == 1 and report["records"] == 5000
        people = pd.read_csv(out / "population.csv")
        assert len(people) == 5000 and people.notna().all().all()


def test_a_household_run_on_a_full_disk_leaves_the_folder_as_it_was(tmp_path, capsys):
    """40 kB: the households of the declared project (46 kB as CSV and Parquet) do not fit; an earlier run's file
    in the folder is untouched and no partial file stays."""
    with small_disk(tmp_path / "disk", "40k") as disk:
        out = disk / "out"
        out.mkdir()
        (out / "households.csv").write_text("household_id\n1\n")  # what an earlier run left
        code = cli.main(["run", str(ROOT / "tests/projects/declared"), "--quiet", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1, err
        assert err.endswith(
            f"error: could not write the results to {out} (No space left on device); the files begun were removed "
            f"and any earlier results in the folder are as they were: free some space and run again\n"
        )
        assert _names(out) == ["households.csv"]
        assert (out / "households.csv").read_text() == "household_id\n1\n"
