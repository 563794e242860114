"""The codebook of a household project: each column's domain, and the rules a sample's support implies (DESIGN §8
"complete records").

A synthetic record is usable micro-data only when every variable of every unit has a value inside its domain and the
variables agree with each other the way real records do (a child has no employment status, an employed person has an
occupation). Two things say what "inside" and "agree" mean:

- a :class:`Domain` per column: the codes it takes (``ESR`` 1-6 or empty), or the range of its values (``AGEP``
  whole numbers 0-94), and whether it may be empty. For a PopulationSim import it is read from the sample
  (:func:`sample_codebook`): the codes and ranges the sample uses, never a record or a weight;
- rules (:class:`~synthor_core.units.HouseholdRule`): the project's own, and for a PopulationSim import the
  implications that hold for every sample record (:func:`mine_rules`: "a person whose ``ESR`` is empty is aged 0 to
  15", "a person with ``OCCP`` 1 has ``ESR`` 1, 2 or 4", "a householder is 17 or older"). They are written in the
  table dialect, so a converted project lists them for review, and the priors that build records without copying
  the sample (``maxent``, the LLM's fallback) draw every value among those the rules allow.

A rule found on the sample is an observation, not a law: only a value (or empty) met by at least
``defaults.RULE_MIN_SUPPORT`` sample units gives a rule, and only a sample with at least ``defaults.RULE_MIN_SAMPLE``
units of the kind (households, persons) gives rules about them, so a combination the sample is too small to show is
not forbidden by chance (PopulationSim's example_test, 61 households: none).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from . import defaults
from .expressions import compile_condition, expression_constants
from .units import HOUSEHOLDS, MEMBER, MINED_PREFIX, PERSONS, HouseholdRule, Sample


@dataclass(frozen=True)
class Domain:
    """The values one column may take.

    Attributes
    ----------
    column : str
    unit : {"households", "persons"}
    codes : tuple of float or None
        The codes of a coded column, ascending; None for a range.
    low, high : float
        Smallest and largest value (of the codes, or of the range); finite.
    integer : bool
        Whole numbers only.
    empty : bool
        Whether the column may be empty (the sample has empty values in it).
    """

    column: str
    unit: str
    codes: tuple[float, ...] | None
    low: float
    high: float
    integer: bool
    empty: bool

    def inside(self, values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Where ``values`` (float64-convertible, NaN for empty) lie in the domain; shape as ``values``."""
        v = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(dtype=np.float64)
        empty = np.isnan(v)
        if self.codes is not None:
            ok = np.isin(v, np.asarray(self.codes, dtype=np.float64))
        else:
            ok = (v >= self.low) & (v <= self.high)
            if self.integer:
                ok &= v == np.floor(v)
        return np.where(empty, self.empty, ok)

    def describe(self) -> str:
        """``codes 1, 2, 3, 4, 6 or empty`` / ``whole numbers 0 to 94``, for reports and messages."""
        tail = " or empty" if self.empty else ""
        if self.codes is not None:
            return "codes " + ", ".join(_text(c) for c in self.codes) + tail
        kind = "whole numbers" if self.integer else "numbers"
        return f"{kind} {_text(self.low)} to {_text(self.high)}{tail}"


def _text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def column_domain(
    values: pd.Series, column: str, unit: str, max_codes: int = defaults.CODEBOOK_MAX_CODES
) -> Domain | None:
    """A column's domain from the values a sample uses: codes when they are whole numbers with at most ``max_codes``
    distinct values, else the range; None for a column without a number in it (text columns are not described).
    """
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    present = v[~np.isnan(v)]
    if present.size == 0 or np.isinf(present).any():
        return None
    integer = bool(np.all(present == np.floor(present)))
    distinct = np.unique(present)
    empty = bool(np.isnan(v).any())
    codes = tuple(float(c) for c in distinct) if integer and distinct.size <= max_codes else None
    return Domain(column, unit, codes, float(distinct[0]), float(distinct[-1]), integer, empty)


def sample_codebook(sample: Sample, household_columns, person_columns) -> dict[tuple[str, str], Domain]:
    """The domain of every listed household and person column, from the sample's codes and ranges.

    Parameters
    ----------
    sample : Sample
    household_columns, person_columns : iterable of str
        The columns the records must have (those the controls read, the output settings list, the derivations use);
        columns the sample lacks, or without numbers, are left out.

    Returns
    -------
    dict keyed by (unit, column).
    """
    out: dict[tuple[str, str], Domain] = {}
    for unit, frame, columns in (
        (HOUSEHOLDS, sample.households, household_columns),
        (PERSONS, sample.persons, person_columns),
    ):
        for column in columns:
            if column in frame.columns:
                domain = column_domain(frame[column], column, unit)
                if domain is not None:
                    out[(unit, column)] = domain
    return out


