"""A full disk, for real (a small tmpfs mounted by the test, issue 26 item 2): the CLI says what happened and exits
1, no half file is left, and what was there before (the last checkpoint, an earlier run's files) stays whole."""

from __future__ import annotations

import io
import json
import zipfile

import pandas as pd

from synthor_core import cli
from synthor_testing import ROOT, small_disk


def _zip_names(content: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(content)).namelist()


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


def test_a_full_run_store_keeps_the_finished_population_downloadable(tmp_path, small_project_dir, monkeypatch):
    """The disk under the run store fills just before a run is recorded as finished (issue 26 item 3): the run
    ends "finished" with the store's reason, its population downloads from memory, and the store stays readable."""
    from synthor_core.readers.project import load_project
    from synthor_core.runner import Runner
    from synthor_core.store import RunStore
    from synthor_core.synthesis.config import SynthesisConfig

    real_finish = RunStore.finish_run

    def fill_then_finish(self, *args, **kwargs):
        with open(self.path.parent / "filler", "wb") as filler:  # every byte left, then the real write
            try:
                while True:
                    filler.write(b"\0" * 65536)
            except OSError:
                pass
        return real_finish(self, *args, **kwargs)

    with small_disk(tmp_path / "disk", "8m") as disk:
        monkeypatch.setattr(RunStore, "finish_run", fill_then_finish)
        runner = Runner(RunStore(disk / "runs.duckdb"))
        run_id = runner.start(load_project(small_project_dir), SynthesisConfig(seed=2))
        snap = runner.wait(run_id, timeout_s=120)
        assert snap.status == "finished" and snap.error is None
        assert snap.store_error == "the run store could not record it (No space left on device)"
        files = runner.exports(run_id)
        people = pd.read_csv(io.BytesIO(files["population.csv"]))
        assert len(people) == 1000 and people.notna().all().all()
        assert json.loads(files["report.json"])["records"] == 1000 and "RUN.md" in _zip_names(files["project.zip"])
        (disk / "filler").unlink()
        row = RunStore(disk / "runs.duckdb").runs().iloc[0]  # another opening of the file: readable
        assert row["run_id"] == run_id and row["status"] == "running"  # marked interrupted when this process is gone
