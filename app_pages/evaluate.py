"""Evaluate & export: fit per target table against a threshold, the cells most off, held-out real records on
tables that were not targets, and the downloads."""

import io
from pathlib import Path

import pandas as pd
import streamlit as st

from app_session import as_text, get_runner, init_state, owner_id, run_population, show_downloads
from synthor_core.evaluate.holdout import holdout_comparison, worst_cells

init_state()  # on a fresh server Streamlit may run a page of pages/ before app.py has set the state
st.title("Evaluate & export")
store = get_runner().store
runs = store.runs(owner=owner_id())
# every run that ended with a calibrated population (a failed prior keeps one); not an interrupted run's checkpoint
done = runs[runs["mean_tvd"].notna() & ~runs["stop_reason"].fillna("").str.startswith(("interrupted:", "failed:"))]
if done.empty:
    st.info("No finished run yet: start one on the Synthesize page.")
    st.stop()
ids = done["run_id"].tolist()
current = st.session_state.get("synth.run_id")
run_id = st.selectbox(
    "Run",
    ids,
    index=ids.index(current) if current in ids else 0,
    key="eval.run",
    format_func=lambda r: (
        f"{r}: {done.set_index('run_id').loc[r, 'project_label']}, "
        f"{done.set_index('run_id').loc[r, 'mode']} mode, "
        f"N = {done.set_index('run_id').loc[r, 'size']:,}"
    ),
)
report = store.report(run_id)
project, population = run_population(run_id)

st.subheader("Fit to the target tables")
threshold = st.number_input(
    "Highest acceptable TVD per table",
    min_value=0.0001,
    max_value=1.0,
    value=0.01,
    step=0.005,
    format="%.4f",
    key="eval.threshold",
)
fit = pd.DataFrame([{"table": name, "tvd": f["tvd"], "srmse": f["srmse"]} for name, f in report["tables"].items()])
fit["passes"] = fit["tvd"] <= threshold
failing = int((~fit["passes"]).sum())
cols = st.columns(3)
cols[0].metric("mean TVD", f"{report['mean_tvd']:.4f}")
cols[1].metric("max TVD", f"{report['max_tvd']:.4f}")
cols[2].metric("tables above the threshold", f"{failing} of {len(fit)}")
st.dataframe(
    fit.style.apply(lambda row: ["background-color: #fde2e1" if not row["passes"] else ""] * len(row), axis=1).format(
        {"tvd": "{:.4f}", "srmse": "{:.4f}"}
    ),
    hide_index=True,
    width="stretch",
    key="eval.fit",
    column_config={"tvd": "TVD", "srmse": "SRMSE"},  # the field's names, as the metrics above write them
)

names = [t.name for t in project.tables]
worst_default = fit.sort_values("tvd", ascending=False)["table"].iloc[0]
chosen = st.selectbox("Cells most off in table", names, index=names.index(worst_default), key="eval.table")
cells = worst_cells(project, population, project.tables[names.index(chosen)], k=10)
if cells.empty:
    st.caption("Every cell of this table matches its target exactly.")
else:
    st.dataframe(
        cells,
        hide_index=True,
        width="stretch",
        key="eval.cells",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f") for c in ("target_share", "synthetic_share", "difference")
        },
    )

st.subheader("Beyond the targets: held-out real records")
st.caption(
    "Upload real micro-records (one row per person, one column per variable, labels as in the schema). "
    "Every 2- and 3-way table that was not a target is compared."
)
holdout = st.file_uploader("Real records (CSV UTF-8, XLSX, Parquet)", key="eval.holdout")
if holdout is not None and Path(holdout.name).suffix.lower() not in (".csv", ".xlsx", ".parquet"):
    st.error(
        f"{as_text(holdout.name)}: expected a .csv, .xlsx or .parquet file of records, got "
        f"{as_text(Path(holdout.name).suffix or 'no extension')}"
    )
elif holdout is not None:
    suffix = Path(holdout.name).suffix.lower()
    content = io.BytesIO(holdout.getvalue())
    try:
        real = (
            pd.read_csv(content)
            if suffix == ".csv"
            else pd.read_excel(content)
            if suffix == ".xlsx"
            else pd.read_parquet(content)
        )
        tables, dropped = holdout_comparison(project, population, real)
    except (ValueError, UnicodeDecodeError) as exc:
        st.error(f"{as_text(holdout.name)}: {as_text(exc)}")
    else:
        if dropped:
            st.warning(
                f"{sum(dropped.values()):,} real records left out because they are outside the schema: "
                + ", ".join(f"{as_text(k)} ({v:,})" for k, v in dropped.items())
            )
        summary = tables.groupby("way")["tvd"].agg(["mean", "max", "count"]).reset_index()
        cols = st.columns(len(summary))
        for col, row in zip(cols, summary.itertuples(index=False)):
            col.metric(f"{row.way}-way tables ({row.count}): mean TVD", f"{row.mean:.4f}", help=f"max {row.max:.4f}")
        st.caption("Worst five")
        st.dataframe(tables.head(5), hide_index=True, width="stretch", key="eval.holdout_worst")
        with st.expander(f"All {len(tables)} tables"):
            st.dataframe(tables, hide_index=True, width="stretch", key="eval.holdout_all")

st.subheader("Downloads")
show_downloads(run_id, key="eval.downloads")
