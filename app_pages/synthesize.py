"""Synthesize: settings, Start and Stop, and the gap closing live (redrawn from the runner once a second)."""

from pathlib import Path

import streamlit as st

from app_session import (
    KEY_SOURCE_CAPTIONS,
    LOCAL_MODEL_LABEL,
    adopt_run_from_url,
    allowed_endpoints,
    as_text,
    count_of,
    current_project,
    get_runner,
    init_state,
    llm_api_key,
    local_model_offered,
    owner_id,
    problems_frame,
    rules_from_upload,
    run_label,
    run_state,
    shared_local_model,
    show_downloads,
    signed,
)
from synthor_core.errors import TargetValidationError
from synthor_core.evaluate.holdout import table_counts
from synthor_core.plots import fit_frame, numeric_fit_frame, proposals_frame, table_comparison, tvd_by_iteration
from synthor_core.priors.llm import LLMPrior, LLMSettings
from synthor_core.readers.rules import load_rules
from synthor_core.runner import PRIORS, llm_prior_factory, prior_factory
from synthor_core.synthesis.config import SynthesisConfig


def rules_text(rules) -> str:
    """``6 rules: name (condition); ...`` as markdown-safe text."""
    return f"{count_of(len(rules), 'rule')}: " + "; ".join(f"{as_text(r.name)} ({as_text(r.condition)})" for r in rules)


init_state()  # on a fresh server Streamlit may run a page of pages/ before app.py has set the state
st.title("Synthesize")
project, problems = current_project()
if project is None:
    st.warning("The project has problems: fix them on the Data page first.")
    st.stop()

# the form's values live in the session state (set here, never as widget defaults, so a run adopted after a reload
# or another project can set them without Streamlit's "default value and Session State" warning)
for key, value in (("synth.max_iterations", 100), ("synth.tolerance", 0.005), ("synth.seed", 1)):
    st.session_state.setdefault(key, value)
if st.session_state.get("synth.form_project") != st.session_state["data.project_dir"]:
    # another project: N starts as its size (set explicitly: a browser would send the old project's N back)
    st.session_state["synth.form_project"] = st.session_state["data.project_dir"]
    st.session_state["synth.size"] = project.size
runner = get_runner()
adopt_run_from_url()
run_id = st.session_state["synth.run_id"]
if run_id is not None and run_id in runner.run_ids():
    shown = runner.snapshot(run_id)
    if shown.project.root is not None and st.session_state.get("synth.run_project") not in (
        None,
        str(Path(st.session_state["data.project_dir"]).resolve()),
    ):
        # the project changed since this run started: its run is not this project's (it stays on the Runs page)
        st.session_state["synth.run_id"] = run_id = None
        st.query_params.pop("run", None)
    elif st.session_state.get("synth.form_run") != run_id:
        # a run adopted after a reload: the form shows the settings it ran with
        st.session_state["synth.form_run"] = run_id
        for key, value in (
            ("synth.size", shown.config.size or shown.project.size),
            ("synth.mode", shown.config.mode),
            ("synth.max_iterations", shown.config.max_iterations),
            ("synth.tolerance", shown.config.tolerance_tvd),
            ("synth.seed", shown.config.seed),
        ):
            st.session_state[key] = value
running = run_id is not None and run_id in runner.run_ids() and runner.snapshot(run_id).status == "running"

