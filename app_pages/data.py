"""Data: open the bundled example, upload a project or tables, edit the schema, define marginals by hand, and
save the project folder. Every problem is listed with its file, row and column before anything can run."""

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from app_session import (
    EXAMPLE_DIR,
    EXAMPLE_LABEL,
    TRIPS_EXAMPLE_DIR,
    TRIPS_EXAMPLE_LABEL,
    UploadError,
    as_text,
    count_of,
    current_project,
    draft_from_zip,
    editable_project_dir,
    init_state,
    new_draft,
    problems_frame,
)
from synthor_core.readers.project import parse_project_text, read_project_toml, write_project_toml
from synthor_core.schema import variables_frame, variables_from_frame
from synthor_core.store import zip_project_folder
from synthor_core.targets.authoring import (
    edges_from_labels,
    infer_variables,
    marginal_template,
    not_a_table_of_counts,
    suggest_table_spec,
    table_file_name,
    table_labels,
    table_total,
)
from synthor_core.targets.tables import read_table_bytes

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _edges_text(labels) -> list[float]:
    return edges_from_labels(labels) or []


init_state()  # on a fresh server Streamlit may run a page of pages/ before app.py has set the state
st.title("Data")

left, right = st.columns([3, 2])
with left:
    st.caption(f"Project: **{as_text(st.session_state['data.project_label'])}**")
    buttons = st.columns(2)
    if buttons[0].button("Open the bundled example", key="data.open_example"):
        st.session_state["data.project_dir"] = str(EXAMPLE_DIR)
        st.session_state["data.project_label"] = EXAMPLE_LABEL
        st.rerun()
    if buttons[1].button("Start a new, empty project", key="data.new"):
        new_draft()
        st.rerun()
    if st.button("Open the commuting example (trips)", key="data.open_trips_example"):  # its own row: labels whole
        st.session_state["data.project_dir"] = str(TRIPS_EXAMPLE_DIR)
        st.session_state["data.project_label"] = TRIPS_EXAMPLE_LABEL
        st.rerun()
with right:
    uploaded = st.file_uploader(
        "Open a project folder (.zip with synthor.toml and its tables)", type=["zip"], key="data.project_zip"
    )
    if uploaded is not None and st.session_state.get("data.loaded_zip") != uploaded.file_id:
        st.session_state["data.loaded_zip"] = uploaded.file_id
        try:
            draft_from_zip(uploaded.getvalue(), f"{uploaded.name}")
        except UploadError as exc:
            st.error(f"{as_text(uploaded.name)} cannot be opened: {as_text(exc)}", icon=":material/error:")
        else:
            st.rerun()

project, problems = current_project()
folder = Path(st.session_state["data.project_dir"])
toml_file = folder / "synthor.toml"
project_state = f"{folder}:{toml_file.stat().st_mtime_ns if toml_file.is_file() else 0}"
if st.session_state.get("data.form_project") != project_state:
    # another project, or this one changed on disk: the forms get new widgets (keys ending in a new number), so
    # they show its N, description and variables, never stale answers (a browser sends a widget's old value back
    # under its old key)
    st.session_state["data.form_project"] = project_state
    st.session_state["data.project_no"] = st.session_state.get("data.project_no", 0) + 1
P = st.session_state["data.project_no"]
raw = read_project_toml(folder)
# the schema as far as it parses, for the forms below (a file that is not UTF-8 has none; its problem is listed)
toml_text = (
    (folder / "synthor.toml").read_bytes().decode("utf-8", "replace") if (folder / "synthor.toml").is_file() else None
)
_, schema, _ = parse_project_text(toml_text) if toml_text is not None else (None, None, None)

raw_tables = [t for t in raw.get("tables", []) if isinstance(t, dict)]
if "data.last_added" in st.session_state:
    st.toast(f"Added the table {as_text(st.session_state.pop('data.last_added'))}")
