"""Converting a PopulationSim working directory into a Synthor household project folder (``synthor.toml`` and copies
of its data files).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

from .. import defaults
from ..errors import Problem, TargetValidationError
from ..targets.model import PROJECT_FILE, OutputFiles
from ..units import (
    HOUSEHOLDS,
    PERSONS,
    infer_derivations,
)
from .populationsim import (
    BOUND_SETTINGS,
    SETTINGS_FILE,
    load_populationsim,
    read_settings,
    repop_settings,
)

DATA_FOLDER = "data"  # where convert_populationsim puts the copied data files


LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "COPYING")


def _copy_table(source: Path, target: Path, renames: dict[str, str], drops: list[str]) -> None:
    """Copy a data file, renaming and dropping columns as PopulationSim's ``input_table_list`` does.

    Cells are copied as text (never through a number), so the copy reads back to the same values. A file with
    nothing to rename or drop is copied byte for byte; otherwise its ``#`` comment lines go to the top.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = source.read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines if line.lstrip().startswith("#")]
    rows = [
        row
        for row in csv.reader(io.StringIO("\n".join(line for line in lines if not line.lstrip().startswith("#"))))
        if row
    ]
    header = [renames.get(c.strip(), c.strip()) for c in rows[0]] if rows else []
    keep = [i for i, c in enumerate(header) if c not in drops]
    if not rows or (len(keep) == len(header) and header == [c.strip() for c in rows[0]]):
        shutil.copyfile(source, target)
        return
    changed = [f"{old} -> {new}" for old, new in renames.items() if old in {c.strip() for c in rows[0]}]
    note = (
        "# copied by synthor convert; columns renamed: "
        + (", ".join(changed) or "none")
        + "; dropped: "
        + (", ".join(c for c in header if c in drops) or "none")
    )
    with open(target, "w", encoding="utf-8", newline="") as handle:
        handle.writelines(line + "\n" for line in [note, *comments])
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([header[i] for i in keep])
        for row in rows[1:]:
            writer.writerow([row[i] for i in keep if i < len(row)])


def _licence(folder: Path) -> Path | None:
    """The licence file of a PopulationSim folder, in it (never above it: nothing outside the project is read)."""
    for name in LICENCE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _toml_number(value: float) -> float | int:
    """``5000`` rather than ``5000.0`` in ``synthor.toml`` (the same float when read back)."""
    return int(value) if float(value).is_integer() else float(value)