prior_name = st.selectbox("Prior", list(PRIORS), key="synth.prior", format_func=lambda name: PRIORS[name])
llm_settings, api_key = None, None
if prior_name == "llm":
    with st.container(border=True):
        local = local_model_offered() and (
            st.radio(
                "Model",
                ["your endpoint", LOCAL_MODEL_LABEL],
                horizontal=True,
                key="synth.llm_source",
                help="The bundled model (SmolLM2-135M) runs on this server's CPU: a real model, offline, but small "
                "and weak; expect seconds per call. Your endpoint: any OpenAI-compatible server.",
            )
            == LOCAL_MODEL_LABEL
        )
        if local:
            served = shared_local_model()
            base_url, model, api_key = served.base_url, served.model, ""
            st.caption(
                f"{served.model}, served by this server at {served.base_url} ({served.threads} decoding thread(s)). "
                "Before the run, one check call measures its speed and the run's progress shows the estimate."
            )
        else:
            cols = st.columns([3, 2, 2])
            endpoints = allowed_endpoints()
            if endpoints:
                base_url = cols[0].selectbox(
                    "Endpoint", endpoints, key="synth.endpoint", help="The endpoints the operator of this server allows"
                )
            else:
                base_url = cols[0].text_input(
                    "Base URL",
                    value="http://localhost:11434/v1",
                    key="synth.base_url",
                    help="OpenAI: https://api.openai.com/v1; Ollama: http://localhost:11434/v1; vLLM: "
                    "http://HOST:8000/v1",
                )
            model = cols[1].text_input("Model", value="llama3.1", key="synth.model")
            typed_key = cols[2].text_input(
                "API key (optional, this session only)",
                type="password",
                key="synth.api_key",
                help="Kept in this browser session's memory, never written or shown",
            )
            api_key, key_source = llm_api_key(base_url, typed_key)
            st.caption(
                KEY_SOURCE_CAPTIONS[key_source]
                + (
                    " Endpoints: only those the operator lists."
                    if endpoints
                    else " Any endpoint may be typed; the server's own key goes only to endpoints the operator "
                    "lists (SYNTHOR_LLM_ENDPOINTS)."
                )
            )
        cols = st.columns(5)
        structured = cols[0].selectbox(
            "Structured output",
            ["json_schema", "json_object", "text"],
            key="synth.structured",
            help="json_schema (strict) where the endpoint supports it; json_object or text for those that do not",
        )
        temperature = cols[1].number_input("Temperature", 0.0, 2.0, 0.8, 0.1, key="synth.temperature")
        concurrency = cols[2].number_input(
            "Parallel calls", 1, 64, 1 if local else 4, key="synth.concurrency.local" if local else "synth.concurrency"
        )
        budget = cols[3].number_input("Token budget (0 = none)", 0, 10**9, 0, 10_000, key="synth.token_budget")
        timeout = cols[4].number_input(
            "Timeout per call (s)",
            1.0,
            600.0,
            300.0 if local else 60.0,
            key="synth.timeout.local" if local else "synth.timeout",
        )
        cols = st.columns(2)
        price_in = cols[0].number_input(
            "USD per million prompt tokens (optional)", 0.0, 1000.0, 0.0, key="synth.price_in"
        )
        price_out = cols[1].number_input(
            "USD per million completion tokens (optional)", 0.0, 1000.0, 0.0, key="synth.price_out"
        )
        scenario = st.text_area(
            "Scenario (optional)", key="synth.scenario", placeholder="e.g. a concert at the stadium from 20:00 to 24:00"
        )
        st.checkbox(
            "Fall back on maxent",
            value=True,
            key="synth.fallback",
            help="Full mode: maxent realizes what the LLM cannot (records that break the schema, the proposal or "
            "the rules; failed calls) and the target cells left without a record, so the fit does not depend on the "
            "model's compliance. The result says how many persons came from each. Off: pure LLM output.",
        )
        try:
            llm_settings = LLMSettings(
                base_url=base_url,
                model=model,
                api_key_env="",
                structured_output=structured,
                temperature=temperature,
                concurrency=int(concurrency),
                token_budget=int(budget) or None,
                timeout_s=timeout,
                scenario=scenario,
                price_prompt_per_million=price_in or None,
                price_completion_per_million=price_out or None,
            )
        except ValueError as exc:
            st.error(f"LLM settings: {as_text(exc)}")
        if llm_settings is not None and st.button("Test connection", key="synth.test_connection"):
            st.info(as_text(LLMPrior(project, llm_settings, api_key=api_key).test_connection()))

rules, rules_file = (
    [],
    st.file_uploader(
        "Plausibility rules (TOML, optional): enforced as hard constraints", type=["toml"], key="synth.rules"
    ),
)
own_rules = project.root / "rules.toml" if project.root is not None else None
if rules_file is None and own_rules is not None and own_rules.is_file():
    # the project ships a rules file (the bundled example does): offered, and on unless the user says otherwise
    if st.checkbox("Enforce the project's plausibility rules (rules.toml)", value=True, key="synth.own_rules"):
        try:
            rules = load_rules(own_rules, project.schema)
        except TargetValidationError as exc:
            st.error(f"{len(exc.problems)} problem(s) in the project's rules.toml: nothing runs until they are fixed.")
            st.dataframe(problems_frame(exc.problems), hide_index=True, width="stretch", key="synth.own_problems")
            st.stop()
        st.caption(rules_text(rules))
