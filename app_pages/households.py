"""Households: households with their members in many zones (a Synthor household project or a PopulationSim
working folder). Open one, see its units, geography levels and controls; synthesize in the background with the seed,
maxent or LLM prior and watch the gap shrink (Stop keeps what was built); read the fit per control at its level, and
download households.csv, persons.csv and the report."""

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from app_session import (
    HOUSEHOLD_EXAMPLE_DIR,
    HOUSEHOLD_EXAMPLE_LABEL,
    KEY_SOURCE_CAPTIONS,
    UploadError,
    allowed_endpoints,
    as_text,
    count_of,
    current_household_project,
    get_runner,
    household_draft_from_zip,
    init_state,
    llm_api_key,
    owner_id,
    problems_frame,
    run_state,
    visible_run,
)
from synthor_core.plots import household_convergence, household_fit_figure, sources_by_iteration, zone_map
from synthor_core.priors.llm import LLMSettings
from synthor_core.runner import HOUSEHOLD_PRIORS, household_prior_factory
from synthor_core.schema import spreadsheet_safe, spreadsheet_unescape
from synthor_core.synthesis.config import SynthesisConfig
from synthor_core.synthesis.partitions import prior_problems


@st.cache_data(max_entries=2, show_spinner="Preparing the zip")
def _zipped(folder: str) -> bytes:
    """Every output file of a run folder as zip bytes."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(Path(folder).glob("*")):
            if path.is_file() and not path.name.startswith("."):
                bundle.write(path, path.name)
    return archive.getvalue()


init_state()  # on a fresh server Streamlit may run a page of pages/ before app.py has set the state
st.title("Households in zones")

left, right = st.columns([3, 2])
with left:
    st.caption("Project")
    st.text(st.session_state["hh.project_label"])
    if st.button("Open the bundled CALM example", key="hh.open_example"):
        st.session_state["hh.project_dir"] = str(HOUSEHOLD_EXAMPLE_DIR)
        st.session_state["hh.project_label"] = HOUSEHOLD_EXAMPLE_LABEL
        st.session_state["hh.run_id"] = None
        st.query_params.pop("hhrun", None)
        st.rerun()
with right:
    uploaded = st.file_uploader(
        "Open a household project (.zip): a Synthor household project or a PopulationSim "
        "working folder (configs/, data/)",
        type=["zip"],
        key="hh.project_zip",
    )
    if uploaded is not None and st.session_state.get("hh.loaded_zip") != uploaded.file_id:
        st.session_state["hh.loaded_zip"] = uploaded.file_id
        try:
            household_draft_from_zip(uploaded.getvalue(), uploaded.name)
        except UploadError as exc:
            st.error(f"{as_text(uploaded.name)} cannot be opened: {as_text(exc)}", icon=":material/error:")
        else:
            st.rerun()

project, problems = current_household_project()
if problems:
    st.error(f"{len(problems)} problem(s) in this project: fix them in its files and open it again.")
    st.dataframe(problems_frame(problems), hide_index=True, width="stretch", key="hh.problems")
    st.stop()

geography, sample = project.geography, project.sample
to_place = int(project.households_per_zone().sum())
metrics = st.columns(4)
metrics[0].metric("Seed households", f"{len(sample.households):,}")
metrics[1].metric("Seed persons", f"{len(sample.persons):,}")
metrics[2].metric("Controls", f"{len(project.controls)}")
metrics[3].metric("Households to place", f"{to_place:,}")

overview, controls_tab, derived_tab = st.tabs(["Geography", "Controls", "Derived from members"])
with overview:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "level": level,
                    "zones": len(geography.zones(level)),
                    "controls": sum(c.level == level for c in project.controls),
                    "seed level": "yes" if level == sample.seed_level else "",
                }
                for level in geography.levels
            ]
        ),
        hide_index=True,
        width="stretch",
        key="hh.levels",
    )
    st.caption(
        "Units: households (the seed's households table) and persons (its members, counted through their "
        "household). Levels are listed from the top to the lowest."
    )
with controls_tab:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "control": c.name,
                    "unit": c.unit,
                    "level": c.level,
                    "importance": c.importance,
                    "expression": c.expression,
                    "control total": float(c.totals.sum()),
                }
                for c in project.controls
            ]
        ),
        hide_index=True,
        width="stretch",
        key="hh.controls",
        column_config={"expression": st.column_config.TextColumn(width="large")},
    )
with derived_tab:
    if project.derived:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "household column": d.column,
                        "computed as": d.how,
                        "from": d.expression or d.source or "number of members",
                    }
                    for d in project.derived
                ]
            ),
            hide_index=True,
            width="stretch",
            key="hh.derived",
        )
    else:
        st.info("No household column is computed from the members in this project.")
if project.warnings:
    with st.expander(f"{len(project.warnings)} warning(s)", icon=":material/warning:"):
        # a list, not a table: a table cut the long ones at the column's edge
        st.markdown("\n".join(f"- {as_text(w)}" for w in project.warnings))

st.subheader("Synthesize")
runner = get_runner()
wanted = st.query_params.get("hhrun")
if st.session_state.get("hh.run_id") is None and wanted and visible_run(wanted):
    st.session_state["hh.run_id"] = wanted  # a reload, or a second tab with this address: the run shows again


@st.cache_data(max_entries=4)
def _zone_fit(path: str, stamp: float) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"zone": str}, keep_default_na=False, na_values={"pct_difference": [""]})
    return spreadsheet_unescape(frame)


# defaults set in the session state, not as widget values: init_state keeps the values chosen (KEPT_SETTINGS)
for key, value in (
    ("hh.base_url", "http://localhost:11434/v1"),
    ("hh.model", "llama3.1"),
    ("hh.distinct", 1000),
    ("hh.concurrency", 4),
    ("hh.fallback", True),
    ("hh.seed", 1),
):
    st.session_state.setdefault(key, value)
prior = st.radio(
    "Prior",
    list(HOUSEHOLD_PRIORS),
    horizontal=True,
    key="hh.prior",
    captions=list(HOUSEHOLD_PRIORS.values()),
)
llm_settings, api_key = None, None
if prior == "llm":
    with st.container(border=True):
        cols = st.columns([3, 2, 2])
        endpoints = allowed_endpoints()
        if endpoints:
            base_url = cols[0].selectbox("Endpoint", endpoints, key="hh.endpoint", help="The endpoints allowed here")
        else:
            base_url = cols[0].text_input("Base URL", key="hh.base_url")
        model = cols[1].text_input("Model", key="hh.model")
        typed_key = cols[2].text_input(
            "API key (optional, this session only)", type="password", key="hh.api_key", help="Never written or shown"
        )
        api_key, key_source = llm_api_key(base_url, typed_key)
        st.caption(KEY_SOURCE_CAPTIONS[key_source])
        cols = st.columns([2, 2, 3])
        distinct = cols[0].number_input(
            "Households the LLM writes", min_value=1, max_value=100_000, step=100, key="hh.distinct"
        )
        concurrency = cols[1].number_input("Parallel calls", min_value=1, max_value=64, key="hh.concurrency")
        cols[2].checkbox(
            "Fall back on maxent",
            key="hh.fallback",
            help="maxent writes the households the LLM does not (off: LLM households only, with maxent's first "
            "candidates)",
        )
        try:
            llm_settings = LLMSettings(
                base_url=base_url,
                model=model,
                api_key_env="",
                distinct_records=int(distinct),
                concurrency=int(concurrency),
            )
        except ValueError as exc:
            st.error(f"LLM settings: {as_text(exc)}")

run_id = st.session_state.get("hh.run_id")
running = run_id is not None and run_id in runner.run_ids() and runner.snapshot(run_id).status == "running"
with st.form("hh.form"):
    run_seed = st.number_input("Random seed", min_value=0, max_value=2**31 - 1, step=1, key="hh.seed")
    start = st.form_submit_button(
        "Synthesize households", type="primary", disabled=running or (prior == "llm" and llm_settings is None)
    )

if start:
    problems = prior_problems(project, prior)
    if problems:
        st.error(f"This run cannot start ({as_text(prior)} prior):")
        st.dataframe(problems_frame(problems), hide_index=True, width="stretch")
        st.stop()
    config = SynthesisConfig(seed=int(run_seed), fallback=bool(st.session_state.get("hh.fallback", True)))
    factory = household_prior_factory(prior, llm_settings, api_key)
    run_id = runner.start(project, config, factory, label=st.session_state["hh.project_label"], owner=owner_id())
    st.session_state["hh.run_id"] = run_id
    st.query_params["hhrun"] = run_id  # a reload or a second tab with this address shows the run again
    st.rerun()

if run_id is None:
    st.info("No household run yet for this project: choose a prior and press Synthesize households.")
    st.stop()


# polled while the run goes on; a finished run is drawn once (a fragment rerun would drop the downloads' files)
@st.fragment(run_every=1.0 if running else None)
def show_run() -> None:
    """Progress, Stop and the gap shrinking per control group, redrawn from the runner's snapshot."""
    live = run_id in runner.run_ids()
    if not live:
        return
    snap = runner.snapshot(run_id)
    top = st.columns([4, 1])
    sweeps = snap.events[-1].sweeps if snap.events else 0
    top[0].progress(
        min(sweeps / snap.config.max_sweeps, 1.0) if snap.status == "running" else 1.0,
        text=f"Run {snap.run_id}: "
        + run_state(snap)
        + f", iteration {len(snap.events)}, {sweeps} of at most {snap.config.max_sweeps} balancing sweeps, "
        f"{count_of(snap.partitions, 'partition')} written, {snap.elapsed_s:.1f} s",
    )
    if snap.status == "running" and top[1].button("Stop", key="hh.stop"):
        runner.stop(snap.run_id)
    if snap.status == "failed":
        st.error(f"The run failed: {as_text(snap.error)}")
    if snap.store_error:
        st.error(
            f"The run ended, but {as_text(snap.store_error)}. Its files are in its run folder: download them below "
            f"now. Free space in the data folder before the next run.",
            icon=":material/sd_card_alert:",
        )
    final = None
    if snap.result is not None:
        fit = snap.result.fit[snap.result.fit["control"] != snap.project.total_control]
        final = {str(g): float(v) for g, v in fit.groupby("group", sort=False)["pct_rmse"].max().items()}
    # drawn from the start (empty until the first slice of sweeps is measured), so the page shows what it will show
    st.plotly_chart(household_convergence(snap.events, final), key="hh.chart", width="stretch")
    if not snap.events:
        st.caption(
            f"{as_text(snap.stage.capitalize())}: the first point comes after {snap.config.sweeps_per_iteration} "
            f"balancing sweeps."
        )
    else:
        last = snap.events[-1]
        st.caption(
            f"Balanced (fractional) fit after each slice of sweeps; the stars are the fit of the whole households "
            f"placed. Last iteration: worst %RMSE {last.worst_pct_rmse:.2f}, {last.candidates:,} candidate "
            f"households" + (f", {last.llm_calls:,} LLM calls" if last.llm_calls else "") + "."
        )
        if len({s for e in snap.events for s in e.households_by_source}) > 1:
            st.plotly_chart(sources_by_iteration(snap.events), key="hh.sources_chart", width="stretch")
        if last.proposals:
            with st.expander(f"Proposals of iteration {last.iteration} ({len(last.proposals)})", expanded=False):
                st.dataframe(
                    pd.DataFrame(
                        [
                            {"households meeting": p.control, "in": f"{p.level} {p.zone}", "count": p.count}
                            for p in last.proposals
                        ]
                    ),
                    hide_index=True,
                    width="stretch",
                )
    if snap.status != "running" and st.session_state.get("hh.shown_final") != snap.run_id:
        st.session_state["hh.shown_final"] = snap.run_id  # draw the final sections once, below
        st.rerun(scope="app")