def convert_populationsim(
    folder: str | Path, out: str | Path, configs: str = "configs", data: str | None = None, repop: bool = False
) -> Path:
    """Write a PopulationSim working directory as a Synthor household project folder.

    The PopulationSim project is read and checked first (:func:`load_populationsim`, same errors). The data files
    it needs (seed households and persons, crosswalk, the control table of every level with controls) are copied
    to ``out/data/`` with the columns renamed and dropped as its ``input_table_list`` says; its licence file
    (``LICENSE.txt`` in the folder; never one above it) is copied to ``out/``; ``out/synthor.toml`` is written last,
    through a temporary file and a rename. ``[[derived]]`` lists the household columns the controls read that
    equal their members' size, count or first member's value on every seed household
    (:func:`~synthor_core.units.infer_derivations`); ``[[rules]]`` the implications every sample record meets
    (:func:`~synthor_core.codebook.mine_rules`), for review. :func:`load_household_project` on ``out`` then returns
    the same project as :func:`load_populationsim` on ``folder`` (plus ``derived``).

    Parameters
    ----------
    folder : path
        The PopulationSim working directory (``configs/settings.yaml``, ``configs/controls.csv``, ``data/``).
    out : path
        The project folder to write; created, or empty.
    configs, data : str
        As for :func:`load_populationsim`.
    repop : bool
        Convert the project's repop mode (its repop controls and tables, ``[project] repop``): the converted project
        runs with ``run OUT --base PREVIOUS_OUT``.

    Returns
    -------
    Path
        ``out/synthor.toml``.

    Raises
    ------
    TargetValidationError
        The problems of the PopulationSim project, or ``out`` existing and not an empty folder.
    """
    root, out = Path(folder), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TargetValidationError(
            [Problem(str(out), "expected a new or empty folder for the project (it is not overwritten)")]
        )
    project = load_populationsim(root, configs=configs, data=data, repop=repop)
    settings = read_settings(root / configs, f"{configs}/{SETTINGS_FILE}")
    if repop:  # the input tables of repop mode (repop_input_table_list replacing those of the same name)
        settings, _ = repop_settings(settings, f"{configs}/{SETTINGS_FILE}")
    data_dir = root / (data or str(settings.get("data_dir") or "data"))
    entries = {str(e["tablename"]): e for e in settings["input_table_list"]}
    needed = [HOUSEHOLDS, PERSONS, "geo_cross_walk"]
    needed += list(dict.fromkeys(f"{c.level}_control_data" for c in project.controls))
    written: dict[str, tuple] = {}
    files: dict[str, str] = {}
    for table in needed:
        entry = entries[table]
        renames = {str(k): str(v) for k, v in (entry.get("rename_columns") or {}).items()}
        drops = [str(c) for c in entry.get("drop_columns") or []]
        source = (data_dir / str(entry["filename"])).resolve()
        name = Path(DATA_FOLDER, Path(str(entry["filename"])).as_posix()).as_posix()
        if name in written and written[name] != (source, renames, drops):
            name = Path(name).with_stem(f"{Path(name).stem}.{table}").as_posix()
        if name not in written:
            _copy_table(source, out / name, renames, drops)
            written[name] = (source, renames, drops)
        files[table] = name
    licence = _licence(root.resolve())
    if licence is not None:
        shutil.copyfile(licence, out / licence.name)
    seed = project.sample
    household_columns = [col for c in project.controls if c.unit == HOUSEHOLDS for col in c.columns]
    raw: dict = {
        "project": {
            "name": project.name,
            "description": f"PopulationSim working directory {project.name}, converted",
            "total_control": project.total_control,
        },
        "geography": {
            "file": files["geo_cross_walk"],
            "levels": list(project.geography.levels),
            "seed_level": seed.seed_level,
        },
        "seed": {
            "households": files[HOUSEHOLDS],
            "persons": files[PERSONS],
            "household_id": seed.household_id,
            "person_number": seed.person_number,
            "weight": seed.weight,
        },
    }
    for key in BOUND_SETTINGS:
        if getattr(project, key) is not None:
            raw["project"][key] = _toml_number(getattr(project, key))
    if project.survey_weighting:
        raw["project"]["survey_weighting"] = True
    if project.repop is not None:
        raw["project"]["repop"] = project.repop
    if seed.person_number is None:
        del raw["seed"]["person_number"]
    derived = [
        {
            k: v
            for k, v in (("column", d.column), ("how", d.how), ("expression", d.expression), ("source", d.source))
            if v is not None
        }
        for d in infer_derivations(seed, list(dict.fromkeys(household_columns)))
    ]
    raw["controls"] = [
        {
            "name": c.name,
            "unit": c.unit,
            "level": c.level,
            "table": files[f"{c.level}_control_data"],
            "column": c.column,
            "expression": c.expression,
            "importance": _toml_number(c.importance),
        }
        for c in project.controls
    ]
    if project.rules:
        # the implications every sample record meets (codebook.mine_rules), for review: the priors that build
        # households draw every value among those they allow
        raw["rules"] = [
            {"name": r.name, "unit": r.unit, "expression": r.expression, "empty_is_value": r.empty_is_value}
            for r in project.rules
        ]
    if project.output is not None:
        raw["output"] = _output_entries(project.output)
    if project.output_tables is not None:  # the tables as resolved (include or skip), under the same prefix
        raw["output_tables"] = {"tables": list(project.output_tables.tables), "prefix": project.output_tables.prefix}
    control_key = "repop_control_file_name" if repop else "control_file_name"
    control_file = f"{configs}/{settings.get(control_key) or 'controls.csv'}"
    return _write_toml(out, raw, derived, root, f"{configs}/{SETTINGS_FILE}, {control_file}, {data_dir.name}/", licence)


def _output_entries(output: OutputFiles) -> dict:
    """PopulationSim's ``output_synthetic_population`` as ``[output]`` of ``synthor.toml``."""
    households: dict = {"filename": output.households_file}
    persons: dict = {"filename": output.persons_file}
    if output.household_columns:
        households["columns"] = list(output.household_columns)
    if output.person_columns:
        persons["columns"] = list(output.person_columns)
    return {"household_id": output.household_id, "households": households, "persons": persons}


def _write_toml(out: Path, raw: dict, derived: list[dict], root: Path, sources: str, licence: Path | None) -> Path:
    """``out/synthor.toml``: a comment header (source, licence), ``raw``, ``[[derived]]`` after ``[seed]``."""
    import tomli_w

    header = [
        '# Synthor household project: households with their members in zones (README, "Households in zones").',
        "# Converted by `python -m synthor_core convert` from the PopulationSim working directory "
        f"{root.resolve().name}",
        f"# ({sources}).",
        f"# The files in {DATA_FOLDER}/ are copies of its data files, columns renamed and dropped as its "
        "input_table_list says.",
    ]
    if licence is not None:
        title = next(
            (
                line.strip()
                for line in licence.read_text(encoding="utf-8", errors="replace").splitlines()
                if line.strip()
            ),
            licence.name,
        )
        header.append(
            f"# Licence found with the source ({licence.name}): {title}; copied beside this file as {licence.name}."
        )
    else:
        header.append("# No licence file was found in the source folder: check the data's terms before sharing.")
    first = {k: raw[k] for k in ("project", "geography", "seed")}
    rest = {k: v for k, v in raw.items() if k not in first}
    blocks = [tomli_w.dumps(first)] + ["[[derived]]\n" + tomli_w.dumps(entry) for entry in derived]
    text = "\n".join(header) + "\n\n" + "\n".join(blocks + [tomli_w.dumps(rest)])
    path = out / PROJECT_FILE
    out.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{PROJECT_FILE}.", dir=out)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, defaults.FILE_MODE)  # mkstemp makes it private; the final file gets the usual umask mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
