"""Complete records: every column of a unit drawn among the values its domain and the rules allow (DESIGN §8).

A prior that builds records without copying the sample (``maxent``, the LLM's fallback) fills each column of a unit
in turn. The column's values are cut into **pieces** (:func:`column_pieces`): its codes (and "empty" where the
domain allows it), or the stretches of its range between the constants any control or rule compares it with, so
that every control and rule has one truth value on a piece and can be checked on one probe value. A unit draws a
piece among those every rule allows given the columns drawn before (:func:`allowed_pieces`), in proportion to the
piece's mass (a control's category mass shared over its pieces, else the piece's width), then a value inside it
(:func:`piece_values`). A unit for which no piece is allowed is reported, so its household can be left out rather
than written with a value the rules forbid.

Inside a category the values are uniform, except in an open or very wide top category (more than
``HOUSEHOLD_WIDE_BIN`` times the width of the category below): there they follow an exponential density from the
category's floor with the width below as its mean, truncated at the domain's largest value, so an open top bin gives
finite values inside the range the data has.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import defaults
from ..codebook import Domain


@dataclass(frozen=True)
class Piece:
    """A stretch of a column's values on which every control and rule has one truth value.

    Attributes
    ----------
    low, high : float
        Its smallest and largest value (equal for a code or a point; both NaN for "empty").
    integer : bool
    origin, scale : float
        The density inside: uniform when ``scale`` is 0, else proportional to ``exp(-(x - origin) / scale)`` (a
        piece of a wide top category: decaying for ``scale`` > 0, rising for ``scale`` < 0).
    """

    low: float
    high: float
    integer: bool
    origin: float = 0.0
    scale: float = 0.0

    @property
    def empty(self) -> bool:
        """Whether the piece is the empty value."""
        return bool(np.isnan(self.low))

    @property
    def probe(self) -> float:
        """A value inside the piece (NaN for empty)."""
        return self.low

    @property
    def mass(self) -> float:
        """The piece's share of its category before normalization: its width, or its exponential mass."""
        if self.empty:
            return 1.0
        if self.low == self.high and not self.integer:
            return 1e-9  # a point of a real range (a cut): never drawn unless nothing else is allowed
        top = self.high + (1 if self.integer else 0)
        if self.scale != 0:
            s = self.scale
            return float(s * (np.exp(-(self.low - self.origin) / s) - np.exp(-(top - self.origin) / s)))
        return float(top - self.low)


def column_pieces(domain: Domain, cuts) -> list[Piece]:
    """The pieces of a column: its codes (and empty), or its range cut at ``cuts`` (the constants controls and rules
    compare it with): each cut ``c`` inside the range starts a point piece ``{c}`` (whole numbers: when ``c`` is
    whole) and a stretch after it. Ordered by value, empty last."""
    pieces: list[Piece] = []
    if domain.codes is not None:
        pieces = [Piece(c, c, domain.integer) for c in domain.codes]
    else:
        lo, hi = domain.low, domain.high
        starts = {lo}
        for c in cuts:
            if not np.isfinite(c) or c < lo or c > hi:
                continue
            if domain.integer:
                if float(c).is_integer():
                    starts |= {c, c + 1}
                else:
                    starts.add(float(np.ceil(c)))
            else:
                starts |= {c, np.nextafter(c, np.inf)}
        edges = sorted(s for s in starts if s <= hi)
        for i, start in enumerate(edges):
            end = (
                (edges[i + 1] - 1 if domain.integer else np.nextafter(edges[i + 1], -np.inf))
                if i + 1 < len(edges)
                else hi
            )
            if end >= start:
                pieces.append(Piece(float(start), float(end), domain.integer))
    if domain.empty:
        pieces.append(Piece(np.nan, np.nan, domain.integer))
    return pieces


def with_tails(
    pieces: list[Piece], category_of: npt.NDArray[np.int64], wide: float = defaults.HOUSEHOLD_WIDE_BIN
) -> list[Piece]:
    """The pieces, those of a wide top category given its exponential density (module docstring).

    ``category_of[k]`` is the category (control signature) piece ``k`` lies in. Only the top run of pieces of one
    category is examined: its width against the width of the run just below it (codes: from the smallest to the
    largest code, plus one)."""
    stretch = [k for k, p in enumerate(pieces) if not p.empty]
    if len(stretch) < 2:
        return pieces
    runs: list[list[int]] = []  # consecutive pieces of one category, from the top down
    for k in reversed(stretch):
        if runs and category_of[runs[-1][0]] == category_of[k]:
            runs[-1].insert(0, k)
        elif len(runs) < 2:
            runs.append([k])
        else:
            break
    if len(runs) < 2:
        return pieces
    in_top, below_category = runs
    step = 1 if pieces[0].integer else 0
    width_top = pieces[in_top[-1]].high - pieces[in_top[0]].low + step
    width_below = pieces[below_category[-1]].high - pieces[below_category[0]].low + step
    if width_below <= 0 or width_top <= wide * width_below:
        return pieces
    origin = pieces[in_top[0]].low
    return [
        Piece(p.low, p.high, p.integer, origin, float(width_below)) if k in in_top else p for k, p in enumerate(pieces)
    ]


