"""The LLM prior of households: whole households with their members, written by an LLM cell by cell (issue 13).

The paper (§5.5) synthesizes households of 2-5 persons but never says how a proposal for a multi-person household
is written; here:

1. ``maxent`` builds its candidate households as usual (:func:`~synthor_core.priors.households.maxent_households`):
   they fix the **cells** (which household controls each candidate meets: a size, an income bracket, a number of
   workers, a head's age group) and how many candidates each cell gets in each seed zone.
2. For every cell, one realize request asks the LLM for households meeting exactly that cell's conditions (the
   controls' expressions, quoted as data, with whether each must hold), their number proportional to the cell's
   candidates (``LLMSettings.distinct_records`` households in all, so calls do not grow with N), in chunks of
   ``records_per_call``. The reply's JSON schema is generated from the project: the household columns the
   controls read (derived ones left out), and an array ``members`` of person records. Derived columns (size,
   workers, the head's age) are computed from the members, never asked for.
   Half of ``distinct_records`` is asked with no condition at all: the region's typical households, as common as
   the model thinks they are. They join every seed zone's candidates, so that the joint of the columns no control
   crosses (size with the head's age, income with workers) can come from the model, not from maxent's
   independence. Households with at least one member in each person control's category (a quarter of
   ``distinct_records`` at most, shared among them, at most 5 % each: a student, an occupation) are asked too and
   join every seed zone, as maxent's concentrated candidates, so that balancing can reach zones far from the
   average mix of persons; the cells get the rest.
3. Every household is validated: numbers where numbers belong, 1 to ``HOUSEHOLD_MAX_SIZE`` members, the
   cell's conditions recomputed on the household and its derived columns (a typical household must fall in some
   cell the controls define: one category of each), and the project's ``[[rules]]`` (a
   household breaking one, or with a member breaking one, is rejected; an unknown value breaks nothing). A valid
   household replaces one ``maxent`` candidate of its cell (same seed zone, same weight); what the LLM could not
   write stays ``maxent`` (the fallback), so balancing sees a pool that reaches every cell whatever the model does.
   Without the fallback the candidates the LLM did not replace are dropped.

Counts for the report: households written, valid, rejected by reason, candidates by prior, and the calls'
failures by kind (:class:`~synthor_core.priors.llm.LLMClient`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd

from .. import defaults
from ..errors import PriorError
from ..expressions import compile_condition
from ..units import HOUSEHOLDS, HouseholdProject, SeedSample
from .households import (
    POOL_ID,
    POOL_PERSON_NUMBER,
    PRIOR_COLUMN,
    derive_household_columns,
    is_integer_column,
    maxent_households,
    with_incidence,
)
from .llm import LLMClient, LLMSettings
from .prompts import SYSTEM, data_block

TASK = "realize_households"


def household_schema(
    household_columns: dict[str, bool], person_columns: dict[str, bool], nullable: frozenset[str] = frozenset()
) -> dict:
    """JSON schema (strict) of a household reply: ``{"households": [{<household columns>, "members": [...]}]}``.

    ``household_columns`` / ``person_columns``: column -> whether it holds whole numbers; ``nullable``: columns that
    may be null (the sample leaves them empty for some units: ACS's ESR for children).
    """

    def number(column: str, integer: bool) -> dict:
        kind = {"type": "integer" if integer else "number"}
        return {"anyOf": [kind, {"type": "null"}]} if column in nullable else kind

    member = {
        "type": "object",
        "additionalProperties": False,
        "required": list(person_columns),
        "properties": {c: number(c, i) for c, i in person_columns.items()},
    }
    household = {
        "type": "object",
        "additionalProperties": False,
        "required": [*household_columns, "members"],
        "properties": {
            **{c: number(c, i) for c, i in household_columns.items()},
            "members": {"type": "array", "items": member, "minItems": 1, "maxItems": defaults.HOUSEHOLD_MAX_SIZE},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["households"],
        "properties": {"households": {"type": "array", "items": household}},
    }


def household_messages(
    project: HouseholdProject,
    conditions: list[dict],
    derived: list[dict],
    household_columns: dict[str, bool],
    person_columns: dict[str, bool],
    k: int,
    scenario: str,
    member_condition: str | None = None,
) -> list[dict]:
    """Messages asking for ``k`` distinct realistic households with their members meeting ``conditions``.

    ``conditions``: ``{"condition": expression, "must_hold": bool}`` (the household controls of one cell, in the
    control dialect, ``households.NP == 3``); ``member_condition``: a person condition at least one member must meet
    (``persons.OSUTAG == 2``); ``derived``: how derived columns follow from the members. The project's rules are
    listed. Every user-supplied string is JSON data inside the ``<data>`` block.
    """
    payload = {
        "task": TASK,
        "k": k,
        "population": project.name,
        "scenario": scenario,
        "conditions": conditions,
        "member_condition": member_condition,
        "rules": [{"name": r.name, "unit": r.unit, "condition": r.expression} for r in project.rules],
        "derived_columns": derived,
        "household_columns": [{"name": c, "integer": i} for c, i in household_columns.items()],
        "person_columns": [{"name": c, "integer": i} for c, i in person_columns.items()],
        "max_members": defaults.HOUSEHOLD_MAX_SIZE,
    }
    user = (
        f"Task: write exactly {k} distinct, realistic households of this population, each with all its members "
        "(the head first). Every household, with the derived columns computed from its members as described, "
        "must meet each condition whose must_hold is true and fail each whose must_hold is false, have at least one "
        "member meeting member_condition when one is given, and break none of the rules (conditions are written "
        "over households.<column> and persons.<column>). Give the household columns that are not derived, "
        "and every person column for each member; numbers are JSON numbers (whole numbers where integer is true)."
        + (f"\nScenario: {json.dumps(scenario, ensure_ascii=False)}" if scenario else "")
        + '\n\nOutput: {"households": [{"<household column>": value, ..., "members": [{"<person column>": value, '
        "...}, ...]}, ...]}\n" + data_block(payload)
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _read_households(
    reply,
    household_columns: dict[str, bool],
    person_columns: dict[str, bool],
    nullable: frozenset[str],
    rejected: Counter,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The well-formed households of one reply: (households, persons with ``_household`` and ``per_num``);
    malformed ones counted in ``rejected``."""
    rows: list[dict] = []
    members: list[dict] = []
    for item in (reply or {}).get("households", []) if isinstance(reply, dict) else []:
        people = item.get("members") if isinstance(item, dict) else None
        if not isinstance(people, list) or not 1 <= len(people) <= defaults.HOUSEHOLD_MAX_SIZE:
            rejected["household: no members or too many"] += 1
            continue
        try:
            row = {c: _number(item[c], i, c in nullable) for c, i in household_columns.items()}
            mates = [{c: _number(p[c], i, c in nullable) for c, i in person_columns.items()} for p in people]
        except (KeyError, TypeError, ValueError):
            rejected["household: a column missing or not a number"] += 1
            continue
        for number, mate in enumerate(mates, start=1):
            mate.update({"_household": len(rows), POOL_PERSON_NUMBER: number})
        rows.append(row)
        members += mates
    households = pd.DataFrame(rows, columns=list(household_columns))
    persons = pd.DataFrame(members, columns=[*person_columns, "_household", POOL_PERSON_NUMBER])
    return households, persons


def _number(value, integer: bool, nullable: bool = False) -> float:
    """A finite JSON number (a whole one where ``integer``; null as NaN where ``nullable``); anything else raises
    ValueError."""
    if value is None and nullable:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r}")
    if integer and value != int(value):
        raise ValueError(f"not a whole number: {value!r}")
    return float(value)


