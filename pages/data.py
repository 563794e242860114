"""Data: open the bundled example or upload a project folder (synthor.toml + tables); see what was read and
every problem with its file, row and column before anything can run."""

import tempfile
import tomllib
from pathlib import Path

import pandas as pd
import streamlit as st

from app_session import EXAMPLE_DIR, EXAMPLE_LABEL, current_project

st.title("Data")

source = st.radio("Project", ["Bundled example: UCI Adult (1994 CPS, 48,842 persons)", "Upload a project"],
                  key="data.source", horizontal=True)
if source.startswith("Bundled"):
    if st.session_state["data.project_dir"] != str(EXAMPLE_DIR):
        st.session_state["data.project_dir"] = str(EXAMPLE_DIR)
        st.session_state["data.project_label"] = EXAMPLE_LABEL
else:
    uploads = st.file_uploader("synthor.toml and its table files (CSV UTF-8, XLSX, Parquet)",
                               type=["toml", "csv", "xlsx", "parquet"], accept_multiple_files=True,
                               key="data.uploads")
    if uploads:
        by_name = {u.name: u.getvalue() for u in uploads}
        if "synthor.toml" not in by_name:
            st.error("Add the project's synthor.toml: it names the variables and the table files.")
            st.stop()
        folder = Path(tempfile.mkdtemp(prefix="synthor-upload-"))
        (folder / "synthor.toml").write_bytes(by_name["synthor.toml"])
        try:
            listed = [t.get("file", "") for t in tomllib.loads(by_name["synthor.toml"].decode("utf-8",
                                                                                           "replace")).get("tables", [])]
        except tomllib.TOMLDecodeError:
            listed = []
        for name, content in by_name.items():
            targets = [f for f in listed if Path(f).name == name] or [name]
            for target in targets:
                (folder / target).parent.mkdir(parents=True, exist_ok=True)
                (folder / target).write_bytes(content)
        st.session_state["data.project_dir"] = str(folder)
        st.session_state["data.project_label"] = f"uploaded ({len(uploads)} files)"

project, problems = current_project()
if problems:
    st.error(f"{len(problems)} problem(s): fix them and upload again. Nothing runs until the project is valid.")
    st.dataframe(pd.DataFrame([{"file": p.file, "row": p.row, "column": p.column, "problem": p.message}
                               for p in problems]), hide_index=True, width="stretch", key="data.problems")
    st.stop()

st.success(f"{st.session_state['data.project_label']}: {project.size:,} persons, "
           f"{len(project.schema.names)} variables, {len(project.tables)} target tables.")
if project.description:
    st.caption(project.description)
for warning in project.warnings:
    st.warning(warning)

st.subheader("Variables")
st.dataframe(pd.DataFrame([{
    "variable": v.name, "type": v.type,
    "values": ", ".join(v.categories) if v.type == "categorical" else f"{v.min:g} to {v.max:g} {v.unit}".strip(),
    "description": v.description} for v in project.schema]), hide_index=True, width="stretch")

st.subheader("Target tables")
st.dataframe(pd.DataFrame([{"table": t.name, "variables": " x ".join(t.variables), "cells": t.counts.size,
                            "persons": round(float(t.counts.sum())), "file": t.source} for t in project.tables]),
             hide_index=True, width="stretch")
names = [t.name for t in project.tables]
chosen = st.selectbox("Preview a table", names, key="data.preview")
table = project.tables[names.index(chosen)]
labels = table.axis_labels(project.schema)
index = pd.MultiIndex.from_product(labels, names=list(table.variables))
st.dataframe(pd.DataFrame({"count": table.counts.reshape(-1)}, index=index).reset_index(), hide_index=True,
             width="stretch", key="data.preview_frame")