def widen(domain: Domain, conditions) -> Domain:
    """The domain widened so that each of ``conditions`` (compiled conditions on this one column: the controls with
    a positive total) holds for some value in it: the sample may lack a category the controls ask for (no household
    of 4 or more). A condition no value of the domain meets adds the value nearest to the domain among its
    constants and their whole neighbours that meet it (a code, or the range's new end)."""
    for condition in conditions:
        if domain.codes is not None:
            probes = np.asarray(domain.codes, dtype=np.float64)
        else:
            inner = [c for c in expression_constants(condition.expression) if domain.low <= c <= domain.high]
            probes = np.unique([domain.low, domain.high, *inner, *(np.asarray(inner) + 0.5)])
        if condition(pd.DataFrame({domain.column: probes})).any():
            continue
        candidates = {
            c + step
            for c in expression_constants(condition.expression)
            if np.isfinite(c)
            for step in ((-1.0, 0.0, 1.0) if domain.integer else (0.0,))
        }
        if domain.integer:
            candidates = {c for c in candidates if float(c).is_integer()}
        frame = pd.DataFrame({domain.column: sorted(candidates)})
        met = frame[domain.column].to_numpy()[condition(frame)] if len(frame) else np.zeros(0)
        if not met.size:
            continue
        value = float(met[np.argmin(np.minimum(np.abs(met - domain.low), np.abs(met - domain.high)))])
        codes = tuple(sorted({*domain.codes, value})) if domain.codes is not None else None
        domain = replace(domain, codes=codes, low=min(domain.low, value), high=max(domain.high, value))
    return domain


def widen_for_controls(codebook: dict[tuple[str, str], Domain], controls) -> dict[tuple[str, str], Domain]:
    """Every domain widened (:func:`widen`) for the controls with a positive total that count units by one column
    (``controls``: :class:`~synthor_core.targets.model.Control`; numeric controls and the total on the sample weight
    left out)."""
    asked: dict[tuple[str, str], list] = {}
    for c in controls:
        if len(c.columns) == 1 and c.total_of is None and not c.every_household and c.totals.sum() > 0:
            asked.setdefault((c.unit, c.columns[0]), []).append(c.condition)
    return {key: widen(domain, asked.get(key, [])) for key, domain in codebook.items()}


def _then(domain: Domain, values: npt.NDArray[np.float64], wide: Domain | None = None) -> str | None:
    """The condition "the column takes one of these values" in the table dialect, or None when it allows the whole
    domain (no rule needed). ``wide``: the domain widened for the controls (:func:`widen`); the values it adds,
    which the sample could not show, stay allowed."""
    col = f"{domain.unit}.{domain.column}"
    empty = bool(np.isnan(values).any())
    present = np.unique(values[~np.isnan(values)])
    if wide is not None and present.size:
        if domain.codes is not None and wide.codes is not None:
            present = np.union1d(present, np.setdiff1d(wide.codes, domain.codes))
        elif domain.codes is None:
            present = np.array(
                [
                    wide.low if present[0] <= domain.low else present[0],
                    wide.high if present[-1] >= domain.high else present[-1],
                ]
            )
        domain = wide
    parts = []
    if domain.codes is not None:
        if present.size == len(domain.codes) and empty == domain.empty:
            return None
        if present.size:
            parts.append(f"{col}.isin([{', '.join(_text(c) for c in present)}])")
    else:
        if present.size and present[0] <= domain.low and present[-1] >= domain.high and empty == domain.empty:
            return None
        if present.size:
            parts.append(f"{col}.between({_text(present[0])}, {_text(present[-1])})")
    if empty:
        parts.append(f"{col}.isna()")
    return " | ".join(parts) if parts else None


def mine_rules(
    sample: Sample,
    codebook: dict[tuple[str, str], Domain],
    min_support: int = defaults.RULE_MIN_SUPPORT,
    widened: dict[tuple[str, str], Domain] | None = None,
) -> list[HouseholdRule]:
    """The implications that hold for every sample unit, as rules (module docstring).

    For each coded column A of a unit, each value ``a`` of A (empty included) met by at least ``min_support`` units,
    and each other column B of the same unit: the codes (or the range) of B among the units with A = ``a``, when
    narrower than B's domain, give the rule "A != a or B among those". For persons, the head (``per_num`` 1) is one
    more such value ("a householder is 17 or older"). ``widened``: the domains widened for the controls
    (:func:`widen`), whose added values no mined rule forbids.

    Returns
    -------
    list of HouseholdRule with ``empty_is_value`` set (an empty value is a value here), named
    ``sample: ESR empty -> AGEP``; in the order of the codebook's columns.
    """
    rules: list[HouseholdRule] = []
    for unit, frame in ((HOUSEHOLDS, sample.households), (PERSONS, sample.numbered_persons())):
        if len(frame) < defaults.RULE_MIN_SAMPLE:
            continue
        domains = [d for (u, _), d in codebook.items() if u == unit and d.column in frame.columns]
        data = {d.column: pd.to_numeric(frame[d.column], errors="coerce").to_numpy(dtype=np.float64) for d in domains}
        # (column given, label, the condition "not given", where it is given)
        givens: list[tuple[str, str, str, npt.NDArray[np.bool_]]] = []
        if unit == PERSONS and MEMBER in frame.columns:
            givens.append((MEMBER, "the head", f"{unit}.{MEMBER} != 1", frame[MEMBER].to_numpy() == 1))
        for d in domains:
            if d.codes is None:
                continue
            v = data[d.column]
            for code in d.codes:
                givens.append((d.column, f"{d.column} {_text(code)}", f"{unit}.{d.column} != {_text(code)}", v == code))
            if d.empty:
                givens.append((d.column, f"{d.column} empty", f"{unit}.{d.column}.notna()", np.isnan(v)))
        for given_column, label, otherwise, where in givens:
            if where.sum() < min_support:
                continue
            for d in domains:
                if d.column == given_column:
                    continue
                then = _then(d, data[d.column][where], (widened or {}).get((unit, d.column)))
                if then is None:
                    continue
                expression = f"({otherwise}) | {then}"
                name = f"{MINED_PREFIX}{label} -> {d.column}"
                rules.append(HouseholdRule(name, unit, compile_condition(expression, unit, frame.columns, name), True))
    return rules
