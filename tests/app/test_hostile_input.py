"""The app on a shared server, facing hostile or unlucky input: user text is shown as text (never markdown that
makes the browser fetch a URL), and every error a user can cause is a message naming the file, row and column,
never Streamlit's exception box."""

from __future__ import annotations

import io
import json
import zipfile

from streamlit.testing.v1 import AppTest

from app_session import as_text
from synthor_core.store import zip_project_folder
from synthor_testing import ROOT, SMALL_FILES, SMALL_TOML, contradicting_project, write_project

APP = str(ROOT / "app.py")
IMAGE = "![x](http://attacker.example/pixel.png)"


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def _uploader(at, label_start):
    (found,) = [u for u in at.get("file_uploader") if u.label.startswith(label_start)]
    return found


def _texts(at) -> list[str]:
    """Every markdown-bearing text the page shows (main and sidebar), as sent to the browser."""
    out = []
    for element in list(at.main) + list(at.sidebar):
        for name in ("value", "label", "body"):
            value = getattr(element, name, None)
            if isinstance(value, str):
                out.append(value)
    return out


def _open_zip(at, name: str, content: bytes) -> AppTest:
    _uploader(at, "Open a project folder").set_value((name, content, "application/zip"))
    at.run()
    assert not at.exception
    return at


def test_markdown_in_labels_is_shown_as_text(tmp_path):
    """A category, a rule and the uploaded file's name carrying a markdown image: the browser must
    never be told to fetch the URL (an unescaped ``](http`` would be rendered as an image)."""
    toml = SMALL_TOML.replace('"Female"', json.dumps(IMAGE))  # (table names are plain names: checked on load)
    files = {k: v.replace("Female", IMAGE.replace('"', '""')) for k, v in SMALL_FILES.items()}
    files["tables/sex_by_employed.csv"] = files["tables/sex_by_employed.csv"].replace("250", "900")  # a warning
    at = _open_zip(_app(), f"{IMAGE}.zip", zip_project_folder(write_project(tmp_path / "p", toml, files)))
    assert at.success and at.warning  # the project opened, with a warning about the tables' totals
    rules = f'[[rules]]\nname = "{IMAGE}"\ncondition = "age < 5 and employed == \'yes\'"\n'.encode()
    at.switch_page("app_pages/synthesize.py").run()
    _uploader(at, "Plausibility rules").set_value(("rules.toml", rules, "text/plain")).run()
    assert not at.exception
    shown = _texts(at)
    at.switch_page("app_pages/data.py").run()
    shown += _texts(at)
    assert any("attacker\\.example" in text for text in shown)  # the labels are there, escaped
    assert not [text for text in shown if "](http" in text]


def test_bad_uploads_give_messages_not_tracebacks(tmp_path):
    cases = {
        "not-a-zip.zip": b"PK\x03\x04 this is not really a zip",
        "truncated.zip": zip_project_folder(write_project(tmp_path / "t"))[:300],
    }
    dot = io.BytesIO()
    with zipfile.ZipFile(dot, "w") as archive:
        archive.writestr(".", "x")
        archive.writestr("synthor.toml", SMALL_TOML)
    for name, content in cases.items():
        at = _open_zip(_app(), name, content)
        assert at.error[0].value.startswith(as_text(name) + " cannot be opened: "), (name, at.error[0].value)
    at = _open_zip(_app(), "dot.zip", dot.getvalue())  # the entry "." is skipped; the missing tables are listed
    assert at.error[0].value.startswith("3 problem(s): fix them below")
    assert at.dataframe[0].value["problem"].str.contains("was not found in").all()
    # a table file of another kind is taken by the uploader and told why on the page (issue 23 item 5: the
    # uploader refused it with a message shown on hover only)
    at = _app()
    _uploader(at, "A table file").set_value(("notes.docx", b"PK\x03\x04 words", "application/octet-stream")).run()
    assert not at.exception
    assert at.error[0].value == as_text("notes.docx: expected a .csv, .xlsx or .parquet file, got .docx") + (
        ". Expected CSV in UTF-8, XLSX or Parquet."
    )
    # a letter saved as .csv is told as such (it was "Each variable needs a name of letters, digits and _")
    at = _app()
    letter = b"Dear committee,\nplease find the counts attached.\nKind regards\n"
    _uploader(at, "A table file").set_value(("letter.csv", letter, "text/csv")).run()
    assert not at.exception
    assert (
        at.error[0].value
        == as_text("letter.csv")
        + " is not a table of counts: "
        + as_text(
            'no column of counts among its columns ("Dear committee", "Unnamed: 1"): expected numbers of persons in '
            "one or more columns"
        )
        + "."
    )