if rules_file is not None:
    try:
        rules = rules_from_upload(rules_file.name, rules_file.getvalue(), project.schema)
    except TargetValidationError as exc:
        st.error(f"{len(exc.problems)} problem(s) in {as_text(rules_file.name)}: nothing runs until they are fixed.")
        st.dataframe(problems_frame(exc.problems), hide_index=True, width="stretch", key="synth.rule_problems")
        st.stop()
    st.caption(rules_text(rules))

with st.form("synth.settings"):
    cols = st.columns(5)
    size = cols[0].number_input("Population size N", min_value=1, step=1000, key="synth.size")
    mode = cols[1].selectbox(
        "Mode",
        ["full", "paper"],
        key="synth.mode",
        help="full: add and remove, realistic fill, calibration. paper: LLMSynthor as "
        "published (add-only, 5 proposals per iteration, uniform numerics).",
    )
    max_iterations = cols[2].number_input("Max iterations", min_value=1, max_value=10_000, key="synth.max_iterations")
    tolerance = cols[3].number_input(
        "Tolerance (mean TVD)", min_value=0.0001, max_value=0.5, format="%.4f", key="synth.tolerance"
    )
    seed = cols[4].number_input("Seed", min_value=0, step=1, key="synth.seed")
    start = st.form_submit_button(
        "Start", type="primary", disabled=running or (prior_name == "llm" and llm_settings is None)
    )
if start:
    config = SynthesisConfig(
        size=int(size),
        mode=mode,
        seed=int(seed),
        max_iterations=int(max_iterations),
        tolerance_tvd=float(tolerance),
        fallback=bool(st.session_state.get("synth.fallback", True)),
    )
    factory = llm_prior_factory(llm_settings, api_key) if prior_name == "llm" else prior_factory(prior_name)
    label = run_label(st.session_state["data.project_label"], project)
    run_id = runner.start(project, config, factory, label=label, rules=rules, owner=owner_id())
    st.session_state["synth.run_id"] = st.session_state["synth.form_run"] = run_id
    st.session_state["synth.run_project"] = str(Path(st.session_state["data.project_dir"]).resolve())
    st.query_params["run"] = run_id  # a reload or a second tab with this address shows the run again
    st.rerun()

if st.session_state["synth.run_id"] is None:
    st.info("Choose the settings and press Start.")
    st.stop()


@st.fragment(run_every=1.0)
def show_run() -> None:
    """Progress, convergence chart and latest proposals, redrawn from the runner's snapshot."""
    snap = runner.snapshot(st.session_state["synth.run_id"])
    done = len(snap.events)
    top = st.columns([4, 1])
    # a run that ended (tolerance met, stopped, failed) is complete: the bar says so, the text says where it stopped
    top[0].progress(
        min(done / snap.config.max_iterations, 1.0) if snap.status == "running" else 1.0,
        # what the run is doing from its first second (building the prior takes a while before iteration 1)
        text=f"Run {snap.run_id}: "
        + run_state(snap)
        + f", iteration {done} of at most {snap.config.max_iterations}, {snap.elapsed_s:.1f} s",
    )
    if snap.status == "running" and top[1].button("Stop", key="synth.stop"):
        runner.stop(snap.run_id)
    if snap.status == "failed":
        st.error(f"The run failed: {as_text(snap.error)}")
    if snap.store_error:
        st.error(
            f"The run ended, but {as_text(snap.store_error)}. Its population is kept by this server until it "
            f"restarts: download it below now. Free space in the data folder before the next run.",
            icon=":material/sd_card_alert:",
        )
    if snap.events:
        last = snap.events[-1]
        metrics = st.columns(4)
        if snap.result is None:
            metrics[0].metric("mean TVD", f"{last.mean_tvd:.4f}")
            metrics[1].metric("max TVD", f"{last.max_tvd:.4f}")
            metrics[2].metric("persons", f"{last.population_total:,}")
            metrics[3].metric("distinct records", f"{last.distinct_records:,}")
        else:  # the calibrated, integerized population
            fit = snap.result.fit
            metrics[0].metric(
                "mean TVD (final)", f"{fit.mean_tvd:.4f}", signed(fit.mean_tvd - last.mean_tvd), delta_color="inverse"
            )
            metrics[1].metric(
                "max TVD (final)", f"{fit.max_tvd:.4f}", signed(fit.max_tvd - last.max_tvd), delta_color="inverse"
            )
            metrics[2].metric("persons", f"{int(snap.result.population['count'].sum()):,}")
            metrics[3].metric("distinct records", f"{len(snap.result.population):,}")
        final = (snap.result.fit.mean_tvd, snap.result.fit.max_tvd) if snap.result is not None else None
        calibrated = snap.result is not None and snap.result.calibration is not None
        figure = tvd_by_iteration(snap.events, final=final, calibrated=calibrated)
        st.plotly_chart(figure, key="synth.chart", width="stretch")
        names = [t.name for t in snap.project.tables]
        chosen = st.selectbox("Target vs synthetic for table", names, key="synth.live_table")
        table = snap.project.tables[names.index(chosen)]
        counts = (
            table_counts(snap.project, snap.result.population, table)
            if snap.result is not None
            else last.table_counts[chosen]
        )
        st.plotly_chart(
            table_comparison(table, counts, snap.project.schema), key="synth.compare_chart", width="stretch"
        )
        if last.llm_calls:
            cost = f", about {last.cost_usd:.4f} USD" if last.cost_usd is not None else ""
            st.caption(
                f"LLM: {last.llm_calls:,} calls, {last.prompt_tokens:,} prompt + "
                f"{last.completion_tokens:,} completion tokens{cost}"
            )
        with st.expander(f"Proposals of iteration {last.iteration} ({len(last.proposals)})", expanded=False):
            st.dataframe(
                proposals_frame(last),
                hide_index=True,
                width="stretch",
                column_config={
                    "action": st.column_config.TextColumn(width="small"),
                    "count": st.column_config.NumberColumn(width="small"),
                    "conditions": st.column_config.TextColumn(width="large"),
                    "reason": st.column_config.TextColumn(width="large"),
                },
            )
    if snap.status != "running" and st.session_state.get("synth.shown_final") != snap.run_id:
        st.session_state["synth.shown_final"] = snap.run_id  # draw the final sections once, below
        st.rerun(scope="app")


