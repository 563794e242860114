"""The embedded ``maxent`` prior: the maximum-entropy joint distribution consistent with the target tables.

Among all joint distributions over the schema's variables whose marginals on every target table equal the
targets, the maximum-entropy one assumes no structure beyond what the tables state. It is the distribution
classical IPF reaches from a uniform seed over the full cross-product (Ireland & Kullback 1968), but the
cross-product is never built here: the solution factorizes over the cliques of a triangulation of the graph
whose edges join variables that share a table (Darroch, Lauritzen & Speed 1980), so it is fitted by IPF on a
junction tree (Jiroušek 1991, "Solution of the marginal problem and decomposable distributions") whose clique
arrays are small. Numeric variables are discretized on the union of all tables' bin edges; a fine cell's prior
weight is its width (the maximum-entropy density inside a bin is uniform). Values inside a cell are drawn from a
smooth density through the cells' shares (:func:`within_bin_sampler`; uniform in paper mode).

Sampling, conditional on a proposal's conditions, is exact: evidence is entered into the clique potentials,
collected to the root, and records are drawn top-down (forward sampling on a junction tree).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import defaults
from ..errors import ConfigError, Problem
from ..expressions import violating
from ..metrics import CellGap
from ..schema import Bins, Schema
from ..targets.model import Project, TargetTable
from .base import Guidance, PriorBase, Proposal, bin_condition, gap_conditions, sample_uniform_records

_LETTERS = string.ascii_letters


WITHIN_BIN = ("smooth", "uniform")  # how numeric values are drawn inside a bin (see within_bin_sampler)
_GRID_POINTS = 32  # points per bin of the tabulated smooth CDF that values are drawn from
_TAIL_POINTS = 256  # quantiles of an exponential top bin (see within_bin_sampler)


def within_bin_sampler(knots: np.ndarray, masses: np.ndarray, top_mean: float | None = None):
    """A smooth, mass-preserving density inside bins, from grouped data.

    The cumulative distribution through the bins' edges (``knots``, increasing, ``len(masses) + 1``; cumulative
    shares ``0, m_0, m_0 + m_1, ..., 1``) is interpolated by a monotone cubic (PCHIP, Fritsch & Carlson 1980): the
    CDF is monotone and passes through every knot, so every bin keeps its mass exactly, and its derivative (the
    density) is continuous across bin edges: the monotone-spline estimate of the grouped-data literature (von Hippel,
    Hunter & Drown 2017, "Better estimates from binned income data", binsmooth). A bin without mass stays empty.

    The top bin has no right neighbour to shape a spline, and census tables make it the widest (``[65, 90]``,
    ``[200000, ...)``): it gets a truncated exponential density ``f(x) ~ exp(-rate (x - a))`` on ``[a, b]`` holding
    its mass exactly, whose rate either continues the density of the bins below at ``a`` (when that density is
    above the top bin's average ``m / (b - a)``, i.e. when the distribution decays into the bin), or, with
    ``top_mean``, gives the bin that mean (``a < top_mean < b``; a rising density when the mean is above the bin's
    middle). Without a stated mean the exponential is used only when its mean is below the spline's own in that bin
    (the lighter tail): measured against held-out real values, the spline's end shape overshoots real tails (Adult
    age in [65, 90]: real mean excess over 65 5.8 years, exponential 6.7, spline 8.8; hours in [60, 99]: 6.8, 6.3,
    13.3; CALM household income over 200,000: 58,700, exponential none (no decay), spline 81,500) but on the
    e-commerce network's truncated-normal prices the spline was as close or closer. The Census Bureau fits a
    Pareto tail to the top brackets of grouped incomes for the same reason; the exponential keeps a finite mean
    inside a bounded bin.

    Parameters
    ----------
    knots : ndarray of float64, shape (m + 1,), strictly increasing (bin edges)
    masses : ndarray of float64, shape (m,), >= 0 (shares or counts of the bins)
    top_mean : float or None
        A stated mean of the values in the top bin (e.g. from a numeric control); ignored unless inside it.

    Returns ``draw(lo, hi, u)``: for arrays of ranges ``[lo, hi)`` (inside one bin each) and uniforms ``u`` in
    [0, 1), values distributed by the smooth density restricted to the range (the inverse CDF, tabulated at
    ``_GRID_POINTS`` points per bin, ``_TAIL_POINTS`` quantiles in an exponential top bin, interpolated linearly).
    """
    from scipy.interpolate import PchipInterpolator

    knots = np.asarray(knots, dtype=np.float64)
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(masses, dtype=np.float64))])
    cumulative /= cumulative[-1] if cumulative[-1] > 0 else 1.0
    rate = _top_rate(knots, cumulative, top_mean)
    if rate is not None and top_mean is None:  # the lighter of the two tails (see the docstring)
        a, b = knots[-2], knots[-1]
        x = np.linspace(a, b, _TAIL_POINTS + 1)
        mass = cumulative[-1] - cumulative[-2]
        spline_mean = np.trapezoid(cumulative[-1] - PchipInterpolator(knots, cumulative)(x), x) / mass
        if _truncated_exponential_mean(rate, b - a) >= spline_mean:
            rate = None
    body = len(knots) if rate is None else len(knots) - 1  # knots of the bins the spline shapes
    spline = PchipInterpolator(knots[:body], cumulative[:body]) if body >= 2 else None
    grid = np.unique(
        np.concatenate([np.linspace(a, b, _GRID_POINTS + 1) for a, b in zip(knots[: body - 1], knots[1:body])])
    )
    values = np.maximum.accumulate(np.clip(spline(grid), 0.0, 1.0)) if spline is not None else np.zeros(0)
    if rate is not None:
        a, b = knots[-2], knots[-1]
        p = np.linspace(0.0, 1.0, _TAIL_POINTS + 1)
        x = a + _truncated_exponential_quantile(p, rate, b - a)
        keep = x > (grid[-1] if len(grid) else -np.inf)
        grid = np.concatenate([grid, x[keep]])
        values = np.concatenate([values, cumulative[-2] + p[keep] * (1.0 - cumulative[-2])])
        values = np.maximum.accumulate(values)

    def draw(lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
        f_lo = np.interp(lo, grid, values)
        f_hi = np.interp(hi, grid, values)
        target = f_lo + u * (f_hi - f_lo)
        # first grid point reaching the target (np.interp would need strictly increasing values)
        right = np.clip(np.searchsorted(values, target, side="left"), 1, len(grid) - 1)
        left = right - 1
        span = values[right] - values[left]
        x = grid[left] + np.where(span > 0, (target - values[left]) / np.where(span > 0, span, 1.0), 0.0) * (
            grid[right] - grid[left]
        )
        flat = ~(f_hi > f_lo)  # no smooth mass in the range: uniform there
        x = np.where(flat, lo + u * (hi - lo), x)
        return np.clip(x, lo, np.nextafter(hi, lo))

    return draw


def stratified_uniforms(lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniforms in [0, 1), one per record, stratified within each group of records sharing a range ``[lo, hi)``.

    The ``k`` records of a group get one uniform in each of ``[0, 1/k), [1/k, 2/k), ...``, in random order (Latin
    hypercube sampling in one dimension, McKay, Beckman & Conover 1979): pushed through an inverse CDF, a group's
    values follow the within-bin density as closely as ``k`` values can, instead of with the noise of ``k``
    independent draws. Shape ``lo.shape``, float64.
    """
    n = len(lo)
    if n == 0:
        return np.zeros(0)
    order = np.lexsort((rng.random(n), hi, lo))
    key = np.column_stack([lo[order], hi[order]])
    starts = np.flatnonzero(np.r_[True, np.any(key[1:] != key[:-1], axis=1)])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    u = np.empty(n)
    u[order] = (rank + rng.random(n)) / np.repeat(sizes, sizes)
    return u


