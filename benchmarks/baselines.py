"""Baselines the benchmarks compare Synthor with. They see only what they are said to see.

- ``ipf_cross_product``: classical iterative proportional fitting over the full cross-product of every
  variable (numerics on the union of the tables' bin edges) from a uniform seed, then sampling N persons from
  the fitted joint, numerics uniform inside their cell. The paper's macro-only IPF baseline; built here from
  numpy on purpose, independently of Synthor's junction tree.
- ``independent_marginals``: every variable drawn independently from its own marginal target.
- ``resample_records``: N persons drawn with replacement from the reference micro-records (a micro-data
  reference, which macro-only methods never see).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthor_core.schema import Bins, Schema
from synthor_core.targets.model import Project


def _fine_axes(project: Project):
    axes = {}
    for var in project.schema:
        if var.type == "categorical":
            axes[var.name] = (var.size, None)
        else:
            edges = {var.min, var.max}
            for t in project.tables:
                if var.name in t.bins:
                    edges.update(float(e) for e in t.bins[var.name].edges)
            fine = Bins(sorted(edges))
            axes[var.name] = (len(fine), fine)
    return axes


def _values(schema: Schema, axes, cells: dict, rng: np.random.Generator) -> pd.DataFrame:
    out = {}
    for var in schema:
        idx = cells[var.name]
        if var.type == "categorical":
            out[var.name] = np.asarray(var.categories, dtype=object)[idx]
            continue
        fine = axes[var.name][1]
        lo, hi = fine.edges[idx], fine.edges[idx + 1]
        if var.integer:
            last = idx == len(fine) - 1
            hi_incl = np.where(last, np.floor(hi), np.ceil(hi) - 1)
            out[var.name] = np.floor(np.ceil(lo) + rng.random(len(idx)) * (hi_incl - np.ceil(lo) + 1))
        else:
            out[var.name] = lo + rng.random(len(idx)) * (hi - lo)
    return pd.DataFrame(out)


class IPFCrossProduct:
    """Classical IPF on the full cross-product from a uniform seed, fitted once; :meth:`sample` draws records.

    Attributes: ``joint`` (ndarray over every variable's fine cells, schema order), ``sweeps``, ``max_error``.
    """

    def __init__(self, project: Project, sweeps: int = 200, tolerance: float = 1e-9):
        self.project = project
        self.axes = _fine_axes(project)
        self.joint, self.sweeps, self.max_error = _fit_ipf(project, self.axes, sweeps, tolerance)

    def sample(self, size: int, rng: np.random.Generator) -> pd.DataFrame:
        """``size`` labelled records drawn from the fitted joint, numerics uniform inside their cell."""
        flat = self.joint.reshape(-1)
        draws = rng.choice(flat.size, size=size, p=flat / flat.sum())
        cells = dict(zip(self.project.schema.names, np.unravel_index(draws, self.joint.shape)))
        return _values(self.project.schema, self.axes, cells, rng)


def ipf_cross_product(project: Project, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """Fit :class:`IPFCrossProduct` and draw ``size`` labelled records."""
    return IPFCrossProduct(project).sample(size, rng)


def _fit_ipf(project: Project, axes, sweeps: int, tolerance: float):
    names = project.schema.names
    shape = tuple(axes[v][0] for v in names)
    joint = np.full(shape, 1.0 / np.prod(shape))
    plans = []
    for t in project.tables:
        keep = [names.index(v) for v in t.variables]
        other = tuple(i for i in range(len(names)) if i not in keep)
        coarse = []
        for v in t.variables:
            if v in t.bins:
                mapping = t.bins[v].locate(axes[v][1].edges[:-1])
                starts = np.flatnonzero(np.diff(mapping, prepend=-1))
                coarse.append((starts, np.diff(np.append(starts, len(mapping)))))
            else:
                coarse.append(None)
        plans.append((t, keep, other, coarse))
    sweep, error = 0, np.inf
    for sweep in range(1, sweeps + 1):  # noqa: B007 (the sweeps run are returned)
        error = 0.0
        for t, keep, other, coarse in plans:
            # the sum keeps the table's axes in schema order; put them in the table's order
            current = np.transpose(joint.sum(axis=other), np.argsort(np.argsort(keep)))
            for axis, c in enumerate(coarse):
                if c is not None:
                    current = np.add.reduceat(current, c[0], axis=axis)
            target = t.shares
            error = max(error, float(np.abs(current - target).max()))
            ratio = np.where(current > 0, target / np.where(current > 0, current, 1), 0.0)
            for axis, c in enumerate(coarse):
                if c is not None:
                    ratio = np.repeat(ratio, c[1], axis=axis)
            joint *= np.expand_dims(np.transpose(ratio, np.argsort(keep)), other)  # back to schema order
        if error < tolerance:
            break
    return joint, sweep, error


def independent_marginals(project: Project, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """Each variable drawn independently from the first target table that holds it alone (or, failing that,
    from its margin in the first table that has it); returns ``size`` labelled records."""
    schema = project.schema
    axes = _fine_axes(project)
    cells = {}
    for var in schema:
        table = next((t for t in project.tables if t.variables == (var.name,)), None) or next(
            t for t in project.tables if var.name in t.variables
        )
        axis = table.variables.index(var.name)
        margin = table.counts.sum(axis=tuple(i for i in range(table.counts.ndim) if i != axis))
        drawn = rng.choice(margin.size, size=size, p=margin / margin.sum())
        if var.type == "numeric":  # from the table's bin to a fine cell, in proportion to width
            fine = axes[var.name][1]
            starts = table.bins[var.name].edges[drawn]
            ends = table.bins[var.name].edges[drawn + 1]
            values = starts + rng.random(size) * (ends - starts)
            drawn = fine.locate(values)
        cells[var.name] = drawn
    return _values(schema, axes, cells, rng)


def resample_records(records: pd.DataFrame, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """``size`` persons drawn with replacement from labelled reference records."""
    return records.iloc[rng.integers(0, len(records), size=size)].reset_index(drop=True)