def llm_households(
    project: HouseholdProject,
    rng: np.random.Generator,
    settings: LLMSettings,
    api_key: str | None = None,
    fallback: bool = True,
) -> tuple[HouseholdProject, dict, LLMClient]:
    """The project whose seed holds candidate households written by an LLM (see the module docstring).

    Parameters
    ----------
    project : HouseholdProject
        As loaded; its seed sample gives column names, whole-number columns and derivations (as for ``maxent``).
    rng : numpy Generator
    settings : LLMSettings
        ``distinct_records``: households asked for in all; ``records_per_call``: per call.
    api_key : str, optional
    fallback : bool
        Keep the ``maxent`` candidates the LLM did not replace (default); else drop them.

    Returns
    -------
    (HouseholdProject, dict, LLMClient)
        The project with the candidates (households carry ``_prior``: "llm" or "maxent"), notes for the report
        (``llm``: households asked, written, valid, rejected by reason, calls and failures; ``candidates`` by prior),
        and the client (its ``calls`` and ``usage``).

    Raises
    ------
    PriorError
        Without the fallback, when the LLM wrote no valid household at all.
    TargetValidationError
        When ``maxent`` cannot serve the project (see :func:`maxent_households`).
    """
    candidates, notes = maxent_households(project, rng)
    sample = candidates.seed
    households, persons = sample.households.copy(), sample.persons.copy()
    derived = list(candidates.derived)
    derived_names = {d.column for d in derived}
    fixed = {POOL_ID, sample.weight, sample.seed_level, PRIOR_COLUMN}
    household_columns = {
        c: is_integer_column(project.seed.households, c) for c in households.columns if c not in fixed | derived_names
    }
    person_columns = {
        c: is_integer_column(project.seed.persons, c)
        for c in persons.columns
        if c not in {POOL_ID, POOL_PERSON_NUMBER, "_household"}
    }
    nullable = frozenset(
        c
        for frame in (project.seed.households, project.seed.persons)
        for c in frame.columns
        if c in household_columns or c in person_columns
        if frame[c].isna().any()
    )
    total = project.total_control
    cell_controls = [c for c in candidates.controls if c.unit == HOUSEHOLDS and c.name != total]
    signature = (
        np.column_stack([c.incidence > 0 for c in cell_controls])
        if cell_controls
        else np.zeros((len(households), 0), dtype=bool)
    )
    cells, cell_of = np.unique(signature, axis=0, return_inverse=True)
    cell_of = cell_of.reshape(-1)
    sizes = np.bincount(cell_of, minlength=len(cells))
    # households asked per cell: the cell's share of distinct_records (a cell expecting less than half a household
    # is not asked: its maxent candidates stay), so calls do not grow with N or with rare cells
    # distinct_records shared: half for the region's typical households (no condition); a quarter at most for
    # households with a member in each person control's category (at most HOUSEHOLD_CONCENTRATED_SHARE each); the
    # rest for the cells, by their candidates
    typical = settings.distinct_records // 2
    person_controls = [c for c in candidates.controls if c.unit != HOUSEHOLDS]
    per_person_control = min(
        int(round(settings.distinct_records * defaults.HOUSEHOLD_CONCENTRATED_SHARE)),
        (settings.distinct_records // 4) // max(len(person_controls), 1),
    )
    for_cells = max(settings.distinct_records - typical - per_person_control * len(person_controls), 0)
    wanted = np.round(sizes * min(1.0, for_cells / max(len(households), 1)))
    derived_text = [
        {"column": d.column, "is": d.how}
        | ({"of_members_meeting": d.expression} if d.expression else {})
        | ({"of_head_column": d.source} if d.source else {})
        for d in derived
    ]
    client = LLMClient(settings, api_key)
    schema = household_schema(household_columns, person_columns, nullable)
    # households with a member in each person control's category (a student, an occupation): what balancing needs
    # to reach zones far from the average mix of persons, as maxent's concentrated candidates
    chunks = []  # (cell; -1: typical households; -2 - j: a member meets person control j), messages, key, k)
    for j, control in enumerate(person_controls):
        for start in range(0, per_person_control, settings.records_per_call):
            n = min(settings.records_per_call, per_person_control - start)
            messages = household_messages(
                project, [], derived_text, household_columns, person_columns, n, settings.scenario, control.expression
            )
            chunks.append((-2 - j, messages, client._occurrence(TASK, messages, schema), n))
    for cell, k in [(-1, typical), *enumerate(wanted.astype(int).tolist())]:
        conditions = (
            [{"condition": c.expression, "must_hold": bool(held)} for c, held in zip(cell_controls, cells[cell])]
            if cell >= 0
            else []
        )
        for start in range(0, k, settings.records_per_call):  # k = 0: no call
            n = min(settings.records_per_call, k - start)
            messages = household_messages(
                project, conditions, derived_text, household_columns, person_columns, n, settings.scenario
            )
            chunks.append((cell, messages, client._occurrence(TASK, messages, schema), n))

    def ask(chunk):
        cell, messages, key, n = chunk
        try:
            return client.call_json(TASK, messages, schema, "households", key)
        except PriorError:  # budget spent or endpoint gone: this chunk gets nothing, the fallback stays
            return None

    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        replies = list(pool.map(ask, chunks))

    rejected: Counter = Counter()
    written = valid = 0
    new_households, new_persons = [], []
    typical_households: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    taken: set[int] = set()
    order = rng.permutation(len(households))  # which candidates of a cell the LLM's households replace
    free = {cell: [int(i) for i in order if cell_of[i] == cell] for cell in range(len(cells))}
    for (cell, _, _, _), reply in zip(chunks, replies):
        items = reply.get("households") if isinstance(reply, dict) else None
        written += len(items) if isinstance(items, list) else 0
        got, members = _read_households(reply, household_columns, person_columns, nullable, rejected)
        if not len(got):
            continue
        derive_household_columns(got, members, derived)
        held_here = (
            np.column_stack(
                [
                    np.asarray(compile_condition(c.expression, HOUSEHOLDS, got.columns, c.name)(got), dtype=bool)
                    for c in cell_controls
                ]
            )
            if cell_controls
            else np.zeros((len(got), 0), dtype=bool)
        )
        if cell >= 0:
            meets = (held_here == cells[cell][None, :]).all(axis=1)
            reason = "household: does not meet its cell's conditions"
        else:  # a typical household must fall in a cell the controls define (one category of each)
            meets = (held_here[:, None, :] == cells[None, :, :]).all(axis=2).any(axis=1)
            reason = "household: falls in no cell the controls define"
            if cell <= -2:  # ... and have a member meeting its person control
                control = person_controls[-2 - cell]
                test = compile_condition(control.expression, control.unit, members.columns, control.name)
                hit = np.asarray(test(members), dtype=bool)
                has = np.bincount(members["_household"].to_numpy()[hit], minlength=len(got)) > 0
                if (meets & ~has).any():
                    rejected["household: no member meets the person condition"] += int((meets & ~has).sum())
                meets &= has
        if (~meets).any():
            rejected[reason] += int((~meets).sum())
        for rule in project.rules:  # a household breaking a rule, or with a member breaking one, is rejected
            frame = got if rule.unit == HOUSEHOLDS else members
            test = compile_condition(rule.expression, rule.unit, frame.columns, rule.name)
            known = frame[list(test.columns)].notna().all(axis=1).to_numpy()
            broken = ~np.asarray(test(frame), dtype=bool) & known
            if rule.unit != HOUSEHOLDS:
                broken = np.bincount(members["_household"].to_numpy()[broken], minlength=len(got)) > 0
            broken &= meets
            if broken.any():
                rejected[f"household: breaks {rule.name}"] += int(broken.sum())
                meets &= ~broken
        if cell < 0:  # typical households and those with a member in a person category: added to every seed zone
            for row in np.flatnonzero(meets):
                typical_households.append((got.iloc[[row]].copy(), members[members["_household"] == row].copy()))
            valid += int(meets.sum())
            continue
        for row in np.flatnonzero(meets):
            if not free[cell]:
                rejected["household: more than the cell's candidates"] += 1
                continue
            target = free[cell].pop()
            taken.add(target)
            household = got.iloc[[row]].copy()
            for column in (POOL_ID, sample.weight, sample.seed_level):
                household[column] = households.at[target, column]
            household[PRIOR_COLUMN] = "llm"
            mates = members[members["_household"] == row].copy()
            mates[POOL_ID] = households.at[target, POOL_ID]
            new_households.append(household)
            new_persons.append(mates)
            valid += 1
    if not valid and not fallback:
        raise PriorError(
            f"the LLM wrote no valid household ({written:,} written; rejected: {dict(rejected) or 'nothing'}; "
            f"failed calls: {dict(client.usage.failures) or 'none'})"
        )
    # typical households join every seed zone's candidates, weighted as that zone's candidates are
    next_id = int(households[POOL_ID].max()) + 1
    for zone, weight in households.groupby(sample.seed_level, sort=True)[sample.weight].mean().items():
        for household, mates in typical_households:
            household = household.assign(
                **{POOL_ID: next_id, sample.weight: weight, sample.seed_level: zone, PRIOR_COLUMN: "llm"}
            )
            new_households.append(household)
            new_persons.append(mates.assign(**{POOL_ID: next_id}))
            next_id += 1
    keep = np.array([i not in taken for i in range(len(households))]) if fallback else np.zeros(len(households), bool)
    kept = households[keep].assign(**{PRIOR_COLUMN: "maxent"})
    kept_persons = persons[persons[POOL_ID].isin(kept[POOL_ID])]
    all_households = pd.concat([kept, *new_households], ignore_index=True).sort_values(POOL_ID, kind="stable")
    all_households = all_households.reset_index(drop=True)
    all_persons = pd.concat(
        [kept_persons.drop(columns="_household"), *[m.drop(columns="_household") for m in new_persons]]
    )
    row_of = pd.Series(np.arange(len(all_households)), index=all_households[POOL_ID].to_numpy())
    all_persons = all_persons.sort_values([POOL_ID, POOL_PERSON_NUMBER], kind="stable").reset_index(drop=True)
    all_persons["_household"] = row_of.loc[all_persons[POOL_ID].to_numpy()].to_numpy().astype(np.int64)
    for frame, source in ((all_households, project.seed.households), (all_persons, project.seed.persons)):
        for column in frame.columns:
            if column in source.columns and is_integer_column(source, column) and column != sample.weight:
                if frame[column].notna().all():
                    frame[column] = frame[column].astype(np.int64)
    result = SeedSample(all_households, all_persons, POOL_ID, POOL_PERSON_NUMBER, sample.weight, sample.seed_level)
    controls = [with_incidence(c, result) for c in candidates.controls]
    by_prior = all_households[PRIOR_COLUMN].value_counts().to_dict()
    notes = {
        **notes,
        "candidates": int(len(all_households)),
        "candidate_persons": int(len(all_persons)),
        "llm": {
            "cells": int(len(cells)),
            "households_asked": int(wanted.sum()) + typical + per_person_control * len(person_controls),
            "households_written": int(written),
            "households_valid": int(valid),
            "rejected": dict(rejected),
            "calls": client.usage.calls,
            "failures": dict(client.usage.failures),
            "prompt_tokens": client.usage.prompt_tokens,
            "completion_tokens": client.usage.completion_tokens,
            "fallback": fallback,
        },
        "candidates_by_prior": {k: int(v) for k, v in by_prior.items()},
    }
    return replace(candidates, seed=result, controls=controls), notes, client