def _truncated_exponential_mean(rate: float, width: float) -> float:
    """Mean of ``exp(-rate t)`` on ``[0, width]`` (``width / 2`` at rate 0; any sign of rate)."""
    z = rate * width
    if abs(z) < 1e-6:
        return width / 2.0
    return 1.0 / rate - width / np.expm1(z)


def _truncated_exponential_quantile(p: np.ndarray, rate: float, width: float) -> np.ndarray:
    """Inverse CDF of ``exp(-rate t)`` on ``[0, width]`` at probabilities ``p`` (uniform at rate 0)."""
    if abs(rate * width) < 1e-9:
        return p * width
    return -np.log1p(p * np.expm1(-rate * width)) / rate


def _top_rate(knots: np.ndarray, cumulative: np.ndarray, top_mean: float | None) -> float | None:
    """The rate of the top bin's exponential density (see :func:`within_bin_sampler`), or None to keep the spline.

    With ``top_mean`` inside the bin: the rate whose truncated exponential has that mean (bisection on the mean,
    which falls monotonically with the rate). Else, with at least one bin below: the rate whose density at the
    bin's floor equals that of the spline through the bins below (PCHIP's end slope there, shaped by the last two
    bins below), ``m rate / (1 - exp(-rate w)) = d`` (rises with the rate from
    ``m / w``), when ``d > m / w``.
    """
    from scipy.interpolate import PchipInterpolator
    from scipy.optimize import brentq

    a, b = knots[-2], knots[-1]
    width, mass = b - a, cumulative[-1] - cumulative[-2]
    if mass <= 0:
        return None
    if top_mean is not None and a < top_mean < b:
        goal = top_mean - a
        bound = 1.0
        while _truncated_exponential_mean(bound / width, width) > goal and bound < 1e6:
            bound *= 2.0
        low = -1.0
        while _truncated_exponential_mean(low / width, width) < goal and low > -1e6:
            low *= 2.0
        return float(brentq(lambda r: _truncated_exponential_mean(r / width, width) - goal, low, bound)) / width
    if len(knots) < 3:
        return None
    density = float(PchipInterpolator(knots[:-1], cumulative[:-1]).derivative()(a))
    if not density > mass / width * (1.0 + 1e-9):
        return None

    def gap(z: float) -> float:  # z = rate * width
        return mass * z / width / -np.expm1(-z) - density

    high = 1.0
    while gap(high) < 0 and high < 1e6:
        high *= 2.0
    return float(brentq(gap, 1e-9, high)) / width


@dataclass
class _Axis:
    """Fine discretization of one variable: ``size`` cells with maxent weights (bin widths)."""

    size: int
    weights: np.ndarray  # float64, shape (size,), sums to 1
    bins: Bins | None  # fine bins of a numeric variable
    lows: np.ndarray | None = None  # smallest value of each fine bin (numeric)
    highs: np.ndarray | None = None  # largest value (integer: inclusive; continuous: exclusive edge)