# an empty or new project is not an error: the steps are shown instead of "List should have at least 1 item"
empty_lists = [p for p in problems if p.column in ("variables", "tables") and "at least 1 item" in p.message]
problems = [p for p in problems if p not in empty_lists]
if project is None and empty_lists:
    st.info(
        "**Build the project in three steps.** 1. **Add a table**: upload each table file (marginals or "
        "cross-tabulations, long or cross-tab); its variables and categories are read from it. 2. **Schema**: "
        "review the variables (order of categories, numeric ranges, descriptions). 3. Set the **population "
        "size N** on the Schema tab (it starts as the first table's total). Then go to Synthesize.",
        icon=":material/checklist:",
    )
if problems:
    st.error(
        f"{len(problems)} problem(s): fix them below (or in your files and open the project again). "
        f"Nothing runs until the project is valid."
    )
    st.dataframe(problems_frame(problems), hide_index=True, width="stretch", key="data.problems")
    # the tables at fault, each removable from here (or replaced: a corrected file added under the same name)
    at_fault = {p.file for p in problems}
    for spec in [t for t in raw_tables if isinstance(t, dict) and t.get("file") in at_fault][:5]:
        cols = st.columns([4, 1])
        cols[0].caption(
            f"Table {as_text(spec.get('name'))} ({as_text(spec.get('file'))}) has problems: remove it, or replace it "
            f"by adding a corrected file under the same name (Add a table)."
        )
        if cols[1].button(f"Remove {as_text(spec.get('name'))}", key=f"data.remove_broken.{spec.get('name')}"):
            target = editable_project_dir()
            updated = read_project_toml(target)
            updated["tables"] = [t for t in updated.get("tables", []) if t.get("name") != spec.get("name")]
            write_project_toml(target, updated)
            st.rerun()
if project is None and raw_tables:  # the tables stay in sight while the project is incomplete
    st.caption(f"Tables in this project ({len(raw_tables)})")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "table": t.get("name"),
                    "format": t.get("format"),
                    "variables": " x ".join(t.get("variables") or [t.get("rows") or "", t.get("columns") or ""]),
                    "file": t.get("file"),
                }
                for t in raw_tables
            ]
        ),
        hide_index=True,
        width="stretch",
        key="data.table_list",
    )
if project is not None:
    st.success(
        f"{as_text(st.session_state['data.project_label'])}: {count_of(project.size, 'person')}, "
        f"{count_of(len(project.schema.names), 'variable')}, {count_of(len(project.tables), 'target table')}."
    )
    if project.description:
        st.caption(project.description)
    for warning in project.warnings:
        st.warning(as_text(warning))

overview, schema_tab, add_tab, marginal_tab, save_tab = st.tabs(
    ["Overview", "Schema", "Add a table", "Marginal by hand", "Save"]
)

with overview:
    if project is None:
        st.info("The overview appears once the project is valid.")
    else:
        st.subheader("Variables")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "variable": v.name,
                        "type": v.type,
                        "values": ", ".join(v.categories)
                        if v.type == "categorical"
                        else f"{v.min:g} to {v.max:g} {v.unit}",
                        "description": v.description,
                    }
                    for v in project.schema
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        st.subheader("Target tables")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "table": t.name,
                        "variables": " x ".join(t.variables),
                        "cells": t.counts.size,
                        "persons": round(float(t.counts.sum())),
                        "file": t.source,
                    }
                    for t in project.tables
                ]
            ),
            hide_index=True,
            width="stretch",
            column_config={  # 1,121,691, not 1121691
                "cells": st.column_config.NumberColumn(format="localized"),
                "persons": st.column_config.NumberColumn(format="localized"),
            },
        )
        if project.numeric_controls:
            st.subheader("Numeric controls")
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "control": c.name,
                            "gives": f"{c.statistic} of {c.of}",
                            "per cell of": " x ".join(c.variables) or "(all persons)",
                            "cells": c.values.size,
                            "file": c.source,
                        }
                        for c in project.numeric_controls
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
        if project.trips is not None:
            trips = project.trips
            st.subheader("Trips")
            frequency = trips.frequency
            how_many = (
                "one tour a day"
                if frequency is None
                else f"0 to {frequency.shares.shape[1] - 1} tours a day by "
                f"{as_text(' x '.join(frequency.by) or 'everyone')} ({as_text(frequency.source)})"
            )
            st.caption(
                f"Persons meeting {as_text(trips.who.condition)} make {how_many}: "
                f"{as_text(' → '.join(['home', *trips.tour[:-1]]))} → home; "
                f"{count_of(len(trips.zones), 'zone')}, modes {as_text(', '.join(trips.modes))}. "
                "The trip tables count each tour's first trip."
            )
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "trip table": t.name,
                            "variables": " x ".join(t.variables),
                            "cells": t.counts.size,
                            "cells with trips": int((t.counts > 0).sum()),
                            "total": float(t.counts.sum()),
                            "source": t.source,
                        }
                        for t in trips.tables
                    ]
                ),
                hide_index=True,
                width="stretch",
                key="data.trip_tables",
                column_config={
                    c: st.column_config.NumberColumn(format="localized") for c in ("cells", "cells with trips", "total")
                },
            )
        names = [t.name for t in project.tables]
        chosen = st.selectbox("Preview a table", names, key=f"data.preview.{P}")
        table = project.tables[names.index(chosen)]
        index = pd.MultiIndex.from_product(table.axis_labels(project.schema), names=list(table.variables))
        st.dataframe(
            pd.DataFrame({"count": table.counts.reshape(-1)}, index=index).reset_index(),
            hide_index=True,
            width="stretch",
            key="data.preview_frame",
        )