show_run()

folder = runner.store.folder(run_id) if visible_run(run_id) else None
if folder is None or not (folder / "report.json").is_file():
    if run_id not in runner.run_ids():
        st.info("This run has no results to show (it was stopped before its first partition, or failed).")
    st.stop()

report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
fit = pd.DataFrame(report["controls"])
st.subheader(f"Result: {as_text(report['prior'])} prior, seed {report['seed']}")
if report.get("status") == "stopped":
    st.warning("Stopped on request: the households placed so far are below; zones not yet integerized were rounded.")
cols = st.columns(4)
cols[0].metric("Households", f"{report['households']:,}")
cols[1].metric("Persons", f"{report['persons']:,}")
cols[2].metric("Worst %RMSE", f"{report['worst_pct_rmse']:.2f}")
cols[3].metric("Seconds", f"{report['seconds']:.1f}")
consistency = report.get("member_consistency", {})
if consistency:
    agree = min(consistency.values())
    st.caption(
        f"{100 * agree:.1f} % of households agree with their members on every derived column "
        f"({as_text(', '.join(k for k in consistency if k != 'with_members') or 'none declared')})."
    )
balance = report.get("balance", {})
if balance:
    st.caption(
        f"Balancing: {as_text(balance.get('stop', ''))} after {balance['sweeps']} sweeps in "
        f"{len(report.get('iterations', []))} iterations (largest relative gap to a relaxed control "
        f"{balance['max_relative_gap']:.2g}, largest relative move in the last sweep "
        f"{balance.get('max_relative_change', float('nan')):.2g})."
    )
