"""The LLM prior of households: whole households with their members, written by an LLM (issue 13, issue 20).

The paper (§5.5) synthesizes households of 2-5 persons but never says how a proposal for a multi-person household
is written; here, in the loop (:class:`LLMHouseholdPrior`, a :class:`~synthor_core.priors.base.HouseholdPrior`):

1. **Support.** ``maxent`` builds its candidate households (:class:`~synthor_core.priors.households.HouseholdMaxEnt`);
   they fix the cells (which household controls each candidate meets). Most of ``LLMSettings.distinct_records`` is
   asked with no condition: the region's typical households, as common as the model thinks they are; each valid one
   (it must fall in some cell) joins every block beside maxent's candidates, so that balancing can weigh the joint of
   the columns no control crosses (size with the head's age, income with workers) as the model writes it, not as
   maxent's independence has it. Households with a member in each person control's category (a student, an
   occupation; at most a quarter of ``distinct_records``, at most 5 % each) join every block too, as maxent's
   concentrated candidates. ``HOUSEHOLD_PROPOSAL_RESERVE`` of ``distinct_records`` is kept for the proposals.
2. **Proposals** come from the loop's largest residuals (control-zone pairs worst off after balancing): each asks the
   LLM for households meeting that control (the condition quoted as data, with ``must_hold``) in that zone; the
   reserve is spent this way, in chunks of ``records_per_call``, so calls do not grow with N.
   What the LLM does not write is realized by the run's fallback (``maxent``).
3. The reply's JSON schema is generated from the project: the household columns the controls read (derived ones
   left out), and an array ``members`` of person records. Derived columns (size, workers, the head's age) are
   computed from the members, never asked for. Every household is validated: numbers where numbers belong, 1 to
   ``HOUSEHOLD_MAX_SIZE`` members, the conditions recomputed on the household and its derived columns (a typical
   household must fall in some cell the controls define), the member condition, and the project's ``[[rules]]`` (a
   household breaking one, or with a member breaking one, is rejected; an unknown value breaks nothing).

Counts for the report: households asked, written, valid, rejected by reason, the control-zone pairs targeted, and
the calls' failures by kind (:class:`~synthor_core.priors.llm.LLMClient`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .. import defaults
from ..codebook import Domain
from ..errors import PriorError
from ..targets.model import HouseholdProject
from ..units import HOUSEHOLD_ROW, HOUSEHOLDS, MEMBER, MINED_PREFIX, PERSONS, Candidates, empty_candidates
from .base import HouseholdGuidance, HouseholdProposal, PriorBase, plan_from_gaps
from .households import HouseholdMaxEnt, is_integer_column
from .llm import LLMClient, LLMSettings
from .prompts import SYSTEM, data_block

TASK = "realize_households"


def household_schema(
    household_columns: dict[str, bool],
    person_columns: dict[str, bool],
    nullable: frozenset[str] = frozenset(),
    domains: dict[str, Domain] | None = None,
) -> dict:
    """JSON schema (strict) of a household reply: ``{"households": [{<household columns>, "members": [...]}]}``.

    ``household_columns`` / ``person_columns``: column -> whether it holds whole numbers; ``nullable``: columns that
    may be null (the sample leaves them empty for some units: ACS's ESR for children); ``domains``: column -> its
    :class:`~synthor_core.codebook.Domain` (codes as an ``enum``, a range as ``minimum``/``maximum``), so a
    grammar-constrained model cannot write an invented code.
    """

    def number(column: str, integer: bool) -> dict:
        kind: dict = {"type": "integer" if integer else "number"}
        domain = (domains or {}).get(column)
        if domain is not None and domain.codes is not None:
            kind = {"enum": [int(c) if float(c).is_integer() else c for c in domain.codes]}
        elif domain is not None:
            kind |= {"minimum": _plain_number(domain.low), "maximum": _plain_number(domain.high)}
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


def exactly(schema: dict, n: int) -> dict:
    """A household reply's schema asking for exactly ``n`` households (``minItems``, ``maxItems``)."""
    households = {**schema["properties"]["households"], "minItems": int(n), "maxItems": int(n)}
    return {**schema, "properties": {**schema["properties"], "households": households}}


TOKENS_PER_VALUE = 10  # a value written in a JSON reply with its key and indentation (SmolLM2: 793 tokens for 84)
CHARACTERS_PER_TOKEN = 4  # of a prompt
MEMBERS_PER_HOUSEHOLD = 2.5  # for an estimate of a reply's length


def planned_calls(project: HouseholdProject, settings: LLMSettings) -> tuple[int, int]:
    """``(calls, tokens per call)`` of the LLM household prior on ``project``, for the estimate before a run: the
    ``distinct_records`` households in calls of ``records_per_call`` (every partition shares them); the prompt's
    characters over ``CHARACTERS_PER_TOKEN``, and ``TOKENS_PER_VALUE`` per value written (households of
    ``MEMBERS_PER_HOUSEHOLD`` members). A rough figure, not a bound."""
    household = project.record_columns(HOUSEHOLDS)
    person = project.record_columns(PERSONS)
    k = min(settings.records_per_call, settings.distinct_records)
    prompt = household_messages(
        project,
        [],
        [],
        dict.fromkeys(household, True),
        dict.fromkeys(person, True),
        k,
        settings.scenario,
        domains={column: domain for (_, column), domain in project.codebook.items()},
    )
    reading = sum(len(m["content"]) for m in prompt) // CHARACTERS_PER_TOKEN
    writing = int(k * (len(household) + MEMBERS_PER_HOUSEHOLD * len(person)) * TOKENS_PER_VALUE)
    return math.ceil(settings.distinct_records / max(settings.records_per_call, 1)), reading + writing


def household_messages(
    project: HouseholdProject,
    conditions: list[dict],
    derived: list[dict],
    household_columns: dict[str, bool],
    person_columns: dict[str, bool],
    k: int,
    scenario: str,
    member_condition: str | None = None,
    domains: dict[str, Domain] | None = None,
) -> list[dict]:
    """Messages asking for ``k`` distinct realistic households with their members meeting ``conditions``.

    ``conditions``: ``{"condition": expression, "must_hold": bool}`` (the household controls of one cell, in the
    control dialect, ``households.NP == 3``); ``member_condition``: a person condition at least one member must meet
    (``persons.OSUTAG == 2``); ``derived``: how derived columns follow from the members. The project's rules are
    listed (those found on the sample: only the members' ones, as short implications; the household ones are
    checked on the reply, not sent, to keep the prompt short), and each column's values (``domains``: the codes or
    range of the codebook). Every user-supplied string is JSON data inside the ``<data>`` block.
    """
    payload = {
        "task": TASK,
        "k": k,
        "population": project.name,
        "scenario": scenario,
        "conditions": conditions,
        "member_condition": member_condition,
        "rules": [{"name": r.name, "unit": r.unit, "condition": r.expression} for r in project.rules if not r.mined],
        "member_implications": _implications(project),
        "derived_columns": derived,
        "household_columns": [_column_text(c, i, domains) for c, i in household_columns.items()],
        "person_columns": [_column_text(c, i, domains) for c, i in person_columns.items()],
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
            mate.update({HOUSEHOLD_ROW: len(rows), MEMBER: number})
        rows.append(row)
        members += mates
    households = pd.DataFrame(rows, columns=list(household_columns))
    persons = pd.DataFrame(members, columns=[*person_columns, HOUSEHOLD_ROW, MEMBER])
    return households, persons


def _implications(project: HouseholdProject) -> dict[str, list[str]]:
    """The members' rules found on the sample, short: ``{"ESR empty": ["persons.OCCP.isin([999])", ...]}``."""
    out: dict[str, list[str]] = {}
    for r in project.rules:
        if r.mined and r.unit == PERSONS:
            given = r.name.removeprefix(MINED_PREFIX).split(" -> ")[0]
            out.setdefault(given, []).append(r.expression.split(") | ", 1)[-1])
    return out


def _column_text(column: str, integer: bool, domains: dict[str, Domain] | None) -> dict:
    """A column as the prompt lists it: name, whole numbers or not, and its values when the codebook has them."""
    domain = (domains or {}).get(column)
    return {"name": column, "integer": integer} | ({"values": domain.describe()} if domain is not None else {})


def _plain_number(value: float) -> float | int:
    """A whole float as an int (JSON ``3``, not ``3.0``)."""
    return int(value) if float(value).is_integer() else float(value)


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


class LLMHouseholdPrior(PriorBase):
    """The LLM prior of households (see the module docstring).

    Parameters
    ----------
    project : HouseholdProject
        Its sample gives column names, whole-number columns, empty-value columns and derivations (as for
        ``maxent``); no sample record is sent.
    settings : LLMSettings
        ``distinct_records``: households asked for in all; ``records_per_call``: per call.
    api_key : str, optional
    maxent : HouseholdMaxEnt, optional
        The candidates the support starts from (built from the project when not given).

    Raises
    ------
    TargetValidationError
        When ``maxent`` cannot serve the project.
    """

    name = "llm"

    def __init__(
        self,
        project: HouseholdProject,
        settings: LLMSettings,
        api_key: str | None = None,
        maxent: HouseholdMaxEnt | None = None,
    ):
        super().__init__()
        self.project, self.settings = project, settings
        self.client = LLMClient(settings, api_key)
        self.usage = self.client.usage
        self.maxent = maxent or HouseholdMaxEnt(project)
        sample, derived = project.sample, self.maxent.layout.derived
        layout_columns = self.maxent.layout.columns
        fixed = {sample.household_id, sample.weight, sample.seed_level}
        self.household_columns = {
            col: is_integer_column(sample.households, col)
            for (unit, col) in layout_columns
            if unit == HOUSEHOLDS and col not in fixed and col not in derived
        }
        codebook = self.maxent.layout.codebook
        for unit, col in codebook:  # every column the records have (issue 21), not only those the controls read
            if unit == HOUSEHOLDS and col not in fixed and col not in derived and col not in self.household_columns:
                self.household_columns[col] = is_integer_column(sample.households, col)
        person_columns = [col for (unit, col) in layout_columns if unit != HOUSEHOLDS]
        person_columns += [col for (unit, col) in codebook if unit != HOUSEHOLDS]
        person_columns += [d.source for d in derived.values() if d.source]
        person_columns += [c for d in derived.values() if d.condition is not None for c in d.condition.columns]
        self.person_columns = {c: is_integer_column(sample.persons, c) for c in dict.fromkeys(person_columns)}
        self.nullable = frozenset(
            c
            for frame in (sample.households, sample.persons)
            for c in frame.columns
            if (c in self.household_columns or c in self.person_columns) and frame[c].isna().any()
        )
        self.domains = {
            unit: {col: d for (u, col), d in codebook.items() if u == unit} for unit in (HOUSEHOLDS, PERSONS)
        }
        self.schema = household_schema(
            self.household_columns,
            self.person_columns,
            self.nullable,
            {**self.domains[HOUSEHOLDS], **self.domains[PERSONS]},
        )
        self.derived_text = [
            {"column": d.column, "is": d.how}
            | ({"of_members_meeting": d.expression} if d.expression else {})
            | ({"of_head_column": d.source} if d.source else {})
            for d in derived.values()
        ]
        self.cell_controls = [c for c in project.controls if c.unit == HOUSEHOLDS and c.name != project.total_control]
        self.person_controls = [c for c in project.controls if c.unit != HOUSEHOLDS]
        self.asked = self.written = self.valid = 0
        self.rejected: Counter = Counter()
        self.targeted: list[str] = []

    # ------------------------------------------------------------------------------------------------- contract
    @property
    def calls(self) -> list:
        return self.client.calls

    @property
    def notes(self) -> list[str]:
        return self.client.notes + self.maxent.notes

    def dollars(self) -> float | None:
        return self.client.dollars()

    def report(self) -> dict:
        """``llm``: households asked, written, valid, rejected by reason, calls, failures and tokens, and the
        control-zone pairs its proposals targeted; ``maxent``: the candidates it started from."""
        usage = self.client.usage
        return {
            "maxent": self.maxent.report(),
            "llm": {
                "households_asked": self.asked,
                "households_written": self.written,
                "households_valid": self.valid,
                "rejected": dict(self.rejected),
                "targeted": list(self.targeted),
                "calls": usage.calls,
                "failures": dict(usage.failures),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
        }

    def support(self, rng: np.random.Generator) -> Candidates:
        """``maxent``'s candidates, joined in every block by the typical households the LLM writes and by households
        with a member in each person control's category, each weighted as the block's candidates on average.

        ``distinct_records`` is shared: ``HOUSEHOLD_PROPOSAL_RESERVE`` kept for the loop's proposals; at most a
        quarter for the person controls (``HOUSEHOLD_CONCENTRATED_SHARE`` each); the rest for typical households.
        Typical households join rather than replace maxent's: replacing one candidate of their cell each gave a mean
        TVD against the sample of 0.177 on CALM, joining 0.160 (``benchmarks/one_engine.py``).
        """
        pool = self.maxent.support(rng)
        distinct = self.settings.distinct_records
        per_person_control = min(
            int(round(distinct * defaults.HOUSEHOLD_CONCENTRATED_SHARE)),
            (distinct // 4) // max(len(self.person_controls), 1),
        )
        # the loop's proposals need few households (balancing meets most controls with the support): a reserve
        reserve = math.ceil(distinct * defaults.HOUSEHOLD_PROPOSAL_RESERVE)
        typical = max(distinct - reserve - per_person_control * len(self.person_controls), 0)
        requests: list[tuple[list[dict], str | None, int]] = [([], None, typical)]
        requests += [([], c.expression, per_person_control) for c in self.person_controls]
        for part in self._ask(requests, must_fall_in_a_cell=True):
            pool = pool.concat(self._in_every_block(part, pool))
        return pool

    def plan(self, guidance: HouseholdGuidance, rng: np.random.Generator) -> list[HouseholdProposal]:
        """One proposal per under-reached control-zone pair (:func:`~synthor_core.priors.base.plan_from_gaps`)."""
        return plan_from_gaps(guidance)

    def realize(self, proposal: HouseholdProposal, k: int, rng: np.random.Generator) -> Candidates:
        return self.realize_batch([(proposal, k)], rng, lambda: False)[0]

    def realize_batch(self, requests, rng: np.random.Generator, should_stop) -> list[Candidates]:
        """Households meeting each proposal's control, at most ``k`` each and what is left of ``distinct_records``
        in all, asked in parallel; each list item holds the valid ones, in the proposal's block."""
        self.client._should_stop = should_stop
        asks: list[tuple[list[dict], str | None, int]] = []
        owners = []
        left = max(self.settings.distinct_records - self.asked, 0)
        for i, (proposal, k) in enumerate(requests):
            n = min(k, left)
            if n <= 0:
                continue
            left -= n
            control = next(c for c in self.project.controls if c.name == proposal.control)
            self.targeted.append(f"{proposal.control} in {proposal.level} {proposal.zone}")
            if control.unit == HOUSEHOLDS:
                asks.append(([{"condition": control.expression, "must_hold": True}], None, n))
            else:
                asks.append(([], control.expression, n))
            owners.append(i)
        answers = self._ask(asks, must_fall_in_a_cell=False) if asks else []
        out = [empty_candidates(self.project.sample.household_id) for _ in requests]
        for i, got in zip(owners, answers):
            proposal = requests[i][0]
            if len(got):
                out[i] = _placed(got, proposal.block, proposal.count / len(got), self.project)
        return out

    def _reply_tokens(self, n: int) -> int:
        """The bound of a reply of ``n`` households: the longest valid one, ``TOKENS_PER_VALUE`` per value of
        households of ``HOUSEHOLD_MAX_SIZE`` members, at most the settings' ``max_tokens``. A small model may
        otherwise write until ``max_tokens`` (SmolLM2-135M: 4,096 tokens, 200 s on 2 cores, for 2 households asked;
        it writes 20 members to a household when the schema allows 20, 793 tokens)."""
        values = len(self.household_columns) + defaults.HOUSEHOLD_MAX_SIZE * len(self.person_columns)
        return min(self.settings.max_tokens, n * values * TOKENS_PER_VALUE + 64)

    # ------------------------------------------------------------------------------------------------- asking
    def _ask(self, requests: list[tuple[list[dict], str | None, int]], must_fall_in_a_cell: bool) -> list[Candidates]:
        """Ask for ``(conditions, member condition, k)`` households each (chunks of ``records_per_call`` calls, in
        parallel); the valid households of each request (block 0, weight 1: placed by the caller)."""
        chunks = []
        for r, (conditions, member, k) in enumerate(requests):
            self.asked += k
            for start in range(0, k, self.settings.records_per_call):
                n = min(self.settings.records_per_call, k - start)
                messages = household_messages(
                    self.project,
                    conditions,
                    self.derived_text,
                    self.household_columns,
                    self.person_columns,
                    n,
                    self.settings.scenario,
                    member,
                    {**self.domains[HOUSEHOLDS], **self.domains[PERSONS]},
                )
                schema = exactly(self.schema, n)
                chunks.append((r, messages, self.client._occurrence(TASK, messages, schema), schema, n))

        def ask(chunk):
            _, messages, key, schema, n = chunk
            try:
                reply = self.client.call_json(
                    TASK, messages, schema, "households", key, max_tokens=self._reply_tokens(n)
                )
            except PriorError:  # budget spent or endpoint gone: this chunk gets nothing, the fallback realizes
                return None
            if reply is not None and isinstance(reply.get("households"), list):  # never more than asked
                reply = {**reply, "households": reply["households"][:n]}
            return reply

        with ThreadPoolExecutor(max_workers=self.settings.concurrency) as threads:
            replies = list(threads.map(ask, chunks))
        parts: list[list[Candidates]] = [[] for _ in requests]
        for (r, *_), reply in zip(chunks, replies):
            conditions, member, _ = requests[r]
            parts[r].append(self._valid(reply, conditions, member, must_fall_in_a_cell))
        out = []
        for found in parts:
            merged = empty_candidates(self.project.sample.household_id)
            for part in found:
                merged = merged.concat(part)
            out.append(merged)
        return out

    def _valid(self, reply, conditions: list[dict], member: str | None, must_fall_in_a_cell: bool) -> Candidates:
        """The households of one reply that meet the request and break no rule (the rest counted by reason)."""
        items = reply.get("households") if isinstance(reply, dict) else None
        self.written += len(items) if isinstance(items, list) else 0
        got, members = _read_households(
            reply, self.household_columns, self.person_columns, self.nullable, self.rejected
        )
        if not len(got):
            return empty_candidates(self.project.sample.household_id)
        for d in self.maxent.layout.derived.values():
            got[d.column] = d.values(members, len(got))
        meets = np.ones(len(got), dtype=bool)
        held = (
            np.column_stack([c.condition(got) for c in self.cell_controls])
            if self.cell_controls
            else np.zeros((len(got), 0), dtype=bool)
        )
        if conditions:  # each condition holds or not, as asked
            position = {c.expression: i for i, c in enumerate(self.cell_controls)}
            for x in conditions:
                if x["condition"] in position:
                    meets &= held[:, position[x["condition"]]] == bool(x["must_hold"])
            self._reject(meets, np.ones(len(got), dtype=bool), "household: does not meet its conditions")
        if must_fall_in_a_cell:  # one category of each household column the controls cut
            before = meets.copy()
            for column in dict.fromkeys(c.columns[0] for c in self.cell_controls if len(c.columns) == 1):
                on_it = [i for i, c in enumerate(self.cell_controls) if c.columns == (column,)]
                meets &= held[:, on_it].sum(axis=1) >= 1
            self._reject(meets, before, "household: falls in no cell the controls define")
        if member is not None:
            control = next(c for c in self.person_controls if c.expression == member)
            hit = control.condition(members)
            has = np.bincount(members[HOUSEHOLD_ROW].to_numpy()[hit], minlength=len(got)) > 0
            before = meets.copy()
            meets &= has
            self._reject(meets, before, "household: no member meets the person condition")
        for unit, frame in ((HOUSEHOLDS, got), (PERSONS, members)):  # a value outside its column's domain
            for col, domain in self.domains[unit].items():
                if col not in frame.columns:
                    continue
                outside = ~domain.inside(frame[col].to_numpy())
                if unit == PERSONS:
                    outside = np.bincount(members[HOUSEHOLD_ROW].to_numpy()[outside], minlength=len(got)) > 0
                before = meets.copy()
                meets &= ~outside
                self._reject(meets, before, f"household: {col} outside its domain ({domain.describe()})")
        for rule in self.project.rules:  # a household breaking a rule, or with a member breaking one, is rejected
            frame = got if rule.unit == HOUSEHOLDS else members
            broken = rule.broken(frame)
            if rule.unit != HOUSEHOLDS:
                broken = np.bincount(members[HOUSEHOLD_ROW].to_numpy()[broken], minlength=len(got)) > 0
            before = meets.copy()
            meets &= ~broken
            self._reject(meets, before, f"household: breaks {rule.name}")
        self.valid += int(meets.sum())
        rows = np.flatnonzero(meets)
        candidates = Candidates(
            got,
            members,
            np.zeros(len(got), dtype=np.int64),
            np.ones(len(got)),
            np.full(len(got), self.name, dtype=object),
            self.project.sample.household_id,
            np.zeros(len(got), dtype=bool),
        )
        return candidates.take(rows)

    def _reject(self, meets: np.ndarray, before: np.ndarray, reason: str) -> None:
        lost = int((before & ~meets).sum())
        if lost:
            self.rejected[reason] += lost

    # ------------------------------------------------------------------------------------------------- placing
    def _in_every_block(self, households: Candidates, pool: Candidates) -> Candidates:
        """The households in every block of the pool, each weighted as that block's candidates on average."""
        if not len(households) or not len(pool):
            return empty_candidates(self.project.sample.household_id)
        blocks = np.unique(pool.block)
        mean = {int(b): float(pool.weight[pool.block == b].mean()) for b in blocks}
        rows = np.tile(np.arange(len(households)), blocks.size)
        copies = _copies(households, rows, self.project)
        which = np.repeat(blocks, len(households))
        return _with_blocks(copies, which, np.array([mean[int(b)] for b in which]))


def _copies(households: Candidates, rows: np.ndarray, project: HouseholdProject) -> Candidates:
    """``households`` at ``rows`` (repeats allowed), with their members."""
    members = households.persons
    owner = members[HOUSEHOLD_ROW].to_numpy()
    by_owner = [np.flatnonzero(owner == i) for i in range(len(households))]
    picked = np.concatenate([by_owner[r] for r in rows]) if rows.size else np.zeros(0, np.int64)
    new_owner = np.repeat(np.arange(rows.size), [by_owner[r].size for r in rows])
    persons = members.iloc[picked].assign(**{HOUSEHOLD_ROW: new_owner}).reset_index(drop=True)
    return Candidates(
        households.households.iloc[rows].reset_index(drop=True),
        persons,
        households.block[rows],
        households.weight[rows],
        households.source[rows],
        households.household_id,
        households._sample()[rows],
    )


def _with_blocks(candidates: Candidates, blocks: np.ndarray, weights: np.ndarray) -> Candidates:
    return Candidates(
        candidates.households,
        candidates.persons,
        blocks.astype(np.int64),
        weights.astype(np.float64),
        candidates.source,
        candidates.household_id,
        candidates._sample(),
    )


def _placed(candidates: Candidates, block: int, weight: float, project: HouseholdProject) -> Candidates:
    """Candidates in ``block`` with the sample-level zone and weight columns set."""
    sample = project.sample
    households = candidates.households.assign(
        **{sample.seed_level: project.geography.zones(sample.seed_level)[block], sample.weight: weight}
    )
    return Candidates(
        households,
        candidates.persons,
        np.full(len(candidates), block, dtype=np.int64),
        np.full(len(candidates), weight),
        candidates.source,
        candidates.household_id,
        candidates._sample(),
    )