with schema_tab:
    st.caption(
        "One row per variable. Categories are separated by |, in their order (the scale's order when "
        "ordered). Numeric variables need min and max; tick integer for whole numbers."
    )
    population = raw.get("population", {})
    cols = st.columns([1, 3])
    size = cols[0].number_input(
        "Population size N", min_value=1, value=int(population.get("size", 1000) or 1000), key=f"data.size.{P}"
    )
    description = cols[1].text_input(
        "What one record is", value=population.get("description", ""), key=f"data.description.{P}"
    )
    edited = st.data_editor(
        variables_frame(raw.get("variables", [])),
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        key=f"data.schema_editor.{P}",
        column_config={
            "type": st.column_config.SelectboxColumn(options=["categorical", "numeric"], required=True),
            "ordered": st.column_config.CheckboxColumn(),
            "integer": st.column_config.CheckboxColumn(),
        },
    )
    if st.button("Apply schema", key="data.apply_schema", type="primary"):
        target = editable_project_dir()
        updated = read_project_toml(target)
        updated["population"] = {"size": int(size), "description": description}
        updated["variables"] = variables_from_frame(edited)
        updated.setdefault("tables", [])
        write_project_toml(target, updated)
        st.rerun()

with add_tab:
    st.caption(
        "Upload one table file at a time: its format, variables and categories are read from it, and "
        "variables the project lacks are added (review them on the Schema tab)."
    )
    table_file = st.file_uploader(
        "A table file (CSV UTF-8, XLSX, Parquet; long or cross-tab)",
        key="data.table_file",  # any file: a refused one is told why on the page, not on the uploader's hover
    )
    if table_file is not None:
        if st.session_state.get("data.form_file") != table_file.file_id:
            # a new file: new widgets (keys ending in a new number) start from this file's guesses, never from the
            # previous file's answers
            st.session_state["data.form_file"] = table_file.file_id
            st.session_state["data.form_no"] = st.session_state.get("data.form_no", 0) + 1
        F = st.session_state["data.form_no"]
        suffix = Path(table_file.name).suffix.lower()
        content = table_file.getvalue()
        frame, _, read_problems = read_table_bytes(content, Path(table_file.name).name)
        if frame is None:
            st.error(f"{as_text(read_problems[0])}. Expected CSV in UTF-8, XLSX or Parquet.")
            st.stop()
        frame.columns = [str(c).strip() for c in frame.columns]
        st.dataframe(frame.head(20), hide_index=True, width="stretch", key="data.upload_preview")
        why = not_a_table_of_counts(frame)
        if why:  # a letter or a list saved as .csv: said as such, not as a bad variable name
            st.error(f"{as_text(table_file.name)} is not a table of counts: {as_text(why)}.")
            st.stop()
        known = {v.get("name"): v for v in raw.get("variables", []) if isinstance(v, dict)}
        existing_tables = [t.get("name") for t in raw.get("tables", []) if isinstance(t, dict)]
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(table_file.name).stem).lstrip("._-") or "table"
        name_guess = (
            stem
            if stem not in existing_tables
            else next(f"{stem}_{i}" for i in range(2, 10_000) if f"{stem}_{i}" not in existing_tables)
        )
        guess = suggest_table_spec(frame, schema, name_guess, table_file_name(name_guess, suffix))
        cols = st.columns(3)
        name = cols[0].text_input("Table name", value=guess["name"], key=f"data.new_table_name.{F}")
        layout = cols[1].selectbox(
            "Format (detected)",
            ["long", "crosstab"],
            index=0 if guess["format"] == "long" else 1,
            key=f"data.new_table_format.{F}",
        )
        spec = {"name": name, "file": table_file_name(name, suffix), "format": layout}
        columns = list(frame.columns)
        if layout == "long":
            count = cols[2].selectbox(
                "Count column",
                columns,
                index=columns.index(guess["count_column"])
                if guess.get("count_column") in columns
                else len(columns) - 1,
                key=f"data.new_table_count.{F}",
            )
            mapping = {}
            others = [c for c in columns if c != count]
            map_cols = st.columns(max(len(others), 1))
            for i, column in enumerate(others):
                default = guess.get("variables", [])[i] if i < len(guess.get("variables", [])) else column
                options = list(known) + ([column] if column not in known else [])
                mapping[column] = map_cols[i].selectbox(
                    f'Column "{as_text(column)}" is variable',
                    options,
                    index=options.index(default) if default in options else options.index(column),
                    format_func=lambda v: v if v in known else f"{v} (new variable)",
                    key=f"data.map.{column}.{F}",
                )
            spec.update(variables=list(mapping.values()), count_column=count)
            renamed = {c: v for c, v in mapping.items() if c != v}
        else:
            rows_guess = guess.get("rows", columns[0])
            columns_guess = guess.get("columns", "") if guess.get("columns") != "columns" else ""
            rows = cols[2].text_input(
                "Rows (first column) are variable",
                value=rows_guess,
                key=f"data.new_table_rows.{F}",
                help="A variable of the project, or a new one: " + ", ".join(known),
            )
            columns_var = st.text_input(
                "Columns (header) are variable",
                value=columns_guess,
                key=f"data.new_table_columns.{F}",
                placeholder="name the variable whose categories head the columns",
                help="A variable of the project, or a new one: " + ", ".join(known),
            )
            spec.update(rows=rows.strip(), columns=columns_var.strip())
            renamed = {}
        names_ok = all(
            VARIABLE_NAME.fullmatch(v or "") for v in (spec.get("variables") or [spec.get("rows"), spec.get("columns")])
        )
        if not names_ok:
            st.error("Each variable needs a name of letters, digits and _ (not starting with a digit).")
        labels = table_labels(frame, spec) if names_ok else {}
        _, unknown_labels = infer_variables(
            {v: x for v, x in labels.items() if v in known}, list(known.values()), extend_known=False
        )
        extend = False
        if unknown_labels:
            st.warning("Labels the project's variables lack: " + as_text("; ".join(unknown_labels)) + ".")
            extend = st.checkbox(
                "Add them as new categories (otherwise their rows are listed as problems: "
                "correct the file if they are typos)",
                key=f"data.new_table_extend.{F}",
            )
        variables, notes = infer_variables(labels, list(known.values()), extend_known=extend)
        notes = [n for n in notes if "labels not among" not in n]
        numeric = [v["name"] for v in variables if v["name"] in labels and v.get("type") == "numeric"]
        bins = {}
        for var in numeric:
            default = ", ".join(f"{e:g}" for e in guess.get("bins", {}).get(var, []) or (_edges_text(labels[var])))
            text = st.text_input(f"Bin edges of {as_text(var)}", value=default, key=f"data.bins.{var}.{F}")
            try:
                bins[var] = [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
            except ValueError:
                st.error(f'Bin edges of {as_text(var)}: expected numbers separated by commas, got "{as_text(text)}"')
        if bins:
            spec["bins"] = bins
        if notes:
            st.info("Adding this table also changes the variables: " + as_text("; ".join(notes)) + ".")
        clash = name in existing_tables
        replace = False
        if clash:
            replace = st.checkbox(
                f"A table named {as_text(name)} exists: replace it with this file", key=f"data.replace_table.{F}"
            )
        if st.button(
            "Add this table to the project",
            key="data.add_table",
            type="primary",
            disabled=not names_ok or not TABLE_NAME.fullmatch(name) or (clash and not replace),
        ):
            target = editable_project_dir()
            (target / "tables").mkdir(exist_ok=True)
            if renamed:  # the reader wants columns named after their variables: store the table as such a CSV
                spec["file"] = table_file_name(name)
                (target / spec["file"]).write_bytes(frame.rename(columns=renamed).to_csv(index=False).encode())
            else:
                (target / spec["file"]).write_bytes(content)
            updated = read_project_toml(target)
            first_table = not updated.get("tables")
            updated["variables"] = variables
            updated["tables"] = [t for t in updated.get("tables", []) if t.get("name") != name] + [spec]
            if first_table:  # N starts as the first table's total (the Schema tab changes it)
                total = table_total(frame, spec)
                if total:
                    updated.setdefault("population", {})["size"] = total
            write_project_toml(target, updated)
            st.session_state["data.last_added"] = name
            st.rerun()
        elif not TABLE_NAME.fullmatch(name):
            st.error("The table name may hold letters, digits, _ . and - (not starting with . or -).")

with marginal_tab:
    if schema is None or not schema.names:
        st.info("Define the variables on the Schema tab first.")
    else:
        variable = st.selectbox("Variable", schema.names, key=f"data.marginal_variable.{P}")
        edges = None
        if schema[variable].type == "numeric":
            var = schema[variable]
            text = st.text_input(
                f"Bin edges (from {var.min:g} to {var.max:g})",
                value=f"{var.min:g}, {var.max:g}",
                key=f"data.marginal_edges.{P}",
            )
            try:
                edges = [float(x) for x in text.split(",") if x.strip()]
                template = marginal_template(schema, variable, edges)
            except ValueError as exc:
                st.error(str(exc))
                template = None
        else:
            template = marginal_template(schema, variable)
        if template is not None:
            counts = st.data_editor(
                template,
                hide_index=True,
                width="stretch",
                disabled=[variable],
                key=f"data.marginal_editor.{variable}.{P}",
                column_config={"count": st.column_config.NumberColumn(min_value=0)},
            )
            table_name = st.text_input("Table name", value=f"{variable}_marginal", key=f"data.marginal_name.{P}")
            if st.button("Save this marginal as a target table", key="data.save_marginal", type="primary"):
                target = editable_project_dir()
                (target / "tables").mkdir(exist_ok=True)
                file = table_file_name(table_name)
                counts.to_csv(target / file, index=False)
                spec = {
                    "name": table_name,
                    "file": file,
                    "format": "long",
                    "variables": [variable],
                    "count_column": "count",
                }
                if edges is not None:
                    spec["bins"] = {variable: edges}
                updated = read_project_toml(target)
                updated["tables"] = [t for t in updated.get("tables", []) if t.get("name") != table_name] + [spec]
                write_project_toml(target, updated)
                st.rerun()

with save_tab:
    tables = [t.get("name", "?") for t in raw.get("tables", [])]
    if tables:
        remove = st.selectbox("Remove a table from the project", ["(none)"] + tables, key=f"data.remove_choice.{P}")
        if remove != "(none)" and st.button(f"Remove {as_text(remove)}", key="data.remove"):
            target = editable_project_dir()
            updated = read_project_toml(target)
            updated["tables"] = [t for t in updated.get("tables", []) if t.get("name") != remove]
            write_project_toml(target, updated)
            st.rerun()
    st.download_button(
        "Download the project folder (.zip)",
        data=zip_project_folder(folder),
        file_name="synthor_project.zip",
        mime="application/zip",
        key="data.download_project",
        on_click="ignore",
    )
    st.caption(
        "The zip opens again here, and runs from the command line: `python -m synthor_core run FOLDER --out OUT`."
    )