if report.get("llm_error"):  # the LLM gave nothing: the households came from the fallback alone
    st.error(f"{as_text(report['llm_error'][:1].upper() + report['llm_error'][1:])}.", icon=":material/error:")
elif report.get("llm_degraded"):
    st.warning(f"{as_text(report['llm_degraded'][:1].upper() + report['llm_degraded'][1:])}.")
by_prior = report.get("households_by_prior", {})
if len(by_prior) > 1 or report["prior"] == "llm":
    st.caption("Households by prior: " + ", ".join(f"{as_text(k)} {v:,}" for k, v in by_prior.items()) + ".")
for warning in report.get("warnings", []):
    st.caption(f"Warning: {as_text(warning)}")
llm_notes = report.get("prior_notes", {}).get("llm")
if llm_notes:
    failures = ", ".join(f"{as_text(k)} {v:,}" for k, v in llm_notes["failures"].items())
    rejected = ", ".join(f"{as_text(k)} {v:,}" for k, v in llm_notes["rejected"].items())
    st.caption(
        f"LLM: {llm_notes['households_valid']:,} of {llm_notes['households_written']:,} households it wrote were "
        f"valid ({llm_notes['households_asked']:,} asked, {llm_notes['calls']:,} calls"
        + (f"; failed calls: {failures}" if failures else "")
        + f"). Rejected: {rejected or 'none'}."
    )