def test_bad_projects_and_settings_give_messages_not_tracebacks(tmp_path, monkeypatch):
    latin = write_project(tmp_path / "latin", SMALL_TOML.replace("Small test population", "Bev\xf6lkerung"))
    (latin / "synthor.toml").write_bytes((latin / "synthor.toml").read_text().encode("latin-1"))
    at = _open_zip(_app(), "latin.zip", zip_project_folder(latin))
    assert at.dataframe[0].value["problem"].tolist() == ["expected UTF-8 text, found byte 0xf6"]

    # tables whose zero cells contradict each other: named as the project's problem, nothing runs
    at = _open_zip(_app(), "contra.zip", zip_project_folder(contradicting_project(tmp_path / "contra")))
    (problem,) = at.dataframe[0].value["problem"].tolist()
    assert problem.startswith('the tables "xy", "yz", "xz" contradict each other: no population fits them all')
    assert not at.success

    at = _app()
    _uploader(at, "A table file").set_value(("broken.xlsx", b"PK\x03\x04 not a workbook", "application/zip")).run()
    assert not at.exception
    assert at.error[0].value.startswith(as_text("broken.xlsx: could not be read as xlsx (BadZipFile"))

    at = _app()  # rules that forbid every record: the run fails with the reason, the page stays usable
    at.switch_page("app_pages/synthesize.py").run()
    _uploader(at, "Plausibility rules").set_value(
        ("rules.toml", b'[[rules]]\nname = "nobody"\ncondition = "age >= 0"\n', "text/plain")
    ).run()
    at.number_input(key="synth.size").set_value(2000)
    at.button(key="FormSubmitter:synth.settings-Start").click().run()
    from app_session import get_runner

    get_runner().wait(at.session_state["synth.run_id"], timeout_s=60)
    at.run()
    assert not at.exception
    assert at.error[0].value == "The run failed: " + as_text(
        "ConfigError: the rules forbid every record the target tables allow: no record satisfies them all; loosen or "
        "remove a rule"
    )

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv("SYNTHOR_DATA_DIR", str(blocker / "data"))  # a data folder that cannot be created
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.error[0].value.startswith("Synthor cannot open its data folder: cannot create the data folder ")


def test_a_run_store_that_cannot_record_the_end_keeps_the_population_on_the_page(monkeypatch):
    """The store's disk is full when a run ends (the real fault: tests/e2e/test_disk_full.py): the page says so
    and the population still downloads, from the server's memory."""
    import errno
    import os

    from synthor_core.store import RunStore

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(RunStore, "finish_run", full)
    at = _app()
    at.switch_page("app_pages/synthesize.py").run()
    at.number_input(key="synth.size").set_value(1000)
    at.button(key="FormSubmitter:synth.settings-Start").click().run()
    from app_session import get_runner

    assert get_runner().wait(at.session_state["synth.run_id"], timeout_s=120).status == "finished"
    at.run()
    assert not at.exception
    assert at.error[0].value == (
        "The run ended, but "
        + as_text("the run store could not record it (No space left on device)")
        + ". Its population is kept by this server until it restarts: download it below now. Free space in the data "
        "folder before the next run."
    )
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[:3] == ["Population (CSV)", "Population (Parquet)", "report.json"]