def allowed_pieces(
    frame: pd.DataFrame,
    column: str,
    pieces: list[Piece],
    rules,
    assigned: dict[str, np.ndarray],
    known: dict[str, list[Piece]] | None = None,
):
    """Which piece each unit of ``frame`` may take: every rule reading ``column`` whose other columns the unit already
    has (``assigned[col]``, bool per unit) must hold with the piece's probe value.

    The rules are evaluated once per distinct combination of the other columns, each column's value stood for by
    its piece (``known[col]``: the pieces of that column, cut at every rule's constants, so a rule has one truth
    value on a piece) or by itself; units share few combinations, so the cost does not follow the units.

    Returns
    -------
    ndarray of bool, shape (len(frame), len(pieces)).
    """
    n = len(frame)
    out = np.ones((n, len(pieces)), dtype=bool)
    relevant = [
        r for r in rules if column in r.condition.columns and set(r.condition.columns) <= {*frame.columns, column}
    ]
    if not relevant or n == 0:
        return out
    others = sorted({c for r in relevant for c in r.condition.columns if c != column})
    codes, probes = [], {}
    for c in others:
        code, probe = _stand_ins(frame[c].to_numpy(), (known or {}).get(c))
        given = assigned.get(c, np.zeros(n, dtype=bool))
        codes.append(np.where(given, code, -1))  # -1: not drawn yet, no rule reading it applies
        probes[c] = probe
    combos, inverse = (
        np.unique(np.column_stack(codes), axis=0, return_inverse=True)
        if codes
        else (
            np.zeros((1, 0), dtype=np.int64),
            np.zeros(n, dtype=np.int64),
        )
    )
    u, k = len(combos), len(pieces)
    grid = pd.DataFrame({c: np.repeat(probes[c][np.maximum(combos[:, m], 0)], k) for m, c in enumerate(others)})
    grid[column] = np.tile([p.probe for p in pieces], u)
    ok = np.ones(u * k, dtype=bool)
    for rule in relevant:
        applies = np.ones(u, dtype=bool)
        for m, c in enumerate(others):
            if c in rule.condition.columns:
                applies &= combos[:, m] >= 0
        if applies.any():
            ok &= ~(rule.broken(grid) & np.repeat(applies, k))
    return ok.reshape(u, k)[np.asarray(inverse).reshape(-1)]


def _stand_ins(values: np.ndarray, pieces: list[Piece] | None) -> tuple[np.ndarray, np.ndarray]:
    """A code per value and the value each code stands for: the value's piece (when every value lies in one of
    ``pieces``) or the value itself."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    if pieces:
        lows = np.array([p.low if not p.empty else np.inf for p in pieces])
        highs = np.array([p.high if not p.empty else -np.inf for p in pieces])
        order = np.argsort(lows, kind="stable")
        at = np.clip(np.searchsorted(lows[order], v, side="right") - 1, 0, len(order) - 1)
        index = order[at]
        inside = (lows[index] <= v) & (v <= highs[index])
        empty = [k for k, p in enumerate(pieces) if p.empty]
        index = np.where(np.isnan(v), empty[0] if empty else -1, index)
        inside |= np.isnan(v) & bool(empty)
        if inside.all():
            return index.astype(np.int64), np.array([p.probe for p in pieces])
    code, uniques = pd.factorize(pd.Series(v), use_na_sentinel=False)
    return code.astype(np.int64), np.asarray(uniques, dtype=np.float64)


def draw_pieces(weights: npt.NDArray[np.float64], rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """A piece per row of ``weights`` (shape (n, k), >= 0) in proportion to its weights; -1 where a row is all 0."""
    total = weights.sum(axis=1)
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * total
    which = (cumulative <= u[:, None]).sum(axis=1)
    which = np.minimum(which, weights.shape[1] - 1)
    return np.where(total > 0, which, -1).astype(np.int64)


def piece_values(
    pieces: list[Piece], which: npt.NDArray[np.int64], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """A value inside the drawn piece of every unit (NaN for the empty piece or ``which`` -1), from the piece's
    density (uniform, or the exponential of a wide top category, truncated to the piece)."""
    out = np.full(which.size, np.nan)
    for k, p in enumerate(pieces):
        at = np.flatnonzero(which == k)
        if not at.size or p.empty:
            continue
        if p.low == p.high:
            out[at] = p.low
            continue
        top = p.high + (1 if p.integer else 0)
        u = rng.random(at.size)
        if p.scale != 0:
            span = 1 - np.exp(-(top - p.low) / p.scale)
            x = p.low - p.scale * np.log1p(-u * span)
        else:
            x = p.low + u * (top - p.low)
        out[at] = np.minimum(np.floor(x), p.high) if p.integer else np.minimum(x, p.high)
    return out