fit_tab, zone_tab, realism_tab, download_tab = st.tabs(["Fit per control", "Zones", "Realism and rules", "Download"])
with fit_tab:
    st.plotly_chart(household_fit_figure(fit), key="hh.fit_chart")
    st.dataframe(
        fit[
            [
                "control",
                "level",
                "unit",
                "control_total",
                "synthetic_total",
                "pct_rmse",
                "total_abs_error",
                "max_abs_error",
                "zones",
            ]
        ],
        hide_index=True,
        width="stretch",
        key="hh.fit",
        column_config={"pct_rmse": st.column_config.NumberColumn("%RMSE", format="%.2f")},
    )
    worst = fit.sort_values("pct_rmse", ascending=False).head(3)
    for row in worst.itertuples():
        zones = pd.DataFrame(row.worst_zones)
        if len(zones):
            st.caption(f"Zones worst off for {as_text(row.control)} ({as_text(row.level)})")
            st.dataframe(zones, hide_index=True, width="stretch", key=f"hh.worst.{row.control}")
with zone_tab:
    zone_file = folder / "zone_fit.csv"
    if not zone_file.is_file():
        st.info("This run has no per-zone table (it was written by an older version).")
    else:
        zone_fit = _zone_fit(str(zone_file), zone_file.stat().st_mtime)
        cols = st.columns(2)
        pct_limit = cols[0].number_input(
            "A zone fails when it is off by more than (% of its control)", 0.0, 1000.0, 10.0, 1.0, key="hh.zone_pct"
        )
        abs_limit = cols[1].number_input(
            "... and by more than (households or persons)", 0.0, 1e9, 5.0, 1.0, key="hh.zone_abs"
        )
        off = zone_fit["difference"].abs()
        failing = zone_fit[(off > abs_limit) & (off > pct_limit / 100 * zone_fit["control_total"])]
        per_control = failing.groupby("control", sort=False).size()
        st.caption(
            f"{len(failing):,} of {len(zone_fit):,} control-zone pairs fail "
            + (f"({', '.join(f'{as_text(k)} {v:,}' for k, v in per_control.items())})." if len(failing) else "(none).")
        )
        if len(failing):
            st.dataframe(
                failing,
                hide_index=True,
                width="stretch",
                key="hh.failing_zones",
                column_config={"pct_difference": st.column_config.NumberColumn("% difference", format="%.1f")},
            )
            st.download_button(
                "Failing zones (CSV)",
                data=spreadsheet_safe(failing).to_csv(index=False).encode(),
                file_name="failing_zones.csv",
                mime="text/csv",
                key="hh.dl.failing",
                on_click="ignore",
            )
        names = list(dict.fromkeys(zone_fit["control"]))
        chosen = st.selectbox("Target vs synthetic in every zone, for control", names, key="hh.zone_control")
        part = zone_fit[zone_fit["control"] == chosen]
        shapes = project.shapes
        if shapes is not None and len(part) and str(part["level"].iloc[0]) == shapes.level:
            # the % difference per zone as a map beside the table (plain axes: no tiles, nothing fetched)
            ids = {str(z): z for z in shapes.rings}
            values = pd.Series(part["pct_difference"].to_numpy(), index=[ids.get(str(z), z) for z in part["zone"]])
            cols = st.columns([3, 2])
            cols[0].plotly_chart(
                zone_map(shapes, values, f"{chosen}: synthetic against control, % per {shapes.level} zone"),
                key="hh.zone_map",
            )
            where = cols[1]
        else:
            if shapes is not None:
                st.caption(f"The map shows controls at {as_text(shapes.level)}, the level of the project's shapes.")
            where = st.container()
        where.dataframe(
            part.reindex(part["pct_difference"].abs().sort_values(ascending=False).index),  # worst off first
            hide_index=True,
            width="stretch",
            key="hh.zone_table",
            column_config={"pct_difference": st.column_config.NumberColumn("% difference", format="%.1f")},
        )