def _systematic(p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of categories with probabilities ``p`` (float64, sums to 1) by systematic sampling: one uniform
    start, then steps of 1 / n through the cumulative shares, so each category is drawn floor or ceil of n x p times
    (Madow 1949). Returns int64 indices, in category order."""
    cumulative = np.cumsum(p)
    positions = (np.arange(n) + rng.random()) / n
    return np.minimum(np.searchsorted(cumulative, positions, side="right"), p.size - 1).astype(np.int64)


def _build_axes(schema: Schema, tables) -> dict[str, _Axis]:
    axes = {}
    for var in schema:
        if var.type == "categorical":
            axes[var.name] = _Axis(var.size, np.full(var.size, 1.0 / var.size), None)
            continue
        edges = {var.min, var.max}
        for t in tables:
            if var.name in t.bins:
                edges.update(float(e) for e in t.bins[var.name].edges)
        fine = Bins(sorted(edges))
        lows = fine.edges[:-1].copy()
        highs = fine.edges[1:].copy()
        if var.integer:
            lows = np.ceil(lows)
            highs = np.where(np.arange(len(fine)) == len(fine) - 1, np.floor(highs), np.ceil(highs) - 1)
            widths = np.maximum(highs - lows + 1, 0)
        else:
            widths = highs - lows
        axes[var.name] = _Axis(len(fine), widths / widths.sum(), fine, lows, highs)
    return axes


def _triangulate(variables: list[str], edges: set[frozenset], sizes: dict[str, int]) -> list[tuple[str, ...]]:
    """Maximal cliques of a triangulation by greedy min-fill elimination (ties: smaller clique, then order)."""
    adj: dict[str, set[str]] = {v: set() for v in variables}
    for e in edges:
        a, b = tuple(e)
        adj[a].add(b)
        adj[b].add(a)
    order = {v: i for i, v in enumerate(variables)}
    remaining = set(variables)
    cliques: list[frozenset] = []
    while remaining:

        def cost(v):
            nb = adj[v] & remaining
            fill = sum(1 for a in nb for b in nb if a < b and b not in adj[a])
            return fill, math.prod(sizes[x] for x in nb | {v}), order[v]

        v = min(remaining, key=cost)
        nb = adj[v] & remaining
        for a in nb:
            adj[a] |= nb - {a}
        cliques.append(frozenset(nb | {v}))
        remaining.remove(v)
    maximal = [c for c in cliques if not any(c < d for d in cliques)]
    unique: list[frozenset] = []
    for c in maximal:
        if c not in unique:
            unique.append(c)
    return [tuple(sorted(c, key=order.__getitem__)) for c in unique]


class MaxEntJoint:
    """The maximum-entropy joint distribution of a schema given target tables, on a junction tree.

    Parameters
    ----------
    schema : Schema
    tables : sequence of TargetTable
    rules : sequence of Rule (structural zeros)
    within_bin : {"smooth", "uniform"}
        How numeric values are drawn inside a fine cell (:meth:`values`).
    numeric_controls : sequence of NumericControl
        A control giving the mean (or total) of a numeric variable per bin of that same variable states the mean of
        its top bin, which the smooth density's tail then has (:func:`within_bin_sampler`).

    Attributes
    ----------
    cliques : list of tuple of str
        Variables of each clique (schema order).
    marginals : list of ndarray of float64
        Probability of each clique's cells, axes in clique order; consistent on separators.
    left_out : list of str
        Tables not built into the joint because their clique would exceed ``MAXENT_MAX_CLIQUE_CELLS``.
    sweeps : int
        IPF sweeps used; ``max_error`` the largest absolute share error left on any table.
    """

    def __init__(self, schema: Schema, tables, rules=(), within_bin: str = "smooth", numeric_controls=()):
        if within_bin not in WITHIN_BIN:
            raise ValueError(f"within_bin must be one of {', '.join(WITHIN_BIN)}, got {within_bin!r}")
        self.schema = schema
        self.within_bin = within_bin
        self.numeric_controls = tuple(numeric_controls)
        tables = list(tables)
        self.population_size = float(tables[0].counts.sum()) if tables else 0.0  # persons the tables count
        self._samplers: dict = {}
        self.axes = _build_axes(schema, tables)
        self.rules = tuple(rules)
        names = schema.names
        sizes = {v: self.axes[v].size for v in names}
        edges: set[frozenset] = {
            frozenset((a, b)) for r in self.rules for a in r.variables for b in r.variables if a != b
        }
        self.tables: list[TargetTable] = []
        self.left_out: list[str] = []
        for t in sorted(tables, key=lambda t: len(t.variables)):
            new = {frozenset((a, b)) for a in t.variables for b in t.variables if a != b}
            cliques = _triangulate(names, edges | new, sizes)
            if max(math.prod(sizes[v] for v in c) for c in cliques) > defaults.MAXENT_MAX_CLIQUE_CELLS:
                self.left_out.append(t.name)
                continue
            edges |= new
            self.tables.append(t)
        self.cliques = _triangulate(names, edges, sizes)
        self._build_tree()
        self.marginals = [self._independent(c) for c in self.cliques]
        if self.rules:
            self._apply_structural_zeros()
        self._home = [
            min(
                (i for i, c in enumerate(self.cliques) if set(t.variables) <= set(c)),
                key=lambda i: math.prod(sizes[v] for v in self.cliques[i]),
            )
            for t in self.tables
        ]
        self._coarse = [self._coarsening(t) for t in self.tables]
        self.sweeps, self.max_error = self._fit()

    # ---------------------------------------------------------------------------------------- structure
    def _build_tree(self) -> None:
        n = len(self.cliques)
        pairs = sorted(
            ((len(set(self.cliques[i]) & set(self.cliques[j])), i, j) for i in range(n) for j in range(i + 1, n)),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        parent_of = list(range(n))

        def find(x):
            while parent_of[x] != x:
                parent_of[x] = parent_of[parent_of[x]]
                x = parent_of[x]
            return x

        self.neighbours: list[list[int]] = [[] for _ in range(n)]
        for _, i, j in pairs:
            ri, rj = find(i), find(j)
            if ri != rj:
                parent_of[ri] = rj
                self.neighbours[i].append(j)
                self.neighbours[j].append(i)
        # breadth-first order from clique 0: parents before children
        # clique -> its parent clique; the root (clique 0) has none
        self.order: list[int] = [0]
        self.parent: dict[int, int] = {}
        for c in self.order:
            for nb in self.neighbours[c]:
                if nb != 0 and nb not in self.parent:
                    self.parent[nb] = c
                    self.order.append(nb)

    def separator(self, a: int, b: int) -> tuple[str, ...]:
        """Variables shared by cliques ``a`` and ``b`` (in clique ``a``'s order)."""
        return tuple(v for v in self.cliques[a] if v in self.cliques[b])

    def _independent(self, clique) -> np.ndarray:
        arr = np.ones(())
        for v in clique:
            arr = np.multiply.outer(arr, self.axes[v].weights)
        return arr

    def _coarsening(self, table: TargetTable):
        """Per table axis: (starts for reduceat, repeats) mapping fine cells to the table's cells, or None."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = []
        for v in table.variables:
            if v not in table.bins:
                out.append(None)
                continue
            fine = self.axes[v].bins
            assert fine is not None  # a variable with table bins is numeric: its axis has fine bins
            coarse_of_fine = table.bins[v].locate(fine.edges[:-1])
            starts = np.flatnonzero(np.diff(coarse_of_fine, prepend=-1))
            out.append((starts, np.diff(np.append(starts, len(coarse_of_fine)))))
        return out

    def _points(self, var: str) -> tuple[np.ndarray, np.ndarray]:
        """Values inside every fine cell of ``var`` (codes, whole numbers, or evenly spaced points) and the
        cell of each, for measuring which share of a cell a rule forbids."""
        v, axis = self.schema[var], self.axes[var]
        if v.type == "categorical":
            return np.arange(axis.size, dtype=float), np.arange(axis.size)
        assert axis.lows is not None and axis.highs is not None  # numeric: set by _build_axes
        values, cells = [], []
        for i, (lo, hi) in enumerate(zip(axis.lows, axis.highs)):
            if v.integer:
                pts = (
                    np.arange(lo, hi + 1)
                    if hi - lo < defaults.RULE_INTEGER_POINTS
                    else np.round(np.linspace(lo, hi, defaults.RULE_INTEGER_POINTS))
                )
            else:
                pts = lo + (np.arange(defaults.RULE_POINTS_PER_CELL) + 0.5) / defaults.RULE_POINTS_PER_CELL * (hi - lo)
            values.append(pts)
            cells.append(np.full(len(pts), i))
        return np.concatenate(values), np.concatenate(cells)

    def allowed_share(self, rule) -> np.ndarray:
        """Share of each combination of fine cells of the rule's variables that does not violate it; ndarray
        of float64 with one axis per variable of ``rule.variables`` (1 = allowed, 0 = structural zero)."""
        grids = [self._points(v) for v in rule.variables]
        mesh = np.meshgrid(*[g[0] for g in grids], indexing="ij")
        cell_mesh = np.meshgrid(*[g[1] for g in grids], indexing="ij")
        frame = pd.DataFrame({v: m.reshape(-1) for v, m in zip(rule.variables, mesh)})
        bad = rule.violates(frame)
        shape = tuple(self.axes[v].size for v in rule.variables)
        flat = np.ravel_multi_index([c.reshape(-1) for c in cell_mesh], shape)
        total = np.bincount(flat, minlength=int(np.prod(shape)))
        violated = np.bincount(flat, weights=bad.astype(float), minlength=int(np.prod(shape)))
        return (1.0 - violated / np.maximum(total, 1)).reshape(shape)

    def _apply_structural_zeros(self) -> None:
        """Multiply the starting joint by each rule's allowed share, then make the clique marginals of that
        product consistent again by two-pass message passing (Shafer-Shenoy) over the junction tree."""
        factors = [m.copy() for m in self.marginals]
        for rule in self.rules:
            c = next(i for i, cl in enumerate(self.cliques) if set(rule.variables) <= set(cl))
            factors[c] = factors[c] * self._spread(self.allowed_share(rule), rule.variables, self.cliques[c])
        # separators start as the independent marginals: the product over cliques divided by them is the joint
        for c in self.order[1:]:
            sep = self.separator(c, self.parent[c])
            factors[c] = factors[c] / np.maximum(
                self._spread(self._project(self.marginals[c], self.cliques[c], sep), sep, self.cliques[c]), 1e-300
            )
        children = {c: [k for k in self.order if self.parent.get(k) == c] for c in self.order}
        up: dict[int, np.ndarray] = {}
        for c in reversed(self.order[1:]):
            belief = factors[c]
            for k in children[c]:
                belief = belief * self._spread(up[k], self.separator(k, c), self.cliques[c])
            up[c] = self._project(belief, self.cliques[c], self.separator(c, self.parent[c]))
        down: dict[int, np.ndarray] = {}
        beliefs = {}
        for c in self.order:
            belief = factors[c]
            if c in self.parent:
                belief = belief * self._spread(down[c], self.separator(c, self.parent[c]), self.cliques[c])
            for k in children[c]:
                belief = belief * self._spread(up[k], self.separator(k, c), self.cliques[c])
            beliefs[c] = belief
            for k in children[c]:
                sep = self.separator(k, c)
                with np.errstate(divide="ignore", invalid="ignore"):
                    message = self._project(belief, self.cliques[c], sep) / up[k]
                down[k] = np.where(up[k] > 0, message, 0.0)
        total = beliefs[self.order[0]].sum()
        if not total > 0:
            raise ConfigError(
                "the rules forbid every record the target tables allow: no record satisfies them "
                "all; loosen or remove a rule"
            )
        self.marginals = [beliefs[i] / total for i in range(len(self.cliques))]

    # ------------------------------------------------------------------------------------------ algebra
    @staticmethod
    def _project(arr: np.ndarray, src: tuple, dst: tuple) -> np.ndarray:
        """Sum ``arr`` (axes ``src``) onto variables ``dst`` (axes in ``dst`` order)."""
        letters = {v: _LETTERS[i] for i, v in enumerate(src)}
        return np.einsum(f"{''.join(letters[v] for v in src)}->{''.join(letters[v] for v in dst)}", arr)

    @staticmethod
    def _spread(arr: np.ndarray, src: tuple, dst: tuple) -> np.ndarray:
        """View ``arr`` (axes ``src`` ⊆ ``dst``) with its axes in ``dst`` order and size-1 axes for the rest."""
        if not src:
            return arr.reshape((1,) * len(dst))
        present = [v for v in dst if v in src]
        moved = np.transpose(arr, [src.index(v) for v in present])
        return moved.reshape([moved.shape[present.index(v)] if v in src else 1 for v in dst])

    def table_shares(self, i: int) -> np.ndarray:
        """Shares of the joint over the cells of ``self.tables[i]``, shaped like that table."""
        t, c = self.tables[i], self._home[i]
        m = self._project(self.marginals[c], self.cliques[c], t.variables)
        for axis, coarse in enumerate(self._coarse[i]):
            if coarse is not None:
                m = np.add.reduceat(m, coarse[0], axis=axis)
        return m

    def _replace(self, c: int, new: np.ndarray, came_from: int | None = None) -> None:
        """Set clique ``c``'s marginal to ``new`` and pass the change along the tree (Hugin absorption)."""
        old = self.marginals[c]
        self.marginals[c] = new
        for nb in self.neighbours[c]:
            if nb == came_from:
                continue
            sep = self.separator(c, nb)
            old_s, new_s = self._project(old, self.cliques[c], sep), self._project(new, self.cliques[c], sep)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(old_s > 0, new_s / old_s, 0.0)
            self._replace(nb, self.marginals[nb] * self._spread(ratio, sep, self.cliques[nb]), c)

    def _fit(self) -> tuple[int, float]:
        targets = [t.shares for t in self.tables]
        error = 0.0
        before = math.inf  # the error MAXENT_IPF_STALL_SWEEPS sweeps ago
        for sweep in range(1, defaults.MAXENT_IPF_MAX_SWEEPS + 1):
            error = 0.0
            dead = False  # a counted cell without mass: multiplicative updates never give it any (contradiction)
            for i, t in enumerate(self.tables):
                current = self.table_shares(i)
                error = max(error, float(np.abs(current - targets[i]).max()))
                dead = dead or bool(np.any((targets[i] > 0) & ~(current > 0)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(current > 0, targets[i] / current, 0.0)
                for axis, coarse in enumerate(self._coarse[i]):
                    if coarse is not None:
                        ratio = np.repeat(ratio, coarse[1], axis=axis)
                c = self._home[i]
                self._replace(c, self.marginals[c] * self._spread(ratio, t.variables, self.cliques[c]))
            if error < defaults.MAXENT_IPF_TOLERANCE or (dead and not self.rules):  # rules' zeros: fit the rest
                return sweep, error
            if self.rules and sweep % defaults.MAXENT_IPF_STALL_SWEEPS == 0:
                # rules forbid cells the tables count: the error stops at a floor (adult: 2.0e-4 after 10 sweeps,
                # the same to 12 digits after 2,000); stop there instead of sweeping on
                if error > (1 - defaults.MAXENT_IPF_STALL) * before:
                    return sweep, error
                before = error
        return defaults.MAXENT_IPF_MAX_SWEEPS, error

    def starved_cells(self) -> list[tuple[int, np.ndarray]]:
        """Target cells the fitted joint cannot reach: ``(index into self.tables, flat cell indices)`` for each table
        with cells of a positive target share where the joint's share is below ``defaults.STARVED_SHARE`` of it.
        Empty when IPF converged: zero cells of other tables (or the rules) left these cells no room."""
        if self.max_error < defaults.MAXENT_IPF_TOLERANCE:
            return []
        out = []
        for i, t in enumerate(self.tables):
            target = t.shares.reshape(-1)
            current = np.nan_to_num(self.table_shares(i).reshape(-1))
            starved = np.flatnonzero((target > 0) & (current < defaults.STARVED_SHARE * target))
            if starved.size:
                out.append((i, starved))
        return out

    # ----------------------------------------------------------------------------------------- sampling
    def evidence(self, conditions: dict) -> dict[str, np.ndarray]:
        """Weight of each fine cell under a proposal's conditions (1 inside, 0 outside, partial for ranges)."""
        out = {}
        for name, cond in conditions.items():
            var, axis = self.schema[name], self.axes[name]
            if var.type == "categorical":
                labels = [cond] if isinstance(cond, str) else list(cond)
                w = np.zeros(axis.size)
                w[[var.categories.index(x) for x in labels]] = 1.0
            else:
                assert axis.lows is not None and axis.highs is not None  # numeric: set by _build_axes
                lo, hi = float(cond[0]), float(cond[1])
                if var.integer:
                    w = np.maximum(np.minimum(axis.highs, math.floor(hi)) - np.maximum(axis.lows, math.ceil(lo)) + 1, 0)
                    w = w / np.maximum(axis.highs - axis.lows + 1, 1)
                else:
                    w = np.maximum(np.minimum(axis.highs, hi) - np.maximum(axis.lows, lo), 0)
                    w = w / (axis.highs - axis.lows)
            out[name] = w
        return out

    def sample_cells(self, k: int, conditions: dict, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
        """Draw ``k`` records' fine cells from the joint conditional on ``conditions``.

        Returns
        -------
        dict of variable -> ndarray of int64, shape (k,): the fine cell of each draw; None when the conditions
        have probability 0 under the joint.
        """
        evidence = self.evidence(conditions)
        potentials = [m.copy() for m in self.marginals]
        for name, w in evidence.items():
            c = next(i for i, cl in enumerate(self.cliques) if name in cl)
            potentials[c] = potentials[c] * self._spread(w, (name,), self.cliques[c])
        # collect: children into parents, deepest first
        for c in reversed(self.order[1:]):
            p = self.parent[c]
            sep = self.separator(c, p)
            msg = self._project(potentials[c], self.cliques[c], sep)
            prior = self._project(self.marginals[c], self.cliques[c], sep)
            with np.errstate(divide="ignore", invalid="ignore"):
                msg = np.where(prior > 0, msg / prior, 0.0)
            potentials[p] = potentials[p] * self._spread(msg, sep, self.cliques[p])
        root = potentials[self.order[0]].reshape(-1)
        total = root.sum()
        if not total > 0:
            return None
        draws: dict[str, np.ndarray] = {}
        # systematic sampling (each cell gets floor or ceil of k x its share), in random order: an i.i.d. draw of
        # 20,000 records over 15,000 cells left a first population 0.13 TVD off its own joint (Travis commuting)
        flat = _systematic(root / total, k, rng)[rng.permutation(k)]
        for v, idx in zip(self.cliques[self.order[0]], np.unravel_index(flat, potentials[self.order[0]].shape)):
            draws[v] = idx.astype(np.int64)
        for c in self.order[1:]:
            sep = self.separator(c, self.parent[c])
            rest = tuple(v for v in self.cliques[c] if v not in sep)
            if not rest:
                continue
            arr = np.transpose(potentials[c], [self.cliques[c].index(v) for v in sep + rest])
            sep_shape, rest_shape = arr.shape[: len(sep)], arr.shape[len(sep) :]
            table = arr.reshape(math.prod(sep_shape), math.prod(rest_shape))
            key = np.ravel_multi_index([draws[v] for v in sep], sep_shape) if sep else np.zeros(k, dtype=np.int64)
            chosen = np.zeros(k, dtype=np.int64)
            for s in np.unique(key):
                rows = np.flatnonzero(key == s)
                weights = table[s]
                chosen[rows] = _systematic(weights / weights.sum(), rows.size, rng)[rng.permutation(rows.size)]
            for v, idx in zip(rest, np.unravel_index(chosen, rest_shape)):
                draws[v] = idx.astype(np.int64)
        return draws

    def variable_shares(self, name: str) -> np.ndarray:
        """The joint's share of every fine cell of one variable (float64, sums to 1)."""
        c = next(i for i, clique in enumerate(self.cliques) if name in clique)
        return self._project(self.marginals[c], self.cliques[c], (name,))

    def _sampler(self, name: str):
        """The smooth within-bin sampler of a numeric variable (on the continuous range of its fine bins; an integer
        variable's bin of whole numbers lo..hi spans [lo, hi + 1))."""
        if name not in self._samplers:
            axis, var = self.axes[name], self.schema[name]
            assert axis.lows is not None and axis.highs is not None
            if var.integer:  # whole-number bins: lo_i .. hi_i, next bin starts at hi_i + 1
                knots = np.append(axis.lows, axis.highs[-1] + 1.0)
            else:
                knots = np.append(axis.lows, axis.highs[-1])
            # knots must increase (a fine bin of an integer variable may hold no whole number): else uniform
            self._samplers[name] = (
                within_bin_sampler(knots, self.variable_shares(name), self.top_mean(name))
                if np.all(np.diff(knots) > 0)
                else None
            )
        return self._samplers[name]

    def top_mean(self, name: str) -> float | None:
        """The mean of ``name`` in its top fine bin as a numeric control of ``name`` by its own bins states it (a
        mean, or a total divided by the joint's persons in that bin), on the continuous scale of the sampler (an
        integer variable's whole numbers ``v`` are drawn from ``[v, v + 1)``: + 0.5); None when no control does."""
        axis = self.axes[name]
        assert axis.lows is not None
        for control in self.numeric_controls:
            if control.of != name or control.variables != (name,) or control.bins[name].edges[-2] != axis.lows[-1]:
                continue
            value = float(control.values[-1])
            if control.statistic == "total":
                persons = float(self.variable_shares(name)[-1]) * self.population_size
                if persons <= 0:
                    continue
                value /= persons
            return value + (0.5 if self.schema[name].integer else 0.0)
        return None

    def values(self, cells: dict[str, np.ndarray], conditions: dict, rng: np.random.Generator) -> pd.DataFrame:
        """Records from fine cells: categories as labels; numerics inside the cell (and the condition's range),
        whole numbers for integer variables, drawn from the smooth within-bin density (:func:`within_bin_sampler`,
        fitted to the joint's shares of the variable's fine cells) or uniformly (``within_bin="uniform"``, the
        paper's protocol). Returns a DataFrame, one column per variable."""
        cols = {}
        for var in self.schema:
            idx = cells[var.name]
            if var.type == "categorical":
                cols[var.name] = np.asarray(var.categories, dtype=object)[idx]
                continue
            axis = self.axes[var.name]
            assert axis.lows is not None and axis.highs is not None  # numeric: set by _build_axes
            lo, hi = axis.lows[idx], axis.highs[idx]
            if var.name in conditions:
                lo = np.maximum(lo, float(conditions[var.name][0]))
                hi = np.minimum(hi, float(conditions[var.name][1]))
            if var.integer:
                lo, hi = np.ceil(lo), np.floor(hi)
                if self.within_bin == "smooth" and len(idx) and self._sampler(var.name) is not None:
                    x = self._sampler(var.name)(lo, hi + 1.0, stratified_uniforms(lo, hi, rng))
                    cols[var.name] = np.clip(np.floor(x), lo, hi).astype(np.float64)
                else:
                    cols[var.name] = np.floor(lo + rng.random(len(idx)) * (hi - lo + 1)).astype(np.float64)
            elif self.within_bin == "smooth" and len(idx) and self._sampler(var.name) is not None:
                cols[var.name] = self._sampler(var.name)(lo, hi, stratified_uniforms(lo, hi, rng))
            else:
                cols[var.name] = lo + rng.random(len(idx)) * (hi - lo)
        return pd.DataFrame(cols)


def contradictions(schema: Schema, tables, rules=(), shown: int = 3) -> str | None:
    """Why no population can fit ``tables`` (and ``rules``) together, or None when one can.

    Tables whose marginals agree may still contradict each other through their zero cells (x = y in one table,
    y = z in another, x != z in a third): the maximum-entropy fit (:class:`MaxEntJoint`) then leaves some positive
    target cells no mass. The tables are narrowed to a minimal contradicting set by deletion (each table left out in
    turn, kept out when the rest still contradict: the deletion filter of Chinneck & Dravnieks 1991), and the
    message names those tables and, for each, up to ``shown`` of its cells that get no one with their counts.

    Parameters
    ----------
    schema : Schema
    tables : sequence of TargetTable
        Harmonized tables (``Project.tables``).
    rules : sequence of Rule
        Structural zeros taken with the tables.
    shown : int
        Cells named per table.

    Returns
    -------
    str or None
    """
    tables = list(tables)
    if len(tables) < 2 and not rules:
        return None
    joint = MaxEntJoint(schema, tables, rules, within_bin="uniform")
    if not joint.starved_cells():
        return None
    core = list(joint.tables)
    for table in list(core):
        rest = [t for t in core if t is not table]
        narrower = MaxEntJoint(schema, rest, rules, within_bin="uniform") if rest else None
        if narrower is not None and narrower.starved_cells():
            core, joint = rest, narrower  # the joint of the tables kept so far
    parts = []
    for i, cells in joint.starved_cells():
        t = joint.tables[i]
        flat = t.counts.reshape(-1)
        named = ", ".join(
            "("
            + ", ".join(f"{v} = {label}" for v, label in t.cell_label(schema, int(c)).items())
            + f": {flat[c]:,.0f})"
            for c in cells[:shown]
        )
        more = f" and {cells.size - shown:,} more" if cells.size > shown else ""
        parts.append(f'"{t.name}" counts persons in {named}{more}')
    names = ", ".join(f'"{t.name}"' for t in core)
    by_rules = " and the rules" if rules else ""
    return (
        f"the tables {names}{by_rules} contradict each other: no population fits them all, because their zero cells "
        f"leave no room for some counted cells: " + "; ".join(parts) + ". Check these tables' zero cells"
    )


def contradiction_problems(project: Project) -> list[Problem]:
    """:func:`contradictions` of a person project's tables as a problem of its ``synthor.toml`` (key ``tables``),
    or an empty list; for ``validate`` and the app's Data page."""
    why = contradictions(project.schema, project.tables)
    return [Problem("synthor.toml", why, column="tables")] if why else []


class MaxEntPrior(PriorBase):
    """The offline prior: plans from the residuals, realizes from the maximum-entropy joint.

    Parameters
    ----------
    project : Project
    mode : {"full", "paper"}
        ``full``: proposals fix only a target cell, other variables are drawn from the joint conditional on it;
        removals correct over-represented cells. ``paper``: add-only, at most 5 proposals per iteration, each
        fixing one category per categorical variable and one range per numeric variable (completed from the
        joint, as the LLM completes them in the paper), numerics drawn uniformly in the range.
    step : float
        Share of a cell's gap one proposal corrects (full mode).
    """

    name = "maxent"

    def __init__(
        self,
        project: Project,
        mode: str = "full",
        step: float = defaults.FULL_STEP,
        rules=(),
        within_bin: str = "smooth",
    ):
        super().__init__()
        self.project = project
        self.mode = mode
        self.step = step
        self.rules = tuple(rules)
        # the paper draws numerics uniformly in their range; full mode uses the smooth density unless told
        self.joint = MaxEntJoint(
            project.schema,
            project.tables,
            self.rules,
            within_bin="uniform" if mode == "paper" else within_bin,
            numeric_controls=project.numeric_controls,
        )
        self._tables = {t.name: t for t in project.tables}
        if self.joint.starved_cells():  # rules may forbid counted cells (they win); tables must not forbid each other's
            why = contradictions(project.schema, project.tables)
            if why:
                raise ConfigError(why)

    @property
    def notes(self) -> list[str]:
        """What the prior could not do (tables left out of the joint), for the run's warnings."""
        return [
            f'maxent prior: table "{n}" left out of the joint (its clique would exceed '
            f"{defaults.MAXENT_MAX_CLIQUE_CELLS:,} cells); calibration still fits it"
            for n in self.joint.left_out
        ]

    def plan(self, guidance: Guidance, rng: np.random.Generator) -> list[Proposal]:
        """Proposals from the guidance (see the class docstring for each mode)."""
        if self.mode == "paper":
            return self._plan_paper(guidance, rng)
        if guidance.current_total == 0:
            return [
                Proposal(
                    count=guidance.population_size,
                    action="add",
                    reason="the population is empty: draw it from the maximum-entropy joint of all target tables",
                )
            ]
        return self._plan_swaps(guidance)

    def _plan_swaps(self, guidance: Guidance) -> list[Proposal]:
        """Full mode: add to the most under- and remove from the most over-represented cells.

        A deficit shows in every table that shares the cell's variables (``sex = Male`` in each table with sex),
        so a cell nested in (or containing) an already chosen cell of the same direction is skipped; the persons
        added are then balanced against those removed so that the total moves to N and no further.
        """
        schema = self.project.schema
        chosen: list[tuple[set, CellGap, dict]] = []
        for g in sorted(guidance.under + guidance.over, key=lambda g: (-abs(g.count_gap), g.table, g.flat_index)):
            conditions = gap_conditions(g, schema, self._tables)
            items = {(k, v if isinstance(v, str) else tuple(v)) for k, v in conditions.items()}
            same_way = [c for c in chosen if (c[1].count_gap > 0) == (g.count_gap > 0)]
            if any(items <= c[0] or c[0] <= items for c in same_way):
                continue
            chosen.append((items, g, conditions))
            if len(chosen) == guidance.max_proposals:
                break
        adds = sum(self.step * g.count_gap for _, g, _ in chosen if g.count_gap > 0)
        removes = sum(-self.step * g.count_gap for _, g, _ in chosen if g.count_gap < 0)
        need = guidance.population_size - guidance.current_total
        swap = min(adds, removes)
        scale_add = (swap + max(need, 0)) / adds if adds > 0 else 0.0
        scale_remove = (swap + max(-need, 0)) / removes if removes > 0 else 0.0
        proposals = [
            Proposal(
                conditions=gap_conditions(g, schema, self._tables),
                count=math.ceil(g.count_gap),
                action="add",
                reason=f"no record yet: {g.describe()}",
            )
            for g in guidance.unsupported
        ]
        for _, g, conditions in chosen:
            add = g.count_gap > 0
            count = int(round(self.step * abs(g.count_gap) * (scale_add if add else scale_remove)))
            if count >= 1:
                proposals.append(
                    Proposal(
                        conditions=conditions,
                        count=count,
                        action="add" if add else "remove",
                        reason=f"{'under' if add else 'over'}-represented: {g.describe()}",
                    )
                )
        return proposals

    def _plan_paper(self, guidance: Guidance, rng: np.random.Generator) -> list[Proposal]:
        gaps = [g for g in guidance.under if g.share_gap > 0][: guidance.max_proposals]
        if not gaps or guidance.batch_size <= 0:
            return []
        weights = np.array([g.share_gap for g in gaps])
        raw = weights / weights.sum() * guidance.batch_size
        counts = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - counts), kind="stable")[: guidance.batch_size - counts.sum()]:
            counts[i] += 1
        schema = self.project.schema
        proposals = []
        for g, count in zip(gaps, counts):
            if count < 1:
                continue
            cell = gap_conditions(g, schema, self._tables)
            draw = self.joint.sample_cells(1, cell, rng)
            if draw is None:
                continue
            conditions = {}
            for var in schema:
                if var.name in cell:
                    conditions[var.name] = cell[var.name]
                elif var.type == "categorical":
                    conditions[var.name] = var.categories[int(draw[var.name][0])]
                else:
                    axis = self.joint.axes[var.name]
                    assert axis.bins is not None  # numeric: set by _build_axes
                    conditions[var.name] = bin_condition(var, axis.bins, int(draw[var.name][0]))
            proposals.append(
                Proposal(
                    conditions=conditions, count=int(count), action="add", reason=f"under-represented: {g.describe()}"
                )
            )
        return proposals

    def realize(self, proposal: Proposal, k: int, rng: np.random.Generator) -> pd.DataFrame:
        """``k`` records satisfying the proposal (fewer, possibly none, when its conditions are impossible)."""
        if self.mode == "paper":
            return self._without_violations(lambda n: sample_uniform_records(self.project.schema, proposal, n, rng), k)
        if self.joint.sample_cells(1, proposal.conditions, rng) is None:
            return pd.DataFrame(columns=self.project.schema.names)

        def draw(n: int) -> pd.DataFrame:
            cells = self.joint.sample_cells(n, proposal.conditions, rng)
            if cells is None:  # not reached: the same conditions had probability > 0 just above
                return pd.DataFrame(columns=self.project.schema.names)
            return self.joint.values(cells, proposal.conditions, rng)

        return self._without_violations(draw, k)

    def _without_violations(self, draw, k: int) -> pd.DataFrame:
        """``k`` records from ``draw(n)``, redrawing those that break a rule (a few rounds at most: a cell the
        rules forbid only in part keeps its allowed values)."""
        records = draw(k)
        if not self.rules:
            return records
        schema = self.project.schema
        kept = []
        for _ in range(defaults.RULE_REDRAW_ROUNDS):
            encoded, _ = schema.encode(records)
            ok = ~violating(encoded, self.rules)
            kept.append(records.loc[ok])
            missing = k - sum(len(p) for p in kept)
            if missing <= 0:
                break
            records = draw(missing)
        return pd.concat(kept, ignore_index=True).head(k)