show_run()

snap = runner.snapshot(st.session_state["synth.run_id"])
if snap.result is not None:
    result = snap.result
    st.subheader("Fit after calibration" if result.calibration is not None else "Final fit (not calibrated)")
    st.write(
        f"Stopped: {as_text(result.stop_reason)} after {count_of(result.iterations, 'iteration')}, "
        f"{snap.elapsed_s:.1f} s. "
        f"Mean TVD **{result.fit.mean_tvd:.4f}**, max TVD **{result.fit.max_tvd:.4f}** over "
        f"{count_of(len(result.fit.tables), 'table')}."
    )
    if result.fit.mean_tvd > snap.config.tolerance_tvd:
        st.warning(
            f"Not converged: the mean TVD {result.fit.mean_tvd:.4f} is above the tolerance "
            f"{snap.config.tolerance_tvd:g}. Check the tables for contradictions (the Data page lists "
            f"marginals on which they disagree), allow more iterations, or try another prior.",
            icon=":material/warning:",
        )
    if result.sources:  # an LLM run with its maxent fallback: where the persons came from, which calls failed
        summary = (get_runner().store.report(snap.run_id) or {}).get("source_summary", "")
        if summary:
            st.info(as_text(summary[:1].upper() + summary[1:] + "."), icon=":material/merge_type:")
        degraded = (get_runner().store.report(snap.run_id) or {}).get("llm_degraded", "")
        if degraded:  # the LLM fed the run little: said beside the fit (no LLM record at all fails the run)
            st.warning(as_text(degraded[:1].upper() + degraded[1:] + "."), icon=":material/warning:")
    # what the run itself warned of (report.json "warnings"; the project's own are on the Data page)
    for warning in [w for w in result.warnings if w not in snap.project.warnings]:
        st.warning(as_text(warning[:1].upper() + warning[1:]), icon=":material/warning:")
    st.dataframe(fit_frame(result.fit), hide_index=True, width="stretch", key="synth.fit")
    if result.fit.numeric:
        st.caption("Numeric controls: the total or mean of a numeric variable per cell, fitted by calibration.")
        st.dataframe(
            numeric_fit_frame(result.fit),
            hide_index=True,
            width="stretch",
            key="synth.numeric_fit",
            column_config={"relative error": st.column_config.NumberColumn(format="percent")},
        )
    st.page_link("app_pages/evaluate.py", label="Evaluate this run in detail", icon=":material/fact_check:")
    show_downloads(snap.run_id, key="synth.downloads")