with realism_tab:
    realism = report.get("realism")
    if realism:
        st.caption(
            f"TVD against the seed sample (weighted) on tables no control fixes; mean "
            f"{realism['mean_tvd']:.3f}. Lower is closer to the sample's joint structure."
        )
        st.dataframe(pd.DataFrame(realism["tables"]), hide_index=True, width="stretch", key="hh.realism")
    else:
        st.info("No realism tables: the project has no seed sample to compare with.")
    if report.get("rules"):
        st.caption("Rules: units breaking each rule among those whose columns are known, next to the seed sample")
        st.dataframe(pd.DataFrame(report["rules"]), hide_index=True, width="stretch", key="hh.rules")
with download_tab:
    buttons = st.columns(4)
    for col, name, mime in (
        (buttons[0], "households.csv", "text/csv"),
        (buttons[1], "persons.csv", "text/csv"),
        (buttons[2], "report.json", "application/json"),
        (buttons[0], "households.parquet", "application/octet-stream"),
        (buttons[1], "persons.parquet", "application/octet-stream"),
        (buttons[2], "zone_fit.csv", "text/csv"),
    ):
        path = folder / name
        if path.is_file():
            col.download_button(
                name, data=path.read_bytes(), file_name=name, mime=mime, key=f"hh.dl.{name}", on_click="ignore"
            )
    buttons[3].download_button(
        "All outputs (zip)",
        data=_zipped(str(folder)),
        file_name=f"{folder.name}.zip",
        mime="application/zip",
        key="hh.dl.zip",
        on_click="ignore",
    )
    st.caption(f"Written to {folder.name} in the app's data folder.")
